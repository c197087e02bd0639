//! What the program registered in epoll sets through the epoll_ctl hooks,
//! per fd number, for fds that have no reader channel yet: when one opts
//! in, its registration is known without reading every set's
//! `/proc/self/fdinfo` (docs/design.md, "Tables without a cap": a server
//! whose thousand connections opted in one by one read a thousand-line
//! file a thousand times).
//!
//! A note is only a hint: before it is used, the kernel confirms that the
//! fd's file is the one registered under that number in that set
//! (`sys::epoll::holds`); a number closed behind the library's back and
//! reused fails the check. An fd the process registered in several sets,
//! or whose note cannot be confirmed, is looked up in fdinfo as before.

use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use super::paged::{PerFd, fd_index};

/// Per fd: `(epfd + 1) << 32 | events` of its one registration, 0 for
/// none, [`SEVERAL`] when it is in more than one set.
static SET: PerFd<AtomicU64> = PerFd::new();
/// Per fd: the registration's data word.
static DATA: PerFd<AtomicU64> = PerFd::new();

const SEVERAL: u64 = u64::MAX;

/// A registration the hooks saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Note {
    pub epfd: i32,
    pub events: u32,
    pub data: u64,
}

/// The program registered `fd` in `epfd` (EPOLL_CTL_ADD) or changed its
/// registration there (EPOLL_CTL_MOD).
pub fn note(epfd: i32, fd: i32, events: u32, data: u64) {
    let Some(i) = fd_index(fd) else { return };
    let (Some(set), Some(word)) = (SET.get_or_map(i), DATA.get_or_map(i)) else { return };
    let value = (epfd as u64 + 1) << 32 | u64::from(events);
    let now = set.load(Acquire);
    if now != 0 && now != SEVERAL && now >> 32 != epfd as u64 + 1 {
        set.store(SEVERAL, Release);
        return;
    }
    if now == SEVERAL {
        return;
    }
    // A reader of the pair sees the set word cleared while the data word
    // changes, and takes no half-made note.
    set.store(0, Release);
    word.store(data, Relaxed);
    set.store(value, Release);
}

/// The program took `fd` out of `epfd` (EPOLL_CTL_DEL).
pub fn removed(epfd: i32, fd: i32) {
    if let Some(set) = fd_index(fd).and_then(|i| SET.get(i)) {
        let now = set.load(Acquire);
        if now != SEVERAL && now >> 32 == epfd as u64 + 1 {
            set.store(0, Release);
        }
    }
}

/// True if anything is noted for `fd` (the close hooks' test).
pub fn any(fd: i32) -> bool {
    fd_index(fd).and_then(|i| SET.get(i)).is_some_and(|s| s.load(Relaxed) != 0)
}

/// `fd` is closed: what was noted for its number goes.
pub fn forget(fd: i32) {
    if let Some(set) = fd_index(fd).and_then(|i| SET.get(i)) {
        if set.load(Relaxed) != 0 {
            set.store(0, Release);
        }
    }
}

/// The one registration noted for `fd`, if there is exactly one, still
/// in force for the file `fd` names now (the kernel says so).
pub fn confirmed(fd: i32) -> Option<Note> {
    let i = fd_index(fd)?;
    let (set, word) = (SET.get(i)?, DATA.get(i)?);
    let before = set.load(Acquire);
    let data = word.load(Relaxed);
    if before == 0 || before == SEVERAL || set.load(Acquire) != before {
        return None;
    }
    let note = Note { epfd: (before >> 32) as i32 - 1, events: before as u32, data };
    ipc_offload_sys::epoll::holds(note.epfd, fd).ok()?.then_some(note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_set_is_noted_several_are_not() {
        let fd = 50_001;
        assert!(!any(fd));
        note(7, fd, 1, 0xabc);
        assert!(any(fd));
        assert_eq!(SET.get(fd as usize).unwrap().load(Relaxed), 8 << 32 | 1);
        note(7, fd, 5, 0xdef);
        assert_eq!(DATA.get(fd as usize).unwrap().load(Relaxed), 0xdef, "a MOD updates it");
        removed(9, fd);
        assert!(any(fd), "a DEL from another set changes nothing");
        removed(7, fd);
        assert!(!any(fd));
        note(7, fd, 1, 1);
        note(9, fd, 1, 2);
        assert_eq!(SET.get(fd as usize).unwrap().load(Relaxed), SEVERAL);
        assert_eq!(confirmed(fd), None, "several sets: fdinfo decides");
        forget(fd);
        assert!(!any(fd));
        assert_eq!(confirmed(fd), None);
    }
}
