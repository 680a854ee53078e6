//! Claims, leases and the commands of a lease holder.

use super::*;
use crate::queue::limits::RESPONSE_PAYLOAD_BYTES_MAX;
use bytes::Bytes;

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
fn ack_batch_acks_each_job_on_its_own_like_separate_acks() {
    let mut state = JobQueue::new();
    for payload in [&b"a"[..], b"b", b"c"] {
        enqueue(&mut state, START_MS, "q", payload);
    }
    let jobs = claim(&mut state, START_MS + 1, &["q"], 3);
    let stale = Ack {
        id: jobs[1].id,
        token: FencingToken(jobs[1].token.0 + 100),
    };
    let acks = vec![
        Ack {
            id: jobs[0].id,
            token: jobs[0].token,
        },
        stale,
        Ack {
            id: jobs[2].id,
            token: jobs[2].token,
        },
    ];
    let Outcome::AckBatch(Ok(results)) = apply(&mut state, START_MS + 2, Op::AckBatch(acks)) else {
        panic!("the batch was refused");
    };
    assert!(results[0].is_ok());
    assert_eq!(results[1], Err(QueueError::LeaseLost(jobs[1].id)));
    assert!(results[2].is_ok());
    let stats = stats(&state, "q");
    assert_eq!(stats.leased, 1);
    assert_eq!(stats.counters.acked, 2);
}

#[test]
fn empty_or_oversized_ack_batch_is_refused_and_changes_nothing() {
    let mut state = JobQueue::new();
    enqueue(&mut state, START_MS, "q", b"x");
    let before = state.clone();
    let empty = apply(&mut state, START_MS, Op::AckBatch(Vec::new()));
    assert!(matches!(
        empty,
        Outcome::AckBatch(Err(QueueError::InvalidArgument(_)))
    ));
    let oversized = vec![
        Ack {
            id: JobId(1),
            token: FencingToken(1),
        };
        crate::queue::limits::ACK_BATCH_MAX + 1
    ];
    let refused = apply(&mut state, START_MS, Op::AckBatch(oversized));
    assert!(matches!(
        refused,
        Outcome::AckBatch(Err(QueueError::InvalidArgument(_)))
    ));
    assert_eq!(state, before);
}

/// Jobs of 1 MiB each: a claim or a dead-letter page of many of them stops
/// at the response payload cap, always keeping its first job, and the rest
/// stay where they were for the next call.
#[test]
fn claims_and_dead_pages_stop_at_the_response_payload_cap() {
    let mut state = JobQueue::new();
    let payload = Bytes::from(vec![7u8; 1024 * 1024]);
    let per_response = RESPONSE_PAYLOAD_BYTES_MAX / payload.len();
    let total = per_response + 3;
    for _ in 0..total {
        enqueue_job(&mut state, START_MS, NewJob::new("big", payload.clone())).unwrap();
    }
    let first = claim(&mut state, START_MS, &["big"], 1_000);
    assert_eq!(first.len(), per_response);
    assert_eq!(stats(&state, "big").ready as usize, total - per_response);
    let second = claim(&mut state, START_MS, &["big"], 1_000);
    assert_eq!(second.len(), 3);

    for job in first.iter().chain(&second) {
        nack(&mut state, START_MS, job, true);
    }
    let page = state.list_dead("big", None, 1_000).unwrap();
    assert_eq!(page.len(), per_response);
    let rest = state
        .list_dead("big", Some(page.last().unwrap().id), 1_000)
        .unwrap();
    assert_eq!(rest.len(), 3);
}

#[test]
fn a_job_larger_than_the_response_cap_is_still_claimed_alone() {
    let mut state = JobQueue::new();
    let limits = Limits {
        payload_max_bytes: (RESPONSE_PAYLOAD_BYTES_MAX + 1) as u32,
        ..Limits::default()
    };
    assert_eq!(
        apply(&mut state, START_MS, Op::SetLimits(limits)),
        Outcome::SetLimits(Ok(()))
    );
    let huge = Bytes::from(vec![1u8; RESPONSE_PAYLOAD_BYTES_MAX + 1]);
    enqueue_job(&mut state, START_MS, NewJob::new("huge", huge.clone())).unwrap();
    enqueue_job(&mut state, START_MS, NewJob::new("huge", huge)).unwrap();
    assert_eq!(claim(&mut state, START_MS, &["huge"], 10).len(), 1);
    assert_eq!(claim(&mut state, START_MS, &["huge"], 10).len(), 1);
}
