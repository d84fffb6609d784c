//! GETEX key [EX s | PX ms | EXAT unix-s | PXAT unix-ms | PERSIST]

use super::{CmdError, Command, Db, ExpireUnit, ExpiryOptions, SYNTAX};
use crate::reply::Reply;

enum Change {
    None,
    Persist,
    At(ExpireUnit, i64),
}

pub struct GetEx<'a> {
    key: &'a [u8],
    change: Change,
}

impl<'a> Command<'a> for GetEx<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        let mut opts = ExpiryOptions::new("PERSIST");
        let mut i = 2;
        while i < argv.len() {
            match opts.offer(argv, i)? {
                0 => return Err(SYNTAX.into()),
                n => i += n,
            }
        }
        let change = match opts.finish()? {
            Some((unit, v)) => Change::At(unit, v),
            None if opts.keyword_seen => Change::Persist,
            None => Change::None,
        };
        Ok(GetEx { key, change })
    }

    fn check(&self, now_ms: u64) -> Result<(), CmdError> {
        match self.change {
            Change::At(unit, v) => unit.deadline(v, now_ms, "getex").map(|_| ()),
            _ => Ok(()),
        }
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let deadline = match self.change {
            Change::At(unit, v) => match unit.deadline(v, now_ms, "getex") {
                Ok(d) => Some(Some(d)),
                Err(e) => return super::reply_err(out, e),
            },
            Change::Persist => Some(None),
            Change::None => None,
        };
        let ks = db.shard(self.key);
        match ks.get_string(self.key, now_ms) {
            Err(e) => out.error(e),
            Ok(None) => out.null(),
            Ok(Some(v)) => {
                out.value(v);
                match deadline {
                    Some(Some(d)) if d <= now_ms => {
                        ks.remove(self.key, now_ms);
                    }
                    Some(d) => {
                        ks.set_deadline(self.key, d, now_ms);
                    }
                    None => {}
                }
            }
        }
    }
}
