//! Leader election: Raft §5.1, §5.2, §5.4.1; PreVote (thesis §9.6);
//! CheckQuorum (thesis §6.2).

use super::network::{Network, test_config};
use crate::raft::{MemStore, Message, MessageBody, RawNode, Role};

fn vote_request(from: u64, to: u64, term: u64, last_log_index: u64, last_log_term: u64) -> Message {
    Message {
        from,
        to,
        term,
        body: MessageBody::RequestVote {
            pre_vote: false,
            last_log_index,
            last_log_term,
            leadership_transfer: false,
        },
    }
}

fn vote_answers(node: &mut RawNode<MemStore>) -> Vec<(u64, bool)> {
    let ready = node.ready().unwrap();
    ready
        .persisted_messages
        .iter()
        .chain(ready.messages.iter())
        .filter_map(|message| match message.body {
            MessageBody::RequestVoteResponse { granted, .. } => Some((message.to, granted)),
            _ => None,
        })
        .collect()
}

#[test]
fn raft_5_2_follower_that_hears_nothing_becomes_candidate_in_a_new_term() {
    let mut network = Network::with_config(&[1, 2, 3], |config| config.pre_vote = false);
    let term_before = network.status(1).term;
    network.tick(1, 20);
    let status = network.status(1);
    assert_eq!(status.role, Role::Candidate);
    assert_eq!(status.term, term_before + 1);
    assert_eq!(status.vote, Some(1));
}

#[test]
fn raft_5_2_candidate_with_votes_from_a_majority_becomes_leader() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    assert_eq!(network.status(1).role, Role::Leader);
    for follower in [2, 3] {
        let status = network.status(follower);
        assert_eq!(status.role, Role::Follower);
        assert_eq!(status.leader, Some(1));
        assert_eq!(status.term, network.status(1).term);
    }
}

#[test]
fn raft_5_2_election_timeouts_are_randomized_between_one_and_two_timeouts() {
    let mut timeouts = std::collections::BTreeSet::new();
    for seed in 0..20 {
        let mut config = test_config(1);
        config.pre_vote = false;
        config.seed = seed;
        let mut node = RawNode::new(config, MemStore::new_bootstrapped([1, 2, 3])).unwrap();
        let mut ticks = 0;
        while node.status().role == Role::Follower {
            node.tick();
            ticks += 1;
            assert!(
                ticks < 20,
                "timed out after {ticks} ticks, past twice the timeout"
            );
        }
        assert!(
            ticks >= 10,
            "timed out after {ticks} ticks, before the base timeout"
        );
        timeouts.insert(ticks);
    }
    assert!(timeouts.len() > 3, "timeouts are not spread: {timeouts:?}");
}

#[test]
fn raft_5_2_a_server_votes_for_at_most_one_candidate_per_term() {
    let mut node = RawNode::new(test_config(3), MemStore::new_bootstrapped([1, 2, 3])).unwrap();
    node.step(vote_request(1, 3, 2, 1, 1)).unwrap();
    assert_eq!(vote_answers(&mut node), vec![(1, true)]);
    node.step(vote_request(2, 3, 2, 1, 1)).unwrap();
    assert_eq!(vote_answers(&mut node), vec![(2, false)]);
    // The same candidate asking again gets the same answer.
    node.step(vote_request(1, 3, 2, 1, 1)).unwrap();
    assert_eq!(vote_answers(&mut node), vec![(1, true)]);
}

#[test]
fn raft_5_4_1_candidate_whose_log_is_behind_is_refused_a_vote() {
    let store = Network::store_with_terms(&[1, 2, 3], &[2, 2, 3], 3);
    let mut node = RawNode::new(test_config(3), store).unwrap();
    // Lower last term, even with a longer log.
    node.step(vote_request(1, 3, 4, 10, 2)).unwrap();
    assert_eq!(vote_answers(&mut node), vec![(1, false)]);
    // Same last term, shorter log.
    node.step(vote_request(2, 3, 5, 3, 3)).unwrap();
    assert_eq!(vote_answers(&mut node), vec![(2, false)]);
    // Same last term, same length: up to date.
    node.step(vote_request(2, 3, 6, 4, 3)).unwrap();
    assert_eq!(vote_answers(&mut node), vec![(2, true)]);
}

#[test]
fn raft_5_1_a_server_seeing_a_higher_term_steps_down_and_adopts_it() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    let term = network.status(1).term;
    network
        .raw(1)
        .step(Message {
            from: 2,
            to: 1,
            term: term + 5,
            body: MessageBody::AppendResponse {
                result: crate::raft::AppendResult::Accepted { match_index: 0 },
            },
        })
        .unwrap();
    let status = network.status(1);
    assert_eq!(status.role, Role::Follower);
    assert_eq!(status.term, term + 5);
    assert_eq!(status.vote, None);
}

#[test]
fn raft_5_1_a_request_from_an_older_term_is_refused() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    let term = network.status(2).term;
    network
        .raw(2)
        .step(vote_request(3, 2, term - 1, 100, 100))
        .unwrap();
    let answers = vote_answers(network.raw(2));
    assert!(answers.iter().all(|(_, granted)| !granted));
    assert_eq!(network.status(2).vote, Some(1));
}

#[test]
fn thesis_9_6_prevote_keeps_a_partitioned_server_from_raising_its_term() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    let term = network.status(1).term;
    network.isolate(3);
    for _ in 0..10 {
        network.tick(3, 20);
        network.deliver_all();
    }
    assert_eq!(
        network.status(3).term,
        term,
        "PreVote must not raise the term"
    );
    network.heal();
    network.tick(1, 2);
    network.deliver_all();
    assert_eq!(network.status(1).role, Role::Leader);
    assert_eq!(
        network.status(1).term,
        term,
        "the rejoining server did not disrupt"
    );
    assert_eq!(network.status(3).leader, Some(1));
}

#[test]
fn thesis_9_6_without_prevote_a_partitioned_server_raises_its_term() {
    let mut network = Network::with_config(&[1, 2, 3], |config| {
        config.pre_vote = false;
        config.check_quorum = false;
    });
    network.elect(1);
    let term = network.status(1).term;
    network.isolate(3);
    network.tick(3, 40);
    assert!(network.status(3).term > term + 1);
}

#[test]
fn thesis_9_6_prevote_is_refused_by_a_server_that_hears_from_its_leader() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    let term = network.status(1).term;
    // Node 3 stops hearing from the leader but still reaches node 2.
    network.blocked.insert((1, 3));
    for _ in 0..10 {
        network.tick(1, 2);
        network.tick(2, 1);
        network.tick(3, 5);
        network.deliver_all();
    }
    assert_eq!(network.status(1).role, Role::Leader);
    assert_eq!(network.status(1).term, term);
    assert_eq!(network.status(3).term, term);
    assert_ne!(network.status(3).role, Role::Candidate);
}

#[test]
fn thesis_6_2_check_quorum_leader_without_a_quorum_steps_down() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    network.isolate(1);
    // One timeout to clear the activity flags, a second to notice the silence.
    network.tick(1, 20);
    assert_eq!(network.status(1).role, Role::Follower);
    assert_eq!(network.status(1).leader, None);
}

#[test]
fn thesis_6_2_check_quorum_leader_with_a_quorum_stays() {
    let mut network = Network::new(&[1, 2, 3]);
    network.elect(1);
    network.isolate(3);
    for _ in 0..20 {
        network.tick(1, 1);
        network.deliver_all();
    }
    assert_eq!(network.status(1).role, Role::Leader);
}

#[test]
fn thesis_9_6_prevote_candidate_does_not_persist_a_vote_for_itself() {
    let mut network = Network::new(&[1, 2, 3]);
    network.tick(1, 20);
    let status = network.status(1);
    assert_eq!(status.role, Role::PreCandidate);
    assert_eq!(status.vote, None);
    let ready = network.raw(1).ready().unwrap();
    assert!(ready.messages.iter().all(|message| matches!(
        message.body,
        MessageBody::RequestVote { pre_vote: true, .. }
    ) && message.term == status.term + 1));
}

#[test]
fn thesis_6_2_follower_told_its_leader_is_unreachable_campaigns_once_the_lease_ends() {
    // Timers are not safety: this checks only that the hint shortens the
    // wait, never below the leader lease that CheckQuorum relies on.
    for seed in 0..20 {
        let mut network = Network::with_config(&[1, 2, 3], |config| config.seed = seed);
        network.elect(1);
        network.blocked.extend([(1, 2), (1, 3)]);
        network.raw(2).report_unreachable(1);
        let mut ticks = 0;
        while network.status(2).role == Role::Follower {
            network.raw(2).tick();
            network.process(2);
            ticks += 1;
            assert!(ticks < 20, "seed {seed}: no campaign within two timeouts");
        }
        assert!(
            ticks >= 10,
            "seed {seed}: campaigned after {ticks} ticks, inside the leader lease"
        );
        assert!(
            ticks < 12,
            "seed {seed}: campaigned after {ticks} ticks, not soon after the lease"
        );
    }
}

#[test]
fn unreachable_peer_that_is_not_the_leader_leaves_the_election_timer_alone() {
    let mut shortened = 0;
    for seed in 0..20 {
        let mut network = Network::with_config(&[1, 2, 3], |config| config.seed = seed);
        network.elect(1);
        network.blocked.extend([(1, 2), (1, 3)]);
        network.raw(2).report_unreachable(3);
        let mut ticks = 0;
        while network.status(2).role == Role::Follower {
            network.raw(2).tick();
            network.process(2);
            ticks += 1;
        }
        if ticks < 12 {
            shortened += 1;
        }
    }
    // With the full randomized timeout most seeds wait well past 12 ticks.
    assert!(shortened < 10, "{shortened} of 20 seeds campaigned early");
}
