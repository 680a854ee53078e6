//! Throughput of the consensus core: a 3-node cluster in one process with
//! in-memory storage and instant delivery. Each iteration proposes a batch of
//! entries on the leader and drives the cluster until the leader has applied
//! them; criterion reports committed entries per second.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use raftq::raft::{Config, MemStore, Message, NodeId, RawNode, Role};

/// Payload bytes of each proposed entry.
const PAYLOAD_BYTES: usize = 64;
/// Applied entries after which each node snapshots and compacts, so the
/// in-memory logs stay small over millions of entries.
const COMPACTION_INTERVAL_ENTRIES: u64 = 100_000;
const VOTERS: [NodeId; 3] = [1, 2, 3];

struct BenchNode {
    raw: RawNode<MemStore>,
    store: MemStore,
    applied: u64,
}

struct BenchCluster {
    nodes: Vec<BenchNode>,
    in_flight: VecDeque<Message>,
}

impl BenchCluster {
    fn new() -> Self {
        let nodes = VOTERS
            .iter()
            .map(|id| {
                let store = MemStore::new_bootstrapped(VOTERS);
                let raw = RawNode::new(Config::new(*id), store.clone()).expect("valid config");
                BenchNode {
                    raw,
                    store,
                    applied: 0,
                }
            })
            .collect();
        let mut cluster = BenchCluster {
            nodes,
            in_flight: VecDeque::new(),
        };
        while cluster.nodes[0].raw.status().role != Role::Leader {
            cluster.nodes[0].raw.tick();
            cluster.drive();
        }
        cluster
    }

    /// Persists, sends and applies until no node has anything left to do.
    fn drive(&mut self) {
        loop {
            let mut progressed = false;
            for node in &mut self.nodes {
                while node.raw.has_ready() {
                    progressed = true;
                    let ready = node.raw.ready().expect("memory store never fails");
                    self.in_flight.extend(ready.messages);
                    if let Some(snapshot) = ready.snapshot {
                        node.store.apply_snapshot(snapshot);
                    }
                    node.store.append(&ready.entries);
                    if let Some(hard_state) = ready.hard_state {
                        node.store.set_hard_state(hard_state);
                    }
                    node.raw.on_persisted(ready.number);
                    self.in_flight.extend(ready.persisted_messages);
                    if let Some(last) = ready.committed_entries.last() {
                        node.applied = last.index;
                        node.raw.on_applied(last.index);
                    }
                }
            }
            while let Some(message) = self.in_flight.pop_front() {
                progressed = true;
                let to = (message.to - 1) as usize;
                self.nodes[to]
                    .raw
                    .step(message)
                    .expect("memory store never fails");
            }
            if !progressed {
                return;
            }
        }
    }

    fn compact(&mut self) {
        for node in &mut self.nodes {
            let snapshot_index = node.store.snapshot_meta().index;
            if node.applied < snapshot_index + COMPACTION_INTERVAL_ENTRIES {
                continue;
            }
            let meta = node.raw.snapshot_meta(node.applied).expect("applied index");
            node.store
                .create_snapshot(meta, Bytes::new())
                .expect("index in the log");
            node.store.compact(node.applied);
            node.raw.compact(node.applied);
        }
    }

    /// Proposes `batch` entries on the leader and waits until it applied them.
    fn commit_batch(&mut self, batch: u64, payload: &Bytes) {
        let mut last_index = 0;
        for _ in 0..batch {
            let (index, _) = self.nodes[0]
                .raw
                .propose(payload.clone())
                .expect("the leader accepts");
            last_index = index;
        }
        self.drive();
        assert!(
            self.nodes[0].applied >= last_index,
            "the batch was not committed"
        );
        self.compact();
    }
}

fn committed_entries_per_second(criterion: &mut Criterion) {
    let payload = Bytes::from(vec![7u8; PAYLOAD_BYTES]);
    let mut group = criterion.benchmark_group("raft_core_3_nodes");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for batch in [100u64, 1000, 10_000] {
        group.throughput(Throughput::Elements(batch));
        let mut cluster = BenchCluster::new();
        group.bench_function(format!("commit_batch_{batch}"), |bencher| {
            bencher.iter(|| cluster.commit_batch(batch, &payload));
        });
    }
    group.finish();
}

criterion_group!(benches, committed_entries_per_second);
criterion_main!(benches);
