//! Three `raftq server` processes on loopback, each with its own metrics
//! listener, and a small, varied load that gives every dashboard panel
//! something to show: enqueues, claims, acks, retries, dead letters and a
//! requeue, an expired lease and a stale ack, scheduled jobs, more queues
//! than the metric label cap, and long-poll claims waiting on an empty queue.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use raftq::client::{Client, ClientOptions};
use raftq::queue::{DeadSelection, NewJob, Schedule};
use tokio_util::sync::CancellationToken;

use crate::ports::free_port;

const CLUSTER_ID: &str = "raftq-dashboards";
const SECRET: &str = "dashboards-test-secret";
/// Queues that get their own metric label; the test uses one more queue,
/// which must show up as `other`.
pub const QUEUE_LABELS_MAX: usize = 3;
/// Snapshots often enough that snapshot panels have activity.
const SNAPSHOT_INTERVAL_ENTRIES: u64 = 200;
/// The smallest segment the configuration accepts (8 MiB of entry room plus
/// 1 MiB), so the test's data directories stay small.
const SEGMENT_SIZE_BYTES: u64 = raftq::config::SEGMENT_SIZE_MIN_BYTES;

/// Where a node listens.
#[derive(Debug, Clone)]
pub struct NodeAddresses {
    pub id: u64,
    pub client: String,
    pub peer: String,
    pub metrics: String,
}

/// The node processes; killed when dropped.
pub struct ProcessCluster {
    pub nodes: Vec<NodeAddresses>,
    children: Vec<Child>,
}

impl ProcessCluster {
    pub fn start(size: u64, directory: &Path) -> ProcessCluster {
        let nodes: Vec<NodeAddresses> = (1..=size)
            .map(|id| NodeAddresses {
                id,
                client: format!("127.0.0.1:{}", free_port()),
                peer: format!("127.0.0.1:{}", free_port()),
                metrics: format!("127.0.0.1:{}", free_port()),
            })
            .collect();
        let members: Vec<String> = nodes
            .iter()
            .map(|node| format!("{}={}", node.id, node.peer))
            .collect();
        let members = members.join(",");
        let children = nodes
            .iter()
            .map(|node| {
                let log = std::fs::File::create(directory.join(format!("node-{}.log", node.id)))
                    .expect("create node log");
                Command::new(env!("CARGO_BIN_EXE_raftq"))
                    .arg("server")
                    .args(["--node-id", &node.id.to_string()])
                    .args(["--cluster", &members])
                    .args(["--cluster-id", CLUSTER_ID])
                    .args(["--client-address", &node.client])
                    .args(["--peer-address", &node.peer])
                    .args(["--metrics-address", &node.metrics])
                    .args([
                        "--data-dir",
                        &directory
                            .join(format!("node-{}", node.id))
                            .display()
                            .to_string(),
                    ])
                    .args([
                        "--snapshot-interval-entries",
                        &SNAPSHOT_INTERVAL_ENTRIES.to_string(),
                    ])
                    .args(["--segment-size-bytes", &SEGMENT_SIZE_BYTES.to_string()])
                    .args(["--metric-queue-labels-max", &QUEUE_LABELS_MAX.to_string()])
                    .args(["--log-level", "warn"])
                    .env("RAFTQ_CLUSTER_SECRET", SECRET)
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().expect("node log"))
                    .stderr(log)
                    .spawn()
                    .expect("start raftq server")
            })
            .collect();
        ProcessCluster { nodes, children }
    }

    /// Fails the test if a node has exited.
    pub fn assert_running(&mut self, directory: &Path) {
        for (node, child) in self.nodes.iter().zip(&mut self.children) {
            if let Some(status) = child.try_wait().expect("poll node") {
                let log = std::fs::read_to_string(directory.join(format!("node-{}.log", node.id)))
                    .unwrap_or_default();
                panic!("node {} exited with {status}:\n{log}", node.id);
            }
        }
    }

    pub fn metrics_addresses(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.metrics.clone()).collect()
    }
}

/// Connects a client to `nodes`, waiting for the cluster to elect a leader.
pub async fn connect(nodes: &[NodeAddresses], name: &str) -> Client {
    let mut options = ClientOptions::new(nodes.iter().map(|node| node.client.clone()));
    options.connect.cluster_id = CLUSTER_ID.to_string();
    options.connect.client_name = name.to_string();
    options.retry_deadline = Duration::from_secs(60);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match Client::connect(options.clone()).await {
            Ok(client) => return client,
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "cannot connect to the cluster: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the load has done so far.
#[derive(Debug, Default)]
pub struct LoadCounts {
    pub enqueued: AtomicU64,
    pub acked: AtomicU64,
    pub nacked: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub requeued: AtomicU64,
    pub stale_acks_rejected: AtomicU64,
    pub errors: AtomicU64,
}

/// The queues of the load: the first three get their own label, the last
/// is beyond the cap. `idle` never gets a job past the first, so long-poll
/// claims on it wait.
const BUSY_QUEUES: &[&str] = &["emails", "reports", "thumbnails"];
const IDLE_QUEUE: &str = "idle";
const IDLE_QUEUES: [&str; 1] = [IDLE_QUEUE];
/// Long-poll claims kept waiting on the idle queue at any time.
const WAITERS: usize = 2;

/// Runs the load until `stop` is cancelled.
pub async fn run_load(nodes: Vec<NodeAddresses>, counts: Arc<LoadCounts>, stop: CancellationToken) {
    let client = connect(&nodes, "dashboards-load").await;
    // One job in the idle queue creates it, so it has depth gauges too.
    client
        .enqueue(IDLE_QUEUE, "first")
        .await
        .expect("enqueue into the idle queue");
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(produce(client.clone(), Arc::clone(&counts), stop.clone()));
    for queue in BUSY_QUEUES {
        tasks.spawn(work(
            client.clone(),
            queue,
            Arc::clone(&counts),
            stop.clone(),
        ));
    }
    for waiter in 0..WAITERS {
        let client = connect(&nodes, &format!("dashboards-waiter-{waiter}")).await;
        tasks.spawn(wait_on_idle(client, Arc::clone(&counts), stop.clone()));
    }
    tasks.spawn(operate(client.clone(), Arc::clone(&counts), stop.clone()));
    tasks.join_all().await;
}

fn note_error(counts: &LoadCounts, what: &str, error: impl std::fmt::Display) {
    counts.errors.fetch_add(1, Ordering::Relaxed);
    eprintln!("load: {what}: {error}");
}

/// Enqueues small batches into every busy queue, a few of them scheduled
/// far ahead and a few allowed only two attempts.
async fn produce(client: Client, counts: Arc<LoadCounts>, stop: CancellationToken) {
    let mut round = 0u64;
    while !stop.is_cancelled() {
        round += 1;
        let mut jobs = Vec::new();
        for queue in BUSY_QUEUES {
            for position in 0..4u64 {
                let mut job = NewJob::new(*queue, format!("job {round}.{position}"));
                if position == 3 && round.is_multiple_of(5) {
                    job.schedule = Schedule::DelayMs(3_600_000);
                }
                if *queue == "reports" {
                    job.max_attempts = 2;
                }
                jobs.push(job);
            }
        }
        match client.enqueue_batch(jobs).await {
            Ok(results) => {
                let accepted = results.iter().filter(|result| result.is_ok()).count();
                counts
                    .enqueued
                    .fetch_add(accepted as u64, Ordering::Relaxed);
            }
            Err(error) => note_error(&counts, "enqueue", error),
        }
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// Claims with a long poll and settles each job: most are acked, every
/// seventh is nacked for a quick retry, every thirteenth is nacked dead.
async fn work(
    client: Client,
    queue: &'static str,
    counts: Arc<LoadCounts>,
    stop: CancellationToken,
) {
    let queues = [queue];
    let mut handled = 0u64;
    while !stop.is_cancelled() {
        let claimed = tokio::select! {
            _ = stop.cancelled() => return,
            claimed = client.claim(&queues, 8, 30_000, 500) => claimed,
        };
        let jobs = match claimed {
            Ok(jobs) => jobs,
            Err(error) => {
                note_error(&counts, "claim", error);
                continue;
            }
        };
        // Hold the jobs a moment, so claim-to-ack times are not all zero.
        tokio::time::sleep(Duration::from_millis(5)).await;
        for job in jobs {
            handled += 1;
            let outcome = if handled.is_multiple_of(13) {
                counts.dead_lettered.fetch_add(1, Ordering::Relaxed);
                client
                    .nack(job.id, job.token, "poisoned", None, true)
                    .await
                    .map(drop)
            } else if handled.is_multiple_of(7) {
                counts.nacked.fetch_add(1, Ordering::Relaxed);
                client
                    .nack(job.id, job.token, "try again", Some(20), false)
                    .await
                    .map(drop)
            } else {
                counts.acked.fetch_add(1, Ordering::Relaxed);
                client.ack(job.id, job.token).await.map(drop)
            };
            if let Err(error) = outcome {
                note_error(&counts, "settle", error);
            }
        }
    }
}

/// Keeps a long-poll claim waiting on the idle queue.
async fn wait_on_idle(client: Client, counts: Arc<LoadCounts>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let claimed = tokio::select! {
            _ = stop.cancelled() => return,
            claimed = client.claim(&IDLE_QUEUES, 1, 30_000, 5_000) => claimed,
        };
        match claimed {
            Ok(jobs) => {
                for job in jobs {
                    if let Err(error) = client.ack(job.id, job.token).await {
                        note_error(&counts, "ack idle job", error);
                    }
                }
            }
            Err(error) => note_error(&counts, "idle claim", error),
        }
    }
}

/// What an operator and a stalled worker do: requeue dead jobs now and
/// then, and let a lease expire, then ack with the stale token.
async fn operate(client: Client, counts: Arc<LoadCounts>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        match client
            .claim(&["thumbnails"], 1, raftq::queue::limits::LEASE_MIN_MS, 0)
            .await
        {
            Ok(jobs) => {
                if let Some(job) = jobs.into_iter().next() {
                    // Outlive the lease, then present the old token.
                    tokio::time::sleep(Duration::from_millis(
                        4 * raftq::queue::limits::LEASE_MIN_MS,
                    ))
                    .await;
                    if client.ack(job.id, job.token).await.is_err() {
                        counts.stale_acks_rejected.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(error) => note_error(&counts, "short claim", error),
        }
        match client
            .requeue_dead(DeadSelection::Queue("emails".to_string()))
            .await
        {
            Ok(requeued) => {
                counts.requeued.fetch_add(requeued, Ordering::Relaxed);
            }
            Err(error) => note_error(&counts, "requeue", error),
        }
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(1_500)) => {}
        }
    }
}
