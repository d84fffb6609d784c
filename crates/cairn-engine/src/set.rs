//! Set values: unordered collections of distinct members, in one of three
//! encodings chosen by content and size, like Redis 7.2
//! (docs/design/datatypes.md).
//!
//! * **intset** — every member is an integer (Redis' `string2ll` rule):
//!   sorted ascending, each 2, 4 or 8 bytes, so iteration is ascending,
//!   exactly as Redis'.
//! * **listpack** — small sets: `(len u8, member)` entries in insertion
//!   order (a delete closes the gap), Redis' listpack order.
//! * **hashtable** — the rest: a dense vector of members plus an index of
//!   positions (the keyspace's own layout), so iteration order is the
//!   vector's (deterministic, replayable), SSCAN walks positions and
//!   SRANDMEMBER/SPOP sample in O(1).
//!
//! A [`Set`] is two words, held in the [`crate::Value`] itself: an intset
//! or a listpack is one exact-size buffer whose first byte says which
//! (an intset's width, or [`LISTPACK`] and a member count), so a small set
//! costs its buffer and nothing more (Redis: a 16-byte object and an
//! 8-byte intset header). A table is boxed.
//!
//! The thing not to get wrong: a set converts upward only (intset →
//! listpack → hashtable, or intset → hashtable) at Redis' thresholds,
//! which are constants, so every replica that applies the same commands
//! holds the same encoding in the same order.

use crate::bytes::SmallBytes;
use crate::bytes::{edit_boxed, malloc_size};
use crate::table::DenseTable;

/// Most members an intset holds (Redis' `set-max-intset-entries`).
pub const INTSET_ENTRIES_MAX: usize = 512;
/// Most members a listpack-encoded set holds (Redis 7.2's
/// `set-max-listpack-entries`).
pub const LISTPACK_ENTRIES_MAX: usize = 128;
/// Longest member a listpack-encoded set holds, in bytes (Redis 7.2's
/// `set-max-listpack-value`). Below 256, so a length is one byte.
pub const LISTPACK_VALUE_MAX: usize = 64;
/// Most members one set holds (positions are u32).
pub const MEMBERS_MAX: usize = crate::table::ENTRIES_MAX;

/// A set: two words, so a value holds it without a box of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set(Repr);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Repr {
    /// An intset or a listpack in one exact-size buffer ([`small`]).
    Small(Box<[u8]>),
    Table(Box<Table>),
}

/// First byte of a listpack's buffer, then a member count byte (at most
/// [`LISTPACK_ENTRIES_MAX`]) and the entries. An intset's first byte is
/// its width (2, 4 or 8), then the members; an empty buffer is an empty
/// intset.
const LISTPACK: u8 = 1;

/// A small set's buffer, read.
#[derive(Clone, Copy)]
enum Small<'a> {
    Ints(Ints<'a>),
    Listpack(Listpack<'a>),
}

fn small(buf: &[u8]) -> Small<'_> {
    match buf.split_first() {
        None => Small::Ints(Ints {
            width: 0,
            data: &[],
        }),
        Some((&LISTPACK, rest)) => {
            let (&count, data) = rest.split_first().unwrap_or((&0, &[]));
            Small::Listpack(Listpack {
                count: count as usize,
                data,
            })
        }
        Some((&width, data)) => Small::Ints(Ints {
            width: width as usize,
            data,
        }),
    }
}

/// Why a member could not be added: the set holds [`MEMBERS_MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetFull;

/// A member as stored: intset members are integers, formatted on demand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Member<'a> {
    Int(i64),
    Bytes(&'a [u8]),
}

impl Member<'_> {
    /// Calls `f` with the member's bytes (integers formatted on the stack).
    pub fn with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            Member::Int(n) => f(itoa::Buffer::new().format(*n).as_bytes()),
            Member::Bytes(b) => f(b),
        }
    }

    pub fn to_vec(&self) -> Vec<u8> {
        self.with(|b| b.to_vec())
    }
}

/// The small encoding's entries: `count` members as `(len u8, member)`.
#[derive(Clone, Copy)]
struct Listpack<'a> {
    count: usize,
    data: &'a [u8],
}

impl<'a> Listpack<'a> {
    fn iter(self) -> ListpackIter<'a> {
        ListpackIter { buf: self.data }
    }

    /// Offset of `member`'s length byte in the entries.
    fn find(self, member: &[u8]) -> Option<usize> {
        crate::bytes::prefetch(self.data);
        let mut at = 0;
        while let Some(&len) = self.data.get(at) {
            let end = at + 1 + len as usize;
            if self
                .data
                .get(at + 1..end)
                .is_some_and(|m| crate::bytes::same(m, member))
            {
                return Some(at);
            }
            at = end;
        }
        None
    }
}

/// Appends `member` to a listpack's buffer (an empty buffer becomes an
/// empty listpack first). Grown to the byte, as Redis' listpack: a
/// doubling buffer would leave up to half of every small set unused.
fn listpack_push(buf: &mut Vec<u8>, member: &[u8]) {
    debug_assert!(member.len() <= LISTPACK_VALUE_MAX);
    if buf.is_empty() {
        buf.extend_from_slice(&[LISTPACK, 0]);
    }
    buf.reserve_exact(1 + member.len());
    buf.push(member.len() as u8);
    buf.extend_from_slice(member);
    buf[1] += 1;
}

/// Removes the entry at `at` (from [`Listpack::find`]) of a listpack's
/// buffer.
fn listpack_remove(buf: &mut Vec<u8>, at: usize) {
    let at = 2 + at;
    let end = at + 1 + buf[at] as usize;
    buf.drain(at..end);
    buf[1] -= 1;
}

/// Members of a listpack in order.
pub struct ListpackIter<'a> {
    buf: &'a [u8],
}

impl<'a> Iterator for ListpackIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<Self::Item> {
        let (&len, rest) = self.buf.split_first()?;
        let (member, rest) = rest.split_at(len as usize);
        self.buf = rest;
        Some(member)
    }
}

/// The large encoding: members in a dense table (crate::table).
pub type Table = DenseTable<SmallBytes>;

fn as_int(member: &[u8]) -> Option<i64> {
    crate::num::parse_i64(member)
}

/// An intset's members: integers sorted ascending, each `width` (2, 4 or
/// 8) bytes little-endian, the narrowest that holds every member, as
/// Redis' intset: a small set of small numbers costs 2 bytes a member.
/// The width grows when a wider member arrives and never shrinks (as
/// Redis).
#[derive(Clone, Copy)]
struct Ints<'a> {
    /// 0 while empty.
    width: usize,
    data: &'a [u8],
}

/// The narrowest width that holds `n`.
fn int_width(n: i64) -> u8 {
    if i16::try_from(n).is_ok() {
        2
    } else if i32::try_from(n).is_ok() {
        4
    } else {
        8
    }
}

impl<'a> Ints<'a> {
    fn len(self) -> usize {
        self.data.len().checked_div(self.width).unwrap_or(0)
    }

    fn get(self, i: usize) -> Option<i64> {
        let w = self.width;
        let b = self.data.get(i * w..(i + 1) * w)?;
        Some(match w {
            2 => i64::from(i16::from_le_bytes([b[0], b[1]])),
            4 => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            _ => i64::from_le_bytes(b.try_into().unwrap_or([0; 8])),
        })
    }

    fn last(self) -> Option<i64> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    fn iter(self) -> impl Iterator<Item = i64> + 'a {
        (0..self.len()).filter_map(move |i| self.get(i))
    }

    /// As `slice::binary_search`.
    fn binary_search(self, n: i64) -> Result<usize, usize> {
        crate::bytes::prefetch(self.data);
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.get(mid).map(|m| m.cmp(&n)) {
                Some(std::cmp::Ordering::Less) => lo = mid + 1,
                Some(std::cmp::Ordering::Greater) => hi = mid,
                _ => return Ok(mid),
            }
        }
        Err(lo)
    }
}

/// `n`'s low `w` bytes, little-endian: `n` itself when it fits `w` bytes
/// (two's complement).
fn int_bytes(n: i64, w: u8) -> impl Iterator<Item = u8> {
    n.to_le_bytes().into_iter().take(w as usize)
}

/// Inserts `n` at position `at` (from [`Ints::binary_search`]) of an
/// intset's buffer, widening every member first when `n` needs it. Grown
/// to the byte.
fn ints_insert(buf: &mut Vec<u8>, at: usize, n: i64) {
    let w = int_width(n);
    if buf.first().is_none_or(|&width| w > width) {
        let Small::Ints(old) = small(buf) else {
            debug_assert!(false, "an intset's buffer");
            return;
        };
        let mut wide = Vec::with_capacity(1 + (old.len() + 1) * w as usize);
        wide.push(w);
        for m in old.iter() {
            wide.extend(int_bytes(m, w));
        }
        *buf = wide;
    }
    let width = (buf[0] as usize).min(8);
    let at = (1 + at * width).min(buf.len());
    let end = buf.len();
    buf.reserve_exact(width);
    buf.resize(end + width, 0);
    buf.copy_within(at..end, at + width);
    buf[at..at + width].copy_from_slice(&n.to_le_bytes()[..width]);
}

/// Removes the member at position `at` of an intset's buffer.
fn ints_remove(buf: &mut Vec<u8>, at: usize) {
    let w = buf.first().copied().unwrap_or(0) as usize;
    buf.drain(1 + at * w..1 + (at + 1) * w);
}

impl Set {
    /// An empty set for a first member and a hint of how many will come
    /// (Redis' `setTypeCreate`): an intset for an integer when the hint
    /// fits one, else a listpack when it fits one, else a table.
    pub fn for_members(first: &[u8], size_hint: usize, seed: u64) -> Set {
        if as_int(first).is_some() && size_hint <= INTSET_ENTRIES_MAX {
            Set::empty()
        } else if size_hint <= LISTPACK_ENTRIES_MAX {
            Set(Repr::Small(Box::new([LISTPACK, 0])))
        } else {
            Set(Repr::Table(Box::new(Table::new(
                seed,
                size_hint.min(LISTPACK_ENTRIES_MAX * 8),
            ))))
        }
    }

    /// The empty set a computed result (SUNIONSTORE, ...) starts from, as
    /// in Redis: an intset, converting as members arrive.
    pub fn empty() -> Set {
        Set(Repr::Small(Box::default()))
    }

    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Small(b) => match small(b) {
                Small::Ints(v) => v.len(),
                Small::Listpack(l) => l.count,
            },
            Repr::Table(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Redis' OBJECT ENCODING name.
    pub fn encoding(&self) -> &'static str {
        match &self.0 {
            Repr::Small(b) => match small(b) {
                Small::Ints(_) => "intset",
                Small::Listpack(_) => "listpack",
            },
            Repr::Table(_) => "hashtable",
        }
    }

    /// Whether the listpack encoding is in use (where [`Set::nth`] walks).
    pub fn is_listpack(&self) -> bool {
        matches!(&self.0, Repr::Small(b) if matches!(small(b), Small::Listpack(_)))
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        match &self.0 {
            Repr::Small(b) => match small(b) {
                Small::Ints(v) => as_int(member).is_some_and(|n| v.binary_search(n).is_ok()),
                Small::Listpack(l) => l.find(member).is_some(),
            },
            Repr::Table(t) => t.position(member).is_some(),
        }
    }

    /// Every member in the encoding's order (ascending for an intset,
    /// insertion order for a listpack, position order for a table).
    pub fn iter(&self) -> impl Iterator<Item = Member<'_>> + '_ {
        let (i, l, t) = match &self.0 {
            Repr::Small(b) => match small(b) {
                Small::Ints(v) => (Some(v.iter().map(Member::Int)), None, None),
                Small::Listpack(l) => (None, Some(l.iter().map(Member::Bytes)), None),
            },
            Repr::Table(t) => (
                None,
                None,
                Some(t.entries().iter().map(|m| Member::Bytes(m.as_slice()))),
            ),
        };
        i.into_iter()
            .flatten()
            .chain(l.into_iter().flatten())
            .chain(t.into_iter().flatten())
    }

    /// The member at position `i` (0..len) of the encoding's order; O(1)
    /// except for a listpack (a walk over at most 128 members).
    pub fn nth(&self, i: usize) -> Option<Member<'_>> {
        match &self.0 {
            Repr::Small(b) => match small(b) {
                Small::Ints(v) => v.get(i).map(Member::Int),
                Small::Listpack(l) => l.iter().nth(i).map(Member::Bytes),
            },
            Repr::Table(t) => t.entries().get(i).map(|m| Member::Bytes(m.as_slice())),
        }
    }

    /// Converts to the table encoding (no-op if it is one already), sized
    /// for `extra` more members.
    pub fn convert(&mut self, seed: u64, extra: usize) {
        if matches!(self.0, Repr::Table(_)) {
            return;
        }
        let mut t = Table::new(seed, self.len() + extra.min(LISTPACK_ENTRIES_MAX * 8));
        for m in self.iter() {
            let pushed = m.with(|b| t.push(SmallBytes::new(b)));
            debug_assert!(pushed);
        }
        self.0 = Repr::Table(Box::new(t));
    }

    /// Redis' `setTypeMaybeConvert`: before `size_hint` members are added
    /// (SADD), a set that would surely outgrow its encoding becomes a
    /// table at once.
    pub fn reserve(&mut self, size_hint: usize, seed: u64) {
        if self.outgrown_by(size_hint) {
            self.convert(seed, size_hint);
        }
    }

    /// Whether [`Set::reserve`] would convert for `size_hint` members.
    pub fn outgrown_by(&self, size_hint: usize) -> bool {
        match &self.0 {
            Repr::Small(b) => match small(b) {
                Small::Ints(_) => size_hint > INTSET_ENTRIES_MAX,
                Small::Listpack(_) => size_hint > LISTPACK_ENTRIES_MAX,
            },
            Repr::Table(_) => false,
        }
    }

    /// Adds a member, converting first when it outgrows the encoding
    /// (Redis' `setTypeAddAux`). Returns whether it is new.
    pub fn add(&mut self, member: &[u8], seed: u64) -> Result<bool, SetFull> {
        if let Repr::Small(b) = &mut self.0 {
            match small(b) {
                Small::Ints(v) => match as_int(member) {
                    Some(n) => {
                        let Err(at) = v.binary_search(n) else {
                            return Ok(false);
                        };
                        let len = v.len() + 1;
                        edit_boxed(b, |buf| ints_insert(buf, at, n));
                        if len > INTSET_ENTRIES_MAX {
                            self.convert(seed, 0);
                        }
                        return Ok(true);
                    }
                    None if v.len() < LISTPACK_ENTRIES_MAX
                        && member.len() <= LISTPACK_VALUE_MAX =>
                    {
                        // To a listpack of the integers, then the member
                        // (new: it is not an integer).
                        let mut buf = Vec::with_capacity(3 + 21 * v.len() + member.len());
                        for n in v.iter() {
                            listpack_push(&mut buf, itoa::Buffer::new().format(n).as_bytes());
                        }
                        listpack_push(&mut buf, member);
                        *b = buf.into_boxed_slice();
                        return Ok(true);
                    }
                    None => self.convert(seed, 1),
                },
                Small::Listpack(l) => {
                    if l.find(member).is_some() {
                        return Ok(false);
                    }
                    if l.count < LISTPACK_ENTRIES_MAX && member.len() <= LISTPACK_VALUE_MAX {
                        edit_boxed(b, |buf| listpack_push(buf, member));
                        return Ok(true);
                    }
                    self.convert(seed, 1);
                }
            }
        }
        let Repr::Table(t) = &mut self.0 else {
            unreachable!("a small set added above or converted");
        };
        if t.position(member).is_some() {
            Ok(false)
        } else if t.push(SmallBytes::new(member)) {
            Ok(true)
        } else {
            Err(SetFull)
        }
    }

    /// Removes a member; true if it was there.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        match &mut self.0 {
            Repr::Small(b) => match small(b) {
                Small::Ints(v) => match as_int(member).map(|n| v.binary_search(n)) {
                    Some(Ok(at)) => {
                        edit_boxed(b, |buf| ints_remove(buf, at));
                        true
                    }
                    _ => false,
                },
                Small::Listpack(l) => match l.find(member) {
                    Some(at) => {
                        edit_boxed(b, |buf| listpack_remove(buf, at));
                        true
                    }
                    None => false,
                },
            },
            Repr::Table(t) => t.remove(member).is_some(),
        }
    }

    /// For SSCAN: an intset or a listpack is visited whole in one call
    /// (cursor 0 back), as Redis does; a table is walked by position going
    /// down from `cursor` (0 starts at the top), up to `count` positions,
    /// which keeps SCAN's guarantee under swap-remove. Returns the next
    /// cursor, 0 when done.
    pub fn scan<'s>(&'s self, cursor: u64, count: usize, mut f: impl FnMut(Member<'s>)) -> u64 {
        let Repr::Table(t) = &self.0 else {
            self.iter().for_each(f);
            return 0;
        };
        let len = t.len() as u64;
        let mut i = if cursor == 0 { len } else { cursor.min(len) };
        let mut visited = 0;
        while i > 0 && visited < count.max(1) {
            i -= 1;
            visited += 1;
            f(Member::Bytes(t.entries()[i as usize].as_slice()));
        }
        i
    }

    /// Heap bytes this set owns, allocator-rounded: a small set's buffer,
    /// or a table's box and what it holds. (The set itself is inside the
    /// value: no box of its own.)
    pub fn heap_bytes(&self) -> usize {
        match &self.0 {
            Repr::Small(b) => malloc_size(b.len()),
            Repr::Table(t) => malloc_size(std::mem::size_of::<Table>()) + t.heap_bytes(),
        }
    }

    // ---- snapshot restore ----

    /// An empty set of an encoding: 0 intset, 1 listpack, 2 hashtable.
    pub fn restoring(encoding: u8, seed: u64) -> Option<Set> {
        match encoding {
            0 => Some(Set::empty()),
            1 => Some(Set(Repr::Small(Box::new([LISTPACK, 0])))),
            2 => Some(Set(Repr::Table(Box::new(Table::new(seed, 0))))),
            _ => None,
        }
    }

    /// The snapshot code of this set's encoding (see [`Set::restoring`]).
    pub fn encoding_code(&self) -> u8 {
        match &self.0 {
            Repr::Small(b) => match small(b) {
                Small::Ints(_) => 0,
                Small::Listpack(_) => 1,
            },
            Repr::Table(_) => 2,
        }
    }

    /// Appends a restored member in the set's order; an error names the
    /// rule it breaks (duplicate, out of order, too long, too many).
    pub fn push_restored(&mut self, member: &[u8]) -> Result<(), &'static str> {
        match &mut self.0 {
            Repr::Small(b) => match small(b) {
                Small::Ints(v) => {
                    let n = as_int(member).ok_or("intset member that is not an integer")?;
                    if v.last().is_some_and(|last| last >= n) {
                        return Err("intset members out of order");
                    }
                    if v.len() >= INTSET_ENTRIES_MAX {
                        return Err("intset with more than 512 members");
                    }
                    let at = v.len();
                    edit_boxed(b, |buf| ints_insert(buf, at, n));
                }
                Small::Listpack(l) => {
                    if member.len() > LISTPACK_VALUE_MAX {
                        return Err("listpack set member longer than 64 bytes");
                    }
                    if l.count >= LISTPACK_ENTRIES_MAX {
                        return Err("listpack set with more than 128 members");
                    }
                    if l.find(member).is_some() {
                        return Err("duplicate set member");
                    }
                    edit_boxed(b, |buf| listpack_push(buf, member));
                }
            },
            Repr::Table(t) => {
                if t.position(member).is_some() {
                    return Err("duplicate set member");
                }
                if !t.push(SmallBytes::new(member)) {
                    return Err("set with too many members");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(buf: &[u8]) -> Ints<'_> {
        match small(buf) {
            Small::Ints(v) => v,
            Small::Listpack(_) => panic!("not an intset"),
        }
    }

    #[test]
    fn an_intset_widens_only_as_needed_and_keeps_its_order() {
        let mut buf = Vec::new();
        let mut model: Vec<i64> = Vec::new();
        let values = [
            5,
            -3,
            i64::from(i16::MAX),
            i64::from(i16::MIN),
            70_000,
            i64::from(i32::MIN),
            i64::MAX,
            i64::MIN,
            0,
            -40_000,
        ];
        for (step, n) in values.into_iter().enumerate() {
            let at = ints(&buf).binary_search(n).unwrap_err();
            ints_insert(&mut buf, at, n);
            let Err(m) = model.binary_search(&n) else {
                panic!()
            };
            model.insert(m, n);
            assert_eq!(ints(&buf).iter().collect::<Vec<_>>(), model, "step {step}");
            let want = model.iter().map(|&m| int_width(m)).max().unwrap();
            assert_eq!(ints(&buf).width, want as usize);
            assert_eq!(buf.len(), 1 + model.len() * want as usize);
        }
        for &n in &model {
            assert!(ints(&buf).binary_search(n).is_ok());
        }
        assert_eq!(
            ints(&buf).binary_search(1),
            Err(model.binary_search(&1).unwrap_err())
        );
        let at = ints(&buf).binary_search(i64::MIN).unwrap();
        ints_remove(&mut buf, at);
        assert_eq!(ints(&buf).last(), Some(i64::MAX));
        assert_eq!(ints(&buf).get(0), Some(i64::from(i32::MIN)));
        assert_eq!(ints(&buf).get(99), None);
        // Sixteen small numbers take 2 bytes each after the width byte,
        // and the set is that buffer: nothing boxed besides.
        let mut small = Set::empty();
        for n in 0..16 {
            small.add(n.to_string().as_bytes(), 1).unwrap();
        }
        let Repr::Small(b) = &small.0 else { panic!() };
        assert_eq!(b.len(), 33);
        assert_eq!(small.heap_bytes(), malloc_size(33));
        assert_eq!(std::mem::size_of::<Set>(), 16);
    }

    fn members(s: &Set) -> Vec<Vec<u8>> {
        s.iter().map(|m| m.to_vec()).collect()
    }

    fn add_all(s: &mut Set, ms: &[&str]) {
        for m in ms {
            s.add(m.as_bytes(), 1).unwrap();
        }
    }

    #[test]
    fn intset_keeps_members_sorted_and_converts_to_listpack_on_a_string() {
        let mut s = Set::for_members(b"3", 3, 1);
        add_all(&mut s, &["3", "-1", "10"]);
        assert_eq!(s.encoding(), "intset");
        assert_eq!(
            members(&s),
            vec![b"-1".to_vec(), b"3".to_vec(), b"10".to_vec()]
        );
        assert_eq!(s.add(b"10", 1), Ok(false));
        // Not canonical integers: strings.
        assert!(!s.contains(b"010"));
        assert_eq!(s.add(b"010", 1), Ok(true));
        assert_eq!(s.encoding(), "listpack");
        assert_eq!(
            members(&s),
            vec![
                b"-1".to_vec(),
                b"3".to_vec(),
                b"10".to_vec(),
                b"010".to_vec()
            ]
        );
        assert!(s.contains(b"3"));
        assert!(s.remove(b"3"));
        assert!(!s.remove(b"3"));
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn intset_past_512_members_becomes_a_table() {
        let mut s = Set::for_members(b"0", 1, 1);
        for i in 0..512 {
            s.add(i.to_string().as_bytes(), 1).unwrap();
        }
        assert_eq!(s.encoding(), "intset");
        s.add(b"512", 1).unwrap();
        assert_eq!(s.encoding(), "hashtable");
        assert_eq!(s.len(), 513);
        assert!(s.contains(b"77"));
    }

    #[test]
    fn a_big_intset_takes_a_string_as_a_table() {
        let mut s = Set::for_members(b"0", 1, 1);
        for i in 0..128 {
            s.add(i.to_string().as_bytes(), 1).unwrap();
        }
        s.add(b"x", 1).unwrap();
        assert_eq!(s.encoding(), "hashtable");
        let mut s = Set::for_members(b"0", 1, 1);
        s.add(b"1", 1).unwrap();
        s.add(&[b'l'; 65], 1).unwrap();
        assert_eq!(s.encoding(), "hashtable");
    }

    #[test]
    fn listpack_converts_at_129_members_or_a_65_byte_member() {
        let mut s = Set::for_members(b"a", 1, 1);
        for i in 0..128 {
            s.add(format!("m{i}").as_bytes(), 1).unwrap();
        }
        assert_eq!(s.encoding(), "listpack");
        let before = members(&s);
        s.add(b"m128", 1).unwrap();
        assert_eq!(s.encoding(), "hashtable");
        assert_eq!(&members(&s)[..128], &before[..]);
        for i in 0..128 {
            assert!(s.remove(format!("m{i}").as_bytes()));
        }
        assert_eq!(s.encoding(), "hashtable");
        let mut s = Set::for_members(b"a", 1, 1);
        s.add(&[b'x'; 64], 1).unwrap();
        assert_eq!(s.encoding(), "listpack");
        s.add(&[b'x'; 65], 1).unwrap();
        assert_eq!(s.encoding(), "hashtable");
    }

    #[test]
    fn table_scan_visits_every_member_present_throughout() {
        let mut s = Set::for_members(b"x", 1000, 5);
        for i in 0..300 {
            s.add(format!("m{i}").as_bytes(), 5).unwrap();
        }
        let mut seen = std::collections::HashSet::new();
        let (mut cursor, mut round) = (0, 0);
        loop {
            cursor = s.scan(cursor, 7, |m| {
                seen.insert(m.to_vec());
            });
            for j in 0..3 {
                s.remove(format!("m{}", round * 3 + j).as_bytes());
            }
            round += 1;
            if cursor == 0 {
                break;
            }
        }
        for i in 150..300 {
            assert!(seen.contains(format!("m{i}").as_bytes()), "missed m{i}");
        }
    }

    #[test]
    fn table_byte_count_returns_to_zero() {
        let mut s = Set::for_members(b"x", 1000, 3);
        s.add(&[1; 100], 3).unwrap();
        s.add(b"short", 3).unwrap();
        s.remove(&[1; 100]);
        s.remove(b"short");
        let Repr::Table(t) = &s.0 else { panic!() };
        assert_eq!(t.data_bytes(), 0);
    }

    #[test]
    fn restore_rejects_what_the_encoding_cannot_hold() {
        let mut i = Set::restoring(0, 1).unwrap();
        i.push_restored(b"1").unwrap();
        assert!(i.push_restored(b"1").is_err());
        assert!(i.push_restored(b"0").is_err());
        assert!(i.push_restored(b"a").is_err());
        let mut l = Set::restoring(1, 1).unwrap();
        l.push_restored(b"a").unwrap();
        assert!(l.push_restored(b"a").is_err());
        assert!(l.push_restored(&[0; 65]).is_err());
        let mut t = Set::restoring(2, 1).unwrap();
        t.push_restored(b"a").unwrap();
        assert!(t.push_restored(b"a").is_err());
        assert!(Set::restoring(3, 1).is_none());
    }
}
