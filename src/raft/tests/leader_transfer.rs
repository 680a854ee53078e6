//! Leadership transfer (thesis §3.10).

use bytes::Bytes;

use super::network::Network;
use crate::raft::{Error, MessageBody, Role};

#[test]
fn thesis_3_10_transfer_to_an_up_to_date_voter_makes_it_leader() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    let term = network.status(1).term;
    network.raw(1).transfer_leader(2).unwrap();
    network.deliver_all();
    assert_eq!(network.status(2).role, Role::Leader);
    assert_eq!(network.status(2).term, term + 1);
    assert_eq!(network.status(1).role, Role::Follower);
    assert_eq!(network.status(1).leader, Some(2));
    let timeout_now = network.delivered_matching(|m| matches!(m.body, MessageBody::TimeoutNow));
    assert_eq!(timeout_now.len(), 1);
}

#[test]
fn thesis_3_10_a_lagging_target_is_caught_up_before_timeout_now() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    network.isolate(3);
    for _ in 0..5 {
        network.propose(1, b"x");
    }
    network.heal();
    network.raw(1).transfer_leader(3).unwrap();
    network.deliver_all();
    assert_eq!(network.status(3).role, Role::Leader);
    let timeout_now = network
        .delivered
        .iter()
        .position(|m| matches!(m.body, MessageBody::TimeoutNow))
        .expect("TimeoutNow sent");
    let last_append_to_3 = network
        .delivered
        .iter()
        .rposition(|m| m.to == 3 && matches!(m.body, MessageBody::AppendEntries { ref entries, .. } if !entries.is_empty()) && m.from == 1)
        .expect("entries sent to the target");
    assert!(
        last_append_to_3 < timeout_now,
        "the target was caught up first"
    );
}

#[test]
fn thesis_3_10_proposals_are_refused_during_a_transfer() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    network.isolate(2);
    network.raw(1).transfer_leader(2).unwrap();
    assert_eq!(network.status(1).transfer_target, Some(2));
    assert_eq!(
        network.raw(1).propose(Bytes::from_static(b"x")),
        Err(Error::ProposalDropped)
    );
    assert_eq!(
        network.raw(1).transfer_leader(3),
        Err(Error::TransferInProgress)
    );
}

#[test]
fn thesis_3_10_a_transfer_is_abandoned_after_an_election_timeout() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    network.isolate(2);
    network.raw(1).transfer_leader(2).unwrap();
    for _ in 0..10 {
        network.tick(1, 1);
        network.deliver_all();
    }
    let status = network.status(1);
    assert_eq!(status.role, Role::Leader);
    assert_eq!(status.transfer_target, None);
    network
        .raw(1)
        .propose(Bytes::from_static(b"accepted again"))
        .unwrap();
}

#[test]
fn thesis_3_10_only_a_voter_can_receive_leadership() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    assert_eq!(
        network.raw(1).transfer_leader(9),
        Err(Error::InvalidTransferTarget(9))
    );
    assert_eq!(
        network.raw(2).transfer_leader(3),
        Err(Error::NotLeader {
            leader_hint: Some(1)
        })
    );
}

#[test]
fn thesis_3_10_timeout_now_bypasses_the_leader_lease_of_other_voters() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    // Node 3 hears from the leader right up to the transfer.
    network.tick(1, 2);
    network.deliver_all();
    network.raw(1).transfer_leader(2).unwrap();
    network.deliver_all();
    assert_eq!(network.status(2).role, Role::Leader);
    assert_eq!(network.status(3).leader, Some(2));
}
