//! Resource limits of a running server, each exceeded on purpose: client
//! connections, frame size, job payload size and jobs per queue. Each gets a
//! clear typed error, and the server keeps serving every other client.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::servers::ServerCluster;
use futures::{SinkExt, StreamExt};
use raftq::client::{Client, ClientError};
use raftq::config::ServerConfig;
use raftq::protocol::handshake::{self, ErrorCode, ErrorFrame, HandshakeError, Hello, Role};
use raftq::protocol::{Frame, FrameCodec, FrameKind, PROTOCOL_VERSION};
use raftq::queue::{NewJob, QueueError};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

const CONNECTIONS_MAX: usize = 3;
const FRAME_MAX_BYTES: usize = 64 * 1024;
const PAYLOAD_MAX_BYTES: usize = 1000;
const QUEUE_JOBS_MAX: u64 = 5;

fn small_limits(config: &mut ServerConfig) {
    config.client_connections_max = CONNECTIONS_MAX;
    config.client_frame_max_bytes = FRAME_MAX_BYTES;
    config.payload_max_bytes = PAYLOAD_MAX_BYTES;
    config.queue_jobs_max = QUEUE_JOBS_MAX;
}

async fn single_node() -> ServerCluster {
    let cluster = ServerCluster::start_with(1, small_limits, BTreeMap::new()).await;
    cluster.leader().await;
    // The leader proposes the configured limits after its election; wait
    // until they are applied.
    let node = cluster.servers[&1].running.node.clone();
    let wanted = cluster.config(1).queue_limits();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while node.read_state(|state| *state.limits()) != wanted {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the configured limits are never applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster
}

async fn raw_connection(address: &str) -> Result<Framed<TcpStream, FrameCodec>, HandshakeError> {
    let stream = TcpStream::connect(address).await.unwrap();
    let mut framed = Framed::new(stream, FrameCodec::new(1 << 20));
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION,
        cluster_id: "test".to_string(),
        role: Role::Client {
            name: "limits".to_string(),
        },
        nonce: [3; 32],
    };
    handshake::connect(&mut framed, hello, None).await?;
    Ok(framed)
}

async fn still_serves(client: &Client, queue: &str) {
    let id = client.enqueue(queue, "still served").await.unwrap();
    assert!(client.job(id, false).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_refused_and_the_others_are_served() {
    let cluster = single_node().await;
    let address = cluster.client_addresses[&1].clone();
    let first = cluster.client().await;
    let mut held = Vec::new();
    for _ in 1..CONNECTIONS_MAX {
        held.push(raw_connection(&address).await.expect("below the limit"));
    }
    let refused = raw_connection(&address).await;
    match refused {
        Err(HandshakeError::Refused { code, message }) => {
            assert_eq!(code, ErrorCode::TooManyConnections);
            assert!(message.contains("connection limit"), "{message}");
        }
        other => panic!("a connection beyond the limit is accepted: {other:?}"),
    }
    still_serves(&first, "connections").await;
    // A freed slot serves a new client.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let again = loop {
        match raw_connection(&address).await {
            Ok(framed) => break framed,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("a freed slot is never reused: {error}"),
        }
    };
    drop(again);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_above_the_limit_gets_an_error_frame_and_others_are_served() {
    let cluster = single_node().await;
    let address = cluster.client_addresses[&1].clone();
    let client = cluster.client().await;
    let mut framed = raw_connection(&address).await.unwrap();
    framed
        .send(Frame {
            kind: FrameKind::Request,
            payload: Bytes::from(vec![0u8; FRAME_MAX_BYTES + 1]),
        })
        .await
        .unwrap();
    let reply = framed.next().await.unwrap().unwrap();
    assert_eq!(reply.kind, FrameKind::Error);
    let error: ErrorFrame = reply.decode().unwrap();
    assert_eq!(error.code, ErrorCode::BadFrame);
    assert!(
        error
            .message
            .contains(&format!("exceeds the maximum of {FRAME_MAX_BYTES} bytes")),
        "{}",
        error.message
    );
    assert!(framed.next().await.is_none(), "the connection is closed");

    // A client that knows the limit refuses the request before sending it.
    let mut options = cluster.client_options();
    options.connect.frame_max_bytes = FRAME_MAX_BYTES;
    let careful = Client::connect(options).await.unwrap();
    let jobs = (0..100)
        .map(|_| NewJob::new("frames", vec![7u8; PAYLOAD_MAX_BYTES]))
        .collect();
    let error = careful.enqueue_batch(jobs).await.unwrap_err();
    assert!(matches!(error, ClientError::Invalid(_)), "{error}");
    still_serves(&careful, "frames").await;
    still_serves(&client, "frames").await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_above_the_limit_is_refused_and_others_are_served() {
    let cluster = single_node().await;
    let client = cluster.client().await;
    let error = client
        .enqueue("payloads", vec![1u8; PAYLOAD_MAX_BYTES + 1])
        .await
        .unwrap_err();
    assert_eq!(
        error,
        ClientError::Queue(QueueError::PayloadTooLarge {
            size: PAYLOAD_MAX_BYTES as u64 + 1,
            max: PAYLOAD_MAX_BYTES as u64,
        })
    );
    // A batch keeps its good jobs: only the oversized one is refused.
    let results = client
        .enqueue_batch(vec![
            NewJob::new("payloads", vec![1u8; PAYLOAD_MAX_BYTES]),
            NewJob::new("payloads", vec![1u8; PAYLOAD_MAX_BYTES + 1]),
        ])
        .await
        .unwrap();
    assert!(results[0].is_ok());
    assert!(matches!(
        results[1],
        Err(QueueError::PayloadTooLarge { .. })
    ));
    let other = cluster.client().await;
    still_serves(&other, "payloads").await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_jobs_until_one_leaves_and_other_queues_are_served() {
    let cluster = single_node().await;
    let client = cluster.client().await;
    for number in 0..QUEUE_JOBS_MAX {
        client
            .enqueue("bounded", format!("job {number}"))
            .await
            .unwrap();
    }
    let error = client.enqueue("bounded", "one too many").await.unwrap_err();
    assert_eq!(
        error,
        ClientError::Queue(QueueError::QueueFull {
            queue: "bounded".to_string(),
            max: QUEUE_JOBS_MAX,
        })
    );
    // Another queue, and another client, are served.
    let other = cluster.client().await;
    still_serves(&other, "unbounded").await;
    // A finished job makes room for one more.
    let claimed = client.claim(&["bounded"], 1, 10_000, 0).await.unwrap();
    client.ack(claimed[0].id, claimed[0].token).await.unwrap();
    client.enqueue("bounded", "room again").await.unwrap();
    let error = client.enqueue("bounded", "full again").await.unwrap_err();
    assert!(matches!(
        error,
        ClientError::Queue(QueueError::QueueFull { .. })
    ));
    cluster.shutdown().await;
}

/// The limits are replicated: a leader whose configuration differs from the
/// applied limits proposes its own after it is elected, and every node
/// applies them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_limits_reach_every_node_of_a_cluster() {
    let cluster = ServerCluster::start_with(3, small_limits, BTreeMap::new()).await;
    let wanted = cluster.config(1).queue_limits();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for (id, server) in &cluster.servers {
        while server.running.node.read_state(|state| *state.limits()) != wanted {
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {id} never applies the configured limits"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let client = cluster.client().await;
    let error = client
        .enqueue("replicated", vec![0u8; PAYLOAD_MAX_BYTES + 1])
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        ClientError::Queue(QueueError::PayloadTooLarge { .. })
    ));
    cluster.shutdown().await;
}
