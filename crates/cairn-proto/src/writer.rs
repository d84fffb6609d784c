//! Reply encoding straight into an output buffer.

/// Protocol version negotiated by `HELLO` (RESP2 until then).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

/// Writes replies into `out` in the connection's protocol. Aggregate types
/// RESP2 lacks (map, set, double, boolean, null, verbatim) are mapped the
/// way Redis maps them.
pub struct ReplyWriter<'a> {
    pub out: &'a mut Vec<u8>,
    pub proto: Protocol,
}

impl<'a> ReplyWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>, proto: Protocol) -> Self {
        ReplyWriter { out, proto }
    }

    fn header(&mut self, tag: u8, n: impl itoa::Integer) {
        self.out.push(tag);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn simple(&mut self, s: &str) {
        self.out.push(b'+');
        self.out.extend_from_slice(s.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// An error line; `msg` includes the code (`ERR ...`, `WRONGTYPE ...`).
    /// Newlines in the message are replaced so the frame stays valid.
    pub fn error(&mut self, msg: &str) {
        self.out.push(b'-');
        self.out.extend(
            msg.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn int(&mut self, n: i64) {
        self.header(b':', n);
    }

    pub fn bulk(&mut self, data: &[u8]) {
        self.header(b'$', data.len());
        self.out.extend_from_slice(data);
        self.out.extend_from_slice(b"\r\n");
    }

    /// A bulk string holding an integer's decimal form.
    pub fn bulk_int(&mut self, n: i64) {
        let mut b = itoa::Buffer::new();
        self.bulk(b.format(n).as_bytes());
    }

    /// The null reply: `_` in RESP3, a null bulk string in RESP2.
    pub fn null(&mut self) {
        match self.proto {
            Protocol::Resp3 => self.out.extend_from_slice(b"_\r\n"),
            Protocol::Resp2 => self.out.extend_from_slice(b"$-1\r\n"),
        }
    }

    /// A null where RESP2 expects a null array (`*-1`).
    pub fn null_array(&mut self) {
        match self.proto {
            Protocol::Resp3 => self.out.extend_from_slice(b"_\r\n"),
            Protocol::Resp2 => self.out.extend_from_slice(b"*-1\r\n"),
        }
    }

    pub fn array(&mut self, n: usize) {
        self.header(b'*', n);
    }

    /// A map of `n` pairs (RESP2: a flat array of 2n elements).
    pub fn map(&mut self, n: usize) {
        match self.proto {
            Protocol::Resp3 => self.header(b'%', n),
            Protocol::Resp2 => self.header(b'*', 2 * n),
        }
    }

    pub fn set(&mut self, n: usize) {
        match self.proto {
            Protocol::Resp3 => self.header(b'~', n),
            Protocol::Resp2 => self.header(b'*', n),
        }
    }

    pub fn double(&mut self, v: f64) {
        if let Some(i) = integral(v) {
            // The common case (integer scores) without the 17-digit
            // formatting: `%.17g` prints such a value as the integer.
            let mut buf = itoa::Buffer::new();
            let text = buf.format(i);
            return match self.proto {
                Protocol::Resp3 => {
                    self.out.push(b',');
                    self.out.extend_from_slice(text.as_bytes());
                    self.out.extend_from_slice(b"\r\n");
                }
                Protocol::Resp2 => self.bulk(text.as_bytes()),
            };
        }
        let text = format_double(v);
        match self.proto {
            Protocol::Resp3 => {
                self.out.push(b',');
                self.out.extend_from_slice(text.as_bytes());
                self.out.extend_from_slice(b"\r\n");
            }
            Protocol::Resp2 => self.bulk(text.as_bytes()),
        }
    }

    pub fn boolean(&mut self, v: bool) {
        match self.proto {
            Protocol::Resp3 => self
                .out
                .extend_from_slice(if v { b"#t\r\n" } else { b"#f\r\n" }),
            Protocol::Resp2 => self.int(v as i64),
        }
    }

    /// Verbatim text (`=` with a 3-letter format in RESP3, bulk in RESP2).
    pub fn verbatim(&mut self, format: &str, text: &[u8]) {
        match self.proto {
            Protocol::Resp3 => {
                self.header(b'=', text.len() + 4);
                self.out.extend_from_slice(format.as_bytes());
                self.out.push(b':');
                self.out.extend_from_slice(text);
                self.out.extend_from_slice(b"\r\n");
            }
            Protocol::Resp2 => self.bulk(text),
        }
    }
}

/// Formats a double the way Redis 7.0 does for replies (`addReplyDouble`):
/// `inf`/`-inf`, otherwise C's `%.17g` — up to 17 significant digits,
/// trailing zeros dropped, an exponent below 1e-4 and from 1e17 (so 1.1
/// is `1.1000000000000001`, 2.5 is `2.5`, 1e20 is `1e+20`).
pub fn format_double(v: f64) -> String {
    match integral(v) {
        Some(i) => itoa::Buffer::new().format(i).to_string(),
        None => printf_17g(v),
    }
}

/// `%.17g` the long way: 17 significant digits, then `%g`'s rules.
fn printf_17g(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v.is_nan() {
        return "nan".into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // The exponent `%g` decides by is the one of the value rounded to 17
    // digits, which `{:.16e}` gives (Rust rounds the exact binary value).
    let e = format!("{v:.16e}");
    let Some((mantissa, exp)) = e.split_once('e') else {
        return e;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..17).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!(
            "{}e{sign}{:02}",
            trim_fraction(mantissa),
            exp.unsigned_abs()
        )
    } else {
        trim_fraction(&format!("{:.*}", (16 - exp) as usize, v)).to_string()
    }
}

/// `v` as an integer when `%.17g` prints it as one: integral, not zero
/// (`-0` keeps its sign) and below 10^17 in magnitude, so at most 17
/// digits (no exponent), all exact (every double is an integer there).
fn integral(v: f64) -> Option<i64> {
    (v != 0.0 && v.abs() < 1e17 && v.trunc() == v).then_some(v as i64)
}

/// `%g`'s trailing-zero removal: zeros after the point, then the point.
fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp2_maps_resp3_types_like_redis() {
        let mut out = Vec::new();
        let mut w = ReplyWriter::new(&mut out, Protocol::Resp2);
        w.null();
        w.map(1);
        w.boolean(true);
        w.double(1.5);
        assert_eq!(out, b"$-1\r\n*2\r\n:1\r\n$3\r\n1.5\r\n");
    }

    #[test]
    fn resp3_uses_native_types() {
        let mut out = Vec::new();
        let mut w = ReplyWriter::new(&mut out, Protocol::Resp3);
        w.null();
        w.map(1);
        w.boolean(false);
        w.double(3.0);
        w.verbatim("txt", b"hi");
        assert_eq!(out, b"_\r\n%1\r\n#f\r\n,3\r\n=6\r\ntxt:hi\r\n");
    }

    /// C's `%.17g`, as redis-server 7.0 prints scores (checked against
    /// it for these values).
    #[test]
    fn doubles_format_like_printf_17g() {
        for (v, want) in [
            (1.1, "1.1000000000000001"),
            (0.1, "0.10000000000000001"),
            (2.5, "2.5"),
            (16.0, "16"),
            (-3.0, "-3"),
            (0.0, "0"),
            (-0.0, "-0"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1.0000000000000001e-05"),
            (f64::from_bits(1), "4.9406564584124654e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (3.0e-3, "0.0030000000000000001"),
        ] {
            assert_eq!(format_double(v), want, "{v:e}");
        }
    }

    /// The integer shortcut prints what the 17-digit path prints.
    #[test]
    fn integral_doubles_take_the_shortcut_and_print_the_same() {
        let mut vals = vec![1.0, -1.0, 9.0, 10.0, 99.0, 1e15, -1e15, 1e16 - 2.0];
        let edge = (1u64 << 53) as f64;
        vals.extend([
            edge - 1.0,
            -(edge + 2.0),
            99999999999999984.0,
            -99999999999999984.0,
        ]);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = (x >> (7 + x % 54)) as f64;
            if v >= 1e17 {
                continue;
            }
            vals.push(if x & 1 == 0 { v } else { -v });
        }
        for v in vals {
            if v == 0.0 {
                continue;
            }
            assert!(integral(v).is_some(), "{v}");
            assert_eq!(format_double(v), printf_17g(v), "{v}");
            for proto in [Protocol::Resp2, Protocol::Resp3] {
                let (mut fast, mut slow) = (Vec::new(), Vec::new());
                ReplyWriter::new(&mut fast, proto).double(v);
                let text = printf_17g(v);
                let mut w = ReplyWriter::new(&mut slow, proto);
                match proto {
                    Protocol::Resp2 => w.bulk(text.as_bytes()),
                    Protocol::Resp3 => slow.extend_from_slice(format!(",{text}\r\n").as_bytes()),
                }
                assert_eq!(fast, slow, "{v}");
            }
        }
        // Not integral, zero, or too large to be exact: the long way.
        for v in [0.5, 0.0, -0.0, 1e17, -1e17, 2e17, f64::INFINITY, f64::NAN] {
            assert_eq!(integral(v), None, "{v}");
        }
    }

    #[test]
    fn error_text_cannot_break_framing() {
        let mut out = Vec::new();
        ReplyWriter::new(&mut out, Protocol::Resp2).error("ERR a\r\nb");
        assert_eq!(out, b"-ERR a  b\r\n");
    }
}
