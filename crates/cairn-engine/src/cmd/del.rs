//! DEL key [key ...] [FENCE lock token], UNLINK key [key ...] (UNLINK
//! frees in place too: values are dropped by the shard that owns them)
//!
//! FENCE (cairn's, DEL only): the keys are deleted only while `lock` is
//! held with `token` (`-FENCED` otherwise, nothing deleted); every key
//! must hash to the lock's slot. DEL with at least four arguments whose
//! third from the end is `FENCE` reads the last three as the fence;
//! UNLINK never does, so UNLINK deletes a key literally named `FENCE`.

use super::set::{fence_holds, fence_tail, FENCED};
use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct Del<'a, const FENCE: bool> {
    keys: &'a [&'a [u8]],
    fence: Option<(&'a [u8], u64)>,
}

pub type Unlink<'a> = Del<'a, false>;

impl<'a, const FENCE: bool> Command<'a> for Del<'a, FENCE> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        super::arg(argv, 1)?;
        let n = argv.len();
        if FENCE && n >= 5 {
            if let Some(f) = fence_tail(argv, &argv[1..n - 3])? {
                return Ok(Del {
                    keys: &argv[1..n - 3],
                    fence: Some(f),
                });
            }
        }
        Ok(Del {
            keys: &argv[1..],
            fence: None,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        if let Some((name, token)) = self.fence {
            if !fence_holds(db, name, token, now_ms) {
                return out.error(FENCED);
            }
        }
        let n = self
            .keys
            .iter()
            .filter(|k| db.shard(k).remove(k, now_ms).is_some())
            .count();
        out.int(n as i64)
    }
}
