//! Byte formats of the Raft engine that leave the process: the batch of
//! Raft messages one node sends another in one frame, and the data of a
//! normal log entry. Both are versioned; both decoders take untrusted
//! bytes (a peer, the disk) and are fuzzed.
//!
//! ```text
//! RaftBatch: version u8 = 1 | count u32 LE | (group u16 LE | len u32 LE | eraftpb::Message)*
//! entry data: version u8 = 1 | leader time ms u64 LE | argument lists (types::encode_argv)*
//! ```

use prost::Message as _;
use raft::eraftpb::Message;

pub const BATCH_VERSION: u8 = 1;
pub const ENTRY_VERSION: u8 = 1;
/// Messages in one batch at most (a frame is bounded by its length too).
pub const BATCH_MESSAGES_MAX: usize = 1 << 16;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("unsupported version {0}")]
    Version(u8),
    #[error("truncated")]
    Truncated,
    #[error("{0} messages exceed the limit")]
    TooMany(usize),
    #[error("bad message: {0}")]
    Message(String),
}

/// Appends one group's message to a batch being built (see [`finish_batch`]).
pub fn put_message(out: &mut Vec<u8>, group: u16, msg: &Message) {
    if out.is_empty() {
        out.push(BATCH_VERSION);
        out.extend_from_slice(&0u32.to_le_bytes());
    }
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&(msg.encoded_len() as u32).to_le_bytes());
    msg.encode_raw(out);
    let n = u32::from_le_bytes([out[1], out[2], out[3], out[4]]) + 1;
    out[1..5].copy_from_slice(&n.to_le_bytes());
}

/// A batch of no messages: a node's "I am here" to the peers of its
/// quiesced groups.
pub fn empty_batch() -> Vec<u8> {
    let mut b = vec![BATCH_VERSION];
    b.extend_from_slice(&0u32.to_le_bytes());
    b
}

/// Decodes a batch. Never panics; allocates no more than the input holds.
pub fn decode_batch(mut buf: &[u8]) -> Result<Vec<(u16, Message)>, WireError> {
    let (&v, rest) = buf.split_first().ok_or(WireError::Truncated)?;
    if v != BATCH_VERSION {
        return Err(WireError::Version(v));
    }
    buf = rest;
    let n = take(&mut buf, 4)?;
    let n = u32::from_le_bytes([n[0], n[1], n[2], n[3]]) as usize;
    if n > BATCH_MESSAGES_MAX {
        return Err(WireError::TooMany(n));
    }
    let mut out = Vec::with_capacity(n.min(buf.len() / 6));
    for _ in 0..n {
        let g = take(&mut buf, 2)?;
        let group = u16::from_le_bytes([g[0], g[1]]);
        let l = take(&mut buf, 4)?;
        let len = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
        let body = take(&mut buf, len)?;
        let msg = Message::decode(body).map_err(|e| WireError::Message(e.to_string()))?;
        out.push((group, msg));
    }
    if !buf.is_empty() {
        return Err(WireError::Message("bytes after the last message".into()));
    }
    Ok(out)
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], WireError> {
    if buf.len() < n {
        return Err(WireError::Truncated);
    }
    let (a, rest) = buf.split_at(n);
    *buf = rest;
    Ok(a)
}

/// Starts a normal entry's data: version and the leader's time; the
/// argument lists are appended after it.
pub fn entry_header(out: &mut Vec<u8>, ts_ms: u64) {
    out.push(ENTRY_VERSION);
    out.extend_from_slice(&ts_ms.to_le_bytes());
}

/// Splits a normal entry's data into the leader's time and the argument
/// lists blob.
pub fn decode_entry_data(data: &[u8]) -> Result<(u64, &[u8]), WireError> {
    let (&v, rest) = data.split_first().ok_or(WireError::Truncated)?;
    if v != ENTRY_VERSION {
        return Err(WireError::Version(v));
    }
    if rest.len() < 8 {
        return Err(WireError::Truncated);
    }
    let (ts, cmds) = rest.split_at(8);
    let mut n = [0u8; 8];
    n.copy_from_slice(ts);
    Ok((u64::from_le_bytes(n), cmds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use raft::eraftpb::{Entry, MessageType};

    fn msg(to: u64, n: usize) -> Message {
        Message {
            msg_type: MessageType::MsgAppend as i32,
            to,
            from: 1,
            term: 3,
            entries: (0..n)
                .map(|i| Entry {
                    index: i as u64,
                    data: vec![7; i],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_batch_round_trips_with_its_groups() {
        let mut b = Vec::new();
        put_message(&mut b, 3, &msg(2, 0));
        put_message(&mut b, 64, &msg(2, 3));
        let got = decode_batch(&b).unwrap();
        assert_eq!(got, vec![(3, msg(2, 0)), (64, msg(2, 3))]);
    }

    #[test]
    fn bad_batches_are_refused() {
        let mut b = Vec::new();
        put_message(&mut b, 3, &msg(2, 2));
        for cut in 0..b.len() {
            assert!(decode_batch(&b[..cut]).is_err(), "prefix {cut} accepted");
        }
        let mut v = b.clone();
        v[0] = 9;
        assert_eq!(decode_batch(&v), Err(WireError::Version(9)));
        let mut huge = b.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode_batch(&huge), Err(WireError::TooMany(_))));
        let mut extra = b;
        extra.push(0);
        assert!(decode_batch(&extra).is_err());
    }

    #[test]
    fn entry_data_round_trips() {
        let mut d = Vec::new();
        entry_header(&mut d, 1234);
        d.extend_from_slice(b"cmds");
        assert_eq!(decode_entry_data(&d).unwrap(), (1234, &b"cmds"[..]));
        assert!(decode_entry_data(&d[..5]).is_err());
        assert!(decode_entry_data(&[]).is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_batch(&b);
            let _ = decode_entry_data(&b);
        }
    }
}
