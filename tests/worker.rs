//! The Worker API against a real cluster: ack on success, nack on error or
//! panic, lease extension while a handler runs, graceful shutdown.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::servers::ServerCluster;
use raftq::client::{Client, Worker};
use raftq::queue::{Backoff, JobId, JobInfo, JobState, NewJob};
use tokio::sync::Notify;

async fn wait_for_job(
    client: &Client,
    id: JobId,
    done: impl Fn(Option<&JobInfo>) -> bool,
) -> Option<JobInfo> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let job = client.job(id, false).await.unwrap();
        if done(job.as_ref()) {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} never reached the expected state: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn no_retry_job(queue: &str, payload: &str) -> NewJob {
    let mut job = NewJob::new(queue, payload.to_string());
    job.max_attempts = 1;
    job.backoff = Backoff {
        initial_ms: 0,
        max_ms: 0,
        multiplier: 1,
    };
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_acks_successes_and_nacks_errors_and_panics() {
    let cluster = ServerCluster::start(3).await;
    let client = cluster.client().await;
    let ok = client
        .enqueue_job(no_retry_job("jobs", "ok"))
        .await
        .unwrap()
        .id;
    let failing = client
        .enqueue_job(no_retry_job("jobs", "fail"))
        .await
        .unwrap()
        .id;
    let panicking = client
        .enqueue_job(no_retry_job("jobs", "panic"))
        .await
        .unwrap()
        .id;
    let stop = Arc::new(Notify::new());
    let worker = Worker::builder(client.clone())
        .handle("jobs", |job| async move {
            match &job.payload[..] {
                b"ok" => Ok(()),
                b"fail" => Err("the mail server said no".into()),
                _ => panic!("unexpected payload"),
            }
        })
        .concurrency(3)
        .claim_wait_ms(200)
        .build();
    let stopper = Arc::clone(&stop);
    let running = tokio::spawn(async move { worker.run(stopper.notified()).await });

    wait_for_job(&client, ok, |job| job.is_none()).await;
    let failed = wait_for_job(&client, failing, |job| {
        job.is_some_and(|job| job.state == JobState::Dead)
    })
    .await;
    assert_eq!(
        failed.unwrap().last_error.as_deref(),
        Some("the mail server said no")
    );
    let panicked = wait_for_job(&client, panicking, |job| {
        job.is_some_and(|job| job.state == JobState::Dead)
    })
    .await;
    let message = panicked.unwrap().last_error.unwrap();
    assert!(
        message.contains("handler panicked: unexpected payload"),
        "{message}"
    );

    stop.notify_one();
    let report = running.await.unwrap().unwrap();
    assert_eq!(report.acked, 1);
    assert_eq!(report.nacked, 2);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_is_extended_while_a_slow_handler_runs() {
    let cluster = ServerCluster::start(3).await;
    let client = cluster.client().await;
    let id = client.enqueue("slow", "x").await.unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&runs);
    let stop = Arc::new(Notify::new());
    let worker = Worker::builder(client.clone())
        .handle("slow", move |_job| {
            let counted = Arc::clone(&counted);
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                // Five leases long: only the background extension keeps it.
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                Ok(())
            }
        })
        .lease_ms(300)
        .claim_wait_ms(100)
        .build();
    let stopper = Arc::clone(&stop);
    let running = tokio::spawn(async move { worker.run(stopper.notified()).await });
    wait_for_job(&client, id, |job| job.is_none()).await;
    stop.notify_one();
    let report = running.await.unwrap().unwrap();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the job was delivered twice"
    );
    assert_eq!(report.acked, 1);
    assert_eq!(report.leases_lost, 0);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hands_back_jobs_that_do_not_finish_in_time() {
    let cluster = ServerCluster::start(3).await;
    let client = cluster.client().await;
    let id = client.enqueue("stuck", "x").await.unwrap();
    let started = Arc::new(Notify::new());
    let signal = Arc::clone(&started);
    let stop = Arc::new(Notify::new());
    let worker = Worker::builder(client.clone())
        .handle("stuck", move |_job| {
            let signal = Arc::clone(&signal);
            async move {
                signal.notify_one();
                std::future::pending::<()>().await;
                Ok(())
            }
        })
        .lease_ms(60_000)
        .shutdown_timeout(Duration::from_millis(200))
        .build();
    let stopper = Arc::clone(&stop);
    let running = tokio::spawn(async move { worker.run(stopper.notified()).await });
    started.notified().await;
    stop.notify_one();
    let report = running.await.unwrap().unwrap();
    assert_eq!(report.abandoned, 1);
    // Handed back for immediate retry rather than left to a 60 s lease.
    let job = client.job(id, false).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Ready);
    assert_eq!(job.attempts, 1);
    cluster.shutdown().await;
}
