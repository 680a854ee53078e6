//! Printing results as text for people or JSON for scripts.

use raftq::queue::{JobInfo, JobState, QueueStats};
use serde_json::{Value, json};

/// A payload as text when it is UTF-8, else as hex.
pub fn payload_json(payload: &[u8]) -> Value {
    match std::str::from_utf8(payload) {
        Ok(text) => json!({ "text": text }),
        Err(_) => json!({ "hex": hex(payload) }),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A short, printable view of a payload.
pub fn payload_text(payload: &[u8]) -> String {
    const SHOWN_BYTES_MAX: usize = 200;
    match std::str::from_utf8(payload) {
        Ok(text) if text.len() <= SHOWN_BYTES_MAX => format!("{text:?}"),
        Ok(text) => {
            let mut end = SHOWN_BYTES_MAX;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            format!("{:?}... ({} bytes)", &text[..end], payload.len())
        }
        Err(_) => format!("<{} bytes of binary data>", payload.len()),
    }
}

pub fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::Scheduled => "scheduled",
        JobState::Ready => "ready",
        JobState::Leased => "leased",
        JobState::Dead => "dead",
    }
}

pub fn job_json(job: &JobInfo) -> Value {
    json!({
        "id": job.id.0,
        "queue": job.queue,
        "state": state_name(job.state),
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "enqueued_at_ms": job.enqueued_at_ms,
        "due_at_ms": job.due_at_ms,
        "lease": job.lease.as_ref().map(|lease| json!({
            "token": lease.token.0,
            "claimed_at_ms": lease.claimed_at_ms,
            "deadline_ms": lease.deadline_ms,
            "worker": lease.worker,
        })),
        "last_error": job.last_error,
        "payload": payload_json(&job.payload),
    })
}

pub fn print_job(job: &JobInfo) {
    println!("job {} in queue {}", job.id.0, job.queue);
    println!("  state:        {}", state_name(job.state));
    println!("  priority:     {}", job.priority);
    println!("  attempts:     {} of {}", job.attempts, job.max_attempts);
    println!("  enqueued at:  {} ms", job.enqueued_at_ms);
    println!("  due at:       {} ms", job.due_at_ms);
    if let Some(lease) = &job.lease {
        println!(
            "  lease:        token {} until {} ms (worker {})",
            lease.token.0,
            lease.deadline_ms,
            lease.worker.as_deref().unwrap_or("-")
        );
    }
    if let Some(error) = &job.last_error {
        println!("  last error:   {error}");
    }
    println!("  payload:      {}", payload_text(&job.payload));
}

pub fn stats_json(name: &str, stats: &QueueStats) -> Value {
    let counters = &stats.counters;
    json!({
        "queue": name,
        "ready": stats.ready,
        "scheduled": stats.scheduled,
        "leased": stats.leased,
        "dead": stats.dead,
        "paused": stats.paused,
        "oldest_ready_age_ms": stats.oldest_ready_age_ms,
        "totals": {
            "enqueued": counters.enqueued,
            "claimed": counters.claimed,
            "acked": counters.acked,
            "nacked": counters.nacked,
            "expired": counters.expired,
            "dead_lettered": counters.dead_lettered,
            "requeued": counters.requeued,
            "cancelled": counters.cancelled,
            "purged": counters.purged,
            "deleted": counters.deleted,
        },
    })
}

pub fn print_stats_table(all: &[(String, QueueStats)]) {
    if all.is_empty() {
        println!("no queues yet");
        return;
    }
    println!(
        "{:<24} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>12}  STATE",
        "QUEUE", "READY", "SCHEDULED", "LEASED", "DEAD", "ENQUEUED", "ACKED", "FAILED", "OLDEST",
    );
    for (name, stats) in all {
        let oldest = stats
            .oldest_ready_age_ms
            .map(|age| format!("{:.1}s", age as f64 / 1000.0))
            .unwrap_or_else(|| "-".to_string());
        println!(
            "{:<24} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>12}  {}",
            name,
            stats.ready,
            stats.scheduled,
            stats.leased,
            stats.dead,
            stats.counters.enqueued,
            stats.counters.acked,
            stats.counters.nacked + stats.counters.expired,
            oldest,
            if stats.paused { "paused" } else { "active" }
        );
    }
}
