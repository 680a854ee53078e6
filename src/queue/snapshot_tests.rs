//! Restore against images that each break one invariant.

use bytes::Bytes;

use super::*;
use crate::queue::{Claim, Command, Enqueue, NewJob, Op, Outcome, Schedule, SessionStamp};

const NOW_MS: u64 = 10_000_000;

fn apply(state: &mut JobQueue, op: Op) -> Outcome {
    state.apply(&Command { now_ms: NOW_MS, op })
}

/// A state with two queues, jobs in every state, two leases, keys and a
/// session.
fn busy_state() -> JobQueue {
    let mut state = JobQueue::new();
    let mut jobs: Vec<NewJob> = (0..6)
        .map(|i| {
            let mut job = NewJob::new(if i % 2 == 0 { "a" } else { "b" }, vec![i as u8; 3]);
            job.idempotency_key = Some(Bytes::from(vec![b'k', i as u8]));
            job
        })
        .collect();
    jobs[5].schedule = Schedule::DelayMs(10_000);
    apply(
        &mut state,
        Op::Enqueue(Enqueue {
            jobs,
            session: Some(SessionStamp {
                session_id: 9,
                seq: 1,
                lowest_unanswered_seq: 1,
            }),
        }),
    );
    let claim = Op::Claim(Claim {
        queues: vec!["a".into(), "b".into()],
        max_jobs: 3,
        lease_ms: 1_000,
        worker: Some("w".into()),
    });
    let Outcome::Claim(Ok(claimed)) = apply(&mut state, claim) else {
        panic!("claim succeeds");
    };
    apply(
        &mut state,
        Op::Nack(crate::queue::Nack {
            id: claimed[0].id,
            token: claimed[0].token,
            error: "bad".into(),
            retry_delay_ms: None,
            dead: true,
        }),
    );
    state
}

fn image_of(state: &JobQueue) -> ImageIn {
    let bytes = state.snapshot();
    let body = &bytes[HEADER_BYTES..bytes.len() - TRAILER_BYTES];
    postcard::from_bytes(body).expect("own snapshot decodes")
}

fn encode(image: &ImageIn) -> Vec<u8> {
    let mut bytes = SNAPSHOT_MAGIC.to_vec();
    bytes.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    let mut bytes = postcard::to_extend(image, bytes).unwrap();
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

fn job_index(image: &ImageIn, state: JobState) -> usize {
    image
        .jobs
        .iter()
        .position(|job| job.state == state)
        .expect("the busy state has a job in every state")
}

#[test]
fn unchanged_image_restores_to_an_equal_state() {
    let state = busy_state();
    assert_eq!(JobQueue::restore(&encode(&image_of(&state))), Ok(state));
}

/// A change that breaks one invariant of an image.
type ImageChange = fn(&mut ImageIn);

#[test]
fn restore_refuses_images_that_break_an_invariant() {
    let state = busy_state();
    let changes: Vec<(&str, ImageChange)> = vec![
        ("invalid limits", |image| image.limits.sessions_max = 0),
        ("zero next id", |image| image.next_job_id = 0),
        ("huge token counter", |image| image.last_token = u64::MAX),
        ("invalid queue name", |image| {
            image.queues[0].name = "-x".into()
        }),
        ("repeated queue name", |image| {
            image.queues[1].name = "a".into()
        }),
        ("unknown queue", |image| image.jobs[0].queue = 7),
        ("ids out of order", |image| image.jobs.swap(0, 1)),
        ("id not yet handed out", |image| {
            let last = image.jobs.len() - 1;
            image.jobs[last].id = JobId(image.next_job_id);
        }),
        ("no attempts allowed", |image| {
            image.jobs[0].max_attempts = 0
        }),
        ("attempts above max", |image| {
            image.jobs[0].attempts = image.jobs[0].max_attempts + 1
        }),
        ("invalid backoff", |image| {
            image.jobs[0].backoff.multiplier = 0
        }),
        ("ready in the future", |image| {
            let index = job_index(image, JobState::Ready);
            image.jobs[index].due_at_ms = NOW_MS + 1;
        }),
        ("scheduled in the past", |image| {
            let index = job_index(image, JobState::Scheduled);
            image.jobs[index].due_at_ms = NOW_MS;
        }),
        ("ready without attempts left", |image| {
            let index = job_index(image, JobState::Ready);
            image.jobs[index].max_attempts = 1;
            image.jobs[index].attempts = 1;
        }),
        ("leased without a lease", |image| {
            let index = job_index(image, JobState::Leased);
            image.jobs[index].lease = None;
        }),
        ("dead with a lease", |image| {
            let leased = job_index(image, JobState::Leased);
            image.jobs[leased].state = JobState::Dead;
        }),
        ("lease already expired", |image| {
            let index = job_index(image, JobState::Leased);
            image.jobs[index].lease.as_mut().unwrap().deadline_ms = NOW_MS;
        }),
        ("token never handed out", |image| {
            let index = job_index(image, JobState::Leased);
            image.jobs[index].lease.as_mut().unwrap().token = FencingToken(image.last_token + 1);
        }),
        ("two leases with one token", |image| {
            let leased: Vec<usize> = (0..image.jobs.len())
                .filter(|&i| image.jobs[i].state == JobState::Leased)
                .collect();
            let token = image.jobs[leased[0]].lease.as_ref().unwrap().token;
            image.jobs[leased[1]].lease.as_mut().unwrap().token = token;
        }),
        ("key outside its window", |image| {
            image.keys[0].remembered_at_ms = 0
        }),
        ("key from the future", |image| {
            image.keys[0].remembered_at_ms = NOW_MS + 1
        }),
        ("repeated key", |image| {
            image.keys[1].digest = image.keys[0].digest
        }),
        ("session idle too long", |image| {
            image.sessions[0].last_active_ms = 0
        }),
        ("session result below lowest unanswered", |image| {
            image.sessions[0].lowest_unanswered_seq = 2
        }),
        ("too many sessions", |image| {
            image.limits.sessions_max = 1;
            let mut copy = image.sessions[0].results.clone();
            let results = std::mem::take(&mut copy);
            image.sessions.push(SessionImage {
                session_id: 10,
                last_active_ms: NOW_MS,
                lowest_unanswered_seq: 1,
                results,
            });
        }),
    ];
    for (what, change) in changes {
        let mut image = image_of(&state);
        change(&mut image);
        let result = JobQueue::restore(&encode(&image));
        assert!(
            matches!(result, Err(SnapshotError::Inconsistent(_))),
            "{what}: {result:?}"
        );
    }
}

#[test]
fn restore_refuses_trailing_bytes() {
    let state = busy_state();
    let mut bytes = state.snapshot();
    bytes.truncate(bytes.len() - TRAILER_BYTES);
    bytes.push(0);
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    assert!(matches!(
        JobQueue::restore(&bytes),
        Err(SnapshotError::Decode(_))
    ));
}

#[test]
fn a_state_spanning_several_storage_chunks_round_trips() {
    let mut state = JobQueue::new();
    for batch in 0..30 {
        let jobs = (0..100)
            .map(|i| NewJob::new("many", vec![(batch * 100 + i) as u8; 4]))
            .collect();
        apply(
            &mut state,
            Op::Enqueue(Enqueue {
                jobs,
                session: None,
            }),
        );
    }
    // Acking the oldest jobs moves the newest ones into their slots.
    let claim = Op::Claim(Claim {
        queues: vec!["many".into()],
        max_jobs: 1_000,
        lease_ms: 60_000,
        worker: None,
    });
    let Outcome::Claim(Ok(claimed)) = apply(&mut state, claim) else {
        panic!("claim succeeds");
    };
    for job in claimed.iter().step_by(2) {
        let acked = apply(
            &mut state,
            Op::Ack(crate::queue::Ack {
                id: job.id,
                token: job.token,
            }),
        );
        assert!(matches!(acked, Outcome::Ack(Ok(_))), "{acked:?}");
    }
    assert_eq!(state.job_count(), 2_500);
    let restored = JobQueue::restore(&state.freeze().encode()).unwrap();
    assert_eq!(restored, state);
    assert_eq!(JobQueue::restore(&state.snapshot()), Ok(state));
}
