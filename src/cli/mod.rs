//! The `raftq` subcommands.

mod admin;
mod bench;
mod dev;
mod enqueue;
mod local_cluster;
mod output;
mod server;
mod work;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use raftq::client::{Client, ClientOptions};
use raftq::config::DEFAULT_CLUSTER_ID;

/// raftq: a durable background job queue replicated with Raft.
#[derive(Debug, Parser)]
#[command(name = "raftq", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one raftq node (a single-node cluster with no flags).
    Server(server::ServerArgs),
    /// Run a local 3-node cluster as child processes, for trying things out.
    Dev(dev::DevArgs),
    /// Enqueue a job.
    Enqueue(enqueue::EnqueueArgs),
    /// Process jobs by running a command per job.
    Work(work::WorkArgs),
    /// Show queue statistics.
    Stats(admin::StatsArgs),
    /// Inspect jobs.
    #[command(subcommand)]
    Job(admin::JobCommand),
    /// Inspect and handle dead jobs.
    #[command(subcommand)]
    Dead(admin::DeadCommand),
    /// Pause, resume or purge a queue.
    #[command(subcommand)]
    Queue(admin::QueueCommand),
    /// Inspect and change the cluster.
    #[command(subcommand)]
    Cluster(admin::ClusterCommand),
    /// Measure throughput and latency against a cluster (or a local one).
    Bench(bench::BenchArgs),
}

/// How commands reach the cluster.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Client addresses of some nodes, comma-separated.
    #[arg(
        long,
        env = "RAFTQ_SERVERS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7410,127.0.0.1:7420,127.0.0.1:7430"
    )]
    servers: Vec<String>,
    /// The cluster id.
    #[arg(long, env = "RAFTQ_CLUSTER_ID", default_value = DEFAULT_CLUSTER_ID)]
    cluster_id: String,
    /// The client secret, if the cluster requires one.
    #[arg(long, env = "RAFTQ_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// How long a command keeps retrying while no leader is reachable.
    #[arg(long, default_value_t = 15_000)]
    retry_deadline_ms: u64,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

impl ConnectArgs {
    fn options(&self) -> ClientOptions {
        let mut options = ClientOptions::new(self.servers.iter().cloned());
        options.connect.cluster_id = self.cluster_id.clone();
        options.connect.client_secret = self.client_secret.clone().map(String::into_bytes);
        options.connect.client_name = format!("raftq-cli@{}", std::process::id());
        options.retry_deadline = Duration::from_millis(self.retry_deadline_ms);
        options
    }

    async fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::connect(self.options()).await?)
    }
}

/// Parses the command line and runs the command; errors are one clear line
/// on stderr and a non-zero exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => server::run(args).await,
            Command::Dev(args) => dev::run(args).await,
            Command::Enqueue(args) => enqueue::run(args).await,
            Command::Work(args) => work::run(args).await,
            Command::Stats(args) => admin::stats(args).await,
            Command::Job(command) => admin::job(command).await,
            Command::Dead(command) => admin::dead(command).await,
            Command::Queue(command) => admin::queue(command).await,
            Command::Cluster(command) => admin::cluster(command).await,
            Command::Bench(args) => bench::run(args).await,
        }
    });
    // Background tasks (connections, a node being shut down) must not hold
    // the process open once the command is done.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = match signal(SignalKind::terminate()) {
            Ok(terminate) => terminate,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
