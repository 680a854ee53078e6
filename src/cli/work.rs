//! `raftq work --queue Q -- COMMAND...`: runs a command per job.
//!
//! The job's payload goes to the command's stdin; `RAFTQ_JOB_ID`,
//! `RAFTQ_JOB_QUEUE`, `RAFTQ_JOB_ATTEMPT` and `RAFTQ_JOB_MAX_ATTEMPTS` are in
//! its environment. Exit status 0 acks the job; anything else nacks it with
//! the tail of the command's stderr as the error.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use raftq::client::{HandlerError, Job, Worker};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::ConnectArgs;

/// Bytes of a failed command's stderr kept as the job's error.
const ERROR_TAIL_BYTES: usize = 1024;

/// Flags of `raftq work`.
#[derive(Debug, Args)]
pub struct WorkArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Queues to take jobs from, in order of preference.
    #[arg(long, short, required = true)]
    queue: Vec<String>,
    /// Jobs run at once.
    #[arg(long, short, default_value_t = 1)]
    concurrency: usize,
    /// Lease per job; it is extended while the command runs.
    #[arg(long, default_value_t = 30_000)]
    lease_ms: u64,
    /// How long to wait for running jobs at shutdown.
    #[arg(long, default_value_t = 30_000)]
    shutdown_timeout_ms: u64,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub async fn run(args: WorkArgs) -> anyhow::Result<()> {
    let client = args.connect.client().await?;
    let command = Arc::new(args.command.clone());
    let mut builder = Worker::builder(client)
        .concurrency(args.concurrency)
        .lease_ms(args.lease_ms)
        .shutdown_timeout(Duration::from_millis(args.shutdown_timeout_ms));
    for queue in &args.queue {
        let command = Arc::clone(&command);
        builder = builder.handle(queue, move |job| run_command(Arc::clone(&command), job));
    }
    if !args.connect.json {
        eprintln!(
            "working on {} with: {}",
            args.queue.join(", "),
            args.command.join(" ")
        );
    }
    let report = builder.build().run(super::shutdown_signal()).await?;
    if args.connect.json {
        println!(
            "{}",
            json!({
                "acked": report.acked,
                "nacked": report.nacked,
                "leases_lost": report.leases_lost,
                "abandoned": report.abandoned,
            })
        );
    } else {
        eprintln!(
            "stopped: {} acked, {} nacked, {} leases lost, {} handed back unfinished",
            report.acked, report.nacked, report.leases_lost, report.abandoned
        );
    }
    Ok(())
}

async fn run_command(command: Arc<Vec<String>>, job: Job) -> Result<(), HandlerError> {
    let (program, arguments) = command.split_first().expect("clap requires a command");
    let mut child = Command::new(program)
        .args(arguments)
        .env("RAFTQ_JOB_ID", job.id.0.to_string())
        .env("RAFTQ_JOB_QUEUE", &job.queue)
        .env("RAFTQ_JOB_ATTEMPT", job.attempt.to_string())
        .env("RAFTQ_JOB_MAX_ATTEMPTS", job.max_attempts.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let payload = job.payload.clone();
    // A command that does not read its input must not block the job.
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(&payload).await;
    });
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let mut errors = Vec::new();
    let read_errors = async {
        let mut chunk = [0u8; 4096];
        loop {
            match stderr.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    // Forward the command's stderr, and keep its tail.
                    let _ = tokio::io::stderr().write_all(&chunk[..read]).await;
                    errors.extend_from_slice(&chunk[..read]);
                    if errors.len() > ERROR_TAIL_BYTES * 2 {
                        errors.drain(..errors.len() - ERROR_TAIL_BYTES);
                    }
                }
            }
        }
    };
    let (status, ()) = tokio::join!(child.wait(), read_errors);
    feed.abort();
    let status = status.context("waiting for the command")?;
    if status.success() {
        return Ok(());
    }
    let tail_start = errors.len().saturating_sub(ERROR_TAIL_BYTES);
    let tail = String::from_utf8_lossy(&errors[tail_start..])
        .trim()
        .to_string();
    Err(format!("command exited with {status}: {tail}").into())
}
