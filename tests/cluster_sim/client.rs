//! A client of the simulated cluster that speaks raftq's client protocol
//! directly, one request at a time, so that the workload decides every
//! retry itself and the history records exactly what each call learned.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use raftq::protocol::client::{Request, RequestBody, Response, ResponseBody, ServiceError};
use raftq::protocol::handshake::{self, Hello, Role};
use raftq::protocol::{Frame, FrameCodec, FrameKind, PROTOCOL_VERSION};
use tokio_util::codec::Framed;

use std::sync::Arc;

use super::cluster::{CLIENT_PORT, CLUSTER_ID, host_name};
use super::net::{LinkStream, Links};
use super::rng::SimRng;

/// Longest wait for the answer to one request.
pub const REQUEST_TIMEOUT_MS: u64 = 2_000;
/// Pause before asking again while no leader is known.
const NO_LEADER_PAUSE_MS: u64 = 25;

/// What one call learned.
#[derive(Debug)]
pub enum Answer {
    /// The node answered.
    Answered(Result<ResponseBody, ServiceError>),
    /// The connection broke or the answer did not come in time: the request
    /// may or may not have been applied.
    Unknown(String),
    /// No connection could be made: the request was certainly not applied.
    NotSent,
}

/// A client that finds the leader by following redirects.
pub struct SimClient {
    name: String,
    size: u64,
    links: Arc<Links>,
    connection: Option<Framed<LinkStream, FrameCodec>>,
    next_node: u64,
    leader_hint: Option<String>,
    next_request_id: u64,
    rng: SimRng,
}

impl SimClient {
    pub fn new(name: &str, size: u64, links: Arc<Links>, rng: SimRng) -> SimClient {
        let mut rng = rng;
        let next_node = rng.below(size) + 1;
        SimClient {
            name: name.to_string(),
            size,
            links,
            connection: None,
            next_node,
            leader_hint: None,
            next_request_id: 1,
            rng,
        }
    }

    pub fn rng(&mut self) -> &mut SimRng {
        &mut self.rng
    }

    async fn connect(&mut self) -> Result<(), String> {
        if self.connection.is_some() {
            return Ok(());
        }
        let address = match self.leader_hint.take() {
            Some(address) => address,
            None => {
                let node = self.next_node;
                self.next_node = self.next_node % self.size + 1;
                format!("{}:{CLIENT_PORT}", host_name(node))
            }
        };
        let mut nonce = [0; handshake::NONCE_SIZE_BYTES];
        for byte in &mut nonce {
            *byte = self.rng.below(256) as u8;
        }
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: CLUSTER_ID.to_string(),
            role: Role::Client {
                name: self.name.clone(),
            },
            nonce,
        };
        let attempt = async {
            let stream = LinkStream::connect(&self.name, &address, Arc::clone(&self.links))
                .await
                .map_err(|error| format!("connect to {address}: {error}"))?;
            let mut framed = Framed::new(stream, FrameCodec::new(1 << 20));
            handshake::connect(&mut framed, hello, None)
                .await
                .map_err(|error| format!("handshake with {address}: {error}"))?;
            Ok::<_, String>(framed)
        };
        let framed = tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), attempt)
            .await
            .map_err(|_| format!("connecting to {address} timed out"))??;
        self.connection = Some(framed);
        Ok(())
    }

    /// Sends one request to the node the client is connected to, connecting
    /// first if needed; a redirect is remembered for the next call.
    pub async fn call(&mut self, body: RequestBody) -> Answer {
        if self.connect().await.is_err() {
            return Answer::NotSent;
        }
        let id = self.next_request_id;
        self.next_request_id += 1;
        let framed = self.connection.as_mut().expect("connected");
        let frame =
            Frame::encode(FrameKind::Request, &Request { id, body }).expect("requests encode");
        let exchange = async {
            framed
                .send(frame)
                .await
                .map_err(|error| format!("send: {error}"))?;
            loop {
                match framed.next().await {
                    None => return Err("connection closed".to_string()),
                    Some(Err(error)) => return Err(format!("receive: {error}")),
                    Some(Ok(frame)) if frame.kind == FrameKind::Response => {
                        let response: Response =
                            frame.decode().map_err(|error| format!("decode: {error}"))?;
                        if response.id == id {
                            return Ok(response.body);
                        }
                    }
                    Some(Ok(frame)) => {
                        return Err(format!("unexpected {} frame", frame.kind.name()));
                    }
                }
            }
        };
        let answer =
            match tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), exchange).await {
                Ok(Ok(body)) => body,
                Ok(Err(error)) => {
                    self.connection = None;
                    return Answer::Unknown(error);
                }
                Err(_) => {
                    self.connection = None;
                    return Answer::Unknown("timed out".to_string());
                }
            };
        if let Err(ServiceError::NotLeader { leader_address, .. }) = &answer {
            self.connection = None;
            match leader_address {
                Some(address) => self.leader_hint = Some(address.clone()),
                None => tokio::time::sleep(Duration::from_millis(NO_LEADER_PAUSE_MS)).await,
            }
        }
        Answer::Answered(answer)
    }
}
