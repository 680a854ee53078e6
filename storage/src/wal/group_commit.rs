//! Group commit: syncs, the durable watermark, and the threads that wait
//! for it.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, MutexGuard, TryLockError};
use std::thread::Thread;

use super::{State, Wal};
use crate::error::{Error, Result};
use crate::format::SEGMENT_HEADER_BYTES;
use crate::vfs::Region;

/// A thread parked until `index` is durable.
#[derive(Debug)]
pub(super) struct Waiter {
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
    pub(super) fn wake_waiters(&self, everyone: bool) {
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
    pub(super) fn sync_step(&self) -> Result<u64> {
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

    pub(super) fn publish_durable(&self, state: &mut State, durable_index: u64) {
        state.durable_index = durable_index;
        self.durable_index.store(durable_index, Ordering::SeqCst);
        self.durable_sender.send_replace(durable_index);
    }
}
