//! The network seam: how the node and the client server reach sockets.
//!
//! Production uses [`TokioNetwork`] (TCP with `TCP_NODELAY` and dead-peer
//! detection, see [`configure_stream`]). A simulator can
//! supply its own [`Network`] (for example over turmoil's simulated TCP) and
//! run the same transport and server code deterministically.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

/// A boxed future, as returned by the seam's methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A bidirectional byte stream.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// A connection, type-erased.
pub type BoxStream = Box<dyn Stream>;

/// A listening socket.
pub trait Listener: Send + 'static {
    /// Waits for the next connection; returns it and the remote address.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>>;
    /// The address the listener is bound to (useful when binding port 0).
    fn local_address(&self) -> io::Result<SocketAddr>;
}

/// Opens connections and listeners.
pub trait Network: Send + Sync + 'static {
    /// Connects to `address` (`host:port`).
    fn connect<'a>(&'a self, address: &'a str) -> BoxFuture<'a, io::Result<BoxStream>>;
    /// Binds a listener on `address` (`host:port`).
    fn bind<'a>(&'a self, address: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>>;
}

/// Idle time after which the kernel starts probing a silent connection.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// Time between two keepalive probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// Unanswered probes after which the connection is dropped.
pub const KEEPALIVE_PROBES: u32 = 3;
/// How long written bytes may stay unacknowledged before the kernel drops
/// the connection (Linux `TCP_USER_TIMEOUT`).
pub const UNACKNOWLEDGED_TIMEOUT: Duration = Duration::from_secs(20);

/// Sets up a TCP connection for raftq's traffic: no Nagle delay, and a peer
/// that vanished without closing (power loss, a black-holed route) is
/// noticed within about 16 s of silence, or 20 s of unacknowledged writes,
/// instead of the kernel's default of hours; the reader or writer then sees
/// an error and the transport reconnects.
pub fn configure_stream(stream: &tokio::net::TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let socket = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new().with_time(KEEPALIVE_IDLE);
    #[cfg(target_os = "linux")]
    let keepalive = keepalive
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    socket.set_tcp_keepalive(&keepalive)?;
    #[cfg(target_os = "linux")]
    socket.set_tcp_user_timeout(Some(UNACKNOWLEDGED_TIMEOUT))?;
    Ok(())
}

/// Real TCP through tokio.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioNetwork;

struct TokioListener(tokio::net::TcpListener);

impl Listener for TokioListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, remote) = self.0.accept().await?;
            configure_stream(&stream)?;
            Ok((Box::new(stream) as BoxStream, remote))
        })
    }

    fn local_address(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Network for TokioNetwork {
    fn connect<'a>(&'a self, address: &'a str) -> BoxFuture<'a, io::Result<BoxStream>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(address).await?;
            configure_stream(&stream)?;
            Ok(Box::new(stream) as BoxStream)
        })
    }

    fn bind<'a>(&'a self, address: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(address).await?;
            Ok(Box::new(TokioListener(listener)) as Box<dyn Listener>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_detect_a_vanished_peer_within_seconds() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (connected, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(address), listener.accept());
        for stream in [connected.unwrap(), accepted.unwrap().0] {
            configure_stream(&stream).unwrap();
            assert!(stream.nodelay().unwrap());
            let socket = socket2::SockRef::from(&stream);
            assert!(socket.keepalive().unwrap());
            assert_eq!(socket.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
            #[cfg(target_os = "linux")]
            {
                assert_eq!(socket.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
                assert_eq!(socket.tcp_keepalive_retries().unwrap(), KEEPALIVE_PROBES);
                assert_eq!(
                    socket.tcp_user_timeout().unwrap(),
                    Some(UNACKNOWLEDGED_TIMEOUT)
                );
            }
        }
    }
}
