//! The byte layout of segment headers and records (see the crate docs for
//! the full description).

/// The first eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RAFTQWAL";
/// The on-disk format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the segment header; records start right after it.
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// Size of a record header.
pub const RECORD_HEADER_BYTES: usize = 32;
/// Every record starts at a multiple of this many bytes.
pub const RECORD_ALIGNMENT_BYTES: usize = 8;
/// The largest payload the format allows, whatever the configuration says.
/// A length field above it is garbage and is never used to size a buffer.
pub const RECORD_PAYLOAD_LIMIT_BYTES: usize = 64 << 20;
/// The seal payload is the id of the next segment.
pub const SEAL_PAYLOAD_BYTES: usize = 8;
/// Space reserved at the end of every segment so a seal always fits.
pub const SEAL_RECORD_BYTES: usize = RECORD_HEADER_BYTES + SEAL_PAYLOAD_BYTES;

const _: () = assert!(SEGMENT_HEADER_BYTES.is_multiple_of(RECORD_ALIGNMENT_BYTES));
const _: () = assert!(RECORD_HEADER_BYTES.is_multiple_of(RECORD_ALIGNMENT_BYTES));
const _: () = assert!(SEAL_RECORD_BYTES.is_multiple_of(RECORD_ALIGNMENT_BYTES));

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A log entry: opaque bytes at a log index.
    Entry,
    /// The last record of a full segment: names the next segment.
    Seal,
}

impl RecordKind {
    fn code(self) -> u8 {
        match self {
            RecordKind::Entry => 1,
            RecordKind::Seal => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(RecordKind::Entry),
            2 => Some(RecordKind::Seal),
            _ => None,
        }
    }
}

/// The decoded fields of a segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Never reused; seeds every record CRC in the segment.
    pub segment_id: u64,
    /// Index of the first record in the segment.
    pub first_index: u64,
    /// Length of the segment file.
    pub segment_size_bytes: u64,
}

/// What the first bytes of a segment file hold.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderStatus {
    /// A header that validates.
    Valid(SegmentHeader),
    /// All zero: a prepared segment whose header was never made durable.
    Zero,
    /// Nonzero bytes that do not validate.
    Invalid(&'static str),
}

impl SegmentHeader {
    /// Encodes the header.
    ///
    /// `{ magic:8 | version:u32 | reserved:u32 | segment_id:u64 | first_index:u64
    ///    | segment_size_bytes:u64 | reserved:20 | crc:u32 }`, little endian,
    /// the CRC-32 covering bytes 0..60.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
        bytes[0..8].copy_from_slice(&SEGMENT_MAGIC);
        bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.segment_id.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.first_index.to_le_bytes());
        bytes[32..40].copy_from_slice(&self.segment_size_bytes.to_le_bytes());
        let crc = crc32fast::hash(&bytes[0..60]);
        bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Decodes and validates the first [`SEGMENT_HEADER_BYTES`] of `bytes`.
    pub fn decode(bytes: &[u8]) -> HeaderStatus {
        let Some(bytes) = bytes.get(..SEGMENT_HEADER_BYTES) else {
            return HeaderStatus::Invalid("file shorter than a segment header");
        };
        if bytes.iter().all(|&byte| byte == 0) {
            return HeaderStatus::Zero;
        }
        if bytes[0..8] != SEGMENT_MAGIC {
            return HeaderStatus::Invalid("bad segment magic");
        }
        if crc32fast::hash(&bytes[0..60]) != read_u32(bytes, 60) {
            return HeaderStatus::Invalid("segment header CRC mismatch");
        }
        if read_u32(bytes, 8) != FORMAT_VERSION {
            return HeaderStatus::Invalid("unsupported segment format version");
        }
        let header = SegmentHeader {
            segment_id: read_u64(bytes, 16),
            first_index: read_u64(bytes, 24),
            segment_size_bytes: read_u64(bytes, 32),
        };
        if header.first_index == 0 {
            return HeaderStatus::Invalid("segment first index is zero");
        }
        HeaderStatus::Valid(header)
    }
}

/// The decoded fields of a record that validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordInfo {
    /// Entry or seal.
    pub kind: RecordKind,
    /// The log index (for a seal: the first index of the next segment).
    pub index: u64,
    /// The lowest index that was not yet known durable when the record was
    /// written. Recovery uses it to tell a torn write from damaged durable data.
    pub batch_first_index: u64,
    /// Length of the payload.
    pub payload_bytes: usize,
}

impl RecordInfo {
    /// Bytes the record occupies, header and padding included.
    pub fn total_bytes(&self) -> usize {
        record_total_bytes(self.payload_bytes)
    }
}

/// Why the bytes at an offset are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordDefect {
    /// The header is all zero: the clean end of the written data, or a hole.
    Zero,
    /// Nonzero bytes that do not validate.
    Invalid(&'static str),
}

/// Bytes a record with `payload_bytes` of payload occupies, padding included.
pub const fn record_total_bytes(payload_bytes: usize) -> usize {
    RECORD_HEADER_BYTES + payload_bytes.next_multiple_of(RECORD_ALIGNMENT_BYTES)
}

/// Encodes a record header for `payload`.
///
/// `{ crc:u32 | payload_length:u32 | index:u64 | batch_first_index:u64
///    | kind:u8 | reserved:7 }`, little endian, then the payload, then zero
/// padding to the next multiple of 8. The CRC-32 covers
/// `segment_id:u64 ‖ header bytes 4..32 ‖ payload`, so a record copied from
/// another segment, or left from an earlier use of the space, never validates.
pub fn encode_record_header(
    seed: CrcSeed,
    kind: RecordKind,
    index: u64,
    batch_first_index: u64,
    payload: &[u8],
) -> [u8; RECORD_HEADER_BYTES] {
    debug_assert!(payload.len() <= RECORD_PAYLOAD_LIMIT_BYTES);
    debug_assert!(index > 0);
    let mut header = [0u8; RECORD_HEADER_BYTES];
    header[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[8..16].copy_from_slice(&index.to_le_bytes());
    header[16..24].copy_from_slice(&batch_first_index.to_le_bytes());
    header[24] = kind.code();
    let mut hasher = crc32fast::Hasher::new_with_initial(seed.0);
    hasher.update(&header[4..RECORD_HEADER_BYTES]);
    hasher.update(payload);
    let crc = hasher.finalize();
    header[0..4].copy_from_slice(&crc.to_le_bytes());
    header
}

/// The CRC-32 state after hashing a segment id: every record CRC in that
/// segment continues from it, so the id is hashed once per segment rather
/// than once per record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrcSeed(u32);

impl CrcSeed {
    /// The seed of segment `segment_id`.
    pub fn for_segment(segment_id: u64) -> Self {
        CrcSeed(crc32fast::hash(&segment_id.to_le_bytes()))
    }
}

/// Checks the record that starts at `bytes[0]`; `bytes` runs to the end of
/// the segment, so a length that points past it is rejected before use.
pub fn check_record(seed: CrcSeed, bytes: &[u8]) -> Result<RecordInfo, RecordDefect> {
    let Some(header) = bytes.get(..RECORD_HEADER_BYTES) else {
        return if bytes.iter().all(|&byte| byte == 0) {
            Err(RecordDefect::Zero)
        } else {
            Err(RecordDefect::Invalid("truncated record header"))
        };
    };
    if header.iter().all(|&byte| byte == 0) {
        return Err(RecordDefect::Zero);
    }
    let payload_bytes = read_u32(header, 4) as usize;
    if payload_bytes > RECORD_PAYLOAD_LIMIT_BYTES {
        return Err(RecordDefect::Invalid(
            "record length above the format limit",
        ));
    }
    let total_bytes = record_total_bytes(payload_bytes);
    if total_bytes > bytes.len() {
        return Err(RecordDefect::Invalid(
            "record length runs past the segment end",
        ));
    }
    let Some(kind) = RecordKind::from_code(header[24]) else {
        return Err(RecordDefect::Invalid("unknown record kind"));
    };
    if header[25..32].iter().any(|&byte| byte != 0) {
        return Err(RecordDefect::Invalid("nonzero reserved header bytes"));
    }
    // Header bytes 4..32 and the payload are contiguous: one update lets
    // crc32fast use its wide SIMD path.
    let mut hasher = crc32fast::Hasher::new_with_initial(seed.0);
    hasher.update(&bytes[4..RECORD_HEADER_BYTES + payload_bytes]);
    if hasher.finalize() != read_u32(header, 0) {
        return Err(RecordDefect::Invalid("record CRC mismatch"));
    }
    let index = read_u64(header, 8);
    if index == 0 {
        return Err(RecordDefect::Invalid("record index is zero"));
    }
    if kind == RecordKind::Seal && payload_bytes != SEAL_PAYLOAD_BYTES {
        return Err(RecordDefect::Invalid("seal record of the wrong length"));
    }
    Ok(RecordInfo {
        kind,
        index,
        batch_first_index: read_u64(header, 16),
        payload_bytes,
    })
}

/// The payload of the record at `bytes[0]`, which must have been checked.
pub fn record_payload<'a>(bytes: &'a [u8], info: &RecordInfo) -> &'a [u8] {
    &bytes[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + info.payload_bytes]
}

/// Reads a little-endian u32 at `offset`.
pub fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("four bytes"))
}

/// Reads a little-endian u64 at `offset`.
pub fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().expect("eight bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(segment_id: u64, index: u64, payload: &[u8]) -> Vec<u8> {
        let mut bytes = encode_record_header(
            CrcSeed::for_segment(segment_id),
            RecordKind::Entry,
            index,
            1,
            payload,
        )
        .to_vec();
        bytes.extend_from_slice(payload);
        bytes.resize(record_total_bytes(payload.len()), 0);
        bytes
    }

    #[test]
    fn a_seeded_crc_equals_the_crc_of_the_id_followed_by_the_record() {
        let bytes = record(0x0123_4567_89ab_cdef, 5, b"some payload");
        let mut covered = 0x0123_4567_89ab_cdefu64.to_le_bytes().to_vec();
        covered.extend_from_slice(&bytes[4..RECORD_HEADER_BYTES + 12]);
        assert_eq!(crc32fast::hash(&covered), read_u32(&bytes, 0));
    }

    #[test]
    fn a_record_validates_only_under_the_segment_id_that_wrote_it() {
        let bytes = record(7, 3, b"hello");
        let info = check_record(CrcSeed::for_segment(7), &bytes).expect("valid under its own id");
        assert_eq!(
            (info.index, info.payload_bytes, info.kind),
            (3, 5, RecordKind::Entry)
        );
        assert_eq!(record_payload(&bytes, &info), b"hello");
        assert_eq!(
            check_record(CrcSeed::for_segment(8), &bytes),
            Err(RecordDefect::Invalid("record CRC mismatch"))
        );
    }

    #[test]
    fn every_single_bit_flip_in_a_record_is_detected() {
        let original = record(1, 42, b"payload bytes");
        let covered_bytes = RECORD_HEADER_BYTES + b"payload bytes".len();
        for bit in 0..covered_bytes * 8 {
            let mut damaged = original.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                check_record(CrcSeed::for_segment(1), &damaged).is_err(),
                "bit {bit} flip went unnoticed"
            );
        }
    }

    #[test]
    fn a_garbage_length_is_rejected_before_it_is_used() {
        let mut bytes = record(1, 1, b"x");
        bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            check_record(CrcSeed::for_segment(1), &bytes),
            Err(RecordDefect::Invalid(
                "record length above the format limit"
            ))
        );
        bytes[4..8].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(
            check_record(CrcSeed::for_segment(1), &bytes),
            Err(RecordDefect::Invalid(
                "record length runs past the segment end"
            ))
        );
    }

    #[test]
    fn segment_header_round_trips_and_detects_damage() {
        let header = SegmentHeader {
            segment_id: 9,
            first_index: 100,
            segment_size_bytes: 4096,
        };
        let mut bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes), HeaderStatus::Valid(header));
        bytes[30] ^= 0x10;
        assert!(matches!(
            SegmentHeader::decode(&bytes),
            HeaderStatus::Invalid(_)
        ));
        assert_eq!(SegmentHeader::decode(&[0u8; 64]), HeaderStatus::Zero);
    }
}
