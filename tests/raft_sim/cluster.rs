//! A cluster of Raft cores driven by one seed: a simulated network, disks
//! whose writes complete later (and are lost on a crash), a client, and the
//! invariant checker fed with every Ready.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use raftq::raft::invariants::InvariantChecker;
use raftq::raft::{
    Config, Entry, Error, HardState, MemStore, Message, NodeId, RawNode, Role, SeededRng, Snapshot,
    SnapshotMeta, StoreError,
};

use super::network::{LinkFaults, SimNetwork};

/// A node compacts its log once it has applied this many entries past its
/// last snapshot (kept low so snapshots and InstallSnapshot happen often).
pub const SNAPSHOT_THRESHOLD_ENTRIES: u64 = 100;
/// Size of the state machine image in a snapshot: a few chunks.
const SNAPSHOT_DATA_BYTES: usize = 700;
/// Chunk size of InstallSnapshot in the simulation.
const SNAPSHOT_CHUNK_BYTES: u64 = 256;
/// Percentage chance that a node's disk completes its pending writes (one
/// group commit) in a step; until then a crash loses them.
const DISK_COMPLETION_PERCENT: u64 = 50;

/// A Ready's writes and the messages waiting for them, in flight to the disk.
struct PendingWrite {
    number: u64,
    hard_state: Option<HardState>,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
    persisted_messages: Vec<Message>,
}

pub struct SimNode {
    /// None while crashed.
    pub raw: Option<RawNode<MemStore>>,
    /// What survives a crash.
    pub store: MemStore,
    pending_writes: VecDeque<PendingWrite>,
}

/// A proposal the client made and has not yet seen applied by its proposer.
struct PendingProposal {
    proposer: NodeId,
}

/// Settings every node of one run shares.
#[derive(Debug, Clone, Copy)]
pub struct NodeSettings {
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// Small batches split a leader's catch-up into many messages, so that a
    /// quorum can acknowledge old entries before the new leader's no-op.
    pub max_entries_per_message: u64,
    pub max_inflight_messages: usize,
}

impl NodeSettings {
    pub const DEFAULT: NodeSettings = NodeSettings {
        pre_vote: true,
        check_quorum: true,
        max_entries_per_message: 8,
        max_inflight_messages: 4,
    };
}

pub struct SimCluster {
    pub rng: SeededRng,
    pub now: u64,
    pub nodes: BTreeMap<NodeId, SimNode>,
    pub network: SimNetwork,
    pub checker: InvariantChecker,
    /// A hash over every event, to compare two runs of one seed.
    pub trace_hash: u64,
    pub settings: NodeSettings,
    proposals: BTreeMap<(u64, u64), PendingProposal>,
    /// Proposals whose proposer applied them: `(index, term)`.
    pub acknowledged: Vec<(u64, u64)>,
    next_payload: u64,
    /// Reads in flight: `(leader, context)` to the highest acknowledged index
    /// when the read was issued; the answer must not be older.
    reads: BTreeMap<(NodeId, u64), u64>,
    next_read_context: u64,
    pub reads_answered: u64,
    pub snapshots_installed: u64,
    /// Print every delivered message and role change (`RAFT_SIM_TRACE=1`).
    trace: bool,
}

fn mix(trace: u64, value: u64) -> u64 {
    let mut mixed = (trace ^ value).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    mixed ^= mixed >> 29;
    mixed
}

impl SimCluster {
    pub fn new(
        seed: u64,
        voters: &[NodeId],
        faults: LinkFaults,
        settings: NodeSettings,
    ) -> Result<Self, String> {
        let mut cluster = SimCluster {
            rng: SeededRng::new(seed),
            now: 0,
            nodes: BTreeMap::new(),
            network: SimNetwork::new(faults),
            checker: InvariantChecker::new(),
            trace_hash: seed,
            settings,
            proposals: BTreeMap::new(),
            acknowledged: Vec::new(),
            next_payload: 0,
            reads: BTreeMap::new(),
            next_read_context: 0,
            reads_answered: 0,
            snapshots_installed: 0,
            trace: std::env::var_os("RAFT_SIM_TRACE").is_some(),
        };
        for id in voters {
            let store = MemStore::new_bootstrapped(voters.iter().copied());
            cluster.nodes.insert(
                *id,
                SimNode {
                    raw: None,
                    store,
                    pending_writes: VecDeque::new(),
                },
            );
            cluster.start(*id)?;
        }
        Ok(cluster)
    }

    fn config(&mut self, id: NodeId) -> Config {
        let mut config = Config::new(id);
        config.election_timeout_ticks = 10;
        config.heartbeat_interval_ticks = 2;
        config.max_entries_per_message = self.settings.max_entries_per_message;
        config.max_inflight_messages = self.settings.max_inflight_messages;
        config.snapshot_chunk_bytes = SNAPSHOT_CHUNK_BYTES;
        config.max_snapshot_bytes = 64 * 1024;
        config.pre_vote = self.settings.pre_vote;
        config.check_quorum = self.settings.check_quorum;
        config.seed = self.rng.next_u64();
        config
    }

    /// Starts (or restarts) a node from what its store holds.
    pub fn start(&mut self, id: NodeId) -> Result<(), String> {
        let config = self.config(id);
        let node = self.nodes.get_mut(&id).expect("known node");
        assert!(node.raw.is_none(), "node {id} is already running");
        let store = node.store.clone();
        node.raw = Some(RawNode::new(config, store.clone()).map_err(|e| e.to_string())?);
        self.checker
            .start_node(
                id,
                &store.snapshot_meta(),
                &store.all_entries(),
                &store.hard_state(),
            )
            .map_err(|v| v.to_string())?;
        self.trace_hash = mix(self.trace_hash, 0x5747 ^ id);
        Ok(())
    }

    /// Adds a brand-new server with an empty store (it joins as a learner).
    pub fn add_empty_node(&mut self, id: NodeId) -> Result<(), String> {
        self.nodes.insert(
            id,
            SimNode {
                raw: None,
                store: MemStore::new(),
                pending_writes: VecDeque::new(),
            },
        );
        self.start(id)
    }

    /// Kills a node: everything not yet written to its store is lost.
    pub fn crash(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("known node");
        node.raw = None;
        node.pending_writes.clear();
        self.trace_hash = mix(self.trace_hash, 0xC4A5 ^ id);
    }

    pub fn is_running(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(|node| node.raw.is_some())
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    pub fn raw(&mut self, id: NodeId) -> Option<&mut RawNode<MemStore>> {
        self.nodes.get_mut(&id).and_then(|node| node.raw.as_mut())
    }

    /// The running leader with the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|(id, node)| node.raw.as_ref().map(|raw| (*id, raw.status())))
            .filter(|(_, status)| status.role == Role::Leader)
            .max_by_key(|(_, status)| status.term)
            .map(|(id, _)| id)
    }

    fn send(&mut self, message: Message) {
        self.trace_hash = mix(
            self.trace_hash,
            message.from << 32 ^ message.to << 16 ^ message.term,
        );
        let now = self.now;
        self.network.send(&mut self.rng, now, message);
    }

    /// Takes every Ready of node `id`: checks it, sends what may go now,
    /// applies, and queues the writes for the disk.
    pub fn process_ready(&mut self, id: NodeId) -> Result<(), String> {
        let now = self.now;
        loop {
            let Some(raw) = self.raw(id) else {
                return Ok(());
            };
            if !raw.has_ready() {
                return Ok(());
            }
            let ready = raw
                .ready()
                .map_err(|e| format!("at tick {now}: node {id} ready: {e}"))?;
            let status = raw.status();
            if self.trace && ready.soft_state.is_some() {
                eprintln!(
                    "{now:>5} node {id}: {:?} term {} leader {:?} commit {} last {}",
                    status.role, status.term, status.leader, status.commit, status.last_index
                );
            }
            self.checker
                .observe_ready(id, &status, &ready)
                .map_err(|violation| format!("at tick {}: {violation}", self.now))?;
            self.trace_hash = mix(
                self.trace_hash,
                id ^ ready.number << 8 ^ (ready.entries.len() as u64) << 40 ^ status.commit << 20,
            );
            for message in ready.messages {
                self.send(message);
            }
            if let Some(last) = ready.committed_entries.last() {
                let last_index = last.index;
                for entry in &ready.committed_entries {
                    if self
                        .proposals
                        .get(&(entry.index, entry.term))
                        .is_some_and(|proposal| proposal.proposer == id)
                    {
                        self.proposals.remove(&(entry.index, entry.term));
                        self.acknowledged.push((entry.index, entry.term));
                    }
                }
                self.raw(id).expect("running").on_applied(last_index);
            }
            for read in ready.read_states {
                let Some(required) = self.reads.remove(&(id, read.context)) else {
                    return Err(format!(
                        "node {id} answered an unknown read {}",
                        read.context
                    ));
                };
                if read.index < required {
                    return Err(format!(
                        "at tick {}: read {} on node {id} at index {} misses the acknowledged write at {required}",
                        self.now, read.context, read.index
                    ));
                }
                self.reads_answered += 1;
            }
            if ready.snapshot.is_some() {
                self.snapshots_installed += 1;
            }
            let nothing_to_write = ready.hard_state.is_none()
                && ready.snapshot.is_none()
                && ready.entries.is_empty()
                && ready.persisted_messages.is_empty();
            if nothing_to_write {
                continue;
            }
            let node = self.nodes.get_mut(&id).expect("known node");
            node.pending_writes.push_back(PendingWrite {
                number: ready.number,
                hard_state: ready.hard_state,
                snapshot: ready.snapshot,
                entries: ready.entries,
                persisted_messages: ready.persisted_messages,
            });
        }
    }

    /// Completes node `id`'s oldest pending write, then sends the messages
    /// that waited for it.
    fn complete_write(&mut self, id: NodeId) -> Result<(), String> {
        let node = self.nodes.get_mut(&id).expect("known node");
        let Some(write) = node.pending_writes.pop_front() else {
            return Ok(());
        };
        if let Some(snapshot) = write.snapshot {
            node.store.apply_snapshot(snapshot);
        }
        node.store.append(&write.entries);
        if let Some(hard_state) = write.hard_state {
            node.store.set_hard_state(hard_state);
        }
        node.raw
            .as_mut()
            .expect("running")
            .on_persisted(write.number);
        for message in write.persisted_messages {
            self.send(message);
        }
        self.process_ready(id)
    }

    /// The application on node `id` takes a snapshot once enough entries
    /// were applied since the last one, and compacts the log.
    fn maybe_compact(&mut self, id: NodeId) -> Result<(), String> {
        let node = self.nodes.get_mut(&id).expect("known node");
        let Some(raw) = node.raw.as_mut() else {
            return Ok(());
        };
        let applied = raw.status().applied;
        let snapshot_index = node.store.snapshot_meta().index;
        if applied < snapshot_index + SNAPSHOT_THRESHOLD_ENTRIES {
            return Ok(());
        }
        let meta: SnapshotMeta = match raw.snapshot_meta(applied) {
            Ok(meta) => meta,
            // A newer snapshot from the leader is being installed.
            Err(Error::Store(StoreError::Compacted)) => return Ok(()),
            Err(error) => return Err(error.to_string()),
        };
        let mut data = vec![0u8; SNAPSHOT_DATA_BYTES];
        data[..8].copy_from_slice(&applied.to_le_bytes());
        node.store
            .create_snapshot(meta, Bytes::from(data))
            .map_err(|e| e.to_string())?;
        node.store.compact(applied);
        raw.compact(applied);
        Ok(())
    }

    /// One tick of simulated time: deliver what is due, complete disk
    /// writes, tick every node, take snapshots.
    pub fn step(&mut self) -> Result<(), String> {
        self.now += 1;
        while let Some(message) = self.network.next_due(self.now) {
            let to = message.to;
            self.trace_hash = mix(self.trace_hash, 0xD11 ^ to ^ message.term << 8);
            if self.trace {
                eprintln!(
                    "{:>5} {} -> {} term {}: {:?}",
                    self.now, message.from, to, message.term, message.body
                );
            }
            let now = self.now;
            let Some(raw) = self.raw(to) else {
                continue;
            };
            raw.step(message)
                .map_err(|e| format!("at tick {now}: node {to} step: {e}"))?;
            self.process_ready(to)?;
        }
        for id in self.ids() {
            if !self.is_running(id) {
                continue;
            }
            if self.rng.chance_percent(DISK_COMPLETION_PERCENT) {
                while !self.nodes[&id].pending_writes.is_empty() {
                    self.complete_write(id)?;
                }
            }
            self.raw(id).expect("running").tick();
            self.process_ready(id)?;
            self.maybe_compact(id)?;
        }
        Ok(())
    }

    /// The client sends a proposal to the current leader.
    pub fn propose(&mut self) -> Option<(u64, u64)> {
        let leader = self.leader()?;
        self.next_payload += 1;
        let payload = Bytes::copy_from_slice(&self.next_payload.to_le_bytes());
        let (index, term) = self.raw(leader)?.propose(payload).ok()?;
        self.proposals
            .insert((index, term), PendingProposal { proposer: leader });
        Some((index, term))
    }

    /// The client asks for a linearizable read: of the leader, or of a
    /// running follower that forwards it to the leader it knows (thesis
    /// §6.4.1). Either way the answer must cover every write acknowledged
    /// before the read was asked.
    pub fn read(&mut self) {
        let Some(leader) = self.leader() else {
            return;
        };
        let running: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, node)| node.raw.is_some())
            .map(|(id, _)| *id)
            .collect();
        let reader = if self.rng.chance_percent(50) {
            running[self.rng.below(running.len() as u64) as usize]
        } else {
            leader
        };
        self.next_read_context += 1;
        let context = self.next_read_context;
        let required = self
            .acknowledged
            .iter()
            .map(|(index, _)| *index)
            .max()
            .unwrap_or(0);
        if self
            .raw(reader)
            .expect("running")
            .read_index(context)
            .is_ok()
        {
            self.reads.insert((reader, context), required);
        }
    }

    /// The members of the configuration the leader has in force.
    pub fn members(&mut self, leader: NodeId) -> Vec<NodeId> {
        self.raw(leader)
            .map(|raw| raw.status().conf_state.members().collect())
            .unwrap_or_default()
    }

    /// Whether every acknowledged proposal is applied on every member.
    pub fn all_acknowledged_applied_on(&self, members: &[NodeId]) -> bool {
        let Some(highest) = self.acknowledged.iter().map(|(index, _)| *index).max() else {
            return true;
        };
        members
            .iter()
            .all(|member| self.checker.applied_index(*member) >= highest)
    }

    /// Every acknowledged proposal was applied with its own term: no
    /// acknowledged write was replaced.
    pub fn check_acknowledged_terms(&self) -> Result<(), String> {
        for (index, term) in &self.acknowledged {
            if self.checker.applied_term(*index) != Some(*term) {
                return Err(format!(
                    "acknowledged proposal at {index} (term {term}) was not the entry applied there"
                ));
            }
        }
        Ok(())
    }

    /// Compares each running node's actual log with the checker's shadow.
    pub fn check_shadows(&mut self) -> Result<(), String> {
        for id in self.ids() {
            let Some(raw) = self.raw(id) else {
                continue;
            };
            let status = raw.status();
            let entries = raw
                .log_entries(status.first_index, status.last_index + 1)
                .map_err(|e| e.to_string())?;
            self.checker
                .check_log(id, &entries)
                .map_err(|v| v.to_string())?;
        }
        Ok(())
    }

    /// One line per node, for failure reports.
    pub fn describe(&mut self) -> String {
        let mut lines = Vec::new();
        for id in self.ids() {
            match self.raw(id) {
                Some(raw) => {
                    let status = raw.status();
                    lines.push(format!(
                        "node {id}: {:?} term {} leader {:?} commit {} applied {} last {} conf {:?}",
                        status.role, status.term, status.leader, status.commit, status.applied,
                        status.last_index, status.conf_state
                    ));
                }
                None => lines.push(format!("node {id}: crashed")),
            }
        }
        lines.join("\n")
    }
}
