//! LMOVE source destination LEFT|RIGHT LEFT|RIGHT, and RPOPLPUSH source
//! destination (LMOVE ... RIGHT LEFT): pops one element and pushes it,
//! atomically; source and destination may be the same list (a rotation).

use super::{CmdError, Command, Db};
use crate::list::End;
use crate::reply::Reply;

pub struct LMove<'a> {
    pub(crate) src: &'a [u8],
    pub(crate) dst: &'a [u8],
    pub(crate) from: End,
    pub(crate) to: End,
}

/// LEFT or RIGHT, else Redis' syntax error.
pub(crate) fn end_arg(arg: &[u8]) -> Result<End, CmdError> {
    End::parse(arg).ok_or(CmdError::from(super::SYNTAX))
}

impl<'a> Command<'a> for LMove<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let src = super::arg(argv, 1)?;
        let dst = super::arg(argv, 2)?;
        let from = end_arg(super::arg(argv, 3)?)?;
        let to = end_arg(super::arg(argv, 4)?)?;
        Ok(LMove { src, dst, from, to })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        match self.run(db, now_ms) {
            Ok(Some(e)) => out.bulk(&e),
            Ok(None) => out.null(),
            Err(e) => out.error(e),
        }
    }
}

impl LMove<'_> {
    /// The moved element; `None` when the source does not exist.
    pub(crate) fn run(
        &self,
        db: &mut impl Db,
        now_ms: u64,
    ) -> Result<Option<Vec<u8>>, &'static str> {
        if db.shard(self.src).get_list(self.src, now_ms)?.is_none() {
            return Ok(None);
        }
        // Both types are checked before anything moves.
        db.shard(self.dst).get_list(self.dst, now_ms)?;
        let Some(e) = db
            .shard(self.src)
            .write_list(self.src, now_ms, false, |l| l.pop(self.from))?
            .flatten()
        else {
            return Ok(None);
        };
        let pushed = db
            .shard(self.dst)
            .write_list(self.dst, now_ms, true, |l| l.push(self.to, [&e[..]]));
        match pushed {
            Ok(Some(Ok(()))) => Ok(Some(e)),
            // The destination is full: the element goes back.
            Ok(Some(Err(why))) | Err(why) => {
                let back = if self.from == End::Left {
                    End::Left
                } else {
                    End::Right
                };
                let _ = db
                    .shard(self.src)
                    .write_list(self.src, now_ms, true, |l| l.push(back, [&e[..]]));
                Err(why)
            }
            Ok(None) => Ok(Some(e)),
        }
    }
}

/// RPOPLPUSH source destination
pub struct RPopLPush<'a>(LMove<'a>);

impl<'a> Command<'a> for RPopLPush<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(RPopLPush(LMove {
            src: super::arg(argv, 1)?,
            dst: super::arg(argv, 2)?,
            from: End::Right,
            to: End::Left,
        }))
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        self.0.apply(db, now_ms, out)
    }
}
