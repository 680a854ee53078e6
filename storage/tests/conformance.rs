//! One suite, every disk: each test here runs on real files (`StdVfs`, in
//! its default setup and with pwrite into zero-written segments) and on the
//! in-memory fake (`FaultVfs`).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use common::*;
use raftq_storage::{Error, SnapshotStore, Wal};

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_real_files {
            $( #[test] fn $name() { super::$name(&super::StdDisk::new()); } )*
        }
        mod on_real_files_written_with_pwrite {
            $( #[test] fn $name() { super::$name(&super::StdDisk::written_with_pwrite()); } )*
        }
        mod on_fault_vfs {
            $( #[test] fn $name() { super::$name(&super::FakeDisk::new(7)); } )*
        }
    };
}

conformance!(
    appended_records_are_readable_at_once_and_after_reopen,
    records_roll_over_into_new_segments_and_survive_reopen,
    disk_usage_counts_every_segment_file_and_its_bytes,
    a_batch_larger_than_a_segment_gets_consecutive_indexes,
    sync_reports_a_watermark_covering_every_earlier_append,
    waiting_for_an_index_past_the_log_is_an_error,
    one_sync_covers_the_appends_of_every_waiting_writer,
    concurrent_durable_appends_each_get_their_own_records,
    truncate_suffix_lets_new_records_take_the_removed_indexes,
    truncate_suffix_across_segments_removes_later_segments,
    truncate_suffix_outside_the_log_is_rejected,
    compact_prefix_removes_whole_segments_and_reopen_starts_later,
    reset_to_discards_the_log_and_continues_at_the_given_index,
    hard_state_is_durable_after_sync_and_only_then,
    a_record_above_the_maximum_is_rejected_and_nothing_is_appended,
    reading_outside_the_log_is_an_error,
    garbage_after_the_tail_is_cut_and_appends_continue,
    a_planted_record_under_another_segment_id_never_validates,
    every_bit_flip_in_a_sealed_segment_is_a_hard_error_naming_segment_offset_and_index,
    a_bit_flip_in_the_tail_before_a_later_batch_is_a_hard_error,
    a_bit_flip_in_the_final_batch_is_cut_and_reported,
    a_damaged_segment_header_is_a_hard_error,
    a_missing_tail_segment_is_detected,
    a_missing_middle_segment_is_detected,
    a_read_checks_the_crc_and_names_the_damaged_record,
    snapshots_round_trip_and_only_the_latest_is_kept,
    a_damaged_snapshot_is_rejected,
    an_abandoned_snapshot_leaves_no_file_behind,
    a_snapshot_written_back_in_pieces_round_trips_byte_for_byte,
);

fn appended_records_are_readable_at_once_and_after_reopen(disk: &dyn Disk) {
    let wal = open(disk).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (1, 0));
    append_range(&wal, 1..11);
    assert_log(&wal, 1, 10);
    let collected: Vec<_> = wal.iter(3..6).map(|entry| entry.unwrap()).collect();
    assert_eq!(
        collected
            .iter()
            .map(|(index, _)| *index)
            .collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(collected[0].1.as_ref(), payload(3).as_slice());
    assert_eq!(
        wal.with_entry(7, |bytes| bytes.len()).unwrap(),
        payload(7).len()
    );
    wal.sync().unwrap();
    drop(wal);
    let wal = open(disk).unwrap();
    assert_log(&wal, 1, 10);
    assert_eq!(wal.recovery_report().cut, None);
}

fn records_roll_over_into_new_segments_and_survive_reopen(disk: &dyn Disk) {
    let wal = open(disk).unwrap();
    append_range(&wal, 1..200);
    wal.sync().unwrap();
    assert!(
        live_segment_names(disk).len() >= 5,
        "{:?}",
        live_segment_names(disk)
    );
    drop(wal);
    let wal = open(disk).unwrap();
    assert_log(&wal, 1, 199);
    append_range(&wal, 200..260);
    wal.sync().unwrap();
    drop(wal);
    let wal = open(disk).unwrap();
    assert_log(&wal, 1, 259);
    assert_eq!(wal.recovery_report().cut, None);
}

fn disk_usage_counts_every_segment_file_and_its_bytes(disk: &dyn Disk) {
    let on_disk = || {
        let names = segment_names(disk);
        let bytes: usize = names.iter().map(|name| disk.contents(name).len()).sum();
        (names.len() as u64, bytes as u64)
    };
    let wal = open(disk).unwrap();
    let usage = wal.disk_usage();
    assert_eq!((usage.segments, usage.bytes), on_disk());
    append_range(&wal, 1..200);
    wal.sync().unwrap();
    let grown = wal.disk_usage();
    assert_eq!((grown.segments, grown.bytes), on_disk());
    assert!(grown.segments >= 5, "{grown:?}");
    assert_eq!(grown.bytes, grown.segments * SMALL_SEGMENT_BYTES as u64);
    wal.compact_prefix(150).unwrap();
    let compacted = wal.disk_usage();
    assert_eq!((compacted.segments, compacted.bytes), on_disk());
    assert!(compacted.segments < grown.segments, "{compacted:?}");
}

fn a_batch_larger_than_a_segment_gets_consecutive_indexes(disk: &dyn Disk) {
    let wal = open(disk).unwrap();
    let batch: Vec<Vec<u8>> = (1..=80).map(payload).collect();
    assert_eq!(wal.append(&batch).unwrap(), 1..81);
    assert_log(&wal, 1, 80);
    wal.sync().unwrap();
    drop(wal);
    assert_log(&open(disk).unwrap(), 1, 80);
}

fn sync_reports_a_watermark_covering_every_earlier_append(disk: &dyn Disk) {
    let wal = open(disk).unwrap();
    let mut watermark = wal.subscribe_durable();
    assert_eq!(*watermark.borrow_and_update(), 0);
    append_range(&wal, 1..6);
    assert_eq!(wal.durable_index(), 0, "nothing is durable before a sync");
    assert_eq!(wal.sync().unwrap(), 5);
    assert_eq!(wal.durable_index(), 5);
    assert!(watermark.has_changed().unwrap());
    assert_eq!(*watermark.borrow_and_update(), 5);
    assert_eq!(wal.wait_durable(5).unwrap(), 5);
}

fn waiting_for_an_index_past_the_log_is_an_error(disk: &dyn Disk) {
    let wal = open(disk).unwrap();
    append_range(&wal, 1..4);
    assert!(matches!(
        wal.wait_durable(4),
        Err(Error::IndexOutOfRange {
            index: 4,
            last_index: 3,
            ..
        })
    ));
    assert_eq!(wal.wait_durable(3).unwrap(), 3);
}

fn one_sync_covers_the_appends_of_every_waiting_writer(disk: &dyn Disk) {
    let wal = Arc::new(open(disk).unwrap());
    let writers = 8;
    let appended = Arc::new(Barrier::new(writers));
    let threads: Vec<_> = (0..writers as u64)
        .map(|writer| {
            let wal = wal.clone();
            let appended = appended.clone();
            std::thread::spawn(move || {
                let indexes = wal.append(&[payload(1000 + writer)]).unwrap();
                // Every writer appends before any of them waits, so the
                // first waiter's sync covers all of them.
                appended.wait();
                wal.wait_durable(indexes.end - 1).unwrap();
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(wal.durable_index(), writers as u64);
    assert_eq!(wal.stats().sync_batches, 1);
    assert_eq!(wal.stats().segment_syncs, 1);
}

fn concurrent_durable_appends_each_get_their_own_records(disk: &dyn Disk) {
    let wal = Arc::new(open(disk).unwrap());
    let threads: Vec<_> = (0..8u64)
        .map(|writer| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                let mut mine = BTreeMap::new();
                for sequence in 0..40u64 {
                    let record = payload(writer * 1000 + sequence);
                    let indexes = wal.append_durable(std::slice::from_ref(&record)).unwrap();
                    assert!(
                        wal.durable_index() >= indexes.start,
                        "told durable before it was"
                    );
                    mine.insert(indexes.start, record);
                }
                mine
            })
        })
        .collect();
    let mut all = BTreeMap::new();
    for thread in threads {
        all.extend(thread.join().unwrap());
    }
    assert_eq!(all.len(), 320);
    assert_eq!(
        all.keys().copied().collect::<Vec<_>>(),
        (1..=320).collect::<Vec<_>>()
    );
    let stats = wal.stats();
    assert!(stats.sync_batches <= stats.appended_records, "{stats:?}");
    drop(wal);
    let wal = open(disk).unwrap();
    for (index, record) in all {
        assert_eq!(wal.read(index).unwrap().as_ref(), record.as_slice());
    }
}

fn truncate_suffix_lets_new_records_take_the_removed_indexes(disk: &dyn Disk) {
    let wal = open(disk).unwrap();
    append_range(&wal, 1..16);
    wal.sync().unwrap();
    wal.truncate_suffix(9).unwrap();
    assert_eq!((wal.last_index(), wal.durable_index()), (8, 8));
    for index in 9..13 {
        assert_eq!(
            wal.append(&[other_payload(index)]).unwrap(),
            index..index + 1
        );
    }
    wal.sync().unwrap();
    drop(wal);
    let wal = open(disk).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (1, 12));
    assert_records(&wal, 1..=8);
    for index in 9..13 {
        assert_eq!(
            wal.read(index).unwrap().as_ref(),
            other_payload(index).as_slice()
        );
    }
    assert!(
        !disk
            .file_names()
            .iter()
            .any(|name| name == raftq_storage::INTENT_FILE_NAME)
    );
}

fn truncate_suffix_across_segments_removes_later_segments(disk: &dyn Disk) {
    let wal = open(disk).unwrap();
    append_range(&wal, 1..200);
    wal.sync().unwrap();
    let before = live_segment_names(disk).len();
    wal.truncate_suffix(30).unwrap();
    assert!(live_segment_names(disk).len() < before);
    assert_log(&wal, 1, 29);
    append_range(&wal, 30..60);
    wal.sync().unwrap();
    drop(wal);
    assert_log(&open(disk).unwrap(), 1, 59);
}

fn truncate_suffix_outside_the_log_is_rejected(disk: &dyn Disk) {
    let wal = open(disk).unwrap();
    append_range(&wal, 1..5);
    assert!(matches!(
        wal.truncate_suffix(0),
        Err(Error::IndexOutOfRange { index: 0, .. })
    ));
    assert!(matches!(
        wal.truncate_suffix(6),
        Err(Error::IndexOutOfRange { index: 6, .. })
    ));
    wal.truncate_suffix(5).unwrap();
    assert_log(&wal, 1, 4);
}

fn compact_prefix_removes_whole_segments_and_reopen_starts_later(disk: &dyn Disk) {
    let wal = open(disk).unwrap();
    append_range(&wal, 1..200);
    wal.sync().unwrap();
    let removed = wal.compact_prefix(100).unwrap();
    assert!(removed >= 2, "removed {removed}");
    let first = wal.first_index();
    assert!(first > 1 && first <= 100, "first index {first}");
    assert!(matches!(
        wal.read(first - 1),
        Err(Error::IndexOutOfRange { .. })
    ));
    assert_log(&wal, first, 199);
    drop(wal);
    let wal = open(disk).unwrap();
    assert_log(&wal, first, 199);
    append_range(&wal, 200..210);
    wal.sync().unwrap();
    drop(wal);
    assert_log(&open(disk).unwrap(), first, 209);
}

fn reset_to_discards_the_log_and_continues_at_the_given_index(disk: &dyn Disk) {
    let wal = open(disk).unwrap();
    append_range(&wal, 1..100);
    wal.sync().unwrap();
    wal.reset_to(5000).unwrap();
    assert_eq!(
        (wal.first_index(), wal.last_index(), wal.durable_index()),
        (5000, 4999, 4999)
    );
    assert_eq!(wal.append(&[payload(5000)]).unwrap(), 5000..5001);
    wal.sync().unwrap();
    drop(wal);
    let wal = open(disk).unwrap();
    assert_log(&wal, 5000, 5000);
    assert_eq!(live_segment_names(disk).len(), 1);
}

fn hard_state_is_durable_after_sync_and_only_then(disk: &dyn Disk) {
    let wal = open(disk).unwrap();
    assert_eq!(wal.hard_state(), Vec::<u8>::new());
    wal.set_hard_state(b"term 1").unwrap();
    wal.sync().unwrap();
    wal.set_hard_state(b"term 2, vote 3").unwrap();
    wal.sync().unwrap();
    wal.set_hard_state(b"never synced").unwrap();
    assert_eq!(wal.hard_state(), b"never synced");
    drop(wal);
    let wal = open(disk).unwrap();
    assert_eq!(wal.hard_state(), b"term 2, vote 3");
    let too_large = vec![0u8; raftq_storage::HARD_STATE_MAX_BYTES + 1];
    assert!(matches!(
        wal.set_hard_state(&too_large),
        Err(Error::HardStateTooLarge { .. })
    ));
}

fn a_record_above_the_maximum_is_rejected_and_nothing_is_appended(disk: &dyn Disk) {
    let wal = open(disk).unwrap();
    append_range(&wal, 1..3);
    let result = wal.append(&[vec![1u8; 10], vec![2u8; 1025]]);
    assert!(matches!(
        result,
        Err(Error::RecordTooLarge {
            length_bytes: 1025,
            max_bytes: 1024
        })
    ));
    assert_eq!(wal.last_index(), 2);
}

fn reading_outside_the_log_is_an_error(disk: &dyn Disk) {
    let wal = open(disk).unwrap();
    append_range(&wal, 1..4);
    for index in [0, 4, u64::MAX] {
        assert!(matches!(
            wal.read(index),
            Err(Error::IndexOutOfRange {
                first_index: 1,
                last_index: 3,
                ..
            })
        ));
    }
}

fn garbage_after_the_tail_is_cut_and_appends_continue(disk: &dyn Disk) {
    let wal = open(disk).unwrap();
    append_range(&wal, 1..6);
    wal.sync().unwrap();
    drop(wal);
    let tail = live_segment_names(disk).pop().unwrap();
    disk.overwrite(&tail, 3000, &[0xAB; 100]);
    let wal = open(disk).unwrap();
    let cut = wal.recovery_report().cut.clone().expect("garbage is cut");
    assert_eq!(cut.index, 6);
    assert_log(&wal, 1, 5);
    assert!(
        disk.contents(&tail)[3000..3100]
            .iter()
            .all(|&byte| byte == 0)
    );
    append_range(&wal, 6..12);
    wal.sync().unwrap();
    drop(wal);
    let wal = open(disk).unwrap();
    assert_log(&wal, 1, 11);
    assert_eq!(wal.recovery_report().cut, None);
}

fn a_planted_record_under_another_segment_id_never_validates(disk: &dyn Disk) {
    let wal = open(disk).unwrap();
    append_range(&wal, 1..6);
    wal.sync().unwrap();
    drop(wal);
    let tail = live_segment_names(disk).pop().unwrap();
    let tail_id: u64 = tail.trim_end_matches(".wal").parse().unwrap();
    let next_offset = record_offset(1, 6);
    // A perfect record for index 6, as another segment would have written it.
    disk.overwrite(
        &tail,
        next_offset,
        &encode_record(tail_id + 100, 6, 1, b"stale"),
    );
    let wal = open(disk).unwrap();
    assert_eq!(
        wal.last_index(),
        5,
        "the stale record must not be read as index 6"
    );
    assert_eq!(
        wal.recovery_report().cut.as_ref().map(|cut| cut.index),
        Some(6)
    );
    drop(wal);
    // The same bytes under the right id are a record like any other, which
    // shows the planting itself follows the documented format.
    disk.overwrite(&tail, next_offset, &encode_record(tail_id, 6, 1, b"fresh"));
    let wal = open(disk).unwrap();
    assert_eq!(wal.last_index(), 6);
    assert_eq!(wal.read(6).unwrap().as_ref(), b"fresh");
}

fn every_bit_flip_in_a_sealed_segment_is_a_hard_error_naming_segment_offset_and_index(
    disk: &dyn Disk,
) {
    let wal = open(disk).unwrap();
    append_range(&wal, 1..100);
    wal.sync().unwrap();
    drop(wal);
    let sealed = live_segment_names(disk).remove(0);
    let path = path_of(disk, &sealed);
    let record_two = record_offset(1, 2);
    let fields = [
        ("crc", record_two),
        ("length", record_two + 4),
        ("index", record_two + 8),
        ("batch first index", record_two + 16),
        ("kind", record_two + 24),
        ("reserved", record_two + 28),
        ("payload", record_two + 32),
    ];
    for (field, offset) in fields {
        disk.flip_bit(&sealed, offset, 1);
        match open(disk) {
            Err(Error::Corruption {
                segment,
                offset: at,
                index,
                ..
            }) => {
                assert_eq!(
                    (segment, at, index),
                    (path.clone(), record_two as u64, 2),
                    "flip in {field}"
                );
            }
            other => panic!("flip in {field}: expected corruption, got {other:?}"),
        }
        disk.flip_bit(&sealed, offset, 1);
        assert_log(&open(disk).unwrap(), 1, 99);
    }
}

fn a_bit_flip_in_the_tail_before_a_later_batch_is_a_hard_error(disk: &dyn Disk) {
    let wal = open(disk).unwrap();
    append_range(&wal, 1..6);
    wal.sync().unwrap();
    append_range(&wal, 6..11);
    wal.sync().unwrap();
    drop(wal);
    let tail = live_segment_names(disk).pop().unwrap();
    for (field, delta) in [("length", 4), ("index", 8), ("payload", 40)] {
        let offset = record_offset(1, 3);
        disk.flip_bit(&tail, offset + delta, 0);
        match open(disk) {
            Err(Error::Corruption {
                offset: at, index, ..
            }) => {
                assert_eq!((at, index), (offset as u64, 3), "flip in {field}");
            }
            other => panic!("flip in {field}: expected corruption, got {other:?}"),
        }
        disk.flip_bit(&tail, offset + delta, 0);
    }
    assert_log(&open(disk).unwrap(), 1, 10);
}

fn a_bit_flip_in_the_final_batch_is_cut_and_reported(disk: &dyn Disk) {
    // Records 6..=10 form the final batch: nothing was written after its
    // sync, so damage there cannot be told from a torn write (see the
    // decision table). It is cut, and the cut is reported.
    let wal = open(disk).unwrap();
    append_range(&wal, 1..6);
    wal.sync().unwrap();
    append_range(&wal, 6..11);
    wal.sync().unwrap();
    drop(wal);
    let tail = live_segment_names(disk).pop().unwrap();
    disk.flip_bit(&tail, record_offset(1, 8) + 40, 3);
    let wal = open(disk).unwrap();
    assert_log(&wal, 1, 7);
    let cut = wal.recovery_report().cut.clone().unwrap();
    assert_eq!((cut.index, cut.offset), (8, record_offset(1, 8) as u64));
}

fn a_damaged_segment_header_is_a_hard_error(disk: &dyn Disk) {
    let wal = open(disk).unwrap();
    append_range(&wal, 1..100);
    wal.sync().unwrap();
    drop(wal);
    for (field, offset) in [
        ("magic", 0),
        ("segment id", 16),
        ("first index", 24),
        ("crc", 60),
    ] {
        let second = live_segment_names(disk).remove(1);
        disk.flip_bit(&second, offset, 2);
        match open(disk) {
            Err(Error::Corruption {
                segment, offset: 0, ..
            }) => {
                assert_eq!(segment, path_of(disk, &second), "flip in {field}");
            }
            other => panic!("flip in {field}: expected corruption, got {other:?}"),
        }
        disk.flip_bit(&second, offset, 2);
    }
    assert_log(&open(disk).unwrap(), 1, 99);
}

fn a_missing_tail_segment_is_detected(disk: &dyn Disk) {
    let wal = open(disk).unwrap();
    append_range(&wal, 1..100);
    wal.sync().unwrap();
    drop(wal);
    let live = live_segment_names(disk);
    disk.remove(live.last().unwrap());
    match open(disk) {
        Err(Error::MissingSegment { previous, .. }) => {
            assert_eq!(previous, path_of(disk, &live[live.len() - 2]));
        }
        other => panic!("expected a missing segment error, got {other:?}"),
    }
}

fn a_missing_middle_segment_is_detected(disk: &dyn Disk) {
    let wal = open(disk).unwrap();
    append_range(&wal, 1..100);
    wal.sync().unwrap();
    drop(wal);
    let live = live_segment_names(disk);
    disk.remove(&live[1]);
    assert!(matches!(open(disk), Err(Error::MissingSegment { .. })));
}

fn a_read_checks_the_crc_and_names_the_damaged_record(disk: &dyn Disk) {
    let wal = open(disk).unwrap();
    append_range(&wal, 1..6);
    wal.sync().unwrap();
    let tail = live_segment_names(disk).pop().unwrap();
    disk.flip_bit(&tail, record_offset(1, 2) + 33, 5);
    match wal.read(2) {
        Err(Error::Corruption {
            segment,
            offset,
            index,
            ..
        }) => {
            assert_eq!(
                (segment, offset, index),
                (path_of(disk, &tail), record_offset(1, 2) as u64, 2)
            );
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(wal.read(3).unwrap().as_ref(), payload(3).as_slice());
}

fn snapshot_dir(disk: &dyn Disk) -> std::path::PathBuf {
    disk.dir().parent().unwrap().join("snapshots")
}

fn snapshots_round_trip_and_only_the_latest_is_kept(disk: &dyn Disk) {
    let store = SnapshotStore::open(disk.vfs(), snapshot_dir(disk)).unwrap();
    assert_eq!(store.load_latest().unwrap(), None);
    let first = store.save(b"index 10", &vec![7u8; 10_000]).unwrap();
    let mut writer = store.begin(b"index 20").unwrap();
    writer.write(b"chunk one, ").unwrap();
    writer.write(b"chunk two").unwrap();
    let second = writer.finish().unwrap();
    assert!(second > first);
    let store = SnapshotStore::open(disk.vfs(), snapshot_dir(disk)).unwrap();
    let latest = store.load_latest().unwrap().unwrap();
    assert_eq!(
        (latest.sequence, latest.meta.as_ref(), latest.data.as_ref()),
        (second, &b"index 20"[..], &b"chunk one, chunk two"[..])
    );
    let files = disk.vfs().list_dir(&snapshot_dir(disk)).unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
}

fn a_snapshot_written_back_in_pieces_round_trips_byte_for_byte(disk: &dyn Disk) {
    // Larger than several write-back pieces, and not a multiple of one.
    let data: Vec<u8> = (0..3 * (1 << 20) + 12_345)
        .map(|position: usize| (position.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let store = SnapshotStore::open(disk.vfs(), snapshot_dir(disk)).unwrap();
    let mut writer = store.begin(b"meta").unwrap();
    writer.write(&data[..1_000]).unwrap();
    writer.write(&data[1_000..]).unwrap();
    let sequence = writer.finish().unwrap();
    let store = SnapshotStore::open(disk.vfs(), snapshot_dir(disk)).unwrap();
    let latest = store.load_latest().unwrap().unwrap();
    assert_eq!(latest.sequence, sequence);
    assert_eq!(latest.meta.as_ref(), b"meta");
    assert!(latest.data.as_ref() == data.as_slice(), "the data differs");
}

fn a_damaged_snapshot_is_rejected(disk: &dyn Disk) {
    let store = SnapshotStore::open(disk.vfs(), snapshot_dir(disk)).unwrap();
    let sequence = store.save(b"meta", b"the state machine").unwrap();
    let name = format!("snapshot-{sequence:020}.snap");
    let path = snapshot_dir(disk).join(&name);
    let bytes = disk.vfs().read_file(&path).unwrap();
    for offset in [10, 20, 45, bytes.len() - 1] {
        let mut damaged = bytes.clone();
        damaged[offset] ^= 0x40;
        let mut file = disk.vfs().create_file(&path).unwrap();
        file.write_at(0, &damaged).unwrap();
        file.sync().unwrap();
        assert!(
            matches!(store.load_latest(), Err(Error::CorruptFile { .. })),
            "flip at {offset}"
        );
    }
}

fn an_abandoned_snapshot_leaves_no_file_behind(disk: &dyn Disk) {
    let store = SnapshotStore::open(disk.vfs(), snapshot_dir(disk)).unwrap();
    store.save(b"kept", b"data").unwrap();
    let mut writer = store.begin(b"abandoned").unwrap();
    writer.write(b"partial").unwrap();
    drop(writer);
    let files = disk.vfs().list_dir(&snapshot_dir(disk)).unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(store.load_latest().unwrap().unwrap().meta.as_ref(), b"kept");
}

#[test]
fn open_rejects_a_configuration_whose_largest_record_does_not_fit_a_segment() {
    let disk = FakeDisk::new(1);
    let config = raftq_storage::WalConfig {
        segment_size_bytes: 4096,
        record_payload_max_bytes: 4096,
        initial_index: 1,
    };
    assert!(matches!(
        Wal::open(disk.vfs(), disk.dir(), config),
        Err(Error::InvalidConfig(_))
    ));
}
