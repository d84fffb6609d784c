//! SLOWLOG and LATENCY: bounded in-memory logs of slow commands.

use std::collections::VecDeque;

pub struct SlowEntry {
    pub id: u64,
    pub unix_s: u64,
    pub duration_us: u64,
    pub args: Vec<Vec<u8>>,
    pub addr: String,
    pub name: Vec<u8>,
}

#[derive(Default)]
pub struct SlowLog {
    pub entries: VecDeque<SlowEntry>,
    pub next_id: u64,
}

/// Like Redis: at most 32 arguments kept, each cut to 128 bytes.
const ARGS_KEPT_MAX: usize = 32;
const ARG_BYTES_MAX: usize = 128;

impl SlowLog {
    pub fn push(
        &mut self,
        argv: &[&[u8]],
        duration_us: u64,
        unix_s: u64,
        addr: String,
        name: Vec<u8>,
        len_max: usize,
    ) {
        if len_max == 0 {
            return;
        }
        let mut args: Vec<Vec<u8>> = Vec::new();
        for (i, a) in argv.iter().enumerate() {
            if i == ARGS_KEPT_MAX - 1 && argv.len() > ARGS_KEPT_MAX {
                args.push(format!("... ({} more arguments)", argv.len() - i).into_bytes());
                break;
            }
            if a.len() > ARG_BYTES_MAX {
                let mut v = a[..ARG_BYTES_MAX].to_vec();
                v.extend_from_slice(
                    format!("... ({} more bytes)", a.len() - ARG_BYTES_MAX).as_bytes(),
                );
                args.push(v);
            } else {
                args.push(a.to_vec());
            }
        }
        self.entries.push_front(SlowEntry {
            id: self.next_id,
            unix_s,
            duration_us,
            args,
            addr,
            name,
        });
        self.next_id += 1;
        self.entries.truncate(len_max);
    }
}

/// LATENCY's record for the one event cairn tracks: "command".
#[derive(Default)]
pub struct Latency {
    /// (unix seconds, ms) samples, newest last, at most 160 like Redis.
    pub history: VecDeque<(u64, u64)>,
    pub max_ms: u64,
}

impl Latency {
    pub fn record(&mut self, unix_s: u64, ms: u64) {
        if let Some(last) = self.history.back_mut() {
            if last.0 == unix_s {
                last.1 = last.1.max(ms);
                self.max_ms = self.max_ms.max(ms);
                return;
            }
        }
        self.history.push_back((unix_s, ms));
        if self.history.len() > 160 {
            self.history.pop_front();
        }
        self.max_ms = self.max_ms.max(ms);
    }
}
