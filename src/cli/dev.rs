//! `raftq dev`: a local cluster of child processes for trying things out.

use std::path::PathBuf;

use clap::Args;

use super::local_cluster::{LocalCluster, LocalSpec};

/// Flags of `raftq dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    nodes: u64,
    /// Client port of node 1; node i uses base + 10 × (i − 1) for clients,
    /// +1 for peers and +2 for metrics.
    #[arg(long, default_value_t = 7410)]
    base_port: u16,
    /// Where the nodes keep their data (node-1, node-2, ... inside).
    #[arg(long, default_value = "./raftq-dev")]
    data_dir: PathBuf,
    /// Log filter for the nodes.
    #[arg(long, default_value = "info")]
    log_level: String,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let mut cluster = LocalCluster::start_with(LocalSpec {
        nodes: args.nodes,
        base_port: Some(args.base_port),
        data_dir: Some(args.data_dir.clone()),
        log_level: args.log_level.clone(),
        forward_logs: true,
    })
    .await?;
    println!(
        "raftq dev cluster of {} nodes (data in {}):",
        args.nodes,
        args.data_dir.display()
    );
    for node in cluster.nodes() {
        println!(
            "  node {}: clients {}  peers {}  metrics http://{}/metrics",
            node.id, node.client, node.peer, node.metrics
        );
    }
    let servers = cluster.client_addresses().join(",");
    println!("try:  raftq enqueue --servers {servers} --queue hello 'world'");
    println!("      raftq stats --servers {servers}");
    println!("Ctrl-C stops the cluster.");
    tokio::select! {
        _ = super::shutdown_signal() => {}
        (id, status) = cluster.any_exit() => {
            eprintln!("node {id} exited ({status:?}); stopping the cluster");
        }
    }
    cluster.stop().await;
    println!("dev cluster stopped");
    Ok(())
}
