//! RESP2/RESP3 wire format for cairn.
//!
//! Two halves, both free of any I/O or async runtime:
//!
//! * [`RequestParser`] turns the bytes a client sent into the argument list
//!   of one command at a time (multibulk or inline form), without copying:
//!   arguments are ranges into the caller's buffer. It is resumable, so a
//!   huge request that arrives in many reads is scanned once, not once per
//!   read, and every length it trusts is checked against [`Limits`] first.
//! * [`Frame`] is a whole RESP3 value with a decoder ([`Frame::decode`]) and
//!   an encoder, used by clients, tests and proxies; the server writes its
//!   replies straight into a byte buffer with [`ReplyWriter`].
//!
//! The one thing not to get wrong: never allocate or reserve by a length the
//! peer announced before that length has been checked against a limit.

mod frame;
mod limits;
mod request;
mod writer;

pub use frame::{Frame, FrameError};
pub use limits::Limits;
pub use request::{parse_i64_strict, Args, ProtoError, RequestParser};
pub use writer::{format_double, Protocol, ReplyWriter};
