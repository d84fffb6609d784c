//! Compact byte strings: up to 22 bytes live inline (no allocation), so a
//! typical cache key or small value costs nothing beyond its table slot.

use std::fmt;

pub(crate) const INLINE_MAX: usize = 22;

/// An immutable byte string, inline when short.
#[derive(Clone, PartialEq, Eq)]
pub enum SmallBytes {
    Inline { len: u8, data: [u8; INLINE_MAX] },
    Heap(Box<[u8]>),
}

impl SmallBytes {
    pub fn new(b: &[u8]) -> Self {
        if b.len() <= INLINE_MAX {
            let mut data = [0u8; INLINE_MAX];
            data[..b.len()].copy_from_slice(b);
            SmallBytes::Inline {
                len: b.len() as u8,
                data,
            }
        } else {
            SmallBytes::Heap(b.into())
        }
    }

    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match self {
            SmallBytes::Inline { len, data } => &data[..*len as usize],
            SmallBytes::Heap(b) => b,
        }
    }

    /// Bytes allocated on the heap for this string (allocator-rounded).
    pub fn heap_bytes(&self) -> usize {
        match self {
            SmallBytes::Inline { .. } => 0,
            SmallBytes::Heap(b) => malloc_size(b.len()),
        }
    }
}

impl fmt::Debug for SmallBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_slice()))
    }
}

/// What a general-purpose malloc really hands out for `n` bytes: a 16-byte
/// aligned chunk with an 8-byte header, at least 32 bytes.
pub fn malloc_size(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    ((n + 8 + 15) & !15).max(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bytes_is_three_words_and_inline_up_to_22() {
        assert_eq!(std::mem::size_of::<SmallBytes>(), 24);
        assert!(matches!(
            SmallBytes::new(&[7; 22]),
            SmallBytes::Inline { .. }
        ));
        assert!(matches!(SmallBytes::new(&[7; 23]), SmallBytes::Heap(_)));
        assert_eq!(SmallBytes::new(b"abc").as_slice(), b"abc");
        assert_eq!(SmallBytes::new(&[1; 40]).as_slice(), &[1; 40][..]);
    }
}
