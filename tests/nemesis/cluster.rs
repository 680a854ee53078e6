//! `raftq server` processes on loopback whose peer traffic runs through the
//! test's proxy (see `proxy.rs`).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftq::client::{Client, ClientOptions, ConnectSettings};
use raftq::protocol::client::ClusterStatus;

use super::proxy::Network;

/// Client addresses of the current members.
pub type Seeds = Arc<Mutex<Vec<String>>>;

pub const CLUSTER_ID: &str = "nemesis";
const SECRET: &str = "nemesis-cluster-secret";
pub const ELECTION_TIMEOUT_MS: u64 = 600;

pub struct Node {
    pub id: u64,
    pub client_address: String,
    pub peer_address: String,
    /// The `--cluster` flag this node starts with: its own real peer
    /// address, and the proxy of link `id → j` for each other node `j`.
    cluster_flag: String,
    join: bool,
    data_dir: PathBuf,
    child: Option<Child>,
    pub paused: bool,
}

pub struct Cluster {
    pub dir: PathBuf,
    pub nodes: BTreeMap<u64, Node>,
    pub network: Network,
    /// Members as the test last made them (ids of nodes not removed).
    pub members: Vec<u64>,
    /// The client addresses of `members`, shared with the workload so that
    /// its clients can find the cluster again after every node they were
    /// given has been replaced.
    pub seeds: Seeds,
    /// Where every member reaches a node added by a membership change.
    shared_addresses: BTreeMap<u64, String>,
    /// Applied entries between snapshots on every node.
    pub snapshot_interval_entries: u64,
}

/// The server executable: `RAFTQ_NEMESIS_BIN`, so that a long run can use a
/// copy that later builds do not replace, or the one cargo built.
fn server_binary() -> String {
    std::env::var("RAFTQ_NEMESIS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_raftq").to_string())
}

/// A free loopback address (see `ports::free_port`).
fn free_address() -> String {
    format!("127.0.0.1:{}", crate::ports::free_port())
}

pub fn connect_settings() -> ConnectSettings {
    let mut options = ClientOptions::new(["127.0.0.1:1"]);
    options.connect.cluster_id = CLUSTER_ID.to_string();
    options.connect.connect_timeout = Duration::from_millis(1_000);
    options.connect
}

/// Options of every client of the test: short deadlines, so that calls end
/// (with an unknown outcome if need be) while faults last.
pub fn client_options(seeds: Vec<String>) -> ClientOptions {
    let mut options = ClientOptions::new(seeds);
    options.connect = connect_settings();
    options.request_timeout = Duration::from_secs(2);
    options.retry_deadline = Duration::from_secs(4);
    options
}

impl Cluster {
    pub async fn start(dir: &Path, size: u64, snapshot_interval_entries: u64) -> Cluster {
        let network = Network::default();
        let mut nodes = BTreeMap::new();
        let ids: Vec<u64> = (1..=size).collect();
        let peers: BTreeMap<u64, String> = ids.iter().map(|&id| (id, free_address())).collect();
        for &id in &ids {
            let mut cluster = Vec::new();
            for &other in &ids {
                let address = if other == id {
                    peers[&id].clone()
                } else {
                    network.listen_link(id, other, peers[&other].clone()).await
                };
                cluster.push(format!("{other}={address}"));
            }
            nodes.insert(
                id,
                Node {
                    id,
                    client_address: free_address(),
                    peer_address: peers[&id].clone(),
                    cluster_flag: cluster.join(","),
                    join: false,
                    data_dir: dir.join(format!("node-{id}")),
                    child: None,
                    paused: false,
                },
            );
        }
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            nodes,
            network,
            members: Vec::new(),
            seeds: Seeds::default(),
            shared_addresses: BTreeMap::new(),
            snapshot_interval_entries,
        };
        cluster.set_members(ids.clone());
        for id in ids {
            cluster.spawn(id);
        }
        cluster
    }

    pub fn set_members(&mut self, members: Vec<u64>) {
        self.members = members;
        *self.seeds.lock().unwrap() = self.client_addresses();
    }

    pub fn spawn(&mut self, id: u64) {
        let log_path = self.dir.join(format!("node-{id}.log"));
        let snapshot_interval = self.snapshot_interval_entries.to_string();
        let node = self.nodes.get_mut(&id).unwrap();
        assert!(node.child.is_none(), "node {id} is running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let mut command = Command::new(server_binary());
        command
            .arg("server")
            .args(["--node-id", &id.to_string()])
            .args(["--cluster", &node.cluster_flag])
            .args(["--cluster-id", CLUSTER_ID])
            .args(["--client-address", &node.client_address])
            .args(["--peer-address", &node.peer_address])
            .args(["--metrics-address", "127.0.0.1:0"])
            .args(["--data-dir", &node.data_dir.display().to_string()])
            .args(["--tick-ms", "10"])
            .args(["--heartbeat-ms", "60"])
            .args(["--election-timeout-ms", &ELECTION_TIMEOUT_MS.to_string()])
            .args(["--snapshot-interval-entries", &snapshot_interval])
            .args(["--log-level", "info"])
            .env("RAFTQ_CLUSTER_SECRET", SECRET)
            .env_remove("RAFTQ_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if node.join {
            command.arg("--join");
        }
        node.child = Some(command.spawn().expect("start raftq server"));
        node.paused = false;
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.nodes[&id].child.is_some()
    }

    /// SIGKILL, and reaps the process.
    pub fn kill(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).unwrap();
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        node.paused = false;
    }

    fn signal(&mut self, id: u64, signal: i32) {
        let node = self.nodes.get_mut(&id).unwrap();
        if let Some(child) = &node.child {
            // SAFETY: kill(2) on a child process this test started and has
            // not reaped, so the pid cannot have been reused.
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
        }
    }

    pub fn pause(&mut self, id: u64) {
        self.signal(id, libc::SIGSTOP);
        self.nodes.get_mut(&id).unwrap().paused = true;
    }

    pub fn resume(&mut self, id: u64) {
        self.signal(id, libc::SIGCONT);
        self.nodes.get_mut(&id).unwrap().paused = false;
    }

    /// Fails if a node exited on its own: a crash of raftq.
    pub fn check_alive(&mut self) -> Result<(), String> {
        for node in self.nodes.values_mut() {
            if let Some(child) = &mut node.child
                && let Ok(Some(status)) = child.try_wait()
            {
                node.child = None;
                return Err(format!("node {} exited by itself: {status}", node.id));
            }
        }
        Ok(())
    }

    pub fn client_addresses(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|id| self.nodes[id].client_address.clone())
            .collect()
    }

    pub fn client_options(&self) -> ClientOptions {
        client_options(self.client_addresses())
    }

    pub async fn client(&self) -> Client {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match Client::connect(self.client_options()).await {
                Ok(client) => return client,
                Err(error) if tokio::time::Instant::now() > deadline => {
                    panic!("cannot connect to the cluster: {error}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    pub async fn status(&self, id: u64) -> Option<ClusterStatus> {
        let node = &self.nodes[&id];
        if node.child.is_none() || node.paused {
            return None;
        }
        let settings = connect_settings();
        tokio::time::timeout(
            Duration::from_secs(2),
            Client::node_status(&node.client_address, &settings),
        )
        .await
        .ok()?
        .ok()
    }

    /// The running, unpaused node that says it leads in the highest term.
    pub async fn leader(&self) -> Option<u64> {
        let mut best: Option<(u64, u64)> = None;
        for &id in self.nodes.keys() {
            if let Some(status) = self.status(id).await
                && status.role == "leader"
                && best.is_none_or(|(term, _)| status.term > term)
            {
                best = Some((status.term, id));
            }
        }
        best.map(|(_, id)| id)
    }

    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<u64> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(leader) = self.leader().await {
                return Some(leader);
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Prepares a new node `id` that joins the cluster: proxies for its links
    /// to every member, and one shared listener through which the members
    /// reach it. Returns the address to give `add-learner`.
    pub async fn prepare_joiner(&mut self, id: u64) -> String {
        let peer_address = free_address();
        let mut cluster = vec![format!("{id}={peer_address}")];
        for &other in &self.members {
            let target = self.nodes[&other].peer_address.clone();
            let address = match self.shared_addresses.get(&other) {
                // Nodes that joined earlier are reached through their shared
                // listener, which reads this node's id from the handshake.
                Some(shared) => shared.clone(),
                None => self.network.listen_link(id, other, target).await,
            };
            cluster.push(format!("{other}={address}"));
        }
        let shared = self.network.listen_shared(id, peer_address.clone()).await;
        self.shared_addresses.insert(id, shared.clone());
        self.nodes.insert(
            id,
            Node {
                id,
                client_address: free_address(),
                peer_address,
                cluster_flag: cluster.join(","),
                join: true,
                data_dir: self.dir.join(format!("node-{id}")),
                child: None,
                paused: false,
            },
        );
        shared
    }

    pub fn kill_all(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.resume(id);
            self.kill(id);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}
