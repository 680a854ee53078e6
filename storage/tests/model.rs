//! Random sequences of append / sync / truncate_suffix / compact_prefix /
//! reset_to / reopen / crash, checked after every step against an in-memory
//! model of the log.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use raftq_storage::{CrashMode, Wal};

#[derive(Clone, Debug)]
enum Operation {
    Append(Vec<usize>),
    Sync,
    TruncateSuffix(u8),
    CompactPrefix(u8),
    ResetTo(u8),
    SetHardState(u8),
    Reopen,
    Crash { random_pages: bool },
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        6 => prop::collection::vec(0usize..400, 1..12).prop_map(Operation::Append),
        3 => Just(Operation::Sync),
        1 => any::<u8>().prop_map(Operation::TruncateSuffix),
        1 => any::<u8>().prop_map(Operation::CompactPrefix),
        1 => (0u8..4).prop_map(Operation::ResetTo),
        1 => any::<u8>().prop_map(Operation::SetHardState),
        1 => Just(Operation::Reopen),
        2 => any::<bool>().prop_map(|random_pages| Operation::Crash { random_pages }),
    ]
}

/// What the log must hold.
struct Model {
    first_index: u64,
    records: BTreeMap<u64, Vec<u8>>,
    durable_index: u64,
    hard_state: Vec<u8>,
    durable_hard_state: Vec<u8>,
    next_payload_seed: u64,
}

impl Model {
    fn last_index(&self) -> u64 {
        self.records
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.first_index - 1)
    }

    fn fresh_payload(&mut self, length: usize) -> Vec<u8> {
        self.next_payload_seed += 1;
        let seed = self.next_payload_seed;
        (0..length)
            .map(|position| (seed * 131 + position as u64) as u8)
            .collect()
    }
}

/// A position between `first` and `last + 1`, chosen by `fraction`.
fn pick(first: u64, last: u64, fraction: u8) -> u64 {
    first + (last + 1 - first) * fraction as u64 / 255
}

fn check(wal: &Wal, model: &Model) {
    assert_eq!(wal.first_index(), model.first_index, "first index");
    assert_eq!(wal.last_index(), model.last_index(), "last index");
    for (&index, record) in &model.records {
        assert_eq!(
            wal.read(index).unwrap().as_ref(),
            record.as_slice(),
            "record {index}"
        );
    }
    assert!(wal.durable_index() >= model.durable_index.min(model.last_index()));
    assert_eq!(wal.hard_state(), model.hard_state);
}

/// After a crash the log must be a prefix of the model that still holds
/// every durable record; the model forgets what the crash lost.
fn absorb_crash(wal: &Wal, model: &mut Model) {
    let last = wal.last_index();
    assert!(
        last >= model.durable_index,
        "lost durable records: {last} < {}",
        model.durable_index
    );
    assert!(last <= model.last_index(), "records appeared from nowhere");
    model.records.retain(|&index, _| index <= last);
    model.durable_index = last;
    model.hard_state = model.durable_hard_state.clone();
}

fn run(operations: Vec<Operation>, seed: u64) {
    let disk = FakeDisk::new(seed);
    let mut wal = open(&disk).unwrap();
    let mut model = Model {
        first_index: 1,
        records: BTreeMap::new(),
        durable_index: 0,
        hard_state: Vec::new(),
        durable_hard_state: Vec::new(),
        next_payload_seed: 0,
    };
    for operation in operations {
        match operation {
            Operation::Append(lengths) => {
                let batch: Vec<Vec<u8>> = lengths
                    .iter()
                    .map(|&length| model.fresh_payload(length))
                    .collect();
                let indexes = wal.append(&batch).unwrap();
                assert_eq!(indexes.start, model.last_index() + 1);
                for (index, record) in indexes.zip(batch) {
                    model.records.insert(index, record);
                }
            }
            Operation::Sync => {
                assert_eq!(wal.sync().unwrap(), model.last_index());
                model.durable_index = model.last_index();
                model.durable_hard_state = model.hard_state.clone();
            }
            Operation::TruncateSuffix(fraction) => {
                let from = pick(model.first_index, model.last_index(), fraction);
                wal.truncate_suffix(from).unwrap();
                model.records.retain(|&index, _| index < from);
                model.durable_index = from - 1;
                model.durable_hard_state = model.hard_state.clone();
            }
            Operation::CompactPrefix(fraction) => {
                let up_to = pick(model.first_index, model.last_index(), fraction);
                if wal.compact_prefix(up_to).unwrap() > 0 {
                    // Removing a segment syncs everything first.
                    model.durable_index = model.last_index();
                    model.durable_hard_state = model.hard_state.clone();
                }
                let first = wal.first_index();
                assert!(first >= model.first_index && first <= up_to.max(model.first_index));
                model.first_index = first;
                model.records.retain(|&index, _| index >= first);
            }
            Operation::ResetTo(gap) => {
                let next_index = model.last_index() + 1 + gap as u64 * 50;
                wal.reset_to(next_index).unwrap();
                model.records.clear();
                model.first_index = next_index;
                model.durable_index = next_index - 1;
            }
            Operation::SetHardState(value) => {
                let state = vec![value; 1 + value as usize];
                wal.set_hard_state(&state).unwrap();
                model.hard_state = state;
            }
            Operation::Reopen => {
                drop(wal);
                wal = open(&disk).unwrap();
                // Reopening without a crash keeps the page cache, but the
                // log promises only what was synced: records past the last
                // sync may or may not survive (a rollover's new segment,
                // for one, has no header until a sync writes it).
                absorb_crash(&wal, &mut model);
            }
            Operation::Crash { random_pages } => {
                drop(wal);
                disk.vfs.crash_with(if random_pages {
                    CrashMode::KeepRandomPages
                } else {
                    CrashMode::LoseUnsynced
                });
                wal = open(&disk).unwrap();
                absorb_crash(&wal, &mut model);
            }
        }
        check(&wal, &model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_log_behaves_like_the_model_through_any_sequence(
        operations in prop::collection::vec(operation(), 1..60),
        seed in any::<u64>(),
    ) {
        run(operations, seed);
    }
}
