//! An in-process cluster of full raftq servers (node, queue service and
//! client listener) on loopback, and clients connected to it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use raftq::client::{Client, ClientOptions};
use raftq::config::ServerConfig;
use raftq::node::clock::SystemClock;
use raftq::node::entropy::OsEntropy;
use raftq::node::net::TokioNetwork;
use raftq::node::{NodeOptions, Seams};
use raftq::raft::Role;
use raftq::server::{self, RunningServer};
use raftq_storage::{StdVfs, Vfs};
use tokio_util::sync::CancellationToken;

use super::free_ports;

pub struct ServerHandle {
    pub running: RunningServer,
    pub shutdown: CancellationToken,
}

pub struct ServerCluster {
    pub dir: tempfile::TempDir,
    pub peer_addresses: BTreeMap<u64, String>,
    pub client_addresses: BTreeMap<u64, String>,
    pub servers: BTreeMap<u64, ServerHandle>,
    /// Changes every server's configuration after the defaults below.
    pub adjust: fn(&mut ServerConfig),
    /// File systems of nodes that do not use the real disk.
    pub vfs: BTreeMap<u64, Arc<dyn Vfs>>,
}

impl ServerCluster {
    pub async fn start(size: u64) -> ServerCluster {
        ServerCluster::start_with(size, |_| {}, BTreeMap::new()).await
    }

    /// Starts a cluster whose configurations pass through `adjust`, with
    /// the given nodes on their own file systems.
    pub async fn start_with(
        size: u64,
        adjust: fn(&mut ServerConfig),
        vfs: BTreeMap<u64, Arc<dyn Vfs>>,
    ) -> ServerCluster {
        let ports = free_ports(2 * size as usize);
        let peer_addresses = (1..=size)
            .map(|id| (id, format!("127.0.0.1:{}", ports[2 * (id as usize - 1)])))
            .collect();
        let client_addresses = (1..=size)
            .map(|id| {
                (
                    id,
                    format!("127.0.0.1:{}", ports[2 * (id as usize - 1) + 1]),
                )
            })
            .collect();
        let mut cluster = ServerCluster {
            dir: tempfile::tempdir().unwrap(),
            peer_addresses,
            client_addresses,
            servers: BTreeMap::new(),
            adjust,
            vfs,
        };
        for id in 1..=size {
            cluster.start_server(id).await;
        }
        cluster
    }

    pub fn config(&self, id: u64) -> ServerConfig {
        let mut config = ServerConfig {
            node_id: id,
            initial_cluster: self.peer_addresses.clone(),
            client_address: self.client_addresses[&id].clone(),
            advertise_client_address: self.client_addresses[&id].clone(),
            peer_address: self.peer_addresses[&id].clone(),
            metrics_address: "127.0.0.1:0".to_string(),
            data_dir: self.dir.path().join(format!("node-{id}")),
            cluster_id: "test".to_string(),
            cluster_secret: Some("test-secret".to_string()),
            tick_ms: 10,
            heartbeat_ms: 30,
            election_timeout_ms: 300,
            snapshot_interval_entries: 200,
            segment_size_bytes: 16 << 20,
            ..ServerConfig::default()
        };
        (self.adjust)(&mut config);
        config
    }

    pub async fn start_server(&mut self, id: u64) {
        let config = self.config(id);
        config.validate().unwrap();
        let shutdown = CancellationToken::new();
        let seams = Seams {
            network: Arc::new(TokioNetwork),
            clock: Arc::new(SystemClock),
            vfs: self
                .vfs
                .get(&id)
                .cloned()
                .unwrap_or_else(|| Arc::new(StdVfs::new())),
            entropy: Arc::new(OsEntropy),
        };
        let mut attempt = 0;
        let running = loop {
            let mut options = NodeOptions::from_server_config(&config, false);
            options.seed = id;
            match server::start(&config, options, seams.clone(), shutdown.clone()).await {
                Ok(running) => break running,
                Err(error) if attempt < 50 => {
                    // A port may still be held by the previous incarnation.
                    attempt += 1;
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("server {id} does not start: {error}"),
            }
        };
        self.servers.insert(id, ServerHandle { running, shutdown });
    }

    /// Stops a server: its tasks end, its sockets close, its data stays.
    pub async fn stop_server(&mut self, id: u64) {
        let handle = self.servers.remove(&id).expect("server is running");
        handle.shutdown.cancel();
        let _ = handle.running.driver.await;
        let _ = handle.running.clients.await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    pub async fn leader(&self) -> u64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let leaders: Vec<u64> = self
                .servers
                .iter()
                .filter(|(_, handle)| handle.running.node.status().role == Role::Leader)
                .map(|(id, _)| *id)
                .collect();
            if let [leader] = leaders[..] {
                return leader;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no single leader in time"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn client_options(&self) -> ClientOptions {
        let mut options = ClientOptions::new(self.client_addresses.values().cloned());
        options.connect.cluster_id = "test".to_string();
        options.retry_deadline = Duration::from_secs(30);
        options
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.client_options())
            .await
            .expect("client connects")
    }

    pub async fn shutdown(mut self) {
        let ids: Vec<u64> = self.servers.keys().copied().collect();
        for id in ids {
            self.stop_server(id).await;
        }
    }
}
