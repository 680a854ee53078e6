//! Configuration validation and the in-memory store.

use bytes::Bytes;

use crate::raft::{
    Config, ConfigError, Entry, EntryKind, Error, LogStore, MemStore, RawNode, SeededRng, Snapshot,
    StoreError,
};

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        term,
        index,
        kind: EntryKind::Normal,
        data: Bytes::from_static(b"0123456789"),
    }
}

#[test]
fn config_validation_rejects_unusable_settings() {
    assert_eq!(Config::new(0).validate(), Err(ConfigError::ZeroNodeId));
    let mut config = Config::new(1);
    config.election_timeout_ticks = config.heartbeat_interval_ticks;
    assert!(matches!(
        config.validate(),
        Err(ConfigError::ElectionTimeoutNotAboveHeartbeat { .. })
    ));
    let mut config = Config::new(1);
    config.max_inflight_messages = 0;
    assert_eq!(
        config.validate(),
        Err(ConfigError::ZeroLimit("max_inflight_messages"))
    );
    let mut config = Config::new(1);
    config.snapshot_chunk_bytes = config.max_snapshot_bytes + 1;
    assert_eq!(config.validate(), Err(ConfigError::ChunkAboveSnapshotLimit));
    assert!(matches!(
        RawNode::new(Config::new(0), MemStore::new()),
        Err(Error::Config(ConfigError::ZeroNodeId))
    ));
    assert_eq!(Config::new(1).validate(), Ok(()));
}

#[test]
fn mem_store_append_replaces_a_conflicting_suffix() {
    let store = MemStore::new_bootstrapped([1]);
    store.append(&[entry(2, 2), entry(3, 2), entry(4, 2)]);
    store.append(&[entry(3, 3)]);
    assert_eq!(store.last_index(), 3);
    assert_eq!(store.term(3), Ok(3));
    assert_eq!(store.term(1), Ok(1), "the snapshot's term stays readable");
    assert_eq!(store.term(0), Err(StoreError::Compacted));
}

#[test]
fn mem_store_entries_respect_the_byte_limit_but_return_at_least_one() {
    let store = MemStore::new_bootstrapped([1]);
    store.append(&[entry(2, 2), entry(3, 2), entry(4, 2)]);
    assert_eq!(store.entries(2, 5, 1).unwrap().len(), 1);
    assert_eq!(
        store
            .entries(2, 5, 2 * entry(2, 2).size_bytes())
            .unwrap()
            .len(),
        2
    );
    assert_eq!(store.entries(2, 5, u64::MAX).unwrap().len(), 3);
}

#[test]
fn mem_store_compaction_keeps_the_snapshot_term() {
    let store = MemStore::new_bootstrapped([1]);
    store.append(&[entry(2, 2), entry(3, 2), entry(4, 3)]);
    let mut meta = store.snapshot_meta();
    meta.index = 3;
    meta.term = 2;
    store
        .create_snapshot(meta, Bytes::from_static(b"state"))
        .unwrap();
    store.compact(3);
    assert_eq!(store.first_index(), 4);
    assert_eq!(store.term(3), Ok(2));
    assert_eq!(store.entries(2, 4, u64::MAX), Err(StoreError::Compacted));
    assert_eq!(store.entries(4, 5, u64::MAX).unwrap()[0].term, 3);
}

#[test]
fn bootstrap_snapshot_lists_the_founding_voters() {
    let snapshot = Snapshot::bootstrap([3, 1, 2]);
    assert_eq!(snapshot.meta.index, crate::raft::BOOTSTRAP_INDEX);
    assert_eq!(
        snapshot
            .meta
            .conf_state
            .voters
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
}

#[test]
fn seeded_rng_is_deterministic_and_seed_dependent() {
    let first: Vec<u64> = (0..4)
        .map({
            let mut rng = SeededRng::new(9);
            move |_| rng.next_u64()
        })
        .collect();
    let again: Vec<u64> = (0..4)
        .map({
            let mut rng = SeededRng::new(9);
            move |_| rng.next_u64()
        })
        .collect();
    let other: Vec<u64> = (0..4)
        .map({
            let mut rng = SeededRng::new(10);
            move |_| rng.next_u64()
        })
        .collect();
    assert_eq!(first, again);
    assert_ne!(first, other);
}
