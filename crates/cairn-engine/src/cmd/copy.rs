//! COPY source destination [DB 0] [REPLACE]

use super::{is, CmdError, Command, Db, SYNTAX};
use crate::reply::Reply;

pub struct Copy<'a> {
    from: &'a [u8],
    to: &'a [u8],
    replace: bool,
}

impl<'a> Command<'a> for Copy<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let mut cmd = Copy {
            from: super::arg(argv, 1)?,
            to: super::arg(argv, 2)?,
            replace: false,
        };
        let mut i = 3;
        while i < argv.len() {
            if is(argv[i], "REPLACE") {
                cmd.replace = true;
            } else if is(argv[i], "DB") && i + 1 < argv.len() {
                if super::int_arg(argv[i + 1])? != 0 {
                    return Err("ERR DB index is out of range".into());
                }
                i += 1;
            } else {
                return Err(SYNTAX.into());
            }
            i += 1;
        }
        if cmd.from == cmd.to {
            return Err("ERR source and destination objects are the same".into());
        }
        Ok(cmd)
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let src = db.shard(self.from);
        let Some(pos) = src.find(self.from, now_ms) else {
            return out.int(0);
        };
        let value = src.value_at(pos).clone();
        let deadline = src.deadline(self.from, now_ms).flatten();
        let dst = db.shard(self.to);
        if !self.replace && dst.contains(self.to, now_ms) {
            return out.int(0);
        }
        dst.insert(self.to, value, Some(deadline), now_ms);
        out.int(1)
    }
}
