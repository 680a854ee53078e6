//! Configuration: every tunable, its default, its validation, and every limit
//! as a named constant.
//!
//! A server's settings come from four layers, later ones winning: the
//! defaults below, an optional TOML file (`--config`), `RAFTQ_*` environment
//! variables, and command-line flags. The file and the flags share one type,
//! [`ConfigOverrides`], so a setting is spelled the same everywhere:
//! `--election-timeout-ms` on the command line, `RAFTQ_ELECTION_TIMEOUT_MS`
//! in the environment, `election_timeout_ms` in the file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::queue::Limits;
use crate::queue::limits::JOBS_PER_QUEUE_CEILING;

/// Default address for client traffic.
pub const DEFAULT_CLIENT_ADDRESS: &str = "127.0.0.1:7410";
/// Default address for peer (Raft) traffic.
pub const DEFAULT_PEER_ADDRESS: &str = "127.0.0.1:7411";
/// Default address of the Prometheus `/metrics` endpoint.
pub const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:7412";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./raftq-data";
/// Default cluster id, which every peer and client must name in its handshake.
pub const DEFAULT_CLUSTER_ID: &str = "raftq";

/// One tick of the consensus core.
pub const DEFAULT_TICK_MS: u64 = 10;
/// How often a leader sends heartbeats.
pub const DEFAULT_HEARTBEAT_MS: u64 = 100;
/// The base election timeout; the core randomizes it within [base, 2 × base).
pub const DEFAULT_ELECTION_TIMEOUT_MS: u64 = 1_000;
/// Shortest election timeout accepted, so that a misconfiguration cannot make
/// a cluster campaign continuously.
pub const ELECTION_TIMEOUT_MIN_MS: u64 = 50;

/// Take a state-machine snapshot after this many applied entries.
pub const DEFAULT_SNAPSHOT_INTERVAL_ENTRIES: u64 = 20_000;
/// Size of each write-ahead-log segment file.
pub const DEFAULT_SEGMENT_SIZE_BYTES: u64 = 64 * 1024 * 1024;
/// Smallest segment size accepted: the largest entry must fit a segment.
pub const SEGMENT_SIZE_MIN_BYTES: u64 = 2 * ENTRY_MAX_BYTES as u64 + 1024 * 1024;

/// Largest job payload accepted from clients. It becomes the replicated
/// queue limit `Limits::payload_max_bytes` (see [`ServerConfig::queue_limits`]).
pub const DEFAULT_PAYLOAD_MAX_BYTES: usize = 1024 * 1024;
/// Most jobs one queue holds, in any state. It becomes the replicated queue
/// limit `Limits::jobs_per_queue_max`; an enqueue beyond it is refused with
/// `QueueError::QueueFull`.
pub const DEFAULT_QUEUE_JOBS_MAX: u64 = 10_000_000;
/// Largest client frame: a batch of jobs in one request.
pub const DEFAULT_CLIENT_FRAME_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Largest peer frame: a batch of Raft messages.
pub const PEER_FRAME_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Largest Raft entry the node proposes. Client commands are packed into
/// entries up to this size.
pub const ENTRY_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Largest AppendEntries message the leader builds.
pub const APPEND_MESSAGE_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Entries per AppendEntries message at most.
pub const APPEND_MESSAGE_MAX_ENTRIES: usize = 4096;
/// AppendEntries messages in flight to one follower at most.
pub const INFLIGHT_MESSAGES_MAX: usize = 64;
/// Size of one InstallSnapshot chunk.
pub const SNAPSHOT_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// Client connections served at once; more are refused with an error frame.
pub const DEFAULT_CLIENT_CONNECTIONS_MAX: usize = 4096;
/// Inbound peer connections accepted at once.
pub const PEER_CONNECTIONS_MAX: usize = 64;
/// Raft messages queued for one peer before new ones are dropped (Raft
/// retransmits, so dropping under overload is safe; blocking is not).
pub const PEER_SEND_QUEUE_MESSAGES: usize = 4096;
/// Client proposals queued for the driver before submitters wait.
pub const PROPOSAL_QUEUE_MAX: usize = 65_536;
/// Requests in flight on one client connection.
pub const CLIENT_INFLIGHT_REQUESTS_MAX: usize = 1024;
/// Distinct queue names that get their own metric label; the rest share `other`.
pub const DEFAULT_METRIC_QUEUE_LABELS_MAX: usize = 100;
/// Longest long-poll a claim may ask for.
pub const CLAIM_WAIT_MAX_MS: u64 = 300_000;

const _: () = assert!(DEFAULT_CLIENT_FRAME_MAX_BYTES > DEFAULT_PAYLOAD_MAX_BYTES);
const _: () = assert!(ENTRY_MAX_BYTES <= APPEND_MESSAGE_MAX_BYTES);
const _: () = assert!(APPEND_MESSAGE_MAX_BYTES < PEER_FRAME_MAX_BYTES);
const _: () = assert!(SNAPSHOT_CHUNK_BYTES < PEER_FRAME_MAX_BYTES);
const _: () = assert!((ENTRY_MAX_BYTES as u64) < SEGMENT_SIZE_MIN_BYTES);

/// A configuration that cannot work, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting has a value outside its valid range.
    #[error("invalid {setting}: {reason}")]
    Invalid {
        /// The setting's name as spelled in the file.
        setting: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// The configuration file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML for this schema.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser reported.
        message: String,
    },
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        reason: reason.into(),
    }
}

/// The settings of one server, resolved and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// This node's id, unique in the cluster and never 0.
    pub node_id: u64,
    /// The initial voting members and their peer addresses. Used only when
    /// the data directory is new; afterwards membership lives in the log.
    pub initial_cluster: BTreeMap<u64, String>,
    /// Where clients connect.
    pub client_address: String,
    /// Where peers connect.
    pub peer_address: String,
    /// Where Prometheus scrapes `/metrics`.
    pub metrics_address: String,
    /// The client address other nodes hand out in redirects; defaults to
    /// `client_address`.
    pub advertise_client_address: String,
    /// Where the log, hard state and snapshots live.
    pub data_dir: PathBuf,
    /// The cluster's id; handshakes naming another id are refused.
    pub cluster_id: String,
    /// The secret peers prove they know; `None` lets any process that can
    /// reach the peer port take part, which is only sensible on loopback.
    pub cluster_secret: Option<String>,
    /// The secret clients prove they know; `None` accepts any client.
    pub client_secret: Option<String>,
    /// Length of one consensus tick.
    pub tick_ms: u64,
    /// Heartbeat interval.
    pub heartbeat_ms: u64,
    /// Base election timeout.
    pub election_timeout_ms: u64,
    /// Applied entries between snapshots.
    pub snapshot_interval_entries: u64,
    /// Size of each log segment file.
    pub segment_size_bytes: u64,
    /// Largest job payload.
    pub payload_max_bytes: usize,
    /// Most jobs in one queue, in any state.
    pub queue_jobs_max: u64,
    /// Largest client frame.
    pub client_frame_max_bytes: usize,
    /// Client connections served at once.
    pub client_connections_max: usize,
    /// Queue names with their own metric label.
    pub metric_queue_labels_max: usize,
    /// Log filter, in `tracing_subscriber::EnvFilter` syntax (`info`, `raftq=debug`).
    pub log_level: String,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            node_id: 1,
            initial_cluster: BTreeMap::from([(1, DEFAULT_PEER_ADDRESS.to_string())]),
            client_address: DEFAULT_CLIENT_ADDRESS.to_string(),
            peer_address: DEFAULT_PEER_ADDRESS.to_string(),
            metrics_address: DEFAULT_METRICS_ADDRESS.to_string(),
            advertise_client_address: DEFAULT_CLIENT_ADDRESS.to_string(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            cluster_id: DEFAULT_CLUSTER_ID.to_string(),
            cluster_secret: None,
            client_secret: None,
            tick_ms: DEFAULT_TICK_MS,
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
            election_timeout_ms: DEFAULT_ELECTION_TIMEOUT_MS,
            snapshot_interval_entries: DEFAULT_SNAPSHOT_INTERVAL_ENTRIES,
            segment_size_bytes: DEFAULT_SEGMENT_SIZE_BYTES,
            payload_max_bytes: DEFAULT_PAYLOAD_MAX_BYTES,
            queue_jobs_max: DEFAULT_QUEUE_JOBS_MAX,
            client_frame_max_bytes: DEFAULT_CLIENT_FRAME_MAX_BYTES,
            client_connections_max: DEFAULT_CLIENT_CONNECTIONS_MAX,
            metric_queue_labels_max: DEFAULT_METRIC_QUEUE_LABELS_MAX,
            log_level: "info".to_string(),
        }
    }
}

impl ServerConfig {
    /// Heartbeat interval in ticks.
    pub fn heartbeat_ticks(&self) -> usize {
        (self.heartbeat_ms / self.tick_ms).max(1) as usize
    }

    /// Base election timeout in ticks.
    pub fn election_timeout_ticks(&self) -> usize {
        (self.election_timeout_ms / self.tick_ms).max(2) as usize
    }

    /// The replicated queue limits this configuration asks for. The leader
    /// proposes them (`Op::SetLimits`) after it wins an election whenever
    /// the applied limits differ, so every node enforces the same values.
    /// Limits without a setting keep their defaults.
    pub fn queue_limits(&self) -> Limits {
        Limits {
            payload_max_bytes: u32::try_from(self.payload_max_bytes).unwrap_or(u32::MAX),
            jobs_per_queue_max: self.queue_jobs_max,
            ..Limits::default()
        }
    }

    /// Checks every setting and how settings relate.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(invalid("node_id", "node ids start at 1"));
        }
        if !self.initial_cluster.contains_key(&self.node_id) {
            return Err(invalid(
                "cluster",
                format!(
                    "the initial cluster does not include this node ({})",
                    self.node_id
                ),
            ));
        }
        if self.initial_cluster.contains_key(&0) {
            return Err(invalid("cluster", "node ids start at 1"));
        }
        for (setting, value) in [
            ("client_address", &self.client_address),
            ("peer_address", &self.peer_address),
            ("metrics_address", &self.metrics_address),
            ("advertise_client_address", &self.advertise_client_address),
        ] {
            check_address(setting, value)?;
        }
        for address in self.initial_cluster.values() {
            check_address("cluster", address)?;
        }
        if self.cluster_id.is_empty() || self.cluster_id.len() > 128 {
            return Err(invalid("cluster_id", "must be 1 to 128 bytes"));
        }
        if self.tick_ms == 0 || self.tick_ms > 1_000 {
            return Err(invalid("tick_ms", "must be between 1 and 1000"));
        }
        if self.heartbeat_ms < self.tick_ms {
            return Err(invalid("heartbeat_ms", "must be at least one tick"));
        }
        if self.election_timeout_ms < ELECTION_TIMEOUT_MIN_MS {
            return Err(invalid(
                "election_timeout_ms",
                format!("must be at least {ELECTION_TIMEOUT_MIN_MS}"),
            ));
        }
        if self.election_timeout_ms < 3 * self.heartbeat_ms {
            return Err(invalid(
                "election_timeout_ms",
                "must be at least three heartbeat intervals, or followers time out between heartbeats",
            ));
        }
        if self.snapshot_interval_entries == 0 {
            return Err(invalid("snapshot_interval_entries", "must be at least 1"));
        }
        if self.segment_size_bytes < SEGMENT_SIZE_MIN_BYTES {
            return Err(invalid(
                "segment_size_bytes",
                format!("must be at least {SEGMENT_SIZE_MIN_BYTES}"),
            ));
        }
        if self.payload_max_bytes == 0 || self.payload_max_bytes > ENTRY_MAX_BYTES / 2 {
            return Err(invalid(
                "payload_max_bytes",
                format!("must be between 1 and {}", ENTRY_MAX_BYTES / 2),
            ));
        }
        if self.client_frame_max_bytes <= self.payload_max_bytes {
            return Err(invalid(
                "client_frame_max_bytes",
                "must be larger than payload_max_bytes",
            ));
        }
        if !(1..=JOBS_PER_QUEUE_CEILING).contains(&self.queue_jobs_max) {
            return Err(invalid(
                "queue_jobs_max",
                format!("must be between 1 and {JOBS_PER_QUEUE_CEILING}"),
            ));
        }
        if self.client_connections_max == 0 {
            return Err(invalid("client_connections_max", "must be at least 1"));
        }
        Ok(())
    }

    /// Applies overrides on top of this configuration.
    pub fn apply(&mut self, overrides: &ConfigOverrides) -> Result<(), ConfigError> {
        let o = overrides;
        if let Some(value) = o.node_id {
            self.node_id = value;
        }
        if let Some(value) = &o.cluster {
            self.initial_cluster = parse_cluster(value)?;
        }
        if let Some(value) = &o.client_address {
            self.client_address = value.clone();
            if o.advertise_client_address.is_none() {
                self.advertise_client_address = value.clone();
            }
        }
        if let Some(value) = &o.peer_address {
            self.peer_address = value.clone();
            // A single-node default cluster follows the peer address, so
            // `raftq server --peer-address X` works without `--cluster`.
            if o.cluster.is_none() && self.initial_cluster.len() == 1 {
                self.initial_cluster = BTreeMap::from([(self.node_id, value.clone())]);
            }
        }
        if o.node_id.is_some() && o.cluster.is_none() && self.initial_cluster.len() == 1 {
            let address = self.peer_address.clone();
            self.initial_cluster = BTreeMap::from([(self.node_id, address)]);
        }
        set(&mut self.metrics_address, &o.metrics_address);
        set(
            &mut self.advertise_client_address,
            &o.advertise_client_address,
        );
        if let Some(value) = &o.data_dir {
            self.data_dir = value.clone();
        }
        set(&mut self.cluster_id, &o.cluster_id);
        if o.cluster_secret.is_some() {
            self.cluster_secret = o.cluster_secret.clone();
        }
        if o.client_secret.is_some() {
            self.client_secret = o.client_secret.clone();
        }
        set(&mut self.tick_ms, &o.tick_ms);
        set(&mut self.heartbeat_ms, &o.heartbeat_ms);
        set(&mut self.election_timeout_ms, &o.election_timeout_ms);
        set(
            &mut self.snapshot_interval_entries,
            &o.snapshot_interval_entries,
        );
        set(&mut self.segment_size_bytes, &o.segment_size_bytes);
        set(&mut self.payload_max_bytes, &o.payload_max_bytes);
        set(&mut self.queue_jobs_max, &o.queue_jobs_max);
        set(&mut self.client_frame_max_bytes, &o.client_frame_max_bytes);
        set(&mut self.client_connections_max, &o.client_connections_max);
        set(
            &mut self.metric_queue_labels_max,
            &o.metric_queue_labels_max,
        );
        set(&mut self.log_level, &o.log_level);
        Ok(())
    }

    /// Resolves a configuration from defaults, an optional file, and
    /// overrides from the environment and flags, then validates it.
    pub fn resolve(
        file: Option<&std::path::Path>,
        overrides: &ConfigOverrides,
    ) -> Result<ServerConfig, ConfigError> {
        let mut config = ServerConfig::default();
        if let Some(path) = file {
            config.apply(&ConfigOverrides::from_file(path)?)?;
        }
        config.apply(overrides)?;
        config.validate()?;
        Ok(config)
    }
}

fn set<T: Clone>(target: &mut T, value: &Option<T>) {
    if let Some(value) = value {
        *target = value.clone();
    }
}

fn check_address(setting: &'static str, value: &str) -> Result<(), ConfigError> {
    match value.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(invalid(
            setting,
            format!("{value:?} is not a host:port address"),
        )),
    }
}

/// Parses an initial cluster written as `1=127.0.0.1:7411,2=127.0.0.1:7421`.
pub fn parse_cluster(text: &str) -> Result<BTreeMap<u64, String>, ConfigError> {
    let mut members = BTreeMap::new();
    for part in text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        let (id, address) = part.split_once('=').ok_or_else(|| {
            invalid(
                "cluster",
                format!("{part:?} is not of the form id=host:port"),
            )
        })?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| invalid("cluster", format!("{id:?} is not a node id")))?;
        check_address("cluster", address.trim())?;
        if members.insert(id, address.trim().to_string()).is_some() {
            return Err(invalid("cluster", format!("node {id} is listed twice")));
        }
    }
    if members.is_empty() {
        return Err(invalid("cluster", "the cluster lists no members"));
    }
    Ok(members)
}

/// Settings that override the defaults: the flags of `raftq server`, their
/// `RAFTQ_*` environment variables, and the keys of the TOML config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ConfigOverrides {
    /// This node's id (unique in the cluster, from 1).
    #[arg(long, env = "RAFTQ_NODE_ID")]
    pub node_id: Option<u64>,
    /// Initial cluster: `1=host:peer_port,2=host:peer_port,...`.
    #[arg(long, env = "RAFTQ_CLUSTER")]
    pub cluster: Option<String>,
    /// Address for client connections.
    #[arg(long, env = "RAFTQ_CLIENT_ADDRESS")]
    pub client_address: Option<String>,
    /// Address for peer connections.
    #[arg(long, env = "RAFTQ_PEER_ADDRESS")]
    pub peer_address: Option<String>,
    /// Address of the Prometheus /metrics endpoint.
    #[arg(long, env = "RAFTQ_METRICS_ADDRESS")]
    pub metrics_address: Option<String>,
    /// Client address handed to clients in redirects (default: --client-address).
    #[arg(long, env = "RAFTQ_ADVERTISE_CLIENT_ADDRESS")]
    pub advertise_client_address: Option<String>,
    /// Data directory.
    #[arg(long, env = "RAFTQ_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Cluster id that every peer and client must name.
    #[arg(long, env = "RAFTQ_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// Secret shared by the cluster's peers.
    #[arg(long, env = "RAFTQ_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// Secret clients must prove they know (default: none).
    #[arg(long, env = "RAFTQ_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// Length of one consensus tick in milliseconds.
    #[arg(long, env = "RAFTQ_TICK_MS")]
    pub tick_ms: Option<u64>,
    /// Leader heartbeat interval in milliseconds.
    #[arg(long, env = "RAFTQ_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Base election timeout in milliseconds.
    #[arg(long, env = "RAFTQ_ELECTION_TIMEOUT_MS")]
    pub election_timeout_ms: Option<u64>,
    /// Applied entries between snapshots.
    #[arg(long, env = "RAFTQ_SNAPSHOT_INTERVAL_ENTRIES")]
    pub snapshot_interval_entries: Option<u64>,
    /// Size of each log segment file in bytes.
    #[arg(long, env = "RAFTQ_SEGMENT_SIZE_BYTES")]
    pub segment_size_bytes: Option<u64>,
    /// Largest job payload in bytes.
    #[arg(long, env = "RAFTQ_PAYLOAD_MAX_BYTES")]
    pub payload_max_bytes: Option<usize>,
    /// Most jobs in one queue, in any state.
    #[arg(long, env = "RAFTQ_QUEUE_JOBS_MAX")]
    pub queue_jobs_max: Option<u64>,
    /// Largest client frame in bytes.
    #[arg(long, env = "RAFTQ_CLIENT_FRAME_MAX_BYTES")]
    pub client_frame_max_bytes: Option<usize>,
    /// Client connections served at once.
    #[arg(long, env = "RAFTQ_CLIENT_CONNECTIONS_MAX")]
    pub client_connections_max: Option<usize>,
    /// Queue names that get their own metric label.
    #[arg(long, env = "RAFTQ_METRIC_QUEUE_LABELS_MAX")]
    pub metric_queue_labels_max: Option<usize>,
    /// Log filter (`info`, `debug`, `raftq=debug,warn`).
    #[arg(long, env = "RAFTQ_LOG_LEVEL")]
    pub log_level: Option<String>,
}

impl ConfigOverrides {
    /// Reads overrides from a TOML file; unknown keys are an error.
    pub fn from_file(path: &std::path::Path) -> Result<ConfigOverrides, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: error.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_documented_addresses() {
        let config = ServerConfig::default();
        config.validate().unwrap();
        assert_eq!(config.client_address, "127.0.0.1:7410");
        assert_eq!(config.peer_address, "127.0.0.1:7411");
        assert_eq!(config.metrics_address, "127.0.0.1:7412");
        assert_eq!(config.data_dir, PathBuf::from("./raftq-data"));
        assert_eq!(config.initial_cluster.len(), 1);
    }

    #[test]
    fn cluster_string_parses_into_members() {
        let members = parse_cluster("1=127.0.0.1:7411, 2=127.0.0.1:7421,3=localhost:7431").unwrap();
        assert_eq!(members.len(), 3);
        assert_eq!(members[&3], "localhost:7431");
    }

    #[test]
    fn malformed_cluster_strings_are_refused() {
        for text in [
            "",
            "1",
            "x=127.0.0.1:1",
            "1=nohost",
            "1=a:1,1=b:2",
            "1=host:99999",
        ] {
            assert!(parse_cluster(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn flags_override_the_file_and_the_file_overrides_defaults() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("raftq.toml");
        std::fs::write(
            &path,
            "node_id = 2\ncluster = \"1=127.0.0.1:1,2=127.0.0.1:2\"\nelection_timeout_ms = 2000\n",
        )
        .unwrap();
        let flags = ConfigOverrides {
            election_timeout_ms: Some(3000),
            ..ConfigOverrides::default()
        };
        let config = ServerConfig::resolve(Some(&path), &flags).unwrap();
        assert_eq!(config.node_id, 2);
        assert_eq!(config.election_timeout_ms, 3000);
        assert_eq!(config.initial_cluster.len(), 2);
    }

    #[test]
    fn unknown_key_in_the_file_is_an_error_naming_the_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("raftq.toml");
        std::fs::write(&path, "electon_timeout_ms = 5\n").unwrap();
        let error = ServerConfig::resolve(Some(&path), &ConfigOverrides::default()).unwrap_err();
        assert!(matches!(error, ConfigError::Parse { .. }), "{error}");
        assert!(error.to_string().contains("raftq.toml"));
    }

    #[test]
    fn election_timeout_shorter_than_three_heartbeats_is_refused() {
        let config = ServerConfig {
            heartbeat_ms: 100,
            election_timeout_ms: 200,
            ..ServerConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Invalid {
                setting: "election_timeout_ms",
                ..
            })
        ));
    }

    #[test]
    fn node_missing_from_its_cluster_is_refused() {
        let overrides = ConfigOverrides {
            node_id: Some(4),
            cluster: Some("1=127.0.0.1:1,2=127.0.0.1:2".to_string()),
            ..ConfigOverrides::default()
        };
        assert!(ServerConfig::resolve(None, &overrides).is_err());
    }

    #[test]
    fn peer_address_flag_moves_the_single_node_cluster_with_it() {
        let overrides = ConfigOverrides {
            peer_address: Some("127.0.0.1:9000".to_string()),
            ..ConfigOverrides::default()
        };
        let config = ServerConfig::resolve(None, &overrides).unwrap();
        assert_eq!(config.initial_cluster[&1], "127.0.0.1:9000");
    }

    #[test]
    fn default_queue_limits_are_the_queue_defaults() {
        // A cluster left at its defaults never proposes a change of limits.
        assert_eq!(ServerConfig::default().queue_limits(), Limits::default());
    }

    #[test]
    fn queue_limits_follow_the_settings_and_are_validated() {
        let overrides = ConfigOverrides {
            queue_jobs_max: Some(5),
            payload_max_bytes: Some(1000),
            ..ConfigOverrides::default()
        };
        let limits = ServerConfig::resolve(None, &overrides)
            .unwrap()
            .queue_limits();
        assert_eq!(limits.jobs_per_queue_max, 5);
        assert_eq!(limits.payload_max_bytes, 1000);
        assert_eq!(limits.validate(), Ok(()));
        let zero = ConfigOverrides {
            queue_jobs_max: Some(0),
            ..ConfigOverrides::default()
        };
        assert!(matches!(
            ServerConfig::resolve(None, &zero),
            Err(ConfigError::Invalid {
                setting: "queue_jobs_max",
                ..
            })
        ));
    }
}
