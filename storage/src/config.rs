//! Configuration of the write-ahead log and its limits.

use crate::error::{Error, Result};
use crate::format::{
    RECORD_PAYLOAD_LIMIT_BYTES, SEAL_RECORD_BYTES, SEGMENT_HEADER_BYTES, record_total_bytes,
};

/// Default size of a segment file.
pub const DEFAULT_SEGMENT_SIZE_BYTES: usize = 64 << 20;
/// Smallest segment size accepted (tests use small segments to roll often).
pub const SEGMENT_SIZE_MIN_BYTES: usize = 4096;
/// Largest segment size accepted: record offsets are kept as `u32`.
pub const SEGMENT_SIZE_MAX_BYTES: usize = 1 << 30;
/// Default largest record payload.
pub const DEFAULT_RECORD_PAYLOAD_MAX_BYTES: usize = 4 << 20;

const _: () = assert!(SEGMENT_SIZE_MAX_BYTES <= u32::MAX as usize);
const _: () = assert!(
    SEGMENT_HEADER_BYTES + record_total_bytes(DEFAULT_RECORD_PAYLOAD_MAX_BYTES) + SEAL_RECORD_BYTES
        <= DEFAULT_SEGMENT_SIZE_BYTES
);

/// How the write-ahead log lays out its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalConfig {
    /// Size of every new segment file. Existing segments keep their size.
    pub segment_size_bytes: usize,
    /// Largest payload `append` accepts.
    pub record_payload_max_bytes: usize,
    /// Index of the first record of a brand-new log.
    pub initial_index: u64,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            segment_size_bytes: DEFAULT_SEGMENT_SIZE_BYTES,
            record_payload_max_bytes: DEFAULT_RECORD_PAYLOAD_MAX_BYTES,
            initial_index: 1,
        }
    }
}

impl WalConfig {
    /// Checks the values against each other and against the format limits.
    pub fn validate(&self) -> Result<()> {
        if !(SEGMENT_SIZE_MIN_BYTES..=SEGMENT_SIZE_MAX_BYTES).contains(&self.segment_size_bytes) {
            return Err(Error::InvalidConfig(format!(
                "segment_size_bytes {} outside {SEGMENT_SIZE_MIN_BYTES}..={SEGMENT_SIZE_MAX_BYTES}",
                self.segment_size_bytes
            )));
        }
        if self.record_payload_max_bytes > RECORD_PAYLOAD_LIMIT_BYTES {
            return Err(Error::InvalidConfig(format!(
                "record_payload_max_bytes {} above the format limit {RECORD_PAYLOAD_LIMIT_BYTES}",
                self.record_payload_max_bytes
            )));
        }
        let largest_record_bytes = SEGMENT_HEADER_BYTES
            + record_total_bytes(self.record_payload_max_bytes)
            + SEAL_RECORD_BYTES;
        if largest_record_bytes > self.segment_size_bytes {
            return Err(Error::InvalidConfig(format!(
                "a record of record_payload_max_bytes {} does not fit a segment of {} bytes",
                self.record_payload_max_bytes, self.segment_size_bytes
            )));
        }
        if self.initial_index == 0 {
            return Err(Error::InvalidConfig(
                "initial_index must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
