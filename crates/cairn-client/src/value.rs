//! Typed replies: turning a [`Frame`] into the Rust value a helper
//! returns. A reply of the wrong shape is an [`Error::Protocol`], never a
//! panic.

use cairn_proto::Frame;

use crate::error::{Error, Result};

/// A Rust value a reply can become.
pub trait FromReply: Sized {
    /// Converts one reply; errors name what was expected.
    fn from_reply(f: Frame) -> Result<Self>;
}

fn unexpected<T>(want: &str, f: &Frame) -> Result<T> {
    Err(Error::Protocol(format!("expected {want}, got {f:?}")))
}

impl FromReply for Frame {
    fn from_reply(f: Frame) -> Result<Self> {
        Ok(f)
    }
}

impl FromReply for Vec<u8> {
    fn from_reply(f: Frame) -> Result<Self> {
        match f {
            Frame::Bulk(b) | Frame::Simple(b) => Ok(b),
            Frame::Verbatim { text, .. } => Ok(text),
            Frame::Integer(n) => Ok(n.to_string().into_bytes()),
            other => unexpected("bytes", &other),
        }
    }
}

impl FromReply for String {
    fn from_reply(f: Frame) -> Result<Self> {
        String::from_utf8(Vec::<u8>::from_reply(f)?)
            .map_err(|e| Error::Protocol(format!("expected UTF-8 text: {e}")))
    }
}

impl FromReply for i64 {
    fn from_reply(f: Frame) -> Result<Self> {
        match &f {
            Frame::Integer(n) => Ok(*n),
            Frame::Bulk(b) | Frame::Simple(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .map_or_else(|| unexpected("an integer", &f), Ok),
            _ => unexpected("an integer", &f),
        }
    }
}

impl FromReply for u64 {
    fn from_reply(f: Frame) -> Result<Self> {
        let n = i64::from_reply(f)?;
        u64::try_from(n)
            .map_err(|_| Error::Protocol(format!("expected a non-negative integer, got {n}")))
    }
}

impl FromReply for bool {
    fn from_reply(f: Frame) -> Result<Self> {
        match f {
            Frame::Boolean(b) => Ok(b),
            Frame::Integer(n) => Ok(n != 0),
            Frame::Simple(s) if s == b"OK" => Ok(true),
            other => unexpected("a boolean", &other),
        }
    }
}

impl<T: FromReply> FromReply for Option<T> {
    fn from_reply(f: Frame) -> Result<Self> {
        match f {
            Frame::Null => Ok(None),
            other => T::from_reply(other).map(Some),
        }
    }
}

impl<T: FromReply> FromReply for Vec<T> {
    fn from_reply(f: Frame) -> Result<Self> {
        match f {
            Frame::Array(v) | Frame::Set(v) | Frame::Push(v) => {
                v.into_iter().map(T::from_reply).collect()
            }
            other => unexpected("an array", &other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_convert_to_the_asked_type_or_say_why_not() {
        assert_eq!(i64::from_reply(Frame::Bulk(b"-12".to_vec())).unwrap(), -12);
        assert_eq!(Option::<String>::from_reply(Frame::Null).unwrap(), None);
        assert_eq!(
            Vec::<Option<i64>>::from_reply(Frame::Array(vec![Frame::Integer(1), Frame::Null]))
                .unwrap(),
            vec![Some(1), None]
        );
        assert!(i64::from_reply(Frame::Bulk(b"x".to_vec())).is_err());
        assert!(u64::from_reply(Frame::Integer(-1)).is_err());
        assert!(String::from_reply(Frame::Bulk(vec![0xff])).is_err());
        assert!(bool::from_reply(Frame::Simple(b"OK".to_vec())).unwrap());
    }
}
