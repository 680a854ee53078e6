//! The client's session with the cluster (Raft thesis §6.3): a random id and
//! a sequence number per enqueue, so the state machine can recognise a retry
//! and answer it with the first try's result.

use std::collections::BTreeSet;
use std::sync::Mutex;

use crate::queue::SessionStamp;

struct State {
    id: u64,
    next_seq: u64,
    unanswered: BTreeSet<u64>,
}

/// Sequence numbers of one client process.
pub(crate) struct Session {
    state: Mutex<State>,
}

impl Session {
    pub(crate) fn new() -> Session {
        Session {
            state: Mutex::new(State {
                id: rand::random(),
                next_seq: 1,
                unanswered: BTreeSet::new(),
            }),
        }
    }

    /// Numbers a new request; it stays unanswered until [`Session::finish`].
    pub(crate) fn begin(&self) -> SessionStamp {
        let mut state = self.state.lock().expect("session lock");
        let seq = state.next_seq;
        state.next_seq += 1;
        state.unanswered.insert(seq);
        let lowest_unanswered_seq = *state.unanswered.first().expect("just inserted");
        SessionStamp {
            session_id: state.id,
            seq,
            lowest_unanswered_seq,
        }
    }

    /// The lowest sequence number still waiting for an answer, as sent with
    /// a try of request `seq` (never above `seq` itself).
    pub(crate) fn lowest_unanswered(&self, seq: u64) -> u64 {
        let state = self.state.lock().expect("session lock");
        state.unanswered.first().copied().unwrap_or(seq).min(seq)
    }

    /// Request `seq` has its answer, or the client gave up on it; the
    /// cluster may forget its result.
    pub(crate) fn finish(&self, seq: u64) {
        self.state
            .lock()
            .expect("session lock")
            .unanswered
            .remove(&seq);
    }

    /// Starts a new session after the cluster forgot this one.
    pub(crate) fn renew(&self) {
        let mut state = self.state.lock().expect("session lock");
        state.id = rand::random();
        state.next_seq = 1;
        state.unanswered.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_unanswered_follows_the_oldest_request_in_flight() {
        let session = Session::new();
        let first = session.begin();
        let second = session.begin();
        assert_eq!(first.seq, 1);
        assert_eq!(second.lowest_unanswered_seq, 1);
        session.finish(1);
        assert_eq!(session.lowest_unanswered(second.seq), 2);
        let third = session.begin();
        assert_eq!(third.lowest_unanswered_seq, 2);
        session.finish(2);
        session.finish(3);
        let fourth = session.begin();
        assert_eq!(fourth.lowest_unanswered_seq, 4);
    }
}
