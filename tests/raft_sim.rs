//! Deterministic simulation of the consensus core: 3- and 5-node clusters
//! under message loss, duplication, reordering and delay, partitions of every
//! shape, crashes that lose unpersisted writes, membership changes,
//! leadership transfers and snapshots, with the Raft safety invariants
//! checked after every Ready and a liveness phase after healing.
//!
//! `RAFT_SIM_SEEDS=N` runs seeds `0..N` (default [`DEFAULT_SEEDS`]);
//! `RAFT_SIM_SEED=S` replays seed `S` alone.

#[path = "raft_sim/cluster.rs"]
mod cluster;
#[path = "raft_sim/network.rs"]
mod network;
#[path = "raft_sim/scenario.rs"]
mod scenario;

use raftq::raft::NodeId;

use cluster::{NodeSettings, SimCluster};
use network::LinkFaults;
use scenario::{SimOutcome, run_seed};

/// Seeds per test in a plain `cargo test`: enough to exercise every fault,
/// few enough to keep the suite quick in the dev profile.
const DEFAULT_SEEDS: u64 = 32;
/// Ticks the partial-partition run must keep one leader and commit.
const STABLE_LEADER_TICKS: u64 = 2000;
/// Ticks allowed for the first election under the partial partition.
const FIRST_ELECTION_TICKS: u64 = 300;

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("RAFT_SIM_SEED") {
        return vec![seed.parse().expect("RAFT_SIM_SEED is a number")];
    }
    let count = std::env::var("RAFT_SIM_SEEDS")
        .map(|count| count.parse().expect("RAFT_SIM_SEEDS is a number"))
        .unwrap_or(DEFAULT_SEEDS);
    (0..count).collect()
}

fn replay_hint(seed: u64, test: &str) -> String {
    format!(
        "replay with: RAFT_SIM_SEED={seed} cargo test --test raft_sim -- {test} --exact --nocapture"
    )
}

/// Runs every seed; stops at the first failure and names the command that replays it.
fn run_all(voters: u64, test: &str) -> SimOutcome {
    let mut total = SimOutcome::default();
    let seeds = seeds();
    let started = std::time::Instant::now();
    for seed in &seeds {
        match run_seed(*seed, voters) {
            Ok(outcome) => {
                total.acknowledged += outcome.acknowledged;
                total.reads_answered += outcome.reads_answered;
                total.snapshots_installed += outcome.snapshots_installed;
                total.leaders += outcome.leaders;
                total.conf_changes += outcome.conf_changes;
                total.transfers += outcome.transfers;
                total.crashes += outcome.crashes;
            }
            Err(reason) => panic!(
                "seed {seed} failed after {} passing seeds: {reason}\n{}",
                seeds.iter().position(|s| s == seed).unwrap_or(0),
                replay_hint(*seed, test)
            ),
        }
    }
    println!(
        "{test}: {} seeds in {:.1?}: {} proposals acknowledged, {} reads, {} snapshots installed, \
         {} terms with a leader, {} membership changes, {} transfers, {} crashes",
        seeds.len(),
        started.elapsed(),
        total.acknowledged,
        total.reads_answered,
        total.snapshots_installed,
        total.leaders,
        total.conf_changes,
        total.transfers,
        total.crashes
    );
    total
}

fn assert_faults_were_exercised(total: &SimOutcome) {
    if seeds().len() < DEFAULT_SEEDS as usize {
        return;
    }
    assert!(total.acknowledged > 0, "no proposal was ever acknowledged");
    assert!(total.reads_answered > 0, "no read was ever answered");
    assert!(
        total.snapshots_installed > 0,
        "no follower ever installed a snapshot"
    );
    assert!(total.conf_changes > 0, "no membership change happened");
    assert!(total.transfers > 0, "no leadership transfer happened");
    assert!(total.crashes > 0, "no server ever crashed");
}

#[test]
fn raft_safety_and_liveness_hold_for_three_node_clusters_under_faults() {
    let total = run_all(
        3,
        "raft_safety_and_liveness_hold_for_three_node_clusters_under_faults",
    );
    assert_faults_were_exercised(&total);
}

#[test]
fn raft_safety_and_liveness_hold_for_five_node_clusters_under_faults() {
    let total = run_all(
        5,
        "raft_safety_and_liveness_hold_for_five_node_clusters_under_faults",
    );
    assert_faults_were_exercised(&total);
}

#[test]
fn a_seed_replays_to_an_identical_trace() {
    let seed = seeds()[0];
    let first = run_seed(seed, 5).unwrap_or_else(|reason| {
        panic!(
            "{reason}\n{}",
            replay_hint(seed, "a_seed_replays_to_an_identical_trace")
        )
    });
    let second = run_seed(seed, 5).expect("the same seed passes twice");
    assert_eq!(first, second, "two runs of seed {seed} diverged");
    let other = run_seed(seed + 1, 5).expect("the next seed passes");
    assert_ne!(
        first.trace_hash, other.trace_hash,
        "the trace hash ignores the seed"
    );
}

/// The leader's term if servers 1, 2 and 3 follow `leader` in it and the
/// leader has committed an entry of that term.
fn settled_term(cluster: &mut SimCluster, leader: NodeId) -> Option<u64> {
    let status = cluster.raw(leader)?.status();
    let committed_entry = cluster
        .raw(leader)?
        .log_entries(status.commit, status.commit + 1)
        .ok()?;
    if committed_entry.first()?.term != status.term {
        return None;
    }
    for id in [1, 2, 3] {
        let follower = cluster.raw(id)?.status();
        if follower.leader != Some(leader) || follower.term != status.term {
            return None;
        }
    }
    Some(status.term)
}

/// Thesis §9.6 and §6.2: under the permanent partial topology (1-2-3 fully
/// connected, 4 reaches only 2, 5 reaches only 3), PreVote keeps 4 and 5
/// from disrupting and CheckQuorum keeps the leader; commits continue.
fn run_partial_partition(seed: u64) -> Result<(), String> {
    let ids: Vec<NodeId> = (1..=5).collect();
    let mut cluster = SimCluster::new(seed, &ids, LinkFaults::CALM, NodeSettings::DEFAULT)?;
    cluster
        .network
        .only_links(&[(1, 2), (1, 3), (2, 3), (4, 2), (5, 3)], &ids);
    // The first election may take a few rounds; the window starts once one
    // leader is followed by 1, 2 and 3 and has committed an entry of its term.
    let (leader, term) = loop {
        if cluster.now > FIRST_ELECTION_TICKS {
            return Err("no settled leader under the partial partition".to_string());
        }
        cluster.propose();
        cluster.step()?;
        if let Some(leader) = cluster.leader()
            && let Some(term) = settled_term(&mut cluster, leader)
        {
            break (leader, term);
        }
    };
    let acknowledged_before = cluster.acknowledged.len();
    let start = cluster.now;
    while cluster.now < start + STABLE_LEADER_TICKS {
        cluster.propose();
        cluster.step()?;
        for id in [1, 2, 3] {
            let status = cluster.raw(id).expect("running").status();
            if status.term != term || status.leader != Some(leader) {
                return Err(format!(
                    "at tick {}: node {id} left leader {leader} of term {term}: {:?} term {} leader {:?}",
                    cluster.now, status.role, status.term, status.leader
                ));
            }
        }
    }
    let committed_during = cluster.acknowledged.len() - acknowledged_before;
    if committed_during < (STABLE_LEADER_TICKS / 2) as usize {
        return Err(format!(
            "only {committed_during} proposals committed under the partial partition"
        ));
    }
    Ok(())
}

#[test]
fn prevote_and_check_quorum_keep_a_stable_leader_under_a_permanent_partial_partition() {
    for seed in seeds() {
        if let Err(reason) = run_partial_partition(seed) {
            panic!(
                "seed {seed}: {reason}\n{}",
                replay_hint(
                    seed,
                    "prevote_and_check_quorum_keep_a_stable_leader_under_a_permanent_partial_partition"
                )
            );
        }
    }
}
