//! The writer's side of a rendezvous (docs/ipc-protocol.md, "One
//! rendezvous"): find the reader's ring over the side channel, claim the
//! reader when it waits and every kernel byte is consumed, fill slots; in
//! between, and whenever the rendezvous is not possible, kernel pieces.
//! The same for sockets and pipes, but for the questions [`Endpoint`]
//! answers.

use std::time::{Duration, Instant};

use ipc_offload_engine::engine::Fallback;
use ipc_offload_engine::ipc::ring::{Abort, Cursor, Ring};
use ipc_offload_engine::sys::mem::OwnedFd;
use ipc_offload_engine::sys::{Errno, net, pipe};

use super::call::WriteCall;
use super::channel::{self, Channel, Role, Writer};
use super::endpoint::{Endpoint, Family};
use super::hint::{Dir, Why};
use super::side::{self, Message};
use super::{Ctx, Tally};

/// Largest piece sent through the kernel between two looks at the ring.
const PIECE: u64 = 256 << 10;
/// How long a blocking writer waits for the reader to come back to a read
/// before it sends a kernel piece: briefly for a reader it has not met
/// lately, longer for one that is streaming (a blocking write would wait for
/// such a reader in the kernel anyway, once the socket buffer is full).
const PATIENCE: Duration = Duration::from_micros(200);
const PATIENCE_STREAMING: Duration = Duration::from_millis(20);
/// Longest a nonblocking write waits for its reader to copy the last slots.
const DRAIN_NONBLOCKING: Duration = Duration::from_millis(20);
/// A reader that ended a transfer (or offered its ring) this recently is
/// streaming.
const STREAMING: Duration = Duration::from_millis(50);
/// First and longest pause between REQUESTs to a socket whose reader has
/// not opted in.
const BACKOFF_FIRST: Duration = Duration::from_millis(1);
const BACKOFF_MAX: Duration = Duration::from_millis(100);

/// A large write on the socket or pipe `at`.
///
/// # Safety
/// The call's buffers valid for reading, as for the libc function.
pub unsafe fn write(call: &WriteCall<'_>, at: Endpoint, ctx: &Ctx, tally: &mut Tally) -> isize {
    // The file's flags, read when a rendezvous is in sight: a write to a
    // socket whose reader never opted in goes to the kernel without them.
    // A pipe's are read at once: send, sendto and sendmsg on a pipe, and
    // writes on its read end, go to the kernel (ENOTSOCK, EBADF) before
    // anything else.
    let mut mode = (at.family == Family::Pipe).then(|| WriteMode::of(call, at));
    let pipe_misuse = mode.is_some_and(|m| !call.is_plain() || !m.write_end);
    if call.has_control() || call.flags & libc::MSG_OOB != 0 || call.iov.len() > super::call::MAX_IOV || pipe_misuse {
        return tally.kernel_write(Fallback::Unsupported, call);
    }
    let mut ch = match channel::lock(at, Role::Writer) {
        Ok(ch) => ch,
        Err(_) => return tally.kernel_write(Fallback::Busy, call),
    };
    if matches!(*ch, Channel::Empty) {
        *ch = Channel::Writer(Writer::new(at, BACKOFF_FIRST));
    }
    let Channel::Writer(writer) = &mut *ch else { return tally.kernel_write(Fallback::Busy, call) };
    let len = call.length();
    let mut sent = 0u64;
    let mut cursor = Cursor::new(call.iov);
    while sent < len {
        take_offers(writer, ctx);
        if writer.ring.is_none() {
            request(writer, ctx);
            if sent == 0 && writer.backoff >= BACKOFF_MAX {
                // A reader that never opted in: exactly the kernel's call.
                // Until the next REQUEST is due, the next ones skip the
                // checks.
                if writer.side.is_none()
                    && let Some(due) = writer.next_request
                {
                    let ttl = due.saturating_duration_since(Instant::now());
                    super::hint_kernel(call.fd, Dir::Write, ctx.class, Why::NoPeer, ttl);
                }
                return tally.kernel_write(Fallback::NoPeer, call);
            }
            tally.reason(Fallback::NoPeer);
        } else {
            let WriteMode { blocking, .. } = *mode.get_or_insert_with(|| WriteMode::of(call, at));
            if let Err(reason) = at.can_write(call.fd) {
                // Shut down, no peer, no reader: the kernel reports it
                // (EPIPE, SIGPIPE).
                tally.reason(reason);
                return finish_with_kernel(call, at, sent, len - sent, tally);
            }
            let streaming = writer.reader_active.is_some_and(|t| t.elapsed() < STREAMING);
            let patience = if streaming { PATIENCE_STREAMING } else { PATIENCE };
            if claimable(call.fd, writer) || (blocking && wait_for_reader(call.fd, writer, patience)) {
                let result = transfer(writer, &mut cursor, len - sent, blocking, ctx, tally);
                if writer.ring.is_none() {
                    // Aborted: the cursor went past slots the reader never
                    // copied; the rest starts from the count.
                    cursor = Cursor::new(call.iov);
                    cursor.advance(sent + result.unwrap_or(0));
                }
                match result {
                    Ok(n) => {
                        sent += n;
                        continue;
                    }
                    Err(reason) => tally.reason(reason),
                }
            } else {
                tally.reason(Fallback::NotWaiting);
                check_reader(writer, ctx);
            }
        }
        // A piece through the kernel, from where the transfer stands.
        let asked = PIECE.min(len - sent);
        // SAFETY: the caller's buffers, bytes [sent, sent + asked).
        let r = unsafe { call.kernel_piece(sent, asked, at.family, sent > 0) };
        if r <= 0 {
            return if sent > 0 { tally.fast_done(sent) } else { tally.kernel_result(r) };
        }
        tally.kernel_bytes(r as u64);
        sent += r as u64;
        cursor.advance(r as u64);
        if (r as u64) < asked {
            // The kernel took less than offered: a nonblocking socket or
            // pipe is full, or a blocking write was cut short by a signal
            // or SO_SNDTIMEO. Its write would return here too.
            break;
        }
    }
    tally.fast_done(sent)
}

/// What a write may do, from the file's flags (fcntl(2) `F_GETFL`).
#[derive(Clone, Copy)]
struct WriteMode {
    /// The call may wait: no `O_NONBLOCK`, no `MSG_DONTWAIT`.
    blocking: bool,
    /// Not a pipe's read end (a pipe takes writes on its write end only;
    /// a socket is always true).
    write_end: bool,
}

impl WriteMode {
    fn of(call: &WriteCall<'_>, at: Endpoint) -> WriteMode {
        let (blocking, write_end) = match at.family {
            Family::Pipe => pipe::access(call.fd).map_or((false, false), |a| (a.blocking, a.write)),
            Family::Unix => (net::is_blocking(call.fd).unwrap_or(false), true),
        };
        WriteMode { blocking: blocking && call.flags & libc::MSG_DONTWAIT == 0, write_end }
    }
}

/// Sends the rest through the kernel in one call, returning the total.
fn finish_with_kernel(call: &WriteCall<'_>, at: Endpoint, sent: u64, rest: u64, tally: &mut Tally) -> isize {
    // SAFETY: the caller's buffers, bytes [sent, sent + rest).
    let r = unsafe { call.kernel_piece(sent, rest, at.family, sent > 0) };
    if r > 0 {
        tally.kernel_bytes(r as u64);
        tally.fast_done(sent + r as u64)
    } else if sent > 0 {
        tally.fast_done(sent)
    } else {
        tally.kernel_result(r)
    }
}

/// True when a reader waits and every byte this end sent through the
/// kernel has been read (so nothing written before can come after).
fn claimable(fd: i32, writer: &Writer) -> bool {
    writer.ring.as_ref().is_some_and(|(ring, _)| ring.reader_waiting()) && writer.target.unread_written(fd) == Ok(0)
}

/// The reader did not come: is it still the reader of this ring? One that
/// exited, exec'd or closed the socket leaves a ring nobody will wait on;
/// drop it, so that the next reader's ring can be had.
fn check_reader(writer: &mut Writer, ctx: &Ctx) {
    if !channel::alive(writer.reader.as_ref()) {
        forget_ring(writer);
        return;
    }
    // Alive: ask again now and then; a refusal means its opt-in is gone
    // (exec, close), an OFFER of another ring means a new reader.
    if writer.next_request.is_none_or(|t| Instant::now() >= t) {
        request(writer, ctx);
        if writer.side.is_none() {
            forget_ring(writer);
        }
    }
}

fn forget_ring(writer: &mut Writer) {
    writer.ring = None;
    writer.reader = None;
    writer.next_request = None;
    writer.backoff = BACKOFF_FIRST;
}

/// Waits up to `patience` for the reader to drain the kernel queue and wait.
fn wait_for_reader(fd: i32, writer: &Writer, patience: Duration) -> bool {
    let Some((ring, _)) = &writer.ring else { return false };
    let deadline = Instant::now() + patience;
    loop {
        let now = Instant::now();
        if now >= deadline || !ring.wait_for_reader(deadline - now) {
            return false;
        }
        if writer.target.unread_written(fd) == Ok(0) {
            return true;
        }
        // The reader waits while our kernel bytes are still queued: it is
        // about to see them and read them first. Give it a moment.
        ipc_offload_engine::sys::sched_yield();
    }
}

/// One rendezvous: claim, wake, fill; the bytes placed in slots. Fails if
/// the reader withdrew first (`reader-not-waiting`), or vanished before
/// anything moved (`peer-gone`; the ring is then dropped).
fn transfer(
    writer: &mut Writer,
    cursor: &mut Cursor<'_>,
    rest: u64,
    blocking: bool,
    ctx: &Ctx,
    tally: &mut Tally,
) -> Result<u64, Fallback> {
    let (ring, _) = writer.ring.as_ref().ok_or(Fallback::NoPeer)?;
    // A nonblocking writer claims at most what the ring holds: it then
    // never waits for the reader to empty a slot, only (at most
    // DRAIN_NONBLOCKING) for it to copy the last ones, so a reader that is
    // stopped cannot hold a nonblocking write (the kernel never does).
    let geometry = ring.geometry();
    let most = if blocking { rest } else { rest.min(u64::from(geometry.slots) * u64::from(geometry.slot_bytes)) };
    let claim = ring.try_claim(most, ctx.pid).ok_or(Fallback::NotWaiting)?;
    let (msg, len) = Message::Wake { ticket: claim.ticket }.encode();
    if let Some(side) = &writer.side {
        let _ = net::send_dgram(side.raw(), &side::reader_name(writer.target), &msg[..len], &[]);
    }
    let reader = writer.reader.as_ref();
    let mut copier = ctx.writer_copier();
    let mut copy = copier.as_fn();
    // The reader's lifeline hangs up when it lets the ring go, execs (from
    // any thread: the pid lives on) or dies.
    let mut alive = || channel::alive(reader);
    // A nonblocking write waits a bounded time for the reader to copy its
    // last slots; past that, what it placed counts as sent.
    let drain = (!blocking).then_some(DRAIN_NONBLOCKING);
    // SAFETY: the cursor stands at byte `sent` of the caller's buffers and
    // claim.total <= rest bytes remain.
    let (n, abort) = unsafe { ring.send(&claim, ctx.pid, cursor, &mut copy, &mut alive, drain) };
    drop(copy);
    tally.copied(&copier, n);
    if abort.is_some() {
        // The reader went away, gave up or wrote garbage: this ring is done.
        tally.cut_short(if abort == Some(Abort::Corrupt) { Fallback::Corrupt } else { Fallback::PeerGone });
        forget_ring(writer);
        writer.side = None;
    } else {
        writer.reader_active = Some(Instant::now());
    }
    if n == 0 && matches!(abort, Some(Abort::PeerGone | Abort::Withdrawn)) { Err(Fallback::PeerGone) } else { Ok(n) }
}

/// Sends a REQUEST unless backing off; a refusal (no reader bound the name)
/// doubles the back-off.
fn request(writer: &mut Writer, ctx: &Ctx) {
    let now = Instant::now();
    if writer.next_request.is_some_and(|t| now < t) {
        return;
    }
    if writer.side.is_none() {
        writer.side = net::dgram_socket().ok().filter(|s| net::autobind(s.raw()).is_ok());
    }
    let Some(side) = &writer.side else { return };
    let (msg, len) = Message::Request { writer_pid: ctx.pid, writer_ino: writer.target.ino32() }.encode();
    match net::send_dgram(side.raw(), &side::reader_name(writer.target), &msg[..len], &[]) {
        Err(Errno(libc::ECONNREFUSED)) => {
            // Nobody opted in.
            writer.side = None;
            writer.next_request = Some(now + writer.backoff);
            writer.backoff = (writer.backoff * 2).min(BACKOFF_MAX);
        }
        // Delivered, or the reader's queue is full (it is there, busy).
        _ => writer.next_request = Some(now + BACKOFF_MAX),
    }
}

/// An OFFER as it arrived: the ring's memfd, its lifeline, and what was
/// said of them.
struct Offer {
    memfd: OwnedFd,
    memfd_ino: u64,
    lifeline: OwnedFd,
    ring_bytes: u64,
    reader_pid: i32,
}

/// The next OFFER queued on `side` from a process of our uid; anything else
/// queued before it is dropped.
fn next_offer(side: i32, ctx: &Ctx) -> Option<Offer> {
    let mut buf = [0u8; side::MAX_LEN];
    loop {
        let d = net::recv_dgram(side, &mut buf).ok()?;
        let (Some(creds), [Some(memfd), Some(lifeline)]) = (d.creds, d.fds) else { continue };
        if creds.uid != ctx.euid || d.truncated {
            continue;
        }
        let Some(Message::Offer { ring_bytes }) = Message::decode(&buf[..d.len]) else { continue };
        let Ok(st) = ipc_offload_engine::sys::mem::fstat(memfd.raw()) else { continue };
        return Some(Offer { memfd, memfd_ino: st.ino, lifeline, ring_bytes, reader_pid: creds.pid });
    }
}

/// Picks up OFFERs: the reader's ring, checked and mapped.
fn take_offers(writer: &mut Writer, ctx: &Ctx) {
    let Some(side) = writer.side.as_ref().map(OwnedFd::raw) else { return };
    while let Some(offer) = next_offer(side, ctx) {
        if writer.ring.as_ref().is_some_and(|(_, ino)| *ino == offer.memfd_ino) {
            continue; // the ring it has: the reader answered a probe
        }
        let Ok(mut ring) = Ring::attach(offer.memfd.raw(), ctx.euid, writer.target.ino32()) else { continue };
        ring.set_spin(ctx.spin);
        if ring.geometry().ring_bytes() != offer.ring_bytes || ring.reader_pid() != offer.reader_pid {
            continue;
        }
        writer.reader = Some(offer.lifeline);
        writer.ring = Some((ring, offer.memfd_ino));
        writer.backoff = BACKOFF_FIRST;
        // It answered from inside a large read, and is draining the kernel
        // bytes of this very write: wait for it as for a streaming reader,
        // rather than send it more kernel pieces.
        writer.reader_active = Some(Instant::now());
    }
}
