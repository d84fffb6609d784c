//! Plain types of the cluster API: a node's addresses and the argument
//! lists carried in log entries.

use serde::{Deserialize, Serialize};

/// What the cluster knows of a node: where its peers and its clients reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Peer transport address, `host:port`.
    pub peer: String,
    /// RESP address clients use, `host:port` (what -MOVED names).
    pub resp: String,
}

impl std::fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.resp, self.peer)
    }
}

/// Appends one argument list: `argc u32 LE`, then per argument
/// `len u32 LE | bytes`.
pub fn encode_argv<A: AsRef<[u8]>>(out: &mut Vec<u8>, argv: &[A]) {
    out.extend_from_slice(&(argv.len() as u32).to_le_bytes());
    for a in argv {
        let a = a.as_ref();
        out.extend_from_slice(&(a.len() as u32).to_le_bytes());
        out.extend_from_slice(a);
    }
}

/// Decodes the argument lists of a batch blob, calling `f` with each.
/// Stops with an error on the first malformed list (a log entry is
/// checksummed, so this only guards against bugs and hostile peers).
pub fn decode_argvs<'a>(
    mut buf: &'a [u8],
    mut f: impl FnMut(&[&'a [u8]]),
) -> Result<(), &'static str> {
    let mut argv: Vec<&'a [u8]> = Vec::new();
    while !buf.is_empty() {
        let argc = take_u32(&mut buf)? as usize;
        if argc > buf.len() / 4 + 1 {
            return Err("argument count exceeds the entry");
        }
        argv.clear();
        for _ in 0..argc {
            let len = take_u32(&mut buf)? as usize;
            if len > buf.len() {
                return Err("argument length exceeds the entry");
            }
            let (a, rest) = buf.split_at(len);
            argv.push(a);
            buf = rest;
        }
        f(&argv);
    }
    Ok(())
}

fn take_u32(buf: &mut &[u8]) -> Result<u32, &'static str> {
    if buf.len() < 4 {
        return Err("truncated entry");
    }
    let (n, rest) = buf.split_at(4);
    *buf = rest;
    Ok(u32::from_le_bytes([n[0], n[1], n[2], n[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn argvs_round_trip(lists in proptest::collection::vec(
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..5), 0..5)) {
            let mut blob = Vec::new();
            for l in &lists {
                encode_argv(&mut blob, l);
            }
            let mut got: Vec<Vec<Vec<u8>>> = Vec::new();
            decode_argvs(&blob, |a| got.push(a.iter().map(|x| x.to_vec()).collect())).unwrap();
            prop_assert_eq!(got, lists);
        }

        #[test]
        fn garbage_never_panics(blob in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_argvs(&blob, |_| {});
        }
    }
}
