//! Loopback ports for servers a test starts as processes or tasks.

use std::sync::atomic::{AtomicU32, Ordering};

const FIRST_PORT: u32 = 20_000;
const PORTS: u32 = 12_000;

/// A free loopback port below the kernel's ephemeral range (32768 and up by
/// default). A port the kernel handed out (bind to port 0) is free again
/// once probed, and any outgoing connection could take it before the server
/// binds it, or while a stopped node is down; then the server cannot start.
/// Ports are tried from a point that differs between processes, and never
/// twice in one process.
pub fn free_port() -> u16 {
    static TRIED: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(2_654_435_761) % PORTS;
    loop {
        let tried = TRIED.fetch_add(1, Ordering::Relaxed);
        assert!(tried < PORTS, "no free port below the ephemeral range");
        let port = (FIRST_PORT + (start + tried) % PORTS) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
