//! Every metric raftq exports: its name, kind, help text, labels and
//! histogram buckets, and the Prometheus `/metrics` endpoint.
//!
//! Names follow Prometheus conventions: a `raftq_` prefix, base units
//! (`_seconds`, `_bytes`), `_total` on counters. Labels are bounded: queue
//! names only up to a configured number of distinct names (the rest share
//! the label `other`), peer ids only as many as there are members, and never
//! a job id or a client address.
//!
//! Recording goes through the `metrics` facade; until [`install`] runs (as
//! in tests that start many nodes in one process), every call is a no-op.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// The kind of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution with the buckets given in its definition.
    Histogram,
}

/// The definition of one metric.
#[derive(Debug, Clone, Copy)]
pub struct Definition {
    /// Its full name.
    pub name: &'static str,
    /// Its kind.
    pub kind: Kind,
    /// Its help text.
    pub help: &'static str,
    /// Its label names.
    pub labels: &'static [&'static str],
    /// Histogram buckets (upper bounds); empty for counters and gauges.
    pub buckets: &'static [f64],
}

/// Latency buckets from 50 µs to 10 s, for fsyncs, appends and requests.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];
/// Buckets for how long jobs wait: from 1 ms to a day.
pub const JOB_WAIT_BUCKETS_SECONDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
    86400.0,
];
/// Buckets for counts per batch: records per fsync, entries per message.
pub const BATCH_COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0, 16384.0,
];
/// Buckets for bytes per batch.
pub const BATCH_BYTES_BUCKETS: &[f64] = &[
    256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
];

macro_rules! metrics_table {
    ($( $constant:ident = $name:literal, $kind:ident, [$($label:literal),*], $buckets:expr, $help:literal; )*) => {
        $(
            #[doc = $help]
            pub const $constant: &str = $name;
        )*
        /// Every metric raftq exports.
        pub const DEFINITIONS: &[Definition] = &[
            $( Definition {
                name: $name,
                kind: Kind::$kind,
                help: $help,
                labels: &[$($label),*],
                buckets: $buckets,
            }, )*
        ];
    };
}

const NONE: &[f64] = &[];

metrics_table! {
    RAFT_ROLE = "raftq_raft_role", Gauge, ["role"], NONE,
        "1 for the role this node is in (follower, pre_candidate, candidate, leader), 0 for the others.";
    RAFT_TERM = "raftq_raft_term", Gauge, [], NONE,
        "The node's current Raft term.";
    RAFT_LEADER_ID = "raftq_raft_leader_id", Gauge, [], NONE,
        "The id of the leader this node knows of, 0 when none.";
    RAFT_COMMIT_INDEX = "raftq_raft_commit_index", Gauge, [], NONE,
        "Highest log index known to be committed.";
    RAFT_APPLIED_INDEX = "raftq_raft_applied_index", Gauge, [], NONE,
        "Highest log index applied to the state machine.";
    RAFT_SNAPSHOT_INDEX = "raftq_raft_snapshot_index", Gauge, [], NONE,
        "Log index of the latest snapshot.";
    RAFT_FOLLOWER_LAG = "raftq_raft_follower_lag_entries", Gauge, ["peer"], NONE,
        "On the leader: entries between the leader's last index and each follower's match index.";
    RAFT_LEADER_ELECTIONS = "raftq_raft_leader_elections_total", Counter, [], NONE,
        "Times this node became leader.";
    RAFT_LEADER_CHANGES = "raftq_raft_leader_changes_total", Counter, [], NONE,
        "Times the leader this node knows of changed.";
    RAFT_PROPOSALS = "raftq_raft_proposals_total", Counter, [], NONE,
        "Entries this node proposed as leader (each may carry many client commands).";
    RAFT_PROPOSAL_FAILURES = "raftq_raft_proposal_failures_total", Counter, ["reason"], NONE,
        "Client commands that failed before they were applied, by reason.";
    RAFT_APPEND_SENT = "raftq_raft_append_entries_sent_total", Counter, [], NONE,
        "AppendEntries messages sent.";
    RAFT_APPEND_RECEIVED = "raftq_raft_append_entries_received_total", Counter, [], NONE,
        "AppendEntries messages received.";
    RAFT_ENTRIES_PER_APPEND = "raftq_raft_entries_per_append", Histogram, [], BATCH_COUNT_BUCKETS,
        "Entries carried by each AppendEntries message sent.";
    RAFT_SNAPSHOTS_TAKEN = "raftq_raft_snapshots_taken_total", Counter, [], NONE,
        "Snapshots this node took of its state machine.";
    RAFT_SNAPSHOTS_SENT = "raftq_raft_snapshots_sent_total", Counter, [], NONE,
        "Snapshots this node started sending to followers.";
    RAFT_SNAPSHOTS_INSTALLED = "raftq_raft_snapshots_installed_total", Counter, [], NONE,
        "Snapshots received from a leader and installed.";
    WAL_APPEND_SECONDS = "raftq_wal_append_duration_seconds", Histogram, [], LATENCY_BUCKETS_SECONDS,
        "Time to write one batch of entries into the write-ahead log (not including the sync).";
    WAL_FSYNC_SECONDS = "raftq_wal_fsync_duration_seconds", Histogram, [], LATENCY_BUCKETS_SECONDS,
        "Time of each sync of the write-ahead log.";
    WAL_FSYNC_BATCH_RECORDS = "raftq_wal_fsync_batch_records", Histogram, [], BATCH_COUNT_BUCKETS,
        "Records made durable by one sync.";
    WAL_FSYNC_BATCH_BYTES = "raftq_wal_fsync_batch_bytes", Histogram, [], BATCH_BYTES_BUCKETS,
        "Bytes of records made durable by one sync.";
    WAL_SEGMENTS = "raftq_wal_segments", Gauge, [], NONE,
        "Segment files of the write-ahead log on disk, the preallocated spare included.";
    WAL_SIZE_BYTES = "raftq_wal_size_bytes", Gauge, [], NONE,
        "Bytes of the write-ahead log's segment files on disk (preallocated, so each counts in full).";
    WAL_RECOVERY_SECONDS = "raftq_wal_recovery_duration_seconds", Gauge, [], NONE,
        "Time the node took at start to recover its write-ahead log and snapshot and restore the state machine.";
    QUEUE_ENQUEUED = "raftq_queue_enqueued_total", Counter, ["queue"], NONE,
        "Jobs enqueued (replicated total; every node reports the same).";
    QUEUE_CLAIMED = "raftq_queue_claimed_total", Counter, ["queue"], NONE,
        "Deliveries of jobs to workers.";
    QUEUE_ACKED = "raftq_queue_acked_total", Counter, ["queue"], NONE,
        "Jobs acked.";
    QUEUE_NACKED = "raftq_queue_nacked_total", Counter, ["queue"], NONE,
        "Nacks accepted.";
    QUEUE_EXPIRED = "raftq_queue_expired_leases_total", Counter, ["queue"], NONE,
        "Leases that expired.";
    QUEUE_DEAD_LETTERED = "raftq_queue_dead_lettered_total", Counter, ["queue"], NONE,
        "Jobs moved to dead.";
    QUEUE_REQUEUED = "raftq_queue_requeued_total", Counter, ["queue"], NONE,
        "Dead jobs put back to ready.";
    QUEUE_JOBS = "raftq_queue_jobs", Gauge, ["queue", "state"], NONE,
        "Jobs by queue and state (ready, scheduled, leased, dead).";
    QUEUE_OLDEST_READY_AGE = "raftq_queue_oldest_ready_age_seconds", Gauge, ["queue"], NONE,
        "How long the longest-waiting ready job has been ready; 0 when none is.";
    QUEUE_ENQUEUE_TO_CLAIM = "raftq_queue_enqueue_to_claim_seconds", Histogram, ["queue"], JOB_WAIT_BUCKETS_SECONDS,
        "Time from enqueue to each claim of a job, recorded by the leader.";
    QUEUE_CLAIM_TO_ACK = "raftq_queue_claim_to_ack_seconds", Histogram, ["queue"], JOB_WAIT_BUCKETS_SECONDS,
        "Time from the claim of a job to its ack, recorded by the leader.";
    QUEUE_LONG_POLL_WAITERS = "raftq_queue_long_poll_waiters", Gauge, [], NONE,
        "Claims parked on this node waiting for jobs.";
    CONNECTIONS_OPEN = "raftq_connections_open", Gauge, ["kind"], NONE,
        "Open connections, by kind (client, peer_inbound, peer_outbound).";
    FRAMES = "raftq_frames_total", Counter, ["direction", "kind"], NONE,
        "Frames sent (out) and received (in), by frame kind.";
    FRAME_BYTES = "raftq_frame_bytes_total", Counter, ["direction", "kind"], NONE,
        "Bytes of frames sent and received, headers included, by frame kind.";
    DECODE_ERRORS = "raftq_decode_errors_total", Counter, ["kind"], NONE,
        "Bad frames received, by error kind.";
    CLIENT_REQUESTS = "raftq_client_requests_total", Counter, ["type", "outcome"], NONE,
        "Client requests by type and outcome (ok, or the error's class).";
    CLIENT_REQUEST_SECONDS = "raftq_client_request_duration_seconds", Histogram, ["type"], LATENCY_BUCKETS_SECONDS,
        "Time to answer a client request, by type (long-poll claims include their wait).";
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {address}: {reason}")]
pub struct MetricsError {
    address: String,
    reason: String,
}

/// Installs the global recorder and serves `/metrics` on `address`. Must run
/// inside a tokio runtime; call it once per process.
pub fn install(address: &str) -> Result<(), MetricsError> {
    let error = |reason: String| MetricsError {
        address: address.to_string(),
        reason,
    };
    let socket: SocketAddr = address
        .parse()
        .map_err(|parse_error: std::net::AddrParseError| error(parse_error.to_string()))?;
    let mut builder = PrometheusBuilder::new().with_http_listener(socket);
    for definition in DEFINITIONS
        .iter()
        .filter(|definition| definition.kind == Kind::Histogram)
    {
        builder = builder
            .set_buckets_for_metric(
                Matcher::Full(definition.name.to_string()),
                definition.buckets,
            )
            .map_err(|build_error| error(build_error.to_string()))?;
    }
    let (recorder, exporter) = builder
        .build()
        .map_err(|build_error| error(build_error.to_string()))?;
    metrics::set_global_recorder(recorder).map_err(|set_error| error(set_error.to_string()))?;
    tokio::spawn(exporter);
    describe();
    register_at_zero();
    Ok(())
}

/// Registers, at zero, every series whose labels are known before anything
/// happens: each metric without labels, and decode errors and proposal
/// failures under each of their label values. A dashboard then shows 0
/// rather than no data for what has not happened yet, and `rate()` has a
/// starting point when it first does.
fn register_at_zero() {
    for definition in DEFINITIONS
        .iter()
        .filter(|definition| definition.labels.is_empty())
    {
        match definition.kind {
            Kind::Counter => metrics::counter!(definition.name).increment(0),
            Kind::Gauge => metrics::gauge!(definition.name).increment(0.0),
            Kind::Histogram => drop(metrics::histogram!(definition.name)),
        }
    }
    for kind in crate::protocol::FrameError::KIND_NAMES {
        metrics::counter!(DECODE_ERRORS, "kind" => *kind).increment(0);
    }
    for reason in crate::node::NodeError::REASON_NAMES {
        metrics::counter!(RAFT_PROPOSAL_FAILURES, "reason" => *reason).increment(0);
    }
}

/// Registers the help text of every metric with the installed recorder.
fn describe() {
    for definition in DEFINITIONS {
        let help = definition.help;
        match definition.kind {
            Kind::Counter => metrics::describe_counter!(definition.name, help),
            Kind::Gauge => metrics::describe_gauge!(definition.name, help),
            Kind::Histogram => metrics::describe_histogram!(definition.name, help),
        }
    }
}

/// Counts one frame sent (`"out"`) or received (`"in"`) and its bytes.
pub fn count_frame(
    direction: &'static str,
    kind: crate::protocol::FrameKind,
    payload_bytes: usize,
) {
    FrameMeter::new(direction, kind).add(payload_bytes);
}

/// The frame counters of one direction, with the handles of the kind a
/// connection carries most looked up once: counting such a frame is two
/// atomic adds instead of two registry lookups. Other kinds (error frames)
/// are looked up as they come.
#[derive(Clone)]
pub struct FrameMeter {
    direction: &'static str,
    kind: crate::protocol::FrameKind,
    frames: metrics::Counter,
    bytes: metrics::Counter,
}

impl FrameMeter {
    /// The counters of frames sent (`"out"`) or received (`"in"`), with
    /// those of `kind` at hand.
    pub fn new(direction: &'static str, kind: crate::protocol::FrameKind) -> FrameMeter {
        let name = kind.name();
        FrameMeter {
            direction,
            kind,
            frames: metrics::counter!(FRAMES, "direction" => direction, "kind" => name),
            bytes: metrics::counter!(FRAME_BYTES, "direction" => direction, "kind" => name),
        }
    }

    /// Counts one frame of `kind` with `payload_bytes` of payload.
    pub fn count(&self, kind: crate::protocol::FrameKind, payload_bytes: usize) {
        if kind == self.kind {
            self.add(payload_bytes);
        } else {
            count_frame(self.direction, kind, payload_bytes);
        }
    }

    fn add(&self, payload_bytes: usize) {
        self.frames.increment(1);
        self.bytes
            .increment((payload_bytes + crate::protocol::HEADER_SIZE_BYTES) as u64);
    }
}

/// `raftq_client_requests_total` and `raftq_client_request_duration_seconds`
/// handles of one connection, each looked up the first time its labels occur.
#[derive(Default)]
pub struct RequestMeters {
    handles: Mutex<RequestHandles>,
}

#[derive(Default)]
struct RequestHandles {
    counters: HashMap<(&'static str, &'static str), metrics::Counter>,
    durations: HashMap<&'static str, metrics::Histogram>,
}

impl RequestMeters {
    /// Records one answered request of `request_type` with its outcome class.
    pub fn record(&self, request_type: &'static str, outcome: &'static str, seconds: f64) {
        let mut handles = self.handles.lock().expect("request meters lock");
        handles
            .durations
            .entry(request_type)
            .or_insert_with(|| metrics::histogram!(CLIENT_REQUEST_SECONDS, "type" => request_type))
            .record(seconds);
        handles
            .counters
            .entry((request_type, outcome))
            .or_insert_with(
                || metrics::counter!(CLIENT_REQUESTS, "type" => request_type, "outcome" => outcome),
            )
            .increment(1);
    }
}

/// Keeps `raftq_connections_open{kind}` up while it lives.
#[derive(Debug)]
pub struct ConnectionGauge(&'static str);

impl ConnectionGauge {
    /// Counts one more open connection of `kind` until dropped.
    pub fn open(kind: &'static str) -> ConnectionGauge {
        metrics::gauge!(CONNECTIONS_OPEN, "kind" => kind).increment(1.0);
        ConnectionGauge(kind)
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        metrics::gauge!(CONNECTIONS_OPEN, "kind" => self.0).decrement(1.0);
    }
}

/// Maps queue names to metric labels: the first `max` distinct names keep
/// their own label, later ones share `other`, so a flood of queue names
/// cannot blow up the number of series.
#[derive(Debug)]
pub struct QueueLabels {
    max: usize,
    assigned: Mutex<BTreeSet<String>>,
}

/// The shared label of queues beyond the cap.
pub const OTHER_QUEUE_LABEL: &str = "other";

impl QueueLabels {
    /// Labels for at most `max` distinct queue names.
    pub fn new(max: usize) -> QueueLabels {
        QueueLabels {
            max,
            assigned: Mutex::new(BTreeSet::new()),
        }
    }

    /// The label for `queue`.
    pub fn label(&self, queue: &str) -> String {
        let mut assigned = self.assigned.lock().expect("queue labels lock");
        if assigned.contains(queue) {
            return queue.to_string();
        }
        if assigned.len() < self.max {
            assigned.insert(queue.to_string());
            return queue.to_string();
        }
        OTHER_QUEUE_LABEL.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_follows_the_naming_conventions() {
        let mut names = std::collections::BTreeSet::new();
        for definition in DEFINITIONS {
            assert!(
                names.insert(definition.name),
                "{} defined twice",
                definition.name
            );
            assert!(definition.name.starts_with("raftq_"), "{}", definition.name);
            assert!(!definition.help.is_empty());
            match definition.kind {
                Kind::Counter => {
                    assert!(definition.name.ends_with("_total"), "{}", definition.name)
                }
                Kind::Gauge | Kind::Histogram => {
                    assert!(!definition.name.ends_with("_total"), "{}", definition.name)
                }
            }
            if definition.kind == Kind::Histogram {
                assert!(
                    !definition.buckets.is_empty(),
                    "{} has no buckets",
                    definition.name
                );
                assert!(definition.buckets.windows(2).all(|pair| pair[0] < pair[1]));
            } else {
                assert!(definition.buckets.is_empty());
            }
            for label in definition.labels {
                assert!(
                    !["job", "job_id", "address", "client"].contains(label),
                    "unbounded label {label}"
                );
            }
        }
    }

    #[test]
    fn queue_labels_beyond_the_cap_share_other() {
        let labels = QueueLabels::new(2);
        assert_eq!(labels.label("a"), "a");
        assert_eq!(labels.label("b"), "b");
        assert_eq!(labels.label("c"), OTHER_QUEUE_LABEL);
        assert_eq!(labels.label("a"), "a");
    }
}
