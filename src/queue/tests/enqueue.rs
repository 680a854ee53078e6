//! Enqueues: schedules, batches, idempotency keys, sessions and caps.

use bytes::Bytes;

use super::*;

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
    let fitting_batches = (crate::queue::limits::SESSION_STORED_RESULTS_MAX / 1_000) as u64;
    for seq in 1..=fitting_batches {
        assert!(matches!(
            apply(&mut state, START_MS, batch(seq)),
            Outcome::Enqueue(Ok(_))
        ));
    }
    assert_eq!(
        apply(&mut state, START_MS, batch(fitting_batches + 1)),
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

#[test]
fn stored_session_results_beyond_the_total_cap_evict_the_longest_idle_other_sessions() {
    let mut state = JobQueue::new();
    let limits = Limits {
        session_results_max: 2,
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
    // A third stored result passes the cap: session 1, the longest idle, goes.
    apply(&mut state, START_MS + 2, session_enqueue(open(3), b"c"));
    let next_of = |session_id| SessionStamp {
        session_id,
        seq: 2,
        lowest_unanswered_seq: 2,
    };
    assert_eq!(
        apply(&mut state, START_MS + 3, session_enqueue(next_of(1), b"a")),
        Outcome::Enqueue(Err(QueueError::SessionExpired { session_id: 1 }))
    );
    assert!(matches!(
        apply(&mut state, START_MS + 3, session_enqueue(next_of(2), b"b")),
        Outcome::Enqueue(Ok(_))
    ));
}
