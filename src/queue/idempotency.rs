//! User idempotency keys: (queue, key) → job id, remembered for a window.
//!
//! A key is stored as the 128-bit SipHash-2-4 digest of the queue's interned
//! id and the key bytes, so an entry takes 24 bytes in the map and 24 in the
//! age queue whatever the key's length. Two different keys of one queue share
//! a digest with probability about n²/2¹²⁹ for n live keys (below 10⁻²⁷ for
//! the default cap of one million); such a collision would make the second
//! enqueue a duplicate of the first. The SipHash key is public, so the bound
//! holds for keys not crafted against SipHash; crafting a collision still
//! takes a generic search of about 2⁶⁴ digests.
//!
//! Memory: about 78 bytes per live key counting the spare capacity of the
//! map and the age queue (measured by `benches/queue.rs`), so about 78 MB at
//! the default cap of 1,000,000 keys.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use super::id_hasher::IdHashBuilder;
use super::ids::JobId;
use super::limits::IDEMPOTENCY_KEY_MAX_BYTES;
use super::queue_table::QueueId;
use super::siphash;

/// The stored form of a (queue, key) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct KeyDigest(pub(super) [u64; 2]);

impl Hash for KeyDigest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The digest is already uniformly distributed.
        state.write_u64(self.0[0]);
    }
}

impl KeyDigest {
    /// The digest of `key` within queue `queue`. `key` is at most
    /// `IDEMPOTENCY_KEY_MAX_BYTES` long (checked by the caller).
    pub(super) fn of(queue: QueueId, key: &[u8]) -> KeyDigest {
        assert!(key.len() <= IDEMPOTENCY_KEY_MAX_BYTES);
        let mut message = [0u8; 4 + IDEMPOTENCY_KEY_MAX_BYTES];
        message[..4].copy_from_slice(&queue.0.to_le_bytes());
        message[4..4 + key.len()].copy_from_slice(key);
        KeyDigest(siphash::digest(&message[..4 + key.len()]))
    }
}

/// One remembered key, as snapshots list them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RememberedKey {
    pub(super) remembered_at_ms: u64,
    pub(super) digest: KeyDigest,
    pub(super) id: JobId,
}

/// The live keys, with their age order for expiry.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct KeyTable {
    ids: HashMap<KeyDigest, JobId, IdHashBuilder>,
    /// Keys in the order they were remembered. The state's clock never goes
    /// back, so this is also the order of their enqueue times, and expiry
    /// only ever pops the front.
    by_age: VecDeque<(u64, KeyDigest)>,
}

impl KeyTable {
    pub(super) fn len(&self) -> usize {
        self.by_age.len()
    }

    pub(super) fn get(&self, digest: KeyDigest) -> Option<JobId> {
        self.ids.get(&digest).copied()
    }

    /// Remembers a key that is not live (the caller checked with `get`).
    pub(super) fn insert(&mut self, digest: KeyDigest, id: JobId, now_ms: u64) {
        let previous = self.ids.insert(digest, id);
        assert!(
            previous.is_none(),
            "a live idempotency key is remembered twice"
        );
        self.by_age.push_back((now_ms, digest));
    }

    /// Forgets every key remembered at or before `now_ms - window_ms`.
    pub(super) fn expire(&mut self, now_ms: u64, window_ms: u64) {
        while let Some(&(remembered_at_ms, digest)) = self.by_age.front() {
            if remembered_at_ms.saturating_add(window_ms) > now_ms {
                break;
            }
            self.by_age.pop_front();
            self.ids.remove(&digest);
        }
    }

    /// The keys in age order.
    pub(super) fn iter(&self) -> impl Iterator<Item = RememberedKey> + '_ {
        self.by_age
            .iter()
            .map(|&(remembered_at_ms, digest)| RememberedKey {
                remembered_at_ms,
                digest,
                id: self.ids[&digest],
            })
    }

    /// Rebuilds the table from a snapshot's list; `None` if the list is out
    /// of age order or repeats a digest.
    pub(super) fn from_list(keys: impl IntoIterator<Item = RememberedKey>) -> Option<KeyTable> {
        let mut table = KeyTable::default();
        let mut last_ms = 0;
        for key in keys {
            if key.remembered_at_ms < last_ms || table.ids.contains_key(&key.digest) {
                return None;
            }
            last_ms = key.remembered_at_ms;
            table.insert(key.digest, key.id, key.remembered_at_ms);
        }
        Some(table)
    }
}
