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
}
