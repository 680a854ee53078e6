//! The frame: a fixed 16-byte header followed by a postcard-encoded body.
//!
//! ```text
//! offset  size  field
//!      0     4  magic           "RFTQ" (0x52 0x46 0x54 0x51)
//!      4     1  version         PROTOCOL_VERSION
//!      5     1  kind            FrameKind as u8
//!      6     2  reserved        zero on write, ignored on read
//!      8     4  payload_length  u32 little-endian, <= the receiver's maximum
//!     12     4  payload_crc32   CRC-32/ISO-HDLC of the payload, little-endian
//!     16     n  payload         postcard encoding of the kind's body type
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::FrameError;

/// The four bytes that open every frame.
pub const MAGIC: [u8; 4] = *b"RFTQ";

/// The protocol version this build speaks. A peer or client that sends a
/// different version is refused with [`FrameError::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u8 = 1;

/// Size of the fixed frame header in bytes.
pub const HEADER_SIZE_BYTES: usize = 16;

/// What a frame's payload holds. The numeric values are part of the wire
/// format and never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// First frame from the connecting side: who it is and a nonce.
    Hello = 1,
    /// The accepting side's answer to `Hello`: its identity, a nonce and its proof.
    Challenge = 2,
    /// The connecting side's proof that it knows the shared secret.
    Auth = 3,
    /// The accepting side's confirmation that the handshake succeeded.
    Accepted = 4,
    /// A batch of Raft messages between peers.
    Peer = 5,
    /// A client request.
    Request = 6,
    /// A response to a client request.
    Response = 7,
    /// A typed error; the sender closes the connection after it.
    Error = 8,
}

impl FrameKind {
    /// Decodes a kind byte, or `None` when no kind has that value.
    pub fn from_u8(value: u8) -> Option<FrameKind> {
        Some(match value {
            1 => FrameKind::Hello,
            2 => FrameKind::Challenge,
            3 => FrameKind::Auth,
            4 => FrameKind::Accepted,
            5 => FrameKind::Peer,
            6 => FrameKind::Request,
            7 => FrameKind::Response,
            8 => FrameKind::Error,
            _ => return None,
        })
    }

    /// A short lowercase name for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            FrameKind::Hello => "hello",
            FrameKind::Challenge => "challenge",
            FrameKind::Auth => "auth",
            FrameKind::Accepted => "accepted",
            FrameKind::Peer => "peer",
            FrameKind::Request => "request",
            FrameKind::Response => "response",
            FrameKind::Error => "error",
        }
    }
}

/// One frame: its kind and its still-encoded payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the payload holds.
    pub kind: FrameKind,
    /// The postcard-encoded body.
    pub payload: Bytes,
}

impl Frame {
    /// Encodes `body` with postcard into a frame of the given kind.
    pub fn encode<T: serde::Serialize>(kind: FrameKind, body: &T) -> Result<Frame, FrameError> {
        let payload =
            postcard::to_allocvec(body).map_err(|error| FrameError::Encode(error.to_string()))?;
        Ok(Frame {
            kind,
            payload: Bytes::from(payload),
        })
    }

    /// Decodes the payload as `T`. Trailing bytes after the body are an error:
    /// a frame holds exactly one body.
    pub fn decode<'a, T: serde::Deserialize<'a>>(&'a self) -> Result<T, FrameError> {
        let (body, rest) = postcard::take_from_bytes(&self.payload).map_err(|error| {
            FrameError::MalformedBody {
                kind: self.kind.name(),
                reason: error.to_string(),
            }
        })?;
        if !rest.is_empty() {
            return Err(FrameError::MalformedBody {
                kind: self.kind.name(),
                reason: format!("{} trailing bytes after the body", rest.len()),
            });
        }
        Ok(body)
    }

    /// Writes the header and payload to `out`.
    pub fn write_to(&self, out: &mut BytesMut) {
        let length = u32::try_from(self.payload.len()).expect("payload length fits in u32");
        out.reserve(HEADER_SIZE_BYTES + self.payload.len());
        // { magic | version | kind | reserved | payload_length | payload_crc32 | payload }
        out.put_slice(&MAGIC);
        out.put_u8(PROTOCOL_VERSION);
        out.put_u8(self.kind as u8);
        out.put_u16_le(0);
        out.put_u32_le(length);
        out.put_u32_le(crc32fast::hash(&self.payload));
        out.put_slice(&self.payload);
    }
}

/// A parsed, not yet verified frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The frame's kind.
    pub kind: FrameKind,
    /// Length of the payload that follows the header.
    pub payload_length: usize,
    /// CRC-32 the payload must match.
    pub payload_crc32: u32,
}

impl FrameHeader {
    /// Parses and checks a header. `payload_max_bytes` is enforced here,
    /// before anything is allocated for the payload.
    pub fn parse(
        header: &[u8; HEADER_SIZE_BYTES],
        payload_max_bytes: usize,
    ) -> Result<FrameHeader, FrameError> {
        let mut cursor = &header[..];
        let mut magic = [0u8; 4];
        cursor.copy_to_slice(&mut magic);
        if magic != MAGIC {
            return Err(FrameError::BadMagic { found: magic });
        }
        let version = cursor.get_u8();
        if version != PROTOCOL_VERSION {
            return Err(FrameError::UnsupportedVersion {
                found: version,
                supported: PROTOCOL_VERSION,
            });
        }
        let kind_byte = cursor.get_u8();
        let kind = FrameKind::from_u8(kind_byte).ok_or(FrameError::UnknownKind(kind_byte))?;
        let _reserved = cursor.get_u16_le();
        let payload_length = cursor.get_u32_le() as usize;
        if payload_length > payload_max_bytes {
            return Err(FrameError::TooLarge {
                length: payload_length,
                max: payload_max_bytes,
            });
        }
        let payload_crc32 = cursor.get_u32_le();
        Ok(FrameHeader {
            kind,
            payload_length,
            payload_crc32,
        })
    }
}
