//! The history of a nemesis run: every invoke and outcome of the workload,
//! and every fault, as JSON lines in the order they happened.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// One job handed out by a claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: u64,
    pub token: u64,
    pub payload: String,
    pub deadline_ms: u64,
    pub attempt: u32,
}

/// What happened. `*Invoke` is written before a call, the other variants of
/// an operation when it returned: `Ok` applied, `Fail` certainly not
/// applied, `Unknown` maybe applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Event {
    /// An enqueue of the job whose payload and idempotency key are `key`.
    EnqueueInvoke {
        process: String,
        key: String,
    },
    EnqueueOk {
        process: String,
        key: String,
        id: u64,
        duplicate: bool,
    },
    EnqueueFail {
        process: String,
        key: String,
        error: String,
    },
    EnqueueUnknown {
        process: String,
        key: String,
        error: String,
    },
    ClaimInvoke {
        process: String,
    },
    ClaimOk {
        process: String,
        lease_ms: u64,
        jobs: Vec<Delivery>,
    },
    /// The claim failed; if it was applied anyway, its leases expire unseen.
    ClaimFail {
        process: String,
        error: String,
    },
    AckInvoke {
        process: String,
        id: u64,
        token: u64,
    },
    AckOk {
        process: String,
        id: u64,
        token: u64,
    },
    AckFail {
        process: String,
        id: u64,
        token: u64,
        error: String,
    },
    AckUnknown {
        process: String,
        id: u64,
        token: u64,
        error: String,
    },
    /// A worker gave a lease up without acking: `crash` drops it at once,
    /// `expire` acks only after the lease ran out.
    Abandon {
        process: String,
        id: u64,
        token: u64,
        how: String,
    },
    Nemesis {
        action: String,
    },
    Phase {
        name: String,
    },
}

/// An event with its position and time in the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub at_ms: u64,
    #[serde(flatten)]
    pub event: Event,
}

/// Writes events to the history file as they happen. The sequence numbers
/// follow real time: an event recorded after another one returned happened
/// after it.
pub struct Recorder {
    path: PathBuf,
    started: Instant,
    state: Mutex<(u64, BufWriter<File>)>,
}

impl Recorder {
    pub fn create(path: &Path) -> Recorder {
        let file = File::create(path).expect("create the history file");
        Recorder {
            path: path.to_path_buf(),
            started: Instant::now(),
            state: Mutex::new((0, BufWriter::new(file))),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn record(&self, event: Event) {
        let mut state = self.state.lock().expect("history lock");
        let record = Record {
            seq: state.0,
            at_ms: self.started.elapsed().as_millis() as u64,
            event,
        };
        state.0 += 1;
        serde_json::to_writer(&mut state.1, &record).expect("write the history");
        state.1.write_all(b"\n").expect("write the history");
    }

    pub fn flush(&self) {
        let mut state = self.state.lock().expect("history lock");
        state.1.flush().expect("flush the history");
    }
}

/// Reads a history file back.
pub fn read(path: &Path) -> Vec<Record> {
    let file = File::open(path).expect("open the history file");
    BufReader::new(file)
        .lines()
        .map(|line| {
            let line = line.expect("read the history");
            serde_json::from_str(&line)
                .unwrap_or_else(|error| panic!("bad history line {line:?}: {error}"))
        })
        .collect()
}
