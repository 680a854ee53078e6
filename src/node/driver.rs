//! The driver: the one task that owns the consensus core.
//!
//! It wakes on ticks, peer messages, client requests and persistence
//! completions, handles everything that is waiting, and then works off the
//! core's Readies following the contract on [`raft::Ready`]:
//!
//! 1. messages that depend on nothing unpersisted go out at once (a leader
//!    replicates while its own write is in flight, thesis §10.2.1);
//! 2. a received snapshot, entries and hard state are written to the log;
//! 3. the persister makes them durable (one sync for many Readies); only then
//!    does the core learn they are persisted (a leader counts itself toward a
//!    quorum only from then on) and are votes and append responses sent;
//! 4. committed entries go to the applier (`applier.rs`), which applies them
//!    in order on its own thread and answers their proposers;
//! 5. confirmed reads are answered once the state machine has caught up.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::applier::{Applier, ApplierHandle, ApplyEvent, ApplyTask, Proposed, Waiter, fail_all};
use super::background::Background;
use super::clock::Clock;
use super::entry_batch::{BATCH_HEADER_BYTES, BatchBuilder, COMMAND_FRAMING_BYTES};
use super::error::NodeError;
use super::handle::{AdminOp, NodeShared, NodeStatus, Request};
use super::log_store::{NodeStorage, SnapshotEnvelope, WalLogStore};
use super::persister::{MeteredSync, PersistEvent, Persister};
use super::state_machine::StateMachine;
use super::transport::{Inbound, PeerTransport};
use crate::config::ENTRY_MAX_BYTES;
use crate::metrics as names;
use crate::raft::{
    self, ConfChange, ConfChangeKind, Entry, EntryKind, Message, MessageBody, RawNode, Role,
};

/// Requests the driver takes from its queue in one round before it turns to
/// the core, so that one busy source cannot starve the others.
const REQUESTS_PER_ROUND_MAX: usize = 8192;
/// Peer messages stepped in one round.
const MESSAGES_PER_ROUND_MAX: usize = 4096;

/// Messages waiting for Ready `number` to become durable.
struct AwaitingPersist {
    number: u64,
    messages: Vec<Message>,
    /// Whether the Ready wrote anything that needs a sync. One that did not
    /// is durable as soon as every Ready before it is.
    synced: bool,
}

/// Settings of the driver, derived from the server configuration.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Length of one tick.
    pub tick_ms: u64,
    /// Applied entries between snapshots.
    pub snapshot_interval_entries: u64,
    /// Sync, apply and take snapshots on the driver's task instead of on
    /// threads of their own (deterministic simulation).
    pub inline_sync: bool,
    /// Ticks after which a read forwarded to the leader that has not been
    /// answered is failed (retryably): the request or its answer was lost.
    pub read_forward_timeout_ticks: u64,
}

/// Reads handed to the core under one context.
struct ReadsInCore {
    /// The driver's tick count when they were handed over.
    started_tick: u64,
    readers: Vec<oneshot::Sender<Result<(), NodeError>>>,
}

/// The driver's state.
pub struct Driver<SM: StateMachine> {
    raw: RawNode<WalLogStore>,
    storage: Arc<NodeStorage>,
    shared: Arc<NodeShared<SM>>,
    transport: PeerTransport<Message>,
    clock: Arc<dyn Clock>,
    config: DriverConfig,
    requests: mpsc::Receiver<Request<SM>>,
    inbound: mpsc::Receiver<Inbound<Message>>,
    persist_events: mpsc::UnboundedReceiver<PersistEvent>,
    persist_sender: mpsc::UnboundedSender<PersistEvent>,
    persister: Option<Persister>,
    /// Syncs on the driver's own task when there is no persister thread.
    inline_sync: Option<MeteredSync>,
    shutdown: CancellationToken,

    applier: ApplierHandle<SM>,
    apply_events: mpsc::UnboundedReceiver<ApplyEvent>,
    /// Encoded commands collected this round, with their waiters.
    collected: Vec<(Bytes, Waiter<SM::Outcome>)>,
    /// Framed size of the collected commands.
    collected_bytes: usize,
    /// The index of the time-advance entry on its way, if any.
    time_advance_index: Option<u64>,
    awaiting_persist: VecDeque<AwaitingPersist>,
    /// Term and vote of the hard state last written to the log, if any was
    /// written by this process.
    written_term_vote: Option<(u64, Option<u64>)>,
    /// Reads collected this round, not yet handed to the core.
    reads_collected: Vec<oneshot::Sender<Result<(), NodeError>>>,
    /// Reads handed to the core, by context.
    reads_in_core: BTreeMap<u64, ReadsInCore>,
    /// Ticks since the driver started.
    ticks: u64,
    /// Reads confirmed at an index, waiting for the state machine to apply it.
    reads_confirmed: BTreeMap<u64, Vec<oneshot::Sender<Result<(), NodeError>>>>,
    next_read_context: u64,
    /// Peer address of every node this one has heard of.
    addresses: BTreeMap<u64, String>,
    role: Role,
    leader: Option<u64>,
    applied: u64,
    last_stamp_ms: u64,
    snapshot_index: u64,
    /// Applied entries past `snapshot_index` at which the next snapshot is
    /// due; see [`first_snapshot_after`].
    snapshot_due_after: u64,
    snapshot_in_progress: bool,
    /// Writes snapshot files and compacts the log at low priority; `None`
    /// when everything runs on the driver's task.
    background: Option<Background>,
    scratch: BytesMut,
}

/// Every node applies the same entries at about the same time, so with one
/// interval they would all freeze, encode and write a snapshot at once and
/// compete for the machine (on a small one, the whole cluster stalls). A
/// node's first snapshot after it starts, or after it installs one from the
/// leader, comes after 0.6 to 1.4 intervals, a fifth of an interval apart
/// per id (mod 5), 1.0 on average; afterwards each node counts whole
/// intervals from its own last snapshot, so they stay apart.
fn first_snapshot_after(id: u64, interval_entries: u64) -> u64 {
    let fifth = interval_entries / 5;
    (interval_entries - 2 * fifth + (id % 5) * fifth).max(1)
}

/// Snapshot work that runs off the driver's task.
enum SnapshotEvent {
    Saved(raft::Snapshot),
    Failed(String),
}

impl<SM: StateMachine> Driver<SM> {
    /// Assembles a driver; [`Driver::run`] starts it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        raw: RawNode<WalLogStore>,
        storage: Arc<NodeStorage>,
        shared: Arc<NodeShared<SM>>,
        transport: PeerTransport<Message>,
        clock: Arc<dyn Clock>,
        config: DriverConfig,
        requests: mpsc::Receiver<Request<SM>>,
        inbound: mpsc::Receiver<Inbound<Message>>,
        addresses: BTreeMap<u64, String>,
        shutdown: CancellationToken,
    ) -> Driver<SM> {
        let (persist_sender, persist_events) = mpsc::unbounded_channel();
        let meter = MeteredSync::new(Arc::clone(storage.wal()), storage.appended_bytes());
        let (persister, inline_sync) = if config.inline_sync {
            (None, Some(meter))
        } else {
            (Some(Persister::start(meter, persist_sender.clone())), None)
        };
        let status = raw.status();
        let snapshot_due_after = first_snapshot_after(raw.id(), config.snapshot_interval_entries);
        let background = (!config.inline_sync).then(|| Background::start("raftq-background"));
        let snapshot_index = storage.snapshot_index();
        let last_stamp_ms = shared.state_machine().last_now_ms();
        let (apply_sender, apply_events) = mpsc::unbounded_channel();
        let applier = ApplierHandle::start(
            Applier::new(Arc::clone(&shared), status.applied, apply_sender),
            config.inline_sync,
        );
        Driver {
            raw,
            storage,
            shared,
            transport,
            clock,
            config,
            requests,
            inbound,
            persist_events,
            persist_sender,
            persister,
            inline_sync,
            shutdown,
            applier,
            apply_events,
            collected: Vec::new(),
            collected_bytes: 0,
            time_advance_index: None,
            awaiting_persist: VecDeque::new(),
            written_term_vote: None,
            reads_collected: Vec::new(),
            reads_in_core: BTreeMap::new(),
            ticks: 0,
            reads_confirmed: BTreeMap::new(),
            next_read_context: 1,
            addresses,
            role: status.role,
            leader: status.leader,
            applied: status.applied,
            last_stamp_ms,
            snapshot_index,
            snapshot_due_after,
            snapshot_in_progress: false,
            background,
            scratch: BytesMut::new(),
        }
    }

    /// Runs until shutdown or a fatal error; returns the error, if any.
    pub async fn run(mut self) -> Result<(), String> {
        let (snapshot_sender, mut snapshot_events) = mpsc::unbounded_channel::<SnapshotEvent>();
        let mut ticker = tokio::time::interval(Duration::from_millis(self.config.tick_ms));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.update_members();
        let result = loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break Ok(()),
                Some(event) = self.persist_events.recv() => {
                    if let Err(error) = self.on_persist_event(event) {
                        break Err(error);
                    }
                }
                Some(event) = self.apply_events.recv() => {
                    if let Err(error) = self.on_apply_event(event, &snapshot_sender) {
                        break Err(error);
                    }
                }
                Some(event) = snapshot_events.recv() => {
                    if let Err(error) = self.on_snapshot_event(event) {
                        break Err(error);
                    }
                }
                _ = ticker.tick() => {
                    self.raw.tick();
                    self.ticks += 1;
                    self.expire_forwarded_reads();
                    self.maybe_advance_time();
                    self.publish_status();
                }
                Some(inbound) = self.inbound.recv() => {
                    if let Err(error) = self.on_inbound(inbound) {
                        break Err(error);
                    }
                }
                Some(request) = self.requests.recv() => self.on_request(request),
            }
            if let Err(error) = self.round(&snapshot_sender) {
                break Err(error);
            }
        };
        self.stop(result.as_ref().err().cloned());
        result
    }

    /// Takes whatever else is waiting, proposes, and works off every Ready.
    fn round(
        &mut self,
        snapshot_sender: &mpsc::UnboundedSender<SnapshotEvent>,
    ) -> Result<(), String> {
        for _ in 0..MESSAGES_PER_ROUND_MAX {
            match self.inbound.try_recv() {
                Ok(inbound) => self.on_inbound(inbound)?,
                Err(_) => break,
            }
        }
        for _ in 0..REQUESTS_PER_ROUND_MAX {
            match self.requests.try_recv() {
                Ok(request) => self.on_request(request),
                Err(_) => break,
            }
        }
        while let Ok(event) = self.persist_events.try_recv() {
            self.on_persist_event(event)?;
        }
        if self.should_propose() {
            self.propose_collected();
        }
        self.start_reads();
        while self.raw.has_ready() {
            self.handle_ready()?;
        }
        // An inline applier has already reported; a threaded one may have.
        while let Ok(event) = self.apply_events.try_recv() {
            self.on_apply_event(event, snapshot_sender)?;
        }
        self.maybe_snapshot();
        Ok(())
    }

    fn on_inbound(&mut self, inbound: Inbound<Message>) -> Result<(), String> {
        match inbound {
            Inbound::Message(message) => {
                if matches!(message.body, MessageBody::AppendEntries { .. }) {
                    metrics::counter!(names::RAFT_APPEND_RECEIVED).increment(1);
                }
                self.step(message)
            }
            Inbound::Unreachable(peer) => {
                self.raw.report_unreachable(peer);
                Ok(())
            }
        }
    }

    fn step(&mut self, message: Message) -> Result<(), String> {
        match self.raw.step(message) {
            Ok(()) => Ok(()),
            Err(raft::Error::Store(raft::StoreError::Io(error))) => Err(error),
            Err(error) => {
                warn!(%error, "peer message refused by the core");
                Ok(())
            }
        }
    }

    fn not_leader(&self) -> NodeError {
        NodeError::NotLeader {
            leader_id: self.leader,
            leader_address: self
                .leader
                .and_then(|leader| self.transport.client_address(leader)),
        }
    }

    fn on_request(&mut self, request: Request<SM>) {
        match request {
            Request::Propose { command, reply } => {
                if self.role != Role::Leader {
                    let _ = reply.send(Err(self.not_leader()));
                } else {
                    self.collected_bytes += command.len() + COMMAND_FRAMING_BYTES;
                    self.collected.push((command, reply));
                }
            }
            Request::Read { reply } => {
                // A follower that knows the leader forwards the read to it
                // (thesis §6.4.1); without one, the caller looks elsewhere.
                let can_read = match self.role {
                    Role::Leader => true,
                    Role::Follower => self.leader.is_some(),
                    Role::PreCandidate | Role::Candidate => false,
                };
                if can_read {
                    self.reads_collected.push(reply);
                } else {
                    let _ = reply.send(Err(self.not_leader()));
                }
            }
            Request::Admin { op, reply } => self.on_admin(op, reply),
        }
    }

    fn on_admin(&mut self, op: AdminOp, reply: oneshot::Sender<Result<(), NodeError>>) {
        if self.role != Role::Leader {
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        let change = match op {
            AdminOp::TransferLeader(to) => {
                let result = self
                    .raw
                    .transfer_leader(to)
                    .map_err(|error| NodeError::Refused(error.to_string()));
                let _ = reply.send(result);
                return;
            }
            AdminOp::AddLearner { id, peer_address } => ConfChange {
                kind: ConfChangeKind::AddLearner,
                node: id,
                context: Bytes::from(peer_address.into_bytes()),
            },
            AdminOp::Promote(id) => ConfChange {
                kind: ConfChangeKind::PromoteLearner,
                node: id,
                context: Bytes::new(),
            },
            AdminOp::Remove(id) => ConfChange {
                kind: ConfChangeKind::Remove,
                node: id,
                context: Bytes::new(),
            },
        };
        match self.raw.propose_conf_change(change) {
            Ok((index, term)) => {
                self.applier.send(ApplyTask::Proposed {
                    index,
                    term,
                    proposed: Proposed::ConfChange(reply),
                });
            }
            Err(error) => {
                let _ = reply.send(Err(NodeError::Refused(error.to_string())));
            }
        }
    }

    /// The leader's stamped time: its clock, but never below what it or the
    /// state machine has already seen.
    fn stamp(&mut self) -> u64 {
        self.last_stamp_ms = self.clock.now_ms().max(self.last_stamp_ms);
        self.last_stamp_ms
    }

    /// Whether to propose the collected commands now or let more gather.
    ///
    /// While a sync of this node's log is in flight, the commands arriving
    /// meanwhile wait and go out together, in one entry and one append
    /// message per follower, when it ends (group commit on the proposing
    /// side). Their answers could not come sooner: a command is applied, and
    /// answered, only once it is durable here too, and the next sync cannot
    /// start before this one ends. A full entry's worth goes out at once.
    fn should_propose(&self) -> bool {
        let sync_in_flight = self.awaiting_persist.iter().any(|awaiting| awaiting.synced);
        !sync_in_flight || self.collected_bytes >= ENTRY_MAX_BYTES
    }

    fn take_collected(&mut self) -> Vec<(Bytes, Waiter<SM::Outcome>)> {
        self.collected_bytes = 0;
        std::mem::take(&mut self.collected)
    }

    /// Packs the collected commands into as few entries as their size allows.
    fn propose_collected(&mut self) {
        if self.collected.is_empty() {
            return;
        }
        let collected = self.take_collected();
        let now_ms = self.stamp();
        let mut builder = BatchBuilder::new(now_ms, 0);
        let mut waiters = Vec::new();
        for (command, waiter) in collected {
            let framed_bytes = command.len() + COMMAND_FRAMING_BYTES;
            if builder.count() > 0 && builder.len_bytes() + framed_bytes > ENTRY_MAX_BYTES {
                let full = std::mem::replace(&mut builder, BatchBuilder::new(now_ms, 0));
                self.propose_batch(full, std::mem::take(&mut waiters));
            }
            if BATCH_HEADER_BYTES + framed_bytes > ENTRY_MAX_BYTES {
                let _ = waiter.send(Err(NodeError::Invalid(format!(
                    "command of {} bytes exceeds the entry limit of {ENTRY_MAX_BYTES} bytes",
                    command.len()
                ))));
                continue;
            }
            builder.push(&command);
            waiters.push(waiter);
        }
        if builder.count() > 0 {
            self.propose_batch(builder, waiters);
        }
    }

    fn propose_batch(&mut self, builder: BatchBuilder, waiters: Vec<Waiter<SM::Outcome>>) {
        match self.raw.propose(builder.finish()) {
            Ok((index, term)) => {
                metrics::counter!(names::RAFT_PROPOSALS).increment(1);
                self.applier.send(ApplyTask::Proposed {
                    index,
                    term,
                    proposed: Proposed::Commands(waiters),
                });
            }
            Err(error) => {
                let answer = match error {
                    raft::Error::NotLeader { .. } => self.not_leader(),
                    other => NodeError::Dropped(other.to_string()),
                };
                fail_all(waiters, &answer);
            }
        }
    }

    fn start_reads(&mut self) {
        if self.reads_collected.is_empty() {
            return;
        }
        let context = self.next_read_context;
        self.next_read_context += 1;
        let readers = std::mem::take(&mut self.reads_collected);
        match self.raw.read_index(context) {
            Ok(()) => {
                let started_tick = self.ticks;
                self.reads_in_core.insert(
                    context,
                    ReadsInCore {
                        started_tick,
                        readers,
                    },
                );
            }
            Err(error) => {
                let answer = match error {
                    raft::Error::NotLeader { .. } => self.not_leader(),
                    other => NodeError::Overloaded(other.to_string()),
                };
                for reader in readers {
                    let _ = reader.send(Err(answer.clone()));
                }
            }
        }
    }

    /// Proposes a time-advance entry when something in the state machine
    /// falls due and no such entry is already on its way.
    fn maybe_advance_time(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        if self.time_advance_index.is_some() {
            return;
        }
        let Some(wakeup_ms) = self.shared.state_machine().next_wakeup_ms() else {
            return;
        };
        if self.clock.now_ms() < wakeup_ms {
            return;
        }
        let now_ms = self.stamp();
        let command = postcard::to_allocvec(&SM::time_advance_command()).expect("command encodes");
        let mut builder = BatchBuilder::new(
            now_ms,
            command.len() + BATCH_HEADER_BYTES + COMMAND_FRAMING_BYTES,
        );
        builder.push(&command);
        if let Ok((index, _)) = self.raw.propose(builder.finish()) {
            self.time_advance_index = Some(index);
        }
    }

    fn handle_ready(&mut self) -> Result<(), String> {
        let ready = self.raw.ready().map_err(|error| error.to_string())?;
        if let Some(soft_state) = ready.soft_state {
            self.on_soft_state(soft_state.role, soft_state.leader);
        }
        for message in ready.messages {
            self.send(message);
        }
        if let Some(snapshot) = &ready.snapshot {
            self.install_snapshot(snapshot)?;
        }
        if !ready.entries.is_empty() {
            self.learn_addresses(&ready.entries);
            let started = std::time::Instant::now();
            self.storage
                .append_entries(&ready.entries, &mut self.scratch)
                .map_err(|error| error.to_string())?;
            metrics::histogram!(names::WAL_APPEND_SECONDS).record(started.elapsed().as_secs_f64());
        }
        // Only term and vote must be durable before the node acts on them.
        // The commit index is volatile in Raft (§5, Figure 2) and is written
        // along with them, not on its own: a commit-only write would cost a
        // second fsync (of the hard-state file) in every sync. A restarted
        // node learns the commit index from the leader again.
        if let Some(hard_state) = &ready.hard_state
            && self.written_term_vote != Some((hard_state.term, hard_state.vote))
        {
            self.storage
                .set_hard_state(hard_state)
                .map_err(|error| error.to_string())?;
            self.written_term_vote = Some((hard_state.term, hard_state.vote));
        }
        let nothing_in_flight = self.awaiting_persist.is_empty();
        self.awaiting_persist.push_back(AwaitingPersist {
            number: ready.number,
            messages: ready.persisted_messages,
            synced: ready.must_sync,
        });
        match (&self.persister, &mut self.inline_sync) {
            // Nothing new to make durable, and nothing before it waits.
            _ if !ready.must_sync && nothing_in_flight => self.persisted(ready.number),
            // It becomes durable with the sync in flight (see `persisted`).
            _ if !ready.must_sync => {}
            (Some(persister), _) => persister.request(ready.number),
            (None, Some(meter)) => {
                meter.sync().map_err(|error| error.to_string())?;
                self.persisted(ready.number);
            }
            (None, None) => unreachable!("a driver syncs either on a persister or inline"),
        }
        if !ready.committed_entries.is_empty() {
            self.applier.send(ApplyTask::Apply(ready.committed_entries));
        }
        for read in ready.read_states {
            if let Some(reads) = self.reads_in_core.remove(&read.context) {
                self.reads_confirmed
                    .entry(read.index)
                    .or_default()
                    .extend(reads.readers);
            }
        }
        self.answer_reads();
        Ok(())
    }

    fn send(&mut self, message: Message) {
        match &message.body {
            MessageBody::AppendEntries { entries, .. } => {
                metrics::counter!(names::RAFT_APPEND_SENT).increment(1);
                metrics::histogram!(names::RAFT_ENTRIES_PER_APPEND).record(entries.len() as f64);
            }
            MessageBody::InstallSnapshot { offset: 0, .. } => {
                metrics::counter!(names::RAFT_SNAPSHOTS_SENT).increment(1);
            }
            _ => {}
        }
        if !self.transport.send(message.clone()) {
            self.raw.report_unreachable(message.to);
        }
    }

    fn on_persist_event(&mut self, event: PersistEvent) -> Result<(), String> {
        match event {
            PersistEvent::Persisted { number } => {
                self.persisted(number);
                Ok(())
            }
            PersistEvent::Failed(error) => Err(format!("sync of the log failed: {error}")),
        }
    }

    /// Ready `number` and everything before it is durable: tell the core and
    /// send what waited for it.
    /// Readies after it that wrote nothing needing a sync are durable too.
    fn persisted(&mut self, number: u64) {
        let mut durable = number;
        while let Some(front) = self.awaiting_persist.front() {
            if front.number > number && front.synced {
                break;
            }
            let awaiting = self.awaiting_persist.pop_front().expect("front exists");
            durable = durable.max(awaiting.number);
            for message in awaiting.messages {
                self.send(message);
            }
        }
        self.raw.on_persisted(durable);
    }

    /// Fails reads forwarded to a leader that stayed unanswered: the
    /// request or the answer was lost. Their callers retry.
    fn expire_forwarded_reads(&mut self) {
        if self.role == Role::Leader {
            return;
        }
        let timeout_ticks = self.config.read_forward_timeout_ticks;
        let now = self.ticks;
        let expired: Vec<u64> = self
            .reads_in_core
            .iter()
            .filter(|(_, reads)| reads.started_tick + timeout_ticks <= now)
            .map(|(context, _)| *context)
            .collect();
        for context in expired {
            let reads = self.reads_in_core.remove(&context).expect("listed");
            let answer = NodeError::Dropped("the leader did not answer the read in time".into());
            for reader in reads.readers {
                let _ = reader.send(Err(answer.clone()));
            }
        }
    }

    fn on_soft_state(&mut self, role: Role, leader: Option<u64>) {
        let was_leader = self.role == Role::Leader;
        if role != Role::Leader && !was_leader && leader != self.leader {
            // Reads forwarded to the old leader may never be answered; the
            // callers retry with the new one.
            let answer = NodeError::NotLeader {
                leader_id: leader,
                leader_address: leader.and_then(|leader| self.transport.client_address(leader)),
            };
            for reads in std::mem::take(&mut self.reads_in_core).into_values() {
                for reader in reads.readers {
                    let _ = reader.send(Err(answer.clone()));
                }
            }
        }
        if role != self.role || leader != self.leader {
            info!(?role, ?leader, "role or leader changed");
        }
        if leader != self.leader && leader.is_some() {
            metrics::counter!(names::RAFT_LEADER_CHANGES).increment(1);
        }
        if role == Role::Leader && !was_leader {
            metrics::counter!(names::RAFT_LEADER_ELECTIONS).increment(1);
        }
        for (name, value) in [
            ("follower", Role::Follower),
            ("pre_candidate", Role::PreCandidate),
            ("candidate", Role::Candidate),
            ("leader", Role::Leader),
        ] {
            metrics::gauge!(names::RAFT_ROLE, "role" => name).set(if role == value {
                1.0
            } else {
                0.0
            });
        }
        metrics::gauge!(names::RAFT_LEADER_ID).set(leader.unwrap_or(0) as f64);
        self.role = role;
        self.leader = leader;
        if was_leader && role != Role::Leader {
            self.fail_leader_work();
        }
        if role == Role::Leader && !was_leader {
            let state_now = self.shared.state_machine().last_now_ms();
            self.last_stamp_ms = self.last_stamp_ms.max(state_now);
        }
        self.publish_status();
    }

    /// Answers every read this node holds, at whatever stage, with `answer`.
    fn fail_reads(&mut self, answer: &NodeError) {
        let readers = std::mem::take(&mut self.reads_collected)
            .into_iter()
            .chain(
                std::mem::take(&mut self.reads_in_core)
                    .into_values()
                    .flat_map(|reads| reads.readers),
            )
            .chain(
                std::mem::take(&mut self.reads_confirmed)
                    .into_values()
                    .flatten(),
            );
        for reader in readers {
            let _ = reader.send(Err(answer.clone()));
        }
    }

    /// Leadership is lost: what was in flight may or may not be committed by
    /// the next leader; reads can no longer be confirmed here.
    fn fail_leader_work(&mut self) {
        self.applier
            .send(ApplyTask::FailPending(NodeError::OutcomeUnknown));
        self.time_advance_index = None;
        let answer = self.not_leader();
        self.fail_reads(&answer);
        let collected: Vec<_> = self
            .take_collected()
            .into_iter()
            .map(|(_, waiter)| waiter)
            .collect();
        fail_all(collected, &answer);
    }

    fn install_snapshot(&mut self, snapshot: &raft::Snapshot) -> Result<(), String> {
        let envelope = SnapshotEnvelope::decode(&snapshot.data)?;
        self.storage
            .install_snapshot(snapshot)
            .map_err(|error| error.to_string())?;
        // Addresses this node was configured with, or learned from the log,
        // win over the leader's: behind proxies or NAT, two nodes may reach
        // a third at different addresses.
        for (id, address) in envelope.addresses {
            self.addresses.entry(id).or_insert(address);
        }
        // The applier restores the state before it applies anything after
        // the snapshot: its tasks run in order.
        self.applier.send(ApplyTask::Restore {
            index: snapshot.meta.index,
            state: envelope.state,
        });
        self.snapshot_index = snapshot.meta.index;
        self.snapshot_due_after =
            first_snapshot_after(self.raw.id(), self.config.snapshot_interval_entries);
        metrics::counter!(names::RAFT_SNAPSHOTS_INSTALLED).increment(1);
        info!(
            index = snapshot.meta.index,
            term = snapshot.meta.term,
            "installed a snapshot from the leader"
        );
        self.update_members();
        Ok(())
    }

    /// Configuration changes take effect when appended, so the addresses of
    /// new members are needed as soon as their entries arrive.
    fn learn_addresses(&mut self, entries: &[Entry]) {
        let learned = added_member_addresses(entries);
        let changed = !learned.is_empty();
        self.addresses.extend(learned);
        if changed
            || entries
                .iter()
                .any(|entry| entry.kind == EntryKind::ConfChange)
        {
            self.update_members();
        }
    }

    /// Points the transport at the members of the current configuration; a
    /// node that is not (yet) a member talks to everyone it knows.
    fn update_members(&mut self) {
        let conf = self.raw.status().conf_state;
        let own_id = self.raw.id();
        let members: BTreeMap<u64, String> = if conf.contains(own_id) {
            self.addresses
                .iter()
                .filter(|(id, _)| conf.contains(**id))
                .map(|(id, address)| (*id, address.clone()))
                .collect()
        } else {
            self.addresses.clone()
        };
        self.transport.set_members(&members);
        // Whoever asks next sees the new membership, not the last tick's.
        self.publish_status();
    }

    fn on_apply_event(
        &mut self,
        event: ApplyEvent,
        snapshot_sender: &mpsc::UnboundedSender<SnapshotEvent>,
    ) -> Result<(), String> {
        match event {
            ApplyEvent::Applied(index) => {
                self.applied = self.applied.max(index);
                self.raw.on_applied(index);
            }
            ApplyEvent::Restored(index) => self.applied = self.applied.max(index),
            ApplyEvent::Snapshot { index, state } => {
                self.write_snapshot(index, state, snapshot_sender)
            }
            ApplyEvent::Failed(error) => return Err(error),
        }
        if self
            .time_advance_index
            .is_some_and(|index| index <= self.applied)
        {
            self.time_advance_index = None;
        }
        self.answer_reads();
        Ok(())
    }

    fn answer_reads(&mut self) {
        while let Some(entry) = self.reads_confirmed.first_entry() {
            if *entry.key() > self.applied {
                break;
            }
            for reader in entry.remove() {
                let _ = reader.send(Ok(()));
            }
        }
    }

    /// Asks the applier for a snapshot when enough entries were applied
    /// since the last one. The applier freezes the state and has it encoded
    /// on another thread; the file is written and the log compacted on the
    /// low-priority background thread. Nodes take turns; see
    /// [`first_snapshot_after`].
    fn maybe_snapshot(&mut self) {
        if self.snapshot_in_progress || self.applied < self.snapshot_index + self.snapshot_due_after
        {
            return;
        }
        self.snapshot_in_progress = true;
        self.applier.send(ApplyTask::Snapshot);
    }

    /// Writes the state the applier serialized at `index` as a snapshot file.
    fn write_snapshot(
        &mut self,
        index: u64,
        state: Bytes,
        snapshot_sender: &mpsc::UnboundedSender<SnapshotEvent>,
    ) {
        if index <= self.snapshot_index {
            // A snapshot from the leader replaced the state meanwhile.
            self.snapshot_in_progress = false;
            return;
        }
        let meta = match self.raw.snapshot_meta(index) {
            Ok(meta) => meta,
            Err(error) => {
                warn!(%error, "cannot take a snapshot now");
                self.snapshot_in_progress = false;
                return;
            }
        };
        let envelope = SnapshotEnvelope {
            addresses: self.addresses.clone(),
            state,
        };
        let storage = Arc::clone(&self.storage);
        let sender = snapshot_sender.clone();
        // Wrapping copies the whole state: off the driver's task as well.
        let write = move || {
            let snapshot = raft::Snapshot {
                meta,
                data: envelope.encode(),
            };
            let event = match storage.write_snapshot_file(&snapshot) {
                Ok(()) => SnapshotEvent::Saved(snapshot),
                Err(error) => SnapshotEvent::Failed(error.to_string()),
            };
            let _ = sender.send(event);
        };
        self.off_task(write);
    }

    /// Runs `job` on the background thread, or at once when everything runs
    /// on the driver's task.
    fn off_task(&self, job: impl FnOnce() + Send + 'static) {
        match &self.background {
            Some(background) => background.run(job),
            None => job(),
        }
    }

    fn on_snapshot_event(&mut self, event: SnapshotEvent) -> Result<(), String> {
        self.snapshot_in_progress = false;
        match event {
            SnapshotEvent::Saved(snapshot) => {
                let index = snapshot.meta.index;
                self.storage.set_latest_snapshot(snapshot);
                self.snapshot_index = index;
                self.snapshot_due_after = self.config.snapshot_interval_entries;
                self.raw.compact(index);
                let storage = Arc::clone(&self.storage);
                let persist_sender = self.persist_sender.clone();
                let compact = move || {
                    if let Err(error) = storage.compact(index + 1) {
                        let _ = persist_sender.send(PersistEvent::Failed(format!(
                            "log compaction failed: {error}"
                        )));
                    }
                };
                self.off_task(compact);
                metrics::counter!(names::RAFT_SNAPSHOTS_TAKEN).increment(1);
                info!(index, "snapshot taken and the log compacted behind it");
                Ok(())
            }
            // A snapshot that could not be written is not fatal: the log is
            // intact and the next attempt may succeed (a disk that was full).
            SnapshotEvent::Failed(error) => {
                warn!(%error, "could not write a snapshot; will retry");
                Ok(())
            }
        }
    }

    fn publish_status(&self) {
        let status = self.raw.status();
        metrics::gauge!(names::RAFT_TERM).set(status.term as f64);
        metrics::gauge!(names::RAFT_COMMIT_INDEX).set(status.commit as f64);
        metrics::gauge!(names::RAFT_APPLIED_INDEX).set(self.applied as f64);
        metrics::gauge!(names::RAFT_SNAPSHOT_INDEX).set(self.snapshot_index as f64);
        let disk = self.storage.wal().disk_usage();
        metrics::gauge!(names::WAL_SEGMENTS).set(disk.segments as f64);
        metrics::gauge!(names::WAL_SIZE_BYTES).set(disk.bytes as f64);
        for (peer, progress) in &status.progress {
            if *peer != status.id {
                let lag = status.last_index.saturating_sub(progress.match_index);
                metrics::gauge!(names::RAFT_FOLLOWER_LAG, "peer" => peer.to_string())
                    .set(lag as f64);
            }
        }
        let leader_address = status
            .leader
            .and_then(|leader| self.transport.client_address(leader));
        let client_addresses = status
            .conf_state
            .voters
            .iter()
            .chain(&status.conf_state.learners)
            .filter_map(|&member| Some((member, self.transport.client_address(member)?)))
            .collect();
        self.shared.publish_status(NodeStatus {
            id: status.id,
            role: status.role,
            term: status.term,
            leader: status.leader,
            leader_address,
            commit: status.commit,
            applied: self.applied,
            first_index: status.first_index,
            last_index: status.last_index,
            snapshot_index: self.snapshot_index,
            voters: status.conf_state.voters.iter().copied().collect(),
            learners: status.conf_state.learners.iter().copied().collect(),
            match_indexes: status
                .progress
                .iter()
                .map(|(id, progress)| (*id, progress.match_index))
                .collect(),
            addresses: self.addresses.clone(),
            client_addresses,
            failed: None,
        });
    }

    /// Stops: finishes the sync in flight, then fails everything still waiting.
    fn stop(&mut self, failure: Option<String>) {
        // Dropping the persister waits for the sync in progress.
        self.persister = None;
        if failure.is_none()
            && let Err(error) = self.storage.wal().sync()
        {
            error!(%error, "final sync at shutdown failed");
        }
        let answer = match &failure {
            Some(error) => {
                error!(%error, "the node stopped after a fatal error");
                NodeError::Failed(error.clone())
            }
            None => NodeError::ShuttingDown,
        };
        self.role = Role::Follower;
        // Entries already handed over are applied before the applier stops,
        // so their proposers get their real outcome. The other proposals are
        // in the log and may reach other nodes and commit there under the
        // next leader: their outcome is unknown, not "shutting down" or
        // "failed", which tell a client the command was never applied.
        self.applier.stop(&NodeError::OutcomeUnknown);
        for (_, waiter) in self.take_collected() {
            let _ = waiter.send(Err(answer.clone()));
        }
        self.fail_reads(&answer);
        self.requests.close();
        while let Ok(request) = self.requests.try_recv() {
            match request {
                Request::Propose { reply, .. } => {
                    let _ = reply.send(Err(answer.clone()));
                }
                Request::Read { reply } | Request::Admin { reply, .. } => {
                    let _ = reply.send(Err(answer.clone()));
                }
            }
        }
        self.shared.mark_stopped(failure);
        self.shutdown.cancel();
    }
}

/// The peer addresses that `AddLearner` configuration changes in `entries`
/// carry, in log order.
pub(crate) fn added_member_addresses(entries: &[Entry]) -> Vec<(u64, String)> {
    entries
        .iter()
        .filter(|entry| entry.kind == EntryKind::ConfChange)
        .filter_map(|entry| {
            let change = ConfChange::decode(&entry.data).ok()?;
            if change.kind != ConfChangeKind::AddLearner {
                return None;
            }
            let address = std::str::from_utf8(&change.context).ok()?;
            Some((change.node, address.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::first_snapshot_after;

    #[test]
    fn up_to_five_nodes_take_their_first_snapshots_apart_and_on_time_on_average() {
        let interval = 20_000;
        let firsts: Vec<u64> = (1..=5)
            .map(|id| first_snapshot_after(id, interval))
            .collect();
        assert_eq!(firsts, vec![16_000, 20_000, 24_000, 28_000, 12_000]);
        assert_eq!(firsts.iter().sum::<u64>() / 5, interval);
        // Ids five apart share a slot.
        assert_eq!(
            first_snapshot_after(6, interval),
            first_snapshot_after(1, interval)
        );
        // Tiny intervals still wait for at least one entry.
        assert_eq!(first_snapshot_after(1, 1), 1);
        assert_eq!(first_snapshot_after(5, 4), 4);
    }
}
