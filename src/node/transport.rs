//! Peer transport: one outbound connection per peer, and a listener for the
//! connections of the others.
//!
//! Each node sends to a peer only over its own outbound connection and
//! receives only on connections the peer opened, so the two directions are
//! independent, like etcd's stream transport. Outbound messages go through a
//! bounded queue per peer; when it is full, or the peer is unreachable,
//! messages are dropped and the driver is told, because Raft retransmits
//! whatever matters and a blocked driver would stall the whole node. Several
//! queued messages travel in one frame.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::entropy::Entropy;
use super::net::{BoxStream, Listener, Network};
use crate::config::{PEER_CONNECTIONS_MAX, PEER_FRAME_MAX_BYTES, PEER_SEND_QUEUE_MESSAGES};
use crate::metrics::{self as names, ConnectionGauge, FrameMeter};
use crate::protocol::handshake::{self, AcceptPolicy, ErrorCode, Hello, Role};
use crate::protocol::{Frame, FrameCodec, FrameError, FrameKind, PROTOCOL_VERSION};

/// Longest a handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// First reconnect delay; it doubles up to [`RECONNECT_BACKOFF_MAX_MS`].
pub const RECONNECT_BACKOFF_MIN_MS: u64 = 50;
/// Longest reconnect delay.
pub const RECONNECT_BACKOFF_MAX_MS: u64 = 2_000;
/// Failed connection attempts in a row before a peer is reported unreachable
/// in the log.
pub const UNREACHABLE_WARNING_FAILURES: u32 = 5;
/// Bytes of messages packed into one peer frame before it is sent.
pub const PEER_BATCH_MAX_BYTES: usize = 4 * 1024 * 1024;

const _: () = assert!(PEER_BATCH_MAX_BYTES < PEER_FRAME_MAX_BYTES / 2);

/// What the transport needs to know of a message.
pub trait PeerMessage: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The sender's node id.
    fn from(&self) -> u64;
    /// The recipient's node id.
    fn to(&self) -> u64;
    /// Approximate encoded size, for batching.
    fn size_hint_bytes(&self) -> usize;
}

/// What the transport hands to the driver.
#[derive(Debug)]
pub enum Inbound<M> {
    /// A message from an authenticated peer, addressed to this node.
    Message(M),
    /// Messages to this peer were dropped: it is unreachable or too slow.
    Unreachable(u64),
}

/// Settings of the transport.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// This node's id.
    pub node_id: u64,
    /// The cluster's id.
    pub cluster_id: String,
    /// The shared peer secret.
    pub secret: Option<Vec<u8>>,
    /// This node's peer address as the membership lists it.
    pub peer_address: String,
    /// Random per process start; see [`Role::Peer`].
    pub incarnation: u64,
    /// This node's advertised client address, sent to peers in the handshake.
    pub client_address: String,
}

struct Outbound<M> {
    address: String,
    queue: mpsc::Sender<M>,
    stop: CancellationToken,
}

struct Shared<M> {
    config: TransportConfig,
    network: Arc<dyn Network>,
    entropy: Arc<dyn Entropy>,
    inbound: mpsc::Sender<Inbound<M>>,
    peers: Mutex<BTreeMap<u64, Outbound<M>>>,
    /// Peer addresses of the current members, for admission checks.
    members: Mutex<BTreeMap<u64, String>>,
    /// Client addresses that peers announced in their handshakes.
    client_addresses: Mutex<BTreeMap<u64, String>>,
    /// The process behind each peer's inbound connection and when it last
    /// sent a frame.
    inbound_peers: Mutex<BTreeMap<u64, InboundPeer>>,
    shutdown: CancellationToken,
}

/// The peer transport of one node. Cheap to clone.
pub struct PeerTransport<M> {
    shared: Arc<Shared<M>>,
}

impl<M> Clone for PeerTransport<M> {
    fn clone(&self) -> Self {
        PeerTransport {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<M: PeerMessage> PeerTransport<M> {
    /// A transport that delivers received messages to `inbound`.
    pub fn new(
        config: TransportConfig,
        network: Arc<dyn Network>,
        entropy: Arc<dyn Entropy>,
        inbound: mpsc::Sender<Inbound<M>>,
        shutdown: CancellationToken,
    ) -> PeerTransport<M> {
        PeerTransport {
            shared: Arc::new(Shared {
                config,
                network,
                entropy,
                inbound,
                peers: Mutex::new(BTreeMap::new()),
                members: Mutex::new(BTreeMap::new()),
                client_addresses: Mutex::new(BTreeMap::new()),
                inbound_peers: Mutex::new(BTreeMap::new()),
                shutdown,
            }),
        }
    }

    /// Sets the members this node talks to (peer id → peer address). New
    /// members get an outbound connection, removed ones lose theirs, and a
    /// member whose address changed is reconnected. This node's own id is
    /// ignored.
    pub fn set_members(&self, members: &BTreeMap<u64, String>) {
        *self.shared.members.lock().expect("members lock") = members.clone();
        let mut peers = self.shared.peers.lock().expect("peers lock");
        peers.retain(|id, outbound| {
            let keep = members.get(id) == Some(&outbound.address);
            if !keep {
                outbound.stop.cancel();
            }
            keep
        });
        for (&id, address) in members {
            if id == self.shared.config.node_id || peers.contains_key(&id) {
                continue;
            }
            let (queue, receiver) = mpsc::channel(PEER_SEND_QUEUE_MESSAGES);
            let stop = self.shared.shutdown.child_token();
            tokio::spawn(run_outbound(
                Arc::clone(&self.shared),
                id,
                address.clone(),
                receiver,
                stop.clone(),
            ));
            peers.insert(
                id,
                Outbound {
                    address: address.clone(),
                    queue,
                    stop,
                },
            );
        }
    }

    /// Queues a message for its recipient. Returns `false` (and the message
    /// is dropped) when the recipient is unknown or its queue is full.
    pub fn send(&self, message: M) -> bool {
        let peers = self.shared.peers.lock().expect("peers lock");
        match peers.get(&message.to()) {
            Some(outbound) => outbound.queue.try_send(message).is_ok(),
            None => false,
        }
    }

    /// The client address a peer announced, if it has connected to us.
    pub fn client_address(&self, peer: u64) -> Option<String> {
        if peer == self.shared.config.node_id {
            return Some(self.shared.config.client_address.clone());
        }
        self.shared
            .client_addresses
            .lock()
            .expect("client addresses lock")
            .get(&peer)
            .cloned()
    }

    /// Accepts peer connections on `listener` until shutdown.
    pub async fn serve(self, mut listener: Box<dyn Listener>) {
        let slots = Arc::new(Semaphore::new(PEER_CONNECTIONS_MAX));
        let mut accept_backoff_ms = 0;
        loop {
            let accepted = tokio::select! {
                biased; // A fixed polling order keeps simulated runs deterministic.
                _ = self.shared.shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, remote) = match accepted {
                Ok(accepted) => {
                    accept_backoff_ms = 0;
                    accepted
                }
                Err(error) => {
                    // Running out of file descriptors and similar errors pass;
                    // back off instead of spinning on them.
                    accept_backoff_ms = (accept_backoff_ms * 2).clamp(5, 1_000);
                    warn!(%error, "peer accept failed; retrying in {accept_backoff_ms} ms");
                    tokio::time::sleep(Duration::from_millis(accept_backoff_ms)).await;
                    continue;
                }
            };
            let shared = Arc::clone(&self.shared);
            match Arc::clone(&slots).try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(async move {
                        let _open = ConnectionGauge::open("peer_inbound");
                        serve_inbound(shared, stream).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    tokio::spawn(async move {
                        let mut framed = Framed::new(stream, FrameCodec::new(PEER_FRAME_MAX_BYTES));
                        let message =
                            format!("peer connection limit of {PEER_CONNECTIONS_MAX} reached");
                        warn!(%remote, "{message}");
                        handshake::send_error(&mut framed, ErrorCode::TooManyConnections, message)
                            .await;
                    });
                }
            }
        }
    }
}

fn nonce(entropy: &dyn Entropy) -> [u8; handshake::NONCE_SIZE_BYTES] {
    let mut nonce = [0; handshake::NONCE_SIZE_BYTES];
    entropy.fill_bytes(&mut nonce);
    nonce
}

async fn connect_to<M: PeerMessage>(
    shared: &Shared<M>,
    peer: u64,
    address: &str,
) -> Result<Framed<BoxStream, FrameCodec>, String> {
    let stream = shared
        .network
        .connect(address)
        .await
        .map_err(|error| format!("connect to {address}: {error}"))?;
    let mut framed = Framed::new(stream, FrameCodec::new(PEER_FRAME_MAX_BYTES));
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION,
        cluster_id: shared.config.cluster_id.clone(),
        role: Role::Peer {
            node_id: shared.config.node_id,
            peer_address: shared.config.peer_address.clone(),
            incarnation: shared.config.incarnation,
            client_address: shared.config.client_address.clone(),
        },
        nonce: nonce(shared.entropy.as_ref()),
    };
    let secret = shared.config.secret.as_deref();
    let handshake = handshake::connect(&mut framed, hello, secret);
    let acceptor = tokio::time::timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS), handshake)
        .await
        .map_err(|_| format!("handshake with {address} timed out"))?
        .map_err(|error| format!("handshake with {address}: {error}"))?;
    if acceptor != peer {
        let message = format!("{address} is node {acceptor}, but the membership says node {peer}");
        handshake::send_error(&mut framed, ErrorCode::UnknownPeer, message.clone()).await;
        return Err(message);
    }
    Ok(framed)
}

async fn run_outbound<M: PeerMessage>(
    shared: Arc<Shared<M>>,
    peer: u64,
    address: String,
    mut queue: mpsc::Receiver<M>,
    stop: CancellationToken,
) {
    let mut backoff_ms = RECONNECT_BACKOFF_MIN_MS;
    let mut last_error = String::new();
    let mut failures: u32 = 0;
    loop {
        let connected = tokio::select! {
            biased; // A fixed polling order keeps simulated runs deterministic.
            _ = stop.cancelled() => return,
            connected = connect_to(&shared, peer, &address) => connected,
        };
        let _open;
        let mut framed = match connected {
            Ok(framed) => {
                _open = ConnectionGauge::open("peer_outbound");
                info!(peer, %address, "connected to peer");
                backoff_ms = RECONNECT_BACKOFF_MIN_MS;
                last_error.clear();
                failures = 0;
                framed
            }
            Err(error) => {
                // Peers start at different moments, so the first failures are
                // expected. Warn once a peer stays unreachable, and then only
                // when the reason changes, not on every retry.
                failures = failures.saturating_add(1);
                if failures >= UNREACHABLE_WARNING_FAILURES && error != last_error {
                    warn!(peer, failures, "{error}");
                    last_error = error;
                } else {
                    debug!(peer, failures, "{error}");
                }
                report_unreachable(&shared, peer, &mut queue);
                let jitter_ms = shared.entropy.next_u64() % (backoff_ms / 2 + 1);
                tokio::select! {
                    biased; // A fixed polling order keeps simulated runs deterministic.
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(backoff_ms + jitter_ms)) => {}
                }
                backoff_ms = (backoff_ms * 2).min(RECONNECT_BACKOFF_MAX_MS);
                continue;
            }
        };
        let mut batch: Vec<M> = Vec::new();
        let frames_out = FrameMeter::new("out", FrameKind::Peer);
        loop {
            let first = tokio::select! {
                biased; // A fixed polling order keeps simulated runs deterministic.
                _ = stop.cancelled() => return,
                first = queue.recv() => first,
                // The peer sends nothing on this connection but an error
                // frame before closing it; reading notices a peer that is
                // gone even while this node has nothing to send.
                closed = framed.next() => {
                    match closed {
                        Some(Ok(frame)) if frame.kind == FrameKind::Error => {
                            let reason = frame
                                .decode::<handshake::ErrorFrame>()
                                .map(|error| error.message)
                                .unwrap_or_else(|error| error.to_string());
                            warn!(peer, %reason, "peer closed the connection with an error");
                        }
                        _ => debug!(peer, "peer closed the connection"),
                    }
                    report_unreachable(&shared, peer, &mut queue);
                    break;
                }
            };
            let Some(first) = first else { return };
            let mut batch_bytes = first.size_hint_bytes();
            batch.push(first);
            while batch_bytes < PEER_BATCH_MAX_BYTES {
                match queue.try_recv() {
                    Ok(message) => {
                        batch_bytes += message.size_hint_bytes();
                        batch.push(message);
                    }
                    Err(_) => break,
                }
            }
            let frame = match Frame::encode(FrameKind::Peer, &batch) {
                Ok(frame) => frame,
                Err(error) => {
                    warn!(peer, %error, "could not encode messages for peer; dropped");
                    batch.clear();
                    continue;
                }
            };
            batch.clear();
            frames_out.count(frame.kind, frame.payload.len());
            if let Err(error) = framed.send(frame).await {
                warn!(peer, %error, "lost connection to peer");
                report_unreachable(&shared, peer, &mut queue);
                break;
            }
        }
    }
}

/// Drops what is queued for an unreachable peer and tells the driver.
fn report_unreachable<M>(shared: &Shared<M>, peer: u64, queue: &mut mpsc::Receiver<M>) {
    while queue.try_recv().is_ok() {}
    // A full inbound queue means the driver already has plenty to do; the
    // report is a hint and may be dropped.
    let _ = shared.inbound.try_send(Inbound::Unreachable(peer));
}

async fn serve_inbound<M: PeerMessage>(shared: Arc<Shared<M>>, stream: BoxStream) {
    let mut framed = Framed::new(stream, FrameCodec::new(PEER_FRAME_MAX_BYTES));
    let policy = AcceptPolicy {
        node_id: shared.config.node_id,
        cluster_id: shared.config.cluster_id.clone(),
        secret: shared.config.secret.clone(),
        peers: true,
    };
    let admit = |role: &Role| admit_peer(&shared, role);
    let handshake = handshake::accept(&mut framed, &policy, nonce(shared.entropy.as_ref()), admit);
    let hello =
        match tokio::time::timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS), handshake).await {
            Ok(Ok(hello)) => hello,
            Ok(Err(error)) => {
                warn!(%error, "refused a peer connection");
                return;
            }
            Err(_) => {
                debug!("peer handshake timed out");
                return;
            }
        };
    let Role::Peer {
        node_id: peer,
        client_address,
        incarnation,
        ..
    } = hello.role
    else {
        return;
    };
    shared
        .client_addresses
        .lock()
        .expect("client addresses lock")
        .insert(peer, client_address);
    read_peer_frames(&shared, &mut framed, peer, incarnation).await;
    // The process behind this connection is gone or went quiet: a restarted
    // process of the same node may connect at once.
    let mut inbound = shared.inbound_peers.lock().expect("inbound peers lock");
    if inbound
        .get(&peer)
        .is_some_and(|current| current.incarnation == incarnation)
    {
        inbound.remove(&peer);
    }
}

async fn read_peer_frames<M: PeerMessage>(
    shared: &Shared<M>,
    framed: &mut Framed<BoxStream, FrameCodec>,
    peer: u64,
    incarnation: u64,
) {
    let own_id = shared.config.node_id;
    let peer_frames_in = FrameMeter::new("in", FrameKind::Peer);
    loop {
        let frame = tokio::select! {
            biased; // A fixed polling order keeps simulated runs deterministic.
            _ = shared.shutdown.cancelled() => return,
            frame = framed.next() => frame,
        };
        let frame = match frame {
            None => return,
            Some(Ok(frame)) => frame,
            Some(Err(FrameError::Io(error))) => {
                debug!(peer, %error, "peer connection closed");
                return;
            }
            Some(Err(error)) => {
                metrics::counter!(names::DECODE_ERRORS, "kind" => error.kind_name()).increment(1);
                warn!(peer, %error, "bad frame from peer; closing the connection");
                handshake::send_error(framed, ErrorCode::BadFrame, error.to_string()).await;
                return;
            }
        };
        peer_frames_in.count(frame.kind, frame.payload.len());
        if let Some(inbound) = shared
            .inbound_peers
            .lock()
            .expect("inbound peers lock")
            .get_mut(&peer)
            && inbound.incarnation == incarnation
        {
            inbound.last_frame = tokio::time::Instant::now();
        }
        if frame.kind != FrameKind::Peer {
            let error = FrameError::UnexpectedKind {
                found: frame.kind.name(),
                expected: FrameKind::Peer.name(),
            };
            warn!(peer, %error, "closing the peer connection");
            handshake::send_error(framed, ErrorCode::BadFrame, error.to_string()).await;
            return;
        }
        let messages: Vec<M> = match frame.decode() {
            Ok(messages) => messages,
            Err(error) => {
                metrics::counter!(names::DECODE_ERRORS, "kind" => error.kind_name()).increment(1);
                warn!(peer, %error, "undecodable peer frame; closing the connection");
                handshake::send_error(framed, ErrorCode::BadFrame, error.to_string()).await;
                return;
            }
        };
        for message in messages {
            // An authenticated peer may only speak for itself, and only to us.
            if message.from() != peer || message.to() != own_id {
                warn!(
                    peer,
                    from = message.from(),
                    to = message.to(),
                    "peer sent a message with a forged sender or wrong recipient; closing"
                );
                let text = "message sender or recipient does not match the connection";
                handshake::send_error(framed, ErrorCode::BadFrame, text).await;
                return;
            }
            if shared
                .inbound
                .send(Inbound::Message(message))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// A peer's inbound connection as admission sees it.
#[derive(Debug, Clone, Copy)]
struct InboundPeer {
    incarnation: u64,
    last_frame: tokio::time::Instant,
}

/// A connection of a node id whose previous process sent nothing for this
/// long replaces it; a younger one means two processes claim the id.
pub const PEER_INCARNATION_STALE_MS: u64 = 3_000;

fn admit_peer<M>(shared: &Shared<M>, role: &Role) -> Result<(), (ErrorCode, String)> {
    let Role::Peer {
        node_id,
        peer_address,
        incarnation,
        ..
    } = role
    else {
        return Ok(());
    };
    if *node_id == shared.config.node_id {
        return Err((
            ErrorCode::UnknownPeer,
            format!("node {node_id} is this node's own id: two nodes share an id"),
        ));
    }
    if *node_id == 0 {
        return Err((ErrorCode::UnknownPeer, "node id 0 is not valid".to_string()));
    }
    // A peer this node does not know yet (a member added by a configuration
    // change it has not applied) is admitted on the strength of the secret.
    // What is refused is a second process speaking as a node whose current
    // process is still talking to us.
    let now = tokio::time::Instant::now();
    let mut inbound = shared.inbound_peers.lock().expect("inbound peers lock");
    if let Some(current) = inbound.get(node_id)
        && current.incarnation != *incarnation
        && now.duration_since(current.last_frame) < Duration::from_millis(PEER_INCARNATION_STALE_MS)
    {
        return Err((
            ErrorCode::UnknownPeer,
            format!(
                "another process is connected as node {node_id}; the process at {peer_address} \
                 claims the same id: two nodes may be configured with one id"
            ),
        ));
    }
    inbound.insert(
        *node_id,
        InboundPeer {
            incarnation: *incarnation,
            last_frame: now,
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::node::entropy::OsEntropy;
    use crate::node::net::TokioNetwork;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    struct TestMessage {
        from: u64,
        to: u64,
        body: String,
    }

    impl PeerMessage for TestMessage {
        fn from(&self) -> u64 {
            self.from
        }
        fn to(&self) -> u64 {
            self.to
        }
        fn size_hint_bytes(&self) -> usize {
            self.body.len() + 16
        }
    }

    struct TestNode {
        transport: PeerTransport<TestMessage>,
        inbound: mpsc::Receiver<Inbound<TestMessage>>,
        address: String,
    }

    async fn start(id: u64, secret: &[u8], shutdown: &CancellationToken) -> TestNode {
        let network: Arc<dyn Network> = Arc::new(TokioNetwork);
        let listener = network.bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_address().unwrap().to_string();
        let (sender, inbound) = mpsc::channel(1024);
        let config = TransportConfig {
            node_id: id,
            cluster_id: "test".to_string(),
            secret: Some(secret.to_vec()),
            peer_address: address.clone(),
            incarnation: id,
            client_address: format!("client-of-{id}"),
        };
        let transport = PeerTransport::new(
            config,
            network,
            Arc::new(OsEntropy),
            sender,
            shutdown.child_token(),
        );
        tokio::spawn(transport.clone().serve(listener));
        TestNode {
            transport,
            inbound,
            address,
        }
    }

    async fn next_message(node: &mut TestNode) -> TestMessage {
        loop {
            let received = tokio::time::timeout(Duration::from_secs(10), node.inbound.recv())
                .await
                .expect("a message within 10 s")
                .expect("inbound open");
            if let Inbound::Message(message) = received {
                return message;
            }
        }
    }

    fn message(from: u64, to: u64, body: &str) -> TestMessage {
        TestMessage {
            from,
            to,
            body: body.to_string(),
        }
    }

    #[tokio::test]
    async fn members_exchange_messages_in_order_in_both_directions() {
        let shutdown = CancellationToken::new();
        let mut one = start(1, b"secret", &shutdown).await;
        let mut two = start(2, b"secret", &shutdown).await;
        let members = BTreeMap::from([(1, one.address.clone()), (2, two.address.clone())]);
        one.transport.set_members(&members);
        two.transport.set_members(&members);
        // The first sends may race the connection; Raft retries, and so does the test.
        let mut delivered = None;
        for attempt in 0..100 {
            one.transport
                .send(message(1, 2, &format!("ping {attempt}")));
            if let Ok(received) =
                tokio::time::timeout(Duration::from_millis(100), two.inbound.recv()).await
                && let Some(Inbound::Message(received)) = received
            {
                delivered = Some(received);
                break;
            }
        }
        assert!(delivered.unwrap().body.starts_with("ping"));
        for index in 0..100 {
            assert!(one.transport.send(message(1, 2, &format!("m{index}"))));
        }
        let mut bodies = Vec::new();
        while bodies.len() < 100 {
            let received = next_message(&mut two).await;
            if received.body.starts_with('m') {
                bodies.push(received.body);
            }
        }
        let expected: Vec<String> = (0..100).map(|index| format!("m{index}")).collect();
        assert_eq!(bodies, expected);
        two.transport.send(message(2, 1, "pong"));
        assert_eq!(next_message(&mut one).await.body, "pong");
        assert_eq!(two.transport.client_address(1).unwrap(), "client-of-1");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn peer_with_another_secret_never_delivers() {
        let shutdown = CancellationToken::new();
        let one = start(1, b"secret", &shutdown).await;
        let mut two = start(2, b"different", &shutdown).await;
        let members = BTreeMap::from([(1, one.address.clone()), (2, two.address.clone())]);
        one.transport.set_members(&members);
        for _ in 0..20 {
            one.transport.send(message(1, 2, "hello"));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Node 1 reports node 2 unreachable and nothing is ever delivered.
        while let Ok(inbound) = two.inbound.try_recv() {
            assert!(!matches!(inbound, Inbound::Message(_)), "{inbound:?}");
        }
        shutdown.cancel();
    }

    #[tokio::test]
    async fn forged_sender_closes_the_connection_without_delivery() {
        let shutdown = CancellationToken::new();
        let mut two = start(2, b"secret", &shutdown).await;
        let network = TokioNetwork;
        let stream = network.connect(&two.address).await.unwrap();
        let mut framed = Framed::new(stream, FrameCodec::new(PEER_FRAME_MAX_BYTES));
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: "test".to_string(),
            role: Role::Peer {
                node_id: 1,
                peer_address: "127.0.0.1:1".to_string(),
                incarnation: 7,
                client_address: "x".to_string(),
            },
            nonce: nonce(&OsEntropy),
        };
        handshake::connect(&mut framed, hello, Some(b"secret"))
            .await
            .unwrap();
        let forged = vec![message(3, 2, "I am node 3")];
        framed
            .send(Frame::encode(FrameKind::Peer, &forged).unwrap())
            .await
            .unwrap();
        let reply = framed.next().await.unwrap().unwrap();
        assert_eq!(reply.kind, FrameKind::Error);
        let error: handshake::ErrorFrame = reply.decode().unwrap();
        assert_eq!(error.code, ErrorCode::BadFrame);
        assert!(two.inbound.try_recv().is_err());
        shutdown.cancel();
    }

    #[tokio::test]
    async fn second_process_claiming_a_connected_node_id_is_refused() {
        let shutdown = CancellationToken::new();
        let mut two = start(2, b"secret", &shutdown).await;
        let one_shutdown = CancellationToken::new();
        let one = start(1, b"secret", &one_shutdown).await;
        let members = BTreeMap::from([(1, one.address.clone()), (2, two.address.clone())]);
        one.transport.set_members(&members);
        // The real node 1 is connected and talking.
        loop {
            one.transport.send(message(1, 2, "hello"));
            if let Ok(Some(Inbound::Message(_))) =
                tokio::time::timeout(Duration::from_millis(100), two.inbound.recv()).await
            {
                break;
            }
        }
        let impostor = |incarnation| Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: "test".to_string(),
            role: Role::Peer {
                node_id: 1,
                peer_address: "127.0.0.1:2222".to_string(),
                incarnation,
                client_address: "x".to_string(),
            },
            nonce: nonce(&OsEntropy),
        };
        let stream = TokioNetwork.connect(&two.address).await.unwrap();
        let mut framed = Framed::new(stream, FrameCodec::new(PEER_FRAME_MAX_BYTES));
        let refused = handshake::connect(&mut framed, impostor(99), Some(b"secret")).await;
        match refused {
            Err(handshake::HandshakeError::Refused {
                code: ErrorCode::UnknownPeer,
                message,
            }) => assert!(message.contains("127.0.0.1:2222"), "{message}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Once the real process is gone, a restarted one is admitted.
        one_shutdown.cancel();
        drop(one);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let stream = TokioNetwork.connect(&two.address).await.unwrap();
            let mut framed = Framed::new(stream, FrameCodec::new(PEER_FRAME_MAX_BYTES));
            if handshake::connect(&mut framed, impostor(100), Some(b"secret"))
                .await
                .is_ok()
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the restarted node was never admitted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shutdown.cancel();
    }

    #[tokio::test]
    async fn random_bytes_on_the_peer_port_get_an_error_and_the_listener_keeps_serving() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let shutdown = CancellationToken::new();
        let two = start(2, b"secret", &shutdown).await;
        for _ in 0..3 {
            let mut raw = tokio::net::TcpStream::connect(&two.address).await.unwrap();
            raw.write_all(&[0xde; 64]).await.unwrap();
            let mut reply = Vec::new();
            raw.read_to_end(&mut reply).await.unwrap();
            let mut buffer = bytes::BytesMut::from(&reply[..]);
            let frame = tokio_util::codec::Decoder::decode(
                &mut FrameCodec::new(PEER_FRAME_MAX_BYTES),
                &mut buffer,
            )
            .unwrap()
            .unwrap();
            assert_eq!(frame.kind, FrameKind::Error);
        }
        shutdown.cancel();
    }
}
