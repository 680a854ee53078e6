//! Arbitrary bytes through every decoder of outside input (see
//! `fuzz_harness/mod.rs`): the frame codec, client requests and command
//! batches, write-ahead-log recovery and snapshot loading. The same entry
//! points are the cargo-fuzz targets in `fuzz/`; here they run a modest
//! number of cases in `cargo test`. `RAFTQ_FUZZ_CASES` sets the number of
//! cases per decoder (default 256).

mod fuzz_harness;

use proptest::collection::vec;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("RAFTQ_FUZZ_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(256)
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn frame_stream_never_panics(data in bytes(2048)) {
        let _ = fuzz_harness::frame_stream(&data);
    }

    #[test]
    fn client_request_never_panics(data in bytes(1024)) {
        fuzz_harness::client_request(&data);
    }

    #[test]
    fn wal_recovery_never_panics(data in bytes(8192)) {
        fuzz_harness::wal_recovery(&data);
    }

    #[test]
    fn snapshot_load_never_panics(data in bytes(4096)) {
        fuzz_harness::snapshot_load(&data);
    }
}

/// Random bytes rarely form a valid frame; a stream of real frames cut at
/// arbitrary points must decode every one of them.
#[test]
fn frame_stream_decodes_valid_frames() {
    use raftq::protocol::client::{Request, RequestBody};
    use raftq::protocol::frame::{Frame, FrameKind};
    let request = Request {
        id: 7,
        body: RequestBody::Pause("emails".to_string()),
    };
    let frame = Frame::encode(FrameKind::Request, &request).unwrap();
    let mut wire = bytes::BytesMut::new();
    frame.write_to(&mut wire);
    // Harness layout: payload limit (u16), then (chunk size byte, length u16, bytes).
    let mut data = vec![0xff, 0x0f];
    for chunk in wire.chunks(5) {
        data.push(4);
        data.extend_from_slice(&(chunk.len() as u16).to_le_bytes());
        data.extend_from_slice(chunk);
    }
    assert_eq!(fuzz_harness::frame_stream(&data), 1);
}

/// Found by the `wal_recovery` fuzz target: a tail segment ending in a seal
/// whose next segment never got its header, with stray record bytes after
/// the seal. Recovery undid the rollover but zeroed only the seal; the next
/// append landed on the seal's offset, and a stray record beyond it, whose
/// batch first index claims later durable data, made the following open
/// refuse the log as corrupt. Recovery now zeroes everything after the seal.
#[test]
fn bytes_after_an_undone_seal_do_not_fail_a_later_recovery() {
    use std::path::PathBuf;
    use std::sync::Arc;

    use fuzz_harness::{record, segment_header, wal_config, write_file};
    use raftq_storage::{FaultVfs, Vfs, Wal};

    let vfs = FaultVfs::new(0);
    let dir = PathBuf::from("/wal");
    vfs.create_dir_all(&dir).unwrap();
    let mut tail = segment_header(1, 1).to_vec();
    tail.extend(record(1, 1, 1, 1, b"first"));
    // The seal names segment 2 as the next one.
    tail.extend(record(1, 2, 2, 2, &2u64.to_le_bytes()));
    // Stray bytes after the seal: a gap, then a record claiming that
    // indexes up to 1,000 were durable when it was written.
    tail.extend([0xa5; 24]);
    tail.extend(record(1, 1, 7, 1_000, b"stray"));
    tail.resize(4096, 0);
    write_file(&vfs, &dir.join(format!("{:020}.wal", 1)), &tail);
    write_file(&vfs, &dir.join(format!("{:020}.wal", 2)), &[0; 4096]);
    vfs.sync_dir(&dir).unwrap();
    let vfs: Arc<dyn Vfs> = Arc::new(vfs);

    let wal = Wal::open(Arc::clone(&vfs), &dir, wal_config()).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (1, 1));
    let cut = wal.recovery_report().cut.clone().expect("the seal is cut");
    assert!(cut.zeroed_bytes > 40, "{cut:?}");
    wal.append(&[b"second".as_slice()]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let wal = Wal::open(vfs, &dir, wal_config()).expect("the log opens again");
    assert_eq!(wal.last_index(), 2);
    assert_eq!(&wal.read(2).unwrap()[..], b"second");
}

/// The harness's well-formed frames decode as frames (their bodies may not).
#[test]
fn frame_stream_builds_valid_frames_on_request() {
    // Payload limit 256, then two whole frames: a Hello with a garbage body
    // and a Peer frame with an empty one.
    let data = [0xff, 0x00, 0x80, 0x00, 3, 0, 1, 2, 3, 0x80, 0x04, 0, 0];
    assert_eq!(fuzz_harness::frame_stream(&data), 2);
}

/// Found by the `wal_recovery` fuzz target: a tail segment whose records
/// run into the room the writer keeps for a seal. Recovery accepted it, and
/// the next rollover wrote its seal past the segment's end (a panic). Such a
/// segment is now refused as corrupt when the log opens.
#[test]
fn records_in_the_seal_room_are_refused_at_open() {
    let data = include_bytes!("fuzz_regressions/wal_recovery_records_in_seal_room.bin");
    fuzz_harness::wal_recovery(data);
}

/// Found by the `snapshot_load` fuzz target: a snapshot file with valid
/// checksums whose metadata claims index `u64::MAX`. Opening the node's
/// storage overflowed computing the next log index (a panic); it is now a
/// typed `Inconsistent` error.
#[test]
fn a_snapshot_claiming_the_last_possible_index_is_refused() {
    let data = include_bytes!("fuzz_regressions/snapshot_load_index_at_the_end.bin");
    fuzz_harness::snapshot_load(data);
}
