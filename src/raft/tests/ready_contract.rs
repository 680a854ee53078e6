//! The Ready contract: what may be sent before persistence and what may not,
//! and what may be applied.

use bytes::Bytes;

use super::network::Network;
use crate::raft::{Entry, EntryKind, MemStore, Message, MessageBody, RawNode, Role};

use super::network::test_config;

#[test]
fn raft_figure_2_vote_requests_and_votes_wait_for_persistence() {
    let mut config = test_config(1);
    config.pre_vote = false;
    let mut candidate = RawNode::new(config, MemStore::new_bootstrapped([1, 2, 3])).unwrap();
    for _ in 0..20 {
        candidate.tick();
    }
    let ready = candidate.ready().unwrap();
    assert_eq!(ready.hard_state.map(|state| state.vote), Some(Some(1)));
    assert!(ready.must_sync);
    assert!(ready.messages.is_empty());
    assert_eq!(ready.persisted_messages.len(), 2);

    let mut voter = RawNode::new(test_config(2), MemStore::new_bootstrapped([1, 2, 3])).unwrap();
    voter.step(ready.persisted_messages[0].clone()).unwrap();
    let ready = voter.ready().unwrap();
    assert_eq!(ready.hard_state.map(|state| state.vote), Some(Some(1)));
    assert!(ready.messages.is_empty());
    assert!(matches!(
        ready.persisted_messages[0].body,
        MessageBody::RequestVoteResponse {
            granted: true,
            pre_vote: false
        }
    ));
}

#[test]
fn raft_figure_2_append_responses_wait_for_persistence() {
    let store = MemStore::new_bootstrapped([1, 2, 3]);
    let mut follower = RawNode::new(test_config(2), store.clone()).unwrap();
    follower
        .step(Message {
            from: 1,
            to: 2,
            term: 2,
            body: MessageBody::AppendEntries {
                prev_log_index: 1,
                prev_log_term: 1,
                entries: vec![Entry {
                    term: 2,
                    index: 2,
                    kind: EntryKind::Normal,
                    data: Bytes::from_static(b"x"),
                }],
                commit: 2,
            },
        })
        .unwrap();
    let ready = follower.ready().unwrap();
    assert_eq!(ready.entries.len(), 1);
    assert!(ready.messages.is_empty());
    assert!(matches!(
        ready.persisted_messages[0].body,
        MessageBody::AppendResponse { .. }
    ));
    // Committed but not yet durable here: not applied yet.
    assert!(ready.committed_entries.is_empty());
    store.append(&ready.entries);
    follower.on_persisted(ready.number);
    let ready = follower.ready().unwrap();
    assert_eq!(ready.committed_entries.len(), 1);
    assert_eq!(ready.committed_entries[0].index, 2);
}

#[test]
fn thesis_10_2_1_leader_replicates_before_its_own_write_is_durable() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    network.raw(1).propose(Bytes::from_static(b"a")).unwrap();
    let ready = network.raw(1).ready().unwrap();
    assert_eq!(ready.entries.len(), 1);
    let appends: Vec<&Message> = ready
        .messages
        .iter()
        .filter(|message| matches!(&message.body, MessageBody::AppendEntries { entries, .. } if entries.len() == 1))
        .collect();
    assert_eq!(
        appends.len(),
        2,
        "both followers get the entry before the leader persists it"
    );
}

#[test]
fn thesis_10_2_1_leader_counts_itself_only_for_persisted_entries() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    network.isolate(3);
    let (index, _) = network.raw(1).propose(Bytes::from_static(b"a")).unwrap();
    let ready = network.raw(1).ready().unwrap();
    network.in_flight.extend(ready.messages);
    // Deliver to node 2 and back, without persisting the leader's Ready.
    while let Some(message) = network.in_flight.pop_front() {
        if network.blocked.contains(&(message.from, message.to)) {
            continue;
        }
        let to = message.to;
        network.raw(to).step(message).unwrap();
        if to != 1 {
            network.process(to);
        }
    }
    assert!(
        network.status(1).commit < index,
        "committed without its own durable copy"
    );
    let node = network.node(1);
    node.store.append(&ready.entries);
    node.raw.on_persisted(ready.number);
    assert_eq!(network.status(1).commit, index);
    assert_eq!(network.status(1).role, Role::Leader);
}

#[test]
fn ready_committed_entries_are_applied_exactly_once_in_order() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    for _ in 0..5 {
        network.propose(1, b"x");
    }
    network.tick(1, 2);
    network.deliver_all();
    for id in [1, 2, 3] {
        let indices: Vec<u64> = network.nodes[&id]
            .applied
            .iter()
            .map(|entry| entry.index)
            .collect();
        let expected: Vec<u64> = (2..=network.status(1).commit).collect();
        assert_eq!(indices, expected, "node {id}");
    }
}
