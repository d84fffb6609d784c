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

/// Whether two byte strings are equal, for the walks and probes of the
/// collection encodings: same length, then the last 8 bytes as one word
/// (fields and members that differ mostly differ at the end: `field:41`,
/// `user:1000:name`), then the rest. Inline, so a walk over a listpack of
/// equal-length fields pays a word compare per entry, not a call into
/// libc's `memcmp`.
#[inline]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    match (a.last_chunk::<8>(), b.last_chunk::<8>()) {
        (Some(x), Some(y)) => {
            u64::from_ne_bytes(*x) == u64::from_ne_bytes(*y) && a[..a.len() - 8] == b[..b.len() - 8]
        }
        _ => a == b,
    }
}

/// Asks the CPU to start loading a small encoding's buffer (its first
/// 2 KiB) before a walk reads it: a listpack of a key not touched lately
/// spans a dozen cache lines, and a walk that waits for each in turn pays
/// a dozen memory latencies where these loads overlap. A hint only: it
/// reads nothing and changes nothing.
#[inline]
pub(crate) fn prefetch(buf: &[u8]) {
    let lines = buf.len().min(2048).div_ceil(64);
    for i in 1..lines {
        prefetch_line(buf[i * 64..].as_ptr());
    }
}

/// Asks the CPU to start loading the cache line at `p` (a hint: reads
/// nothing, never faults).
#[inline]
pub(crate) fn prefetch_line<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is a hint that never faults nor reads into
        // the program, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Edits an exact-size buffer as a `Vec` and puts it back exact-size: a
/// growth that reserved exactly what it pushed costs no second
/// reallocation, a shrink gives the spare bytes back (in place when the
/// size class stays). The small encodings keep their buffers this way, so
/// a buffer is two words and [`malloc_size`] of its length is what it
/// costs.
pub(crate) fn edit_boxed<R>(b: &mut Box<[u8]>, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut v = std::mem::take(b).into_vec();
    let r = f(&mut v);
    *b = v.into_boxed_slice();
    r
}

/// What the allocator really hands out for `n` bytes: jemalloc's size
/// class (the `cairn` binary's allocator, docs/design/allocator.md; Redis
/// counts the same way): 8, then multiples of 16 up to 128, then four
/// classes per doubling (160, 192, 224, 256, 320, ...). No per-block
/// header.
pub fn malloc_size(n: usize) -> usize {
    match n {
        0 => 0,
        1..=8 => 8,
        9..=128 => (n + 15) & !15,
        _ => {
            // 2^k < n <= 2^(k+1): classes every 2^(k-2).
            let k = usize::BITS - 1 - (n - 1).leading_zeros();
            let step = 1usize << (k - 2);
            (n + step - 1) & !(step - 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_is_byte_equality() {
        let cases: [(&[u8], &[u8]); 8] = [
            (b"", b""),
            (b"a", b"a"),
            (b"a", b"b"),
            (b"field:000000000042", b"field:000000000042"),
            (b"field:000000000042", b"field:000000000043"),
            (b"xield:000000000042", b"field:000000000042"),
            (b"12345678", b"12345678"),
            (b"123456789", b"12345678"),
        ];
        for (a, b) in cases {
            assert_eq!(same(a, b), a == b, "{a:?} {b:?}");
            assert_eq!(same(b, a), a == b, "{b:?} {a:?}");
        }
        prefetch(&[0u8; 5000]);
        prefetch(&[]);
    }

    #[test]
    fn malloc_sizes_are_jemallocs_classes() {
        let classes = [
            (0, 0),
            (1, 8),
            (8, 8),
            (9, 16),
            (17, 32),
            (33, 48),
            (128, 128),
            (129, 160),
            (161, 192),
            (256, 256),
            (257, 320),
            (513, 640),
            (4096, 4096),
            (4097, 5120),
            (16384, 16384),
            (16385, 20480),
        ];
        for (n, want) in classes {
            assert_eq!(malloc_size(n), want, "{n}");
        }
    }

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
