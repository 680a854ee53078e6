//! ReadIndex reads (thesis §6.4).

use super::network::{Network, is_append_entries};
use crate::raft::{Error, MessageBody};

#[test]
fn thesis_6_4_a_read_is_answered_after_a_quorum_confirms_leadership() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    let (index, _) = network.propose(1, b"written");
    network.raw(1).read_index(7).unwrap();
    let ready = network.raw(1).ready().unwrap();
    assert!(ready.read_states.is_empty(), "not before a heartbeat round");
    assert!(ready.messages.iter().any(
        |m| matches!(m.body, MessageBody::Heartbeat { read_sequence, .. } if read_sequence > 0)
    ));
    network.in_flight.extend(ready.messages);
    network.deliver_all();
    let read_states = &network.nodes[&1].read_states;
    assert_eq!(read_states.len(), 1);
    assert_eq!(read_states[0].context, 7);
    assert!(read_states[0].index >= index);
}

#[test]
fn thesis_6_4_an_isolated_leader_cannot_answer_reads() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    network.isolate(1);
    network.raw(1).read_index(1).unwrap();
    network.tick(1, 4);
    network.deliver_all();
    assert!(network.nodes[&1].read_states.is_empty());
}

#[test]
fn thesis_6_4_reads_wait_until_the_leader_commits_an_entry_of_its_term() {
    let mut network = Network::new(&[1, 2, 3]);
    network.drop_if = Some(is_append_entries);
    network.elect(1);
    let term_start = network.status(1).last_index;
    network.raw(1).read_index(3).unwrap();
    network.tick(1, 2);
    network.deliver_all();
    assert!(network.nodes[&1].read_states.is_empty());
    network.heal();
    network.tick(1, 2);
    network.deliver_all();
    network.tick(1, 2);
    network.deliver_all();
    let read_states = &network.nodes[&1].read_states;
    assert_eq!(read_states.len(), 1);
    assert!(read_states[0].index >= term_start);
}

#[test]
fn thesis_6_4_a_single_voter_answers_reads_at_once() {
    let mut network = Network::new(&[1]);
    network.elect(1);
    network.raw(1).read_index(5).unwrap();
    network.process(1);
    assert_eq!(network.nodes[&1].read_states.len(), 1);
}

#[test]
fn thesis_6_4_1_a_follower_read_is_forwarded_and_covers_the_leaders_commits() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    let (index, _) = network.propose(1, b"written");
    network.deliver_all();
    network.raw(2).read_index(11).unwrap();
    let ready = network.raw(2).ready().unwrap();
    assert!(
        ready.read_states.is_empty(),
        "a follower cannot answer alone"
    );
    assert!(
        ready
            .messages
            .iter()
            .any(|m| m.to == 1 && matches!(m.body, MessageBody::ReadIndex { context: 11 }))
    );
    network.in_flight.extend(ready.messages);
    network.deliver_all();
    let read_states = &network.nodes[&2].read_states;
    assert_eq!(read_states.len(), 1);
    assert_eq!(read_states[0].context, 11);
    assert!(read_states[0].index >= index);
    assert!(
        network.nodes[&1].read_states.is_empty(),
        "the leader answers the follower, not its own caller"
    );
}

#[test]
fn thesis_6_4_1_a_forwarded_read_needs_a_quorum_behind_the_leader() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    // The leader hears only from node 2: the heartbeat round that would
    // confirm it cannot reach a quorum when node 2 is its only contact and
    // node 2's answers are dropped.
    network.isolate(3);
    network.drop_if = Some(|m| matches!(m.body, MessageBody::HeartbeatResponse { .. }));
    network.raw(2).read_index(12).unwrap();
    network.tick(1, 4);
    network.deliver_all();
    assert!(network.nodes[&2].read_states.is_empty());
}

#[test]
fn thesis_6_4_1_a_follower_without_a_leader_refuses_reads() {
    let mut network = Network::new(&[1, 2, 3]);
    assert!(matches!(
        network.raw(2).read_index(13),
        Err(Error::NotLeader { leader_hint: None })
    ));
}
