//! The handshake that opens every connection, and the proofs that let peers
//! (and, when configured, clients) show they know a shared secret without
//! ever sending it.
//!
//! ```text
//! connector                                   acceptor
//!   Hello { version, cluster_id, role, nonce_c }  ->
//!                                              <- Challenge { node_id, nonce_a, proof_a }
//!   Auth { proof_c }                          ->
//!                                              <- Accepted { node_id }   (or Error, then close)
//! ```
//!
//! `proof_a = HMAC-SHA256(secret, "raftq/acceptor/1" | transcript)` and
//! `proof_c = HMAC-SHA256(secret, "raftq/connector/1" | transcript)`, where
//! the transcript binds the cluster id, both roles and both nonces, so a proof
//! can be replayed neither on another connection nor in the other direction.
//! Both sides check the other's proof, so a connector also learns that it
//! reached a member of its own cluster.

use futures::{SinkExt, StreamExt};
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use super::codec::FrameCodec;
use super::error::FrameError;
use super::frame::{Frame, FrameKind, PROTOCOL_VERSION};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Length of handshake nonces and proofs in bytes.
pub const NONCE_SIZE_BYTES: usize = 32;

/// Longest cluster id and client name accepted in a `Hello`.
pub const NAME_MAX_BYTES: usize = 128;

/// Who is connecting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Another member of the cluster, by its node id.
    Peer {
        /// The connecting node's id.
        node_id: u64,
        /// The address where the connecting node accepts peer connections,
        /// for the acceptor's logs.
        peer_address: String,
        /// Random per process start: two processes that claim one node id
        /// (a configuration mistake) have different incarnations, which the
        /// acceptor notices.
        incarnation: u64,
        /// The address where the connecting node serves clients, so that
        /// other nodes can redirect clients to it when it leads.
        client_address: String,
    },
    /// A client (producer, worker, operator tool) with a free-form name.
    Client {
        /// A name for logs, such as `worker@host`.
        name: String,
    },
}

/// First frame on every connection, from the connecting side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version the connector speaks.
    pub protocol_version: u8,
    /// The cluster the connector belongs to or wants to reach.
    pub cluster_id: String,
    /// Who is connecting.
    pub role: Role,
    /// Fresh random bytes for this connection.
    pub nonce: [u8; NONCE_SIZE_BYTES],
}

/// The acceptor's answer to `Hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// The accepting node's id.
    pub node_id: u64,
    /// Fresh random bytes for this connection.
    pub nonce: [u8; NONCE_SIZE_BYTES],
    /// The acceptor's proof that it knows the secret.
    pub proof: [u8; NONCE_SIZE_BYTES],
}

/// The connector's proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    /// The connector's proof that it knows the secret.
    pub proof: [u8; NONCE_SIZE_BYTES],
}

/// The acceptor's confirmation that the connection may be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The accepting node's id.
    pub node_id: u64,
}

/// Why a connection was refused or closed; sent in an `Error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The bytes received were not a valid frame.
    BadFrame,
    /// The protocol versions differ.
    VersionMismatch,
    /// The connector belongs to another cluster.
    ClusterMismatch,
    /// A proof did not verify: the secrets differ.
    AuthenticationFailed,
    /// A peer claimed a node id that is not a member, or is this node's own id.
    UnknownPeer,
    /// A client tried to connect on the peer port or the other way round.
    WrongPort,
    /// The connection limit is reached.
    TooManyConnections,
    /// The node is shutting down.
    ShuttingDown,
    /// The node hit an internal error while serving this connection.
    Internal,
}

/// The body of an `Error` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// The error's class.
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: String,
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The connection broke or carried invalid frames.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The other side closed the connection during the handshake.
    #[error("connection closed during the handshake")]
    Closed,
    /// The other side refused the handshake with a typed error.
    #[error("refused by the other side ({code:?}): {message}")]
    Refused {
        /// The error's class.
        code: ErrorCode,
        /// The explanation the other side gave.
        message: String,
    },
    /// This side refused the other (the reason was sent to it as well).
    #[error("refused ({code:?}): {message}")]
    Rejected {
        /// The error's class.
        code: ErrorCode,
        /// The explanation.
        message: String,
    },
}

/// What the acceptor expects of connectors.
#[derive(Debug, Clone)]
pub struct AcceptPolicy {
    /// This node's id.
    pub node_id: u64,
    /// The cluster id a connector must name.
    pub cluster_id: String,
    /// The shared secret, or `None` to accept any connector that names the
    /// right cluster (proofs are then neither checked nor meaningful).
    pub secret: Option<Vec<u8>>,
    /// Whether this listener serves peers (`true`) or clients (`false`).
    pub peers: bool,
}

fn transcript_mac(
    secret: &[u8],
    label: &[u8],
    cluster_id: &str,
    role: &Role,
    acceptor_node_id: u64,
    connector_nonce: &[u8; NONCE_SIZE_BYTES],
    acceptor_nonce: &[u8; NONCE_SIZE_BYTES],
) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(label);
    mac.update(&(cluster_id.len() as u64).to_le_bytes());
    mac.update(cluster_id.as_bytes());
    match role {
        Role::Peer {
            node_id,
            peer_address,
            incarnation,
            client_address,
        } => {
            mac.update(b"peer");
            mac.update(&node_id.to_le_bytes());
            mac.update(&incarnation.to_le_bytes());
            mac.update(&(peer_address.len() as u64).to_le_bytes());
            mac.update(peer_address.as_bytes());
            mac.update(&(client_address.len() as u64).to_le_bytes());
            mac.update(client_address.as_bytes());
        }
        Role::Client { name } => {
            mac.update(b"client");
            mac.update(&(name.len() as u64).to_le_bytes());
            mac.update(name.as_bytes());
        }
    }
    mac.update(&acceptor_node_id.to_le_bytes());
    mac.update(connector_nonce);
    mac.update(acceptor_nonce);
    mac
}

const ACCEPTOR_LABEL: &[u8] = b"raftq/acceptor/1";
const CONNECTOR_LABEL: &[u8] = b"raftq/connector/1";

/// Computes a proof for one side of a handshake.
fn proof(
    secret: &[u8],
    label: &[u8],
    hello: &Hello,
    acceptor_node_id: u64,
    acceptor_nonce: &[u8; NONCE_SIZE_BYTES],
) -> [u8; NONCE_SIZE_BYTES] {
    transcript_mac(
        secret,
        label,
        &hello.cluster_id,
        &hello.role,
        acceptor_node_id,
        &hello.nonce,
        acceptor_nonce,
    )
    .finalize()
    .into_bytes()
    .into()
}

/// Checks a proof in constant time.
fn verify(
    secret: &[u8],
    label: &[u8],
    hello: &Hello,
    acceptor_node_id: u64,
    acceptor_nonce: &[u8; NONCE_SIZE_BYTES],
    proof: &[u8; NONCE_SIZE_BYTES],
) -> bool {
    transcript_mac(
        secret,
        label,
        &hello.cluster_id,
        &hello.role,
        acceptor_node_id,
        &hello.nonce,
        acceptor_nonce,
    )
    .verify_slice(proof)
    .is_ok()
}

async fn receive<T, B>(
    framed: &mut Framed<T, FrameCodec>,
    expected: FrameKind,
) -> Result<B, HandshakeError>
where
    T: AsyncRead + AsyncWrite + Unpin,
    B: for<'de> Deserialize<'de>,
{
    let frame = framed.next().await.ok_or(HandshakeError::Closed)??;
    if frame.kind == FrameKind::Error {
        let error: ErrorFrame = frame.decode()?;
        return Err(HandshakeError::Refused {
            code: error.code,
            message: error.message,
        });
    }
    if frame.kind != expected {
        return Err(FrameError::UnexpectedKind {
            found: frame.kind.name(),
            expected: expected.name(),
        }
        .into());
    }
    Ok(frame.decode()?)
}

/// Sends an error frame, ignoring failures: the connection is being closed anyway.
pub async fn send_error<T>(
    framed: &mut Framed<T, FrameCodec>,
    code: ErrorCode,
    message: impl Into<String>,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let body = ErrorFrame {
        code,
        message: message.into(),
    };
    if let Ok(frame) = Frame::encode(FrameKind::Error, &body) {
        let _ = framed.send(frame).await;
    }
}

/// Runs the connecting side of the handshake. Returns the acceptor's node id.
pub async fn connect<T>(
    framed: &mut Framed<T, FrameCodec>,
    hello: Hello,
    secret: Option<&[u8]>,
) -> Result<u64, HandshakeError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    framed
        .send(Frame::encode(FrameKind::Hello, &hello)?)
        .await?;
    let challenge: Challenge = receive(framed, FrameKind::Challenge).await?;
    let proof_bytes = match secret {
        Some(secret) => {
            if !verify(
                secret,
                ACCEPTOR_LABEL,
                &hello,
                challenge.node_id,
                &challenge.nonce,
                &challenge.proof,
            ) {
                let message = "the node's proof does not match our cluster secret";
                send_error(framed, ErrorCode::AuthenticationFailed, message).await;
                return Err(HandshakeError::Rejected {
                    code: ErrorCode::AuthenticationFailed,
                    message: message.to_string(),
                });
            }
            proof(
                secret,
                CONNECTOR_LABEL,
                &hello,
                challenge.node_id,
                &challenge.nonce,
            )
        }
        None => [0; NONCE_SIZE_BYTES],
    };
    framed
        .send(Frame::encode(
            FrameKind::Auth,
            &Auth { proof: proof_bytes },
        )?)
        .await?;
    let accepted: Accepted = receive(framed, FrameKind::Accepted).await?;
    Ok(accepted.node_id)
}

/// Runs the accepting side of the handshake, up to and including the
/// verification of the connector's proof. `admit` decides on the connector's
/// role (for example, that a peer id is a known member); the acceptor then
/// sends `Accepted`. Every refusal is sent to the connector as an error frame
/// before this returns it.
pub async fn accept<T>(
    framed: &mut Framed<T, FrameCodec>,
    policy: &AcceptPolicy,
    nonce: [u8; NONCE_SIZE_BYTES],
    admit: impl FnOnce(&Role) -> Result<(), (ErrorCode, String)>,
) -> Result<Hello, HandshakeError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let hello: Hello = match receive(framed, FrameKind::Hello).await {
        Ok(hello) => hello,
        Err(HandshakeError::Frame(error)) if !matches!(error, FrameError::Io(_)) => {
            send_error(framed, ErrorCode::BadFrame, error.to_string()).await;
            return Err(error.into());
        }
        Err(other) => return Err(other),
    };
    let refusal = check_hello(&hello, policy).or_else(|| admit(&hello.role).err());
    if let Some((code, message)) = refusal {
        send_error(framed, code, message.clone()).await;
        return Err(HandshakeError::Rejected { code, message });
    }
    let acceptor_proof = match &policy.secret {
        Some(secret) => proof(secret, ACCEPTOR_LABEL, &hello, policy.node_id, &nonce),
        None => [0; NONCE_SIZE_BYTES],
    };
    let challenge = Challenge {
        node_id: policy.node_id,
        nonce,
        proof: acceptor_proof,
    };
    framed
        .send(Frame::encode(FrameKind::Challenge, &challenge)?)
        .await?;
    let auth: Auth = receive(framed, FrameKind::Auth).await?;
    if let Some(secret) = &policy.secret
        && !verify(
            secret,
            CONNECTOR_LABEL,
            &hello,
            policy.node_id,
            &nonce,
            &auth.proof,
        )
    {
        let message = "proof does not match this cluster's secret".to_string();
        send_error(framed, ErrorCode::AuthenticationFailed, message.clone()).await;
        return Err(HandshakeError::Rejected {
            code: ErrorCode::AuthenticationFailed,
            message,
        });
    }
    let accepted = Accepted {
        node_id: policy.node_id,
    };
    framed
        .send(Frame::encode(FrameKind::Accepted, &accepted)?)
        .await?;
    Ok(hello)
}

/// The checks that need nothing but the `Hello` and the policy.
fn check_hello(hello: &Hello, policy: &AcceptPolicy) -> Option<(ErrorCode, String)> {
    if hello.protocol_version != PROTOCOL_VERSION {
        return Some((
            ErrorCode::VersionMismatch,
            format!(
                "protocol version {} is not supported (this node speaks {})",
                hello.protocol_version, PROTOCOL_VERSION
            ),
        ));
    }
    if hello.cluster_id != policy.cluster_id {
        return Some((
            ErrorCode::ClusterMismatch,
            format!(
                "this node belongs to cluster {:?}, not {:?}",
                policy.cluster_id, hello.cluster_id
            ),
        ));
    }
    match &hello.role {
        Role::Peer { .. } if !policy.peers => Some((
            ErrorCode::WrongPort,
            "this is the client port; peers connect to the peer port".to_string(),
        )),
        Role::Client { .. } if policy.peers => Some((
            ErrorCode::WrongPort,
            "this is the peer port; clients connect to the client port".to_string(),
        )),
        Role::Client { name } if name.len() > NAME_MAX_BYTES => Some((
            ErrorCode::BadFrame,
            format!("client name longer than {NAME_MAX_BYTES} bytes"),
        )),
        Role::Peer {
            client_address,
            peer_address,
            ..
        } if client_address.len().max(peer_address.len()) > NAME_MAX_BYTES => Some((
            ErrorCode::BadFrame,
            format!("peer address longer than {NAME_MAX_BYTES} bytes"),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use tokio_util::codec::Framed;

    use super::*;

    fn framed_pair() -> (
        Framed<tokio::io::DuplexStream, FrameCodec>,
        Framed<tokio::io::DuplexStream, FrameCodec>,
    ) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        (
            Framed::new(a, FrameCodec::new(1 << 16)),
            Framed::new(b, FrameCodec::new(1 << 16)),
        )
    }

    fn peer(node_id: u64) -> Role {
        Role::Peer {
            node_id,
            peer_address: format!("127.0.0.1:{}", 7000 + node_id),
            incarnation: 1,
            client_address: format!("127.0.0.1:{node_id}"),
        }
    }

    fn hello(cluster_id: &str, role: Role) -> Hello {
        Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: cluster_id.to_string(),
            role,
            nonce: [7; NONCE_SIZE_BYTES],
        }
    }

    fn policy(secret: Option<&[u8]>, peers: bool) -> AcceptPolicy {
        AcceptPolicy {
            node_id: 2,
            cluster_id: "test".to_string(),
            secret: secret.map(<[u8]>::to_vec),
            peers,
        }
    }

    async fn run(
        hello: Hello,
        connector_secret: Option<&[u8]>,
        policy: AcceptPolicy,
    ) -> (Result<u64, HandshakeError>, Result<Hello, HandshakeError>) {
        let (mut left, mut right) = framed_pair();
        let connector = connect(&mut left, hello, connector_secret);
        let acceptor = accept(&mut right, &policy, [9; NONCE_SIZE_BYTES], |_| Ok(()));
        tokio::join!(connector, acceptor)
    }

    #[tokio::test]
    async fn peers_with_the_same_secret_complete_the_handshake() {
        let (connected, accepted) = run(
            hello("test", peer(1)),
            Some(b"s3cret"),
            policy(Some(b"s3cret"), true),
        )
        .await;
        assert_eq!(connected.unwrap(), 2);
        assert_eq!(accepted.unwrap().role, peer(1));
    }

    #[tokio::test]
    async fn connector_with_a_wrong_secret_is_refused_by_the_acceptor_or_refuses_it() {
        let (connected, accepted) = run(
            hello("test", peer(1)),
            Some(b"wrong"),
            policy(Some(b"s3cret"), true),
        )
        .await;
        // The connector checks the acceptor's proof first, so it is the one
        // that notices the mismatch; neither side may complete.
        assert!(matches!(
            connected,
            Err(HandshakeError::Rejected {
                code: ErrorCode::AuthenticationFailed,
                ..
            })
        ));
        assert!(matches!(
            accepted,
            Err(HandshakeError::Refused {
                code: ErrorCode::AuthenticationFailed,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn forged_connector_proof_is_refused_by_the_acceptor() {
        let (mut left, mut right) = framed_pair();
        let connector = async {
            let hello = hello("test", peer(1));
            left.send(Frame::encode(FrameKind::Hello, &hello).unwrap())
                .await
                .unwrap();
            let _challenge: Challenge = receive(&mut left, FrameKind::Challenge).await.unwrap();
            let forged = Auth {
                proof: [1; NONCE_SIZE_BYTES],
            };
            left.send(Frame::encode(FrameKind::Auth, &forged).unwrap())
                .await
                .unwrap();
            receive::<_, Accepted>(&mut left, FrameKind::Accepted).await
        };
        let policy = policy(Some(b"s3cret"), true);
        let acceptor = accept(&mut right, &policy, [9; NONCE_SIZE_BYTES], |_| Ok(()));
        let (connected, accepted) = tokio::join!(connector, acceptor);
        assert!(matches!(
            accepted,
            Err(HandshakeError::Rejected {
                code: ErrorCode::AuthenticationFailed,
                ..
            })
        ));
        assert!(matches!(
            connected,
            Err(HandshakeError::Refused {
                code: ErrorCode::AuthenticationFailed,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn other_cluster_is_refused_with_a_clear_reason() {
        let (connected, accepted) = run(hello("other", peer(1)), None, policy(None, true)).await;
        match connected {
            Err(HandshakeError::Refused {
                code: ErrorCode::ClusterMismatch,
                message,
            }) => assert!(message.contains("other"), "{message}"),
            other => panic!("expected a cluster mismatch, got {other:?}"),
        }
        assert!(accepted.is_err());
    }

    #[tokio::test]
    async fn client_on_the_peer_port_is_refused() {
        let (connected, _) = run(
            hello(
                "test",
                Role::Client {
                    name: "cli".to_string(),
                },
            ),
            None,
            policy(None, true),
        )
        .await;
        assert!(matches!(
            connected,
            Err(HandshakeError::Refused {
                code: ErrorCode::WrongPort,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn admit_callback_can_refuse_an_unknown_peer() {
        let (mut left, mut right) = framed_pair();
        let policy = policy(None, true);
        let connector = connect(&mut left, hello("test", peer(9)), None);
        let acceptor = accept(&mut right, &policy, [9; NONCE_SIZE_BYTES], |_| {
            Err((ErrorCode::UnknownPeer, "node 9 is not a member".to_string()))
        });
        let (connected, accepted) = tokio::join!(connector, acceptor);
        assert!(matches!(
            connected,
            Err(HandshakeError::Refused {
                code: ErrorCode::UnknownPeer,
                ..
            })
        ));
        assert!(accepted.is_err());
    }

    #[tokio::test]
    async fn garbage_instead_of_hello_gets_a_bad_frame_error() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut raw, server) = tokio::io::duplex(4096);
        let mut server = Framed::new(server, FrameCodec::new(1 << 16));
        let policy = policy(None, false);
        let acceptor = accept(&mut server, &policy, [9; NONCE_SIZE_BYTES], |_| Ok(()));
        let client = async {
            raw.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
            let mut reply = Vec::new();
            let mut chunk = [0u8; 256];
            let read = raw.read(&mut chunk).await.unwrap();
            reply.extend_from_slice(&chunk[..read]);
            reply
        };
        let (accepted, reply) = tokio::join!(acceptor, client);
        assert!(matches!(
            accepted,
            Err(HandshakeError::Frame(FrameError::BadMagic { .. }))
        ));
        let mut codec = FrameCodec::new(1 << 16);
        let mut buffer = bytes::BytesMut::from(&reply[..]);
        let frame = tokio_util::codec::Decoder::decode(&mut codec, &mut buffer)
            .unwrap()
            .unwrap();
        assert_eq!(frame.kind, FrameKind::Error);
        let error: ErrorFrame = frame.decode().unwrap();
        assert_eq!(error.code, ErrorCode::BadFrame);
    }
}
