//! Enqueues a few jobs into the `emails` queue.
//!
//! Start a cluster first (`cargo run --release -- dev`), then:
//!
//! ```sh
//! cargo run --example producer
//! cargo run --example worker
//! ```

use std::time::Duration;

use raftq::client::{Client, ClientOptions};
use raftq::queue::{NewJob, Schedule};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let servers = std::env::var("RAFTQ_SERVERS")
        .unwrap_or_else(|_| "127.0.0.1:7410,127.0.0.1:7420,127.0.0.1:7430".to_string());
    let mut options = ClientOptions::new(servers.split(','));
    options.retry_deadline = Duration::from_secs(10);
    let client = Client::connect(options).await?;

    // One job with the defaults: ready now, 25 attempts, exponential backoff.
    let id = client
        .enqueue("emails", "welcome alice@example.com")
        .await?;
    println!("enqueued job {id}");

    // A batch in one round trip: an urgent job, and one for ten seconds from now.
    let mut urgent = NewJob::new("emails", "password reset for bob@example.com");
    urgent.priority = 10;
    let mut later = NewJob::new("emails", "weekly digest for carol@example.com");
    later.schedule = Schedule::DelayMs(10_000);
    for result in client.enqueue_batch(vec![urgent, later]).await? {
        println!("enqueued job {}", result?.id);
    }

    // An idempotency key: enqueueing the same order twice gives one job.
    let mut order = NewJob::new("emails", "receipt for order 1001");
    order.idempotency_key = Some("order-1001".into());
    let first = client.enqueue_job(order.clone()).await?;
    let second = client.enqueue_job(order).await?;
    assert_eq!(first.id, second.id);
    println!(
        "order receipt is job {} (second enqueue was a duplicate: {})",
        second.id, second.duplicate
    );
    Ok(())
}
