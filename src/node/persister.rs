//! The persister: makes the log durable off the driver's task.
//!
//! The driver writes entries and hard state into the write-ahead log (a
//! memory copy) and asks the persister to sync up to a Ready number. The
//! persister runs one sync at a time on its own thread and covers every
//! request that arrived meanwhile, so a burst of Readies costs one fsync:
//! group commit at the node level. In simulations the driver syncs inline
//! instead, which keeps the whole run on one deterministic thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;

use raftq_storage::Wal;
use tokio::sync::mpsc;

use crate::metrics as names;

/// Syncs the log and records how long it took and how much it covered.
pub(crate) struct MeteredSync {
    wal: Arc<Wal>,
    appended_bytes: Arc<AtomicU64>,
    last_durable_index: u64,
    last_appended_bytes: u64,
}

impl MeteredSync {
    /// Meters syncs of `wal`; `appended_bytes` counts the bytes written into it.
    pub(crate) fn new(wal: Arc<Wal>, appended_bytes: Arc<AtomicU64>) -> MeteredSync {
        MeteredSync {
            last_durable_index: wal.durable_index(),
            last_appended_bytes: appended_bytes.load(Ordering::Relaxed),
            wal,
            appended_bytes,
        }
    }

    /// One sync of everything written so far.
    pub(crate) fn sync(&mut self) -> Result<u64, raftq_storage::Error> {
        let bytes_before = self.appended_bytes.load(Ordering::Relaxed);
        let started = std::time::Instant::now();
        let durable_index = self.wal.sync()?;
        metrics::histogram!(names::WAL_FSYNC_SECONDS).record(started.elapsed().as_secs_f64());
        // A truncation can lower the watermark; count only forward progress.
        let records = durable_index.saturating_sub(self.last_durable_index);
        let bytes = bytes_before.saturating_sub(self.last_appended_bytes);
        if records > 0 {
            metrics::histogram!(names::WAL_FSYNC_BATCH_RECORDS).record(records as f64);
            metrics::histogram!(names::WAL_FSYNC_BATCH_BYTES).record(bytes as f64);
        }
        self.last_durable_index = durable_index;
        self.last_appended_bytes = bytes_before;
        Ok(durable_index)
    }
}

/// What the persister reports to the driver.
#[derive(Debug)]
pub enum PersistEvent {
    /// Everything written before Ready `number` was handed to the persister is durable.
    Persisted {
        /// The newest Ready covered.
        number: u64,
    },
    /// A sync failed; the log is poisoned and the node must stop.
    Failed(String),
}

/// Handle on the persister thread; dropping it stops the thread once it has
/// finished the sync in progress.
pub struct Persister {
    requests: std_mpsc::Sender<u64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Persister {
    /// Starts the persister thread for `wal`, reporting to `events`.
    pub fn start(mut meter: MeteredSync, events: mpsc::UnboundedSender<PersistEvent>) -> Persister {
        let (requests, receiver) = std_mpsc::channel::<u64>();
        let thread = std::thread::Builder::new()
            .name("raftq-persister".to_string())
            .spawn(move || {
                while let Ok(mut number) = receiver.recv() {
                    // Cover every request that is already waiting with one sync.
                    while let Ok(newer) = receiver.try_recv() {
                        number = newer;
                    }
                    let event = match meter.sync() {
                        Ok(_) => PersistEvent::Persisted { number },
                        Err(error) => PersistEvent::Failed(error.to_string()),
                    };
                    let failed = matches!(event, PersistEvent::Failed(_));
                    if events.send(event).is_err() || failed {
                        return;
                    }
                }
            })
            .expect("spawn the persister thread");
        Persister {
            requests,
            thread: Some(thread),
        }
    }

    /// Asks for everything written so far to be made durable, reported as
    /// Ready `number`.
    pub fn request(&self, number: u64) {
        // The thread stops only after a failure, which the driver learns
        // from the event it sent; a request after that has nobody to serve it.
        let _ = self.requests.send(number);
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        let (closed, _) = std_mpsc::channel();
        // Replacing the sender closes the channel, so the thread's loop ends.
        self.requests = closed;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
