//! The write-ahead log: appends, group commit, reads, truncation and
//! compaction over a chain of segments.

use std::collections::VecDeque;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread::Thread;

use bytes::Bytes;
use tokio::sync::watch;

use crate::config::WalConfig;
use crate::error::{Error, Result};
use crate::format::{RecordKind, SEAL_RECORD_BYTES, SEGMENT_HEADER_BYTES, record_total_bytes};
use crate::hard_state::HardStateFile;
use crate::intent::{Intent, remove_intent, write_intent};
use crate::recovery::{RecoveryReport, create_first_segment, recover};
use crate::segment::{Segment, create_segment_file};
use crate::vfs::{Region, Vfs};

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

/// A thread parked until `index` is durable.
#[derive(Debug)]
struct Waiter {
    index: u64,
    thread: Thread,
    /// Set when a waker removed it from the list.
    dequeued: AtomicBool,
}

/// One segment's share of a sync, captured under the state lock.
struct SyncItem {
    segment_id: u64,
    path: PathBuf,
    region: Arc<dyn Region>,
    header: Option<[u8; SEGMENT_HEADER_BYTES]>,
    from_bytes: usize,
    to_bytes: usize,
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

    /// Appends records and returns once they are durable. Many threads may
    /// call it at once: one of the waiters syncs for everyone written so far
    /// (group commit, at most one sync in flight), the others wait.
    pub fn append_durable<R: AsRef<[u8]>>(&self, records: &[R]) -> Result<Range<u64>> {
        let (range, epoch) = self.append_returning_epoch(records)?;
        if !range.is_empty() {
            self.wait_durable_inner(range.end - 1, Some(epoch))?;
        }
        Ok(range)
    }

    /// Blocks until `index` is durable, syncing if no one else is, and
    /// returns the durable watermark. An index past the end of the log is
    /// an error, not a wait for a future append.
    pub fn wait_durable(&self, index: u64) -> Result<u64> {
        self.check_poisoned()?;
        let last_index = self.last_index();
        if index > last_index {
            return Err(Error::IndexOutOfRange {
                index,
                first_index: self.first_index(),
                last_index,
            });
        }
        self.wait_durable_inner(index, None)
    }

    fn wait_durable_inner(&self, index: u64, epoch: Option<u64>) -> Result<u64> {
        let mut registered: Option<Arc<Waiter>> = None;
        let result = loop {
            if let Err(error) = self.check_poisoned() {
                break Err(error);
            }
            // Read the watermark before the epoch: a truncation bumps the
            // epoch before any later sync raises the watermark again.
            let durable_index = self.durable_index.load(Ordering::SeqCst);
            if epoch.is_some_and(|epoch| epoch != self.truncation_epoch.load(Ordering::SeqCst)) {
                break Err(Error::Truncated { index });
            }
            if durable_index >= index {
                break Ok(durable_index);
            }
            let guard = match self.sync_lock.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(poison)) => poison.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    if registered.is_none() {
                        let waiter = Arc::new(Waiter {
                            index,
                            thread: std::thread::current(),
                            dequeued: AtomicBool::new(false),
                        });
                        self.lock_waiters().push(waiter.clone());
                        registered = Some(waiter);
                        // Check again before parking: the sync in flight
                        // may have finished before this waiter was listed.
                        continue;
                    }
                    std::thread::park();
                    continue;
                }
            };
            // This waiter leads: one sync covers everyone written so far.
            match self.sync_holding(guard) {
                Err(error) => break Err(error),
                // Everything appended is durable now, so an index still
                // above the watermark is not in the log (any more).
                Ok(durable_index) if durable_index < index && index > self.last_index() => {
                    break Err(Error::Truncated { index });
                }
                Ok(_) => {}
            }
            self.prepare_spare_quietly();
        };
        if let Some(waiter) = registered
            && !waiter.dequeued.load(Ordering::SeqCst)
        {
            self.lock_waiters()
                .retain(|listed| !Arc::ptr_eq(listed, &waiter));
        }
        result
    }

    /// Wakes the parked waiters that the watermark now covers (all of them
    /// when `everyone`), then one that it does not cover, which leads the
    /// next sync. Covered ones go first so their next appends can join that
    /// sync's batch.
    fn wake_waiters(&self, everyone: bool) {
        let durable_index = self.durable_index.load(Ordering::SeqCst);
        let mut woken: Vec<Thread> = Vec::new();
        let mut next_leader = None;
        {
            let mut waiters = self.lock_waiters();
            if waiters.is_empty() {
                return;
            }
            waiters.retain(|waiter| {
                if everyone || waiter.index <= durable_index {
                    waiter.dequeued.store(true, Ordering::SeqCst);
                    woken.push(waiter.thread.clone());
                    return false;
                }
                if next_leader.is_none() {
                    next_leader = Some(waiter.thread.clone());
                }
                true
            });
        }
        for thread in woken.into_iter().chain(next_leader) {
            thread.unpark();
        }
    }

    /// Makes everything appended (and the hard state set) before the call
    /// durable, and returns the durable watermark. Blocking: call it from a
    /// persister thread, not from an async task.
    pub fn sync(&self) -> Result<u64> {
        self.check_poisoned()?;
        let guard = self.lock_sync();
        let durable_index = self.sync_holding(guard)?;
        self.prepare_spare_quietly();
        Ok(durable_index)
    }

    /// Runs one sync with the sync lock held, then releases the lock and
    /// wakes the waiters.
    fn sync_holding(&self, guard: MutexGuard<'_, ()>) -> Result<u64> {
        let result = self.sync_step();
        drop(guard);
        self.wake_waiters(result.is_err());
        result
    }

    /// The sync itself; the caller holds the sync lock. Segment data goes
    /// first, in log order, so a new segment's header is written only after
    /// the seal naming it is durable; the hard state goes last.
    fn sync_step(&self) -> Result<u64> {
        self.check_poisoned()?;
        let (target_index, items, hard_state_write, hard_state_region) = {
            let state = self.lock_state();
            let items: Vec<SyncItem> = state
                .segments
                .iter()
                .filter(|segment| {
                    !segment.header_durable || segment.written_bytes > segment.synced_bytes
                })
                .map(|segment| SyncItem {
                    segment_id: segment.id,
                    path: segment.path.clone(),
                    region: segment.region.clone(),
                    header: (!segment.header_durable).then(|| segment.header().encode()),
                    from_bytes: if segment.header_durable {
                        segment.synced_bytes
                    } else {
                        0
                    },
                    to_bytes: segment.written_bytes,
                })
                .collect();
            let hard_state_write = state.hard_state.pending_write();
            let hard_state_region = hard_state_write.as_ref().map(|_| state.hard_state.region());
            (
                state.next_index - 1,
                items,
                hard_state_write,
                hard_state_region,
            )
        };
        if items.is_empty() && hard_state_write.is_none() {
            return Ok(self.durable_index());
        }
        for item in &items {
            if let Some(header) = &item.header {
                item.region.write(0, header);
            }
            item.region
                .sync_range(item.from_bytes, item.to_bytes - item.from_bytes)
                .map_err(|error| self.poison(Error::io("sync segment", &item.path, error)))?;
            self.counters.segment_syncs.fetch_add(1, Ordering::Relaxed);
        }
        if let (Some(write), Some(region)) = (&hard_state_write, &hard_state_region) {
            write.perform(&**region).map_err(|error| {
                let path = self.lock_state().hard_state.path().to_path_buf();
                self.poison(Error::io("sync hard state", path, error))
            })?;
            self.counters
                .hard_state_syncs
                .fetch_add(1, Ordering::Relaxed);
        }
        self.counters.sync_batches.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock_state();
        for item in &items {
            if let Some(segment) = state
                .segments
                .iter_mut()
                .find(|segment| segment.id == item.segment_id)
            {
                segment.header_durable = true;
                segment.synced_bytes = segment.synced_bytes.max(item.to_bytes);
            }
        }
        if let Some(write) = &hard_state_write {
            state.hard_state.mark_durable(write);
        }
        let durable_index = state.durable_index.max(target_index);
        self.publish_durable(&mut state, durable_index);
        Ok(durable_index)
    }

    fn publish_durable(&self, state: &mut State, durable_index: u64) {
        state.durable_index = durable_index;
        self.durable_index.store(durable_index, Ordering::SeqCst);
        self.durable_sender.send_replace(durable_index);
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

    /// Removes every record at and after `from` (for a Raft log conflict).
    ///
    /// Crash safety: an intent is made durable first, then later segments
    /// are removed and the cut region is zeroed and synced, then the intent
    /// is removed. Old records at these indexes can therefore never reappear
    /// behind new ones after a crash. Everything appended before the call is
    /// synced first. Blocking; costs several syncs.
    pub fn truncate_suffix(&self, from: u64) -> Result<()> {
        self.check_poisoned()?;
        let guard = self.lock_sync();
        let result = self
            .sync_step()
            .and_then(|_| self.truncate_holding_sync(from));
        drop(guard);
        self.wake_waiters(true);
        result
    }

    fn truncate_holding_sync(&self, from: u64) -> Result<()> {
        let mut state = self.lock_state();
        let first_index = state.first_index();
        if from < first_index || from > state.next_index {
            return Err(Error::IndexOutOfRange {
                index: from,
                first_index,
                last_index: state.next_index - 1,
            });
        }
        if from == state.next_index {
            return Ok(());
        }
        let position = state
            .segments
            .partition_point(|segment| segment.first_index <= from)
            - 1;
        let segment = &state.segments[position];
        let offset = segment
            .record_range(from)
            .map_or(segment.records_end_bytes, |(offset, _)| offset);
        let intent = Intent::TruncateSuffix {
            segment_id: segment.id,
            offset: offset as u64,
            index: from,
        };
        write_intent(&*self.vfs, &self.dir, intent).map_err(|error| self.poison(error))?;
        let removed: Vec<Segment> = state.segments.drain(position + 1..).collect();
        for segment in removed.iter().rev() {
            self.vfs
                .remove_file(&segment.path)
                .map_err(|error| self.poison(Error::io("remove segment", &segment.path, error)))?;
        }
        if !removed.is_empty() {
            self.sync_dir()?;
        }
        let segment = state.tail_mut();
        let end = segment.written_bytes;
        segment.region.zero(offset, end - offset);
        let synced = segment.region.sync_range(offset, end - offset);
        let path = segment.path.clone();
        synced.map_err(|error| self.poison(Error::io("sync segment", path, error)))?;
        let kept_records = (from - segment.first_index) as usize;
        segment.record_offsets.truncate(kept_records);
        segment.records_end_bytes = offset;
        segment.written_bytes = offset;
        segment.synced_bytes = offset;
        segment.sealed = false;
        remove_intent(&*self.vfs, &self.dir).map_err(|error| self.poison(error))?;
        state.next_index = from;
        self.truncation_epoch.fetch_add(1, Ordering::SeqCst);
        self.publish_durable(&mut state, from - 1);
        Ok(())
    }

    /// Removes whole segments whose records all lie below `up_to` (after the
    /// caller has a durable snapshot covering them). The tail segment is
    /// never removed. Returns how many segments were removed.
    pub fn compact_prefix(&self, up_to: u64) -> Result<usize> {
        self.check_poisoned()?;
        let guard = self.lock_sync();
        let result = self.compact_holding_sync(up_to);
        drop(guard);
        self.wake_waiters(result.is_err());
        result
    }

    fn compact_holding_sync(&self, up_to: u64) -> Result<usize> {
        let removable =
            |state: &State| state.segments.len() > 1 && state.segments[1].first_index <= up_to;
        if !removable(&self.lock_state()) {
            return Ok(0);
        }
        // The segment after a removed one must have a durable header before
        // it becomes the first segment on disk.
        self.sync_step()?;
        let mut state = self.lock_state();
        let mut removed = 0;
        while removable(&state) {
            let segment = state.segments.pop_front().expect("checked above");
            if let Err(error) = self.vfs.remove_file(&segment.path) {
                let error = Error::io("remove segment", &segment.path, error);
                state.segments.push_front(segment);
                return Err(error);
            }
            // One directory sync per removal: a crash can then only leave a
            // shorter prefix removed, never a gap.
            self.sync_dir()?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Discards the whole log and continues at `next_index` (after a
    /// snapshot from the leader covers more than the log holds).
    ///
    /// Crash safety: an intent naming the new segment is made durable
    /// first; recovery finishes an interrupted reset.
    pub fn reset_to(&self, next_index: u64) -> Result<()> {
        self.check_poisoned()?;
        if next_index == 0 {
            return Err(Error::IndexOutOfRange {
                index: 0,
                first_index: self.first_index(),
                last_index: self.last_index(),
            });
        }
        let guard = self.lock_sync();
        // No spare may be created with an id below the new segment's.
        let preparing = self.lock_spare();
        let result = self.reset_holding_sync(next_index);
        drop(preparing);
        drop(guard);
        self.wake_waiters(true);
        self.prepare_spare_quietly();
        result
    }

    fn reset_holding_sync(&self, next_index: u64) -> Result<()> {
        let mut state = self.lock_state();
        let segment_id = state.next_segment_id;
        state.next_segment_id += 1;
        let intent = Intent::Reset {
            segment_id,
            next_index,
        };
        write_intent(&*self.vfs, &self.dir, intent).map_err(|error| self.poison(error))?;
        let segment = create_first_segment(
            &*self.vfs,
            &self.dir,
            segment_id,
            next_index,
            self.config.segment_size_bytes,
        )
        .map_err(|error| self.poison(error))?;
        let state = &mut *state;
        let old: Vec<Segment> = state
            .segments
            .drain(..)
            .chain(state.spares.drain(..))
            .collect();
        for segment in &old {
            self.vfs
                .remove_file(&segment.path)
                .map_err(|error| self.poison(Error::io("remove segment", &segment.path, error)))?;
        }
        self.sync_dir()?;
        remove_intent(&*self.vfs, &self.dir).map_err(|error| self.poison(error))?;
        state.segments.push_back(segment);
        state.next_index = next_index;
        self.truncation_epoch.fetch_add(1, Ordering::SeqCst);
        self.publish_durable(state, next_index - 1);
        Ok(())
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
