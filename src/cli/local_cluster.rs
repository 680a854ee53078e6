//! A cluster of `raftq server` child processes on loopback, for `raftq dev`
//! and `raftq bench --local`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How to lay out a local cluster.
#[derive(Debug, Clone)]
pub struct LocalSpec {
    /// Number of nodes.
    pub nodes: u64,
    /// Client port of node 1 (node i uses base + 10 × (i − 1), +1 for peers,
    /// +2 for metrics); ephemeral ports when `None`.
    pub base_port: Option<u16>,
    /// Data directory; a temporary one, removed at the end, when `None`.
    pub data_dir: Option<PathBuf>,
    /// Log filter of the nodes.
    pub log_level: String,
    /// Print the nodes' logs, prefixed with their id, instead of keeping
    /// them in `node-N.log` files in the data directory.
    pub forward_logs: bool,
}

/// The addresses of one node.
#[derive(Debug, Clone)]
pub struct NodeAddresses {
    /// Node id.
    pub id: u64,
    /// Client address.
    pub client: String,
    /// Peer address.
    pub peer: String,
    /// Metrics address.
    pub metrics: String,
}

/// Running child processes; they are killed if this is dropped.
pub struct LocalCluster {
    nodes: Vec<(NodeAddresses, Child)>,
    _temporary: Option<tempfile::TempDir>,
}

const CLUSTER_ID: &str = raftq::config::DEFAULT_CLUSTER_ID;

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

impl LocalCluster {
    /// Starts the nodes and waits until one of them leads.
    pub async fn start_with(spec: LocalSpec) -> anyhow::Result<LocalCluster> {
        let (temporary, data_dir) = match &spec.data_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let temporary =
                    tempfile::tempdir().context("cannot create a temporary directory")?;
                let path = temporary.path().to_path_buf();
                (Some(temporary), path)
            }
        };
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let mut addresses = Vec::new();
        for id in 1..=spec.nodes {
            let (client, peer, metrics) = match spec.base_port {
                Some(base) => {
                    let client = u32::from(base) + 10 * (id as u32 - 1);
                    anyhow::ensure!(
                        client + 2 <= u32::from(u16::MAX),
                        "the base port is too high"
                    );
                    (client as u16, client as u16 + 1, client as u16 + 2)
                }
                None => (free_port()?, free_port()?, free_port()?),
            };
            addresses.push(NodeAddresses {
                id,
                client: format!("127.0.0.1:{client}"),
                peer: format!("127.0.0.1:{peer}"),
                metrics: format!("127.0.0.1:{metrics}"),
            });
        }
        let cluster: Vec<String> = addresses
            .iter()
            .map(|node| format!("{}={}", node.id, node.peer))
            .collect();
        let cluster = cluster.join(",");
        // The secret lives only as long as this cluster's processes.
        let secret = format!("{:032x}", rand::random::<u128>());
        let executable = std::env::current_exe().context("cannot find the raftq executable")?;
        let mut nodes = Vec::new();
        for node in addresses {
            let log = if spec.forward_logs {
                None
            } else {
                let path = data_dir.join(format!("node-{}.log", node.id));
                Some(
                    std::fs::File::create(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                )
            };
            let mut command = Command::new(&executable);
            command
                .arg("server")
                .args(["--node-id", &node.id.to_string()])
                .args(["--cluster", &cluster])
                .args(["--cluster-id", CLUSTER_ID])
                .args(["--client-address", &node.client])
                .args(["--peer-address", &node.peer])
                .args(["--metrics-address", &node.metrics])
                .args([
                    "--data-dir",
                    &data_dir
                        .join(format!("node-{}", node.id))
                        .display()
                        .to_string(),
                ])
                .args(["--log-level", &spec.log_level])
                .env("RAFTQ_CLUSTER_SECRET", &secret)
                .stdin(Stdio::null())
                .kill_on_drop(true);
            match log {
                Some(file) => {
                    command.stdout(file.try_clone()?).stderr(file);
                }
                None => {
                    command.stdout(Stdio::piped()).stderr(Stdio::piped());
                }
            }
            let mut child = command
                .spawn()
                .with_context(|| format!("cannot start node {}", node.id))?;
            if spec.forward_logs {
                forward(node.id, &mut child);
            }
            nodes.push((node, child));
        }
        Ok(LocalCluster {
            nodes,
            _temporary: temporary,
        })
    }

    /// The cluster id the nodes use.
    pub fn cluster_id(&self) -> &'static str {
        CLUSTER_ID
    }

    /// Every node's addresses.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeAddresses> {
        self.nodes.iter().map(|(addresses, _)| addresses)
    }

    /// Every node's client address.
    pub fn client_addresses(&self) -> Vec<String> {
        self.nodes().map(|node| node.client.clone()).collect()
    }

    /// Kills a node with SIGKILL, as a crash would.
    pub fn kill(&self, id: u64) {
        if let Some(pid) = self.pid(id) {
            signal(pid, libc::SIGKILL);
        }
    }

    fn pid(&self, id: u64) -> Option<u32> {
        self.nodes
            .iter()
            .find(|(addresses, _)| addresses.id == id)
            .and_then(|(_, child)| child.id())
    }

    /// Resident memory of every live node, from /proc.
    pub fn resident_bytes(&self) -> Vec<(u64, u64)> {
        self.nodes
            .iter()
            .filter_map(|(addresses, child)| {
                let pid = child.id()?;
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some((addresses.id, kib * 1024))
            })
            .collect()
    }

    /// CPU time (user + system) every live node has used, in seconds.
    pub fn cpu_seconds(&self) -> Vec<(u64, f64)> {
        // SAFETY: sysconf has no preconditions.
        let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        self.nodes
            .iter()
            .filter_map(|(addresses, child)| {
                let pid = child.id()?;
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                // Fields after the command name, which is in parentheses.
                let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
                let user: f64 = fields.get(11)?.parse().ok()?;
                let system: f64 = fields.get(12)?.parse().ok()?;
                Some((addresses.id, (user + system) / ticks_per_second))
            })
            .collect()
    }

    /// Waits until any node exits; returns its id and exit status.
    pub async fn any_exit(&mut self) -> (u64, std::io::Result<std::process::ExitStatus>) {
        let waits = self.nodes.iter_mut().map(|(addresses, child)| {
            let id = addresses.id;
            Box::pin(async move { (id, child.wait().await) })
        });
        futures::future::select_all(waits).await.0
    }

    /// Stops every node with SIGTERM (they sync and close), then SIGKILL
    /// after ten seconds.
    pub async fn stop(mut self) {
        for (_, child) in &self.nodes {
            if let Some(pid) = child.id() {
                signal(pid, libc::SIGTERM);
            }
        }
        for (_, child) in &mut self.nodes {
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

/// Prints a child's output lines prefixed with its node id.
fn forward(id: u64, child: &mut Child) {
    let outputs: [Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>; 2] = [
        child.stdout.take().map(|out| Box::new(out) as _),
        child.stderr.take().map(|err| Box::new(err) as _),
    ];
    for output in outputs.into_iter().flatten() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(output).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("node{id} | {line}");
            }
        });
    }
}

/// Sends a signal to a child process.
fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) takes plain integers and has no memory-safety
    // preconditions; the pid is a child this process started and still owns.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}
