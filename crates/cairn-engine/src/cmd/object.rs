//! OBJECT ENCODING | FREQ | IDLETIME | REFCOUNT key, and MEMORY USAGE key
//! [SAMPLES n]. Neither touches the key's access time.

use super::{is, CmdError, Command, Db, SYNTAX};
use crate::keyspace::AccessTracking;
use crate::reply::Reply;

const SWITCH_NOTE: &str = "Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.";

#[derive(Clone, Copy)]
enum What {
    Encoding,
    Freq,
    IdleTime,
    RefCount,
    MemoryUsage,
}

pub struct Object<'a> {
    what: What,
    key: &'a [u8],
}

impl<'a> Object<'a> {
    /// MEMORY USAGE key [SAMPLES n].
    pub fn parse_memory_usage(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 2)?;
        match &argv[3..] {
            [] => {}
            [s, n] if is(s, "SAMPLES") => {
                super::int_arg(n)?;
            }
            _ => return Err(SYNTAX.into()),
        }
        Ok(Object {
            what: What::MemoryUsage,
            key,
        })
    }
}

impl<'a> Command<'a> for Object<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let sub = super::arg(argv, 1)?;
        let what = if is(sub, "ENCODING") {
            What::Encoding
        } else if is(sub, "FREQ") {
            What::Freq
        } else if is(sub, "IDLETIME") {
            What::IdleTime
        } else if is(sub, "REFCOUNT") {
            What::RefCount
        } else {
            return Err(CmdError(
                format!(
                    "ERR unknown subcommand '{}'. Try OBJECT HELP.",
                    String::from_utf8_lossy(sub)
                )
                .into(),
            ));
        };
        if argv.len() != 3 {
            return Err(CmdError(
                format!("ERR unknown subcommand or wrong number of arguments for '{}'. Try OBJECT HELP.", String::from_utf8_lossy(sub))
                    .into(),
            ));
        }
        Ok(Object { what, key: argv[2] })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        let Some(pos) = ks.find(self.key, now_ms) else {
            return out.null();
        };
        let lfu = matches!(ks.access_tracking(), AccessTracking::Lfu { .. });
        match self.what {
            What::Encoding => out.bulk(ks.value_at(pos).encoding().as_bytes()),
            What::RefCount => out.int(1),
            What::MemoryUsage => out.int(ks.usage_at(pos) as i64),
            What::Freq if !lfu => {
                out.error(&format!("ERR An LFU maxmemory policy is not selected, access frequency not tracked. {SWITCH_NOTE}"))
            }
            What::Freq => out.int(ks.freq_at(pos, now_ms) as i64),
            What::IdleTime if lfu => {
                out.error(&format!("ERR An LFU maxmemory policy is selected, idle time not tracked. {SWITCH_NOTE}"))
            }
            What::IdleTime => out.int((ks.idle_ms_at(pos, now_ms) / 1000) as i64),
        }
    }
}
