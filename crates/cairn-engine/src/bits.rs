//! Bits of byte strings, for the bitmap commands (SETBIT, GETBIT,
//! BITCOUNT, BITPOS, BITOP, BITFIELD) and the table behind LCS.
//!
//! Bit 0 is the most significant bit of byte 0, as in Redis. Reads past
//! the end of a string see zeros; writes are given a buffer already grown
//! to hold them (`Keyspace::write_bits`). Nothing here allocates more
//! than its caller asked for.

/// The byte index of bit `offset`, if it is in `len` bytes.
fn byte_of(offset: u64, len: usize) -> Option<usize> {
    usize::try_from(offset >> 3).ok().filter(|&i| i < len)
}

/// The bit at `offset` (0 past the end).
pub fn get_bit(b: &[u8], offset: u64) -> bool {
    byte_of(offset, b.len()).is_some_and(|i| b[i] & (0x80 >> (offset & 7)) != 0)
}

/// Sets the bit at `offset` (which must be inside `b`; past the end it
/// does nothing) and returns its old value.
pub fn set_bit(b: &mut [u8], offset: u64, on: bool) -> bool {
    let Some(i) = byte_of(offset, b.len()) else {
        return false;
    };
    let mask = 0x80u8 >> (offset & 7);
    let old = b[i] & mask != 0;
    if on {
        b[i] |= mask;
    } else {
        b[i] &= !mask;
    }
    old
}

/// Redis' range rule of BITCOUNT and BITPOS over `len` units (bytes or
/// bits): negative positions count from the end, then both are clamped
/// into the string. `None` for an empty range.
pub fn clamp_range(start: i64, end: i64, len: i64) -> Option<(u64, u64)> {
    let mut s = if start < 0 { len + start } else { start };
    let mut e = if end < 0 { len + end } else { end };
    s = s.max(0);
    e = e.max(0);
    if e >= len {
        e = len - 1;
    }
    if s > e {
        return None;
    }
    Some((s as u64, e as u64))
}

/// Set bits in `b`, eight bytes at a time.
fn popcount(b: &[u8]) -> u64 {
    let mut chunks = b.chunks_exact(8);
    let mut n: u64 = 0;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        n += u64::from(u64::from_ne_bytes(w).count_ones());
    }
    n + chunks
        .remainder()
        .iter()
        .map(|x| u64::from(x.count_ones()))
        .sum::<u64>()
}

/// The masks of the first and last byte of the bit range `first..=last`
/// (bits inside the range set).
fn edge_masks(first: u64, last: u64) -> (u8, u8) {
    (0xffu8 >> (first & 7), 0xffu8 << (7 - (last & 7)))
}

/// Set bits among bits `first..=last` of `b` (bits past the end count
/// as zeros).
pub fn count_bits(b: &[u8], first: u64, last: u64) -> u64 {
    let total = (b.len() as u64).saturating_mul(8);
    if first > last || first >= total {
        return 0;
    }
    let last = last.min(total - 1);
    let (fb, lb) = ((first >> 3) as usize, (last >> 3) as usize);
    let (head, tail) = edge_masks(first, last);
    if fb == lb {
        return u64::from((b[fb] & head & tail).count_ones());
    }
    u64::from((b[fb] & head).count_ones())
        + popcount(&b[fb + 1..lb])
        + u64::from((b[lb] & tail).count_ones())
}

/// The first bit equal to `bit` among bits `first..=last` of `b` (which
/// must lie inside `b`); `None` when there is none.
pub fn find_bit(b: &[u8], bit: bool, first: u64, last: u64) -> Option<u64> {
    let total = (b.len() as u64).saturating_mul(8);
    if first > last || last >= total {
        return None;
    }
    // Look for set bits in `want(byte)`.
    let want = |x: u8| if bit { x } else { !x };
    let found = |byte: usize, m: u8| Some(byte as u64 * 8 + u64::from(m.leading_zeros()));
    let (fb, lb) = ((first >> 3) as usize, (last >> 3) as usize);
    let (head, tail) = edge_masks(first, last);
    if fb == lb {
        let m = want(b[fb]) & head & tail;
        return if m != 0 { found(fb, m) } else { None };
    }
    let m = want(b[fb]) & head;
    if m != 0 {
        return found(fb, m);
    }
    // The middle: skip eight bytes at a time while none can match.
    let skip = if bit { 0u64 } else { u64::MAX };
    let mut i = fb + 1;
    while i + 8 <= lb {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        if u64::from_ne_bytes(w) != skip {
            break;
        }
        i += 8;
    }
    while i < lb {
        let m = want(b[i]);
        if m != 0 {
            return found(i, m);
        }
        i += 1;
    }
    let m = want(b[lb]) & tail;
    if m != 0 {
        found(lb, m)
    } else {
        None
    }
}

/// The unsigned integer of `bits` bits (1..=64) at bit `offset`, most
/// significant bit first (Redis' `getUnsignedBitfield`); bits past the
/// end read as zeros.
pub fn get_unsigned(b: &[u8], offset: u64, bits: u32) -> u64 {
    let mut v = 0u64;
    for k in 0..u64::from(bits) {
        v = (v << 1) | u64::from(get_bit(b, offset + k));
    }
    v
}

/// The two's complement integer of `bits` bits at bit `offset`.
pub fn get_signed(b: &[u8], offset: u64, bits: u32) -> i64 {
    let v = get_unsigned(b, offset, bits);
    if bits < 64 && v & (1u64 << (bits - 1)) != 0 {
        (v | (u64::MAX << bits)) as i64
    } else {
        v as i64
    }
}

/// Writes the low `bits` bits of `value` at bit `offset` (Redis'
/// `setUnsignedBitfield`); the buffer must hold them.
pub fn set_field(b: &mut [u8], offset: u64, bits: u32, value: u64) {
    for k in 0..bits {
        let on = (value >> (bits - 1 - k)) & 1 == 1;
        set_bit(b, offset + u64::from(k), on);
    }
}

/// BITFIELD's OVERFLOW behaviours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    Wrap,
    Sat,
    Fail,
}

/// Redis' `checkSignedBitfieldOverflow`, ported operation for operation
/// (its unsigned and wrapping arithmetic included, so SAT picks the same
/// limit as Redis in every case): whether `value + incr` overflows a
/// signed field of `bits` bits, and the value to store instead under
/// WRAP or SAT.
pub fn signed_overflow(value: i64, incr: i64, bits: u32, ow: Overflow) -> Option<i64> {
    let max: i64 = if bits == 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = -max - 1;
    let maxincr = (max as u64).wrapping_sub(value as u64) as i64;
    let minincr = min.wrapping_sub(value);
    let wrap = || {
        let c = (value as u64).wrapping_add(incr as u64);
        if bits < 64 {
            let mask = u64::MAX << bits;
            if c & (1u64 << (bits - 1)) != 0 {
                (c | mask) as i64
            } else {
                (c & !mask) as i64
            }
        } else {
            c as i64
        }
    };
    if value > max || (bits != 64 && incr > maxincr) || (value >= 0 && incr > 0 && incr > maxincr) {
        Some(match ow {
            Overflow::Wrap => wrap(),
            Overflow::Sat | Overflow::Fail => max,
        })
    } else if value < min
        || (bits != 64 && incr < minincr)
        || (value < 0 && incr < 0 && incr < minincr)
    {
        Some(match ow {
            Overflow::Wrap => wrap(),
            Overflow::Sat | Overflow::Fail => min,
        })
    } else {
        None
    }
}

/// Redis' `checkUnsignedBitfieldOverflow` (`bits` at most 63), ported
/// as [`signed_overflow`] is.
pub fn unsigned_overflow(value: u64, incr: i64, bits: u32, ow: Overflow) -> Option<u64> {
    let max: u64 = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let maxincr = max.wrapping_sub(value) as i64;
    let minincr = 0u64.wrapping_sub(value) as i64;
    let wrap = || {
        let r = value.wrapping_add(incr as u64);
        if bits >= 64 {
            r
        } else {
            r & !(u64::MAX << bits)
        }
    };
    if value > max || (incr > 0 && incr > maxincr) {
        Some(match ow {
            Overflow::Wrap => wrap(),
            Overflow::Sat | Overflow::Fail => max,
        })
    } else if incr < 0 && incr < minincr {
        Some(match ow {
            Overflow::Wrap => wrap(),
            Overflow::Sat | Overflow::Fail => 0,
        })
    } else {
        None
    }
}

/// One run of consecutive matching bytes of an LCS: positions in the
/// first and the second string, inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LcsRange {
    pub a: (usize, usize),
    pub b: (usize, usize),
}

impl LcsRange {
    /// Bytes in the run (WITHMATCHLEN).
    pub fn match_len(&self) -> usize {
        self.a.1 - self.a.0 + 1
    }
}

/// The length of the longest common subsequence of `a` and `b`, in
/// memory linear in the shorter one (two rows of the table).
pub fn lcs_len(a: &[u8], b: &[u8]) -> usize {
    let (long, short) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    let mut prev = vec![0u32; short.len() + 1];
    let mut cur = vec![0u32; short.len() + 1];
    for &x in long {
        for (j, &y) in short.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[short.len()] as usize
}

/// The longest common subsequence of `a` and `b` and its runs, exactly
/// as Redis' LCS finds them: the same table, walked back from the end
/// with the same choice (up when the cell above is larger, else left),
/// runs in the order met (last first).
///
/// Redis keeps the whole table of 32-bit lengths; the walk only needs,
/// for each cell, whether the cell above is larger than the one to the
/// left, so this keeps that one bit per cell (`a.len() * b.len() / 8`
/// bytes) and two rows of lengths. Callers bound the table's size.
pub fn lcs_path(a: &[u8], b: &[u8]) -> (Vec<u8>, Vec<LcsRange>) {
    let (n, m) = (a.len(), b.len());
    let mut up = vec![0u64; (n * m).div_ceil(64)];
    let mut prev = vec![0u32; m + 1];
    let mut cur = vec![0u32; m + 1];
    for (i, &x) in a.iter().enumerate() {
        let row = i * m;
        for (j, &y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else if prev[j + 1] > cur[j] {
                let cell = row + j;
                up[cell / 64] |= 1 << (cell % 64);
                prev[j + 1]
            } else {
                cur[j]
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    let total = prev[m] as usize;
    let mut lcs = vec![0u8; total];
    let mut left = total;
    let mut ranges = Vec::new();
    let mut open: Option<LcsRange> = None;
    let (mut i, mut j) = (n, m);
    while i > 0 && j > 0 && left > 0 {
        if a[i - 1] == b[j - 1] {
            left -= 1;
            lcs[left] = a[i - 1];
            // A run only grows backwards (any other step closes it).
            let r = match open {
                Some(mut r) => {
                    r.a.0 = i - 1;
                    r.b.0 = j - 1;
                    r
                }
                None => LcsRange {
                    a: (i - 1, i - 1),
                    b: (j - 1, j - 1),
                },
            };
            if r.a.0 == 0 || r.b.0 == 0 {
                ranges.push(r);
                open = None;
            } else {
                open = Some(r);
            }
            i -= 1;
            j -= 1;
        } else {
            let cell = (i - 1) * m + (j - 1);
            if up[cell / 64] & (1 << (cell % 64)) != 0 {
                i -= 1;
            } else {
                j -= 1;
            }
            if let Some(r) = open.take() {
                ranges.push(r);
            }
        }
    }
    // The last match closes its run (Redis stops there too).
    if let Some(r) = open {
        ranges.push(r);
    }
    (lcs, ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_msb_first_and_zero_past_the_end() {
        let mut b = vec![0u8; 2];
        assert!(!set_bit(&mut b, 0, true));
        assert!(!set_bit(&mut b, 15, true));
        assert_eq!(b, [0x80, 0x01]);
        assert!(get_bit(&b, 0) && get_bit(&b, 15) && !get_bit(&b, 1));
        assert!(!get_bit(&b, 16) && !get_bit(&b, u64::MAX));
        assert!(set_bit(&mut b, 0, false));
        assert!(!set_bit(&mut b, 99, true), "past the end: nothing");
        assert_eq!(b, [0, 1]);
    }

    #[test]
    fn counts_and_finds_within_ranges() {
        let b = b"foobar";
        assert_eq!(count_bits(b, 0, 47), 26);
        assert_eq!(count_bits(b, 8, 15), 6);
        assert_eq!(count_bits(b, 5, 30), 17);
        assert_eq!(count_bits(b, 5, 5), 1);
        assert_eq!(count_bits(b, 40, 1000), 3 + 1);
        let z = [0xffu8, 0xf0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(find_bit(&z, false, 0, 143), Some(12));
        assert_eq!(find_bit(&z, true, 12, 143), Some(143));
        assert_eq!(find_bit(&z, true, 12, 142), None);
        assert_eq!(find_bit(&z, true, 3, 3), Some(3));
        assert_eq!(find_bit(&z, false, 0, 11), None);
        assert_eq!(find_bit(&z, false, 0, 200), None, "range past the end");
        for first in 0..144 {
            for last in first..144 {
                let naive = (first..=last).find(|&i| get_bit(&z, i));
                assert_eq!(find_bit(&z, true, first, last), naive);
                let naive0 = (first..=last).find(|&i| !get_bit(&z, i));
                assert_eq!(find_bit(&z, false, first, last), naive0);
                let n = (first..=last).filter(|&i| get_bit(&z, i)).count() as u64;
                assert_eq!(count_bits(&z, first, last), n);
            }
        }
    }

    #[test]
    fn ranges_follow_redis() {
        assert_eq!(clamp_range(0, -1, 6), Some((0, 5)));
        assert_eq!(clamp_range(-2, -1, 6), Some((4, 5)));
        assert_eq!(clamp_range(-100, 100, 6), Some((0, 5)));
        assert_eq!(clamp_range(3, 1, 6), None);
        assert_eq!(clamp_range(0, -1, 0), None);
        assert_eq!(clamp_range(i64::MIN, i64::MAX, 48), Some((0, 47)));
    }

    #[test]
    fn fields_round_trip_at_every_width_and_offset() {
        let mut b = vec![0u8; 10];
        for bits in 1..=64u32 {
            for offset in [0u64, 1, 7, 8, 13] {
                b.fill(0);
                let v = 0xdead_beef_cafe_f00du64 & (u64::MAX >> (64 - bits));
                set_field(&mut b, offset, bits, v);
                assert_eq!(get_unsigned(&b, offset, bits), v, "{bits} at {offset}");
                let top = v >> (bits - 1) == 1;
                assert_eq!(get_signed(&b, offset, bits) < 0, top, "{bits}");
            }
        }
        b.fill(0);
        set_field(&mut b, 0, 8, 0xff);
        assert_eq!(get_signed(&b, 0, 8), -1);
        assert_eq!(get_signed(&b, 0, 4), -1);
        assert_eq!(get_unsigned(&b, 4, 8), 0xf0);
        assert_eq!(get_unsigned(&b, 76, 8), 0, "past the end: zeros");
    }

    #[test]
    fn overflow_follows_redis() {
        use Overflow::*;
        assert_eq!(signed_overflow(127, 1, 8, Wrap), Some(-128));
        assert_eq!(signed_overflow(127, 1, 8, Sat), Some(127));
        assert_eq!(signed_overflow(-128, -1, 8, Sat), Some(-128));
        assert_eq!(signed_overflow(-128, -1, 8, Wrap), Some(127));
        assert_eq!(signed_overflow(100, 27, 8, Sat), None);
        assert_eq!(signed_overflow(i64::MAX, 1, 64, Wrap), Some(i64::MIN));
        assert_eq!(signed_overflow(i64::MIN, -1, 64, Sat), Some(i64::MIN));
        assert_eq!(signed_overflow(300, 0, 8, Wrap), Some(44));
        // Redis' own arithmetic: a SET far below the range saturates to
        // the maximum (its unsigned `maxincr` wraps).
        assert_eq!(signed_overflow(i64::MIN, 0, 8, Sat), Some(127));
        assert_eq!(signed_overflow(-200, 0, 8, Sat), Some(-128));
        assert_eq!(unsigned_overflow(255, 1, 8, Wrap), Some(0));
        assert_eq!(unsigned_overflow(255, 1, 8, Sat), Some(255));
        assert_eq!(unsigned_overflow(0, -1, 8, Sat), Some(0));
        assert_eq!(unsigned_overflow(0, -1, 8, Wrap), Some(255));
        assert_eq!(unsigned_overflow(u64::MAX, 0, 8, Sat), Some(255), "SET -1");
        assert_eq!(unsigned_overflow(10, -10, 8, Sat), None);
    }

    #[test]
    fn lcs_matches_redis_examples() {
        let (s, r) = lcs_path(b"ohmytext", b"mynewtext");
        assert_eq!(s, b"mytext");
        assert_eq!(
            r,
            vec![
                LcsRange {
                    a: (4, 7),
                    b: (5, 8)
                },
                LcsRange {
                    a: (2, 3),
                    b: (0, 1)
                }
            ]
        );
        assert_eq!(lcs_len(b"ohmytext", b"mynewtext"), 6);
        assert_eq!(lcs_path(b"", b"abc"), (vec![], vec![]));
        assert_eq!(lcs_len(b"abc", b""), 0);
        let (s, r) = lcs_path(b"aaaa", b"aa");
        assert_eq!(s, b"aa");
        assert_eq!(
            r,
            vec![LcsRange {
                a: (2, 3),
                b: (0, 1)
            }]
        );
    }

    /// The one-bit table walks the same path as Redis' full table.
    #[test]
    fn lcs_path_agrees_with_the_full_table() {
        let mut seed = 7u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            let (la, lb) = ((next() % 24) as usize, (next() % 24) as usize);
            let a: Vec<u8> = (0..la).map(|_| b"abc"[(next() % 3) as usize]).collect();
            let b: Vec<u8> = (0..lb).map(|_| b"abc"[(next() % 3) as usize]).collect();
            assert_eq!(lcs_path(&a, &b), full_table(&a, &b), "{a:?} {b:?}");
            assert_eq!(lcs_len(&a, &b), full_table(&a, &b).0.len());
        }
    }

    /// Redis' lcsCommand, transcribed with its full table.
    fn full_table(a: &[u8], b: &[u8]) -> (Vec<u8>, Vec<LcsRange>) {
        let (n, m) = (a.len(), b.len());
        let mut t = vec![vec![0u32; m + 1]; n + 1];
        for i in 1..=n {
            for j in 1..=m {
                t[i][j] = if a[i - 1] == b[j - 1] {
                    t[i - 1][j - 1] + 1
                } else {
                    t[i - 1][j].max(t[i][j - 1])
                };
            }
        }
        let mut idx = t[n][m] as usize;
        let mut out = vec![0u8; idx];
        let mut ranges = Vec::new();
        let (mut i, mut j) = (n, m);
        let mut ar = (n, 0);
        let mut br = (0, 0);
        while i > 0 && j > 0 {
            let mut emit = false;
            if a[i - 1] == b[j - 1] {
                out[idx - 1] = a[i - 1];
                if ar.0 == n {
                    ar = (i - 1, i - 1);
                    br = (j - 1, j - 1);
                } else if ar.0 == i && br.0 == j {
                    ar.0 -= 1;
                    br.0 -= 1;
                } else {
                    emit = true;
                }
                if ar.0 == 0 || br.0 == 0 {
                    emit = true;
                }
                idx -= 1;
                i -= 1;
                j -= 1;
            } else {
                if t[i - 1][j] > t[i][j - 1] {
                    i -= 1;
                } else {
                    j -= 1;
                }
                if ar.0 != n {
                    emit = true;
                }
            }
            if emit {
                ranges.push(LcsRange { a: ar, b: br });
                ar.0 = n;
            }
        }
        (out, ranges)
    }
}
