//! A single-server membership change and its encoding inside a log entry.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::entry::NodeId;

/// Version byte that starts every encoded [`ConfChange`].
const CONF_CHANGE_FORMAT_VERSION: u8 = 1;

/// Bytes of an encoded change before its context: version, kind, node id.
const CONF_CHANGE_HEADER_BYTES: usize = 1 + 1 + 8;

/// What a membership change does to one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfChangeKind {
    /// Add a server that receives the log but does not vote (thesis §4.2.1).
    AddLearner,
    /// Make a caught-up learner a voter.
    PromoteLearner,
    /// Remove a voter or a learner (thesis §4.2.2).
    Remove,
}

impl ConfChangeKind {
    fn code(self) -> u8 {
        match self {
            ConfChangeKind::AddLearner => 1,
            ConfChangeKind::PromoteLearner => 2,
            ConfChangeKind::Remove => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(ConfChangeKind::AddLearner),
            2 => Some(ConfChangeKind::PromoteLearner),
            3 => Some(ConfChangeKind::Remove),
            _ => None,
        }
    }
}

/// A request to change the membership by one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfChange {
    /// What happens to `node`.
    pub kind: ConfChangeKind,
    /// The server concerned.
    pub node: NodeId,
    /// Opaque to the core; the node layer puts the new member's address here.
    pub context: Bytes,
}

/// Why a membership change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfChangeError {
    /// Node id zero is reserved for "no server".
    #[error("node id 0 is not a valid member")]
    ZeroNodeId,
    /// The server to add is already a voter or a learner.
    #[error("node {0} is already a member")]
    AlreadyMember(NodeId),
    /// Only learners can be promoted.
    #[error("node {0} is not a learner")]
    NotLearner(NodeId),
    /// The server to remove is not in the configuration.
    #[error("node {0} is not a member")]
    NotMember(NodeId),
    /// A cluster needs at least one voter.
    #[error("node {0} is the last voter and cannot be removed")]
    LastVoter(NodeId),
    /// The bytes of a change entry do not decode.
    #[error("malformed membership change entry: {0}")]
    Malformed(&'static str),
}

impl ConfChange {
    /// Encodes the change as the data of a `ConfChange` entry:
    /// `{ version: u8 | kind: u8 | node: u64 little-endian | context: rest }`.
    pub fn encode(&self) -> Bytes {
        let mut buffer = BytesMut::with_capacity(CONF_CHANGE_HEADER_BYTES + self.context.len());
        buffer.put_u8(CONF_CHANGE_FORMAT_VERSION);
        buffer.put_u8(self.kind.code());
        buffer.put_u64_le(self.node);
        buffer.put_slice(&self.context);
        buffer.freeze()
    }

    /// Decodes the data of a committed `ConfChange` entry, for instance to
    /// learn a new member's address from its context.
    pub fn decode(data: &Bytes) -> Result<ConfChange, ConfChangeError> {
        if data.len() < CONF_CHANGE_HEADER_BYTES {
            return Err(ConfChangeError::Malformed("shorter than its header"));
        }
        if data[0] != CONF_CHANGE_FORMAT_VERSION {
            return Err(ConfChangeError::Malformed("unknown format version"));
        }
        let kind =
            ConfChangeKind::from_code(data[1]).ok_or(ConfChangeError::Malformed("unknown kind"))?;
        let mut node_bytes = [0u8; 8];
        node_bytes.copy_from_slice(&data[2..CONF_CHANGE_HEADER_BYTES]);
        Ok(ConfChange {
            kind,
            node: u64::from_le_bytes(node_bytes),
            context: data.slice(CONF_CHANGE_HEADER_BYTES..),
        })
    }
}
