//! `raftq enqueue`: add a job from an argument, a file or stdin.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use raftq::queue::{Backoff, NewJob, Schedule};
use serde_json::json;

use super::ConnectArgs;

/// Flags of `raftq enqueue`.
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The queue.
    #[arg(long, short)]
    queue: String,
    /// The payload; read from --file or stdin when absent.
    payload: Option<String>,
    /// Read the payload from this file ("-" for stdin).
    #[arg(long, conflicts_with = "payload")]
    file: Option<PathBuf>,
    /// Priority: higher runs first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i32,
    /// Run no earlier than this many milliseconds from now.
    #[arg(long, conflicts_with = "run_at_ms")]
    delay_ms: Option<u64>,
    /// Run no earlier than this time (milliseconds since the Unix epoch).
    #[arg(long)]
    run_at_ms: Option<u64>,
    /// Deliveries before the job goes dead.
    #[arg(long, default_value_t = raftq::queue::limits::ATTEMPTS_DEFAULT)]
    max_attempts: u32,
    /// Delay after the first failed attempt.
    #[arg(long, default_value_t = raftq::queue::limits::BACKOFF_INITIAL_MS_DEFAULT)]
    backoff_initial_ms: u32,
    /// Longest delay between attempts.
    #[arg(long, default_value_t = raftq::queue::limits::BACKOFF_MAX_MS_DEFAULT)]
    backoff_max_ms: u32,
    /// Growth of the delay per attempt.
    #[arg(long, default_value_t = raftq::queue::limits::BACKOFF_MULTIPLIER_DEFAULT)]
    backoff_multiplier: u32,
    /// Idempotency key: another enqueue with this key into this queue within
    /// the idempotency window returns this job instead of adding one.
    #[arg(long)]
    key: Option<String>,
}

pub async fn run(args: EnqueueArgs) -> anyhow::Result<()> {
    let payload = match (&args.payload, &args.file) {
        (Some(text), _) => Bytes::from(text.clone().into_bytes()),
        (None, Some(path)) if path.as_os_str() != "-" => Bytes::from(
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        ),
        _ => {
            let mut buffer = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buffer)
                .context("cannot read the payload from stdin")?;
            Bytes::from(buffer)
        }
    };
    let schedule = match (args.delay_ms, args.run_at_ms) {
        (Some(delay), _) => Schedule::DelayMs(delay),
        (None, Some(at)) => Schedule::RunAtMs(at),
        (None, None) => Schedule::Now,
    };
    let job = NewJob {
        queue: args.queue.clone(),
        payload,
        priority: args.priority,
        schedule,
        max_attempts: args.max_attempts,
        backoff: Backoff {
            initial_ms: args.backoff_initial_ms,
            max_ms: args.backoff_max_ms,
            multiplier: args.backoff_multiplier,
        },
        idempotency_key: args.key.clone().map(|key| Bytes::from(key.into_bytes())),
    };
    let client = args.connect.client().await?;
    let enqueued = client.enqueue_job(job).await?;
    if args.connect.json {
        println!(
            "{}",
            json!({ "id": enqueued.id.0, "queue": args.queue, "duplicate": enqueued.duplicate })
        );
    } else if enqueued.duplicate {
        println!(
            "job {} already enqueued with this key in {}",
            enqueued.id.0, args.queue
        );
    } else {
        println!("enqueued job {} in {}", enqueued.id.0, args.queue);
    }
    Ok(())
}
