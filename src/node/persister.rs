//! The persister: makes the log durable off the driver's task.
//!
//! The driver writes entries and hard state into the write-ahead log (a
//! memory copy) and asks the persister to sync up to a Ready number. The
//! persister runs one sync at a time on its own thread and covers every
//! request that arrived meanwhile, so a burst of Readies costs one fsync:
//! group commit at the node level. In simulations the driver syncs inline
//! instead, which keeps the whole run on one deterministic thread.

use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use raftq_storage::Wal;
use tokio::sync::mpsc;

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
    pub fn start(wal: Arc<Wal>, events: mpsc::UnboundedSender<PersistEvent>) -> Persister {
        let (requests, receiver) = std_mpsc::channel::<u64>();
        let thread = std::thread::Builder::new()
            .name("raftq-persister".to_string())
            .spawn(move || {
                while let Ok(mut number) = receiver.recv() {
                    // Cover every request that is already waiting with one sync.
                    while let Ok(newer) = receiver.try_recv() {
                        number = newer;
                    }
                    let event = match wal.sync() {
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
