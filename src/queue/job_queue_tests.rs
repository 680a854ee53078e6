//! Rule-by-rule tests of [`JobQueue::apply`] and the reads.

use bytes::Bytes;

use super::*;

const START_MS: u64 = 1_000_000;
const LEASE_MS: u64 = 30_000;

fn apply(state: &mut JobQueue, now_ms: u64, op: Op) -> Outcome {
    state.apply(&Command { now_ms, op })
}

fn enqueue_job(state: &mut JobQueue, now_ms: u64, job: NewJob) -> Result<Enqueued, QueueError> {
    let outcome = apply(
        state,
        now_ms,
        Op::Enqueue(Enqueue {
            jobs: vec![job],
            session: None,
        }),
    );
    let Outcome::Enqueue(Ok(mut results)) = outcome else {
        panic!("a one-job batch is accepted: {outcome:?}");
    };
    results.pop().expect("one result per job")
}

fn enqueue(state: &mut JobQueue, now_ms: u64, queue: &str, payload: &'static [u8]) -> JobId {
    enqueue_job(state, now_ms, NewJob::new(queue, payload))
        .expect("valid job is enqueued")
        .id
}

fn claim_op(queues: &[&str], max_jobs: u32, lease_ms: u64) -> Op {
    Op::Claim(Claim {
        queues: queues.iter().map(|queue| queue.to_string()).collect(),
        max_jobs,
        lease_ms,
        worker: Some("worker-1".to_string()),
    })
}

fn claim(state: &mut JobQueue, now_ms: u64, queues: &[&str], max_jobs: u32) -> Vec<ClaimedJob> {
    match apply(state, now_ms, claim_op(queues, max_jobs, LEASE_MS)) {
        Outcome::Claim(Ok(jobs)) => jobs,
        other => panic!("claim is valid: {other:?}"),
    }
}

fn ack(state: &mut JobQueue, now_ms: u64, job: &ClaimedJob) -> Outcome {
    apply(
        state,
        now_ms,
        Op::Ack(Ack {
            id: job.id,
            token: job.token,
        }),
    )
}

fn nack(state: &mut JobQueue, now_ms: u64, job: &ClaimedJob, dead: bool) -> Outcome {
    apply(
        state,
        now_ms,
        Op::Nack(Nack {
            id: job.id,
            token: job.token,
            error: "boom".to_string(),
            retry_delay_ms: None,
            dead,
        }),
    )
}

fn ids(jobs: &[ClaimedJob]) -> Vec<JobId> {
    jobs.iter().map(|job| job.id).collect()
}

fn stats(state: &JobQueue, queue: &str) -> QueueStats {
    state
        .stats(queue, state.last_now_ms())
        .expect("queue exists")
}

#[test]
fn claim_leases_a_job_with_attempt_token_and_deadline() {
    let mut state = JobQueue::new();
    let id = enqueue(&mut state, START_MS, "emails", b"hello");
    let jobs = claim(&mut state, START_MS + 5, &["emails"], 10);
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job.id, id);
    assert_eq!(job.queue, "emails");
    assert_eq!(&job.payload[..], b"hello");
    assert_eq!(job.attempt, 1);
    assert_eq!(job.token, FencingToken(1));
    assert_eq!(job.lease_deadline_ms, START_MS + 5 + LEASE_MS);
    assert_eq!(job.enqueued_at_ms, START_MS);
    assert_eq!(job.ready_at_ms, START_MS);
    assert_eq!(state.job(id).map(|info| info.state), Some(JobState::Leased));
}

#[test]
fn ack_removes_the_job_and_reports_claim_time() {
    let mut state = JobQueue::new();
    enqueue(&mut state, START_MS, "q", b"x");
    let job = claim(&mut state, START_MS + 10, &["q"], 1).remove(0);
    let outcome = ack(&mut state, START_MS + 20, &job);
    assert_eq!(
        outcome,
        Outcome::Ack(Ok(Acked {
            queue: "q".to_string(),
            enqueued_at_ms: START_MS,
            claimed_at_ms: START_MS + 10,
        }))
    );
    assert_eq!(state.job(job.id), None);
    assert_eq!(state.job_count(), 0);
    assert_eq!(stats(&state, "q").counters.acked, 1);
}

#[test]
fn stale_token_is_lease_lost_and_changes_nothing() {
    let mut state = JobQueue::new();
    enqueue(&mut state, START_MS, "q", b"x");
    let job = claim(&mut state, START_MS, &["q"], 1).remove(0);
    let stale = ClaimedJob {
        token: FencingToken(job.token.0 + 1),
        ..job.clone()
    };
    let before = state.clone();
    assert_eq!(
        ack(&mut state, START_MS, &stale),
        Outcome::Ack(Err(QueueError::LeaseLost(job.id)))
    );
    assert_eq!(
        nack(&mut state, START_MS, &stale, false),
        Outcome::Nack(Err(QueueError::LeaseLost(job.id)))
    );
    let extend = Op::Extend(Extend {
        id: job.id,
        token: stale.token,
        lease_ms: LEASE_MS,
    });
    assert_eq!(
        apply(&mut state, START_MS, extend),
        Outcome::Extend(Err(QueueError::LeaseLost(job.id)))
    );
    assert_eq!(state, before);
}

#[test]
fn expired_lease_redelivers_with_a_higher_token_and_refuses_the_late_ack() {
    let mut state = JobQueue::new();
    let id = enqueue(&mut state, START_MS, "q", b"x");
    let first = claim(&mut state, START_MS, &["q"], 1).remove(0);
    let expiry_ms = first.lease_deadline_ms;
    apply(&mut state, expiry_ms, Op::Tick);
    let info = state.job(id).expect("job survives expiry");
    let retry_ms = info.due_at_ms;
    assert_eq!(info.state, JobState::Scheduled);
    assert!(
        retry_ms >= expiry_ms + 900 && retry_ms <= expiry_ms + 1_100,
        "backoff of ~1 s"
    );
    assert_eq!(state.next_wakeup_ms(), Some(retry_ms));
    apply(&mut state, retry_ms, Op::Tick);
    let second = claim(&mut state, retry_ms, &["q"], 1).remove(0);
    assert_eq!(second.id, id);
    assert_eq!(second.attempt, 2);
    assert!(second.token > first.token);
    assert_eq!(second.ready_at_ms, retry_ms);
    assert_eq!(
        ack(&mut state, retry_ms, &first),
        Outcome::Ack(Err(QueueError::LeaseLost(id)))
    );
    assert!(matches!(
        ack(&mut state, retry_ms, &second),
        Outcome::Ack(Ok(_))
    ));
    let counters = stats(&state, "q").counters;
    assert_eq!(
        (counters.expired, counters.claimed, counters.acked),
        (1, 2, 1)
    );
}

#[test]
fn lease_expired_at_the_commands_stamped_time_is_lost() {
    let mut state = JobQueue::new();
    enqueue(&mut state, START_MS, "q", b"x");
    let job = claim(&mut state, START_MS, &["q"], 1).remove(0);
    // No tick in between: the ack itself carries a time at the deadline.
    assert_eq!(
        ack(&mut state, job.lease_deadline_ms, &job),
        Outcome::Ack(Err(QueueError::LeaseLost(job.id)))
    );
    assert_eq!(state.job(job.id).map(|info| info.attempts), Some(1));
}

#[test]
fn max_attempts_moves_the_job_to_dead() {
    let mut state = JobQueue::new();
    let mut new = NewJob::new("q", &b"x"[..]);
    new.max_attempts = 2;
    new.backoff = Backoff {
        initial_ms: 0,
        max_ms: 0,
        multiplier: 1,
    };
    let id = enqueue_job(&mut state, START_MS, new).unwrap().id;
    let first = claim(&mut state, START_MS, &["q"], 1).remove(0);
    assert_eq!(
        nack(&mut state, START_MS + 1, &first, false),
        Outcome::Nack(Ok(Nacked {
            queue: "q".to_string(),
            disposition: Disposition::Retry {
                at_ms: START_MS + 1
            },
        }))
    );
    // Zero backoff: ready again at once.
    let second = claim(&mut state, START_MS + 1, &["q"], 1).remove(0);
    assert_eq!(second.attempt, 2);
    // The second lease expires: out of attempts.
    apply(&mut state, second.lease_deadline_ms, Op::Tick);
    let info = state.job(id).unwrap();
    assert_eq!(info.state, JobState::Dead);
    assert_eq!(info.last_error.as_deref(), Some("boom"));
    let stats = stats(&state, "q");
    assert_eq!((stats.dead, stats.counters.dead_lettered), (1, 1));
    assert!(claim(&mut state, second.lease_deadline_ms, &["q"], 1).is_empty());
}

#[test]
fn nack_with_dead_moves_the_job_to_dead_at_once() {
    let mut state = JobQueue::new();
    let id = enqueue(&mut state, START_MS, "q", b"x");
    let job = claim(&mut state, START_MS, &["q"], 1).remove(0);
    let outcome = nack(&mut state, START_MS, &job, true);
    assert_eq!(
        outcome,
        Outcome::Nack(Ok(Nacked {
            queue: "q".to_string(),
            disposition: Disposition::Dead,
        }))
    );
    assert_eq!(state.job(id).unwrap().state, JobState::Dead);
}

#[test]
fn nack_with_a_delay_schedules_the_retry() {
    let mut state = JobQueue::new();
    let id = enqueue(&mut state, START_MS, "q", b"x");
    let job = claim(&mut state, START_MS, &["q"], 1).remove(0);
    let outcome = apply(
        &mut state,
        START_MS + 100,
        Op::Nack(Nack {
            id,
            token: job.token,
            error: "é".repeat(2_000),
            retry_delay_ms: Some(5_000),
            dead: false,
        }),
    );
    assert!(matches!(
        outcome,
        Outcome::Nack(Ok(Nacked { disposition: Disposition::Retry { at_ms }, .. })) if at_ms == START_MS + 5_100
    ));
    let info = state.job(id).unwrap();
    assert_eq!(
        (info.state, info.due_at_ms),
        (JobState::Scheduled, START_MS + 5_100)
    );
    let error = info.last_error.unwrap();
    assert_eq!(error.len(), 1_024, "cut to 1 KiB on a character boundary");
    assert!(claim(&mut state, START_MS + 5_099, &["q"], 1).is_empty());
    assert_eq!(
        ids(&claim(&mut state, START_MS + 5_100, &["q"], 1)),
        vec![id]
    );
}

#[test]
fn claims_take_priority_first_then_fifo_by_ready_time() {
    let mut state = JobQueue::new();
    let low = enqueue(&mut state, START_MS, "q", b"low");
    let mut high = NewJob::new("q", &b"high"[..]);
    high.priority = 5;
    let high_first = enqueue_job(&mut state, START_MS + 1, high.clone())
        .unwrap()
        .id;
    let high_second = enqueue_job(&mut state, START_MS + 2, high.clone())
        .unwrap()
        .id;
    // Scheduled earlier than the others became ready, so it is ahead of them
    // at the same priority once due.
    let mut early = high;
    early.schedule = Schedule::RunAtMs(START_MS + 3);
    let early_scheduled = enqueue_job(&mut state, START_MS, early).unwrap().id;
    let low_second = enqueue(&mut state, START_MS + 3, "q", b"low2");
    let jobs = claim(&mut state, START_MS + 10, &["q"], 10);
    assert_eq!(
        ids(&jobs),
        vec![high_first, high_second, early_scheduled, low, low_second]
    );
}

#[test]
fn jobs_ready_at_the_same_time_go_in_id_order() {
    let mut state = JobQueue::new();
    let first = enqueue(&mut state, START_MS, "q", b"1");
    let second = enqueue(&mut state, START_MS, "q", b"2");
    assert_eq!(
        ids(&claim(&mut state, START_MS, &["q"], 2)),
        vec![first, second]
    );
}

#[test]
fn claim_drains_queues_in_the_order_given_and_skips_paused_and_unknown() {
    let mut state = JobQueue::new();
    let a = enqueue(&mut state, START_MS, "a", b"");
    let b1 = enqueue(&mut state, START_MS, "b", b"");
    let b2 = enqueue(&mut state, START_MS, "b", b"");
    let c = enqueue(&mut state, START_MS, "c", b"");
    assert_eq!(
        apply(&mut state, START_MS, Op::Pause("c".into())),
        Outcome::Pause(Ok(()))
    );
    let jobs = claim(&mut state, START_MS, &["nope", "c", "b", "a"], 3);
    assert_eq!(ids(&jobs), vec![b1, b2, a]);
    assert!(claim(&mut state, START_MS, &["c"], 3).is_empty());
    assert!(!state.has_ready(&["c"]));
    assert_eq!(
        apply(&mut state, START_MS, Op::Resume("c".into())),
        Outcome::Resume(Ok(()))
    );
    assert!(state.has_ready(&["c"]));
    assert_eq!(ids(&claim(&mut state, START_MS, &["c"], 3)), vec![c]);
}

#[test]
fn paused_queue_accepts_enqueues_and_can_be_paused_before_it_exists() {
    let mut state = JobQueue::new();
    assert_eq!(
        apply(&mut state, START_MS, Op::Pause("later".into())),
        Outcome::Pause(Ok(()))
    );
    let id = enqueue(&mut state, START_MS, "later", b"x");
    let stats = stats(&state, "later");
    assert!(stats.paused);
    assert_eq!(stats.ready, 1);
    assert!(claim(&mut state, START_MS, &["later"], 1).is_empty());
    apply(&mut state, START_MS, Op::Resume("later".into()));
    assert_eq!(ids(&claim(&mut state, START_MS, &["later"], 1)), vec![id]);
}

#[test]
fn purge_removes_ready_and_scheduled_jobs_only() {
    let mut state = JobQueue::new();
    enqueue(&mut state, START_MS, "q", b"ready");
    let mut later = NewJob::new("q", &b"scheduled"[..]);
    later.schedule = Schedule::DelayMs(60_000);
    enqueue_job(&mut state, START_MS, later).unwrap();
    let leased = enqueue(&mut state, START_MS, "q", b"leased");
    let dead = enqueue(&mut state, START_MS, "q", b"dead");
    let other = enqueue(&mut state, START_MS, "other", b"other");
    let claimed = claim(&mut state, START_MS, &["q"], 3);
    // The first two ready jobs are leased; nack one of them dead.
    let to_kill = claimed.iter().find(|job| job.id == dead).unwrap();
    nack(&mut state, START_MS, to_kill, true);
    let keep_leased = claimed.iter().find(|job| job.id == leased).unwrap();
    let ready_left = claimed
        .iter()
        .find(|job| job.id != leased && job.id != dead)
        .unwrap();
    // Put the remaining claimed job back to ready by cancelling and
    // re-enqueueing is not needed: ack it away so the queue has one ready
    // job, one scheduled job, one leased and one dead.
    ack(&mut state, START_MS, ready_left);
    enqueue(&mut state, START_MS, "q", b"ready again");
    assert_eq!(
        apply(&mut state, START_MS, Op::Purge("q".into())),
        Outcome::Purge(Ok(2))
    );
    let stats = stats(&state, "q");
    assert_eq!(
        (stats.ready, stats.scheduled, stats.leased, stats.dead),
        (0, 0, 1, 1)
    );
    assert_eq!(stats.counters.purged, 2);
    assert!(state.job(other).is_some());
    assert!(matches!(
        ack(&mut state, START_MS, keep_leased),
        Outcome::Ack(Ok(_))
    ));
    assert_eq!(state.next_wakeup_ms(), None);
}

#[test]
fn delayed_job_becomes_ready_at_its_run_at_time() {
    let mut state = JobQueue::new();
    let mut delayed = NewJob::new("q", &b"x"[..]);
    delayed.schedule = Schedule::DelayMs(5_000);
    let id = enqueue_job(&mut state, START_MS, delayed).unwrap().id;
    assert_eq!(state.job(id).unwrap().state, JobState::Scheduled);
    assert_eq!(state.next_wakeup_ms(), Some(START_MS + 5_000));
    assert!(claim(&mut state, START_MS + 4_999, &["q"], 1).is_empty());
    apply(&mut state, START_MS + 7_000, Op::Tick);
    let info = state.job(id).unwrap();
    assert_eq!(
        (info.state, info.due_at_ms),
        (JobState::Ready, START_MS + 5_000)
    );
    assert_eq!(stats(&state, "q").oldest_ready_age_ms, Some(2_000));
    assert_eq!(state.next_wakeup_ms(), None);
}

#[test]
fn run_at_in_the_past_is_ready_now() {
    let mut state = JobQueue::new();
    let mut past = NewJob::new("q", &b"x"[..]);
    past.schedule = Schedule::RunAtMs(START_MS - 10_000);
    let id = enqueue_job(&mut state, START_MS, past).unwrap().id;
    let info = state.job(id).unwrap();
    assert_eq!((info.state, info.due_at_ms), (JobState::Ready, START_MS));
}

#[test]
fn stamped_time_never_goes_back() {
    let mut state = JobQueue::new();
    apply(&mut state, START_MS, Op::Tick);
    let id = enqueue(&mut state, START_MS - 500, "q", b"x");
    assert_eq!(state.last_now_ms(), START_MS);
    assert_eq!(state.job(id).unwrap().enqueued_at_ms, START_MS);
    let job = claim(&mut state, START_MS - 1_000, &["q"], 1).remove(0);
    assert_eq!(job.lease_deadline_ms, START_MS + LEASE_MS);
}

#[test]
fn next_wakeup_is_the_earliest_run_at_or_lease_deadline() {
    let mut state = JobQueue::new();
    assert_eq!(state.next_wakeup_ms(), None);
    let mut later = NewJob::new("q", &b"x"[..]);
    later.schedule = Schedule::DelayMs(LEASE_MS * 2);
    enqueue_job(&mut state, START_MS, later).unwrap();
    assert_eq!(state.next_wakeup_ms(), Some(START_MS + LEASE_MS * 2));
    enqueue(&mut state, START_MS, "q", b"y");
    claim(&mut state, START_MS, &["q"], 1);
    assert_eq!(state.next_wakeup_ms(), Some(START_MS + LEASE_MS));
}

#[test]
fn extend_moves_the_lease_deadline() {
    let mut state = JobQueue::new();
    enqueue(&mut state, START_MS, "q", b"x");
    let job = claim(&mut state, START_MS, &["q"], 1).remove(0);
    let extend = Op::Extend(Extend {
        id: job.id,
        token: job.token,
        lease_ms: 60_000,
    });
    let outcome = apply(&mut state, START_MS + 20_000, extend);
    assert_eq!(
        outcome,
        Outcome::Extend(Ok(Extended {
            lease_deadline_ms: START_MS + 80_000
        }))
    );
    // Past the original deadline the lease still holds.
    assert!(matches!(
        ack(&mut state, START_MS + 50_000, &job),
        Outcome::Ack(Ok(_))
    ));
}

#[test]
fn idempotency_key_returns_the_original_job_within_the_window_even_after_ack() {
    let mut state = JobQueue::new();
    let mut keyed = NewJob::new("q", &b"x"[..]);
    keyed.idempotency_key = Some(Bytes::from_static(b"order-17"));
    let first = enqueue_job(&mut state, START_MS, keyed.clone()).unwrap();
    assert!(!first.duplicate);
    let job = claim(&mut state, START_MS, &["q"], 1).remove(0);
    ack(&mut state, START_MS, &job);
    let window_ms = Limits::default().idempotency_window_ms;
    let again = enqueue_job(&mut state, START_MS + window_ms - 1, keyed.clone()).unwrap();
    assert_eq!(
        again,
        Enqueued {
            id: first.id,
            duplicate: true
        }
    );
    assert_eq!(state.job_count(), 0);
    // The same key in another queue is another key.
    let mut elsewhere = keyed.clone();
    elsewhere.queue = "other".to_string();
    assert!(
        !enqueue_job(&mut state, START_MS + 1, elsewhere)
            .unwrap()
            .duplicate
    );
    // After the window the key is forgotten.
    let fresh = enqueue_job(&mut state, START_MS + window_ms, keyed).unwrap();
    assert!(!fresh.duplicate);
    assert_ne!(fresh.id, first.id);
    assert_eq!(stats(&state, "q").counters.enqueued, 2);
}

#[test]
fn duplicate_keys_within_one_batch_add_one_job() {
    let mut state = JobQueue::new();
    let mut keyed = NewJob::new("q", &b"x"[..]);
    keyed.idempotency_key = Some(Bytes::from_static(b"k"));
    let outcome = apply(
        &mut state,
        START_MS,
        Op::Enqueue(Enqueue {
            jobs: vec![keyed.clone(), keyed],
            session: None,
        }),
    );
    assert_eq!(
        outcome,
        Outcome::Enqueue(Ok(vec![
            Ok(Enqueued {
                id: JobId(1),
                duplicate: false
            }),
            Ok(Enqueued {
                id: JobId(1),
                duplicate: true
            }),
        ]))
    );
}

#[test]
fn idempotency_keys_beyond_the_cap_are_refused_not_forgotten() {
    let mut state = JobQueue::new();
    let limits = Limits {
        idempotency_keys_max: 2,
        ..Limits::default()
    };
    assert_eq!(
        apply(&mut state, START_MS, Op::SetLimits(limits)),
        Outcome::SetLimits(Ok(()))
    );
    let keyed = |key: &'static [u8]| {
        let mut job = NewJob::new("q", &b"x"[..]);
        job.idempotency_key = Some(Bytes::from_static(key));
        job
    };
    enqueue_job(&mut state, START_MS, keyed(b"a")).unwrap();
    enqueue_job(&mut state, START_MS, keyed(b"b")).unwrap();
    let before = state.clone();
    assert_eq!(
        enqueue_job(&mut state, START_MS, keyed(b"c")),
        Err(QueueError::TooManyIdempotencyKeys { max: 2 })
    );
    assert_eq!(state, before);
    // Known keys still answer, and jobs without keys are still accepted.
    assert!(
        enqueue_job(&mut state, START_MS, keyed(b"a"))
            .unwrap()
            .duplicate
    );
    enqueue(&mut state, START_MS, "q", b"no key");
    // Once the window passes there is room again.
    let window_ms = limits.idempotency_window_ms;
    assert!(enqueue_job(&mut state, START_MS + window_ms, keyed(b"c")).is_ok());
}

fn session_enqueue(stamp: SessionStamp, payload: &'static [u8]) -> Op {
    Op::Enqueue(Enqueue {
        jobs: vec![NewJob::new("q", payload)],
        session: Some(stamp),
    })
}

fn stamp(seq: u64, lowest_unanswered_seq: u64) -> SessionStamp {
    SessionStamp {
        session_id: 42,
        seq,
        lowest_unanswered_seq,
    }
}

#[test]
fn session_repeat_returns_the_stored_result_as_duplicate() {
    let mut state = JobQueue::new();
    let first = apply(&mut state, START_MS, session_enqueue(stamp(1, 1), b"a"));
    assert_eq!(
        first,
        Outcome::Enqueue(Ok(vec![Ok(Enqueued {
            id: JobId(1),
            duplicate: false
        })]))
    );
    let retry = apply(&mut state, START_MS + 5, session_enqueue(stamp(1, 1), b"a"));
    assert_eq!(
        retry,
        Outcome::Enqueue(Ok(vec![Ok(Enqueued {
            id: JobId(1),
            duplicate: true
        })]))
    );
    assert_eq!(state.job_count(), 1);
    // The client got answer 1; request 2 lets the state discard it.
    apply(&mut state, START_MS + 6, session_enqueue(stamp(2, 2), b"b"));
    assert_eq!(state.job_count(), 2);
    let before = state.clone();
    assert_eq!(
        apply(&mut state, START_MS + 6, session_enqueue(stamp(1, 1), b"a")),
        Outcome::Enqueue(Err(QueueError::StaleSessionRequest {
            session_id: 42,
            seq: 1
        }))
    );
    assert_eq!(state, before);
}

#[test]
fn unknown_session_is_session_expired_unless_it_is_the_first_request() {
    let mut state = JobQueue::new();
    apply(&mut state, START_MS, session_enqueue(stamp(1, 1), b"a"));
    let idle_ms = Limits::default().session_idle_ms;
    // Idle for the whole idle time: the session is forgotten.
    apply(&mut state, START_MS + idle_ms, Op::Tick);
    let before = state.clone();
    assert_eq!(
        apply(
            &mut state,
            START_MS + idle_ms,
            session_enqueue(stamp(2, 2), b"b")
        ),
        Outcome::Enqueue(Err(QueueError::SessionExpired { session_id: 42 }))
    );
    assert_eq!(state, before);
    // A session whose client has had no answer yet may open it.
    let first_of_another = SessionStamp {
        session_id: 7,
        seq: 3,
        lowest_unanswered_seq: 1,
    };
    assert!(matches!(
        apply(
            &mut state,
            START_MS + idle_ms,
            session_enqueue(first_of_another, b"c")
        ),
        Outcome::Enqueue(Ok(_))
    ));
}

#[test]
fn sessions_beyond_the_cap_evict_the_longest_idle() {
    let mut state = JobQueue::new();
    let limits = Limits {
        sessions_max: 2,
        ..Limits::default()
    };
    apply(&mut state, START_MS, Op::SetLimits(limits));
    let open = |session_id| SessionStamp {
        session_id,
        seq: 1,
        lowest_unanswered_seq: 1,
    };
    apply(&mut state, START_MS, session_enqueue(open(1), b"a"));
    apply(&mut state, START_MS + 1, session_enqueue(open(2), b"b"));
    // Session 1 is active again, so session 2 is now the longest idle.
    apply(&mut state, START_MS + 2, session_enqueue(open(1), b"a"));
    apply(&mut state, START_MS + 3, session_enqueue(open(3), b"c"));
    let next_of = |session_id| SessionStamp {
        session_id,
        seq: 2,
        lowest_unanswered_seq: 2,
    };
    assert_eq!(
        apply(&mut state, START_MS + 4, session_enqueue(next_of(2), b"b")),
        Outcome::Enqueue(Err(QueueError::SessionExpired { session_id: 2 }))
    );
    assert!(matches!(
        apply(&mut state, START_MS + 4, session_enqueue(next_of(1), b"a")),
        Outcome::Enqueue(Ok(_))
    ));
}

#[test]
fn a_session_that_never_confirms_answers_is_refused_not_grown() {
    let mut state = JobQueue::new();
    let batch = |seq| {
        Op::Enqueue(Enqueue {
            jobs: vec![NewJob::new("q", &b""[..]); 1_000],
            session: Some(stamp(seq, 1)),
        })
    };
    for seq in 1..=4 {
        assert!(matches!(
            apply(&mut state, START_MS, batch(seq)),
            Outcome::Enqueue(Ok(_))
        ));
    }
    assert_eq!(
        apply(&mut state, START_MS, batch(5)),
        Outcome::Enqueue(Err(QueueError::TooManyUnansweredRequests {
            session_id: 42
        }))
    );
}

#[test]
fn batch_is_validated_job_by_job() {
    let mut state = JobQueue::new();
    let outcome = apply(
        &mut state,
        START_MS,
        Op::Enqueue(Enqueue {
            jobs: vec![
                NewJob::new("good", &b"1"[..]),
                NewJob::new("bad name", &b"2"[..]),
                NewJob::new("good", &b"3"[..]),
            ],
            session: None,
        }),
    );
    assert_eq!(
        outcome,
        Outcome::Enqueue(Ok(vec![
            Ok(Enqueued {
                id: JobId(1),
                duplicate: false
            }),
            Err(QueueError::InvalidQueueName("bad name".to_string())),
            Ok(Enqueued {
                id: JobId(2),
                duplicate: false
            }),
        ]))
    );
}

#[test]
fn queue_full_and_too_many_queues_are_refused() {
    let mut state = JobQueue::new();
    let limits = Limits {
        jobs_per_queue_max: 2,
        queues_max: 1,
        ..Limits::default()
    };
    apply(&mut state, START_MS, Op::SetLimits(limits));
    enqueue(&mut state, START_MS, "q", b"1");
    enqueue(&mut state, START_MS, "q", b"2");
    let before = state.clone();
    assert_eq!(
        enqueue_job(&mut state, START_MS, NewJob::new("q", &b"3"[..])),
        Err(QueueError::QueueFull {
            queue: "q".to_string(),
            max: 2
        })
    );
    assert_eq!(
        enqueue_job(&mut state, START_MS, NewJob::new("r", &b"3"[..])),
        Err(QueueError::TooManyQueues { max: 1 })
    );
    assert_eq!(
        apply(&mut state, START_MS, Op::Pause("r".into())),
        Outcome::Pause(Err(QueueError::TooManyQueues { max: 1 }))
    );
    assert_eq!(state, before);
}

/// Whether an outcome is the expected refusal.
type OutcomeCheck = Box<dyn Fn(&Outcome) -> bool>;

#[test]
fn every_bad_input_gets_its_error_and_changes_nothing() {
    let mut state = JobQueue::new();
    enqueue(&mut state, START_MS, "q", b"x");
    let job = claim(&mut state, START_MS, &["q"], 1).remove(0);
    let unknown = JobId(999);
    let job_with = |change: fn(&mut NewJob)| {
        let mut new = NewJob::new("q", &b"x"[..]);
        change(&mut new);
        Op::Enqueue(Enqueue {
            jobs: vec![new],
            session: None,
        })
    };
    let job_error = |error: QueueError| Outcome::Enqueue(Ok(vec![Err(error)]));
    let invalid = |outcome: &Outcome| {
        matches!(
            outcome,
            Outcome::Enqueue(Ok(results)) if matches!(results[..], [Err(QueueError::InvalidArgument(_))])
        ) || matches!(
            outcome,
            Outcome::Enqueue(Err(QueueError::InvalidArgument(_)))
                | Outcome::Claim(Err(QueueError::InvalidArgument(_)))
                | Outcome::Nack(Err(QueueError::InvalidArgument(_)))
                | Outcome::SetLimits(Err(QueueError::InvalidArgument(_)))
        )
    };
    let bad_name = |name: &str| QueueError::InvalidQueueName(name.to_string());
    let cases: Vec<(Op, OutcomeCheck)> = vec![
        (
            job_with(|new| new.queue = "".into()),
            Box::new(move |o| *o == job_error(bad_name(""))),
        ),
        (
            job_with(|new| new.payload = Bytes::from(vec![0; 1024 * 1024 + 1])),
            Box::new(move |o| {
                *o == job_error(QueueError::PayloadTooLarge {
                    size: 1024 * 1024 + 1,
                    max: 1024 * 1024,
                })
            }),
        ),
        (job_with(|new| new.max_attempts = 0), Box::new(invalid)),
        (job_with(|new| new.max_attempts = 1_001), Box::new(invalid)),
        (
            job_with(|new| new.backoff.multiplier = 17),
            Box::new(invalid),
        ),
        (
            job_with(|new| new.schedule = Schedule::DelayMs(u64::MAX)),
            Box::new(invalid),
        ),
        (
            job_with(|new| new.schedule = Schedule::RunAtMs(u64::MAX)),
            Box::new(invalid),
        ),
        (
            job_with(|new| new.idempotency_key = Some(Bytes::new())),
            Box::new(invalid),
        ),
        (
            job_with(|new| new.idempotency_key = Some(Bytes::from(vec![1; 129]))),
            Box::new(invalid),
        ),
        (
            Op::Enqueue(Enqueue {
                jobs: vec![],
                session: None,
            }),
            Box::new(invalid),
        ),
        (
            Op::Enqueue(Enqueue {
                jobs: vec![NewJob::new("q", &b""[..]); 1_001],
                session: None,
            }),
            Box::new(invalid),
        ),
        (
            Op::Enqueue(Enqueue {
                jobs: vec![NewJob::new("q", &b""[..])],
                session: Some(stamp(1, 2)),
            }),
            Box::new(invalid),
        ),
        (claim_op(&[], 1, LEASE_MS), Box::new(invalid)),
        (claim_op(&["q"; 17], 1, LEASE_MS), Box::new(invalid)),
        (claim_op(&["q"], 0, LEASE_MS), Box::new(invalid)),
        (claim_op(&["q"], 1_001, LEASE_MS), Box::new(invalid)),
        (
            claim_op(&["q", "no way"], 1, LEASE_MS),
            Box::new(move |o| *o == Outcome::Claim(Err(bad_name("no way")))),
        ),
        (
            claim_op(&["q"], 1, 0),
            Box::new(|o| *o == Outcome::Claim(Err(QueueError::InvalidLease { lease_ms: 0 }))),
        ),
        (
            claim_op(&["q"], 1, 43_200_001),
            Box::new(|o| {
                *o == Outcome::Claim(Err(QueueError::InvalidLease {
                    lease_ms: 43_200_001,
                }))
            }),
        ),
        (
            Op::Claim(Claim {
                queues: vec!["q".into()],
                max_jobs: 1,
                lease_ms: LEASE_MS,
                worker: Some("w".repeat(129)),
            }),
            Box::new(invalid),
        ),
        (
            Op::Ack(Ack {
                id: unknown,
                token: job.token,
            }),
            Box::new(move |o| *o == Outcome::Ack(Err(QueueError::JobNotFound(unknown)))),
        ),
        (
            Op::Nack(Nack {
                id: job.id,
                token: job.token,
                error: String::new(),
                retry_delay_ms: Some(u64::MAX),
                dead: false,
            }),
            Box::new(invalid),
        ),
        (
            Op::Extend(Extend {
                id: job.id,
                token: job.token,
                lease_ms: 99,
            }),
            Box::new(|o| *o == Outcome::Extend(Err(QueueError::InvalidLease { lease_ms: 99 }))),
        ),
        (
            Op::Extend(Extend {
                id: unknown,
                token: job.token,
                lease_ms: LEASE_MS,
            }),
            Box::new(move |o| *o == Outcome::Extend(Err(QueueError::JobNotFound(unknown)))),
        ),
        (
            Op::Cancel(unknown),
            Box::new(move |o| *o == Outcome::Cancel(Err(QueueError::JobNotFound(unknown)))),
        ),
        (
            Op::RequeueDead(DeadSelection::Job(job.id)),
            Box::new(move |o| *o == Outcome::RequeueDead(Err(QueueError::JobNotDead(job.id)))),
        ),
        (
            Op::DeleteDead(DeadSelection::Job(unknown)),
            Box::new(move |o| *o == Outcome::DeleteDead(Err(QueueError::JobNotFound(unknown)))),
        ),
        (
            Op::DeleteDead(DeadSelection::Queue("missing".into())),
            Box::new(|o| {
                *o == Outcome::DeleteDead(Err(QueueError::QueueNotFound("missing".into())))
            }),
        ),
        (
            Op::Resume("missing".into()),
            Box::new(|o| *o == Outcome::Resume(Err(QueueError::QueueNotFound("missing".into())))),
        ),
        (
            Op::Purge("a b".into()),
            Box::new(move |o| *o == Outcome::Purge(Err(bad_name("a b")))),
        ),
        (
            Op::Pause("-x".into()),
            Box::new(move |o| *o == Outcome::Pause(Err(bad_name("-x")))),
        ),
        (
            Op::SetLimits(Limits {
                sessions_max: 0,
                ..Limits::default()
            }),
            Box::new(invalid),
        ),
    ];
    for (op, expected) in cases {
        let before = state.clone();
        let outcome = apply(&mut state, START_MS, op.clone());
        assert!(expected(&outcome), "{op:?} gave {outcome:?}");
        assert_eq!(state, before, "{op:?} changed the state");
    }
}

#[test]
fn dead_jobs_are_listed_requeued_and_deleted() {
    let mut state = JobQueue::new();
    let mut killed = Vec::new();
    for _ in 0..5 {
        enqueue(&mut state, START_MS, "q", b"x");
    }
    for job in claim(&mut state, START_MS, &["q"], 5) {
        nack(&mut state, START_MS, &job, true);
        killed.push(job.id);
    }
    let first_page = state.list_dead("q", None, 2).unwrap();
    assert_eq!(
        first_page.iter().map(|info| info.id).collect::<Vec<_>>(),
        killed[..2]
    );
    let next_page = state.list_dead("q", Some(killed[1]), 10).unwrap();
    assert_eq!(
        next_page.iter().map(|info| info.id).collect::<Vec<_>>(),
        killed[2..]
    );
    assert_eq!(
        apply(
            &mut state,
            START_MS + 1,
            Op::RequeueDead(DeadSelection::Job(killed[0]))
        ),
        Outcome::RequeueDead(Ok(1))
    );
    let requeued = state.job(killed[0]).unwrap();
    assert_eq!(
        (requeued.state, requeued.attempts, requeued.due_at_ms),
        (JobState::Ready, 0, START_MS + 1)
    );
    assert_eq!(
        apply(
            &mut state,
            START_MS + 1,
            Op::DeleteDead(DeadSelection::Job(killed[1]))
        ),
        Outcome::DeleteDead(Ok(1))
    );
    assert_eq!(
        apply(
            &mut state,
            START_MS + 1,
            Op::RequeueDead(DeadSelection::Queue("q".into()))
        ),
        Outcome::RequeueDead(Ok(3))
    );
    let stats = stats(&state, "q");
    assert_eq!((stats.ready, stats.dead), (4, 0));
    assert_eq!((stats.counters.requeued, stats.counters.deleted), (4, 1));
    let again = claim(&mut state, START_MS + 1, &["q"], 5);
    assert!(again.iter().all(|job| job.attempt == 1));
}

#[test]
fn cancel_removes_a_job_in_any_state_and_kills_its_token() {
    let mut state = JobQueue::new();
    let ready = enqueue(&mut state, START_MS, "q", b"x");
    let mut later = NewJob::new("q", &b"x"[..]);
    later.schedule = Schedule::DelayMs(1_000);
    let scheduled = enqueue_job(&mut state, START_MS, later).unwrap().id;
    let leased_job = {
        enqueue(&mut state, START_MS, "r", b"x");
        claim(&mut state, START_MS, &["r"], 1).remove(0)
    };
    for (id, previous_state) in [
        (ready, JobState::Ready),
        (scheduled, JobState::Scheduled),
        (leased_job.id, JobState::Leased),
    ] {
        let outcome = apply(&mut state, START_MS, Op::Cancel(id));
        assert!(
            matches!(&outcome, Outcome::Cancel(Ok(cancelled)) if cancelled.previous_state == previous_state),
            "{outcome:?}"
        );
        assert_eq!(state.job(id), None);
    }
    assert_eq!(
        ack(&mut state, START_MS, &leased_job),
        Outcome::Ack(Err(QueueError::JobNotFound(leased_job.id)))
    );
    assert_eq!(state.next_wakeup_ms(), None);
    assert_eq!(stats(&state, "q").counters.cancelled, 2);
}

#[test]
fn stats_report_counts_totals_and_oldest_ready_age() {
    let mut state = JobQueue::new();
    enqueue(&mut state, START_MS, "q", b"x");
    enqueue(&mut state, START_MS + 100, "q", b"y");
    let mut high = NewJob::new("q", &b"z"[..]);
    high.priority = 1;
    enqueue_job(&mut state, START_MS + 200, high).unwrap();
    // The claim takes the high-priority job, so the oldest ready job is
    // still the first.
    claim(&mut state, START_MS + 300, &["q"], 1);
    let stats = state.stats("q", START_MS + 1_000).unwrap();
    assert_eq!(
        (stats.ready, stats.leased, stats.scheduled, stats.dead),
        (2, 1, 0, 0)
    );
    assert_eq!(stats.oldest_ready_age_ms, Some(1_000));
    assert_eq!((stats.counters.enqueued, stats.counters.claimed), (3, 1));
    assert_eq!(
        state.stats("nope", START_MS),
        Err(QueueError::QueueNotFound("nope".to_string()))
    );
    enqueue(&mut state, START_MS, "a", b"x");
    let names: Vec<String> = state
        .all_stats(START_MS)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names, vec!["a".to_string(), "q".to_string()]);
}

#[test]
fn lower_idempotency_window_forgets_keys_sooner() {
    let mut state = JobQueue::new();
    let mut keyed = NewJob::new("q", &b"x"[..]);
    keyed.idempotency_key = Some(Bytes::from_static(b"k"));
    enqueue_job(&mut state, START_MS, keyed.clone()).unwrap();
    let limits = Limits {
        idempotency_window_ms: 10,
        ..Limits::default()
    };
    apply(&mut state, START_MS + 10, Op::SetLimits(limits));
    assert!(
        !enqueue_job(&mut state, START_MS + 10, keyed)
            .unwrap()
            .duplicate
    );
}

/// A state that exercises every part of the snapshot.
fn busy_state() -> JobQueue {
    let mut state = JobQueue::new();
    apply(&mut state, START_MS, Op::Pause("paused".into()));
    let mut keyed = NewJob::new("q", &b"keyed"[..]);
    keyed.idempotency_key = Some(Bytes::from_static(b"key"));
    keyed.priority = -3;
    enqueue_job(&mut state, START_MS, keyed).unwrap();
    let mut later = NewJob::new("q", &b"later"[..]);
    later.schedule = Schedule::DelayMs(50_000);
    enqueue_job(&mut state, START_MS, later).unwrap();
    apply(
        &mut state,
        START_MS,
        session_enqueue(stamp(1, 1), b"session"),
    );
    for _ in 0..3 {
        enqueue(&mut state, START_MS + 1, "work", b"w");
    }
    let claimed = claim(&mut state, START_MS + 2, &["work"], 3);
    nack(&mut state, START_MS + 3, &claimed[0], true);
    nack(&mut state, START_MS + 3, &claimed[1], false);
    state
}

#[test]
fn snapshot_restores_an_equal_state_with_identical_bytes() {
    let state = busy_state();
    let bytes = state.snapshot();
    let restored = JobQueue::restore(&bytes).expect("own snapshot restores");
    assert_eq!(restored, state);
    assert_eq!(restored.snapshot(), bytes);
    assert_eq!(
        JobQueue::restore(&JobQueue::new().snapshot()),
        Ok(JobQueue::new())
    );
}

#[test]
fn restore_refuses_damaged_snapshots() {
    let bytes = busy_state().snapshot();
    assert_eq!(
        JobQueue::restore(&bytes[..5]),
        Err(SnapshotError::Truncated)
    );
    let mut bad_magic = bytes.clone();
    bad_magic[0] ^= 1;
    assert_eq!(JobQueue::restore(&bad_magic), Err(SnapshotError::BadMagic));
    let mut bad_version = bytes.clone();
    bad_version[4] = 9;
    assert_eq!(
        JobQueue::restore(&bad_version),
        Err(SnapshotError::UnsupportedVersion(9))
    );
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x40;
    assert_eq!(
        JobQueue::restore(&flipped),
        Err(SnapshotError::ChecksumMismatch)
    );
}
