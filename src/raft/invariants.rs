//! Raft's safety properties (Raft Figure 3) as a checker that a simulation
//! feeds with every [`Ready`] of every server.
//!
//! The checker keeps a shadow of each server's log in which every entry is
//! summarized by a chain hash over the whole log up to it. Two logs with the
//! same chain hash at an index are identical up to that index, so each
//! property is checked in constant time per entry:
//!
//! - **Election Safety**: at most one leader per term.
//! - **Leader Append-Only**: a leader never overwrites or deletes entries in
//!   its own term.
//! - **Log Matching**: entries with the same index and term have the same
//!   chain hash everywhere and at all times.
//! - **Leader Completeness**: a leader's log holds every entry committed by
//!   the leaders of earlier terms.
//! - **State Machine Safety**: every server applies the same entry at each
//!   index, in order without gaps, and only committed entries.
//! - **Commit monotonicity**: a server's commit index never decreases during
//!   one run of the process.
//!
//! Feed it: [`InvariantChecker::start_node`] whenever a server starts or
//! restarts (with what its store holds), then
//! [`InvariantChecker::observe_ready`] after every
//! [`RawNode::ready`](super::RawNode::ready), with the
//! [`Status`] taken right after it. The checker must see every
//! server from the beginning of the cluster.

use std::collections::BTreeMap;
use std::fmt;

use super::entry::{Entry, EntryKind, HardState, NodeId};
use super::ready::Ready;
use super::snapshot::{BOOTSTRAP_INDEX, BOOTSTRAP_TERM, SnapshotMeta};
use super::status::{Role, Status};

/// The property a [`Violation`] breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invariant {
    /// Two leaders in one term.
    ElectionSafety,
    /// A leader changed its own log in its term.
    LeaderAppendOnly,
    /// Two different entries with one index and term, or a snapshot that
    /// matches no known entry.
    LogMatching,
    /// A leader lacks an entry committed in an earlier term.
    LeaderCompleteness,
    /// Servers applied different entries at one index, out of order, or
    /// uncommitted ones; or committed different entries.
    StateMachineSafety,
    /// A commit index went backwards, or past the end of the log.
    CommitIndex,
    /// The checker's shadow no longer agrees with the server (a harness fault).
    ShadowMismatch,
}

/// A broken invariant, with enough detail to debug the run that broke it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which property.
    pub invariant: Invariant,
    /// The server where it was observed.
    pub node: NodeId,
    /// What exactly went wrong.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{:?} violated on node {}: {}",
            self.invariant, self.node, self.detail
        )
    }
}

impl std::error::Error for Violation {}

/// Chain hash of the bootstrap snapshot every founding member starts from.
const BOOTSTRAP_CHAIN: u64 = 0x5EED_B007_57A9_0001;

/// A 64-bit hash of `data` (FNV-1a followed by a SplitMix64 finalizer).
pub fn hash_bytes(data: &[u8]) -> u64 {
    let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
    for byte in data {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    mix(hash)
}

fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    value ^ (value >> 31)
}

/// The chain hash of `entry` following an entry whose chain hash is `previous`.
pub fn chain_hash(previous: u64, entry: &Entry) -> u64 {
    let kind = match entry.kind {
        EntryKind::Normal => 1,
        EntryKind::ConfChange => 2,
    };
    let mut value = mix(previous ^ entry.index.rotate_left(17));
    value = mix(value ^ entry.term.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ kind);
    mix(value ^ hash_bytes(&entry.data))
}

/// The checker's copy of one server's log and progress.
#[derive(Debug, Clone)]
struct Shadow {
    base_index: u64,
    base_term: u64,
    base_chain: u64,
    /// `(term, chain hash)` of the entries after the base.
    entries: Vec<(u64, u64)>,
    role: Role,
    term: u64,
    commit: u64,
    applied_index: u64,
    applied_chain: u64,
}

impl Shadow {
    fn last_index(&self) -> u64 {
        self.base_index + self.entries.len() as u64
    }

    /// `(term, chain)` at `index`, if the shadow covers it.
    fn at(&self, index: u64) -> Option<(u64, u64)> {
        if index == self.base_index {
            return Some((self.base_term, self.base_chain));
        }
        if index < self.base_index {
            return None;
        }
        self.entries
            .get((index - self.base_index - 1) as usize)
            .copied()
    }
}

/// Checks the Raft safety properties over every server of one cluster.
#[derive(Debug, Clone)]
pub struct InvariantChecker {
    leaders: BTreeMap<u64, NodeId>,
    /// Every entry ever seen in any log: `(index, term)` to chain hash.
    entry_chains: BTreeMap<(u64, u64), u64>,
    /// For each leader term, the highest commit index its leader reached.
    commit_by_leader_term: BTreeMap<u64, u64>,
    /// Chain hash of the committed entry at each index.
    committed_chains: BTreeMap<u64, u64>,
    /// `(term, chain hash)` of the entry applied at each index.
    applied_entries: BTreeMap<u64, (u64, u64)>,
    nodes: BTreeMap<NodeId, Shadow>,
}

impl Default for InvariantChecker {
    fn default() -> Self {
        Self::new()
    }
}

impl InvariantChecker {
    /// A checker for a cluster whose founding members start from the
    /// bootstrap snapshot.
    pub fn new() -> Self {
        let mut entry_chains = BTreeMap::new();
        entry_chains.insert((0, 0), 0);
        entry_chains.insert((BOOTSTRAP_INDEX, BOOTSTRAP_TERM), BOOTSTRAP_CHAIN);
        let mut committed_chains = BTreeMap::new();
        committed_chains.insert(BOOTSTRAP_INDEX, BOOTSTRAP_CHAIN);
        let mut applied_entries = BTreeMap::new();
        applied_entries.insert(BOOTSTRAP_INDEX, (BOOTSTRAP_TERM, BOOTSTRAP_CHAIN));
        InvariantChecker {
            leaders: BTreeMap::new(),
            entry_chains,
            commit_by_leader_term: BTreeMap::new(),
            committed_chains,
            applied_entries,
            nodes: BTreeMap::new(),
        }
    }

    fn violation(invariant: Invariant, node: NodeId, detail: String) -> Violation {
        Violation {
            invariant,
            node,
            detail,
        }
    }

    /// Chain hash of the known entry at `(index, term)`.
    fn known_chain(&self, node: NodeId, index: u64, term: u64) -> Result<u64, Violation> {
        self.entry_chains
            .get(&(index, term))
            .copied()
            .ok_or_else(|| {
                Self::violation(
                    Invariant::LogMatching,
                    node,
                    format!("snapshot at index {index} term {term} matches no entry ever seen"),
                )
            })
    }

    /// Records `entry` following `previous` in some log and checks Log
    /// Matching against every log seen so far.
    fn record_entry(
        &mut self,
        node: NodeId,
        previous: u64,
        entry: &Entry,
    ) -> Result<u64, Violation> {
        let chain = chain_hash(previous, entry);
        match self.entry_chains.get(&(entry.index, entry.term)) {
            Some(known) if *known != chain => Err(Self::violation(
                Invariant::LogMatching,
                node,
                format!(
                    "entry at index {} term {} differs from one seen before (or its prefix does)",
                    entry.index, entry.term
                ),
            )),
            Some(_) => Ok(chain),
            None => {
                self.entry_chains.insert((entry.index, entry.term), chain);
                Ok(chain)
            }
        }
    }

    /// A server starts or restarts with what its store holds: the latest
    /// snapshot, the log after it and the hard state. Its state machine is
    /// rebuilt from the snapshot.
    pub fn start_node(
        &mut self,
        node: NodeId,
        snapshot: &SnapshotMeta,
        entries: &[Entry],
        hard_state: &HardState,
    ) -> Result<(), Violation> {
        let base_chain = self.known_chain(node, snapshot.index, snapshot.term)?;
        let mut shadow = Shadow {
            base_index: snapshot.index,
            base_term: snapshot.term,
            base_chain,
            entries: Vec::with_capacity(entries.len()),
            role: Role::Follower,
            term: hard_state.term,
            commit: hard_state.commit.max(snapshot.index),
            applied_index: snapshot.index,
            applied_chain: base_chain,
        };
        let mut previous = base_chain;
        for (offset, entry) in entries.iter().enumerate() {
            if entry.index != snapshot.index + 1 + offset as u64 {
                return Err(Self::violation(
                    Invariant::ShadowMismatch,
                    node,
                    format!("stored log has a gap at index {}", entry.index),
                ));
            }
            previous = self.record_entry(node, previous, entry)?;
            shadow.entries.push((entry.term, previous));
        }
        self.nodes.insert(node, shadow);
        Ok(())
    }

    /// Checks everything a Ready reveals. `status` is taken right after
    /// [`RawNode::ready`](super::RawNode::ready) returned `ready`.
    pub fn observe_ready(
        &mut self,
        node: NodeId,
        status: &Status,
        ready: &Ready,
    ) -> Result<(), Violation> {
        let Some(mut shadow) = self.nodes.remove(&node) else {
            return Err(Self::violation(
                Invariant::ShadowMismatch,
                node,
                "observed a server that was never started".to_string(),
            ));
        };
        let result = self.observe_into(node, &mut shadow, status, ready);
        self.nodes.insert(node, shadow);
        result
    }

    fn observe_into(
        &mut self,
        node: NodeId,
        shadow: &mut Shadow,
        status: &Status,
        ready: &Ready,
    ) -> Result<(), Violation> {
        if status.role == Role::Leader {
            let leader = *self.leaders.entry(status.term).or_insert(node);
            if leader != node {
                return Err(Self::violation(
                    Invariant::ElectionSafety,
                    node,
                    format!("node {leader} already led term {}", status.term),
                ));
            }
        }
        let leader_throughout = shadow.role == Role::Leader
            && status.role == Role::Leader
            && shadow.term == status.term;

        if let Some(snapshot) = &ready.snapshot {
            if leader_throughout {
                return Err(Self::violation(
                    Invariant::LeaderAppendOnly,
                    node,
                    format!("leader of term {} installed a snapshot", status.term),
                ));
            }
            let chain = self.known_chain(node, snapshot.meta.index, snapshot.meta.term)?;
            shadow.base_index = snapshot.meta.index;
            shadow.base_term = snapshot.meta.term;
            shadow.base_chain = chain;
            shadow.entries.clear();
            shadow.applied_index = snapshot.meta.index;
            shadow.applied_chain = chain;
            if let Some((_, applied_chain)) = self.applied_entries.get(&snapshot.meta.index)
                && *applied_chain != chain
            {
                return Err(Self::violation(
                    Invariant::StateMachineSafety,
                    node,
                    format!(
                        "snapshot at {} differs from what others applied",
                        snapshot.meta.index
                    ),
                ));
            }
        }

        if let Some(first) = ready.entries.first() {
            if leader_throughout && first.index <= shadow.last_index() {
                return Err(Self::violation(
                    Invariant::LeaderAppendOnly,
                    node,
                    format!(
                        "leader of term {} overwrote its log from index {}",
                        status.term, first.index
                    ),
                ));
            }
            if first.index <= shadow.base_index || first.index > shadow.last_index() + 1 {
                return Err(Self::violation(
                    Invariant::ShadowMismatch,
                    node,
                    format!(
                        "entries from {} do not attach to a log covering ({}, {}]",
                        first.index,
                        shadow.base_index,
                        shadow.last_index()
                    ),
                ));
            }
            let keep = (first.index - shadow.base_index - 1) as usize;
            shadow.entries.truncate(keep);
            let mut previous = shadow.at(first.index - 1).expect("attached above").1;
            for entry in &ready.entries {
                previous = self.record_entry(node, previous, entry)?;
                shadow.entries.push((entry.term, previous));
            }
        }

        if shadow.last_index() != status.last_index {
            return Err(Self::violation(
                Invariant::ShadowMismatch,
                node,
                format!(
                    "shadow log ends at {}, the server's at {}",
                    shadow.last_index(),
                    status.last_index
                ),
            ));
        }

        self.check_commit(node, shadow, status)?;
        if status.role == Role::Leader {
            self.check_leader_completeness(node, shadow, status)?;
        }
        self.check_applied(node, shadow, &ready.committed_entries)?;
        shadow.role = status.role;
        shadow.term = status.term;
        Ok(())
    }

    fn check_commit(
        &mut self,
        node: NodeId,
        shadow: &mut Shadow,
        status: &Status,
    ) -> Result<(), Violation> {
        if status.commit < shadow.commit {
            return Err(Self::violation(
                Invariant::CommitIndex,
                node,
                format!(
                    "commit index went from {} back to {}",
                    shadow.commit, status.commit
                ),
            ));
        }
        if status.commit > shadow.last_index() {
            return Err(Self::violation(
                Invariant::CommitIndex,
                node,
                format!(
                    "commit index {} is past the log end {}",
                    status.commit,
                    shadow.last_index()
                ),
            ));
        }
        let first_new = (shadow.commit + 1).max(shadow.base_index);
        for index in first_new..=status.commit {
            let (_, chain) = shadow.at(index).expect("within the shadow");
            let committed = *self.committed_chains.entry(index).or_insert(chain);
            if committed != chain {
                return Err(Self::violation(
                    Invariant::StateMachineSafety,
                    node,
                    format!("committed a different entry at index {index} than another server"),
                ));
            }
        }
        shadow.commit = status.commit;
        if status.role == Role::Leader {
            let reached = self.commit_by_leader_term.entry(status.term).or_insert(0);
            *reached = (*reached).max(status.commit);
        }
        Ok(())
    }

    fn check_leader_completeness(
        &self,
        node: NodeId,
        shadow: &Shadow,
        status: &Status,
    ) -> Result<(), Violation> {
        let required = self
            .commit_by_leader_term
            .range(..status.term)
            .map(|(_, commit)| *commit)
            .max()
            .unwrap_or(0);
        if required < shadow.base_index {
            // Compacted into this leader's snapshot, which was checked when taken.
            return Ok(());
        }
        let expected = self.committed_chains.get(&required).copied();
        let found = shadow.at(required).map(|(_, chain)| chain);
        if found.is_none() || found != expected {
            return Err(Self::violation(
                Invariant::LeaderCompleteness,
                node,
                format!(
                    "leader of term {} lacks the entry at {} committed in an earlier term",
                    status.term, required
                ),
            ));
        }
        Ok(())
    }

    fn check_applied(
        &mut self,
        node: NodeId,
        shadow: &mut Shadow,
        entries: &[Entry],
    ) -> Result<(), Violation> {
        for entry in entries {
            if entry.index != shadow.applied_index + 1 {
                return Err(Self::violation(
                    Invariant::StateMachineSafety,
                    node,
                    format!(
                        "applied index {} after {}",
                        entry.index, shadow.applied_index
                    ),
                ));
            }
            if entry.index > shadow.commit {
                return Err(Self::violation(
                    Invariant::StateMachineSafety,
                    node,
                    format!(
                        "applied index {} beyond the commit index {}",
                        entry.index, shadow.commit
                    ),
                ));
            }
            let chain = chain_hash(shadow.applied_chain, entry);
            let known = *self
                .applied_entries
                .entry(entry.index)
                .or_insert((entry.term, chain));
            if known != (entry.term, chain) {
                return Err(Self::violation(
                    Invariant::StateMachineSafety,
                    node,
                    format!(
                        "applied term {} at index {}, another server applied term {} there",
                        entry.term, entry.index, known.0
                    ),
                ));
            }
            shadow.applied_index = entry.index;
            shadow.applied_chain = chain;
        }
        Ok(())
    }

    /// Compares the shadow of `node` with the server's actual log
    /// `[first_index, first_index + entries.len())`.
    pub fn check_log(&self, node: NodeId, entries: &[Entry]) -> Result<(), Violation> {
        let shadow = self.nodes.get(&node).ok_or_else(|| {
            Self::violation(
                Invariant::ShadowMismatch,
                node,
                "unknown server".to_string(),
            )
        })?;
        for entry in entries {
            let Some((term, chain)) = shadow.at(entry.index) else {
                return Err(Self::violation(
                    Invariant::ShadowMismatch,
                    node,
                    format!("shadow lacks index {}", entry.index),
                ));
            };
            let previous = shadow.at(entry.index - 1).map(|(_, chain)| chain);
            if term != entry.term
                || previous.map(|previous| chain_hash(previous, entry)) != Some(chain)
            {
                return Err(Self::violation(
                    Invariant::ShadowMismatch,
                    node,
                    format!("shadow differs from the log at index {}", entry.index),
                ));
            }
        }
        Ok(())
    }

    /// The highest index `node` has applied in its current run.
    pub fn applied_index(&self, node: NodeId) -> u64 {
        self.nodes
            .get(&node)
            .map_or(0, |shadow| shadow.applied_index)
    }

    /// The term of the entry applied at `index` by any server, if any has.
    pub fn applied_term(&self, index: u64) -> Option<u64> {
        self.applied_entries.get(&index).map(|(term, _)| *term)
    }

    /// The leader of each term seen so far.
    pub fn leaders(&self) -> &BTreeMap<u64, NodeId> {
        &self.leaders
    }
}
