//! Set values: unordered collections of distinct members, in one of three
//! encodings chosen by content and size, like Redis 7.2
//! (docs/design/datatypes.md).
//!
//! * **intset** — every member is an integer (Redis' `string2ll` rule):
//!   a sorted `Vec<i64>`, so iteration is ascending, exactly as Redis'.
//! * **listpack** — small sets: one flat buffer of `(len u8, member)` in
//!   insertion order (a delete closes the gap), Redis' listpack order.
//! * **hashtable** — the rest: a dense vector of members plus an index of
//!   positions (the keyspace's own layout), so iteration order is the
//!   vector's (deterministic, replayable), SSCAN walks positions and
//!   SRANDMEMBER/SPOP sample in O(1).
//!
//! The thing not to get wrong: a set converts upward only (intset →
//! listpack → hashtable, or intset → hashtable) at Redis' thresholds,
//! which are constants, so every replica that applies the same commands
//! holds the same encoding in the same order.

use crate::bytes::malloc_size;
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Set {
    /// Sorted ascending, distinct.
    Intset(Intset),
    Listpack(Listpack),
    /// Boxed: a small set pays for a listpack's three words, not a
    /// table's nine.
    Table(Box<Table>),
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

/// The small encoding: members in one buffer, each length one byte.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listpack {
    buf: Vec<u8>,
    len: u16,
}

impl Listpack {
    fn iter(&self) -> ListpackIter<'_> {
        ListpackIter { buf: &self.buf }
    }

    /// Byte offset of `member`'s length byte.
    fn find(&self, member: &[u8]) -> Option<usize> {
        let mut at = 0;
        while at < self.buf.len() {
            let len = self.buf[at] as usize;
            if &self.buf[at + 1..at + 1 + len] == member {
                return Some(at);
            }
            at += 1 + len;
        }
        None
    }

    fn push(&mut self, member: &[u8]) {
        debug_assert!(member.len() <= LISTPACK_VALUE_MAX);
        // Grown to the byte, as Redis' listpack: a doubling Vec would
        // leave up to half of every small set unused.
        self.buf.reserve_exact(1 + member.len());
        self.buf.push(member.len() as u8);
        self.buf.extend_from_slice(member);
        self.len += 1;
    }

    fn remove(&mut self, member: &[u8]) -> bool {
        let Some(at) = self.find(member) else {
            return false;
        };
        let end = at + 1 + self.buf[at] as usize;
        self.buf.drain(at..end);
        self.len -= 1;
        if self.buf.capacity() - self.buf.len() > 32 {
            self.buf.shrink_to_fit();
        }
        true
    }
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
pub type Table = DenseTable<Box<[u8]>>;

fn as_int(member: &[u8]) -> Option<i64> {
    crate::num::parse_i64(member)
}

/// Integers sorted ascending in one buffer, each 2, 4 or 8 bytes (the
/// narrowest that holds every member, as Redis' intset): a small set of
/// small numbers costs 2 bytes a member. The width grows when a wider
/// member arrives and never shrinks (as Redis).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Intset {
    /// 0 while empty, then 2, 4 or 8.
    width: u8,
    data: Vec<u8>,
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

impl Intset {
    pub fn len(&self) -> usize {
        if self.width == 0 {
            0
        } else {
            self.data.len() / self.width as usize
        }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<i64> {
        let w = self.width as usize;
        let b = self.data.get(i * w..(i + 1) * w)?;
        Some(match w {
            2 => i64::from(i16::from_le_bytes([b[0], b[1]])),
            4 => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            _ => i64::from_le_bytes(b.try_into().unwrap_or([0; 8])),
        })
    }

    pub fn last(&self) -> Option<i64> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    pub fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// As `slice::binary_search`.
    pub fn binary_search(&self, n: &i64) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.get(mid).map(|m| m.cmp(n)) {
                Some(std::cmp::Ordering::Less) => lo = mid + 1,
                Some(std::cmp::Ordering::Greater) => hi = mid,
                _ => return Ok(mid),
            }
        }
        Err(lo)
    }

    fn put(out: &mut Vec<u8>, n: i64, w: u8) {
        match w {
            2 => out.extend_from_slice(&(n as i16).to_le_bytes()),
            4 => out.extend_from_slice(&(n as i32).to_le_bytes()),
            _ => out.extend_from_slice(&n.to_le_bytes()),
        }
    }

    /// Inserts `n` at position `at` (from `binary_search`), widening every
    /// member first when `n` needs it. Grown to the byte.
    pub fn insert(&mut self, at: usize, n: i64) {
        let w = int_width(n);
        if w > self.width {
            let mut data = Vec::with_capacity((self.len() + 1) * w as usize);
            for m in self.iter() {
                Self::put(&mut data, m, w);
            }
            self.data = data;
            self.width = w;
        }
        let w = self.width as usize;
        let mut bytes = Vec::with_capacity(w);
        Self::put(&mut bytes, n, self.width);
        self.data.reserve_exact(w);
        self.data.splice(at * w..at * w, bytes);
    }

    /// Appends `n` (snapshot restore: members arrive in order).
    pub fn push(&mut self, n: i64) {
        let at = self.len();
        self.insert(at, n);
    }

    pub fn remove(&mut self, at: usize) {
        let w = self.width as usize;
        self.data.drain(at * w..(at + 1) * w);
        if self.data.capacity() - self.data.len() > 32 {
            self.data.shrink_to_fit();
        }
    }
}

impl Set {
    /// An empty set for a first member and a hint of how many will come
    /// (Redis' `setTypeCreate`): an intset for an integer when the hint
    /// fits one, else a listpack when it fits one, else a table.
    pub fn for_members(first: &[u8], size_hint: usize, seed: u64) -> Set {
        if as_int(first).is_some() && size_hint <= INTSET_ENTRIES_MAX {
            Set::Intset(Intset::default())
        } else if size_hint <= LISTPACK_ENTRIES_MAX {
            Set::Listpack(Listpack::default())
        } else {
            Set::Table(Box::new(Table::new(
                seed,
                size_hint.min(LISTPACK_ENTRIES_MAX * 8),
            )))
        }
    }

    /// The empty set a computed result (SUNIONSTORE, ...) starts from, as
    /// in Redis: an intset, converting as members arrive.
    pub fn empty() -> Set {
        Set::Intset(Intset::default())
    }

    pub fn len(&self) -> usize {
        match self {
            Set::Intset(v) => v.len(),
            Set::Listpack(l) => l.len as usize,
            Set::Table(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Redis' OBJECT ENCODING name.
    pub fn encoding(&self) -> &'static str {
        match self {
            Set::Intset(_) => "intset",
            Set::Listpack(_) => "listpack",
            Set::Table(_) => "hashtable",
        }
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        match self {
            Set::Intset(v) => as_int(member).is_some_and(|n| v.binary_search(&n).is_ok()),
            Set::Listpack(l) => l.find(member).is_some(),
            Set::Table(t) => t.position(member).is_some(),
        }
    }

    /// Every member in the encoding's order (ascending for an intset,
    /// insertion order for a listpack, position order for a table).
    pub fn iter(&self) -> impl Iterator<Item = Member<'_>> + '_ {
        let (i, l, t) = match self {
            Set::Intset(v) => (Some(v.iter().map(Member::Int)), None, None),
            Set::Listpack(l) => (None, Some(l.iter().map(Member::Bytes)), None),
            Set::Table(t) => (
                None,
                None,
                Some(t.entries().iter().map(|m| Member::Bytes(m))),
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
        match self {
            Set::Intset(v) => v.get(i).map(Member::Int),
            Set::Listpack(l) => l.iter().nth(i).map(Member::Bytes),
            Set::Table(t) => t.entries().get(i).map(|m| Member::Bytes(m)),
        }
    }

    /// Converts to the table encoding (no-op if it is one already), sized
    /// for `extra` more members.
    pub fn convert(&mut self, seed: u64, extra: usize) {
        if matches!(self, Set::Table(_)) {
            return;
        }
        let mut t = Table::new(seed, self.len() + extra.min(LISTPACK_ENTRIES_MAX * 8));
        for m in self.iter() {
            let pushed = m.with(|b| t.push(b.into()));
            debug_assert!(pushed);
        }
        *self = Set::Table(Box::new(t));
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
        match self {
            Set::Intset(_) => size_hint > INTSET_ENTRIES_MAX,
            Set::Listpack(_) => size_hint > LISTPACK_ENTRIES_MAX,
            Set::Table(_) => false,
        }
    }

    /// Adds a member, converting first when it outgrows the encoding
    /// (Redis' `setTypeAddAux`). Returns whether it is new.
    pub fn add(&mut self, member: &[u8], seed: u64) -> Result<bool, SetFull> {
        match self {
            Set::Intset(v) => match as_int(member) {
                Some(n) => {
                    let Err(at) = v.binary_search(&n) else {
                        return Ok(false);
                    };
                    v.insert(at, n);
                    if v.len() > INTSET_ENTRIES_MAX {
                        self.convert(seed, 0);
                    }
                    return Ok(true);
                }
                None if v.len() < LISTPACK_ENTRIES_MAX && member.len() <= LISTPACK_VALUE_MAX => {
                    let mut l = Listpack::default();
                    for n in v.iter() {
                        l.push(itoa::Buffer::new().format(n).as_bytes());
                    }
                    *self = Set::Listpack(l);
                }
                None => self.convert(seed, 1),
            },
            Set::Listpack(l) => {
                if l.find(member).is_some() {
                    return Ok(false);
                }
                if (l.len as usize) < LISTPACK_ENTRIES_MAX && member.len() <= LISTPACK_VALUE_MAX {
                    l.push(member);
                    return Ok(true);
                }
                self.convert(seed, 1);
            }
            Set::Table(_) => {}
        }
        match self {
            Set::Listpack(l) => {
                // Just converted from an intset: the member is not an
                // integer, so it is new.
                l.push(member);
                Ok(true)
            }
            Set::Table(t) => {
                if t.position(member).is_some() {
                    Ok(false)
                } else if t.push(member.into()) {
                    Ok(true)
                } else {
                    Err(SetFull)
                }
            }
            Set::Intset(_) => unreachable!("an intset takes integers above"),
        }
    }

    /// Removes a member; true if it was there.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        match self {
            Set::Intset(v) => match as_int(member).map(|n| v.binary_search(&n)) {
                Some(Ok(at)) => {
                    v.remove(at);
                    true
                }
                _ => false,
            },
            Set::Listpack(l) => l.remove(member),
            Set::Table(t) => t.remove(member).is_some(),
        }
    }

    /// For SSCAN: an intset or a listpack is visited whole in one call
    /// (cursor 0 back), as Redis does; a table is walked by position going
    /// down from `cursor` (0 starts at the top), up to `count` positions,
    /// which keeps SCAN's guarantee under swap-remove. Returns the next
    /// cursor, 0 when done.
    pub fn scan<'s>(&'s self, cursor: u64, count: usize, mut f: impl FnMut(Member<'s>)) -> u64 {
        let Set::Table(t) = self else {
            self.iter().for_each(f);
            return 0;
        };
        let len = t.len() as u64;
        let mut i = if cursor == 0 { len } else { cursor.min(len) };
        let mut visited = 0;
        while i > 0 && visited < count.max(1) {
            i -= 1;
            visited += 1;
            f(Member::Bytes(&t.entries()[i as usize]));
        }
        i
    }

    /// Heap bytes this set owns, allocator-rounded (the box holding it is
    /// counted by [`crate::Value::heap_bytes`]).
    pub fn heap_bytes(&self) -> usize {
        match self {
            Set::Intset(v) => malloc_size(v.data.capacity()),
            Set::Listpack(l) => malloc_size(l.buf.capacity()),
            Set::Table(t) => malloc_size(std::mem::size_of::<Table>()) + t.heap_bytes(),
        }
    }

    // ---- snapshot restore ----

    /// An empty set of an encoding: 0 intset, 1 listpack, 2 hashtable.
    pub fn restoring(encoding: u8, seed: u64) -> Option<Set> {
        match encoding {
            0 => Some(Set::Intset(Intset::default())),
            1 => Some(Set::Listpack(Listpack::default())),
            2 => Some(Set::Table(Box::new(Table::new(seed, 0)))),
            _ => None,
        }
    }

    /// The snapshot code of this set's encoding (see [`Set::restoring`]).
    pub fn encoding_code(&self) -> u8 {
        match self {
            Set::Intset(_) => 0,
            Set::Listpack(_) => 1,
            Set::Table(_) => 2,
        }
    }

    /// Appends a restored member in the set's order; an error names the
    /// rule it breaks (duplicate, out of order, too long, too many).
    pub fn push_restored(&mut self, member: &[u8]) -> Result<(), &'static str> {
        match self {
            Set::Intset(v) => {
                let n = as_int(member).ok_or("intset member that is not an integer")?;
                if v.last().is_some_and(|last| last >= n) {
                    return Err("intset members out of order");
                }
                if v.len() >= INTSET_ENTRIES_MAX {
                    return Err("intset with more than 512 members");
                }
                v.push(n);
            }
            Set::Listpack(l) => {
                if member.len() > LISTPACK_VALUE_MAX {
                    return Err("listpack set member longer than 64 bytes");
                }
                if l.len as usize >= LISTPACK_ENTRIES_MAX {
                    return Err("listpack set with more than 128 members");
                }
                if l.find(member).is_some() {
                    return Err("duplicate set member");
                }
                l.push(member);
            }
            Set::Table(t) => {
                if t.position(member).is_some() {
                    return Err("duplicate set member");
                }
                if !t.push(member.into()) {
                    return Err("set with too many members");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_intset_widens_only_as_needed_and_keeps_its_order() {
        let mut v = Intset::default();
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
            let at = v.binary_search(&n).unwrap_err();
            v.insert(at, n);
            let Err(m) = model.binary_search(&n) else {
                panic!()
            };
            model.insert(m, n);
            assert_eq!(v.iter().collect::<Vec<_>>(), model, "step {step}");
            let want = model.iter().map(|&m| int_width(m)).max().unwrap();
            assert_eq!(v.width, want);
            assert_eq!(v.data.len(), model.len() * want as usize);
        }
        for n in &model {
            assert!(v.binary_search(n).is_ok());
        }
        assert_eq!(
            v.binary_search(&1),
            Err(model.binary_search(&1).unwrap_err())
        );
        let at = v.binary_search(&i64::MIN).unwrap();
        v.remove(at);
        assert_eq!(v.last(), Some(i64::MAX));
        assert_eq!(v.get(0), Some(i64::from(i32::MIN)));
        assert_eq!(v.get(99), None);
        // Sixteen small numbers take 2 bytes each.
        let mut small = Intset::default();
        for n in 0..16 {
            small.push(n);
        }
        assert_eq!((small.width, small.data.capacity()), (2, 32));
    }

    use super::*;

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
        let Set::Table(t) = &s else { panic!() };
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
