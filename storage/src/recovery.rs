//! Opening a log directory: finish an interrupted operation, validate every
//! segment, and cut a torn tail (the decision table is in the crate docs).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::WalConfig;
use crate::error::{Error, Result};
use crate::format::{HeaderStatus, SEAL_RECORD_BYTES, SEGMENT_HEADER_BYTES, SegmentHeader};
use crate::hard_state::{HARD_STATE_FILE_NAME, HardStateFile};
use crate::intent::{Intent, read_intent, remove_intent};
use crate::segment::{
    Seal, Segment, create_segment_file, parse_segment_file_name, scan_segment, segment_file_name,
};
use crate::vfs::{Region, Vfs};

/// What recovery found and repaired, for logs and for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments in the log after recovery.
    pub segments: usize,
    /// An interrupted truncation or reset that recovery finished.
    pub completed_intent: Option<CompletedIntent>,
    /// A torn tail that recovery cut off.
    pub cut: Option<TailCut>,
    /// Prepared segments that were never used and were removed.
    pub removed_spare_segments: usize,
}

/// An operation that a crash interrupted and recovery finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletedIntent {
    /// `truncate_suffix(index)`.
    TruncateSuffix {
        /// The first removed index.
        index: u64,
    },
    /// `reset_to(next_index)`.
    Reset {
        /// The index the log continues at.
        next_index: u64,
    },
}

/// A torn or unsynced tail that was cut off and zeroed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailCut {
    /// The tail segment.
    pub segment: PathBuf,
    /// Where the log now ends.
    pub offset: u64,
    /// The first index that was not recovered.
    pub index: u64,
    /// How many bytes were zeroed.
    pub zeroed_bytes: u64,
    /// Why the records stopped there.
    pub reason: String,
}

/// The state a [`crate::Wal`] starts from.
pub struct Recovered {
    /// Live segments, oldest first; the last is the tail.
    pub segments: VecDeque<Segment>,
    /// The index the next append gets.
    pub next_index: u64,
    /// The id the next new segment gets (above every id seen on disk).
    pub next_segment_id: u64,
    /// The hard-state file, loaded.
    pub hard_state: HardStateFile,
    /// What recovery did.
    pub report: RecoveryReport,
}

struct OpenedSegment {
    id: u64,
    path: PathBuf,
    region: Arc<dyn Region>,
    header: HeaderStatus,
}

fn io_error(operation: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |error| Error::io(operation, path, error)
}

fn segment_ids(vfs: &dyn Vfs, dir: &Path) -> Result<(Vec<u64>, bool)> {
    let names = vfs.list_dir(dir).map_err(io_error("list directory", dir))?;
    let mut ids: Vec<u64> = names
        .iter()
        .filter_map(|name| parse_segment_file_name(name))
        .collect();
    ids.sort_unstable();
    let has_hard_state = names.iter().any(|name| name == HARD_STATE_FILE_NAME);
    Ok((ids, has_hard_state))
}

fn remove_and_sync(vfs: &dyn Vfs, dir: &Path, paths: &[PathBuf]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    for path in paths {
        vfs.remove_file(path)
            .map_err(io_error("remove segment", path))?;
    }
    vfs.sync_dir(dir).map_err(io_error("sync directory", dir))
}

/// Writes a segment header and syncs it.
pub fn write_header(region: &dyn Region, header: &SegmentHeader, path: &Path) -> Result<()> {
    region.write(0, &header.encode());
    region
        .sync_range(0, SEGMENT_HEADER_BYTES)
        .map_err(io_error("sync segment header", path))
}

/// Creates a durable, empty segment whose first index is `first_index`.
pub fn create_first_segment(
    vfs: &dyn Vfs,
    dir: &Path,
    segment_id: u64,
    first_index: u64,
    segment_size_bytes: usize,
) -> Result<Segment> {
    let (path, region) = create_segment_file(vfs, dir, segment_id, segment_size_bytes)?;
    let mut segment = Segment::new(segment_id, path, first_index, region);
    write_header(&*segment.region, &segment.header(), &segment.path)?;
    segment.header_durable = true;
    segment.synced_bytes = SEGMENT_HEADER_BYTES;
    Ok(segment)
}

/// Zeroes `offset..` up to the last nonzero byte of the region and syncs it.
/// Returns how many bytes were zeroed.
fn zero_from(region: &dyn Region, offset: usize, path: &Path) -> Result<usize> {
    let mut nonzero_end = offset;
    region.inspect(offset, region.len_bytes() - offset, &mut |bytes| {
        nonzero_end = offset
            + bytes
                .iter()
                .rposition(|&byte| byte != 0)
                .map_or(0, |last| last + 1);
    });
    let zeroed = nonzero_end - offset;
    if zeroed > 0 {
        region.zero(offset, zeroed);
        region
            .sync_range(offset, zeroed)
            .map_err(io_error("sync segment", path))?;
    }
    Ok(zeroed)
}

fn finish_intent(vfs: &dyn Vfs, dir: &Path, intent: Intent, config: &WalConfig) -> Result<()> {
    let (ids, _) = segment_ids(vfs, dir)?;
    match intent {
        Intent::TruncateSuffix {
            segment_id,
            offset,
            index,
        } => {
            let path = dir.join(segment_file_name(segment_id));
            if !ids.contains(&segment_id) {
                return Err(Error::corruption(
                    path,
                    offset as usize,
                    index,
                    "the segment named by an unfinished truncation is missing",
                ));
            }
            let later: Vec<PathBuf> = ids
                .iter()
                .rev()
                .filter(|&&id| id > segment_id)
                .map(|&id| dir.join(segment_file_name(id)))
                .collect();
            remove_and_sync(vfs, dir, &later)?;
            let region = vfs
                .open_region(&path)
                .map_err(io_error("open segment", &path))?;
            zero_from(&*region, offset as usize, &path)?;
        }
        Intent::Reset {
            segment_id,
            next_index,
        } => {
            let path = dir.join(segment_file_name(segment_id));
            let header = SegmentHeader {
                segment_id,
                first_index: next_index,
                segment_size_bytes: 0,
            };
            if ids.contains(&segment_id) {
                let region = vfs
                    .open_region(&path)
                    .map_err(io_error("open segment", &path))?;
                let header = SegmentHeader {
                    segment_size_bytes: region.len_bytes() as u64,
                    ..header
                };
                write_header(&*region, &header, &path)?;
            } else {
                create_first_segment(vfs, dir, segment_id, next_index, config.segment_size_bytes)?;
            }
            let others: Vec<PathBuf> = ids
                .iter()
                .filter(|&&id| id != segment_id)
                .map(|&id| dir.join(segment_file_name(id)))
                .collect();
            remove_and_sync(vfs, dir, &others)?;
        }
    }
    remove_intent(vfs, dir)
}

/// Recovers the log in `dir`, creating an empty one if there is none.
pub fn recover(vfs: &dyn Vfs, dir: &Path, config: &WalConfig) -> Result<Recovered> {
    vfs.create_dir_all(dir)
        .map_err(io_error("create directory", dir))?;
    let mut report = RecoveryReport::default();
    if let Some(intent) = read_intent(vfs, dir)? {
        tracing::warn!(?intent, "finishing an operation interrupted by a crash");
        finish_intent(vfs, dir, intent, config)?;
        report.completed_intent = Some(match intent {
            Intent::TruncateSuffix { index, .. } => CompletedIntent::TruncateSuffix { index },
            Intent::Reset { next_index, .. } => CompletedIntent::Reset { next_index },
        });
    }
    let (ids, has_hard_state) = segment_ids(vfs, dir)?;
    let hard_state = HardStateFile::open(vfs, dir, has_hard_state)?;
    let mut opened = Vec::with_capacity(ids.len());
    for &id in &ids {
        let path = dir.join(segment_file_name(id));
        let region = vfs
            .open_region(&path)
            .map_err(io_error("open segment", &path))?;
        let mut header = HeaderStatus::Invalid("unread");
        region.inspect(
            0,
            SEGMENT_HEADER_BYTES.min(region.len_bytes()),
            &mut |bytes| {
                header = SegmentHeader::decode(bytes);
            },
        );
        opened.push(OpenedSegment {
            id,
            path,
            region,
            header,
        });
    }
    let next_segment_id = ids.last().map_or(1, |&id| id + 1);
    let last_valid = opened
        .iter()
        .rposition(|segment| matches!(segment.header, HeaderStatus::Valid(_)));

    let spare_ids: Vec<u64> = opened
        .iter()
        .enumerate()
        .filter(|(position, segment)| {
            segment.header == HeaderStatus::Zero && last_valid.is_none_or(|last| *position > last)
        })
        .map(|(_, segment)| segment.id)
        .collect();

    let mut segments = VecDeque::with_capacity(opened.len());
    let mut previous_seal: Option<Seal> = None;
    let mut unused = Vec::new();
    if let Some(first) = opened.first() {
        first.region.will_need();
    }
    let read_ahead: Vec<Arc<dyn Region>> = opened
        .iter()
        .skip(1)
        .map(|segment| segment.region.clone())
        .collect();
    for (position, segment) in opened.into_iter().enumerate() {
        // Let the disk read the next segment while this one is checked.
        if let Some(next) = read_ahead.get(position) {
            next.will_need();
        }
        let expected_index = segments
            .back()
            .map_or(0, |previous: &Segment| previous.next_index());
        match segment.header {
            HeaderStatus::Invalid(reason) => {
                return Err(Error::corruption(segment.path, 0, expected_index, reason));
            }
            HeaderStatus::Zero if last_valid.is_some_and(|last| position < last) => {
                return Err(Error::corruption(
                    segment.path,
                    0,
                    expected_index,
                    "segment header is zero, yet later segments exist",
                ));
            }
            HeaderStatus::Zero => unused.push(segment),
            HeaderStatus::Valid(header) => {
                let is_tail = Some(position) == last_valid;
                let (recovered, seal) = recover_segment(
                    segment,
                    header,
                    segments.back().zip(previous_seal),
                    is_tail,
                    &spare_ids,
                    &mut report,
                )?;
                segments.push_back(recovered);
                previous_seal = seal;
            }
        }
    }
    // Files with a zero header after the tail are spares or a rollover that
    // never became durable; nothing in them was acknowledged.
    let unused_paths: Vec<PathBuf> = unused.into_iter().map(|segment| segment.path).collect();
    report.removed_spare_segments = unused_paths.len();
    remove_and_sync(vfs, dir, &unused_paths)?;

    if segments.is_empty() {
        segments.push_back(create_first_segment(
            vfs,
            dir,
            next_segment_id,
            config.initial_index,
            config.segment_size_bytes,
        )?);
    }
    let next_segment_id = next_segment_id.max(segments.back().expect("a tail").id + 1);
    let next_index = segments.back().expect("a tail").next_index();
    report.segments = segments.len();
    Ok(Recovered {
        segments,
        next_index,
        next_segment_id,
        hard_state,
        report,
    })
}

/// End of the last nonzero byte of `region` at or after `from` (`from`
/// itself when the rest is zero).
fn nonzero_end_bytes(region: &dyn Region, from: usize) -> usize {
    let mut end = from;
    let length = region.len_bytes().saturating_sub(from);
    region.inspect(from, length, &mut |bytes| {
        if let Some(last) = bytes.iter().rposition(|&byte| byte != 0) {
            end = from + last + 1;
        }
    });
    end
}

fn recover_segment(
    opened: OpenedSegment,
    header: SegmentHeader,
    previous: Option<(&Segment, Seal)>,
    is_tail: bool,
    spare_ids: &[u64],
    report: &mut RecoveryReport,
) -> Result<(Segment, Option<Seal>)> {
    let OpenedSegment {
        id, path, region, ..
    } = opened;
    if header.segment_id != id {
        return Err(Error::corruption(
            path,
            0,
            header.first_index,
            "header names another segment id",
        ));
    }
    if header.segment_size_bytes != region.len_bytes() as u64 {
        return Err(Error::corruption(
            path,
            0,
            header.first_index,
            "file length differs from its header",
        ));
    }
    if let Some((previous, seal)) = previous {
        // The previous segment is sealed (anything else was rejected below),
        // and its seal names the segment that must follow it.
        if seal.next_segment_id != id {
            return Err(Error::MissingSegment {
                previous: previous.path.clone(),
                segment_id: seal.next_segment_id,
                first_index: seal.next_index,
            });
        }
        if previous.next_index() != header.first_index {
            return Err(Error::corruption(
                path,
                0,
                previous.next_index(),
                format!(
                    "segment starts at index {}, expected {}",
                    header.first_index,
                    previous.next_index()
                ),
            ));
        }
    }
    let scan = scan_segment(&*region, id, header.first_index);
    let mut segment = Segment::new(id, path, header.first_index, region);
    segment.record_offsets = scan.record_offsets;
    segment.records_end_bytes = scan.records_end_bytes;
    segment.header_durable = true;
    let stop_index = segment.next_index();
    // The writer always leaves room for a seal after the last entry, so
    // entries running into that room are damage. Accepting them would make
    // the next rollover write its seal past the end of the segment.
    if scan.records_end_bytes + SEAL_RECORD_BYTES > segment.region.len_bytes() {
        return Err(Error::corruption(
            &segment.path,
            scan.records_end_bytes,
            stop_index,
            "records run into the space kept for the seal",
        ));
    }

    if let Some(seal) = scan.seal {
        segment.sealed = true;
        segment.written_bytes = seal.offset + SEAL_RECORD_BYTES;
        segment.synced_bytes = segment.written_bytes;
        if !is_tail {
            return Ok((segment, Some(seal)));
        }
        // The last segment with a header ends in a seal: the next segment
        // must exist, and its header was never written, so the rollover was
        // still in flight. Undo it: nothing after the seal was acknowledged.
        if !spare_ids.contains(&seal.next_segment_id) {
            return Err(Error::MissingSegment {
                previous: segment.path,
                segment_id: seal.next_segment_id,
                first_index: seal.next_index,
            });
        }
        // The log never writes past a seal, so anything nonzero after it is
        // damage. It is zeroed with the seal: appends continue at the seal's
        // offset, and stray bytes left beyond them could otherwise pass for
        // records written after a durable sync and fail the next recovery.
        let zeroed_bytes = nonzero_end_bytes(&*segment.region, seal.offset + SEAL_RECORD_BYTES)
            .saturating_sub(seal.offset)
            .max(SEAL_RECORD_BYTES);
        segment.region.zero(seal.offset, zeroed_bytes);
        segment
            .region
            .sync_range(seal.offset, zeroed_bytes)
            .map_err(io_error("sync segment", &segment.path))?;
        segment.sealed = false;
        segment.written_bytes = seal.offset;
        segment.synced_bytes = seal.offset;
        report.cut = Some(TailCut {
            segment: segment.path.clone(),
            offset: seal.offset as u64,
            index: stop_index,
            zeroed_bytes: zeroed_bytes as u64,
            reason: "rollover to the next segment never became durable".into(),
        });
        return Ok((segment, None));
    }

    if !is_tail {
        return Err(Error::corruption(
            &segment.path,
            scan.stop_offset,
            stop_index,
            format!("{} in a sealed segment", scan.stop_reason),
        ));
    }
    if let Some(batch_first_index) = scan.later_batch_first_index
        && batch_first_index > stop_index
    {
        return Err(Error::corruption(
            &segment.path,
            scan.stop_offset,
            stop_index,
            format!(
                "{}, yet the record at offset {} was written after index {stop_index} was durable",
                scan.stop_reason, scan.later_record_offset
            ),
        ));
    }
    if scan.nonzero_end_bytes > scan.stop_offset {
        let zeroed = scan.nonzero_end_bytes - scan.stop_offset;
        segment.region.zero(scan.stop_offset, zeroed);
        segment
            .region
            .sync_range(scan.stop_offset, zeroed)
            .map_err(io_error("sync segment", &segment.path))?;
        tracing::warn!(
            segment = %segment.path.display(),
            offset = scan.stop_offset,
            index = stop_index,
            zeroed,
            reason = scan.stop_reason,
            "cut a torn tail"
        );
        report.cut = Some(TailCut {
            segment: segment.path.clone(),
            offset: scan.stop_offset as u64,
            index: stop_index,
            zeroed_bytes: zeroed as u64,
            reason: scan.stop_reason.into(),
        });
    }
    // After a process crash the page cache may still hold records that no
    // sync covered. They are part of the log from now on, so make them
    // durable before anyone is told they are.
    segment
        .region
        .sync_range(0, scan.stop_offset)
        .map_err(io_error("sync segment", &segment.path))?;
    segment.written_bytes = scan.stop_offset;
    segment.synced_bytes = scan.stop_offset;
    Ok((segment, None))
}
