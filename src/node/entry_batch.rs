//! How the node packs client commands into one Raft entry.
//!
//! ```text
//! { now_ms: u64 LE | count: u32 LE | count × { length: u32 LE | command bytes } }
//! ```
//!
//! Commands are encoded (postcard) by the task that submits them, so the
//! driver only copies bytes. `now_ms` is the leader's stamped time for every
//! command in the entry.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes of the batch header.
pub const BATCH_HEADER_BYTES: usize = 12;
/// Bytes of framing around each command.
pub const COMMAND_FRAMING_BYTES: usize = 4;

/// Builds one entry's data from encoded commands.
#[derive(Debug)]
pub struct BatchBuilder {
    buffer: BytesMut,
    count: u32,
}

impl BatchBuilder {
    /// Starts a batch stamped with `now_ms`.
    pub fn new(now_ms: u64, capacity_bytes: usize) -> BatchBuilder {
        let mut buffer = BytesMut::with_capacity(capacity_bytes.max(BATCH_HEADER_BYTES));
        buffer.put_u64_le(now_ms);
        buffer.put_u32_le(0);
        BatchBuilder { buffer, count: 0 }
    }

    /// Size of the batch so far.
    pub fn len_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// Commands in the batch.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Adds one encoded command.
    pub fn push(&mut self, command: &[u8]) {
        let length = u32::try_from(command.len()).expect("command length fits in u32");
        self.buffer.put_u32_le(length);
        self.buffer.put_slice(command);
        self.count += 1;
    }

    /// The entry data.
    pub fn finish(mut self) -> Bytes {
        self.buffer[8..12].copy_from_slice(&self.count.to_le_bytes());
        self.buffer.freeze()
    }
}

/// Why entry data is not a valid batch. Entries come from our own log, so
/// this means corruption that the checksums did not catch, or a bug.
#[derive(Debug, thiserror::Error)]
#[error("malformed command batch: {0}")]
pub struct BatchError(&'static str);

/// Reads a batch: its stamped time and its encoded commands.
pub fn read_batch(mut data: &[u8]) -> Result<(u64, Vec<&[u8]>), BatchError> {
    if data.len() < BATCH_HEADER_BYTES {
        return Err(BatchError("shorter than its header"));
    }
    let now_ms = data.get_u64_le();
    let count = data.get_u32_le() as usize;
    // Each command takes at least its framing, which bounds the allocation.
    if count > data.len() / COMMAND_FRAMING_BYTES {
        return Err(BatchError("more commands than bytes"));
    }
    let mut commands = Vec::with_capacity(count);
    for _ in 0..count {
        if data.len() < COMMAND_FRAMING_BYTES {
            return Err(BatchError("truncated command length"));
        }
        let length = data.get_u32_le() as usize;
        if data.len() < length {
            return Err(BatchError("truncated command"));
        }
        let (command, rest) = data.split_at(length);
        commands.push(command);
        data = rest;
    }
    if !data.is_empty() {
        return Err(BatchError("trailing bytes"));
    }
    Ok((now_ms, commands))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trips_its_time_and_commands_in_order() {
        let mut builder = BatchBuilder::new(1234, 64);
        builder.push(b"first");
        builder.push(b"");
        builder.push(b"third");
        let data = builder.finish();
        let (now_ms, commands) = read_batch(&data).unwrap();
        assert_eq!(now_ms, 1234);
        assert_eq!(commands, vec![&b"first"[..], b"", b"third"]);
    }

    #[test]
    fn malformed_batches_are_errors_not_panics() {
        let mut builder = BatchBuilder::new(1, 64);
        builder.push(b"abc");
        let data = builder.finish();
        for cut in 0..data.len() {
            assert!(read_batch(&data[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge_count = data.to_vec();
        huge_count[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_batch(&huge_count).is_err());
    }
}
