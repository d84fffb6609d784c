//! KEYS pattern (per shard; the caller concatenates shards)

use crate::glob::glob_match;
use crate::keyspace::Keyspace;

/// Appends the live keys of `ks` matching `pattern` to `out`.
pub fn keys_in(ks: &Keyspace, pattern: &[u8], now_ms: u64, out: &mut Vec<Vec<u8>>) {
    let all = pattern == b"*";
    let mut cursor = 0;
    loop {
        cursor = ks.scan(cursor, usize::MAX, now_ms, |k, _| {
            if all || glob_match(pattern, k) {
                out.push(k.to_vec());
            }
        });
        if cursor == 0 {
            break;
        }
    }
}
