//! The node's public handle: starting a node, proposing commands, reading,
//! watching status and changing membership.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use raftq_storage::{Vfs, WalConfig};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::clock::Clock;
use super::driver::{Driver, DriverConfig};
use super::entropy::Entropy;
use super::error::NodeError;
use super::log_store::{NodeStorage, NodeStorageError};
use super::net::Network;
use super::state_machine::StateMachine;
use super::transport::{PeerTransport, TransportConfig};
use crate::config::{
    APPEND_MESSAGE_MAX_BYTES, APPEND_MESSAGE_MAX_ENTRIES, ENTRY_MAX_BYTES, INFLIGHT_MESSAGES_MAX,
    PEER_SEND_QUEUE_MESSAGES, PROPOSAL_QUEUE_MAX, SNAPSHOT_CHUNK_BYTES,
};
use crate::raft::{self, RawNode, Role};

/// A membership change or leadership transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminOp {
    /// Hand leadership to another voter.
    TransferLeader(u64),
    /// Add a non-voting member that receives the log.
    AddLearner {
        /// The new member's id.
        id: u64,
        /// Where it accepts peer connections.
        peer_address: String,
    },
    /// Make a caught-up learner a voter.
    Promote(u64),
    /// Remove a voter or learner.
    Remove(u64),
}

/// What a client task asks of the driver.
pub(crate) enum Request<SM: StateMachine> {
    Propose {
        command: bytes::Bytes,
        reply: oneshot::Sender<Result<SM::Outcome, NodeError>>,
    },
    Read {
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    Admin {
        op: AdminOp,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
}

/// The node's state as published after each round of the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node.
    pub id: u64,
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: u64,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// The leader's client address, if known.
    pub leader_address: Option<String>,
    /// Highest committed index.
    pub commit: u64,
    /// Highest applied index.
    pub applied: u64,
    /// First index in the log.
    pub first_index: u64,
    /// Last index in the log.
    pub last_index: u64,
    /// Index of the latest snapshot.
    pub snapshot_index: u64,
    /// Voting members.
    pub voters: Vec<u64>,
    /// Non-voting members.
    pub learners: Vec<u64>,
    /// The leader's view of each member's replicated index (leader only).
    pub match_indexes: BTreeMap<u64, u64>,
    /// Peer addresses known to this node.
    pub addresses: BTreeMap<u64, String>,
    /// Client addresses of the members this node has heard from (itself
    /// included), so clients can find members that were not among their seeds.
    pub client_addresses: BTreeMap<u64, String>,
    /// Set once the node has stopped after a fatal error.
    pub failed: Option<String>,
}

/// State shared between the driver and the handles.
pub(crate) struct NodeShared<SM> {
    state: Mutex<SM>,
    applied: watch::Sender<u64>,
    status: watch::Sender<NodeStatus>,
}

impl<SM> NodeShared<SM> {
    pub(crate) fn state_machine(&self) -> MutexGuard<'_, SM> {
        self.state.lock().expect("state machine lock")
    }

    pub(crate) fn set_applied(&self, index: u64) {
        self.applied.send_replace(index);
    }

    pub(crate) fn publish_status(&self, status: NodeStatus) {
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            if changed {
                *current = status;
            }
            changed
        });
    }

    pub(crate) fn mark_stopped(&self, failure: Option<String>) {
        self.status.send_modify(|status| {
            status.role = Role::Follower;
            status.leader = None;
            status.failed = failure.or_else(|| Some("shut down".to_string()));
        });
    }
}

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// This node's id.
    pub id: u64,
    /// The cluster id peers must name.
    pub cluster_id: String,
    /// The shared peer secret.
    pub secret: Option<Vec<u8>>,
    /// Address to bind for peer traffic.
    pub peer_bind_address: String,
    /// This node's peer address as the membership lists it.
    pub peer_address: String,
    /// This node's client address, handed to clients in redirects.
    pub client_address: String,
    /// The founding members (used only when the data directory is new).
    pub initial_cluster: BTreeMap<u64, String>,
    /// Start empty and wait to be added by a leader, instead of bootstrapping.
    pub join: bool,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Length of one tick.
    pub tick_ms: u64,
    /// Heartbeat interval in ticks.
    pub heartbeat_ticks: u64,
    /// Base election timeout in ticks.
    pub election_timeout_ticks: u64,
    /// Applied entries between snapshots.
    pub snapshot_interval_entries: u64,
    /// Size of each log segment.
    pub segment_size_bytes: usize,
    /// Sync on the driver's task (deterministic simulation).
    pub inline_sync: bool,
    /// Seed of the core's randomized election timeouts.
    pub seed: u64,
}

impl NodeOptions {
    /// Options for a node with production defaults.
    pub fn from_server_config(config: &crate::config::ServerConfig, join: bool) -> NodeOptions {
        let peer_address = config
            .initial_cluster
            .get(&config.node_id)
            .cloned()
            .unwrap_or_else(|| config.peer_address.clone());
        NodeOptions {
            id: config.node_id,
            cluster_id: config.cluster_id.clone(),
            secret: config.cluster_secret.clone().map(String::into_bytes),
            peer_bind_address: config.peer_address.clone(),
            peer_address,
            client_address: config.advertise_client_address.clone(),
            initial_cluster: config.initial_cluster.clone(),
            join,
            data_dir: config.data_dir.clone(),
            tick_ms: config.tick_ms,
            heartbeat_ticks: config.heartbeat_ticks() as u64,
            election_timeout_ticks: config.election_timeout_ticks() as u64,
            snapshot_interval_entries: config.snapshot_interval_entries,
            segment_size_bytes: config.segment_size_bytes as usize,
            inline_sync: false,
            // Fresh entropy per process start: anything derived from the
            // node id and process id can coincide between two nodes (with
            // ids 1 and 3 and process ids P and P + 2, say), and two nodes
            // with one seed draw the same election timeouts and split
            // every vote.
            seed: rand::random::<u64>(),
        }
    }
}

/// The seams through which a node reaches the outside world.
#[derive(Clone)]
pub struct Seams {
    /// Sockets.
    pub network: Arc<dyn Network>,
    /// Wall-clock time.
    pub clock: Arc<dyn Clock>,
    /// Files.
    pub vfs: Arc<dyn Vfs>,
    /// Random numbers that decide nothing replicated (nonces, incarnations,
    /// backoff jitter).
    pub entropy: Arc<dyn Entropy>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be opened or recovered.
    #[error("cannot open the data directory: {0}")]
    Storage(#[from] NodeStorageError),
    /// The snapshot on disk does not restore.
    #[error("the snapshot on disk does not restore: {0}")]
    Snapshot(String),
    /// The consensus core refused its configuration or state.
    #[error("cannot start the consensus core: {0}")]
    Raft(#[from] raft::Error),
    /// The peer address could not be bound.
    #[error("cannot listen for peers on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A handle on a running node. Cheap to clone.
pub struct Node<SM: StateMachine> {
    requests: mpsc::Sender<Request<SM>>,
    shared: Arc<NodeShared<SM>>,
    applied: watch::Receiver<u64>,
    status: watch::Receiver<NodeStatus>,
    peer_address: std::net::SocketAddr,
}

impl<SM: StateMachine> Clone for Node<SM> {
    fn clone(&self) -> Self {
        Node {
            requests: self.requests.clone(),
            shared: Arc::clone(&self.shared),
            applied: self.applied.clone(),
            status: self.status.clone(),
            peer_address: self.peer_address,
        }
    }
}

impl<SM: StateMachine> Node<SM> {
    /// Opens the data directory, restores the state machine, binds the peer
    /// port and starts the driver. The returned task ends when the node
    /// stops, with the fatal error if there was one.
    pub async fn start(
        options: NodeOptions,
        seams: Seams,
        shutdown: CancellationToken,
    ) -> Result<(Node<SM>, JoinHandle<Result<(), String>>), StartError> {
        let wal_config = WalConfig {
            segment_size_bytes: options.segment_size_bytes,
            record_payload_max_bytes: ENTRY_MAX_BYTES + super::log_store::ENTRY_RECORD_HEADER_BYTES,
            initial_index: 1,
        };
        let founders = (!options.join).then_some(&options.initial_cluster);
        let recovery_started = std::time::Instant::now();
        let (storage, recovered) = NodeStorage::open(
            Arc::clone(&seams.vfs),
            &options.data_dir,
            wal_config,
            founders,
        )?;
        let state = if recovered.envelope.state.is_empty() {
            SM::empty()
        } else {
            SM::restore(&recovered.envelope.state).map_err(StartError::Snapshot)?
        };
        metrics::gauge!(crate::metrics::WAL_RECOVERY_SECONDS)
            .set(recovery_started.elapsed().as_secs_f64());
        let mut addresses = options.initial_cluster.clone();
        addresses.extend(recovered.envelope.addresses.clone());
        // Members added after the snapshot are known only from their
        // configuration entries, which the driver learns from as they are
        // appended; after a restart they are read back from the log, or
        // this node could not reach (nor answer) them until the next
        // snapshot.
        addresses.extend(logged_member_addresses(&storage.log_store()).map_err(raft::Error::from)?);
        addresses.insert(options.id, options.peer_address.clone());

        let raft_config = raft::Config {
            election_timeout_ticks: options.election_timeout_ticks,
            heartbeat_interval_ticks: options.heartbeat_ticks,
            max_entries_per_message: APPEND_MESSAGE_MAX_ENTRIES as u64,
            max_bytes_per_message: APPEND_MESSAGE_MAX_BYTES as u64,
            max_inflight_messages: INFLIGHT_MESSAGES_MAX,
            snapshot_chunk_bytes: SNAPSHOT_CHUNK_BYTES as u64,
            seed: options.seed,
            ..raft::Config::new(options.id)
        };
        let raw = RawNode::new(raft_config, storage.log_store())?;
        let applied_index = raw.status().applied;

        let listener = seams
            .network
            .bind(&options.peer_bind_address)
            .await
            .map_err(|source| StartError::Bind {
                address: options.peer_bind_address.clone(),
                source,
            })?;
        let peer_address = listener
            .local_address()
            .map_err(|source| StartError::Bind {
                address: options.peer_bind_address.clone(),
                source,
            })?;
        let (inbound_sender, inbound) = mpsc::channel(PEER_SEND_QUEUE_MESSAGES);
        let transport = PeerTransport::new(
            TransportConfig {
                node_id: options.id,
                cluster_id: options.cluster_id.clone(),
                secret: options.secret.clone(),
                peer_address: options.peer_address.clone(),
                incarnation: seams.entropy.next_u64(),
                client_address: options.client_address.clone(),
            },
            Arc::clone(&seams.network),
            Arc::clone(&seams.entropy),
            inbound_sender,
            shutdown.clone(),
        );
        tokio::spawn(transport.clone().serve(listener));

        let (applied_sender, applied) = watch::channel(applied_index);
        let initial_status = NodeStatus {
            id: options.id,
            role: Role::Follower,
            term: 0,
            leader: None,
            leader_address: None,
            commit: 0,
            applied: applied_index,
            first_index: 0,
            last_index: 0,
            snapshot_index: recovered.snapshot.meta.index,
            voters: Vec::new(),
            learners: Vec::new(),
            match_indexes: BTreeMap::new(),
            addresses: addresses.clone(),
            client_addresses: BTreeMap::from([(options.id, options.client_address.clone())]),
            failed: None,
        };
        let (status_sender, status) = watch::channel(initial_status);
        let shared = Arc::new(NodeShared {
            state: Mutex::new(state),
            applied: applied_sender,
            status: status_sender,
        });
        let (requests, request_receiver) = mpsc::channel(PROPOSAL_QUEUE_MAX);
        let driver = Driver::new(
            raw,
            Arc::new(storage),
            Arc::clone(&shared),
            transport,
            seams.clock,
            DriverConfig {
                tick_ms: options.tick_ms,
                snapshot_interval_entries: options.snapshot_interval_entries,
                inline_sync: options.inline_sync,
                read_forward_timeout_ticks: 2 * options.election_timeout_ticks,
            },
            request_receiver,
            inbound,
            addresses,
            shutdown,
        );
        let task = tokio::spawn(driver.run());
        Ok((
            Node {
                requests,
                shared,
                applied,
                status,
                peer_address,
            },
            task,
        ))
    }

    /// The address the peer listener is bound to.
    pub fn peer_address(&self) -> std::net::SocketAddr {
        self.peer_address
    }

    async fn submit<T>(
        &self,
        request: Request<SM>,
        reply: oneshot::Receiver<Result<T, NodeError>>,
    ) -> Result<T, NodeError> {
        self.requests
            .send(request)
            .await
            .map_err(|_| self.stopped_error())?;
        reply.await.map_err(|_| self.stopped_error())?
    }

    fn stopped_error(&self) -> NodeError {
        match &self.status.borrow().failed {
            Some(reason) if reason != "shut down" => NodeError::Failed(reason.clone()),
            _ => NodeError::ShuttingDown,
        }
    }

    /// Proposes a command and waits for its outcome once it is applied.
    pub async fn propose(&self, command: &SM::Command) -> Result<SM::Outcome, NodeError> {
        let bytes = postcard::to_allocvec(command)
            .map_err(|error| NodeError::Invalid(error.to_string()))?;
        let (reply, receiver) = oneshot::channel();
        let request = Request::Propose {
            command: bytes::Bytes::from(bytes),
            reply,
        };
        self.submit(request, receiver).await
    }

    /// Waits until a read of the state machine is linearizable: the leader
    /// (this node, or the one a follower forwards the request to) is
    /// confirmed by a quorum, and this node has applied everything committed
    /// before the call (Raft thesis §6.4 and §6.4.1).
    pub async fn read_barrier(&self) -> Result<(), NodeError> {
        let (reply, receiver) = oneshot::channel();
        self.submit(Request::Read { reply }, receiver).await
    }

    /// Runs `read` on the state machine as this node has applied it.
    pub fn read_state<R>(&self, read: impl FnOnce(&SM) -> R) -> R {
        read(&self.shared.state_machine())
    }

    /// Applies a membership change or leadership transfer.
    pub async fn admin(&self, op: AdminOp) -> Result<(), NodeError> {
        let (reply, receiver) = oneshot::channel();
        self.submit(Request::Admin { op, reply }, receiver).await
    }

    /// The latest published status.
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// A receiver that changes whenever the status does.
    pub fn watch_status(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }

    /// A receiver of the applied index.
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }
}

/// The addresses of members added by configuration changes in the log.
fn logged_member_addresses(
    log: &impl raft::LogStore,
) -> Result<Vec<(u64, String)>, raft::StoreError> {
    let mut learned = Vec::new();
    let mut next = log.first_index();
    let end = log.last_index() + 1;
    while next < end {
        let entries = log.entries(next, end, APPEND_MESSAGE_MAX_BYTES as u64)?;
        next += entries.len() as u64;
        learned.extend(super::driver::added_member_addresses(&entries));
    }
    Ok(learned)
}
