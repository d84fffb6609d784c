//! Number parsing and formatting with Redis' exact rules.

/// Redis' `string2ll`: optional '-', digits, no '+', no leading zeros, no
/// surrounding space, must fit in i64 (the same rule the protocol uses).
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    cairn_proto::parse_i64_strict(s)
}

/// Redis' `string2ld` for INCRBYFLOAT: a number without surrounding
/// spaces; "inf" is accepted (the sum is then rejected), "nan" is not.
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    if s.is_empty()
        || s.len() > 5000
        || s[0].is_ascii_whitespace()
        || s[s.len() - 1].is_ascii_whitespace()
    {
        return None;
    }
    let text = std::str::from_utf8(s).ok()?;
    let v: f64 = text.parse().ok()?;
    if v.is_nan() {
        return None;
    }
    Some(v)
}

/// Formats an INCRBYFLOAT result like Redis (`%.17Lg` then trimmed): up
/// to 17 significant digits, no exponent for ordinary magnitudes, no
/// trailing zeros.
pub fn format_f64(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e17 {
        return format!("{}", v as i64);
    }
    // Shortest representation that round-trips, which never has more than
    // 17 significant digits; Rust prints no exponent for this form.
    let s = format!("{v}");
    if s.contains('e') {
        format!("{v:.17}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        s
    }
}

/// C's `isspace` in the C locale.
fn c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// C's `strtod` on `s` (which ends at its first NUL, as a C string
/// does): the value, how many bytes it used (0 when no number starts
/// there, leading spaces included, as `strtod` leaves `endptr` at the
/// start), and whether it set `ERANGE` (a finite number too large, or a
/// non-zero one too small, for a double). Accepts what glibc accepts:
/// leading spaces, a sign, decimal and hexadecimal (`0x1.8p3`) numbers,
/// `inf`, `infinity` and `nan[(chars)]` in any case.
pub fn strtod(s: &[u8]) -> (f64, usize, bool) {
    let s = match s.iter().position(|&b| b == 0) {
        Some(end) => &s[..end],
        None => s,
    };
    let mut i = 0;
    while i < s.len() && c_space(s[i]) {
        i += 1;
    }
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let signed = |v: f64| if negative { -v } else { v };
    let rest = &s[i..];
    let starts = |word: &str| {
        rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word.as_bytes())
    };
    if starts("infinity") {
        return (signed(f64::INFINITY), i + 8, false);
    }
    if starts("inf") {
        return (signed(f64::INFINITY), i + 3, false);
    }
    if starts("nan") {
        let mut used = i + 3;
        if s.get(used) == Some(&b'(') {
            let inner = &s[used + 1..];
            let n = inner
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                .count();
            if inner.get(n) == Some(&b')') {
                used += n + 2;
            }
        }
        return (f64::NAN, used, false);
    }
    if rest.len() > 2
        && rest[0] == b'0'
        && (rest[1] | 0x20) == b'x'
        && (rest[2].is_ascii_hexdigit()
            || (rest[2] == b'.' && rest.get(3).is_some_and(u8::is_ascii_hexdigit)))
    {
        let (v, used, erange) = hex_float(&rest[2..]);
        return (signed(v), i + 2 + used, erange);
    }
    // Decimal: digits [. digits] (one digit at least) [e [sign] digits].
    let mut j = 0;
    let mut digits = 0;
    let mut nonzero = false;
    while j < rest.len() && rest[j].is_ascii_digit() {
        nonzero |= rest[j] != b'0';
        j += 1;
        digits += 1;
    }
    if rest.get(j) == Some(&b'.') {
        j += 1;
        while j < rest.len() && rest[j].is_ascii_digit() {
            nonzero |= rest[j] != b'0';
            j += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return (0.0, 0, false);
    }
    if matches!(rest.get(j), Some(b'e' | b'E')) {
        let mut k = j + 1;
        if matches!(rest.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        if rest.get(k).is_some_and(u8::is_ascii_digit) {
            while k < rest.len() && rest[k].is_ascii_digit() {
                k += 1;
            }
            j = k;
        }
    }
    // The text is ASCII digits, '.', 'e' and a sign: Rust's parser takes
    // it (overflow gives infinity, underflow zero, as strtod's values).
    let v = std::str::from_utf8(&rest[..j])
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
        .unwrap_or(0.0);
    let erange = v.is_infinite() || (v == 0.0 && nonzero);
    (signed(v), i + j, erange)
}

/// The hexadecimal part of a `0x` float after the `0x`: hex digits [.
/// hex digits] [p [sign] decimal digits].
fn hex_float(s: &[u8]) -> (f64, usize, bool) {
    let mut mantissa: u64 = 0;
    let mut exp: i64 = 0;
    let mut sticky = false;
    let mut nonzero = false;
    let mut j = 0;
    let mut seen_point = false;
    while j < s.len() {
        let d = match s[j] {
            b'.' if !seen_point => {
                seen_point = true;
                j += 1;
                continue;
            }
            c if c.is_ascii_hexdigit() => (c as char).to_digit(16).unwrap_or(0) as u64,
            _ => break,
        };
        nonzero |= d != 0;
        if mantissa >> 56 == 0 {
            mantissa = mantissa << 4 | d;
            if seen_point {
                exp -= 4;
            }
        } else {
            sticky |= d != 0;
            if !seen_point {
                exp += 4;
            }
        }
        j += 1;
    }
    if matches!(s.get(j), Some(b'p' | b'P')) {
        let mut k = j + 1;
        let neg = match s.get(k) {
            Some(b'-') => {
                k += 1;
                true
            }
            Some(b'+') => {
                k += 1;
                false
            }
            _ => false,
        };
        if s.get(k).is_some_and(u8::is_ascii_digit) {
            let mut e: i64 = 0;
            while k < s.len() && s[k].is_ascii_digit() {
                e = (e * 10 + i64::from(s[k] - b'0')).min(100_000);
                k += 1;
            }
            exp += if neg { -e } else { e };
            j = k;
        }
    }
    // One rounding of the 60-bit mantissa (the sticky bit keeps a
    // dropped tail from looking like an exact tie), then the scaling.
    let m = (mantissa | u64::from(sticky)) as f64;
    let mut v = m;
    let mut e = exp;
    while e > 0 && v.is_finite() {
        let step = e.min(1000);
        v *= 2f64.powi(step as i32);
        e -= step;
    }
    while e < 0 && v != 0.0 {
        let step = (-e).min(1000);
        v /= 2f64.powi(step as i32);
        e += step;
    }
    let erange = v.is_infinite() || (v == 0.0 && nonzero);
    (v, j, erange)
}

/// Redis' `string2d`, its rule for a score (ZADD, ZINCRBY, WEIGHTS): all
/// of `s` a number by `strtod`, no leading space, not NaN, and not out
/// of a double's range (a finite number too large, or one too small to
/// be anything but zero). `inf` and `-inf` are scores.
pub fn parse_score(s: &[u8]) -> Option<f64> {
    if s.first().is_none_or(|&b| c_space(b)) {
        return None;
    }
    let (v, used, erange) = strtod(s);
    if used != s.len() || v.is_nan() || (erange && (v.is_infinite() || v == 0.0)) {
        return None;
    }
    Some(v)
}

/// A score range bound after its optional `(` (Redis' `zslParseRange`):
/// `strtod` must use every byte up to the first NUL and not give NaN.
/// Looser than [`parse_score`], as in Redis: leading spaces, an empty
/// bound (zero) and out-of-range numbers (infinity, zero) are accepted.
pub fn parse_range_score(s: &[u8]) -> Option<f64> {
    let s = match s.iter().position(|&b| b == 0) {
        Some(end) => &s[..end],
        None => s,
    };
    let (v, used, _) = strtod(s);
    (used == s.len() && !v.is_nan()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_parse_and_format_match_redis_examples() {
        assert_eq!(parse_f64(b"10.5"), Some(10.5));
        assert_eq!(parse_f64(b"5.0e3"), Some(5000.0));
        assert_eq!(parse_f64(b" 1"), None);
        assert_eq!(parse_f64(b"inf"), Some(f64::INFINITY));
        assert_eq!(parse_f64(b"nan"), None);
        assert_eq!(format_f64(10.6), "10.6");
        assert_eq!(format_f64(5200.0), "5200");
        assert_eq!(format_f64(3.0e-3), "0.003");
    }

    /// What redis-server 7.0 accepts as a score and as a range bound
    /// (each checked against it).
    #[test]
    fn scores_parse_like_redis_string2d_and_zslparserange() {
        for (text, want) in [
            ("1.5", Some(1.5)),
            ("+1", Some(1.0)),
            (".5", Some(0.5)),
            ("5.", Some(5.0)),
            ("-0", Some(-0.0)),
            ("1e3", Some(1000.0)),
            ("0x10", Some(16.0)),
            ("0x1.8p1", Some(3.0)),
            ("inf", Some(f64::INFINITY)),
            ("-Infinity", Some(f64::NEG_INFINITY)),
            ("4.9e-324", Some(f64::from_bits(1))),
            ("0e-400", Some(0.0)),
            ("", None),
            (" 1", None),
            ("1 ", None),
            ("nan", None),
            ("1e400", None),
            ("1e-400", None),
            ("1e", None),
            ("0x", None),
            ("abc", None),
            ("1\0", None),
        ] {
            let got = parse_score(text.as_bytes());
            assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "{text:?}");
        }
        for (text, want) in [
            ("", Some(0.0)),
            (" 1", Some(1.0)),
            ("1e400", Some(f64::INFINITY)),
            ("1e-400", Some(0.0)),
            ("1\0junk", Some(1.0)),
            ("0x1", Some(1.0)),
            ("  ", None),
            ("1 ", None),
            ("nan", None),
            ("x", None),
        ] {
            let got = parse_range_score(text.as_bytes());
            assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "{text:?}");
        }
    }
}
