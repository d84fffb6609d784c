//! Counters kept per worker thread (one writer each, so increments never
//! contend) and summed when INFO asks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub struct CmdStat {
    pub calls: AtomicU64,
    pub usec: AtomicU64,
    pub failed: AtomicU64,
    pub rejected: AtomicU64,
}

pub struct WorkerStats {
    pub commands: Box<[CmdStat]>,
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
    pub connections_received: AtomicU64,
    pub rejected_connections: AtomicU64,
    /// TLS handshakes that failed or timed out (bad or no certificate,
    /// a plain client on the TLS port).
    pub tls_handshake_failures: AtomicU64,
}

impl WorkerStats {
    pub fn new(command_count: usize) -> WorkerStats {
        WorkerStats {
            commands: (0..command_count).map(|_| CmdStat::default()).collect(),
            net_input_bytes: AtomicU64::new(0),
            net_output_bytes: AtomicU64::new(0),
            connections_received: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
        }
    }

    pub fn reset(&self) {
        for c in self.commands.iter() {
            c.calls.store(0, Relaxed);
            c.usec.store(0, Relaxed);
            c.failed.store(0, Relaxed);
            c.rejected.store(0, Relaxed);
        }
        for a in [
            &self.net_input_bytes,
            &self.net_output_bytes,
            &self.connections_received,
            &self.rejected_connections,
            &self.tls_handshake_failures,
        ] {
            a.store(0, Relaxed);
        }
    }
}

/// Adds to a counter that only this thread writes (no locked RMW).
#[inline]
pub fn bump(a: &AtomicU64, n: u64) {
    a.store(a.load(Relaxed).wrapping_add(n), Relaxed);
}
