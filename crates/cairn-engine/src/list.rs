//! List values: a double-ended sequence of byte strings with O(1) push
//! and pop at both ends (docs/design/datatypes.md, "Lists").
//!
//! Storage is one `VecDeque` of [`SmallBytes`]: an element of up to 22
//! bytes lives inline in its 24-byte slot (no allocation), a longer one
//! in one exact-size allocation. The encoding Redis 7.2 would report is
//! tracked beside it, from the size the elements would take in a Redis
//! listpack (kept exactly, O(1) per change):
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
//! and the limits are constants.

use std::collections::VecDeque;

use crate::bytes::{malloc_size, SmallBytes};

/// Bytes a listpack-encoded list may take (Redis' `-2` fill: 8 KiB).
pub const LISTPACK_BYTES_MAX: usize = 8192;
/// Most elements one list holds (a bound on every list; positions fit
/// an i64 reply with room to spare).
pub const ELEMENTS_MAX: usize = u32::MAX as usize;
/// A listpack's header (total bytes u32, count u16) and end byte.
const LISTPACK_OVERHEAD: usize = 7;

/// Why an element could not be added: the list holds `ELEMENTS_MAX`.
pub const LIST_FULL: &str = "ERR list has too many elements";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct List {
    items: VecDeque<SmallBytes>,
    /// What these elements would take in one Redis listpack.
    lp_bytes: usize,
    /// Allocator-rounded heap bytes of the elements stored out of line.
    data_bytes: usize,
    quicklist: bool,
}

impl Default for List {
    fn default() -> Self {
        List {
            items: VecDeque::new(),
            lp_bytes: LISTPACK_OVERHEAD,
            data_bytes: 0,
            quicklist: false,
        }
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

impl List {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// OBJECT ENCODING's name.
    pub fn encoding(&self) -> &'static str {
        if self.quicklist {
            "quicklist"
        } else {
            "listpack"
        }
    }

    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.items.get(i).map(SmallBytes::as_slice)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &[u8]> + ExactSizeIterator + '_ {
        self.items.iter().map(SmallBytes::as_slice)
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

    fn added(&mut self, b: &SmallBytes) {
        self.lp_bytes += listpack_entry_bytes(b.as_slice());
        self.data_bytes += b.heap_bytes();
    }

    fn removed(&mut self, b: &SmallBytes) {
        self.lp_bytes -= listpack_entry_bytes(b.as_slice());
        self.data_bytes -= b.heap_bytes();
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
        if self.items.len().saturating_add(n) > ELEMENTS_MAX {
            return Err(LIST_FULL);
        }
        self.will_grow(raw);
        for e in elements {
            let b = SmallBytes::new(e);
            self.added(&b);
            match end {
                End::Left => self.items.push_front(b),
                End::Right => self.items.push_back(b),
            }
        }
        Ok(())
    }

    /// Takes one element from `end`.
    pub fn pop(&mut self, end: End) -> Option<Vec<u8>> {
        let b = match end {
            End::Left => self.items.pop_front(),
            End::Right => self.items.pop_back(),
        }?;
        self.removed(&b);
        self.shrank();
        self.maybe_give_back();
        Some(b.as_slice().to_vec())
    }

    /// Replaces the element at `i` (in range).
    pub fn set(&mut self, i: usize, element: &[u8]) {
        self.will_grow(element.len());
        let b = SmallBytes::new(element);
        self.added(&b);
        let old = std::mem::replace(&mut self.items[i], b);
        self.removed(&old);
        self.shrank();
    }

    /// Inserts `element` before position `i` (`i == len` appends).
    pub fn insert(&mut self, i: usize, element: &[u8]) -> Result<(), &'static str> {
        if self.items.len() >= ELEMENTS_MAX {
            return Err(LIST_FULL);
        }
        self.will_grow(element.len());
        let b = SmallBytes::new(element);
        self.added(&b);
        self.items.insert(i, b);
        Ok(())
    }

    /// LREM: removes up to `count` elements equal to `element` (all when
    /// 0; from the tail when negative); returns how many.
    pub fn remove_matching(&mut self, element: &[u8], count: i64) -> usize {
        let limit = if count == 0 {
            usize::MAX
        } else {
            usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX)
        };
        let mut positions: Vec<usize> = Vec::new();
        let matches = |(i, b): (usize, &SmallBytes)| (b.as_slice() == element).then_some(i);
        if count < 0 {
            positions.extend(
                self.items
                    .iter()
                    .enumerate()
                    .rev()
                    .filter_map(matches)
                    .take(limit),
            );
            positions.reverse();
        } else {
            positions.extend(
                self.items
                    .iter()
                    .enumerate()
                    .filter_map(matches)
                    .take(limit),
            );
        }
        if positions.is_empty() {
            return 0;
        }
        // One pass: keep the elements not chosen.
        let old = std::mem::take(&mut self.items);
        let mut chosen = positions.iter().peekable();
        for (i, b) in old.into_iter().enumerate() {
            if chosen.peek() == Some(&&i) {
                chosen.next();
                self.removed(&b);
            } else {
                self.items.push_back(b);
            }
        }
        self.shrank();
        positions.len()
    }

    /// LTRIM: keeps positions `start..=stop` (already resolved), or
    /// nothing.
    pub fn retain_range(&mut self, range: Option<(usize, usize)>) {
        let (start, stop) = range.unwrap_or((self.items.len(), self.items.len()));
        let tail = self.items.len().saturating_sub(stop.saturating_add(1));
        for _ in 0..tail {
            if let Some(b) = self.items.pop_back() {
                self.removed(&b);
            }
        }
        for _ in 0..start.min(self.items.len()) {
            if let Some(b) = self.items.pop_front() {
                self.removed(&b);
            }
        }
        self.shrank();
        self.maybe_give_back();
    }

    fn maybe_give_back(&mut self) {
        let len = self.items.len();
        if self.items.capacity() > 64 && len < self.items.capacity() / 4 {
            self.items.shrink_to(len * 2);
        }
    }

    /// Heap bytes owned beyond the list's own struct (allocator-rounded).
    pub fn heap_bytes(&self) -> usize {
        malloc_size(self.items.capacity() * std::mem::size_of::<SmallBytes>()) + self.data_bytes
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
        if self.items.len() >= ELEMENTS_MAX {
            return Err(LIST_FULL);
        }
        let b = SmallBytes::new(element);
        self.added(&b);
        self.items.push_back(b);
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
}
