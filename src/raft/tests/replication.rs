//! Log replication and commitment: Raft §5.3, §5.4.2 (Figure 8), §8, and the
//! leader's flow control (batching, pipelining, progress states).

use bytes::Bytes;
use proptest::prelude::*;

use super::network::{Network, is_append_entries, log_terms};
use crate::raft::replication::quorum_match_index;
use crate::raft::{AppendResult, Message, MessageBody, ProgressState, Role};

fn append_response(from: u64, to: u64, term: u64, match_index: u64) -> Message {
    Message {
        from,
        to,
        term,
        body: MessageBody::AppendResponse {
            result: AppendResult::Accepted { match_index },
        },
    }
}

#[test]
fn raft_5_3_leader_commits_an_entry_once_a_majority_stores_it() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    network.isolate(3);
    let (index, term) = network.propose(1, b"hello");
    assert_eq!(network.status(1).commit, index);
    let applied = network.nodes[&1].applied.last().unwrap().clone();
    assert_eq!((applied.index, applied.term), (index, term));
    assert_eq!(applied.data, Bytes::from_static(b"hello"));
    // Node 2 learns the commit index from the next message.
    network.tick(1, 2);
    network.deliver_all();
    assert_eq!(network.status(2).commit, index);
}

#[test]
fn raft_5_3_a_leader_without_a_majority_does_not_commit() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    network.isolate(2);
    network.isolate(3);
    let (index, _) = network.propose(1, b"lonely");
    assert!(network.status(1).commit < index);
}

#[test]
fn raft_8_a_new_leader_appends_a_no_op_entry_of_its_term() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    let status = network.status(1);
    let entries = network
        .raw(1)
        .log_entries(2, status.last_index + 1)
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].term, status.term);
    assert!(entries[0].data.is_empty());
    assert_eq!(status.commit, entries[0].index, "the no-op commits");
}

#[test]
fn raft_5_4_2_figure_8_earlier_term_entries_are_not_committed_by_counting() {
    // Nodes 1 and 2 hold an entry of term 2 that was never committed.
    let mut network = Network::new(&[1, 2, 3]);
    for id in [1, 2] {
        let mut config = super::network::test_config(id);
        config.seed = id;
        network.add_node(config, Network::store_with_terms(&[1, 2, 3], &[2], 2));
    }
    network.drop_if = Some(is_append_entries);
    network.elect(1);
    let term = network.status(1).term;
    assert_eq!(term, 3);
    assert_eq!(
        network.status(1).last_index,
        3,
        "index 2 from term 2, the no-op at 3"
    );
    // Node 2 reports it stores index 2: a majority holds the term-2 entry.
    network.raw(1).step(append_response(2, 1, term, 2)).unwrap();
    assert_eq!(
        network.status(1).commit,
        1,
        "a term-2 entry must not commit by counting"
    );
    // Once the term-3 entry is on a majority, both commit.
    network.raw(1).step(append_response(2, 1, term, 3)).unwrap();
    assert_eq!(network.status(1).commit, 3);
}

#[test]
fn raft_5_3_follower_rejects_entries_whose_previous_entry_does_not_match() {
    let mut network = Network::new(&[1, 2, 3]);
    network
        .raw(2)
        .step(Message {
            from: 1,
            to: 2,
            term: 2,
            body: MessageBody::AppendEntries {
                prev_log_index: 5,
                prev_log_term: 2,
                entries: Vec::new(),
                commit: 1,
            },
        })
        .unwrap();
    let ready = network.raw(2).ready().unwrap();
    match ready.persisted_messages[0].body {
        MessageBody::AppendResponse {
            result:
                AppendResult::Rejected {
                    rejected_index,
                    hint_index,
                    hint_term,
                },
        } => {
            assert_eq!(rejected_index, 5);
            assert_eq!(
                (hint_index, hint_term),
                (1, 1),
                "hint: the follower's last entry"
            );
        }
        ref other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn raft_5_3_fast_backtracking_skips_a_whole_term_per_round_trip() {
    let voters = [1, 2, 3];
    let mut leader_terms = vec![2; 29];
    leader_terms.extend(vec![5; 10]);
    let mut follower_terms = vec![2; 9];
    follower_terms.extend(vec![4; 50]);
    let mut network = Network::new(&[]);
    for id in voters {
        let terms = if id == 2 {
            &follower_terms
        } else {
            &leader_terms
        };
        network.add_node(
            super::network::test_config(id),
            Network::store_with_terms(&voters, terms, 5),
        );
    }
    network.elect(1);
    let rejections = network.delivered_matching(|message| {
        message.from == 2
            && matches!(
                message.body,
                MessageBody::AppendResponse {
                    result: AppendResult::Rejected { .. }
                }
            )
    });
    assert!(
        rejections.len() <= 3,
        "{} rejections to skip 50 divergent entries",
        rejections.len()
    );
    assert_eq!(log_terms(&network, 2), log_terms(&network, 1));
}

#[test]
fn raft_5_3_conflicting_follower_suffix_is_replaced_by_the_leaders_entries() {
    let voters = [1, 2, 3];
    let mut network = Network::new(&[]);
    network.add_node(
        super::network::test_config(1),
        Network::store_with_terms(&voters, &[2, 3], 3),
    );
    network.add_node(
        super::network::test_config(2),
        Network::store_with_terms(&voters, &[2, 2, 2, 2], 3),
    );
    network.add_node(
        super::network::test_config(3),
        Network::store_with_terms(&voters, &[2, 3], 3),
    );
    network.elect(1);
    network.propose(1, b"after");
    assert_eq!(log_terms(&network, 2), log_terms(&network, 1));
    let stored: Vec<u64> = network.nodes[&2]
        .store
        .all_entries()
        .iter()
        .map(|e| e.term)
        .collect();
    assert_eq!(stored, vec![2, 3, 4, 4]);
}

#[test]
fn batching_respects_the_entry_and_byte_limits_per_message() {
    let mut network = Network::with_config(&[1, 2, 3], |config| {
        config.max_entries_per_message = 4;
        config.max_bytes_per_message = 300;
    });
    network.elect(1);
    for _ in 0..10 {
        network
            .raw(1)
            .propose(Bytes::from_static(&[7u8; 10]))
            .unwrap();
    }
    for _ in 0..6 {
        network
            .raw(1)
            .propose(Bytes::from_static(&[7u8; 100]))
            .unwrap();
    }
    network.deliver_all();
    let appends = network.delivered_matching(is_append_entries);
    let mut largest_count = 0;
    for message in &appends {
        if let MessageBody::AppendEntries { entries, .. } = &message.body {
            let bytes: u64 = entries.iter().map(|entry| entry.size_bytes()).sum();
            assert!(
                entries.len() <= 4,
                "{} entries in one message",
                entries.len()
            );
            assert!(
                entries.len() <= 1 || bytes <= 300,
                "{bytes} bytes in one message"
            );
            largest_count = largest_count.max(entries.len());
        }
    }
    assert_eq!(largest_count, 4, "small entries travel four at a time");
    assert_eq!(log_terms(&network, 2), log_terms(&network, 1));
}

#[test]
fn pipelining_is_bounded_by_the_inflight_window() {
    let mut network = Network::with_config(&[1, 2, 3], |config| {
        config.max_entries_per_message = 1;
        config.max_inflight_messages = 3;
    });
    network.elect(1);
    assert_eq!(
        network.status(1).progress[&2].state,
        ProgressState::Replicate
    );
    for _ in 0..10 {
        network.raw(1).propose(Bytes::from_static(b"p")).unwrap();
    }
    let ready = network.raw(1).ready().unwrap();
    let to_node_2 = ready
        .messages
        .iter()
        .filter(|message| message.to == 2 && is_append_entries(message))
        .count();
    assert_eq!(
        to_node_2, 3,
        "three messages in flight, then the window is full"
    );
    assert_eq!(network.status(1).progress[&2].inflight_messages, 3);
    // Acknowledging opens the window again and everything arrives.
    let number = ready.number;
    network.in_flight.extend(ready.messages);
    let node = network.node(1);
    node.store.append(&ready.entries);
    node.raw.on_persisted(number);
    network.deliver_all();
    assert_eq!(log_terms(&network, 2), log_terms(&network, 1));
    assert_eq!(network.status(2).last_index, network.status(1).last_index);
}

#[test]
fn progress_moves_from_probe_to_replicate_and_back_on_rejection() {
    let mut network = Network::new(&[1, 2, 3]);
    network.drop_if = Some(is_append_entries);
    network.elect(1);
    assert_eq!(network.status(1).progress[&2].state, ProgressState::Probe);
    network.heal();
    network.tick(1, 2);
    network.deliver_all();
    assert_eq!(
        network.status(1).progress[&2].state,
        ProgressState::Replicate
    );
    let term = network.status(1).term;
    let last_index = network.status(1).last_index;
    network
        .raw(1)
        .step(Message {
            from: 2,
            to: 1,
            term,
            body: MessageBody::AppendResponse {
                result: AppendResult::Rejected {
                    rejected_index: last_index + 5,
                    hint_index: 1,
                    hint_term: 1,
                },
            },
        })
        .unwrap();
    assert_eq!(network.status(1).progress[&2].state, ProgressState::Probe);
}

#[test]
fn a_probe_that_is_lost_is_retried_after_a_heartbeat_answer() {
    let mut network = Network::new(&[1, 2, 3]);
    network.drop_if = Some(is_append_entries);
    network.elect(1);
    network.propose(1, b"first");
    assert!(network.status(2).last_index < network.status(1).last_index);
    network.heal();
    network.tick(1, 2);
    network.deliver_all();
    assert_eq!(log_terms(&network, 2), log_terms(&network, 1));
    assert_eq!(network.status(1).role, Role::Leader);
}

#[test]
fn quorum_match_index_is_the_highest_index_a_majority_reached() {
    assert_eq!(quorum_match_index(&mut []), 0);
    assert_eq!(quorum_match_index(&mut [5]), 5);
    assert_eq!(quorum_match_index(&mut [1, 9]), 1);
    assert_eq!(quorum_match_index(&mut [3, 9, 1]), 3);
    assert_eq!(quorum_match_index(&mut [3, 9, 1, 7]), 3);
}

proptest! {
    /// The sorted fast path agrees with the obvious definition: the largest
    /// index that at least a majority of members has reached.
    #[test]
    fn quorum_match_index_agrees_with_counting(matches in proptest::collection::vec(0u64..50, 1..8)) {
        let majority = matches.len() / 2 + 1;
        let counted = (0..50u64)
            .filter(|candidate| matches.iter().filter(|m| **m >= *candidate).count() >= majority)
            .max()
            .unwrap_or(0);
        let mut sorted = matches.clone();
        prop_assert_eq!(quorum_match_index(&mut sorted), counted);
    }
}

#[test]
fn an_unreachable_follower_is_probed_instead_of_streamed_to() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    assert_eq!(
        network.status(1).progress[&2].state,
        ProgressState::Replicate
    );
    network.raw(1).report_unreachable(2);
    assert_eq!(network.status(1).progress[&2].state, ProgressState::Probe);
    // Replication resumes from the follower's match once it answers again.
    network.propose(1, b"after the outage");
    assert_eq!(log_terms(&network, 2), log_terms(&network, 1));
    assert_eq!(
        network.status(1).progress[&2].state,
        ProgressState::Replicate
    );
}

#[test]
fn stale_append_responses_do_not_move_progress_backwards() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    network.propose(1, b"x");
    let before = network.status(1).progress[&2].clone();
    let term = network.status(1).term;
    network.raw(1).step(append_response(2, 1, term, 1)).unwrap();
    let after = network.status(1).progress[&2].clone();
    assert_eq!(after.match_index, before.match_index);
    assert_eq!(after.state, ProgressState::Replicate);
}
