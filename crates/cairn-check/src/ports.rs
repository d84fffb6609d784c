//! Loopback ports for tests that start servers.
//!
//! `bind(0)` hands out a port from the kernel's ephemeral range, and
//! between that check and the server's own bind, any outgoing connection
//! of the processes already running may take the same port as its source
//! port ("Address already in use" at start; seen in CI). These ports come
//! from below that range (12000–22099 plus the offsets asked for), are
//! free when handed out, and are never handed out twice in one process.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// A free loopback port.
pub fn free_port() -> u16 {
    free_port_with(&[0])
}

/// A port `p` such that `p + o` is free for every offset `o` (at most
/// 10,100; e.g. `[0, 10000]` for a RESP port and its default peer port).
///
/// # Panics
/// When an offset is above 10,100, or no such port is found in 100,000
/// tries (a test process holding thousands of ports).
pub fn free_port_with(offsets: &[u16]) -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static HANDED: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    assert!(offsets.iter().all(|&o| o <= 10_100), "offset too large");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().wrapping_mul(2_654_435_761);
    for _ in 0..100_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let x = seed
            .wrapping_add(n.wrapping_mul(40_503))
            .wrapping_mul(2_654_435_761);
        let p = 12_000 + (x >> 8) as u16 % 10_000;
        let ports: Vec<u16> = offsets.iter().map(|&o| p + o).collect();
        let mut handed = HANDED.lock().unwrap_or_else(|e| e.into_inner());
        if ports.iter().any(|q| handed.contains(q)) {
            continue;
        }
        if ports
            .iter()
            .all(|&q| TcpListener::bind(("127.0.0.1", q)).is_ok())
        {
            handed.extend(ports);
            return p;
        }
    }
    panic!("no free port below the ephemeral range in 100,000 tries");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_below_the_ephemeral_range_and_never_repeat() {
        let mut seen = Vec::new();
        for _ in 0..200 {
            let p = free_port_with(&[0, 100, 10_000]);
            assert!((12_000..22_000).contains(&p));
            for q in [p, p + 100, p + 10_000] {
                assert!(!seen.contains(&q), "{q} handed out twice");
                seen.push(q);
            }
        }
        let q = free_port();
        assert!(!seen.contains(&q));
        let _held = TcpListener::bind(("127.0.0.1", q)).expect("a handed-out port is free");
    }
}
