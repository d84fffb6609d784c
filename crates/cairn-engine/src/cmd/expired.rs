//! `CAIRN.EXPIRED key [key ...]` — internal, never accepted from clients:
//! the replicated form of active expiry. A Raft leader finds keys whose
//! deadline passed and proposes this; every replica deletes each key
//! that is still expired at the entry's timestamp (a key re-set with a
//! later deadline in between survives). Replies with the count deleted.

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct Expired<'a> {
    keys: &'a [&'a [u8]],
}

impl<'a> Command<'a> for Expired<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(Expired { keys: &argv[1..] })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let mut n = 0;
        for k in self.keys {
            if db.shard(k).expire_if_due(k, now_ms) {
                n += 1;
            }
        }
        out.int(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::set::Set;
    use crate::{FrameReply, Keyspace};

    #[test]
    fn deletes_only_keys_still_expired_at_the_entry_time() {
        let mut ks = Keyspace::new(1);
        ks.set_lazy_expire(false);
        let mut out = FrameReply::new();
        let a: Vec<&[u8]> = vec![b"SET", b"a", b"1", b"PX", b"10"];
        Set::parse(&a).unwrap().apply(&mut ks, 1000, &mut out);
        let b: Vec<&[u8]> = vec![b"SET", b"b", b"1", b"PX", b"100"];
        Set::parse(&b).unwrap().apply(&mut ks, 1000, &mut out);
        let (keys, _) = ks.expired_keys(0, 10, 1050);
        assert_eq!(keys, vec![b"a".to_vec()]);
        // "b" is named too (as if the leader saw it expired), but at the
        // entry's time it is still live: it survives.
        let e: Vec<&[u8]> = vec![b"CAIRN.EXPIRED", b"a", b"b", b"missing"];
        Expired::parse(&e).unwrap().apply(&mut ks, 1050, &mut out);
        assert_eq!(ks.len(), 1);
        let frames = out.take();
        assert_eq!(frames.last(), Some(&cairn_proto::Frame::Integer(1)));
    }
}
