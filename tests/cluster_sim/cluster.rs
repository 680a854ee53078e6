//! The simulated cluster: raftq servers as turmoil hosts, each with its own
//! fault-injecting disk that outlives crashes, and the checks of Raft's
//! invariants that can be made from outside the nodes.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use raftq::config::ServerConfig;
use raftq::node::clock::TokioClock;
use raftq::node::entropy::SeededEntropy;
use raftq::node::{Node, NodeOptions, Seams};
use raftq::queue::JobQueue;
use raftq::raft::Role;
use raftq_storage::{FaultVfs, Vfs};
use tokio_util::sync::CancellationToken;

use super::history::Trace;
use super::net::{Links, TurmoilNetwork};

pub const CLIENT_PORT: u16 = 7410;
pub const PEER_PORT: u16 = 7411;
pub const CLUSTER_ID: &str = "sim";
const DATA_DIR: &str = "/raftq";

pub fn host_name(id: u64) -> String {
    format!("n{id}")
}

/// A seed for one part of one boot of one node.
fn mix(seed: u64, id: u64, boot: u64, part: u64) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write_u64(seed);
    hasher.write_u64(id);
    hasher.write_u64(boot);
    hasher.write_u64(part);
    hasher.finish()
}

/// What the test loop can see of the servers.
#[derive(Default)]
pub struct Registry {
    /// Nodes whose software is running, by id.
    pub nodes: BTreeMap<u64, Node<JobQueue>>,
    /// How many times each node has started.
    pub boots: BTreeMap<u64, u64>,
    /// Why nodes stopped or refused to start, in order.
    pub failures: Vec<String>,
}

pub type SharedRegistry = Rc<RefCell<Registry>>;

/// Settings that vary by seed.
#[derive(Debug, Clone, Copy)]
pub struct ClusterShape {
    pub size: u64,
    pub snapshot_interval_entries: u64,
}

fn server_config(shape: ClusterShape, id: u64) -> ServerConfig {
    ServerConfig {
        node_id: id,
        initial_cluster: (1..=shape.size)
            .map(|member| (member, format!("{}:{PEER_PORT}", host_name(member))))
            .collect(),
        client_address: format!("0.0.0.0:{CLIENT_PORT}"),
        advertise_client_address: format!("{}:{CLIENT_PORT}", host_name(id)),
        peer_address: format!("0.0.0.0:{PEER_PORT}"),
        data_dir: PathBuf::from(DATA_DIR),
        cluster_id: CLUSTER_ID.to_string(),
        tick_ms: 10,
        heartbeat_ms: 30,
        election_timeout_ms: 300,
        snapshot_interval_entries: shape.snapshot_interval_entries,
        segment_size_bytes: 8 << 20,
        ..ServerConfig::default()
    }
}

/// Adds the servers to the simulation; `disks` must hold one disk per node.
pub fn add_servers(
    sim: &mut turmoil::Sim<'_>,
    seed: u64,
    shape: ClusterShape,
    disks: &BTreeMap<u64, FaultVfs>,
    links: &Arc<Links>,
    registry: &SharedRegistry,
) {
    for id in 1..=shape.size {
        let disk = disks[&id].clone();
        let registry = Rc::clone(registry);
        let network = TurmoilNetwork::new(&host_name(id), Arc::clone(links));
        sim.host(host_name(id), move || {
            run_server(
                seed,
                shape,
                id,
                disk.clone(),
                network.clone(),
                Rc::clone(&registry),
            )
        });
    }
}

/// One boot of a server: runs until the host crashes. A node that stops on
/// a fatal error, or does not start, leaves the host idle until it is
/// restarted.
async fn run_server(
    seed: u64,
    shape: ClusterShape,
    id: u64,
    disk: FaultVfs,
    network: TurmoilNetwork,
    registry: SharedRegistry,
) -> turmoil::Result {
    let boot = {
        let mut registry = registry.borrow_mut();
        let boots = registry.boots.entry(id).or_default();
        *boots += 1;
        *boots
    };
    let config = server_config(shape, id);
    let mut options = NodeOptions::from_server_config(&config, false);
    options.inline_sync = true;
    options.seed = mix(seed, id, boot, 0);
    let now = turmoil::since_epoch().expect("inside the simulation");
    let seams = Seams {
        network: Arc::new(network),
        clock: Arc::new(TokioClock::new(now.as_millis() as u64)),
        vfs: Arc::new(disk),
        entropy: Arc::new(SeededEntropy::new(mix(seed, id, boot, 1))),
    };
    match raftq::server::start(&config, options, seams, CancellationToken::new()).await {
        Ok(running) => {
            registry.borrow_mut().nodes.insert(id, running.node.clone());
            let ended = running.driver.await;
            let mut registry = registry.borrow_mut();
            registry.nodes.remove(&id);
            registry
                .failures
                .push(format!("node {id} boot {boot} stopped: {ended:?}"));
        }
        Err(error) => {
            registry
                .borrow_mut()
                .failures
                .push(format!("node {id} boot {boot} does not start: {error}"));
        }
    }
    std::future::pending::<()>().await;
    Ok(())
}

/// Every file of a node's data directory (the log and the snapshots).
pub fn files(disk: &FaultVfs) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for directory in ["", "wal", "snapshots"] {
        let directory = Path::new(DATA_DIR).join(directory);
        let Ok(mut names) = disk.list_dir(&directory) else {
            continue;
        };
        names.sort();
        found.extend(names.into_iter().map(|name| directory.join(name)));
    }
    found
}

/// The length of a file on a node's disk.
pub fn file_len(disk: &FaultVfs, path: &Path) -> usize {
    disk.contents(path).map(|bytes| bytes.len()).unwrap_or(0)
}

/// Checks what can be seen of Raft from outside after every step: at most
/// one leader per term (Raft §5.2), and that two nodes that have applied the
/// same prefix of the log hold the same state (§5.4, State Machine Safety).
#[derive(Default)]
pub struct RaftObserver {
    leaders: BTreeMap<u64, u64>,
    /// A digest of the state at each applied index, and the node it came from.
    states: BTreeMap<u64, (u64, u64)>,
    last_applied: BTreeMap<u64, u64>,
    pub violations: Vec<String>,
}

impl RaftObserver {
    pub fn observe(&mut self, registry: &Registry, trace: &mut Trace, sample_states: bool) {
        for (id, node) in &registry.nodes {
            let status = node.status();
            if status.failed.is_some() {
                continue;
            }
            if status.role == Role::Leader {
                match self.leaders.get(&status.term) {
                    Some(leader) if leader != id => self.violations.push(format!(
                        "two leaders in term {}: nodes {leader} and {id}",
                        status.term
                    )),
                    Some(_) => {}
                    None => {
                        trace.record(&format!("leader {id} term {}", status.term));
                        self.leaders.insert(status.term, *id);
                    }
                }
            }
            // The applier publishes this index right after it changes the
            // state, and between steps no node's task runs, so the two agree.
            // (The status is published later, once per round of the driver.)
            let applied = *node.watch_applied().borrow();
            if !sample_states || self.last_applied.get(id) == Some(&applied) {
                continue;
            }
            let digest = node.read_state(|state| {
                let mut hasher = std::hash::DefaultHasher::new();
                hasher.write(&raftq::node::StateMachine::snapshot(state));
                hasher.finish()
            });
            self.last_applied.insert(*id, applied);
            match self.states.get(&applied) {
                Some((known, other)) if *known != digest => self.violations.push(format!(
                    "nodes {other} and {id} applied up to index {applied} but hold different states"
                )),
                Some(_) => {}
                None => {
                    self.states.insert(applied, (digest, *id));
                }
            }
        }
    }

    pub fn terms(&self) -> usize {
        self.leaders.len()
    }

    pub fn compared_indexes(&self) -> usize {
        self.states.len()
    }
}
