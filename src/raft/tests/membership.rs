//! Membership changes: learners, single-server changes and their safety
//! rules (thesis §4.1–§4.2).

use bytes::Bytes;

use super::network::{Network, test_config};
use crate::raft::{
    ConfChange, ConfChangeError, ConfChangeKind, ConfState, Entry, EntryKind, Error, MemStore,
    MessageBody, Role,
};

fn change(kind: ConfChangeKind, node: u64) -> ConfChange {
    ConfChange {
        kind,
        node,
        context: Bytes::from(format!("10.0.0.{node}:7411")),
    }
}

/// A three-voter cluster led by 1 with an empty server 4 added as a learner.
fn cluster_with_learner_4() -> Network {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    network.add_node(test_config(4), MemStore::new());
    network
        .raw(1)
        .propose_conf_change(change(ConfChangeKind::AddLearner, 4))
        .unwrap();
    network.deliver_all();
    network.tick(1, 2);
    network.deliver_all();
    network
}

#[test]
fn thesis_4_2_1_a_new_learner_receives_the_log_through_a_snapshot() {
    let network = cluster_with_learner_4();
    let status = network.status(4);
    assert!(status.conf_state.is_learner(4));
    assert_eq!(status.commit, network.status(1).commit);
    assert_eq!(
        network.nodes[&4].applied.len(),
        network.nodes[&1].applied.len()
    );
    let committed_change = network.nodes[&4].applied.last().unwrap();
    assert_eq!(committed_change.kind, EntryKind::ConfChange);
    let decoded = ConfChange::decode(&committed_change.data).unwrap();
    assert_eq!(decoded.context, Bytes::from_static(b"10.0.0.4:7411"));
}

#[test]
fn thesis_4_2_1_a_learner_does_not_count_toward_commit() {
    let mut network = cluster_with_learner_4();
    network.isolate(2);
    network.isolate(3);
    let (index, _) = network.propose(1, b"needs a voter");
    assert_eq!(
        network.status(4).last_index,
        index,
        "the learner has the entry"
    );
    assert!(network.status(1).commit < index);
}

#[test]
fn thesis_4_2_1_a_learner_never_campaigns() {
    let mut network = cluster_with_learner_4();
    let term = network.status(4).term;
    network.isolate(4);
    network.tick(4, 100);
    assert_eq!(network.status(4).role, Role::Follower);
    assert_eq!(network.status(4).term, term);
}

#[test]
fn thesis_4_2_1_a_learner_is_promoted_only_once_caught_up() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    network.add_node(test_config(4), MemStore::new());
    network.isolate(4);
    network
        .raw(1)
        .propose_conf_change(change(ConfChangeKind::AddLearner, 4))
        .unwrap();
    network.deliver_all();
    assert_eq!(
        network
            .raw(1)
            .propose_conf_change(change(ConfChangeKind::PromoteLearner, 4)),
        Err(Error::LearnerNotCaughtUp { node: 4 })
    );
    network.heal();
    network.tick(1, 2);
    network.deliver_all();
    network
        .raw(1)
        .propose_conf_change(change(ConfChangeKind::PromoteLearner, 4))
        .unwrap();
    network.deliver_all();
    for id in [1, 2, 3, 4] {
        assert!(network.status(id).conf_state.is_voter(4), "node {id}");
    }
    // Four voters: a majority is three.
    network.isolate(3);
    network.isolate(4);
    let (index, _) = network.propose(1, b"two of four");
    assert!(network.status(1).commit < index);
}

#[test]
fn thesis_4_1_only_one_membership_change_may_be_uncommitted() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    network.isolate(2);
    network.isolate(3);
    network
        .raw(1)
        .propose_conf_change(change(ConfChangeKind::AddLearner, 4))
        .unwrap();
    assert_eq!(
        network
            .raw(1)
            .propose_conf_change(change(ConfChangeKind::AddLearner, 5)),
        Err(Error::ConfChangeInProgress)
    );
}

#[test]
fn thesis_4_1_a_new_leader_must_commit_an_entry_of_its_term_before_a_change() {
    let mut network = Network::new(&[1, 2, 3]);
    network.drop_if = Some(super::network::is_append_entries);
    network.elect(1);
    assert_eq!(
        network
            .raw(1)
            .propose_conf_change(change(ConfChangeKind::Remove, 3)),
        Err(Error::LeaderNotReady)
    );
    network.heal();
    network.tick(1, 2);
    network.deliver_all();
    network
        .raw(1)
        .propose_conf_change(change(ConfChangeKind::Remove, 3))
        .unwrap();
}

#[test]
fn thesis_4_1_invalid_changes_are_refused() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    assert_eq!(
        network
            .raw(1)
            .propose_conf_change(change(ConfChangeKind::AddLearner, 2)),
        Err(Error::InvalidConfChange(ConfChangeError::AlreadyMember(2)))
    );
    assert_eq!(
        network
            .raw(1)
            .propose_conf_change(change(ConfChangeKind::PromoteLearner, 3)),
        Err(Error::InvalidConfChange(ConfChangeError::NotLearner(3)))
    );
    assert_eq!(
        network
            .raw(1)
            .propose_conf_change(change(ConfChangeKind::Remove, 9)),
        Err(Error::InvalidConfChange(ConfChangeError::NotMember(9)))
    );
    assert_eq!(
        network
            .raw(2)
            .propose_conf_change(change(ConfChangeKind::Remove, 3)),
        Err(Error::NotLeader {
            leader_hint: Some(1)
        })
    );
    let single = ConfState::with_voters([1]);
    assert_eq!(
        single.apply(&change(ConfChangeKind::Remove, 1)),
        Err(ConfChangeError::LastVoter(1))
    );
}

#[test]
fn thesis_4_2_2_a_removed_leader_steps_down_once_the_change_commits() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    network
        .raw(1)
        .propose_conf_change(change(ConfChangeKind::Remove, 1))
        .unwrap();
    network.deliver_all();
    let status = network.status(1);
    assert_eq!(status.role, Role::Follower);
    assert!(!status.conf_state.contains(1));
    // The remaining voters elect a leader among themselves.
    let leader = network.elect_any(&[2, 3]);
    let (index, _) = network.propose(leader, b"without 1");
    assert_eq!(network.status(leader).commit, index);
}

#[test]
fn thesis_4_1_a_configuration_takes_effect_when_appended_and_reverts_on_truncation() {
    let mut network = Network::new(&[1, 2, 3, 4, 5]);
    network.elect(1);
    // Only node 5 receives the change, and its answer is lost.
    for id in [2, 3, 4] {
        network.blocked.insert((1, id));
    }
    network.blocked.insert((5, 1));
    network
        .raw(1)
        .propose_conf_change(change(ConfChangeKind::AddLearner, 6))
        .unwrap();
    network.deliver_all();
    assert!(
        network.status(5).conf_state.is_learner(6),
        "in force once appended"
    );
    assert!(network.status(1).commit < network.status(1).last_index);
    // Nodes 2-4, whose logs lack the change, elect a leader that overwrites it.
    network.heal();
    network.isolate(1);
    network.isolate(5);
    let leader = network.elect_any(&[2, 3, 4]);
    network.propose(leader, b"overwrites");
    network.heal();
    network.isolate(1);
    network.tick(leader, 2);
    network.deliver_all();
    let status = network.status(5);
    assert_eq!(status.leader, Some(leader));
    assert!(
        !status.conf_state.contains(6),
        "rolled back with the truncated entry"
    );
}

#[test]
fn thesis_4_1_restart_replays_configuration_changes_from_the_log() {
    let store = MemStore::new_bootstrapped([1, 2, 3]);
    store.append(&[Entry {
        term: 2,
        index: 2,
        kind: EntryKind::ConfChange,
        data: change(ConfChangeKind::AddLearner, 4).encode(),
    }]);
    let node = crate::raft::RawNode::new(test_config(1), store).unwrap();
    assert!(node.status().conf_state.is_learner(4));
}

#[test]
fn conf_change_encoding_round_trips_and_rejects_garbage() {
    let original = change(ConfChangeKind::PromoteLearner, 77);
    assert_eq!(ConfChange::decode(&original.encode()), Ok(original));
    assert!(ConfChange::decode(&Bytes::from_static(b"short")).is_err());
    let mut bad_kind = change(ConfChangeKind::Remove, 1).encode().to_vec();
    bad_kind[1] = 99;
    assert!(ConfChange::decode(&Bytes::from(bad_kind)).is_err());
}

#[test]
fn thesis_4_2_2_a_removed_server_does_not_disrupt_the_cluster() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    network.blocked.insert((1, 3));
    network
        .raw(1)
        .propose_conf_change(change(ConfChangeKind::Remove, 3))
        .unwrap();
    network.deliver_all();
    let term = network.status(1).term;
    // Node 3 never learns it was removed and keeps timing out.
    for _ in 0..10 {
        network.tick(3, 20);
        network.tick(1, 2);
        network.deliver_all();
    }
    assert_eq!(network.status(1).role, Role::Leader);
    assert_eq!(network.status(1).term, term);
    let vote_requests = network.delivered_matching(|message| {
        message.from == 3
            && matches!(
                message.body,
                MessageBody::RequestVote {
                    pre_vote: false,
                    ..
                }
            )
    });
    assert!(
        vote_requests.is_empty(),
        "PreVote never let it start a real election"
    );
}
