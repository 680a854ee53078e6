//! A small in-process cluster for unit tests: every Ready is persisted at
//! once and messages are delivered in order, unless a test blocks a link or
//! drops a kind of message.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::raft::{
    Config, Entry, HardState, MemStore, Message, MessageBody, NodeId, RawNode, ReadState, Role,
    Snapshot, Status,
};

/// Most deliveries `deliver_all` performs before declaring a livelock.
const MAX_DELIVERIES: usize = 100_000;

pub(crate) struct TestNode {
    pub(crate) raw: RawNode<MemStore>,
    pub(crate) store: MemStore,
    pub(crate) applied: Vec<Entry>,
    pub(crate) read_states: Vec<ReadState>,
    pub(crate) restored_snapshot: Option<Snapshot>,
}

pub(crate) struct Network {
    pub(crate) nodes: BTreeMap<NodeId, TestNode>,
    /// Directed links that lose every message.
    pub(crate) blocked: BTreeSet<(NodeId, NodeId)>,
    /// Messages for which this returns true are lost.
    pub(crate) drop_if: Option<fn(&Message) -> bool>,
    pub(crate) in_flight: VecDeque<Message>,
    /// Every message delivered, in order.
    pub(crate) delivered: Vec<Message>,
}

pub(crate) fn test_config(id: NodeId) -> Config {
    let mut config = Config::new(id);
    config.election_timeout_ticks = 10;
    config.heartbeat_interval_ticks = 2;
    config
}

impl Network {
    /// A cluster of founding voters `ids`.
    pub(crate) fn new(ids: &[NodeId]) -> Self {
        Self::with_config(ids, |_| {})
    }

    pub(crate) fn with_config(ids: &[NodeId], adjust: impl Fn(&mut Config)) -> Self {
        let mut network = Network {
            nodes: BTreeMap::new(),
            blocked: BTreeSet::new(),
            drop_if: None,
            in_flight: VecDeque::new(),
            delivered: Vec::new(),
        };
        for &id in ids {
            let mut config = test_config(id);
            adjust(&mut config);
            network.add_node(config, MemStore::new_bootstrapped(ids.iter().copied()));
        }
        network
    }

    pub(crate) fn add_node(&mut self, config: Config, store: MemStore) {
        let id = config.id;
        let raw = RawNode::new(config, store.clone()).expect("valid test node");
        self.nodes.insert(
            id,
            TestNode {
                raw,
                store,
                applied: Vec::new(),
                read_states: Vec::new(),
                restored_snapshot: None,
            },
        );
    }

    pub(crate) fn node(&mut self, id: NodeId) -> &mut TestNode {
        self.nodes.get_mut(&id).expect("known node")
    }

    pub(crate) fn raw(&mut self, id: NodeId) -> &mut RawNode<MemStore> {
        &mut self.node(id).raw
    }

    pub(crate) fn status(&self, id: NodeId) -> Status {
        self.nodes[&id].raw.status()
    }

    /// Persists, sends and applies everything node `id` has ready.
    pub(crate) fn process(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("known node");
        while node.raw.has_ready() {
            let ready = node.raw.ready().expect("memory store never fails");
            self.in_flight.extend(ready.messages);
            if let Some(snapshot) = &ready.snapshot {
                node.store.apply_snapshot(snapshot.clone());
                node.restored_snapshot = Some(snapshot.clone());
            }
            node.store.append(&ready.entries);
            if let Some(hard_state) = ready.hard_state {
                node.store.set_hard_state(hard_state);
            }
            node.raw.on_persisted(ready.number);
            self.in_flight.extend(ready.persisted_messages);
            if let Some(last) = ready.committed_entries.last() {
                let last_index = last.index;
                node.applied.extend(ready.committed_entries);
                node.raw.on_applied(last_index);
            }
            node.read_states.extend(ready.read_states);
        }
    }

    pub(crate) fn process_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.process(id);
        }
    }

    fn is_lost(&self, message: &Message) -> bool {
        self.blocked.contains(&(message.from, message.to))
            || !self.nodes.contains_key(&message.to)
            || self.drop_if.is_some_and(|drop_if| drop_if(message))
    }

    /// Delivers messages until the cluster is quiet.
    pub(crate) fn deliver_all(&mut self) {
        self.process_all();
        let mut deliveries = 0;
        while let Some(message) = self.in_flight.pop_front() {
            deliveries += 1;
            assert!(deliveries < MAX_DELIVERIES, "the cluster never went quiet");
            if self.is_lost(&message) {
                continue;
            }
            let to = message.to;
            self.delivered.push(message.clone());
            self.raw(to)
                .step(message)
                .expect("memory store never fails");
            self.process(to);
        }
    }

    pub(crate) fn tick(&mut self, id: NodeId, ticks: u64) {
        for _ in 0..ticks {
            self.raw(id).tick();
        }
    }

    /// Ticks node `id` until it leads, delivering after each tick.
    pub(crate) fn elect(&mut self, id: NodeId) {
        for _ in 0..100 {
            self.raw(id).tick();
            self.deliver_all();
            if self.status(id).role == Role::Leader {
                return;
            }
        }
        panic!("node {id} did not become leader: {:?}", self.status(id));
    }

    /// Ticks every node of `ids` until one of them leads; returns it.
    pub(crate) fn elect_any(&mut self, ids: &[NodeId]) -> NodeId {
        for _ in 0..200 {
            for id in ids {
                self.raw(*id).tick();
            }
            self.deliver_all();
            if let Some(leader) = ids.iter().find(|id| self.status(**id).role == Role::Leader) {
                return *leader;
            }
        }
        panic!("none of {ids:?} became leader");
    }

    pub(crate) fn propose(&mut self, id: NodeId, data: &'static [u8]) -> (u64, u64) {
        let result = self
            .raw(id)
            .propose(Bytes::from_static(data))
            .expect("proposal accepted");
        self.deliver_all();
        result
    }

    pub(crate) fn isolate(&mut self, id: NodeId) {
        let others: Vec<NodeId> = self.nodes.keys().copied().filter(|o| *o != id).collect();
        for other in others {
            self.blocked.insert((id, other));
            self.blocked.insert((other, id));
        }
    }

    pub(crate) fn heal(&mut self) {
        self.blocked.clear();
        self.drop_if = None;
    }

    /// Messages delivered so far whose body matches `predicate`.
    pub(crate) fn delivered_matching(&self, predicate: impl Fn(&Message) -> bool) -> Vec<Message> {
        self.delivered
            .iter()
            .filter(|m| predicate(m))
            .cloned()
            .collect()
    }

    /// A store preloaded with entries of the given terms from index 2 on.
    pub(crate) fn store_with_terms(voters: &[NodeId], terms: &[u64], hard_term: u64) -> MemStore {
        let store = MemStore::new_bootstrapped(voters.iter().copied());
        let entries: Vec<Entry> = terms
            .iter()
            .enumerate()
            .map(|(offset, term)| Entry {
                term: *term,
                index: 2 + offset as u64,
                kind: crate::raft::EntryKind::Normal,
                data: Bytes::new(),
            })
            .collect();
        store.append(&entries);
        store.set_hard_state(HardState {
            term: hard_term,
            vote: None,
            commit: 1,
        });
        store
    }
}

pub(crate) fn is_append_entries(message: &Message) -> bool {
    matches!(message.body, MessageBody::AppendEntries { .. })
}

/// The (index, term) pairs of a node's whole log after the bootstrap snapshot.
pub(crate) fn log_terms(network: &Network, id: NodeId) -> Vec<(u64, u64)> {
    let status = network.status(id);
    network.nodes[&id]
        .raw
        .log_entries(status.first_index, status.last_index + 1)
        .expect("log readable")
        .iter()
        .map(|entry| (entry.index, entry.term))
        .collect()
}
