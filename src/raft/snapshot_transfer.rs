//! InstallSnapshot in bounded chunks (Raft §7).

use bytes::Bytes;

use super::core::RaftCore;
use super::entry::NodeId;
use super::error::{Error, StoreError};
use super::log_store::LogStore;
use super::message::{AppendResult, MessageBody};
use super::progress::ProgressState;
use super::snapshot::{Snapshot, SnapshotMeta};

/// A snapshot a follower is assembling from the leader's chunks.
#[derive(Debug)]
pub(crate) struct IncomingSnapshot {
    from: NodeId,
    term: u64,
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// Where the chunk that ends at or after `offset` starts, so that a lost last
/// chunk can be sent again.
fn chunk_start(offset: u64, length: u64, chunk_bytes: u64) -> u64 {
    if offset < length || length == 0 {
        return offset.min(length);
    }
    ((length - 1) / chunk_bytes) * chunk_bytes
}

impl<S: LogStore> RaftCore<S> {
    /// Starts streaming the latest local snapshot to a follower that needs
    /// compacted entries.
    pub(crate) fn send_snapshot(&mut self, to: NodeId) -> Result<bool, Error> {
        let snapshot = match self.log.store.snapshot() {
            Ok(snapshot) => snapshot,
            Err(StoreError::Unavailable) => return Ok(false),
            Err(error) => return Err(error.into()),
        };
        let Some(progress) = self.progress.get_mut(&to) else {
            return Ok(false);
        };
        progress.become_snapshot(snapshot);
        self.send_snapshot_chunk(to);
        Ok(true)
    }

    /// Sends the chunk at the follower's current offset. Called again on each
    /// heartbeat answer, which retransmits a lost chunk.
    pub(crate) fn send_snapshot_chunk(&mut self, to: NodeId) {
        let chunk_bytes = self.config.snapshot_chunk_bytes;
        let Some(progress) = self.progress.get(&to) else {
            return;
        };
        let Some(outgoing) = &progress.outgoing_snapshot else {
            return;
        };
        let length = outgoing.snapshot.data.len() as u64;
        let offset = chunk_start(outgoing.offset, length, chunk_bytes);
        let end = (offset + chunk_bytes).min(length);
        let body = MessageBody::InstallSnapshot {
            meta: outgoing.snapshot.meta.clone(),
            offset,
            data: outgoing.snapshot.data.slice(offset as usize..end as usize),
            done: end == length,
        };
        self.send(to, body);
    }

    pub(crate) fn handle_snapshot_chunk_response(
        &mut self,
        from: NodeId,
        snapshot_index: u64,
        next_offset: u64,
    ) {
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.recent_active = true;
        if progress.state != ProgressState::Snapshot {
            return;
        }
        let Some(outgoing) = &mut progress.outgoing_snapshot else {
            return;
        };
        let length = outgoing.snapshot.data.len() as u64;
        if outgoing.snapshot.meta.index != snapshot_index
            || next_offset > length
            || next_offset == outgoing.offset
        {
            return;
        }
        outgoing.offset = next_offset;
        if next_offset < length {
            self.send_snapshot_chunk(from);
        }
    }

    /// The follower side: assemble chunks in order (bounded by
    /// `max_snapshot_bytes`), then install the snapshot.
    pub(crate) fn handle_install_snapshot(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
        done: bool,
    ) {
        if meta.index <= self.log.committed {
            // Already have everything it covers: report where we are.
            self.incoming_snapshot = None;
            let match_index = self.log.committed;
            self.send(
                from,
                MessageBody::AppendResponse {
                    result: AppendResult::Accepted { match_index },
                },
            );
            return;
        }
        if offset == 0 {
            self.incoming_snapshot = Some(IncomingSnapshot {
                from,
                term: self.term,
                meta: meta.clone(),
                data: Vec::new(),
            });
        }
        let expected_offset = match &self.incoming_snapshot {
            Some(incoming)
                if incoming.from == from && incoming.term == self.term && incoming.meta == meta =>
            {
                incoming.data.len() as u64
            }
            _ => 0,
        };
        if offset != expected_offset {
            self.send(
                from,
                MessageBody::SnapshotChunkResponse {
                    snapshot_index: meta.index,
                    next_offset: expected_offset,
                },
            );
            return;
        }
        let incoming = self
            .incoming_snapshot
            .as_mut()
            .expect("a matching snapshot is being assembled");
        if incoming.data.len() as u64 + data.len() as u64 > self.config.max_snapshot_bytes {
            // Refused: the operator must raise the limit or shrink the state.
            self.incoming_snapshot = None;
            return;
        }
        incoming.data.extend_from_slice(&data);
        if !done {
            let next_offset = incoming.data.len() as u64;
            self.send(
                from,
                MessageBody::SnapshotChunkResponse {
                    snapshot_index: meta.index,
                    next_offset,
                },
            );
            return;
        }
        let incoming = self.incoming_snapshot.take().expect("checked above");
        let snapshot = Snapshot {
            meta: incoming.meta,
            data: Bytes::from(incoming.data),
        };
        let match_index = if self.restore(snapshot) {
            self.log.last_index()
        } else {
            self.log.committed
        };
        self.send(
            from,
            MessageBody::AppendResponse {
                result: AppendResult::Accepted { match_index },
            },
        );
    }

    /// Replaces the log with `snapshot` unless the log already holds its last
    /// entry, in which case only the commit index moves. True if restored.
    fn restore(&mut self, snapshot: Snapshot) -> bool {
        let index = snapshot.meta.index;
        if index <= self.log.committed {
            return false;
        }
        if self.log.matches_term(index, snapshot.meta.term) {
            self.log.commit_to(index);
            return false;
        }
        self.membership
            .reset(index, snapshot.meta.conf_state.clone());
        self.log.restore(snapshot);
        self.on_config_changed();
        true
    }
}
