//! The simulated network: per-message delay (and so reordering), loss,
//! duplication, and directed link blocking for partitions of every shape.

use std::collections::{BTreeMap, BTreeSet};

use raftq::raft::{Message, NodeId, SeededRng};

/// How the network misbehaves at the moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkFaults {
    /// Percentage of messages lost.
    pub loss_percent: u64,
    /// Percentage of messages delivered twice.
    pub duplicate_percent: u64,
    /// Each copy is delivered after 1 to `max_delay_ticks` ticks.
    pub max_delay_ticks: u64,
}

impl LinkFaults {
    pub const CALM: LinkFaults = LinkFaults {
        loss_percent: 0,
        duplicate_percent: 0,
        max_delay_ticks: 2,
    };
}

/// Messages in flight, ordered by delivery time, then by send order.
pub struct SimNetwork {
    in_flight: BTreeMap<(u64, u64), Message>,
    next_sequence: u64,
    pub faults: LinkFaults,
    /// Directed links `(from, to)` that lose everything.
    pub blocked: BTreeSet<(NodeId, NodeId)>,
}

impl SimNetwork {
    pub fn new(faults: LinkFaults) -> Self {
        SimNetwork {
            in_flight: BTreeMap::new(),
            next_sequence: 0,
            faults,
            blocked: BTreeSet::new(),
        }
    }

    pub fn send(&mut self, rng: &mut SeededRng, now: u64, message: Message) {
        if self.blocked.contains(&(message.from, message.to)) {
            return;
        }
        if rng.chance_percent(self.faults.loss_percent) {
            return;
        }
        let copies = if rng.chance_percent(self.faults.duplicate_percent) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = rng.range(1, self.faults.max_delay_ticks + 1);
            self.next_sequence += 1;
            self.in_flight
                .insert((now + delay, self.next_sequence), message.clone());
        }
    }

    /// Removes and returns the next message due at or before `now`, unless
    /// its link has been cut since it was sent.
    pub fn next_due(&mut self, now: u64) -> Option<Message> {
        loop {
            let (&key, _) = self.in_flight.first_key_value()?;
            if key.0 > now {
                return None;
            }
            let message = self.in_flight.remove(&key).expect("key just seen");
            if !self.blocked.contains(&(message.from, message.to)) {
                return Some(message);
            }
        }
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Cuts both directions between every member of `side` and every other server.
    pub fn split(&mut self, side: &[NodeId], everyone: &[NodeId]) {
        for a in side {
            for b in everyone {
                if !side.contains(b) {
                    self.blocked.insert((*a, *b));
                    self.blocked.insert((*b, *a));
                }
            }
        }
    }

    /// Only the listed undirected links work.
    pub fn only_links(&mut self, links: &[(NodeId, NodeId)], everyone: &[NodeId]) {
        for a in everyone {
            for b in everyone {
                let linked = links.contains(&(*a, *b)) || links.contains(&(*b, *a));
                if a != b && !linked {
                    self.blocked.insert((*a, *b));
                }
            }
        }
    }
}
