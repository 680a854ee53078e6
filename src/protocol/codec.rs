//! The tokio-util codec that turns a byte stream into frames and back.

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::error::FrameError;
use super::frame::{Frame, FrameHeader, HEADER_SIZE_BYTES};

/// Frame codec for one connection. The maximum payload length is checked
/// against the header before any payload bytes are buffered or allocated.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    payload_max_bytes: usize,
    /// The header of the frame being received, once it has been parsed.
    pending: Option<FrameHeader>,
}

impl FrameCodec {
    /// A codec that refuses payloads longer than `payload_max_bytes`.
    pub fn new(payload_max_bytes: usize) -> FrameCodec {
        FrameCodec {
            payload_max_bytes,
            pending: None,
        }
    }

    /// The largest payload this codec accepts.
    pub fn payload_max_bytes(&self) -> usize {
        self.payload_max_bytes
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    /// Returns `Ok(None)` while the frame is incomplete (not an error), and a
    /// typed error as soon as the bytes received are known to be wrong.
    fn decode(&mut self, source: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let header = match self.pending {
            Some(header) => header,
            None => {
                if source.len() < HEADER_SIZE_BYTES {
                    return Ok(None);
                }
                let raw: [u8; HEADER_SIZE_BYTES] = source[..HEADER_SIZE_BYTES]
                    .try_into()
                    .expect("slice has header length");
                let header = FrameHeader::parse(&raw, self.payload_max_bytes)?;
                source.advance(HEADER_SIZE_BYTES);
                self.pending = Some(header);
                header
            }
        };
        if source.len() < header.payload_length {
            source.reserve(header.payload_length - source.len());
            return Ok(None);
        }
        let payload = source.split_to(header.payload_length).freeze();
        self.pending = None;
        let actual = crc32fast::hash(&payload);
        if actual != header.payload_crc32 {
            return Err(FrameError::ChecksumMismatch {
                expected: header.payload_crc32,
                actual,
            });
        }
        Ok(Some(Frame {
            kind: header.kind,
            payload,
        }))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, out: &mut BytesMut) -> Result<(), FrameError> {
        self.encode(&frame, out)
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), FrameError> {
        // The sender checks its own limit too, so an oversized frame fails
        // here with a clear error instead of being refused by the receiver.
        if frame.payload.len() > self.payload_max_bytes {
            return Err(FrameError::TooLarge {
                length: frame.payload.len(),
                max: self.payload_max_bytes,
            });
        }
        frame.write_to(out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, Bytes, BytesMut};
    use tokio_util::codec::{Decoder, Encoder};

    use super::FrameCodec;
    use crate::protocol::error::FrameError;
    use crate::protocol::frame::{Frame, FrameKind, HEADER_SIZE_BYTES};

    fn encoded(frame: &Frame) -> BytesMut {
        let mut out = BytesMut::new();
        FrameCodec::new(1 << 20).encode(frame, &mut out).unwrap();
        out
    }

    fn sample() -> Frame {
        Frame::encode(FrameKind::Request, &(7u64, "hello".to_string())).unwrap()
    }

    /// The README's worked example of the wire format, byte for byte: an
    /// ack request as a client in another language would send it.
    #[test]
    fn ack_request_frame_matches_the_documented_bytes() {
        use crate::protocol::client::{Request, RequestBody};
        use crate::queue::{Ack, FencingToken, JobId};
        let request = Request {
            id: 1,
            body: RequestBody::Ack(Ack {
                id: JobId(5),
                token: FencingToken(9),
            }),
        };
        let frame = Frame::encode(FrameKind::Request, &request).unwrap();
        let documented: [u8; 20] = [
            0x52, 0x46, 0x54, 0x51, 0x01, 0x06, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0xf6, 0x20,
            0xd7, 0x9e, 0x01, 0x02, 0x05, 0x09,
        ];
        assert_eq!(&encoded(&frame)[..], &documented[..]);
    }

    #[test]
    fn frame_round_trips_through_the_codec() {
        let frame = sample();
        let mut bytes = encoded(&frame);
        let decoded = FrameCodec::new(1 << 20)
            .decode(&mut bytes)
            .unwrap()
            .unwrap();
        assert_eq!(decoded, frame);
        assert!(bytes.is_empty());
        let body: (u64, String) = decoded.decode().unwrap();
        assert_eq!(body, (7, "hello".to_string()));
    }

    #[test]
    fn incomplete_frame_is_not_an_error_at_any_split() {
        let frame = sample();
        let whole = encoded(&frame);
        for split in 0..whole.len() {
            let mut codec = FrameCodec::new(1 << 20);
            let mut buffer = BytesMut::from(&whole[..split]);
            assert!(
                codec.decode(&mut buffer).unwrap().is_none(),
                "split {split}"
            );
            buffer.extend_from_slice(&whole[split..]);
            assert_eq!(codec.decode(&mut buffer).unwrap().unwrap(), frame);
        }
    }

    #[test]
    fn several_frames_in_one_buffer_decode_in_order() {
        let first = sample();
        let second = Frame::encode(FrameKind::Response, &42u32).unwrap();
        let mut bytes = encoded(&first);
        bytes.extend_from_slice(&encoded(&second));
        let mut codec = FrameCodec::new(1 << 20);
        assert_eq!(codec.decode(&mut bytes).unwrap().unwrap(), first);
        assert_eq!(codec.decode(&mut bytes).unwrap().unwrap(), second);
        assert!(codec.decode(&mut bytes).unwrap().is_none());
    }

    #[test]
    fn bad_magic_is_refused() {
        let mut bytes = encoded(&sample());
        bytes[0] = b'X';
        let error = FrameCodec::new(1 << 20).decode(&mut bytes).unwrap_err();
        assert!(matches!(error, FrameError::BadMagic { .. }), "{error}");
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut bytes = encoded(&sample());
        bytes[4] = 99;
        let error = FrameCodec::new(1 << 20).decode(&mut bytes).unwrap_err();
        assert!(
            matches!(error, FrameError::UnsupportedVersion { found: 99, .. }),
            "{error}"
        );
    }

    #[test]
    fn unknown_kind_is_refused() {
        let mut bytes = encoded(&sample());
        bytes[5] = 200;
        let error = FrameCodec::new(1 << 20).decode(&mut bytes).unwrap_err();
        assert!(matches!(error, FrameError::UnknownKind(200)), "{error}");
    }

    #[test]
    fn oversize_length_is_refused_from_the_header_alone() {
        // Only the header arrives: the length must be refused before any
        // payload is buffered, so a garbage length cannot cause an allocation.
        let mut header = BytesMut::new();
        header.put_slice(b"RFTQ");
        header.put_u8(1);
        header.put_u8(FrameKind::Peer as u8);
        header.put_u16_le(0);
        header.put_u32_le(u32::MAX);
        header.put_u32_le(0);
        assert_eq!(header.len(), HEADER_SIZE_BYTES);
        let error = FrameCodec::new(4096).decode(&mut header).unwrap_err();
        assert!(
            matches!(error, FrameError::TooLarge { length, max: 4096 } if length == u32::MAX as usize),
            "{error}"
        );
    }

    #[test]
    fn corrupted_payload_fails_the_checksum() {
        let mut bytes = encoded(&sample());
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        let error = FrameCodec::new(1 << 20).decode(&mut bytes).unwrap_err();
        assert!(
            matches!(error, FrameError::ChecksumMismatch { .. }),
            "{error}"
        );
    }

    #[test]
    fn encoder_refuses_payload_above_its_own_limit() {
        let frame = Frame {
            kind: FrameKind::Peer,
            payload: Bytes::from(vec![0u8; 100]),
        };
        let error = FrameCodec::new(99)
            .encode(&frame, &mut BytesMut::new())
            .unwrap_err();
        assert!(matches!(
            error,
            FrameError::TooLarge {
                length: 100,
                max: 99
            }
        ));
    }

    #[test]
    fn body_with_trailing_bytes_is_malformed() {
        let mut payload = postcard::to_allocvec(&5u8).unwrap();
        payload.push(0xff);
        let frame = Frame {
            kind: FrameKind::Request,
            payload: Bytes::from(payload),
        };
        let error = frame.decode::<u8>().unwrap_err();
        assert!(matches!(error, FrameError::MalformedBody { .. }), "{error}");
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let mut codec = FrameCodec::new(1024);
            let mut buffer = BytesMut::from(&bytes[..]);
            // Decode until the codec asks for more bytes or reports an error.
            while let Ok(Some(_)) = codec.decode(&mut buffer) {}
        }
    }
}
