//! `raftq dev`: a local cluster of child processes for trying things out.

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::Context;
use clap::Args;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

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

struct Ports {
    client: u16,
    peer: u16,
    metrics: u16,
}

fn ports(base: u16, id: u64) -> Ports {
    let client = base + 10 * (id as u16 - 1);
    Ports {
        client,
        peer: client + 1,
        metrics: client + 2,
    }
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let highest = u32::from(args.base_port) + 10 * (args.nodes as u32) + 2;
    anyhow::ensure!(
        highest <= u32::from(u16::MAX),
        "--base-port is too high for {} nodes",
        args.nodes
    );
    let executable = std::env::current_exe().context("cannot find the raftq executable")?;
    let cluster: Vec<String> = (1..=args.nodes)
        .map(|id| format!("{id}=127.0.0.1:{}", ports(args.base_port, id).peer))
        .collect();
    let cluster = cluster.join(",");
    // The secret lives only as long as this dev cluster; nothing stores it.
    let secret = format!("{:032x}", rand::random::<u128>());
    let mut children: Vec<Child> = Vec::new();
    println!(
        "raftq dev cluster of {} nodes (data in {}):",
        args.nodes,
        args.data_dir.display()
    );
    for id in 1..=args.nodes {
        let ports = ports(args.base_port, id);
        let mut child = Command::new(&executable)
            .arg("server")
            .args(["--node-id", &id.to_string()])
            .args(["--cluster", &cluster])
            .args(["--client-address", &format!("127.0.0.1:{}", ports.client)])
            .args(["--peer-address", &format!("127.0.0.1:{}", ports.peer)])
            .args(["--metrics-address", &format!("127.0.0.1:{}", ports.metrics)])
            .args([
                "--data-dir",
                &args
                    .data_dir
                    .join(format!("node-{id}"))
                    .display()
                    .to_string(),
            ])
            .args(["--log-level", &args.log_level])
            .env("RAFTQ_CLUSTER_SECRET", &secret)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start node {id}"))?;
        for output in [
            child
                .stdout
                .take()
                .map(|out| Box::new(out) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|err| Box::new(err) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            tokio::spawn(async move {
                let mut lines = BufReader::new(output).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    eprintln!("node{id} | {line}");
                }
            });
        }
        println!(
            "  node {id}: clients 127.0.0.1:{}  peers 127.0.0.1:{}  metrics http://127.0.0.1:{}/metrics",
            ports.client, ports.peer, ports.metrics
        );
        children.push(child);
    }
    let servers: Vec<String> = (1..=args.nodes)
        .map(|id| format!("127.0.0.1:{}", ports(args.base_port, id).client))
        .collect();
    println!(
        "try:  raftq enqueue --servers {} --queue hello 'world'",
        servers.join(",")
    );
    println!("      raftq stats --servers {}", servers.join(","));
    println!("Ctrl-C stops the cluster.");

    let mut exited = Box::pin(futures::future::select_all(
        children.iter_mut().map(|child| Box::pin(child.wait())),
    ));
    tokio::select! {
        _ = super::shutdown_signal() => {}
        (status, index, _) = &mut exited => {
            eprintln!("node {} exited ({:?}); stopping the cluster", index + 1, status);
        }
    }
    drop(exited);
    for child in &mut children {
        if let Some(pid) = child.id() {
            // SIGTERM lets each node finish its syncs and close cleanly.
            terminate(pid);
        }
    }
    for child in &mut children {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait()).await;
        let _ = child.kill().await;
    }
    println!("dev cluster stopped");
    Ok(())
}

/// Sends SIGTERM to a child process.
fn terminate(pid: u32) {
    // SAFETY: kill(2) takes plain integers and has no memory-safety
    // preconditions; the pid is a child this process started and still owns.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}
