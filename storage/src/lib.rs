//! Segmented, memory-mapped write-ahead log and snapshot files for raftq.
//!
//! The crate knows nothing of Raft or jobs: a [`Wal`] stores opaque records
//! at consecutive `u64` indexes (starting at 1, or wherever
//! [`Wal::reset_to`] says), plus a small durable "hard state" blob; a
//! [`SnapshotStore`] keeps one state-machine snapshot.
//!
//! # Layout
//!
//! - `wal.rs`: [`Wal`]: open, append, rollover, reads, spare segments;
//!   `wal/group_commit.rs`: sync, the durable watermark and its waiters;
//!   `wal/truncation.rs`: `truncate_suffix`, `compact_prefix`, `reset_to`.
//! - `recovery.rs`: opening a directory: the decision table below.
//! - `segment.rs`: one segment file in memory, and the scan of its records.
//! - `format.rs`: header and record encoding, CRCs.
//! - `intent.rs`: the intent file that makes truncation and reset crash-safe.
//! - `hard_state.rs`: the two-slot hard-state file.
//! - `snapshot.rs`: [`SnapshotStore`].
//! - `vfs.rs`: the I/O seam ([`Vfs`], [`Region`], [`WritableFile`]);
//!   `std_vfs.rs` and `fault_vfs.rs` implement it.
//! - `config.rs`, `error.rs`: [`WalConfig`] with its limits, and [`Error`].
//!
//! # How the Raft node drives it
//!
//! ```no_run
//! use std::sync::Arc;
//! use raftq_storage::{StdVfs, Wal, WalConfig};
//!
//! # fn main() -> raftq_storage::Result<()> {
//! let wal = Arc::new(Wal::open(Arc::new(StdVfs::new()), "data/wal", WalConfig::default())?);
//! // Driver task: append (readable at once, not yet durable).
//! let indexes = wal.append(&[b"entry one".as_slice(), b"entry two".as_slice()])?;
//! wal.set_hard_state(b"term=3 vote=2 commit=7")?;
//! // Persister thread: one sync covers every append and the hard state set before it.
//! let durable = wal.sync()?;
//! assert!(durable >= indexes.end - 1);
//! # Ok(())
//! # }
//! ```
//!
//! Async code waits on [`Wal::subscribe_durable`] (a `tokio::sync::watch`
//! receiver of the durable watermark). Callers that simply want "append and
//! wait" from many threads use [`Wal::append_durable`]: leader/follower group
//! commit, where the first waiter syncs everything written so far, the
//! others wait for the watermark, and at most one sync is in flight.
//!
//! # Files in the log directory
//!
//! - `NNNNNNNNNNNNNNNNNNNN.wal`: segments, named by their id in 20 decimal
//!   digits. Ids grow along the log and are never reused by a live file.
//! - `hardstate`: two 4 KiB slots.
//! - `wal.intent`: present only while a truncation or reset is in progress.
//!
//! # Segment format
//!
//! A segment is a file of fixed size (default 64 MiB, [`WalConfig`]),
//! preallocated and mapped for reads and writes. Integers are little endian.
//!
//! Header, 64 bytes at offset 0:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 8  | magic `RAFTQWAL` |
//! | 8  | 4  | format version, `1` |
//! | 12 | 4  | reserved, zero |
//! | 16 | 8  | segment id |
//! | 24 | 8  | first index: the index of the segment's first record |
//! | 32 | 8  | segment size in bytes (must equal the file length) |
//! | 40 | 20 | reserved, zero |
//! | 60 | 4  | CRC-32 (crc32fast, ISO-HDLC) of bytes 0..60 |
//!
//! Records follow from offset 64, each starting at a multiple of 8:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 4 | CRC-32 of `segment id (u64) ‖ record bytes 4..32 ‖ payload` |
//! | 4  | 4 | payload length (at most [`RECORD_PAYLOAD_LIMIT_BYTES`]; writes are limited by [`WalConfig::record_payload_max_bytes`]) |
//! | 8  | 8 | index (never 0) |
//! | 16 | 8 | batch first index: `durable watermark + 1` when the record was written |
//! | 24 | 1 | kind: `1` entry, `2` seal |
//! | 25 | 7 | reserved, zero |
//! | 32 | n | payload, then zero padding to a multiple of 8 |
//!
//! Because the CRC is seeded with the segment id, bytes left in reused or
//! preallocated space by another segment never validate. A length is
//! checked against the format limit and the segment end before use, so a
//! garbage length never sizes a buffer.
//!
//! The space after the last record is zero. Every segment keeps 40 bytes
//! free for a **seal**: when the next record does not fit, a seal record
//! (kind 2, index = the next segment's first index, payload = the next
//! segment's id as u64) ends the segment. A sealed segment proves its
//! successor exists, so a lost tail segment is detected.
//!
//! # Durability rules
//!
//! - `append` copies into the mapping; a sync ([`Region::sync_range`],
//!   an fdatasync of the segment file for [`StdVfs`]) makes everything
//!   written before it durable.
//! - A new segment is prepared ahead (created, preallocated, its directory
//!   entry synced) with an all-zero header. A rollover writes the seal into
//!   the old segment and continues in the spare; the next sync makes the old
//!   segment (with the seal) durable **before** it writes the new segment's
//!   header. A segment with a valid header therefore always has a durable
//!   seal before it.
//! - Sync order: segments oldest first, then the hard state, so a durable
//!   hard state never refers to entries that a crash could still lose.
//! - Any failed sync poisons the log: every later call returns
//!   [`Error::Poisoned`]; reopening recovers from the disk alone.
//! - `truncate_suffix(from)`: syncs everything, makes an intent durable,
//!   removes later segments (directory synced), zeroes the cut region and
//!   syncs it, removes the intent. Old records at the cut indexes can never
//!   reappear behind new ones. Recovery finishes an interrupted truncation.
//! - `reset_to(index)`: intent, new empty segment whose header says
//!   `index`, old segments removed, intent removed.
//! - `compact_prefix(up_to)`: removes whole segments whose records all lie
//!   below `up_to`, oldest first, syncing the directory after each, so a
//!   crash leaves a shorter prefix removed but never a gap.
//! - A mapped file is never truncated; segment files are only created
//!   (preallocated) and removed.
//!
//! # Recovery decision table
//!
//! Segments are taken in id order. Every segment but the last one with a
//! valid header is "sealed"; the last one is the tail.
//!
//! | what recovery finds | outcome |
//! |---|---|
//! | a valid intent file | finish the truncation or reset, then continue |
//! | an intent file that fails its CRC | it never became durable, so nothing started: remove it |
//! | a header with bad magic, CRC, version, id or length | hard error (segment, offset 0, expected index) |
//! | a zero header before a segment with a valid header | hard error |
//! | records that run into the last 40 bytes a segment keeps for its seal | hard error: the writer never puts them there |
//! | zero-header files after the tail | unused spares: removed |
//! | sealed segment: a record fails, or is out of sequence, before the seal | hard error: its successor's header proves the whole segment was durable |
//! | sealed segment: the seal names a different next id, or the next first index differs | missing segment / hard error |
//! | tail ends with a seal, and the named segment exists with a zero header | the rollover never became durable: zero the seal and any nonzero bytes after it, remove the spare |
//! | tail ends with a seal, and the named segment is missing | [`Error::MissingSegment`] |
//! | tail: records stop at offset P (zero header, bad CRC, bad length, wrong index) and a valid record later in the segment carries a batch first index **above** the index expected at P | hard error: that record was written after the record at P was known durable, so P held acknowledged data |
//! | tail: records stop at P, and every valid record after P has a batch first index at or below the index expected at P (or there is none) | torn tail: the damage lies in the last batch that was not known durable; zero from P to the last nonzero byte, sync, append from P |
//! | tail: records stop at P and everything after is zero | clean end |
//!
//! The batch first index is the durable watermark plus one at the time the
//! record was written (a sync that had only *started* proves nothing, since
//! pages of a mapping reach the disk in any order). One case cannot be told
//! apart without an extra write per sync: damage inside the final batch
//! when that batch's sync completed and nothing was written after it. It
//! looks exactly like a torn unsynced batch and is cut; the cut is reported
//! in [`Wal::recovery_report`] and logged, never silent.
//!
//! The hard-state file has its own table (see `hard_state.rs`): the valid
//! slot with the highest sequence wins; one damaged slot and one empty
//! means the first write was torn; two damaged slots are a hard error.
//!
//! # Real disk choices ([`StdVfs`])
//!
//! Measured with `cargo bench --bench wal` on the development machine
//! (ext4 on a virtual disk shared with other work, so single figures drift
//! by 2x or more between runs; each configuration is compared with a
//! baseline measured right before it):
//!
//! - **Preallocation**: [`Preallocation::Fallocate`] is the default.
//!   Writing zeros was slower in every run: it doubles the bytes written
//!   per segment, and a durable 1-writer append into zero-written space was
//!   not faster either.
//! - **Sync**: fdatasync of the file, not msync(MS_SYNC) of the range. On
//!   Linux both write back pages dirtied through a shared mapping and flush
//!   the device cache; fdatasync was faster in side-by-side runs.
//! - **Writes**: [`WriteMethod::Mapped`] (memcpy into the mapping) is the
//!   default, as small records then cost no system call;
//!   [`WriteMethod::Pwrite`] avoids a page fault per new page and was
//!   faster for 64 KiB records.
//! - **Not done yet**: recycling removed segments as spares (their blocks
//!   are already written, so a sync would not have to convert unwritten
//!   extents). The segment-id-seeded CRC already makes stale bytes harmless;
//!   recovery would have to stop zeroing stale bytes that do not validate.
//!
//! # Snapshot format
//!
//! `snapshot-NNNNNNNNNNNNNNNNNNNN.snap` (a sequence number), written as
//! `….snap.tmp`, synced, renamed, directory synced; older snapshots are
//! removed after that. 40-byte header: magic `RAFTQSNP` (8), version (4),
//! meta length (4), data length (8), sequence (8), CRC-32 of `meta ‖ data`
//! (4), CRC-32 of header bytes 0..36 (4); then meta, then data.
#![deny(missing_docs)]

mod config;
mod error;
mod fault_vfs;
mod format;
mod hard_state;
mod intent;
mod recovery;
mod segment;
mod snapshot;
mod std_vfs;
mod vfs;
mod wal;

pub use config::{
    DEFAULT_RECORD_PAYLOAD_MAX_BYTES, DEFAULT_SEGMENT_SIZE_BYTES, SEGMENT_SIZE_MAX_BYTES,
    SEGMENT_SIZE_MIN_BYTES, WalConfig,
};
pub use error::{Error, Result};
pub use fault_vfs::{CrashMode, FAULT_PAGE_BYTES, FaultVfs};
pub use format::{
    FORMAT_VERSION, RECORD_ALIGNMENT_BYTES, RECORD_HEADER_BYTES, RECORD_PAYLOAD_LIMIT_BYTES,
    SEAL_RECORD_BYTES, SEGMENT_HEADER_BYTES,
};
pub use hard_state::{HARD_STATE_FILE_NAME, HARD_STATE_MAX_BYTES, HARD_STATE_SLOT_BYTES};
pub use intent::INTENT_FILE_NAME;
pub use recovery::{CompletedIntent, RecoveryReport, TailCut};
pub use segment::segment_file_name;
pub use snapshot::{SNAPSHOT_META_MAX_BYTES, Snapshot, SnapshotStore, SnapshotWriter};
pub use std_vfs::{Preallocation, StdVfs, WriteMethod};
pub use vfs::{Region, Vfs, WritableFile};
pub use wal::{DiskUsage, Entries, Wal, WalStats};
