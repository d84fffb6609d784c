//! SET key value [NX | XX | IFEQ comparison] [GET]
//!     [EX s | PX ms | EXAT unix-s | PXAT unix-ms | KEEPTTL]
//!     [FENCE lock token]
//!
//! IFEQ is Valkey 8.1's compare-and-set: the write happens only when the
//! key exists and its current value equals `comparison`.
//!
//! FENCE is cairn's: the write happens only while lock `lock` is held
//! with fencing token `token` (`-FENCED` otherwise, nothing written), so
//! a former holder that was paused past its lease cannot overwrite what
//! the next holder wrote. The lock must hash to the key's slot (hash
//! tags: `{job}:lock`, `{job}:data`), so one group decides both.

use super::{is, CmdError, Command, Db, ExpireUnit, ExpiryOptions, SYNTAX};
use crate::reply::Reply;
use crate::value::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition<'a> {
    Always,
    IfAbsent,
    IfPresent,
    IfEqual(&'a [u8]),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    /// Clear any deadline (plain SET).
    Clear,
    Keep,
    At(ExpireUnit, i64),
}

pub struct Set<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub condition: Condition<'a>,
    pub get: bool,
    pub ttl: Ttl,
    /// FENCE lock token.
    pub fence: Option<(&'a [u8], u64)>,
}

pub const FENCED: &str = "FENCED the lock is not held with this token";
pub const FENCE_CROSSSLOT: &str =
    "CROSSSLOT the lock and the key must hash to the same slot (use a hash tag)";

/// Parses `FENCE lock token` at `argv[i]` for `key`.
pub(crate) fn fence_arg<'a>(
    argv: &[&'a [u8]],
    i: usize,
    key: &[u8],
) -> Result<(&'a [u8], u64), CmdError> {
    let (Some(name), Some(token)) = (argv.get(i + 1), argv.get(i + 2)) else {
        return Err(SYNTAX.into());
    };
    let token = super::lock_acquire::token_arg(token)?;
    if crate::slot::slot(name) != crate::slot::slot(key) {
        return Err(FENCE_CROSSSLOT.into());
    }
    Ok((name, token))
}

/// Whether lock `name` is held with `token` right now (the FENCE
/// condition of SET, DEL, INCRBY/DECRBY and LOCK.FENCE).
pub(crate) fn fence_holds(db: &mut impl Db, name: &[u8], token: u64, now_ms: u64) -> bool {
    let locks = &mut db.shard(name).locks;
    let now = locks.at(now_ms);
    locks.holds_token(name, token, now)
}

/// Parses a trailing `FENCE lock token` (the last three arguments) of a
/// command whose other arguments end at `argv.len() - 3`; every key in
/// `keys` must share the lock's slot.
pub(crate) fn fence_tail<'a>(
    argv: &[&'a [u8]],
    keys: &[&[u8]],
) -> Result<Option<(&'a [u8], u64)>, CmdError> {
    let n = argv.len();
    if n < 4 || !is(argv[n - 3], "FENCE") {
        return Ok(None);
    }
    let (name, token) = (argv[n - 2], super::lock_acquire::token_arg(argv[n - 1])?);
    let s = crate::slot::slot(name);
    if keys.iter().any(|k| crate::slot::slot(k) != s) {
        return Err(FENCE_CROSSSLOT.into());
    }
    Ok(Some((name, token)))
}

impl<'a> Command<'a> for Set<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let mut cmd = Set {
            key: super::arg(argv, 1)?,
            value: super::arg(argv, 2)?,
            condition: Condition::Always,
            get: false,
            ttl: Ttl::Clear,
            fence: None,
        };
        // Like Redis: an option may repeat (the last value wins) but not
        // combine with a conflicting one; numbers are checked after all
        // options parsed.
        let mut opts = ExpiryOptions::new("KEEPTTL");
        let mut i = 3;
        while i < argv.len() {
            let taken = opts.offer(argv, i)?;
            if taken > 0 {
                i += taken;
                continue;
            }
            let a = argv[i];
            let next = argv.get(i + 1).copied();
            let cond = cmd.condition;
            if is(a, "NX") && matches!(cond, Condition::Always | Condition::IfAbsent) {
                cmd.condition = Condition::IfAbsent;
            } else if is(a, "XX") && matches!(cond, Condition::Always | Condition::IfPresent) {
                cmd.condition = Condition::IfPresent;
            } else if let (true, Some(v)) = (is(a, "IFEQ"), next) {
                if !matches!(cond, Condition::Always | Condition::IfEqual(_)) {
                    return Err(SYNTAX.into());
                }
                cmd.condition = Condition::IfEqual(v);
                i += 1;
            } else if is(a, "GET") {
                cmd.get = true;
            } else if is(a, "FENCE") {
                cmd.fence = Some(fence_arg(argv, i, cmd.key)?);
                i += 2;
            } else {
                return Err(SYNTAX.into());
            }
            i += 1;
        }
        cmd.ttl = match opts.finish()? {
            Some((unit, v)) => Ttl::At(unit, v),
            None if opts.keyword_seen => Ttl::Keep,
            None => Ttl::Clear,
        };
        Ok(cmd)
    }

    fn check(&self, now_ms: u64) -> Result<(), CmdError> {
        match self.ttl {
            Ttl::At(unit, v) => unit.deadline(v, now_ms, "set").map(|_| ()),
            _ => Ok(()),
        }
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let deadline = match self.ttl {
            Ttl::At(unit, v) => match unit.deadline(v, now_ms, "set") {
                Ok(d) => Some(Some(d)),
                Err(e) => return super::reply_err(out, e),
            },
            Ttl::Keep => None,
            Ttl::Clear => Some(None),
        };
        if let Some((name, token)) = self.fence {
            if !fence_holds(db, name, token, now_ms) {
                return out.error(FENCED);
            }
        }
        let ks = db.shard(self.key);
        let pos = ks.find(self.key, now_ms);
        let old = pos.map(|p| ks.value_at(p));
        // Reading the old value (GET, IFEQ) needs a string; a plain SET
        // replaces any type.
        if (self.get || matches!(self.condition, Condition::IfEqual(_)))
            && old.is_some_and(|v| !v.is_string())
        {
            return out.error(super::WRONGTYPE);
        }
        let allowed = match self.condition {
            Condition::Always => true,
            Condition::IfAbsent => old.is_none(),
            Condition::IfPresent => old.is_some(),
            Condition::IfEqual(cmp) => old.is_some_and(|v| v.with_bytes(|b| b == cmp)),
        };
        if self.get {
            match old {
                Some(v) => out.value(v),
                None => out.null(),
            }
        }
        if allowed {
            match deadline {
                // A deadline already past: the write is acknowledged and
                // the key is gone, as in Redis.
                Some(Some(d)) if d < now_ms => {
                    ks.remove(self.key, now_ms);
                }
                _ => {
                    ks.insert_found(
                        pos,
                        self.key,
                        Value::from_bytes(self.value),
                        deadline,
                        now_ms,
                    );
                }
            }
        }
        if !self.get {
            if allowed {
                out.ok()
            } else {
                out.null()
            }
        }
    }
}
