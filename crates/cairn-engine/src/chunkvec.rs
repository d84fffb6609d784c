//! A vector stored in fixed-size chunks: what a keyspace keeps its
//! entries in.
//!
//! A `Vec` that doubles has two costs a cache feels: up to half its
//! capacity unused (a keyspace of 300,000 entries of 56 bytes sits in a
//! 524,288-slot buffer: 12 MB allocated for nothing), and every doubling
//! copies the whole buffer on the thread that serves requests (tens of
//! milliseconds at a few million keys, and the old copy stays resident
//! until the allocator returns it). Here the first chunk grows like a
//! `Vec` up to [`CHUNK`] elements, and every later chunk is allocated
//! at [`CHUNK`] and never moves: at most one chunk is partly used, and
//! growing never copies.
//!
//! Positions are dense (`0..len`), removal is `swap_remove`, as with a
//! `Vec`; indexing costs one more load (the chunk's pointer, from a table
//! of `len / CHUNK` words that stays in cache).

use std::ops::{Index, IndexMut};

/// Elements per chunk (a power of two).
pub const CHUNK: usize = 4096;
const SHIFT: u32 = CHUNK.trailing_zeros();

#[derive(Clone, Debug)]
pub struct ChunkVec<T> {
    /// Every chunk but the last is full; the last one is not empty unless
    /// it is the only one (kept as the spare after the vector empties).
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for ChunkVec<T> {
    fn default() -> Self {
        ChunkVec {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> ChunkVec<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Elements the allocated chunks hold room for.
    pub fn capacity(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum()
    }

    pub fn get(&self, i: usize) -> Option<&T> {
        if i < self.len {
            Some(&self.chunks[i >> SHIFT][i & (CHUNK - 1)])
        } else {
            None
        }
    }

    /// Asks the CPU to start loading element `i` (nothing if out of range).
    #[inline]
    pub fn prefetch(&self, i: usize) {
        if let Some(v) = self.get(i) {
            crate::bytes::prefetch_line(v as *const T);
        }
    }

    pub fn push(&mut self, v: T) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => last.push(v),
            _ => {
                // The first chunk grows as a Vec does (a small keyspace
                // stays small); later ones are born full size.
                let mut chunk = if self.chunks.is_empty() {
                    Vec::new()
                } else {
                    Vec::with_capacity(CHUNK)
                };
                chunk.push(v);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    /// Removes element `i` (< len), moving the last element into its
    /// place, as `Vec::swap_remove`.
    pub fn swap_remove(&mut self, i: usize) -> T {
        assert!(
            i < self.len,
            "swap_remove index {i} out of range {}",
            self.len
        );
        let last_chunk = self.chunks.len() - 1;
        let mut last = match self.chunks[last_chunk].pop() {
            Some(v) => v,
            None => unreachable!("the last chunk of a non-empty ChunkVec is not empty"),
        };
        if self.chunks[last_chunk].is_empty() && last_chunk > 0 {
            self.chunks.pop();
        }
        self.len -= 1;
        if i < self.len {
            std::mem::swap(&mut self[i], &mut last);
        }
        last
    }

    /// Gives back a first chunk grown far beyond what it holds (the
    /// later chunks are freed as they empty).
    pub fn shrink(&mut self) {
        if let [only] = self.chunks.as_mut_slice() {
            if only.capacity() > 1024 && only.len() < only.capacity() / 4 {
                only.shrink_to(only.len() * 2);
            }
        }
    }

    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            inner: self.chunks.iter().flatten(),
            left: self.len,
        }
    }
}

impl<T> Index<usize> for ChunkVec<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        &self.chunks[i >> SHIFT][i & (CHUNK - 1)]
    }
}

impl<T> IndexMut<usize> for ChunkVec<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i >> SHIFT][i & (CHUNK - 1)]
    }
}

/// The elements in position order.
pub struct Iter<'a, T> {
    inner: std::iter::Flatten<std::slice::Iter<'a, Vec<T>>>,
    left: usize,
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        let v = self.inner.next()?;
        self.left -= 1;
        Some(v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<T> ExactSizeIterator for Iter<'_, T> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes and swap-removes agree with a Vec doing the same, across
    /// chunk boundaries both ways.
    #[test]
    fn behaves_as_a_vec() {
        let mut c = ChunkVec::new();
        let mut v = Vec::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for round in 0..6 {
            for n in 0..(CHUNK * 2 + 17) {
                c.push(n + round * 100_000);
                v.push(n + round * 100_000);
            }
            let removals = if round % 2 == 0 { CHUNK * 3 } else { v.len() };
            for _ in 0..removals.min(v.len()) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x % v.len() as u64) as usize;
                assert_eq!(c.swap_remove(i), v.swap_remove(i));
            }
            assert_eq!(c.len(), v.len());
            assert!(c.iter().eq(v.iter()));
            assert_eq!(c.iter().len(), v.len());
            for (i, want) in v.iter().enumerate() {
                assert_eq!(c.get(i), Some(want));
                assert_eq!(&c[i], want);
            }
            assert_eq!(c.get(v.len()), None);
            // Full chunks only, but the last: the slack is one chunk.
            assert!(
                c.capacity() <= v.len().max(CHUNK) + CHUNK,
                "{}",
                c.capacity()
            );
        }
    }

    #[test]
    fn a_small_vector_stays_small() {
        let mut c = ChunkVec::new();
        for n in 0..10u64 {
            c.push(n);
        }
        assert!(c.capacity() < 32);
        while !c.is_empty() {
            c.swap_remove(0);
        }
        assert_eq!(c.len(), 0);
        assert_eq!(c.iter().next(), None);
    }
}
