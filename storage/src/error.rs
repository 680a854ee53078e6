//! The one error type of the storage crate.

use std::io;
use std::path::PathBuf;

/// Every error the storage crate returns.
///
/// Operating errors (a full disk, a bad argument, an index outside the log)
/// are kept apart from fatal ones: [`Error::Poisoned`], [`Error::Corruption`],
/// [`Error::MissingSegment`] and a failed sync mean the log can no longer be
/// trusted in this process, and the caller should stop rather than retry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation failed.
    #[error("{operation} failed on {path}: {source}")]
    Io {
        /// What the crate was doing, for example "sync segment".
        operation: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The error reported by the operating system.
        #[source]
        source: io::Error,
    },

    /// The disk is full. Nothing was written; the log is intact and
    /// appending can continue once space is freed, for example by
    /// [`crate::Wal::compact_prefix`].
    #[error("no space left on the device while {operation} {path}")]
    NoSpace {
        /// What the crate was doing.
        operation: &'static str,
        /// The file that could not be created or grown.
        path: PathBuf,
    },

    /// Data that was durable is damaged. The log refuses to open rather than
    /// silently drop acknowledged records.
    #[error("corrupt log: {reason} in {segment} at byte offset {offset} (log index {index})")]
    Corruption {
        /// The segment (or other) file that holds the damage.
        segment: PathBuf,
        /// The byte offset of the damaged record or header inside the file.
        offset: u64,
        /// The log index expected at that offset.
        index: u64,
        /// What exactly is wrong.
        reason: String,
    },

    /// A segment that the log provably wrote is gone from the directory.
    #[error(
        "missing segment {segment_id} (first index {first_index}), named by the seal of {previous}"
    )]
    MissingSegment {
        /// The segment whose seal names the missing one.
        previous: PathBuf,
        /// The id of the missing segment.
        segment_id: u64,
        /// The first log index the missing segment held.
        first_index: u64,
    },

    /// A damaged snapshot or hard-state file.
    #[error("corrupt file {path}: {reason}")]
    CorruptFile {
        /// The damaged file.
        path: PathBuf,
        /// What exactly is wrong.
        reason: String,
    },

    /// An earlier sync failed, so the state of the disk is unknown. Every
    /// later call fails with this error; reopening the log recovers from
    /// what the disk holds.
    #[error("the log is poisoned by an earlier failed sync; reopen it to recover")]
    Poisoned,

    /// A record is larger than the configured maximum.
    #[error("record of {length_bytes} bytes exceeds the maximum of {max_bytes} bytes")]
    RecordTooLarge {
        /// The size of the rejected record.
        length_bytes: usize,
        /// The configured maximum.
        max_bytes: usize,
    },

    /// The hard state blob is larger than a hard-state slot holds.
    #[error("hard state of {length_bytes} bytes exceeds the maximum of {max_bytes} bytes")]
    HardStateTooLarge {
        /// The size of the rejected blob.
        length_bytes: usize,
        /// The largest blob a slot holds.
        max_bytes: usize,
    },

    /// An index outside the range the operation accepts.
    #[error("index {index} is outside the log range {first_index}..={last_index}")]
    IndexOutOfRange {
        /// The requested index.
        index: u64,
        /// The first index the log holds.
        first_index: u64,
        /// The last index the log holds (`first_index - 1` when empty).
        last_index: u64,
    },

    /// Records that a caller of [`crate::Wal::append_durable`] was waiting
    /// for may have been removed by a concurrent truncation.
    #[error("records up to index {index} may have been removed by a truncation while waiting")]
    Truncated {
        /// The last index the caller was waiting for.
        index: u64,
    },

    /// A configuration value is out of its allowed range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

/// The result type of the storage crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error, turning "no space left" into [`Error::NoSpace`].
    pub(crate) fn io(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.kind() == io::ErrorKind::StorageFull
            || source.raw_os_error() == Some(libc::ENOSPC)
        {
            return Error::NoSpace { operation, path };
        }
        Error::Io {
            operation,
            path,
            source,
        }
    }

    /// Builds a corruption error.
    pub(crate) fn corruption(
        segment: impl Into<PathBuf>,
        offset: usize,
        index: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corruption {
            segment: segment.into(),
            offset: offset as u64,
            index,
            reason: reason.into(),
        }
    }
}
