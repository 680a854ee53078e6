//! The nemesis suite: real `raftq server` processes on loopback, their peer
//! traffic through a partitioning proxy, a workload of producers and workers
//! recording every call, faults (kill -9, SIGSTOP, partitions, leadership
//! transfer, membership change), then a healed drain and a check of the
//! history (see `nemesis/checker.rs` for what is checked).
//!
//! `RAFTQ_NEMESIS_SECS` sets how long faults are injected in each test
//! (default 40), `RAFTQ_NEMESIS_SEED` the schedule's seed (default random,
//! printed). The history and the node logs stay in the printed directory
//! when a run fails, or always with `RAFTQ_NEMESIS_KEEP=1`.

#[path = "nemesis/checker.rs"]
mod checker;
#[path = "nemesis/cluster.rs"]
mod cluster;
#[path = "nemesis/faults.rs"]
mod faults;
#[path = "nemesis/history.rs"]
mod history;
#[path = "support/ports.rs"]
mod ports;
#[path = "nemesis/proxy.rs"]
mod proxy;
#[path = "nemesis/workload.rs"]
mod workload;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio_util::sync::CancellationToken;

use cluster::Cluster;
use faults::Nemesis;
use history::{Event, Recorder};

const DEFAULT_FAULT_SECS: u64 = 40;
const PRODUCERS: usize = 3;
const WORKERS: usize = 4;
/// How long the drain may go without fewer jobs left before it fails.
const DRAIN_TIMEOUT_SECS: u64 = 120;

/// The nemesis tests run one at a time: two clusters at once on a small
/// machine starve each other's timers.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|value| {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {value:?}"))
    })
}

async fn run_nemesis(name: &str, size: u64, membership_changes: bool) {
    let fault_secs = env_u64("RAFTQ_NEMESIS_SECS").unwrap_or(DEFAULT_FAULT_SECS);
    let seed = env_u64("RAFTQ_NEMESIS_SEED").unwrap_or_else(rand::random);
    let keep = std::env::var("RAFTQ_NEMESIS_KEEP").is_ok_and(|value| value == "1");
    let dir = tempfile::Builder::new()
        .prefix(&format!("raftq-nemesis-{name}-"))
        .tempdir()
        .unwrap();
    println!(
        "nemesis {name}: {size} nodes, {fault_secs} s of faults, seed {seed} \
         (replay the schedule with RAFTQ_NEMESIS_SEED={seed}), files in {}",
        dir.path().display()
    );
    let recorder = Arc::new(Recorder::create(&dir.path().join("history.jsonl")));
    let mut cluster = Cluster::start(dir.path(), size, 500).await;
    assert!(
        cluster
            .wait_for_leader(Duration::from_secs(30))
            .await
            .is_some(),
        "no leader elected at start; logs in {}",
        dir.path().display()
    );

    let stop_producers = CancellationToken::new();
    let stop_workers = CancellationToken::new();
    let careful = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for n in 0..PRODUCERS {
        producers.push(tokio::spawn(workload::produce(
            format!("p{n}"),
            cluster.client().await,
            Arc::clone(&cluster.seeds),
            Arc::clone(&recorder),
            n % 2 == 0,
            seed.wrapping_add(n as u64),
            stop_producers.clone(),
        )));
    }
    let mut workers = Vec::new();
    for n in 0..WORKERS {
        workers.push(tokio::spawn(workload::work(
            format!("w{n}"),
            cluster.client().await,
            Arc::clone(&cluster.seeds),
            Arc::clone(&recorder),
            seed.wrapping_add(100 + n as u64),
            Arc::clone(&careful),
            stop_workers.clone(),
        )));
    }

    recorder.record(Event::Phase {
        name: "faults".to_string(),
    });
    let mut failure: Option<String> = None;
    {
        let mut nemesis = Nemesis {
            cluster: &mut cluster,
            recorder: &recorder,
            rng: StdRng::seed_from_u64(seed),
            next_id: size + 1,
            membership_changes,
        };
        let end = tokio::time::Instant::now() + Duration::from_secs(fault_secs);
        while tokio::time::Instant::now() < end {
            nemesis.round().await;
            if let Err(crash) = nemesis.cluster.check_alive() {
                failure = Some(crash);
                break;
            }
        }
        nemesis.heal().await;
    }

    recorder.record(Event::Phase {
        name: "drain".to_string(),
    });
    stop_producers.cancel();
    for producer in producers {
        producer.await.unwrap();
    }
    careful.store(true, Ordering::SeqCst);
    if failure.is_none() {
        failure = drain(&cluster).await.err();
    }
    stop_workers.cancel();
    for worker in workers {
        worker.await.unwrap();
    }
    recorder.record(Event::Phase {
        name: "end".to_string(),
    });
    recorder.flush();
    if failure.is_none() {
        failure = cluster.check_alive().err();
    }
    cluster.kill_all();

    let history = history::read(recorder.path());
    let (counts, anomalies) = checker::check(&history);
    println!("nemesis {name} (seed {seed}):\n{counts}");
    for anomaly in anomalies.iter().take(30) {
        println!("  {anomaly}");
    }
    if failure.is_some() || !counts.valid() || keep {
        let path = dir.keep();
        println!("history and logs kept in {}", path.display());
    }
    if let Some(failure) = failure {
        panic!("nemesis {name} (seed {seed}) failed: {failure}");
    }
    assert!(
        counts.valid(),
        "nemesis {name} (seed {seed}) found anomalies: {counts}"
    );
    assert!(
        counts.enqueued > 0 && counts.acked > 0,
        "no work was done: {counts}"
    );
}

/// Waits until the healed cluster has handed out and acked every job,
/// requeueing any dead ones.
async fn drain(cluster: &Cluster) -> Result<(), String> {
    if cluster
        .wait_for_leader(Duration::from_secs(60))
        .await
        .is_none()
    {
        return Err("no leader after healing".to_string());
    }
    let client = cluster.client().await;
    // The drain may take long after a long run, but it must keep going:
    // the deadline moves on whenever fewer jobs are left than before.
    let mut deadline = tokio::time::Instant::now() + Duration::from_secs(DRAIN_TIMEOUT_SECS);
    let mut fewest_left = u64::MAX;
    let mut empty_in_a_row = 0;
    while empty_in_a_row < 2 {
        if tokio::time::Instant::now() > deadline {
            let stats = client.stats(Some(workload::QUEUE), false).await;
            return Err(format!("the queue did not drain: {stats:?}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        match workload::jobs_left(&client).await {
            Ok(0) => empty_in_a_row += 1,
            Ok(left) => {
                empty_in_a_row = 0;
                if left < fewest_left {
                    fewest_left = left;
                    deadline =
                        tokio::time::Instant::now() + Duration::from_secs(DRAIN_TIMEOUT_SECS);
                }
                let _ = client
                    .requeue_dead(raftq::queue::DeadSelection::Queue(
                        workload::QUEUE.to_string(),
                    ))
                    .await;
            }
            Err(_) => empty_in_a_row = 0,
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_under_faults() {
    let _guard = ONE_AT_A_TIME.lock().await;
    run_nemesis("three", 3, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_under_faults() {
    let _guard = ONE_AT_A_TIME.lock().await;
    run_nemesis("five", 5, true).await;
}

/// A member restarted after a node joined, before any snapshot recorded the
/// new node's address, still knows where the new node lives: the address is
/// in the log's configuration entry, and the restarted member answers the
/// new node's messages through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_knows_a_node_added_before_its_restart() {
    let _guard = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::Builder::new()
        .prefix("raftq-nemesis-rejoin-")
        .tempdir()
        .unwrap();
    // No snapshot during the test: addresses can only come from the log.
    let mut cluster = Cluster::start(dir.path(), 3, 1_000_000).await;
    assert!(
        cluster
            .wait_for_leader(Duration::from_secs(30))
            .await
            .is_some()
    );
    let address = cluster.prepare_joiner(4).await;
    cluster.spawn(4);
    let client = cluster.client().await;
    client.add_learner(4, &address).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Err(error) = client.promote(4).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 4 was never promoted: {error}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.set_members(vec![1, 2, 3, 4]);
    for id in 1..=3 {
        cluster.kill(id);
        cluster.spawn(id);
    }
    for id in 1..=3 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let known = cluster
                .status(id)
                .await
                .and_then(|status| status.peer_addresses.get(&4).cloned());
            if known.as_deref() == Some(address.as_str()) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "restarted node {id} does not know node 4's address: {known:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // With node 1 stopped, the three others are exactly a quorum of four
    // voters, so every write needs node 4 and the restarted nodes 2 and 3.
    cluster.kill(1);
    cluster.set_members(vec![2, 3, 4]);
    let client = cluster.client().await;
    let enqueued = tokio::time::timeout(
        Duration::from_secs(60),
        client.enqueue(workload::QUEUE, "after the restart"),
    )
    .await;
    assert!(
        matches!(enqueued, Ok(Ok(_))),
        "no write after the restart: {enqueued:?}"
    );
}
