//! The value stored under a key.
//!
//! Strings come in four encodings chosen by content, like Redis: integers
//! (`int`), short strings inline in the table slot (`embstr`), longer ones
//! in one exact-size allocation (`raw`), and strings that grew by APPEND or
//! SETRANGE in a growable buffer so repeated appends stay amortised O(1).
//! Lists and sorted sets are boxed variants (so the enum stays three
//! words); hashes and sets are two-word handles held in the value itself
//! (a small one is one exact-size buffer, a large one a box): each type
//! has encodings of its own ([`crate::hash`],
//! [`crate::set`], [`crate::list`], [`crate::zset`]).

use crate::bytes::{malloc_size, INLINE_MAX};
use crate::hash::Hash;
use crate::list::List;
use crate::set::Set;
use crate::zset::ZSet;

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Value {
    Int(i64),
    Inline { len: u8, data: [u8; INLINE_MAX] },
    Heap(Box<[u8]>),
    Growable(Box<Vec<u8>>),
    Hash(Hash),
    Set(Set),
    List(Box<List>),
    ZSet(Box<ZSet>),
}

/// The Redis type name of a value (TYPE, SCAN TYPE).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ValueType {
    String,
    Hash,
    Set,
    List,
    ZSet,
}

impl ValueType {
    pub fn name(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Hash => "hash",
            ValueType::Set => "set",
            ValueType::List => "list",
            ValueType::ZSet => "zset",
        }
    }
}

/// A collection type of [`Value`] (hash, set, sorted set): how the keyspace's
/// generic write path finds it in a value, stores it, and sees it empty.
pub(crate) trait Collection: Sized {
    /// The kind of blocked pop a change to this type may serve (reported
    /// ready by the write path), if any.
    const BLOCKED: Option<crate::keyspace::Blocked> = None;
    /// The collection in `v`, if `v` holds this type.
    fn of_mut(v: &mut Value) -> Option<&mut Self>;
    fn into_value(self) -> Value;
    fn is_empty(&self) -> bool;
}

impl Collection for Hash {
    fn of_mut(v: &mut Value) -> Option<&mut Self> {
        v.as_hash_mut()
    }

    fn into_value(self) -> Value {
        Value::Hash(self)
    }

    fn is_empty(&self) -> bool {
        Hash::is_empty(self)
    }
}

impl Collection for Set {
    fn of_mut(v: &mut Value) -> Option<&mut Self> {
        v.as_set_mut()
    }

    fn into_value(self) -> Value {
        Value::Set(self)
    }

    fn is_empty(&self) -> bool {
        Set::is_empty(self)
    }
}

impl Collection for ZSet {
    const BLOCKED: Option<crate::keyspace::Blocked> = Some(crate::keyspace::Blocked::ZSet);

    fn of_mut(v: &mut Value) -> Option<&mut Self> {
        v.as_zset_mut()
    }

    fn into_value(self) -> Value {
        Value::ZSet(Box::new(self))
    }

    fn is_empty(&self) -> bool {
        ZSet::is_empty(self)
    }
}

/// Longest string Redis turns into an integer encoding.
const INT_ENCODABLE_LEN_MAX: usize = 20;

impl Value {
    /// A string value, stored as an integer when it is the canonical
    /// decimal form of an i64 (so "12" is `int` but "012" is not).
    pub fn from_bytes(b: &[u8]) -> Value {
        if b.len() <= INT_ENCODABLE_LEN_MAX {
            if let Some(n) = crate::num::parse_i64(b) {
                return Value::Int(n);
            }
        }
        Value::from_bytes_raw(b)
    }

    fn from_bytes_raw(b: &[u8]) -> Value {
        if b.len() <= INLINE_MAX {
            let mut data = [0u8; INLINE_MAX];
            data[..b.len()].copy_from_slice(b);
            Value::Inline {
                len: b.len() as u8,
                data,
            }
        } else {
            Value::Heap(b.into())
        }
    }

    pub fn value_type(&self) -> ValueType {
        match self {
            Value::Hash(_) => ValueType::Hash,
            Value::Set(_) => ValueType::Set,
            Value::List(_) => ValueType::List,
            Value::ZSet(_) => ValueType::ZSet,
            _ => ValueType::String,
        }
    }

    pub fn is_string(&self) -> bool {
        !matches!(
            self,
            Value::Hash(_) | Value::Set(_) | Value::List(_) | Value::ZSet(_)
        )
    }

    /// The list this value holds, if it is one.
    pub fn as_list(&self) -> Option<&List> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn as_list_mut(&mut self) -> Option<&mut List> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The sorted set this value holds, if it is one.
    pub fn as_zset(&self) -> Option<&ZSet> {
        match self {
            Value::ZSet(z) => Some(z),
            _ => None,
        }
    }

    pub fn as_zset_mut(&mut self) -> Option<&mut ZSet> {
        match self {
            Value::ZSet(z) => Some(z),
            _ => None,
        }
    }

    /// The hash this value holds, if it is one.
    pub fn as_hash(&self) -> Option<&Hash> {
        match self {
            Value::Hash(h) => Some(h),
            _ => None,
        }
    }

    pub fn as_hash_mut(&mut self) -> Option<&mut Hash> {
        match self {
            Value::Hash(h) => Some(h),
            _ => None,
        }
    }

    /// The set this value holds, if it is one.
    pub fn as_set(&self) -> Option<&Set> {
        match self {
            Value::Set(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_set_mut(&mut self) -> Option<&mut Set> {
        match self {
            Value::Set(s) => Some(s),
            _ => None,
        }
    }

    /// Calls `f` with the string bytes (integers are formatted on the
    /// stack, never allocated). Callers check [`Value::is_string`] first
    /// (WRONGTYPE); a hash or a set gives empty bytes.
    #[inline]
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            Value::Int(n) => f(itoa::Buffer::new().format(*n).as_bytes()),
            Value::Inline { len, data } => f(&data[..*len as usize]),
            Value::Heap(b) => f(b),
            Value::Growable(v) => f(v),
            Value::Hash(_) | Value::Set(_) | Value::List(_) | Value::ZSet(_) => {
                debug_assert!(
                    false,
                    "string bytes of a collection: a missing WRONGTYPE check"
                );
                f(&[])
            }
        }
    }

    pub fn to_vec(&self) -> Vec<u8> {
        self.with_bytes(|b| b.to_vec())
    }

    pub fn str_len(&self) -> usize {
        match self {
            Value::Int(n) => itoa::Buffer::new().format(*n).len(),
            Value::Inline { len, .. } => *len as usize,
            Value::Heap(b) => b.len(),
            Value::Growable(v) => v.len(),
            Value::Hash(_) | Value::Set(_) | Value::List(_) | Value::ZSet(_) => 0,
        }
    }

    /// The integer this string holds, if it is one (INCR's rule: the whole
    /// string must be a valid i64).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::Hash(_) | Value::Set(_) | Value::List(_) | Value::ZSet(_) => None,
            other => other.with_bytes(crate::num::parse_i64),
        }
    }

    /// A mutable growable buffer holding this string, converting in place.
    pub fn make_growable(&mut self) -> &mut Vec<u8> {
        if !matches!(self, Value::Growable(_)) {
            let v = self.to_vec();
            *self = Value::Growable(Box::new(v));
        }
        match self {
            Value::Growable(v) => v,
            _ => unreachable!("converted just above"),
        }
    }

    /// Redis' OBJECT ENCODING name.
    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::Inline { .. } => "embstr",
            Value::Heap(b) if b.len() <= 44 => "embstr",
            Value::Heap(_) | Value::Growable(_) => "raw",
            Value::Hash(h) => h.encoding(),
            Value::Set(s) => s.encoding(),
            Value::List(l) => l.encoding(),
            Value::ZSet(z) => z.encoding(),
        }
    }

    /// Heap bytes owned by this value beyond its inline three words.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Value::Int(_) | Value::Inline { .. } => 0,
            Value::Heap(b) => malloc_size(b.len()),
            Value::Growable(v) => {
                malloc_size(v.capacity()) + malloc_size(std::mem::size_of::<Vec<u8>>())
            }
            // Held in the value itself: no box of their own.
            Value::Hash(h) => h.heap_bytes(),
            Value::Set(s) => s.heap_bytes(),
            Value::List(l) => malloc_size(std::mem::size_of::<List>()) + l.heap_bytes(),
            Value::ZSet(z) => malloc_size(std::mem::size_of::<ZSet>()) + z.heap_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_is_three_words() {
        assert_eq!(std::mem::size_of::<Value>(), 24);
        // Held unboxed: a small hash or set is its buffer and nothing more.
        assert_eq!(std::mem::size_of::<Hash>(), 16);
        assert_eq!(std::mem::size_of::<Set>(), 16);
    }

    #[test]
    fn canonical_integers_are_int_encoded_and_round_trip() {
        assert_eq!(Value::from_bytes(b"123"), Value::Int(123));
        assert_eq!(Value::from_bytes(b"-5").encoding(), "int");
        assert_eq!(Value::from_bytes(b"0123").encoding(), "embstr");
        assert_eq!(Value::from_bytes(b"0123").to_vec(), b"0123");
        assert_eq!(Value::from_bytes(b"123").to_vec(), b"123");
        assert_eq!(Value::from_bytes(&[b'x'; 50]).encoding(), "raw");
    }

    #[test]
    fn growable_keeps_content() {
        let mut v = Value::from_bytes(b"12");
        v.make_growable().extend_from_slice(b"ab");
        assert_eq!(v.to_vec(), b"12ab");
        assert_eq!(v.str_len(), 4);
    }
}
