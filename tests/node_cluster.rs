//! Whole nodes on loopback: real sockets, real files, the real driver.

mod common;

use std::time::Duration;

use common::{NumberCommand, TestCluster};
use raftq::node::{AdminOp, NodeError};
use raftq::raft::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_a_leader_and_replicate() {
    let cluster = TestCluster::start(3, 10_000).await;
    for value in 0..50 {
        assert_eq!(cluster.append(value).await, value as usize);
    }
    let values = cluster.converged(50).await;
    assert_eq!(values, (0..50).collect::<Vec<_>>());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_loss_elects_a_new_leader_and_the_old_one_rejoins() {
    let mut cluster = TestCluster::start(3, 10_000).await;
    for value in 0..20 {
        cluster.append(value).await;
    }
    let old_leader = cluster.leader().await;
    cluster.stop_node(old_leader).await;
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, old_leader);
    for value in 20..40 {
        cluster.append(value).await;
    }
    cluster.start_node(old_leader, false).await;
    let values = cluster.converged(40).await;
    assert_eq!(values, (0..40).collect::<Vec<_>>());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_writes_are_refused_with_the_leader_address() {
    let cluster = TestCluster::start(3, 10_000).await;
    cluster.append(1).await;
    let leader = cluster.leader().await;
    let follower = cluster
        .nodes
        .keys()
        .copied()
        .find(|id| *id != leader)
        .unwrap();
    // A follower learns the leader from its first AppendEntries or heartbeat.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cluster.nodes[&follower].node.status().leader != Some(leader) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "follower never heard from the leader"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = cluster.nodes[&follower]
        .node
        .propose(&NumberCommand::Append(2))
        .await;
    match refused {
        Err(NodeError::NotLeader {
            leader_id,
            leader_address,
        }) => {
            assert_eq!(leader_id, Some(leader));
            assert_eq!(leader_address, Some(format!("client-{leader}")));
        }
        other => panic!("expected a redirect, got {other:?}"),
    }
    cluster.shutdown().await;
}

/// Raft thesis §6.4.1: a follower serves a linearizable read by asking the
/// leader for its confirmed commit index and waiting until it has applied
/// that far, so it sees every write acknowledged before the read began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_reads_see_every_acknowledged_write() {
    let cluster = TestCluster::start(3, 10_000).await;
    let leader = cluster.leader().await;
    let followers: Vec<u64> = cluster
        .nodes
        .keys()
        .copied()
        .filter(|id| *id != leader)
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while followers
        .iter()
        .any(|id| cluster.nodes[id].node.status().leader != Some(leader))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "followers never heard from the leader"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for value in 0..20 {
        cluster.append(value).await;
        for follower in &followers {
            let node = &cluster.nodes[follower].node;
            node.read_barrier().await.expect("a follower read succeeds");
            let seen = node.read_state(|state| state.values.clone());
            assert!(
                seen.contains(&value),
                "node {follower} read {seen:?} after {value} was acknowledged"
            );
        }
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_recovers_from_its_data_dir_and_catches_up() {
    let mut cluster = TestCluster::start(3, 10_000).await;
    for value in 0..30 {
        cluster.append(value).await;
    }
    cluster.converged(30).await;
    let leader = cluster.leader().await;
    let follower = cluster
        .nodes
        .keys()
        .copied()
        .find(|id| *id != leader)
        .unwrap();
    cluster.stop_node(follower).await;
    for value in 30..60 {
        cluster.append(value).await;
    }
    cluster.start_node(follower, false).await;
    // The restarted node rebuilt the first 30 from its own log before it
    // heard from anyone, and caught up with the rest.
    let values = cluster.converged(60).await;
    assert_eq!(values, (0..60).collect::<Vec<_>>());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_far_behind_catches_up_through_a_snapshot() {
    let mut cluster = TestCluster::start(3, 20).await;
    let leader = cluster.leader().await;
    let follower = cluster
        .nodes
        .keys()
        .copied()
        .find(|id| *id != leader)
        .unwrap();
    cluster.stop_node(follower).await;
    for value in 0..200 {
        cluster.append(value).await;
    }
    // The leader has snapshotted and compacted far past the follower.
    let leader_status = cluster.nodes[&cluster.leader().await].node.status();
    assert!(leader_status.snapshot_index > 100, "{leader_status:?}");
    cluster.start_node(follower, false).await;
    let values = cluster.converged(200).await;
    assert_eq!(values, (0..200).collect::<Vec<_>>());
    let caught_up = cluster.nodes[&follower].node.status();
    assert!(
        caught_up.snapshot_index > 0,
        "follower installed no snapshot: {caught_up:?}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_and_leader_transfer_under_load_lose_nothing() {
    let mut cluster = TestCluster::start(3, 50).await;
    // Node 4 exists only in the address book until it is added.
    let port = common::free_ports(1)[0];
    cluster.addresses.insert(4, format!("127.0.0.1:{port}"));
    cluster.start_node(4, true).await;

    let mut next_value = 0u64;
    let mut append_some = async |cluster: &TestCluster, count: u64| {
        for _ in 0..count {
            cluster.append(next_value).await;
            next_value += 1;
        }
    };
    append_some(&cluster, 20).await;

    let admin = async |cluster: &TestCluster, op: AdminOp| {
        for _ in 0..200 {
            let leader = cluster.leader().await;
            match cluster.nodes[&leader].node.admin(op.clone()).await {
                Ok(()) => return,
                Err(error) => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        panic!("{op:?} never succeeded");
    };
    admin(
        &cluster,
        AdminOp::AddLearner {
            id: 4,
            peer_address: cluster.addresses[&4].clone(),
        },
    )
    .await;
    append_some(&cluster, 20).await;
    admin(&cluster, AdminOp::Promote(4)).await;
    append_some(&cluster, 20).await;
    let status = cluster.nodes[&cluster.leader().await].node.status();
    assert_eq!(status.voters, vec![1, 2, 3, 4]);

    // Remove a voter that is not the leader, then hand leadership to node 4.
    let leader = cluster.leader().await;
    let removed = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    admin(&cluster, AdminOp::Remove(removed)).await;
    cluster.stop_node(removed).await;
    append_some(&cluster, 20).await;
    let leader = cluster.leader().await;
    if leader != 4 {
        cluster.nodes[&leader]
            .node
            .admin(AdminOp::TransferLeader(4))
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while cluster.nodes[&4].node.status().role != Role::Leader {
            assert!(
                tokio::time::Instant::now() < deadline,
                "transfer did not happen"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    append_some(&cluster, 20).await;
    let values = cluster.converged(100).await;
    assert_eq!(values, (0..100).collect::<Vec<_>>());
    let status = cluster.nodes[&4].node.status();
    assert_eq!(status.voters.len(), 3);
    assert!(!status.voters.contains(&removed));
    cluster.shutdown().await;
}
