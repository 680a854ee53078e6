//! Write-ahead log benchmarks, each with its naive baseline in the same run:
//!
//! 1. Durable appends of 128-byte records from 1, 8 and 64 writers, each
//!    waiting for durability, against `write` + `fdatasync` per record on a
//!    plain file. Reports records/s, the ratio and fsyncs per record.
//! 2. Bulk throughput with 4 KiB and 64 KiB records, synced once per MiB,
//!    against a plain sequential `write` + `fdatasync` of the same bytes.
//! 3. Recovery time of a 1 GiB log (page cache warm, and cold after
//!    `posix_fadvise(DONTNEED)` on every segment).
//!
//! Three setups of `StdVfs` are compared: mapped writes into fallocated
//! segments (the default), mapped writes into zero-written segments, and
//! pwrite into fallocated segments.
//! Run with `cargo bench --bench wal`; the summary with the ratios is
//! printed at the end.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use raftq_storage::{Preallocation, StdVfs, Wal, WalConfig, WriteMethod};

const DURABLE_RECORD_BYTES: usize = 128;
const WRITER_COUNTS: [usize; 3] = [1, 8, 64];
const BULK_RECORD_SIZES_BYTES: [usize; 2] = [4 << 10, 64 << 10];
const BULK_SYNC_EVERY_BYTES: usize = 1 << 20;
/// Bulk logs are compacted once they hold this much, to bound disk use.
const BULK_LOG_LIMIT_BYTES: usize = 512 << 20;
const RECOVERY_LOG_BYTES: usize = 1 << 30;
const RECOVERY_RECORD_BYTES: usize = 256;

/// Totals per benchmark: (units done, time taken), for the summary.
static TOTALS: Mutex<BTreeMap<String, (u64, Duration)>> = Mutex::new(BTreeMap::new());
/// Fsyncs per record at each writer count, from the log's own counters.
static FSYNCS_PER_RECORD: Mutex<BTreeMap<String, f64>> = Mutex::new(BTreeMap::new());

fn record_total(name: &str, units: u64, elapsed: Duration) {
    let mut totals = TOTALS.lock().unwrap();
    let entry = totals.entry(name.to_string()).or_default();
    entry.0 += units;
    entry.1 += elapsed;
}

fn rate(name: &str) -> f64 {
    let totals = TOTALS.lock().unwrap();
    let (units, elapsed) = totals.get(name).copied().unwrap_or_default();
    units as f64 / elapsed.as_secs_f64()
}

/// The real Vfs setups compared: the default first.
const SETUPS: [(&str, Preallocation, WriteMethod); 3] = [
    (
        "mapped_fallocate",
        Preallocation::Fallocate,
        WriteMethod::Mapped,
    ),
    (
        "mapped_write-zeros",
        Preallocation::WriteZeros,
        WriteMethod::Mapped,
    ),
    (
        "pwrite_fallocate",
        Preallocation::Fallocate,
        WriteMethod::Pwrite,
    ),
];

fn open_wal(dir: &Path, preallocation: Preallocation, write_method: WriteMethod) -> Wal {
    let vfs = StdVfs::new()
        .preallocation(preallocation)
        .write_method(write_method);
    Wal::open(Arc::new(vfs), dir, WalConfig::default()).expect("open wal")
}

/// `write` + `fdatasync` of one record at a time on a plain file.
fn bench_naive_durable(group: &mut BenchmarkGroup<'_, WallTime>, name: &str) {
    group.bench_function(BenchmarkId::from_parameter(name), |bencher| {
        let root = tempfile::tempdir().unwrap();
        let mut file = File::create(root.path().join("naive")).unwrap();
        let record = [0x5Au8; DURABLE_RECORD_BYTES];
        bencher.iter_custom(|iterations| {
            let start = Instant::now();
            for _ in 0..iterations {
                file.write_all(&record).unwrap();
                file.sync_data().unwrap();
            }
            let elapsed = start.elapsed();
            record_total(name, iterations, elapsed);
            elapsed
        });
    });
}

fn durable_appends(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("durable_append_128B");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));

    for (setup, preallocation, write_method) in SETUPS {
        for writers in WRITER_COUNTS {
            let name = format!("wal_{setup}_{writers}_writers");
            // The disk is shared and its latency drifts: each configuration
            // gets its own baseline, measured right before it.
            bench_naive_durable(&mut group, &format!("naive_write_fdatasync_before_{name}"));
            group.bench_function(BenchmarkId::from_parameter(&name), |bencher| {
                let root = tempfile::tempdir().unwrap();
                let wal = Arc::new(open_wal(root.path(), preallocation, write_method));
                let before = wal.stats();
                bencher.iter_custom(|iterations| {
                    let per_writer = iterations.div_ceil(writers as u64);
                    let start = Instant::now();
                    let threads: Vec<_> = (0..writers)
                        .map(|_| {
                            let wal = wal.clone();
                            std::thread::spawn(move || {
                                let record = [0xA5u8; DURABLE_RECORD_BYTES];
                                for _ in 0..per_writer {
                                    wal.append_durable(&[record]).unwrap();
                                }
                            })
                        })
                        .collect();
                    for thread in threads {
                        thread.join().unwrap();
                    }
                    let elapsed = start.elapsed();
                    record_total(&name, per_writer * writers as u64, elapsed);
                    elapsed.mul_f64(iterations as f64 / (per_writer * writers as u64) as f64)
                });
                let after = wal.stats();
                let records = after.appended_records - before.appended_records;
                let syncs = after.segment_syncs - before.segment_syncs;
                FSYNCS_PER_RECORD
                    .lock()
                    .unwrap()
                    .insert(name.clone(), syncs as f64 / records as f64);
            });
        }
    }
    group.finish();
}

/// A plain file written sequentially in `record_bytes` writes, with one
/// fdatasync per MiB: the disk bandwidth the log is held against.
fn bench_plain_file(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, record_bytes: usize) {
    let records_per_sync = BULK_SYNC_EVERY_BYTES / record_bytes;
    group.bench_function(BenchmarkId::from_parameter(name), |bencher| {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("plain");
        let record = vec![0x3Cu8; record_bytes];
        let mut file = File::create(&path).unwrap();
        let mut file_bytes = 0usize;
        bencher.iter_custom(|iterations| {
            let start = Instant::now();
            for _ in 0..iterations {
                for _ in 0..records_per_sync {
                    file.write_all(&record).unwrap();
                }
                file.sync_data().unwrap();
                file_bytes += BULK_SYNC_EVERY_BYTES;
                if file_bytes >= BULK_LOG_LIMIT_BYTES {
                    // Start a new file, as a log would, to bound disk use.
                    file = File::create(&path).unwrap();
                    file_bytes = 0;
                }
            }
            let elapsed = start.elapsed();
            record_total(name, iterations * BULK_SYNC_EVERY_BYTES as u64, elapsed);
            elapsed
        });
    });
}

fn bulk(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("bulk_sync_per_MiB");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Bytes(BULK_SYNC_EVERY_BYTES as u64));

    for record_bytes in BULK_RECORD_SIZES_BYTES {
        let records_per_sync = BULK_SYNC_EVERY_BYTES / record_bytes;
        for (setup, preallocation, write_method) in SETUPS {
            let name = format!("wal_{setup}_{}KiB", record_bytes >> 10);
            // Measured right before the log, as the disk's speed drifts.
            bench_plain_file(
                &mut group,
                &format!("plain_file_before_{name}"),
                record_bytes,
            );
            group.bench_function(BenchmarkId::from_parameter(&name), |bencher| {
                let root = tempfile::tempdir().unwrap();
                let wal = open_wal(root.path(), preallocation, write_method);
                let record = vec![0xC3u8; record_bytes];
                let batch: Vec<&[u8]> = vec![&record; records_per_sync];
                bencher.iter_custom(|iterations| {
                    let start = Instant::now();
                    for _ in 0..iterations {
                        wal.append(&batch).unwrap();
                        wal.sync().unwrap();
                        let stored_bytes =
                            (wal.last_index() + 1 - wal.first_index()) as usize * record_bytes;
                        if stored_bytes >= BULK_LOG_LIMIT_BYTES {
                            wal.compact_prefix(wal.last_index()).unwrap();
                        }
                    }
                    let elapsed = start.elapsed();
                    record_total(&name, iterations * BULK_SYNC_EVERY_BYTES as u64, elapsed);
                    elapsed
                });
            });
        }
    }
    group.finish();
}

fn evict_from_page_cache(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let file = OpenOptions::new()
            .read(true)
            .open(entry.unwrap().path())
            .unwrap();
        // SAFETY: posix_fadvise only reads its integer arguments.
        let result =
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(result, 0, "posix_fadvise failed");
    }
}

fn recovery(criterion: &mut Criterion) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("wal");
    // Built on first use, so a filtered run that skips recovery skips this.
    let build_log = |dir: &Path| {
        if dir.exists() {
            return;
        }
        let wal = open_wal(dir, Preallocation::Fallocate, WriteMethod::Mapped);
        let record = vec![0x11u8; RECOVERY_RECORD_BYTES];
        let batch: Vec<&[u8]> = vec![&record; 4096];
        let mut written = 0;
        while written < RECOVERY_LOG_BYTES {
            wal.append(&batch).unwrap();
            wal.sync().unwrap();
            written += batch.len() * RECOVERY_RECORD_BYTES;
        }
    };
    let mut group = criterion.benchmark_group("recovery_1GiB");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(10));
    for cold in [false, true] {
        let name = if cold {
            "open_cold_cache"
        } else {
            "open_warm_cache"
        };
        group.bench_function(name, |bencher| {
            build_log(&dir);
            bencher.iter_custom(|iterations| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iterations {
                    if cold {
                        evict_from_page_cache(&dir);
                    }
                    let start = Instant::now();
                    let wal = open_wal(&dir, Preallocation::Fallocate, WriteMethod::Mapped);
                    elapsed += start.elapsed();
                    assert!(
                        wal.last_index() as usize * RECOVERY_RECORD_BYTES >= RECOVERY_LOG_BYTES
                    );
                    assert!(wal.recovery_report().cut.is_none());
                }
                record_total(name, iterations, elapsed);
                elapsed
            });
        });
    }
    group.finish();
}

fn print_summary() {
    println!("\n==== wal benchmark summary ====");
    println!(
        "durable appends of {DURABLE_RECORD_BYTES}-byte records, each against write+fdatasync per record measured just before it"
    );
    let fsyncs = FSYNCS_PER_RECORD.lock().unwrap().clone();
    for (setup, _, _) in SETUPS {
        for writers in WRITER_COUNTS {
            let name = format!("wal_{setup}_{writers}_writers");
            let records_per_second = rate(&name);
            let naive = rate(&format!("naive_write_fdatasync_before_{name}"));
            println!(
                "  {name:28} {records_per_second:>8.0} records/s  naive {naive:>6.0} records/s  {:>6.1}x  {:.4} fsyncs/record",
                records_per_second / naive,
                fsyncs.get(&name).copied().unwrap_or(f64::NAN),
            );
        }
    }
    println!(
        "bulk throughput, synced once per MiB, each against a plain file measured just before it"
    );
    for record_bytes in BULK_RECORD_SIZES_BYTES {
        for (setup, _, _) in SETUPS {
            let name = format!("wal_{setup}_{}KiB", record_bytes >> 10);
            let wal_rate = rate(&name);
            let plain_rate = rate(&format!("plain_file_before_{name}"));
            println!(
                "  {name:28} {:>7.1} MiB/s  plain file {:>7.1} MiB/s  {:>5.1}% of plain",
                wal_rate / (1 << 20) as f64,
                plain_rate / (1 << 20) as f64,
                100.0 * wal_rate / plain_rate
            );
        }
    }
    println!("recovery of a 1 GiB log ({RECOVERY_RECORD_BYTES}-byte records)");
    for name in ["open_warm_cache", "open_cold_cache"] {
        println!("  {name:32} {:>8.3} s per open", 1.0 / rate(name));
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    durable_appends(&mut criterion);
    bulk(&mut criterion);
    recovery(&mut criterion);
    criterion.final_summary();
    print_summary();
}
