//! Kernel hints: per fd and direction, a decision that large calls go to
//! the kernel path, kept for a short while so that an event loop's calls
//! skip the system calls that found it out. A nonblocking reader (redis,
//! nginx: epoll, then read until `EAGAIN`) costs the library a getpid, an
//! fstat and an fcntl per large read without one; with one, a clock read
//! and a table load.
//!
//! A hint only ever sends calls to the kernel path, which is right for any
//! fd: a stale one (the fd closed and reused behind the library's back,
//! its `O_NONBLOCK` cleared, a reader that opted in since) costs at most
//! [`TTL`] of the kernel path, never a wrong byte. What it can get wrong
//! is the stats: a file that took the number of an fd closed behind the
//! library's back (the close inside stdio's fclose) has its large calls
//! counted as that fd's class for what is left of the hint. The close
//! hooks clear an fd's hints; a fork child starts without any (they carry
//! the fork generation).

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use core::time::Duration;

use ipc_offload_engine::Fallback;
use ipc_offload_policy::Class;

use super::paged::{PerFd, fd_index};

/// How long a nonblocking reader's hint lasts: the delay before a reader
/// that cleared `O_NONBLOCK` can take the fast path.
pub const TTL: Duration = Duration::from_millis(100);

/// The direction of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Read,
    Write,
}

/// Why the calls go to the kernel path (what the stats count them as).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// The fd is `O_NONBLOCK` (reads).
    Nonblocking,
    /// The reader never opted in, and no REQUEST is due (writes).
    NoPeer,
}

impl Why {
    pub fn fallback(self) -> Fallback {
        match self {
            Why::Nonblocking => Fallback::Nonblocking,
            Why::NoPeer => Fallback::NoPeer,
        }
    }
}

/// One word per fd and direction: `until_ms << 32 | generation << 16 |
/// class << 8 | why`, 0 for none; `until_ms` in ms of the process's clock
/// ([`now_ms`]), compared in its 32-bit circle; `generation` the low 16
/// bits of [`GENERATION`] when it was set.
static HINTS: [PerFd<AtomicU64>; 2] = [PerFd::new(), PerFd::new()];

/// Bumped in every fork child: the parent's hints do not hold there (its
/// per-fd state is gone, so its close hooks would not clear them).
static GENERATION: AtomicU32 = AtomicU32::new(1);

/// In the fork child: every hint lapses (one store, async-signal-safe).
pub fn after_fork() {
    GENERATION.fetch_add(1, Relaxed);
}

fn generation() -> u64 {
    u64::from(GENERATION.load(Relaxed) & 0xffff)
}

fn word(fd: i32, dir: Dir) -> Option<&'static AtomicU64> {
    HINTS[dir as usize].get(fd_index(fd)?)
}

/// The hint standing for `fd` at `now_ms`, if any.
pub fn get(fd: i32, dir: Dir, now_ms: u32) -> Option<(Class, Why)> {
    let slot = word(fd, dir)?;
    let w = slot.load(Relaxed);
    if w == 0 {
        return None;
    }
    if ((w >> 32) as u32).wrapping_sub(now_ms) as i32 <= 0 || (w >> 16) & 0xffff != generation() {
        // Lapsed: clear it, or the clock's circle would bring it back in
        // 49 days.
        let _ = slot.compare_exchange(w, 0, Relaxed, Relaxed);
        return None;
    }
    let class = *Class::ALL.get(((w >> 8) & 0xff) as usize)?;
    let why = if w & 0xff == 1 { Why::NoPeer } else { Why::Nonblocking };
    Some((class, why))
}

/// Sends `fd`'s large calls in direction `dir` to the kernel path until
/// `until_ms`, as `why` in `class`.
pub fn set(fd: i32, dir: Dir, class: Class, why: Why, until_ms: u32) {
    let class_bits = class.index() as u64;
    let why_bits = u64::from(why == Why::NoPeer);
    if let Some(w) = fd_index(fd).and_then(|i| HINTS[dir as usize].get_or_map(i)) {
        w.store(u64::from(until_ms) << 32 | generation() << 16 | class_bits << 8 | why_bits, Relaxed);
    }
}

/// Drops `fd`'s hints (it is being closed or replaced).
pub fn clear(fd: i32) {
    for dir in [Dir::Read, Dir::Write] {
        if let Some(w) = word(fd, dir) {
            if w.load(Relaxed) != 0 {
                w.store(0, Relaxed);
            }
        }
    }
}

/// Milliseconds since the settings were made, on a 32-bit circle.
pub fn now_ms(started: std::time::Instant) -> u32 {
    started.elapsed().as_millis() as u32
}

/// `ms` from `now_ms`, at least 1 ms ahead.
pub fn after(now_ms: u32, d: Duration) -> u32 {
    now_ms.wrapping_add(u32::try_from(d.as_millis()).unwrap_or(u32::MAX / 4).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the hints are process-wide, and the fork generation a
    // part bumps would make a concurrent test's hints lapse.
    #[test]
    fn hints_stand_until_their_time_across_the_clock_wrap_and_not_past_a_fork() {
        let fd = 40_000;
        assert_eq!(get(fd, Dir::Read, 5), None);
        set(fd, Dir::Read, Class::Unix, Why::Nonblocking, after(5, TTL));
        assert_eq!(get(fd, Dir::Read, 5), Some((Class::Unix, Why::Nonblocking)));
        assert_eq!(get(fd, Dir::Read, 104), Some((Class::Unix, Why::Nonblocking)));
        assert_eq!(get(fd, Dir::Read, 105), None, "lapsed");
        assert_eq!(HINTS[0].get(fd as usize).unwrap().load(Relaxed), 0, "a lapsed hint is cleared");
        assert_eq!(get(fd, Dir::Write, 5), None, "the other direction is its own");
        set(fd, Dir::Write, Class::Pipe, Why::NoPeer, after(5, Duration::from_millis(1)));
        assert_eq!(get(fd, Dir::Write, 5), Some((Class::Pipe, Why::NoPeer)));
        clear(fd);
        assert_eq!(get(fd, Dir::Write, 5), None);

        // The clock's 32-bit circle.
        let now = u32::MAX - 10;
        set(fd, Dir::Read, Class::Pipe, Why::Nonblocking, after(now, TTL));
        assert!(get(fd, Dir::Read, now).is_some());
        assert!(get(fd, Dir::Read, now.wrapping_add(50)).is_some(), "past the wrap, still standing");
        assert!(get(fd, Dir::Read, now.wrapping_add(100)).is_none());
        assert_eq!(get(-1, Dir::Read, 0), None);
        let far = 3 << 20;
        assert_eq!(get(far, Dir::Read, 0), None);
        set(far, Dir::Read, Class::Tcp, Why::NoPeer, after(5, TTL));
        assert_eq!(get(far, Dir::Read, 5), Some((Class::Tcp, Why::NoPeer)), "fds past the static page");

        // A fork child starts without its parent's hints.
        set(fd, Dir::Read, Class::Unix, Why::Nonblocking, after(5, TTL));
        assert!(get(fd, Dir::Read, 5).is_some());
        after_fork();
        assert_eq!(get(fd, Dir::Read, 5), None);
        set(fd, Dir::Read, Class::Unix, Why::Nonblocking, after(5, TTL));
        assert!(get(fd, Dir::Read, 5).is_some(), "the child's own hints hold");
    }
}
