//! GETEX key [EX s | PX ms | EXAT unix-s | PXAT unix-ms | PERSIST]

use super::{is, CmdError, Command, Db, ExpireUnit, SYNTAX};
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
        let mut expiry: Option<(ExpireUnit, &'a [u8])> = None;
        let mut persist = false;
        let mut i = 2;
        while i < argv.len() {
            let a = argv[i];
            if is(a, "PERSIST") && expiry.is_none() {
                persist = true;
            } else if let (Some(unit), Some(v)) = (ExpireUnit::from_option(a), argv.get(i + 1)) {
                if persist || expiry.is_some_and(|(u, _)| u != unit) {
                    return Err(SYNTAX.into());
                }
                expiry = Some((unit, v));
                i += 1;
            } else {
                return Err(SYNTAX.into());
            }
            i += 1;
        }
        let change = match expiry {
            Some((unit, v)) => Change::At(unit, super::int_arg(v)?),
            None if persist => Change::Persist,
            None => Change::None,
        };
        Ok(GetEx { key, change })
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
        match ks.get(self.key, now_ms) {
            None => out.null(),
            Some(v) => {
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
