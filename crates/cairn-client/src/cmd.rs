//! A command to send: its arguments, which one routes it, and what a
//! retry may do to it.
//!
//! The one thing not to get wrong: a command of unknown kind is treated as
//! a non-idempotent write. Guessing "read" for a write would let the
//! client retry something that may already have been applied.

use bytes::Bytes;

/// Where a read may be served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadFrom {
    /// The group's leader: linearizable (the default).
    #[default]
    Leader,
    /// Any replica of the group, chosen by the load-balancing strategy:
    /// possibly stale (the replica may lag the leader), never from a
    /// node that does not hold the group.
    AnyReplica,
}

/// One command: a name and its arguments, plus the routing and retry
/// facts the client needs. Built with [`Cmd::new`] and [`Cmd::arg`].
///
/// ```
/// let c = cairn_client::Cmd::new("SET").arg("greeting").arg("hello");
/// assert_eq!(c.key(), Some(&b"greeting"[..]));
/// assert!(!c.is_read());
/// ```
#[derive(Clone, Debug)]
pub struct Cmd {
    args: Vec<Vec<u8>>,
    key_index: Option<usize>,
    read: bool,
    idempotent: bool,
    retry_if_unknown: bool,
    read_from: Option<ReadFrom>,
}

/// A value that can be one argument of a command.
pub trait ToArg {
    /// Appends the argument's bytes.
    fn write_arg(&self, out: &mut Vec<u8>);
}

macro_rules! bytes_arg {
    ($($t:ty),*) => {$(
        impl ToArg for $t {
            fn write_arg(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(self.as_ref());
            }
        }
    )*};
}
bytes_arg!([u8], Vec<u8>, str, String, Bytes);
impl<const N: usize> ToArg for [u8; N] {
    fn write_arg(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}
macro_rules! int_arg {
    ($($t:ty),*) => {$(
        impl ToArg for $t {
            fn write_arg(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(itoa::Buffer::new().format(*self).as_bytes());
            }
        }
    )*};
}
int_arg!(i32, i64, u32, u64, usize);
impl<T: ToArg + ?Sized> ToArg for &T {
    fn write_arg(&self, out: &mut Vec<u8>) {
        (**self).write_arg(out);
    }
}

/// Reads only: safe to retry, may be served by a replica when the caller
/// allows stale reads.
const READ: u8 = 1;
/// No key: routed by the strategy to any node.
const KEYLESS: u8 = 2;
/// A write whose repetition by the same caller has the effect of one: an
/// owner re-acquiring or renewing its own lock gets the same token,
/// releasing a released lock changes nothing.
const IDEMPOTENT: u8 = 4;

/// cairn's commands the client treats specially; any other is a keyed,
/// non-idempotent write.
const TABLE: &[(&str, u8)] = &[
    ("GET", READ),
    ("MGET", READ),
    ("STRLEN", READ),
    ("GETRANGE", READ),
    ("SUBSTR", READ),
    ("GETBIT", READ),
    ("BITCOUNT", READ),
    ("BITPOS", READ),
    ("BITFIELD_RO", READ),
    ("LCS", READ),
    ("EXISTS", READ),
    ("TOUCH", READ),
    ("TYPE", READ),
    ("TTL", READ),
    ("PTTL", READ),
    ("EXPIRETIME", READ),
    ("PEXPIRETIME", READ),
    ("OBJECT", READ),
    ("LOCK.INFO", READ),
    ("SEM.INFO", READ),
    ("LOCK.FENCE", READ),
    ("CAIRN.VERSIONS", READ),
    ("KEYS", READ | KEYLESS),
    ("SCAN", READ | KEYLESS),
    ("RANDOMKEY", READ | KEYLESS),
    ("DBSIZE", READ | KEYLESS),
    ("PING", READ | KEYLESS),
    ("ECHO", READ | KEYLESS),
    ("INFO", READ | KEYLESS),
    ("TIME", READ | KEYLESS),
    ("CLUSTER", READ | KEYLESS),
    ("COMMAND", READ | KEYLESS),
    ("MEMORY", READ | KEYLESS),
    ("CONFIG", KEYLESS),
    ("CLIENT", KEYLESS),
    ("FLUSHDB", KEYLESS),
    ("FLUSHALL", KEYLESS),
    ("SLOWLOG", KEYLESS),
    ("LATENCY", KEYLESS),
    ("SHUTDOWN", KEYLESS),
    ("LOCK.ACQUIRE", IDEMPOTENT),
    ("SEM.ACQUIRE", IDEMPOTENT),
    ("LOCK.RENEW", IDEMPOTENT),
    ("LOCK.RELEASE", IDEMPOTENT),
    ("LOCK.DEQUEUE", IDEMPOTENT),
];

impl Cmd {
    /// A command named `name` (case does not matter), with no arguments
    /// yet. Its kind (read or write) and key position come from a small
    /// table of cairn's commands; unknown commands are non-idempotent
    /// writes keyed by their first argument.
    pub fn new(name: impl AsRef<str>) -> Cmd {
        let upper = name.as_ref().to_ascii_uppercase();
        let flags = TABLE
            .iter()
            .find(|(n, _)| *n == upper)
            .map_or(0, |(_, f)| *f);
        let key_index = match upper.as_str() {
            _ if flags & KEYLESS != 0 => None,
            "OBJECT" => Some(2),
            _ => Some(1),
        };
        Cmd {
            args: vec![upper.into_bytes()],
            key_index,
            read: flags & READ != 0,
            idempotent: flags & (READ | IDEMPOTENT) != 0,
            retry_if_unknown: false,
            read_from: None,
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, a: impl ToArg) -> Cmd {
        let mut v = Vec::new();
        a.write_arg(&mut v);
        self.args.push(v);
        self
    }

    /// Routes by argument `i` (0 is the command name) instead of the
    /// table's choice; `None` makes the command keyless.
    pub fn route_by(mut self, i: Option<usize>) -> Cmd {
        self.key_index = i;
        self
    }

    /// Declares that applying this write twice has the effect of once,
    /// so it may be retried when its outcome is unknown.
    pub fn idempotent(mut self) -> Cmd {
        self.idempotent = true;
        self
    }

    /// Retries this write even when an attempt's outcome is unknown
    /// (it may then be applied more than once). Without this, such a
    /// write ends with [`Error::OutcomeUnknown`](crate::Error::OutcomeUnknown).
    pub fn retry_if_unknown(mut self) -> Cmd {
        self.retry_if_unknown = true;
        self
    }

    /// Where this read may be served, overriding the client's default.
    /// Ignored for writes: they always go to the leader.
    pub fn read_from(mut self, r: ReadFrom) -> Cmd {
        self.read_from = Some(r);
        self
    }

    /// The routing key, if the command has one.
    pub fn key(&self) -> Option<&[u8]> {
        self.key_index
            .and_then(|i| self.args.get(i))
            .map(Vec::as_slice)
    }

    /// Whether the command only reads.
    pub fn is_read(&self) -> bool {
        self.read
    }

    /// The command's name and arguments.
    pub fn args(&self) -> &[Vec<u8>] {
        &self.args
    }

    pub(crate) fn may_retry_unknown(&self) -> bool {
        self.idempotent || self.retry_if_unknown
    }

    pub(crate) fn read_from_or(&self, default: ReadFrom) -> ReadFrom {
        if self.read {
            self.read_from.unwrap_or(default)
        } else {
            ReadFrom::Leader
        }
    }

    /// The RESP multibulk encoding, built once and shared by every attempt.
    pub(crate) fn encode(&self) -> Bytes {
        let len: usize = self.args.iter().map(|a| a.len() + 16).sum();
        let mut out = Vec::with_capacity(len + 16);
        encode_args(&mut out, self.args.iter().map(Vec::as_slice));
        Bytes::from(out)
    }
}

/// Appends a RESP multibulk request of `args`.
pub(crate) fn encode_args<'a, I>(out: &mut Vec<u8>, args: I)
where
    I: ExactSizeIterator<Item = &'a [u8]>,
{
    header(out, b'*', args.len());
    for a in args {
        header(out, b'$', a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn header(out: &mut Vec<u8>, tag: u8, n: usize) {
    out.push(tag);
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::Frame;

    #[test]
    fn encoding_is_a_multibulk_the_proto_decoder_reads_back() {
        let c = Cmd::new("set").arg("k").arg(&b"v\r\n"[..]).arg(42i64);
        let bytes = c.encode();
        let (f, used) = Frame::decode(&bytes, 1 << 20).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        let want = ["SET", "k", "v\r\n", "42"]
            .iter()
            .map(|s| Frame::Bulk(s.as_bytes().to_vec()))
            .collect();
        assert_eq!(f, Frame::Array(want));
    }

    #[test]
    fn unknown_commands_are_non_idempotent_keyed_writes() {
        let c = Cmd::new("NEWCMD").arg("k");
        assert!(!c.is_read());
        assert!(!c.may_retry_unknown());
        assert_eq!(c.key(), Some(&b"k"[..]));
    }

    #[test]
    fn kinds_and_keys_come_from_the_table() {
        let get = Cmd::new("get").arg("k");
        assert!(get.is_read() && get.may_retry_unknown());
        let incr = Cmd::new("INCR").arg("k");
        assert!(!incr.is_read() && !incr.may_retry_unknown());
        assert!(incr.clone().retry_if_unknown().may_retry_unknown());
        assert!(Cmd::new("LOCK.RENEW").arg("l").may_retry_unknown());
        assert_eq!(Cmd::new("PING").key(), None);
        assert_eq!(
            Cmd::new("OBJECT").arg("ENCODING").arg("k").key(),
            Some(&b"k"[..])
        );
    }

    #[test]
    fn writes_ignore_a_stale_read_preference() {
        let set = Cmd::new("SET").read_from(ReadFrom::AnyReplica);
        assert_eq!(set.read_from_or(ReadFrom::AnyReplica), ReadFrom::Leader);
        let get = Cmd::new("GET").read_from(ReadFrom::AnyReplica);
        assert_eq!(get.read_from_or(ReadFrom::Leader), ReadFrom::AnyReplica);
    }
}
