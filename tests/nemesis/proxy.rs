//! A partitioning TCP proxy for peer traffic.
//!
//! raftq sends over its own outbound connection to each peer, so the link
//! from node `i` to node `j` is a distinct stream: `i` is told that `j` lives
//! at the listener of link `i → j`, which forwards to `j`'s real address.
//! Cutting a link closes its connections and holds new ones open without
//! forwarding anything (a silent network, not a refused connection); a
//! delay holds every chunk for a while in both directions.
//!
//! A node added by a membership change is known to every member at the one
//! address given to `add-learner`; its listener reads the connecting node's
//! id from the handshake's `Hello` and then applies that link's state.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use raftq::protocol::FrameCodec;
use raftq::protocol::handshake::{Hello, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::codec::FramedRead;

/// The state of one directed link.
#[derive(Default)]
pub struct Link {
    cut: AtomicBool,
    delay_ms: AtomicU64,
    /// Bumped on every cut, so connections opened before it close.
    generation: Mutex<Option<watch::Sender<u64>>>,
}

impl Link {
    fn generation(&self) -> watch::Receiver<u64> {
        let mut guard = self.generation.lock().unwrap();
        guard.get_or_insert_with(|| watch::channel(0).0).subscribe()
    }

    fn set_cut(&self, cut: bool) {
        let was = self.cut.swap(cut, Ordering::SeqCst);
        if was != cut {
            let mut guard = self.generation.lock().unwrap();
            guard
                .get_or_insert_with(|| watch::channel(0).0)
                .send_modify(|generation| *generation += 1);
        }
    }
}

/// Links by (from, to).
type Links = BTreeMap<(u64, u64), Arc<Link>>;

/// Every link between the nodes.
#[derive(Default, Clone)]
pub struct Network {
    links: Arc<Mutex<Links>>,
}

impl Network {
    pub fn link(&self, from: u64, to: u64) -> Arc<Link> {
        Arc::clone(self.links.lock().unwrap().entry((from, to)).or_default())
    }

    /// Cuts `from → to`.
    pub fn cut(&self, from: u64, to: u64) {
        self.link(from, to).set_cut(true);
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut_both(&self, a: u64, b: u64) {
        self.cut(a, b);
        self.cut(b, a);
    }

    /// Delays `from → to`.
    pub fn delay(&self, from: u64, to: u64, delay_ms: u64) {
        self.link(from, to)
            .delay_ms
            .store(delay_ms, Ordering::SeqCst);
    }

    /// Restores every link.
    pub fn heal(&self) {
        let links: Vec<Arc<Link>> = self.links.lock().unwrap().values().cloned().collect();
        for link in links {
            link.delay_ms.store(0, Ordering::SeqCst);
            link.set_cut(false);
        }
    }

    /// Starts the listener of link `from → to`, forwarding to `target`;
    /// returns its address.
    pub async fn listen_link(&self, from: u64, to: u64, target: String) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let link = self.link(from, to);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(
                    stream,
                    Arc::clone(&link),
                    target.clone(),
                    BytesMut::new(),
                ));
            }
        });
        address
    }

    /// Starts a listener for every node's traffic to `to`, telling the
    /// links apart by the node id in the handshake.
    pub async fn listen_shared(&self, to: u64, target: String) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let network = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let network = network.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    if let Some((from, stream, prefix)) = read_sender(stream).await {
                        serve(stream, network.link(from, to), target, prefix).await;
                    }
                });
            }
        });
        address
    }
}

/// Reads the first frame of a peer connection and returns the sender's
/// node id with the bytes read so far, which still have to be forwarded.
async fn read_sender(stream: TcpStream) -> Option<(u64, TcpStream, BytesMut)> {
    let mut framed = FramedRead::new(stream, FrameCodec::new(1 << 20));
    let frame = tokio::time::timeout(Duration::from_secs(5), framed.next())
        .await
        .ok()??
        .ok()?;
    let hello: Hello = frame.decode().ok()?;
    let Role::Peer { node_id, .. } = hello.role else {
        return None;
    };
    let parts = framed.into_parts();
    let mut prefix = BytesMut::new();
    frame.write_to(&mut prefix);
    prefix.extend_from_slice(&parts.read_buf);
    Some((node_id, parts.io, prefix))
}

async fn serve(inbound: TcpStream, link: Arc<Link>, target: String, prefix: BytesMut) {
    let mut generation = link.generation();
    let start = *generation.borrow_and_update();
    if link.cut.load(Ordering::SeqCst) {
        // A silent network: hold the connection, forward nothing, and close
        // it once the link heals so the sender reconnects.
        let _ = generation.changed().await;
        return;
    }
    let Ok(outbound) = TcpStream::connect(&target).await else {
        return;
    };
    let _ = outbound.set_nodelay(true);
    let (mut in_read, mut in_write) = inbound.into_split();
    let (mut out_read, mut out_write) = outbound.into_split();
    let forward = {
        let link = Arc::clone(&link);
        async move {
            if !prefix.is_empty() {
                out_write.write_all(&prefix).await?;
            }
            pump(&mut in_read, &mut out_write, &link).await
        }
    };
    let backward = {
        let link = Arc::clone(&link);
        async move { pump(&mut out_read, &mut in_write, &link).await }
    };
    let cut = async move {
        while *generation.borrow_and_update() == start {
            if generation.changed().await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        _ = forward => {}
        _ = backward => {}
        _ = cut => {}
    }
}

async fn pump(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    link: &Link,
) -> std::io::Result<()> {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = from.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        let delay_ms = link.delay_ms.load(Ordering::SeqCst);
        if delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        to.write_all(&buffer[..read]).await?;
    }
}
