//! Incremental parser for client requests (multibulk and inline forms).

use crate::Limits;

/// A protocol violation. The `Display` text is exactly what Redis replies
/// (after `-ERR `), so clients and tests see familiar wording; the
/// connection must be closed after replying, as in Redis.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("Protocol error: too big inline request")]
    InlineTooBig,
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("Protocol error: too big mbulk count string")]
    MultibulkCountTooBig,
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("Protocol error: too big bulk count string")]
    BulkCountTooBig,
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedBulk(u8),
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("Protocol error: bulk string not terminated by CRLF")]
    BulkNotTerminated,
}

/// Longest `*<n>` or `$<n>` header line Redis accepts before giving up.
const HEADER_LINE_MAX: usize = 64 * 1024;

/// Resumable request parser. State is relative to the start of the request
/// being parsed: the caller passes a slice that starts there on every call
/// until the request is complete, and drops exactly `consumed` bytes after.
#[derive(Debug, Default)]
pub struct RequestParser {
    /// Announced argument count of the multibulk in progress.
    argc: Option<usize>,
    /// Byte offset where parsing resumes.
    pos: usize,
    /// Argument ranges of a multibulk request, relative to its start.
    ranges: Vec<(usize, usize)>,
    /// Arguments of an inline request (unescaped, so owned).
    inline: Vec<Vec<u8>>,
    is_inline: bool,
    /// Bytes the parser needs in total before it can make progress (a hint
    /// for buffer reservation; already checked against the limits).
    need: usize,
}

/// The arguments of one parsed request, borrowed from the input buffer or
/// from the parser (inline requests).
pub struct Args<'a> {
    buf: &'a [u8],
    ranges: &'a [(usize, usize)],
    inline: &'a [Vec<u8>],
    is_inline: bool,
}

impl<'a> Args<'a> {
    pub fn len(&self) -> usize {
        if self.is_inline {
            self.inline.len()
        } else {
            self.ranges.len()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, i: usize) -> &'a [u8] {
        if self.is_inline {
            &self.inline[i]
        } else {
            let (s, e) = self.ranges[i];
            &self.buf[s..e]
        }
    }

    /// Appends every argument to `out` (reusable to avoid an allocation per
    /// command).
    pub fn collect_into(&self, out: &mut Vec<&'a [u8]>) {
        out.clear();
        for i in 0..self.len() {
            out.push(self.get(i));
        }
    }
}

impl RequestParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of input the parser needs before another call can make
    /// progress (0 when unknown). Never more than the limits allow.
    pub fn bytes_needed(&self) -> usize {
        self.need
    }

    /// Parses one request from `buf`. Returns `Ok(Some(consumed))` when a
    /// whole request is available (read it with [`Self::args`]), `Ok(None)`
    /// when more bytes are needed. An empty request (blank inline line,
    /// `*0`) completes with zero arguments; callers skip it.
    pub fn parse(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, ProtoError> {
        self.need = 0;
        if self.pos == 0 && self.argc.is_none() {
            self.ranges.clear();
            self.inline.clear();
            self.need = 0;
            match buf.first() {
                None => return Ok(None),
                Some(b'*') => self.is_inline = false,
                Some(_) => {
                    self.is_inline = true;
                    return self.parse_inline(buf, limits);
                }
            }
        }
        self.parse_multibulk(buf, limits)
    }

    pub fn args<'a>(&'a self, buf: &'a [u8]) -> Args<'a> {
        Args {
            buf,
            ranges: &self.ranges,
            inline: &self.inline,
            is_inline: self.is_inline,
        }
    }

    fn finish(&mut self, consumed: usize) -> Result<Option<usize>, ProtoError> {
        self.argc = None;
        self.pos = 0;
        self.need = 0;
        Ok(Some(consumed))
    }

    fn parse_inline(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, ProtoError> {
        let Some(nl) = memchr::memchr(b'\n', buf) else {
            if buf.len() > limits.inline_len_max {
                return Err(ProtoError::InlineTooBig);
            }
            return Ok(None);
        };
        if nl > limits.inline_len_max {
            return Err(ProtoError::InlineTooBig);
        }
        let mut line = &buf[..nl];
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        split_inline(line, &mut self.inline)?;
        self.finish(nl + 1)
    }

    fn parse_multibulk(
        &mut self,
        buf: &[u8],
        limits: &Limits,
    ) -> Result<Option<usize>, ProtoError> {
        if self.argc.is_none() {
            let Some((n, next)) = read_header(buf, 1, ProtoError::MultibulkCountTooBig)? else {
                return Ok(None);
            };
            if n > limits.multibulk_len_max as i64 || n > i32::MAX as i64 {
                return Err(ProtoError::InvalidMultibulkLength);
            }
            self.pos = next;
            if n <= 0 {
                return self.finish(next);
            }
            let argc = n as usize;
            self.argc = Some(argc);
            // Reserve by what can actually be present, never by the claim.
            self.ranges.reserve(argc.min(1024));
        }
        let argc = self.argc.unwrap_or(0);
        while self.ranges.len() < argc {
            let at = self.pos;
            match buf.get(at) {
                None => return Ok(None),
                Some(b'$') => {}
                Some(&c) => return Err(ProtoError::ExpectedBulk(c)),
            }
            let Some((len, start)) = read_header(&buf[at..], 1, ProtoError::BulkCountTooBig)?
            else {
                return Ok(None);
            };
            if len < 0 || len as u64 > limits.bulk_len_max as u64 {
                return Err(ProtoError::InvalidBulkLength);
            }
            let start = at + start;
            let end = start + len as usize;
            if buf.len() < end + 2 {
                self.need = end + 2;
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtoError::BulkNotTerminated);
            }
            self.ranges.push((start, end));
            self.pos = end + 2;
        }
        let consumed = self.pos;
        self.finish(consumed)
    }
}

/// Reads `<prefix><integer>\r\n` starting at `buf[0]`; returns the integer
/// and the offset after the line, or `None` when the line is incomplete.
fn read_header(
    buf: &[u8],
    skip: usize,
    too_big: ProtoError,
) -> Result<Option<(i64, usize)>, ProtoError> {
    let window = &buf[..buf.len().min(HEADER_LINE_MAX)];
    let Some(cr) = memchr::memchr(b'\r', window) else {
        if buf.len() > HEADER_LINE_MAX {
            return Err(too_big);
        }
        return Ok(None);
    };
    if buf.len() < cr + 2 {
        return Ok(None);
    }
    let invalid = match too_big {
        ProtoError::MultibulkCountTooBig => ProtoError::InvalidMultibulkLength,
        _ => ProtoError::InvalidBulkLength,
    };
    if buf[cr + 1] != b'\n' {
        return Err(invalid);
    }
    let n = parse_i64_strict(&buf[skip..cr]).ok_or(invalid)?;
    Ok(Some((n, cr + 2)))
}

/// Redis' `string2ll`: optional '-', no '+', no leading zeros, no spaces.
pub fn parse_i64_strict(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    if digits[0] == b'0' && (digits.len() > 1 || neg) {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let digit = (d - b'0') as i64;
        v = if neg {
            v.checked_mul(10)?.checked_sub(digit)?
        } else {
            v.checked_mul(10)?.checked_add(digit)?
        };
    }
    Some(v)
}

/// Splits an inline command line like Redis' `sdssplitargs`: whitespace
/// separates arguments; "double quotes" support \n \r \t \b \a \\ \" \xHH;
/// 'single quotes' support \'. A closing quote must be followed by space.
fn split_inline(line: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), ProtoError> {
    out.clear();
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && is_space(line[i]) {
            i += 1;
        }
        if i >= n {
            return Ok(());
        }
        let mut cur = Vec::new();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            if in_dq {
                if i >= n {
                    return Err(ProtoError::UnbalancedQuotes);
                }
                let c = line[i];
                if c == b'\\'
                    && i + 3 < n
                    && line[i + 1] == b'x'
                    && is_hex(line[i + 2])
                    && is_hex(line[i + 3])
                {
                    cur.push(hex(line[i + 2]) * 16 + hex(line[i + 3]));
                    i += 3;
                } else if c == b'\\' && i + 1 < n {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    if i + 1 < n && !is_space(line[i + 1]) {
                        return Err(ProtoError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else if in_sq {
                if i >= n {
                    return Err(ProtoError::UnbalancedQuotes);
                }
                let c = line[i];
                if c == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    i += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if i + 1 < n && !is_space(line[i + 1]) {
                        return Err(ProtoError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else {
                if i >= n {
                    break;
                }
                match line[i] {
                    b' ' | b'\n' | b'\r' | b'\t' | b'\x0b' | b'\x0c' => break,
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    c => cur.push(c),
                }
            }
            i += 1;
        }
        out.push(cur);
    }
}

/// C's isspace(), which Redis' sdssplitargs uses. NUL is not a space.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\r' | b'\t' | b'\x0b' | b'\x0c')
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtoError> {
        let limits = Limits::default();
        let mut p = RequestParser::new();
        let mut out = Vec::new();
        let mut off = 0;
        while let Some(n) = p.parse(&input[off..], &limits)? {
            let args = p.args(&input[off..]);
            out.push((0..args.len()).map(|i| args.get(i).to_vec()).collect());
            off += n;
        }
        Ok(out)
    }

    #[test]
    fn multibulk_and_inline_requests_parse_to_the_same_arguments() {
        let a = parse_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n").unwrap();
        let b = parse_all(b"SET k v1\r\n").unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0][2], b"v1");
    }

    #[test]
    fn pipelined_requests_parse_one_at_a_time() {
        let r = parse_all(b"*1\r\n$4\r\nPING\r\nPING\n*2\r\n$4\r\nECHO\r\n$0\r\n\r\n").unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[2][1], b"");
    }

    #[test]
    fn request_split_at_every_byte_parses_identically() {
        let input = b"*2\r\n$4\r\nECHO\r\n$11\r\nhello world\r\n";
        let limits = Limits::default();
        for cut in 0..input.len() {
            let mut p = RequestParser::new();
            assert_eq!(p.parse(&input[..cut], &limits).unwrap(), None, "cut {cut}");
            assert_eq!(p.parse(&input[..], &limits).unwrap(), Some(input.len()));
            assert_eq!(p.args(input).get(1), b"hello world");
        }
    }

    #[test]
    fn inline_quotes_and_escapes_follow_redis() {
        let r = parse_all(b"set \"a b\" 'c\\'d' \"\\x41\\n\"\r\n").unwrap();
        assert_eq!(
            r[0],
            vec![
                b"set".to_vec(),
                b"a b".to_vec(),
                b"c'd".to_vec(),
                b"A\n".to_vec()
            ]
        );
        assert_eq!(
            parse_all(b"set \"abc\r\n"),
            Err(ProtoError::UnbalancedQuotes)
        );
        assert_eq!(
            parse_all(b"set \"abc\"x\r\n"),
            Err(ProtoError::UnbalancedQuotes)
        );
    }

    #[test]
    fn nul_bytes_in_inline_requests_are_argument_bytes() {
        let r = parse_all(b"ECHO a\0b\r\n\0\n").unwrap();
        assert_eq!(r[0], vec![b"ECHO".to_vec(), b"a\0b".to_vec()]);
        assert_eq!(r[1], vec![b"\0".to_vec()]);
    }

    #[test]
    fn blank_lines_and_empty_multibulk_are_empty_requests() {
        let r = parse_all(b"\r\n*0\r\n*-1\r\nPING\r\n").unwrap();
        assert_eq!(r.len(), 4);
        assert!(r[0].is_empty() && r[1].is_empty() && r[2].is_empty());
    }

    #[test]
    fn malformed_lengths_get_redis_errors() {
        assert_eq!(
            parse_all(b"*abc\r\n"),
            Err(ProtoError::InvalidMultibulkLength)
        );
        assert_eq!(
            parse_all(b"*3000000000\r\n"),
            Err(ProtoError::InvalidMultibulkLength)
        );
        assert_eq!(
            parse_all(b"*1\r\n$-5\r\n"),
            Err(ProtoError::InvalidBulkLength)
        );
        assert_eq!(
            parse_all(b"*1\r\n$99999999999\r\n"),
            Err(ProtoError::InvalidBulkLength)
        );
        assert_eq!(
            parse_all(b"*1\r\n:5\r\n"),
            Err(ProtoError::ExpectedBulk(b':'))
        );
        assert_eq!(
            parse_all(b"*1\r\n$1\r\nab\r\n"),
            Err(ProtoError::BulkNotTerminated)
        );
        assert_eq!(
            parse_all(b"*01\r\n"),
            Err(ProtoError::InvalidMultibulkLength)
        );
    }

    #[test]
    fn huge_announced_count_does_not_allocate_or_complete() {
        let limits = Limits::default();
        let mut p = RequestParser::new();
        assert_eq!(
            p.parse(b"*2000000000\r\n$1\r\na\r\n", &limits).unwrap(),
            None
        );
        assert!(p.ranges.capacity() <= 1024);
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits {
            bulk_len_max: 10,
            inline_len_max: 8,
            multibulk_len_max: 3,
            ..Limits::default()
        };
        let mut p = RequestParser::new();
        assert_eq!(
            p.parse(b"*1\r\n$11\r\n", &limits),
            Err(ProtoError::InvalidBulkLength)
        );
        let mut p = RequestParser::new();
        assert_eq!(
            p.parse(b"*4\r\n", &limits),
            Err(ProtoError::InvalidMultibulkLength)
        );
        let mut p = RequestParser::new();
        assert_eq!(
            p.parse(b"PING PING PING", &limits),
            Err(ProtoError::InlineTooBig)
        );
        let mut p = RequestParser::new();
        let long = vec![b'1'; HEADER_LINE_MAX + 10];
        let mut req = b"*".to_vec();
        req.extend_from_slice(&long);
        assert_eq!(
            p.parse(&req, &limits),
            Err(ProtoError::MultibulkCountTooBig)
        );
    }

    #[test]
    fn bytes_needed_reports_pending_bulk() {
        let limits = Limits::default();
        let mut p = RequestParser::new();
        assert_eq!(p.parse(b"*1\r\n$100\r\nab", &limits).unwrap(), None);
        assert_eq!(p.bytes_needed(), 4 + 6 + 100 + 2);
    }

    #[test]
    fn strict_integers_match_string2ll() {
        assert_eq!(parse_i64_strict(b"0"), Some(0));
        assert_eq!(parse_i64_strict(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64_strict(b"9223372036854775808"), None);
        assert_eq!(parse_i64_strict(b"+1"), None);
        assert_eq!(parse_i64_strict(b"-0"), None);
        assert_eq!(parse_i64_strict(b""), None);
        assert_eq!(parse_i64_strict(b" 1"), None);
    }
}
