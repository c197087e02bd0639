//! The channel table: one entry per direction this process takes part in,
//! as the reader of a socket or pipe (its side-channel name and its ring)
//! or as the writer into one (its side-channel socket and the reader's
//! ring).
//!
//! A grow-only table of try-locked slots ([`super::paged`]): no malloc, no
//! blocking, a new page of slots mapped when every slot is taken. A slot's
//! key and role are atomics, readable without its lock, so lookups scan
//! without locking; the state behind the lock is what the transfer uses,
//! and names its endpoint in full (two FIFOs may share a key).

use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

use ipc_offload_ring::Ring;
use ipc_offload_sys::mem::OwnedFd;
use ipc_offload_sys::net::{self, AbstractAddr};

use super::endpoint::{Endpoint, Family};
use super::paged::{Element, Paged};
use super::table::{Guard, TrySlot};

/// Slots per page of the table, and most pages: about a million directions
/// at once, far above any `RLIMIT_NOFILE` a process is likely to be given
/// (each direction holds an fd of its own); beyond, the kernel path.
const PAGE: usize = 256;
const PAGES: usize = 4096;

/// The reader's side of a direction.
#[derive(Debug)]
pub struct Reader {
    /// The socket or pipe read from.
    pub own: Endpoint,
    /// What writers write into: the peer socket, or the pipe itself.
    pub peer: Endpoint,
    /// The side-channel socket bound to the opt-in name.
    pub side: OwnedFd,
    /// The ring and its memfd, created on the first REQUEST.
    pub ring: Option<(Ring, OwnedFd)>,
    /// The ring's lifeline: the end kept, and the end given to writers
    /// with each OFFER, which reads as hung up once this process lets the
    /// ring go, execs or dies.
    pub lifeline: Option<(OwnedFd, OwnedFd)>,
    /// The last writer seen claiming, and a pidfd on it.
    pub writer: Option<(i32, OwnedFd)>,
    /// The side-channel addresses of writers that sent REQUESTs, by pid: a
    /// claiming writer whose address is no longer bound has exec'd.
    pub requesters: [Option<(i32, AbstractAddr)>; REQUESTERS],
    /// When it opted in.
    pub since: Instant,
    /// It has served a REQUEST: a writer with the library writes here.
    pub requested: bool,
    /// Reads without a ring since it opted in.
    pub unasked: u32,
    /// Bytes those reads took from the kernel.
    pub unasked_bytes: u64,
    /// Which ring it has (a process-wide count; 0: none), so that a wait
    /// that marked a ring as listened to unmarks that ring, not the next.
    pub ring_id: u64,
    /// When it last read through the library with a ring: a ring idle for
    /// [`IDLE_RECLAIM`] goes back to the budget when another reader needs
    /// one ([`reclaim_idle`]).
    pub active: Instant,
    /// It took bytes through a ring at least once (counted once, in the
    /// stats' `rings.served`).
    pub served: bool,
    /// Small reads (below the threshold) through the library with a ring
    /// and no offer open, while no offer was ever taken: a reader that
    /// opted in for its small reads lets its ring go after
    /// [`SMALL_MISSES`] of them (its writers do not offer to it).
    pub misses: u32,
    /// It let its ring go for that reason: REQUESTs go unanswered until a
    /// large read of its comes.
    pub declines: bool,
    /// The buffer length of its last read through the library, or of the
    /// small read that made it opt in (0: none yet): a new ring starts
    /// with it (`Presence::read_len`), so that the writer's first look
    /// knows a reader of small buffers.
    pub read_len: u64,
    /// Over TCP: the offer (its ring's `ring_id` and its seq) whose earlier
    /// kernel bytes have all arrived, asked once per offer, not once per
    /// read (a reader of 16 KiB buffers asked 64 times per 1 MB offer,
    /// `TCP_INFO` and `SIOCINQ` each time).
    pub caught_up: Option<(u64, u32)>,
    /// Over TCP: the write-behind offer whose earlier kernel bytes were all
    /// read (every kernel byte queued now comes after it).
    pub past_before: Option<(u64, u32)>,
}

/// See [`Reader::misses`]: 16 MiB of 16 KiB reads.
pub const SMALL_MISSES: u32 = 1024;

/// Numbers rings for [`Reader::ring_id`].
static RING_IDS: AtomicU64 = AtomicU64::new(1);

/// A new ring's number.
pub fn next_ring_id() -> u64 {
    RING_IDS.fetch_add(1, Relaxed)
}

/// Reader channels in use: while there are none, the wait hooks have
/// nothing to watch.
static READERS: AtomicU32 = AtomicU32::new(0);

/// True if any reader channel exists (the wait hooks' first test).
pub fn any_reader() -> bool {
    READERS.load(Relaxed) != 0
}

/// Set when the process claims its first reader channel, never cleared:
/// from then on the epoll_ctl hooks note registrations for fds that may
/// opt in later (`super::registered`); before, epoll_ctl costs nothing.
static EVER_READER: AtomicBool = AtomicBool::new(false);

/// True once the process has had a reader channel.
pub fn had_reader() -> bool {
    EVER_READER.load(Relaxed)
}

/// Writers' addresses a reader remembers (more writers share the slots).
pub const REQUESTERS: usize = 4;

impl Reader {
    /// Remembers the side-channel address of writer `pid`.
    pub fn note_requester(&mut self, pid: i32, from: AbstractAddr) {
        let i = self.requesters.iter().position(|r| r.is_some_and(|(p, _)| p == pid));
        let free = || self.requesters.iter().position(Option::is_none);
        let i = i.or_else(free).unwrap_or(pid.unsigned_abs() as usize % REQUESTERS);
        self.requesters[i] = Some((pid, from));
    }

    /// The side-channel address of writer `pid`, if it sent a REQUEST.
    pub fn requester(&self, pid: i32) -> Option<AbstractAddr> {
        self.requesters.iter().flatten().find(|(p, _)| *p == pid).map(|(_, a)| *a)
    }
}

/// The writer's side of a direction.
#[derive(Debug)]
pub struct Writer {
    /// The socket or pipe written to.
    pub target: Endpoint,
    /// The side-channel socket (autobound); OFFERs arrive here.
    pub side: Option<OwnedFd>,
    /// The reader's ring, once offered and checked, and its memfd's inode
    /// (an OFFER of another ring replaces it: a new reader).
    pub ring: Option<(Ring, u64)>,
    /// The far end of the reader's lifeline (hung up: the reader is gone).
    pub reader: Option<OwnedFd>,
    /// When the next REQUEST may go (backing off while refused).
    pub next_request: Option<Instant>,
    /// How long to back off after the next refusal.
    pub backoff: Duration,
    /// Until when the reader counts as streaming: it took bytes of this
    /// writer's last offer, and comes back to its reads soon.
    pub streaming_until: Option<Instant>,
    /// The reader's read count when it last left an offer untaken: it is
    /// offered again (unless it waits inside a read) once that moves.
    pub declined: Option<u32>,
    /// The reader read through the library while this writer's last
    /// kernel piece was in the kernel: it drains what the kernel holds
    /// (no wait of its own to be seen in), and its next read takes an
    /// offer. (Reads between two calls do not count: a thread that writes
    /// and then reads its own socket pair would never take.)
    pub read_meanwhile: bool,
    /// The reader's read count when this writer's last kernel piece
    /// returned: a reader in another process that read since drains what
    /// the kernel holds too (a nonblocking writer's pieces are too short
    /// to see it at it).
    pub reads_after_piece: Option<u32>,
    /// The ring's reader is another process (a thread of this one may be
    /// this very thread, which reads only once its write returns).
    pub reader_elsewhere: bool,
    /// Bytes this direction still sends through the kernel, whole, before
    /// its first REQUEST (`handshake_after`: a new connection earns the
    /// fast path).
    pub unearned: u64,
    /// An offer its last write left open for the reader to take
    /// ([`super::behind`]): ended before this writer's next byte goes
    /// anywhere else.
    pub behind: Option<super::behind_offer::Behind>,
    /// The last large write on the socket returned less than it was
    /// asked: the program comes back with the rest of a message, which
    /// stays with the offers rather than going to a socket with room for
    /// it (`writer::kernel_has_room`).
    pub short: bool,
    /// A REQUEST was delivered and no OFFER came since: a second such one
    /// counts as a refusal that lasts (the reader is there but does not
    /// answer: a reader of small buffers that declines rings, reader.rs),
    /// and the writer's large writes go to the kernel whole.
    pub unanswered: bool,
}

impl Writer {
    /// A writer into `target` that has not met its reader yet, backing off
    /// `backoff` after its first refused REQUEST, that sends `unearned`
    /// bytes through the kernel before it asks.
    pub fn new(target: Endpoint, backoff: Duration, unearned: u64) -> Writer {
        Writer {
            target,
            side: None,
            ring: None,
            reader: None,
            next_request: None,
            backoff,
            streaming_until: None,
            declined: None,
            read_meanwhile: false,
            reads_after_piece: None,
            reader_elsewhere: false,
            unearned,
            behind: None,
            short: false,
            unanswered: false,
        }
    }
}

/// A slot's content.
// The table is static (256 slots of about 600 bytes) and hooks never
// allocate: no Box for the larger variant.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Default)]
pub enum Channel {
    /// Free.
    #[default]
    Empty,
    /// This process reads the socket or pipe.
    Reader(Reader),
    /// This process writes the socket or pipe.
    Writer(Writer),
}

impl Channel {
    /// True when this channel serves `endpoint` (or is free): a slot found
    /// by key may belong to another FIFO with the same key.
    pub fn serves(&self, endpoint: Endpoint) -> bool {
        match self {
            Channel::Empty => true,
            Channel::Reader(r) => r.own == endpoint,
            Channel::Writer(w) => w.target == endpoint,
        }
    }
}

/// Roles, as stored in a slot's atomic tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// [`Channel::Reader`].
    Reader = 1,
    /// [`Channel::Writer`].
    Writer = 2,
}

#[derive(Debug)]
struct Slot {
    /// The endpoint key this slot serves (0: free).
    key: AtomicU64,
    role: AtomicU8,
    /// A reader's: it has a ring (offers can come).
    ringed: AtomicBool,
    /// A reader's: no writer with the library has asked for its ring, long
    /// after it opted in, or an event loop's wait answers REQUESTs for it:
    /// while it has no ring, its reads go to the kernel without the lock
    /// (see [`quiet_read`]).
    quiet: AtomicBool,
    /// A reader's: it opted in for reads below the threshold that fill
    /// their buffers (streak.rs): while it has no ring and is not quiet,
    /// those reads come to the library, which answers its REQUESTs.
    small: AtomicBool,
    /// A reader's, while `small` and without a ring: when (`hint::now_ms`)
    /// one of its small reads last looked for REQUESTs (see [`look_due`]).
    looked_ms: AtomicU32,
    /// A reader's: its fd's `O_NONBLOCK` when the slow path last looked (0:
    /// not yet, 1: blocking, 2: nonblocking). It can change behind the
    /// library's back: every [`LOOK_EVERY`]th call looks again.
    nonblocking: AtomicU8,
    /// Calls answered from the tables; every [`LOOK_EVERY`]th takes the slow
    /// path instead (REQUESTs, flags, the reader's liveness).
    calls: AtomicU32,
    /// A reader's: how many epoll sets hold a twin of it (their waits
    /// answer its REQUESTs, so its quiet reads need not look for them).
    twins: AtomicU32,
    /// A writer's: it holds a write-behind offer (what [`each_writer`]
    /// must not pass over).
    behind: AtomicBool,
    state: TrySlot<Channel>,
}

// SAFETY: ZERO_IS_EMPTY is false: a new page is filled with EMPTY.
unsafe impl Element for Slot {
    const EMPTY: Self = Slot {
        key: AtomicU64::new(0),
        role: AtomicU8::new(0),
        ringed: AtomicBool::new(false),
        quiet: AtomicBool::new(false),
        small: AtomicBool::new(false),
        looked_ms: AtomicU32::new(0),
        nonblocking: AtomicU8::new(0),
        calls: AtomicU32::new(0),
        twins: AtomicU32::new(0),
        behind: AtomicBool::new(false),
        state: TrySlot::new(Channel::Empty),
    };
    const ZERO_IS_EMPTY: bool = false;
}

static SLOTS: Paged<Slot, PAGE, PAGES> = Paged::new();

/// How often a call the tables could answer takes the slow path after all.
pub const LOOK_EVERY: u32 = 64;

/// Bytes of rings this process created, per family (the `ring_bytes`
/// budget of `[unix]`, `[pipe]` and `[tcp]`).
static RING_BYTES: [AtomicU64; Family::COUNT] = [const { AtomicU64::new(0) }; Family::COUNT];
/// Per family: rings held now, the most bytes held at once, rings made,
/// rings reclaimed from idle readers, reader channels that took bytes
/// through a ring (the stats' `rings`).
static RINGS_HELD: [AtomicU64; Family::COUNT] = [const { AtomicU64::new(0) }; Family::COUNT];
static PEAK_BYTES: [AtomicU64; Family::COUNT] = [const { AtomicU64::new(0) }; Family::COUNT];
static RINGS_MADE: [AtomicU64; Family::COUNT] = [const { AtomicU64::new(0) }; Family::COUNT];
static RECLAIMED: [AtomicU64; Family::COUNT] = [const { AtomicU64::new(0) }; Family::COUNT];
static SERVED: [AtomicU64; Family::COUNT] = [const { AtomicU64::new(0) }; Family::COUNT];

/// How long a reader's ring must go without a read through the library,
/// and without an open offer, before another reader of its family may
/// take its place in the budget. A second, not less: a server that goes
/// round more connections than its budget holds, each busy for one
/// message every few hundred ms, made and dropped a ring per message with
/// 200 ms (a memfd, two mappings, a handshake, every page faulted in anew:
/// more than the message saved; 1,000 connections echoing 1 MiB ran at
/// 0.45x the kernel, 0.75x with a second).
pub const IDLE_RECLAIM: Duration = Duration::from_secs(1);

/// Least time between two reclaims in a family (see [`IDLE_RECLAIM`]):
/// however many readers are idle, rings change hands at most 200 times a
/// second.
pub const RECLAIM_EVERY: Duration = Duration::from_millis(5);

/// Per family: when the last reclaim was let through, `CLOCK_MONOTONIC`
/// ns (0: never).
static LAST_RECLAIM: [AtomicU64; Family::COUNT] = [const { AtomicU64::new(0) }; Family::COUNT];

/// True if a reclaim in `family` may go now (none in the last
/// [`RECLAIM_EVERY`]); it then counts as the last, found an idle reader or
/// not (the scan is over every channel: it too goes at most that often).
fn reclaim_due(family: Family) -> bool {
    let now = ipc_offload_sys::monotonic_ns().max(1);
    let last = &LAST_RECLAIM[family as usize];
    let before = last.load(Relaxed);
    let every = RECLAIM_EVERY.as_nanos() as u64;
    (before == 0 || now.saturating_sub(before) >= every) && last.compare_exchange(before, now, Relaxed, Relaxed).is_ok()
}

/// What a family's rings come to (the stats' `rings` object).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingFigures {
    /// Rings held now, and their bytes.
    pub held: u64,
    pub held_bytes: u64,
    /// The most bytes held at once.
    pub peak_bytes: u64,
    /// Rings made since start (or the fork).
    pub made: u64,
    /// Rings taken from idle readers for others.
    pub reclaimed: u64,
    /// Reader channels (a connection's or a pipe's read side) that took
    /// bytes through a ring at least once.
    pub served: u64,
}

/// The figures of `family`'s rings.
pub fn ring_figures(family: Family) -> RingFigures {
    let i = family as usize;
    RingFigures {
        held: RINGS_HELD[i].load(Relaxed),
        held_bytes: RING_BYTES[i].load(Relaxed),
        peak_bytes: PEAK_BYTES[i].load(Relaxed),
        made: RINGS_MADE[i].load(Relaxed),
        reclaimed: RECLAIMED[i].load(Relaxed),
        served: SERVED[i].load(Relaxed),
    }
}

/// Counts a ring made for `family` (its bytes were reserved first).
pub fn note_ring_made(family: Family) {
    RINGS_MADE[family as usize].fetch_add(1, Relaxed);
}

/// Counts a reader channel of `family` that took bytes through a ring for
/// the first time.
pub fn note_served(family: Family) {
    SERVED[family as usize].fetch_add(1, Relaxed);
}

fn budget(family: Family) -> &'static AtomicU64 {
    &RING_BYTES[family as usize]
}

/// Locked access to a channel; the slot stays claimed for its key.
pub type Locked = Guard<'static, Channel>;

/// Why no channel could be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// Another thread of this process is using it.
    Busy,
    /// Every slot is taken.
    Full,
}

/// The channel of `endpoint` in `role`, locked; created empty (the caller
/// fills it) if there is none. `Busy` too when the slot of its key serves
/// another endpoint.
pub fn lock(endpoint: Endpoint, role: Role) -> Result<Locked, Unavailable> {
    lock_at(endpoint, role).map(|(g, _)| g)
}

/// As [`lock`], with the slot's index (for [`super::route`]).
pub fn lock_at(endpoint: Endpoint, role: Role) -> Result<(Locked, usize), Unavailable> {
    lock_near(endpoint, role, None)
}

/// As [`lock_at`], trying slot `hint` first (the fd's route word names
/// it): no scan of the table for a channel found there.
pub fn lock_near(endpoint: Endpoint, role: Role, hint: Option<usize>) -> Result<(Locked, usize), Unavailable> {
    let key = endpoint.key();
    let mine = |g: Locked, i: usize| if g.serves(endpoint) { Ok((g, i)) } else { Err(Unavailable::Busy) };
    let hinted = hint.filter(|&i| serves(i, key, role)).and_then(|i| Some((i, SLOTS.get(i)?)));
    if let Some((i, slot)) = hinted.or_else(|| find(key, role)) {
        return slot.state.try_lock().ok_or(Unavailable::Busy).and_then(|g| mine(g, i));
    }
    // Racing threads may claim the free slot found: look again.
    for _ in 0..4 {
        let Some((i, slot)) = free_slot() else { break };
        if slot.key.compare_exchange(0, key, AcqRel, Relaxed).is_ok() {
            slot.ringed.store(false, Relaxed);
            slot.quiet.store(false, Relaxed);
            slot.nonblocking.store(0, Relaxed);
            slot.twins.store(0, Relaxed);
            slot.behind.store(false, Relaxed);
            if role == Role::Reader {
                READERS.fetch_add(1, Relaxed);
                if !EVER_READER.load(Relaxed) {
                    EVER_READER.store(true, Relaxed);
                }
            }
            slot.role.store(role as u8, Release);
            return slot.state.try_lock().ok_or(Unavailable::Busy).and_then(|g| mine(g, i));
        }
    }
    Err(Unavailable::Full)
}

/// A free slot: the first of the table, or the first of a new page.
fn free_slot() -> Option<(usize, &'static Slot)> {
    if let Some(free) = SLOTS.iter().find(|(_, slot)| slot.key.load(Relaxed) == 0) {
        return Some(free);
    }
    let next = SLOTS.end();
    SLOTS.get_or_map(next).map(|slot| (next, slot))
}

/// The slot of `key` in `role`, if there is one.
fn find(key: u64, role: Role) -> Option<(usize, &'static Slot)> {
    SLOTS.iter().find(|(_, slot)| slot.key.load(Acquire) == key && slot.role.load(Acquire) == role as u8)
}

/// Locks slot `index` if it still serves `key` in `role` (never waits).
pub fn lock_index(index: usize, key: u64, role: Role) -> Option<Locked> {
    let slot = SLOTS.get(index)?;
    if slot.key.load(Acquire) != key || slot.role.load(Acquire) != role as u8 {
        return None;
    }
    let guard = slot.state.try_lock()?;
    // Checked again under the lock: the slot may have been freed and taken
    // for another key between the two.
    let same = matches!((&*guard, role), (Channel::Reader(_), Role::Reader) | (Channel::Writer(_), Role::Writer));
    (slot.key.load(Acquire) == key && same).then_some(guard)
}

/// True while slot `index` serves `key` in `role` (lock-free).
pub fn serves(index: usize, key: u64, role: Role) -> bool {
    SLOTS.get(index).is_some_and(|slot| slot.key.load(Acquire) == key && slot.role.load(Acquire) == role as u8)
}

/// Notes whether the reader's fd of slot `index` was nonblocking.
pub fn set_nonblocking(index: usize, nonblocking: bool) {
    if let Some(slot) = SLOTS.get(index) {
        let value = if nonblocking { 2 } else { 1 };
        if slot.nonblocking.load(Relaxed) != value {
            slot.nonblocking.store(value, Relaxed);
        }
    }
}

/// The reader's fd of slot `index` was nonblocking when last looked at.
pub fn nonblocking(index: usize) -> bool {
    SLOTS.get(index).is_some_and(|slot| slot.nonblocking.load(Relaxed) == 2)
}

/// Whether the reader's fd of slot `index` blocks, as last looked at, if
/// known and not due for another look.
pub fn cached_blocking(index: usize) -> Option<bool> {
    let slot = SLOTS.get(index)?;
    match slot.nonblocking.load(Relaxed) {
        0 => None,
        known => tick(index).then_some(known == 1),
    }
}

/// Counts a call the tables answer for slot `index`; false for every
/// [`LOOK_EVERY`]th, which must take the slow path.
pub fn tick(index: usize) -> bool {
    ticks(index).is_some_and(|n| n % LOOK_EVERY != 0)
}

/// Counts a call the tables answer for slot `index`; returns the count
/// before it.
pub fn ticks(index: usize) -> Option<u32> {
    SLOTS.get(index).map(|slot| slot.calls.fetch_add(1, Relaxed))
}

/// How often a nonblocking reader answered from the tables asks its fd's
/// flags again: a program that made it blocking behind the library's back
/// (Python's setblocking, an ioctl) has its reads take the fast path again
/// within this many calls.
pub const FLAGS_EVERY: u32 = 8;

/// Notes whether the reader channel in slot `index` has a ring.
pub fn set_ringed(index: usize, ringed: bool) {
    if let Some(slot) = SLOTS.get(index) {
        slot.ringed.store(ringed, Release);
        if ringed {
            slot.quiet.store(false, Release);
        }
    }
}

/// Marks the reader channel in slot `index` quiet (no writer with the
/// library asked for a ring long after it opted in, or an event loop's
/// wait answers its REQUESTs) or not. A ring clears it.
pub fn set_quiet(index: usize, quiet: bool) {
    if let Some(slot) = SLOTS.get(index) {
        slot.quiet.store(quiet, Release);
    }
}

/// Marks the reader channel in slot `index` as one that opted in for its
/// small reads that fill their buffers (streak.rs).
pub fn set_small(index: usize) {
    if let Some(slot) = SLOTS.get(index) {
        slot.small.store(true, Release);
    }
}

/// Unmarks the reader channel in slot `index` as one that opted in for its
/// small reads (it let its ring go: see [`Reader::declines`]).
pub fn clear_small(index: usize) {
    if let Some(slot) = SLOTS.get(index) {
        slot.small.store(false, Release);
    }
}

/// True if the reader channel in slot `index` opted in for its small reads.
pub fn is_small(index: usize) -> bool {
    SLOTS.get(index).is_some_and(|slot| slot.small.load(Acquire))
}

/// Whether a small read of the reader channel in slot `index`, which
/// opted in for them and has no ring yet, looks for REQUESTs now (the slow
/// path): at most once a millisecond (`now_ms`), so that a REQUEST is
/// answered within a millisecond of reads, and a reader whose writer has
/// no library pays the look a thousand times a second at most.
pub fn look_due(index: usize, now_ms: u32) -> bool {
    let Some(slot) = SLOTS.get(index) else { return true };
    let last = slot.looked_ms.load(Relaxed);
    last != now_ms && slot.looked_ms.compare_exchange(last, now_ms, Relaxed, Relaxed).is_ok()
}

/// Whether the small reads of the reader channel in slot `index` come to
/// the library while it has no ring: it opted in for them, and is not
/// quiet (its REQUESTs are answered by its reads, not by a wait's twin, and
/// a writer with the library may still ask).
pub fn small_reads_wanted(index: usize, key: u64) -> bool {
    SLOTS.get(index).is_some_and(|slot| {
        slot.key.load(Acquire) == key
            && slot.role.load(Acquire) == Role::Reader as u8
            && slot.small.load(Acquire)
            && !slot.quiet.load(Acquire)
    })
}

/// A read of a reader channel that needs nothing of the library: slot
/// `index` still serves `key`, has no ring and is quiet. Lock-free; unless
/// an event loop's wait answers its REQUESTs, every [`LOOK_EVERY`]th call
/// says no, so that the slow path looks for them.
pub fn quiet_read(index: usize, key: u64) -> bool {
    let Some(slot) = SLOTS.get(index) else { return false };
    slot.key.load(Acquire) == key
        && slot.role.load(Acquire) == Role::Reader as u8
        && slot.quiet.load(Acquire)
        && !slot.ringed.load(Acquire)
        && (slot.twins.load(Relaxed) > 0 || tick(index))
}

/// Counts a twin of the reader channel in slot `index` made (`true`) or
/// gone.
///
/// When the last twin goes, so does the quiet it gave a Unix socket or
/// pipe reader (twins.rs): no wait answers its REQUESTs any more, and its
/// next read looks for them (and makes it quiet again if the reader's own
/// rule holds, reader.rs).
pub fn note_twin(index: usize, made: bool) {
    if let Some(slot) = SLOTS.get(index) {
        let before =
            slot.twins.fetch_update(Relaxed, Relaxed, |n| Some(if made { n + 1 } else { n.saturating_sub(1) }));
        if !made && before == Ok(1) {
            slot.quiet.store(false, Release);
        }
    }
}

/// True while the reader channel in slot `index`, serving `key`, has a
/// ring (lock-free).
pub fn ringed(index: usize, key: u64) -> bool {
    SLOTS.get(index).is_some_and(|slot| {
        slot.key.load(Acquire) == key && slot.role.load(Acquire) == Role::Reader as u8 && slot.ringed.load(Acquire)
    })
}

/// Frees every channel of endpoint key `key` (both roles): its fds close,
/// its rings are unmapped and, if this process made them, leave the budget.
pub fn release(key: u64) {
    release_where(key, |_| true);
}

/// Frees the channel of endpoint key `key` in `role` only.
pub fn release_role(key: u64, role: Role) {
    release_where(key, |r| r == role as u8);
}

fn release_where(key: u64, role: impl Fn(u8) -> bool) {
    for (_, slot) in SLOTS.iter() {
        if slot.key.load(Acquire) != key || key == 0 || !role(slot.role.load(Acquire)) {
            continue;
        }
        // A thread inside a transfer holds the lock; it will find the fd
        // closed under it and fail over to the kernel path. Spin briefly.
        let start = Instant::now();
        let mut guard = loop {
            if let Some(g) = slot.state.try_lock() {
                break g;
            }
            if start.elapsed() > Duration::from_millis(100) {
                return;
            }
            ipc_offload_sys::sched_yield();
        };
        if let Channel::Writer(w) = &*guard
            && w.behind.as_ref().is_some_and(super::behind_offer::Behind::handed_off)
        {
            // Its last fd closed with bytes the kernel had no room for: the
            // courier sends them, and frees the channel then.
            continue;
        }
        free(slot, &mut guard);
    }
}

/// Frees the channel in slot `index`, which the caller holds locked as
/// `guard` (the decision to free it and the freeing are one step: no other
/// thread answers its side channel in between).
pub fn release_locked(index: usize, mut guard: Locked) {
    if let Some(slot) = SLOTS.get(index) {
        free(slot, &mut guard);
    }
}

/// Empties the channel of `slot` (locked by the caller) and frees the slot.
fn free(slot: &Slot, guard: &mut Locked) {
    drop_channel(guard);
    slot.behind.store(false, Release);
    slot.ringed.store(false, Release);
    slot.quiet.store(false, Release);
    slot.small.store(false, Release);
    if slot.role.swap(0, Release) == Role::Reader as u8 {
        READERS.fetch_sub(1, Relaxed);
    }
    slot.key.store(0, Release);
}

/// Notes whether the writer channel of slot `index` holds a write-behind
/// offer.
pub fn set_behind(index: usize, on: bool) {
    if let Some(slot) = SLOTS.get(index) {
        slot.behind.store(on, Release);
    }
}

/// What [`each_writer`] does with a channel after the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Leave it.
    Yes,
    /// Free it (a handed-off write-behind channel whose bytes all went).
    Free,
}

/// Calls `f` with every writer channel no other thread holds, locked (it
/// never waits for one; `busy` is set when it passed over one that holds
/// a write-behind offer): the
/// write-behind courier's round, and the ends of write-behind offers at
/// fork and exit.
pub fn each_writer(mut f: impl FnMut(&mut Writer) -> Keep, busy: &mut bool) {
    for (_, slot) in SLOTS.iter() {
        if slot.key.load(Acquire) == 0 || slot.role.load(Acquire) != Role::Writer as u8 {
            continue;
        }
        let Some(mut guard) = slot.state.try_lock() else {
            *busy |= slot.behind.load(Acquire);
            continue;
        };
        let keep = match &mut *guard {
            Channel::Writer(w) => f(w),
            _ => Keep::Yes,
        };
        if keep == Keep::Free {
            free(slot, &mut guard);
        }
    }
}

/// Empties a channel, returning its ring bytes to the budget.
fn drop_channel(channel: &mut Channel) {
    if let Channel::Reader(Reader { ring: Some((ring, _)), own, .. }) = channel {
        unreserve_ring(own.family, ring.geometry().ring_bytes());
    }
    *channel = Channel::Empty;
}

/// Drops the ring of the reader channel in slot `index` (its bytes go back
/// to the budget); its writers see the lifeline hang up, let the ring go,
/// and ask again with a REQUEST when they next write.
pub fn drop_ring(reader: &mut Reader, index: usize) {
    if let Some((ring, _)) = reader.ring.take() {
        unreserve_ring(reader.own.family, ring.geometry().ring_bytes());
    }
    reader.lifeline = None;
    reader.ring_id = 0;
    set_ringed(index, false);
}

/// Makes room for `bytes` more of `family`'s rings within `limit` by
/// taking the rings of readers idle for [`IDLE_RECLAIM`] (no read through
/// the library, no open offer), at most once per [`RECLAIM_EVERY`]; true
/// once the bytes are reserved. Readers another thread holds are passed
/// over (never waits).
pub fn reclaim_idle(family: Family, bytes: u64, limit: u64) -> bool {
    if !reclaim_due(family) {
        return false;
    }
    for (index, slot) in SLOTS.iter() {
        if slot.role.load(Acquire) != Role::Reader as u8 || !slot.ringed.load(Acquire) {
            continue;
        }
        let Some(mut guard) = slot.state.try_lock() else { continue };
        let Channel::Reader(reader) = &mut *guard else { continue };
        let idle = reader.own.family == family
            && reader.active.elapsed() >= IDLE_RECLAIM
            && reader.ring.as_ref().is_some_and(|(ring, _)| ring.holder().is_none());
        if !idle {
            continue;
        }
        drop_ring(reader, index);
        RECLAIMED[family as usize].fetch_add(1, Relaxed);
        drop(guard);
        if reserve_ring(family, bytes, limit) {
            return true;
        }
    }
    false
}

/// Takes `bytes` from `family`'s ring budget `limit`; false if it does not
/// fit.
pub fn reserve_ring(family: Family, bytes: u64, limit: u64) -> bool {
    let used_now = budget(family);
    let mut used = used_now.load(Relaxed);
    loop {
        if used.saturating_add(bytes) > limit {
            return false;
        }
        match used_now.compare_exchange_weak(used, used + bytes, AcqRel, Relaxed) {
            Ok(_) => {
                RINGS_HELD[family as usize].fetch_add(1, Relaxed);
                PEAK_BYTES[family as usize].fetch_max(used + bytes, Relaxed);
                return true;
            }
            Err(now) => used = now,
        }
    }
}

/// Returns `bytes` to `family`'s budget (a ring that could not be made,
/// or was dropped).
pub fn unreserve_ring(family: Family, bytes: u64) {
    budget(family).fetch_sub(bytes, Relaxed);
    let _ = RINGS_HELD[family as usize].fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
}

/// In a fork child: forget every channel. The parent keeps them; the child's
/// copies of their fds are closed and its mappings unmapped (system calls
/// only: async-signal-safe).
///
/// # Safety
/// Only from the fork child handler, while the child has one thread.
pub unsafe fn after_fork() {
    for (_, slot) in SLOTS.iter() {
        if slot.key.load(Relaxed) == 0 {
            continue;
        }
        // SAFETY: forwarded contract.
        unsafe { slot.state.reset_after_fork(|c| *c = Channel::Empty) };
        slot.ringed.store(false, Relaxed);
        slot.quiet.store(false, Relaxed);
        slot.small.store(false, Relaxed);
        slot.behind.store(false, Relaxed);
        slot.role.store(0, Relaxed);
        slot.key.store(0, Relaxed);
    }
    for figure in [&RING_BYTES, &RINGS_HELD, &PEAK_BYTES, &RINGS_MADE, &RECLAIMED, &SERVED, &LAST_RECLAIM] {
        for family in figure {
            family.store(0, Relaxed);
        }
    }
    READERS.store(0, Relaxed);
}

/// True while the process behind `pidfd` (if known) runs, or, for a
/// lifeline, while its other end is held.
pub fn alive(pidfd: Option<&OwnedFd>) -> bool {
    pidfd.is_none_or(|fd| net::alive(fd.raw()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_create_find_release() {
        let target = Endpoint::socket(0x7777_0001);
        {
            let mut g = lock(target, Role::Writer).unwrap();
            assert!(matches!(*g, Channel::Empty));
            assert_eq!(lock(target, Role::Writer).unwrap_err(), Unavailable::Busy);
            *g = Channel::Writer(Writer::new(target, Duration::from_millis(1), 0));
        }
        assert!(matches!(*lock(target, Role::Writer).unwrap(), Channel::Writer(_)));
        // Another role is another channel.
        assert!(matches!(*lock(target, Role::Reader).unwrap(), Channel::Empty));
        release(target.key());
        assert!(matches!(*lock(target, Role::Writer).unwrap(), Channel::Empty));
        release(target.key());
    }

    #[test]
    fn a_key_shared_by_two_fifos_is_busy_for_the_second() {
        let fifo = Endpoint { family: Family::Pipe, dev: 0x803, ino: 0x1234_0000_0042 };
        // Another FIFO whose identity folds to the same key (device bit 23
        // lands on the tag bit, which the key masks off).
        let other = Endpoint { dev: fifo.dev ^ (1 << 23), ..fifo };
        assert_eq!(fifo.key(), other.key());
        *lock(fifo, Role::Writer).unwrap() = Channel::Writer(Writer::new(fifo, Duration::from_millis(1), 0));
        assert_eq!(lock(other, Role::Writer).unwrap_err(), Unavailable::Busy);
        assert!(lock(fifo, Role::Writer).is_ok());
        release(fifo.key());
    }

    #[test]
    fn ring_budgets_are_per_family() {
        assert!(reserve_ring(Family::Pipe, 10, 10));
        assert!(!reserve_ring(Family::Pipe, 1, 10));
        assert!(reserve_ring(Family::Unix, 10, 10));
        assert!(!reserve_ring(Family::Unix, u64::MAX, u64::MAX - 1));
        unreserve_ring(Family::Pipe, 10);
        unreserve_ring(Family::Unix, 10);
    }
}
