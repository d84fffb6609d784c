//! The large encoding of hashes, sets and zsets: entries in a dense
//! vector, found by an index of positions (the keyspace's own layout).
//!
//! Iteration order is the vector's, which depends only on the commands
//! applied, so every replica (and a restored snapshot) iterates, scans
//! and samples alike; a position is an O(1) random sample. Removal is
//! swap-remove, which repoints the moved entry's index slot — or, for a
//! table whose entries have a hole value ([`HoleEntry`], the zset's),
//! leaves a hole that [`DenseTable::compact`] later squeezes out, so no
//! other entry moves (whoever keeps positions need not be told); such a
//! table puts a new entry in its lowest hole, a rule that depends only
//! on where the holes are (so a restored table fills the same ones).
//!
//! The thing not to get wrong: the index hashes keys with a seed derived
//! from the shard's secret seed (so keys cannot be chosen to collide),
//! and that seed changes no observable order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::bytes::malloc_size;

/// Most entries one table holds (positions are u32).
pub const ENTRIES_MAX: usize = u32::MAX as usize - 1;

/// What a [`DenseTable`] holds: found by its key, weighed by its heap
/// bytes.
pub trait TableEntry {
    fn key(&self) -> &[u8];
    /// Allocator-rounded heap bytes this entry owns.
    fn heap_bytes(&self) -> usize;
}

/// A set's member.
impl TableEntry for Box<[u8]> {
    fn key(&self) -> &[u8] {
        self
    }

    fn heap_bytes(&self) -> usize {
        malloc_size(self.len())
    }
}

/// A set's member, inline when short (up to 22 bytes: no allocation,
/// and a probe reads the member from the dense vector itself).
impl TableEntry for crate::bytes::SmallBytes {
    fn key(&self) -> &[u8] {
        self.as_slice()
    }

    fn heap_bytes(&self) -> usize {
        crate::bytes::SmallBytes::heap_bytes(self)
    }
}

/// An entry type with a value that marks a removed entry's position
/// (never equal to a live entry, holding no heap bytes).
pub trait HoleEntry: TableEntry {
    fn hole() -> Self;
    fn is_hole(&self) -> bool;
}

#[derive(Clone)]
pub struct DenseTable<E> {
    /// Live entries and holes (only a [`HoleEntry`] table has holes).
    entries: Vec<E>,
    /// How many of `entries` are holes.
    holes: usize,
    /// The holes' positions, lowest first out (empty, unallocated, in a
    /// table without holes).
    free: BinaryHeap<Reverse<u32>>,
    index: HashTable<u32>,
    hasher: foldhash::fast::FixedState,
    /// Heap bytes of every entry, kept as entries change so memory
    /// accounting stays O(1) per write.
    data_bytes: usize,
}

impl<E: PartialEq> PartialEq for DenseTable<E> {
    /// Same entries in the same order (the index is derived).
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl<E: Eq> Eq for DenseTable<E> {}

impl<E> std::fmt::Debug for DenseTable<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenseTable")
            .field("len", &(self.entries.len() - self.holes))
            .field("holes", &self.holes)
            .finish()
    }
}

impl<E: TableEntry> DenseTable<E> {
    pub fn new(seed: u64, capacity: usize) -> Self {
        DenseTable {
            entries: Vec::with_capacity(capacity),
            holes: 0,
            free: BinaryHeap::new(),
            index: HashTable::with_capacity(capacity),
            hasher: foldhash::fast::FixedState::with_seed(seed),
            data_bytes: 0,
        }
    }

    /// Live entries (holes not counted).
    pub fn len(&self) -> usize {
        self.entries.len() - self.holes
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Holes left by [`DenseTable::remove_leaving_hole`].
    pub fn holes(&self) -> usize {
        self.holes
    }

    /// Every entry in position order, holes included.
    pub fn entries(&self) -> &[E] {
        &self.entries
    }

    pub fn position(&self, key: &[u8]) -> Option<usize> {
        let entries = &self.entries;
        self.index
            .find(self.hasher.hash_one(key), |&i| {
                entries[i as usize].key() == key
            })
            .map(|&i| i as usize)
    }

    /// Appends an entry whose key is absent; false when the table is full.
    pub fn push(&mut self, entry: E) -> bool {
        let pos = self.entries.len();
        if pos >= ENTRIES_MAX {
            return false;
        }
        debug_assert!(self.position(entry.key()).is_none(), "duplicate key");
        let h = self.hasher.hash_one(entry.key());
        self.data_bytes += entry.heap_bytes();
        self.entries.push(entry);
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index.insert_unique(h, pos as u32, |&i| {
            hasher.hash_one(entries[i as usize].key())
        });
        true
    }

    /// Changes the entry at `pos` in place; `f` must keep its key.
    pub fn update<R>(&mut self, pos: usize, f: impl FnOnce(&mut E) -> R) -> R {
        let entry = &mut self.entries[pos];
        let before = entry.heap_bytes();
        let r = f(entry);
        self.data_bytes = self.data_bytes - before + entry.heap_bytes();
        r
    }

    /// Removes the entry with `key`, if there is one.
    pub fn remove(&mut self, key: &[u8]) -> Option<E> {
        let h = self.hasher.hash_one(key);
        let entries = &self.entries;
        let slot = self
            .index
            .find_entry(h, |&i| entries[i as usize].key() == key)
            .ok()?;
        let pos = *slot.get() as usize;
        slot.remove();
        Some(self.take(pos))
    }

    /// Removes the entry at `pos` (< len); the last entry moves into its
    /// place, as with [`DenseTable::remove`].
    pub fn remove_at(&mut self, pos: usize) -> E {
        self.unindex(pos);
        self.take(pos)
    }

    /// Removes the index slot of the entry at `pos` (< len of entries).
    fn unindex(&mut self, pos: usize) {
        let h = self.hasher.hash_one(self.entries[pos].key());
        if let Ok(slot) = self.index.find_entry(h, |&i| i as usize == pos) {
            slot.remove();
        }
    }

    /// Swap-removes entry `pos`, whose index slot is gone already.
    fn take(&mut self, pos: usize) -> E {
        debug_assert_eq!(self.holes, 0, "swap-remove in a table with holes");
        let last = self.entries.len() - 1;
        if pos != last {
            // The last entry moves into the hole: repoint its index slot.
            let moved = self.hasher.hash_one(self.entries[last].key());
            if let Some(i) = self.index.find_mut(moved, |&i| i as usize == last) {
                *i = pos as u32;
            }
        }
        let e = self.entries.swap_remove(pos);
        self.data_bytes -= e.heap_bytes();
        e
    }

    /// Heap bytes of the vector (holes included), the index and every
    /// entry.
    pub fn heap_bytes(&self) -> usize {
        let buckets = if self.index.capacity() == 0 {
            0
        } else {
            (self.index.capacity() * 8 / 7).next_power_of_two()
        };
        malloc_size(self.entries.capacity() * std::mem::size_of::<E>())
            + malloc_size(buckets * (std::mem::size_of::<u32>() + 1))
            + malloc_size(self.free.capacity() * std::mem::size_of::<u32>())
            + self.data_bytes
    }

    /// The entries' own heap bytes (what [`Self::heap_bytes`] adds to
    /// the table's).
    pub fn data_bytes(&self) -> usize {
        self.data_bytes
    }
}

impl<E: HoleEntry> DenseTable<E> {
    /// Removes the live entry at `pos`, leaving a hole there: no other
    /// entry moves.
    pub fn remove_leaving_hole(&mut self, pos: usize) -> E {
        debug_assert!(!self.entries[pos].is_hole());
        self.unindex(pos);
        let e = std::mem::replace(&mut self.entries[pos], E::hole());
        self.holes += 1;
        self.free.push(Reverse(pos as u32));
        self.data_bytes -= e.heap_bytes();
        e
    }

    /// Adds an entry whose key is absent in the lowest hole, else at the
    /// end; its position, or `None` when the table is full.
    pub fn insert(&mut self, entry: E) -> Option<usize> {
        let Some(Reverse(pos)) = self.free.pop() else {
            let pos = self.entries.len();
            return self.push(entry).then_some(pos);
        };
        debug_assert!(self.position(entry.key()).is_none(), "duplicate key");
        let pos = pos as usize;
        debug_assert!(self.entries[pos].is_hole());
        let h = self.hasher.hash_one(entry.key());
        self.data_bytes += entry.heap_bytes();
        self.entries[pos] = entry;
        self.holes -= 1;
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index.insert_unique(h, pos as u32, |&i| {
            hasher.hash_one(entries[i as usize].key())
        });
        Some(pos)
    }

    /// Appends a hole (a snapshot restoring a table that had some).
    pub fn push_hole(&mut self) -> bool {
        if self.entries.len() >= ENTRIES_MAX {
            return false;
        }
        self.free.push(Reverse(self.entries.len() as u32));
        self.entries.push(E::hole());
        self.holes += 1;
        true
    }

    /// Squeezes the holes out, keeping the live entries' order (so a
    /// scan walking positions down misses none it has not visited: each
    /// entry moves to a lower position only). Returns every old
    /// position's new one (`u32::MAX` for a hole), for whoever keeps
    /// positions to repoint them in one pass.
    pub fn compact(&mut self) -> Vec<u32> {
        let mut next = 0u32;
        let remap: Vec<u32> = self
            .entries
            .iter()
            .map(|e| {
                if e.is_hole() {
                    u32::MAX
                } else {
                    next += 1;
                    next - 1
                }
            })
            .collect();
        self.entries.retain(|e| !e.is_hole());
        for i in self.index.iter_mut() {
            *i = remap[*i as usize];
        }
        self.holes = 0;
        self.free = BinaryHeap::new();
        remap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_keeps_the_index_and_the_byte_count_right() {
        let mut t: DenseTable<Box<[u8]>> = DenseTable::new(9, 0);
        for i in 0..1000 {
            assert!(t.push(format!("k{i}").into_bytes().into()));
        }
        for i in (0..1000).step_by(3) {
            assert!(t.remove(format!("k{i}").as_bytes()).is_some());
        }
        for i in 0..1000 {
            let found = t.position(format!("k{i}").as_bytes());
            assert_eq!(found.is_some(), i % 3 != 0, "k{i}");
            if let Some(p) = found {
                assert_eq!(&*t.entries()[p], format!("k{i}").as_bytes());
            }
        }
        for i in 0..1000 {
            t.remove(format!("k{i}").as_bytes());
        }
        assert!(t.is_empty());
        assert_eq!(t.data_bytes(), 0);
    }
}
