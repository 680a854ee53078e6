//! Operator commands, statistics, and refusals of bad input.

use bytes::Bytes;

use super::*;

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
    // Two jobs to lease (one of them then goes dead), one to stay ready,
    // one scheduled, and one in another queue.
    enqueue(&mut state, START_MS, "q", b"leased");
    enqueue(&mut state, START_MS, "q", b"dead");
    let mut claimed = claim(&mut state, START_MS, &["q"], 2);
    let leased = claimed.remove(0);
    nack(&mut state, START_MS, &claimed[0], true);
    enqueue(&mut state, START_MS, "q", b"ready");
    let mut later = NewJob::new("q", &b"scheduled"[..]);
    later.schedule = Schedule::DelayMs(60_000);
    enqueue_job(&mut state, START_MS, later).unwrap();
    let other = enqueue(&mut state, START_MS, "other", b"other");

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
        ack(&mut state, START_MS, &leased),
        Outcome::Ack(Ok(_))
    ));
    assert_eq!(state.next_wakeup_ms(), None);
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
