//! One segment file: its mapping, what is written in it, and how to scan it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::{
    CrcSeed, RECORD_ALIGNMENT_BYTES, RECORD_HEADER_BYTES, RecordDefect, RecordInfo, RecordKind,
    SEAL_RECORD_BYTES, SEGMENT_HEADER_BYTES, SegmentHeader, check_record, encode_record_header,
    read_u64, record_payload, record_total_bytes,
};
use crate::vfs::{Region, Vfs};

/// File-name suffix of segment files.
pub const SEGMENT_SUFFIX: &str = ".wal";

/// The file name of segment `segment_id`: the id in 20 decimal digits, so
/// names sort like ids.
pub fn segment_file_name(segment_id: u64) -> String {
    format!("{segment_id:020}{SEGMENT_SUFFIX}")
}

/// The segment id a file name encodes, if it is a segment file name.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A segment in memory: its mapping plus the bookkeeping of the writer.
#[derive(Debug)]
pub struct Segment {
    /// Never reused; seeds the record CRCs.
    pub id: u64,
    /// The CRC state derived from `id`.
    pub crc_seed: CrcSeed,
    /// Path of the file.
    pub path: PathBuf,
    /// Index of the first record.
    pub first_index: u64,
    /// The mapping; shared with a syncer that works without the state lock.
    pub region: Arc<dyn Region>,
    /// Byte offset of each record, in index order from `first_index`.
    pub record_offsets: Vec<u32>,
    /// End of the last record (the seal, if any, starts here).
    pub records_end_bytes: usize,
    /// End of everything written, seal included.
    pub written_bytes: usize,
    /// Bytes before this offset are durable.
    pub synced_bytes: usize,
    /// False while the header is still to be written (by the next sync,
    /// after the previous segment's seal is durable).
    pub header_durable: bool,
    /// A seal naming the next segment has been written.
    pub sealed: bool,
}

/// Offset reservation: initial capacity of `record_offsets` is one slot per
/// this many bytes of segment, so typical records never reallocate it.
const OFFSET_SLOT_PER_BYTES: usize = 256;

impl Segment {
    /// A segment at the start of its life: nothing but (space for) a header.
    pub fn new(id: u64, path: PathBuf, first_index: u64, region: Arc<dyn Region>) -> Self {
        let capacity = region.len_bytes() / OFFSET_SLOT_PER_BYTES;
        Segment {
            id,
            crc_seed: CrcSeed::for_segment(id),
            path,
            first_index,
            region,
            record_offsets: Vec::with_capacity(capacity),
            records_end_bytes: SEGMENT_HEADER_BYTES,
            written_bytes: SEGMENT_HEADER_BYTES,
            synced_bytes: 0,
            header_durable: false,
            sealed: false,
        }
    }

    /// The header this segment carries.
    pub fn header(&self) -> SegmentHeader {
        SegmentHeader {
            segment_id: self.id,
            first_index: self.first_index,
            segment_size_bytes: self.region.len_bytes() as u64,
        }
    }

    /// One past the last index stored here.
    pub fn next_index(&self) -> u64 {
        self.first_index + self.record_offsets.len() as u64
    }

    /// Whether a record of `payload_bytes` fits while leaving room for a seal.
    pub fn fits(&self, payload_bytes: usize) -> bool {
        self.written_bytes + record_total_bytes(payload_bytes) + SEAL_RECORD_BYTES
            <= self.region.len_bytes()
    }

    /// Writes a record at the end. The caller checked [`Segment::fits`].
    pub fn write_record(
        &mut self,
        kind: RecordKind,
        index: u64,
        batch_first_index: u64,
        payload: &[u8],
    ) {
        debug_assert!(!self.sealed);
        let offset = self.written_bytes;
        let header = encode_record_header(self.crc_seed, kind, index, batch_first_index, payload);
        self.region.write(offset, &header);
        self.region.write(offset + RECORD_HEADER_BYTES, payload);
        // Padding is already zero: the space past `written_bytes` is either
        // fresh or was zeroed when a suffix was cut.
        let end = offset + record_total_bytes(payload.len());
        match kind {
            RecordKind::Entry => {
                debug_assert_eq!(index, self.next_index());
                self.record_offsets.push(offset as u32);
                self.records_end_bytes = end;
            }
            RecordKind::Seal => self.sealed = true,
        }
        self.written_bytes = end;
    }

    /// Byte range `(offset, end)` of the record at `index`, if stored here.
    pub fn record_range(&self, index: u64) -> Option<(usize, usize)> {
        let position = usize::try_from(index.checked_sub(self.first_index)?).ok()?;
        let offset = *self.record_offsets.get(position)? as usize;
        let end = match self.record_offsets.get(position + 1) {
            Some(&next) => next as usize,
            None => self.records_end_bytes,
        };
        Some((offset, end))
    }

    /// Calls `visit` with the checked payload of the record at `index`.
    pub fn with_payload<T>(&self, index: u64, visit: impl FnOnce(&[u8]) -> T) -> Result<T> {
        let (offset, end) = self
            .record_range(index)
            .expect("index located in this segment");
        let mut visit = Some(visit);
        let mut outcome = None;
        self.region.inspect(offset, end - offset, &mut |bytes| {
            outcome = Some(match check_record(self.crc_seed, bytes) {
                Ok(info) if info.kind == RecordKind::Entry && info.index == index => {
                    let visit = visit.take().expect("visited once");
                    Ok(visit(record_payload(bytes, &info)))
                }
                Ok(_) => Err("record holds another index"),
                Err(RecordDefect::Zero) => Err("record header is zero"),
                Err(RecordDefect::Invalid(reason)) => Err(reason),
            });
        });
        outcome
            .expect("inspect calls its visitor")
            .map_err(|reason| Error::corruption(&self.path, offset, index, reason))
    }
}

/// A seal: the next segment's id and first index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seal {
    /// Offset of the seal record.
    pub offset: usize,
    /// Id of the next segment.
    pub next_segment_id: u64,
    /// First index of the next segment.
    pub next_index: u64,
}

/// What a scan of a segment found.
#[derive(Debug, Default)]
pub struct ScanOutcome {
    /// Offsets of the valid, consecutive records from the first index on.
    pub record_offsets: Vec<u32>,
    /// End of the last valid record.
    pub records_end_bytes: usize,
    /// The seal that ended the valid records, if one did.
    pub seal: Option<Seal>,
    /// Where the valid records stop, when no seal ended them, and why.
    pub stop_offset: usize,
    /// Why the record at `stop_offset` did not continue the log.
    pub stop_reason: &'static str,
    /// The largest `batch_first_index` among valid records found after
    /// `stop_offset`, which says whether the stop lies in the last unsynced
    /// batch or in data that was durable before.
    pub later_batch_first_index: Option<u64>,
    /// Offset of that record.
    pub later_record_offset: usize,
    /// End of the last nonzero byte at or after `stop_offset` (equal to
    /// `stop_offset` when everything after it is zero).
    pub nonzero_end_bytes: usize,
}

/// Scans a segment's records from the header on.
///
/// Stops at the first offset that does not hold the next record in
/// sequence, then searches the rest of the segment for valid records (at
/// every aligned offset) and for nonzero bytes, which recovery needs to
/// classify the stop.
pub fn scan_segment(region: &dyn Region, segment_id: u64, first_index: u64) -> ScanOutcome {
    let mut outcome = ScanOutcome::default();
    region.inspect(0, region.len_bytes(), &mut |bytes| {
        outcome = scan_bytes(bytes, CrcSeed::for_segment(segment_id), first_index);
    });
    outcome
}

fn scan_bytes(bytes: &[u8], seed: CrcSeed, first_index: u64) -> ScanOutcome {
    let mut outcome = ScanOutcome::default();
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut expected_index = first_index;
    loop {
        match check_record(seed, &bytes[offset..]) {
            Ok(info) if info.index == expected_index => match info.kind {
                RecordKind::Entry => {
                    outcome.record_offsets.push(offset as u32);
                    offset += info.total_bytes();
                    expected_index += 1;
                }
                RecordKind::Seal => {
                    let payload = record_payload(&bytes[offset..], &info);
                    outcome.seal = Some(Seal {
                        offset,
                        next_segment_id: read_u64(payload, 0),
                        next_index: info.index,
                    });
                    break;
                }
            },
            Ok(_) => {
                outcome.stop_reason = "record out of index sequence";
                break;
            }
            Err(RecordDefect::Zero) => {
                outcome.stop_reason = "zero record header";
                break;
            }
            Err(RecordDefect::Invalid(reason)) => {
                outcome.stop_reason = reason;
                break;
            }
        }
    }
    outcome.records_end_bytes = offset;
    outcome.stop_offset = offset;
    if outcome.seal.is_none() {
        search_after_stop(bytes, seed, &mut outcome);
    }
    outcome
}

/// Looks past the stop for valid records and nonzero bytes.
fn search_after_stop(bytes: &[u8], seed: CrcSeed, outcome: &mut ScanOutcome) {
    outcome.nonzero_end_bytes = outcome.stop_offset;
    let mut offset = outcome.stop_offset;
    while offset + RECORD_ALIGNMENT_BYTES <= bytes.len() {
        let word = read_u64(bytes, offset);
        if word != 0 {
            outcome.nonzero_end_bytes = offset + RECORD_ALIGNMENT_BYTES;
        }
        // A valid record always has a nonzero index in its second word, so
        // zero space is skipped with one load per word.
        let index_word_nonzero = offset + 16 <= bytes.len() && read_u64(bytes, offset + 8) != 0;
        if index_word_nonzero && let Ok(info) = check_record(seed, &bytes[offset..]) {
            note_later_record(outcome, offset, &info);
            let end = offset + info.total_bytes();
            outcome.nonzero_end_bytes = outcome.nonzero_end_bytes.max(end);
            offset = end;
            continue;
        }
        offset += RECORD_ALIGNMENT_BYTES;
    }
}

fn note_later_record(outcome: &mut ScanOutcome, offset: usize, info: &RecordInfo) {
    if outcome
        .later_batch_first_index
        .is_none_or(|largest| info.batch_first_index > largest)
    {
        outcome.later_batch_first_index = Some(info.batch_first_index);
        outcome.later_record_offset = offset;
    }
}

/// Creates a segment file, preallocated and durable in its directory, with
/// an all-zero header (a spare, to be given a first index later).
pub fn create_segment_file(
    vfs: &dyn Vfs,
    dir: &Path,
    segment_id: u64,
    segment_size_bytes: usize,
) -> Result<(PathBuf, Arc<dyn Region>)> {
    let path = dir.join(segment_file_name(segment_id));
    let region = vfs
        .create_region(&path, segment_size_bytes)
        .map_err(|error| Error::io("create segment", &path, error))?;
    vfs.sync_dir(dir)
        .map_err(|error| Error::io("sync directory", dir, error))?;
    Ok((path, region))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_file_names_sort_like_ids() {
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert!(segment_file_name(9) < segment_file_name(10));
        assert_eq!(
            parse_segment_file_name("00000000000000000042.wal.tmp"),
            None
        );
        assert_eq!(parse_segment_file_name("hardstate"), None);
    }
}
