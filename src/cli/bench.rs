//! `raftq bench`: load against a cluster, with latency percentiles.
//!
//! Workloads:
//! - `enqueue`: producers only.
//! - `e2e`: producers and workers: enqueue → claim → ack, all durable.
//! - `claim`: fill a queue first, then workers drain it.
//! - `floor`: no raftq at all: the least work a replicated, durable write
//!   needs on this machine, with the same open-loop schedule (see
//!   [`floor`]), as the baseline for `enqueue --rate`.
//!
//! Closed loop by default: each producer sends its next batch when the
//! previous one is answered. With `--rate`, producers send on a fixed
//! schedule whatever the answers do (open loop) and latency is measured from
//! the moment a request was due, not from when it was sent, so a stalled
//! cluster shows up in the percentiles instead of hiding in fewer samples
//! (coordinated omission).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use raftq::client::{Client, ClientError};
use raftq::queue::{Enqueued, NewJob, QueueError};
use serde_json::json;
use tokio::sync::Semaphore;

use super::ConnectArgs;
use super::local_cluster::{LocalCluster, LocalSpec};

mod floor;

/// What the benchmark does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Producers only.
    Enqueue,
    /// Producers and workers: enqueue, claim, ack.
    E2e,
    /// Fill a queue, then drain it with workers.
    Claim,
    /// No raftq: the same open-loop requests, replicated over loopback to
    /// as many in-process replicas as --local says (3 by default), each
    /// syncing to a file; a floor under `enqueue` with the same flags.
    /// Needs --rate.
    Floor,
}

/// Flags of `raftq bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The workload.
    #[arg(value_enum, default_value = "e2e")]
    workload: Workload,
    /// Start a local cluster of this many nodes (temp data dirs, fsync on)
    /// instead of using --servers.
    #[arg(long)]
    local: Option<u64>,
    /// With --local: keep the nodes' data and `node-N.log` files in this
    /// directory (it must not exist yet) instead of a temporary one. The
    /// floor keeps its replicas' files there.
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// With --local: the nodes' log filter.
    #[arg(long, default_value = "warn")]
    log_level: String,
    /// Concurrent producers.
    #[arg(long, default_value_t = 8)]
    producers: usize,
    /// Concurrent workers.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Bytes of each job's payload.
    #[arg(long, default_value_t = 128)]
    payload_bytes: usize,
    /// Jobs per enqueue request.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Jobs per claim request.
    #[arg(long, default_value_t = 100)]
    claim_batch: u32,
    /// Length of the measured run.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Offered load in jobs per second (open loop); closed loop when absent.
    #[arg(long)]
    rate: Option<u64>,
    /// Jobs to fill the queue with before the claim workload.
    #[arg(long, default_value_t = 100_000)]
    jobs: u64,
    /// The queue to use.
    #[arg(long, default_value = "bench")]
    queue: String,
    /// With --local: kill the leader (SIGKILL) this many seconds into the
    /// run, to measure the longest gap with no successful enqueue.
    #[arg(long)]
    kill_leader_after_secs: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Everything measured during a run.
struct Measurements {
    started: Instant,
    enqueued: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    /// The first error of each kind, with how often it happened.
    error_kinds: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    enqueue_latency_us: std::sync::Mutex<Histogram<u64>>,
    ack_latency_us: std::sync::Mutex<Histogram<u64>>,
    /// Enqueue requests sent and not yet answered; what is left when the
    /// run is over never got an answer.
    in_flight: AtomicU64,
    /// Milliseconds since `started` of the last successful enqueue.
    last_success_ms: AtomicU64,
    longest_gap_ms: AtomicU64,
    stop: AtomicBool,
}

impl Measurements {
    fn new() -> Measurements {
        let histogram = || Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds");
        Measurements {
            started: Instant::now(),
            enqueued: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            error_kinds: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            enqueue_latency_us: std::sync::Mutex::new(histogram()),
            ack_latency_us: std::sync::Mutex::new(histogram()),
            in_flight: AtomicU64::new(0),
            last_success_ms: AtomicU64::new(0),
            longest_gap_ms: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }

    fn record_enqueue(&self, jobs: u64, latency: Duration) {
        self.enqueued.fetch_add(jobs, Ordering::Relaxed);
        record(&self.enqueue_latency_us, latency);
        let now_ms = self.started.elapsed().as_millis() as u64;
        let previous = self.last_success_ms.swap(now_ms, Ordering::Relaxed);
        self.longest_gap_ms
            .fetch_max(now_ms.saturating_sub(previous), Ordering::Relaxed);
    }

    /// Counts an enqueue request as sent; [`Measurements::record_enqueue_outcome`]
    /// counts it as answered.
    fn record_sent(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the answer to an enqueue request sent `latency` ago (for the
    /// open loop: due `latency` ago).
    fn record_enqueue_outcome(
        &self,
        outcome: Result<Vec<Result<Enqueued, QueueError>>, ClientError>,
        latency: Duration,
    ) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        match outcome {
            Ok(results) => {
                let ok = results.iter().filter(|result| result.is_ok()).count() as u64;
                self.record_enqueue(ok, latency);
                if let Some(Err(error)) = results.iter().find(|result| result.is_err()) {
                    self.record_error(error, results.len() as u64 - ok);
                }
            }
            Err(error) => self.record_error(error, 1),
        }
    }

    fn record_error(&self, error: impl std::fmt::Display, count: u64) {
        self.errors.fetch_add(count, Ordering::Relaxed);
        let text = error.to_string();
        // Keep the class of the error, not its details, so kinds stay few.
        let kind: String = text.chars().take(60).collect();
        *self
            .error_kinds
            .lock()
            .expect("errors lock")
            .entry(kind)
            .or_insert(0) += count;
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

fn record(histogram: &std::sync::Mutex<Histogram<u64>>, latency: Duration) {
    let micros = (latency.as_micros() as u64).max(1);
    histogram
        .lock()
        .expect("histogram lock")
        .saturating_record(micros);
}

fn payload(bytes: usize, seed: u64) -> Bytes {
    let mut payload = vec![b'x'; bytes];
    let tag = seed.to_le_bytes();
    let shown = tag.len().min(bytes);
    payload[..shown].copy_from_slice(&tag[..shown]);
    Bytes::from(payload)
}

fn batch(queue: &str, size: usize, payload_bytes: usize, seed: u64) -> Vec<NewJob> {
    (0..size)
        .map(|index| NewJob::new(queue, payload(payload_bytes, seed + index as u64)))
        .collect()
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.batch_size >= 1 && args.batch_size <= 1000,
        "--batch-size must be 1 to 1000"
    );
    anyhow::ensure!(
        args.claim_batch >= 1 && args.claim_batch <= 1000,
        "--claim-batch must be 1 to 1000"
    );
    anyhow::ensure!(
        args.kill_leader_after_secs.is_none() || args.local.is_some(),
        "--kill-leader-after-secs needs --local"
    );
    if args.workload == Workload::Floor {
        return run_floor(&args).await;
    }
    anyhow::ensure!(
        args.data_dir.is_none() || args.local.is_some(),
        "--data-dir needs --local"
    );
    let local = match args.local {
        Some(nodes) => {
            anyhow::ensure!((1..=9).contains(&nodes), "--local takes 1 to 9 nodes");
            Some(
                LocalCluster::start_with(LocalSpec {
                    nodes,
                    base_port: None,
                    data_dir: args.data_dir.clone(),
                    log_level: args.log_level.clone(),
                    forward_logs: false,
                })
                .await
                .context("cannot start the local cluster")?,
            )
        }
        None => None,
    };
    let mut options = args.connect.options();
    if let Some(cluster) = &local {
        options.seeds = cluster.client_addresses();
        options.connect.cluster_id = cluster.cluster_id().to_string();
    }
    let client = Client::connect(options.clone())
        .await
        .context("cannot reach the cluster")?;
    // Each producer and worker has its own client, as separate processes
    // would, so one connection does not serialize the whole load.
    let connect = || async {
        Client::connect(options.clone())
            .await
            .context("cannot reach the cluster")
    };
    wait_for_leader(&client).await?;
    if args.workload == Workload::Claim {
        fill(&client, &args).await?;
    }

    let measurements = Arc::new(Measurements::new());
    let mut tasks = tokio::task::JoinSet::new();
    if args.workload != Workload::Claim {
        match args.rate {
            Some(rate) => {
                tasks.spawn(open_loop_producer(
                    connect().await?,
                    Arc::clone(&measurements),
                    rate,
                    bench_shape(&args),
                ));
            }
            None => {
                for producer in 0..args.producers {
                    tasks.spawn(closed_loop_producer(
                        connect().await?,
                        Arc::clone(&measurements),
                        bench_shape(&args),
                        producer as u64,
                    ));
                }
            }
        }
    }
    if args.workload != Workload::Enqueue {
        for _ in 0..args.workers {
            tasks.spawn(worker(
                connect().await?,
                Arc::clone(&measurements),
                bench_shape(&args),
            ));
        }
    }
    let mut killed_leader = None;
    let elapsed = run_for(&args, &measurements, async |elapsed| {
        if let (Some(after), Some(cluster), None) =
            (args.kill_leader_after_secs, &local, killed_leader)
            && elapsed >= Duration::from_secs(after)
        {
            let status = client.cluster_status().await?;
            if let Some(leader) = status.leader_id {
                cluster.kill(leader);
                killed_leader = Some(leader);
            }
        }
        Ok(())
    })
    .await?;
    // Let requests in flight finish, but do not wait for a stuck cluster.
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    let unanswered = measurements.in_flight.load(Ordering::Relaxed);
    if unanswered > 0 {
        measurements.record_error(
            format!("no answer within {DRAIN_TIMEOUT:?} of the end of the run"),
            unanswered,
        );
    }

    let memory = match &local {
        Some(cluster) => cluster.resident_bytes(),
        None => Vec::new(),
    };
    let cpu = match &local {
        Some(cluster) => cluster.cpu_seconds(),
        None => Vec::new(),
    };
    report(&args, &measurements, elapsed, killed_leader, &memory, &cpu);
    if let Some(cluster) = local {
        cluster.stop().await;
    }
    Ok(())
}

/// Shows progress until the run's duration has passed, calling `tick` with
/// the time elapsed every 250 ms, then tells the load to stop. Returns the
/// length of the run.
async fn run_for(
    args: &BenchArgs,
    measurements: &Measurements,
    mut tick: impl AsyncFnMut(Duration) -> anyhow::Result<()>,
) -> anyhow::Result<Duration> {
    let progress = (!args.quiet && !args.connect.json).then(|| {
        let bar = ProgressBar::new(args.duration_secs);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar
    });
    let run_started = Instant::now();
    let deadline = run_started + Duration::from_secs(args.duration_secs);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let elapsed = run_started.elapsed();
        tick(elapsed).await?;
        if let Some(bar) = &progress {
            bar.set_position(elapsed.as_secs());
            let seconds = elapsed.as_secs_f64().max(0.001);
            bar.set_message(format!(
                "enqueued {:.0}/s  acked {:.0}/s  errors {}",
                measurements.enqueued.load(Ordering::Relaxed) as f64 / seconds,
                measurements.acked.load(Ordering::Relaxed) as f64 / seconds,
                measurements.errors.load(Ordering::Relaxed)
            ));
        }
    }
    measurements.stop.store(true, Ordering::Relaxed);
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(run_started.elapsed())
}

/// `raftq bench floor`: runs [`floor`] on its own threads for the run's
/// duration and reports it like the other workloads.
async fn run_floor(args: &BenchArgs) -> anyhow::Result<()> {
    let rate = args.rate.context("the floor workload needs --rate")?;
    let replicas = args.local.unwrap_or(3);
    anyhow::ensure!((1..=9).contains(&replicas), "--local takes 1 to 9 nodes");
    anyhow::ensure!(
        args.kill_leader_after_secs.is_none(),
        "the floor workload has no leader to kill"
    );
    let measurements = Arc::new(Measurements::new());
    let spec = floor::Spec {
        replicas: replicas as usize,
        requests_per_second: rate as f64 / args.batch_size as f64,
        payload_bytes: args.batch_size * args.payload_bytes,
        jobs_per_request: args.batch_size as u64,
    };
    let (ready, started) = tokio::sync::oneshot::channel();
    let floor = tokio::task::spawn_blocking({
        let measurements = Arc::clone(&measurements);
        let data_dir = args.data_dir.clone();
        move || {
            floor::run(&spec, data_dir.as_deref(), &measurements, || {
                let _ = ready.send(());
            })
        }
    });
    // The run's clock starts once the replicas' files are written.
    if started.await.is_err() {
        floor.await.context("the floor panicked")??;
        anyhow::bail!("the floor stopped before it started");
    }
    let elapsed = run_for(args, &measurements, async |_| Ok(())).await;
    let outcome = floor.await.context("the floor panicked")?;
    let elapsed = elapsed?;
    outcome?;
    report(args, &measurements, elapsed, None, &[], &[]);
    Ok(())
}

/// When each request of an open-loop run is due: one every `interval` from
/// `start`.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    start: Instant,
    interval: Duration,
}

impl Schedule {
    /// Starts now.
    fn new(requests_per_second: f64) -> Schedule {
        Schedule {
            start: Instant::now(),
            interval: Duration::from_secs_f64(1.0 / requests_per_second.max(1e-3)),
        }
    }

    fn due(&self, sequence: u64) -> Instant {
        self.start + self.interval.mul_f64(sequence as f64)
    }

    /// How many requests are due at or before `now`.
    fn due_by(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start);
        (elapsed.as_secs_f64() / self.interval.as_secs_f64()) as u64 + 1
    }

    /// Sleeps with the operating system's timer until request `sequence` is
    /// due (not at all if it is late) and returns when it was due.
    fn wait(&self, sequence: u64) -> Instant {
        let due = self.due(sequence);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        due
    }
}

/// Waits until the cluster has a leader, so the measured run does not
/// include the first election.
async fn wait_for_leader(client: &Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if client.cluster_status().await?.leader_id.is_some() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no leader was elected within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the producer and worker tasks need to know of the arguments.
#[derive(Debug, Clone)]
struct Shape {
    queue: String,
    payload_bytes: usize,
    batch_size: usize,
    claim_batch: u32,
}

fn bench_shape(args: &BenchArgs) -> Shape {
    Shape {
        queue: args.queue.clone(),
        payload_bytes: args.payload_bytes,
        batch_size: args.batch_size,
        claim_batch: args.claim_batch,
    }
}

async fn fill(client: &Client, args: &BenchArgs) -> anyhow::Result<()> {
    let filled = Arc::new(AtomicU64::new(0));
    let per_producer = args.jobs.div_ceil(args.producers as u64);
    let mut tasks = tokio::task::JoinSet::new();
    for producer in 0..args.producers as u64 {
        let client = client.clone();
        let shape = bench_shape(args);
        let filled = Arc::clone(&filled);
        tasks.spawn(async move {
            let mut done = 0;
            while done < per_producer {
                let size = (per_producer - done).min(shape.batch_size as u64) as usize;
                let jobs = batch(
                    &shape.queue,
                    size,
                    shape.payload_bytes,
                    producer << 40 | done,
                );
                client.enqueue_batch(jobs).await?;
                done += size as u64;
                filled.fetch_add(size as u64, Ordering::Relaxed);
            }
            Ok::<_, ClientError>(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result
            .context("a filling task failed")?
            .context("cannot fill the queue")?;
    }
    if !args.connect.json {
        eprintln!(
            "filled {} with {} jobs",
            args.queue,
            filled.load(Ordering::Relaxed)
        );
    }
    Ok(())
}

async fn closed_loop_producer(
    client: Client,
    measurements: Arc<Measurements>,
    shape: Shape,
    producer: u64,
) {
    let mut sent: u64 = 0;
    while !measurements.stopped() {
        let jobs = batch(
            &shape.queue,
            shape.batch_size,
            shape.payload_bytes,
            producer << 40 | sent,
        );
        let started = Instant::now();
        measurements.record_sent();
        let outcome = client.enqueue_batch(jobs).await;
        measurements.record_enqueue_outcome(outcome, started.elapsed());
        sent += shape.batch_size as u64;
    }
}

/// How long a run waits for answers to the requests in flight when it ends;
/// a request still unanswered then counts as an error.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends batches on a fixed schedule, each in its own task, with at most
/// this many in flight.
const OPEN_LOOP_INFLIGHT_MAX: usize = 10_000;

/// Keeps the open-loop schedule on a thread of its own, sleeping with the
/// operating system's timer. Tokio's timer counts whole milliseconds: a
/// request due 0.1 ms into one would leave at the next boundary or later,
/// and that wait, the load generator's and not the cluster's, would count
/// in its latency, which is measured from when it was due.
async fn open_loop_producer(
    client: Client,
    measurements: Arc<Measurements>,
    rate: u64,
    shape: Shape,
) {
    let runtime = tokio::runtime::Handle::current();
    let schedule = tokio::task::spawn_blocking(move || {
        let slots = Arc::new(Semaphore::new(OPEN_LOOP_INFLIGHT_MAX));
        let schedule = Schedule::new(rate.max(1) as f64 / shape.batch_size as f64);
        let mut sequence: u64 = 0;
        while !measurements.stopped() {
            let due = schedule.wait(sequence);
            // Waits for a free slot, but not past the end of the run.
            let permit = loop {
                let free = tokio::time::timeout(
                    Duration::from_millis(100),
                    Arc::clone(&slots).acquire_owned(),
                );
                match runtime.block_on(free) {
                    Ok(permit) => break Some(permit.expect("the slots are never closed")),
                    Err(_elapsed) if measurements.stopped() => break None,
                    Err(_elapsed) => {}
                }
            };
            let Some(permit) = permit else {
                // Requests that fell due while the in-flight limit held the
                // schedule back were never sent; they count as unanswered.
                // It stopped while waiting, so request `sequence` is among them.
                let never_sent = schedule.due_by(Instant::now()).saturating_sub(sequence);
                measurements.record_error(
                    format!("due but never sent: {OPEN_LOOP_INFLIGHT_MAX} requests were in flight"),
                    never_sent,
                );
                break;
            };
            let client = client.clone();
            let measurements = Arc::clone(&measurements);
            let jobs = batch(
                &shape.queue,
                shape.batch_size,
                shape.payload_bytes,
                sequence * shape.batch_size as u64,
            );
            measurements.record_sent();
            runtime.spawn(async move {
                let outcome = client.enqueue_batch(jobs).await;
                // Latency from when the request was due, not from when it
                // went out: corrected for coordinated omission.
                measurements.record_enqueue_outcome(outcome, due.elapsed());
                drop(permit);
            });
            sequence += 1;
        }
        // The answers still to come count too; an unanswered request is
        // counted once this wait gives up.
        let _ = runtime.block_on(tokio::time::timeout(
            DRAIN_TIMEOUT,
            slots.acquire_many(OPEN_LOOP_INFLIGHT_MAX as u32),
        ));
    });
    let _ = schedule.await;
}

async fn worker(client: Client, measurements: Arc<Measurements>, shape: Shape) {
    while !measurements.stopped() {
        let claimed = match client
            .claim(&[shape.queue.as_str()], shape.claim_batch, 60_000, 1_000)
            .await
        {
            Ok(claimed) => claimed,
            Err(error) => {
                measurements.record_error(error, 1);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if claimed.is_empty() {
            continue;
        }
        let jobs: Vec<_> = claimed.iter().map(|job| (job.id, job.token)).collect();
        let started = Instant::now();
        match client.ack_batch(&jobs).await {
            Ok(results) => {
                let acked = results.iter().filter(|result| result.is_ok()).count() as u64;
                measurements.acked.fetch_add(acked, Ordering::Relaxed);
                record(&measurements.ack_latency_us, started.elapsed());
                if let Some(Err(error)) = results.iter().find(|result| result.is_err()) {
                    measurements.record_error(error, results.len() as u64 - acked);
                }
            }
            Err(error) => measurements.record_error(error, 1),
        }
    }
}

fn percentiles(histogram: &Histogram<u64>) -> serde_json::Value {
    let ms = |micros: u64| micros as f64 / 1000.0;
    json!({
        "samples": histogram.len(),
        "p50_ms": ms(histogram.value_at_quantile(0.50)),
        "p90_ms": ms(histogram.value_at_quantile(0.90)),
        "p99_ms": ms(histogram.value_at_quantile(0.99)),
        "p999_ms": ms(histogram.value_at_quantile(0.999)),
        "max_ms": ms(histogram.max()),
    })
}

fn report(
    args: &BenchArgs,
    measurements: &Measurements,
    elapsed: Duration,
    killed_leader: Option<u64>,
    memory: &[(u64, u64)],
    cpu: &[(u64, f64)],
) {
    let seconds = elapsed.as_secs_f64();
    let enqueued = measurements.enqueued.load(Ordering::Relaxed);
    let acked = measurements.acked.load(Ordering::Relaxed);
    let enqueue_latency = measurements
        .enqueue_latency_us
        .lock()
        .expect("histogram lock")
        .clone();
    let ack_latency = measurements
        .ack_latency_us
        .lock()
        .expect("histogram lock")
        .clone();
    let summary = json!({
        "workload": format!("{:?}", args.workload).to_lowercase(),
        "duration_s": seconds,
        "producers": if args.rate.is_some() { 0 } else { args.producers },
        "workers": args.workers,
        "payload_bytes": args.payload_bytes,
        "batch_size": args.batch_size,
        "claim_batch": args.claim_batch,
        "offered_rate_jobs_per_s": args.rate,
        "enqueued_jobs": enqueued,
        "enqueued_jobs_per_s": enqueued as f64 / seconds,
        "acked_jobs": acked,
        "acked_jobs_per_s": acked as f64 / seconds,
        "errors": measurements.errors.load(Ordering::Relaxed),
        "enqueue_request_latency": percentiles(&enqueue_latency),
        "ack_request_latency": percentiles(&ack_latency),
        "longest_enqueue_gap_ms": measurements.longest_gap_ms.load(Ordering::Relaxed),
        "killed_leader": killed_leader,
        "node_resident_bytes": memory.iter().map(|(id, bytes)| json!({"node": id, "bytes": bytes})).collect::<Vec<_>>(),
        "node_cpu_seconds": cpu.iter().map(|(id, seconds)| json!({"node": id, "seconds": seconds})).collect::<Vec<_>>(),
        "error_kinds": *measurements.error_kinds.lock().expect("errors lock"),
    });
    if args.connect.json {
        println!("{summary}");
        return;
    }
    println!(
        "workload        {}",
        summary["workload"].as_str().unwrap_or("-")
    );
    println!("duration        {seconds:.1} s");
    println!(
        "enqueued        {enqueued} jobs ({:.0} jobs/s)",
        enqueued as f64 / seconds
    );
    if matches!(args.workload, Workload::E2e | Workload::Claim) {
        println!(
            "acked           {acked} jobs ({:.0} jobs/s)",
            acked as f64 / seconds
        );
    }
    println!(
        "errors          {}",
        measurements.errors.load(Ordering::Relaxed)
    );
    for (kind, count) in measurements.error_kinds.lock().expect("errors lock").iter() {
        println!("  {count:>8} × {kind}");
    }
    let row = |name: &str, histogram: &Histogram<u64>| {
        let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
        println!(
            "{name:<15} p50 {:>8.2} ms  p90 {:>8.2} ms  p99 {:>8.2} ms  p99.9 {:>8.2} ms  max {:>8.2} ms  ({} samples)",
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(0.999),
            histogram.max() as f64 / 1000.0,
            histogram.len()
        );
    };
    if !enqueue_latency.is_empty() {
        row("enqueue request", &enqueue_latency);
    }
    if !ack_latency.is_empty() {
        row("ack request", &ack_latency);
    }
    if let Some(leader) = killed_leader {
        println!(
            "killed leader   node {leader}; longest gap with no successful enqueue {} ms",
            measurements.longest_gap_ms.load(Ordering::Relaxed)
        );
    }
    for (node, bytes) in memory {
        let cpu_seconds = cpu
            .iter()
            .find(|(id, _)| id == node)
            .map(|(_, seconds)| *seconds)
            .unwrap_or(0.0);
        println!(
            "node {node}          rss {:.1} MiB, cpu {cpu_seconds:.1} s since start",
            *bytes as f64 / (1024.0 * 1024.0)
        );
    }
}
