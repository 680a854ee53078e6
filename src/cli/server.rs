//! `raftq server`: one node of a cluster.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use raftq::config::{ConfigOverrides, ServerConfig};
use raftq::node::clock::SystemClock;
use raftq::node::entropy::OsEntropy;
use raftq::node::net::TokioNetwork;
use raftq::node::{NodeOptions, Seams};
use raftq::server;
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
    raftq::metrics::install(&config.metrics_address)?;
    let shutdown = CancellationToken::new();
    let seams = Seams {
        network: Arc::new(TokioNetwork),
        clock: Arc::new(SystemClock),
        vfs: Arc::new(StdVfs::new()),
        entropy: Arc::new(OsEntropy),
    };
    let options = NodeOptions::from_server_config(&config, args.join);
    let running = server::start(&config, options, seams, shutdown.clone())
        .await
        .with_context(|| format!("cannot start node {}", config.node_id))?;
    info!(
        node_id = config.node_id,
        clients = %running.client_address,
        peers = %running.node.peer_address(),
        data_dir = %config.data_dir.display(),
        "raftq node started"
    );
    let stop = shutdown.clone();
    tokio::spawn(async move {
        super::shutdown_signal().await;
        info!("shutting down");
        stop.cancel();
    });
    let outcome = running.driver.await;
    shutdown.cancel();
    let _ = running.clients.await;
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init()
        .map_err(|error| anyhow::anyhow!("cannot set up logging: {error}"))
}
