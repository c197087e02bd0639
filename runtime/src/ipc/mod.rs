//! The shared-memory fast path for Unix stream sockets, pipes and FIFOs
//! (docs/ipc-protocol.md): the slow paths of the read/write hooks, the
//! close hooks' bookkeeping, and the fork child's reset. This file holds
//! those entry points only; they sit above the modules below, none of
//! which calls back into it.
//!
//! - [`call`]: the application's call, and the kernel path.
//! - [`ctx`]: what a transfer needs from the settings ([`ctx::Ctx`]) and
//!   what one call did ([`ctx::Tally`]).
//! - [`ahead`]: faulting in a large read's fresh buffer ahead of the copy.
//! - [`endpoint`]: socket or pipe, its identity and its kernel questions.
//! - [`reader`], [`writer`]: the two sides of a rendezvous.
//! - [`side`]: side-channel datagrams; [`channel`]: per-direction state;
//!   [`table`]: the per-fd table and try-locks; [`hint`]: per-fd decisions
//!   for the kernel path, kept a short while; [`route`]: the per-fd word
//!   the read hooks load first; [`quick`]: the calls answered from those
//!   tables; [`watch`]: what an event loop's wait needs from a channel;
//!   [`paged`]: the grow-only paged array those tables are made of;
//!   [`registered`]: the epoll registrations the hooks saw, per fd;
//!   [`streak`]: what small reads that fill their buffers carried, per fd.
//! - [`epoll_sets`]: the epoll sets the library knows, and their nests;
//!   [`twins`]: reader channels' side channels registered beside the
//!   program's fds in those sets; [`fdinfo`]: a set's registrations as the
//!   kernel lists them. The read and close paths keep them in step; the
//!   wait hooks (`crate::events`) read them.

mod ahead;
pub mod behind;
mod behind_offer;
pub mod call;
pub mod channel;
pub mod ctx;
pub mod endpoint;
pub mod epoll_sets;
pub mod fdinfo;
pub mod hint;
pub mod paged;
mod quick;
pub mod reader;
pub mod registered;
pub mod route;
pub mod side;
pub mod streak;
pub mod table;
mod tcp_path;
pub mod twins;
pub mod watch;
mod writer;

use core::sync::atomic::Ordering::Relaxed;
use std::panic::{AssertUnwindSafe, catch_unwind};

use ipc_offload_engine::stats;
use ipc_offload_engine::{EngineId, Fallback};
use ipc_offload_sys::{self as sys, mem};

use crate::guard::Inside;
use crate::{process, state};
use call::{ReadCall, WriteCall};
use ctx::{Ctx, Tally, threshold};
use endpoint::{Endpoint, Family};
use hint::Dir;
use table::{FDS, FdInfo, FdKind};

/// What `fd` is, learned or re-learned (fstat every time: the number may
/// have been closed and reused behind the library's back, by stdio say).
/// `None` for anything but a Unix stream socket, a TCP socket the fast path
/// serves ([`tcp_path::admit`]), a pipe or a FIFO.
fn classify(fd: i32) -> Option<(FdInfo, Endpoint)> {
    let st = mem::fstat(fd).ok()?;
    let known = FDS.get(fd);
    let quick = if st.is_fifo() { Some(Endpoint { family: Family::Pipe, dev: st.dev, ino: st.ino }) } else { None };
    if let Some(info) = known {
        // A pipe is known by its stat alone; a socket's family needs a
        // getsockopt, done once.
        let socket = Endpoint::socket_with_key(st.ino as u32, info.key);
        let same = match quick {
            Some(pipe) => info.key == pipe.key(),
            None => st.is_socket() && info.key == socket.key(),
        };
        if same {
            let endpoint = quick.unwrap_or(socket);
            return (info.kind != FdKind::Other).then_some((info, endpoint));
        }
        // The number now names another file: the old one's state goes.
        forget(fd, info);
    }
    let endpoint = Endpoint::of(fd, &st);
    let info = match endpoint {
        Some(e) if e.family == Family::Tcp => match tcp_path::admit(fd) {
            // Not connected yet (a nonblocking connect under way): asked
            // again at its next large call.
            tcp_path::Admission::NotYet => return None,
            tcp_path::Admission::Served => FdInfo { key: e.key(), kind: FdKind::Fast },
            tcp_path::Admission::NotServed => FdInfo { key: e.key(), kind: FdKind::Other },
        },
        Some(e) => FdInfo { key: e.key(), kind: FdKind::Fast },
        None => FdInfo { key: Endpoint::socket(st.ino as u32).key(), kind: FdKind::Other },
    };
    // An fd the table cannot track (no memory for its page) could not have
    // its state released at close: the kernel path, uncounted.
    if !FDS.set(fd, info) {
        return None;
    }
    endpoint.filter(|_| info.kind != FdKind::Other).map(|e| (info, e))
}

/// Runs a slow path: owner, re-entry and panic guards, errno kept on
/// success, stats recorded. `len` is the bytes the call names; `kernel` is
/// the whole call as the application made it, for every case the fast path
/// does not take. `small`: a read below the threshold on a routed fd (an
/// offer may be open for it).
fn guarded(
    fd: i32,
    len: u64,
    dir: Dir,
    small: bool,
    flags: i32,
    kernel: impl Fn() -> isize,
    fast: impl FnOnce(FdInfo, Endpoint, &Ctx, &mut Tally) -> isize,
) -> isize {
    if let Some(r) = hinted(fd, len, dir, &kernel) {
        return r;
    }
    let quick = match dir {
        Dir::Read => quick::read(fd, len, small, flags, &kernel),
        Dir::Write => quick::write(fd, len, &kernel),
    };
    if let Some(r) = quick {
        return r;
    }
    if !process::is_owner() {
        return kernel();
    }
    let Some(_inside) = Inside::enter() else { return kernel() };
    let Some((info, endpoint)) = classify(fd) else { return kernel() };
    // The hook's threshold is the lowest of the IPC classes': this class may
    // be off, or want larger calls.
    let Some(ctx) = Ctx::current(endpoint.class()).filter(|c| small || len >= c.min_bytes) else { return kernel() };
    let errno = sys::ErrnoGuard::save();
    let mut tally = Tally::new(ctx.class);
    let r = match catch_unwind(AssertUnwindSafe(|| fast(info, endpoint, &ctx, &mut tally))) {
        Ok(r) => r,
        Err(_) => {
            // A bug. Whatever moved is lost to the caller's count; the
            // kernel path at least leaves the stream consistent.
            tally.reason(Fallback::Panic);
            tally.kernel_result(kernel())
        }
    };
    if !small || tally.fast > 0 {
        tally.record();
    }
    if r >= 0 {
        drop(errno); // restore: a success leaves errno alone
    } else {
        core::mem::forget(errno); // keep the errno of the failure
    }
    r
}

/// A call that a standing hint sends to the kernel path ([`hint`]),
/// counted as the call that set the hint was: no system call of the
/// library's. (In a vfork child, which shares the parent's memory, it
/// counts in the parent's stats.)
fn hinted(fd: i32, len: u64, dir: Dir, kernel: &impl Fn() -> isize) -> Option<isize> {
    let settings = state::get()?;
    let (class, why) = hint::get(fd, dir, hint::now_ms(settings.started))?;
    settings.options[class.index()]?;
    if len < threshold(class, settings.plan.class(class).rule.min_bytes) {
        return None;
    }
    let r = kernel();
    stats::counters(class).record_ipc(0, r.max(0) as u64, EngineId::Cpu, Some(why.fallback()));
    Some(r)
}

/// The slow path of the read hooks: the buffers hold at least the
/// threshold, or the fd is routed ([`route::routed`]: an offer may be open
/// for it).
///
/// # Safety
/// The application's call, valid as for the libc function.
pub unsafe fn read(call: &ReadCall<'_>) -> isize {
    let (fd, len) = (call.fd, call.capacity());
    let small = len < ipc_offload_sys::real::io::REAL_IO.io_min.load(Relaxed) as u64;
    if small && !route::routed(fd) {
        // SAFETY: the caller's call, as it was.
        return unsafe { call.replay() };
    }
    // SAFETY: forwarded contract (both closures use the caller's arguments).
    guarded(
        fd,
        len,
        Dir::Read,
        small,
        call.flags,
        || unsafe { call.replay() },
        |info, at, ctx, tally| unsafe { reader::read(call, info, at, ctx, tally) },
    )
}

/// A read below the threshold filled its buffer of `len` bytes, at least
/// [`streak::FULL_READ_MIN`] (the read hooks' test, after the call
/// returned): counted, and once the fd's count crosses the bar the fd opts
/// in as a reader (docs/ipc-protocol.md, "Readers with small buffers").
/// Never changes errno.
#[cold]
#[inline(never)]
pub fn small_read_filled(fd: i32, len: u64) {
    if FDS.get(fd).is_some_and(|i| i.kind != FdKind::Fast) || route::slot(fd, Dir::Read).is_some() {
        // Another kind of file, or a reader already.
        return;
    }
    // (The count's table may map a page.)
    let _errno = sys::ErrnoGuard::save();
    if !streak::add(fd, len) {
        return;
    }
    let Some(_inside) = Inside::enter().filter(|_| process::is_owner()) else {
        // A vfork child (whose table is its parent's), or a call from
        // inside the library: the parent's reads count anew.
        streak::clear(fd);
        return;
    };
    let done = catch_unwind(|| {
        let Some((info, endpoint)) = classify(fd) else { return true };
        Ctx::current(endpoint.class()).is_none_or(|ctx| reader::opt_in_small(fd, len, info, endpoint, &ctx))
    });
    if !matches!(done, Ok(true)) {
        // Its channel was busy: counted anew.
        streak::clear(fd);
    }
}

/// The slow path of the write hooks (the buffers hold at least the
/// threshold).
///
/// # Safety
/// The application's call, valid as for the libc function.
pub unsafe fn write(call: &WriteCall<'_>) -> isize {
    let (fd, len) = (call.fd, call.length());
    if behind::USED.load(Relaxed) && process::is_owner() {
        match before_write(call) {
            Ok(None) => {}
            Ok(Some(added)) => return added as isize,
            Err(stuck) => {
                // SAFETY: this thread's errno slot.
                unsafe { *libc::__errno_location() = stuck.errno().0 };
                return -1;
            }
        }
    }
    if len < ipc_offload_sys::real::io::REAL_IO.io_min.load(Relaxed) as u64 {
        // SAFETY: the caller's call, as it was.
        return unsafe { call.replay() };
    }
    // SAFETY: forwarded contract (both closures use the caller's arguments).
    guarded(
        fd,
        len,
        Dir::Write,
        false,
        call.flags,
        || unsafe { call.replay() },
        |_, at, ctx, tally| unsafe { writer::write(call, at, ctx, tally) },
    )
}

/// Write-behind (`behind`): before a write of any size on an fd whose last
/// write left an offer open, the offer ends, unless a large nonblocking
/// write grows it (`Ok(Some(bytes))`: the call's result); before a write
/// that passes fds, every offer ends (the socket may go to a process that
/// writes).
fn before_write(call: &WriteCall<'_>) -> Result<Option<u64>, behind::Stuck> {
    let Some(_inside) = Inside::enter() else { return Ok(None) };
    let errno = sys::ErrnoGuard::save();
    let settled = catch_unwind(AssertUnwindSafe(|| {
        if call.has_control() {
            behind::settle_all(behind::PASS_WAIT);
        }
        if !route::write_routed(call.fd) {
            return Ok(None);
        }
        let blocking = call.flags & libc::MSG_DONTWAIT == 0 && sys::net::is_blocking(call.fd).unwrap_or(false);
        if !blocking
            && !call.has_control()
            && let Some(added) = grow_behind(call)
        {
            return Ok(Some(added));
        }
        behind::before_kernel_write(call.fd, blocking).map(|()| None)
    }));
    drop(errno);
    settled.unwrap_or(Ok(None))
}

/// A large nonblocking write on a routed fd adds its bytes to the offer
/// its last write left open, if the ring has room and the class's
/// `write_behind` still holds (`writer::extend_behind` says when): the
/// bytes added, counted in the stats; None leaves the offer to be settled.
fn grow_behind(call: &WriteCall<'_>) -> Option<u64> {
    // Calls the kernel must make (urgent data, zero-copy sends, a named destination, more
    // buffers than a ring copy takes) settle instead.
    // Below every IPC class's threshold: settled without a system call.
    let io_min = ipc_offload_sys::real::io::REAL_IO.io_min.load(Relaxed) as u64;
    if call.flags & (libc::MSG_OOB | libc::MSG_ZEROCOPY) != 0
        || call.has_address()
        || call.iov.len() > call::MAX_IOV
        || call.length() < io_min
    {
        return None;
    }
    let (info, at) = classify(call.fd)?;
    let ctx = Ctx::current(at.class()).filter(|c| c.write_behind && call.length() >= c.min_bytes)?;
    let index = route::slot(call.fd, Dir::Write)?;
    let mut guard = channel::lock_index(index, info.key, channel::Role::Writer)?;
    let channel::Channel::Writer(w) = &mut *guard else { return None };
    let mut tally = Tally::new(ctx.class);
    let added = writer::extend_behind(call, at, w, &ctx, &mut tally);
    (added > 0).then(|| {
        tally.record();
        added
    })
}

/// `shutdown(fd, how)` is about to run: a shutdown for writing ends the
/// fd's write-behind offer first (its bytes come before the end of the
/// stream).
pub fn shutting_down(fd: i32, how: i32) {
    if how == libc::SHUT_RD || !behind::USED.load(Relaxed) || !route::write_routed(fd) || !process::is_owner() {
        return;
    }
    let Some(_inside) = Inside::enter() else { return };
    let _errno = sys::ErrnoGuard::save();
    let _ = catch_unwind(|| behind::shutting_down(fd));
}

/// Before the application closes `fd` (close, dup2 and dup3 over it,
/// close_range): drop what the library knows, and the socket's or pipe's
/// channels when no other fd of the process refers to it.
pub fn closing(fd: i32) {
    if let Some(info) = FDS.get(fd) {
        if route::write_routed(fd)
            && process::is_owner()
            && let Some(_inside) = Inside::enter()
        {
            let _errno = sys::ErrnoGuard::save();
            let _ = catch_unwind(|| behind::closing(fd, info.key));
        }
        forget(fd, info);
    }
    registered::forget(fd);
    streak::clear(fd);
    if epoll_sets::is_epoll(fd) {
        epoll_sets::closed(fd);
    }
}

fn forget(fd: i32, info: FdInfo) {
    let last = info.kind != FdKind::Other && !FDS.other_fd_for(info.key, fd);
    twins::closing(fd, !last, info.key);
    FDS.forget(fd);
    hint::clear(fd);
    route::clear(fd);
    streak::clear(fd);
    if last {
        channel::release(info.key);
    }
}

/// One past the highest fd number [`tracked`] may say yes to
/// (`close_range`'s bound).
pub fn tracked_end() -> usize {
    FDS.end().max(streak::end())
}

/// Whether `fd` needs [`closing`] (the close hooks' cheap test).
pub fn tracked(fd: i32) -> bool {
    FDS.is_tracked(fd) || epoll_sets::is_epoll(fd) || registered::any(fd) || streak::any(fd)
}

/// In the fork child: forget every channel and fd (the parent keeps them),
/// and the parent's twins and sets, which do not hold here.
///
/// # Safety
/// Only from the fork child handler, while the child has one thread.
pub unsafe fn after_fork() {
    // SAFETY: forwarded contract.
    unsafe { channel::after_fork() };
    behind::after_fork();
    FDS.clear();
    route::clear_all();
    hint::after_fork();
    twins::after_fork();
    epoll_sets::after_fork();
    registered::after_fork();
    streak::clear_all();
}
