//! Operator commands: stats, job, dead, queue and cluster.

use anyhow::Context;
use clap::{Args, Subcommand};
use raftq::client::Client;
use raftq::queue::{DeadSelection, JobId};
use serde_json::json;

use super::ConnectArgs;
use super::output::{job_json, print_job, print_stats_table, stats_json};

/// Flags of `raftq stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// One queue instead of all.
    #[arg(long, short)]
    queue: Option<String>,
    /// Answer from any node's state without confirming with the leader.
    #[arg(long)]
    stale: bool,
}

pub async fn stats(args: StatsArgs) -> anyhow::Result<()> {
    let client = args.connect.client().await?;
    let all = client.stats(args.queue.as_deref(), args.stale).await?;
    if args.connect.json {
        let queues: Vec<_> = all
            .iter()
            .map(|(name, stats)| stats_json(name, stats))
            .collect();
        println!("{}", json!({ "queues": queues }));
    } else {
        print_stats_table(&all);
    }
    Ok(())
}

/// `raftq job ...`
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Show one job.
    Get {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The job id.
        id: u64,
        /// Answer from any node's state without confirming with the leader.
        #[arg(long)]
        stale: bool,
    },
    /// Remove a job in any state.
    Cancel {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The job id.
        id: u64,
    },
}

pub async fn job(command: JobCommand) -> anyhow::Result<()> {
    match command {
        JobCommand::Get { connect, id, stale } => {
            let client = connect.client().await?;
            match client.job(JobId(id), stale).await? {
                Some(job) if connect.json => println!("{}", job_json(&job)),
                Some(job) => print_job(&job),
                None => anyhow::bail!("job {id} not found"),
            }
        }
        JobCommand::Cancel { connect, id } => {
            let client = connect.client().await?;
            let cancelled = client.cancel(JobId(id)).await?;
            if connect.json {
                println!("{}", json!({ "id": id, "queue": cancelled.queue }));
            } else {
                println!("cancelled job {id} in {}", cancelled.queue);
            }
        }
    }
    Ok(())
}

/// `raftq dead ...`
#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// List a queue's dead jobs.
    List {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The queue.
        #[arg(long, short)]
        queue: String,
        /// Start after this job id.
        #[arg(long)]
        after: Option<u64>,
        /// Most jobs to show.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Put dead jobs back to ready: one (--id) or a whole queue's (--queue).
    Requeue {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(flatten)]
        selection: SelectionArgs,
    },
    /// Delete dead jobs: one (--id) or a whole queue's (--queue).
    Delete {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(flatten)]
        selection: SelectionArgs,
    },
}

/// One dead job or all of a queue's.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SelectionArgs {
    /// One dead job.
    #[arg(long)]
    id: Option<u64>,
    /// Every dead job of this queue.
    #[arg(long, short)]
    queue: Option<String>,
}

impl SelectionArgs {
    fn selection(&self) -> DeadSelection {
        match (&self.id, &self.queue) {
            (Some(id), _) => DeadSelection::Job(JobId(*id)),
            (None, Some(queue)) => DeadSelection::Queue(queue.clone()),
            (None, None) => unreachable!("clap requires one of --id and --queue"),
        }
    }
}

pub async fn dead(command: DeadCommand) -> anyhow::Result<()> {
    match command {
        DeadCommand::List {
            connect,
            queue,
            after,
            limit,
        } => {
            let client = connect.client().await?;
            let jobs = client.list_dead(&queue, after.map(JobId), limit).await?;
            if connect.json {
                let jobs: Vec<_> = jobs.iter().map(job_json).collect();
                println!("{}", json!({ "queue": queue, "jobs": jobs }));
            } else if jobs.is_empty() {
                println!("no dead jobs in {queue}");
            } else {
                for job in &jobs {
                    println!(
                        "{:>10}  attempts {:>3}  {}",
                        job.id.0,
                        job.attempts,
                        job.last_error.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        DeadCommand::Requeue { connect, selection } => {
            let client = connect.client().await?;
            let count = client.requeue_dead(selection.selection()).await?;
            report_count(&connect, "requeued", count);
        }
        DeadCommand::Delete { connect, selection } => {
            let client = connect.client().await?;
            let count = client.delete_dead(selection.selection()).await?;
            report_count(&connect, "deleted", count);
        }
    }
    Ok(())
}

fn report_count(connect: &ConnectArgs, verb: &str, count: u64) {
    if connect.json {
        println!("{}", json!({ verb: count }));
    } else {
        println!(
            "{verb} {count} dead job{}",
            if count == 1 { "" } else { "s" }
        );
    }
}

/// `raftq queue ...`
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Stop claims from taking the queue's jobs (enqueues still land).
    Pause {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The queue.
        queue: String,
    },
    /// Undo a pause.
    Resume {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The queue.
        queue: String,
    },
    /// Remove the queue's ready and scheduled jobs.
    Purge {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The queue.
        queue: String,
    },
}

pub async fn queue(command: QueueCommand) -> anyhow::Result<()> {
    match command {
        QueueCommand::Pause { connect, queue } => {
            connect.client().await?.pause(&queue).await?;
            done(&connect, &queue, "paused");
        }
        QueueCommand::Resume { connect, queue } => {
            connect.client().await?.resume(&queue).await?;
            done(&connect, &queue, "resumed");
        }
        QueueCommand::Purge { connect, queue } => {
            let count = connect.client().await?.purge(&queue).await?;
            if connect.json {
                println!("{}", json!({ "queue": queue, "purged": count }));
            } else {
                println!("purged {count} jobs from {queue}");
            }
        }
    }
    Ok(())
}

fn done(connect: &ConnectArgs, queue: &str, what: &str) {
    if connect.json {
        println!("{}", json!({ "queue": queue, what: true }));
    } else {
        println!("{what} {queue}");
    }
}

/// `raftq cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show every reachable node's view of the cluster.
    Status {
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Hand leadership to another voter.
    TransferLeader {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The new leader's node id.
        to: u64,
    },
    /// Add a non-voting member (start it with `raftq server --join` first).
    AddLearner {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The new member's node id.
        id: u64,
        /// Its peer address (host:port).
        peer_address: String,
    },
    /// Make a caught-up learner a voter.
    Promote {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The learner's node id.
        id: u64,
    },
    /// Remove a member.
    Remove {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The member's node id.
        id: u64,
    },
}

pub async fn cluster(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status { connect } => status(connect).await,
        ClusterCommand::TransferLeader { connect, to } => {
            connect.client().await?.transfer_leader(to).await?;
            println!("leadership transfer to node {to} started");
            Ok(())
        }
        ClusterCommand::AddLearner {
            connect,
            id,
            peer_address,
        } => {
            connect
                .client()
                .await?
                .add_learner(id, &peer_address)
                .await?;
            println!("node {id} added as a learner");
            Ok(())
        }
        ClusterCommand::Promote { connect, id } => {
            connect.client().await?.promote(id).await?;
            println!("node {id} promoted to voter");
            Ok(())
        }
        ClusterCommand::Remove { connect, id } => {
            connect.client().await?.remove(id).await?;
            println!("node {id} removed");
            Ok(())
        }
    }
}

async fn status(connect: ConnectArgs) -> anyhow::Result<()> {
    let settings = connect.options().connect;
    let mut rows = Vec::new();
    for address in &connect.servers {
        let status = Client::node_status(address, &settings).await;
        rows.push((address.clone(), status));
    }
    if rows.iter().all(|(_, status)| status.is_err()) {
        let (address, error) = rows.pop().expect("at least one server");
        return Err(error.unwrap_err())
            .with_context(|| format!("no node answered (last tried {address})"));
    }
    if connect.json {
        let nodes: Vec<_> = rows
            .iter()
            .map(|(address, status)| match status {
                Ok(status) => json!({
                    "address": address,
                    "node_id": status.node_id,
                    "role": status.role,
                    "term": status.term,
                    "leader_id": status.leader_id,
                    "commit_index": status.commit_index,
                    "applied_index": status.applied_index,
                    "snapshot_index": status.snapshot_index,
                    "voters": status.voters,
                    "learners": status.learners,
                    "match_indexes": status.match_indexes,
                }),
                Err(error) => json!({ "address": address, "error": error.to_string() }),
            })
            .collect();
        println!("{}", json!({ "nodes": nodes }));
        return Ok(());
    }
    println!(
        "{:<22} {:>5} {:<14} {:>6} {:>7} {:>10} {:>10} {:>10}  MEMBERS",
        "ADDRESS", "NODE", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "SNAPSHOT"
    );
    for (address, status) in rows {
        match status {
            Ok(status) => println!(
                "{:<22} {:>5} {:<14} {:>6} {:>7} {:>10} {:>10} {:>10}  voters {:?} learners {:?}",
                address,
                status.node_id,
                status.role,
                status.term,
                status
                    .leader_id
                    .map(|id| id.to_string())
                    .unwrap_or_else(|| "-".to_string()),
                status.commit_index,
                status.applied_index,
                status.snapshot_index,
                status.voters,
                status.learners
            ),
            Err(error) => println!("{address:<22} unreachable: {error}"),
        }
    }
    Ok(())
}
