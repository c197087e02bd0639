//! Twins: for each (epoll set, fd) registration of a reader channel's fd,
//! the channel's side-channel socket registered in the same set with a
//! data word of the library's (a *tag*), edge-triggered. A WAKE or a
//! REQUEST arriving on the side channel makes the set ready; the wait hook
//! sees the tag, answers the channel, and reports the program's own fd
//! with the program's own data, if a read would take bytes now.
//!
//! A grow-only table ([`super::paged`]: a page of twins mapped when every
//! twin is taken), no malloc. Its fields are atomics: waits read them
//! without a lock while the program's epoll_ctl (in another thread, say)
//! updates them, as the kernel's own registrations race. A twin is checked
//! against its channel (slot and key) whenever it is used; one whose
//! channel went is freed then (the kernel dropped its side-channel
//! registration when the socket closed).
//!
//! The table sits below the read and close paths, which update it (a
//! reader's opt-in twins its registrations, a close frees them); the wait
//! hooks (`crate::events`) read it.

use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU32, AtomicU64, AtomicUsize};

use ipc_offload_sys::real::wait::REAL_WAIT;

use super::paged::{Element, Paged};

/// Twins per page of the table, and most pages (about a million twins, as
/// many as channels); more registrations wake through the kernel only
/// (their writers then use the kernel path).
const PAGE: usize = 256;
const PAGES: usize = 4096;
/// The low bits of a tag that hold the twin's index.
const INDEX_BITS: u64 = (PAGE * PAGES - 1) as u64;

const FREE: u8 = 0;
const BUSY: u8 = 1;
const LIVE: u8 = 2;

/// One twin.
#[derive(Debug)]
pub struct Twin {
    state: AtomicU8,
    /// The epoll set.
    pub epfd: AtomicI32,
    /// The program's fd.
    pub fd: AtomicI32,
    /// The side-channel socket registered for it.
    pub side: AtomicI32,
    /// The program's events for `fd` in `epfd`.
    pub events: AtomicU32,
    /// The program's data word.
    pub data: AtomicU64,
    /// The reader channel: its slot and key.
    pub slot: AtomicU32,
    pub key: AtomicU64,
    /// Edge-triggered: the ring's edge mark when `fd` was last reported.
    pub mark: AtomicU64,
    /// One-shot: reported, and not re-armed by the program yet.
    pub disarmed: AtomicBool,
}

/// A twin's fields as one wait uses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TwinView {
    /// Its index in the table.
    pub index: usize,
    pub epfd: i32,
    pub fd: i32,
    pub events: u32,
    pub data: u64,
    pub slot: usize,
    pub key: u64,
    pub mark: u64,
    pub disarmed: bool,
}

impl TwinView {
    /// The program asked for input events and has not had its one shot.
    pub fn armed(&self) -> bool {
        self.events & libc::EPOLLIN as u32 != 0 && !self.disarmed
    }

    /// Edge-triggered.
    pub fn edge(&self) -> bool {
        self.events & libc::EPOLLET as u32 != 0
    }

    /// One-shot.
    pub fn oneshot(&self) -> bool {
        self.events & libc::EPOLLONESHOT as u32 != 0
    }
}

// SAFETY: ZERO_IS_EMPTY is false: a new page is filled with EMPTY.
unsafe impl Element for Twin {
    const EMPTY: Self = Twin {
        state: AtomicU8::new(FREE),
        epfd: AtomicI32::new(-1),
        fd: AtomicI32::new(-1),
        side: AtomicI32::new(-1),
        events: AtomicU32::new(0),
        data: AtomicU64::new(0),
        slot: AtomicU32::new(0),
        key: AtomicU64::new(0),
        mark: AtomicU64::new(0),
        disarmed: AtomicBool::new(false),
    };
    const ZERO_IS_EMPTY: bool = false;
}

static TABLE: Paged<Twin, PAGE, PAGES> = Paged::new();

/// Twins in use: none, and a wait has nothing to look at.
static LIVE_COUNT: AtomicU32 = AtomicU32::new(0);

/// Set by the first twin ever installed (kept across fork: the parent's
/// side channels may stay in sets the child waits on). Until then no
/// event can carry a tag, and a wait need not look at its results.
static EVER: AtomicBool = AtomicBool::new(false);

/// Set by the first twin ever given `EPOLLONESHOT` (never cleared): until
/// then a wait has no one-shot twin to disarm, and need not look for one.
static ONESHOT_SEEN: AtomicBool = AtomicBool::new(false);

/// Notes `events` of a twin about to be stored.
fn note_events(events: u32) {
    if events & libc::EPOLLONESHOT as u32 != 0 && !ONESHOT_SEEN.load(Relaxed) {
        ONESHOT_SEEN.store(true, Release);
    }
}

/// False until some twin was ever one-shot (see [`ONESHOT_SEEN`]).
pub fn oneshot_seen() -> bool {
    ONESHOT_SEEN.load(Acquire)
}

/// The tags' base, drawn at start-up, with the low bits free for the
/// index ([`INDEX_BITS`]). A fork child keeps its parent's: the parent's twins in sets they
/// share then look like the child's own, which it has freed, and it drops
/// their events. A program's data word that equals a live tag (one chance
/// in 2^44 per word) would be taken for the library's.
static MAGIC: AtomicU64 = AtomicU64::new(0);

/// Draws this process's tag base (the constructor).
pub fn new_magic() {
    let mut seed = 0u64;
    // SAFETY: getrandom into an 8-byte local; a failure leaves the clock.
    let got =
        unsafe { ipc_offload_sys::syscall6(libc::SYS_getrandom, [&mut seed as *mut u64 as usize, 8, 1, 0, 0, 0]) };
    if got.is_err() {
        seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos() as u64);
    }
    MAGIC.store((seed | 1 << 63) & !INDEX_BITS, Relaxed);
}

fn tag(index: usize) -> u64 {
    MAGIC.load(Relaxed) | index as u64
}

/// True if any twin is in use (the wait hooks' test).
pub fn any() -> bool {
    LIVE_COUNT.load(Relaxed) != 0
}

/// True once any twin was installed in this process or its parent: from
/// then on an epoll set's results may hold a tag (a twin installed by
/// another thread during the wait, or freed since), even while none is
/// in use.
pub fn ever() -> bool {
    EVER.load(Relaxed)
}

/// The twin a data word names, if it is one of this process's live tags.
pub fn by_tag(data: u64) -> Option<TwinView> {
    let magic = MAGIC.load(Relaxed);
    if data & !INDEX_BITS != magic {
        return None;
    }
    view((data & INDEX_BITS) as usize)
}

/// True if `data` looks like a tag of this process (live or not).
pub fn is_tag_shaped(data: u64) -> bool {
    data & !INDEX_BITS == MAGIC.load(Relaxed)
}

fn view(index: usize) -> Option<TwinView> {
    let t = TABLE.get(index)?;
    if t.state.load(Acquire) != LIVE {
        return None;
    }
    Some(TwinView {
        index,
        epfd: t.epfd.load(Relaxed),
        fd: t.fd.load(Relaxed),
        events: t.events.load(Relaxed),
        data: t.data.load(Relaxed),
        slot: t.slot.load(Relaxed) as usize,
        key: t.key.load(Relaxed),
        mark: t.mark.load(Relaxed),
        disarmed: t.disarmed.load(Relaxed),
    })
}

/// One past the highest index ever claimed: the walks stop there, not at
/// the end of the table's static page (256 twins, a cache line each, walked
/// by every wait of an event loop that holds a few).
static TOP: AtomicUsize = AtomicUsize::new(0);

/// The twins below [`TOP`], with their indexes.
fn claimed() -> impl Iterator<Item = (usize, &'static Twin)> {
    let top = TOP.load(Acquire);
    TABLE.iter().take_while(move |(index, _)| *index < top)
}

/// Every live twin, as it stands.
fn live() -> impl Iterator<Item = TwinView> {
    claimed().filter_map(|(index, _)| view(index))
}

/// Calls `each` for every live twin in set `epfd`, in table order, until
/// it returns false.
pub fn each_in(epfd: i32, each: &mut dyn FnMut(TwinView) -> bool) {
    if !any() {
        return;
    }
    for (index, t) in claimed() {
        if t.state.load(Relaxed) == LIVE
            && t.epfd.load(Relaxed) == epfd
            && let Some(v) = view(index)
            && !each(v)
        {
            return;
        }
    }
}

/// True if set `epfd` has a live twin.
pub fn any_in(epfd: i32) -> bool {
    any()
        && claimed()
            .any(|(index, t)| t.state.load(Relaxed) == LIVE && t.epfd.load(Relaxed) == epfd && view(index).is_some())
}

/// The live twin of (`epfd`, `fd`).
pub fn find(epfd: i32, fd: i32) -> Option<TwinView> {
    live().find(|v| v.epfd == epfd && v.fd == fd)
}

/// Records that `fd` (reader channel `slot`/`key`, side-channel socket
/// `side`) is registered in `epfd` with `events` and `data`: updates its
/// twin, or registers a new one. False if none could be had (table full,
/// or the side channel already in that set for another fd of the socket).
pub fn install(epfd: i32, fd: i32, events: u32, data: u64, slot: usize, key: u64, side: i32) -> bool {
    if let Some(v) = find(epfd, fd) {
        if let Some(t) = TABLE.get(v.index)
            && v.slot == slot
            && v.key == key
            && t.side.load(Relaxed) == side
        {
            note_events(events);
            t.events.store(events, Relaxed);
            t.data.store(data, Relaxed);
            t.disarmed.store(false, Release);
            return true;
        }
        // The number names another file now.
        remove_at(v.index, true);
    }
    let claim = |(_, t): &(usize, &Twin)| t.state.compare_exchange(FREE, BUSY, AcqRel, Relaxed).is_ok();
    let next = || {
        let next = TABLE.end();
        TABLE.get_or_map(next).map(|t| (next, t))
    };
    let Some((index, t)) = TABLE.iter().find(claim).or_else(|| next().filter(claim)) else {
        return false;
    };
    TOP.fetch_max(index + 1, Release);
    t.epfd.store(epfd, Relaxed);
    t.fd.store(fd, Relaxed);
    t.side.store(side, Relaxed);
    note_events(events);
    t.events.store(events, Relaxed);
    t.data.store(data, Relaxed);
    t.slot.store(slot as u32, Relaxed);
    t.key.store(key, Relaxed);
    t.mark.store(0, Relaxed);
    t.disarmed.store(false, Relaxed);
    let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLET) as u32, u64: tag(index) };
    // SAFETY: epoll_ctl(2) with a local event.
    let added = unsafe { (REAL_WAIT.epoll_ctl.get())(epfd, libc::EPOLL_CTL_ADD, side, &mut ev) } == 0;
    if !added {
        t.state.store(FREE, Release);
        return false;
    }
    EVER.store(true, Relaxed);
    LIVE_COUNT.fetch_add(1, Relaxed);
    t.state.store(LIVE, Release);
    // A REQUEST now wakes the program's wait, which answers it: the reads
    // of a Unix socket or a pipe need not look for one (while it has no
    // ring, they go straight to the kernel). A TCP reader's still do until
    // it goes quiet (reader.rs): its queue holds megabytes, and a loop that
    // reads until EAGAIN may not wait again for longer than the writer asks
    // (127 ms), which would leave the stream on the kernel path.
    // (Nor a reader that opted in for its small reads: reader.rs.)
    if super::endpoint::class_of_key(key) != ipc_offload_policy::Class::Tcp && !super::channel::is_small(slot) {
        super::channel::set_quiet(slot, true);
    }
    super::channel::note_twin(slot, true);
    true
}

/// Updates the twin of (`epfd`, `fd`) after the program's EPOLL_CTL_MOD:
/// its events and data, re-armed.
pub fn modified(epfd: i32, fd: i32, events: u32, data: u64) {
    if let Some(v) = find(epfd, fd)
        && let Some(t) = TABLE.get(v.index)
    {
        note_events(events);
        t.events.store(events, Relaxed);
        t.data.store(data, Relaxed);
        t.disarmed.store(false, Release);
    }
}

/// Notes that twin `index` reported its fd (edge: at `mark`; one-shot:
/// disarmed).
pub fn reported(index: usize, mark: u64, oneshot: bool) {
    if let Some(t) = TABLE.get(index) {
        t.mark.store(mark, Relaxed);
        if oneshot {
            t.disarmed.store(true, Release);
        }
    }
}

/// Disarms twin `index` (the kernel reported its one-shot fd itself).
pub fn disarm(index: usize) {
    if let Some(t) = TABLE.get(index) {
        t.disarmed.store(true, Release);
    }
}

/// Frees twin `index`; with `unregister`, takes its side channel out of
/// its set too (it is still open: the fd's channel lives on).
pub fn remove_at(index: usize, unregister: bool) {
    let Some(t) = TABLE.get(index) else { return };
    if t.state.compare_exchange(LIVE, BUSY, AcqRel, Relaxed).is_err() {
        return;
    }
    if unregister {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        let (epfd, side) = (t.epfd.load(Relaxed), t.side.load(Relaxed));
        // SAFETY: epoll_ctl(2) with a local event; a failure (the socket
        // closed already) needs nothing more.
        let _ = unsafe { (REAL_WAIT.epoll_ctl.get())(epfd, libc::EPOLL_CTL_DEL, side, &mut ev) };
    }
    LIVE_COUNT.fetch_sub(1, Relaxed);
    super::channel::note_twin(t.slot.load(Relaxed) as usize, false);
    t.state.store(FREE, Release);
}

/// Frees every twin of set `epfd` (it is being closed).
pub fn remove_set(epfd: i32) {
    for v in live().filter(|v| v.epfd == epfd) {
        remove_at(v.index, false);
    }
}

/// Frees every twin of fd `fd` (it is being closed), taking the side
/// channel out of each set if the channel outlives it.
pub fn remove_fd(fd: i32, channel_lives: bool) {
    for v in live().filter(|v| v.fd == fd) {
        remove_at(v.index, channel_lives);
    }
}

/// Frees every twin of the reader channel in `slot` serving `key` (it is
/// released: its side channel closed and left every set), under any fd
/// number.
pub fn remove_channel(slot: usize, key: u64) {
    for v in live().filter(|v| v.slot == slot && v.key == key) {
        remove_at(v.index, false);
    }
}

/// Frees every twin of the reader channel in `slot` (serving `key`) and
/// takes its side channel out of their sets: the channel lives on, but no
/// wait is to watch it (a reader of small buffers that declines rings,
/// reader.rs).
pub fn unregister_channel(slot: usize, key: u64) {
    for v in live().filter(|v| v.slot == slot && v.key == key) {
        remove_at(v.index, true);
    }
}

/// Before the program closes `fd`, a socket or pipe the library knows
/// (close, dup2 and dup3 over it, close_range). While another fd keeps its
/// file open the kernel keeps its registrations (epoll's own rule: they
/// belong to the file), and so do its twins; with the last, its side
/// channel closes and leaves every set, and its twins are freed. (An epoll
/// set's close: `epoll_sets::closed`.)
pub fn closing(fd: i32, channel_lives: bool, key: u64) {
    if any() && !channel_lives {
        remove_fd(fd, false);
        if let Some(slot) = super::route::slot(fd, super::hint::Dir::Read) {
            remove_channel(slot, key);
        }
    }
}

/// In a fork child: every twin is the parent's (its side channels stay
/// registered in the sets they share; their events, tag-shaped, are
/// dropped).
pub fn after_fork() {
    for (_, t) in TABLE.iter() {
        t.state.store(FREE, Relaxed);
    }
    LIVE_COUNT.store(0, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the table is process-wide.
    #[test]
    fn twins_are_registered_found_by_tag_and_freed() {
        new_magic();
        // SAFETY: plain calls on fds this test owns.
        let (ep, side, fd) = unsafe {
            let mut sv = [0i32; 2];
            assert_eq!(libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, sv.as_mut_ptr()), 0);
            (libc::epoll_create1(libc::EPOLL_CLOEXEC), sv[0], sv[1])
        };
        assert!(!any());
        assert!(install(ep, fd, libc::EPOLLIN as u32 | libc::EPOLLET as u32, 0xfeed, 7, 0x77, side));
        assert!(any());
        let t = find(ep, fd).expect("installed");
        assert!(t.armed() && t.edge() && !t.oneshot());
        assert_eq!((t.data, t.slot, t.key), (0xfeed, 7, 0x77));
        let tag = MAGIC.load(Relaxed) | t.index as u64;
        assert_eq!(by_tag(tag).map(|v| v.index), Some(t.index));
        assert!(is_tag_shaped(tag));
        assert_eq!(by_tag(0xfeed), None, "the program's own data word");
        // The side channel is in the set with the tag: a datagram makes it
        // ready, and the event carries the tag.
        // SAFETY: a one-byte send on our own socket, then epoll_wait into
        // a local array.
        unsafe {
            assert_eq!(libc::send(fd, b"x".as_ptr().cast(), 1, 0), 1);
            let mut ev = [libc::epoll_event { events: 0, u64: 0 }; 2];
            assert_eq!(libc::epoll_wait(ep, ev.as_mut_ptr(), 2, 1000), 1);
            assert_eq!({ ev[0].u64 }, tag);
        }
        // Re-armed and updated by the program's MOD; disarmed when reported
        // one-shot. Until a twin is one-shot, waits look for none.
        let seen = oneshot_seen();
        let mut visited = 0;
        each_in(ep, &mut |_| {
            visited += 1;
            false
        });
        assert_eq!(visited, 1, "each_in stops when told");
        modified(ep, fd, libc::EPOLLIN as u32 | libc::EPOLLONESHOT as u32, 0xbeef);
        assert!(oneshot_seen(), "one-shot noted (before: {seen})");
        reported(t.index, 42, true);
        let t = find(ep, fd).unwrap();
        assert_eq!((t.data, t.mark, t.disarmed, t.armed()), (0xbeef, 42, true, false));
        modified(ep, fd, libc::EPOLLIN as u32 | libc::EPOLLONESHOT as u32, 0xbeef);
        assert!(find(ep, fd).unwrap().armed(), "re-armed");
        // The same side channel cannot be in the set twice.
        assert!(!install(ep, fd + 1000, libc::EPOLLIN as u32, 1, 8, 0x88, side));
        remove_fd(fd, true);
        assert_eq!(find(ep, fd), None);
        assert!(!any());
        assert_eq!(by_tag(tag), None, "freed");
        assert!(is_tag_shaped(tag), "still the library's: dropped, never the program's");
        // A fork child forgets its parent's twins.
        assert!(install(ep, fd, libc::EPOLLIN as u32, 3, 9, 0x99, side));
        after_fork();
        assert!(!any());
        // SAFETY: closing fds this test owns.
        unsafe {
            for f in [ep, side, fd] {
                libc::close(f);
            }
        }
    }
}
