//! Hash values: a map of fields to values, in one of two encodings chosen
//! by size, like Redis (docs/design/datatypes.md).
//!
//! * **listpack** — small hashes: one exact-size buffer of
//!   `(field_len u8, field, value_len u8, value)` pairs in insertion order
//!   after a count byte, held in the value itself ([`Hash`] is two words):
//!   one allocation, two bytes of overhead per pair; lookups are a linear
//!   walk over at most [`LISTPACK_ENTRIES_MAX`] pairs.
//! * **hashtable** — the rest: a dense vector of pairs plus an index of
//!   positions (the keyspace's own layout), so iteration order is the
//!   vector's (deterministic, replayable), HSCAN can walk positions with
//!   the same guarantee as SCAN, and HRANDFIELD samples in O(1).
//!
//! The thing not to get wrong: a hash converts from listpack to hashtable
//! and never back (as in Redis), and the conversion thresholds are
//! constants, so every replica that applies the same commands holds the
//! same encoding in the same order.
//!
//! Fields may expire (HEXPIRE and friends, Redis 7.4): their deadlines
//! (Unix ms) sit in a side map that exists only while some field has one
//! (in a box beside the encoding, with which a listpack hash is boxed). An expired field
//! is gone for every command at once (readers see the hash without it,
//! [`Hash::without_expired`]); it is removed for good by the next write
//! to the hash or by active expiry (docs/design/datatypes.md).

use crate::bytes::{edit_boxed, malloc_size};
use crate::table::DenseTable;

/// Most pairs a listpack-encoded hash holds (Redis'
/// `hash-max-listpack-entries` default).
pub const LISTPACK_ENTRIES_MAX: usize = 128;
/// Longest field or value a listpack-encoded hash holds, in bytes (Redis'
/// `hash-max-listpack-value` default). Below 256, so a length is one byte.
pub const LISTPACK_VALUE_MAX: usize = 64;
/// Most fields one hash holds (positions are u32).
pub const FIELDS_MAX: usize = crate::table::ENTRIES_MAX;

/// A hash: two words, so a value holds it without a box of its own. A
/// listpack without field deadlines is its buffer and nothing more; a
/// table, or any hash with field deadlines, is boxed ([`Boxed`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hash(Repr);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Repr {
    /// A listpack whose fields have no deadlines.
    Listpack(Listpack),
    /// A table, or a listpack with deadlines (never one without: see
    /// [`Hash::unbox`]).
    Boxed(Box<Boxed>),
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Listpack(Listpack::default())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Boxed {
    enc: Enc,
    /// Deadlines (Unix ms) of the fields that have one; `None` when no
    /// field does. Ordered, so digests and snapshots are deterministic.
    ttl: Option<Box<Ttls>>,
}

type Ttls = std::collections::BTreeMap<Box<[u8]>, u64>;

/// The two encodings, in a box.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Enc {
    Listpack(Listpack),
    /// Boxed: a listpack with deadlines pays for a listpack's two words,
    /// not a table's nine.
    Table(Box<Table>),
}

/// A hash's encoding, read.
enum Body<'a> {
    Listpack(&'a Listpack),
    Table(&'a Table),
}

/// A hash's encoding, to change.
enum BodyMut<'a> {
    Listpack(&'a mut Listpack),
    Table(&'a mut Table),
}

/// The small encoding: one exact-size buffer, a pair count byte (at most
/// [`LISTPACK_ENTRIES_MAX`], one more while converting) then
/// `(field_len u8, value_len u8, field, value)` pairs in insertion order.
/// An empty buffer is an empty listpack. Two bytes of overhead per pair;
/// lookups are a linear walk over at most [`LISTPACK_ENTRIES_MAX`] pairs.
/// Both lengths come first so that a walk finds the next pair with one
/// two-byte load per pair (not two dependent ones), and skips a field of
/// another length without reading it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listpack(Box<[u8]>);

/// One pair of a table: `field_len` (LEB128), the field, then the value,
/// in the dense vector's own slot when that fits ([`PAIR_INLINE_MAX`]
/// bytes: a 20-byte field with a short value), else in one allocation.
/// Inline, a probe finds the field without a pointer to follow and the
/// pair costs its 32-byte slot only (a boxed one: 16 + its allocation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pair {
    Inline {
        len: u8,
        data: [u8; PAIR_INLINE_MAX],
    },
    Heap(Box<[u8]>),
}

/// The most bytes (header, field and value) a pair keeps inline.
pub const PAIR_INLINE_MAX: usize = 30;

impl Pair {
    fn new(field: &[u8], value: &[u8]) -> Pair {
        let mut at = 0;
        let mut n = field.len();
        let mut header = [0u8; 10];
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                header[at] = byte;
                at += 1;
                break;
            }
            header[at] = byte | 0x80;
            at += 1;
        }
        let total = at + field.len() + value.len();
        if total <= PAIR_INLINE_MAX {
            let mut data = [0u8; PAIR_INLINE_MAX];
            data[..at].copy_from_slice(&header[..at]);
            data[at..at + field.len()].copy_from_slice(field);
            data[at + field.len()..total].copy_from_slice(value);
            return Pair::Inline {
                len: total as u8,
                data,
            };
        }
        let mut v = Vec::with_capacity(total);
        v.extend_from_slice(&header[..at]);
        v.extend_from_slice(field);
        v.extend_from_slice(value);
        Pair::Heap(v.into_boxed_slice())
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Pair::Inline { len, data } => &data[..*len as usize],
            Pair::Heap(b) => b,
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Pair::Inline { len, data } => &mut data[..*len as usize],
            Pair::Heap(b) => b,
        }
    }

    /// (header length, field length).
    fn split(&self) -> (usize, usize) {
        let b = self.bytes();
        let (mut n, mut shift, mut at) = (0usize, 0, 0);
        while let Some(&byte) = b.get(at) {
            n |= ((byte & 0x7f) as usize) << shift;
            at += 1;
            if byte & 0x80 == 0 || shift > 56 {
                break;
            }
            shift += 7;
        }
        (at, n.min(b.len() - at))
    }

    fn field(&self) -> &[u8] {
        let (h, f) = self.split();
        &self.bytes()[h..h + f]
    }

    fn value(&self) -> &[u8] {
        let (h, f) = self.split();
        &self.bytes()[h + f..]
    }

    /// Replaces the value: in place when it has the old one's length
    /// (HSET of a counter or a fixed-width value), else a new pair.
    fn set_value(&mut self, field: &[u8], value: &[u8]) {
        let (h, f) = self.split();
        match self.bytes_mut().get_mut(h + f..) {
            Some(old) if old.len() == value.len() => old.copy_from_slice(value),
            _ => *self = Pair::new(field, value),
        }
    }
}

impl crate::table::TableEntry for Pair {
    fn key(&self) -> &[u8] {
        self.field()
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Pair::Inline { .. } => 0,
            Pair::Heap(b) => malloc_size(b.len()),
        }
    }
}

/// The large encoding: pairs in a dense table (crate::table).
pub type Table = DenseTable<Pair>;

/// Whether a pair of these lengths may live in a listpack.
pub fn fits_listpack(field: &[u8], value: &[u8]) -> bool {
    field.len() <= LISTPACK_VALUE_MAX && value.len() <= LISTPACK_VALUE_MAX
}

impl Listpack {
    pub fn len(&self) -> usize {
        self.0.first().map_or(0, |&n| n as usize)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pairs, past the count byte.
    fn pairs(&self) -> &[u8] {
        self.0.get(1..).unwrap_or(&[])
    }

    pub fn iter(&self) -> ListpackIter<'_> {
        ListpackIter { buf: self.pairs() }
    }

    /// Where `field`'s pair is: (offset of its header, field length,
    /// value length).
    fn find(&self, field: &[u8]) -> Option<(usize, usize, usize)> {
        let buf = &self.0;
        crate::bytes::prefetch(buf);
        let mut at = 1;
        while let Some(&[flen, vlen]) = buf.get(at..).and_then(|b| b.first_chunk::<2>()) {
            let (flen, vlen) = (flen as usize, vlen as usize);
            let fat = at + 2;
            if flen == field.len()
                && buf
                    .get(fat..fat + flen)
                    .is_some_and(|f| crate::bytes::same(f, field))
            {
                return Some((at, flen, vlen));
            }
            at = fat + flen + vlen;
        }
        None
    }

    fn get(&self, field: &[u8]) -> Option<&[u8]> {
        let (at, flen, vlen) = self.find(field)?;
        let vat = at + 2 + flen;
        self.0.get(vat..vat + vlen)
    }

    /// Sets a pair that fits (see [`fits_listpack`]); true if the field
    /// is new. An existing field keeps its place, a new one goes last.
    fn set(&mut self, field: &[u8], value: &[u8]) -> bool {
        debug_assert!(fits_listpack(field, value));
        // Grown to the byte, as Redis' listpack reallocates per insert: a
        // doubling Vec would leave up to half of every small hash unused.
        match self.find(field) {
            Some((at, flen, vlen)) => {
                let vat = at + 2 + flen;
                if vlen == value.len() {
                    self.0[vat..vat + vlen].copy_from_slice(value);
                    return false;
                }
                edit_boxed(&mut self.0, |buf| {
                    buf.reserve_exact(value.len().saturating_sub(vlen));
                    buf[at + 1] = value.len() as u8;
                    buf.splice(vat..vat + vlen, value.iter().copied());
                });
                false
            }
            None => {
                edit_boxed(&mut self.0, |buf| {
                    if buf.is_empty() {
                        buf.push(0);
                    }
                    buf.reserve_exact(2 + field.len() + value.len());
                    buf.push(field.len() as u8);
                    buf.push(value.len() as u8);
                    buf.extend_from_slice(field);
                    buf.extend_from_slice(value);
                    buf[0] += 1;
                });
                true
            }
        }
    }

    fn remove(&mut self, field: &[u8]) -> bool {
        let Some((at, flen, vlen)) = self.find(field) else {
            return false;
        };
        edit_boxed(&mut self.0, |buf| {
            buf.drain(at..at + 2 + flen + vlen);
            buf[0] -= 1;
        });
        true
    }
}

/// Pairs of a listpack in order.
pub struct ListpackIter<'a> {
    buf: &'a [u8],
}

impl<'a> Iterator for ListpackIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (&[flen, vlen], rest) = self.buf.split_first_chunk::<2>()?;
        let (field, rest) = rest.split_at_checked(flen as usize)?;
        let (value, rest) = rest.split_at_checked(vlen as usize)?;
        self.buf = rest;
        Some((field, value))
    }
}

/// A table's pair as slices.
fn pair(p: &Pair) -> (&[u8], &[u8]) {
    (p.field(), p.value())
}

/// Sets a pair in a table; `Some(true)` if the field is new, `None`
/// when the table is full.
fn table_set(t: &mut Table, field: &[u8], value: &[u8]) -> Option<bool> {
    match t.position(field) {
        Some(pos) => {
            t.update(pos, |p| p.set_value(field, value));
            Some(false)
        }
        None => t.push(Pair::new(field, value)).then_some(true),
    }
}

/// Why a write to a hash failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashFull;

impl Hash {
    fn body(&self) -> Body<'_> {
        match &self.0 {
            Repr::Listpack(l) => Body::Listpack(l),
            Repr::Boxed(b) => match &b.enc {
                Enc::Listpack(l) => Body::Listpack(l),
                Enc::Table(t) => Body::Table(t),
            },
        }
    }

    fn body_mut(&mut self) -> BodyMut<'_> {
        match &mut self.0 {
            Repr::Listpack(l) => BodyMut::Listpack(l),
            Repr::Boxed(b) => match &mut b.enc {
                Enc::Listpack(l) => BodyMut::Listpack(l),
                Enc::Table(t) => BodyMut::Table(t),
            },
        }
    }

    fn ttl(&self) -> Option<&Ttls> {
        match &self.0 {
            Repr::Listpack(_) => None,
            Repr::Boxed(b) => b.ttl.as_deref(),
        }
    }

    /// The boxed form, boxing a bare listpack first.
    fn boxed(&mut self) -> &mut Boxed {
        if let Repr::Listpack(l) = &mut self.0 {
            let enc = Enc::Listpack(std::mem::take(l));
            self.0 = Repr::Boxed(Box::new(Boxed { enc, ttl: None }));
        }
        match &mut self.0 {
            Repr::Boxed(b) => b,
            Repr::Listpack(_) => unreachable!("boxed just above"),
        }
    }

    /// Back to a bare listpack when the box holds one without deadlines
    /// (so a listpack hash costs its buffer only, and equal hashes are
    /// equal values).
    fn unbox(&mut self) {
        if let Repr::Boxed(b) = &mut self.0 {
            if let (Enc::Listpack(l), None) = (&mut b.enc, &b.ttl) {
                self.0 = Repr::Listpack(std::mem::take(l));
            }
        }
    }

    pub fn len(&self) -> usize {
        match self.body() {
            Body::Listpack(l) => l.len(),
            Body::Table(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Redis' OBJECT ENCODING name (`listpackex`: a listpack with field
    /// deadlines, as Redis 7.4 names it).
    pub fn encoding(&self) -> &'static str {
        match (self.body(), self.has_ttls()) {
            (Body::Listpack(_), false) => "listpack",
            (Body::Listpack(_), true) => "listpackex",
            (Body::Table(_), _) => "hashtable",
        }
    }

    /// Whether the table encoding is in use.
    pub fn is_table(&self) -> bool {
        matches!(self.body(), Body::Table(_))
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        match self.body() {
            Body::Listpack(l) => l.get(field),
            Body::Table(t) => t.position(field).map(|p| t.entries()[p].value()),
        }
    }

    /// Every pair, in the encoding's order (insertion order for a
    /// listpack, position order for a table).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let (l, t) = match self.body() {
            Body::Listpack(l) => (Some(l.iter()), None),
            Body::Table(t) => (None, Some(t.entries().iter().map(pair))),
        };
        l.into_iter().flatten().chain(t.into_iter().flatten())
    }

    /// Converts to the table encoding (no-op if it is one already), sized
    /// for `extra` more fields. `seed` seeds the field index's hash.
    pub fn convert(&mut self, seed: u64, extra: usize) {
        if let Body::Listpack(l) = self.body() {
            let mut t = Table::new(seed, l.len() + extra.min(LISTPACK_ENTRIES_MAX * 8));
            for (f, v) in l.iter() {
                let pushed = t.push(Pair::new(f, v));
                debug_assert!(pushed);
            }
            self.boxed().enc = Enc::Table(Box::new(t));
        }
    }

    /// Sets `field` to `value`, converting to a table first when the pair
    /// or the new size outgrows a listpack. Returns whether the field is
    /// new. The field's deadline, if any, stays (HINCRBY keeps it; HSET
    /// clears it with [`Self::persist`]).
    pub fn set(&mut self, field: &[u8], value: &[u8], seed: u64) -> Result<bool, HashFull> {
        if let BodyMut::Listpack(l) = self.body_mut() {
            if fits_listpack(field, value) {
                let added = l.set(field, value);
                if l.len() > LISTPACK_ENTRIES_MAX {
                    self.convert(seed, 0);
                }
                return Ok(added);
            }
            self.convert(seed, 1);
        }
        match self.body_mut() {
            BodyMut::Table(t) => table_set(t, field, value).ok_or(HashFull),
            BodyMut::Listpack(_) => unreachable!("converted above"),
        }
    }

    /// Removes a field (and its deadline); true if it was there.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        self.persist(field);
        match self.body_mut() {
            BodyMut::Listpack(l) => l.remove(field),
            BodyMut::Table(t) => t.remove(field).is_some(),
        }
    }

    /// The pair at position `i` (0..len) of the encoding's order.
    pub fn nth(&self, i: usize) -> Option<(&[u8], &[u8])> {
        match self.body() {
            Body::Listpack(l) => l.iter().nth(i),
            Body::Table(t) => t.entries().get(i).map(pair),
        }
    }

    /// For HSCAN on a table: visits up to `count` positions going down
    /// from `cursor` (0 starts at the top) and returns the next cursor, 0
    /// when done. A listpack is visited whole in one call (cursor 0 back),
    /// as Redis does. Downward order keeps SCAN's guarantee under
    /// swap-remove (see `Keyspace::scan`).
    pub fn scan<'h>(
        &'h self,
        cursor: u64,
        count: usize,
        mut f: impl FnMut(&'h [u8], &'h [u8]),
    ) -> u64 {
        match self.body() {
            Body::Listpack(l) => {
                for (k, v) in l.iter() {
                    f(k, v);
                }
                0
            }
            Body::Table(t) => {
                let len = t.len() as u64;
                let mut i = if cursor == 0 { len } else { cursor.min(len) };
                let mut visited = 0;
                while i > 0 && visited < count.max(1) {
                    i -= 1;
                    visited += 1;
                    let (k, v) = pair(&t.entries()[i as usize]);
                    f(k, v);
                }
                i
            }
        }
    }

    /// Heap bytes this hash owns, allocator-rounded (the hash itself is
    /// inside the value: no box of its own). A listpack without deadlines
    /// is its buffer; anything else adds the [`Boxed`] box. A field
    /// deadline costs its map node (~48 bytes) and its copy of the field
    /// name.
    pub fn heap_bytes(&self) -> usize {
        let ttl = self.ttl().map_or(0, |m| {
            malloc_size(std::mem::size_of::<Ttls>())
                + m.keys().map(|f| 48 + malloc_size(f.len())).sum::<usize>()
        });
        let boxed = match &self.0 {
            Repr::Listpack(_) => 0,
            Repr::Boxed(_) => malloc_size(std::mem::size_of::<Boxed>()),
        };
        boxed
            + ttl
            + match self.body() {
                Body::Listpack(l) => malloc_size(l.0.len()),
                Body::Table(t) => malloc_size(std::mem::size_of::<Table>()) + t.heap_bytes(),
            }
    }

    // ---- field expiry (HEXPIRE and friends) ----

    /// `field`'s deadline (Unix ms), if it has one.
    pub fn expiry(&self, field: &[u8]) -> Option<u64> {
        self.ttl()?.get(field).copied()
    }

    /// Gives an existing `field` the deadline `at_ms`; false (nothing
    /// changed) when there is no such field.
    pub fn set_expiry(&mut self, field: &[u8], at_ms: u64) -> bool {
        if self.get(field).is_none() {
            return false;
        }
        self.boxed()
            .ttl
            .get_or_insert_with(Default::default)
            .insert(field.into(), at_ms);
        true
    }

    /// Removes `field`'s deadline; true if it had one.
    pub fn persist(&mut self, field: &[u8]) -> bool {
        let Repr::Boxed(b) = &mut self.0 else {
            return false;
        };
        let Some(m) = b.ttl.as_mut() else {
            return false;
        };
        let had = m.remove(field).is_some();
        if m.is_empty() {
            b.ttl = None;
            self.unbox();
        }
        had
    }

    /// Whether some field has a deadline.
    pub fn has_ttls(&self) -> bool {
        self.ttl().is_some()
    }

    /// Every (field, deadline), by field name.
    pub fn ttls(&self) -> impl Iterator<Item = (&[u8], u64)> + '_ {
        self.ttl()
            .into_iter()
            .flat_map(|m| m.iter().map(|(f, &t)| (&**f, t)))
    }

    /// Whether some field's deadline passed at `now_ms` (a field whose
    /// deadline is `now_ms` is expired, as for keys).
    pub fn has_expired(&self, now_ms: u64) -> bool {
        self.ttls().any(|(_, t)| t <= now_ms)
    }

    /// Removes the fields whose deadline passed at `now_ms`; returns how
    /// many.
    pub fn purge_expired(&mut self, now_ms: u64) -> usize {
        if !self.has_expired(now_ms) {
            return 0;
        }
        let gone: Vec<Box<[u8]>> = self
            .ttls()
            .filter(|&(_, t)| t <= now_ms)
            .map(|(f, _)| f.into())
            .collect();
        for f in &gone {
            self.remove(f);
        }
        gone.len()
    }

    /// This hash as readers see it at `now_ms` when some field expired
    /// and is still stored (a copy without those fields), else `None`
    /// (read this one). Reads never remove fields: on a Raft replica only
    /// the log may change state (docs/design/datatypes.md).
    pub fn without_expired(&self, now_ms: u64) -> Option<Hash> {
        if !self.has_expired(now_ms) {
            return None;
        }
        let mut h = self.clone();
        h.purge_expired(now_ms);
        Some(h)
    }

    // ---- snapshot restore ----

    /// An empty hash of the named encoding ("listpack" or "hashtable").
    pub fn restoring(table: bool, seed: u64) -> Hash {
        if table {
            Hash(Repr::Boxed(Box::new(Boxed {
                enc: Enc::Table(Box::new(Table::new(seed, 0))),
                ttl: None,
            })))
        } else {
            Hash::default()
        }
    }

    /// Appends a restored pair; an error names the rule it breaks
    /// (duplicate field, a listpack pair too long or too many).
    pub fn push_restored(&mut self, field: &[u8], value: &[u8]) -> Result<(), &'static str> {
        if self.get(field).is_some() {
            return Err("duplicate hash field");
        }
        match self.body_mut() {
            BodyMut::Listpack(l) => {
                if !fits_listpack(field, value) {
                    return Err("listpack hash pair longer than 64 bytes");
                }
                if l.len() >= LISTPACK_ENTRIES_MAX {
                    return Err("listpack hash with more than 128 pairs");
                }
                l.set(field, value);
                Ok(())
            }
            BodyMut::Table(t) => {
                if t.push(Pair::new(field, value)) {
                    Ok(())
                } else {
                    Err("hash with too many fields")
                }
            }
        }
    }

    /// Restores a field's deadline (after its pair).
    pub fn push_restored_ttl(&mut self, field: &[u8], at_ms: u64) -> Result<(), &'static str> {
        if self.expiry(field).is_some() {
            return Err("duplicate hash field deadline");
        }
        if self.set_expiry(field, at_ms) {
            Ok(())
        } else {
            Err("deadline for a hash field that does not exist")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pairs_are_inline_up_to_30_bytes_and_round_trip_either_way() {
        use crate::table::TableEntry;
        assert_eq!(std::mem::size_of::<Pair>(), 32);
        let long_field = vec![b'f'; 200];
        let long_value = vec![b'v'; 1000];
        let cases: [(&[u8], &[u8], bool); 6] = [
            (b"", b"", true),
            (b"element:000000012345", b"xxx", true),
            // 1 header byte + 29 = 30: the last inline size.
            (&[b'a'; 20], &[b'b'; 9], true),
            (&[b'a'; 20], &[b'b'; 10], false),
            (&long_field, b"x", false),
            (b"f", &long_value, false),
        ];
        for (f, v, inline) in cases {
            let mut p = Pair::new(f, v);
            assert_eq!((p.field(), p.value()), (f, v));
            assert_eq!(
                matches!(p, Pair::Inline { .. }),
                inline,
                "{}+{}",
                f.len(),
                v.len()
            );
            assert_eq!(p.heap_bytes() == 0, inline);
            // Same length: in place; another length: a new pair of the
            // right kind.
            let same: Vec<u8> = v.iter().map(|b| b ^ 1).collect();
            p.set_value(f, &same);
            assert_eq!((p.field(), p.value()), (f, &same[..]));
            p.set_value(f, &long_value);
            assert_eq!((p.field(), p.value()), (f, &long_value[..]));
            assert!(matches!(p, Pair::Heap(_)));
            p.set_value(f, b"");
            assert_eq!((p.field(), p.value()), (f, &b""[..]));
            assert_eq!(p, Pair::new(f, b""), "one representation per content");
        }
    }

    fn pairs(h: &Hash) -> Vec<(Vec<u8>, Vec<u8>)> {
        h.iter().map(|(f, v)| (f.to_vec(), v.to_vec())).collect()
    }

    #[test]
    fn listpack_keeps_insertion_order_and_updates_in_place() {
        let mut h = Hash::default();
        assert_eq!(h.set(b"a", b"1", 7), Ok(true));
        assert_eq!(h.set(b"b", b"2", 7), Ok(true));
        assert_eq!(h.set(b"a", b"longer value", 7), Ok(false));
        assert_eq!(h.set(b"c", b"", 7), Ok(true));
        assert_eq!(h.encoding(), "listpack");
        assert_eq!(
            pairs(&h),
            vec![
                (b"a".to_vec(), b"longer value".to_vec()),
                (b"b".to_vec(), b"2".to_vec()),
                (b"c".to_vec(), b"".to_vec()),
            ]
        );
        assert!(h.remove(b"b"));
        assert!(!h.remove(b"b"));
        assert_eq!(h.get(b"a"), Some(&b"longer value"[..]));
        assert_eq!(h.get(b"b"), None);
        assert_eq!(h.get(b"c"), Some(&b""[..]));
        assert_eq!(h.len(), 2);
        assert_eq!(h.nth(1).map(|(f, _)| f.to_vec()), Some(b"c".to_vec()));
    }

    #[test]
    fn a_listpack_is_bare_unless_a_field_has_a_deadline() {
        assert_eq!(std::mem::size_of::<Hash>(), 16);
        assert_eq!(malloc_size(std::mem::size_of::<Boxed>()), 32);
        let mut h = Hash::default();
        assert_eq!(h.heap_bytes(), 0);
        h.set(b"a", b"1", 7).unwrap();
        h.set(b"b", b"2", 7).unwrap();
        assert!(matches!(h.0, Repr::Listpack(_)));
        assert_eq!(h.heap_bytes(), malloc_size(1 + 2 * 4));
        let bare = h.clone();
        h.set_expiry(b"a", 10);
        h.set_expiry(b"b", 10);
        assert!(matches!(h.0, Repr::Boxed(_)));
        h.persist(b"a");
        assert!(matches!(h.0, Repr::Boxed(_)), "b still has one");
        h.persist(b"b");
        assert_eq!(h, bare);
        // A removed field takes its deadline and, the last, the box.
        h.set_expiry(b"a", 10);
        h.remove(b"a");
        assert!(matches!(h.0, Repr::Listpack(_)));
        assert_eq!(h.heap_bytes(), malloc_size(1 + 4));
        // A table stays boxed without deadlines.
        h.convert(7, 0);
        h.set_expiry(b"b", 10);
        h.persist(b"b");
        assert!(matches!(h.0, Repr::Boxed(_)) && h.is_table());
    }

    #[test]
    fn a_long_value_or_field_converts_to_a_table() {
        let mut h = Hash::default();
        h.set(b"f", &[b'x'; 64], 1).unwrap();
        assert_eq!(h.encoding(), "listpack");
        h.set(b"g", &[b'x'; 65], 1).unwrap();
        assert_eq!(h.encoding(), "hashtable");
        let mut h = Hash::default();
        h.set(&[b'k'; 65], b"v", 1).unwrap();
        assert_eq!(h.encoding(), "hashtable");
        assert_eq!(h.get(&[b'k'; 65]), Some(&b"v"[..]));
    }

    #[test]
    fn the_129th_field_converts_and_nothing_converts_back() {
        let mut h = Hash::default();
        for i in 0..128 {
            h.set(format!("f{i}").as_bytes(), b"v", 1).unwrap();
        }
        assert_eq!(h.encoding(), "listpack");
        let before = pairs(&h);
        h.set(b"f128", b"v", 1).unwrap();
        assert_eq!(h.encoding(), "hashtable");
        // The conversion keeps the order; the new field is last.
        assert_eq!(&pairs(&h)[..128], &before[..]);
        for i in 0..128 {
            assert!(h.remove(format!("f{i}").as_bytes()));
        }
        assert_eq!(h.encoding(), "hashtable");
        assert_eq!(pairs(&h), vec![(b"f128".to_vec(), b"v".to_vec())]);
    }

    #[test]
    fn table_removal_keeps_the_index_consistent() {
        let mut h = Hash::default();
        h.convert(9, 0);
        for i in 0..1000 {
            h.set(format!("f{i}").as_bytes(), format!("v{i}").as_bytes(), 9)
                .unwrap();
        }
        for i in (0..1000).step_by(3) {
            assert!(h.remove(format!("f{i}").as_bytes()));
        }
        for i in 0..1000 {
            let got = h.get(format!("f{i}").as_bytes());
            if i % 3 == 0 {
                assert_eq!(got, None);
            } else {
                assert_eq!(got, Some(format!("v{i}").as_bytes()));
            }
        }
        assert_eq!(h.len(), 1000 - 334);
    }

    #[test]
    fn field_deadlines_follow_their_fields() {
        let mut h = Hash::default();
        h.set(b"a", b"1", 7).unwrap();
        h.set(b"b", b"2", 7).unwrap();
        let plain = h.heap_bytes();
        assert!(!h.set_expiry(b"zz", 10), "no such field");
        assert!(h.set_expiry(b"a", 100));
        assert_eq!((h.expiry(b"a"), h.encoding()), (Some(100), "listpackex"));
        assert!(h.heap_bytes() > plain, "deadlines are counted");
        // Converting keeps deadlines; HINCRBY-style set keeps them too.
        h.convert(7, 0);
        h.set(b"a", b"2", 7).unwrap();
        assert_eq!((h.expiry(b"a"), h.encoding()), (Some(100), "hashtable"));
        // Readers at 99 see both fields, at 100 only b; nothing removed.
        assert!(h.without_expired(99).is_none());
        let seen = h.without_expired(100).unwrap();
        assert_eq!(pairs(&seen), vec![(b"b".to_vec(), b"2".to_vec())]);
        assert!(!seen.has_ttls());
        assert_eq!(h.len(), 2);
        // A purge removes the field and its deadline.
        assert_eq!(h.purge_expired(100), 1);
        assert_eq!((h.len(), h.has_ttls()), (1, false));
        // Persist and remove clear a deadline; the map goes with the last.
        h.set_expiry(b"b", 5);
        assert!(h.persist(b"b"));
        assert!(!h.persist(b"b"));
        assert!(!h.has_ttls());
        h.set_expiry(b"b", 5);
        assert!(h.remove(b"b"));
        assert!(!h.has_ttls() && h.is_empty());
        // Restore checks its input.
        let mut r = Hash::restoring(false, 7);
        r.push_restored(b"f", b"v").unwrap();
        assert!(r.push_restored_ttl(b"nope", 1).is_err());
        r.push_restored_ttl(b"f", 9).unwrap();
        assert!(r.push_restored_ttl(b"f", 9).is_err());
    }

    #[test]
    fn table_byte_count_returns_to_its_empty_size() {
        let mut h = Hash::default();
        h.convert(3, 0);
        let empty = h.heap_bytes();
        h.set(b"field", &[1; 100], 3).unwrap();
        h.set(b"field", &[1; 10], 3).unwrap();
        assert!(h.heap_bytes() > empty);
        h.remove(b"field");
        let Body::Table(t) = h.body() else { panic!() };
        assert_eq!(t.data_bytes(), 0);
    }

    #[test]
    fn table_scan_visits_every_field_present_throughout() {
        let mut h = Hash::default();
        for i in 0..300 {
            h.set(format!("f{i}").as_bytes(), b"v", 5).unwrap();
        }
        let mut seen = std::collections::HashSet::new();
        let (mut cursor, mut round) = (0, 0);
        loop {
            cursor = h.scan(cursor, 7, |f, _| {
                seen.insert(f.to_vec());
            });
            for j in 0..3 {
                h.remove(format!("f{}", round * 3 + j).as_bytes());
            }
            round += 1;
            if cursor == 0 {
                break;
            }
        }
        for i in 150..300 {
            assert!(seen.contains(format!("f{i}").as_bytes()), "missed f{i}");
        }
    }

    #[test]
    fn restore_rejects_what_the_encoding_cannot_hold() {
        let mut h = Hash::restoring(false, 1);
        h.push_restored(b"a", b"1").unwrap();
        assert_eq!(h.push_restored(b"a", b"2"), Err("duplicate hash field"));
        assert!(h.push_restored(b"b", &[0; 65]).is_err());
        let mut t = Hash::restoring(true, 1);
        t.push_restored(b"a", b"1").unwrap();
        assert!(t.push_restored(b"a", b"1").is_err());
        assert_eq!(t.encoding(), "hashtable");
    }
}
