//! The applier: applies committed entries to the state machine, answers the
//! clients that proposed them, and takes snapshots, off the driver's task.
//!
//! Applying a large batch or serializing a large state takes time that the
//! driver must not spend: it has heartbeats to send and messages to answer,
//! and a driver that stalls for an election timeout loses its leadership. So
//! the driver hands committed entries to the applier in log order and goes
//! on; the applier reports back how far it has applied (Raft thesis §10.2:
//! applying is decoupled from committing). Tasks travel through one FIFO
//! channel, so a proposal's waiters are always registered before its entry
//! is applied, and a snapshot covers exactly the entries applied before it.
//!
//! A snapshot stops applying only while the state is frozen (copied without
//! its payloads); encoding the frozen copy runs on a low-priority thread of
//! its own (`background.rs`), so clients are not kept waiting for as long
//! as a large state takes to encode.
//!
//! In production the applier runs on its own thread; in a deterministic
//! simulation the driver calls it inline, and snapshots are encoded inline
//! too.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::background::Background;
use super::entry_batch::read_batch;
use super::error::NodeError;
use super::handle::NodeShared;
use super::state_machine::StateMachine;
use crate::metrics as names;
use crate::raft::{Entry, EntryKind};

/// A client waiting for its command's outcome.
pub(crate) type Waiter<O> = oneshot::Sender<Result<O, NodeError>>;

/// What an entry proposed by this node is waiting for.
pub(crate) enum Proposed<O> {
    /// A batch of client commands, answered in order.
    Commands(Vec<Waiter<O>>),
    /// A membership change requested by an operator.
    ConfChange(oneshot::Sender<Result<(), NodeError>>),
}

/// Work for the applier, in the order the driver produced it.
pub(crate) enum ApplyTask<SM: StateMachine> {
    /// This node proposed the entry at `index` in `term`: answer its waiters
    /// when it is applied (or fail them if another term's entry is).
    Proposed {
        index: u64,
        term: u64,
        proposed: Proposed<SM::Outcome>,
    },
    /// Committed entries, in log order, each exactly once.
    Apply(Vec<Entry>),
    /// Replace the state with a durable snapshot received from the leader.
    Restore { index: u64, state: Bytes },
    /// Take a snapshot of the state as applied so far.
    Snapshot,
    /// Leadership was lost: entries not applied yet may or may not commit.
    FailPending(NodeError),
}

/// What the applier reports to the driver.
#[derive(Debug)]
pub(crate) enum ApplyEvent {
    /// Every committed entry up to this index is applied.
    Applied(u64),
    /// The state was replaced by a snapshot at this index.
    Restored(u64),
    /// The state serialized at `index`.
    Snapshot { index: u64, state: Bytes },
    /// The state machine cannot go on (an entry that does not decode, a
    /// snapshot that does not restore): the node must stop.
    Failed(String),
}

/// The applier's state.
pub(crate) struct Applier<SM: StateMachine> {
    shared: Arc<NodeShared<SM>>,
    /// Entries this node proposed that are not applied yet, by index.
    pending: BTreeMap<u64, (u64, Proposed<SM::Outcome>)>,
    applied: u64,
    events: mpsc::UnboundedSender<ApplyEvent>,
    /// The low-priority thread that encodes frozen states; `None` encodes
    /// them inline (deterministic runs).
    encoder: Option<Background>,
}

impl<SM: StateMachine> Applier<SM> {
    pub(crate) fn new(
        shared: Arc<NodeShared<SM>>,
        applied: u64,
        events: mpsc::UnboundedSender<ApplyEvent>,
    ) -> Applier<SM> {
        Applier {
            shared,
            pending: BTreeMap::new(),
            applied,
            events,
            encoder: None,
        }
    }

    /// Carries out one task. After a failure the applier only answers
    /// waiters; the driver stops the node.
    pub(crate) fn handle(&mut self, task: ApplyTask<SM>) {
        let event = match task {
            ApplyTask::Proposed {
                index,
                term,
                proposed,
            } => {
                self.pending.insert(index, (term, proposed));
                return;
            }
            ApplyTask::Apply(entries) => match self.apply(entries) {
                Ok(()) => ApplyEvent::Applied(self.applied),
                Err(error) => ApplyEvent::Failed(error),
            },
            ApplyTask::Restore { index, state } => match self.restore(index, &state) {
                Ok(()) => ApplyEvent::Restored(index),
                Err(error) => ApplyEvent::Failed(error),
            },
            ApplyTask::Snapshot => {
                let index = self.applied;
                let started = std::time::Instant::now();
                let frozen = self.shared.state_machine().freeze();
                tracing::debug!(
                    index,
                    seconds = started.elapsed().as_secs_f64(),
                    "state machine frozen for a snapshot"
                );
                match &self.encoder {
                    Some(encoder) => {
                        let events = self.events.clone();
                        encoder.run(move || {
                            let state = encode::<SM>(index, frozen);
                            let _ = events.send(ApplyEvent::Snapshot { index, state });
                        });
                        return;
                    }
                    None => ApplyEvent::Snapshot {
                        index,
                        state: encode::<SM>(index, frozen),
                    },
                }
            }
            ApplyTask::FailPending(answer) => {
                self.fail_pending(&answer);
                return;
            }
        };
        let _ = self.events.send(event);
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), String> {
        let Some(last_index) = entries.last().map(|entry| entry.index) else {
            return Ok(());
        };
        let mut state = self.shared.state_machine();
        for entry in entries {
            assert!(
                entry.index > self.applied,
                "entry {} applied twice (applied up to {})",
                entry.index,
                self.applied
            );
            let proposed = match self.pending.remove(&entry.index) {
                Some((term, proposed)) if term == entry.term => Some(proposed),
                Some((_, proposed)) => {
                    // Another leader's entry took this index: ours is gone for good.
                    fail(
                        proposed,
                        &NodeError::Dropped(
                            "another leader's entry took its place in the log".to_string(),
                        ),
                    );
                    None
                }
                None => None,
            };
            match entry.kind {
                EntryKind::Normal if entry.data.is_empty() => {}
                EntryKind::Normal => {
                    let (now_ms, commands) = read_batch(&entry.data)
                        .map_err(|error| format!("entry {}: {error}", entry.index))?;
                    let mut waiters = match proposed {
                        Some(Proposed::Commands(waiters)) => Some(waiters.into_iter()),
                        _ => None,
                    };
                    for bytes in commands {
                        let command: SM::Command =
                            postcard::from_bytes(bytes).map_err(|error| {
                                format!(
                                    "entry {} holds a command that does not decode: {error}",
                                    entry.index
                                )
                            })?;
                        let outcome = state.apply(now_ms, &command);
                        if let Some(waiter) = waiters.as_mut().and_then(Iterator::next) {
                            let _ = waiter.send(Ok(outcome));
                        }
                    }
                }
                EntryKind::ConfChange => {
                    if let Some(Proposed::ConfChange(reply)) = proposed {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
            self.applied = entry.index;
        }
        drop(state);
        debug_assert_eq!(self.applied, last_index);
        self.shared.set_applied(last_index);
        Ok(())
    }

    fn restore(&mut self, index: u64, state: &[u8]) -> Result<(), String> {
        let restored = if state.is_empty() {
            SM::empty()
        } else {
            SM::restore(state)
                .map_err(|error| format!("snapshot from the leader does not restore: {error}"))?
        };
        *self.shared.state_machine() = restored;
        self.applied = index;
        // Proposals at or below the snapshot were decided by the entries it
        // covers, which this node never saw; their outcome is unknown here.
        let covered: Vec<u64> = self
            .pending
            .range(..=index)
            .map(|(index, _)| *index)
            .collect();
        for covered_index in covered {
            if let Some((_, proposed)) = self.pending.remove(&covered_index) {
                fail(proposed, &NodeError::OutcomeUnknown);
            }
        }
        self.shared.set_applied(index);
        Ok(())
    }

    /// Answers every waiter whose entry is not applied yet.
    pub(crate) fn fail_pending(&mut self, answer: &NodeError) {
        for (_, (_, proposed)) in std::mem::take(&mut self.pending) {
            fail(proposed, answer);
        }
    }
}

/// Encodes a frozen state and says how long it took.
fn encode<SM: StateMachine>(index: u64, frozen: SM::Frozen) -> Bytes {
    let started = std::time::Instant::now();
    let state = Bytes::from(SM::encode(frozen));
    tracing::debug!(
        index,
        bytes = state.len(),
        seconds = started.elapsed().as_secs_f64(),
        "snapshot encoded"
    );
    state
}

/// Answers a proposal's waiters with an error and counts the failures.
pub(crate) fn fail<O>(proposed: Proposed<O>, answer: &NodeError) {
    match proposed {
        Proposed::Commands(waiters) => fail_all(waiters, answer),
        Proposed::ConfChange(reply) => {
            let _ = reply.send(Err(answer.clone()));
        }
    }
}

/// Answers every waiter with the same error and counts the failures.
pub(crate) fn fail_all<O>(waiters: Vec<Waiter<O>>, answer: &NodeError) {
    metrics::counter!(names::RAFT_PROPOSAL_FAILURES, "reason" => answer.reason_name())
        .increment(waiters.len() as u64);
    for waiter in waiters {
        let _ = waiter.send(Err(answer.clone()));
    }
}

/// Where the applier runs.
pub(crate) enum ApplierHandle<SM: StateMachine> {
    /// On its own thread (production).
    Thread {
        tasks: Option<std_mpsc::Sender<ApplyTask<SM>>>,
        thread: Option<std::thread::JoinHandle<Applier<SM>>>,
    },
    /// On the driver's task (deterministic simulation).
    Inline(Applier<SM>),
}

impl<SM: StateMachine> ApplierHandle<SM> {
    /// Starts an applier, on a thread unless `inline`.
    pub(crate) fn start(applier: Applier<SM>, inline: bool) -> ApplierHandle<SM> {
        if inline {
            return ApplierHandle::Inline(applier);
        }
        let (tasks, receiver) = std_mpsc::channel::<ApplyTask<SM>>();
        let thread = std::thread::Builder::new()
            .name("raftq-applier".to_string())
            .spawn(move || {
                let mut applier = applier;
                // Encoding can take a core for a while; requests come first.
                applier.encoder = Some(Background::start("raftq-snapshot"));
                while let Ok(task) = receiver.recv() {
                    applier.handle(task);
                }
                applier
            })
            .expect("spawn the applier thread");
        ApplierHandle::Thread {
            tasks: Some(tasks),
            thread: Some(thread),
        }
    }

    /// Hands a task to the applier.
    pub(crate) fn send(&mut self, task: ApplyTask<SM>) {
        match self {
            ApplierHandle::Thread { tasks, .. } => {
                if let Some(tasks) = tasks {
                    // The thread ends only when this handle closes the
                    // channel, so the send cannot fail while it is open.
                    let _ = tasks.send(task);
                }
            }
            ApplierHandle::Inline(applier) => applier.handle(task),
        }
    }

    /// Lets the applier finish what it was given, then answers every
    /// remaining waiter with `answer`.
    pub(crate) fn stop(&mut self, answer: &NodeError) {
        match self {
            ApplierHandle::Thread { tasks, thread } => {
                tasks.take();
                if let Some(thread) = thread.take()
                    && let Ok(mut applier) = thread.join()
                {
                    applier.fail_pending(answer);
                }
            }
            ApplierHandle::Inline(applier) => applier.fail_pending(answer),
        }
    }
}
