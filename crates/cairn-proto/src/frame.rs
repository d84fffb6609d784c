//! A whole RESP2/RESP3 value, with a bounded decoder and an encoder.

use crate::request::parse_i64_strict;

/// One RESP value. Attributes (`|`) are decoded and dropped, as most
/// clients do.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Integer(i64),
    Bulk(Vec<u8>),
    /// RESP2 null bulk/array or RESP3 `_`.
    Null,
    Array(Vec<Frame>),
    Map(Vec<(Frame, Frame)>),
    Set(Vec<Frame>),
    Push(Vec<Frame>),
    Double(f64),
    Boolean(bool),
    BigNumber(Vec<u8>),
    Verbatim {
        format: [u8; 3],
        text: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("invalid frame type byte {0:#04x}")]
    BadType(u8),
    #[error("invalid length or number")]
    BadNumber,
    #[error("frame exceeds the length limit")]
    TooLong,
    #[error("frames nested too deeply")]
    TooDeep,
    #[error("missing CRLF terminator")]
    MissingCrlf,
}

const DEPTH_MAX: usize = 64;

impl Frame {
    /// Decodes one frame from the front of `buf`. `Ok(None)` means
    /// incomplete. `len_max` bounds every announced length (bulk bytes and
    /// aggregate element counts), so garbage can never cause a large
    /// allocation.
    pub fn decode(buf: &[u8], len_max: usize) -> Result<Option<(Frame, usize)>, FrameError> {
        let mut pos = 0;
        match decode_at(buf, &mut pos, len_max, 0)? {
            Some(f) => Ok(Some((f, pos))),
            None => Ok(None),
        }
    }

    /// Appends the RESP3 encoding of this frame (RESP2 where the types are
    /// RESP2 types).
    pub fn encode(&self, out: &mut Vec<u8>) {
        fn line(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
            out.push(tag);
            out.extend_from_slice(body);
            out.extend_from_slice(b"\r\n");
        }
        fn num(out: &mut Vec<u8>, tag: u8, n: impl itoa::Integer) {
            line(out, tag, itoa::Buffer::new().format(n).as_bytes());
        }
        match self {
            Frame::Simple(s) => line(out, b'+', s),
            // An error with CR or LF cannot be a `-` line: send a blob error.
            Frame::Error(s) if s.iter().any(|&b| b == b'\r' || b == b'\n') => {
                num(out, b'!', s.len());
                out.extend_from_slice(s);
                out.extend_from_slice(b"\r\n");
            }
            Frame::Error(s) => line(out, b'-', s),
            Frame::Integer(n) => num(out, b':', *n),
            Frame::Bulk(b) => {
                num(out, b'$', b.len());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Frame::Null => out.extend_from_slice(b"_\r\n"),
            Frame::Array(v) | Frame::Set(v) | Frame::Push(v) => {
                let tag = match self {
                    Frame::Array(_) => b'*',
                    Frame::Set(_) => b'~',
                    _ => b'>',
                };
                num(out, tag, v.len());
                v.iter().for_each(|f| f.encode(out));
            }
            Frame::Map(m) => {
                num(out, b'%', m.len());
                for (k, v) in m {
                    k.encode(out);
                    v.encode(out);
                }
            }
            Frame::Double(d) => line(out, b',', crate::writer::format_double(*d).as_bytes()),
            Frame::Boolean(b) => line(out, b'#', if *b { b"t" } else { b"f" }),
            Frame::BigNumber(s) => line(out, b'(', s),
            Frame::Verbatim { format, text } => {
                num(out, b'=', text.len() + 4);
                out.extend_from_slice(format);
                out.push(b':');
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

fn read_line<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, FrameError> {
    let rest = &buf[*pos..];
    let Some(cr) = memchr::memchr(b'\r', rest) else {
        return Ok(None);
    };
    if rest.len() < cr + 2 {
        return Ok(None);
    }
    if rest[cr + 1] != b'\n' {
        return Err(FrameError::MissingCrlf);
    }
    *pos += cr + 2;
    Ok(Some(&rest[..cr]))
}

fn length(line: &[u8], len_max: usize) -> Result<Option<usize>, FrameError> {
    let n = parse_i64_strict(line).ok_or(FrameError::BadNumber)?;
    if n == -1 {
        return Ok(None);
    }
    if n < 0 {
        return Err(FrameError::BadNumber);
    }
    if n as u64 > len_max as u64 {
        return Err(FrameError::TooLong);
    }
    Ok(Some(n as usize))
}

fn decode_at(
    buf: &[u8],
    pos: &mut usize,
    len_max: usize,
    depth: usize,
) -> Result<Option<Frame>, FrameError> {
    if depth > DEPTH_MAX {
        return Err(FrameError::TooDeep);
    }
    let Some(&tag) = buf.get(*pos) else {
        return Ok(None);
    };
    let start = *pos;
    *pos += 1;
    let Some(line) = read_line(buf, pos)? else {
        *pos = start;
        return Ok(None);
    };
    let frame = match tag {
        b'+' => Frame::Simple(line.to_vec()),
        b'-' => Frame::Error(line.to_vec()),
        b':' => Frame::Integer(parse_i64_strict(line).ok_or(FrameError::BadNumber)?),
        b'(' => Frame::BigNumber(line.to_vec()),
        b'_' if line.is_empty() => Frame::Null,
        b'#' => match line {
            b"t" => Frame::Boolean(true),
            b"f" => Frame::Boolean(false),
            _ => return Err(FrameError::BadNumber),
        },
        b',' => {
            let s = std::str::from_utf8(line).map_err(|_| FrameError::BadNumber)?;
            Frame::Double(s.parse::<f64>().map_err(|_| FrameError::BadNumber)?)
        }
        b'$' | b'=' | b'!' => {
            let Some(n) = length(line, len_max)? else {
                return Ok(Some(Frame::Null));
            };
            let body_start = *pos;
            if buf.len() < body_start + n + 2 {
                *pos = start;
                return Ok(None);
            }
            if &buf[body_start + n..body_start + n + 2] != b"\r\n" {
                return Err(FrameError::MissingCrlf);
            }
            *pos = body_start + n + 2;
            let body = &buf[body_start..body_start + n];
            match tag {
                b'$' => Frame::Bulk(body.to_vec()),
                b'!' => Frame::Error(body.to_vec()),
                _ => {
                    if n < 4 || body[3] != b':' {
                        return Err(FrameError::BadNumber);
                    }
                    Frame::Verbatim {
                        format: [body[0], body[1], body[2]],
                        text: body[4..].to_vec(),
                    }
                }
            }
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let Some(n) = length(line, len_max)? else {
                return Ok(Some(Frame::Null));
            };
            let pairs = matches!(tag, b'%' | b'|');
            let count = if pairs {
                n.checked_mul(2).ok_or(FrameError::TooLong)?
            } else {
                n
            };
            // Never reserve more than the bytes present could hold.
            let mut items = Vec::with_capacity(count.min((buf.len() - *pos) / 3));
            for _ in 0..count {
                match decode_at(buf, pos, len_max, depth + 1)? {
                    Some(f) => items.push(f),
                    None => {
                        *pos = start;
                        return Ok(None);
                    }
                }
            }
            match tag {
                b'*' => Frame::Array(items),
                b'~' => Frame::Set(items),
                b'>' => Frame::Push(items),
                b'|' => {
                    // An attribute precedes the real frame: skip it.
                    return match decode_at(buf, pos, len_max, depth + 1)? {
                        Some(f) => Ok(Some(f)),
                        None => {
                            *pos = start;
                            Ok(None)
                        }
                    };
                }
                _ => {
                    let mut it = items.into_iter();
                    let mut m = Vec::with_capacity(n);
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        m.push((k, v));
                    }
                    Frame::Map(m)
                }
            }
        }
        other => return Err(FrameError::BadType(other)),
    };
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let text = proptest::collection::vec(
            any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
            0..16,
        );
        let leaf = prop_oneof![
            text.clone().prop_map(Frame::Simple),
            text.prop_map(Frame::Error),
            any::<i64>().prop_map(Frame::Integer),
            proptest::collection::vec(any::<u8>(), 0..32).prop_map(Frame::Bulk),
            Just(Frame::Null),
            any::<bool>().prop_map(Frame::Boolean),
            (-1e12f64..1e12).prop_map(|d| Frame::Double((d * 8.0).round() / 8.0)),
            proptest::collection::vec(any::<u8>(), 0..16).prop_map(|text| Frame::Verbatim {
                format: *b"txt",
                text
            }),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Frame::Array),
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Frame::Set),
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Frame::Push),
                proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Frame::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn encode_then_decode_round_trips(f in arb_frame()) {
            let mut out = Vec::new();
            f.encode(&mut out);
            let (back, used) = Frame::decode(&out, 1 << 20).unwrap().unwrap();
            prop_assert_eq!(used, out.len());
            prop_assert_eq!(back, f);
        }

        #[test]
        fn every_strict_prefix_is_incomplete(f in arb_frame()) {
            let mut out = Vec::new();
            f.encode(&mut out);
            for cut in 0..out.len() {
                prop_assert_eq!(Frame::decode(&out[..cut], 1 << 20), Ok(None));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Frame::decode(&bytes, 1024);
        }
    }

    #[test]
    fn announced_lengths_over_the_limit_are_rejected() {
        assert_eq!(Frame::decode(b"$100\r\n", 10), Err(FrameError::TooLong));
        assert_eq!(
            Frame::decode(b"*999999999999\r\n", 1 << 20),
            Err(FrameError::TooLong)
        );
        assert_eq!(Frame::decode(b"$-2\r\n", 10), Err(FrameError::BadNumber));
        assert_eq!(Frame::decode(b"?\r\n", 10), Err(FrameError::BadType(b'?')));
    }

    #[test]
    fn errors_with_newlines_round_trip_as_blob_errors() {
        let f = Frame::Error(b"a\r\nbc".to_vec());
        let mut out = Vec::new();
        f.encode(&mut out);
        assert_eq!(Frame::decode(&out, 100).unwrap(), Some((f, out.len())));
    }

    #[test]
    fn resp2_nulls_decode_as_null() {
        assert_eq!(
            Frame::decode(b"$-1\r\n", 10).unwrap(),
            Some((Frame::Null, 5))
        );
        assert_eq!(
            Frame::decode(b"*-1\r\n", 10).unwrap(),
            Some((Frame::Null, 5))
        );
    }
}
