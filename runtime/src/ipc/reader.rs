//! The reader's side of a rendezvous (docs/ipc-protocol.md, "One
//! rendezvous"): opt in, answer REQUESTs, wait in poll on the socket or pipe
//! and the side channel, take the claimed transfer, or do exactly what the
//! kernel would have done.

use std::time::{Duration, Instant};

use ipc_offload_engine::ipc::ring::{Abort, Cursor, Ring, Seen, Sleep};
use ipc_offload_engine::sys::mem::OwnedFd;
use ipc_offload_engine::sys::net::{self, PollFd};
use ipc_offload_engine::sys::{Errno, pipe, signal};

use super::ahead::Ahead;
use super::call::ReadCall;
use super::channel::{self, Channel, Locked, Reader, Role};
use super::endpoint::{Endpoint, Family};
use super::hint::{self, Dir, Why};
use super::side::{self, Message};
use super::table::{FdInfo, FdKind};
use super::{Ctx, Tally};
use ipc_offload_engine::engine::Fallback;
use ipc_offload_policy::Class;

/// For this long after opting in, a reader without a ring reads at most
/// [`HANDSHAKE_READ`] bytes per call through the kernel, or what is queued
/// when it asks if that is more (the writer's
/// REQUESTs back off for 127 ms before it gives up on a reader).
const HANDSHAKE: Duration = Duration::from_millis(200);
const HANDSHAKE_READ: u64 = 256 << 10;
/// A writer publishes its claim two stores after making it; one that takes
/// longer than this was preempted, or died: check which.
const CLAIM_STALL: Duration = Duration::from_millis(1);

/// A large read on the socket or pipe `at`.
///
/// # Safety
/// The call's buffers valid for writing, as for the libc function.
pub unsafe fn read(call: &ReadCall<'_>, info: FdInfo, at: Endpoint, ctx: &Ctx, tally: &mut Tally) -> isize {
    let unsupported = libc::MSG_PEEK | libc::MSG_OOB | libc::MSG_ERRQUEUE;
    let pipe_misuse = at.family == Family::Pipe && !call.is_plain();
    if call.flags & unsupported != 0 || call.wants_control() || call.iov.len() > super::call::MAX_IOV || pipe_misuse {
        return tally.kernel(Fallback::Unsupported, call);
    }
    let blocking = match at.family {
        Family::Unix => net::is_blocking(call.fd).unwrap_or(false),
        // A write-only end fails with EBADF, as the kernel says.
        Family::Pipe => match pipe::access(call.fd) {
            Ok(access) if access.read => access.blocking,
            _ => return tally.kernel(Fallback::Unsupported, call),
        },
    };
    if call.flags & libc::MSG_DONTWAIT != 0 || !blocking {
        if !blocking {
            // An event loop's fd: its next large reads skip the checks.
            super::hint_kernel(call.fd, Dir::Read, ctx.class, Why::Nonblocking, hint::TTL);
        }
        return tally.kernel(Fallback::Nonblocking, call);
    }
    if info.kind == FdKind::NoFast {
        return tally.kernel(Fallback::OptInFailed, call);
    }
    let mut ch = match channel::lock(at, Role::Reader) {
        Ok(ch) => ch,
        Err(_) => return tally.kernel(Fallback::Busy, call),
    };
    if matches!(*ch, Channel::Empty) {
        match opt_in(at) {
            Some(reader) => *ch = Channel::Reader(reader),
            None => {
                drop(ch);
                channel::release_role(info.key, Role::Reader);
                super::FDS.set(call.fd, FdInfo { key: info.key, kind: FdKind::NoFast });
                return tally.kernel(Fallback::OptInFailed, call);
            }
        }
    }
    let Channel::Reader(reader) = &mut *ch else { return tally.kernel(Fallback::Busy, call) };
    serve_side(reader, ctx);
    if reader.ring.is_none() {
        if reader.since.elapsed() < HANDSHAKE {
            // A writer with the library may be pumping kernel pieces while
            // it waits for an OFFER, which this reader makes only between
            // reads: a kernel read that went on absorbing them would keep
            // the two on the kernel path for the whole message. Never less
            // than what is queued now: a program that reads what FIONREAD
            // said gets all of it, as from the kernel.
            tally.reason(Fallback::NoPeer);
            let queued = net::queued_in(call.fd).map_or(0, |n| n.max(0) as u64);
            // SAFETY: the caller's call, for fewer bytes.
            return tally.kernel_result(unsafe { call.kernel_capped(HANDSHAKE_READ.max(queued)) });
        }
        return tally.kernel(Fallback::NoPeer, call);
    }
    // A FIFO's POLLHUP may be held back (see pipe::at_eof).
    let fifo = at.family == Family::Pipe && pipe::is_named(at.dev);
    // SAFETY: forwarded contract.
    unsafe { rendezvous(call, &mut ch, fifo, ctx, tally) }
}

/// Binds the opt-in name for what is written into `own`: its peer socket,
/// or the pipe itself.
fn opt_in(own: Endpoint) -> Option<Reader> {
    let peer = match own.family {
        Family::Unix => Endpoint::socket(net::peer_inode(own.ino32()).ok()?),
        Family::Pipe => own,
    };
    let side = net::dgram_socket().ok()?;
    net::bind(side.raw(), &side::reader_name(peer)).ok()?;
    let requesters = [None; channel::REQUESTERS];
    Some(Reader { own, peer, side, ring: None, lifeline: None, writer: None, requesters, since: Instant::now() })
}

/// Answers every queued side-channel datagram: REQUESTs get an OFFER of the
/// ring (made on the first one, within the budget); the rest is dropped.
fn serve_side(reader: &mut Reader, ctx: &Ctx) {
    let mut buf = [0u8; side::MAX_LEN];
    while let Ok(d) = net::recv_dgram(reader.side.raw(), &mut buf) {
        let Some(creds) = d.creds else { continue };
        if creds.uid != ctx.euid || d.truncated {
            continue;
        }
        let Some(Message::Request { writer_pid, writer_ino }) = Message::decode(&buf[..d.len]) else { continue };
        if writer_pid != creds.pid || writer_ino != reader.peer.ino32() {
            continue;
        }
        reader.note_requester(writer_pid, d.from);
        if reader.ring.is_none() {
            let (ring, lifeline) = make_ring(reader, ctx).unzip();
            (reader.ring, reader.lifeline) = (ring, lifeline);
        }
        if let (Some((ring, memfd)), Some((_, give))) = (&reader.ring, &reader.lifeline) {
            let (msg, len) = Message::Offer { ring_bytes: ring.geometry().ring_bytes() }.encode();
            let _ = net::send_dgram(reader.side.raw(), &d.from, &msg[..len], &[memfd.raw(), give.raw()]);
        }
    }
}

/// A new ring within the budget, and its lifeline.
fn make_ring(reader: &Reader, ctx: &Ctx) -> Option<((Ring, OwnedFd), (OwnedFd, OwnedFd))> {
    let bytes = ctx.geometry.ring_bytes();
    let family = reader.own.family;
    if !channel::reserve_ring(family, bytes, ctx.ring_budget) {
        super::note_budget_exhausted(ctx.class);
        return None;
    }
    let made = net::lifeline().ok().and_then(|lifeline| {
        let ring = Ring::create(ctx.geometry, ctx.pid, reader.own.ino32(), reader.peer.ino32());
        ring.ok().map(|(mut ring, fd)| {
            ring.set_spin(ctx.spin);
            ((ring, fd), lifeline)
        })
    });
    if made.is_none() {
        channel::unreserve_ring(family, bytes);
    }
    made
}

/// Waits for a writer, transfers, or hands over to the kernel path.
///
/// # Safety
/// As [`read`].
unsafe fn rendezvous(call: &ReadCall<'_>, ch: &mut Locked, fifo: bool, ctx: &Ctx, tally: &mut Tally) -> isize {
    let capacity = call.capacity();
    let wait_all = call.flags & libc::MSG_WAITALL != 0;
    // A pipe has no SO_RCVTIMEO.
    let timeout = if ctx.class == Class::Pipe { None } else { net::receive_timeout(call.fd) };
    let mut got = 0u64;
    let mut cursor = Cursor::new(call.iov);
    // Signals are held back for the whole call, except while it sleeps (in
    // ppoll, or in a slot's futex) and while it replays itself on the
    // kernel: one that arrives stays pending and ends the next sleep, as it
    // would end the kernel's.
    let held = signal::Held::block();
    let mut signalled = false;
    loop {
        if got == capacity {
            return tally.fast_done(got);
        }
        // Kernel bytes first: they were written before any writer could claim.
        if net::queued_in(call.fd).is_ok_and(|n| n > 0) {
            if !wait_all {
                return finish_with_kernel(call, got, tally, held);
            }
            match take_kernel_bytes(call, &mut got, &mut cursor, tally) {
                Some(r) => return r,
                None => continue,
            }
        }
        let Channel::Reader(reader) = &mut **ch else { return finish_with_kernel(call, got, tally, held) };
        let Some((ring, _)) = &reader.ring else { return finish_with_kernel(call, got, tally, held) };
        if fifo && pipe::at_eof(call.fd) {
            // No writer, and none to come that poll would report: EOF now.
            return finish_with_kernel(call, got, tally, held);
        }
        let ticket = ring.begin_wait(capacity - got);
        let spin = ring.spin_for(ctx.spin);
        let started = Instant::now();
        let deadline = timeout.map(|t| started + t);
        let mut claiming_since = None;
        let claimed = loop {
            let Some((ring, _)) = &reader.ring else { break None };
            match ring.seen(ticket) {
                Seen::Claimed { writer, total } => break Some((writer, total)),
                Seen::Claiming { writer } => {
                    if claiming_since.get_or_insert_with(Instant::now).elapsed() < CLAIM_STALL {
                        core::hint::spin_loop();
                        continue;
                    }
                    if !track_writer(reader, writer) || !writer_alive(reader, writer) {
                        // It died (or exec'd) between its two stores.
                        if reader.ring.as_ref().is_some_and(|(ring, _)| ring.abandon_claim(ticket, writer)) {
                            break None; // wait afresh
                        }
                        continue;
                    }
                    // Preempted (or stopped): let it run, signals let through.
                    let nap = signal::ppoll(&mut [], Some(CLAIM_STALL), held.outside());
                    signalled |= nap == Err(Errno::INTR);
                    claiming_since = None;
                    continue;
                }
                Seen::Other => break None,
                Seen::Waiting if started.elapsed() < spin => {
                    core::hint::spin_loop();
                    continue;
                }
                Seen::Waiting => {}
            }
            let mut fds = [
                PollFd { fd: call.fd, events: libc::POLLIN | libc::POLLRDHUP, revents: 0 },
                PollFd { fd: reader.side.raw(), events: libc::POLLIN, revents: 0 },
            ];
            let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let polled = signal::ppoll(&mut fds, timeout, held.outside());
            if fds[1].revents != 0 {
                serve_side(reader, ctx);
            }
            let Some((ring, _)) = &reader.ring else { break None };
            let interrupted = polled == Err(Errno::INTR);
            let timed_out = polled == Ok(0) && deadline.is_some_and(|d| Instant::now() >= d);
            let socket_event = fds[0].revents != 0 || (polled.is_err() && !interrupted);
            if !(socket_event || interrupted || timed_out) || !ring.withdraw(ticket) {
                continue; // only a datagram, or a writer claimed first: look again
            }
            if got > 0 && (!wait_all || interrupted) {
                // Bytes are in: the kernel returns them (MSG_WAITALL too,
                // when a signal arrives).
                return tally.fast_done(got);
            }
            if interrupted {
                if got == 0 && !signal::every_handler_restarts() {
                    return tally.error(Fallback::Interrupted, Errno::INTR);
                }
                break None; // restart: look at the queue again
            }
            if timed_out {
                return if got > 0 { tally.fast_done(got) } else { tally.error(Fallback::TimedOut, Errno::AGAIN) };
            }
            if !wait_all {
                return finish_with_kernel(call, got, tally, held);
            }
            // MSG_WAITALL: take what the kernel has (or its EOF), go on waiting.
            match take_kernel_bytes(call, &mut got, &mut cursor, tally) {
                Some(r) => return r,
                None => break None,
            }
        };
        let Some((writer, total)) = claimed else { continue };
        let Channel::Reader(reader) = &mut **ch else { return finish_with_kernel(call, got, tally, held) };
        // A claimer that has no process (it died before this look, or the
        // pid is garbage) is gone: without a pidfd, and with no REQUEST on
        // record from it, nothing else would ever say so.
        let exists = track_writer(reader, writer);
        let Some((ring, _)) = &reader.ring else { return finish_with_kernel(call, got, tally, held) };
        let mut copier = ctx.reader_copier(capacity);
        let mut copy = copier.as_fn();
        let mut alive = || exists && writer_alive(reader, writer);
        // Sleeps for slots let signals through: a handler, or a default
        // action, must not wait for a writer that may be stopped.
        let mut sleep = Sleep { mask: Some(held.outside()), interrupted: false };
        let total = total.min(capacity - got);
        // SAFETY: the part of the caller's buffer this transfer fills.
        let ahead = call.contiguous(got, total).and_then(|dst| unsafe { Ahead::start(dst, total, ctx.class) });
        // SAFETY: at most capacity - got bytes (the claim is bounded by the
        // wait's `want`); the cursor covers the caller's remaining buffers.
        let (n, abort) = unsafe { ring.receive(ticket, total, &mut cursor, &mut copy, &mut alive, &mut sleep) };
        if let Some(ahead) = ahead {
            ahead.finish();
        }
        signalled |= sleep.interrupted;
        ring.end(ticket);
        drop(copy);
        tally.copied(&copier, n);
        got += n;
        match abort {
            None => {}
            Some(Abort::Corrupt) => {
                // Never again from this ring.
                if let Some((ring, _)) = reader.ring.take() {
                    channel::unreserve_ring(reader.own.family, ring.geometry().ring_bytes());
                }
                reader.lifeline = None; // its writers see the ring go
                tally.cut_short(Fallback::Corrupt);
            }
            Some(_) => tally.cut_short(Fallback::PeerGone),
        }
        // MSG_WAITALL ends early when a signal arrived, as the kernel's does.
        if abort.is_some() || !wait_all || got == capacity || (signalled && got > 0) {
            if got == 0 {
                return finish_with_kernel(call, 0, tally, held);
            }
            return tally.fast_done(got);
        }
    }
}

/// Whether writer `pid` (whose pidfd `writer_pidfd` opened) still runs and
/// has not exec'd: an exec by another of its threads keeps the pid but
/// closes its side channel (close-on-exec), which the REQUESTs it sent
/// named.
fn writer_alive(reader: &Reader, pid: i32) -> bool {
    let pidfd = reader.writer.as_ref().filter(|(p, _)| *p == pid).map(|(_, fd)| fd);
    channel::alive(pidfd) && reader.requester(pid).is_none_or(|addr| net::bound(reader.side.raw(), &addr))
}

/// Keeps a pidfd on the claiming writer: opened once per writer, and again
/// when the one held reads as exited (the pid may have been reused). False
/// when no process has that pid.
fn track_writer(reader: &mut Reader, pid: i32) -> bool {
    if reader.writer.as_ref().is_some_and(|(p, fd)| *p == pid && net::alive(fd.raw())) {
        return true;
    }
    match net::pidfd_open(pid) {
        Ok(fd) => {
            reader.writer = Some((pid, fd));
            true
        }
        Err(e) => {
            reader.writer = None;
            // ESRCH: no such process; EINVAL: not a pid (0 or negative).
            e != Errno(libc::ESRCH) && e != Errno(libc::EINVAL)
        }
    }
}

/// Ends a call without MSG_WAITALL through the kernel: the whole call as it
/// was (a blocking replay: signals let through first), or, after `got`
/// bytes came through shared memory, just those.
fn finish_with_kernel(call: &ReadCall<'_>, got: u64, tally: &mut Tally, held: signal::Held) -> isize {
    drop(held);
    if got == 0 { tally.kernel(Fallback::KernelFirst, call) } else { tally.fast_done(got) }
}

/// MSG_WAITALL: reads what the kernel has queued (without waiting) into the
/// rest of the buffers. `Some(result)` ends the call (EOF, an error, full
/// buffers); `None` goes on waiting.
fn take_kernel_bytes(call: &ReadCall<'_>, got: &mut u64, cursor: &mut Cursor<'_>, tally: &mut Tally) -> Option<isize> {
    let flags = (call.flags & !libc::MSG_WAITALL) | libc::MSG_DONTWAIT;
    // SAFETY: the caller's buffers, from byte `got` on.
    let r = unsafe { call.kernel_from(*got, flags) };
    tally.reason(Fallback::KernelFirst);
    if r > 0 {
        tally.kernel_bytes(r as u64);
        *got += r as u64;
        cursor.advance(r as u64);
        return (*got == call.capacity()).then(|| tally.fast_done(*got));
    }
    // SAFETY: this thread's errno, just set by the failed call.
    let again = r < 0 && unsafe { *libc::__errno_location() } == libc::EAGAIN;
    if again {
        return None;
    }
    Some(if *got > 0 { tally.fast_done(*got) } else { r })
}
