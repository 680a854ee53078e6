//! The fault schedule of the safety phase, drawn from the seed: partitions
//! (whole, one-way, partial, client links), latency changes, host crashes
//! with restarts, and disk faults on a minority of the nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use raftq_storage::{CrashMode, FaultVfs};

use super::cluster::{SharedRegistry, file_len, files, host_name};
use super::history::Trace;
use super::net::Links;
use super::rng::SimRng;

/// A fault in force, undone at `until_ms`.
enum Active {
    Cut { from: String, to: String },
    Down { id: u64 },
}

pub struct Nemesis {
    rng: SimRng,
    size: u64,
    clients: Vec<String>,
    links: Arc<Links>,
    /// Nodes whose disks may be corrupted or fail syncs: a minority.
    bad_disks: BTreeSet<u64>,
    active: Vec<(u64, Active)>,
    down: BTreeSet<u64>,
    next_fault_ms: u64,
    pub faults: u64,
}

impl Nemesis {
    pub fn new(rng: SimRng, size: u64, clients: Vec<String>, links: Arc<Links>) -> Nemesis {
        let mut rng = rng;
        let minority = (size - 1) / 2;
        let mut bad_disks = BTreeSet::new();
        let count = rng.between(0, minority);
        while (bad_disks.len() as u64) < count {
            bad_disks.insert(rng.between(1, size));
        }
        Nemesis {
            rng,
            size,
            clients,
            links,
            bad_disks,
            active: Vec::new(),
            down: BTreeSet::new(),
            next_fault_ms: 500,
            faults: 0,
        }
    }

    fn node(&mut self) -> u64 {
        self.rng.between(1, self.size)
    }

    /// Injects and heals faults as simulated time passes.
    pub fn step(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        now_ms: u64,
        disks: &BTreeMap<u64, FaultVfs>,
        registry: &SharedRegistry,
        trace: &mut Trace,
    ) {
        let (due, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.active)
            .into_iter()
            .partition(|(until_ms, _)| *until_ms <= now_ms);
        self.active = kept;
        for (_, fault) in due {
            self.undo(sim, fault, trace);
        }
        self.restart_failed_nodes(sim, registry, trace);
        if now_ms < self.next_fault_ms {
            return;
        }
        self.next_fault_ms = now_ms + self.rng.between(100, 900);
        self.faults += 1;
        let until_ms = now_ms + self.rng.between(200, 2_500);
        match self.rng.below(100) {
            0..20 => {
                // Isolate one node from the others, both ways.
                let isolated = self.node();
                for other in 1..=self.size {
                    if other != isolated {
                        self.cut(sim, isolated, other, true, until_ms, trace);
                    }
                }
            }
            20..32 => {
                // One way only: the node hears the others, they do not hear it.
                let isolated = self.node();
                for other in 1..=self.size {
                    if other != isolated {
                        self.cut(sim, isolated, other, false, until_ms, trace);
                    }
                }
            }
            32..44 => {
                // A partial partition: one link down, a bridge node between.
                let a = self.node();
                let b = self.node();
                if a != b {
                    let oneway = self.rng.chance(50);
                    self.cut(sim, a, b, !oneway, until_ms, trace);
                }
            }
            44..52 => {
                // A client loses its link to a node.
                let client =
                    self.clients[self.rng.below(self.clients.len() as u64) as usize].clone();
                let node = host_name(self.node());
                trace.record(&format!("cut {client} {node}"));
                self.links
                    .cut(sim.lookup(client.as_str()), sim.lookup(node.as_str()));
                self.links
                    .cut(sim.lookup(node.as_str()), sim.lookup(client.as_str()));
                self.active.push((
                    until_ms,
                    Active::Cut {
                        from: client.clone(),
                        to: node.clone(),
                    },
                ));
                self.active.push((
                    until_ms,
                    Active::Cut {
                        from: node,
                        to: client,
                    },
                ));
            }
            52..62 => {
                let latency_ms = self.rng.between(1, 60);
                trace.record(&format!("latency {latency_ms}"));
                sim.set_max_message_latency(std::time::Duration::from_millis(latency_ms));
            }
            62..88 => {
                // Crash a node; it restarts with what its disk kept.
                let id = self.node();
                let majority_up = self.size - self.down.len() as u64 > self.size / 2 + 1;
                if !self.down.contains(&id) && (majority_up || self.rng.chance(30)) {
                    self.crash(sim, id, &disks[&id], registry, trace);
                    self.active.push((until_ms, Active::Down { id }));
                }
            }
            _ => {
                // A disk fault on a node with a bad disk.
                if let Some(&id) = self
                    .bad_disks
                    .iter()
                    .nth(self.rng.below(self.bad_disks.len().max(1) as u64) as usize)
                    && !self.down.contains(&id)
                {
                    self.disk_fault(sim, id, &disks[&id], registry, until_ms, trace);
                }
            }
        }
    }

    fn cut(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        a: u64,
        b: u64,
        both_ways: bool,
        until_ms: u64,
        trace: &mut Trace,
    ) {
        let (from, to) = (host_name(a), host_name(b));
        trace.record(&format!("cut {from} -> {to} both={both_ways}"));
        self.links
            .cut(sim.lookup(from.as_str()), sim.lookup(to.as_str()));
        self.active.push((
            until_ms,
            Active::Cut {
                from: from.clone(),
                to: to.clone(),
            },
        ));
        if both_ways {
            self.links
                .cut(sim.lookup(to.as_str()), sim.lookup(from.as_str()));
            self.active
                .push((until_ms, Active::Cut { from: to, to: from }));
        }
    }

    fn crash(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        id: u64,
        disk: &FaultVfs,
        registry: &SharedRegistry,
        trace: &mut Trace,
    ) {
        let mode = match self.rng.below(3) {
            0 => CrashMode::LoseUnsynced,
            1 => CrashMode::KeepUnsyncedPrefix {
                bytes: self.rng.below(disk.unsynced_bytes() as u64 + 1) as usize,
            },
            _ => CrashMode::KeepRandomPages,
        };
        trace.record(&format!("crash n{id} {mode:?}"));
        sim.crash(host_name(id).as_str());
        disk.crash_with(mode);
        registry.borrow_mut().nodes.remove(&id);
        self.down.insert(id);
    }

    fn restart(&mut self, sim: &mut turmoil::Sim<'_>, id: u64, trace: &mut Trace) {
        trace.record(&format!("restart n{id}"));
        sim.bounce(host_name(id).as_str());
        self.down.remove(&id);
    }

    fn disk_fault(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        id: u64,
        disk: &FaultVfs,
        registry: &SharedRegistry,
        until_ms: u64,
        trace: &mut Trace,
    ) {
        match self.rng.below(3) {
            0 => {
                // The next sync fails: the node must stop, not go on.
                trace.record(&format!("failing sync n{id}"));
                disk.fail_next_sync();
            }
            kind => {
                // While the node is down, a bit flips or a file loses its
                // tail (zeroed, as a truncated preallocated file reads).
                self.crash(sim, id, disk, registry, trace);
                self.active.push((until_ms, Active::Down { id }));
                let files = files(disk);
                if files.is_empty() {
                    return;
                }
                let path = &files[self.rng.below(files.len() as u64) as usize];
                let len = file_len(disk, path);
                if len == 0 {
                    return;
                }
                let offset = self.rng.below(len as u64) as usize;
                if kind == 1 {
                    let bit = self.rng.below(8) as u8;
                    trace.record(&format!("flip n{id} {} {offset} {bit}", path.display()));
                    let _ = disk.flip_bit(path, offset, bit);
                } else {
                    let cut = (len - offset).min(4096);
                    trace.record(&format!("zero n{id} {} {offset} {cut}", path.display()));
                    let _ = disk.overwrite(path, offset, &vec![0; cut]);
                }
            }
        }
    }

    /// A node that stopped on a fatal error (a failed sync) is restarted,
    /// as an operator or a supervisor would.
    fn restart_failed_nodes(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        registry: &SharedRegistry,
        trace: &mut Trace,
    ) {
        let stopped: Vec<u64> = (1..=self.size)
            .filter(|id| !self.down.contains(id) && !registry.borrow().nodes.contains_key(id))
            .filter(|id| registry.borrow().boots.contains_key(id))
            .collect();
        for id in stopped {
            // A node that refuses to start stays down; one that stopped is
            // restarted once its boot has been given time.
            if self.rng.chance(2) {
                trace.record(&format!("restart stopped n{id}"));
                sim.bounce(host_name(id).as_str());
            }
        }
    }

    fn undo(&mut self, sim: &mut turmoil::Sim<'_>, fault: Active, trace: &mut Trace) {
        match fault {
            Active::Cut { from, to } => {
                trace.record(&format!("repair {from} -> {to}"));
                self.links
                    .repair(sim.lookup(from.as_str()), sim.lookup(to.as_str()));
            }
            Active::Down { id } => self.restart(sim, id, trace),
        }
    }

    /// Heals every fault: links repaired, latency back to normal, every node
    /// up, disks failing no more syncs.
    pub fn heal(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        disks: &BTreeMap<u64, FaultVfs>,
        registry: &SharedRegistry,
        trace: &mut Trace,
    ) {
        for (_, fault) in std::mem::take(&mut self.active) {
            self.undo(sim, fault, trace);
        }
        self.links.repair_all();
        sim.set_max_message_latency(std::time::Duration::from_millis(5));
        for disk in disks.values() {
            disk.cancel_sync_failure();
        }
        let stopped: Vec<u64> = (1..=self.size)
            .filter(|id| !registry.borrow().nodes.contains_key(id))
            .collect();
        for id in stopped {
            trace.record(&format!("heal restarts n{id}"));
            sim.bounce(host_name(id).as_str());
            self.down.remove(&id);
        }
    }
}
