//! Helpers shared by the integration tests: a small state machine and an
//! in-process cluster on loopback with real sockets and real files.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use raftq::node::clock::SystemClock;
use raftq::node::entropy::OsEntropy;
use raftq::node::net::TokioNetwork;
use raftq::node::{Node, NodeError, NodeOptions, Seams, StateMachine};
use raftq::raft::Role;
use raftq_storage::StdVfs;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A replicated list of numbers: appending returns the position.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberLog {
    pub values: Vec<u64>,
    pub last_now_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NumberCommand {
    Append(u64),
    Tick,
}

impl StateMachine for NumberLog {
    type Command = NumberCommand;
    type Outcome = usize;

    fn empty() -> Self {
        NumberLog::default()
    }

    fn apply(&mut self, now_ms: u64, command: &NumberCommand) -> usize {
        self.last_now_ms = self.last_now_ms.max(now_ms);
        match command {
            NumberCommand::Append(value) => {
                self.values.push(*value);
                self.values.len() - 1
            }
            NumberCommand::Tick => self.values.len(),
        }
    }

    fn time_advance_command() -> NumberCommand {
        NumberCommand::Tick
    }

    fn next_wakeup_ms(&self) -> Option<u64> {
        None
    }

    fn last_now_ms(&self) -> u64 {
        self.last_now_ms
    }

    type Frozen = Vec<u8>;

    fn freeze(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap()
    }

    fn encode(frozen: Vec<u8>) -> Vec<u8> {
        frozen
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        postcard::from_bytes(bytes).map_err(|error| error.to_string())
    }
}

#[path = "../support/ports.rs"]
mod ports;

/// `count` distinct free loopback ports (see `ports::free_port`).
pub fn free_ports(count: usize) -> Vec<u16> {
    (0..count).map(|_| ports::free_port()).collect()
}

pub struct TestNode {
    pub id: u64,
    pub node: Node<NumberLog>,
    pub task: JoinHandle<Result<(), String>>,
    pub shutdown: CancellationToken,
}

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub addresses: BTreeMap<u64, String>,
    pub nodes: BTreeMap<u64, TestNode>,
    pub snapshot_interval_entries: u64,
}

impl TestCluster {
    pub async fn start(size: u64, snapshot_interval_entries: u64) -> TestCluster {
        let ports = free_ports(size as usize);
        let addresses: BTreeMap<u64, String> = (1..=size)
            .zip(ports)
            .map(|(id, port)| (id, format!("127.0.0.1:{port}")))
            .collect();
        let mut cluster = TestCluster {
            dir: tempfile::tempdir().unwrap(),
            addresses,
            nodes: BTreeMap::new(),
            snapshot_interval_entries,
        };
        for id in 1..=size {
            cluster.start_node(id, false).await;
        }
        cluster
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    pub fn options(&self, id: u64, join: bool) -> NodeOptions {
        let address = self.addresses[&id].clone();
        NodeOptions {
            id,
            cluster_id: "test".to_string(),
            secret: Some(b"test-secret".to_vec()),
            peer_bind_address: address.clone(),
            peer_address: address,
            client_address: format!("client-{id}"),
            initial_cluster: self
                .addresses
                .iter()
                .filter(|(member, _)| !join || **member != id)
                .map(|(member, address)| (*member, address.clone()))
                .collect(),
            join,
            data_dir: self.data_dir(id),
            tick_ms: 10,
            heartbeat_ticks: 3,
            election_timeout_ticks: 20,
            snapshot_interval_entries: self.snapshot_interval_entries,
            segment_size_bytes: 16 << 20,
            inline_sync: false,
            seed: id,
        }
    }

    pub async fn start_node(&mut self, id: u64, join: bool) {
        let options = self.options(id, join);
        let shutdown = CancellationToken::new();
        let seams = Seams {
            network: Arc::new(TokioNetwork),
            clock: Arc::new(SystemClock),
            vfs: Arc::new(StdVfs::new()),
            entropy: Arc::new(OsEntropy),
        };
        // The port may still be held by a node that is shutting down.
        let mut attempt = 0;
        let (node, task) = loop {
            match Node::start(options.clone(), seams.clone(), shutdown.clone()).await {
                Ok(started) => break started,
                Err(raftq::node::StartError::Bind { .. }) if attempt < 50 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("node {id} does not start: {error}"),
            }
        };
        self.nodes.insert(
            id,
            TestNode {
                id,
                node,
                task,
                shutdown,
            },
        );
    }

    /// Stops a node as a crash would, from the cluster's point of view: its
    /// tasks end and its sockets close. Its data directory stays.
    pub async fn stop_node(&mut self, id: u64) {
        let node = self.nodes.remove(&id).expect("node is running");
        node.shutdown.cancel();
        let _ = node.task.await;
        // Let the listener and connections close.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    pub async fn leader(&self) -> u64 {
        self.wait_for_leader(Duration::from_secs(20)).await
    }

    pub async fn wait_for_leader(&self, within: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let leaders: Vec<u64> = self
                .nodes
                .values()
                .filter(|node| node.node.status().role == Role::Leader)
                .map(|node| node.id)
                .collect();
            if let [leader] = leaders[..] {
                return leader;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no single leader elected in time"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Appends through whichever node leads, retrying while leadership
    /// moves. Returns the position once the append is applied.
    pub async fn append(&self, value: u64) -> usize {
        for _ in 0..200 {
            let leader = self.leader().await;
            match self.nodes[&leader]
                .node
                .propose(&NumberCommand::Append(value))
                .await
            {
                Ok(position) => return position,
                Err(
                    NodeError::NotLeader { .. } | NodeError::Dropped(_) | NodeError::ShuttingDown,
                ) => {}
                // An unknown outcome would need deduplication to retry; the
                // tests that provoke it handle it themselves.
                Err(error) => panic!("append {value} failed: {error}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("append {value} never succeeded");
    }

    /// Waits until every running node has applied `count` values and returns
    /// the values of one of them, after checking they are all equal.
    pub async fn converged(&self, count: usize) -> Vec<u64> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let logs: Vec<Vec<u64>> = self
                .nodes
                .values()
                .map(|node| node.node.read_state(|state| state.values.clone()))
                .collect();
            if logs.iter().all(|log| log.len() >= count) {
                for log in &logs {
                    assert_eq!(log, &logs[0], "nodes applied different sequences");
                }
                return logs[0].clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nodes did not converge: lengths {:?}",
                logs.iter().map(Vec::len).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn shutdown(mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop_node(id).await;
        }
    }
}
pub mod servers;
