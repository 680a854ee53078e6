//! Disk faults on one node of a three-server cluster: its file system is a
//! `FaultVfs` that fails every sync, or runs out of space. The node must
//! stop acknowledging (it stops, so it cannot lead), report the error, and
//! keep its log intact; the other two go on serving; once the disk works
//! again and the node restarts, it recovers from its own log, catches up,
//! and no acknowledged job is lost.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::servers::ServerCluster;
use raftq::client::Client;
use raftq::queue::{JobId, NewJob};
use raftq::raft::Role;
use raftq_storage::{FaultVfs, Vfs};

const FAULTY: u64 = 3;

async fn start(vfs: &FaultVfs) -> ServerCluster {
    let disks: BTreeMap<u64, Arc<dyn Vfs>> = BTreeMap::from([(FAULTY, Arc::new(vfs.clone()) as _)]);
    ServerCluster::start_with(3, |_| {}, disks).await
}

/// Makes node `id` the leader.
async fn lead_with(cluster: &ServerCluster, client: &Client, id: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while cluster.leader().await != id {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {id} never becomes leader"
        );
        let _ = client.transfer_leader(id).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Enqueues `count` jobs of `payload_bytes` each in batches of `batch`;
/// returns the ids the cluster acknowledged.
async fn enqueue(client: &Client, count: usize, batch: usize, payload_bytes: usize) -> Vec<JobId> {
    let mut acknowledged = Vec::new();
    for start in (0..count).step_by(batch) {
        let jobs = (start..(start + batch).min(count))
            .map(|number| {
                let mut payload = format!("job {number} ").into_bytes();
                payload.resize(payload_bytes.max(payload.len()), b'.');
                NewJob::new("disk", payload)
            })
            .collect();
        // A batch in flight when the faulty leader stops may fail with an
        // unknown outcome; only what the cluster acknowledged counts.
        if let Ok(results) = client.enqueue_batch(jobs).await {
            acknowledged.extend(results.into_iter().flatten().map(|enqueued| enqueued.id));
        }
    }
    acknowledged
}

/// Waits for the faulty node to stop and returns the error it reports.
async fn stopped_with_error(cluster: &ServerCluster) -> String {
    let node = &cluster.servers[&FAULTY].running.node;
    let mut status = node.watch_status();
    let stopped = tokio::time::timeout(
        Duration::from_secs(60),
        status.wait_for(|status| status.failed.is_some()),
    )
    .await
    .expect("the node with the failing disk stops")
    .expect("the node publishes its status until it stops")
    .clone();
    assert_eq!(stopped.role, Role::Follower);
    assert_eq!(stopped.leader, None);
    let error = stopped.failed.unwrap();
    assert_ne!(error, "shut down", "the node reports why it stopped");
    error
}

/// The two healthy nodes elect a leader among themselves and serve.
async fn others_serve(cluster: &ServerCluster, client: &Client) -> Vec<JobId> {
    let leader = cluster.leader().await;
    assert_ne!(leader, FAULTY);
    let ids = enqueue(client, 20, 5, 16).await;
    assert_eq!(ids.len(), 20, "the healthy majority acknowledges every job");
    let id = client
        .enqueue("healthy", "claimed and acked")
        .await
        .unwrap();
    let claimed = client.claim(&["healthy"], 1, 10_000, 0).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, id);
    client.ack(id, claimed[0].token).await.unwrap();
    ids
}

/// Restarts the faulty node on its recovered disk and checks that it
/// catches up and holds every acknowledged job, and that every one of them
/// is delivered.
async fn restart_and_check(
    cluster: &mut ServerCluster,
    vfs: &FaultVfs,
    client: &Client,
    acknowledged: &[JobId],
) {
    // The process died: what it had not synced is gone.
    cluster.stop_server(FAULTY).await;
    vfs.crash();
    cluster.start_server(FAULTY).await;
    let leader = cluster.leader().await;
    // Something committed after the restart, so the target is fixed.
    let more = enqueue(client, 1, 1, 16).await;
    assert_eq!(more.len(), 1);
    let commit = cluster.servers[&leader].running.node.status().commit;
    let restarted = cluster.servers[&FAULTY].running.node.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while restarted.status().applied < commit {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restarted node never catches up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in acknowledged.iter().chain(&more) {
        assert!(
            restarted.read_state(|state| state.job(*id)).is_some(),
            "acknowledged job {id:?} missing on the restarted node"
        );
    }
    // Every acknowledged job is delivered.
    let mut delivered = 0;
    loop {
        let claimed = client.claim(&["disk"], 1000, 60_000, 0).await.unwrap();
        if claimed.is_empty() {
            break;
        }
        for job in claimed {
            client.ack(job.id, job.token).await.unwrap();
            delivered += 1;
        }
    }
    assert!(
        delivered >= acknowledged.len() + more.len(),
        "{delivered} delivered of {} acknowledged",
        acknowledged.len() + more.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_syncs_fail_stops_and_recovers_after_a_restart() {
    let vfs = FaultVfs::new(1);
    let mut cluster = start(&vfs).await;
    let client = cluster.client().await;
    let mut acknowledged = enqueue(&client, 30, 10, 64).await;
    assert_eq!(acknowledged.len(), 30);
    lead_with(&cluster, &client, FAULTY).await;

    // Every sync fails from now on, as on a dying disk.
    let failing = tokio_util::sync::CancellationToken::new();
    let rearm = {
        let vfs = vfs.clone();
        let failing = failing.clone();
        tokio::spawn(async move {
            while !failing.is_cancelled() {
                vfs.fail_next_sync();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            vfs.cancel_sync_failure();
        })
    };
    acknowledged.extend(enqueue(&client, 10, 1, 64).await);
    let error = stopped_with_error(&cluster).await;
    assert!(error.contains("sync"), "{error}");
    acknowledged.extend(others_serve(&cluster, &client).await);

    // The disk works again.
    failing.cancel();
    rearm.await.unwrap();
    restart_and_check(&mut cluster, &vfs, &client, &acknowledged).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_out_of_disk_space_stops_and_recovers_after_a_restart() {
    let vfs = FaultVfs::new(2);
    let mut cluster = start(&vfs).await;
    let client = cluster.client().await;
    let mut acknowledged = enqueue(&client, 30, 10, 64).await;
    assert_eq!(acknowledged.len(), 30);
    lead_with(&cluster, &client, FAULTY).await;

    // The disk is full: no file can be created or grown. The log goes on in
    // the space its segments already own, then cannot roll over.
    vfs.set_capacity_bytes(Some(vfs.used_bytes()));
    let segment_bytes = cluster.config(FAULTY).segment_size_bytes as usize;
    let payload_bytes = 16 * 1024;
    let jobs = 2 * segment_bytes / payload_bytes + 100;
    acknowledged.extend(enqueue(&client, jobs, 50, payload_bytes).await);
    let error = stopped_with_error(&cluster).await;
    assert!(error.contains("no space left"), "{error}");
    acknowledged.extend(others_serve(&cluster, &client).await);

    // Space returns.
    vfs.set_capacity_bytes(None);
    restart_and_check(&mut cluster, &vfs, &client, &acknowledged).await;
    cluster.shutdown().await;
}
