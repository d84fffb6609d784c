//! SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]
//!
//! Options are parsed here; the caller walks shards, since a cursor spans
//! all shards of a node: the high 32 bits name the shard, the low 32 bits
//! the position inside it (see [`Keyspace::scan`]).

use super::{is, CmdError, SYNTAX};
use crate::glob::glob_match;
use crate::keyspace::Keyspace;

pub struct Scan<'a> {
    pub cursor: u64,
    pub pattern: Option<&'a [u8]>,
    pub count: usize,
    pub type_name: Option<&'a [u8]>,
}

impl<'a> Scan<'a> {
    pub fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let cursor = super::arg(argv, 1)?;
        let cursor = std::str::from_utf8(cursor)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(CmdError::from("ERR invalid cursor"))?;
        let mut scan = Scan {
            cursor,
            pattern: None,
            count: 10,
            type_name: None,
        };
        let mut i = 2;
        while i < argv.len() {
            let Some(v) = argv.get(i + 1).copied() else {
                return Err(SYNTAX.into());
            };
            if is(argv[i], "MATCH") {
                scan.pattern = Some(v);
            } else if is(argv[i], "COUNT") {
                let n = super::int_arg(v)?;
                if n < 1 {
                    return Err(SYNTAX.into());
                }
                scan.count = n as usize;
            } else if is(argv[i], "TYPE") {
                scan.type_name = Some(v);
            } else {
                return Err(SYNTAX.into());
            }
            i += 2;
        }
        Ok(scan)
    }

    /// Scans one shard from its local cursor; returns the next local
    /// cursor (0 when the shard is done).
    pub fn scan_shard(
        &self,
        ks: &Keyspace,
        local: u64,
        now_ms: u64,
        out: &mut Vec<Vec<u8>>,
    ) -> u64 {
        ks.scan(local, self.count, now_ms, |k, v| {
            if let Some(t) = self.type_name {
                if !t.eq_ignore_ascii_case(v.value_type().name().as_bytes()) {
                    return;
                }
            }
            if let Some(p) = self.pattern {
                if !glob_match(p, k) {
                    return;
                }
            }
            out.push(k.to_vec());
        })
    }
}
