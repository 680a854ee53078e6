//! The contract between the node and the replicated state machine it runs.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A deterministic state machine replicated by the node.
///
/// The node stamps every entry with the leader's wall-clock time and applies
/// each command with that time. The state machine must derive everything from
/// its state, the command and the stamped time: no clock, no randomness, no
/// iteration order that can differ between nodes.
pub trait StateMachine: Send + 'static {
    /// A command, as proposed by clients and stored in the log.
    type Command: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The result of applying a command, handed back to its proposer.
    type Outcome: Send + 'static;

    /// The empty state.
    fn empty() -> Self
    where
        Self: Sized;

    /// Applies one committed command with the leader's stamped time.
    fn apply(&mut self, now_ms: u64, command: &Self::Command) -> Self::Outcome;

    /// The command a leader proposes only to let stamped time advance, so
    /// that timers in the state fall due without other traffic.
    fn time_advance_command() -> Self::Command;

    /// The earliest stamped time at which something in the state falls due,
    /// if anything is waiting for time to pass.
    fn next_wakeup_ms(&self) -> Option<u64>;

    /// The latest stamped time the state has seen.
    fn last_now_ms(&self) -> u64;

    /// A copy of the state taken for a snapshot. The applier takes it
    /// between two entries and encodes it on another thread while applying
    /// goes on, so a large state never holds up the answers to clients for
    /// as long as encoding takes.
    type Frozen: Send + 'static;

    /// Copies what a snapshot needs; should cost far less than encoding
    /// (share what never changes rather than copy it).
    fn freeze(&self) -> Self::Frozen;

    /// The canonical encoding of a frozen state.
    fn encode(frozen: Self::Frozen) -> Vec<u8>;

    /// A canonical encoding of the whole state.
    fn snapshot(&self) -> Vec<u8> {
        Self::encode(self.freeze())
    }

    /// Rebuilds a state from [`StateMachine::snapshot`] output; never panics
    /// on bad input.
    fn restore(bytes: &[u8]) -> Result<Self, String>
    where
        Self: Sized;
}
