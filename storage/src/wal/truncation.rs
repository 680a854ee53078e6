//! Removing records: suffix truncation, prefix compaction and reset.

use std::sync::atomic::Ordering;

use super::{State, Wal};
use crate::error::{Error, Result};
use crate::intent::{Intent, remove_intent, write_intent};
use crate::recovery::create_first_segment;
use crate::segment::Segment;

impl Wal {
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
}
