//! Checks a history for the anomalies a job queue must never show.
//!
//! The must-be-zero counts:
//! - `lost`: an enqueue that returned a job id, and that job was never acked
//!   (neither accepted nor with an unknown outcome) by the end of the drain.
//! - `unexpected`: a delivered job whose payload no producer ever enqueued.
//! - `acked_twice`: two accepted acks for one job.
//! - `stale_acks`: an ack accepted with token `t` although a claim of the
//!   same job with a newer token had returned before the ack was sent.
//! - `lease_overlaps`: a claim granted (its deadline minus its lease) before
//!   the previous lease of the same job ran out. Deadlines are stamped by
//!   the leader that granted them; all nodes share the host's clock.
//! - `delivered_after_ack`: a claim, sent after an ack of the job had been
//!   accepted, that handed out the job again.
//! - `idempotency_duplicates`: one idempotency key mapped to two job ids,
//!   either in enqueue answers or in the payloads of delivered jobs.
//!
//! Counted, allowed: `duplicates_delivered` (deliveries after the first:
//! crashed workers and expired leases make them), `recovered` (an enqueue
//! with an unknown outcome whose job was delivered later) and
//! `unknown_never_seen` (an enqueue with an unknown outcome that did not
//! happen).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use super::history::{Event, Record};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub enqueue_invokes: u64,
    pub enqueued: u64,
    pub enqueue_failed: u64,
    pub enqueue_unknown: u64,
    pub deliveries: u64,
    pub acked: u64,
    pub ack_rejected: u64,
    pub ack_unknown: u64,
    pub abandoned: u64,
    pub faults: u64,

    pub lost: u64,
    pub unexpected: u64,
    pub acked_twice: u64,
    pub stale_acks: u64,
    pub lease_overlaps: u64,
    pub delivered_after_ack: u64,
    pub idempotency_duplicates: u64,

    pub duplicates_delivered: u64,
    pub recovered: u64,
    pub unknown_never_seen: u64,
}

impl Counts {
    /// Whether every must-be-zero count is zero.
    pub fn valid(&self) -> bool {
        self.lost == 0
            && self.unexpected == 0
            && self.acked_twice == 0
            && self.stale_acks == 0
            && self.lease_overlaps == 0
            && self.delivered_after_ack == 0
            && self.idempotency_duplicates == 0
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "workload: {} enqueue calls, {} enqueued, {} refused, {} unknown; \
             {} deliveries, {} acked, {} acks refused, {} acks unknown, {} leases abandoned; {} faults",
            self.enqueue_invokes,
            self.enqueued,
            self.enqueue_failed,
            self.enqueue_unknown,
            self.deliveries,
            self.acked,
            self.ack_rejected,
            self.ack_unknown,
            self.abandoned,
            self.faults
        )?;
        writeln!(
            f,
            "must be zero: lost {}, unexpected {}, acked twice {}, stale acks accepted {}, \
             lease overlaps {}, delivered after ack {}, idempotency duplicates {}",
            self.lost,
            self.unexpected,
            self.acked_twice,
            self.stale_acks,
            self.lease_overlaps,
            self.delivered_after_ack,
            self.idempotency_duplicates
        )?;
        write!(
            f,
            "allowed: duplicates delivered {}, recovered {}, unknown never seen {}",
            self.duplicates_delivered, self.recovered, self.unknown_never_seen
        )
    }
}

/// One lease as a claim reported it.
#[derive(Debug, Clone, Copy)]
struct Lease {
    token: u64,
    granted_ms: u64,
    deadline_ms: u64,
    /// Position of the claim's answer in the history.
    seq: u64,
}

/// The counts, and a line for each must-be-zero anomaly found, naming the
/// history sequence numbers involved.
pub fn check(history: &[Record]) -> (Counts, Vec<String>) {
    let mut counts = Counts::default();
    let mut anomalies = Vec::new();

    let mut invoked: HashSet<&str> = HashSet::new();
    let mut acknowledged: BTreeMap<&str, u64> = BTreeMap::new();
    let mut unknown: BTreeSet<&str> = BTreeSet::new();
    let mut ids_of_key: HashMap<&str, BTreeSet<u64>> = HashMap::new();
    let mut delivered_keys: HashSet<&str> = HashSet::new();
    let mut leases: HashMap<u64, Vec<Lease>> = HashMap::new();
    let mut claim_sent: HashMap<&str, u64> = HashMap::new();
    let mut ack_sent: HashMap<(u64, u64), u64> = HashMap::new();
    let mut accepted_acks: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
    let mut unknown_acks: HashSet<u64> = HashSet::new();

    for record in history {
        match &record.event {
            Event::EnqueueInvoke { key, .. } => {
                counts.enqueue_invokes += 1;
                invoked.insert(key);
            }
            Event::EnqueueOk { key, id, .. } => {
                counts.enqueued += 1;
                acknowledged.entry(key).or_insert(*id);
                ids_of_key.entry(key).or_default().insert(*id);
            }
            Event::EnqueueFail { .. } => counts.enqueue_failed += 1,
            Event::EnqueueUnknown { key, .. } => {
                counts.enqueue_unknown += 1;
                unknown.insert(key);
            }
            Event::ClaimInvoke { process } => {
                claim_sent.insert(process, record.seq);
            }
            Event::ClaimOk {
                process,
                lease_ms,
                jobs,
            } => {
                let sent = claim_sent.get(process.as_str()).copied().unwrap_or(0);
                for job in jobs {
                    counts.deliveries += 1;
                    if !invoked.contains(job.payload.as_str()) {
                        counts.unexpected += 1;
                        anomalies.push(format!(
                            "unexpected: seq {} delivered job {} with payload {:?}, never enqueued",
                            record.seq, job.id, job.payload
                        ));
                    } else {
                        delivered_keys.insert(invoked.get(job.payload.as_str()).unwrap());
                        ids_of_key
                            .entry(invoked.get(job.payload.as_str()).unwrap())
                            .or_default()
                            .insert(job.id);
                    }
                    if let Some(&(_, ack_seq)) = accepted_acks
                        .get(&job.id)
                        .and_then(|acks| acks.iter().find(|(_, seq)| *seq < sent))
                    {
                        counts.delivered_after_ack += 1;
                        anomalies.push(format!(
                            "delivered after ack: job {} acked at seq {ack_seq}, delivered again \
                             by the claim sent at seq {sent} (answer seq {})",
                            job.id, record.seq
                        ));
                    }
                    leases.entry(job.id).or_default().push(Lease {
                        token: job.token,
                        granted_ms: job.deadline_ms.saturating_sub(*lease_ms),
                        deadline_ms: job.deadline_ms,
                        seq: record.seq,
                    });
                }
            }
            Event::ClaimFail { .. } => {}
            Event::AckInvoke { id, token, .. } => {
                ack_sent.insert((*id, *token), record.seq);
            }
            Event::AckOk { id, token, .. } => {
                counts.acked += 1;
                let sent = ack_sent.get(&(*id, *token)).copied().unwrap_or(record.seq);
                if let Some(newer) = leases.get(id).and_then(|leases| {
                    leases
                        .iter()
                        .find(|lease| lease.token > *token && lease.seq < sent)
                }) {
                    counts.stale_acks += 1;
                    anomalies.push(format!(
                        "stale ack: job {id} acked with token {token} (sent at seq {sent}, \
                         accepted at seq {}) after token {} was handed out at seq {}",
                        record.seq, newer.token, newer.seq
                    ));
                }
                let acks = accepted_acks.entry(*id).or_default();
                acks.push((*token, record.seq));
                if acks.len() == 2 {
                    counts.acked_twice += 1;
                    anomalies.push(format!(
                        "acked twice: job {id}, accepted acks {:?} (token, seq)",
                        acks
                    ));
                }
            }
            Event::AckFail { .. } => counts.ack_rejected += 1,
            Event::AckUnknown { id, .. } => {
                counts.ack_unknown += 1;
                unknown_acks.insert(*id);
            }
            Event::Abandon { .. } => counts.abandoned += 1,
            Event::Nemesis { .. } => counts.faults += 1,
            Event::Phase { .. } => {}
        }
    }

    for (id, leases) in &mut leases {
        leases.sort_by_key(|lease| lease.token);
        for pair in leases.windows(2) {
            let (earlier, later) = (pair[0], pair[1]);
            if later.token != earlier.token && later.granted_ms < earlier.deadline_ms {
                counts.lease_overlaps += 1;
                anomalies.push(format!(
                    "lease overlap: job {id}, token {} granted at {} ms (seq {}) while token {} \
                     held it until {} ms (seq {})",
                    later.token,
                    later.granted_ms,
                    later.seq,
                    earlier.token,
                    earlier.deadline_ms,
                    earlier.seq
                ));
            }
        }
        let distinct: BTreeSet<u64> = leases.iter().map(|lease| lease.token).collect();
        counts.duplicates_delivered += distinct.len().saturating_sub(1) as u64;
    }

    for (key, ids) in &ids_of_key {
        if ids.len() > 1 {
            counts.idempotency_duplicates += 1;
            anomalies.push(format!(
                "idempotency duplicate: key {key:?} maps to jobs {ids:?}"
            ));
        }
    }

    for (key, id) in &acknowledged {
        if !accepted_acks.contains_key(id) && !unknown_acks.contains(id) {
            counts.lost += 1;
            anomalies.push(format!(
                "lost: key {key:?} was enqueued as job {id} and never acked"
            ));
        }
    }

    for key in &unknown {
        if acknowledged.contains_key(key) {
            continue;
        }
        if delivered_keys.contains(key) {
            counts.recovered += 1;
        } else {
            counts.unknown_never_seen += 1;
        }
    }

    anomalies.sort();
    (counts, anomalies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Delivery;

    /// Builds a history from events, numbering them in order; `at_ms` is
    /// unused by the checker.
    fn history(events: Vec<Event>) -> Vec<Record> {
        events
            .into_iter()
            .enumerate()
            .map(|(seq, event)| Record {
                seq: seq as u64,
                at_ms: seq as u64,
                event,
            })
            .collect()
    }

    fn p() -> String {
        "p1".to_string()
    }

    fn w(n: u32) -> String {
        format!("w{n}")
    }

    fn enqueue(key: &str, id: u64) -> Vec<Event> {
        vec![
            Event::EnqueueInvoke {
                process: p(),
                key: key.to_string(),
            },
            Event::EnqueueOk {
                process: p(),
                key: key.to_string(),
                id,
                duplicate: false,
            },
        ]
    }

    fn claim(worker: u32, key: &str, id: u64, token: u64, deadline_ms: u64) -> Vec<Event> {
        vec![
            Event::ClaimInvoke { process: w(worker) },
            Event::ClaimOk {
                process: w(worker),
                lease_ms: 1_000,
                jobs: vec![Delivery {
                    id,
                    token,
                    payload: key.to_string(),
                    deadline_ms,
                    attempt: 1,
                }],
            },
        ]
    }

    fn ack(worker: u32, id: u64, token: u64) -> Vec<Event> {
        vec![
            Event::AckInvoke {
                process: w(worker),
                id,
                token,
            },
            Event::AckOk {
                process: w(worker),
                id,
                token,
            },
        ]
    }

    fn run(parts: Vec<Vec<Event>>) -> Counts {
        let (counts, anomalies) = check(&history(parts.concat()));
        assert_eq!(
            counts.valid(),
            anomalies.is_empty(),
            "{counts}\n{anomalies:?}"
        );
        counts
    }

    #[test]
    fn a_clean_history_passes() {
        let counts = run(vec![
            enqueue("a", 1),
            enqueue("b", 2),
            claim(1, "a", 1, 10, 5_000),
            ack(1, 1, 10),
            // Job 2: the first worker crashed, the lease expired, a second
            // worker got it after the deadline.
            claim(1, "b", 2, 11, 5_000),
            claim(2, "b", 2, 12, 6_500),
            ack(2, 2, 12),
        ]);
        assert!(counts.valid(), "{counts}");
        assert_eq!(counts.enqueued, 2);
        assert_eq!(counts.acked, 2);
        assert_eq!(counts.duplicates_delivered, 1);
    }

    #[test]
    fn catches_a_lost_job() {
        let counts = run(vec![enqueue("a", 1), enqueue("b", 2), ack(1, 1, 10)]);
        assert_eq!(counts.lost, 1);
        assert!(!counts.valid());
    }

    #[test]
    fn an_ack_with_unknown_outcome_is_not_a_loss() {
        let mut parts = vec![enqueue("a", 1), claim(1, "a", 1, 10, 5_000)];
        parts.push(vec![Event::AckUnknown {
            process: w(1),
            id: 1,
            token: 10,
            error: "timeout".to_string(),
        }]);
        let counts = run(parts);
        assert_eq!(counts.lost, 0);
        assert!(counts.valid());
    }

    #[test]
    fn catches_an_unexpected_job() {
        let counts = run(vec![enqueue("a", 1), claim(1, "ghost", 7, 10, 5_000)]);
        assert_eq!(counts.unexpected, 1);
    }

    #[test]
    fn catches_a_job_acked_twice() {
        let counts = run(vec![
            enqueue("a", 1),
            claim(1, "a", 1, 10, 5_000),
            ack(1, 1, 10),
            ack(1, 1, 10),
        ]);
        assert_eq!(counts.acked_twice, 1);
    }

    #[test]
    fn catches_a_stale_ack() {
        let counts = run(vec![
            enqueue("a", 1),
            claim(1, "a", 1, 10, 5_000),
            claim(2, "a", 1, 11, 7_000),
            // Worker 1 acks with its old token after token 11 was handed out.
            ack(1, 1, 10),
        ]);
        assert_eq!(counts.stale_acks, 1);
        assert_eq!(counts.lease_overlaps, 0);
    }

    #[test]
    fn an_ack_sent_before_the_newer_claim_returned_is_not_stale() {
        let mut parts = vec![enqueue("a", 1), claim(1, "a", 1, 10, 5_000)];
        parts.push(vec![Event::AckInvoke {
            process: w(1),
            id: 1,
            token: 10,
        }]);
        parts.push(claim(2, "a", 1, 11, 7_000));
        parts.push(vec![Event::AckOk {
            process: w(1),
            id: 1,
            token: 10,
        }]);
        let counts = run(parts);
        assert_eq!(counts.stale_acks, 0);
    }

    #[test]
    fn catches_overlapping_leases() {
        let counts = run(vec![
            enqueue("a", 1),
            // Lease 10 runs until 5000 ms; lease 11 was granted at 4500 ms.
            claim(1, "a", 1, 10, 5_000),
            claim(2, "a", 1, 11, 5_500),
            ack(2, 1, 11),
        ]);
        assert_eq!(counts.lease_overlaps, 1);
    }

    #[test]
    fn catches_a_delivery_after_an_ack() {
        let counts = run(vec![
            enqueue("a", 1),
            claim(1, "a", 1, 10, 5_000),
            ack(1, 1, 10),
            claim(2, "a", 1, 11, 9_000),
        ]);
        assert_eq!(counts.delivered_after_ack, 1);
    }

    #[test]
    fn catches_an_idempotency_key_with_two_jobs() {
        let counts = run(vec![enqueue("a", 1), enqueue("a", 2)]);
        assert!(counts.idempotency_duplicates >= 1);
        let counts = run(vec![
            enqueue("a", 1),
            claim(1, "a", 1, 10, 5_000),
            ack(1, 1, 10),
            // A second job carrying the same key's payload.
            claim(1, "a", 2, 11, 5_000),
            ack(1, 2, 11),
        ]);
        assert_eq!(counts.idempotency_duplicates, 1);
    }

    #[test]
    fn counts_recovered_and_unseen_unknown_enqueues() {
        let unknown = |key: &str| {
            vec![
                Event::EnqueueInvoke {
                    process: p(),
                    key: key.to_string(),
                },
                Event::EnqueueUnknown {
                    process: p(),
                    key: key.to_string(),
                    error: "timeout".to_string(),
                },
            ]
        };
        let counts = run(vec![
            unknown("a"),
            unknown("b"),
            claim(1, "a", 1, 10, 5_000),
            ack(1, 1, 10),
        ]);
        assert!(counts.valid(), "{counts}");
        assert_eq!(counts.recovered, 1);
        assert_eq!(counts.unknown_never_seen, 1);
    }

    #[test]
    fn reads_back_what_the_recorder_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let recorder = crate::history::Recorder::create(&path);
        let events = [enqueue("a", 1), claim(1, "a", 1, 10, 5_000), ack(1, 1, 10)].concat();
        for event in events.clone() {
            recorder.record(event);
        }
        recorder.flush();
        let read = crate::history::read(&path);
        assert_eq!(
            read.iter().map(|r| r.event.clone()).collect::<Vec<_>>(),
            events
        );
        assert!(check(&read).0.valid());
    }
}
