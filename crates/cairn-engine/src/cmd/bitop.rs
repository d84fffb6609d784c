//! BITOP AND | OR | XOR | NOT destkey key [key ...]
//!
//! As Redis: a missing source is an empty string (zeros), the result is
//! as long as the longest source and replaces `destkey` (any type, its
//! deadline too) as a raw string, or deletes it when every source is
//! empty; the reply is the result's length. Sources are folded into the
//! result one by one, so the command holds one string of the result's
//! size besides the stored ones.

use super::{is, CmdError, Command, Db, SYNTAX};
use crate::reply::Reply;
use crate::value::Value;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    And,
    Or,
    Xor,
    Not,
}

pub struct BitOp<'a> {
    op: Op,
    dest: &'a [u8],
    keys: &'a [&'a [u8]],
}

impl Op {
    /// Folds the next source `b` into `acc` (the sources before it).
    fn fold(self, acc: &mut Vec<u8>, b: &[u8]) {
        if acc.len() < b.len() {
            // Past the shorter sources everything was zero: right for
            // AND (zero stays zero), OR and XOR (zero is neutral).
            acc.resize(b.len(), 0);
        }
        let (head, tail) = acc.split_at_mut(b.len());
        match self {
            Op::And => {
                head.iter_mut().zip(b).for_each(|(x, y)| *x &= y);
                tail.fill(0);
            }
            Op::Or => head.iter_mut().zip(b).for_each(|(x, y)| *x |= y),
            Op::Xor => head.iter_mut().zip(b).for_each(|(x, y)| *x ^= y),
            Op::Not => head.iter_mut().zip(b).for_each(|(x, y)| *x = !y),
        }
    }
}

impl<'a> Command<'a> for BitOp<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let name = super::arg(argv, 1)?;
        let dest = super::arg(argv, 2)?;
        super::arg(argv, 3)?;
        let op = if is(name, "AND") {
            Op::And
        } else if is(name, "OR") {
            Op::Or
        } else if is(name, "XOR") {
            Op::Xor
        } else if is(name, "NOT") {
            Op::Not
        } else {
            return Err(SYNTAX.into());
        };
        if op == Op::Not && argv.len() != 4 {
            return Err("ERR BITOP NOT must be called with a single source key.".into());
        }
        Ok(BitOp {
            op,
            dest,
            keys: &argv[3..],
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let mut acc: Vec<u8> = Vec::new();
        for (i, k) in self.keys.iter().enumerate() {
            let v = match db.shard(k).get_string(k, now_ms) {
                Ok(v) => v,
                Err(e) => return out.error(e),
            };
            let mut fold = |b: &[u8]| {
                if i == 0 && self.op != Op::Not {
                    acc.extend_from_slice(b);
                } else {
                    self.op.fold(&mut acc, b);
                }
            };
            match v {
                Some(v) => v.with_bytes(fold),
                None => fold(&[]),
            }
        }
        let len = acc.len();
        let ks = db.shard(self.dest);
        if len == 0 {
            ks.remove(self.dest, now_ms);
        } else {
            acc.shrink_to_fit();
            ks.insert(
                self.dest,
                Value::Growable(Box::new(acc)),
                Some(None),
                now_ms,
            );
        }
        out.int(len as i64)
    }
}
