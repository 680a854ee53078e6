//! Snapshot files: written under a temporary name, synced, renamed, and the
//! directory synced; the previous snapshot is removed only after that.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::format::{read_u32, read_u64};
use crate::vfs::{Vfs, WritableFile};

const SNAPSHOT_MAGIC: [u8; 8] = *b"RAFTQSNP";
const SNAPSHOT_VERSION: u32 = 1;
/// Size of the snapshot file header.
pub const SNAPSHOT_HEADER_BYTES: usize = 40;
/// Largest metadata blob a snapshot carries.
pub const SNAPSHOT_META_MAX_BYTES: usize = 1 << 20;
const SNAPSHOT_PREFIX: &str = "snapshot-";
const SNAPSHOT_SUFFIX: &str = ".snap";
const TEMPORARY_SUFFIX: &str = ".tmp";
/// Snapshot data goes to the device in pieces of this size, each written
/// back before the next (see [`WritableFile::write_back`]).
const WRITE_BACK_BYTES: usize = 1 << 20;

/// A loaded snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Increases with every saved snapshot.
    pub sequence: u64,
    /// The caller's metadata (for Raft: last included index, term, configuration).
    pub meta: Bytes,
    /// The state-machine image.
    pub data: Bytes,
}

/// A directory of snapshot files; at most one complete snapshot is kept.
#[derive(Clone, Debug)]
pub struct SnapshotStore {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
}

fn snapshot_name(sequence: u64) -> String {
    format!("{SNAPSHOT_PREFIX}{sequence:020}{SNAPSHOT_SUFFIX}")
}

fn parse_snapshot_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(SNAPSHOT_PREFIX)?
        .strip_suffix(SNAPSHOT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `{ magic:8 | version:u32 | meta_length:u32 | data_length:u64 | sequence:u64
///    | body_crc:u32 | header_crc:u32 }`: the body CRC-32 covers
/// `meta ‖ data`, the header CRC-32 bytes 0..36.
fn encode_header(
    meta_length: usize,
    data_length: u64,
    sequence: u64,
    body_crc: u32,
) -> [u8; SNAPSHOT_HEADER_BYTES] {
    let mut header = [0u8; SNAPSHOT_HEADER_BYTES];
    header[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    header[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&(meta_length as u32).to_le_bytes());
    header[16..24].copy_from_slice(&data_length.to_le_bytes());
    header[24..32].copy_from_slice(&sequence.to_le_bytes());
    header[32..36].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&header[0..36]);
    header[36..40].copy_from_slice(&header_crc.to_le_bytes());
    header
}

impl SnapshotStore {
    /// Opens the store in `dir`, creating the directory and removing
    /// temporary files left by an interrupted save.
    pub fn open(vfs: Arc<dyn Vfs>, dir: impl Into<PathBuf>) -> Result<SnapshotStore> {
        let dir = dir.into();
        vfs.create_dir_all(&dir)
            .map_err(|error| Error::io("create directory", &dir, error))?;
        let store = SnapshotStore { vfs, dir };
        let leftovers: Vec<String> = store
            .names()?
            .into_iter()
            .filter(|name| name.starts_with(SNAPSHOT_PREFIX) && name.ends_with(TEMPORARY_SUFFIX))
            .collect();
        for name in &leftovers {
            let path = store.dir.join(name);
            store
                .vfs
                .remove_file(&path)
                .map_err(|error| Error::io("remove temporary snapshot", &path, error))?;
        }
        if !leftovers.is_empty() {
            store.sync_dir()?;
        }
        Ok(store)
    }

    fn names(&self) -> Result<Vec<String>> {
        self.vfs
            .list_dir(&self.dir)
            .map_err(|error| Error::io("list directory", &self.dir, error))
    }

    fn sequences(&self) -> Result<Vec<u64>> {
        let mut sequences: Vec<u64> = self
            .names()?
            .iter()
            .filter_map(|name| parse_snapshot_name(name))
            .collect();
        sequences.sort_unstable();
        Ok(sequences)
    }

    fn sync_dir(&self) -> Result<()> {
        self.vfs
            .sync_dir(&self.dir)
            .map_err(|error| Error::io("sync directory", &self.dir, error))
    }

    /// Saves a snapshot durably and removes the previous one. Returns the
    /// new snapshot's sequence number.
    pub fn save(&self, meta: &[u8], data: &[u8]) -> Result<u64> {
        let mut writer = self.begin(meta)?;
        writer.write(data)?;
        writer.finish()
    }

    /// Starts a snapshot whose data arrives in chunks (for example from an
    /// InstallSnapshot stream).
    pub fn begin(&self, meta: &[u8]) -> Result<SnapshotWriter> {
        if meta.len() > SNAPSHOT_META_MAX_BYTES {
            return Err(Error::RecordTooLarge {
                length_bytes: meta.len(),
                max_bytes: SNAPSHOT_META_MAX_BYTES,
            });
        }
        let sequence = self.sequences()?.last().map_or(1, |last| last + 1);
        let final_path = self.dir.join(snapshot_name(sequence));
        let temporary_path = self
            .dir
            .join(format!("{}{TEMPORARY_SUFFIX}", snapshot_name(sequence)));
        let mut file = self
            .vfs
            .create_file(&temporary_path)
            .map_err(|error| Error::io("create snapshot", &temporary_path, error))?;
        // The header is written last, once lengths and CRC are known; until
        // then zeros keep a half-written file from ever validating.
        let mut prefix = vec![0u8; SNAPSHOT_HEADER_BYTES];
        prefix.extend_from_slice(meta);
        file.write_at(0, &prefix)
            .map_err(|error| Error::io("write snapshot", &temporary_path, error))?;
        let mut body_hasher = crc32fast::Hasher::new();
        body_hasher.update(meta);
        Ok(SnapshotWriter {
            store: self.clone(),
            file: Some(file),
            temporary_path,
            final_path,
            sequence,
            meta_length: meta.len(),
            data_length: 0,
            body_hasher,
        })
    }

    /// Loads the newest snapshot, checking its CRCs. `None` if there is none.
    pub fn load_latest(&self) -> Result<Option<Snapshot>> {
        let Some(&sequence) = self.sequences()?.last() else {
            return Ok(None);
        };
        let path = self.dir.join(snapshot_name(sequence));
        let bytes = self
            .vfs
            .read_file(&path)
            .map_err(|error| Error::io("read snapshot", &path, error))?;
        decode_snapshot(&path, sequence, bytes).map(Some)
    }
}

fn decode_snapshot(path: &Path, sequence: u64, bytes: Vec<u8>) -> Result<Snapshot> {
    let corrupt = |reason: &str| Error::CorruptFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if bytes.len() < SNAPSHOT_HEADER_BYTES {
        return Err(corrupt("file shorter than the snapshot header"));
    }
    if bytes[0..8] != SNAPSHOT_MAGIC || read_u32(&bytes, 8) != SNAPSHOT_VERSION {
        return Err(corrupt("bad snapshot magic or version"));
    }
    if crc32fast::hash(&bytes[0..36]) != read_u32(&bytes, 36) {
        return Err(corrupt("snapshot header CRC mismatch"));
    }
    let meta_length = read_u32(&bytes, 12) as usize;
    let data_length = read_u64(&bytes, 16);
    if read_u64(&bytes, 24) != sequence {
        return Err(corrupt("snapshot sequence differs from its file name"));
    }
    let expected_length = (SNAPSHOT_HEADER_BYTES + meta_length) as u64 + data_length;
    if meta_length > SNAPSHOT_META_MAX_BYTES || expected_length != bytes.len() as u64 {
        return Err(corrupt("snapshot lengths do not match the file"));
    }
    if crc32fast::hash(&bytes[SNAPSHOT_HEADER_BYTES..]) != read_u32(&bytes, 32) {
        return Err(corrupt("snapshot body CRC mismatch"));
    }
    let bytes = Bytes::from(bytes);
    let meta_end = SNAPSHOT_HEADER_BYTES + meta_length;
    Ok(Snapshot {
        sequence,
        meta: bytes.slice(SNAPSHOT_HEADER_BYTES..meta_end),
        data: bytes.slice(meta_end..),
    })
}

/// A snapshot being written; see [`SnapshotStore::begin`]. Dropping it
/// without [`SnapshotWriter::finish`] removes the temporary file.
#[derive(Debug)]
pub struct SnapshotWriter {
    store: SnapshotStore,
    file: Option<Box<dyn WritableFile>>,
    temporary_path: PathBuf,
    final_path: PathBuf,
    sequence: u64,
    meta_length: usize,
    data_length: u64,
    body_hasher: crc32fast::Hasher,
}

impl SnapshotWriter {
    /// Appends a chunk of data. Large chunks go to the device a piece at a
    /// time, so the final sync is short and the log's syncs on the same
    /// disk never queue behind the whole snapshot.
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        for piece in chunk.chunks(WRITE_BACK_BYTES) {
            let offset = (SNAPSHOT_HEADER_BYTES + self.meta_length) as u64 + self.data_length;
            let file = self.file.as_mut().expect("writer not finished");
            file.write_at(offset, piece)
                .map_err(|error| Error::io("write snapshot", &self.temporary_path, error))?;
            file.write_back(offset, piece.len() as u64)
                .map_err(|error| Error::io("write snapshot", &self.temporary_path, error))?;
            self.body_hasher.update(piece);
            self.data_length += piece.len() as u64;
        }
        Ok(())
    }

    /// Makes the snapshot durable under its final name, then removes older
    /// snapshots. Returns its sequence number.
    pub fn finish(mut self) -> Result<u64> {
        let mut file = self.file.take().expect("writer not finished");
        let header = encode_header(
            self.meta_length,
            self.data_length,
            self.sequence,
            self.body_hasher.clone().finalize(),
        );
        let io = |operation: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |error: io::Error| Error::io(operation, path, error)
        };
        file.write_at(0, &header)
            .map_err(io("write snapshot", &self.temporary_path))?;
        file.sync()
            .map_err(io("sync snapshot", &self.temporary_path))?;
        drop(file);
        let vfs = &self.store.vfs;
        vfs.rename(&self.temporary_path, &self.final_path)
            .map_err(io("rename snapshot", &self.temporary_path))?;
        self.store.sync_dir()?;
        let older: Vec<u64> = self
            .store
            .sequences()?
            .into_iter()
            .filter(|&sequence| sequence < self.sequence)
            .collect();
        for sequence in &older {
            let path = self.store.dir.join(snapshot_name(*sequence));
            vfs.remove_file(&path)
                .map_err(io("remove old snapshot", &path))?;
        }
        if !older.is_empty() {
            self.store.sync_dir()?;
        }
        Ok(self.sequence)
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = self.store.vfs.remove_file(&self.temporary_path);
        }
    }
}
