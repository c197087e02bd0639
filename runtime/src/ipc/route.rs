//! Per-fd routes: one word per fd number that the read hooks load before
//! anything else. It names the fd's reader channel (its slot in
//! [`super::channel`]) and says whether reads of every size must come to
//! the library: once the channel has a ring, an offer may be open, and a
//! read of 16 bytes must take its bytes first like a read of 16 MiB, or
//! the stream would be out of order.
//!
//! Stale words are harmless by construction. A route names a slot and the
//! fd's key is in [`super::table::FDS`]: a slot freed or taken for another
//! key fails the comparison and the call takes the slow path, which re-learns
//! the fd; an fd closed behind the library's back (stdio's fclose) and
//! reused keeps sending its small reads to the slow path, which finds no
//! offer for the new file (it checks the file's identity before it takes
//! a byte) and replays the call.

use core::sync::atomic::AtomicU32;
use core::sync::atomic::Ordering::Relaxed;

use super::hint::Dir;
use super::paged::{PerFd, fd_index};

/// Reads (for the read direction; writes, for the write direction) of
/// every size go to the library.
const ROUTED: u32 = 1 << 31;

/// Per direction, per fd: `ROUTED | slot + 1` (0: nothing known).
static ROUTES: [PerFd<AtomicU32>; 2] = [PerFd::new(), PerFd::new()];

#[inline(always)]
fn word(fd: i32, dir: Dir) -> Option<&'static AtomicU32> {
    ROUTES[dir as usize].get(fd_index(fd)?)
}

/// True if every read of `fd` must come to the library (the hooks' test).
#[inline(always)]
pub fn routed(fd: i32) -> bool {
    word(fd, Dir::Read).is_some_and(|w| w.load(Relaxed) & ROUTED != 0)
}

/// The channel slot recorded for `fd` in direction `dir`.
pub fn slot(fd: i32, dir: Dir) -> Option<usize> {
    let w = word(fd, dir)?.load(Relaxed) & !ROUTED;
    (w != 0).then(|| w as usize - 1)
}

/// Records that `fd` reads through reader channel slot `index`, routed
/// (every read size) when `routed`.
pub fn set(fd: i32, index: usize, routed: bool) {
    set_slot(fd, Dir::Read, index, routed);
}

/// Records that `fd` writes through writer channel slot `index`.
pub fn set_writer(fd: i32, index: usize) {
    set_slot(fd, Dir::Write, index, false);
}

/// Records that `fd` writes through writer channel slot `index`, and
/// whether writes of every size must come to the library (`behind`: an
/// offer its last write left open must end before any other byte goes).
pub fn set_writer_behind(fd: i32, index: usize, behind: bool) {
    set_slot(fd, Dir::Write, index, behind);
}

/// True if every write on `fd` must come to the library (the write hooks'
/// test, once write-behind was used in this process).
#[inline(always)]
pub fn write_routed(fd: i32) -> bool {
    word(fd, Dir::Write).is_some_and(|w| w.load(Relaxed) & ROUTED != 0)
}

fn set_slot(fd: i32, dir: Dir, index: usize, routed: bool) {
    if let Some(w) = fd_index(fd).and_then(|i| ROUTES[dir as usize].get_or_map(i)) {
        let value = (index as u32 + 1) | if routed { ROUTED } else { 0 };
        if w.load(Relaxed) != value {
            w.store(value, Relaxed);
        }
    }
}

/// Forgets `fd`'s routes (it is closed or replaced).
pub fn clear(fd: i32) {
    for dir in [Dir::Read, Dir::Write] {
        if let Some(w) = word(fd, dir) {
            if w.load(Relaxed) != 0 {
                w.store(0, Relaxed);
            }
        }
    }
}

/// Forgets every route (a fork child: its channels are gone). Only touches
/// words in use.
pub fn clear_all() {
    for (_, w) in ROUTES.iter().flat_map(|table| table.iter()) {
        if w.load(Relaxed) != 0 {
            w.store(0, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_round_trip_and_clear() {
        let fd = 41_000;
        assert!(!routed(fd));
        assert_eq!(slot(fd, Dir::Read), None);
        set(fd, 0, false);
        assert_eq!(slot(fd, Dir::Read), Some(0));
        assert!(!routed(fd));
        set(fd, 255, true);
        assert_eq!(slot(fd, Dir::Read), Some(255));
        assert!(routed(fd));
        assert_eq!(slot(fd, Dir::Write), None, "the other direction is its own");
        set_writer(fd, 7);
        assert_eq!(slot(fd, Dir::Write), Some(7));
        assert!(routed(fd), "a writer's route does not route reads");
        clear(fd);
        assert_eq!((slot(fd, Dir::Read), slot(fd, Dir::Write), routed(fd)), (None, None, false));
        assert!(!routed(-1));
        let far = 1 << 20;
        assert!(!routed(far));
        set(far, 3, true);
        assert!(routed(far), "an fd past the static page has its route");
        assert_eq!(slot(far, Dir::Read), Some(3));
        clear_all();
        assert!(!routed(far));
    }
}
