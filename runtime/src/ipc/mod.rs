//! The shared-memory fast path for Unix stream sockets, pipes and FIFOs
//! (docs/ipc-protocol.md): the slow paths of the read/write hooks, the
//! close hooks' bookkeeping, and the fork child's reset.
//!
//! - [`call`]: the application's call, and the kernel path.
//! - [`ahead`]: faulting in a large read's fresh buffer ahead of the copy.
//! - [`endpoint`]: socket or pipe, its identity and its kernel questions.
//! - [`reader`], [`writer`]: the two sides of a rendezvous.
//! - [`side`]: side-channel datagrams; [`channel`]: per-direction state;
//!   [`table`]: the per-fd table and try-locks; [`hint`]: per-fd decisions
//!   for the kernel path, kept a short while; [`route`]: the per-fd word
//!   the read hooks load first; [`quick`]: the calls answered from those
//!   tables; [`watch`]: what an event loop's wait needs from a channel.

mod ahead;
pub mod call;
pub mod channel;
pub mod endpoint;
pub mod hint;
mod quick;
pub mod reader;
pub mod route;
pub mod side;
pub mod table;
pub mod watch;
mod writer;

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::panic::{AssertUnwindSafe, catch_unwind};

use core::time::Duration;
use ipc_offload_engine::cache::{self, Dest};
use ipc_offload_engine::stats;
use ipc_offload_engine::{self as engine, CopyOptions, EngineId, Fallback};
use ipc_offload_policy::{Cache, Class, Wait};
use ipc_offload_ring::{self as ring, Geometry};
use ipc_offload_sys::{self as sys, Errno, mem, net};

use crate::guard::Inside;
use crate::{process, state};
use call::{ReadCall, WriteCall};
use endpoint::{Endpoint, Family};
use hint::{Dir, Why};
use table::{FdInfo, FdKind, FdTable};

/// What the process knows of its fds.
pub static FDS: FdTable = FdTable::new();

/// The geometry of the rings a class creates: `depth` slots of
/// `chunk_bytes` (the mode's, unless the section sets them). A slot is the
/// pipelining step (the reader copies one while the writer fills the
/// next): `throughput`'s 256 KiB takes 10-30 µs to copy, long enough to
/// hide a hand-over, short enough to start the reader early.
fn geometry(rule: &ipc_offload_policy::Rule) -> Geometry {
    Geometry {
        slots: rule.depth.clamp(1, ring::MAX_SLOTS),
        slot_bytes: u32::try_from(rule.chunk_bytes).unwrap_or(u32::MAX).min(ring::MAX_SLOT_BYTES),
    }
}

/// How long an end of a transfer polls before it sleeps, by its class's
/// `wait`: `spin` 2 ms (then it sleeps, so that a peer that stopped costs
/// nothing), `sleep` 20 µs (about the price of a sleep: see
/// [`ring::SLEEP_POLL`]), the others 50 µs (a cross-CPU futex wake costs
/// tens of µs here).
fn spin(wait: Wait) -> Duration {
    match wait {
        Wait::Spin => Duration::from_millis(2),
        Wait::Sleep => ring::SLEEP_POLL,
        Wait::SpinThenSleep | Wait::Umwait | Wait::Yield => ring::SPIN,
    }
}

/// This process's effective uid, read once at start-up.
static EUID: AtomicU32 = AtomicU32::new(u32::MAX);

/// Reads the effective uid (from the constructor).
pub fn init() {
    EUID.store(net::geteuid(), Relaxed);
}

/// Everything a transfer needs from the process's settings.
#[derive(Debug)]
pub struct Ctx {
    /// The class of the fd (`unix` or `pipe`).
    pub class: Class,
    /// Calls below this take the kernel path, uncounted (the class's
    /// `min_bytes`; for pipes above `PIPE_BUF`, see [`threshold`])
    pub min_bytes: u64,
    /// Effective uid: peers must share it.
    pub euid: u32,
    /// This process's pid.
    pub pid: i32,
    /// Geometry of rings this process creates.
    pub geometry: Geometry,
    /// How long this end polls before it sleeps.
    pub spin: Duration,
    /// Where the class's copies put their bytes (`cache`).
    pub cache: Cache,
    /// Under `cache = "auto"`, reads this large or larger bypass the cache.
    pub cache_limit: u64,
    /// The `ring_bytes` budget.
    pub ring_budget: u64,
    /// How ring copies are made.
    pub opts: CopyOptions,
}

impl Ctx {
    /// The settings of `class`, if it is on.
    pub fn current(class: Class) -> Option<Ctx> {
        let settings = state::get()?;
        let opts = settings.options[class.index()]?;
        let rule = &settings.plan.class(class).rule;
        Some(Ctx {
            class,
            min_bytes: threshold(class, rule.min_bytes),
            euid: EUID.load(Relaxed),
            // `guarded` checked that this process owns the state.
            pid: crate::process::owner_pid(),
            geometry: geometry(rule),
            spin: spin(opts.wait),
            cache: rule.cache,
            cache_limit: settings.plan.cache_limit,
            ring_budget: rule.ring_bytes,
            opts,
        })
    }

    /// A copier for the writer's side: into ring slots the reader copies
    /// out at once, so `auto` keeps them in the cache.
    pub fn writer_copier(&self) -> Copier {
        let cache_below = cache::cache_below(self.cache, Dest::RingChunk, self.cache_limit);
        Copier { opts: CopyOptions { cache_below, ..self.opts }, engine: self.opts.engine, bypassed: 0 }
    }

    /// A copier for the reader's side, into the buffers of a read call of
    /// `total` bytes: `auto` bypasses the cache when the read is at least
    /// the last-level cache's size (its bytes could not stay there anyway).
    pub fn reader_copier(&self, total: u64) -> Copier {
        let cache_below = cache::cache_below(self.cache, Dest::Read { total }, self.cache_limit);
        Copier { opts: CopyOptions { cache_below, ..self.opts }, engine: self.opts.engine, bypassed: 0 }
    }
}

/// Copies with the class's engine and remembers which engine did it.
#[derive(Debug)]
pub struct Copier {
    opts: CopyOptions,
    engine: EngineId,
    bypassed: u64,
}

impl Copier {
    /// Copies `n` bytes (disjoint ranges: a ring slot and a caller's buffer).
    ///
    /// # Safety
    /// As memcpy(3).
    pub unsafe fn copy(&mut self, dst: *mut u8, src: *const u8, n: usize) {
        // SAFETY: forwarded memcpy contract.
        let outcome = unsafe { engine::copy(dst, src, n, &self.opts) };
        self.engine = outcome.engine;
        if outcome.bypassed {
            self.bypassed += n as u64;
        }
    }

    /// The copy function a ring transfer calls.
    pub fn as_fn(&mut self) -> impl FnMut(*mut u8, *const u8, usize) + '_ {
        move |dst, src, n| {
            // SAFETY: a ring calls its copy function only with a slot range of
            // its mapping and a span of the caller's buffers (ring::CopyFn).
            unsafe { self.copy(dst, src, n) }
        }
    }

    /// The engine of the last copy.
    pub fn engine(&self) -> EngineId {
        self.engine
    }

    /// Bytes it wrote around the cache.
    pub fn bypassed(&self) -> u64 {
        self.bypassed
    }
}

/// The smallest call an IPC class serves. Pipe writes of at most
/// `PIPE_BUF` bytes are atomic (pipe(7)): the kernel path keeps them so,
/// whatever `min_bytes` says (a rendezvous could split one between two reads).
pub fn threshold(class: Class, min_bytes: u64) -> u64 {
    if class == Class::Pipe { min_bytes.max(libc::PIPE_BUF as u64 + 1) } else { min_bytes }
}

/// What one call did, for the stats and for errno.
#[derive(Debug)]
pub struct Tally {
    class: Class,
    /// Bytes that went through shared memory.
    pub fast: u64,
    kernel: u64,
    engine: Option<EngineId>,
    reason: Option<Fallback>,
    cut_short: bool,
}

impl Tally {
    /// Nothing done yet, for a call of `class`.
    pub fn new(class: Class) -> Tally {
        Tally { class, fast: 0, kernel: 0, engine: None, reason: None, cut_short: false }
    }

    /// Notes why (part of) the call took the kernel path.
    pub fn reason(&mut self, reason: Fallback) {
        self.reason.get_or_insert(reason);
    }

    /// Notes that a transfer ended early (the peer died, exec'd, or wrote
    /// garbage): counted under `reason` even if the call moved bytes through
    /// shared memory only.
    pub fn cut_short(&mut self, reason: Fallback) {
        self.reason = Some(reason);
        self.cut_short = true;
    }

    /// Notes bytes that went through shared memory, copied by `copier`.
    pub fn copied(&mut self, copier: &Copier, n: u64) {
        // A writer's copier also placed bytes its reader did not take.
        stats::counters(self.class).add_bypassed_bytes(copier.bypassed().min(n));
        self.engine_bytes(copier.engine(), n);
    }

    /// Notes bytes that went through shared memory, copied by `engine`.
    pub fn engine_bytes(&mut self, engine: EngineId, n: u64) {
        self.fast += n;
        if n > 0 {
            self.engine = Some(engine);
        }
    }

    /// Notes bytes that went through the kernel.
    pub fn kernel_bytes(&mut self, n: u64) {
        self.kernel += n;
    }

    /// The whole read call through the kernel, for `reason`.
    pub fn kernel(&mut self, reason: Fallback, call: &ReadCall<'_>) -> isize {
        self.reason(reason);
        // SAFETY: the application's own call, replayed as it was.
        let r = unsafe { call.replay() };
        self.kernel_result(r)
    }

    /// The whole write call through the kernel, for `reason`.
    pub fn kernel_write(&mut self, reason: Fallback, call: &WriteCall<'_>) -> isize {
        self.reason(reason);
        // SAFETY: the application's own call, replayed as it was.
        let r = unsafe { call.replay() };
        self.kernel_result(r)
    }

    /// A kernel call's result, counted.
    pub fn kernel_result(&mut self, r: isize) -> isize {
        if r > 0 {
            self.kernel += r as u64;
        }
        r
    }

    /// The call moved `n` bytes in all.
    pub fn fast_done(&mut self, n: u64) -> isize {
        n as isize
    }

    /// The call fails with `errno` (what the kernel would have said).
    pub fn error(&mut self, reason: Fallback, errno: Errno) -> isize {
        self.reason(reason);
        // SAFETY: this thread's errno slot.
        unsafe { *libc::__errno_location() = errno.0 };
        -1
    }

    fn record(&self) {
        let reason = if self.kernel > 0 || self.fast == 0 || self.cut_short { self.reason } else { None };
        stats::counters(self.class).record_ipc(self.fast, self.kernel, self.engine.unwrap_or(EngineId::Cpu), reason);
    }
}

/// What `fd` is, learned or re-learned (fstat every time: the number may
/// have been closed and reused behind the library's back, by stdio say).
/// `None` for anything but a Unix stream socket, a pipe or a FIFO.
fn classify(fd: i32) -> Option<(FdInfo, Endpoint)> {
    let st = mem::fstat(fd).ok()?;
    let known = FDS.get(fd);
    let quick = if st.is_fifo() { Some(Endpoint { family: Family::Pipe, dev: st.dev, ino: st.ino }) } else { None };
    if let Some(info) = known {
        // A pipe is known by its stat alone; a socket's family needs a
        // getsockopt, done once.
        let same = match quick {
            Some(pipe) => info.key == pipe.key(),
            None => st.is_socket() && info.key == Endpoint::socket(st.ino as u32).key(),
        };
        if same {
            let endpoint = quick.unwrap_or(Endpoint::socket(st.ino as u32));
            return (info.kind != FdKind::Other).then_some((info, endpoint));
        }
        // The number now names another file: the old one's state goes.
        forget(fd, info);
    }
    let endpoint = Endpoint::of(fd, &st);
    let info = match endpoint {
        Some(e) => FdInfo { key: e.key(), kind: FdKind::Fast },
        None => FdInfo { key: Endpoint::socket(st.ino as u32).key(), kind: FdKind::Other },
    };
    // An fd the table cannot track (65536 and up) could not have its state
    // released at close: the kernel path, uncounted.
    if !FDS.set(fd, info) {
        return None;
    }
    endpoint.map(|e| (info, e))
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
        Dir::Read => quick::read(fd, small, flags, &kernel),
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

/// Sends `fd`'s large calls in direction `dir` to the kernel path for
/// `ttl`, as `why` (see [`hint`]).
pub fn hint_kernel(fd: i32, dir: Dir, class: Class, why: Why, ttl: Duration) {
    if let Some(settings) = state::get() {
        hint::set(fd, dir, class, why, hint::after(hint::now_ms(settings.started), ttl));
    }
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

/// The slow path of the write hooks (the buffers hold at least the
/// threshold).
///
/// # Safety
/// The application's call, valid as for the libc function.
pub unsafe fn write(call: &WriteCall<'_>) -> isize {
    let (fd, len) = (call.fd, call.length());
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

/// Before the application closes `fd` (close, dup2 and dup3 over it,
/// close_range): drop what the library knows, and the socket's or pipe's
/// channels when no other fd of the process refers to it.
pub fn closing(fd: i32) {
    if let Some(info) = FDS.get(fd) {
        forget(fd, info);
    }
    if crate::events::epoll::is_epoll(fd) {
        crate::events::epoll::closed(fd);
    }
}

fn forget(fd: i32, info: FdInfo) {
    let last = info.kind != FdKind::Other && !FDS.other_fd_for(info.key, fd);
    crate::events::closing(fd, !last, info.key);
    FDS.forget(fd);
    hint::clear(fd);
    route::clear(fd);
    if last {
        channel::release(info.key);
    }
}

/// Whether `fd` needs [`closing`] (the close hooks' cheap test).
pub fn tracked(fd: i32) -> bool {
    FDS.is_tracked(fd) || crate::events::epoll::is_epoll(fd)
}

/// In the fork child: forget every channel and fd (the parent keeps them).
///
/// # Safety
/// Only from the fork child handler, while the child has one thread.
pub unsafe fn after_fork() {
    // SAFETY: forwarded contract.
    unsafe { channel::after_fork() };
    FDS.clear();
    route::clear_all();
    hint::after_fork();
}

/// A class's ring budget ran out (reported once per process and class).
pub fn note_budget_exhausted(class: Class) {
    static SAID: [AtomicBool; 2] = [const { AtomicBool::new(false) }; 2];
    let (said, what) = if class == Class::Pipe { (&SAID[1], "pipes") } else { (&SAID[0], "sockets") };
    if crate::log::first_time(said) {
        crate::log_at!(Warn, "[{class}] ring_bytes budget used up: further {what} use the kernel path");
    }
    stats::counters(class).note_fallback(Fallback::RingBudget);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wait_polls_first_for_what_its_mode_can_spend() {
        // `sleep` (efficiency) polls about the price of one sleep, no more:
        // sleeping at every hand-over cost more CPU than it saved.
        assert_eq!(spin(Wait::Sleep), ring::SLEEP_POLL);
        assert!(spin(Wait::Sleep) > Duration::ZERO);
        assert!(spin(Wait::Sleep) < spin(Wait::SpinThenSleep));
        assert!(spin(Wait::SpinThenSleep) < spin(Wait::Spin));
        assert_eq!(spin(Wait::Umwait), spin(Wait::SpinThenSleep));
    }
}
