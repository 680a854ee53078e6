//! Bad input on the client and peer ports of a running cluster: each gets a
//! clear error (an error frame, or a refused handshake) and the cluster
//! keeps serving everyone else.

mod common;

use bytes::{BufMut, BytesMut};
use common::servers::ServerCluster;
use futures::{SinkExt, StreamExt};
use raftq::protocol::handshake::{self, ErrorCode, ErrorFrame, HandshakeError, Hello, Role};
use raftq::protocol::{Frame, FrameCodec, FrameKind, PROTOCOL_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Framed};

/// Sends raw bytes and returns the error frame the node answers with.
async fn error_reply(address: &str, bytes: &[u8]) -> ErrorFrame {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    let mut buffer = BytesMut::from(&reply[..]);
    let frame = FrameCodec::new(1 << 20)
        .decode(&mut buffer)
        .unwrap()
        .expect("the node answers with a frame before closing");
    assert_eq!(frame.kind, FrameKind::Error);
    frame.decode().unwrap()
}

fn header(kind: u8, length: u32, crc: u32) -> BytesMut {
    let mut bytes = BytesMut::new();
    bytes.put_slice(b"RFTQ");
    bytes.put_u8(PROTOCOL_VERSION);
    bytes.put_u8(kind);
    bytes.put_u16_le(0);
    bytes.put_u32_le(length);
    bytes.put_u32_le(crc);
    bytes
}

fn client_hello(cluster_id: &str) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        cluster_id: cluster_id.to_string(),
        role: Role::Client {
            name: "tester".to_string(),
        },
        nonce: [1; 32],
    }
}

async fn connected_client(address: &str) -> Framed<TcpStream, FrameCodec> {
    let stream = TcpStream::connect(address).await.unwrap();
    let mut framed = Framed::new(stream, FrameCodec::new(1 << 20));
    handshake::connect(&mut framed, client_hello("test"), None)
        .await
        .unwrap();
    framed
}

async fn cluster_still_serves(cluster: &ServerCluster, payload: &str) {
    let client = cluster.client().await;
    let id = client
        .enqueue("survivors", payload.to_string())
        .await
        .unwrap();
    assert!(client.job(id, false).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bytes_on_the_client_port_get_error_frames_and_others_are_served() {
    let cluster = ServerCluster::start(3).await;
    let address = cluster.client_addresses[&1].clone();

    let random = error_reply(&address, &[0x5a; 64]).await;
    assert_eq!(random.code, ErrorCode::BadFrame);
    assert!(random.message.contains("magic"), "{}", random.message);

    let oversize = error_reply(&address, &header(FrameKind::Hello as u8, u32::MAX, 0)).await;
    assert!(
        oversize.message.contains("exceeds the maximum"),
        "{}",
        oversize.message
    );

    let mut bad_crc = header(FrameKind::Hello as u8, 4, 0xdead_beef);
    bad_crc.put_slice(b"abcd");
    let checksum = error_reply(&address, &bad_crc).await;
    assert!(
        checksum.message.contains("checksum"),
        "{}",
        checksum.message
    );

    let mut bad_version = header(FrameKind::Hello as u8, 0, 0);
    bad_version[4] = 77;
    let version = error_reply(&address, &bad_version).await;
    assert!(version.message.contains("version"), "{}", version.message);

    // After a good handshake: a request body that does not decode.
    let mut framed = connected_client(&address).await;
    framed
        .send(Frame {
            kind: FrameKind::Request,
            payload: bytes::Bytes::from_static(&[0xff, 0xff, 0xff]),
        })
        .await
        .unwrap();
    let reply = framed.next().await.unwrap().unwrap();
    assert_eq!(reply.kind, FrameKind::Error);
    let error: ErrorFrame = reply.decode().unwrap();
    assert_eq!(error.code, ErrorCode::BadFrame);
    assert!(
        framed.next().await.is_none(),
        "the connection is closed after the error"
    );

    // The wrong cluster id is refused with the reason.
    let stream = TcpStream::connect(&address).await.unwrap();
    let mut framed = Framed::new(stream, FrameCodec::new(1 << 20));
    let refused = handshake::connect(&mut framed, client_hello("another-cluster"), None).await;
    assert!(matches!(
        refused,
        Err(HandshakeError::Refused {
            code: ErrorCode::ClusterMismatch,
            ..
        })
    ));

    cluster_still_serves(&cluster, "after bad client input").await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_peers_are_refused_and_the_cluster_keeps_working() {
    let cluster = ServerCluster::start(3).await;
    let peer_address = cluster.peer_addresses[&1].clone();

    let random = error_reply(&peer_address, &[0x00; 40]).await;
    assert_eq!(random.code, ErrorCode::BadFrame);

    // A peer that does not know the cluster secret.
    let stream = TcpStream::connect(&peer_address).await.unwrap();
    let mut framed = Framed::new(stream, FrameCodec::new(1 << 20));
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION,
        cluster_id: "test".to_string(),
        role: Role::Peer {
            node_id: 9,
            peer_address: "127.0.0.1:9".to_string(),
            incarnation: 1,
            client_address: "127.0.0.1:9".to_string(),
        },
        nonce: [3; 32],
    };
    let wrong_secret = handshake::connect(&mut framed, hello, Some(b"not-the-secret")).await;
    assert!(
        matches!(
            wrong_secret,
            Err(HandshakeError::Rejected {
                code: ErrorCode::AuthenticationFailed,
                ..
            })
        ),
        "{wrong_secret:?}"
    );

    // A peer that knows the secret but claims the id of node 2, which is
    // connected and talking.
    let stream = TcpStream::connect(&peer_address).await.unwrap();
    let mut framed = Framed::new(stream, FrameCodec::new(1 << 20));
    let impostor = Hello {
        protocol_version: PROTOCOL_VERSION,
        cluster_id: "test".to_string(),
        role: Role::Peer {
            node_id: 2,
            peer_address: "127.0.0.1:1".to_string(),
            incarnation: 2,
            client_address: "127.0.0.1:2".to_string(),
        },
        nonce: [4; 32],
    };
    let refused = handshake::connect(&mut framed, impostor, Some(b"test-secret")).await;
    match refused {
        Err(HandshakeError::Refused {
            code: ErrorCode::UnknownPeer,
            message,
        }) => assert!(
            message.contains("two nodes may be configured with one id"),
            "{message}"
        ),
        other => panic!("the impostor was not refused: {other:?}"),
    }

    // A client on the peer port is pointed to the client port.
    let stream = TcpStream::connect(&peer_address).await.unwrap();
    let mut framed = Framed::new(stream, FrameCodec::new(1 << 20));
    let wrong_port = handshake::connect(&mut framed, client_hello("test"), None).await;
    assert!(matches!(
        wrong_port,
        Err(HandshakeError::Refused {
            code: ErrorCode::WrongPort,
            ..
        })
    ));

    cluster_still_serves(&cluster, "after bad peer input").await;
    cluster.shutdown().await;
}
