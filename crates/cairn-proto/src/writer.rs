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

/// Formats a double the way Redis does for replies: integral values without
/// a fraction, `inf`/`-inf`, otherwise the shortest round-trip form.
pub fn format_double(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v.is_nan() {
        return "nan".into();
    }
    if v == v.trunc() && v.abs() < 1e17 {
        return format!("{}", v as i64);
    }
    format!("{v}")
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

    #[test]
    fn error_text_cannot_break_framing() {
        let mut out = Vec::new();
        ReplyWriter::new(&mut out, Protocol::Resp2).error("ERR a\r\nb");
        assert_eq!(out, b"-ERR a  b\r\n");
    }
}
