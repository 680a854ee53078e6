//! Snapshots of the whole state: a canonical encoding and a validating
//! restore.
//!
//! # Format (version 1)
//!
//! ```text
//! { magic "RQSM" (4 bytes) | version u32 LE | body | crc u32 LE }
//! ```
//!
//! `crc` is CRC-32/ISO-HDLC (crc32fast) over everything before it. `body` is
//! the postcard encoding of an image of the state whose sequences are in a
//! fixed order: queues by interned id (creation order), jobs by id,
//! idempotency keys by age, sessions by id and their results by sequence
//! number. Indexes are not stored; restore rebuilds them. So equal states
//! give identical bytes, whatever the order of their hash maps.
//!
//! Restore checks the magic, version and checksum, decodes the body (which
//! must be consumed exactly), and then checks every invariant the indexes
//! rely on before building them, so no input can make it or a later command
//! panic. Decoding never allocates far beyond the input: every element
//! consumes input bytes, and serde caps the room it reserves for a sequence
//! from its claimed length at 1 MiB.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::de::{Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use super::backoff::Backoff;
use super::error::SnapshotError;
use super::id_hasher::IdHashBuilder;
use super::idempotency::{KeyDigest, KeyTable, RememberedKey};
use super::ids::{FencingToken, JobId};
use super::info::{JobState, QueueCounters};
use super::job::{Job, Lease};
use super::job_queue::JobQueue;
use super::limits::{
    ATTEMPTS_MAX, ENQUEUE_BATCH_JOBS_MAX, ERROR_MESSAGE_MAX_BYTES, Limits,
    PAYLOAD_MAX_BYTES_CEILING, WORKER_NAME_MAX_BYTES,
};
use super::queue_table::{QueueId, QueueTable, validate_queue_name};
use super::sessions::{BatchResults, Session, SessionTable};

/// The first bytes of every queue snapshot.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"RQSM";
/// The snapshot format this build writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;
/// Job ids and fencing tokens in a snapshot must stay below this, so the
/// counters can never wrap in the life of a cluster.
const COUNTER_CEILING: u64 = 1 << 62;
const HEADER_BYTES: usize = 8;
const TRAILER_BYTES: usize = 4;

#[derive(Serialize, Deserialize)]
struct Image<Queues, Jobs, Keys, Sessions> {
    now_ms: u64,
    next_job_id: u64,
    last_token: u64,
    limits: Limits,
    queues: Queues,
    jobs: Jobs,
    keys: Keys,
    sessions: Sessions,
}

#[derive(Serialize, Deserialize)]
struct QueueImage<Text> {
    name: Text,
    paused: bool,
    counters: QueueCounters,
}

#[derive(Serialize, Deserialize)]
struct JobImage<Text, Payload> {
    id: JobId,
    queue: u32,
    state: JobState,
    priority: i32,
    enqueued_at_ms: u64,
    due_at_ms: u64,
    attempts: u16,
    max_attempts: u16,
    backoff: Backoff,
    last_error: Option<Text>,
    lease: Option<LeaseImage<Text>>,
    payload: Payload,
}

#[derive(Serialize, Deserialize)]
struct LeaseImage<Text> {
    token: FencingToken,
    claimed_at_ms: u64,
    deadline_ms: u64,
    worker: Option<Text>,
}

#[derive(Clone, Copy, Serialize, Deserialize)]
struct KeyImage {
    remembered_at_ms: u64,
    digest: [u64; 2],
    id: JobId,
}

#[derive(Serialize, Deserialize)]
struct SessionImage<Results> {
    session_id: u64,
    last_active_ms: u64,
    lowest_unanswered_seq: u64,
    results: Results,
}

type ImageIn = Image<
    Vec<QueueImage<String>>,
    Vec<JobImage<String, PayloadIn>>,
    Vec<KeyImage>,
    Vec<SessionImage<BTreeMap<u64, BatchResults>>>,
>;

/// A payload written as a postcard byte string without copying.
struct PayloadOut<'a>(&'a [u8]);

impl Serialize for PayloadOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// A payload read from a postcard byte string.
struct PayloadIn(Arc<[u8]>);

impl<'de> Deserialize<'de> for PayloadIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PayloadVisitor;
        impl Visitor<'_> for PayloadVisitor {
            type Value = PayloadIn;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a byte string")
            }
            fn visit_bytes<E>(self, bytes: &[u8]) -> Result<PayloadIn, E> {
                Ok(PayloadIn(Arc::from(bytes)))
            }
            fn visit_byte_buf<E>(self, bytes: Vec<u8>) -> Result<PayloadIn, E> {
                Ok(PayloadIn(Arc::from(bytes)))
            }
        }
        deserializer.deserialize_bytes(PayloadVisitor)
    }
}

impl Serialize for PayloadIn {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

/// Serializes an iterator as a sequence, built on demand so a snapshot never
/// holds a second copy of the state.
struct SequenceOut<F>(F);

impl<F, I> Serialize for SequenceOut<F>
where
    F: Fn() -> I,
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq((self.0)())
    }
}

fn inconsistent(what: &str) -> SnapshotError {
    SnapshotError::Inconsistent(what.to_string())
}

/// A copy of everything a snapshot holds, taken at one applied index. It
/// is cheap to take, since payloads are shared rather than copied and no
/// index is copied, and it is encoded later, on another thread, while the
/// live state goes on applying. Encoding sorts and looks up what taking it
/// left as is.
pub struct FrozenQueue {
    now_ms: u64,
    next_job_id: u64,
    last_token: u64,
    limits: Limits,
    queues: Vec<QueueImage<Box<str>>>,
    jobs: Vec<Job>,
    leases: HashMap<JobId, Lease, IdHashBuilder>,
    last_errors: HashMap<JobId, Box<str>, IdHashBuilder>,
    keys: Vec<KeyImage>,
    sessions: Vec<(u64, Session)>,
}

impl FrozenQueue {
    /// The canonical encoding of the state it was taken from (see the
    /// format above).
    pub fn encode(mut self) -> Vec<u8> {
        self.jobs.sort_unstable_by_key(|job| job.id);
        let image = Image {
            now_ms: self.now_ms,
            next_job_id: self.next_job_id,
            last_token: self.last_token,
            limits: self.limits,
            queues: SequenceOut(|| {
                self.queues.iter().map(|queue| QueueImage {
                    name: &*queue.name,
                    paused: queue.paused,
                    counters: queue.counters,
                })
            }),
            jobs: SequenceOut(|| self.jobs.iter().map(|job| self.job_image(job))),
            keys: SequenceOut(|| self.keys.iter()),
            sessions: SequenceOut(|| {
                self.sessions
                    .iter()
                    .map(|(session_id, session)| SessionImage {
                        session_id: *session_id,
                        last_active_ms: session.last_active_ms,
                        lowest_unanswered_seq: session.lowest_unanswered_seq,
                        results: &session.results,
                    })
            }),
        };
        // Room for every payload plus the fixed fields of every job, so the
        // buffer rarely has to move while it grows.
        let payload_bytes: usize = self.jobs.iter().map(|job| job.payload.len()).sum();
        let estimate_bytes = HEADER_BYTES + TRAILER_BYTES + payload_bytes + self.jobs.len() * 48;
        let mut bytes = Vec::with_capacity(estimate_bytes);
        bytes.extend_from_slice(&SNAPSHOT_MAGIC);
        bytes.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        let mut bytes =
            postcard::to_extend(&image, bytes).expect("encoding into a Vec cannot fail");
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    fn job_image<'a>(&'a self, job: &'a Job) -> JobImage<&'a str, PayloadOut<'a>> {
        JobImage {
            id: job.id,
            queue: job.queue.0,
            state: job.state,
            priority: job.priority,
            enqueued_at_ms: job.enqueued_at_ms,
            due_at_ms: job.due_at_ms,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            backoff: job.backoff(),
            last_error: self.last_errors.get(&job.id).map(|error| &**error),
            lease: self.leases.get(&job.id).map(|lease| LeaseImage {
                token: lease.token,
                claimed_at_ms: lease.claimed_at_ms,
                deadline_ms: lease.deadline_ms,
                worker: lease.worker.as_deref(),
            }),
            payload: PayloadOut(&job.payload),
        }
    }
}

impl JobQueue {
    /// The canonical encoding of the whole state (see the format above).
    pub fn snapshot(&self) -> Vec<u8> {
        self.freeze().encode()
    }

    /// A copy of the state to encode later: the jobs' fixed fields are
    /// copied, their payloads shared.
    pub fn freeze(&self) -> FrozenQueue {
        FrozenQueue {
            now_ms: self.now_ms,
            next_job_id: self.next_job_id,
            last_token: self.last_token,
            limits: self.limits,
            queues: self
                .queues
                .iter()
                .map(|(_, record)| QueueImage {
                    name: record.name.clone(),
                    paused: record.paused,
                    counters: record.counters,
                })
                .collect(),
            jobs: self.jobs.iter().cloned().collect(),
            leases: self.leases.clone(),
            last_errors: self.last_errors.clone(),
            keys: self
                .keys
                .iter()
                .map(|key| KeyImage {
                    remembered_at_ms: key.remembered_at_ms,
                    digest: key.digest.0,
                    id: key.id,
                })
                .collect(),
            sessions: self
                .sessions
                .iter()
                .map(|(session_id, session)| (session_id, session.clone()))
                .collect(),
        }
    }

    /// Rebuilds a state from [`JobQueue::snapshot`] bytes. Refuses anything
    /// that is not a snapshot of a reachable state; never panics.
    pub fn restore(bytes: &[u8]) -> Result<JobQueue, SnapshotError> {
        if bytes.len() < HEADER_BYTES + TRAILER_BYTES {
            return Err(SnapshotError::Truncated);
        }
        if bytes[..4] != SNAPSHOT_MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let version = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        let (covered, trailer) = bytes.split_at(bytes.len() - TRAILER_BYTES);
        let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        if crc32fast::hash(covered) != crc {
            return Err(SnapshotError::ChecksumMismatch);
        }
        let (image, rest) = postcard::take_from_bytes::<ImageIn>(&covered[HEADER_BYTES..])
            .map_err(|error| SnapshotError::Decode(error.to_string()))?;
        if !rest.is_empty() {
            return Err(SnapshotError::Decode(format!(
                "{} bytes after the body",
                rest.len()
            )));
        }
        Self::from_image(image)
    }

    fn from_image(image: ImageIn) -> Result<JobQueue, SnapshotError> {
        image
            .limits
            .validate()
            .map_err(|error| SnapshotError::Inconsistent(error.to_string()))?;
        if image.next_job_id == 0
            || image.next_job_id > COUNTER_CEILING
            || image.last_token > COUNTER_CEILING
        {
            return Err(inconsistent("counters out of range"));
        }
        let mut state = JobQueue::new();
        state.now_ms = image.now_ms;
        state.next_job_id = image.next_job_id;
        state.last_token = image.last_token;
        state.limits = image.limits;

        let mut queues = QueueTable::default();
        for queue in image.queues {
            if validate_queue_name(&queue.name).is_err() || queues.id(&queue.name).is_some() {
                return Err(inconsistent("queue name invalid or repeated"));
            }
            let id = queues.create(&queue.name);
            let record = queues.get_mut(id);
            record.paused = queue.paused;
            record.counters = queue.counters;
        }
        state.queues = queues;

        let mut tokens = BTreeSet::new();
        let mut last_id = JobId(0);
        state.jobs.reserve(image.jobs.len());
        for job in image.jobs {
            if job.id <= last_id || job.id.0 >= state.next_job_id {
                return Err(inconsistent("job ids out of order or out of range"));
            }
            last_id = job.id;
            state.restore_job(job, &mut tokens)?;
        }

        let now_ms = state.now_ms;
        let window_ms = state.limits.idempotency_window_ms;
        let mut remembered = Vec::with_capacity(image.keys.len());
        for key in image.keys {
            let live = key.remembered_at_ms <= now_ms
                && key.remembered_at_ms.saturating_add(window_ms) > now_ms;
            if !live || key.id.0 >= state.next_job_id {
                return Err(inconsistent("idempotency key out of its window"));
            }
            remembered.push(RememberedKey {
                remembered_at_ms: key.remembered_at_ms,
                digest: KeyDigest(key.digest),
                id: key.id,
            });
        }
        state.keys =
            KeyTable::from_list(remembered).ok_or_else(|| inconsistent("idempotency keys"))?;

        let idle_ms = state.limits.session_idle_ms;
        if image.sessions.len() > state.limits.sessions_max as usize {
            return Err(inconsistent("more sessions than sessions_max"));
        }
        let mut sessions = Vec::with_capacity(image.sessions.len());
        for session in image.sessions {
            let live = session.last_active_ms <= now_ms
                && session.last_active_ms.saturating_add(idle_ms) > now_ms;
            let batches_valid = session
                .results
                .values()
                .all(|results| (1..=ENQUEUE_BATCH_JOBS_MAX).contains(&results.len()));
            if !live || !batches_valid {
                return Err(inconsistent("session out of its window or malformed"));
            }
            sessions.push((
                session.session_id,
                Session::new(
                    session.last_active_ms,
                    session.lowest_unanswered_seq,
                    session.results,
                ),
            ));
        }
        state.sessions =
            SessionTable::from_list(sessions).ok_or_else(|| inconsistent("sessions"))?;
        Ok(state)
    }

    /// Checks one job image against the invariants of its state and links it.
    fn restore_job(
        &mut self,
        image: JobImage<String, PayloadIn>,
        tokens: &mut BTreeSet<FencingToken>,
    ) -> Result<(), SnapshotError> {
        let now_ms = self.now_ms;
        let id = image.id;
        let queue = QueueId(image.queue);
        let shape_valid = (image.queue as usize) < self.queues.len()
            && (1..=ATTEMPTS_MAX).contains(&u32::from(image.max_attempts))
            && image.attempts <= image.max_attempts
            && image.backoff.validate().is_ok()
            && image.payload.0.len() <= PAYLOAD_MAX_BYTES_CEILING as usize
            && image.enqueued_at_ms <= now_ms
            && image
                .last_error
                .as_ref()
                .is_none_or(|error| error.len() <= ERROR_MESSAGE_MAX_BYTES);
        if !shape_valid {
            return Err(inconsistent("job fields out of range"));
        }
        let retriable = image.attempts < image.max_attempts;
        let state_valid = match (image.state, &image.lease) {
            (JobState::Ready, None) => image.due_at_ms <= now_ms && retriable,
            (JobState::Scheduled, None) => image.due_at_ms > now_ms && retriable,
            (JobState::Dead, None) => true,
            (JobState::Leased, Some(lease)) => {
                image.attempts >= 1
                    && lease.claimed_at_ms <= now_ms
                    && lease.deadline_ms > now_ms
                    && lease.token.0 >= 1
                    && lease.token.0 <= self.last_token
                    && lease
                        .worker
                        .as_ref()
                        .is_none_or(|worker| worker.len() <= WORKER_NAME_MAX_BYTES)
                    && tokens.insert(lease.token)
            }
            _ => false,
        };
        if !state_valid {
            return Err(inconsistent("job state and its times disagree"));
        }

        self.jobs.insert(Job {
            id,
            payload: image.payload.0,
            enqueued_at_ms: image.enqueued_at_ms,
            due_at_ms: image.due_at_ms,
            backoff_initial_ms: image.backoff.initial_ms,
            backoff_max_ms: image.backoff.max_ms,
            queue,
            priority: image.priority,
            attempts: image.attempts,
            max_attempts: image.max_attempts,
            backoff_multiplier: image.backoff.multiplier as u8,
            state: image.state,
        });
        if let Some(error) = image.last_error {
            self.last_errors.insert(id, error.into_boxed_str());
        }
        match (image.state, image.lease) {
            (JobState::Ready, _) => self.link_ready(id, image.due_at_ms),
            (JobState::Scheduled, _) => self.link_scheduled(id, image.due_at_ms),
            (JobState::Dead, _) => {
                self.queues.get_mut(queue).dead.insert(id);
            }
            // Checked above: a leased job has a lease.
            (JobState::Leased, None) => {}
            (JobState::Leased, Some(lease)) => {
                self.lease_deadlines.insert((lease.deadline_ms, id));
                self.leases.insert(
                    id,
                    Lease {
                        token: lease.token,
                        claimed_at_ms: lease.claimed_at_ms,
                        deadline_ms: lease.deadline_ms,
                        worker: lease.worker.map(String::into_boxed_str),
                    },
                );
                self.queues.get_mut(queue).leased += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
