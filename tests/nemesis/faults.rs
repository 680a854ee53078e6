//! The nemesis: faults chosen by a seeded random schedule, alone or two at
//! once, each held for a while and then healed.

use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::cluster::{Cluster, ELECTION_TIMEOUT_MS};
use super::history::{Event, Recorder};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    KillOne,
    KillLeader,
    KillMajorityInTurn,
    PauseLeader,
    PauseOne,
    PartitionHalves,
    IsolateLeader,
    OneWayFromLeader,
    OneWayToLeader,
    Bridge,
    Delay,
    TransferLeader,
    MembershipChange,
}

/// Faults that can be combined with another one.
const COMBINABLE: &[Fault] = &[
    Fault::KillOne,
    Fault::KillLeader,
    Fault::PauseLeader,
    Fault::PauseOne,
    Fault::PartitionHalves,
    Fault::IsolateLeader,
    Fault::OneWayFromLeader,
    Fault::OneWayToLeader,
    Fault::Bridge,
    Fault::Delay,
];

pub struct Nemesis<'a> {
    pub cluster: &'a mut Cluster,
    pub recorder: &'a Recorder,
    pub rng: StdRng,
    /// The id the next joining node gets.
    pub next_id: u64,
    /// Whether membership changes are part of the schedule.
    pub membership_changes: bool,
}

impl Nemesis<'_> {
    fn note(&self, action: String) {
        println!("nemesis: {action}");
        self.recorder.record(Event::Nemesis { action });
    }

    fn running_members(&self) -> Vec<u64> {
        self.cluster
            .members
            .iter()
            .copied()
            .filter(|&id| self.cluster.is_running(id) && !self.cluster.nodes[&id].paused)
            .collect()
    }

    async fn leader_or_any(&mut self) -> u64 {
        match self.cluster.leader().await {
            Some(leader) => leader,
            None => {
                let members = self.cluster.members.clone();
                members[self.rng.random_range(0..members.len())]
            }
        }
    }

    /// One round: pick a fault (or two), hold it, heal.
    pub async fn round(&mut self) {
        let roll: f64 = self.rng.random();
        let faults = if roll < 0.25 {
            let mut pair: Vec<Fault> = COMBINABLE.to_vec();
            pair.shuffle(&mut self.rng);
            pair.truncate(2);
            pair
        } else {
            let mut all = COMBINABLE.to_vec();
            all.extend([Fault::KillMajorityInTurn, Fault::TransferLeader]);
            if self.membership_changes {
                all.push(Fault::MembershipChange);
            }
            vec![all[self.rng.random_range(0..all.len())]]
        };
        for fault in faults {
            self.apply(fault).await;
        }
        // Mostly a few election timeouts; sometimes long enough for leases
        // and client deadlines to run out on both sides of a fault.
        let hold_ms = if self.rng.random_bool(0.2) {
            self.rng
                .random_range(6 * ELECTION_TIMEOUT_MS..16 * ELECTION_TIMEOUT_MS)
        } else {
            self.rng
                .random_range(ELECTION_TIMEOUT_MS..5 * ELECTION_TIMEOUT_MS)
        };
        tokio::time::sleep(Duration::from_millis(hold_ms)).await;
        self.heal().await;
        let quiet_ms = self.rng.random_range(500..2_000);
        tokio::time::sleep(Duration::from_millis(quiet_ms)).await;
    }

    pub async fn apply(&mut self, fault: Fault) {
        let members = self.cluster.members.clone();
        match fault {
            Fault::KillOne => {
                let running = self.running_members();
                if let Some(&id) = running.get(self.rng.random_range(0..running.len().max(1))) {
                    self.note(format!("kill -9 node {id}"));
                    self.cluster.kill(id);
                }
            }
            Fault::KillLeader => {
                let id = self.leader_or_any().await;
                self.note(format!("kill -9 the leader, node {id}"));
                self.cluster.kill(id);
            }
            Fault::KillMajorityInTurn => {
                let mut order = members.clone();
                order.shuffle(&mut self.rng);
                order.truncate(members.len() / 2 + 1);
                for id in order {
                    self.note(format!("kill -9 node {id} (a majority in turn)"));
                    self.cluster.kill(id);
                    tokio::time::sleep(Duration::from_millis(ELECTION_TIMEOUT_MS / 2)).await;
                }
            }
            Fault::PauseLeader => {
                let id = self.leader_or_any().await;
                self.note(format!("SIGSTOP the leader, node {id}"));
                self.cluster.pause(id);
            }
            Fault::PauseOne => {
                let running = self.running_members();
                if let Some(&id) = running.get(self.rng.random_range(0..running.len().max(1))) {
                    self.note(format!("SIGSTOP node {id}"));
                    self.cluster.pause(id);
                }
            }
            Fault::PartitionHalves => {
                let mut order = members.clone();
                order.shuffle(&mut self.rng);
                let (minority, majority) = order.split_at(members.len() / 2);
                self.note(format!("partition {minority:?} | {majority:?}"));
                for &a in minority {
                    for &b in majority {
                        self.cluster.network.cut_both(a, b);
                    }
                }
            }
            Fault::IsolateLeader => {
                let leader = self.leader_or_any().await;
                self.note(format!("isolate the leader, node {leader}"));
                for &other in &members {
                    if other != leader {
                        self.cluster.network.cut_both(leader, other);
                    }
                }
            }
            Fault::OneWayFromLeader => {
                let leader = self.leader_or_any().await;
                self.note(format!(
                    "cut every link from the leader, node {leader}, one way"
                ));
                for &other in &members {
                    if other != leader {
                        self.cluster.network.cut(leader, other);
                    }
                }
            }
            Fault::OneWayToLeader => {
                let leader = self.leader_or_any().await;
                self.note(format!(
                    "cut every link to the leader, node {leader}, one way"
                ));
                for &other in &members {
                    if other != leader {
                        self.cluster.network.cut(other, leader);
                    }
                }
            }
            Fault::Bridge => {
                let mut order = members.clone();
                order.shuffle(&mut self.rng);
                let bridge = order[0];
                let rest = &order[1..];
                let (left, right) = rest.split_at(rest.len() / 2);
                self.note(format!(
                    "bridge: {left:?} | {right:?}, node {bridge} sees both"
                ));
                for &a in left {
                    for &b in right {
                        self.cluster.network.cut_both(a, b);
                    }
                }
            }
            Fault::Delay => {
                let delay_ms = self.rng.random_range(20..200);
                self.note(format!("delay every link by {delay_ms} ms"));
                for &a in &members {
                    for &b in &members {
                        if a != b {
                            self.cluster.network.delay(a, b, delay_ms);
                        }
                    }
                }
            }
            Fault::TransferLeader => {
                let Some(leader) = self.cluster.leader().await else {
                    return;
                };
                let others: Vec<u64> = members.iter().copied().filter(|&id| id != leader).collect();
                let to = others[self.rng.random_range(0..others.len())];
                let client = self.cluster.client().await;
                let result = client.transfer_leader(to).await;
                self.note(format!("transfer leadership {leader} -> {to}: {result:?}"));
            }
            Fault::MembershipChange => self.change_membership().await,
        }
    }

    /// Adds a new node (learner, then voter) and removes an old follower, so
    /// the cluster keeps its size.
    async fn change_membership(&mut self) {
        let Some(leader) = self.cluster.leader().await else {
            self.note("membership change skipped: no leader".to_string());
            return;
        };
        let id = self.next_id;
        self.next_id += 1;
        let address = self.cluster.prepare_joiner(id).await;
        self.cluster.spawn(id);
        let client = self.cluster.client().await;
        let added = client.add_learner(id, &address).await;
        self.note(format!("add node {id} as a learner: {added:?}"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut promoted = None;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(300)).await;
            match client.promote(id).await {
                Ok(()) => {
                    promoted = Some(Ok(()));
                    break;
                }
                Err(error) => promoted = Some(Err(error)),
            }
        }
        self.note(format!("promote node {id}: {promoted:?}"));
        let victims: Vec<u64> = self
            .cluster
            .members
            .iter()
            .copied()
            .filter(|&member| member != leader)
            .collect();
        let victim = victims[self.rng.random_range(0..victims.len())];
        let mut removed = None;
        if matches!(promoted, Some(Ok(()))) {
            let result = client.remove(victim).await;
            self.note(format!("remove node {victim}: {result:?}"));
            removed = result.is_ok().then_some(victim);
        }
        self.refresh_members(removed).await;
        // A removed node is stopped for good.
        let stale: Vec<u64> = self
            .cluster
            .nodes
            .keys()
            .copied()
            .filter(|id| !self.cluster.members.contains(id))
            .collect();
        for id in stale {
            self.cluster.resume(id);
            self.cluster.kill(id);
        }
    }

    /// Takes the membership from the leader: voters and learners. After a
    /// removal that succeeded, an answer that still lists the removed node
    /// came from a leader that has not heard of it, and is asked again.
    async fn refresh_members(&mut self, removed: Option<u64>) {
        for _ in 0..50 {
            if let Some(leader) = self.cluster.leader().await
                && let Some(status) = self.cluster.status(leader).await
                && removed
                    .is_none_or(|id| !status.voters.contains(&id) && !status.learners.contains(&id))
            {
                let mut members = status.voters.clone();
                members.extend(&status.learners);
                members.retain(|id| self.cluster.nodes.contains_key(id));
                members.sort_unstable();
                self.cluster.set_members(members);
                self.note(format!("members are now {:?}", self.cluster.members));
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.note(format!(
            "members left at {:?}: no leader told the new ones",
            self.cluster.members
        ));
    }

    /// Ends every fault: links restored, paused nodes resumed, killed
    /// members restarted one at a time.
    pub async fn heal(&mut self) {
        self.cluster.network.heal();
        let members = self.cluster.members.clone();
        for &id in &members {
            if self.cluster.nodes[&id].paused {
                self.cluster.resume(id);
            }
        }
        for &id in &members {
            if !self.cluster.is_running(id) {
                self.cluster.spawn(id);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        self.note("heal".to_string());
    }
}
