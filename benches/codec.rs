//! Throughput of the frame codec on client traffic.
//!
//! `cargo bench --bench codec` prints criterion's throughput for:
//! - `encode/enqueue_100x128B`: a request enqueueing 100 jobs of 128 bytes,
//!   postcard-encoded into a frame and written with its header and CRC
//!   (throughput in bytes and in jobs);
//! - `decode/enqueue_100x128B`: the same frame split off a buffer by the
//!   tokio-util decoder (header checks, CRC) and its body decoded;
//! - `encode/ack` and `decode/ack`: a single small ack request, the most
//!   frequent frame in a worker's traffic (throughput in frames).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use raftq::protocol::client::{Request, RequestBody};
use raftq::protocol::{Frame, FrameCodec, FrameKind};
use raftq::queue::{Ack, Enqueue, FencingToken, JobId, NewJob};
use tokio_util::codec::Decoder;

const JOBS_PER_REQUEST: usize = 100;
const PAYLOAD_BYTES: usize = 128;
const FRAME_MAX_BYTES: usize = 16 * 1024 * 1024;

fn enqueue_request() -> Request {
    let payload = Bytes::from(vec![0x5a; PAYLOAD_BYTES]);
    Request {
        id: 7,
        body: RequestBody::Enqueue(Enqueue {
            jobs: vec![NewJob::new("bench", payload); JOBS_PER_REQUEST],
            session: None,
        }),
    }
}

fn ack_request() -> Request {
    Request {
        id: 8,
        body: RequestBody::Ack(Ack {
            id: JobId(123_456),
            token: FencingToken(987_654),
        }),
    }
}

fn encoded(request: &Request) -> BytesMut {
    let frame = Frame::encode(FrameKind::Request, request).expect("request encodes");
    let mut out = BytesMut::new();
    frame.write_to(&mut out);
    out
}

fn bench_encode(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("encode");
    let enqueue = enqueue_request();
    let enqueue_bytes = encoded(&enqueue).len() as u64;
    let mut out = BytesMut::with_capacity(1 << 20);
    group.throughput(Throughput::Bytes(enqueue_bytes));
    group.bench_function("enqueue_100x128B", |bencher| {
        bencher.iter(|| {
            let frame = Frame::encode(FrameKind::Request, black_box(&enqueue)).unwrap();
            frame.write_to(&mut out);
            out.clear();
        })
    });
    group.throughput(Throughput::Elements(JOBS_PER_REQUEST as u64));
    group.bench_function("enqueue_100x128B_jobs", |bencher| {
        bencher.iter(|| {
            let frame = Frame::encode(FrameKind::Request, black_box(&enqueue)).unwrap();
            frame.write_to(&mut out);
            out.clear();
        })
    });
    let ack = ack_request();
    group.throughput(Throughput::Elements(1));
    group.bench_function("ack", |bencher| {
        bencher.iter(|| {
            let frame = Frame::encode(FrameKind::Request, black_box(&ack)).unwrap();
            frame.write_to(&mut out);
            out.clear();
        })
    });
    group.finish();
}

/// Splits one frame off a copy of `wire` and decodes its body, checking it.
fn decode_once(codec: &mut FrameCodec, wire: &BytesMut, expected_id: u64) {
    let mut buffer = wire.clone();
    let frame = codec
        .decode(&mut buffer)
        .expect("valid frame")
        .expect("a whole frame");
    let request: Request = frame.decode().expect("valid body");
    assert_eq!(request.id, expected_id);
    black_box(request);
}

fn bench_decode(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("decode");
    let mut codec = FrameCodec::new(FRAME_MAX_BYTES);
    let enqueue_wire = encoded(&enqueue_request());
    group.throughput(Throughput::Bytes(enqueue_wire.len() as u64));
    group.bench_function("enqueue_100x128B", |bencher| {
        bencher.iter(|| decode_once(&mut codec, &enqueue_wire, 7))
    });
    group.throughput(Throughput::Elements(JOBS_PER_REQUEST as u64));
    group.bench_function("enqueue_100x128B_jobs", |bencher| {
        bencher.iter(|| decode_once(&mut codec, &enqueue_wire, 7))
    });
    let ack_wire = encoded(&ack_request());
    group.throughput(Throughput::Elements(1));
    group.bench_function("ack", |bencher| {
        bencher.iter(|| decode_once(&mut codec, &ack_wire, 8))
    });
    group.finish();
}

criterion_group!(benches, bench_encode, bench_decode);
criterion_main!(benches);
