//! The node's network seam over turmoil's simulated TCP, with partitions
//! that behave the way they do to real TCP connections.
//!
//! turmoil partitions a link by dropping the segments that cross it, and
//! its TCP never retransmits, so a connection that lost a segment stalls
//! for good once the link is repaired. Real TCP retransmits: the bytes
//! written during a partition arrive after it heals. So partitions are
//! modelled here, one level up: while a direction of a link is cut, writes
//! in that direction wait (as with a full send window) and new connections
//! across it wait (as for a lost SYN); the bytes flow again on repair.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use raftq::node::net::{BoxFuture, BoxStream, Listener, Network};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The cut directions of the simulated network's links.
#[derive(Debug, Default)]
pub struct Links {
    state: Mutex<LinkState>,
}

#[derive(Debug, Default)]
struct LinkState {
    cut: BTreeSet<(IpAddr, IpAddr)>,
    waiting: Vec<Waker>,
}

impl Links {
    /// Stops the bytes from `from` to `to` until [`Links::repair`].
    pub fn cut(&self, from: IpAddr, to: IpAddr) {
        self.state.lock().unwrap().cut.insert((from, to));
    }

    /// Lets the bytes from `from` to `to` flow again.
    pub fn repair(&self, from: IpAddr, to: IpAddr) {
        let mut state = self.state.lock().unwrap();
        if state.cut.remove(&(from, to)) {
            for waker in state.waiting.drain(..) {
                waker.wake();
            }
        }
    }

    /// Repairs every link.
    pub fn repair_all(&self) {
        let mut state = self.state.lock().unwrap();
        state.cut.clear();
        for waker in state.waiting.drain(..) {
            waker.wake();
        }
    }

    fn poll_open(&self, from: IpAddr, to: IpAddr, context: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state.lock().unwrap();
        if state.cut.contains(&(from, to)) {
            state.waiting.push(context.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Waits until both directions between `a` and `b` are open.
    pub async fn wait_open(&self, a: IpAddr, b: IpAddr) {
        std::future::poll_fn(|context| {
            let forward = self.poll_open(a, b, context);
            let backward = self.poll_open(b, a, context);
            if forward.is_ready() && backward.is_ready() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

/// A turmoil connection whose writes wait while their direction is cut.
pub struct LinkStream {
    inner: turmoil::net::TcpStream,
    local: IpAddr,
    remote: IpAddr,
    links: Arc<Links>,
}

impl LinkStream {
    pub fn new(inner: turmoil::net::TcpStream, links: Arc<Links>) -> io::Result<LinkStream> {
        Ok(LinkStream {
            local: inner.local_addr()?.ip(),
            remote: inner.peer_addr()?.ip(),
            inner,
            links,
        })
    }

    /// Connects from host `local_host` to `address` once the link is open.
    pub async fn connect(
        local_host: &str,
        address: &str,
        links: Arc<Links>,
    ) -> io::Result<LinkStream> {
        let remote_host = address.rsplit_once(':').map_or(address, |(host, _)| host);
        links
            .wait_open(turmoil::lookup(local_host), turmoil::lookup(remote_host))
            .await;
        let stream = turmoil::net::TcpStream::connect(address).await?;
        LinkStream::new(stream, links)
    }
}

impl AsyncRead for LinkStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(context, buffer)
    }
}

impl AsyncWrite for LinkStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self
            .links
            .poll_open(self.local, self.remote, context)
            .is_pending()
        {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_write(context, bytes)
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(context)
    }
}

/// Connections and listeners of one simulated host.
#[derive(Debug, Clone)]
pub struct TurmoilNetwork {
    host: String,
    links: Arc<Links>,
}

impl TurmoilNetwork {
    pub fn new(host: &str, links: Arc<Links>) -> TurmoilNetwork {
        TurmoilNetwork {
            host: host.to_string(),
            links,
        }
    }
}

struct TurmoilListener {
    inner: turmoil::net::TcpListener,
    links: Arc<Links>,
}

impl Listener for TurmoilListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, remote) = self.inner.accept().await?;
            let stream = LinkStream::new(stream, Arc::clone(&self.links))?;
            Ok((Box::new(stream) as BoxStream, remote))
        })
    }

    fn local_address(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl Network for TurmoilNetwork {
    fn connect<'a>(&'a self, address: &'a str) -> BoxFuture<'a, io::Result<BoxStream>> {
        Box::pin(async move {
            let stream = LinkStream::connect(&self.host, address, Arc::clone(&self.links)).await?;
            Ok(Box::new(stream) as BoxStream)
        })
    }

    fn bind<'a>(&'a self, address: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let inner = turmoil::net::TcpListener::bind(address).await?;
            Ok(Box::new(TurmoilListener {
                inner,
                links: Arc::clone(&self.links),
            }) as Box<dyn Listener>)
        })
    }
}
