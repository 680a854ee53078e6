//! `raftq bench floor`: the least work a replicated, durable write needs,
//! measured on this machine with the open-loop schedule of `raftq bench
//! enqueue --rate`.
//!
//! Everything runs in this process, on plain threads. A load generator sends
//! requests over loopback TCP to a leader replica. The leader forwards each
//! read's worth of requests to its followers over loopback TCP and appends it
//! to its own file; every replica writes what gathered while its previous
//! sync ran and syncs it with one `fdatasync` (group commit), into a file
//! written with zeros up front so no sync has extents to convert. A request
//! is answered once the leader and a majority of the replicas have it on
//! disk, the rule raftq's leader follows.
//!
//! There is no consensus, state machine, framing beyond a length, or async
//! runtime, so the latencies are what the disk, loopback TCP and the
//! scheduler of this machine cost with nothing of raftq's own in the way:
//! a floor under `raftq bench enqueue` with the same flags.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{DRAIN_TIMEOUT, Measurements, Schedule};

/// Bytes of each replica's file, written over and over as a ring.
const RING_BYTES: u64 = 32 << 20;

/// Bytes that carry a request's sequence number; the payload follows.
const SEQUENCE_BYTES: usize = 8;

/// What to run.
pub struct Spec {
    /// Replicas, the leader included.
    pub replicas: usize,
    /// Requests per second, offered on an open-loop [`Schedule`] that starts
    /// once the replicas are ready.
    pub requests_per_second: f64,
    /// Payload bytes of one request (jobs × payload bytes).
    pub payload_bytes: usize,
    /// Jobs each request stands for, as counted in the measurements.
    pub jobs_per_request: u64,
}

/// Runs the floor until `measurements` says stop, recording each answered
/// request's latency from when it was due. Calls `ready` once the replicas
/// are set up, just before the first request is due. The replicas' files go
/// in `data_dir`, which must not exist yet and is kept, or else in a
/// temporary directory.
pub fn run(
    spec: &Spec,
    data_dir: Option<&Path>,
    measurements: &Measurements,
    ready: impl FnOnce(),
) -> anyhow::Result<()> {
    if let Some(dir) = data_dir {
        std::fs::create_dir_all(dir.parent().unwrap_or(Path::new(".")))
            .with_context(|| format!("cannot create the parent of {}", dir.display()))?;
        std::fs::create_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        return run_in(dir, spec, measurements, ready);
    }
    let dir = tempfile::Builder::new()
        .prefix("raftq-floor-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    run_in(dir.path(), spec, measurements, ready)
}

/// [`run`] with the replicas' files in `dir`: `replica-0` is the leader's.
fn run_in(
    dir: &Path,
    spec: &Spec,
    measurements: &Measurements,
    ready: impl FnOnce(),
) -> anyhow::Result<()> {
    anyhow::ensure!(spec.replicas >= 1, "the floor needs at least one replica");
    let mut threads = Vec::new();
    let mut follower_streams = Vec::new();
    for replica in 1..spec.replicas {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let file = ring_file(&dir.join(format!("replica-{replica}")))?;
        threads.push(named(format!("floor-follower-{replica}"), move || {
            let (stream, _) = listener.accept()?;
            follower(stream, file)
        })?);
        let stream = TcpStream::connect(address)?;
        stream.set_nodelay(true)?;
        follower_streams.push(stream);
    }
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let file = ring_file(&dir.join("replica-0"))?;
    let request_bytes = SEQUENCE_BYTES + spec.payload_bytes;
    threads.push(named("floor-leader".into(), move || {
        let (client, _) = listener.accept()?;
        leader(client, follower_streams, file, request_bytes)
    })?);

    let stream = TcpStream::connect(address)?;
    stream.set_nodelay(true)?;
    ready();
    let generated = generate(spec, measurements, stream);
    // The generator closed its connection, so the leader and then each
    // follower see the end of their input and stop.
    match (generated, join_all(threads).err()) {
        (generated, None) => generated,
        (Ok(()), Some(error)) => Err(error).context("a floor replica failed"),
        // A replica that failed first (a disk error, say) is why the
        // generator failed; one that failed after it only saw it go.
        (Err(generated), Some(error)) => Err(anyhow::anyhow!(
            "{generated:#} (a floor replica failed too: {error})"
        )),
    }
}

/// Sends requests on the schedule and records each answer's latency. Returns
/// once the measurements stop and every request sent was answered, or fails
/// if answers stop coming for [`DRAIN_TIMEOUT`] after the last request.
fn generate(spec: &Spec, measurements: &Measurements, stream: TcpStream) -> anyhow::Result<()> {
    let mut answers = stream.try_clone()?;
    // Short, so the receiver notices the end of the run when all is answered.
    answers.set_read_timeout(Some(Duration::from_millis(20)))?;
    let schedule = Schedule::new(spec.requests_per_second);
    let sent = AtomicU64::new(0);
    let finished = AtomicBool::new(false);
    let (send, received) = thread::scope(|scope| {
        let receiver = scope.spawn(|| -> anyhow::Result<()> {
            let mut buffer = vec![0u8; 64 << 10];
            let mut filled = 0;
            let mut answered = 0u64;
            let mut finished_at = None;
            loop {
                if finished.load(Ordering::Acquire) {
                    if answered == sent.load(Ordering::Acquire) {
                        return Ok(());
                    }
                    let since: &mut Instant = finished_at.get_or_insert_with(Instant::now);
                    anyhow::ensure!(
                        since.elapsed() < DRAIN_TIMEOUT,
                        "the floor's leader left requests unanswered for {DRAIN_TIMEOUT:?}"
                    );
                }
                let read = match answers.read(&mut buffer[filled..]) {
                    Ok(0) => anyhow::bail!("the floor's leader closed the connection"),
                    Ok(read) => read,
                    Err(error) if is_timeout(&error) => continue,
                    Err(error) => return Err(error).context("cannot read the floor's answers"),
                };
                filled += read;
                let whole = filled / SEQUENCE_BYTES * SEQUENCE_BYTES;
                for sequence in buffer[..whole].chunks_exact(SEQUENCE_BYTES) {
                    let sequence = u64::from_le_bytes(sequence.try_into().expect("8 bytes"));
                    measurements
                        .record_enqueue(spec.jobs_per_request, schedule.due(sequence).elapsed());
                    answered += 1;
                }
                buffer.copy_within(whole..filled, 0);
                filled -= whole;
            }
        });
        let mut request = vec![b'x'; SEQUENCE_BYTES + spec.payload_bytes];
        let send = (|| -> io::Result<()> {
            let mut writer = &stream;
            let mut sequence = 0u64;
            while !measurements.stopped() {
                schedule.wait(sequence);
                request[..SEQUENCE_BYTES].copy_from_slice(&sequence.to_le_bytes());
                writer.write_all(&request)?;
                sequence += 1;
                sent.store(sequence, Ordering::Release);
            }
            Ok(())
        })();
        finished.store(true, Ordering::Release);
        (send, receiver.join())
    });
    let _ = stream.shutdown(Shutdown::Both);
    send.context("cannot send to the floor's leader")?;
    received.map_err(|_| anyhow::anyhow!("the floor's receiver panicked"))?
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Reads requests of `request_bytes` from the load generator, forwards them
/// to the followers, appends them locally and answers each once it is
/// durable on the leader and on a majority.
fn leader(
    client: TcpStream,
    followers: Vec<TcpStream>,
    file: File,
    request_bytes: usize,
) -> io::Result<()> {
    client.set_nodelay(true)?;
    let commit = Arc::new(Mutex::new(Commit {
        durable: vec![0; followers.len() + 1],
        waiting: VecDeque::new(),
        answers: client.try_clone()?,
    }));
    let disk = Arc::new(Disk::default());
    let mut threads = Vec::new();
    {
        let (disk, commit) = (Arc::clone(&disk), Arc::clone(&commit));
        threads.push(named("floor-sync-0".into(), move || {
            sync_loop(file, &disk, |index| advance(&commit, 0, index))
        })?);
    }
    for (position, follower) in followers.iter().enumerate() {
        let mut acks = BufReader::new(follower.try_clone()?);
        let commit = Arc::clone(&commit);
        threads.push(named(format!("floor-acks-{}", position + 1), move || {
            let mut index = [0u8; 8];
            loop {
                match acks.read_exact(&mut index) {
                    Ok(()) => advance(&commit, position + 1, u64::from_le_bytes(index))?,
                    Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(error) => return Err(error),
                }
            }
        })?);
    }

    let mut buffer = vec![0u8; (2 * request_bytes).max(1 << 20)];
    let mut filled = 0;
    let mut index = 0u64;
    let mut frame = Vec::with_capacity(buffer.len() + 12);
    let mut reader = &client;
    let received = loop {
        let read = match reader.read(&mut buffer[filled..]) {
            Ok(0) => break Ok(()),
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => break Err(error),
        };
        filled += read;
        let whole = filled / request_bytes * request_bytes;
        if whole == 0 {
            continue;
        }
        {
            let mut commit = commit.lock().expect("commit lock");
            for request in buffer[..whole].chunks_exact(request_bytes) {
                index += 1;
                let sequence = &request[..SEQUENCE_BYTES];
                let sequence = u64::from_le_bytes(sequence.try_into().expect("8 bytes"));
                commit.waiting.push_back((index, sequence));
            }
        }
        frame.clear();
        frame.extend_from_slice(&index.to_le_bytes());
        frame.extend_from_slice(&(whole as u32).to_le_bytes());
        frame.extend_from_slice(&buffer[..whole]);
        if let Some(error) = followers
            .iter()
            .find_map(|mut follower| follower.write_all(&frame).err())
        {
            break Err(error);
        }
        disk.push(&buffer[..whole], index);
        buffer.copy_within(whole..filled, 0);
        filled -= whole;
    };
    // Closing each follower's input ends it, which ends its acknowledgements.
    disk.close();
    for follower in &followers {
        let _ = follower.shutdown(Shutdown::Write);
    }
    received.and(join_all(threads))
}

/// The leader's view of what is durable where, and the requests waiting for
/// it.
struct Commit<W> {
    /// Highest durable index of each replica; the leader is 0.
    durable: Vec<u64>,
    /// `(index, sequence number)` of each unanswered request, in order.
    waiting: VecDeque<(u64, u64)>,
    /// Where answers go: the sequence numbers of the answered requests.
    answers: W,
}

/// Records that `replica` has everything up to `index` on disk and answers
/// the requests that are now durable on the leader and on a majority.
fn advance<W: Write>(commit: &Mutex<Commit<W>>, replica: usize, index: u64) -> io::Result<()> {
    let mut commit = commit.lock().expect("commit lock");
    commit.durable[replica] = commit.durable[replica].max(index);
    let mut sorted = commit.durable.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let committed = sorted[sorted.len() / 2].min(commit.durable[0]);
    let mut answer = Vec::new();
    while let Some(&(index, sequence)) = commit.waiting.front() {
        if index > committed {
            break;
        }
        answer.extend_from_slice(&sequence.to_le_bytes());
        commit.waiting.pop_front();
    }
    if answer.is_empty() {
        return Ok(());
    }
    commit.answers.write_all(&answer)
}

/// Appends what the leader forwards and acknowledges each sync with the
/// highest index it made durable.
fn follower(stream: TcpStream, file: File) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let disk = Arc::new(Disk::default());
    let syncer = {
        let disk = Arc::clone(&disk);
        let mut acks = stream.try_clone()?;
        named("floor-sync".into(), move || {
            sync_loop(file, &disk, |index| acks.write_all(&index.to_le_bytes()))
        })?
    };
    let mut reader = BufReader::with_capacity(1 << 20, &stream);
    let mut body = Vec::new();
    let received = loop {
        let mut header = [0u8; 12];
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => break Ok(()),
            Err(error) => break Err(error),
        }
        let last_index = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
        let length = u32::from_le_bytes(header[8..].try_into().expect("4 bytes")) as usize;
        body.resize(length, 0);
        if let Err(error) = reader.read_exact(&mut body) {
            break Err(error);
        }
        disk.push(&body, last_index);
    };
    disk.close();
    let synced = join_all(vec![syncer]);
    let _ = stream.shutdown(Shutdown::Both);
    received.and(synced)
}

/// Bytes waiting for a replica's next sync.
#[derive(Default)]
struct Disk {
    state: Mutex<DiskState>,
    wake: Condvar,
}

#[derive(Default)]
struct DiskState {
    pending: Vec<u8>,
    last_index: u64,
    closed: bool,
}

impl Disk {
    fn push(&self, bytes: &[u8], last_index: u64) {
        let mut state = self.state.lock().expect("disk lock");
        state.pending.extend_from_slice(bytes);
        state.last_index = last_index;
        self.wake.notify_one();
    }

    fn close(&self) {
        self.state.lock().expect("disk lock").closed = true;
        self.wake.notify_one();
    }

    /// The bytes gathered since the last call and the highest index among
    /// them, or `None` once closed and empty.
    fn take(&self) -> Option<(Vec<u8>, u64)> {
        let mut state = self.state.lock().expect("disk lock");
        while state.pending.is_empty() && !state.closed {
            state = self.wake.wait(state).expect("disk lock");
        }
        if state.pending.is_empty() {
            return None;
        }
        Some((std::mem::take(&mut state.pending), state.last_index))
    }
}

/// Writes and syncs whatever gathered, one sync at a time, and reports each
/// sync's highest index to `durable`.
fn sync_loop(
    file: File,
    disk: &Disk,
    mut durable: impl FnMut(u64) -> io::Result<()>,
) -> io::Result<()> {
    let mut offset = 0u64;
    while let Some((bytes, last_index)) = disk.take() {
        if offset + bytes.len() as u64 > RING_BYTES {
            offset = 0;
        }
        file.write_all_at(&bytes, offset)?;
        offset += bytes.len() as u64;
        file.sync_data()?;
        durable(last_index)?;
    }
    Ok(())
}

/// A file of [`RING_BYTES`] zeros, synced, so that later syncs only carry
/// data.
fn ring_file(path: &Path) -> anyhow::Result<File> {
    let file = std::fs::OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let zeros = vec![0u8; 1 << 20];
    let mut offset = 0;
    while offset < RING_BYTES {
        file.write_all_at(&zeros, offset)
            .with_context(|| format!("cannot write {}", path.display()))?;
        offset += zeros.len() as u64;
    }
    file.sync_all()
        .with_context(|| format!("cannot sync {}", path.display()))?;
    Ok(file)
}

/// Waits for every thread and returns the first error among them, a panic
/// counting as one.
fn join_all(threads: Vec<JoinHandle<io::Result<()>>>) -> io::Result<()> {
    let mut outcome = Ok(());
    for thread in threads {
        let result = thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("a floor thread panicked")));
        outcome = outcome.and(result);
    }
    outcome
}

fn named(
    name: String,
    body: impl FnOnce() -> io::Result<()> + Send + 'static,
) -> io::Result<JoinHandle<io::Result<()>>> {
    thread::Builder::new().name(name).spawn(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(replicas: usize, waiting: u64) -> Mutex<Commit<Vec<u8>>> {
        Mutex::new(Commit {
            durable: vec![0; replicas],
            // Index i carries sequence number 100 + i.
            waiting: (1..=waiting).map(|index| (index, 100 + index)).collect(),
            answers: Vec::new(),
        })
    }

    fn answered(commit: &Mutex<Commit<Vec<u8>>>) -> Vec<u64> {
        let commit = commit.lock().unwrap();
        commit
            .answers
            .chunks_exact(SEQUENCE_BYTES)
            .map(|bytes| u64::from_le_bytes(bytes.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn a_request_is_answered_once_durable_on_the_leader_and_a_majority() {
        let commit = commit(3, 5);
        advance(&commit, 1, 4).unwrap();
        assert!(answered(&commit).is_empty(), "not on the leader yet");
        advance(&commit, 0, 2).unwrap();
        assert_eq!(answered(&commit), vec![101, 102]);
        advance(&commit, 0, 5).unwrap();
        assert_eq!(
            answered(&commit),
            vec![101, 102, 103, 104],
            "index 5 is on one replica of three"
        );
        advance(&commit, 2, 5).unwrap();
        assert_eq!(answered(&commit), vec![101, 102, 103, 104, 105]);
        // An older acknowledgement arriving late moves nothing back.
        advance(&commit, 1, 1).unwrap();
        assert_eq!(commit.lock().unwrap().durable, vec![5, 4, 5]);
    }

    #[test]
    fn a_single_replica_answers_after_its_own_sync() {
        let commit = commit(1, 3);
        advance(&commit, 0, 2).unwrap();
        assert_eq!(answered(&commit), vec![101, 102]);
    }

    /// Runs the floor for a moment and checks that every request sent was
    /// answered and is on every replica's disk, in order.
    fn run_briefly(replicas: usize) {
        let dir = tempfile::tempdir().unwrap();
        let measurements = Measurements::new();
        let spec = Spec {
            replicas,
            requests_per_second: 2_000.0,
            payload_bytes: 40,
            jobs_per_request: 1,
        };
        thread::scope(|scope| {
            scope.spawn(|| {
                // Stop once 200 requests were answered; the limit only keeps
                // a broken floor from hanging the test.
                let limit = Instant::now() + Duration::from_secs(60);
                while measurements.enqueued.load(Ordering::Relaxed) < 200 && Instant::now() < limit
                {
                    thread::sleep(Duration::from_millis(5));
                }
                measurements.stop.store(true, Ordering::Relaxed);
            });
            run_in(dir.path(), &spec, &measurements, || {}).unwrap();
        });
        let sent = measurements.enqueued.load(Ordering::Relaxed);
        assert!(sent >= 200, "only {sent} requests were answered");
        assert_eq!(
            measurements.enqueue_latency_us.lock().unwrap().len(),
            sent,
            "one latency per answered request"
        );
        let request_bytes = SEQUENCE_BYTES + spec.payload_bytes;
        for replica in 0..replicas {
            let file = std::fs::read(dir.path().join(format!("replica-{replica}"))).unwrap();
            for sequence in 0..sent {
                let start = sequence as usize * request_bytes;
                let request = &file[start..start + request_bytes];
                assert_eq!(
                    u64::from_le_bytes(request[..SEQUENCE_BYTES].try_into().unwrap()),
                    sequence,
                    "replica {replica} holds request {sequence} in its place"
                );
                assert!(request[SEQUENCE_BYTES..].iter().all(|byte| *byte == b'x'));
            }
            let after = sent as usize * request_bytes;
            assert!(
                file[after..after + request_bytes]
                    .iter()
                    .all(|byte| *byte == 0),
                "replica {replica} holds nothing that was not answered"
            );
        }
    }

    #[test]
    fn three_replicas_answer_every_request_and_each_holds_all_of_them() {
        run_briefly(3);
    }

    #[test]
    fn one_replica_answers_every_request_and_holds_all_of_them() {
        run_briefly(1);
    }
}
