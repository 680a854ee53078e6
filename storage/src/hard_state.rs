//! The hard-state file: a small opaque blob kept durably in two slots.
//!
//! Each write stores the new value in both slots, one after the other, each
//! with the next sequence number and synced before the other is touched. A
//! crash mid-write can damage only the slot being written: if it is the
//! first, the other still holds the previous value (which was never
//! superseded, since the write had not completed); if it is the second, the
//! first already holds the new one. Once a write completes, both slots hold
//! the same value, so damage to either one later (a bad sector, a flipped
//! bit) still leaves the latest value in the other rather than an older
//! one — for a Raft vote, an older value would allow a second vote in the
//! same term. Slots are a page apart so one torn page never touches both.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::{read_u32, read_u64};
use crate::vfs::{Region, Vfs};

/// Name of the hard-state file in the log directory.
pub const HARD_STATE_FILE_NAME: &str = "hardstate";
/// Bytes per slot.
pub const HARD_STATE_SLOT_BYTES: usize = 4096;
const SLOT_HEADER_BYTES: usize = 16;
/// Largest blob a slot holds.
pub const HARD_STATE_MAX_BYTES: usize = HARD_STATE_SLOT_BYTES - SLOT_HEADER_BYTES;
const FILE_BYTES: usize = 2 * HARD_STATE_SLOT_BYTES;

/// The hard-state file and the value most recently set.
#[derive(Debug)]
pub struct HardStateFile {
    region: Arc<dyn Region>,
    path: PathBuf,
    /// The latest value set, durable or not.
    value: Vec<u8>,
    /// Bumped by every `set`.
    version: u64,
    /// The version that is durable.
    durable_version: u64,
    /// Sequence number of the latest durable slot (0: none written yet).
    durable_sequence: u64,
}

/// What a sync must write: the slot sequence number and the value.
#[derive(Debug)]
pub struct HardStateWrite {
    /// The version being made durable.
    pub version: u64,
    sequence: u64,
    value: Vec<u8>,
}

/// Slot layout: `{ sequence:u64 | length:u32 | crc:u32 | value }`, the CRC-32
/// covering `sequence ‖ length ‖ value`. Sequence 0 means never written.
fn slot_crc(slot: &[u8], length: usize) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&slot[0..12]);
    hasher.update(&slot[SLOT_HEADER_BYTES..SLOT_HEADER_BYTES + length]);
    hasher.finalize()
}

enum SlotStatus {
    Empty,
    Valid { sequence: u64, value: Vec<u8> },
    Invalid,
}

fn decode_slot(slot: &[u8]) -> SlotStatus {
    if slot.iter().all(|&byte| byte == 0) {
        return SlotStatus::Empty;
    }
    let sequence = read_u64(slot, 0);
    let length = read_u32(slot, 8) as usize;
    if sequence == 0
        || length > HARD_STATE_MAX_BYTES
        || slot_crc(slot, length) != read_u32(slot, 12)
    {
        return SlotStatus::Invalid;
    }
    SlotStatus::Valid {
        sequence,
        value: slot[SLOT_HEADER_BYTES..SLOT_HEADER_BYTES + length].to_vec(),
    }
}

impl HardStateFile {
    /// Opens the file, creating it (durably) if it does not exist, and loads
    /// the last durable value.
    ///
    /// Decision table: both slots valid → the higher sequence wins; one
    /// valid → it wins (the other was torn mid-write, damaged, or is empty); one
    /// damaged and one empty → the very first write was torn, no value; both
    /// damaged → corruption, because at least one was durable.
    pub fn open(vfs: &dyn Vfs, dir: &Path, existing: bool) -> Result<Self> {
        let path = dir.join(HARD_STATE_FILE_NAME);
        let region = if existing {
            vfs.open_region(&path)
                .map_err(|error| Error::io("open hard state", &path, error))?
        } else {
            let region = vfs
                .create_region(&path, FILE_BYTES)
                .map_err(|error| Error::io("create hard state", &path, error))?;
            vfs.sync_dir(dir)
                .map_err(|error| Error::io("sync directory", dir, error))?;
            region
        };
        if region.len_bytes() != FILE_BYTES {
            return Err(Error::CorruptFile {
                path,
                reason: format!(
                    "hard-state file is {} bytes, expected {FILE_BYTES}",
                    region.len_bytes()
                ),
            });
        }
        // A slot written just before a process crash may sit in the page
        // cache only; it is about to be used as the durable value.
        region
            .sync_range(0, FILE_BYTES)
            .map_err(|error| Error::io("sync hard state", &path, error))?;
        let mut slots = Vec::with_capacity(2);
        for slot in 0..2 {
            region.inspect(
                slot * HARD_STATE_SLOT_BYTES,
                HARD_STATE_SLOT_BYTES,
                &mut |bytes| {
                    slots.push(decode_slot(bytes));
                },
            );
        }
        let (sequence, value) = match (&slots[0], &slots[1]) {
            (SlotStatus::Invalid, SlotStatus::Invalid) => {
                return Err(Error::CorruptFile {
                    path,
                    reason: "both hard-state slots are damaged".into(),
                });
            }
            (
                SlotStatus::Valid {
                    sequence: a,
                    value: first,
                },
                SlotStatus::Valid {
                    sequence: b,
                    value: second,
                },
            ) => {
                if a > b {
                    (*a, first.clone())
                } else {
                    (*b, second.clone())
                }
            }
            (SlotStatus::Valid { sequence, value }, _)
            | (_, SlotStatus::Valid { sequence, value }) => (*sequence, value.clone()),
            _ => (0, Vec::new()),
        };
        Ok(HardStateFile {
            region,
            path,
            value,
            version: 0,
            durable_version: 0,
            durable_sequence: sequence,
        })
    }

    /// The latest value set (or loaded).
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// Replaces the value; durable after the next sync.
    pub fn set(&mut self, value: &[u8]) -> Result<()> {
        if value.len() > HARD_STATE_MAX_BYTES {
            return Err(Error::HardStateTooLarge {
                length_bytes: value.len(),
                max_bytes: HARD_STATE_MAX_BYTES,
            });
        }
        self.value.clear();
        self.value.extend_from_slice(value);
        self.version += 1;
        Ok(())
    }

    /// The write a sync must perform, if the value changed since the last.
    pub fn pending_write(&self) -> Option<HardStateWrite> {
        (self.version > self.durable_version).then(|| HardStateWrite {
            version: self.version,
            sequence: self.durable_sequence + 1,
            value: self.value.clone(),
        })
    }

    /// The region, for a syncer that works without the state lock.
    pub fn region(&self) -> Arc<dyn Region> {
        self.region.clone()
    }

    /// The path, for error messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records that `write` is durable.
    pub fn mark_durable(&mut self, write: &HardStateWrite) {
        self.durable_version = self.durable_version.max(write.version);
        self.durable_sequence = self.durable_sequence.max(write.last_sequence());
    }
}

impl HardStateWrite {
    /// Writes the value to both slots, syncing each before the next.
    pub fn perform(&self, region: &dyn Region) -> std::io::Result<()> {
        for sequence in [self.sequence, self.last_sequence()] {
            let slot_offset = (sequence % 2) as usize * HARD_STATE_SLOT_BYTES;
            let mut slot = [0u8; HARD_STATE_SLOT_BYTES];
            slot[0..8].copy_from_slice(&sequence.to_le_bytes());
            slot[8..12].copy_from_slice(&(self.value.len() as u32).to_le_bytes());
            slot[SLOT_HEADER_BYTES..SLOT_HEADER_BYTES + self.value.len()]
                .copy_from_slice(&self.value);
            let crc = slot_crc(&slot, self.value.len());
            slot[12..16].copy_from_slice(&crc.to_le_bytes());
            region.write(slot_offset, &slot);
            region.sync_range(slot_offset, HARD_STATE_SLOT_BYTES)?;
        }
        Ok(())
    }

    /// The sequence number of the second slot written.
    fn last_sequence(&self) -> u64 {
        self.sequence + 1
    }
}
