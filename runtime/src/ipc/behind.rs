//! Write-behind offers (`[unix]`/`[tcp] write_behind`; docs/ipc-protocol.md,
//! "Write-behind (opt-in)"): a nonblocking writer's large write returns
//! once its bytes are placed in the reader's ring, the offer left open for
//! the reader to take while the writer's program moves on, as a socket's
//! write returns once the kernel holds the bytes.
//!
//! Such an offer is marked [`ring::RING_FIRST`] (on a Unix socket its
//! writer had no byte unread in the kernel when it opened it; over TCP the
//! offer carries where it starts in the stream), so a reader that takes
//! part takes it before any kernel byte written after it, whoever wrote
//! that byte and however.
//! What this module adds is the other half: an offer the reader does not
//! take is *settled* (waited for, then withdrawn and its rest sent through
//! the kernel from the ring) before the writer's next byte goes anywhere
//! else, so that a reader that stopped reading through the library gets
//! every byte, in order, from the kernel:
//!
//! - the next write on the fd, of any size (the write hooks send every
//!   write of an fd with an offer behind to [`before_kernel_write`]);
//! - `shutdown` for writing, and the close of its fd (dup2 and dup3 over it,
//!   close_range): when the kernel has no room for the rest then, the
//!   library keeps a duplicate of the fd and the courier sends the rest,
//!   then closes it (the peer sees EOF after the last byte, as after a
//!   kernel close with data queued);
//! - fork, exit, and a write that passes fds ([`settle_all`]);
//! - and the courier thread, for an offer left untaken for [`COURIER_AFTER`]
//!   while the writer's program does something else.

use core::ffi::c_void;
use core::sync::atomic::Ordering::Relaxed;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64};
use std::time::{Duration, Instant};

use ipc_offload_ring as ring;
use ipc_offload_ring::offer::{Offer, Staging};
use ipc_offload_sys::net::{self, PollFd};
use ipc_offload_sys::{Errno, futex, mem, signal, thread};

use super::behind_offer::{BEHIND, Behind};
use super::channel::{self, Channel, Keep, Role, Writer};
use super::ctx::{PATIENCE_BLOCKING, PATIENCE_NONBLOCKING};
use super::endpoint::Family;
use super::hint::Dir;
use super::table::FDS;

/// How long the courier lets an offer lie untaken (no byte taken since the
/// write returned, or since its last look) before it settles it.
pub const COURIER_AFTER: Duration = Duration::from_millis(20);
/// How often the courier looks while offers are behind.
const COURIER_TICK: Duration = Duration::from_millis(5);
/// Longest the exit of a process, or a `shutdown` for writing, waits for
/// the kernel to take the rest of its offers (a reader that reads neither
/// the ring nor the socket).
pub const EXIT_WAIT: Duration = Duration::from_secs(2);
/// Longest a fork waits for the same.
const FORK_WAIT: Duration = Duration::from_millis(100);
/// Longest a write that passes fds (`SCM_RIGHTS`) waits for the same.
pub const PASS_WAIT: Duration = Duration::from_millis(100);
/// How long a nonblocking call waits for a channel another thread holds
/// before it asks whether the socket is full (then `EAGAIN`).
const BUSY_NONBLOCKING: Duration = Duration::from_millis(20);
/// Longest a close waits for a channel another thread holds.
const CLOSE_WAIT: Duration = Duration::from_millis(100);
/// The courier's stack: it settles offers (no copies, a few system calls).
const COURIER_STACK: usize = 64 << 10;

/// How a settle may wait for the kernel's room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// Not at all: a nonblocking call (its write returns `EAGAIN` while
    /// the kernel has no room, as the kernel's would), or the courier.
    NoWait,
    /// Until this instant (fork, exit, shutdown).
    Until(Instant),
    /// As long as it takes: a blocking call waits as the kernel's would
    /// (a signal whose handler does not restart calls ends the wait).
    Block,
}

/// Why a settle left bytes of the offer to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stuck {
    /// The kernel had no room for all of them (or the channel was held by
    /// another thread for longer than a nonblocking call waits).
    Full,
    /// A signal whose handler does not restart calls ended a blocking wait.
    Interrupted,
}

impl Stuck {
    /// The errno the call returns.
    pub fn errno(self) -> Errno {
        match self {
            Stuck::Full => Errno::AGAIN,
            Stuck::Interrupted => Errno::INTR,
        }
    }
}

/// Offers left open, and bytes of them withdrawn to go through the kernel,
/// since start (or the fork), per family (Unix sockets, TCP): the stats'
/// `write_behind`.
static OFFERS: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
static GIVEN_BACK: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
/// Of the offers, those a write grew instead of opening ([`extended`]).
static GROWN: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

/// The counters' index for a writer's family.
fn family_index(family: Family) -> usize {
    usize::from(family == Family::Tcp)
}
/// Set while a thread settles every offer (fork, exit): the courier skips
/// its rounds meanwhile, so that no channel is held when that thread comes.
static SETTLING_ALL: AtomicBool = AtomicBool::new(false);

/// The stats' `write_behind` of `family`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    /// Writes that left their bytes in a ring for the reader.
    pub offers: u64,
    /// Of those, the writes that added them to the offer already open.
    pub grown: u64,
    /// Bytes withdrawn and sent through the kernel instead.
    pub given_back: u64,
}

/// The stats' `write_behind` of `family`.
pub fn figures(family: Family) -> Figures {
    let i = family_index(family);
    Figures { offers: OFFERS[i].load(Relaxed), grown: GROWN[i].load(Relaxed), given_back: GIVEN_BACK[i].load(Relaxed) }
}

/// In the fork child (one thread), after its channels were reset: the
/// parent's offers stay the parent's, and so does its courier.
pub fn after_fork() {
    BEHIND.store(0, Relaxed);
    for counter in OFFERS.iter().chain(&GIVEN_BACK).chain(&GROWN) {
        counter.store(0, Relaxed);
    }
    SETTLING_ALL.store(false, Relaxed);
}

/// Set once this process left an offer behind: from then on the write
/// hooks look at each fd's write route (before, a write below the
/// threshold is one compare and a jump).
pub static USED: AtomicBool = AtomicBool::new(false);
/// The pid of the process whose courier runs (0: none yet; a fork child,
/// whose courier stayed with its parent, starts its own).
static COURIER: AtomicI32 = AtomicI32::new(0);

/// Records that the write on `fd`, through writer channel slot `index`,
/// left `offer` open.
pub fn leave(writer: &mut Writer, offer: Offer, fd: i32, index: usize, pid: i32) {
    let first = BEHIND.fetch_add(1, Relaxed) == 0;
    writer.behind = Some(Behind::new(offer, fd, index));
    channel::set_behind(index, true);
    super::route::set_writer_behind(fd, index, true);
    if !USED.load(Relaxed) {
        USED.store(true, Relaxed);
    }
    OFFERS[family_index(writer.target.family)].fetch_add(1, Relaxed);
    wake_courier(pid, first);
}

/// Records that a write of a writer of `family` added its bytes to the
/// offer behind (`Ring::extend`). Its `since` stays: the courier settles an offer
/// whose reader took nothing for [`COURIER_AFTER`], however often it grew
/// meanwhile (a reader that stopped taking part must not wait for the
/// writer to go quiet).
pub fn extended(family: Family) {
    OFFERS[family_index(family)].fetch_add(1, Relaxed);
    GROWN[family_index(family)].fetch_add(1, Relaxed);
}

/// Ends the writer's offer behind, if it has one: waits up to `patience`
/// (from now, and from each take) for the reader to take the rest, then
/// withdraws what it did not take and sends it through the kernel, from
/// the ring, as `push` allows. `Err`: bytes are left to send (the kernel
/// had no room, or a signal ended the wait); the next settle sends them.
pub fn settle(writer: &mut Writer, patience: Duration, push: Push) -> Result<(), Stuck> {
    let Some(b) = writer.behind.as_mut() else { return Ok(()) };
    let Some((ring, _)) = &writer.ring else {
        // Unreachable: a writer lets its ring go only after a settle.
        finish(writer);
        return Ok(());
    };
    if b.given_back.is_none() {
        let reader = writer.reader.as_ref();
        let mut alive = || channel::alive(reader);
        let mut how = Staging { patience, drain: ring::NAP, alive: &mut alive, placed: &mut || {}, behind: false };
        let staged = ring.settle(&b.offer, &mut how);
        if staged.sent >= b.offer.total && staged.abort.is_none() {
            ring.close(&b.offer);
            finish(writer);
            return Ok(());
        }
        // Withdrawn (or the reader is gone, or wrote garbage: then only
        // what it copied out was read). The rest goes through the kernel.
        let sent = staged.sent.min(b.offer.total);
        b.given_back = Some(sent);
        GIVEN_BACK[family_index(writer.target.family)].fetch_add(b.offer.total - sent, Relaxed);
    }
    // Sent on a duplicate checked to be the socket: a close of the
    // program's fd meanwhile (another thread, while this one waits for
    // room) cannot send the bytes to the fd number's next file.
    let fd = b.fd();
    let dup = mem::fstat(fd)
        .ok()
        .filter(|st| st.is_socket() && st.ino == writer.target.ino)
        .and_then(|_| net::dup_cloexec(fd).ok());
    let mut from = b.given_back.unwrap_or(b.offer.total);
    if let Some(dup) = &dup {
        while from < b.offer.total {
            let (at, n) = ring.backlog(&b.offer, from);
            // SAFETY: `backlog` names placed bytes inside the ring's mapping.
            match unsafe { net::send(dup.raw(), at, n as usize, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) } {
                Ok(k) => from += k as u64,
                Err(Errno(libc::EINTR)) => {}
                Err(Errno(libc::EAGAIN)) => {
                    let now = Instant::now();
                    let wait = match push {
                        Push::NoWait => None,
                        Push::Until(deadline) => deadline.checked_duration_since(now).filter(|d| !d.is_zero()),
                        Push::Block => Some(ring::NAP),
                    };
                    let Some(wait) = wait else {
                        b.given_back = Some(from);
                        return Err(Stuck::Full);
                    };
                    let mut fds = [PollFd { fd: dup.raw(), events: libc::POLLOUT, revents: 0 }];
                    if net::poll(&mut fds, Some(wait.min(ring::NAP))) == Err(Errno::INTR)
                        && push == Push::Block
                        && !signal::every_handler_restarts()
                    {
                        b.given_back = Some(from);
                        return Err(Stuck::Interrupted);
                    }
                }
                // The socket cannot send any more (the peer is gone, or
                // it was shut down behind the library's back): what is
                // left is lost as it would be in the kernel's queue; the
                // program's next call gets the error.
                Err(_) => break,
            }
        }
    }
    ring.close(&b.offer);
    finish(writer);
    Ok(())
}

/// [`settle`] for a round over the channels ([`channel::each_writer`]): a
/// handed-off offer's channel, its program's fds all closed, is freed once
/// its bytes went.
fn settle_kept(writer: &mut Writer, patience: Duration, push: Push) -> Keep {
    let handed_off = writer.behind.as_ref().is_some_and(Behind::handed_off);
    if settle(writer, patience, push).is_ok() && handed_off { Keep::Free } else { Keep::Yes }
}

fn finish(writer: &mut Writer) {
    let Some(b) = writer.behind.take() else { return };
    channel::set_behind(b.slot, false);
    if b.owned.is_none()
        && let Some(index) = super::route::slot(b.fd, Dir::Write)
    {
        super::route::set_writer_behind(b.fd, index, false);
    }
}

/// Before a write of any size on `fd`, whose write route says an offer is
/// behind: settles it, as the call's mode allows. `Err`: the call fails
/// with [`Stuck::errno`] (`EAGAIN`: the kernel has no room, true).
pub fn before_kernel_write(fd: i32, blocking: bool) -> Result<(), Stuck> {
    let Some(info) = FDS.get(fd) else { return Ok(()) };
    let Some(index) = super::route::slot(fd, Dir::Write) else { return Ok(()) };
    let wait = if blocking { Wait::Forever } else { Wait::WhileWritable(fd) };
    let Some(mut guard) = lock_waiting(index, info.key, wait)? else { return Ok(()) };
    let Channel::Writer(writer) = &mut *guard else { return Ok(()) };
    let (patience, push) = mode(blocking);
    settle(writer, patience, push)
}

/// How a call of this mode settles: a nonblocking one waits a moment for
/// the reader and not at all for the kernel; a blocking one as long as
/// the kernel would make it wait.
pub fn mode(blocking: bool) -> (Duration, Push) {
    if blocking { (PATIENCE_BLOCKING, Push::Block) } else { (PATIENCE_NONBLOCKING, Push::NoWait) }
}

/// Before `shutdown(fd, SHUT_WR or SHUT_RDWR)`: the offer's rest must be
/// in the kernel before the end of the stream is (at most [`EXIT_WAIT`]
/// for room: past that, what is left is lost with the shutdown).
pub fn shutting_down(fd: i32) {
    let Some(info) = FDS.get(fd) else { return };
    let Some(index) = super::route::slot(fd, Dir::Write) else { return };
    let Ok(Some(mut guard)) = lock_waiting(index, info.key, Wait::For(EXIT_WAIT)) else { return };
    if let Channel::Writer(writer) = &mut *guard {
        let _ = settle(writer, PATIENCE_BLOCKING, Push::Until(Instant::now() + EXIT_WAIT));
    }
}

/// Before the program closes `fd`: settles its offer behind, if any. When
/// the kernel has no room for the rest, the library keeps a duplicate of
/// the socket and the courier sends it (the peer's EOF comes after it).
pub fn closing(fd: i32, key: u64) {
    let Some(index) = super::route::slot(fd, Dir::Write) else { return };
    // At most 100 ms, as a close waits for a transfer in another thread
    // (that thread, if it is settling this offer, sends on its own
    // duplicate of the socket).
    let Ok(Some(mut guard)) = lock_waiting(index, key, Wait::For(CLOSE_WAIT)) else { return };
    let Channel::Writer(writer) = &mut *guard else { return };
    if writer.behind.as_ref().is_none_or(|b| b.owned.is_some() || b.fd != fd) {
        return;
    }
    if settle(writer, PATIENCE_BLOCKING, Push::NoWait).is_ok() {
        return;
    }
    if let (Some(b), Ok(dup)) = (writer.behind.as_mut(), net::dup_cloexec(fd)) {
        b.owned = Some(dup);
        super::route::set_writer_behind(fd, index, false);
    }
}

/// Settles every offer behind (fork, exit, an fd passed to another
/// process), waiting up to `wait` in all: for channels other threads hold,
/// for the readers, and for the kernel's room.
pub fn settle_all(wait: Duration) {
    if BEHIND.load(Relaxed) == 0 {
        return;
    }
    let deadline = Instant::now() + wait;
    SETTLING_ALL.store(true, Relaxed);
    loop {
        let mut busy = false;
        channel::each_writer(
            |w| {
                if w.behind.is_none() {
                    return Keep::Yes;
                }
                let patience = PATIENCE_BLOCKING.min(deadline.saturating_duration_since(Instant::now()));
                settle_kept(w, patience, Push::Until(deadline))
            },
            &mut busy,
        );
        if !busy || Instant::now() >= deadline {
            break;
        }
        ipc_offload_sys::sched_yield();
    }
    SETTLING_ALL.store(false, Relaxed);
}

/// Before fork: the child may write to the socket at once.
pub fn before_fork() {
    settle_all(FORK_WAIT);
}

/// At exit: the ring dies with the process's mapping only if the reader
/// lets it go; the kernel keeps what it took.
pub fn at_exit() {
    settle_all(EXIT_WAIT);
}

/// How long [`lock_waiting`] waits for a channel another thread holds.
#[derive(Clone, Copy, Debug)]
enum Wait {
    /// A blocking call: as long as it takes.
    Forever,
    /// A nonblocking call on this fd: while the socket is writable (past
    /// [`BUSY_NONBLOCKING`], a socket the kernel reports full makes the
    /// call return `EAGAIN`, which the kernel's would too; one it reports
    /// writable never does, so that `EPOLLOUT` stays true).
    WhileWritable(i32),
    /// At most this long (close, shutdown), then `Err(Full)`.
    For(Duration),
}

/// Locks writer channel `index` of `key`, waiting while another thread
/// holds it (a write in progress, the courier, a fork's or exit's settle)
/// as `wait` says. `Ok(None)`: the slot no longer serves the socket
/// (nothing is behind for it).
fn lock_waiting(index: usize, key: u64, wait: Wait) -> Result<Option<channel::Locked>, Stuck> {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        if let Some(g) = channel::lock_index(index, key, Role::Writer) {
            return Ok(Some(g));
        }
        if !channel::serves(index, key, Role::Writer) {
            return Ok(None);
        }
        let waited = start.elapsed();
        match wait {
            Wait::Forever => {}
            Wait::WhileWritable(fd) if waited > BUSY_NONBLOCKING => {
                let mut fds = [PollFd { fd, events: libc::POLLOUT, revents: 0 }];
                if net::poll(&mut fds, Some(Duration::ZERO)).is_ok_and(|n| n == 0) {
                    return Err(Stuck::Full);
                }
            }
            Wait::WhileWritable(_) => {}
            Wait::For(limit) if waited > limit => return Err(Stuck::Full),
            Wait::For(_) => {}
        }
        spins += 1;
        if spins < 64 {
            ipc_offload_sys::sched_yield();
        } else {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

/// `first`: this offer made the count leave 0 (the courier may sleep).
fn wake_courier(pid: i32, first: bool) {
    let running = COURIER.load(Relaxed);
    if running == pid {
        if first {
            futex::wake(&BEHIND, 1);
        }
        return;
    }
    // None yet in this process (a fork child's courier stayed with its
    // parent). Started with every asynchronous signal blocked: the
    // program's handlers run on its own threads. Without it, offers are
    // still settled by the writer's next call, close, fork and exit.
    if COURIER.compare_exchange(running, pid, Relaxed, Relaxed).is_ok()
        && thread::spawn_detached(courier, 0, COURIER_STACK, c"ipc-offload-cour").is_err()
    {
        COURIER.store(running, Relaxed);
    }
}

/// The courier: while offers are behind, every [`COURIER_TICK`] it
/// settles those the reader left untaken for [`COURIER_AFTER`], and sends
/// on the rest of those whose kernel was full; asleep on [`BEHIND`] while
/// there are none.
extern "C" fn courier(_: *mut c_void) -> *mut c_void {
    let _inside = crate::guard::Inside::enter();
    loop {
        let behind = BEHIND.load(Relaxed);
        if behind == 0 {
            // Woken by the offer that makes the count leave 0 (a count
            // that left 0 before this wait began ends it at once).
            futex::wait(&BEHIND, 0, None);
            continue;
        }
        std::thread::sleep(COURIER_TICK);
        if crate::process::owner_pid() != COURIER.load(Relaxed) || SETTLING_ALL.load(Relaxed) {
            continue; // a fork child's copy of this thread does not exist; fork or exit settles
        }
        let _ = std::panic::catch_unwind(round);
    }
}

/// One round of the courier.
fn round() {
    let mut busy = false;
    channel::each_writer(
        |w| {
            let Some(b) = w.behind.as_mut() else { return Keep::Yes };
            let taken = w.ring.as_ref().and_then(|(r, _)| r.open_offer()).map_or(b.taken, |o| o.taken);
            if taken != b.taken {
                (b.taken, b.since) = (taken, Instant::now());
            }
            let handed_off = b.handed_off();
            if b.given_back.is_none() && !handed_off && b.since.elapsed() < COURIER_AFTER {
                return Keep::Yes;
            }
            if b.given_back.is_some() {
                // Bytes the kernel had no room for: one poll, not a send (an
                // fstat, a dup, a send and a close), while it still has none.
                let mut fds = [PollFd { fd: b.fd(), events: libc::POLLOUT, revents: 0 }];
                if net::poll(&mut fds, Some(Duration::ZERO)).is_ok_and(|n| n == 0) {
                    return Keep::Yes;
                }
            }
            settle_kept(w, Duration::ZERO, Push::NoWait)
        },
        &mut busy,
    );
}
