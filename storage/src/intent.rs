//! The intent file: makes suffix truncation and reset crash-safe.
//!
//! Both operations change several files. The intent is written and made
//! durable first; recovery that finds a valid intent finishes the operation
//! (every step is idempotent) before it reads the log; the intent is removed
//! only after the operation is durable. An intent that fails its CRC was
//! never durable, so the operation had not started, and it is discarded.

use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::{read_u32, read_u64};
use crate::vfs::Vfs;

/// Name of the intent file in the log directory.
pub const INTENT_FILE_NAME: &str = "wal.intent";
const INTENT_MAGIC: [u8; 8] = *b"RAFTQINT";
const INTENT_VERSION: u32 = 1;
const INTENT_BYTES: usize = 48;
const KIND_TRUNCATE_SUFFIX: u32 = 1;
const KIND_RESET: u32 = 2;

/// A multi-file operation in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// Cut the log at `index`, which sits at `offset` in segment
    /// `segment_id`: remove every later segment, zero the segment from
    /// `offset` to its last nonzero byte.
    TruncateSuffix {
        /// The segment that becomes the tail.
        segment_id: u64,
        /// Offset of the first removed record.
        offset: u64,
        /// The first removed index.
        index: u64,
    },
    /// Discard the whole log; segment `segment_id` is the new, empty tail
    /// whose first index is `next_index`.
    Reset {
        /// The new segment.
        segment_id: u64,
        /// The index the next append gets.
        next_index: u64,
    },
}

/// The path of the intent file.
pub fn intent_path(dir: &Path) -> PathBuf {
    dir.join(INTENT_FILE_NAME)
}

impl Intent {
    /// `{ magic:8 | version:u32 | kind:u32 | segment_id:u64 | offset:u64
    ///    | index:u64 | reserved:u32 | crc:u32 }`, CRC-32 over bytes 0..44.
    fn encode(&self) -> [u8; INTENT_BYTES] {
        let (kind, segment_id, offset, index) = match *self {
            Intent::TruncateSuffix {
                segment_id,
                offset,
                index,
            } => (KIND_TRUNCATE_SUFFIX, segment_id, offset, index),
            Intent::Reset {
                segment_id,
                next_index,
            } => (KIND_RESET, segment_id, 0, next_index),
        };
        let mut bytes = [0u8; INTENT_BYTES];
        bytes[0..8].copy_from_slice(&INTENT_MAGIC);
        bytes[8..12].copy_from_slice(&INTENT_VERSION.to_le_bytes());
        bytes[12..16].copy_from_slice(&kind.to_le_bytes());
        bytes[16..24].copy_from_slice(&segment_id.to_le_bytes());
        bytes[24..32].copy_from_slice(&offset.to_le_bytes());
        bytes[32..40].copy_from_slice(&index.to_le_bytes());
        let crc = crc32fast::hash(&bytes[0..44]);
        bytes[44..48].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Intent> {
        if bytes.len() != INTENT_BYTES
            || bytes[0..8] != INTENT_MAGIC
            || read_u32(bytes, 8) != INTENT_VERSION
            || crc32fast::hash(&bytes[0..44]) != read_u32(bytes, 44)
        {
            return None;
        }
        let segment_id = read_u64(bytes, 16);
        match read_u32(bytes, 12) {
            KIND_TRUNCATE_SUFFIX => Some(Intent::TruncateSuffix {
                segment_id,
                offset: read_u64(bytes, 24),
                index: read_u64(bytes, 32),
            }),
            KIND_RESET => Some(Intent::Reset {
                segment_id,
                next_index: read_u64(bytes, 32),
            }),
            _ => None,
        }
    }
}

/// Writes the intent and makes it durable (file and directory entry).
pub fn write_intent(vfs: &dyn Vfs, dir: &Path, intent: Intent) -> Result<()> {
    let path = intent_path(dir);
    let mut file = vfs
        .create_file(&path)
        .map_err(|error| Error::io("create intent", &path, error))?;
    file.write_at(0, &intent.encode())
        .map_err(|error| Error::io("write intent", &path, error))?;
    file.sync()
        .map_err(|error| Error::io("sync intent", &path, error))?;
    vfs.sync_dir(dir)
        .map_err(|error| Error::io("sync directory", dir, error))
}

/// Reads the intent, if a valid one exists. An invalid one is removed.
pub fn read_intent(vfs: &dyn Vfs, dir: &Path) -> Result<Option<Intent>> {
    let path = intent_path(dir);
    let bytes = match vfs.read_file(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(Error::io("read intent", &path, error)),
    };
    match Intent::decode(&bytes) {
        Some(intent) => Ok(Some(intent)),
        None => {
            tracing::warn!(path = %path.display(), "discarding an intent that was never made durable");
            remove_intent(vfs, dir)?;
            Ok(None)
        }
    }
}

/// Removes the intent durably.
pub fn remove_intent(vfs: &dyn Vfs, dir: &Path) -> Result<()> {
    let path = intent_path(dir);
    vfs.remove_file(&path)
        .map_err(|error| Error::io("remove intent", &path, error))?;
    vfs.sync_dir(dir)
        .map_err(|error| Error::io("sync directory", dir, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_round_trip_and_damage_is_rejected() {
        for intent in [
            Intent::TruncateSuffix {
                segment_id: 3,
                offset: 4096,
                index: 77,
            },
            Intent::Reset {
                segment_id: 9,
                next_index: 1000,
            },
        ] {
            let mut bytes = intent.encode();
            assert_eq!(Intent::decode(&bytes), Some(intent));
            bytes[20] ^= 1;
            assert_eq!(Intent::decode(&bytes), None);
        }
    }
}
