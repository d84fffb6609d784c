//! HRANDFIELD key [count [WITHVALUES]]
//!
//! A positive count gives that many distinct fields (the whole hash when
//! it has no more), a negative one that many independent draws. Draws come
//! from the keyspace's seeded generator, so a replica applying the same
//! commands draws the same fields.
//!
//! Bounded: a negative count beyond [`RANDFIELD_COUNT_MAX`] is refused
//! (Redis answers it, however large; cairn will not build a reply of
//! unbounded size).

use super::{is, CmdError, Command, Db, SYNTAX};
use crate::hash::Hash;
use crate::keyspace::xorshift_star;
use crate::reply::Reply;

/// Most fields one HRANDFIELD with a negative count returns.
pub const RANDFIELD_COUNT_MAX: u64 = 1_000_000;

pub struct HRandField<'a> {
    key: &'a [u8],
    /// `None`: one field, a bulk string (or null).
    count: Option<i64>,
    with_values: bool,
}

impl<'a> Command<'a> for HRandField<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        let count = argv.get(2).map(|c| super::int_arg(c)).transpose()?;
        if count == Some(i64::MIN) {
            return Err(CmdError::from(
                "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
            ));
        }
        let with_values = match argv.get(3) {
            None => false,
            Some(w) if is(w, "WITHVALUES") && argv.len() == 4 => true,
            Some(_) => return Err(SYNTAX.into()),
        };
        if let Some(c) = count {
            // Redis' range (values are paired in the reply), then cairn's
            // reply bound.
            if with_values && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&c) {
                return Err("ERR value is out of range".into());
            }
            if c < 0 && c.unsigned_abs() > RANDFIELD_COUNT_MAX {
                return Err(CmdError(
                    format!("ERR count is out of range (at most {RANDFIELD_COUNT_MAX} draws with a negative count)").into(),
                ));
            }
        }
        Ok(HRandField {
            key,
            count,
            with_values,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        let mut rng = ks.rng_state();
        let h = match ks.get_hash(self.key, now_ms) {
            Ok(h) => h,
            Err(e) => return out.error(e),
        };
        let h = h.as_deref();
        match (h, self.count) {
            (None, None) => out.null(),
            (None, Some(_)) => out.array(0),
            (Some(h), None) => {
                let i = (xorshift_star(&mut rng) % h.len() as u64) as usize;
                match h.nth(i) {
                    Some((f, _)) => out.bulk(f),
                    None => out.null(),
                }
            }
            (Some(h), Some(c)) => self.reply_many(h, c, &mut rng, out),
        }
        ks.set_rng_state(rng);
    }
}

impl HRandField<'_> {
    fn reply_many(&self, h: &Hash, count: i64, rng: &mut u64, out: &mut impl Reply) {
        let len = h.len();
        // A listpack is walked once into a list (at most 128 pairs), so
        // each draw is O(1) on either encoding.
        let listed: Vec<(&[u8], &[u8])> = if h.is_table() {
            Vec::new()
        } else {
            h.iter().collect()
        };
        let pair = |i: usize| match listed.get(i) {
            Some(&p) => Some(p),
            None => h.nth(i),
        };
        let picks: Vec<usize> = if count < 0 {
            let n = count.unsigned_abs() as usize;
            (0..n)
                .map(|_| (xorshift_star(rng) % len as u64) as usize)
                .collect()
        } else if count as u64 >= len as u64 {
            (0..len).collect()
        } else {
            distinct(len, count as usize, rng)
        };
        let nested = self.with_values && out.resp3();
        let per = if self.with_values && !nested { 2 } else { 1 };
        out.array(picks.len() * per);
        for i in picks {
            let Some((f, v)) = pair(i) else {
                out.null();
                continue;
            };
            if nested {
                out.array(2);
            }
            out.bulk(f);
            if self.with_values {
                out.bulk(v);
            }
        }
    }
}

/// `k` distinct positions of `0..n` (k < n), uniformly: the first `k`
/// steps of a Fisher-Yates shuffle, with the swaps kept in a map so the
/// cost is O(k) whatever `n`.
pub(crate) fn distinct(n: usize, k: usize, rng: &mut u64) -> Vec<usize> {
    distinct_where(n, k, rng, |_| true)
}

/// `k` distinct positions of `0..n` that `keep` holds for (at least `k`
/// do), uniformly among those: the shuffle of [`distinct`], its picks
/// that `keep` refuses (a zset table's holes) passed over. With every
/// position kept it draws exactly as [`distinct`].
pub(crate) fn distinct_where(
    n: usize,
    k: usize,
    rng: &mut u64,
    keep: impl Fn(usize) -> bool,
) -> Vec<usize> {
    let mut swapped: hashbrown::HashMap<usize, usize, foldhash::fast::FixedState> =
        hashbrown::HashMap::with_capacity_and_hasher(k * 2, Default::default());
    let mut picks = Vec::with_capacity(k);
    let mut i = 0;
    while picks.len() < k && i < n {
        let j = i + (xorshift_star(rng) % (n - i) as u64) as usize;
        let at_j = *swapped.get(&j).unwrap_or(&j);
        let at_i = *swapped.get(&i).unwrap_or(&i);
        swapped.insert(j, at_i);
        if keep(at_j) {
            picks.push(at_j);
        }
        i += 1;
    }
    picks
}

#[cfg(test)]
mod tests {
    use super::{distinct, distinct_where};

    #[test]
    fn distinct_picks_are_distinct_and_in_range() {
        let mut rng = 12345;
        for (n, k) in [(10, 9), (1000, 10), (2, 1), (5, 0)] {
            let p = distinct(n, k, &mut rng);
            assert_eq!(p.len(), k);
            let set: std::collections::HashSet<_> = p.iter().collect();
            assert_eq!(set.len(), k);
            assert!(p.iter().all(|&i| i < n));
        }
    }

    #[test]
    fn distinct_where_passes_over_refused_positions_only() {
        let mut rng = 777;
        let even = |i: usize| i.is_multiple_of(2);
        for (n, k) in [(10, 5), (10, 4), (1000, 10), (3, 2)] {
            let p = distinct_where(n, k, &mut rng, even);
            assert_eq!(p.len(), k, "{n} {k}");
            let set: std::collections::HashSet<_> = p.iter().collect();
            assert_eq!(set.len(), k);
            assert!(p.iter().all(|&i| i < n && even(i)));
        }
        let (mut a, mut b) = (5, 5);
        assert_eq!(
            distinct(100, 7, &mut a),
            distinct_where(100, 7, &mut b, |_| true)
        );
        assert_eq!(a, b);
    }
}
