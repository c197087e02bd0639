//! What the program registered in epoll sets through the epoll_ctl hooks,
//! per fd number, for fds that have no reader channel yet, once the process
//! has had one (`channel::had_reader`: until then epoll_ctl pays nothing,
//! and an fd registered before is looked up in fdinfo), in the sets the
//! process made itself (`epoll_sets::is_own`: a set inherited across fork
//! or learnt from a wait may be changed by another process, whose changes
//! no hook of this one mirrors): when one opts
//! in, its registration is known without reading every set's
//! `/proc/self/fdinfo` (docs/design.md, "Tables without a cap": a server
//! whose thousand connections opted in one by one read a thousand-line
//! file a thousand times). A read of a set's fdinfo notes the other
//! registrations it lists where nothing is noted (`note_listed`, from
//! `epoll_sets::adopt_fd`), for a set this process made (not one learnt
//! from a wait or inherited across fork, which another process may
//! change): a set filled before the first reader channel is read once,
//! not once per fd.
//!
//! A note is only a hint: before it is used, the kernel confirms that the
//! fd's file is the one registered under that number in that set
//! (`sys::epoll::holds`); a number closed behind the library's back and
//! reused fails the check. An fd the process registered in several sets,
//! one registered `EPOLLONESHOT` (the note cannot say whether the kernel
//! has disarmed it since; fdinfo can), one whose note cannot be confirmed
//! (a kernel without kcmp, or a filter that refuses it: then no note is
//! used again), and every fd of a set a fork child inherited (the parent
//! may change the sets they share) are looked up in fdinfo as before.

use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicBool, AtomicU64};

use super::paged::{PerFd, fd_index};

/// Per fd: `(epfd + 1) << 32 | events` of its one registration, 0 for
/// none, [`SEVERAL`] when it is in more than one set.
static SET: PerFd<AtomicU64> = PerFd::new();
/// Per fd: the registration's data word.
static DATA: PerFd<AtomicU64> = PerFd::new();

const SEVERAL: u64 = u64::MAX;
/// A note being written (by `note` or `note_listed`): read as no note.
const WRITING: u64 = u64::MAX - 1;

/// kcmp answered `Err` once (ENOSYS, EPERM): notes are not used again.
static NO_KCMP: AtomicBool = AtomicBool::new(false);

/// A registration the hooks saw (or a set's fdinfo listed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Note {
    pub epfd: i32,
    pub events: u32,
    pub data: u64,
}

/// The program registered `fd` in `epfd` (EPOLL_CTL_ADD) or changed its
/// registration there (EPOLL_CTL_MOD).
pub fn note(epfd: i32, fd: i32, events: u32, data: u64) {
    let Some((set, word)) = words(fd) else { return };
    let now = set.load(Acquire);
    // Claimed with a compare-and-swap: two threads noting the same fd (in
    // two sets, or two MODs) must not pair one's set with the other's data;
    // the loser makes the note "several", which is never used.
    if now >= WRITING || of_other_set(now, epfd) || set.compare_exchange(now, WRITING, AcqRel, Acquire).is_err() {
        set.store(SEVERAL, Release);
        return;
    }
    publish(set, word, data, (epfd, events));
}

/// A set's fdinfo lists `fd` in `epfd` with `events` and `data`: noted if
/// nothing is noted for the number (a note of the same set is the hooks',
/// newer than the listing; one of another set makes it "several"). Of two
/// lines with the same number (a file closed under it while open
/// elsewhere, another registered under it since), the first stays: the
/// one kcmp looks at.
pub fn note_listed(epfd: i32, fd: i32, events: u32, data: u64) {
    let Some((set, word)) = words(fd) else { return };
    match set.compare_exchange(0, WRITING, AcqRel, Acquire) {
        Ok(_) => publish(set, word, data, (epfd, events)),
        Err(now) if of_other_set(now, epfd) => set.store(SEVERAL, Release),
        Err(_) => {}
    }
}

/// The two words of `fd`'s note, their pages mapped if need be.
fn words(fd: i32) -> Option<(&'static AtomicU64, &'static AtomicU64)> {
    let i = fd_index(fd)?;
    Some((SET.get_or_map(i)?, DATA.get_or_map(i)?))
}

/// True if note word `now` is a note of a set other than `epfd`.
fn of_other_set(now: u64, epfd: i32) -> bool {
    now != 0 && now < WRITING && now >> 32 != epfd as u64 + 1
}

/// Completes a note claimed as [`WRITING`]: the data word first, then the
/// set and events, unless another thread found it being written and made
/// it "several" meanwhile.
fn publish(set: &AtomicU64, word: &AtomicU64, data: u64, (epfd, events): (i32, u32)) {
    word.store(data, Relaxed);
    let value = (epfd as u64 + 1) << 32 | u64::from(events);
    let _ = set.compare_exchange(WRITING, value, AcqRel, Relaxed);
}

/// The program took `fd` out of `epfd` (EPOLL_CTL_DEL).
pub fn removed(epfd: i32, fd: i32) {
    if let Some(set) = fd_index(fd).and_then(|i| SET.get(i)) {
        let now = set.load(Acquire);
        if now < WRITING && now >> 32 == epfd as u64 + 1 {
            let _ = set.compare_exchange(now, 0, AcqRel, Relaxed);
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

/// In a fork child: no note is used (the parent may change the sets the
/// two share, and the child's notes would not hear of it).
pub fn after_fork() {
    for (_, set) in SET.iter() {
        if set.load(Relaxed) != 0 {
            set.store(SEVERAL, Relaxed);
        }
    }
}

/// The one registration noted for `fd`, if there is exactly one, not
/// one-shot, still in force for the file `fd` names now (the kernel says
/// so).
pub fn confirmed(fd: i32) -> Option<Note> {
    if NO_KCMP.load(Relaxed) {
        return None;
    }
    let i = fd_index(fd)?;
    let (set, word) = (SET.get(i)?, DATA.get(i)?);
    let before = set.load(Acquire);
    let data = word.load(Relaxed);
    if before == 0 || before >= WRITING || set.load(Acquire) != before {
        return None;
    }
    let note = Note { epfd: (before >> 32) as i32 - 1, events: before as u32, data };
    if note.events & libc::EPOLLONESHOT as u32 != 0 {
        return None;
    }
    match ipc_offload_sys::epoll::holds(note.epfd, fd) {
        Ok(held) => held.then_some(note),
        Err(_) => {
            NO_KCMP.store(true, Relaxed);
            None
        }
    }
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
        note(7, fd, libc::EPOLLIN as u32 | libc::EPOLLONESHOT as u32, 3);
        assert_eq!(confirmed(fd), None, "one-shot: fdinfo says whether it is armed");
        forget(fd);
    }
}
