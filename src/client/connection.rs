//! One multiplexed connection to a node: many requests in flight, responses
//! matched to requests by id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::error::ClientError;
use crate::node::net::{Network, TokioNetwork};
use crate::protocol::client::{Request, RequestBody, Response, ResponseBody, ServiceError};
use crate::protocol::handshake::{self, ErrorFrame, Hello, Role};
use crate::protocol::{Frame, FrameCodec, FrameKind, PROTOCOL_VERSION};

/// Requests waiting to be written on one connection.
const OUTGOING_QUEUE_REQUESTS: usize = 1024;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<ServiceResult, ClientError>>>>>;

/// What a node answered.
pub(crate) type ServiceResult = Result<ResponseBody, ServiceError>;

/// How to reach and authenticate with a cluster.
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    /// The cluster id every node checks.
    pub cluster_id: String,
    /// A name for this client in the nodes' logs.
    pub client_name: String,
    /// The client secret, if the cluster requires one.
    pub client_secret: Option<Vec<u8>>,
    /// Largest frame in either direction.
    pub frame_max_bytes: usize,
    /// Longest a connection attempt (TCP and handshake) may take.
    pub connect_timeout: Duration,
}

/// A live connection to one node.
pub(crate) struct Connection {
    pub(crate) address: String,
    frame_max_bytes: usize,
    outgoing: mpsc::Sender<Frame>,
    pending: Pending,
    closed: CancellationToken,
}

impl Connection {
    /// Connects to `address` and runs the handshake.
    pub(crate) async fn open(
        address: &str,
        settings: &ConnectSettings,
    ) -> Result<Arc<Connection>, ClientError> {
        let network = TokioNetwork;
        let attempt = async {
            let stream = network
                .connect(address)
                .await
                .map_err(|error| ClientError::Connect {
                    address: address.to_string(),
                    reason: error.to_string(),
                })?;
            let mut framed = Framed::new(stream, FrameCodec::new(settings.frame_max_bytes));
            let hello = Hello {
                protocol_version: PROTOCOL_VERSION,
                cluster_id: settings.cluster_id.clone(),
                role: Role::Client {
                    name: settings.client_name.clone(),
                },
                nonce: rand::random(),
            };
            handshake::connect(&mut framed, hello, settings.client_secret.as_deref())
                .await
                .map_err(|error| ClientError::Handshake {
                    address: address.to_string(),
                    reason: error.to_string(),
                })?;
            Ok::<_, ClientError>(framed)
        };
        let framed = tokio::time::timeout(settings.connect_timeout, attempt)
            .await
            .map_err(|_| ClientError::Connect {
                address: address.to_string(),
                reason: "timed out".to_string(),
            })??;
        let (mut sink, mut stream) = framed.split();
        let (outgoing, mut to_write) = mpsc::channel::<Frame>(OUTGOING_QUEUE_REQUESTS);
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let closed = CancellationToken::new();
        let connection = Arc::new(Connection {
            address: address.to_string(),
            frame_max_bytes: settings.frame_max_bytes,
            outgoing,
            pending: Arc::clone(&pending),
            closed: closed.clone(),
        });
        let writer_closed = closed.clone();
        tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    _ = writer_closed.cancelled() => break,
                    frame = to_write.recv() => frame,
                };
                let Some(frame) = frame else { break };
                if sink.feed(frame).await.is_err() {
                    break;
                }
                // Calls made together from many tasks go out in one write.
                tokio::task::yield_now().await;
                while let Ok(frame) = to_write.try_recv() {
                    if sink.feed(frame).await.is_err() {
                        writer_closed.cancel();
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    break;
                }
            }
            writer_closed.cancel();
        });
        let reader_closed = closed.clone();
        let address_owned = address.to_string();
        tokio::spawn(async move {
            let reason = loop {
                let next = tokio::select! {
                    _ = reader_closed.cancelled() => break "connection closed".to_string(),
                    next = stream.next() => next,
                };
                let frame = match next {
                    None => break "the node closed the connection".to_string(),
                    Some(Err(error)) => break error.to_string(),
                    Some(Ok(frame)) => frame,
                };
                match frame.kind {
                    FrameKind::Response => match frame.decode::<Response>() {
                        Ok(response) => {
                            let waiter = pending.lock().expect("pending lock").remove(&response.id);
                            if let Some(waiter) = waiter {
                                let _ = waiter.send(Ok(response.body));
                            }
                        }
                        Err(error) => break format!("undecodable response: {error}"),
                    },
                    FrameKind::Error => {
                        let error: Result<ErrorFrame, _> = frame.decode();
                        break match error {
                            Ok(error) => format!(
                                "the node closed the connection ({:?}): {}",
                                error.code, error.message
                            ),
                            Err(error) => error.to_string(),
                        };
                    }
                    other => break format!("unexpected {} frame from the node", other.name()),
                }
            };
            reader_closed.cancel();
            let waiters: Vec<_> = pending.lock().expect("pending lock").drain().collect();
            for (_, waiter) in waiters {
                let _ = waiter.send(Err(ClientError::ConnectionLost {
                    address: address_owned.clone(),
                    reason: reason.clone(),
                }));
            }
        });
        Ok(connection)
    }

    /// Whether the connection has broken.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Closes the connection; requests in flight fail with `ConnectionLost`.
    pub(crate) fn close(&self) {
        self.closed.cancel();
    }

    /// Sends a request and waits for its response or `timeout`.
    pub(crate) async fn call(
        &self,
        id: u64,
        body: RequestBody,
        timeout: Duration,
    ) -> Result<ServiceResult, ClientError> {
        let waits = matches!(body, RequestBody::Claim { wait_ms, .. } if wait_ms > 0);
        let frame = Frame::encode(FrameKind::Request, &Request { id, body })
            .map_err(|error| ClientError::Invalid(error.to_string()))?;
        if frame.payload.len() > self.frame_max_bytes {
            return Err(ClientError::Invalid(format!(
                "request of {} bytes exceeds the frame limit of {} bytes",
                frame.payload.len(),
                self.frame_max_bytes
            )));
        }
        let (reply, response) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id, reply);
        if self.outgoing.send(frame).await.is_err() {
            self.pending.lock().expect("pending lock").remove(&id);
            return Err(ClientError::NotSent {
                address: self.address.clone(),
            });
        }
        // Until the answer is in, dropping this call forgets the request and,
        // for a long-poll claim, tells the node to stop waiting for it.
        let mut unanswered = Unanswered {
            connection: self,
            id,
            stop_waiting: waits,
        };
        let result = match tokio::time::timeout(timeout, response).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ClientError::ConnectionLost {
                address: self.address.clone(),
                reason: "the connection ended".to_string(),
            }),
            Err(_) => {
                return Err(ClientError::Timeout {
                    address: self.address.clone(),
                });
            }
        };
        unanswered.stop_waiting = false;
        result
    }
}

/// A request sent on a connection whose answer has not arrived.
struct Unanswered<'a> {
    connection: &'a Connection,
    id: u64,
    /// The request is a long-poll claim the node may still hold.
    stop_waiting: bool,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        let connection = self.connection;
        connection
            .pending
            .lock()
            .expect("pending lock")
            .remove(&self.id);
        if !self.stop_waiting || connection.is_closed() {
            return;
        }
        let request = Request {
            id: self.id,
            body: RequestBody::StopWaiting { request: self.id },
        };
        if let Ok(frame) = Frame::encode(FrameKind::Request, &request) {
            // Best effort: with the queue full the claim ends at its deadline.
            let _ = connection.outgoing.try_send(frame);
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}
