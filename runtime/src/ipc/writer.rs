//! The writer's side (docs/ipc-protocol.md, "One offer"): find the reader's
//! ring over the side channel; offer the bytes when the ring says the
//! reader will take them (it waits inside a read, or polls the socket
//! through the library, or is streaming), place them and wait while it
//! takes them; otherwise, and for whatever it did not take, kernel pieces.
//! A nonblocking write whose socket has room for it goes to the kernel
//! instead ([`kernel_has_room`]). The same for sockets and pipes, but for
//! the questions [`Endpoint`] answers.

use std::time::{Duration, Instant};

use ipc_offload_engine::Fallback;
use ipc_offload_policy::Class;
use ipc_offload_ring::offer::Staging;
use ipc_offload_ring::{self as ring, Abort, Cursor, Presence, Ring};
use ipc_offload_sys::mem::OwnedFd;
use ipc_offload_sys::{net, pipe, tcp};

use super::behind;
use super::call::WriteCall;
use super::channel::{self, Channel, Role, Writer};
use super::ctx::{Ctx, PATIENCE_BLOCKING, PATIENCE_NONBLOCKING, Tally};
use super::endpoint::{Endpoint, Family};
use super::hint::{self, Dir, Why};
use super::side::{self, Message};
use crate::state;

/// Largest piece sent through the kernel between two looks at the ring.
const PIECE: u64 = 256 << 10;
/// Longest a write waits, every byte taken, for its reader to finish
/// copying the last (a reader stopped mid-copy): then the write returns,
/// and the next offer waits until the room is free.
const DRAIN: Duration = Duration::from_millis(20);
/// A reader that took bytes of an offer this recently is streaming: it
/// comes back to its reads, and the next offer is made without waiting to
/// see it inside one.
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
    // The file's flags, read when an offer is in sight: a write to a socket
    // whose reader never opted in goes to the kernel without them. A
    // pipe's are read at once: send, sendto and sendmsg on a pipe, and
    // writes on its read end, go to the kernel (ENOTSOCK, EBADF) before
    // anything else.
    let mut mode = (at.family == Family::Pipe).then(|| WriteMode::of(call, at));
    let pipe_misuse = mode.is_some_and(|m| !call.is_plain() || !m.write_end);
    // MSG_ZEROCOPY: the program waits for the kernel's completion
    // notifications on the error queue, which only the kernel sends.
    let kernel_flags = libc::MSG_OOB | libc::MSG_ZEROCOPY;
    if call.has_control()
        || call.has_address()
        || call.flags & kernel_flags != 0
        || call.iov.len() > super::call::MAX_IOV
        || pipe_misuse
    {
        // (Write-behind: `ipc::write` settled the offers this call must
        // come after, this fd's and, for one that passes fds, all.)
        return tally.kernel_write(Fallback::Unsupported, call);
    }
    let (mut ch, channel_index) = match channel::lock_near(at, Role::Writer, super::route::slot(call.fd, Dir::Write)) {
        Ok((ch, index)) => {
            if !super::route::write_routed(call.fd) {
                super::route::set_writer(call.fd, index);
            }
            (ch, index)
        }
        Err(_) => return tally.kernel_write(Fallback::Busy, call),
    };
    if matches!(*ch, Channel::Empty) {
        // A new connection earns the fast path: its first
        // `handshake_after` bytes go through the kernel in whole calls
        // (docs/ipc-protocol.md, "A connection earns the fast path").
        *ch = Channel::Writer(Writer::new(at, BACKOFF_FIRST, ctx.handshake_after));
    }
    let Channel::Writer(writer) = &mut *ch else { return tally.kernel_write(Fallback::Busy, call) };
    if writer.behind.is_some() {
        // The offer the last write left open ends before this write's
        // first byte goes anywhere (`ipc::write` grew it, or settled it,
        // already: this one is left by a write of another thread meanwhile).
        let blocking = mode.get_or_insert_with(|| WriteMode::of(call, at)).blocking;
        let (patience, push) = behind::mode(blocking);
        if let Err(stuck) = behind::settle(writer, patience, push) {
            return tally.error(Fallback::NotTaken, stuck.errno());
        }
    }
    let len = call.length();
    let mut sent = 0u64;
    let mut cursor = Cursor::new(call.iov);
    while sent < len {
        if writer.ring.is_none() {
            take_offers(writer, ctx);
        }
        if writer.ring.is_none() && writer.unearned > 0 {
            // Not earned yet: the kernel's call, whole, up to what is left
            // to earn.
            tally.reason(Fallback::NoPeer);
            let asked = writer.unearned.min(len - sent);
            // SAFETY: the caller's buffers.
            let n = match unsafe { kernel_piece(call, at, sent, asked, tally) } {
                Ok(n) => n,
                Err(ret) => {
                    note_short(writer, ret, len);
                    return ret;
                }
            };
            sent += n;
            cursor.advance(n);
            writer.unearned -= n;
            if n < asked {
                break;
            }
            continue;
        }
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
                    hint_kernel(call.fd, Dir::Write, ctx.class, Why::NoPeer, ttl);
                }
                return tally.kernel_write(Fallback::NoPeer, call);
            }
            tally.reason(Fallback::NoPeer);
        } else {
            let blocking = mode.get_or_insert_with(|| WriteMode::of(call, at)).blocking;
            let small = !blocking && reads_small(writer, ctx);
            if small || (!blocking && kernel_has_room(call.fd, at, len - sent, writer, ctx)) {
                // The kernel's write returns at once, or as soon as the
                // socket is full; an offer would hold the caller until its
                // reader came and took the bytes (a reader of small buffers:
                // in as many calls).
                tally.reason(if small { Fallback::SmallReads } else { Fallback::KernelRoom });
                let r = finish_with_kernel(call, at, sent, len - sent, tally);
                note_short(writer, r, len);
                // As after a refused offer: a reader that let the ring go
                // is noticed, and its mapping dropped.
                check_reader(writer, ctx);
                return r;
            }
            match offer(call, at, writer, &mut cursor, sent, len - sent, blocking, ctx, tally, channel_index) {
                Offered::Sent(n) if n > 0 => {
                    sent += n;
                    if !blocking {
                        // One offer per call: the caller comes back, as it
                        // would after a partial write.
                        note_short(writer, sent as isize, len);
                        return tally.fast_done(sent);
                    }
                    continue;
                }
                Offered::Sent(_) => {
                    // Not taken: the kernel's turn (a blocking writer
                    // looks at the reader again after the piece).
                }
                Offered::Refused(Fallback::SocketError | Fallback::NoReaders) => {
                    // Shut down, no peer, no reader: the kernel reports it
                    // (EPIPE, SIGPIPE).
                    return finish_with_kernel(call, at, sent, len - sent, tally);
                }
                Offered::Refused(reason) => {
                    tally.reason(reason);
                    if reason == Fallback::NotWaiting {
                        check_reader(writer, ctx);
                    }
                }
            }
        }
        // A piece through the kernel, from where the write stands.
        let asked = PIECE.min(len - sent);
        let reads = writer.ring.as_ref().map(|(ring, _)| ring.presence().reads);
        // SAFETY: the caller's buffers.
        let piece = unsafe { kernel_piece(call, at, sent, asked, tally) };
        if let (Some(before), Some((ring, _))) = (reads, &writer.ring) {
            let after = ring.presence().reads;
            writer.read_meanwhile = after != before;
            writer.reads_after_piece = Some(after);
        }
        let n = match piece {
            Ok(n) => n,
            Err(ret) => {
                note_short(writer, ret, len);
                return ret;
            }
        };
        sent += n;
        cursor.advance(n);
        if n < asked {
            // The kernel took less than offered: a nonblocking socket or
            // pipe is full, or a blocking write was cut short by a signal
            // or SO_SNDTIMEO. Its write would return here too.
            break;
        }
    }
    note_short(writer, sent as isize, len);
    tally.fast_done(sent)
}

/// Sends bytes `[sent, sent + asked)` of the call through the kernel:
/// `Ok(n)`, n bytes went (fewer than asked: the socket is full, or a
/// signal or a timeout cut the call short); `Err(ret)`, the call returns
/// `ret` now (what went before, or the kernel's error).
///
/// # Safety
/// As [`write`]; `sent + asked` within the call's length.
unsafe fn kernel_piece(
    call: &WriteCall<'_>,
    at: Endpoint,
    sent: u64,
    asked: u64,
    tally: &mut Tally,
) -> Result<u64, isize> {
    // SAFETY: forwarded contract.
    let r = unsafe { call.kernel_piece(sent, asked, at.family, sent > 0) };
    if r <= 0 {
        return Err(if sent > 0 { tally.fast_done(sent) } else { tally.kernel_result(r) });
    }
    tally.kernel_bytes(r as u64);
    Ok(r as u64)
}

/// Notes whether a write of `len` bytes that returns `ret` came back short
/// (the program comes back with the rest); a failure (`EAGAIN`: it comes
/// back after `POLLOUT`) leaves the note as it was.
fn note_short(writer: &mut Writer, ret: isize, len: u64) {
    if ret >= 0 {
        writer.short = (ret as u64) < len;
    }
}

/// Whether the `rest` of a nonblocking write goes to the kernel rather
/// than to an offer (docs/ipc-protocol.md, "When a writer offers"): its
/// socket has room for all of it, the class does not leave offers behind
/// (write-behind returns as soon as the bytes are placed), and the last
/// large write on the socket (through any of its fds) did not return short
/// (the rest of a message that did not fit stays with the offers; a write
/// below the hooks' lowest threshold, or one a standing hint sends to the
/// kernel, leaves that note as it was).
fn kernel_has_room(fd: i32, at: Endpoint, rest: u64, writer: &Writer, ctx: &Ctx) -> bool {
    !writer.short && !ctx.write_behind && at.family != Family::Pipe && net::send_room(fd).is_ok_and(|room| room >= rest)
}

/// Whether a nonblocking writer without write-behind leaves its reader to
/// the kernel because the reader's last read through the library asked for
/// less than the threshold (docs/ipc-protocol.md, "Readers with small
/// buffers"): an offer would hold the writer for one of its reader's calls
/// per buffer, where the kernel's write returns once the socket is full.
fn reads_small(writer: &Writer, ctx: &Ctx) -> bool {
    let Some((ring, _)) = &writer.ring else { return false };
    let len = ring.presence().read_len;
    !ctx.write_behind && len > 0 && len < ctx.min_bytes
}

/// What an attempt at an offer came to.
enum Offered {
    /// The reader took this many bytes (maybe 0, with the reason counted).
    Sent(u64),
    /// No offer was made, for this reason: a kernel piece goes instead.
    Refused(Fallback),
}

/// Offers bytes `[sent, sent + rest)` of the call if the reader will take
/// them, and waits while it does.
#[allow(clippy::too_many_arguments)]
fn offer<'a>(
    call: &WriteCall<'a>,
    at: Endpoint,
    writer: &mut Writer,
    cursor: &mut Cursor<'a>,
    sent: u64,
    rest: u64,
    blocking: bool,
    ctx: &Ctx,
    tally: &mut Tally,
    channel_index: usize,
) -> Offered {
    let Some((ring, _)) = &writer.ring else { return Offered::Refused(Fallback::NoPeer) };
    let presence = ring.presence();
    let take = will_take(writer, &presence);
    writer.read_meanwhile = false;
    writer.reads_after_piece = None;
    if !take {
        return Offered::Refused(Fallback::NotWaiting);
    }
    if let Err(reason) = at.can_write(call.fd) {
        return Offered::Refused(reason);
    }
    // A nonblocking writer offers at most what the ring holds: it then
    // never waits for the reader to free room, only (a bounded while) for
    // it to take, so a reader that stops cannot hold its write for long.
    let capacity = ring.geometry().capacity();
    let most = if blocking { rest } else { rest.min(capacity) }.min(ring::MAX_OFFER);
    if writer.side.is_none() {
        // WAKEs go from the side-channel socket (dropped after a refused
        // REQUEST).
        writer.side = net::dgram_socket().ok().filter(|s| net::autobind(s.raw()).is_ok());
    }
    let Some((ring, _)) = &writer.ring else { return Offered::Refused(Fallback::NoPeer) };
    // TCP delivers the kernel's bytes after their write returned: the offer
    // says where it starts in the stream, and the reader waits for the
    // kernel's bytes before it (docs/ipc-protocol.md, "TCP over loopback").
    let before = match at.family {
        Family::Tcp => match tcp::bytes_written(call.fd) {
            Ok(n) => n,
            Err(_) => return Offered::Refused(Fallback::Unsupported),
        },
        Family::Unix | Family::Pipe => 0,
    };
    // Write-behind (docs/ipc-protocol.md, "Write-behind (opt-in)"): on a
    // Unix socket only when none of its bytes is unread in the kernel, so
    // that the reader may take the offer before any byte the kernel holds;
    // over TCP the offer's stream position tells the reader which come
    // first. Pipes have no nonblocking send for the give-back.
    let behind = ctx.write_behind
        && !blocking
        && match at.family {
            Family::Unix => net::queued_out(call.fd) == Ok(0),
            Family::Tcp => true,
            Family::Pipe => false,
        };
    let before = if behind { before | ring::RING_FIRST } else { before };
    let Some(opened) = ring.try_open_after(most, ctx.pid, before) else { return Offered::Refused(Fallback::Busy) };
    let mut announce = Announce::new(writer, opened.seq);
    let mut placed = || announce.placed(ring);
    let reader = writer.reader.as_ref();
    // The reader's lifeline hangs up when it lets the ring go, execs (from
    // any thread: the pid lives on) or dies.
    let mut alive = || channel::alive(reader);
    let mut how = Staging {
        patience: if blocking { PATIENCE_BLOCKING } else { PATIENCE_NONBLOCKING },
        drain: DRAIN,
        alive: &mut alive,
        placed: &mut placed,
        behind,
    };
    let mut copier = ctx.writer_copier();
    let mut copy = copier.as_fn();
    // SAFETY: the cursor stands at byte `sent` of the caller's buffers and
    // opened.total <= rest bytes remain.
    let staged = unsafe { ring.stage(&opened, cursor, &mut copy, &mut how) };
    if !staged.behind {
        ring.close(&opened);
    }
    drop(copy);
    tally.copied(&copier, staged.sent);
    if staged.placed != staged.sent {
        // The cursor went past bytes the reader did not take: the rest
        // starts from the count.
        *cursor = Cursor::new(call.iov);
        cursor.advance(sent + staged.sent);
    }
    match staged.abort {
        None => {
            writer.streaming_until = Some(Instant::now() + STREAMING);
            writer.declined = None;
        }
        Some(Abort::Withdrawn) => {
            tally.reason(Fallback::NotTaken);
            if staged.sent > 0 {
                writer.streaming_until = Some(Instant::now() + STREAMING);
            } else {
                // Not offered again until it reads through the library
                // again (or waits inside a read).
                writer.streaming_until = None;
                writer.declined = Some(ring.presence().reads);
            }
        }
        Some(abort) => {
            // The reader went away, or wrote garbage: this ring is done.
            tally.cut_short(if abort == Abort::Corrupt { Fallback::Corrupt } else { Fallback::PeerGone });
            forget_ring(writer);
            writer.side = None;
        }
    }
    if staged.behind {
        behind::leave(writer, opened, call.fd, channel_index, ctx.pid);
    }
    Offered::Sent(staged.sent)
}

/// Tells the reader of placed steps: a reader asleep in a read needs one
/// WAKE; one in an event loop's wait needs one per wait it enters (woken,
/// it takes the steps that follow, and waits again only when it has taken
/// all there was).
struct Announce {
    side: Option<i32>,
    to: net::AbstractAddr,
    seq: u32,
    announced: bool,
    woken_wait: Option<u32>,
}

impl Announce {
    fn new(writer: &Writer, seq: u32) -> Announce {
        let side = writer.side.as_ref().map(OwnedFd::raw);
        Announce { side, to: side::reader_name(writer.target), seq, announced: false, woken_wait: None }
    }

    /// After a step of offer `seq` was placed in `ring`.
    fn placed(&mut self, ring: &Ring) {
        let now = ring.presence();
        let for_wait = now.listening > 0 && self.woken_wait != Some(now.waits);
        if for_wait || (now.asleep && !self.announced) {
            self.announced = true;
            self.woken_wait = Some(now.waits);
            if let Some(side) = self.side {
                let (msg, len) = Message::Wake { seq: self.seq }.encode();
                let _ = net::send_dgram(side, &self.to, &msg[..len], &[]);
            }
        }
    }
}

/// Write-behind: a nonblocking write adds its bytes to the offer the last
/// write left open, as far as the ring has room for them now, instead of
/// waiting for the reader to take that offer first (docs/ipc-protocol.md,
/// "Write-behind (opt-in)", "Growing an offer behind"). Only while nothing
/// went through the kernel after the offer opened (an unhooked write: a
/// Unix socket's own bytes unread in the kernel, a TCP socket's count
/// moved past the offer's start), through the same fd, on a socket that
/// can still send. Returns the bytes added: 0, and the offer is settled
/// as before.
pub fn extend_behind(call: &WriteCall<'_>, at: Endpoint, writer: &mut Writer, ctx: &Ctx, tally: &mut Tally) -> u64 {
    let (Some(b), Some((ring, _))) = (writer.behind.as_ref(), &writer.ring) else { return 0 };
    if b.given_back.is_some() || b.handed_off() || b.fd != call.fd {
        return 0;
    }
    let quiet = match at.family {
        Family::Unix => net::queued_out(call.fd) == Ok(0),
        Family::Tcp => tcp::bytes_written(call.fd).is_ok_and(|n| n == ring.stream_before()),
        Family::Pipe => false,
    };
    // An offer its reader has taken in full is closed instead, and the
    // write opens the next (measured: redis-benchmark's requests, each
    // written after the last was taken, ran 15% slower grown than anew).
    let pending = ring.open_offer().is_some_and(|o| o.seq == b.offer.seq && o.taken < o.total);
    if !pending || !quiet || at.can_write(call.fd).is_err() {
        return 0;
    }
    let mut announce = Announce::new(writer, b.offer.seq);
    let Some(b) = writer.behind.as_mut() else { return 0 };
    let mut copier = ctx.writer_copier();
    let mut copy = copier.as_fn();
    let mut cursor = Cursor::new(call.iov);
    // SAFETY: the cursor stands at the call's first byte, and the call's
    // buffers hold `length()` readable bytes.
    let added =
        unsafe { ring.extend(&mut b.offer, &mut cursor, call.length(), &mut copy, &mut || announce.placed(ring)) };
    drop(copy);
    tally.copied(&copier, added);
    if added > 0 {
        behind::extended(at.family);
    }
    added
}

/// Whether the reader will take an offer now, from what the ring says: it
/// waits inside a blocking read, or polls the socket through the library,
/// or took bytes of the last offer a moment ago (it comes back), or read
/// through the library while this writer's last kernel piece was in the
/// kernel, or since (a reader in another process): it drains what the
/// kernel holds, and reads on; unless it left one untaken since its last
/// read through the library.
pub fn will_take(writer: &Writer, presence: &Presence) -> bool {
    // A reader that left an offer untaken is offered again once it reads
    // through the library again (a read bumps `reads`, a real wait in a
    // read included): words it jams, or reads that go around the library,
    // cost a writer one patience, not one per write.
    if writer.declined == Some(presence.reads) {
        return false;
    }
    let streaming = writer.streaming_until.is_some_and(|t| Instant::now() < t);
    let read_since = writer.reader_elsewhere && writer.reads_after_piece.is_some_and(|r| r != presence.reads);
    presence.want > 0 || presence.listening > 0 || streaming || writer.read_meanwhile || read_since
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
            Family::Unix | Family::Tcp => (net::is_blocking(call.fd).unwrap_or(false), true),
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

/// The reader did not come: is it still the reader of this ring? One that
/// exited, exec'd or closed the socket leaves a ring nobody will take from;
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
    writer.streaming_until = None;
    writer.declined = None;
    writer.read_meanwhile = false;
    writer.reads_after_piece = None;
    writer.unanswered = false;
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
        Err(ipc_offload_sys::Errno(libc::ECONNREFUSED)) => {
            // Nobody opted in.
            writer.side = None;
            writer.unanswered = false;
            writer.next_request = Some(now + writer.backoff);
            writer.backoff = (writer.backoff * 2).min(BACKOFF_MAX);
        }
        // Delivered, or the reader's queue is full (it is there, busy).
        _ => {
            // (A writer that holds a ring asks now and then whether its
            // reader is still there: not a REQUEST for a ring.)
            if writer.ring.is_none() {
                if writer.unanswered {
                    // The last one went unanswered too: whole kernel calls
                    // until an OFFER comes.
                    writer.backoff = BACKOFF_MAX;
                }
                writer.unanswered = true;
            }
            writer.next_request = Some(now + BACKOFF_MAX);
        }
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
        let Ok(st) = ipc_offload_sys::mem::fstat(memfd.raw()) else { continue };
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
        writer.reader_elsewhere = ring.reader_pid() != ctx.pid;
        writer.ring = Some((ring, offer.memfd_ino));
        writer.backoff = BACKOFF_FIRST;
        writer.unanswered = false;
        // It answered from inside a read or a poll of the library: it is
        // about to read this very write's bytes.
        writer.streaming_until = Some(Instant::now() + STREAMING);
        writer.declined = None;
    }
}

/// Sends `fd`'s large calls in direction `dir` to the kernel path for
/// `ttl`, as `why` (see [`hint`]).
fn hint_kernel(fd: i32, dir: Dir, class: Class, why: Why, ttl: Duration) {
    if let Some(settings) = state::get() {
        hint::set(fd, dir, class, why, hint::after(hint::now_ms(settings.started), ttl));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> Writer {
        Writer::new(Endpoint::socket(0x7777_0101), BACKOFF_FIRST, 0)
    }

    #[test]
    fn a_reader_inside_a_read_or_a_wait_is_offered_to() {
        let w = writer();
        assert!(!will_take(&w, &Presence::default()), "a reader nowhere to be seen");
        assert!(will_take(&w, &Presence { want: 1 << 20, ..Presence::default() }));
        assert!(will_take(&w, &Presence { listening: 1, ..Presence::default() }));
        let mut streaming = writer();
        streaming.streaming_until = Some(Instant::now() + STREAMING);
        assert!(will_take(&streaming, &Presence::default()));
    }

    #[test]
    fn a_reader_that_drains_the_kernel_meanwhile_is_offered_to() {
        let mut w = writer();
        w.read_meanwhile = true;
        assert!(will_take(&w, &Presence::default()), "it read while the piece was in the kernel");
        // Reads since the last piece count for a reader in another process
        // only: this very thread may be the reader of its own socket pair.
        let mut w = writer();
        w.reads_after_piece = Some(7);
        assert!(!will_take(&w, &Presence { reads: 8, ..Presence::default() }));
        w.reader_elsewhere = true;
        assert!(will_take(&w, &Presence { reads: 8, ..Presence::default() }));
        assert!(!will_take(&w, &Presence { reads: 7, ..Presence::default() }), "no read since");
    }

    #[test]
    fn an_untaken_offer_voids_every_reason_until_the_reader_reads_again() {
        let mut w = writer();
        w.declined = Some(3);
        w.read_meanwhile = true;
        w.streaming_until = Some(Instant::now() + STREAMING);
        let waiting = Presence { want: 1, listening: 1, reads: 3, ..Presence::default() };
        assert!(!will_take(&w, &waiting));
        assert!(will_take(&w, &Presence { reads: 4, ..waiting }));
    }
}
