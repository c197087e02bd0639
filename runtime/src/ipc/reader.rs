//! The reader's side (docs/ipc-protocol.md, "One offer"): opt in, answer
//! REQUESTs with the ring, take what a writer offers (the kernel's queue
//! first), wait for an offer where the call blocks, or do exactly what the
//! kernel would have done.

use core::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use ipc_offload_engine::Fallback;
use ipc_offload_engine::stats;
use ipc_offload_policy::Class;
use ipc_offload_ring::take::Taking;
use ipc_offload_ring::{self as ring, Abort, Cursor, Ring, Sleep};
use ipc_offload_sys::mem::OwnedFd;
use ipc_offload_sys::net::{self, PollFd};
use ipc_offload_sys::{Errno, pipe, signal, tcp};

use super::ahead::Ahead;
use super::call::ReadCall;
use super::channel::{self, Channel, Locked, Reader, Role};
use super::ctx::{Ctx, Tally};
use super::endpoint::{Endpoint, Family};
use super::route;
use super::side::{self, Message};
use super::table::{FDS, FdInfo, FdKind};

/// For this long after opting in, a blocking reader without a ring reads
/// at most [`HANDSHAKE_READ`] bytes per call through the kernel, or what is
/// queued when it asks if that is more (the writer's REQUESTs back off for
/// 127 ms before it gives up on a reader).
const HANDSHAKE: Duration = Duration::from_millis(200);
const HANDSHAKE_READ: u64 = 256 << 10;
/// A reader that opted in this long ago, has read this many times since,
/// and has read more than its class's `handshake_after` through the kernel
/// since (or opted in [`QUIET_LATEST`] ago), all without a REQUEST, is
/// quiet: its writer has no library (one with it asks as soon as it has
/// sent `handshake_after` bytes, before it sends the next, and again
/// within 100 ms if the reader had not opted in yet: its REQUEST backs off
/// from 1 ms). Its reads then skip the library's checks but
/// every `LOOK_EVERY`th. Without the bytes, a writer slower than 4 MiB in
/// 20 ms (a loaded machine, a debug build) asked just after its reader
/// went quiet and waited up to 64 reads for its OFFER. Without the time,
/// a reader of small messages from a writer without the library would pay
/// the checks for 4 MiB of them. (A Unix socket or pipe reader whose fd
/// waits in an epoll set is quiet from its twin on, twins.rs.)
const QUIET_AFTER: Duration = Duration::from_millis(20);
const QUIET_READS: u32 = 16;
const QUIET_LATEST: Duration = Duration::from_millis(250);
/// A writer sets an offer up in a few stores; one that takes longer than
/// this was preempted, or died: check which. (A reader polls for the
/// first [`SETUP_SPIN`] of it, then sleeps.)
const SETUP_STALL: Duration = Duration::from_millis(1);
/// How long a blocking TCP read waits at a time for kernel bytes still on
/// their way before an offer (then it looks at the offer again).
const IN_FLIGHT_POLL: Duration = Duration::from_millis(1);
const SETUP_SPIN: Duration = Duration::from_micros(20);
/// How long a read that finds its channel busy (another thread of this
/// process is at it, briefly) tries again before it takes the kernel path.
const BUSY_RETRY: Duration = Duration::from_micros(200);
/// How often [`kernel_first`] asks a TCP socket for a received count and a
/// queue of one moment before it gives up.
const CONSISTENT_TRIES: u32 = 16;

/// A read on the socket or pipe `at`: large, or any size on an fd whose
/// channel has a ring (`small`).
///
/// # Safety
/// The call's buffers valid for writing, as for the libc function.
pub unsafe fn read(call: &ReadCall<'_>, info: FdInfo, at: Endpoint, ctx: &Ctx, tally: &mut Tally) -> isize {
    let unsupported = libc::MSG_PEEK | libc::MSG_OOB | libc::MSG_ERRQUEUE;
    let pipe_misuse = at.family == Family::Pipe && !call.is_plain();
    if call.flags & unsupported != 0 || call.wants_control() || call.iov.len() > super::call::MAX_IOV || pipe_misuse {
        return tally.kernel(Fallback::Unsupported, call);
    }
    // A pipe's access mode first: a write-only end fails with EBADF, as
    // the kernel says.
    let mut blocking = None;
    if at.family == Family::Pipe {
        match pipe::access(call.fd) {
            Ok(access) if access.read => blocking = Some(access.blocking),
            _ => return tally.kernel(Fallback::Unsupported, call),
        }
    }
    if info.kind == FdKind::NoFast {
        return tally.kernel(Fallback::OptInFailed, call);
    }
    let Some((mut ch, index)) = lock_retrying(at, route::slot(call.fd, super::hint::Dir::Read)) else {
        return tally.kernel(Fallback::Busy, call);
    };
    if matches!(*ch, Channel::Empty) && !join(&mut ch, index, call.fd, info, at, ctx) {
        refuse(ch, call.fd, info);
        return tally.kernel(Fallback::OptInFailed, call);
    }
    let Channel::Reader(reader) = &mut *ch else { return tally.kernel(Fallback::Busy, call) };
    let small = call.capacity() < ctx.min_bytes;
    if !small && reader.declines {
        // A large read: rings again, and waits that watch for offers (of
        // every fd of the socket: the retire took the side channel out of
        // the sets of each).
        reader.declines = false;
        reader.misses = 0;
        reader.read_len = 0;
        let side = reader.side.raw();
        FDS.each_fd_of(info.key, |fd| super::epoll_sets::adopt_fd(fd, index, info.key, side));
    } else if small
        && reader.misses >= channel::SMALL_MISSES
        && channel::is_small(index)
        && !reader.served
        && reader.ring.as_ref().is_some_and(|(ring, _)| ring.holder().is_none())
    {
        // Opted in for its small reads, and no writer offered to it: its
        // writers leave a reader of small buffers to the kernel (without
        // write-behind, "Readers with small buffers"). The ring goes, and
        // so does what its reads and waits paid for it: its side channel
        // leaves their sets, and its REQUESTs go unanswered.
        channel::drop_ring(reader, index);
        reader.declines = true;
        channel::clear_small(index);
        super::twins::unregister_channel(index, info.key);
    }
    if reader.ring.is_none() {
        serve_side(reader, ctx, index);
    }
    route::set(call.fd, index, reader.ring.is_some() || channel::small_reads_wanted(index, info.key));
    let Some((ring, _)) = &reader.ring else {
        tally.reason(Fallback::NoPeer);
        let opted = reader.since.elapsed();
        reader.unasked = reader.unasked.saturating_add(1);
        let earned = reader.unasked_bytes > ctx.handshake_after || opted >= QUIET_LATEST;
        let silent = !reader.requested && opted >= QUIET_AFTER && reader.unasked >= QUIET_READS && earned;
        if silent && channel::is_small(index) {
            // Opted in for its small reads, and no writer with the library
            // asked: the channel goes, with its side channel (out of every
            // set: the program's waits pay nothing for it), as if it had
            // never opted in, before the read (which may block). Its count
            // stays spent until the fd closes.
            let key = info.key;
            super::twins::unregister_channel(index, key);
            channel::release_locked(index, ch);
            FDS.each_fd_of(key, |fd| route::set(fd, index, false));
            return tally.kernel(Fallback::NoPeer, call);
        }
        if silent {
            // No writer with the library: from now on, its reads go to the
            // kernel without the lock (channel::quiet_read).
            channel::set_quiet(index, true);
        }
        // (A read of at most HANDSHAKE_READ is never cut: no look at the
        // queue for it.)
        let capped = call.capacity() > HANDSHAKE_READ;
        let r = if capped && opted < HANDSHAKE && call.flags & libc::MSG_DONTWAIT == 0 && blocking != Some(false) {
            // A writer with the library may be pumping kernel pieces while
            // it waits for an OFFER, which this reader makes only between
            // reads: a kernel read that went on absorbing them would keep
            // the two on the kernel path for the whole message. Never less
            // than what is queued now: a program that reads what FIONREAD
            // said gets all of it, as from the kernel.
            let queued = net::queued_in(call.fd).map_or(0, |n| n.max(0) as u64);
            // SAFETY: the caller's call, for fewer bytes.
            tally.kernel_result(unsafe { call.kernel_capped(HANDSHAKE_READ.max(queued)) })
        } else {
            tally.kernel(Fallback::NoPeer, call)
        };
        reader.unasked_bytes = reader.unasked_bytes.saturating_add(r.max(0) as u64);
        return r;
    };
    // The length a writer weighs ("Readers with small buffers"): only a
    // reader that opted in for its small reads says it (a reader of a
    // small header before a large body is offered to as before).
    let len = if channel::is_small(index) { call.capacity() } else { 0 };
    ring.note_read(len);
    reader.read_len = len;
    reader.active = Instant::now();
    // A FIFO's POLLHUP may be held back (see pipe::at_eof).
    let fifo = at.family == Family::Pipe && pipe::is_named(at.dev);
    // SAFETY: forwarded contract.
    let r = unsafe { transfer(call, &mut ch, index, blocking, fifo, ctx, tally) };
    if let Channel::Reader(reader) = &mut *ch {
        if tally.moved_fast() && !reader.served {
            reader.served = true;
            channel::note_served(at.family);
        } else if small && !tally.moved_fast() && !reader.served && channel::is_small(index) {
            reader.misses = reader.misses.saturating_add(1);
        }
    }
    r
}

/// Opts `fd` in as the reader of `at` in the empty channel `ch` (slot
/// `index`); false if that failed (the caller then [`refuse`]s).
fn join(ch: &mut Locked, index: usize, fd: i32, info: FdInfo, at: Endpoint, ctx: &Ctx) -> bool {
    let Some(reader) = opt_in(at, fd, ctx.euid) else { return false };
    let side = reader.side.raw();
    **ch = Channel::Reader(reader);
    route::set(fd, index, false);
    // The program may have put the fd in epoll sets already: their waits
    // must hear of offers too.
    super::epoll_sets::adopt_fd(fd, index, info.key, side);
    true
}

/// A failed opt-in: the channel goes, and the fd's reads are the kernel's
/// for good.
fn refuse(ch: Locked, fd: i32, info: FdInfo) {
    drop(ch);
    channel::release_role(info.key, Role::Reader);
    FDS.set(fd, FdInfo { key: info.key, kind: FdKind::NoFast });
}

/// A reader whose small reads that fill their buffers crossed the bar
/// (streak.rs): `fd` opts in as a large read would have made it, and its
/// small reads come to the library while it has no ring and is not quiet
/// (so that they answer REQUESTs), and whenever it has one. A socket
/// already read through another fd keeps its channel as it is (the fd is
/// routed to it), small or not. Not over TCP: a 16 KiB read of loopback TCP
/// costs the kernel about what a take from the ring costs the library
/// (docs/ipc-protocol.md, "Readers with small buffers").
///
/// False if it could not (the channel busy): the fd counts anew.
pub fn opt_in_small(fd: i32, len: u64, info: FdInfo, at: Endpoint, ctx: &Ctx) -> bool {
    let readable = match at.family {
        Family::Tcp => false,
        Family::Pipe => pipe::access(fd).is_ok_and(|a| a.read),
        Family::Unix => true,
    };
    if info.kind != FdKind::Fast || !readable {
        return true;
    }
    let Some((mut ch, index)) = lock_retrying(at, route::slot(fd, super::hint::Dir::Read)) else { return false };
    let new = matches!(*ch, Channel::Empty);
    if new && !join(&mut ch, index, fd, info, at, ctx) {
        refuse(ch, fd, info);
        return true;
    }
    let Channel::Reader(reader) = &mut *ch else { return false };
    if new {
        reader.read_len = len;
        channel::set_small(index);
        // Not quiet by a twin (twins.rs): its small reads answer REQUESTs
        // until a ring comes, or no writer with the library asked for one
        // (then the channel goes: `read`).
        channel::set_quiet(index, false);
    }
    route::set(fd, index, reader.ring.is_some() || channel::small_reads_wanted(index, info.key));
    true
}

/// The channel of `at` as reader, locked: another thread of this process
/// holds it only briefly (an event loop's poll marks itself on the ring),
/// unless it waits inside a read itself.
fn lock_retrying(at: Endpoint, hint: Option<usize>) -> Option<(Locked, usize)> {
    let start = Instant::now();
    loop {
        match channel::lock_near(at, Role::Reader, hint) {
            Ok(found) => return Some(found),
            Err(channel::Unavailable::Full) => return None,
            Err(channel::Unavailable::Busy) if start.elapsed() >= BUSY_RETRY => return None,
            Err(channel::Unavailable::Busy) => ipc_offload_sys::sched_yield(),
        }
    }
}

/// Binds the opt-in name for what is written into `own`: its peer socket,
/// or the pipe itself.
fn opt_in(own: Endpoint, fd: i32, euid: u32) -> Option<Reader> {
    // A socket whose reads wait for more than one byte (SO_RCVLOWAT) is
    // the kernel's: a take returns as soon as it has bytes.
    if own.family != Family::Pipe && net::receive_low_water(fd).is_ok_and(|n| n > 1) {
        return None;
    }
    let peer = match own.family {
        Family::Unix => Endpoint::socket(net::peer_inode(own.ino32()).ok()?),
        Family::Tcp => Endpoint::tcp(super::tcp_path::peer(fd, euid)?),
        Family::Pipe => own,
    };
    let side = net::dgram_socket().ok()?;
    net::bind(side.raw(), &side::reader_name(peer)).ok()?;
    let requesters = [None; channel::REQUESTERS];
    Some(Reader {
        own,
        peer,
        side,
        ring: None,
        lifeline: None,
        writer: None,
        requesters,
        since: Instant::now(),
        requested: false,
        unasked: 0,
        unasked_bytes: 0,
        ring_id: 0,
        active: Instant::now(),
        served: false,
        misses: 0,
        declines: false,
        read_len: 0,
        caught_up: None,
        past_before: None,
    })
}

/// Answers every queued side-channel datagram: REQUESTs get an OFFER of the
/// ring (made on the first one, within the budget); the rest is dropped.
/// `index` is the channel's slot.
pub fn serve_side(reader: &mut Reader, ctx: &Ctx, index: usize) {
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
        if reader.declines {
            // A reader of small buffers that no writer offered to (see
            // `read`): unanswered until it reads large.
            continue;
        }
        if !end_offer_of_an_earlier_self(reader, writer_pid, &d.from) {
            // Its write-behind offer still has bytes to take: the address
            // stays the earlier one, so that the next REQUEST looks again.
            continue;
        }
        reader.note_requester(writer_pid, d.from);
        reader.requested = true;
        if reader.ring.is_none() {
            let (ring, lifeline) = make_ring(reader, ctx).unzip();
            (reader.ring, reader.lifeline) = (ring, lifeline);
            reader.ring_id = if reader.ring.is_some() { channel::next_ring_id() } else { 0 };
            channel::set_ringed(index, reader.ring.is_some());
            if let Some((ring, _)) = &reader.ring {
                ring.set_read_len(reader.read_len);
                // Offers can come now: every fd of the socket sends its
                // reads of every size here (a ring made by an event loop's
                // wait has no read to route its fd).
                FDS.each_fd_of(reader.own.key(), |fd| route::set(fd, index, true));
            }
        }
        if let (Some((ring, memfd)), Some((_, give))) = (&reader.ring, &reader.lifeline) {
            let (msg, len) = Message::Offer { ring_bytes: ring.geometry().ring_bytes() }.encode();
            let _ = net::send_dgram(reader.side.raw(), &d.from, &msg[..len], &[memfd.raw(), give.raw()]);
        }
    }
}

/// A REQUEST of writer `pid` from a new address, its earlier one unbound:
/// the process exec'd (its side channel was close-on-exec) or made a new
/// channel after closing the old one. An offer it holds belongs to that
/// earlier self, which will never place or close it; with the new address
/// noted, the liveness check would take it for alive, so it ends here;
/// but a write-behind offer with bytes still to take (its writes returned:
/// they are delivered) ends only once they are taken. False for that one:
/// the REQUEST is not answered yet.
fn end_offer_of_an_earlier_self(reader: &Reader, pid: i32, from: &net::AbstractAddr) -> bool {
    let Some(earlier) = reader.requester(pid).filter(|a| !a.same(from)) else { return true };
    let Some((ring, _)) = &reader.ring else { return true };
    let Some(holder) = ring.holder().filter(|h| h.writer == pid) else { return true };
    if net::bound(reader.side.raw(), &earlier) {
        return true;
    }
    if ring.ring_first(&holder) {
        return false;
    }
    if ring.end_orphan(holder.seq, pid) {
        stats::counters(reader.own.class()).note_fallback(Fallback::PeerGone);
    }
    true
}

/// A new ring within the budget, and its lifeline.
fn make_ring(reader: &Reader, ctx: &Ctx) -> Option<((Ring, OwnedFd), (OwnedFd, OwnedFd))> {
    let bytes = ctx.geometry.ring_bytes();
    let family = reader.own.family;
    // Over the budget, a reader idle for a while gives its ring up
    // (docs/ipc-protocol.md, "Ring memory follows activity").
    if !channel::reserve_ring(family, bytes, ctx.ring_budget) && !channel::reclaim_idle(family, bytes, ctx.ring_budget)
    {
        note_budget_exhausted(ctx.class);
        return None;
    }
    let made = net::lifeline().ok().and_then(|lifeline| {
        let ring = Ring::create(ctx.geometry, ctx.pid, reader.own.ino32(), reader.peer.ino32());
        ring.ok().map(|(mut ring, fd)| {
            ring.set_spin(ctx.spin);
            ((ring, fd), lifeline)
        })
    });
    match made {
        Some(_) => channel::note_ring_made(family),
        None => channel::unreserve_ring(family, bytes),
    }
    made
}

/// A class's ring budget ran out (reported once per process and class).
fn note_budget_exhausted(class: Class) {
    static SAID: [AtomicBool; 3] = [const { AtomicBool::new(false) }; 3];
    let (said, what) = match class {
        Class::Pipe => (&SAID[1], "pipes"),
        Class::Tcp => (&SAID[2], "TCP sockets"),
        _ => (&SAID[0], "sockets"),
    };
    if crate::log::first_time(said) {
        crate::log_at!(Warn, "[{class}] ring_bytes budget used up: further {what} use the kernel path");
    }
    stats::counters(class).note_fallback(Fallback::RingBudget);
}

/// Takes offered bytes, or the kernel's, or waits for either (a blocking
/// call with nothing to read). `blocking`: the file's mode, if known (a
/// pipe's); asked of the file otherwise.
///
/// # Safety
/// As [`read`].
unsafe fn transfer(
    call: &ReadCall<'_>,
    ch: &mut Locked,
    index: usize,
    blocking: Option<bool>,
    fifo: bool,
    ctx: &Ctx,
    tally: &mut Tally,
) -> isize {
    let capacity = call.capacity();
    let wait_all = call.flags & libc::MSG_WAITALL != 0;
    let mut got = 0u64;
    let mut cursor = Cursor::new(call.iov);
    // A nonblocking fd as last seen is trusted (its calls never wait; were
    // it blocking by now, the kernel's replay would block as it should);
    // a blocking one is asked again, since this call may wait.
    let file_blocking = blocking
        .or_else(|| channel::cached_blocking(index).filter(|blocks| !blocks))
        .unwrap_or_else(|| net::is_blocking(call.fd).unwrap_or(false));
    channel::set_nonblocking(index, !file_blocking);
    let is_blocking = file_blocking && call.flags & libc::MSG_DONTWAIT == 0;
    // A blocking call holds signals back for its whole length, except
    // while it sleeps (in ppoll, or on a ring's bell) and while it replays
    // itself on the kernel: one that arrives stays pending and ends the
    // next sleep, as it would end the kernel's.
    let mut held: Option<signal::Held> = is_blocking.then(signal::Held::block);
    let mut timeout: Option<Option<Instant>> = None;
    let mut setup_since: Option<Instant> = None;
    loop {
        if got == capacity {
            return tally.fast_done(got);
        }
        let Channel::Reader(reader) = &mut **ch else { return finish_with_kernel(call, got, tally, held) };
        let Some((ring, _)) = &reader.ring else { return finish_with_kernel(call, got, tally, held) };
        if let Some(holder) = ring.holder() {
            // A write-behind offer with bytes to take comes before every
            // byte the kernel holds: its writer had none unread there when
            // it opened it (docs/ipc-protocol.md, "Write-behind (opt-in)").
            // Over TCP such an offer says where it starts in the stream:
            // the kernel's bytes before that point come first.
            let ring_first = ring.ring_first(&holder);
            // Bytes the kernel queued before the offer opened come first:
            // its writer wrote them, then offered. A socket's read goes on
            // into the offer with the room left, as the kernel's would
            // return all that is queued (a pipe's has no nonblocking read
            // of its own: it returns the kernel's bytes alone).
            let this = (reader.ring_id, holder.seq);
            let arrived = reader.caught_up == Some(this);
            let first = kernel_first(call.fd, ring, ring_first, ctx.class, arrived, &mut reader.past_before, this);
            if first > 0 {
                // Unless its writer is gone: then the kernel's bytes may
                // have been written after it died (by another writer of the
                // file), and its untaken tail must not follow them. It ends
                // as a write killed after what was taken (not a write-behind
                // offer's: those bytes were returned as written).
                if !ring_first
                    && ring.ready() > 0
                    && !(track_writer(reader, holder.writer) && writer_alive(reader, holder.writer))
                {
                    if let Some((ring, _)) = &reader.ring {
                        ring.end_orphan(holder.seq, holder.writer);
                    }
                    tally.cut_short(Fallback::PeerGone);
                }
                if !wait_all && ctx.class == Class::Pipe {
                    return finish_with_kernel(call, got, tally, held);
                }
                match take_kernel_bytes(call, first, &mut got, &mut cursor, tally) {
                    Some(r) => return r,
                    None => continue,
                }
            }
            // Over TCP the kernel's bytes reach this socket some time after
            // the write that sent them returned: bytes its writer sent
            // before the offer may still be on their way, and must come
            // first. Until this socket has received as many as the offer
            // says, the read is the kernel's (a blocking one waits for them).
            // Asked once per offer after they arrived (for a write-behind
            // offer, known once `kernel_first` saw the reads past its start).
            if ctx.class == Class::Tcp
                && reader.caught_up != Some(this)
                && reader.past_before != Some(this)
                && ring.open_offer().is_some_and(|o| holder.open && o.seq == holder.seq)
            {
                let before = ring.stream_before();
                let received = tcp::bytes_received(call.fd).ok().filter(|&n| n < before);
                if let Some(received) = received {
                    tally.reason(Fallback::KernelFirst);
                    if got > 0 && !wait_all {
                        return tally.fast_done(got);
                    }
                    if !is_blocking {
                        // What is queued lies before the offer, and so do
                        // the next `before - received` bytes to arrive: no
                        // more (bytes written after the offer's start, by
                        // a sharer or without the hooks, may come with them).
                        return match take_kernel_bytes(call, before - received, &mut got, &mut cursor, tally) {
                            Some(r) => r,
                            None if got > 0 => tally.fast_done(got),
                            // EAGAIN: errno as the kernel's read just set it.
                            None => -1,
                        };
                    }
                    let mut fds = [PollFd { fd: call.fd, events: libc::POLLIN, revents: 0 }];
                    let _ = net::poll(&mut fds, Some(IN_FLIGHT_POLL));
                    continue;
                }
                reader.caught_up = Some(this);
            }
            // An offer being set up (a few stores away), or taken in full
            // (its writer is about to close it), has nothing for this call:
            // its writer is a moment away, or died there.
            let open = ring.open_offer().filter(|o| holder.open && o.seq == holder.seq && o.taken < o.total);
            let Some(offer) = open else {
                if got > 0 && !wait_all {
                    return tally.fast_done(got);
                }
                if !is_blocking {
                    return finish_with_kernel(call, got, tally, held);
                }
                let stalled = setup_since.get_or_insert_with(Instant::now).elapsed() >= SETUP_STALL;
                if stalled && !(track_writer(reader, holder.writer) && writer_alive(reader, holder.writer)) {
                    if let Some((ring, _)) = &reader.ring {
                        ring.end_orphan(holder.seq, holder.writer);
                    }
                    tally.cut_short(Fallback::PeerGone);
                    setup_since = None;
                    continue;
                }
                if !holder.open && setup_since.is_some_and(|t| t.elapsed() < SETUP_SPIN) {
                    core::hint::spin_loop();
                    continue;
                }
                // Taken in full (its writer closes it next), or a writer
                // preempted or stopped: wait for the next offer or the
                // kernel's bytes, asleep (the writer may need this CPU), and
                // look again after a while.
                if stalled {
                    setup_since = None;
                }
                match wait_until_offered(call, reader, capacity - got, &mut held, &mut timeout, ctx, index, true) {
                    Some(Woke::Signal) => {
                        if got > 0 {
                            return tally.fast_done(got);
                        }
                        if !signal::every_handler_restarts() {
                            return tally.error(Fallback::Interrupted, Errno::INTR);
                        }
                    }
                    Some(Woke::TimedOut) => {
                        return if got > 0 {
                            tally.fast_done(got)
                        } else {
                            tally.error(Fallback::TimedOut, Errno::AGAIN)
                        };
                    }
                    _ => {}
                }
                continue;
            };
            setup_since = None;
            let Some((ring, _)) = &reader.ring else { continue };
            let mut copier = ctx.reader_copier(capacity);
            let mut copy = copier.as_fn();
            // The writer's liveness is asked only when a take waits in vain.
            let mut alive = || writer_alive(reader, offer.writer);
            // A blocking call with nothing yet waits as long as the writer
            // places bytes; otherwise a read returns what it has once the
            // writer pauses for longer than a step takes.
            let more = if got == 0 && is_blocking { ring::NAP } else { ctx.spin };
            let mut how = Taking {
                more,
                alive: &mut alive,
                sleep: Sleep { mask: held.as_ref().map(|h| h.outside()), interrupted: false },
            };
            let rest = (capacity - got).min(offer.total - offer.taken);
            // SAFETY: the part of the caller's buffers this take fills.
            let ahead = call.contiguous(got, rest).and_then(|dst| unsafe { Ahead::start(dst, rest, ctx.class) });
            // SAFETY: at most capacity - got bytes: the cursor covers the
            // caller's remaining buffers.
            let (n, abort) = unsafe { ring.take(offer.seq, &mut cursor, capacity - got, &mut copy, &mut how) };
            if let Some(ahead) = ahead {
                ahead.finish();
            }
            let interrupted = how.sleep.interrupted;
            drop(copy);
            tally.copied(&copier, n);
            got += n;
            match abort {
                None => {}
                Some(Abort::Corrupt) => {
                    // Never again from this ring.
                    channel::drop_ring(reader, index);
                    tally.cut_short(Fallback::Corrupt);
                    return if got > 0 { tally.fast_done(got) } else { finish_with_kernel(call, 0, tally, held) };
                }
                Some(_) => {
                    // Its writer is gone: what it placed is in; the kernel
                    // has whatever comes next (its data, EOF, ECONNRESET).
                    if let Some((ring, _)) = &reader.ring {
                        ring.end_orphan(offer.seq, offer.writer);
                    }
                    tally.cut_short(Fallback::PeerGone);
                }
            }
            if got > 0 && (!wait_all || interrupted) {
                return tally.fast_done(got);
            }
            if interrupted && got == 0 && !signal::every_handler_restarts() {
                return tally.error(Fallback::Interrupted, Errno::INTR);
            }
            if n == 0 && !is_blocking {
                return finish_with_kernel(call, got, tally, held);
            }
            continue;
        }
        // No offer.
        if got > 0 && !wait_all {
            return tally.fast_done(got);
        }
        if !is_blocking {
            serve_side(reader, ctx, index);
            return finish_with_kernel(call, got, tally, held);
        }
        if net::queued_in(call.fd).is_ok_and(|n| n > 0) || (fifo && pipe::at_eof(call.fd)) {
            // Data, or (a FIFO with no writer, none to come that poll
            // would report) EOF now.
            if !wait_all {
                return finish_with_kernel(call, got, tally, held);
            }
            match take_kernel_bytes(call, u64::MAX, &mut got, &mut cursor, tally) {
                Some(r) => return r,
                None => continue,
            }
        }
        match wait_until_offered(call, reader, capacity - got, &mut held, &mut timeout, ctx, index, false) {
            None | Some(Woke::Offer | Woke::Side) => {}
            Some(Woke::Socket) => {
                if reader.ring.as_ref().is_some_and(|(r, _)| r.offer_pending()) {
                    continue;
                }
                if !wait_all {
                    return finish_with_kernel(call, got, tally, held.take());
                }
                match take_kernel_bytes(call, u64::MAX, &mut got, &mut cursor, tally) {
                    Some(r) => return r,
                    None => continue,
                }
            }
            Some(Woke::Signal) => {
                if got > 0 {
                    return tally.fast_done(got);
                }
                if !signal::every_handler_restarts() {
                    return tally.error(Fallback::Interrupted, Errno::INTR);
                }
            }
            Some(Woke::TimedOut) => {
                return if got > 0 { tally.fast_done(got) } else { tally.error(Fallback::TimedOut, Errno::AGAIN) };
            }
        }
    }
}

/// A blocking read's wait for an offer (or the kernel's bytes), with its
/// signals held and its SO_RCVTIMEO (read once, when it first waits).
/// With `nap`, it also ends after [`SETUP_STALL`] (a writer to look at
/// again). `None`: the reader has no ring any more.
#[allow(clippy::too_many_arguments)]
fn wait_until_offered(
    call: &ReadCall<'_>,
    reader: &mut Reader,
    want: u64,
    held: &mut Option<signal::Held>,
    timeout: &mut Option<Option<Instant>>,
    ctx: &Ctx,
    index: usize,
    nap: bool,
) -> Option<Woke> {
    reader.ring.as_ref()?;
    // A pipe has no SO_RCVTIMEO.
    let deadline = *timeout.get_or_insert_with(|| {
        let t = if ctx.class == Class::Pipe { None } else { net::receive_timeout(call.fd) };
        t.map(|t| Instant::now() + t)
    });
    let mask = held.get_or_insert_with(signal::Held::block);
    let bound = if nap { Some(Instant::now() + SETUP_STALL) } else { None };
    let until = match (deadline, bound) {
        (Some(d), Some(b)) => Some(d.min(b)),
        (d, b) => d.or(b),
    };
    match wait_for_offer(call.fd, reader, want, until, mask, ctx, index) {
        Woke::TimedOut if deadline.is_none_or(|d| Instant::now() < d) => Some(Woke::Side),
        woke => Some(woke),
    }
}

/// Why a blocking reader's wait ended.
enum Woke {
    /// An offer is there (or being set up).
    Offer,
    /// Side-channel datagrams (served).
    Side,
    /// The socket or pipe: data, EOF, an error.
    Socket,
    /// A signal.
    Signal,
    /// SO_RCVTIMEO.
    TimedOut,
}

/// A blocking reader with nothing to read: says so on the ring (writers
/// that see it offer at once), polls it for the mode's poll time, then
/// sleeps in ppoll on the socket or pipe and the side channel, under the
/// caller's signal mask.
fn wait_for_offer(
    fd: i32,
    reader: &mut Reader,
    want: u64,
    deadline: Option<Instant>,
    held: &signal::Held,
    ctx: &Ctx,
    index: usize,
) -> Woke {
    let Some((ring, _)) = &reader.ring else { return Woke::Socket };
    ring.begin_wait(want);
    let spin = ring.spin_for(ctx.spin);
    let start = Instant::now();
    let mut found = false;
    let mut polls = 0u32;
    while !spin.is_zero() {
        if ring.offer_pending() {
            found = true;
            break;
        }
        polls = polls.wrapping_add(1);
        if polls % 64 == 0 && start.elapsed() >= spin {
            break;
        }
        core::hint::spin_loop();
    }
    ring.polled(spin, found);
    if !found {
        ring.sleeping();
        found = ring.offer_pending();
    }
    let mut fds = [
        PollFd { fd, events: libc::POLLIN | libc::POLLRDHUP, revents: 0 },
        PollFd { fd: reader.side.raw(), events: libc::POLLIN, revents: 0 },
    ];
    let polled = if found {
        Ok(0)
    } else {
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        signal::ppoll(&mut fds, timeout, held.outside())
    };
    ring.end_wait();
    if fds[1].revents != 0 {
        serve_side(reader, ctx, index);
    }
    match polled {
        _ if found => Woke::Offer,
        Err(Errno::INTR) => Woke::Signal,
        Err(_) => Woke::Socket,
        Ok(_) if fds[0].revents != 0 => Woke::Socket,
        Ok(_) if fds[1].revents != 0 => Woke::Side,
        Ok(_) if deadline.is_some_and(|d| Instant::now() >= d) => Woke::TimedOut,
        Ok(_) => Woke::Side,
    }
}

/// Whether writer `pid` (through the pidfd [`track_writer`] opened, or one
/// opened for the question) still runs and has not exec'd: an exec by
/// another of its threads keeps the pid but closes its side channel
/// (close-on-exec), which the REQUESTs it sent named. A held pidfd that
/// reads as exited is asked again by pid: a later writer may have the pid
/// now (one that took it for dead would end a live writer's offers).
fn writer_alive(reader: &Reader, pid: i32) -> bool {
    let runs = match reader.writer.as_ref().filter(|(p, _)| *p == pid) {
        Some((_, pidfd)) => net::alive(pidfd.raw()) || process_alive(pid),
        None => process_alive(pid),
    };
    runs && reader.requester(pid).is_none_or(|addr| net::bound(reader.side.raw(), &addr))
}

/// Whether a process `pid` exists and runs (a pidfd opened for the
/// question): for a writer the reader holds no pidfd on yet.
fn process_alive(pid: i32) -> bool {
    match net::pidfd_open(pid) {
        Ok(fd) => net::alive(fd.raw()),
        // ESRCH: no such process; EINVAL: not a pid (0 or negative).
        Err(e) => e != Errno(libc::ESRCH) && e != Errno(libc::EINVAL),
    }
}

/// Keeps a pidfd on the offering writer: opened once per writer, and again
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
fn finish_with_kernel(call: &ReadCall<'_>, got: u64, tally: &mut Tally, held: Option<signal::Held>) -> isize {
    drop(held);
    if got == 0 { tally.kernel(Fallback::KernelFirst, call) } else { tally.fast_done(got) }
}

/// How many of the kernel's queued bytes a read takes before the open
/// offer's (`holder`'s, `seq`): all of them, unless the offer is a
/// write-behind one (`ring_first`, docs/ipc-protocol.md, "Write-behind
/// (opt-in)"). Then none on a Unix socket (its writer had none unread
/// there when it opened the offer), and over TCP those that lie before the
/// offer's start in the writer's stream: the socket's received count less
/// its queue is where its reads stand. `past_before` remembers the offer
/// whose earlier bytes were all read; `arrived`: an earlier look found
/// them all received (so an empty queue now means all read).
fn kernel_first(
    fd: i32,
    ring: &Ring,
    ring_first: bool,
    class: Class,
    arrived: bool,
    past_before: &mut Option<(u64, u32)>,
    this: (u64, u32),
) -> u64 {
    let queued = || net::queued_in(fd).map_or(0, |n| n.max(0) as u64);
    if !ring_first {
        return queued();
    }
    if class != Class::Tcp || *past_before == Some(this) {
        return 0;
    }
    // Nothing queued: nothing to read first (whether bytes before the
    // offer are still on their way is the caller's next question; if an
    // earlier look found them all received, they were all read).
    if queued() == 0 {
        if arrived {
            *past_before = Some(this);
        }
        return 0;
    }
    let before = ring.stream_before();
    // The received count and the queue must be of one moment: a byte
    // arriving between the two looks would shift where the reads seem to
    // stand. Asked until the count is the same on both sides of the queue.
    for _ in 0..CONSISTENT_TRIES {
        let Ok(received) = tcp::bytes_received(fd) else { return 0 };
        let queued = queued();
        let Ok(again) = tcp::bytes_received(fd) else { return 0 };
        if again <= before {
            // Every byte received so far lies before the offer.
            return queued;
        }
        if again != received {
            continue;
        }
        let standing = received.saturating_sub(queued);
        if standing >= before {
            *past_before = Some(this);
            return 0;
        }
        return (before - standing).min(queued);
    }
    // Bytes keep arriving after the offer's start: none of this writer's
    // (it writes nothing while its offer is open), another's. The reads
    // stand at least at the first count less the queue: what that leaves
    // before the offer is read first for certain; then the offer.
    let (Ok(received), queued) = (tcp::bytes_received(fd), queued()) else { return 0 };
    before.saturating_sub(received.saturating_sub(queued)).min(queued)
}

/// Reads what the kernel has queued, at most `most` bytes, without waiting,
/// into the rest of the buffers. `Some(result)` ends the call (EOF, an
/// error, full buffers); `None` goes on (to the offer, or waiting): some
/// bytes were read, or none were queued (errno is the kernel's `EAGAIN`).
fn take_kernel_bytes(
    call: &ReadCall<'_>,
    most: u64,
    got: &mut u64,
    cursor: &mut Cursor<'_>,
    tally: &mut Tally,
) -> Option<isize> {
    let flags = (call.flags & !libc::MSG_WAITALL) | libc::MSG_DONTWAIT;
    // SAFETY: the caller's buffers, from byte `got` on.
    let r = unsafe { call.kernel_from(*got, most, flags) };
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
