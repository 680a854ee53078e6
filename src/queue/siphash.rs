//! SipHash-2-4 with a 128-bit output (Aumasson and Bernstein), used to store
//! idempotency keys as fixed 16-byte digests.
//!
//! Written here rather than taken from a crate so the digest can never change
//! under a dependency upgrade: digests are replicated state and live in
//! snapshots, so every node and every future build must compute the same one.

/// The fixed SipHash key. It is not a secret: the digest only needs to spread
/// keys, and every node must derive the same digest.
const KEY: [u64; 2] = [0x7261_6674_715f_6964, 0x656d_706f_7465_6e74];

/// SipHash-2-4-128 of `message` under `key`, as two little-endian words.
pub(super) fn siphash_2_4_128(key: [u64; 2], message: &[u8]) -> [u64; 2] {
    let mut state = [
        key[0] ^ 0x736f_6d65_7073_6575,
        key[1] ^ 0x646f_7261_6e64_6f6d ^ 0xee,
        key[0] ^ 0x6c79_6765_6e65_7261,
        key[1] ^ 0x7465_6462_7974_6573,
    ];
    let mut blocks = message.chunks_exact(8);
    for block in &mut blocks {
        let word = u64::from_le_bytes(block.try_into().expect("chunks_exact gives 8 bytes"));
        state[3] ^= word;
        sip_round(&mut state);
        sip_round(&mut state);
        state[0] ^= word;
    }
    let tail = blocks.remainder();
    let mut last = [0u8; 8];
    last[..tail.len()].copy_from_slice(tail);
    last[7] = message.len() as u8;
    let word = u64::from_le_bytes(last);
    state[3] ^= word;
    sip_round(&mut state);
    sip_round(&mut state);
    state[0] ^= word;

    state[2] ^= 0xee;
    for _ in 0..4 {
        sip_round(&mut state);
    }
    let low = state[0] ^ state[1] ^ state[2] ^ state[3];
    state[1] ^= 0xdd;
    for _ in 0..4 {
        sip_round(&mut state);
    }
    let high = state[0] ^ state[1] ^ state[2] ^ state[3];
    [low, high]
}

/// The digest of `message` under the fixed key of the job queue.
pub(super) fn digest(message: &[u8]) -> [u64; 2] {
    siphash_2_4_128(KEY, message)
}

fn sip_round(state: &mut [u64; 4]) {
    state[0] = state[0].wrapping_add(state[1]);
    state[1] = state[1].rotate_left(13);
    state[1] ^= state[0];
    state[0] = state[0].rotate_left(32);
    state[2] = state[2].wrapping_add(state[3]);
    state[3] = state[3].rotate_left(16);
    state[3] ^= state[2];
    state[0] = state[0].wrapping_add(state[3]);
    state[3] = state[3].rotate_left(21);
    state[3] ^= state[0];
    state[2] = state[2].wrapping_add(state[1]);
    state[1] = state[1].rotate_left(17);
    state[1] ^= state[2];
    state[2] = state[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first rows of `vectors_sip128` from the SipHash reference
    /// implementation: key 00..0f, message 00..(len-1), for len 0..=9, which
    /// covers every tail length and one full block.
    const REFERENCE_VECTORS: [&str; 10] = [
        "a3817f04ba25a8e66df67214c7550293",
        "da87c1d86b99af44347659119b22fc45",
        "8177228da4a45dc7fca38bdef60affe4",
        "9c70b60c5267a94e5f33b6b02985ed51",
        "f88164c12d9c8faf7d0f6e7c7bcd5579",
        "1368875980776f8854527a07690e9627",
        "14eeca338b208613485ea0308fd7a15e",
        "a1f1ebbed8dbc153c0b84aa61ff08239",
        "3b62a9ba6258f5610f83e264f31497b4",
        "264499060ad9baabc47f8b02bb6d71ed",
    ];

    #[test]
    fn siphash_matches_the_reference_vectors() {
        let key_bytes: Vec<u8> = (0u8..16).collect();
        let key = [
            u64::from_le_bytes(key_bytes[..8].try_into().unwrap()),
            u64::from_le_bytes(key_bytes[8..].try_into().unwrap()),
        ];
        for (length, expected) in REFERENCE_VECTORS.iter().enumerate() {
            let message: Vec<u8> = (0..length as u8).collect();
            let [low, high] = siphash_2_4_128(key, &message);
            let mut output = Vec::new();
            output.extend_from_slice(&low.to_le_bytes());
            output.extend_from_slice(&high.to_le_bytes());
            let hex: String = output.iter().map(|byte| format!("{byte:02x}")).collect();
            assert_eq!(&hex, expected, "message length {length}");
        }
    }
}
