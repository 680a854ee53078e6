//! Apply throughput of the job-queue state machine, and its memory per job.
//!
//! `cargo bench --bench queue` prints, for each operation, criterion's
//! throughput in elements (operations) per second, and first a memory line:
//! the bytes a state holding 1,000,000 ready 128-byte jobs allocates, per
//! job, counted by a global allocator wrapper.
//!
//! Apply is single-threaded, so the timed loops measure the CPU time of the
//! applying thread by default: on a machine shared with other work, wall
//! time also counts the time the thread waits for a core. Set
//! `QUEUE_BENCH_CLOCK=wall` to measure wall time instead.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use raftq::queue::{Ack, Claim, ClaimedJob, Command, Enqueue, JobQueue, NewJob, Op, Outcome};

/// Counts live heap bytes so the memory line can report what the state
/// itself holds.
struct CountingAllocator;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { System.dealloc(pointer, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Which clock the timed loops read.
#[derive(Clone, Copy, PartialEq)]
enum Clock {
    ThreadCpu,
    Wall,
}

fn clock() -> Clock {
    static CLOCK: OnceLock<Clock> = OnceLock::new();
    *CLOCK.get_or_init(|| match std::env::var("QUEUE_BENCH_CLOCK").as_deref() {
        Ok("wall") => Clock::Wall,
        _ => Clock::ThreadCpu,
    })
}

fn thread_cpu_time() -> Duration {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid timespec for the call to fill in.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    assert_eq!(result, 0, "the thread CPU clock is readable");
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

/// A started measurement on the chosen clock.
struct Stopwatch {
    wall: Instant,
    cpu: Duration,
}

impl Stopwatch {
    fn start() -> Stopwatch {
        Stopwatch {
            wall: Instant::now(),
            cpu: thread_cpu_time(),
        }
    }

    fn elapsed(&self) -> Duration {
        match clock() {
            Clock::Wall => self.wall.elapsed(),
            Clock::ThreadCpu => thread_cpu_time() - self.cpu,
        }
    }
}

const PAYLOAD_BYTES: usize = 128;
const MEMORY_JOBS: usize = 1_000_000;
const BATCH_JOBS: usize = 1_000;
const START_MS: u64 = 1_000_000;
const LEASE_MS: u64 = 60_000;

fn payload() -> Bytes {
    Bytes::from(vec![7u8; PAYLOAD_BYTES])
}

fn enqueue_command(now_ms: u64, jobs: usize, payload: &Bytes) -> Command {
    Command {
        now_ms,
        op: Op::Enqueue(Enqueue {
            jobs: vec![NewJob::new("bench", payload.clone()); jobs],
            session: None,
        }),
    }
}

fn claim_command(now_ms: u64, max_jobs: u32) -> Command {
    Command {
        now_ms,
        op: Op::Claim(Claim {
            queues: vec!["bench".to_string()],
            max_jobs,
            lease_ms: LEASE_MS,
            worker: None,
        }),
    }
}

fn ack_command(now_ms: u64, job: &ClaimedJob) -> Command {
    Command {
        now_ms,
        op: Op::Ack(Ack {
            id: job.id,
            token: job.token,
        }),
    }
}

/// A state holding `jobs` ready jobs.
fn filled(jobs: usize) -> JobQueue {
    let payload = payload();
    let mut state = JobQueue::new();
    let mut left = jobs;
    while left > 0 {
        let batch = left.min(BATCH_JOBS);
        state.apply(&enqueue_command(START_MS, batch, &payload));
        left -= batch;
    }
    state
}

fn claimed(state: &mut JobQueue, jobs: usize) -> Vec<ClaimedJob> {
    let mut all = Vec::with_capacity(jobs);
    while all.len() < jobs {
        let want = (jobs - all.len()).min(BATCH_JOBS) as u32;
        match state.apply(&claim_command(START_MS, want)) {
            Outcome::Claim(Ok(batch)) => all.extend(batch),
            other => panic!("claim failed: {other:?}"),
        }
    }
    all
}

/// The bytes a state holding `jobs` ready jobs, each with its own
/// idempotency key, allocates.
fn keyed_state_bytes(jobs: usize) -> usize {
    let before_bytes = LIVE_BYTES.load(Ordering::Relaxed);
    let payload = payload();
    let mut state = JobQueue::new();
    let mut next_key = 0u64;
    while state.job_count() < jobs {
        let batch = (jobs - state.job_count()).min(BATCH_JOBS);
        let jobs: Vec<NewJob> = (0..batch)
            .map(|_| {
                let mut job = NewJob::new("bench", payload.clone());
                next_key += 1;
                job.idempotency_key = Some(Bytes::from(format!("order-{next_key:012}")));
                job
            })
            .collect();
        let command = Command {
            now_ms: START_MS,
            op: Op::Enqueue(Enqueue {
                jobs,
                session: None,
            }),
        };
        state.apply(&command);
    }
    let held_bytes = LIVE_BYTES.load(Ordering::Relaxed) - before_bytes;
    drop(state);
    held_bytes
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn report_memory() {
    let before_bytes = LIVE_BYTES.load(Ordering::Relaxed);
    let resident_before = resident_bytes();
    let state = filled(MEMORY_JOBS);
    let held_bytes = LIVE_BYTES.load(Ordering::Relaxed) - before_bytes;
    let per_job_bytes = held_bytes as f64 / MEMORY_JOBS as f64;
    println!(
        "memory: {MEMORY_JOBS} ready jobs of {PAYLOAD_BYTES} bytes hold {:.1} MiB: \
         {per_job_bytes:.1} bytes per job, {:.1} bytes of overhead per job",
        held_bytes as f64 / (1024.0 * 1024.0),
        per_job_bytes - PAYLOAD_BYTES as f64,
    );
    if let (Some(before), Some(after)) = (resident_before, resident_bytes()) {
        println!(
            "memory: resident set grew by {:.1} MiB",
            after.saturating_sub(before) as f64 / (1024.0 * 1024.0)
        );
    }
    let keyed_bytes = keyed_state_bytes(MEMORY_JOBS);
    println!(
        "memory: an idempotency key costs {:.1} bytes beyond its job",
        (keyed_bytes as f64 - held_bytes as f64) / MEMORY_JOBS as f64
    );
    let snapshot_started = Stopwatch::start();
    let snapshot = state.snapshot();
    let snapshot_elapsed = snapshot_started.elapsed();
    let restore_started = Stopwatch::start();
    let restored = JobQueue::restore(&snapshot).expect("snapshot restores");
    let restore_elapsed = restore_started.elapsed();
    println!(
        "snapshot: {:.1} MiB, written in {:.0} ms, restored in {:.0} ms",
        snapshot.len() as f64 / (1024.0 * 1024.0),
        snapshot_elapsed.as_secs_f64() * 1e3,
        restore_elapsed.as_secs_f64() * 1e3,
    );
    assert_eq!(restored.job_count(), MEMORY_JOBS);
}

fn bench_apply(criterion: &mut Criterion) {
    report_memory();
    let payload = payload();
    let mut group = criterion.benchmark_group("apply");
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));

    group.bench_function("enqueue_one_job_per_command", |bencher| {
        bencher.iter_custom(|iterations| {
            let commands: Vec<Command> = (0..iterations)
                .map(|i| enqueue_command(START_MS + i / 1_000, 1, &payload))
                .collect();
            let mut state = JobQueue::new();
            let started = Stopwatch::start();
            for command in &commands {
                black_box(state.apply(command));
            }
            let elapsed = started.elapsed();
            drop(state);
            elapsed
        })
    });

    group.bench_function("claim_one_job_per_command", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut state = filled(iterations as usize);
            let command = claim_command(START_MS, 1);
            let started = Stopwatch::start();
            for _ in 0..iterations {
                black_box(state.apply(&command));
            }
            started.elapsed()
        })
    });

    group.bench_function("ack", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut state = filled(iterations as usize);
            let commands: Vec<Command> = claimed(&mut state, iterations as usize)
                .iter()
                .map(|job| ack_command(START_MS, job))
                .collect();
            let started = Stopwatch::start();
            for command in &commands {
                black_box(state.apply(command));
            }
            started.elapsed()
        })
    });

    group.bench_function("claim_then_ack", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut state = filled(iterations as usize);
            let claim = claim_command(START_MS, 1);
            let started = Stopwatch::start();
            for _ in 0..iterations {
                if let Outcome::Claim(Ok(jobs)) = state.apply(&claim) {
                    black_box(state.apply(&ack_command(START_MS, &jobs[0])));
                }
            }
            started.elapsed()
        })
    });
    group.finish();

    let mut batched = criterion.benchmark_group("apply_batched");
    batched.sample_size(20);
    batched.warm_up_time(Duration::from_secs(1));
    batched.measurement_time(Duration::from_secs(3));
    batched.throughput(Throughput::Elements(BATCH_JOBS as u64));
    batched.bench_function("enqueue_1000_jobs_per_command", |bencher| {
        bencher.iter_custom(|iterations| {
            let command = enqueue_command(START_MS, BATCH_JOBS, &payload);
            let mut state = JobQueue::new();
            let started = Stopwatch::start();
            for _ in 0..iterations {
                black_box(state.apply(&command));
            }
            let elapsed = started.elapsed();
            drop(state);
            elapsed
        })
    });
    batched.bench_function("claim_1000_jobs_per_command", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut state = filled(iterations as usize * BATCH_JOBS);
            let command = claim_command(START_MS, BATCH_JOBS as u32);
            let started = Stopwatch::start();
            for _ in 0..iterations {
                black_box(state.apply(&command));
            }
            started.elapsed()
        })
    });
    batched.finish();
}

/// Serializing and restoring a whole state: the applier stops applying for
/// as long as a snapshot takes, so this bounds the pause a snapshot causes.
/// The baseline copies the same payload bytes into one buffer, the least any
/// encoding of the state must do.
fn bench_snapshot(criterion: &mut Criterion) {
    const SNAPSHOT_JOBS: usize = 100_000;
    let state = filled(SNAPSHOT_JOBS);
    let image = state.snapshot();
    let payload = payload();
    let mut group = criterion.benchmark_group("snapshot_100k_jobs");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(SNAPSHOT_JOBS as u64));
    group.bench_function("serialize", |bencher| {
        bencher.iter(|| black_box(state.snapshot()))
    });
    // What the applier itself spends; encoding runs on another thread.
    group.bench_function("freeze", |bencher| {
        bencher.iter(|| black_box(state.freeze()))
    });
    group.bench_function("restore", |bencher| {
        bencher.iter(|| black_box(JobQueue::restore(&image).expect("the image restores")))
    });
    group.bench_function("baseline_copy_payloads", |bencher| {
        bencher.iter(|| {
            let mut bytes = Vec::with_capacity(SNAPSHOT_JOBS * PAYLOAD_BYTES);
            for _ in 0..SNAPSHOT_JOBS {
                bytes.extend_from_slice(&payload);
            }
            black_box(bytes)
        })
    });
    group.finish();
    println!(
        "snapshot of {SNAPSHOT_JOBS} queued {PAYLOAD_BYTES}-byte jobs: {} bytes",
        image.len()
    );
}

criterion_group!(benches, bench_apply, bench_snapshot);
criterion_main!(benches);
