//! Helpers shared by the engine's integration tests.

use cairn_engine::{Keyspace, Value};

/// MEMORY USAGE of `key` less that of a key of the same length holding an
/// inline string (no heap): what `key`'s value itself costs.
pub fn value_cost(ks: &mut Keyspace, key: &str) -> usize {
    let pos = ks.find(key.as_bytes(), 0).expect("the key exists");
    let usage = ks.usage_at(pos);
    let probe = format!("{}#", &key[..key.len() - 1]);
    ks.insert(probe.as_bytes(), Value::from_bytes(b"v"), Some(None), 0);
    let pos = ks.find(probe.as_bytes(), 0).expect("just stored");
    let base = ks.usage_at(pos);
    ks.remove(probe.as_bytes(), 0);
    usage - base
}
