//! Frames and codecs for peer and client traffic.
//!
//! Every connection, peer or client, carries the same frames (see
//! [`frame`] for the byte layout) through [`FrameCodec`], and opens with the
//! [`handshake`].

pub mod client;
pub mod codec;
pub mod error;
pub mod frame;
pub mod handshake;

pub use codec::FrameCodec;
pub use error::FrameError;
pub use frame::{Frame, FrameKind, HEADER_SIZE_BYTES, MAGIC, PROTOCOL_VERSION};
