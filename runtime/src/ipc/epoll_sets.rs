//! The epoll sets the library knows (docs/ipc-protocol.md, "Event loops"):
//! which fds are epoll sets, which sets are nested in which, and what the
//! fast path does to them as fds come and go: a reader channel that opts
//! in twins its file's registrations in every known set ([`adopt_fd`]), a
//! set's close frees its twins and nests ([`closed`]). The epoll hooks'
//! slow paths (`crate::events::epoll`) mirror the program's epoll_ctl here
//! and read it in their waits.

use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64};

use ipc_offload_sys::mem;

use super::fdinfo::{self, Registration};
use super::paged::{self, Paged};
use super::twins;

/// One bit per fd number (any number: a page of the bitmap covers as many
/// fds as a page of the per-fd tables).
type FdBits = Paged<AtomicU64, { paged::FD_PAGE / 64 }, { paged::FD_PAGES }>;

/// Known epoll fds.
static SETS: FdBits = Paged::new();

/// Of those, the sets this process made through the hooks (not learnt from
/// a wait, not inherited across fork): their registrations change through
/// this process's epoll_ctl hooks, which mirror each change in the notes,
/// so what their fdinfo lists may be noted ([`adopt_fd`]). (A program that
/// changes them with raw system calls or io_uring is not seen, as for the
/// hooks' own notes; kcmp still confirms the file before a note is used.)
static OWN: FdBits = Paged::new();

/// True if `fd` is an epoll set the library knows.
pub fn is_epoll(fd: i32) -> bool {
    bit(&SETS, fd)
}

/// True if `fd` is a set this process made (see [`OWN`]): its
/// registrations may be noted.
pub fn is_own(fd: i32) -> bool {
    bit(&OWN, fd)
}

fn bit(map: &FdBits, fd: i32) -> bool {
    paged::fd_index(fd).is_some_and(|i| map.get(i / 64).is_some_and(|w| w.load(Relaxed) & 1 << (i % 64) != 0))
}

/// Records whether `fd` is an epoll set.
pub fn mark_set(fd: i32, known: bool) {
    mark(&SETS, fd, known);
    if !known {
        mark(&OWN, fd, false);
    }
}

fn mark(map: &FdBits, fd: i32, on: bool) {
    let Some(i) = paged::fd_index(fd) else { return };
    if on {
        if let Some(w) = map.get_or_map(i / 64) {
            w.fetch_or(1 << (i % 64), Relaxed);
        }
    } else if let Some(w) = map.get(i / 64) {
        w.fetch_and(!(1 << (i % 64)), Relaxed);
    }
}

/// Calls `each` for every known set.
fn each_set(each: &mut dyn FnMut(i32)) {
    for (w, word) in SETS.iter() {
        let mut bits = word.load(Relaxed);
        while bits != 0 {
            let b = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            each((w * 64 + b) as i32);
        }
    }
}

/// A set registered in another (EPOLL_CTL_ADD of an epoll fd).
#[derive(Debug)]
pub struct Nest {
    /// In use.
    pub live: AtomicBool,
    /// The set it is registered in.
    pub outer: AtomicI32,
    /// The registered set.
    pub inner: AtomicI32,
    /// The program's events for `inner` in `outer`.
    pub events: AtomicU32,
    /// The program's data word.
    pub data: AtomicU64,
}

const NESTS: usize = 64;

/// The nested sets the library knows (the wait hooks look inside them).
pub static NESTED: [Nest; NESTS] = [const {
    Nest {
        live: AtomicBool::new(false),
        outer: AtomicI32::new(-1),
        inner: AtomicI32::new(-1),
        events: AtomicU32::new(0),
        data: AtomicU64::new(0),
    }
}; NESTS];

/// Records that set `inner` is registered in `outer` with `events` and
/// `data` (EPOLL_CTL_ADD or MOD), while there is room.
pub fn set_nest(outer: i32, inner: i32, events: u32, data: u64) {
    let existing = NESTED
        .iter()
        .find(|n| n.live.load(Acquire) && n.outer.load(Relaxed) == outer && n.inner.load(Relaxed) == inner);
    let nest =
        existing.or_else(|| NESTED.iter().find(|n| n.live.compare_exchange(false, true, Relaxed, Relaxed).is_ok()));
    if let Some(n) = nest {
        n.outer.store(outer, Relaxed);
        n.inner.store(inner, Relaxed);
        n.events.store(events, Relaxed);
        n.data.store(data, Relaxed);
        n.live.store(true, Release);
    }
}

/// Forgets the nests whose (outer, inner) sets match.
pub fn drop_nests(matching: impl Fn(i32, i32) -> bool) {
    for n in &NESTED {
        if n.live.load(Acquire) && matching(n.outer.load(Relaxed), n.inner.load(Relaxed)) {
            n.live.store(false, Release);
        }
    }
}

/// The program made epoll set `epfd`.
pub fn created(epfd: i32) {
    if epfd >= 0 {
        mark_set(epfd, true);
        mark(&OWN, epfd, true);
    }
}

/// The program closes epoll set `epfd`.
pub fn closed(epfd: i32) {
    mark_set(epfd, false);
    twins::remove_set(epfd);
    drop_nests(|outer, inner| outer == epfd || inner == epfd);
}

/// In the fork child: sets are shared with the parent, and known as such;
/// the parent's twins in them were freed ([`twins::after_fork`], just
/// before). None is the child's own: the parent may change them.
pub fn after_fork() {
    for (_, word) in OWN.iter() {
        word.store(0, Relaxed);
    }
}

/// A reader channel opted in through `fd` (slot `slot`, key `key`,
/// side-channel socket `side`): twin every registration of its file in the
/// known sets, which the program may have made before, under whatever fd
/// number it used (a dup of `fd`, or one closed since while the file
/// stays open: the kernel keeps such a registration, and reports it).
pub fn adopt_fd(fd: i32, slot: usize, key: u64, side: i32) {
    // The one registration the hooks saw for this number, confirmed by
    // the kernel: no fdinfo to read (a registration of the same file
    // through another number, in another set, is then not twinned; its
    // waits hear of offers through the kernel's bytes only).
    if let Some(note) = super::registered::confirmed(fd) {
        twins::install(note.epfd, fd, note.events, note.data, slot, key, side);
        return;
    }
    let Ok(st) = mem::fstat(fd) else { return };
    each_set(&mut |epfd| {
        let own = is_own(epfd);
        fdinfo::registrations(epfd, &mut |r: Registration| {
            if r.ino == st.ino && fdinfo::same_device(r.sdev, st.dev) {
                twins::install(epfd, r.fd, r.events, r.data, slot, key, side);
            } else if own && !is_epoll(r.fd) {
                // What the hooks did not note (registered before the
                // process had a reader channel), in a set this process
                // made: noted now, unless a note of this set is there (one
                // of another set becomes "several"), so that the set's
                // other fds opt in from the note, not from another read of
                // this file (a server that registered a thousand
                // connections before the first opted in read it once per
                // connection).
                super::registered::note_listed(epfd, r.fd, r.events, r.data);
            }
        });
    });
}
