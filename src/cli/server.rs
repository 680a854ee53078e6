//! `raftq server`: one node of a cluster.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use raftq::config::{ConfigOverrides, ServerConfig};
use raftq::node::clock::SystemClock;
use raftq::node::net::TokioNetwork;
use raftq::node::{Node, NodeOptions, Seams};
use raftq::queue::JobQueue;
use raftq::server::{self, ServerSettings};
use raftq::service::QueueService;
use raftq_storage::StdVfs;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Flags of `raftq server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// A TOML file with settings (the same names as the flags, with underscores).
    #[arg(long, env = "RAFTQ_CONFIG")]
    config: Option<PathBuf>,
    /// Start with an empty log and wait to be added to an existing cluster
    /// (`raftq cluster add-learner`), instead of founding one.
    #[arg(long)]
    join: bool,
    #[command(flatten)]
    overrides: ConfigOverrides,
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = ServerConfig::resolve(args.config.as_deref(), &args.overrides)?;
    init_tracing(&config.log_level)?;
    if config.cluster_secret.is_none() {
        warn!(
            "no cluster secret is set: any process that can reach {} can join the cluster; \
             set --cluster-secret outside of local development",
            config.peer_address
        );
    }
    let shutdown = CancellationToken::new();
    let seams = Seams {
        network: Arc::new(TokioNetwork),
        clock: Arc::new(SystemClock),
        vfs: Arc::new(StdVfs::new()),
    };
    let options = NodeOptions::from_server_config(&config, args.join);
    let (node, driver) = Node::<JobQueue>::start(options, seams.clone(), shutdown.clone())
        .await
        .with_context(|| format!("cannot start node {}", config.node_id))?;
    let service = Arc::new(QueueService::new(
        node.clone(),
        seams.clock.clone(),
        shutdown.clone(),
    ));
    let listener = seams
        .network
        .bind(&config.client_address)
        .await
        .with_context(|| format!("cannot listen for clients on {}", config.client_address))?;
    let settings = ServerSettings {
        node_id: config.node_id,
        cluster_id: config.cluster_id.clone(),
        client_secret: config.client_secret.clone().map(String::into_bytes),
        frame_max_bytes: config.client_frame_max_bytes,
        connections_max: config.client_connections_max,
    };
    let clients = tokio::spawn(server::serve(listener, service, settings, shutdown.clone()));
    info!(
        node_id = config.node_id,
        clients = %config.client_address,
        peers = %node.peer_address(),
        data_dir = %config.data_dir.display(),
        "raftq node started"
    );
    let stop = shutdown.clone();
    tokio::spawn(async move {
        super::shutdown_signal().await;
        info!("shutting down");
        stop.cancel();
    });
    let outcome = driver.await;
    shutdown.cancel();
    let _ = clients.await;
    match outcome {
        Ok(Ok(())) => {
            info!("stopped cleanly");
            Ok(())
        }
        Ok(Err(failure)) => {
            error!(%failure, "node stopped after a fatal error");
            anyhow::bail!("node stopped after a fatal error: {failure}")
        }
        Err(join_error) => anyhow::bail!("the node's driver crashed: {join_error}"),
    }
}

fn init_tracing(filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("invalid log level {filter:?}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init()
        .map_err(|error| anyhow::anyhow!("cannot set up logging: {error}"))
}
