//! List values: a double-ended sequence of byte strings with O(1) push
//! and pop at both ends (docs/design/datatypes.md, "Lists").
//!
//! Storage is packed like Redis' quicklist of listpacks: a deque of
//! **chunks**, each one flat buffer of entries `[len varint][bytes]
//! [len varint, reversed]` (so a chunk is walked from either end), with
//! its element count. A chunk holds at most [`CHUNK_BYTES_MAX`] bytes
//! and [`CHUNK_ELEMENTS_MAX`] elements, except that a single element
//! bigger than that is a chunk of its own. Buffers grow to the byte (up
//! to what malloc hands out anyway), so a small list is one allocation
//! of its entries plus the `List` itself: a list of one chunk keeps it
//! inline, the deque exists from two chunks on. Costs: push and pop O(1)
//! amortized (at most one chunk's memmove); `get` walks the chunk counts
//! then scans one chunk; a middle edit rewrites the one chunk it touches
//! (splitting it when it grows past the limits); LREM rewrites the chunks
//! it removes from and merges neighbours that then fit in one.
//!
//! The encoding Redis 7.2 would report is tracked beside it, from the
//! size the elements would take in a Redis listpack (kept exactly, O(1)
//! per change), independent of the chunk layout:
//!
//! * **listpack** while that size stays within [`LISTPACK_BYTES_MAX`]
//!   (`list-max-listpack-size -2`, 8 KiB);
//! * **quicklist** once a write would take it past the limit (checked
//!   before the write, with the new elements' raw lengths, as Redis'
//!   `listTypeTryConvertListpack` does);
//! * back to **listpack** when a removal leaves it at half the limit or
//!   less (Redis' `listTypeTryConvertQuicklist` with `shrinking`; Redis
//!   also needs the quicklist to be one node, which cairn does not model).
//!
//! The thing not to get wrong: the encoding is replicated state (OBJECT
//! ENCODING, snapshot bytes), so it depends only on the commands applied,
//! and the limits are constants. The chunk layout is not: it depends on
//! the order of pushes and edits, and nothing outside this file sees it.

use std::collections::VecDeque;
use std::fmt;

use crate::bytes::malloc_size;

/// Bytes a listpack-encoded list may take (Redis' `-2` fill: 8 KiB).
pub const LISTPACK_BYTES_MAX: usize = 8192;
/// Most elements one list holds (a bound on every list; positions fit
/// an i64 reply with room to spare).
pub const ELEMENTS_MAX: usize = u32::MAX as usize;
/// A listpack's header (total bytes u32, count u16) and end byte.
const LISTPACK_OVERHEAD: usize = 7;

/// Bytes of entries one chunk holds (unless it is one bigger element):
/// with malloc's 8-byte header, one 8 KiB block, like Redis' nodes.
pub const CHUNK_BYTES_MAX: usize = 8192 - 8;
/// Elements one chunk holds: bounds the scan of a lookup for tiny
/// elements (3 bytes each would otherwise make 2,700), while chunks of
/// typical elements (a few to tens of bytes) still fill by bytes.
pub const CHUNK_ELEMENTS_MAX: u32 = 1024;

/// Why an element could not be added: the list holds `ELEMENTS_MAX`.
pub const LIST_FULL: &str = "ERR list has too many elements";

pub struct List {
    chunks: Chunks,
    /// What these elements would take in one Redis listpack.
    lp_bytes: usize,
    /// Allocator-rounded bytes of the chunks' buffers.
    chunk_heap: usize,
    len: u32,
    quicklist: bool,
}

impl Default for List {
    fn default() -> Self {
        List {
            chunks: Chunks::One(Chunk::default()),
            lp_bytes: LISTPACK_OVERHEAD,
            chunk_heap: 0,
            len: 0,
            quicklist: false,
        }
    }
}

impl Clone for List {
    /// Buffers are cloned to their length, so the heap is counted again.
    fn clone(&self) -> Self {
        let chunks = match &self.chunks {
            Chunks::One(c) => Chunks::One(c.clone()),
            Chunks::Many(d) => Chunks::Many(Box::new(d.iter().cloned().collect())),
        };
        let chunk_heap = (0..chunks.len())
            .filter_map(|i| chunks.get(i))
            .map(Chunk::heap)
            .sum();
        List {
            chunks,
            lp_bytes: self.lp_bytes,
            chunk_heap,
            len: self.len,
            quicklist: self.quicklist,
        }
    }
}

/// Equal elements in the same order and the same encoding, whatever
/// the chunk layouts.
impl PartialEq for List {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.quicklist == other.quicklist && self.iter().eq(other.iter())
    }
}

impl Eq for List {}

impl fmt::Debug for List {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("List")
            .field("encoding", &self.encoding())
            .field(
                "elements",
                &self.iter().map(String::from_utf8_lossy).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Which end of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Left,
    Right,
}

impl End {
    /// LEFT or RIGHT (any case), as LMOVE and LMPOP take them.
    pub fn parse(arg: &[u8]) -> Option<End> {
        if arg.eq_ignore_ascii_case(b"left") {
            Some(End::Left)
        } else if arg.eq_ignore_ascii_case(b"right") {
            Some(End::Right)
        } else {
            None
        }
    }
}

/// Bytes Redis' listpack spends on one element: its encoding and data
/// (integers packed), then the back-length of those.
pub fn listpack_entry_bytes(b: &[u8]) -> usize {
    let encoded = match crate::num::parse_i64(b) {
        Some(0..=127) => 1,
        Some(-4096..=4095) => 2,
        Some(-32768..=32767) => 3,
        Some(-8_388_608..=8_388_607) => 4,
        Some(v) if i32::try_from(v).is_ok() => 5,
        Some(_) => 9,
        None if b.len() <= 63 => 1 + b.len(),
        None if b.len() <= 4095 => 2 + b.len(),
        None => 5 + b.len(),
    };
    let back = match encoded {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2_097_150 => 3,
        2_097_151..=268_435_454 => 4,
        _ => 5,
    };
    encoded + back
}

/// Redis' index rule: negative counts from the end; `None` when out of
/// range.
pub fn resolve_index(index: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    let i = if index < 0 { len + index } else { index };
    (0..len).contains(&i).then_some(i as usize)
}

/// LRANGE's and LTRIM's clamping of `start..=stop` (negative from the
/// end); `None` when the range is empty.
pub fn resolve_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut start = if start < 0 {
        len.saturating_add(start)
    } else {
        start
    };
    let mut stop = if stop < 0 {
        len.saturating_add(stop)
    } else {
        stop
    };
    if start < 0 {
        start = 0;
    }
    if start > stop || start >= len {
        return None;
    }
    if stop >= len {
        stop = len - 1;
    }
    Some((start as usize, stop as usize))
}

// ---- The chunk layer ----------------------------------------------------

/// Bytes of a varint holding `n` (7 bits a byte).
fn varint_len(mut n: usize) -> usize {
    let mut k = 1;
    while n >= 0x80 {
        n >>= 7;
        k += 1;
    }
    k
}

/// Bytes an element of `n` bytes takes in a chunk.
fn entry_len(n: usize) -> usize {
    2 * varint_len(n) + n
}

/// What malloc really gives for a request of `n` bytes (the model of
/// [`malloc_size`]): growing a buffer up to it costs no counted byte.
fn usable(n: usize) -> usize {
    malloc_size(n).saturating_sub(8).max(n)
}

/// Writes `e`'s entry into `out`, exactly [`entry_len`] bytes.
fn write_entry(out: &mut [u8], e: &[u8]) {
    let h = varint_len(e.len());
    let mut n = e.len();
    for i in 0..h {
        let more = if i + 1 < h { 0x80 } else { 0 };
        let byte = (n & 0x7f) as u8 | more;
        out[i] = byte;
        // The back-length: the same bytes, last first.
        out[2 * h + e.len() - 1 - i] = byte;
        n >>= 7;
    }
    out[h..h + e.len()].copy_from_slice(e);
}

/// A run of entries and how many.
#[derive(Clone, Default)]
struct Chunk {
    bytes: Vec<u8>,
    count: u32,
}

impl Chunk {
    /// A chunk of one element.
    fn with(e: &[u8]) -> Chunk {
        let mut c = Chunk::default();
        c.insert_at(0, e);
        c
    }

    fn heap(&self) -> usize {
        malloc_size(self.bytes.capacity())
    }

    /// Whether one more entry of `entry` bytes may go in (anything fits
    /// an empty chunk).
    fn fits(&self, entry: usize) -> bool {
        self.count == 0
            || (self.count < CHUNK_ELEMENTS_MAX && self.bytes.len() + entry <= CHUNK_BYTES_MAX)
    }

    /// Past a limit with more than one element: to be split.
    fn over(&self) -> bool {
        self.count > 1 && (self.count > CHUNK_ELEMENTS_MAX || self.bytes.len() > CHUNK_BYTES_MAX)
    }

    /// The entry starting at `at`: its data's range and the next entry's
    /// start.
    fn read_at(&self, at: usize) -> (usize, usize, usize) {
        let (mut n, mut shift, mut i) = (0usize, 0u32, at);
        while let Some(&b) = self.bytes.get(i) {
            n |= usize::from(b & 0x7f) << shift;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let h = i - at;
        (i, i + n, i + n + h)
    }

    /// The entry ending at `end`: its start and its data's range.
    fn read_back(&self, end: usize) -> (usize, usize, usize) {
        let (mut n, mut shift, mut i) = (0usize, 0u32, end);
        while i > 0 {
            i -= 1;
            let b = self.bytes[i];
            n |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let h = end - i;
        let data_end = i;
        let data = data_end.saturating_sub(n);
        (data.saturating_sub(h), data, data_end)
    }

    fn data(&self, range: (usize, usize)) -> &[u8] {
        self.bytes.get(range.0..range.1).unwrap_or_default()
    }

    /// The start of the entry `n` entries after the one at `at`.
    fn skip(&self, mut at: usize, n: usize) -> usize {
        for _ in 0..n {
            at = self.read_at(at).2;
        }
        at
    }

    /// The end of the entry `n` entries before the one ending at `end`.
    fn skip_back(&self, mut end: usize, n: usize) -> usize {
        for _ in 0..n {
            end = self.read_back(end).0;
        }
        end
    }

    /// Where element `k` (`k <= count`) starts, walked from the nearer
    /// end.
    fn offset_of(&self, k: usize) -> usize {
        let count = self.count as usize;
        if k <= count / 2 {
            self.skip(0, k)
        } else {
            self.skip_back(self.bytes.len(), count - k)
        }
    }

    /// Makes room for `extra` more bytes, to the byte (rounded up to
    /// what malloc gives anyway).
    fn reserve(&mut self, extra: usize) {
        let need = self.bytes.len() + extra;
        if need > self.bytes.capacity() {
            self.bytes.reserve_exact(usable(need) - self.bytes.len());
        }
    }

    /// Inserts `e`'s entry at byte `at` (an entry boundary).
    fn insert_at(&mut self, at: usize, e: &[u8]) {
        let size = entry_len(e.len());
        self.reserve(size);
        let old = self.bytes.len();
        self.bytes.resize(old + size, 0);
        self.bytes.copy_within(at..old, at + size);
        write_entry(&mut self.bytes[at..at + size], e);
        self.count += 1;
    }

    /// Replaces the entry at `at..next` by `e`'s.
    fn replace(&mut self, at: usize, next: usize, e: &[u8]) {
        let size = entry_len(e.len());
        if size == next - at {
            write_entry(&mut self.bytes[at..next], e);
            return;
        }
        if size > next - at {
            self.reserve(size - (next - at));
        }
        let mut entry = vec![0; size];
        write_entry(&mut entry, e);
        self.bytes.splice(at..next, entry);
        self.fit();
    }

    /// Gives back spare capacity when the buffer is at most half used
    /// (after pops: amortized, no realloc per pop).
    fn give_back(&mut self) {
        if self.bytes.is_empty() {
            self.bytes = Vec::new();
        } else if self.bytes.len() <= self.bytes.capacity() / 2 {
            self.bytes.shrink_to(usable(self.bytes.len()));
        }
    }

    /// Gives back all spare capacity (after a middle edit, which copied
    /// the buffer anyway).
    fn fit(&mut self) {
        if self.bytes.is_empty() {
            self.bytes = Vec::new();
        } else if usable(self.bytes.len()) < self.bytes.capacity() {
            self.bytes.shrink_to(usable(self.bytes.len()));
        }
    }

    /// Element entries' listpack sizes from byte `at` to `end`.
    fn lp_bytes_of(&self, mut at: usize, end: usize) -> usize {
        let mut sum = 0;
        while at < end {
            let (a, b, next) = self.read_at(at);
            sum += listpack_entry_bytes(self.data((a, b)));
            at = next;
        }
        sum
    }

    /// This over-full chunk cut into chunks within the limits, about
    /// even (each cut where an entry's middle passes the share of what
    /// is left; an element bigger than a chunk alone in its own).
    fn split(&self) -> Vec<Chunk> {
        let (mut rest_bytes, mut rest_count) = (self.bytes.len(), self.count as usize);
        let mut pieces_left = rest_bytes
            .div_ceil(CHUNK_BYTES_MAX)
            .max(rest_count.div_ceil(CHUNK_ELEMENTS_MAX as usize))
            .max(1);
        let mut pieces = Vec::with_capacity(pieces_left);
        let (mut start, mut at, mut n) = (0usize, 0usize, 0usize);
        while at < self.bytes.len() {
            let next = self.read_at(at).2;
            let (size, e) = (at - start, next - at);
            let full = size + e > CHUNK_BYTES_MAX || n + 1 > CHUNK_ELEMENTS_MAX as usize;
            let share = pieces_left > 1
                && (size + e / 2 > rest_bytes.div_ceil(pieces_left)
                    || n + 1 > rest_count.div_ceil(pieces_left));
            if n > 0 && (full || share) {
                pieces.push(self.piece(start, at, n));
                (rest_bytes, rest_count) = (rest_bytes - size, rest_count - n);
                pieces_left = (pieces_left - 1).max(1);
                (start, n) = (at, 0);
            }
            n += 1;
            at = next;
        }
        if n > 0 {
            pieces.push(self.piece(start, at, n));
        }
        pieces
    }

    fn piece(&self, start: usize, end: usize, n: usize) -> Chunk {
        let mut bytes = Vec::with_capacity(usable(end - start));
        bytes.extend_from_slice(&self.bytes[start..end]);
        Chunk {
            bytes,
            count: n as u32,
        }
    }
}

/// The chunks of a list: one kept inline (a small list costs no deque),
/// more in a deque. `One` holds an empty chunk only when the list is
/// empty; `Many` holds two or more chunks, none empty.
enum Chunks {
    One(Chunk),
    // Boxed: then `Chunks` is four words (the deque alone would make it
    // five, every `List` 16 bytes bigger); the box is one allocation per
    // list of two chunks or more.
    #[allow(clippy::box_collection)]
    Many(Box<VecDeque<Chunk>>),
}

impl Chunks {
    fn len(&self) -> usize {
        match self {
            Chunks::One(_) => 1,
            Chunks::Many(d) => d.len(),
        }
    }

    fn get(&self, i: usize) -> Option<&Chunk> {
        match self {
            Chunks::One(c) => (i == 0).then_some(c),
            Chunks::Many(d) => d.get(i),
        }
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut Chunk> {
        match self {
            Chunks::One(c) => (i == 0).then_some(c),
            Chunks::Many(d) => d.get_mut(i),
        }
    }

    /// Puts `c` (not empty) before chunk `i` (`i == len` appends).
    fn insert(&mut self, i: usize, c: Chunk) {
        match self {
            Chunks::One(only) if only.count == 0 => *only = c,
            Chunks::One(only) => {
                let only = std::mem::take(only);
                let mut d = VecDeque::with_capacity(2);
                d.push_back(only);
                d.insert(i.min(1), c);
                *self = Chunks::Many(Box::new(d));
            }
            Chunks::Many(d) => d.insert(i.min(d.len()), c),
        }
    }

    /// Takes chunk `i` out (the last one leaves an empty `One`).
    fn remove(&mut self, i: usize) -> Option<Chunk> {
        match self {
            Chunks::One(c) => (i == 0).then(|| std::mem::take(c)),
            Chunks::Many(d) => {
                let c = d.remove(i)?;
                if d.len() == 1 {
                    let only = d.pop_front().unwrap_or_default();
                    *self = Chunks::One(only);
                } else if d.capacity() > 8 && d.len() < d.capacity() / 4 {
                    d.shrink_to(d.len() * 2);
                }
                Some(c)
            }
        }
    }

    /// Heap bytes of the deque itself (not the chunks' buffers).
    fn heap(&self) -> usize {
        match self {
            Chunks::One(_) => 0,
            Chunks::Many(d) => {
                malloc_size(std::mem::size_of::<VecDeque<Chunk>>())
                    + malloc_size(d.capacity() * std::mem::size_of::<Chunk>())
            }
        }
    }
}

/// A list's elements front to back (and back to front); skipping
/// (`nth`, so LRANGE's `skip`) steps over whole chunks by their counts.
pub struct Iter<'a> {
    chunks: &'a Chunks,
    /// The front cursor: chunk, byte offset and element index in it.
    front: (usize, usize, u32),
    /// The back cursor: chunk, byte end and elements before it in it.
    back: (usize, usize, u32),
    left: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        let mut c = self.chunks.get(self.front.0)?;
        while self.front.2 >= c.count {
            self.front = (self.front.0 + 1, 0, 0);
            c = self.chunks.get(self.front.0)?;
        }
        let (a, b, next) = c.read_at(self.front.1);
        self.front.1 = next;
        self.front.2 += 1;
        self.left -= 1;
        Some(c.data((a, b)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }

    fn nth(&mut self, n: usize) -> Option<&'a [u8]> {
        if n >= self.left {
            self.left = 0;
            return None;
        }
        self.left -= n;
        let mut n = n;
        let mut c = self.chunks.get(self.front.0)?;
        while n >= (c.count - self.front.2) as usize {
            n -= (c.count - self.front.2) as usize;
            self.front = (self.front.0 + 1, 0, 0);
            c = self.chunks.get(self.front.0)?;
        }
        if n > 0 {
            let k = self.front.2 as usize + n;
            self.front.1 = if n <= c.count as usize - k {
                c.skip(self.front.1, n)
            } else {
                c.skip_back(c.bytes.len(), c.count as usize - k)
            };
            self.front.2 = k as u32;
        }
        self.next()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let mut c = self.chunks.get(self.back.0)?;
        while self.back.2 == 0 {
            let i = self.back.0.checked_sub(1)?;
            c = self.chunks.get(i)?;
            self.back = (i, c.bytes.len(), c.count);
        }
        let (start, a, b) = c.read_back(self.back.1);
        self.back.1 = start;
        self.back.2 -= 1;
        self.left -= 1;
        Some(c.data((a, b)))
    }

    fn nth_back(&mut self, n: usize) -> Option<Self::Item> {
        if n >= self.left {
            self.left = 0;
            return None;
        }
        self.left -= n;
        let mut n = n;
        let mut c = self.chunks.get(self.back.0)?;
        while n >= self.back.2 as usize {
            n -= self.back.2 as usize;
            let i = self.back.0.checked_sub(1)?;
            c = self.chunks.get(i)?;
            self.back = (i, c.bytes.len(), c.count);
        }
        if n > 0 {
            let k = self.back.2 as usize - n;
            self.back.1 = if n <= k {
                c.skip_back(self.back.1, n)
            } else {
                c.skip(0, k)
            };
            self.back.2 = k as u32;
        }
        self.next_back()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl List {
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// OBJECT ENCODING's name.
    pub fn encoding(&self) -> &'static str {
        if self.quicklist {
            "quicklist"
        } else {
            "listpack"
        }
    }

    /// Chunk and index in it of element `i` (in range), counted from
    /// the nearer end.
    fn locate(&self, i: usize) -> Option<(usize, usize)> {
        let n = self.chunks.len();
        if i < self.len() / 2 {
            let mut i = i;
            for ci in 0..n {
                let count = self.chunks.get(ci)?.count as usize;
                if i < count {
                    return Some((ci, i));
                }
                i -= count;
            }
        } else {
            let mut from_end = self.len().checked_sub(i + 1)?;
            for ci in (0..n).rev() {
                let count = self.chunks.get(ci)?.count as usize;
                if from_end < count {
                    return Some((ci, count - 1 - from_end));
                }
                from_end -= count;
            }
        }
        None
    }

    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let (ci, k) = self.locate(i)?;
        let c = self.chunks.get(ci)?;
        let (a, b, _) = c.read_at(c.offset_of(k));
        Some(c.data((a, b)))
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &[u8]> + ExactSizeIterator + '_ {
        let last = self.chunks.len() - 1;
        let (end, count) = self
            .chunks
            .get(last)
            .map_or((0, 0), |c| (c.bytes.len(), c.count));
        Iter {
            chunks: &self.chunks,
            front: (0, 0, 0),
            back: (last, end, count),
            left: self.len(),
        }
    }

    /// Call before adding elements of `raw_bytes` bytes in all: a
    /// listpack that would pass the limit becomes a quicklist.
    pub fn will_grow(&mut self, raw_bytes: usize) {
        if !self.quicklist && self.lp_bytes.saturating_add(raw_bytes) > LISTPACK_BYTES_MAX {
            self.quicklist = true;
        }
    }

    /// Call after removing or replacing elements: a quicklist at half the
    /// limit or less becomes a listpack again.
    fn shrank(&mut self) {
        if self.quicklist && self.lp_bytes <= LISTPACK_BYTES_MAX / 2 {
            self.quicklist = false;
        }
    }

    /// Runs `f` on chunk `ci`, keeping the heap count right.
    fn with_chunk<R>(&mut self, ci: usize, f: impl FnOnce(&mut Chunk) -> R) -> Option<R> {
        let c = self.chunks.get_mut(ci)?;
        let before = c.heap();
        let r = f(c);
        self.chunk_heap = self.chunk_heap - before + c.heap();
        Some(r)
    }

    fn insert_chunk(&mut self, ci: usize, c: Chunk) {
        self.chunk_heap += c.heap();
        self.chunks.insert(ci, c);
    }

    fn remove_chunk(&mut self, ci: usize) -> Option<Chunk> {
        let c = self.chunks.remove(ci)?;
        self.chunk_heap -= c.heap();
        Some(c)
    }

    /// Replaces an over-full chunk by chunks within the limits.
    fn split_if_over(&mut self, ci: usize) {
        let pieces = match self.chunks.get(ci) {
            Some(c) if c.over() => c.split(),
            _ => return,
        };
        self.remove_chunk(ci);
        for (j, p) in pieces.into_iter().enumerate() {
            self.insert_chunk(ci + j, p);
        }
    }

    /// Adds one element at `end` (limits checked by the caller).
    fn push_one(&mut self, end: End, e: &[u8]) {
        let size = entry_len(e.len());
        let ci = match end {
            End::Left => 0,
            End::Right => self.chunks.len() - 1,
        };
        let fits = self.chunks.get(ci).is_some_and(|c| c.fits(size));
        if fits {
            self.with_chunk(ci, |c| {
                let at = if end == End::Left { 0 } else { c.bytes.len() };
                c.insert_at(at, e)
            });
        } else {
            let at = if end == End::Left { 0 } else { ci + 1 };
            self.insert_chunk(at, Chunk::with(e));
        }
        self.len += 1;
        self.lp_bytes += listpack_entry_bytes(e);
    }

    /// Adds elements one by one at `end` (LPUSH a b c leaves c first).
    pub fn push<'e>(
        &mut self,
        end: End,
        elements: impl IntoIterator<Item = &'e [u8]> + Clone,
    ) -> Result<(), &'static str> {
        let (mut n, mut raw) = (0usize, 0usize);
        for e in elements.clone() {
            n += 1;
            raw = raw.saturating_add(e.len());
        }
        if self.len().saturating_add(n) > ELEMENTS_MAX {
            return Err(LIST_FULL);
        }
        self.will_grow(raw);
        for e in elements {
            self.push_one(end, e);
        }
        Ok(())
    }

    /// Takes one element from `end`.
    pub fn pop(&mut self, end: End) -> Option<Vec<u8>> {
        if self.len == 0 {
            return None;
        }
        let ci = match end {
            End::Left => 0,
            End::Right => self.chunks.len() - 1,
        };
        let (e, emptied) = self.with_chunk(ci, |c| {
            let e = match end {
                End::Left => {
                    let (a, b, next) = c.read_at(0);
                    let e = c.data((a, b)).to_vec();
                    c.bytes.drain(..next);
                    e
                }
                End::Right => {
                    let (start, a, b) = c.read_back(c.bytes.len());
                    let e = c.data((a, b)).to_vec();
                    c.bytes.truncate(start);
                    e
                }
            };
            c.count -= 1;
            c.give_back();
            (e, c.count == 0)
        })?;
        if emptied {
            self.remove_chunk(ci);
        }
        self.len -= 1;
        self.lp_bytes -= listpack_entry_bytes(&e);
        self.shrank();
        Some(e)
    }

    /// Replaces the element at `i` (in range).
    pub fn set(&mut self, i: usize, element: &[u8]) {
        let Some((ci, k)) = self.locate(i) else {
            return;
        };
        self.will_grow(element.len());
        let old = self.with_chunk(ci, |c| {
            let at = c.offset_of(k);
            let (a, b, next) = c.read_at(at);
            let old = listpack_entry_bytes(c.data((a, b)));
            c.replace(at, next, element);
            old
        });
        self.lp_bytes = self.lp_bytes + listpack_entry_bytes(element) - old.unwrap_or(0);
        self.split_if_over(ci);
        self.shrank();
    }

    /// Inserts `element` before position `i` (`i == len` appends).
    pub fn insert(&mut self, i: usize, element: &[u8]) -> Result<(), &'static str> {
        if self.len() >= ELEMENTS_MAX {
            return Err(LIST_FULL);
        }
        self.will_grow(element.len());
        if i == 0 || i >= self.len() {
            let end = if i == 0 { End::Left } else { End::Right };
            self.push_one(end, element);
            return Ok(());
        }
        let Some((ci, k)) = self.locate(i) else {
            return Ok(());
        };
        let size = entry_len(element.len());
        // At a chunk's start, the previous chunk's end is the same place.
        let prev = ci.checked_sub(1).filter(|_| k == 0);
        if let Some(p) = prev.filter(|&p| self.chunks.get(p).is_some_and(|c| c.fits(size))) {
            self.with_chunk(p, |c| c.insert_at(c.bytes.len(), element));
        } else {
            self.with_chunk(ci, |c| c.insert_at(c.offset_of(k), element));
            self.split_if_over(ci);
        }
        self.len += 1;
        self.lp_bytes += listpack_entry_bytes(element);
        Ok(())
    }

    /// LREM: removes up to `count` elements equal to `element` (all when
    /// 0; from the tail when negative); returns how many.
    pub fn remove_matching(&mut self, element: &[u8], count: i64) -> usize {
        let mut limit = if count == 0 {
            usize::MAX
        } else {
            usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX)
        };
        let n = self.chunks.len();
        let order: Box<dyn Iterator<Item = usize>> = if count < 0 {
            Box::new((0..n).rev())
        } else {
            Box::new(0..n)
        };
        let mut removed = 0;
        let mut emptied = Vec::new();
        for ci in order {
            if limit == 0 {
                break;
            }
            let Some(c) = self.chunks.get(ci) else {
                break;
            };
            // The matching entries' byte ranges, front to back.
            let mut hits = Vec::new();
            let mut at = 0;
            while at < c.bytes.len() {
                let (a, b, next) = c.read_at(at);
                if c.data((a, b)) == element {
                    hits.push((at, next));
                }
                at = next;
            }
            if hits.is_empty() {
                continue;
            }
            let take = hits.len().min(limit);
            let hits = if count < 0 {
                &hits[hits.len() - take..]
            } else {
                &hits[..take]
            };
            limit -= take;
            removed += take;
            self.with_chunk(ci, |c| {
                let mut kept = Vec::with_capacity(usable(
                    c.bytes.len() - hits.iter().map(|(a, b)| b - a).sum::<usize>(),
                ));
                let mut from = 0;
                for &(a, b) in hits {
                    kept.extend_from_slice(&c.bytes[from..a]);
                    from = b;
                }
                kept.extend_from_slice(&c.bytes[from..]);
                c.bytes = kept;
                c.count -= take as u32;
                c.fit();
            });
            if self.chunks.get(ci).is_some_and(|c| c.count == 0) {
                emptied.push(ci);
            }
        }
        if removed == 0 {
            return 0;
        }
        emptied.sort_unstable();
        for ci in emptied.into_iter().rev() {
            self.remove_chunk(ci);
        }
        self.merge_neighbours();
        self.len -= removed as u32;
        self.lp_bytes -= removed * listpack_entry_bytes(element);
        self.shrank();
        removed
    }

    /// Merges each chunk with the next while both fit in one.
    fn merge_neighbours(&mut self) {
        let mut ci = 0;
        while ci + 1 < self.chunks.len() {
            let fits = match (self.chunks.get(ci), self.chunks.get(ci + 1)) {
                (Some(a), Some(b)) => {
                    a.bytes.len() + b.bytes.len() <= CHUNK_BYTES_MAX
                        && a.count + b.count <= CHUNK_ELEMENTS_MAX
                }
                _ => false,
            };
            if !fits {
                ci += 1;
                continue;
            }
            if let Some(next) = self.remove_chunk(ci + 1) {
                self.with_chunk(ci, |c| {
                    c.reserve(next.bytes.len());
                    c.bytes.extend_from_slice(&next.bytes);
                    c.count += next.count;
                });
            }
        }
    }

    /// LTRIM: keeps positions `start..=stop` (already resolved), or
    /// nothing.
    pub fn retain_range(&mut self, range: Option<(usize, usize)>) {
        let len = self.len();
        let (start, stop) = range.unwrap_or((len, len));
        let tail = len.saturating_sub(stop.saturating_add(1));
        let head = start.min(len - tail);
        self.drop_elements(End::Right, tail);
        self.drop_elements(End::Left, head);
        self.shrank();
    }

    /// Removes `n` elements (at most all) from `end`: whole chunks, then
    /// part of one.
    fn drop_elements(&mut self, end: End, mut n: usize) {
        while n > 0 && self.len > 0 {
            let ci = match end {
                End::Left => 0,
                End::Right => self.chunks.len() - 1,
            };
            let Some(c) = self.chunks.get(ci) else {
                return;
            };
            let count = c.count as usize;
            if count <= n {
                let lp = c.lp_bytes_of(0, c.bytes.len());
                self.remove_chunk(ci);
                self.len -= count as u32;
                self.lp_bytes -= lp;
                n -= count;
                continue;
            }
            let lp = self.with_chunk(ci, |c| {
                let lp = match end {
                    End::Left => {
                        let cut = c.offset_of(n);
                        let lp = c.lp_bytes_of(0, cut);
                        c.bytes.drain(..cut);
                        lp
                    }
                    End::Right => {
                        let cut = c.offset_of(count - n);
                        let lp = c.lp_bytes_of(cut, c.bytes.len());
                        c.bytes.truncate(cut);
                        lp
                    }
                };
                c.count -= n as u32;
                c.fit();
                lp
            });
            self.len -= n as u32;
            self.lp_bytes -= lp.unwrap_or(0);
            n = 0;
        }
    }

    /// Heap bytes owned beyond the list's own struct (allocator-rounded).
    pub fn heap_bytes(&self) -> usize {
        self.chunk_heap + self.chunks.heap()
    }

    /// An empty list a snapshot is restoring, in its saved encoding.
    pub fn restoring(quicklist: bool) -> List {
        List {
            quicklist,
            ..List::default()
        }
    }

    /// Appends a restored element (no conversion: the saved encoding
    /// stands, and is checked with [`Self::restored_encoding_ok`]).
    pub fn push_restored(&mut self, element: &[u8]) -> Result<(), &'static str> {
        if self.len() >= ELEMENTS_MAX {
            return Err(LIST_FULL);
        }
        self.push_one(End::Right, element);
        Ok(())
    }

    /// Whether a restored listpack could be one (within the limit).
    pub fn restored_encoding_ok(&self) -> bool {
        self.quicklist || self.lp_bytes <= LISTPACK_BYTES_MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Checks every invariant of the layout against a recount.
    fn check(l: &List) {
        let n = l.chunks.len();
        if let Chunks::Many(d) = &l.chunks {
            assert!(d.len() >= 2, "a deque of {} chunks", d.len());
        }
        let (mut len, mut heap, mut lp) = (0usize, 0usize, LISTPACK_OVERHEAD);
        for ci in 0..n {
            let c = l.chunks.get(ci).unwrap();
            if l.len > 0 {
                assert!(c.count > 0, "empty chunk {ci} of {n}");
            } else {
                assert_eq!(c.bytes.capacity(), 0, "an empty list keeps a buffer");
            }
            assert!(
                !c.over(),
                "chunk {ci}: {} bytes, {}",
                c.bytes.len(),
                c.count
            );
            // Walked both ways, the same entries.
            let (mut at, mut fwd) = (0, Vec::new());
            while at < c.bytes.len() {
                let (a, b, next) = c.read_at(at);
                fwd.push(c.data((a, b)).to_vec());
                at = next;
            }
            assert_eq!(at, c.bytes.len());
            let (mut end, mut back) = (c.bytes.len(), Vec::new());
            while end > 0 {
                let (start, a, b) = c.read_back(end);
                back.push(c.data((a, b)).to_vec());
                end = start;
            }
            back.reverse();
            assert_eq!(fwd, back);
            assert_eq!(fwd.len(), c.count as usize);
            len += fwd.len();
            heap += malloc_size(c.bytes.capacity());
            lp += fwd.iter().map(|e| listpack_entry_bytes(e)).sum::<usize>();
        }
        assert_eq!(len, l.len());
        assert_eq!(heap, l.chunk_heap, "heap count drifted");
        assert_eq!(lp, l.lp_bytes, "listpack size drifted");
        assert_eq!(l.iter().len(), len);
    }

    fn elems(l: &List) -> Vec<Vec<u8>> {
        l.iter().map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn entry_sizes_follow_redis_listpack() {
        assert_eq!(listpack_entry_bytes(b"1"), 2);
        assert_eq!(listpack_entry_bytes(b"-1"), 3);
        assert_eq!(listpack_entry_bytes(b"01"), 4);
        assert_eq!(listpack_entry_bytes(b"100000"), 5);
        assert_eq!(listpack_entry_bytes(b"9223372036854775807"), 10);
        assert_eq!(listpack_entry_bytes(&[b'a'; 63]), 65);
        assert_eq!(listpack_entry_bytes(&[b'a'; 64]), 67);
        assert_eq!(listpack_entry_bytes(&[b'a'; 126]), 130);
        assert_eq!(listpack_entry_bytes(&[b'a'; 5000]), 5007);
    }

    #[test]
    fn a_list_becomes_a_quicklist_past_8k_and_back_at_half() {
        let mut l = List::default();
        let big = [b'x'; 1000];
        for _ in 0..8 {
            l.push(End::Right, [&big[..]]).unwrap();
        }
        assert_eq!(l.encoding(), "listpack");
        l.push(End::Right, [&big[..]]).unwrap();
        assert_eq!(l.encoding(), "quicklist");
        while l.len() > 4 {
            assert_eq!(l.encoding(), "quicklist");
            l.pop(End::Left);
        }
        assert_eq!(l.encoding(), "listpack");
    }

    #[test]
    fn ranges_clamp_like_redis() {
        assert_eq!(resolve_range(0, -1, 3), Some((0, 2)));
        assert_eq!(resolve_range(-100, 100, 3), Some((0, 2)));
        assert_eq!(resolve_range(2, 1, 3), None);
        assert_eq!(resolve_range(5, 10, 3), None);
        assert_eq!(resolve_range(i64::MIN, i64::MAX, 3), Some((0, 2)));
        assert_eq!(resolve_index(-1, 3), Some(2));
        assert_eq!(resolve_index(3, 3), None);
        assert_eq!(resolve_index(i64::MIN, 3), None);
    }

    #[test]
    fn entries_round_trip_at_varint_boundaries() {
        for n in [0, 1, 127, 128, 16_383, 16_384, 70_000] {
            let e: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let mut c = Chunk::default();
            c.insert_at(0, b"x");
            c.insert_at(c.bytes.len(), &e);
            c.insert_at(c.bytes.len(), b"y");
            assert_eq!(c.bytes.len(), 3 + 3 + entry_len(n));
            let (a, b, next) = c.read_at(3);
            assert_eq!(c.data((a, b)), &e[..]);
            let (start, a, b) = c.read_back(next);
            assert_eq!((start, c.data((a, b))), (3, &e[..]));
        }
    }

    #[test]
    fn a_small_list_is_one_buffer_grown_to_the_byte() {
        let mut l = List::default();
        assert_eq!(l.heap_bytes(), 0);
        assert_eq!(std::mem::size_of::<List>(), 56);
        for i in 0..16 {
            l.push(End::Right, [format!("element:{i}").as_bytes()])
                .unwrap();
        }
        check(&l);
        assert!(matches!(l.chunks, Chunks::One(_)));
        // 16 entries of 11-12 bytes: 182 bytes in a 192-byte block.
        assert_eq!(l.chunks.get(0).unwrap().bytes.len(), 182);
        assert_eq!(l.heap_bytes(), 192);
    }

    #[test]
    fn chunks_split_at_the_byte_and_element_limits() {
        // 10-byte elements: 12-byte entries, 682 to a chunk.
        let mut l = List::default();
        for i in 0..2000u32 {
            l.push(End::Right, [format!("e:{i:08}").as_bytes()])
                .unwrap();
        }
        check(&l);
        let counts: Vec<u32> = (0..l.chunks.len())
            .map(|i| l.chunks.get(i).unwrap().count)
            .collect();
        assert_eq!(counts, [682, 682, 636]);
        assert_eq!(l.chunks.get(0).unwrap().bytes.len(), 8184);
        // Tiny elements: the element limit binds first.
        let mut t = List::default();
        for _ in 0..3000 {
            t.push(End::Left, [&b"1"[..]]).unwrap();
        }
        check(&t);
        assert_eq!(t.chunks.len(), 3);
        assert_eq!(t.chunks.get(2).unwrap().count, CHUNK_ELEMENTS_MAX);
        // Inserting into a full chunk splits it in two even halves.
        let mut at = 300;
        l.insert(at, b"inserted").unwrap();
        check(&l);
        assert_eq!(l.chunks.len(), 4);
        assert_eq!(l.get(at), Some(&b"inserted"[..]));
        let first = l.chunks.get(0).unwrap().bytes.len();
        assert!((4000..=4200).contains(&first), "{first}");
        // At a chunk's boundary the previous chunk takes it if it fits.
        at = l.chunks.get(0).unwrap().count as usize;
        l.insert(at, b"boundary").unwrap();
        check(&l);
        assert_eq!(l.chunks.len(), 4);
        assert_eq!(l.get(at), Some(&b"boundary"[..]));
    }

    #[test]
    fn an_element_bigger_than_a_chunk_is_a_chunk_of_its_own() {
        let big = vec![b'b'; 3 * CHUNK_BYTES_MAX];
        let mut l = List::default();
        l.push(End::Right, [&b"a"[..], b"c"]).unwrap();
        l.insert(1, &big).unwrap();
        check(&l);
        assert_eq!(l.chunks.len(), 3);
        assert_eq!(elems(&l), [b"a".to_vec(), big.clone(), b"c".to_vec()]);
        // Pushes next to it start new chunks; a set inside a chunk of
        // small ones splits it around the big one.
        for _ in 0..100 {
            l.push(End::Right, [&b"small"[..]]).unwrap();
        }
        l.set(50, &big);
        check(&l);
        assert_eq!(l.get(50), Some(&big[..]));
        assert_eq!(l.get(51), Some(&b"small"[..]));
        l.set(50, b"small again");
        check(&l);
        assert_eq!(l.remove_matching(&big, 0), 1);
        check(&l);
        assert_eq!(l.len(), 102);
        // What is left fits one chunk again.
        assert_eq!(l.chunks.len(), 1);
    }

    #[test]
    fn pops_drain_chunks_from_both_ends_and_give_the_heap_back() {
        let mut l = List::default();
        let mut model = std::collections::VecDeque::new();
        for i in 0..5000u32 {
            let e = format!("element:{i}").into_bytes();
            if i % 3 == 0 {
                l.push(End::Left, [&e[..]]).unwrap();
                model.push_front(e);
            } else {
                l.push(End::Right, [&e[..]]).unwrap();
                model.push_back(e);
            }
        }
        check(&l);
        assert!(l.chunks.len() > 5);
        assert!(l.heap_bytes() < 5000 * 17, "{}", l.heap_bytes());
        let mut i = 0;
        while !model.is_empty() {
            if i % 2 == 0 {
                assert_eq!(l.pop(End::Left), model.pop_front());
            } else {
                assert_eq!(l.pop(End::Right), model.pop_back());
            }
            if i % 97 == 0 {
                check(&l);
            }
            i += 1;
        }
        check(&l);
        assert_eq!(l.pop(End::Left), None);
        assert_eq!(l.heap_bytes(), 0);
        assert!(matches!(l.chunks, Chunks::One(_)));
        // The same after LTRIM to nothing and after LREM of everything.
        for _ in 0..2000 {
            l.push(End::Right, [&b"x"[..]]).unwrap();
        }
        l.retain_range(None);
        check(&l);
        assert_eq!((l.len(), l.heap_bytes()), (0, 0));
        for _ in 0..2000 {
            l.push(End::Right, [&b"x"[..]]).unwrap();
        }
        assert_eq!(l.remove_matching(b"x", 0), 2000);
        check(&l);
        assert_eq!((l.len(), l.heap_bytes()), (0, 0));
    }

    #[test]
    fn skipping_iterators_cross_chunks() {
        let mut l = List::default();
        let model: Vec<Vec<u8>> = (0..3000u32).map(|i| format!("v{i}").into_bytes()).collect();
        for e in &model {
            l.push(End::Right, [&e[..]]).unwrap();
        }
        for (a, len) in [(0, 100), (1020, 10), (2999, 5), (1500, 1500), (3000, 1)] {
            let got: Vec<&[u8]> = l.iter().skip(a).take(len).collect();
            let want: Vec<&[u8]> = model.iter().skip(a).take(len).map(|e| &e[..]).collect();
            assert_eq!(got, want, "skip {a}");
            let got: Vec<&[u8]> = l.iter().rev().skip(a).take(len).collect();
            let want: Vec<&[u8]> = model
                .iter()
                .rev()
                .skip(a)
                .take(len)
                .map(|e| &e[..])
                .collect();
            assert_eq!(got, want, "rev skip {a}");
        }
        let mut it = l.iter();
        assert_eq!(it.nth(1000), Some(&b"v1000"[..]));
        assert_eq!(it.nth_back(1000), Some(&b"v1999"[..]));
        assert_eq!(it.len(), 998);
        assert_eq!(it.nth_back(997), Some(&b"v1001"[..]));
        assert_eq!(it.next(), None);
        assert_eq!(it.next_back(), None);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Push(bool, Vec<u8>),
        /// Many tiny elements at once, to reach the element limit.
        PushMany(bool, usize, u8),
        Pop(bool),
        Insert(usize, Vec<u8>),
        Set(usize, Vec<u8>),
        Rem(Vec<u8>, i64),
        Trim(usize, usize),
        Get(usize),
        Range(usize, usize, bool),
    }

    fn element() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            8 => prop::sample::select(vec![b"a".to_vec(), b"bb".to_vec(), b"12".to_vec(), b"".to_vec()]),
            4 => prop::collection::vec(any::<u8>(), 0..300),
            1 => prop::collection::vec(any::<u8>(), 3000..12_000),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            10 => (any::<bool>(), element()).prop_map(|(l, e)| Op::Push(l, e)),
            1 => (any::<bool>(), 0usize..600, b'0'..b'3').prop_map(|(l, n, b)| Op::PushMany(l, n, b)),
            3 => any::<bool>().prop_map(Op::Pop),
            4 => (any::<usize>(), element()).prop_map(|(i, e)| Op::Insert(i, e)),
            3 => (any::<usize>(), element()).prop_map(|(i, e)| Op::Set(i, e)),
            1 => (element(), -3i64..4).prop_map(|(e, c)| Op::Rem(e, c)),
            1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::Trim(a, b)),
            2 => any::<usize>().prop_map(Op::Get),
            2 => (any::<usize>(), 0usize..50, any::<bool>()).prop_map(|(a, n, r)| Op::Range(a, n, r)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random edits against a `Vec` model, every invariant checked
        /// after each step.
        #[test]
        fn chunks_match_a_vec_model(ops in prop::collection::vec(op(), 1..300)) {
            let mut l = List::default();
            let mut m: Vec<Vec<u8>> = Vec::new();
            for op in ops {
                match op {
                    Op::Push(left, e) => {
                        if left {
                            l.push(End::Left, [&e[..]]).unwrap();
                            m.insert(0, e);
                        } else {
                            l.push(End::Right, [&e[..]]).unwrap();
                            m.push(e);
                        }
                    }
                    Op::PushMany(left, n, b) => {
                        let e = [b];
                        let end = if left { End::Left } else { End::Right };
                        l.push(end, std::iter::repeat_n(&e[..], n)).unwrap();
                        for _ in 0..n {
                            if left { m.insert(0, e.to_vec()) } else { m.push(e.to_vec()) }
                        }
                    }
                    Op::Pop(left) => {
                        let want = if m.is_empty() { None } else if left { Some(m.remove(0)) } else { m.pop() };
                        prop_assert_eq!(l.pop(if left { End::Left } else { End::Right }), want);
                    }
                    Op::Insert(i, e) => {
                        let i = i % (m.len() + 1);
                        l.insert(i, &e).unwrap();
                        m.insert(i, e);
                    }
                    Op::Set(i, e) => {
                        if !m.is_empty() {
                            let i = i % m.len();
                            l.set(i, &e);
                            m[i] = e;
                        }
                    }
                    Op::Rem(e, count) => {
                        // Mostly an element that is there.
                        let e = if m.is_empty() || count == 3 { e } else { m[e.len() % m.len()].clone() };
                        let count = if count == 3 { 0 } else { count };
                        let mut positions: Vec<usize> = (0..m.len()).filter(|&i| m[i] == e).collect();
                        let limit = if count == 0 { usize::MAX } else { count.unsigned_abs() as usize };
                        if count < 0 {
                            positions = positions.into_iter().rev().take(limit).collect();
                        } else {
                            positions.truncate(limit);
                        }
                        positions.sort_unstable();
                        for &p in positions.iter().rev() {
                            m.remove(p);
                        }
                        prop_assert_eq!(l.remove_matching(&e, count), positions.len());
                    }
                    Op::Trim(a, b) => {
                        let range = if m.is_empty() || a % 5 == 0 {
                            None
                        } else {
                            let a = a % m.len();
                            Some((a, a + b % (m.len() - a)))
                        };
                        l.retain_range(range);
                        match range {
                            None => m.clear(),
                            Some((a, b)) => m = m[a..=b].to_vec(),
                        }
                    }
                    Op::Get(i) => {
                        let i = i % (m.len() + 1);
                        prop_assert_eq!(l.get(i), m.get(i).map(|e| &e[..]));
                    }
                    Op::Range(a, n, rev) => {
                        let a = a % (m.len() + 1);
                        let got: Vec<&[u8]> = if rev {
                            l.iter().rev().skip(a).take(n).collect()
                        } else {
                            l.iter().skip(a).take(n).collect()
                        };
                        let want: Vec<&[u8]> = if rev {
                            m.iter().rev().skip(a).take(n).map(|e| &e[..]).collect()
                        } else {
                            m.iter().skip(a).take(n).map(|e| &e[..]).collect()
                        };
                        prop_assert_eq!(got, want);
                    }
                }
                check(&l);
                prop_assert_eq!(elems(&l), m.clone());
                prop_assert_eq!(l.iter().rev().map(<[u8]>::to_vec).collect::<Vec<_>>(), m.iter().rev().cloned().collect::<Vec<_>>());
                if m.is_empty() {
                    prop_assert_eq!(l.heap_bytes(), 0);
                }
                let c = l.clone();
                check(&c);
                prop_assert_eq!(&c, &l);
            }
        }
    }
}
