//! `CAIRN.EVICT key [key ...]` — internal, never accepted from clients:
//! the replicated form of eviction. Under `maxmemory`, a Raft leader picks
//! victims by the eviction policy and proposes this before the write that
//! needs the room; every replica removes the same keys (counted as
//! evicted), so replicas never evict on their own and stay identical.
//! Replies with the number of keys removed.

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct Evict<'a> {
    keys: &'a [&'a [u8]],
}

impl<'a> Command<'a> for Evict<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(Evict { keys: &argv[1..] })
    }

    fn apply(&self, db: &mut impl Db, _now_ms: u64, out: &mut impl Reply) {
        let mut n = 0;
        for k in self.keys {
            if db.shard(k).evict_key(k) {
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
    use crate::evict::Policy;
    use crate::{FrameReply, Keyspace};

    #[test]
    fn removes_the_named_keys_and_counts_them_as_evicted() {
        let mut ks = Keyspace::new(1);
        let mut out = FrameReply::new();
        for k in ["a", "b", "c"] {
            let argv: Vec<&[u8]> = vec![b"SET", k.as_bytes(), b"v"];
            Set::parse(&argv).unwrap().apply(&mut ks, 0, &mut out);
        }
        let victims = ks.pick_victims(Policy::AllkeysLru, 5, 0, 2);
        assert_eq!(victims.len(), 2);
        assert_ne!(victims[0], victims[1]);
        assert_eq!(ks.len(), 3, "picking removes nothing");
        let mut argv: Vec<&[u8]> = vec![b"CAIRN.EVICT"];
        argv.extend(victims.iter().map(|v| v.as_slice()));
        argv.push(b"missing");
        Evict::parse(&argv).unwrap().apply(&mut ks, 0, &mut out);
        assert_eq!(ks.len(), 1);
        assert_eq!(ks.stats.evicted_keys, 2);
        assert_eq!(out.take().last(), Some(&cairn_proto::Frame::Integer(2)));
        assert!(ks.pick_victims(Policy::NoEviction, 5, 0, 2).is_empty());
        assert!(
            ks.pick_victims(Policy::VolatileLru, 5, 0, 2).is_empty(),
            "no key has a TTL"
        );
    }

    /// Victims removed by CAIRN.EVICT leave stale keys in the eviction
    /// pool; picking must still find the live keys until none is left
    /// (found by the cluster test: -OOM with keys still evictable).
    #[test]
    fn picking_never_comes_back_empty_while_keys_remain() {
        for policy in [
            Policy::AllkeysLru,
            Policy::AllkeysLfu,
            Policy::AllkeysRandom,
        ] {
            let mut ks = Keyspace::new(7);
            let mut out = FrameReply::new();
            for i in 0..2000 {
                let k = format!("k{i}");
                let argv: Vec<&[u8]> = vec![b"SET", k.as_bytes(), b"v"];
                Set::parse(&argv).unwrap().apply(&mut ks, i, &mut out);
            }
            let mut rounds = 0;
            while !ks.is_empty() {
                let victims = ks.pick_victims(policy, 5, 3000, 32);
                assert!(!victims.is_empty(), "{policy:?}: {} keys left", ks.len());
                for v in &victims {
                    assert!(ks.evict_key(v), "a victim must exist");
                }
                rounds += 1;
                assert!(rounds < 2000, "bounded");
            }
        }
    }
}
