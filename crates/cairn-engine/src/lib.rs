//! cairn's keyspace engine: a pure, deterministic state machine.
//!
//! A [`Keyspace`] is one shard of keys. Commands in [`cmd`] parse their
//! arguments and apply to shards reached through [`cmd::Db`], writing the
//! reply to a [`Reply`] sink. A standalone server owns several shards
//! (split by [`slot`]), a Raft group owns one; both run the same code.
//!
//! ```
//! use cairn_engine::{cmd::{Command, get::Get, set::Set}, FrameReply, Keyspace};
//! let mut ks = Keyspace::new(42);
//! let mut out = FrameReply::new();
//! let argv: Vec<&[u8]> = vec![b"SET", b"k", b"v", b"PX", b"100"];
//! Set::parse(&argv).unwrap().apply(&mut ks, 1_000, &mut out);
//! let argv: Vec<&[u8]> = vec![b"GET", b"k"];
//! Get::parse(&argv).unwrap().apply(&mut ks, 1_050, &mut out);
//! Get::parse(&argv).unwrap().apply(&mut ks, 1_101, &mut out); // expired
//! assert_eq!(out.take().len(), 3);
//! ```
//!
//! The rule that must not be broken: nothing in this crate reads a clock,
//! an RNG or does I/O. Time is an argument; randomness is seeded state.

pub mod bits;
pub mod bytes;
pub mod chunkvec;
pub mod cmd;
pub mod evict;
pub mod glob;
pub mod hash;
pub mod keyspace;
pub mod list;
pub mod locks;
pub mod num;
pub mod replicated;
pub mod reply;
pub mod set;
pub mod slot;
pub mod snapshot;
pub mod table;
pub mod value;
pub mod zset;

pub use evict::Policy;
pub use keyspace::{AccessTracking, Keyspace, Stats};
pub use reply::{FrameReply, Reply};
pub use value::{Value, ValueType};
