//! Snapshot round trips through the public API.

use bytes::Bytes;

use super::*;

/// A state that exercises every part of the snapshot.
fn busy_state() -> JobQueue {
    let mut state = JobQueue::new();
    apply(&mut state, START_MS, Op::Pause("paused".into()));
    let mut keyed = NewJob::new("q", &b"keyed"[..]);
    keyed.idempotency_key = Some(Bytes::from_static(b"key"));
    keyed.priority = -3;
    enqueue_job(&mut state, START_MS, keyed).unwrap();
    let mut later = NewJob::new("q", &b"later"[..]);
    later.schedule = Schedule::DelayMs(50_000);
    enqueue_job(&mut state, START_MS, later).unwrap();
    apply(
        &mut state,
        START_MS,
        session_enqueue(stamp(1, 1), b"session"),
    );
    for _ in 0..3 {
        enqueue(&mut state, START_MS + 1, "work", b"w");
    }
    let claimed = claim(&mut state, START_MS + 2, &["work"], 3);
    nack(&mut state, START_MS + 3, &claimed[0], true);
    nack(&mut state, START_MS + 3, &claimed[1], false);
    state
}

#[test]
fn a_frozen_state_encodes_as_it_was_whatever_changes_after() {
    let mut state = busy_state();
    let before = state.snapshot();
    let frozen = state.freeze();
    // Change every part a snapshot holds: jobs come and go, leases, errors,
    // keys and sessions.
    let claimed = claim(&mut state, START_MS + 10, &["work", "q"], 10);
    for job in &claimed {
        nack(&mut state, START_MS + 11, job, true);
    }
    enqueue(&mut state, START_MS + 12, "work", b"new");
    apply(
        &mut state,
        START_MS + 13,
        session_enqueue(stamp(2, 1), b"another session"),
    );
    apply(&mut state, START_MS + 14, Op::Purge("work".into()));
    assert_ne!(state.snapshot(), before, "the state did change");
    assert_eq!(frozen.encode(), before);
}

#[test]
fn snapshot_restores_an_equal_state_with_identical_bytes() {
    let state = busy_state();
    let bytes = state.snapshot();
    let restored = JobQueue::restore(&bytes).expect("own snapshot restores");
    assert_eq!(restored, state);
    assert_eq!(restored.snapshot(), bytes);
    assert_eq!(
        JobQueue::restore(&JobQueue::new().snapshot()),
        Ok(JobQueue::new())
    );
}

#[test]
fn restore_refuses_damaged_snapshots() {
    let bytes = busy_state().snapshot();
    assert_eq!(
        JobQueue::restore(&bytes[..5]),
        Err(SnapshotError::Truncated)
    );
    let mut bad_magic = bytes.clone();
    bad_magic[0] ^= 1;
    assert_eq!(JobQueue::restore(&bad_magic), Err(SnapshotError::BadMagic));
    let mut bad_version = bytes.clone();
    bad_version[4] = 9;
    assert_eq!(
        JobQueue::restore(&bad_version),
        Err(SnapshotError::UnsupportedVersion(9))
    );
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x40;
    assert_eq!(
        JobQueue::restore(&flipped),
        Err(SnapshotError::ChecksumMismatch)
    );
}
