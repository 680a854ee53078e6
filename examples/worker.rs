//! Processes jobs from the `emails` queue until Ctrl-C.
//!
//! Start a cluster and enqueue some jobs first (see `examples/producer.rs`).

use std::time::Duration;

use raftq::client::{Client, ClientOptions, Worker};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let servers = std::env::var("RAFTQ_SERVERS")
        .unwrap_or_else(|_| "127.0.0.1:7410,127.0.0.1:7420,127.0.0.1:7430".to_string());
    let client = Client::connect(ClientOptions::new(servers.split(','))).await?;

    let worker = Worker::builder(client)
        .handle("emails", |job| async move {
            let text = String::from_utf8_lossy(&job.payload);
            if text.contains("invalid") {
                // An error nacks the job; it is retried with backoff.
                return Err(format!("cannot send {text}").into());
            }
            println!("job {} attempt {}: sending {text}", job.id, job.attempt);
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(())
        })
        .concurrency(4)
        .lease_ms(30_000)
        .build();

    println!("working on emails; Ctrl-C to stop");
    let report = worker
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    println!(
        "stopped: {} acked, {} nacked, {} handed back",
        report.acked, report.nacked, report.abandoned
    );
    Ok(())
}
