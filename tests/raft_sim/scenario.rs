//! One simulated run: a fault phase with every kind of fault and a stream of
//! client requests, then a liveness phase on a healed network.

use bytes::Bytes;
use raftq::raft::{ConfChange, ConfChangeKind, NodeId, SeededRng};

use super::cluster::{NodeSettings, SimCluster};
use super::network::LinkFaults;

/// Ticks of the fault phase.
pub const FAULT_TICKS: u64 = 1500;
/// After healing, a leader must exist within this many ticks.
pub const LIVENESS_LEADER_TICKS: u64 = 500;
/// After healing, every acknowledged proposal must be applied on every
/// member within this many ticks.
pub const LIVENESS_APPLY_TICKS: u64 = 1500;
/// Ticks after which the liveness phase proposes its final entry again.
const FINAL_PROPOSAL_RETRY_TICKS: u64 = 100;
/// Servers beyond the founding ones that may join during a run.
const MAX_JOINING_SERVERS: u64 = 2;

/// What a run did, for the determinism check and the coverage report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimOutcome {
    pub trace_hash: u64,
    pub acknowledged: u64,
    pub reads_answered: u64,
    pub snapshots_installed: u64,
    pub leaders: u64,
    pub conf_changes: u64,
    pub transfers: u64,
    pub crashes: u64,
}

fn chance_per_mille(rng: &mut SeededRng, per_mille: u64) -> bool {
    rng.below(1000) < per_mille
}

/// Runs seed `seed` on a cluster of `voters` founding voters.
pub fn run_seed(seed: u64, voters: u64) -> Result<SimOutcome, String> {
    let mut rng = SeededRng::new(seed ^ 0x0FA1_75CE_11A7_0000);
    let ids: Vec<NodeId> = (1..=voters).collect();
    let faults = LinkFaults {
        loss_percent: rng.below(21),
        duplicate_percent: rng.below(11),
        max_delay_ticks: rng.range(1, 6),
    };
    // PreVote and CheckQuorum are each left out in some runs; never both,
    // since a server removed without knowing it would then disrupt forever
    // (thesis §4.2.3).
    let (pre_vote, check_quorum) = match rng.below(10) {
        0 => (true, false),
        1 => (false, true),
        _ => (true, true),
    };
    let settings = NodeSettings {
        pre_vote,
        check_quorum,
        max_entries_per_message: [1, 2, 8][rng.below(3) as usize],
        max_inflight_messages: [1, 2, 4][rng.below(3) as usize],
    };
    let mut cluster = SimCluster::new(seed, &ids, faults, settings)?;
    let mut outcome = SimOutcome::default();
    let mut next_new_id = voters + 1;
    let mut restarts: Vec<(u64, NodeId)> = Vec::new();
    let mut next_partition_change = rng.range(50, 300);

    let result = (|| -> Result<(), String> {
        while cluster.now < FAULT_TICKS {
            if cluster.now >= next_partition_change {
                choose_partition(&mut cluster, &mut rng);
                next_partition_change = cluster.now + rng.range(50, 300);
            }
            if chance_per_mille(&mut rng, 4) {
                let running: Vec<NodeId> = cluster
                    .ids()
                    .into_iter()
                    .filter(|id| cluster.is_running(*id))
                    .collect();
                if !running.is_empty() {
                    // Half of the crashes hit the leader, the most telling victim.
                    let victim = match cluster.leader() {
                        Some(leader) if rng.chance_percent(50) => leader,
                        _ => running[rng.below(running.len() as u64) as usize],
                    };
                    cluster.crash(victim);
                    outcome.crashes += 1;
                    restarts.push((cluster.now + rng.range(5, 200), victim));
                }
            }
            let now = cluster.now;
            let due: Vec<NodeId> = restarts
                .iter()
                .filter(|(at, _)| *at <= now)
                .map(|(_, id)| *id)
                .collect();
            restarts.retain(|(at, _)| *at > now);
            for id in due {
                cluster.start(id)?;
            }
            if rng.chance_percent(40) {
                cluster.propose();
            }
            if rng.chance_percent(5) {
                cluster.read();
            }
            if chance_per_mille(&mut rng, 15)
                && change_membership(&mut cluster, &mut rng, &mut next_new_id, voters)?
            {
                outcome.conf_changes += 1;
            }
            if chance_per_mille(&mut rng, 5) && transfer_leadership(&mut cluster, &mut rng) {
                outcome.transfers += 1;
            }
            cluster.step()?;
        }
        liveness_phase(&mut cluster)
    })();
    if let Err(reason) = result {
        return Err(format!("{reason}\n{}", cluster.describe()));
    }
    cluster.check_acknowledged_terms()?;
    cluster.check_shadows()?;
    outcome.trace_hash = cluster.trace_hash;
    outcome.acknowledged = cluster.acknowledged.len() as u64;
    outcome.reads_answered = cluster.reads_answered;
    outcome.snapshots_installed = cluster.snapshots_installed;
    outcome.leaders = cluster.checker.leaders().len() as u64;
    Ok(outcome)
}

/// Heals everything, then requires a leader within a bound and every
/// acknowledged proposal (plus a final one) applied on every member.
fn liveness_phase(cluster: &mut SimCluster) -> Result<(), String> {
    cluster.network.heal();
    cluster.network.faults = LinkFaults::CALM;
    for id in cluster.ids() {
        if !cluster.is_running(id) {
            cluster.start(id)?;
        }
    }
    let healed_at = cluster.now;
    while cluster.leader().is_none() {
        if cluster.now - healed_at > LIVENESS_LEADER_TICKS {
            return Err(format!(
                "no leader {LIVENESS_LEADER_TICKS} ticks after healing"
            ));
        }
        cluster.step()?;
    }
    let mut final_proposal: Option<(u64, u64)> = None;
    let mut final_proposed_at = 0;
    loop {
        if cluster.now - healed_at > LIVENESS_LEADER_TICKS + LIVENESS_APPLY_TICKS {
            return Err(format!(
                "acknowledged proposals not applied everywhere {} ticks after healing",
                cluster.now - healed_at
            ));
        }
        let final_pending =
            final_proposal.is_none_or(|proposal| !cluster.acknowledged.contains(&proposal));
        if final_pending
            && (final_proposal.is_none()
                || cluster.now - final_proposed_at > FINAL_PROPOSAL_RETRY_TICKS)
        {
            // Retry now and then: leadership may still move and lose it.
            if let Some(proposal) = cluster.propose() {
                final_proposal = Some(proposal);
                final_proposed_at = cluster.now;
            }
        }
        cluster.step()?;
        let Some(leader) = cluster.leader() else {
            continue;
        };
        let members = cluster.members(leader);
        let final_done =
            final_proposal.is_some_and(|proposal| cluster.acknowledged.contains(&proposal));
        if final_done && cluster.all_acknowledged_applied_on(&members) {
            return Ok(());
        }
    }
}

fn shuffle(ids: &mut [NodeId], rng: &mut SeededRng) {
    for i in (1..ids.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        ids.swap(i, j);
    }
}

/// Replaces the partition in force with a new one of a random shape.
fn choose_partition(cluster: &mut SimCluster, rng: &mut SeededRng) {
    cluster.network.heal();
    let mut ids = cluster.ids();
    match rng.below(6) {
        0 | 1 => {}
        2 => {
            shuffle(&mut ids, rng);
            let side: Vec<NodeId> = ids[..ids.len() / 2].to_vec();
            cluster.network.split(&side, &cluster.ids());
        }
        3 => {
            if let Some(leader) = cluster.leader() {
                cluster.network.split(&[leader], &ids);
            }
        }
        4 => {
            for _ in 0..rng.range(1, 4) {
                let from = ids[rng.below(ids.len() as u64) as usize];
                let to = ids[rng.below(ids.len() as u64) as usize];
                if from != to {
                    cluster.network.blocked.insert((from, to));
                }
            }
        }
        _ => {
            // The partial topology: 1-2-3 fully connected, 4 reaches only 2,
            // 5 reaches only 3; servers that joined later reach only 1.
            let mut links: Vec<(NodeId, NodeId)> = vec![(1, 2), (1, 3), (2, 3), (4, 2), (5, 3)];
            links.extend(ids.iter().filter(|id| **id > 5).map(|id| (*id, 1)));
            if ids.len() <= 3 {
                links = vec![(1, 2), (2, 3)];
            }
            cluster.network.only_links(&links, &ids);
        }
    }
}

/// Asks the leader for one membership change: promote a learner, add a new
/// learner, or remove a voter. Returns whether the leader accepted it.
fn change_membership(
    cluster: &mut SimCluster,
    rng: &mut SeededRng,
    next_new_id: &mut NodeId,
    founding_voters: u64,
) -> Result<bool, String> {
    let Some(leader) = cluster.leader() else {
        return Ok(false);
    };
    let conf = cluster
        .raw(leader)
        .expect("running leader")
        .status()
        .conf_state;
    let change = if let Some(learner) = conf.learners.iter().next() {
        ConfChange {
            kind: ConfChangeKind::PromoteLearner,
            node: *learner,
            context: Bytes::new(),
        }
    } else if *next_new_id <= founding_voters + MAX_JOINING_SERVERS && rng.chance_percent(50) {
        ConfChange {
            kind: ConfChangeKind::AddLearner,
            node: *next_new_id,
            context: Bytes::from(format!("node-{next_new_id}")),
        }
    } else if conf.voters.len() > 2 {
        let voters: Vec<NodeId> = conf.voters.iter().copied().collect();
        ConfChange {
            kind: ConfChangeKind::Remove,
            node: voters[rng.below(voters.len() as u64) as usize],
            context: Bytes::new(),
        }
    } else {
        return Ok(false);
    };
    let accepted = cluster
        .raw(leader)
        .expect("running leader")
        .propose_conf_change(change.clone())
        .is_ok();
    if accepted && change.kind == ConfChangeKind::AddLearner {
        cluster.add_empty_node(change.node)?;
        *next_new_id += 1;
    }
    Ok(accepted)
}

/// Asks the leader to hand leadership to a random other voter.
fn transfer_leadership(cluster: &mut SimCluster, rng: &mut SeededRng) -> bool {
    let Some(leader) = cluster.leader() else {
        return false;
    };
    let raw = cluster.raw(leader).expect("running leader");
    let voters: Vec<NodeId> = raw
        .status()
        .conf_state
        .voters
        .iter()
        .copied()
        .filter(|v| *v != leader)
        .collect();
    if voters.is_empty() {
        return false;
    }
    let target = voters[rng.below(voters.len() as u64) as usize];
    raw.transfer_leader(target).is_ok()
}
