//! Log compaction and InstallSnapshot in chunks (Raft §7).

use bytes::Bytes;

use super::network::{Network, log_terms};
use crate::raft::{Error, MessageBody, StoreError};

/// Size of the fake state machine image the tests snapshot.
const STATE_BYTES: usize = 1000;

/// Takes a snapshot on `id` at its applied index and compacts its log.
fn snapshot_and_compact(network: &mut Network, id: u64) -> u64 {
    let node = network.node(id);
    let applied = node.raw.status().applied;
    let meta = node.raw.snapshot_meta(applied).unwrap();
    node.store
        .create_snapshot(meta, Bytes::from(vec![42u8; STATE_BYTES]))
        .unwrap();
    node.store.compact(applied);
    node.raw.compact(applied);
    applied
}

fn cluster_with_lagging_node_3(adjust: impl Fn(&mut crate::raft::Config)) -> (Network, u64) {
    let mut network = Network::with_config(&[1, 2, 3], adjust);
    network.elect(1);
    network.isolate(3);
    for _ in 0..50 {
        network
            .raw(1)
            .propose(Bytes::from_static(&[1u8; 100]))
            .unwrap();
    }
    network.deliver_all();
    let snapshot_index = snapshot_and_compact(&mut network, 1);
    (network, snapshot_index)
}

#[test]
fn raft_7_compaction_drops_the_log_before_the_snapshot() {
    let (mut network, snapshot_index) = cluster_with_lagging_node_3(|_| {});
    let status = network.status(1);
    assert_eq!(status.first_index, snapshot_index + 1);
    assert_eq!(
        network
            .raw(1)
            .log_entries(snapshot_index - 5, snapshot_index + 1),
        Err(Error::Store(StoreError::Compacted))
    );
    // The cluster keeps working after compaction.
    let (index, _) = network.propose(1, b"after compaction");
    assert_eq!(network.status(1).commit, index);
}

#[test]
fn raft_7_a_follower_too_far_behind_receives_the_snapshot_in_bounded_chunks() {
    let chunk_bytes = 256;
    let (mut network, snapshot_index) = cluster_with_lagging_node_3(|config| {
        config.snapshot_chunk_bytes = chunk_bytes;
    });
    network.heal();
    network.tick(1, 2);
    network.deliver_all();
    let chunks = network.delivered_matching(|message| {
        message.to == 3 && matches!(message.body, MessageBody::InstallSnapshot { .. })
    });
    assert!(chunks.len() >= STATE_BYTES / chunk_bytes as usize);
    for chunk in &chunks {
        if let MessageBody::InstallSnapshot { data, .. } = &chunk.body {
            assert!(data.len() as u64 <= chunk_bytes);
        }
    }
    let installed = network.nodes[&3]
        .restored_snapshot
        .clone()
        .expect("snapshot installed");
    assert_eq!(installed.meta.index, snapshot_index);
    assert_eq!(installed.data, Bytes::from(vec![42u8; STATE_BYTES]));
    assert_eq!(
        network.nodes[&3].store.snapshot_meta().index,
        snapshot_index
    );
    assert_eq!(log_terms(&network, 3), log_terms(&network, 1));
    // It then follows normal replication.
    let (index, _) = network.propose(1, b"later");
    network.tick(1, 2);
    network.deliver_all();
    assert_eq!(network.status(3).commit, index);
    assert_eq!(network.nodes[&3].applied.last().unwrap().index, index);
}

#[test]
fn raft_7_a_lost_snapshot_chunk_is_sent_again() {
    let (mut network, snapshot_index) = cluster_with_lagging_node_3(|config| {
        config.snapshot_chunk_bytes = 256;
    });
    network.heal();
    // Lose every chunk once: the first heartbeat round starts the transfer and
    // its chunk is dropped.
    network.drop_if = Some(|message| {
        matches!(
            message.body,
            MessageBody::InstallSnapshot { offset: 256, .. }
        )
    });
    network.tick(1, 2);
    network.deliver_all();
    assert!(network.nodes[&3].restored_snapshot.is_none());
    network.drop_if = None;
    for _ in 0..5 {
        network.tick(1, 2);
        network.deliver_all();
    }
    assert_eq!(
        network.nodes[&3]
            .restored_snapshot
            .as_ref()
            .map(|s| s.meta.index),
        Some(snapshot_index)
    );
}

#[test]
fn raft_7_a_snapshot_larger_than_the_follower_limit_is_refused() {
    let (mut network, _) = cluster_with_lagging_node_3(|config| {
        config.snapshot_chunk_bytes = 256;
        config.max_snapshot_bytes = 512;
    });
    network.heal();
    for _ in 0..5 {
        network.tick(1, 2);
        network.deliver_all();
    }
    assert!(network.nodes[&3].restored_snapshot.is_none());
    assert_eq!(
        network.nodes[&3].store.snapshot_meta().index,
        crate::raft::BOOTSTRAP_INDEX
    );
}
