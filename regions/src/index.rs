//! The interval index of shared-memory address ranges.
//!
//! A set of disjoint, sorted, non-adjacent `[start, end)` ranges (adjacent or
//! overlapping inserts coalesce: the index answers "is this address shared
//! memory", not "which mapping is this"), kept in two fixed-capacity
//! buffers. Readers are lock-free: they load `current`, read that buffer
//! under its sequence number, and retry when the sequence moved. Writers,
//! serialized by [`WriterLock`](super::lock::WriterLock), never touch the
//! current buffer: they build the next state in the other one (a copy of
//! the current ranges with one change applied: O(ranges)), then publish it
//! by flipping `current`. So a reader never waits for a writer: the buffer
//! it is sent to is complete, and it retries only when two updates went by
//! during its lookup (the second one rewrites the buffer it was reading).
//!
//! Nothing allocates, nothing blocks, and every field is an atomic (no
//! `unsafe`): a writer that breaks the serialization rule corrupts the set,
//! not memory. A full index refuses an insert (the range is "not indexed",
//! counted) and, when a removal would split a range with no slot left,
//! drops the piece that does not fit (counted): the set only ever loses
//! addresses, it never claims one that is not shared memory.

use core::hint::spin_loop;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicU64, AtomicUsize, fence};

/// A lookup gives up after this many retries (writers kept rewriting the
/// buffer it read); the caller then treats the addresses as not shared.
const READ_TRIES: usize = 16;

/// One published state: `len` ranges, sorted by address.
#[derive(Debug)]
struct Buf<const CAP: usize> {
    /// Odd while a writer fills this buffer.
    seq: AtomicU64,
    len: AtomicUsize,
    starts: [AtomicUsize; CAP],
    ends: [AtomicUsize; CAP],
}

impl<const CAP: usize> Buf<CAP> {
    const fn new() -> Self {
        Buf {
            seq: AtomicU64::new(0),
            len: AtomicUsize::new(0),
            starts: [const { AtomicUsize::new(0) }; CAP],
            ends: [const { AtomicUsize::new(0) }; CAP],
        }
    }

    /// The first of the first `len` ranges whose end is above `addr`
    /// (`len` when none is). Loads are relaxed: a reader validates them
    /// with the sequence number; a writer reads a buffer no one writes.
    fn first_ending_above(&self, len: usize, addr: usize) -> usize {
        let (mut lo, mut hi) = (0, len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.ends[mid].load(Relaxed) > addr {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    fn range(&self, i: usize) -> (usize, usize) {
        (self.starts[i].load(Relaxed), self.ends[i].load(Relaxed))
    }

    /// True when one of the first `len` ranges meets `[start, end)`.
    fn meets(&self, len: usize, start: usize, end: usize) -> bool {
        let i = self.first_ending_above(len, start);
        i < len && self.starts[i].load(Relaxed) < end
    }
}

/// The end of `len` bytes from `start`, saturating at the top of the
/// address space (a range never wraps).
pub fn end_of(start: usize, len: usize) -> usize {
    start.saturating_add(len)
}

/// The set of shared-memory ranges, `CAP` ranges at most.
#[derive(Debug)]
pub struct RangeIndex<const CAP: usize> {
    /// Which buffer readers use (0 or 1).
    current: AtomicUsize,
    bufs: [Buf<CAP>; 2],
    /// Most ranges held at once.
    peak: AtomicUsize,
    /// Ranges, or pieces of ranges, that could not be recorded (full).
    dropped: AtomicU64,
}

impl<const CAP: usize> Default for RangeIndex<CAP> {
    fn default() -> Self {
        Self::new()
    }
}

/// What a writer's change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The set already said so: nothing was written.
    None,
    /// A new state was published.
    Published,
    /// A new state was published without some addresses that belong in it
    /// (the index was full); they read as not shared.
    Dropped,
}

/// Builds the next state in the writer's buffer.
struct Out<'a, const CAP: usize> {
    buf: &'a Buf<CAP>,
    len: usize,
    dropped: u64,
}

impl<const CAP: usize> Out<'_, CAP> {
    fn push(&mut self, start: usize, end: usize) {
        if start >= end {
            return;
        }
        if self.len == CAP {
            self.dropped += 1;
            return;
        }
        self.buf.starts[self.len].store(start, Relaxed);
        self.buf.ends[self.len].store(end, Relaxed);
        self.len += 1;
    }
}

impl<const CAP: usize> RangeIndex<CAP> {
    /// An empty index.
    pub const fn new() -> Self {
        RangeIndex {
            current: AtomicUsize::new(0),
            bufs: [Buf::new(), Buf::new()],
            peak: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// The most ranges the index holds.
    pub const fn capacity(&self) -> usize {
        CAP
    }

    /// Runs `f` on a consistent state (the buffer and its length); `None`
    /// when writers kept rewriting it for [`READ_TRIES`] attempts.
    fn read<R>(&self, mut f: impl FnMut(&Buf<CAP>, usize) -> R) -> Option<R> {
        for _ in 0..READ_TRIES {
            let buf = &self.bufs[self.current.load(Acquire) & 1];
            let seq = buf.seq.load(Acquire);
            if seq & 1 == 1 {
                // Two updates went by since `current` was read; the next
                // read of `current` finds the complete buffer.
                spin_loop();
                continue;
            }
            let len = buf.len.load(Relaxed).min(CAP);
            let result = f(buf, len);
            fence(Acquire);
            if buf.seq.load(Relaxed) == seq {
                return Some(result);
            }
        }
        None
    }

    /// Whether `[a, a + len)` or `[b, b + len)` meets a shared range (one
    /// consistent state answers both); `None`: no consistent state was
    /// seen (writers kept publishing), so the caller cannot tell.
    pub fn meets_either(&self, a: usize, b: usize, len: usize) -> Option<bool> {
        if len == 0 {
            return Some(false);
        }
        self.read(|buf, n| n > 0 && (buf.meets(n, a, end_of(a, len)) || buf.meets(n, b, end_of(b, len))))
    }

    /// Whether `[start, start + len)` meets a shared range.
    pub fn meets(&self, start: usize, len: usize) -> Option<bool> {
        if len == 0 {
            return Some(false);
        }
        self.read(|buf, n| buf.meets(n, start, end_of(start, len)))
    }

    /// The range that holds `addr`, if any (`Err(())`: no consistent state).
    #[allow(clippy::result_unit_err)]
    pub fn range_at(&self, addr: usize) -> Result<Option<(usize, usize)>, ()> {
        self.read(|buf, n| {
            let i = buf.first_ending_above(n, addr);
            (i < n).then(|| buf.range(i)).filter(|(start, _)| *start <= addr)
        })
        .ok_or(())
    }

    /// Copies the ranges into `out` (as many as fit) and returns how many
    /// there are; `None` when no consistent state was seen.
    pub fn snapshot(&self, out: &mut [(usize, usize)]) -> Option<usize> {
        self.read(|buf, n| {
            for (i, slot) in out.iter_mut().enumerate().take(n) {
                *slot = buf.range(i);
            }
            n
        })
    }

    /// Ranges held now.
    pub fn len(&self) -> usize {
        self.read(|_, n| n).unwrap_or(0)
    }

    /// True when no range is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most ranges held at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Relaxed)
    }

    /// Ranges or pieces that a full index could not hold.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// The current state, for a writer (no one else writes it).
    fn current(&self) -> (usize, &Buf<CAP>, usize) {
        let which = self.current.load(Relaxed) & 1;
        let buf = &self.bufs[which];
        (which, buf, buf.len.load(Relaxed).min(CAP))
    }

    /// Writes the next state into the other buffer with `build` (given the
    /// current buffer and length) and publishes it.
    fn publish(&self, build: impl FnOnce(&Buf<CAP>, usize, &mut Out<'_, CAP>)) -> Change {
        let (which, old, old_len) = self.current();
        let next = &self.bufs[which ^ 1];
        let seq = next.seq.load(Relaxed);
        next.seq.store(seq.wrapping_add(1), Relaxed);
        fence(Release);
        let mut out = Out { buf: next, len: 0, dropped: 0 };
        build(old, old_len, &mut out);
        next.len.store(out.len, Relaxed);
        next.seq.store(seq.wrapping_add(2), Release);
        self.current.store(which ^ 1, Release);
        self.peak.fetch_max(out.len, Relaxed);
        if out.dropped > 0 {
            self.dropped.fetch_add(out.dropped, Relaxed);
            Change::Dropped
        } else {
            Change::Published
        }
    }

    /// Adds `[start, end)` (coalescing with ranges it meets or touches).
    /// A full index leaves the range out and counts it. Writers only.
    pub fn insert(&self, start: usize, end: usize) -> Change {
        if start >= end {
            return Change::None;
        }
        let (_, old, n) = self.current();
        // The first range that ends at or after `start`: it, and those after
        // it that start at or before `end`, merge with the new one.
        // (Ranges are never empty, so every end is above 0.)
        let first = old.first_ending_above(n, start.saturating_sub(1));
        let mut last = first;
        while last < n && old.starts[last].load(Relaxed) <= end {
            last += 1;
        }
        if last == first + 1 {
            let (s, e) = old.range(first);
            if s <= start && e >= end {
                return Change::None;
            }
        }
        if last == first && n == CAP {
            self.dropped.fetch_add(1, Relaxed);
            return Change::Dropped;
        }
        self.publish(|old, n, out| {
            (0..first).for_each(|i| {
                let (s, e) = old.range(i);
                out.push(s, e);
            });
            let (mut s, mut e) = (start, end);
            for i in first..last {
                let (rs, re) = old.range(i);
                s = s.min(rs);
                e = e.max(re);
            }
            out.push(s, e);
            (last..n).for_each(|i| {
                let (s, e) = old.range(i);
                out.push(s, e);
            });
        })
    }

    /// Removes `[start, end)`, splitting the ranges it cuts. Writers only.
    pub fn remove(&self, start: usize, end: usize) -> Change {
        if start >= end {
            return Change::None;
        }
        let (_, old, n) = self.current();
        let first = old.first_ending_above(n, start);
        if first == n || old.starts[first].load(Relaxed) >= end {
            return Change::None;
        }
        self.publish(|old, n, out| {
            for i in 0..n {
                let (s, e) = old.range(i);
                if e <= start || s >= end {
                    out.push(s, e);
                    continue;
                }
                if s < start {
                    out.push(s, start);
                }
                if e > end {
                    out.push(end, e);
                }
            }
        })
    }

    /// Removes every range. Writers only.
    pub fn clear(&self) -> Change {
        if self.current().2 == 0 {
            return Change::None;
        }
        self.publish(|_, _, _| {})
    }
}

#[cfg(test)]
mod tests;
