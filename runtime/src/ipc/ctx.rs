//! What a transfer needs and what it did: [`Ctx`], the settings of an IPC
//! class as one call uses them, with the [`Copier`] that moves its bytes,
//! and [`Tally`], the call's count for the stats and its result. The read
//! and write entry points make them, and the reader's and the writer's
//! sides (`reader`, `writer`) and a wait's look at a channel (`watch`) use
//! them; this module uses none of those.

use core::sync::atomic::{AtomicU32, Ordering::Relaxed};
use core::time::Duration;

use ipc_offload_engine::cache::{self, Dest};
use ipc_offload_engine::stats;
use ipc_offload_engine::{self as engine, CopyOptions, EngineId, Fallback};
use ipc_offload_policy::{Cache, Class, Wait};
use ipc_offload_ring::{self as ring, Geometry};
use ipc_offload_sys::{Errno, net};

use super::call::{ReadCall, WriteCall};
use crate::state;

/// The geometry of the rings a class creates: `depth` slots of
/// `chunk_bytes` (the mode's, unless the section sets them). A slot is the
/// pipelining step (the reader copies one while the writer fills the
/// next): `throughput`'s 256 KiB takes 10-30 µs to copy, long enough to
/// hide a hand-over, short enough to start the reader early. A `ring_bytes`
/// budget smaller than that ring makes it smaller (`Geometry::within`).
/// Not a share of the budget per connection: see docs/ipc-protocol.md,
/// "Ring memory follows activity".
fn geometry(rule: &ipc_offload_policy::Rule) -> Geometry {
    Geometry {
        slots: rule.depth.clamp(1, ring::MAX_SLOTS),
        slot_bytes: u32::try_from(rule.chunk_bytes).unwrap_or(u32::MAX).min(ring::MAX_SLOT_BYTES),
    }
    .within(rule.ring_bytes)
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

/// How long an offer waits without the reader taking a byte before its
/// writer takes the rest back: a blocking writer would wait in the kernel
/// for such a reader anyway; a nonblocking one must not hold its caller.
pub const PATIENCE_BLOCKING: Duration = Duration::from_millis(20);
pub const PATIENCE_NONBLOCKING: Duration = Duration::from_millis(2);

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
    /// `handshake_after`: bytes a new connection's writer sends through
    /// the kernel before its first REQUEST.
    pub handshake_after: u64,
    /// `write_behind` (`[unix]`, `[tcp]`): a nonblocking writer's offer may
    /// outlive its write (see [`super::behind`]).
    pub write_behind: bool,
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
            // `guarded` (the read and write entry points) checked that this
            // process owns the state.
            pid: crate::process::owner_pid(),
            geometry: geometry(rule),
            spin: spin(opts.wait),
            cache: rule.cache,
            cache_limit: settings.plan.cache_limit,
            ring_budget: rule.ring_bytes,
            handshake_after: rule.handshake_after,
            write_behind: rule.write_behind && matches!(class, Class::Unix | Class::Tcp),
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

    /// True once the call moved bytes through shared memory.
    pub fn moved_fast(&self) -> bool {
        self.fast > 0
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

    /// Counts the call in its class's stats.
    pub fn record(&self) {
        let reason = if self.kernel > 0 || self.fast == 0 || self.cut_short { self.reason } else { None };
        stats::counters(self.class).record_ipc(self.fast, self.kernel, self.engine.unwrap_or(EngineId::Cpu), reason);
    }
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
