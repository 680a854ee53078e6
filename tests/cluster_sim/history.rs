//! What the clients learned, and the checks over it: no acknowledged enqueue
//! lost, no two valid leases on one job, no stale ack accepted, an
//! idempotency key never mapped to two jobs, nothing delivered that was
//! never enqueued.

use std::collections::{BTreeMap, BTreeSet};

use raftq::queue::{ClaimedJob, FencingToken, JobId};

/// Which part of the run the simulation is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Faults are injected.
    Safety,
    /// Every fault is healed; the workload must finish.
    Liveness,
}

/// One lease a claim returned.
#[derive(Debug, Clone)]
struct Lease {
    token: FencingToken,
    start_ms: u64,
    deadline_ms: u64,
    worker: String,
    /// Ended early by a nack that was accepted (or may have been), so the
    /// next lease may start before the deadline.
    released: bool,
}

/// An order-sensitive digest of everything that happened: two runs of one
/// seed must produce the same one.
#[derive(Debug, Clone, Copy)]
pub struct Trace {
    hash: u64,
    pub events: u64,
    /// Print every event (`RAFTQ_SIM_TRACE=1`, for a replayed seed).
    print: bool,
}

impl Trace {
    fn new() -> Trace {
        Trace {
            hash: 0xCBF2_9CE4_8422_2325,
            events: 0,
            print: std::env::var_os("RAFTQ_SIM_TRACE").is_some(),
        }
    }

    /// Folds an event into the digest (FNV-1a).
    pub fn record(&mut self, event: &str) {
        if self.print {
            println!("{event}");
        }
        for byte in event.bytes().chain([b'\n']) {
            self.hash ^= u64::from(byte);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01B3);
        }
        self.events += 1;
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }
}

/// Figures of one run, for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub enqueued: u64,
    pub enqueue_unknown: u64,
    pub claims: u64,
    pub acked: u64,
    pub ack_refused: u64,
    pub ack_unknown: u64,
    pub recovered: u64,
    pub nacked: u64,
}

/// The shared record of the run.
pub struct History {
    pub phase: Phase,
    pub producers_left: usize,
    pub trace: Trace,
    pub counts: Counts,
    /// Acknowledged enqueues: idempotency key → job.
    keys: BTreeMap<String, JobId>,
    ids: BTreeMap<JobId, String>,
    /// Payloads seen in claims, checked against the enqueues at the end.
    delivered_payloads: BTreeMap<JobId, Vec<u8>>,
    leases: BTreeMap<JobId, Vec<Lease>>,
    /// Accepted acks: job → (token, lease start as the queue reported it).
    acks: BTreeMap<JobId, Vec<(FencingToken, u64)>>,
    /// Acks whose outcome the worker never learned.
    acks_unknown: BTreeSet<JobId>,
    /// Jobs with an unknown ack that a later read showed gone.
    recovered: BTreeSet<JobId>,
    violations: Vec<String>,
}

impl History {
    pub fn new(producers: usize) -> History {
        History {
            phase: Phase::Safety,
            producers_left: producers,
            trace: Trace::new(),
            counts: Counts::default(),
            keys: BTreeMap::new(),
            ids: BTreeMap::new(),
            delivered_payloads: BTreeMap::new(),
            leases: BTreeMap::new(),
            acks: BTreeMap::new(),
            acks_unknown: BTreeSet::new(),
            recovered: BTreeSet::new(),
            violations: Vec::new(),
        }
    }

    pub fn violation(&mut self, message: String) {
        self.trace.record(&format!("violation {message}"));
        self.violations.push(message);
    }

    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    pub fn enqueued(&mut self, key: &str, id: JobId, duplicate: bool) {
        self.trace
            .record(&format!("enqueued {key} {id:?} duplicate={duplicate}"));
        match self.keys.get(key) {
            Some(known) if *known != id => self.violation(format!(
                "idempotency key {key} maps to two jobs: {known:?} and {id:?}"
            )),
            Some(_) => {}
            None => {
                self.counts.enqueued += 1;
                self.keys.insert(key.to_string(), id);
            }
        }
        match self.ids.get(&id) {
            Some(other) if other != key => {
                let other = other.clone();
                self.violation(format!("job {id:?} answers two keys: {other} and {key}"));
            }
            _ => {
                self.ids.insert(id, key.to_string());
            }
        }
    }

    pub fn enqueue_unknown(&mut self, key: &str, reason: &str) {
        self.counts.enqueue_unknown += 1;
        self.trace
            .record(&format!("enqueue unknown {key}: {reason}"));
    }

    pub fn claimed(&mut self, worker: &str, job: &ClaimedJob, lease_ms: u64) {
        self.counts.claims += 1;
        self.trace.record(&format!(
            "claimed {worker} {:?} {:?} deadline {}",
            job.id, job.token, job.lease_deadline_ms
        ));
        // Fencing tokens follow the log, so a lease newer than an accepted
        // ack was granted after the job was done. An older one may arrive
        // late, held in a cut link, and was granted before the ack.
        if let Some((acked, _)) = self
            .acks
            .get(&job.id)
            .and_then(|acks| acks.iter().find(|(acked, _)| *acked < job.token))
        {
            let acked = *acked;
            self.violation(format!(
                "job {:?} delivered to {worker} with {:?} after an ack with {acked:?} was accepted",
                job.id, job.token
            ));
        }
        self.delivered_payloads.insert(job.id, job.payload.to_vec());
        let leases = self.leases.entry(job.id).or_default();
        if leases.iter().any(|lease| lease.token == job.token) {
            let message = format!(
                "job {:?}: two claims returned fencing token {:?}",
                job.id, job.token
            );
            self.violation(message);
            return;
        }
        leases.push(Lease {
            token: job.token,
            start_ms: job.lease_deadline_ms.saturating_sub(lease_ms),
            deadline_ms: job.lease_deadline_ms,
            worker: worker.to_string(),
            released: false,
        });
    }

    pub fn acked(&mut self, worker: &str, id: JobId, token: FencingToken, claimed_at_ms: u64) {
        self.counts.acked += 1;
        self.trace.record(&format!(
            "acked {worker} {id:?} {token:?} claimed at {claimed_at_ms}"
        ));
        let acks = self.acks.entry(id).or_default();
        acks.push((token, claimed_at_ms));
        if acks.len() > 1 {
            let acks = acks.clone();
            self.violation(format!("job {id:?} acked twice: {acks:?}"));
        }
    }

    pub fn ack_refused(&mut self, worker: &str, id: JobId, token: FencingToken, reason: &str) {
        self.counts.ack_refused += 1;
        self.trace
            .record(&format!("ack refused {worker} {id:?} {token:?}: {reason}"));
    }

    pub fn ack_unknown(&mut self, worker: &str, id: JobId, token: FencingToken) {
        self.counts.ack_unknown += 1;
        self.trace
            .record(&format!("ack unknown {worker} {id:?} {token:?}"));
        self.acks_unknown.insert(id);
    }

    pub fn nacked(&mut self, worker: &str, id: JobId, token: FencingToken) {
        self.counts.nacked += 1;
        self.trace
            .record(&format!("nacked {worker} {id:?} {token:?}"));
        if let Some(lease) = self
            .leases
            .get_mut(&id)
            .and_then(|leases| leases.iter_mut().find(|lease| lease.token == token))
        {
            lease.released = true;
        }
    }

    /// A linearizable read found the job gone after an ack of unknown outcome.
    pub fn gone(&mut self, id: JobId) {
        self.trace.record(&format!("gone {id:?}"));
        if self.acks_unknown.contains(&id) {
            if self.recovered.insert(id) {
                self.counts.recovered += 1;
            }
        } else if !self.acks.contains_key(&id) {
            self.violation(format!(
                "job {id:?} vanished although no ack of it was ever sent"
            ));
        }
    }

    /// Acknowledged jobs whose ack nobody has seen accepted yet.
    pub fn unresolved(&self) -> Vec<JobId> {
        self.keys
            .values()
            .filter(|id| !self.acks.contains_key(id) && !self.recovered.contains(id))
            .copied()
            .collect()
    }

    /// Unresolved jobs with an ack of unknown outcome: a read tells whether
    /// the ack took effect.
    pub fn unresolved_with_unknown_ack(&self) -> Vec<JobId> {
        self.unresolved()
            .into_iter()
            .filter(|id| self.acks_unknown.contains(id))
            .collect()
    }

    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Liveness && self.producers_left == 0 && self.unresolved().is_empty()
    }

    /// The checks over the whole history, run once the workload has ended
    /// (`finished`) or was cut off.
    pub fn check(&mut self, finished: bool) {
        let mut found = Vec::new();
        for (id, leases) in &self.leases {
            match self.ids.get(id) {
                None if finished => found.push(format!(
                    "job {id:?} was delivered but no enqueue returned it"
                )),
                Some(key)
                    if self.delivered_payloads.get(id).map(Vec::as_slice)
                        != Some(key.as_bytes()) =>
                {
                    found.push(format!(
                        "job {id:?} was delivered with another payload than {key}"
                    ));
                }
                _ => {}
            }
            let mut sorted = leases.clone();
            sorted.sort_by_key(|lease| lease.token);
            for pair in sorted.windows(2) {
                let (earlier, later) = (&pair[0], &pair[1]);
                if !earlier.released && later.start_ms < earlier.deadline_ms {
                    found.push(format!(
                        "job {id:?}: lease {:?} of {} (until {}) overlaps lease {:?} of {} (from {})",
                        earlier.token,
                        earlier.worker,
                        earlier.deadline_ms,
                        later.token,
                        later.worker,
                        later.start_ms
                    ));
                }
                if later.deadline_ms <= earlier.deadline_ms {
                    found.push(format!(
                        "job {id:?}: lease {:?} ends no later than the older lease {:?}",
                        later.token, earlier.token
                    ));
                }
            }
            if let Some(acks) = self.acks.get(id) {
                for (token, claimed_at_ms) in acks {
                    if let Some(newer) = sorted.iter().find(|lease| lease.token > *token) {
                        found.push(format!(
                            "job {id:?}: ack with {token:?} accepted although {:?} was granted later",
                            newer.token
                        ));
                    }
                    if let Some(lease) = sorted.iter().find(|lease| lease.token == *token)
                        && lease.start_ms != *claimed_at_ms
                    {
                        found.push(format!(
                            "job {id:?}: the ack with {token:?} names a lease from {claimed_at_ms}, the claim said {}",
                            lease.start_ms
                        ));
                    }
                }
            }
        }
        for (id, acks) in &self.acks {
            if !self.leases.contains_key(id) {
                found.push(format!("job {id:?} acked ({acks:?}) but never claimed"));
            }
        }
        if finished {
            for id in self.unresolved() {
                found.push(format!(
                    "lost: job {id:?} ({}) was acknowledged but never acked",
                    self.ids[&id]
                ));
            }
        }
        for message in found {
            self.violation(message);
        }
    }
}
