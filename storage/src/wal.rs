//! The write-ahead log: appends, group commit, reads, truncation and
//! compaction over a chain of segments.

use std::collections::VecDeque;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::watch;

use crate::config::WalConfig;
use crate::error::{Error, Result};
use crate::format::{RecordKind, SEAL_RECORD_BYTES, SEGMENT_HEADER_BYTES, record_total_bytes};
use crate::hard_state::HardStateFile;
use crate::recovery::{RecoveryReport, recover};
use crate::segment::{Segment, create_segment_file};
use crate::vfs::Vfs;

mod group_commit;
mod truncation;

use group_commit::Waiter;

/// Counters for benchmarks and monitoring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records appended since open.
    pub appended_records: u64,
    /// Syncs that had something to write.
    pub sync_batches: u64,
    /// Syncs (fdatasync for real files) issued to segment files; the figure to
    /// divide by `appended_records` for "fsyncs per record".
    pub segment_syncs: u64,
    /// Syncs of the hard-state file.
    pub hard_state_syncs: u64,
}

/// The segment files the log holds on disk, for monitoring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Segment files: the live ones and any preallocated spare.
    pub segments: u64,
    /// Their total size. Segments are preallocated, so a file counts in
    /// full from the moment it is created.
    pub bytes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    appended_records: AtomicU64,
    sync_batches: AtomicU64,
    segment_syncs: AtomicU64,
    hard_state_syncs: AtomicU64,
}

/// A segmented, memory-mapped write-ahead log of opaque records at
/// consecutive `u64` indexes. See the crate docs for the format, the
/// durability rules and the recovery decision table.
///
/// All methods take `&self`; share it with an `Arc`. One thread appends
/// (or many, for [`Wal::append_durable`]); any thread may sync and read.
#[derive(Debug)]
pub struct Wal {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    config: WalConfig,
    state: Mutex<State>,
    /// Held for the whole of a sync, a truncation, a compaction or a reset,
    /// so at most one sync is in flight and nothing is removed under it.
    sync_lock: Mutex<()>,
    /// Held while a spare segment is created, and by a reset. Lock order:
    /// sync lock, spare lock, state.
    spare_lock: Mutex<()>,
    /// Threads parked in group commit, in arrival order.
    waiters: Mutex<Vec<Arc<Waiter>>>,
    /// Mirror of `State::durable_index`, readable without the state lock.
    durable_index: AtomicU64,
    /// Bumped by every truncation and reset.
    truncation_epoch: AtomicU64,
    poisoned: AtomicBool,
    durable_sender: watch::Sender<u64>,
    counters: Counters,
    report: RecoveryReport,
}

#[derive(Debug)]
struct State {
    /// Live segments, oldest first; the last one is the tail.
    segments: VecDeque<Segment>,
    /// Prepared segments: allocated, durable in the directory, header zero.
    spares: VecDeque<Segment>,
    next_index: u64,
    durable_index: u64,
    next_segment_id: u64,
    hard_state: HardStateFile,
}

impl State {
    fn tail(&self) -> &Segment {
        self.segments
            .back()
            .expect("the log always has a tail segment")
    }

    fn tail_mut(&mut self) -> &mut Segment {
        self.segments
            .back_mut()
            .expect("the log always has a tail segment")
    }

    fn first_index(&self) -> u64 {
        self.segments
            .front()
            .expect("the log always has a tail segment")
            .first_index
    }

    fn locate(&self, index: u64) -> Result<&Segment> {
        if index < self.first_index() || index >= self.next_index {
            return Err(Error::IndexOutOfRange {
                index,
                first_index: self.first_index(),
                last_index: self.next_index - 1,
            });
        }
        let position = self
            .segments
            .partition_point(|segment| segment.first_index <= index);
        Ok(&self.segments[position - 1])
    }
}

impl Wal {
    /// Opens (recovering) or creates the log in `dir`.
    pub fn open(vfs: Arc<dyn Vfs>, dir: impl Into<PathBuf>, config: WalConfig) -> Result<Wal> {
        config.validate()?;
        let dir = dir.into();
        let recovered = recover(&*vfs, &dir, &config)?;
        let durable_index = recovered.next_index - 1;
        let (durable_sender, _) = watch::channel(durable_index);
        let wal = Wal {
            vfs,
            dir,
            config,
            state: Mutex::new(State {
                segments: recovered.segments,
                spares: VecDeque::new(),
                next_index: recovered.next_index,
                durable_index,
                next_segment_id: recovered.next_segment_id,
                hard_state: recovered.hard_state,
            }),
            sync_lock: Mutex::new(()),
            spare_lock: Mutex::new(()),
            waiters: Mutex::new(Vec::new()),
            durable_index: AtomicU64::new(durable_index),
            truncation_epoch: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
            durable_sender,
            counters: Counters::default(),
            report: recovered.report,
        };
        // A full disk must not keep a log from opening: the error surfaces
        // at the rollover that needs the segment.
        wal.prepare_spare_quietly();
        Ok(wal)
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What recovery found and repaired when the log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The first index still stored. Compaction removes whole segments, so
    /// this may lie below the index passed to [`Wal::compact_prefix`].
    pub fn first_index(&self) -> u64 {
        self.lock_state().first_index()
    }

    /// The last index stored; `first_index() - 1` when the log is empty.
    pub fn last_index(&self) -> u64 {
        self.lock_state().next_index - 1
    }

    /// Every index up to this one is durable. It drops only when
    /// [`Wal::truncate_suffix`] or [`Wal::reset_to`] removes records.
    pub fn durable_index(&self) -> u64 {
        self.durable_index.load(Ordering::SeqCst)
    }

    /// A receiver of the durable watermark, for async callers. It works
    /// without a runtime; `changed().await` wakes on every advance.
    pub fn subscribe_durable(&self) -> watch::Receiver<u64> {
        self.durable_sender.subscribe()
    }

    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        WalStats {
            appended_records: self.counters.appended_records.load(Ordering::Relaxed),
            sync_batches: self.counters.sync_batches.load(Ordering::Relaxed),
            segment_syncs: self.counters.segment_syncs.load(Ordering::Relaxed),
            hard_state_syncs: self.counters.hard_state_syncs.load(Ordering::Relaxed),
        }
    }

    /// The segment files on disk and their size, spares included.
    pub fn disk_usage(&self) -> DiskUsage {
        let state = self.lock_state();
        let files = state.segments.iter().chain(state.spares.iter());
        let (segments, bytes) = files.fold((0, 0), |(segments, bytes), segment| {
            (segments + 1, bytes + segment.region.len_bytes() as u64)
        });
        DiskUsage { segments, bytes }
    }

    /// Appends records, readable at once, and returns their indexes. Nothing
    /// is durable until a sync covers it. All or nothing: on error no record
    /// was appended.
    pub fn append<R: AsRef<[u8]>>(&self, records: &[R]) -> Result<Range<u64>> {
        self.append_returning_epoch(records).map(|(range, _)| range)
    }

    fn append_returning_epoch<R: AsRef<[u8]>>(&self, records: &[R]) -> Result<(Range<u64>, u64)> {
        self.check_poisoned()?;
        for record in records {
            let length_bytes = record.as_ref().len();
            if length_bytes > self.config.record_payload_max_bytes {
                return Err(Error::RecordTooLarge {
                    length_bytes,
                    max_bytes: self.config.record_payload_max_bytes,
                });
            }
        }
        let mut state = loop {
            let state = self.lock_state();
            if state.spares.len() >= self.segments_needed_for(&state, records) {
                break state;
            }
            // The prepared spare ran out (a huge batch, or no sync ran since
            // the last rollover): prepare one here, stalling this append.
            drop(state);
            let _preparing = self.lock_spare();
            self.create_spare_holding_spare_lock()?;
        };
        let first_index = state.next_index;
        // Recovery reads this to tell a torn write (everything from here on
        // may be lost) from damage to data that was durable before.
        let batch_first_index = state.durable_index + 1;
        for record in records {
            let payload = record.as_ref();
            if !state.tail().fits(payload.len()) {
                Self::roll_over(&mut state, batch_first_index);
            }
            let index = state.next_index;
            state
                .tail_mut()
                .write_record(RecordKind::Entry, index, batch_first_index, payload);
            state.next_index += 1;
        }
        self.counters
            .appended_records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        let epoch = self.truncation_epoch.load(Ordering::SeqCst);
        Ok((first_index..state.next_index, epoch))
    }

    /// How many new segments the batch needs beyond the tail. Appends check
    /// this before writing, so a batch either fits entirely or nothing is
    /// written.
    fn segments_needed_for<R: AsRef<[u8]>>(&self, state: &State, records: &[R]) -> usize {
        let mut written_bytes = state.tail().written_bytes;
        let mut capacity_bytes = state.tail().region.len_bytes();
        let mut segments_needed = 0;
        for record in records {
            let total_bytes = record_total_bytes(record.as_ref().len());
            if written_bytes + total_bytes + SEAL_RECORD_BYTES > capacity_bytes {
                segments_needed += 1;
                written_bytes = SEGMENT_HEADER_BYTES;
                capacity_bytes = self.config.segment_size_bytes;
            }
            written_bytes += total_bytes;
        }
        segments_needed
    }

    /// Seals the tail and continues in the next prepared segment, whose
    /// header the next sync writes once the seal is durable.
    fn roll_over(state: &mut State, batch_first_index: u64) {
        let mut next = state
            .spares
            .pop_front()
            .expect("spares ensured before writing");
        let next_index = state.next_index;
        next.first_index = next_index;
        state.tail_mut().write_record(
            RecordKind::Seal,
            next_index,
            batch_first_index,
            &next.id.to_le_bytes(),
        );
        state.segments.push_back(next);
    }

    /// Prepares a spare segment if none is ready, so the next rollover does
    /// not have to create a file. Errors surface at the next rollover.
    fn prepare_spare_quietly(&self) {
        if let Err(error) = self.prepare_spare() {
            tracing::warn!(%error, "could not prepare the next segment");
        }
    }

    fn prepare_spare(&self) -> Result<()> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Ok(());
        }
        let Ok(_preparing) = self.spare_lock.try_lock() else {
            return Ok(());
        };
        if !self.lock_state().spares.is_empty() {
            return Ok(());
        }
        self.create_spare_holding_spare_lock()
    }

    /// Creates one spare segment. Ids are allocated and spares queued only
    /// under the spare lock, so spares queue in id order and every spare id
    /// is above every live segment id: the chain of segments on disk always
    /// runs in id order, which recovery relies on.
    fn create_spare_holding_spare_lock(&self) -> Result<()> {
        let segment_id = {
            let mut state = self.lock_state();
            let segment_id = state.next_segment_id;
            state.next_segment_id += 1;
            segment_id
        };
        let (path, region) = create_segment_file(
            &*self.vfs,
            &self.dir,
            segment_id,
            self.config.segment_size_bytes,
        )
        .map_err(|error| self.poison_unless_no_space(error))?;
        self.lock_state()
            .spares
            .push_back(Segment::new(segment_id, path, 0, region));
        Ok(())
    }

    /// Sets the hard state (an opaque blob of at most
    /// [`crate::HARD_STATE_MAX_BYTES`]); durable after the next sync.
    pub fn set_hard_state(&self, value: &[u8]) -> Result<()> {
        self.check_poisoned()?;
        self.lock_state().hard_state.set(value)
    }

    /// The hard state last set, or recovered from disk at open (empty if
    /// none was ever made durable).
    pub fn hard_state(&self) -> Vec<u8> {
        self.lock_state().hard_state.value().to_vec()
    }

    /// Reads the record at `index`, checking its CRC.
    pub fn read(&self, index: u64) -> Result<Bytes> {
        self.with_entry(index, Bytes::copy_from_slice)
    }

    /// Calls `visit` with the checked payload of the record at `index`,
    /// borrowed from the mapping without a copy. The log is locked while
    /// `visit` runs, so keep it short.
    pub fn with_entry<T>(&self, index: u64, visit: impl FnOnce(&[u8]) -> T) -> Result<T> {
        self.check_poisoned()?;
        let state = self.lock_state();
        state.locate(index)?.with_payload(index, visit)
    }

    /// Reads records from `range` until their payloads total at least
    /// `max_bytes` (always at least one record when the range is not empty).
    pub fn read_range(&self, range: Range<u64>, max_bytes: usize) -> Result<Vec<Bytes>> {
        self.check_poisoned()?;
        let state = self.lock_state();
        let mut records = Vec::new();
        let mut total_bytes = 0;
        for index in range {
            if total_bytes >= max_bytes && !records.is_empty() {
                break;
            }
            let record = state
                .locate(index)?
                .with_payload(index, Bytes::copy_from_slice)?;
            total_bytes += record.len();
            records.push(record);
        }
        Ok(records)
    }

    /// Iterates over `range`, each record read and checked on demand.
    pub fn iter(&self, range: Range<u64>) -> Entries<'_> {
        Entries { wal: self, range }
    }

    fn sync_dir(&self) -> Result<()> {
        self.vfs
            .sync_dir(&self.dir)
            .map_err(|error| self.poison(Error::io("sync directory", &self.dir, error)))
    }

    fn check_poisoned(&self) -> Result<()> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    /// Marks the log unusable: after a failed sync the kernel may have
    /// dropped the dirty pages, so nothing written is known to be on disk.
    fn poison(&self, error: Error) -> Error {
        tracing::error!(%error, "poisoning the write-ahead log");
        self.poisoned.store(true, Ordering::SeqCst);
        error
    }

    fn poison_unless_no_space(&self, error: Error) -> Error {
        match error {
            Error::NoSpace { .. } => error,
            error => self.poison(error),
        }
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn lock_sync(&self) -> MutexGuard<'_, ()> {
        self.sync_lock
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn lock_spare(&self) -> MutexGuard<'_, ()> {
        self.spare_lock
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn lock_waiters(&self) -> MutexGuard<'_, Vec<Arc<Waiter>>> {
        self.waiters
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// An iterator over a range of records; see [`Wal::iter`].
#[derive(Debug)]
pub struct Entries<'a> {
    wal: &'a Wal,
    range: Range<u64>,
}

impl Iterator for Entries<'_> {
    type Item = Result<(u64, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        let index = self.range.next()?;
        Some(self.wal.read(index).map(|record| (index, record)))
    }
}
