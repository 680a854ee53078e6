//! The job queue through a real 3-node cluster: servers on loopback, the
//! client library, leader changes.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::servers::ServerCluster;
use raftq::client::{Client, ClientError};
use raftq::queue::{Backoff, DeadSelection, JobId, JobState, NewJob, QueueError, Schedule};

fn job(queue: &str, payload: &str) -> NewJob {
    NewJob::new(queue, Bytes::from(payload.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_claim_ack_round_trip() {
    let cluster = ServerCluster::start(3).await;
    let client = cluster.client().await;
    let id = client.enqueue("emails", "hello").await.unwrap();
    let claimed = client.claim(&["emails"], 10, 30_000, 0).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, id);
    assert_eq!(claimed[0].payload, Bytes::from("hello"));
    assert_eq!(claimed[0].attempt, 1);
    client.ack(id, claimed[0].token).await.unwrap();
    assert_eq!(client.job(id, false).await.unwrap(), None);
    let stats = client.stats(Some("emails"), false).await.unwrap();
    assert_eq!(stats[0].1.counters.acked, 1);
    assert_eq!(stats[0].1.ready + stats[0].1.leased, 0);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_redelivers_and_the_late_ack_is_refused() {
    let cluster = ServerCluster::start(3).await;
    let client = cluster.client().await;
    let mut new_job = job("work", "x");
    new_job.backoff = Backoff {
        initial_ms: 0,
        max_ms: 0,
        multiplier: 1,
    };
    let id = client.enqueue_job(new_job).await.unwrap().id;
    // The first worker takes the job with a short lease and dies.
    let first = client.claim(&["work"], 1, 300, 0).await.unwrap().remove(0);
    // The lease expires without traffic; a waiting claim gets the job again.
    let second = client.claim(&["work"], 1, 30_000, 20_000).await.unwrap();
    assert_eq!(second.len(), 1, "the job was not redelivered");
    let second = second.into_iter().next().unwrap();
    assert_eq!(second.id, id);
    assert_eq!(second.attempt, 2);
    assert!(second.token > first.token, "fencing token must grow");
    // The first worker wakes up and tries to ack: refused, nothing changes.
    let late = client.ack(id, first.token).await;
    assert_eq!(late, Err(ClientError::Queue(QueueError::LeaseLost(id))));
    let info = client.job(id, false).await.unwrap().unwrap();
    assert_eq!(info.state, JobState::Leased);
    assert_eq!(info.lease.unwrap().token, second.token);
    client.ack(id, second.token).await.unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_attempts_lead_to_dead_and_requeue_brings_the_job_back() {
    let cluster = ServerCluster::start(3).await;
    let client = cluster.client().await;
    let mut new_job = job("flaky", "y");
    new_job.max_attempts = 2;
    new_job.backoff = Backoff {
        initial_ms: 0,
        max_ms: 0,
        multiplier: 1,
    };
    let id = client.enqueue_job(new_job).await.unwrap().id;
    for attempt in 1..=2 {
        let claimed = client
            .claim(&["flaky"], 1, 30_000, 10_000)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(claimed.attempt, attempt);
        client
            .nack(id, claimed.token, format!("failure {attempt}"), None, false)
            .await
            .unwrap();
    }
    let dead = client.list_dead("flaky", None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, id);
    assert_eq!(dead[0].last_error.as_deref(), Some("failure 2"));
    assert!(
        client
            .claim(&["flaky"], 1, 30_000, 0)
            .await
            .unwrap()
            .is_empty()
    );
    let requeued = client.requeue_dead(DeadSelection::Job(id)).await.unwrap();
    assert_eq!(requeued, 1);
    let again = client.claim(&["flaky"], 1, 30_000, 10_000).await.unwrap();
    assert_eq!(again[0].id, id);
    assert_eq!(again[0].attempt, 1);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_job_becomes_ready_only_at_its_time() {
    let cluster = ServerCluster::start(3).await;
    let client = cluster.client().await;
    let mut delayed = job("later", "z");
    delayed.schedule = Schedule::DelayMs(1_000);
    let id = client.enqueue_job(delayed).await.unwrap().id;
    assert!(
        client
            .claim(&["later"], 1, 30_000, 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        client.job(id, false).await.unwrap().unwrap().state,
        JobState::Scheduled
    );
    let claimed = client.claim(&["later"], 1, 30_000, 20_000).await.unwrap();
    assert_eq!(claimed.len(), 1, "the delayed job never became ready");
    assert!(claimed[0].ready_at_ms >= claimed[0].enqueued_at_ms + 1_000);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_take_higher_priority_first_then_fifo() {
    let cluster = ServerCluster::start(3).await;
    let client = cluster.client().await;
    let mut jobs = Vec::new();
    for (name, priority) in [("low-1", 0), ("high", 10), ("low-2", 0), ("mid", 5)] {
        let mut new_job = job("mixed", name);
        new_job.priority = priority;
        jobs.push(new_job);
    }
    let results = client.enqueue_batch(jobs).await.unwrap();
    assert!(results.iter().all(Result::is_ok));
    let claimed = client.claim(&["mixed"], 10, 30_000, 0).await.unwrap();
    let order: Vec<Bytes> = claimed.into_iter().map(|job| job.payload).collect();
    assert_eq!(order, vec!["high", "mid", "low-1", "low-2"]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_queue_accepts_enqueues_but_gives_nothing_until_resumed() {
    let cluster = ServerCluster::start(3).await;
    let client = cluster.client().await;
    client.enqueue("billing", "first").await.unwrap();
    client.pause("billing").await.unwrap();
    client.enqueue("billing", "second").await.unwrap();
    assert!(
        client
            .claim(&["billing"], 10, 30_000, 0)
            .await
            .unwrap()
            .is_empty()
    );
    let stats = client.stats(Some("billing"), false).await.unwrap();
    assert!(stats[0].1.paused);
    assert_eq!(stats[0].1.ready, 2);
    client.resume("billing").await.unwrap();
    assert_eq!(
        client
            .claim(&["billing"], 10, 30_000, 0)
            .await
            .unwrap()
            .len(),
        2
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_returns_the_original_job_across_a_leader_kill() {
    let mut cluster = ServerCluster::start(3).await;
    let client = cluster.client().await;
    let mut keyed = job("orders", "order-42");
    keyed.idempotency_key = Some(Bytes::from("order-42"));
    let first = client.enqueue_job(keyed.clone()).await.unwrap();
    assert!(!first.duplicate);
    let leader = cluster.leader().await;
    cluster.stop_server(leader).await;
    let other_client = cluster.client().await;
    let second = other_client.enqueue_job(keyed).await.unwrap();
    assert_eq!(second.id, first.id);
    assert!(second.duplicate);
    let stats = other_client.stats(Some("orders"), false).await.unwrap();
    assert_eq!(stats[0].1.counters.enqueued, 1);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_claim_wakes_when_a_job_arrives() {
    let cluster = ServerCluster::start(3).await;
    let client = cluster.client().await;
    let leader = cluster.leader().await;
    let waiting_client = client.clone();
    let waiter =
        tokio::spawn(async move { waiting_client.claim(&["inbox"], 1, 30_000, 60_000).await });
    let service = &cluster.servers[&leader].running.service;
    wait_until("the claim never parked", || service.parked_claims() > 0).await;
    let id = client.enqueue("inbox", "wake up").await.unwrap();
    // A claim that was not woken would only return, empty, after 60 s.
    let claimed = waiter.await.unwrap().unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, id);
    assert_eq!(service.parked_claims(), 0);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_survives_a_leader_change() {
    let mut cluster = ServerCluster::start(3).await;
    let client = cluster.client().await;
    let id = client.enqueue("durable", "keep").await.unwrap();
    let claimed = client
        .claim(&["durable"], 1, 60_000, 0)
        .await
        .unwrap()
        .remove(0);
    let leader = cluster.leader().await;
    cluster.stop_server(leader).await;
    let info = client.job(id, false).await.unwrap().unwrap();
    assert_eq!(info.state, JobState::Leased);
    assert_eq!(info.lease.unwrap().token, claimed.token);
    client.extend(id, claimed.token, 60_000).await.unwrap();
    client.ack(id, claimed.token).await.unwrap();
    assert_eq!(client.job(id, false).await.unwrap(), None);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let cluster = ServerCluster::start(3).await;
    let client = cluster.client().await;
    let id = client.enqueue("valid", "payload").await.unwrap();
    let claimed = client
        .claim(&["valid"], 1, 30_000, 0)
        .await
        .unwrap()
        .remove(0);
    let before = client.stats(None, false).await.unwrap();

    let invalid_name = client.enqueue("no spaces allowed", "x").await;
    assert!(matches!(
        invalid_name,
        Err(ClientError::Queue(QueueError::InvalidQueueName(_)))
    ));

    let oversize = client
        .enqueue("valid", Bytes::from(vec![0u8; 2 * 1024 * 1024]))
        .await;
    assert!(matches!(
        oversize,
        Err(ClientError::Queue(QueueError::PayloadTooLarge { .. }))
    ));

    let unknown = client.ack(JobId(999_999), claimed.token).await;
    assert_eq!(
        unknown,
        Err(ClientError::Queue(QueueError::JobNotFound(JobId(999_999))))
    );

    for lease_ms in [0, u64::MAX] {
        let claim = client.claim(&["valid"], 1, lease_ms, 0).await;
        assert!(
            matches!(
                claim,
                Err(ClientError::Queue(QueueError::InvalidLease { .. }))
            ),
            "{claim:?}"
        );
    }
    let wrong_token = raftq::queue::FencingToken(claimed.token.0 + 1000);
    assert_eq!(
        client.ack(id, wrong_token).await,
        Err(ClientError::Queue(QueueError::LeaseLost(id)))
    );
    assert_eq!(client.stats(None, false).await.unwrap(), before);
    // The rightful holder can still finish the job.
    client.ack(id, claimed.token).await.unwrap();
    cluster.shutdown().await;
}

/// Polls `done` until it holds, failing with `what` after 10 s.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Parks a long-poll claim, gives up on it (with its connection when
/// `whole_client`, else only the call), and checks that the server lets
/// go of it and leases nothing to it.
async fn abandoned_claim_leases_nothing(whole_client: bool) {
    let cluster = ServerCluster::start(3).await;
    let leader = cluster.leader().await;
    let service = &cluster.servers[&leader].running.service;
    let client = cluster.client().await;
    let waiting_client = if whole_client {
        cluster.client().await
    } else {
        client.clone()
    };
    let waiter =
        tokio::spawn(async move { waiting_client.claim(&["orphans"], 1, 30_000, 60_000).await });
    wait_until("the claim never parked", || service.parked_claims() > 0).await;
    // The task goes away: a worker process dying (and its connection with
    // it), or a worker shutting down while its client lives on.
    waiter.abort();
    let _ = waiter.await;
    wait_until("the server kept the claim parked", || {
        service.parked_claims() == 0
    })
    .await;
    let id = client
        .enqueue("orphans", "nobody must hold me")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        client.job(id, false).await.unwrap().unwrap().state,
        JobState::Ready
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_claim_of_a_client_that_went_away_leases_nothing() {
    abandoned_claim_leases_nothing(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_long_poll_claim_stops_waiting_and_leases_nothing() {
    abandoned_claim_leases_nothing(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_finds_the_cluster_after_its_only_seed_is_gone() {
    let mut cluster = ServerCluster::start(3).await;
    let leader = cluster.leader().await;
    let mut options = cluster.client_options();
    options.seeds = vec![cluster.client_addresses[&leader].clone()];
    let client = Client::connect(options).await.unwrap();
    // Every member has connected to the leader once the cluster runs, so
    // the leader reports all of their client addresses.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = client.cluster_status().await.unwrap();
        if status.client_addresses.len() == 3 {
            let expected: Vec<&String> = cluster.client_addresses.values().collect();
            assert_eq!(
                status.client_addresses.values().collect::<Vec<_>>(),
                expected
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the leader never reported every member: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.stop_server(leader).await;
    let id = client
        .enqueue("found", "after the seed went away")
        .await
        .unwrap();
    let claimed = client.claim(&["found"], 1, 60_000, 0).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, id);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_moves_on_from_a_node_that_knows_no_leader() {
    let mut cluster = ServerCluster::start(3).await;
    let leader = cluster.leader().await;
    let removed = (1..=3).find(|&id| id != leader).unwrap();
    // Removed while it is down, the node never learns of its removal: once
    // restarted it waits for a leader that never calls on it again.
    cluster.stop_server(removed).await;
    cluster.client().await.remove(removed).await.unwrap();
    cluster.start_server(removed).await;
    let removed_address = cluster.client_addresses[&removed].clone();
    let mut options = cluster.client_options();
    options
        .seeds
        .sort_by_key(|address| *address != removed_address);
    assert_eq!(options.seeds[0], removed_address);
    let status = Client::node_status(&removed_address, &options.connect)
        .await
        .unwrap();
    assert_eq!(status.leader_id, None, "{status:?}");

    // The client's first connection goes to the removed node, which answers
    // that it knows no leader for as long as it runs.
    let client = Client::connect(options).await.unwrap();
    let id = client.enqueue("moved", "on").await.unwrap();
    let claimed = client.claim(&["moved"], 1, 60_000, 0).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, id);
    cluster.shutdown().await;
}
