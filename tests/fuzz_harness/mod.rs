//! Entry points that feed arbitrary bytes to every decoder that reads input
//! from outside the process: frames and client requests from the network,
//! write-ahead-log segments, snapshot files and queue snapshots from disk.
//!
//! Each function must return normally for every input: a panic, an abort or
//! an allocation far beyond the input is a defect. They are shared by the
//! cargo-fuzz targets in `fuzz/` (which include this file by path) and by
//! the property tests in `tests/fuzz_inputs.rs`, so a crash found by the
//! fuzzer replays under `cargo test` too.
//!
//! Checksums stop a fuzzer at the first CRC it cannot guess, so the disk
//! harnesses build valid checksums over fuzzed contents in most cases and
//! leave raw bytes in the rest: both the checksum checks and the decoders
//! behind them get exercised.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use raftq::node::entry_batch::read_batch;
use raftq::node::log_store::{NodeStorage, SnapshotEnvelope};
use raftq::protocol::client::{Request, Response};
use raftq::protocol::codec::FrameCodec;
use raftq::protocol::frame::{Frame, FrameKind};
use raftq::protocol::handshake::{Accepted, Auth, Challenge, ErrorFrame, Hello};
use raftq::queue::{Command, JobQueue, Op};
use raftq::raft::Message;
use raftq_storage::{FaultVfs, Vfs, Wal, WalConfig};
use tokio_util::codec::Decoder;

/// Reads the fuzz input front to back; running out yields zeros.
pub struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(bytes: &'a [u8]) -> Input<'a> {
        Input { bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&first, rest)) => {
                self.bytes = rest;
                first
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        let mut value = [0u8; 8];
        for byte in &mut value {
            *byte = self.u8();
        }
        u64::from_le_bytes(value)
    }

    /// Up to `max` bytes, the length chosen by the input.
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let wanted = (self.u16() as usize).min(max).min(self.bytes.len());
        let (taken, rest) = self.bytes.split_at(wanted);
        self.bytes = rest;
        taken
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
}

/// Decodes one body type, and if it decodes, checks that it re-encodes to
/// a frame that decodes to the same value.
fn round_trip<T>(frame: &Frame)
where
    T: serde::Serialize + for<'de> serde::Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    if let Ok(body) = frame.decode::<T>() {
        let again = Frame::encode(frame.kind, &body).expect("a decoded body encodes");
        let decoded: T = again.decode().expect("an encoded body decodes");
        assert_eq!(decoded, body, "body changed across a round trip");
    }
}

fn decode_body(frame: &Frame) {
    match frame.kind {
        FrameKind::Hello => round_trip::<Hello>(frame),
        FrameKind::Challenge => round_trip::<Challenge>(frame),
        FrameKind::Auth => round_trip::<Auth>(frame),
        FrameKind::Accepted => round_trip::<Accepted>(frame),
        FrameKind::Peer => {
            let _ = frame.decode::<Vec<Message>>();
        }
        FrameKind::Request => round_trip::<Request>(frame),
        FrameKind::Response => round_trip::<Response>(frame),
        FrameKind::Error => round_trip::<ErrorFrame>(frame),
    }
}

/// A byte stream, cut into reads of input-chosen sizes, through the frame
/// codec as a connection would receive it; every frame's body is decoded.
/// A read whose size byte has its top bit set is instead a whole frame with
/// a valid header and checksum around fuzzed kind and payload bytes, so the
/// body decoders of every kind are reached. Returns how many frames decoded.
pub fn frame_stream(data: &[u8]) -> usize {
    let mut input = Input::new(data);
    let payload_max_bytes = 1 + input.u16() as usize;
    let mut codec = FrameCodec::new(payload_max_bytes);
    let mut buffer = BytesMut::new();
    let mut frames = 0;
    while !input.is_empty() {
        let step = input.u8();
        if step >= 0x80 {
            let kind = FrameKind::from_u8(1 + input.u8() % 8).expect("kinds 1 to 8 exist");
            let payload = input.bytes(payload_max_bytes);
            Frame {
                kind,
                payload: bytes::Bytes::copy_from_slice(payload),
            }
            .write_to(&mut buffer);
        } else {
            let chunk = input.bytes(1 + step as usize % 64);
            if chunk.is_empty() {
                break;
            }
            buffer.extend_from_slice(chunk);
        }
        loop {
            match codec.decode(&mut buffer) {
                Ok(Some(frame)) => {
                    assert!(frame.payload.len() <= payload_max_bytes);
                    decode_body(&frame);
                    frames += 1;
                }
                Ok(None) => break,
                // A connection is closed after a decode error.
                Err(_) => return frames,
            }
        }
    }
    frames
}

/// Arbitrary bytes as the body of a client request frame, and as a
/// replicated command batch applied to a queue state.
pub fn client_request(data: &[u8]) {
    let frame = Frame {
        kind: FrameKind::Request,
        payload: bytes::Bytes::copy_from_slice(data),
    };
    round_trip::<Request>(&frame);
    if let Ok(request) = frame.decode::<Request>() {
        let _ = request.body.name();
    }
    // The same bytes as log entry data: a command batch the applier reads.
    let mut state = JobQueue::new();
    apply_batch(&mut state, data);
    // And as one command.
    if let Ok(command) = postcard::from_bytes::<Command>(data) {
        state.apply(&command);
    }
}

fn apply_batch(state: &mut JobQueue, data: &[u8]) {
    if let Ok((now_ms, commands)) = read_batch(data) {
        for command in commands {
            if let Ok(op) = postcard::from_bytes::<Op>(command) {
                state.apply_op(now_ms, &op);
            }
        }
    }
}

const SEGMENT_BYTES: usize = 4096;
const RECORD_HEADER_BYTES: usize = 32;

pub fn wal_config() -> WalConfig {
    WalConfig {
        segment_size_bytes: SEGMENT_BYTES,
        record_payload_max_bytes: 1024,
        initial_index: 1,
    }
}

pub fn write_file(vfs: &FaultVfs, path: &Path, bytes: &[u8]) {
    let mut file = vfs.create_file(path).expect("create");
    file.write_at(0, bytes).expect("write");
    file.sync().expect("sync");
}

pub fn segment_header(segment_id: u64, first_index: u64) -> [u8; 64] {
    let mut header = [0u8; 64];
    header[0..8].copy_from_slice(b"RAFTQWAL");
    header[8..12].copy_from_slice(&1u32.to_le_bytes());
    header[16..24].copy_from_slice(&segment_id.to_le_bytes());
    header[24..32].copy_from_slice(&first_index.to_le_bytes());
    header[32..40].copy_from_slice(&(SEGMENT_BYTES as u64).to_le_bytes());
    let crc = crc32fast::hash(&header[0..60]);
    header[60..64].copy_from_slice(&crc.to_le_bytes());
    header
}

/// A record as the log writes it, with a valid CRC over fuzzed fields.
pub fn record(segment_id: u64, kind: u8, index: u64, batch_first: u64, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0u8; RECORD_HEADER_BYTES];
    bytes[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes[8..16].copy_from_slice(&index.to_le_bytes());
    bytes[16..24].copy_from_slice(&batch_first.to_le_bytes());
    bytes[24] = kind;
    bytes.extend_from_slice(payload);
    let seed = crc32fast::hash(&segment_id.to_le_bytes());
    let mut hasher = crc32fast::Hasher::new_with_initial(seed);
    hasher.update(&bytes[4..]);
    let crc = hasher.finalize();
    bytes[0..4].copy_from_slice(&crc.to_le_bytes());
    bytes.resize(bytes.len().next_multiple_of(8), 0);
    bytes
}

/// One segment file: a header (valid, or raw input) and records that are
/// mostly well formed, in sequence or not, with raw bytes in between.
fn fuzzed_segment(input: &mut Input, segment_id: u64, first_index: u64) -> Vec<u8> {
    let mut segment = vec![0u8; SEGMENT_BYTES];
    let mode = input.u8();
    if mode.is_multiple_of(8) {
        // Raw bytes from the start, header included.
        let raw = input.bytes(SEGMENT_BYTES);
        segment[..raw.len()].copy_from_slice(raw);
        return segment;
    }
    segment[..64].copy_from_slice(&segment_header(segment_id, first_index));
    let mut offset = 64;
    let mut index = first_index;
    while offset < SEGMENT_BYTES && !input.is_empty() {
        let step = input.u8();
        let bytes = match step % 8 {
            // Raw bytes at an aligned offset.
            0 => input.bytes(256).to_vec(),
            // A seal naming some segment.
            1 => {
                let next = segment_id + 1 + u64::from(input.u8() % 2);
                record(segment_id, 2, index, index, &next.to_le_bytes())
            }
            // A record with a fuzzed index and batch first index.
            2 => {
                let index = input.u64();
                let batch_first = input.u64();
                let payload = input.bytes(128);
                record(
                    segment_id,
                    1 + input.u8() % 3,
                    index.max(1),
                    batch_first,
                    payload,
                )
            }
            // A record in sequence, as the log writes them.
            _ => {
                let batch_first = index - u64::from(input.u8() % 4).min(index - 1);
                let payload = input.bytes(128);
                let bytes = record(segment_id, 1, index, batch_first, payload);
                index += 1;
                bytes
            }
        };
        let end = (offset + bytes.len()).min(SEGMENT_BYTES);
        segment[offset..end].copy_from_slice(&bytes[..end - offset]);
        offset = end.next_multiple_of(8);
        // Now and then, flip a bit in what was written.
        if step >= 0xf0 && end > 64 {
            let at = 64 + input.u16() as usize % (end - 64);
            segment[at] ^= 1 << (input.u8() % 8);
        }
    }
    segment
}

/// A log directory of one to three segments built from the input (plus,
/// sometimes, raw hard-state and intent files), opened as the node opens it
/// on start. When it opens, every entry is read, one is appended and
/// synced, and the directory must open again with that entry in place.
pub fn wal_recovery(data: &[u8]) {
    let mut input = Input::new(data);
    let vfs = FaultVfs::new(input.u64());
    let dir = PathBuf::from("/wal");
    vfs.create_dir_all(&dir).unwrap();
    let segments = 1 + input.u8() % 3;
    let mut first_index = 1 + u64::from(input.u8() % 4);
    let first_id = 1 + u64::from(input.u8() % 3);
    for number in 0..u64::from(segments) {
        let id = first_id + number + u64::from(input.u8().is_multiple_of(8));
        let segment = fuzzed_segment(&mut input, id, first_index);
        write_file(&vfs, &dir.join(format!("{id:020}.wal")), &segment);
        first_index += 1 + u64::from(input.u8() % 8);
    }
    let extras = input.u8();
    if extras & 1 != 0 {
        let hard_state = input.bytes(8192);
        write_file(
            &vfs,
            &dir.join(raftq_storage::HARD_STATE_FILE_NAME),
            hard_state,
        );
    }
    if extras & 2 != 0 {
        let intent = input.bytes(128);
        write_file(&vfs, &dir.join(raftq_storage::INTENT_FILE_NAME), intent);
    }
    vfs.sync_dir(&dir).unwrap();

    let vfs: Arc<dyn Vfs> = Arc::new(vfs);
    let Ok(wal) = Wal::open(Arc::clone(&vfs), &dir, wal_config()) else {
        return;
    };
    let (first, last) = (wal.first_index(), wal.last_index());
    assert!(first >= 1 && last + 1 >= first, "indexes {first}..={last}");
    for entry in wal.iter(first..last + 1) {
        let _ = entry;
    }
    let _ = wal.hard_state();
    let appended = match wal.append(&[b"after recovery".as_slice()]) {
        Ok(range) => range,
        Err(_) => return,
    };
    assert_eq!(appended.start, last + 1);
    if wal.sync().is_err() {
        return;
    }
    drop(wal);
    let wal = Wal::open(vfs, &dir, wal_config()).expect("a log recovered once reopens");
    assert_eq!(wal.last_index(), last + 1);
    assert_eq!(&wal.read(last + 1).unwrap()[..], b"after recovery");
}

fn snapshot_file(sequence: u64, meta: &[u8], data: &[u8]) -> Vec<u8> {
    let mut body_hasher = crc32fast::Hasher::new();
    body_hasher.update(meta);
    body_hasher.update(data);
    let mut file = vec![0u8; 40];
    file[0..8].copy_from_slice(b"RAFTQSNP");
    file[8..12].copy_from_slice(&1u32.to_le_bytes());
    file[12..16].copy_from_slice(&(meta.len() as u32).to_le_bytes());
    file[16..24].copy_from_slice(&(data.len() as u64).to_le_bytes());
    file[24..32].copy_from_slice(&sequence.to_le_bytes());
    file[32..36].copy_from_slice(&body_hasher.finalize().to_le_bytes());
    let header_crc = crc32fast::hash(&file[0..36]);
    file[36..40].copy_from_slice(&header_crc.to_le_bytes());
    file.extend_from_slice(meta);
    file.extend_from_slice(data);
    file
}

/// A queue snapshot with a valid magic, version and checksum around a
/// fuzzed body (or raw bytes), as the node restores it.
fn queue_snapshot(input: &mut Input) -> Vec<u8> {
    if input.u8().is_multiple_of(8) {
        return input.bytes(1 << 16).to_vec();
    }
    let body = input.bytes(1 << 16);
    let mut bytes = Vec::with_capacity(body.len() + 12);
    bytes.extend_from_slice(&raftq::queue::SNAPSHOT_MAGIC);
    bytes.extend_from_slice(&raftq::queue::SNAPSHOT_VERSION.to_le_bytes());
    bytes.extend_from_slice(body);
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Snapshot loading at both layers. A queue snapshot restores or is refused;
/// a restored state snapshots to bytes that restore to the same bytes, and
/// takes further commands. Then a node data directory holding a snapshot
/// file (valid CRCs around fuzzed metadata and an envelope holding the
/// queue snapshot, or raw bytes) is opened as a node opens it on start.
pub fn snapshot_load(data: &[u8]) {
    let mut input = Input::new(data);
    let queue_bytes = queue_snapshot(&mut input);
    if let Ok(mut state) = JobQueue::restore(&queue_bytes) {
        let canonical = state.snapshot();
        let again = JobQueue::restore(&canonical).expect("a snapshot of a restored state restores");
        assert!(again.snapshot() == canonical, "snapshot is not canonical");
        let batch = input.bytes(4096);
        apply_batch(&mut state, batch);
        let after = state.snapshot();
        JobQueue::restore(&after).expect("a state after commands snapshots and restores");
    }

    let vfs = FaultVfs::new(0);
    let data_dir = PathBuf::from("/node");
    let snapshots = data_dir.join("snapshots");
    vfs.create_dir_all(&snapshots).unwrap();
    let sequence = 1 + u64::from(input.u8());
    let file = if input.u8().is_multiple_of(8) {
        input.bytes(1 << 16).to_vec()
    } else {
        let meta = input.bytes(256);
        let envelope = SnapshotEnvelope {
            addresses: [(1, "127.0.0.1:1".to_string())].into(),
            state: queue_bytes.into(),
        };
        let data = if input.u8().is_multiple_of(4) {
            input.bytes(4096).to_vec()
        } else {
            envelope.encode().to_vec()
        };
        snapshot_file(sequence, meta, &data)
    };
    write_file(
        &vfs,
        &snapshots.join(format!("snapshot-{sequence:020}.snap")),
        &file,
    );
    vfs.sync_dir(&snapshots).unwrap();
    let wal_config = WalConfig {
        segment_size_bytes: 1 << 16,
        record_payload_max_bytes: 1024,
        initial_index: 1,
    };
    let opened = NodeStorage::open(Arc::new(vfs), &data_dir, wal_config, None);
    if let Ok((_storage, recovered)) = opened
        && !recovered.envelope.state.is_empty()
    {
        let _ = JobQueue::restore(&recovered.envelope.state);
    }
}
