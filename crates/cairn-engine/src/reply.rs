//! Where commands write their replies. The server encodes straight into
//! the connection's output buffer; tests and replication capture a
//! [`Frame`].

use cairn_proto::{Frame, ReplyWriter};

use crate::value::Value;

/// A sink for one command's reply, protocol-agnostic.
pub trait Reply {
    fn simple(&mut self, s: &str);
    /// An error with its code, e.g. `ERR syntax error`.
    fn error(&mut self, msg: &str);
    fn int(&mut self, n: i64);
    fn bulk(&mut self, b: &[u8]);
    fn null(&mut self);
    fn null_array(&mut self);
    fn array(&mut self, n: usize);
    fn map(&mut self, n: usize);
    fn double(&mut self, v: f64);

    fn ok(&mut self) {
        self.simple("OK");
    }

    /// A set of `n` elements (RESP3 `~`; an array in RESP2 and in a
    /// captured [`Frame`]).
    fn set(&mut self, n: usize) {
        self.array(n);
    }

    /// Whether the client speaks RESP3 (a few replies change shape, as
    /// in Redis: HRANDFIELD WITHVALUES nests its pairs).
    fn resp3(&self) -> bool {
        true
    }

    fn value(&mut self, v: &Value) {
        v.with_bytes(|b| self.bulk(b));
    }
}

impl Reply for ReplyWriter<'_> {
    fn resp3(&self) -> bool {
        self.proto == cairn_proto::Protocol::Resp3
    }
    fn simple(&mut self, s: &str) {
        ReplyWriter::simple(self, s)
    }
    fn error(&mut self, msg: &str) {
        ReplyWriter::error(self, msg)
    }
    fn int(&mut self, n: i64) {
        ReplyWriter::int(self, n)
    }
    fn bulk(&mut self, b: &[u8]) {
        ReplyWriter::bulk(self, b)
    }
    fn null(&mut self) {
        ReplyWriter::null(self)
    }
    fn null_array(&mut self) {
        ReplyWriter::null_array(self)
    }
    fn array(&mut self, n: usize) {
        ReplyWriter::array(self, n)
    }
    fn set(&mut self, n: usize) {
        ReplyWriter::set(self, n)
    }
    fn map(&mut self, n: usize) {
        ReplyWriter::map(self, n)
    }
    fn double(&mut self, v: f64) {
        ReplyWriter::double(self, v)
    }
}

/// Captures a reply as a [`Frame`] (RESP3 shapes).
#[derive(Default)]
pub struct FrameReply {
    done: Vec<Frame>,
    /// Open aggregates: (is_map, elements still expected, collected).
    open: Vec<(bool, usize, Vec<Frame>)>,
}

impl FrameReply {
    pub fn new() -> Self {
        Self::default()
    }

    /// The replies written so far, in order.
    pub fn take(&mut self) -> Vec<Frame> {
        std::mem::take(&mut self.done)
    }

    fn push(&mut self, f: Frame) {
        let mut f = f;
        loop {
            let Some((_, left, items)) = self.open.last_mut() else {
                self.done.push(f);
                return;
            };
            items.push(f);
            *left -= 1;
            if *left > 0 {
                return;
            }
            let Some((is_map, _, items)) = self.open.pop() else {
                return;
            };
            f = if is_map {
                let mut it = items.into_iter();
                let mut pairs = Vec::new();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                Frame::Map(pairs)
            } else {
                Frame::Array(items)
            };
        }
    }

    fn open(&mut self, is_map: bool, n: usize) {
        if n == 0 {
            self.push(if is_map {
                Frame::Map(vec![])
            } else {
                Frame::Array(vec![])
            });
        } else {
            self.open
                .push((is_map, if is_map { 2 * n } else { n }, Vec::new()));
        }
    }
}

impl Reply for FrameReply {
    fn simple(&mut self, s: &str) {
        self.push(Frame::Simple(s.as_bytes().to_vec()))
    }
    fn error(&mut self, msg: &str) {
        self.push(Frame::Error(msg.as_bytes().to_vec()))
    }
    fn int(&mut self, n: i64) {
        self.push(Frame::Integer(n))
    }
    fn bulk(&mut self, b: &[u8]) {
        self.push(Frame::Bulk(b.to_vec()))
    }
    fn null(&mut self) {
        self.push(Frame::Null)
    }
    fn null_array(&mut self) {
        self.push(Frame::Null)
    }
    fn array(&mut self, n: usize) {
        self.open(false, n)
    }
    fn map(&mut self, n: usize) {
        self.open(true, n)
    }
    fn double(&mut self, v: f64) {
        self.push(Frame::Double(v))
    }
}
