//! Shared helpers: one `Disk` per `Vfs` implementation, so the conformance
//! suite runs unchanged on real files and on the fault-injecting fake.
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use raftq_storage::{FaultVfs, Preallocation, StdVfs, Vfs, Wal, WalConfig, WriteMethod};

/// Segment size small enough that a few dozen records roll over.
pub const SMALL_SEGMENT_BYTES: usize = 4096;

/// A disk a test can open logs on and damage behind the log's back.
pub trait Disk {
    fn vfs(&self) -> Arc<dyn Vfs>;
    fn dir(&self) -> PathBuf;
    /// Overwrites bytes of a file in the log directory (durably).
    fn overwrite(&self, name: &str, offset: usize, bytes: &[u8]);
    /// The bytes of a file in the log directory.
    fn contents(&self, name: &str) -> Vec<u8>;
    fn remove(&self, name: &str);
    fn file_names(&self) -> Vec<String> {
        let mut names = self.vfs().list_dir(&self.dir()).expect("list");
        names.sort();
        names
    }
    fn flip_bit(&self, name: &str, offset: usize, bit: u8) {
        let mut byte = [self.contents(name)[offset]];
        byte[0] ^= 1 << bit;
        self.overwrite(name, offset, &byte);
    }
}

pub struct StdDisk {
    _root: tempfile::TempDir,
    dir: PathBuf,
    vfs: Arc<StdVfs>,
}

impl StdDisk {
    pub fn new() -> Self {
        Self::with(StdVfs::new())
    }

    /// Zero-written segments, filled with pwrite: the other corner of the
    /// real Vfs's options.
    pub fn written_with_pwrite() -> Self {
        Self::with(
            StdVfs::new()
                .preallocation(Preallocation::WriteZeros)
                .write_method(WriteMethod::Pwrite),
        )
    }

    fn with(vfs: StdVfs) -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("wal");
        StdDisk {
            _root: root,
            dir,
            vfs: Arc::new(vfs),
        }
    }
}

impl Disk for StdDisk {
    fn vfs(&self) -> Arc<dyn Vfs> {
        self.vfs.clone()
    }

    fn dir(&self) -> PathBuf {
        self.dir.clone()
    }

    fn overwrite(&self, name: &str, offset: usize, bytes: &[u8]) {
        let file = OpenOptions::new()
            .write(true)
            .open(self.dir.join(name))
            .expect("open");
        file.write_all_at(bytes, offset as u64).expect("write");
        file.sync_all().expect("sync");
    }

    fn contents(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(name)).expect("read")
    }

    fn remove(&self, name: &str) {
        std::fs::remove_file(self.dir.join(name)).expect("remove");
    }
}

pub struct FakeDisk {
    pub vfs: FaultVfs,
    dir: PathBuf,
}

impl FakeDisk {
    pub fn new(seed: u64) -> Self {
        FakeDisk {
            vfs: FaultVfs::new(seed),
            dir: PathBuf::from("/node/wal"),
        }
    }

    /// An independent copy of this disk (pending writes included).
    pub fn fork(&self) -> Self {
        FakeDisk {
            vfs: self.vfs.fork(),
            dir: self.dir.clone(),
        }
    }
}

impl Disk for FakeDisk {
    fn vfs(&self) -> Arc<dyn Vfs> {
        Arc::new(self.vfs.clone())
    }

    fn dir(&self) -> PathBuf {
        self.dir.clone()
    }

    fn overwrite(&self, name: &str, offset: usize, bytes: &[u8]) {
        self.vfs
            .overwrite(&self.dir.join(name), offset, bytes)
            .expect("overwrite");
    }

    fn contents(&self, name: &str) -> Vec<u8> {
        self.vfs.contents(&self.dir.join(name)).expect("contents")
    }

    fn remove(&self, name: &str) {
        self.vfs.remove_file(&self.dir.join(name)).expect("remove");
        self.vfs.sync_dir(&self.dir).expect("sync dir");
    }
}

pub fn small_config() -> WalConfig {
    WalConfig {
        segment_size_bytes: SMALL_SEGMENT_BYTES,
        record_payload_max_bytes: 1024,
        initial_index: 1,
    }
}

pub fn open(disk: &dyn Disk) -> raftq_storage::Result<Wal> {
    Wal::open(disk.vfs(), disk.dir(), small_config())
}

/// A deterministic payload for `index`, of a length that varies with it
/// (between 1 and 200 bytes) so records straddle pages and segments.
pub fn payload(index: u64) -> Vec<u8> {
    let length = 1 + (index.wrapping_mul(2_654_435_761) % 200) as usize;
    (0..length)
        .map(|position| (index as usize * 31 + position) as u8)
        .collect()
}

/// A payload for `index` written in a second "generation" (after a
/// truncation), different from `payload(index)`.
pub fn other_payload(index: u64) -> Vec<u8> {
    let mut bytes = payload(index);
    bytes.push(0xEE);
    bytes.iter_mut().for_each(|byte| *byte ^= 0x5A);
    bytes
}

pub fn append_range(wal: &Wal, indexes: std::ops::Range<u64>) {
    for index in indexes {
        let got = wal.append(&[payload(index)]).expect("append");
        assert_eq!(got, index..index + 1);
    }
}

/// Asserts that the log holds exactly `payload(i)` for `first..=last`.
pub fn assert_log(wal: &Wal, first: u64, last: u64) {
    assert_eq!(wal.first_index(), first, "first index");
    assert_eq!(wal.last_index(), last, "last index");
    for index in first..=last {
        assert_eq!(
            wal.read(index).expect("read").as_ref(),
            payload(index).as_slice(),
            "record {index}"
        );
    }
}

/// Names of the segment files, oldest first.
pub fn segment_names(disk: &dyn Disk) -> Vec<String> {
    disk.file_names()
        .into_iter()
        .filter(|name| name.ends_with(".wal"))
        .collect()
}

/// The path of a named file, for matching error messages.
pub fn path_of(disk: &dyn Disk, name: &str) -> PathBuf {
    Path::new(&disk.dir()).join(name)
}

/// Bytes a record with this payload length occupies (format: 32-byte
/// header, payload padded to 8).
pub fn record_bytes(payload_length: usize) -> usize {
    32 + payload_length.next_multiple_of(8)
}

/// Offset of record `index` in a segment whose first index is `first`,
/// when every record in it was `payload(i)`.
pub fn record_offset(first: u64, index: u64) -> usize {
    64 + (first..index)
        .map(|i| record_bytes(payload(i).len()))
        .sum::<usize>()
}

/// Encodes a record exactly as the crate docs describe, for planting
/// records the log did not write.
pub fn encode_record(
    segment_id: u64,
    index: u64,
    batch_first_index: u64,
    payload: &[u8],
) -> Vec<u8> {
    let mut bytes = vec![0u8; record_bytes(payload.len())];
    bytes[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes[8..16].copy_from_slice(&index.to_le_bytes());
    bytes[16..24].copy_from_slice(&batch_first_index.to_le_bytes());
    bytes[24] = 1;
    bytes[32..32 + payload.len()].copy_from_slice(payload);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&segment_id.to_le_bytes());
    hasher.update(&bytes[4..32]);
    hasher.update(payload);
    bytes[0..4].copy_from_slice(&hasher.finalize().to_le_bytes());
    bytes
}

/// Segment files whose header is not all zero (the live ones), oldest first.
pub fn live_segment_names(disk: &dyn Disk) -> Vec<String> {
    segment_names(disk)
        .into_iter()
        .filter(|name| disk.contents(name)[..64].iter().any(|&byte| byte != 0))
        .collect()
}

/// Asserts that `payload(i)` is stored for every index in `indexes`.
pub fn assert_records(wal: &Wal, indexes: std::ops::RangeInclusive<u64>) {
    for index in indexes {
        assert_eq!(
            wal.read(index).expect("read").as_ref(),
            payload(index).as_slice(),
            "record {index}"
        );
    }
}
