//! Client sessions (Raft thesis §6.3): per session, the results of requests
//! the client has not confirmed receiving, so a retried request gets the
//! answer of its first application instead of being applied twice.
//!
//! Memory: a session costs about 150 bytes plus about 40 bytes per stored job
//! result. At most `Limits::sessions_max` sessions exist (default 100,000,
//! about 15 MB), each keeps at most `SESSION_STORED_RESULTS_MAX` job results,
//! and all together keep at most `Limits::session_results_max` (default
//! 1,000,000, about 40 MB): storing a result beyond that evicts the longest
//! idle other sessions. So the table stays under about 55 MB by default.

use std::collections::{BTreeMap, BTreeSet};

use super::command::SessionStamp;
use super::error::QueueError;
use super::limits::{Limits, SESSION_STORED_RESULTS_MAX};
use super::outcome::Enqueued;

/// The per-job results of one enqueue.
pub(super) type BatchResults = Vec<Result<Enqueued, QueueError>>;

/// One client's session.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Session {
    pub(super) last_active_ms: u64,
    pub(super) lowest_unanswered_seq: u64,
    pub(super) results: BTreeMap<u64, BatchResults>,
    /// Job results in `results`, kept so that no request has to count them.
    stored_results: usize,
}

impl Session {
    pub(super) fn new(
        last_active_ms: u64,
        lowest_unanswered_seq: u64,
        results: BTreeMap<u64, BatchResults>,
    ) -> Session {
        let stored_results = results.values().map(Vec::len).sum();
        Session {
            last_active_ms,
            lowest_unanswered_seq,
            results,
            stored_results,
        }
    }
}

/// What the session table says about a request before it runs.
#[derive(Debug, PartialEq)]
pub(super) enum SessionVerdict<'a> {
    /// Run the request, then `record` its result.
    Fresh,
    /// The request ran before; answer with this, then `touch`.
    Replay(&'a BatchResults),
}

/// Every live session, with an activity order for idle expiry and eviction.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct SessionTable {
    sessions: BTreeMap<u64, Session>,
    by_activity: BTreeSet<(u64, u64)>,
    /// Job results stored over all sessions.
    stored_results: usize,
}

impl SessionTable {
    /// Decides what to do with a request without changing anything.
    ///
    /// An unknown session is opened by a request whose
    /// `lowest_unanswered_seq` is 1, meaning the client has received no
    /// answer in this session yet. Any other request of an unknown session
    /// means the state forgot it, so the request is refused with
    /// `SessionExpired`.
    pub(super) fn verdict(
        &self,
        stamp: &SessionStamp,
        batch_jobs: usize,
    ) -> Result<SessionVerdict<'_>, QueueError> {
        let Some(session) = self.sessions.get(&stamp.session_id) else {
            return if stamp.lowest_unanswered_seq == 1 {
                Ok(SessionVerdict::Fresh)
            } else {
                Err(QueueError::SessionExpired {
                    session_id: stamp.session_id,
                })
            };
        };
        if stamp.seq < session.lowest_unanswered_seq {
            return Err(QueueError::StaleSessionRequest {
                session_id: stamp.session_id,
                seq: stamp.seq,
            });
        }
        if let Some(results) = session.results.get(&stamp.seq) {
            return Ok(SessionVerdict::Replay(results));
        }
        // Results below the request's lowest unanswered number are about to
        // be forgotten (by `record`), so counting them costs each result
        // once; the rest of the session is counted already.
        let answered_results: usize = if stamp.lowest_unanswered_seq > session.lowest_unanswered_seq
        {
            session
                .results
                .range(..stamp.lowest_unanswered_seq)
                .map(|(_, results)| results.len())
                .sum()
        } else {
            0
        };
        let kept_results = session.stored_results - answered_results;
        if kept_results + batch_jobs > SESSION_STORED_RESULTS_MAX {
            return Err(QueueError::TooManyUnansweredRequests {
                session_id: stamp.session_id,
            });
        }
        Ok(SessionVerdict::Fresh)
    }

    /// Notes a replayed request: the session is active and the client's
    /// answered requests can be forgotten.
    pub(super) fn touch(&mut self, stamp: &SessionStamp, now_ms: u64) {
        self.activate(stamp, now_ms);
    }

    /// Stores the result of a fresh request, opening the session if needed.
    /// The longest idle sessions are evicted to stay within `sessions_max`
    /// sessions, and the longest idle other sessions to stay within
    /// `results_max` stored job results.
    pub(super) fn record(
        &mut self,
        stamp: &SessionStamp,
        now_ms: u64,
        results: BatchResults,
        limits: &Limits,
    ) {
        if !self.sessions.contains_key(&stamp.session_id) {
            self.evict_down_to(limits.sessions_max as usize - 1);
            self.sessions.insert(
                stamp.session_id,
                Session::new(now_ms, stamp.lowest_unanswered_seq, BTreeMap::new()),
            );
            self.by_activity.insert((now_ms, stamp.session_id));
        }
        self.activate(stamp, now_ms);
        if let Some(session) = self.sessions.get_mut(&stamp.session_id) {
            let added = results.len();
            let replaced = session
                .results
                .insert(stamp.seq, results)
                .map_or(0, |replaced| replaced.len());
            session.stored_results = session.stored_results + added - replaced;
            self.stored_results = self.stored_results + added - replaced;
        }
        while self.stored_results > limits.session_results_max as usize {
            let victim = self
                .by_activity
                .iter()
                .map(|&(_, session_id)| session_id)
                .find(|&session_id| session_id != stamp.session_id);
            let Some(victim) = victim else { break };
            self.remove(victim);
        }
    }

    fn remove(&mut self, session_id: u64) {
        if let Some(session) = self.sessions.remove(&session_id) {
            self.by_activity
                .remove(&(session.last_active_ms, session_id));
            self.stored_results -= session.stored_results;
        }
    }

    fn activate(&mut self, stamp: &SessionStamp, now_ms: u64) {
        let Some(session) = self.sessions.get_mut(&stamp.session_id) else {
            return;
        };
        self.by_activity
            .remove(&(session.last_active_ms, stamp.session_id));
        session.last_active_ms = now_ms;
        self.by_activity.insert((now_ms, stamp.session_id));
        if stamp.lowest_unanswered_seq > session.lowest_unanswered_seq {
            session.lowest_unanswered_seq = stamp.lowest_unanswered_seq;
            let kept = session.results.split_off(&stamp.lowest_unanswered_seq);
            let answered = std::mem::replace(&mut session.results, kept);
            let forgotten: usize = answered.values().map(Vec::len).sum();
            session.stored_results -= forgotten;
            self.stored_results -= forgotten;
        }
    }

    /// Forgets sessions idle for `idle_ms` or longer.
    pub(super) fn expire(&mut self, now_ms: u64, idle_ms: u64) {
        while let Some(&(last_active_ms, session_id)) = self.by_activity.first() {
            if last_active_ms.saturating_add(idle_ms) > now_ms {
                break;
            }
            self.remove(session_id);
        }
    }

    /// Evicts the longest idle sessions until at most `count` remain.
    pub(super) fn evict_down_to(&mut self, count: usize) {
        while self.sessions.len() > count {
            let Some(&(_, session_id)) = self.by_activity.first() else {
                break;
            };
            self.remove(session_id);
        }
    }

    /// Evicts the longest idle sessions until at most `results_max` job
    /// results are stored.
    pub(super) fn evict_down_to_results(&mut self, results_max: usize) {
        while self.stored_results > results_max {
            let Some(&(_, session_id)) = self.by_activity.first() else {
                break;
            };
            self.remove(session_id);
        }
    }

    /// The sessions in id order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, &Session)> + '_ {
        self.sessions.iter().map(|(&id, session)| (id, session))
    }

    /// Rebuilds the table from a snapshot's sessions, given in id order;
    /// `None` if the order is broken or a session is malformed.
    pub(super) fn from_list(
        sessions: impl IntoIterator<Item = (u64, Session)>,
    ) -> Option<SessionTable> {
        let mut table = SessionTable::default();
        for (session_id, session) in sessions {
            let in_order = table
                .sessions
                .last_key_value()
                .is_none_or(|(&last_id, _)| last_id < session_id);
            let results_kept = session
                .results
                .first_key_value()
                .is_none_or(|(&seq, _)| seq >= session.lowest_unanswered_seq);
            let stored = session.stored_results;
            if !in_order
                || !results_kept
                || session.lowest_unanswered_seq == 0
                || stored > SESSION_STORED_RESULTS_MAX
            {
                return None;
            }
            table
                .by_activity
                .insert((session.last_active_ms, session_id));
            table.stored_results += stored;
            table.sessions.insert(session_id, session);
        }
        Some(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::JobId;

    fn results(jobs: usize) -> BatchResults {
        (0..jobs)
            .map(|job| {
                Ok(Enqueued {
                    id: JobId(job as u64 + 1),
                    duplicate: false,
                })
            })
            .collect()
    }

    fn counted(table: &SessionTable) -> usize {
        table
            .iter()
            .map(|(_, session)| session.results.values().map(Vec::len).sum::<usize>())
            .sum()
    }

    #[test]
    fn kept_result_counts_follow_requests_answered_out_of_order() {
        let limits = Limits::default();
        let mut table = SessionTable::default();
        let stamp = |seq: u64, lowest_unanswered_seq: u64| SessionStamp {
            session_id: 7,
            seq,
            lowest_unanswered_seq,
        };
        // Requests 1..=6 of 1..=6 jobs each; the client hears back from them
        // out of order, so its lowest unanswered number moves in jumps.
        let lowest = [1, 1, 1, 3, 3, 3];
        for seq in 1..=6u64 {
            let request = stamp(seq, lowest[seq as usize - 1]);
            assert_eq!(
                table.verdict(&request, seq as usize),
                Ok(SessionVerdict::Fresh)
            );
            table.record(&request, seq, results(seq as usize), &limits);
            let session = &table.sessions[&7];
            assert_eq!(session.stored_results, counted(&table));
            assert_eq!(table.stored_results, counted(&table));
        }
        // Requests 1 and 2 were answered: 3 + 4 + 5 + 6 jobs are kept.
        // Request 7 says 5 is the lowest unanswered, so 3 and 4 are forgotten.
        let session = &table.sessions[&7];
        assert_eq!(session.stored_results, 3 + 4 + 5 + 6);
        let room = SESSION_STORED_RESULTS_MAX - (5 + 6);
        assert_eq!(table.verdict(&stamp(7, 5), room), Ok(SessionVerdict::Fresh));
        assert_eq!(
            table.verdict(&stamp(7, 5), room + 1),
            Err(QueueError::TooManyUnansweredRequests { session_id: 7 })
        );
        table.touch(&stamp(7, 5), 7);
        assert_eq!(table.sessions[&7].stored_results, 5 + 6);
        assert_eq!(table.stored_results, counted(&table));
        table.expire(1_000_000, 1);
        assert_eq!(table.stored_results, 0);
    }
}
