//! Crash, tear, bit-flip, EIO and ENOSPC matrices on the fault-injecting
//! fake disk (a real disk cannot be made to lose its page cache on demand).

mod common;

use std::sync::Arc;

use common::*;
use raftq_storage::{CompletedIntent, CrashMode, Error, SnapshotStore, Wal};

/// Opens after a crash and checks the invariants every crash must keep:
/// recovery succeeds, every record durable before the crash is there, and
/// the log holds exactly `expected(i)` for each index it kept.
fn recover_and_check(disk: &FakeDisk, durable: u64, expected: &dyn Fn(u64) -> Vec<u8>) -> Wal {
    let wal = match open(disk) {
        Ok(wal) => wal,
        Err(error) => panic!("recovery failed: {error}"),
    };
    assert!(
        wal.last_index() >= durable,
        "durable record lost: last {} < {durable}",
        wal.last_index()
    );
    for index in wal.first_index()..=wal.last_index() {
        assert_eq!(wal.read(index).unwrap(), expected(index), "record {index}");
    }
    wal
}

/// After recovery, appending continues, and nothing from before the cut
/// reappears behind the new records after another crash.
fn append_again_and_crash(disk: &FakeDisk, wal: Wal) {
    let next = wal.last_index() + 1;
    wal.append(&[b"x".to_vec()]).unwrap();
    wal.sync().unwrap();
    wal.append(&[b"unsynced".to_vec()]).unwrap();
    drop(wal);
    disk.vfs.crash();
    let wal = open(disk).unwrap();
    assert_eq!(
        wal.last_index(),
        next,
        "a stale record reappeared after the cut"
    );
    assert_eq!(wal.read(next).unwrap().as_ref(), b"x");
}

#[test]
fn crash_at_every_byte_of_the_last_batch_keeps_every_durable_record() {
    let disk = FakeDisk::new(1);
    let wal = open(&disk).unwrap();
    append_range(&wal, 1..24);
    wal.sync().unwrap();
    // This batch crosses a segment boundary, so the seal, the spare segment
    // and the not-yet-written header are all inside the torn region.
    let batch: Vec<Vec<u8>> = (24..44).map(payload).collect();
    wal.append(&batch).unwrap();
    let unsynced_bytes = disk.vfs.unsynced_bytes();
    assert!(unsynced_bytes > 2000, "batch of {unsynced_bytes} bytes");
    for kept_bytes in 0..=unsynced_bytes {
        let crashed = disk.fork();
        crashed
            .vfs
            .crash_with(CrashMode::KeepUnsyncedPrefix { bytes: kept_bytes });
        let recovered = recover_and_check(&crashed, 23, &payload);
        append_again_and_crash(&crashed, recovered);
    }
}

#[test]
fn crash_with_random_page_loss_never_loses_a_durable_record() {
    for seed in 0..300 {
        let disk = FakeDisk::new(seed);
        let wal = open(&disk).unwrap();
        let durable_count = 5 + seed % 40;
        append_range(&wal, 1..durable_count + 1);
        wal.sync().unwrap();
        let unsynced_count = 1 + seed % 37;
        for index in durable_count + 1..=durable_count + unsynced_count {
            wal.append(&[payload(index)]).unwrap();
        }
        drop(wal);
        disk.vfs.crash_with(CrashMode::KeepRandomPages);
        let recovered = recover_and_check(&disk, durable_count, &payload);
        append_again_and_crash(&disk, recovered);
    }
}

#[test]
fn a_crash_during_any_sync_of_a_rollover_recovers_the_durable_prefix() {
    for failing_sync in 0..4 {
        for crash_mode in [CrashMode::LoseUnsynced, CrashMode::KeepRandomPages] {
            let disk = FakeDisk::new(failing_sync);
            let wal = open(&disk).unwrap();
            append_range(&wal, 1..25);
            wal.sync().unwrap();
            let segments_before = live_segment_names(&disk).len();
            // Crosses into the next segment: the sync must make the seal
            // durable, then write and sync the new segment's header.
            append_range(&wal, 25..45);
            disk.vfs.fail_sync_after(failing_sync);
            let synced = wal.sync();
            drop(wal);
            disk.vfs.cancel_sync_failure();
            disk.vfs.crash_with(crash_mode);
            let durable = if synced.is_ok() { 44 } else { 24 };
            let wal = recover_and_check(&disk, durable, &payload);
            if synced.is_ok() {
                assert!(live_segment_names(&disk).len() > segments_before);
            }
            append_again_and_crash(&disk, wal);
        }
    }
}

#[test]
fn bit_flips_in_the_last_unsynced_batch_are_cut() {
    let disk = FakeDisk::new(4);
    let wal = open(&disk).unwrap();
    append_range(&wal, 1..6);
    wal.sync().unwrap();
    append_range(&wal, 6..11);
    drop(wal);
    // Every unsynced byte reached the disk, but no sync completed: the
    // records 6..=10 carry batch first index 6.
    disk.vfs
        .crash_with(CrashMode::KeepUnsyncedPrefix { bytes: usize::MAX });
    let tail = live_segment_names(&disk).pop().unwrap();
    let offset = record_offset(1, 7);
    for (field, delta) in [
        ("crc", 0),
        ("length", 5),
        ("index", 9),
        ("batch", 17),
        ("kind", 24),
        ("payload", 36),
    ] {
        let damaged = disk.fork();
        damaged.flip_bit(&tail, offset + delta, 6);
        let wal = open(&damaged).unwrap_or_else(|error| panic!("flip in {field}: {error}"));
        assert_log(&wal, 1, 6);
        let cut = wal.recovery_report().cut.clone().unwrap();
        assert_eq!(
            (cut.index, cut.offset),
            (7, offset as u64),
            "flip in {field}"
        );
    }
}

#[test]
fn torn_tail_then_shorter_append_then_crash_recovers_again() {
    let disk = FakeDisk::new(5);
    let wal = open(&disk).unwrap();
    append_range(&wal, 1..4);
    wal.sync().unwrap();
    wal.append(&[vec![0xA1; 300], vec![0xA2; 300]]).unwrap();
    drop(wal);
    // Keep the first record whole and tear the second.
    disk.vfs.crash_with(CrashMode::KeepUnsyncedPrefix {
        bytes: 32 + 300 + 40,
    });
    let wal = open(&disk).unwrap();
    assert_eq!(wal.last_index(), 4);
    assert!(wal.recovery_report().cut.is_some());
    // A shorter record where the torn one was; then crash before syncing.
    wal.append(&[b"short".to_vec()]).unwrap();
    drop(wal);
    disk.vfs.crash();
    let wal = open(&disk).unwrap();
    assert_eq!(
        wal.last_index(),
        4,
        "the torn record's remains must not validate"
    );
    assert_eq!(
        wal.recovery_report().cut,
        None,
        "the cut was zeroed and synced the first time"
    );
    assert_records(&wal, 1..=3);
    wal.append(&[b"short".to_vec()]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    disk.vfs.crash();
    let wal = open(&disk).unwrap();
    assert_eq!(wal.read(5).unwrap().as_ref(), b"short");
}

#[test]
fn records_removed_by_truncation_never_reappear_after_a_crash() {
    let disk = FakeDisk::new(6);
    let wal = open(&disk).unwrap();
    append_range(&wal, 1..30);
    wal.sync().unwrap();
    wal.truncate_suffix(10).unwrap();
    wal.append(&[other_payload(10), other_payload(11)]).unwrap();
    let unsynced_bytes = disk.vfs.unsynced_bytes();
    let expected = |index: u64| {
        if index < 10 {
            payload(index)
        } else {
            other_payload(index)
        }
    };
    for kept_bytes in 0..=unsynced_bytes {
        let crashed = disk.fork();
        crashed
            .vfs
            .crash_with(CrashMode::KeepUnsyncedPrefix { bytes: kept_bytes });
        let wal = recover_and_check(&crashed, 9, &expected);
        assert!(wal.last_index() <= 11);
    }
}

#[test]
fn a_crash_at_every_step_of_a_truncation_leaves_the_old_or_the_new_log() {
    let mut outcomes = std::collections::BTreeSet::new();
    for successful_syncs in 0..20 {
        let disk = FakeDisk::new(7);
        let wal = open(&disk).unwrap();
        append_range(&wal, 1..120);
        wal.sync().unwrap();
        disk.vfs.fail_sync_after(successful_syncs);
        let truncated = wal.truncate_suffix(40);
        drop(wal);
        disk.vfs.cancel_sync_failure();
        disk.vfs.crash_with(CrashMode::KeepRandomPages);
        let wal = recover_and_check(&disk, 39, &payload);
        if truncated.is_ok() {
            assert_eq!(wal.last_index(), 39);
            // Stopped before the intent was durable, and stopped after it
            // (recovery finished the truncation): both were exercised.
            assert_eq!(outcomes, ["finished by recovery", "not started"].into());
            return;
        }
        assert!(matches!(truncated, Err(Error::Io { .. })), "{truncated:?}");
        match wal.recovery_report().completed_intent {
            Some(intent) => {
                assert_eq!(intent, CompletedIntent::TruncateSuffix { index: 40 });
                assert_eq!(wal.last_index(), 39);
                outcomes.insert("finished by recovery");
            }
            None => {
                assert_eq!(wal.last_index(), 119, "step {successful_syncs}");
                outcomes.insert("not started");
            }
        }
    }
    panic!("the truncation never completed");
}

#[test]
fn a_crash_at_every_step_of_a_reset_leaves_the_old_or_the_new_log() {
    let mut outcomes = std::collections::BTreeSet::new();
    for successful_syncs in 0..20 {
        let disk = FakeDisk::new(8);
        let wal = open(&disk).unwrap();
        append_range(&wal, 1..60);
        wal.sync().unwrap();
        disk.vfs.fail_sync_after(successful_syncs);
        let reset = wal.reset_to(1000);
        drop(wal);
        disk.vfs.cancel_sync_failure();
        disk.vfs.crash_with(CrashMode::KeepRandomPages);
        let wal = open(&disk).unwrap();
        let range = (wal.first_index(), wal.last_index());
        if reset.is_ok() {
            assert_eq!(range, (1000, 999));
            assert_eq!(outcomes, ["finished by recovery", "not started"].into());
            return;
        }
        match wal.recovery_report().completed_intent {
            Some(intent) => {
                assert_eq!(intent, CompletedIntent::Reset { next_index: 1000 });
                assert_eq!(range, (1000, 999));
                outcomes.insert("finished by recovery");
            }
            None => {
                assert_log(&wal, 1, 59);
                outcomes.insert("not started");
            }
        }
    }
    panic!("the reset never completed");
}

#[test]
fn a_crash_at_every_step_of_a_compaction_leaves_a_contiguous_log() {
    for successful_syncs in 0..20 {
        let disk = FakeDisk::new(9);
        let wal = open(&disk).unwrap();
        append_range(&wal, 1..200);
        wal.sync().unwrap();
        disk.vfs.fail_sync_after(successful_syncs);
        let compacted = wal.compact_prefix(150);
        drop(wal);
        disk.vfs.cancel_sync_failure();
        disk.vfs.crash();
        let wal = recover_and_check(&disk, 199, &payload);
        assert_eq!(wal.last_index(), 199);
        if compacted.is_ok() {
            return;
        }
    }
    panic!("the compaction never completed");
}

#[test]
fn a_failed_sync_poisons_the_log_until_it_is_reopened() {
    let disk = FakeDisk::new(10);
    let wal = open(&disk).unwrap();
    append_range(&wal, 1..6);
    wal.sync().unwrap();
    append_range(&wal, 6..9);
    disk.vfs.fail_next_sync();
    assert!(matches!(wal.sync(), Err(Error::Io { .. })));
    assert_eq!(
        wal.durable_index(),
        5,
        "the watermark never covers a failed sync"
    );
    assert!(matches!(
        wal.append(&[b"more".to_vec()]),
        Err(Error::Poisoned)
    ));
    assert!(matches!(wal.read(1), Err(Error::Poisoned)));
    assert!(matches!(wal.sync(), Err(Error::Poisoned)));
    assert!(matches!(wal.truncate_suffix(3), Err(Error::Poisoned)));
    assert!(matches!(wal.compact_prefix(3), Err(Error::Poisoned)));
    assert!(matches!(wal.set_hard_state(b"x"), Err(Error::Poisoned)));
    assert!(matches!(
        wal.append_durable(&[b"x".to_vec()]),
        Err(Error::Poisoned)
    ));
    drop(wal);
    disk.vfs.crash();
    let wal = recover_and_check(&disk, 5, &payload);
    append_range(&wal, wal.last_index() + 1..20);
    wal.sync().unwrap();
}

#[test]
fn every_waiting_writer_sees_a_failed_group_commit() {
    let disk = FakeDisk::new(11);
    let wal = Arc::new(open(&disk).unwrap());
    let writers = 6;
    let appended = Arc::new(std::sync::Barrier::new(writers));
    disk.vfs.fail_next_sync();
    let threads: Vec<_> = (0..writers)
        .map(|writer| {
            let wal = wal.clone();
            let appended = appended.clone();
            std::thread::spawn(move || {
                let indexes = wal.append(&[payload(writer as u64)]).unwrap();
                appended.wait();
                wal.wait_durable(indexes.end - 1)
            })
        })
        .collect();
    for thread in threads {
        let result = thread.join().unwrap();
        assert!(
            matches!(result, Err(Error::Io { .. } | Error::Poisoned)),
            "{result:?}"
        );
    }
    assert_eq!(wal.durable_index(), 0);
}

#[test]
fn a_full_disk_gives_a_clear_error_and_no_corruption() {
    let disk = FakeDisk::new(12);
    let wal = open(&disk).unwrap();
    append_range(&wal, 1..20);
    wal.sync().unwrap();
    // Room for what exists and nothing more: the next rollover cannot
    // prepare a segment.
    disk.vfs.set_capacity_bytes(Some(disk.vfs.used_bytes()));
    let mut next = 20;
    let error = loop {
        match wal.append(&[payload(next)]) {
            Ok(_) => next += 1,
            Err(error) => break error,
        }
        assert!(next < 200, "never ran out of space");
    };
    assert!(matches!(error, Error::NoSpace { .. }), "{error:?}");
    // Not poisoned: what fits is still durable and readable.
    wal.sync().unwrap();
    assert_log(&wal, 1, next - 1);
    assert!(matches!(
        wal.append(&[payload(next)]),
        Err(Error::NoSpace { .. })
    ));
    let store =
        SnapshotStore::open(disk.vfs(), disk.dir().parent().unwrap().join("snapshots")).unwrap();
    assert!(matches!(
        store.save(b"meta", &[0u8; 10_000]),
        Err(Error::NoSpace { .. })
    ));
    drop(wal);
    disk.vfs.crash();
    let wal = recover_and_check(&disk, next - 1, &payload);
    assert_eq!(wal.last_index(), next - 1);
    disk.vfs.set_capacity_bytes(None);
    append_range(&wal, next..next + 40);
    wal.sync().unwrap();
    assert_log(&wal, 1, next + 39);
}

#[test]
fn a_torn_hard_state_write_keeps_the_previous_value() {
    let disk = FakeDisk::new(13);
    let wal = open(&disk).unwrap();
    wal.set_hard_state(b"term 4 vote 1").unwrap();
    wal.sync().unwrap();
    wal.set_hard_state(&[0x77; 2000]).unwrap();
    disk.vfs.fail_next_sync();
    assert!(wal.sync().is_err());
    drop(wal);
    let unsynced_bytes = disk.vfs.unsynced_bytes();
    assert!(unsynced_bytes >= 2000);
    for kept_bytes in (0..=unsynced_bytes).step_by(7).chain([unsynced_bytes]) {
        let crashed = disk.fork();
        crashed
            .vfs
            .crash_with(CrashMode::KeepUnsyncedPrefix { bytes: kept_bytes });
        let hard_state = open(&crashed).unwrap().hard_state();
        assert!(
            hard_state == b"term 4 vote 1" || hard_state == vec![0x77; 2000],
            "torn at {kept_bytes}: {} bytes",
            hard_state.len()
        );
    }
}

#[test]
fn damage_to_either_hard_state_slot_after_a_sync_keeps_the_latest_value() {
    // A vote must never roll back: after "term 5 vote 2" is durable, losing
    // or damaging one slot must not bring back "term 4 vote 1".
    let slot_bytes = raftq_storage::HARD_STATE_SLOT_BYTES;
    for slot in 0..2 {
        for zeroed in [false, true] {
            let disk = FakeDisk::new(15);
            let wal = open(&disk).unwrap();
            wal.set_hard_state(b"term 4 vote 1").unwrap();
            wal.sync().unwrap();
            wal.set_hard_state(b"term 5 vote 2").unwrap();
            wal.sync().unwrap();
            drop(wal);
            if zeroed {
                disk.overwrite(
                    raftq_storage::HARD_STATE_FILE_NAME,
                    slot * slot_bytes,
                    &vec![0; slot_bytes],
                );
            } else {
                disk.flip_bit(
                    raftq_storage::HARD_STATE_FILE_NAME,
                    slot * slot_bytes + 20,
                    3,
                );
            }
            assert_eq!(
                open(&disk).unwrap().hard_state(),
                b"term 5 vote 2",
                "slot {slot} {}",
                if zeroed {
                    "zeroed"
                } else {
                    "with a flipped bit"
                }
            );
        }
    }
}

#[test]
fn a_log_created_but_never_synced_recovers_empty() {
    let disk = FakeDisk::new(14);
    let wal = open(&disk).unwrap();
    append_range(&wal, 1..10);
    drop(wal);
    disk.vfs.crash();
    let wal = open(&disk).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (1, 0));
}
