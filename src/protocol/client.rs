//! The client protocol: requests and responses carried in `Request` and
//! `Response` frames after the handshake.
//!
//! A connection carries many requests at once; each has an id chosen by the
//! client, and its response carries the same id. Responses may arrive in any
//! order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::queue::{
    Ack, Claim, DeadSelection, Enqueue, Extend, JobId, JobInfo, Nack, Outcome, QueueStats,
};

/// A client request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the client; echoed in the response.
    pub id: u64,
    /// What is asked.
    pub body: RequestBody,
}

/// What a client can ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestBody {
    /// Add a batch of jobs.
    Enqueue(Enqueue),
    /// Lease jobs, waiting up to `wait_ms` for one to become ready.
    Claim {
        /// What to claim.
        claim: Claim,
        /// Longest time to wait when nothing is ready (0: answer at once).
        wait_ms: u64,
    },
    /// Finish a leased job.
    Ack(Ack),
    /// Finish several leased jobs.
    AckBatch(Vec<Ack>),
    /// Report a failed attempt.
    Nack(Nack),
    /// Extend a lease.
    Extend(Extend),
    /// Remove a job in any state.
    Cancel(JobId),
    /// Put dead jobs back to ready.
    RequeueDead(DeadSelection),
    /// Remove dead jobs.
    DeleteDead(DeadSelection),
    /// Stop claims from taking a queue's jobs.
    Pause(String),
    /// Undo a pause.
    Resume(String),
    /// Remove a queue's ready and scheduled jobs.
    Purge(String),
    /// Statistics of one queue, or of all.
    Stats {
        /// One queue, or all when `None`.
        queue: Option<String>,
        /// Answer from this node's state without confirming leadership.
        stale_ok: bool,
    },
    /// One job's details.
    GetJob {
        /// The job.
        id: JobId,
        /// Answer from this node's state without confirming leadership.
        stale_ok: bool,
    },
    /// A page of a queue's dead jobs, in id order.
    ListDead {
        /// The queue.
        queue: String,
        /// Start after this id.
        after: Option<JobId>,
        /// Page size, at most [`LIST_PAGE_MAX`].
        limit: u32,
        /// Answer from this node's state without confirming leadership.
        stale_ok: bool,
    },
    /// The cluster as this node sees it.
    ClusterStatus,
    /// Hand leadership to another voter.
    TransferLeader {
        /// The new leader.
        to: u64,
    },
    /// Add a non-voting member.
    AddLearner {
        /// Its node id.
        id: u64,
        /// Its peer address.
        peer_address: String,
    },
    /// Make a caught-up learner a voter.
    Promote {
        /// The learner.
        id: u64,
    },
    /// Remove a member.
    Remove {
        /// The member.
        id: u64,
    },
    /// The client no longer waits for the answer to the long-poll claim
    /// sent on this connection as `request`: if it is still parked it ends
    /// without leasing anything. Sent when a caller drops a waiting claim
    /// (a worker shutting down), so the claim cannot take a job nobody will
    /// work on. The only request that gets no response.
    StopWaiting {
        /// The id of the claim's request.
        request: u64,
    },
}

impl RequestBody {
    /// A short stable name for logs and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            RequestBody::Enqueue(_) => "enqueue",
            RequestBody::Claim { .. } => "claim",
            RequestBody::Ack(_) => "ack",
            RequestBody::AckBatch(_) => "ack_batch",
            RequestBody::Nack(_) => "nack",
            RequestBody::Extend(_) => "extend",
            RequestBody::Cancel(_) => "cancel",
            RequestBody::RequeueDead(_) => "requeue_dead",
            RequestBody::DeleteDead(_) => "delete_dead",
            RequestBody::Pause(_) => "pause",
            RequestBody::Resume(_) => "resume",
            RequestBody::Purge(_) => "purge",
            RequestBody::Stats { .. } => "stats",
            RequestBody::GetJob { .. } => "get_job",
            RequestBody::ListDead { .. } => "list_dead",
            RequestBody::ClusterStatus => "cluster_status",
            RequestBody::TransferLeader { .. } => "transfer_leader",
            RequestBody::AddLearner { .. } => "add_learner",
            RequestBody::Promote { .. } => "promote",
            RequestBody::Remove { .. } => "remove",
            RequestBody::StopWaiting { .. } => "stop_waiting",
        }
    }
}

/// Largest page of a dead-letter listing.
pub const LIST_PAGE_MAX: u32 = 1_000;

/// A response to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The request's id.
    pub id: u64,
    /// The answer, or why there is none.
    pub body: Result<ResponseBody, ServiceError>,
}

/// What a request produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseBody {
    /// The outcome of a replicated command (queue errors are inside it).
    Outcome(Outcome),
    /// Statistics by queue name.
    Stats(Vec<(String, QueueStats)>),
    /// A job, or `None` if there is no such job.
    Job(Option<JobInfo>),
    /// A page of dead jobs.
    Dead(Vec<JobInfo>),
    /// The cluster's state.
    ClusterStatus(ClusterStatus),
    /// An admin request was carried out.
    Done,
}

/// The cluster as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The answering node.
    pub node_id: u64,
    /// Its role: "leader", "follower", "candidate" or "pre-candidate".
    pub role: String,
    /// Its term.
    pub term: u64,
    /// The leader it knows of.
    pub leader_id: Option<u64>,
    /// The leader's client address.
    pub leader_address: Option<String>,
    /// Highest committed index.
    pub commit_index: u64,
    /// Highest applied index.
    pub applied_index: u64,
    /// Index of the latest snapshot.
    pub snapshot_index: u64,
    /// Voting members.
    pub voters: Vec<u64>,
    /// Non-voting members.
    pub learners: Vec<u64>,
    /// Replicated index of each member (filled in by the leader).
    pub match_indexes: BTreeMap<u64, u64>,
    /// Peer addresses known to the node.
    pub peer_addresses: BTreeMap<u64, String>,
    /// Client addresses of the members the node has heard from, itself
    /// included; clients add them to their seeds.
    pub client_addresses: BTreeMap<u64, String>,
}

/// Why the service could not answer. Errors of the job queue itself (a
/// stale token, a bad queue name) are inside [`Outcome`] instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ServiceError {
    /// This node does not lead: ask the leader.
    #[error("not the leader; the leader is {leader_id:?} at {leader_address:?}")]
    NotLeader {
        /// The leader's id, if known.
        leader_id: Option<u64>,
        /// The leader's client address, if known.
        leader_address: Option<String>,
    },
    /// The command may or may not have been applied (leadership changed
    /// while it was in flight).
    #[error("the outcome is unknown: leadership changed while the request was in flight")]
    OutcomeUnknown,
    /// The command was definitely not applied; retrying is safe.
    #[error("the request was dropped before it was committed: {0}")]
    Dropped(String),
    /// The node is overloaded; retry shortly.
    #[error("the node is overloaded: {0}")]
    Overloaded(String),
    /// The request is invalid.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A membership change or leadership transfer was refused.
    #[error("refused: {0}")]
    Refused(String),
    /// A read of something that does not exist, such as an unknown queue.
    #[error("{0}")]
    NotFound(String),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The node stopped after a fatal error.
    #[error("the node has failed: {0}")]
    Failed(String),
}

impl ServiceError {
    /// A short stable name for metric labels.
    pub fn class(&self) -> &'static str {
        match self {
            ServiceError::NotLeader { .. } => "not_leader",
            ServiceError::OutcomeUnknown => "outcome_unknown",
            ServiceError::Dropped(_) => "dropped",
            ServiceError::Overloaded(_) => "overloaded",
            ServiceError::Invalid(_) => "invalid",
            ServiceError::Refused(_) => "refused",
            ServiceError::NotFound(_) => "not_found",
            ServiceError::ShuttingDown => "shutting_down",
            ServiceError::Failed(_) => "failed",
        }
    }

    /// Whether the same request may be sent again (to the leader, after a
    /// pause) without risk of applying it twice.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ServiceError::NotLeader { .. }
                | ServiceError::Dropped(_)
                | ServiceError::Overloaded(_)
                | ServiceError::ShuttingDown
        )
    }
}
