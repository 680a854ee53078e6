//! Errors of the wire protocol.

/// Why a frame could not be read or written. Every variant but `Io` means the
/// peer sent bytes that are wrong, not merely incomplete: the connection is
/// answered with an error frame where possible and then closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The first four bytes were not the protocol magic.
    #[error("bad frame magic {found:02x?}: not a raftq connection")]
    BadMagic {
        /// The four bytes that were received.
        found: [u8; 4],
    },
    /// The frame's protocol version is not the one this build speaks.
    #[error("unsupported protocol version {found} (this node speaks {supported})")]
    UnsupportedVersion {
        /// The version in the frame.
        found: u8,
        /// The version this build speaks.
        supported: u8,
    },
    /// The kind byte names no frame kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The announced payload length is above the receiver's maximum.
    #[error("frame payload of {length} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The announced length.
        length: usize,
        /// The receiver's maximum.
        max: usize,
    },
    /// The payload does not match the header's CRC-32.
    #[error("frame checksum mismatch: header says {expected:#010x}, payload has {actual:#010x}")]
    ChecksumMismatch {
        /// CRC-32 announced in the header.
        expected: u32,
        /// CRC-32 of the payload received.
        actual: u32,
    },
    /// The payload is not a valid body for its kind.
    #[error("malformed {kind} frame body: {reason}")]
    MalformedBody {
        /// The frame kind's name.
        kind: &'static str,
        /// What postcard reported.
        reason: String,
    },
    /// A frame of a kind that is not allowed at this point of the conversation.
    #[error("unexpected {found} frame, expected {expected}")]
    UnexpectedKind {
        /// The kind received.
        found: &'static str,
        /// What the conversation expected instead.
        expected: &'static str,
    },
    /// A body could not be encoded (a programming error or an oversized body).
    #[error("could not encode frame body: {0}")]
    Encode(String),
    /// The underlying connection failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// Every name [`FrameError::kind_name`] returns.
    pub const KIND_NAMES: &'static [&'static str] = &[
        "bad_magic",
        "unsupported_version",
        "unknown_kind",
        "too_large",
        "checksum",
        "malformed_body",
        "unexpected_kind",
        "encode",
        "io",
    ];

    /// A short stable name for the metric label of decode errors.
    pub fn kind_name(&self) -> &'static str {
        match self {
            FrameError::BadMagic { .. } => "bad_magic",
            FrameError::UnsupportedVersion { .. } => "unsupported_version",
            FrameError::UnknownKind(_) => "unknown_kind",
            FrameError::TooLarge { .. } => "too_large",
            FrameError::ChecksumMismatch { .. } => "checksum",
            FrameError::MalformedBody { .. } => "malformed_body",
            FrameError::UnexpectedKind { .. } => "unexpected_kind",
            FrameError::Encode(_) => "encode",
            FrameError::Io(_) => "io",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FrameError;

    #[test]
    fn every_kind_name_is_listed() {
        let errors = [
            FrameError::BadMagic { found: [0; 4] },
            FrameError::UnsupportedVersion {
                found: 0,
                supported: 1,
            },
            FrameError::UnknownKind(0),
            FrameError::TooLarge { length: 2, max: 1 },
            FrameError::ChecksumMismatch {
                expected: 0,
                actual: 1,
            },
            FrameError::MalformedBody {
                kind: "request",
                reason: String::new(),
            },
            FrameError::UnexpectedKind {
                found: "request",
                expected: "handshake",
            },
            FrameError::Encode(String::new()),
            FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()),
        ];
        let names: Vec<&str> = errors.iter().map(FrameError::kind_name).collect();
        assert_eq!(names, FrameError::KIND_NAMES);
    }
}
