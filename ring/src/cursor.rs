//! A position in a list of buffers (an iovec array), consumed front to
//! back: how a transfer walks the caller's buffers, whatever their shape.

/// Copies `n` bytes from `src` to `dst` (the class's engine).
pub type CopyFn<'a> = &'a mut dyn FnMut(*mut u8, *const u8, usize);

/// A cursor over `iovec` segments.
#[derive(Debug)]
pub struct Cursor<'a> {
    segments: &'a [libc::iovec],
    index: usize,
    offset: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `segments`.
    pub fn new(segments: &'a [libc::iovec]) -> Self {
        Cursor { segments, index: 0, offset: 0 }
    }

    /// Total bytes left.
    pub fn remaining(&self) -> u64 {
        let left: usize = self.segments.iter().skip(self.index).map(|s| s.iov_len).sum();
        (left - self.offset.min(left)) as u64
    }

    /// Moves `n` bytes forward without copying.
    pub fn advance(&mut self, n: u64) {
        self.spans(n as usize, &mut |_, _| {});
    }

    /// Calls `f(ptr, len)` for each span covering the next `n` bytes.
    fn spans(&mut self, mut n: usize, f: &mut dyn FnMut(*mut u8, usize)) {
        while n > 0 && self.index < self.segments.len() {
            let seg = &self.segments[self.index];
            let take = (seg.iov_len - self.offset).min(n);
            if take > 0 {
                // SAFETY: offset + take <= iov_len: inside the segment.
                f(unsafe { seg.iov_base.cast::<u8>().add(self.offset) }, take);
            }
            self.offset += take;
            n -= take;
            if self.offset == seg.iov_len {
                self.index += 1;
                self.offset = 0;
            }
        }
    }

    /// Copies the next `n` bytes of the buffers to `dst`.
    ///
    /// # Safety
    /// `dst` writable for `n` bytes, the buffers readable for `n` more bytes.
    pub unsafe fn copy_out(&mut self, dst: *mut u8, n: usize, copy: CopyFn<'_>) {
        let mut at = 0;
        self.spans(n, &mut |src, len| {
            // SAFETY: at + len <= n: inside `dst`; `src` is a span of a buffer.
            copy(unsafe { dst.add(at) }, src, len);
            at += len;
        });
    }

    /// Copies `n` bytes from `src` into the next bytes of the buffers.
    ///
    /// # Safety
    /// `src` readable for `n` bytes, the buffers writable for `n` more bytes.
    pub unsafe fn copy_in(&mut self, src: *const u8, n: usize, copy: CopyFn<'_>) {
        let mut at = 0;
        self.spans(n, &mut |dst, len| {
            // SAFETY: at + len <= n: inside `src`; `dst` is a span of a buffer.
            copy(dst, unsafe { src.add(at) }, len);
            at += len;
        });
    }
}
