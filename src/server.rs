//! The client listener: accepts connections, runs the handshake, and serves
//! many requests per connection concurrently.
//!
//! Shutdown follows mini-redis: a cancellation token tells the accept loop
//! and every connection to stop; each connection holds a clone of a sender
//! whose channel closes once all of them are gone, which is how `serve`
//! knows every connection has finished.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{CLIENT_INFLIGHT_REQUESTS_MAX, ServerConfig};
use crate::metrics::{self as names, ConnectionGauge, FrameMeter, RequestMeters};
use crate::node::entropy::Entropy;
use crate::node::net::{BoxStream, Listener};
use crate::node::{Node, NodeOptions, Seams, StartError};
use crate::protocol::client::{Request, RequestBody, Response, ResponseBody};
use crate::protocol::handshake::{self, AcceptPolicy, ErrorCode, Role};
use crate::protocol::{Frame, FrameCodec, FrameError, FrameKind};
use crate::queue::JobQueue;
use crate::queue::Outcome;
use crate::service::QueueService;

/// Longest a client may take to complete the handshake.
pub const CLIENT_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// Settings of the client listener.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// This node's id, sent in the handshake.
    pub node_id: u64,
    /// The cluster id clients must name.
    pub cluster_id: String,
    /// The secret clients must prove they know, if any.
    pub client_secret: Option<Vec<u8>>,
    /// Largest request frame.
    pub frame_max_bytes: usize,
    /// Connections served at once.
    pub connections_max: usize,
    /// Where handshake nonces come from.
    pub entropy: Arc<dyn Entropy>,
}

/// A running raftq server: a node, its queue service and its client listener.
pub struct RunningServer {
    /// The node.
    pub node: Node<JobQueue>,
    /// The service clients talk to.
    pub service: Arc<QueueService>,
    /// The address the client listener is bound to.
    pub client_address: std::net::SocketAddr,
    /// Ends when the node stops, with its fatal error if it had one.
    pub driver: tokio::task::JoinHandle<Result<(), String>>,
    /// Ends when the client listener has closed every connection.
    pub clients: tokio::task::JoinHandle<()>,
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerStartError {
    /// The node did not start.
    #[error(transparent)]
    Node(#[from] StartError),
    /// The client address could not be bound.
    #[error("cannot listen for clients on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Starts a node, its service and its client listener; everything stops
/// when `shutdown` is cancelled or the node fails.
pub async fn start(
    config: &ServerConfig,
    options: NodeOptions,
    seams: Seams,
    shutdown: CancellationToken,
) -> Result<RunningServer, ServerStartError> {
    let (node, driver) = Node::<JobQueue>::start(options, seams.clone(), shutdown.clone()).await?;
    let service = Arc::new(QueueService::new(
        node.clone(),
        seams.clock.clone(),
        config.metric_queue_labels_max,
        shutdown.clone(),
    ));
    service.enforce_limits(config.queue_limits(), shutdown.clone());
    let bind_error = |source| ServerStartError::Bind {
        address: config.client_address.clone(),
        source,
    };
    let listener = seams
        .network
        .bind(&config.client_address)
        .await
        .map_err(bind_error)?;
    let client_address = listener.local_address().map_err(bind_error)?;
    let settings = ServerSettings {
        node_id: config.node_id,
        cluster_id: config.cluster_id.clone(),
        client_secret: config.client_secret.clone().map(String::into_bytes),
        frame_max_bytes: config.client_frame_max_bytes,
        connections_max: config.client_connections_max,
        entropy: Arc::clone(&seams.entropy),
    };
    let clients = tokio::spawn(serve(listener, Arc::clone(&service), settings, shutdown));
    Ok(RunningServer {
        node,
        service,
        client_address,
        driver,
        clients,
    })
}

/// Serves clients on `listener` until `shutdown`, then waits for every
/// connection to finish its requests in flight.
pub async fn serve(
    mut listener: Box<dyn Listener>,
    service: Arc<QueueService>,
    settings: ServerSettings,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(settings.connections_max));
    let (done_sender, mut all_done) = mpsc::channel::<()>(1);
    let settings = Arc::new(settings);
    let mut backoff_ms = 0;
    loop {
        let accepted = tokio::select! {
            biased; // A fixed polling order keeps simulated runs deterministic.
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => {
                backoff_ms = 0;
                accepted
            }
            Err(error) => {
                backoff_ms = (backoff_ms * 2).clamp(5, 1_000);
                warn!(%error, "client accept failed; retrying in {backoff_ms} ms");
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            let settings = Arc::clone(&settings);
            tokio::spawn(async move {
                let mut framed = Framed::new(stream, FrameCodec::new(settings.frame_max_bytes));
                let message = format!(
                    "client connection limit of {} reached; try again later",
                    settings.connections_max
                );
                warn!(%remote, "{message}");
                handshake::send_error(&mut framed, ErrorCode::TooManyConnections, message).await;
            });
            continue;
        };
        let connection = Connection {
            service: Arc::clone(&service),
            settings: Arc::clone(&settings),
            shutdown: shutdown.clone(),
            _done: done_sender.clone(),
        };
        tokio::spawn(async move {
            connection.run(stream, remote).await;
            drop(permit);
        });
    }
    drop(done_sender);
    // Every connection holds a sender; `None` means all of them have ended.
    let _ = all_done.recv().await;
}

struct Connection {
    service: Arc<QueueService>,
    settings: Arc<ServerSettings>,
    shutdown: CancellationToken,
    _done: mpsc::Sender<()>,
}

impl Connection {
    async fn run(self, stream: BoxStream, remote: std::net::SocketAddr) {
        let _open = ConnectionGauge::open("client");
        let mut framed = Framed::new(stream, FrameCodec::new(self.settings.frame_max_bytes));
        let policy = AcceptPolicy {
            node_id: self.settings.node_id,
            cluster_id: self.settings.cluster_id.clone(),
            secret: self.settings.client_secret.clone(),
            peers: false,
        };
        let mut nonce = [0; handshake::NONCE_SIZE_BYTES];
        self.settings.entropy.fill_bytes(&mut nonce);
        let accepted = tokio::time::timeout(
            Duration::from_millis(CLIENT_HANDSHAKE_TIMEOUT_MS),
            handshake::accept(&mut framed, &policy, nonce, |_| Ok(())),
        )
        .await;
        let hello = match accepted {
            Ok(Ok(hello)) => hello,
            Ok(Err(error)) => {
                info!(%remote, %error, "refused a client connection");
                return;
            }
            Err(_) => {
                debug!(%remote, "client handshake timed out");
                return;
            }
        };
        let name = match hello.role {
            Role::Client { name } => name,
            Role::Peer { .. } => return,
        };
        debug!(%remote, client = %name, "client connected");
        let (mut sink, mut stream) = framed.split();
        let (responses, mut outgoing) = mpsc::channel::<Frame>(CLIENT_INFLIGHT_REQUESTS_MAX);
        let requests_in = FrameMeter::new("in", FrameKind::Request);
        let responses_out = FrameMeter::new("out", FrameKind::Response);
        let request_meters = Arc::new(RequestMeters::default());
        let writer = tokio::spawn(async move {
            while let Some(frame) = outgoing.recv().await {
                responses_out.count(frame.kind, frame.payload.len());
                if sink.feed(frame).await.is_err() {
                    return;
                }
                // Responses of one applied batch complete together, each in
                // its own request task. Letting those tasks run first puts
                // them all in one write instead of one write each.
                tokio::task::yield_now().await;
                // Write whatever else is ready in the same flush.
                while let Ok(frame) = outgoing.try_recv() {
                    responses_out.count(frame.kind, frame.payload.len());
                    if sink.feed(frame).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
            let _ = sink.close().await;
        });
        let inflight = Arc::new(Semaphore::new(CLIENT_INFLIGHT_REQUESTS_MAX));
        // Long-poll claims in flight, by request id, so `StopWaiting` can
        // end one the client gave up on.
        let waiting: Arc<std::sync::Mutex<BTreeMap<u64, CancellationToken>>> = Arc::default();
        // Cancelled when the client goes away: a parked long-poll claim of a
        // gone client must not go on to lease a job that nobody will work on.
        let gone = CancellationToken::new();
        let mut client_gone = Some(gone.clone());
        loop {
            let next = tokio::select! {
                biased; // A fixed polling order keeps simulated runs deterministic.
                _ = self.shutdown.cancelled() => {
                    // Requests in flight finish (quickly, with ShuttingDown).
                    client_gone.take();
                    break;
                }
                next = stream.next() => next,
            };
            let frame = match next {
                None => break,
                Some(Ok(frame)) => frame,
                Some(Err(FrameError::Io(error))) => {
                    debug!(%remote, %error, "client connection closed");
                    break;
                }
                Some(Err(error)) => {
                    metrics::counter!(names::DECODE_ERRORS, "kind" => error.kind_name())
                        .increment(1);
                    warn!(%remote, client = %name, %error, "bad frame from client; closing the connection");
                    let _ = responses
                        .send(error_frame(ErrorCode::BadFrame, error.to_string()))
                        .await;
                    break;
                }
            };
            requests_in.count(frame.kind, frame.payload.len());
            let request: Request = match (frame.kind, frame.decode::<Request>()) {
                (FrameKind::Request, Ok(request)) => request,
                (FrameKind::Request, Err(error)) => {
                    metrics::counter!(names::DECODE_ERRORS, "kind" => error.kind_name())
                        .increment(1);
                    warn!(%remote, client = %name, %error, "undecodable request; closing the connection");
                    let _ = responses
                        .send(error_frame(ErrorCode::BadFrame, error.to_string()))
                        .await;
                    break;
                }
                (kind, _) => {
                    let message = format!("unexpected {} frame, expected request", kind.name());
                    let _ = responses
                        .send(error_frame(ErrorCode::BadFrame, message))
                        .await;
                    break;
                }
            };
            if let RequestBody::StopWaiting { request: claim } = request.body {
                if let Some(stop) = waiting.lock().expect("waiting lock").remove(&claim) {
                    stop.cancel();
                }
                continue;
            }
            let stop = match &request.body {
                RequestBody::Claim { wait_ms, .. } if *wait_ms > 0 => {
                    let stop = CancellationToken::new();
                    waiting
                        .lock()
                        .expect("waiting lock")
                        .insert(request.id, stop.clone());
                    Some(stop)
                }
                _ => None,
            };
            // At most CLIENT_INFLIGHT_REQUESTS_MAX requests per connection run
            // at once; beyond that the connection stops reading, which pushes
            // back on the client through TCP.
            let Ok(permit) = Arc::clone(&inflight).acquire_owned().await else {
                break;
            };
            let service = Arc::clone(&self.service);
            let responses = responses.clone();
            let gone = gone.clone();
            let waiting = Arc::clone(&waiting);
            let request_meters = Arc::clone(&request_meters);
            tokio::spawn(async move {
                let request_type = request.body.name();
                let started = std::time::Instant::now();
                let stopped = async {
                    match &stop {
                        Some(stop) => stop.cancelled().await,
                        None => std::future::pending().await,
                    }
                };
                let body = tokio::select! {
                    biased; // A fixed polling order keeps simulated runs deterministic.
                    body = service.handle(request.body) => body,
                    _ = gone.cancelled() => return,
                    _ = stopped => return,
                };
                if stop.is_some() {
                    waiting.lock().expect("waiting lock").remove(&request.id);
                }
                let outcome = match &body {
                    Ok(ResponseBody::Outcome(outcome)) if outcome_is_error(outcome) => "rejected",
                    Ok(_) => "ok",
                    Err(error) => error.class(),
                };
                request_meters.record(request_type, outcome, started.elapsed().as_secs_f64());
                let response = Response {
                    id: request.id,
                    body,
                };
                match Frame::encode(FrameKind::Response, &response) {
                    Ok(frame) => {
                        let _ = responses.send(frame).await;
                    }
                    Err(error) => warn!(%error, "could not encode a response"),
                }
                drop(permit);
            });
        }
        if let Some(gone) = client_gone {
            gone.cancel();
        }
        drop(responses);
        // The writer ends once every request task has sent its response.
        let _ = writer.await;
    }
}

/// Whether a command's outcome is a refusal by the job queue.
fn outcome_is_error(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Enqueue(result) => result.is_err(),
        Outcome::Claim(result) => result.is_err(),
        Outcome::Ack(result) => result.is_err(),
        Outcome::AckBatch(result) => result.is_err(),
        Outcome::Nack(result) => result.is_err(),
        Outcome::Extend(result) => result.is_err(),
        Outcome::Cancel(result) => result.is_err(),
        Outcome::RequeueDead(result) | Outcome::DeleteDead(result) | Outcome::Purge(result) => {
            result.is_err()
        }
        Outcome::Pause(result) | Outcome::Resume(result) | Outcome::SetLimits(result) => {
            result.is_err()
        }
        Outcome::Tick => false,
    }
}

fn error_frame(code: ErrorCode, message: String) -> Frame {
    Frame::encode(FrameKind::Error, &handshake::ErrorFrame { code, message })
        .expect("error frames encode")
}
