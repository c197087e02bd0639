//! Copies with non-temporal (streaming) stores: the destination goes to
//! memory without being read into the cache first (no read-for-ownership)
//! and without evicting what the cache holds. For copies larger than the
//! last-level cache this moves a third less data over the memory bus; it is
//! what glibc's memcpy does above its own threshold, which part-sized calls
//! would never reach. SSE2 streaming stores exist on every x86-64 CPU.

use core::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};

use crate::real;

/// Below this, a streaming copy is not worth its fence.
const MIN_STREAM: usize = 4096;

/// Copies `n` bytes from `src` to `dst` with streaming stores for the
/// 64-byte-aligned body of the destination, libc for the ends; the stores
/// are fenced (sfence) before returning, so another thread that learns of
/// the completion through an atomic sees every byte.
///
/// # Safety
/// As memcpy(3): `src` readable, `dst` writable for `n` bytes, disjoint.
pub unsafe fn copy(dst: *mut u8, src: *const u8, n: usize) {
    if n < MIN_STREAM {
        // SAFETY: forwarded memcpy contract.
        unsafe { real::copy(dst, src, n) };
        return;
    }
    let head = dst.align_offset(64).min(n);
    let body = (n - head) & !63;
    // SAFETY: head + body + tail = n, all inside the caller's ranges; the
    // body's destination is 64-byte aligned, as _mm_stream_si128 requires
    // (16 would do); SSE2 is part of the x86-64 baseline; loads are unaligned.
    unsafe {
        real::copy(dst, src, head);
        let (mut d, mut s) = (dst.add(head), src.add(head));
        let end = d.add(body);
        while d < end {
            let a = _mm_loadu_si128(s.cast::<__m128i>());
            let b = _mm_loadu_si128(s.add(16).cast::<__m128i>());
            let c = _mm_loadu_si128(s.add(32).cast::<__m128i>());
            let e = _mm_loadu_si128(s.add(48).cast::<__m128i>());
            _mm_stream_si128(d.cast::<__m128i>(), a);
            _mm_stream_si128(d.add(16).cast::<__m128i>(), b);
            _mm_stream_si128(d.add(32).cast::<__m128i>(), c);
            _mm_stream_si128(d.add(48).cast::<__m128i>(), e);
            d = d.add(64);
            s = s.add(64);
        }
        _mm_sfence();
        real::copy(d, s, n - head - body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_copy_is_exact_at_every_alignment() {
        let src: Vec<u8> = (0..(1 << 20) + 200).map(|i| (i * 7 + i / 256) as u8).collect();
        for len in [0usize, 1, 63, 4095, 4096, 4097, 65536 + 13, 1 << 20] {
            for (so, doff) in [(0usize, 0usize), (1, 0), (0, 3), (7, 61), (64, 64)] {
                let mut dst = vec![0xEEu8; len + 200];
                // SAFETY: both ranges lie inside their vectors.
                unsafe { copy(dst.as_mut_ptr().add(doff), src.as_ptr().add(so), len) };
                assert_eq!(&dst[doff..doff + len], &src[so..so + len], "len={len} so={so} do={doff}");
                assert!(dst[..doff].iter().all(|&b| b == 0xEE));
                assert!(dst[doff + len..].iter().all(|&b| b == 0xEE));
            }
        }
    }
}
