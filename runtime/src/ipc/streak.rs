//! Readers that stream with small buffers (docs/ipc-protocol.md, "Readers
//! with small buffers"): per fd, the bytes its reads below the threshold
//! carried while each filled a buffer of at least [`FULL_READ_MIN`]. When
//! they pass the bar (the lowest `handshake_after` of the IPC classes that
//! are on) the fd opts in as a reader once, as a large read would have
//! made it.
//!
//! The read hooks call [`add`] only after such a read returned (its system
//! call made), so a program whose reads never fill 16 KiB buffers pays one
//! compare per small read, and one that does pays a table update per read
//! until its fd crosses the bar or is known to be another kind of file.

use core::sync::atomic::Ordering::Relaxed;
use core::sync::atomic::{AtomicU32, AtomicUsize};

use super::paged::{PerFd, fd_index};

/// The smallest buffer whose filled reads count. Smaller buffers take more
/// calls per message than an offer saves: hiredis (redis-benchmark, redis
/// clients) reads 16 KiB, libuv 64 KiB, coreutils 128 KiB.
pub const FULL_READ_MIN: usize = 16 << 10;

/// A word past the bar: counted no more (until the fd closes).
const DONE: u32 = u32::MAX;

/// Per fd: KiB carried by filled small reads, or [`DONE`].
static KIB: PerFd<AtomicU32> = PerFd::new();

/// One past the highest fd ever counted (`close_range`'s bound).
static TOP: AtomicUsize = AtomicUsize::new(0);

/// The bar, in KiB (set once the policy is read; until then nothing counts).
static BAR_KIB: AtomicU32 = AtomicU32::new(DONE);

/// Sets the bar: `bytes` (the lowest `handshake_after` of the IPC classes
/// that are on), at least one filled read.
pub fn set_bar(bytes: u64) {
    let kib = (bytes >> 10).clamp(1, u64::from(DONE - 1));
    BAR_KIB.store(kib as u32, Relaxed);
}

/// Counts a filled small read of `len` bytes on `fd`; true exactly once per
/// fd (until it closes): when its count crosses the bar.
pub fn add(fd: i32, len: u64) -> bool {
    let bar = BAR_KIB.load(Relaxed);
    if bar == DONE {
        return false;
    }
    let Some((index, word)) = fd_index(fd).and_then(|i| KIB.get_or_map(i).map(|w| (i, w))) else { return false };
    if TOP.load(Relaxed) <= index {
        TOP.fetch_max(index + 1, Relaxed);
    }
    let kib = (len >> 10).min(u64::from(bar)) as u32;
    let mut crossed = false;
    let _ = word.fetch_update(Relaxed, Relaxed, |n| {
        if n == DONE {
            crossed = false;
            return None;
        }
        let next = n.saturating_add(kib);
        crossed = next >= bar;
        Some(if crossed { DONE } else { next })
    });
    crossed
}

/// One past the highest fd number that may have a count.
pub fn end() -> usize {
    TOP.load(Relaxed)
}

/// True if anything is counted for `fd` (the close hooks' test).
pub fn any(fd: i32) -> bool {
    fd_index(fd).and_then(|i| KIB.get(i)).is_some_and(|w| w.load(Relaxed) != 0)
}

/// Forgets `fd`'s count (it is closed or replaced).
pub fn clear(fd: i32) {
    if let Some(w) = fd_index(fd).and_then(|i| KIB.get(i))
        && w.load(Relaxed) != 0
    {
        w.store(0, Relaxed);
    }
}

/// Forgets every count (a fork child re-learns its fds). Only touches
/// words in use.
pub fn clear_all() {
    for (_, w) in KIB.iter() {
        if w.load(Relaxed) != 0 {
            w.store(0, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_fd_crosses_the_bar_once_until_it_closes() {
        let fd = 42_001;
        assert!(!add(fd, 64 << 10), "nothing counts before the bar is set");
        assert!(!any(fd));
        set_bar(64 << 10);
        assert!(!add(fd, 16 << 10));
        assert!(!add(fd, 16 << 10));
        assert!(any(fd));
        assert!(end() > fd as usize, "close_range's bound covers it");
        assert!(!add(fd, 16 << 10));
        assert!(add(fd, 16 << 10), "64 KiB in filled reads cross a 64 KiB bar");
        assert!(!add(fd, 16 << 10), "once");
        clear(fd);
        assert!(!any(fd));
        assert!(add(fd, 1 << 20), "a closed fd's number counts anew; one read may cross the bar");
        clear_all();
        assert!(!any(fd), "a fork child counts anew");
        set_bar(0);
        assert!(add(fd, 16 << 10), "a bar of 0 (handshake_after 0): the first filled read");
        assert!(!add(-1, 1 << 20), "an fd the table cannot hold");
    }
}
