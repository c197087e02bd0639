//! How a large copy is cut up: into parts that several agents copy at once,
//! and, for overlapping moves, into waves that keep memmove semantics.
//!
//! Overlapping moves: with `d = |dst - src| < len`, bytes of the source are
//! overwritten by the copy itself. Cut the move into waves of `d` bytes,
//! taken in the safe direction (ascending when `dst < src`, descending when
//! `dst > src`). Within one wave, the `d` destination bytes and the `d`
//! source bytes are disjoint, so its parts may run in any order and at once;
//! and no wave writes source bytes that a later wave still has to read.
//! Waves run one after another. A distance below [`MIN_WAVE`] leaves too
//! little to share, and the move goes to libc's memmove.

/// No part is smaller than this: below it, handing work to another thread
/// costs more than it saves.
pub const MIN_PART: usize = 128 << 10;
/// Each agent gets about this many parts, so that a late helper delays the
/// copy by at most a fraction of its share (the caller takes the rest).
pub const PARTS_PER_AGENT: usize = 4;
/// Part boundaries fall on multiples of this (cache lines and pages of dst
/// stay whole for the usual page-aligned buffers).
pub const PART_ALIGN: usize = 4096;
/// Overlapping moves closer than this are not split.
pub const MIN_WAVE: usize = 2 * MIN_PART;

/// A copy cut into `parts` pieces of `part` bytes (the last may be shorter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    /// Bytes per part.
    pub part: usize,
    /// Number of parts (at least 1).
    pub parts: u32,
}

impl Split {
    /// The same copy of `len` bytes in parts of at most `chunk` bytes
    /// (rounded down to [`PART_ALIGN`], at least [`MIN_PART`]).
    pub fn capped(self, len: usize, chunk: usize) -> Split {
        let cap = (chunk / PART_ALIGN * PART_ALIGN).max(MIN_PART);
        if self.part <= cap || len.div_ceil(cap) > u32::MAX as usize {
            return self;
        }
        Split { part: cap, parts: len.div_ceil(cap).max(1) as u32 }
    }

    /// Byte range `(offset, len)` of part `index`.
    pub fn range(&self, index: u32, total: usize) -> (usize, usize) {
        let offset = (index as usize).saturating_mul(self.part).min(total);
        (offset, self.part.min(total - offset))
    }
}

/// Cuts `len` bytes for `agents` agents (the caller plus its helpers).
pub fn split(len: usize, agents: u32) -> Split {
    let agents = agents.max(1) as usize;
    let target = (len / (agents * PARTS_PER_AGENT)).next_multiple_of(PART_ALIGN);
    // The part count must fit a u32: absurd lengths get larger parts.
    let part = target.max(MIN_PART).min(len.max(1)).max(len.div_ceil(u32::MAX as usize));
    Split { part, parts: len.div_ceil(part).max(1) as u32 }
}

/// True when `[dst, dst+len)` and `[src, src+len)` share a byte.
pub fn overlap(dst: usize, src: usize, len: usize) -> bool {
    dst.abs_diff(src) < len
}

/// How a copy must be organised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The regions are disjoint: one job.
    Disjoint,
    /// Overlapping: waves of `stride` bytes, descending when `dst > src`.
    Waves { stride: usize, descending: bool },
    /// Overlapping at a distance below [`MIN_WAVE`]: libc's memmove.
    TooClose,
}

/// The layout of a move of `len` bytes from `src` to `dst`.
pub fn layout(dst: usize, src: usize, len: usize) -> Layout {
    let distance = dst.abs_diff(src);
    if distance >= len {
        Layout::Disjoint
    } else if distance < MIN_WAVE {
        Layout::TooClose
    } else {
        Layout::Waves { stride: distance, descending: dst > src }
    }
}

/// The waves of an overlapping move, in the order they must run, as
/// `(offset, len)` ranges relative to the start of both regions.
pub fn waves(len: usize, stride: usize, descending: bool) -> impl Iterator<Item = (usize, usize)> {
    let stride = stride.max(1);
    let count = len.div_ceil(stride);
    (0..count).map(move |k| {
        if descending {
            let end = len - k * stride;
            let start = end.saturating_sub(stride);
            (start, end - start)
        } else {
            let start = k * stride;
            (start, stride.min(len - start))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers(s: Split, len: usize) {
        let mut next = 0;
        for i in 0..s.parts {
            let (off, n) = s.range(i, len);
            assert_eq!(off, next, "part {i} of {s:?} for {len}");
            assert!(n > 0, "empty part {i} of {s:?} for {len}");
            next += n;
        }
        assert_eq!(next, len, "{s:?} does not cover {len}");
    }

    #[test]
    fn parts_cover_the_copy_exactly() {
        for len in [1usize, 4095, 4096, MIN_PART - 1, MIN_PART, MIN_PART + 1, 1 << 20, (64 << 20) + 13, 1 << 30] {
            for agents in [1u32, 2, 3, 8, 17, 64] {
                let s = split(len, agents);
                covers(s, len);
                assert!(s.part >= MIN_PART.min(len), "{s:?}");
            }
        }
    }

    #[test]
    fn capped_parts_cover_the_copy_and_respect_the_cap() {
        for len in [1usize, MIN_PART + 1, 1 << 20, (64 << 20) + 13] {
            for chunk in [1usize, 4096, MIN_PART, (256 << 10) + 5, 2 << 20, usize::MAX] {
                let s = split(len, 3).capped(len, chunk);
                covers(s, len);
                assert!(s.part <= split(len, 3).part, "never larger than the split: {s:?}");
                assert!(s.part <= (chunk / PART_ALIGN * PART_ALIGN).max(MIN_PART) || s == split(len, 3), "{s:?}");
            }
        }
    }

    #[test]
    fn parts_are_aligned_and_sized_for_the_agents() {
        let s = split(16 << 20, 2);
        assert_eq!(s.part % PART_ALIGN, 0);
        assert_eq!(s.parts as usize, 2 * PARTS_PER_AGENT);
        // Small copies are not shredded below MIN_PART.
        let s = split(MIN_PART * 2, 16);
        assert_eq!(s.parts, 2);
    }

    #[test]
    fn layouts() {
        assert_eq!(layout(0, 1 << 30, 1 << 20), Layout::Disjoint);
        assert_eq!(layout(1 << 20, 0, 1 << 20), Layout::Disjoint);
        assert_eq!(layout(100, 100, 1 << 20), Layout::TooClose);
        assert_eq!(layout(0, 64, 1 << 20), Layout::TooClose);
        assert_eq!(layout(0, MIN_WAVE, 1 << 20), Layout::Waves { stride: MIN_WAVE, descending: false });
        assert_eq!(layout(MIN_WAVE, 0, 1 << 20), Layout::Waves { stride: MIN_WAVE, descending: true });
    }

    #[test]
    fn waves_cover_in_the_safe_order() {
        let up: Vec<_> = waves(10, 4, false).collect();
        assert_eq!(up, vec![(0, 4), (4, 4), (8, 2)]);
        let down: Vec<_> = waves(10, 4, true).collect();
        assert_eq!(down, vec![(6, 4), (2, 4), (0, 2)]);
    }

    /// Simulates the wave schedule with parts copied in a scrambled order and
    /// checks the result against a plain memmove.
    #[test]
    fn waves_keep_memmove_semantics() {
        for (len, dist) in [(1000usize, 300usize), (1000, 999), (777, 250), (4096, 1024)] {
            for descending in [false, true] {
                let total = len + dist;
                let orig: Vec<u8> = (0..total).map(|i| (i * 31 + 7) as u8).collect();
                let (dst, src) = if descending { (dist, 0) } else { (0, dist) };
                let mut want = orig.clone();
                want.copy_within(src..src + len, dst);
                let mut buf = orig.clone();
                for (off, n) in waves(len, dist, descending) {
                    // Copy the wave's bytes in reverse order, one by one:
                    // any order must give the same result within a wave.
                    let snapshot: Vec<u8> = buf[src + off..src + off + n].to_vec();
                    for i in (0..n).rev() {
                        buf[dst + off + i] = snapshot[i];
                    }
                    // Reading the snapshot is equivalent to reading live
                    // bytes only if the wave does not write its own source.
                    let (w0, w1) = (dst + off, dst + off + n);
                    let (r0, r1) = (src + off, src + off + n);
                    assert!(w1 <= r0 || r1 <= w0, "wave writes its own source");
                }
                assert_eq!(buf, want, "len={len} dist={dist} descending={descending}");
            }
        }
    }
}
