//! Per-class counters. Plain atomics in a static: updated from any thread
//! (workers included) without locks or allocation, read by the stats writer,
//! zeroed in a fork child so that each process reports its own work.
//!
//! `calls` counts calls at or above the class threshold only: counting the
//! calls below it would cost every small copy an atomic add.

use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::Relaxed;

use ipc_offload_policy::Class;

use crate::kinds::{EngineId, Fallback, Outcome};

/// The counters of one operation class.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct ClassCounters {
    calls: AtomicU64,
    bytes: AtomicU64,
    offloaded_calls: AtomicU64,
    offloaded_bytes: AtomicU64,
    worker_bytes: AtomicU64,
    fast_path_bytes: AtomicU64,
    kernel_path_bytes: AtomicU64,
    bypassed_bytes: AtomicU64,
    by_engine: [AtomicU64; EngineId::COUNT],
    fallbacks: [AtomicU64; Fallback::COUNT],
}

/// A copy of one class's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassSnapshot {
    /// Calls at or above the threshold.
    pub calls: u64,
    /// Bytes of those calls.
    pub bytes: u64,
    /// Calls whose bytes an engine other than the caller's libc moved.
    pub offloaded_calls: u64,
    /// Bytes of those calls.
    pub offloaded_bytes: u64,
    /// Bytes that worker threads (not callers) copied.
    pub worker_bytes: u64,
    /// IPC classes: bytes of large calls that went through shared memory.
    pub fast_path_bytes: u64,
    /// IPC classes: bytes of large calls that went through the kernel.
    pub kernel_path_bytes: u64,
    /// Bytes written around the cache (non-temporal stores; DSA without
    /// its cache-control flag).
    pub bypassed_bytes: u64,
    /// Bytes per engine, indexed by [`EngineId::index`].
    pub by_engine: [u64; EngineId::COUNT],
    /// Fallbacks per reason, indexed by [`Fallback::index`].
    pub fallbacks: [u64; Fallback::COUNT],
}

impl ClassCounters {
    const fn new() -> Self {
        ClassCounters {
            calls: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            offloaded_calls: AtomicU64::new(0),
            offloaded_bytes: AtomicU64::new(0),
            worker_bytes: AtomicU64::new(0),
            fast_path_bytes: AtomicU64::new(0),
            kernel_path_bytes: AtomicU64::new(0),
            bypassed_bytes: AtomicU64::new(0),
            by_engine: [const { AtomicU64::new(0) }; EngineId::COUNT],
            fallbacks: [const { AtomicU64::new(0) }; Fallback::COUNT],
        }
    }

    /// Records one call at or above the threshold and what became of it.
    pub fn record(&self, bytes: u64, outcome: Outcome) {
        self.calls.fetch_add(1, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
        self.by_engine[outcome.engine.index()].fetch_add(bytes, Relaxed);
        if outcome.engine != EngineId::Cpu {
            self.offloaded_calls.fetch_add(1, Relaxed);
            self.offloaded_bytes.fetch_add(bytes, Relaxed);
        }
        if outcome.bypassed {
            self.bypassed_bytes.fetch_add(bytes, Relaxed);
        }
        if let Some(reason) = outcome.fallback {
            self.fallbacks[reason.index()].fetch_add(1, Relaxed);
        }
    }

    /// Adds IPC bytes this side copied around the cache.
    pub fn add_bypassed_bytes(&self, bytes: u64) {
        self.bypassed_bytes.fetch_add(bytes, Relaxed);
    }

    /// Records one large IPC call (at or above the threshold): `fast` bytes
    /// went through shared memory, copied on this side by `engine`, `kernel`
    /// bytes through the kernel, and `fallback` says why the kernel, if it
    /// was used.
    pub fn record_ipc(&self, fast: u64, kernel: u64, engine: EngineId, fallback: Option<Fallback>) {
        self.calls.fetch_add(1, Relaxed);
        self.bytes.fetch_add(fast + kernel, Relaxed);
        self.fast_path_bytes.fetch_add(fast, Relaxed);
        self.kernel_path_bytes.fetch_add(kernel, Relaxed);
        if fast > 0 {
            self.offloaded_calls.fetch_add(1, Relaxed);
            self.offloaded_bytes.fetch_add(fast, Relaxed);
            self.by_engine[engine.index()].fetch_add(fast, Relaxed);
        }
        if let Some(reason) = fallback {
            self.fallbacks[reason.index()].fetch_add(1, Relaxed);
        }
    }

    /// Counts a fallback that belongs to no call (a budget that ran out).
    pub fn note_fallback(&self, reason: Fallback) {
        self.fallbacks[reason.index()].fetch_add(1, Relaxed);
    }

    /// Adds bytes copied by a worker thread.
    pub fn add_worker_bytes(&self, bytes: u64) {
        self.worker_bytes.fetch_add(bytes, Relaxed);
    }

    /// The counters now (each read on its own; totals may be a copy apart).
    pub fn snapshot(&self) -> ClassSnapshot {
        ClassSnapshot {
            calls: self.calls.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            offloaded_calls: self.offloaded_calls.load(Relaxed),
            offloaded_bytes: self.offloaded_bytes.load(Relaxed),
            worker_bytes: self.worker_bytes.load(Relaxed),
            fast_path_bytes: self.fast_path_bytes.load(Relaxed),
            kernel_path_bytes: self.kernel_path_bytes.load(Relaxed),
            bypassed_bytes: self.bypassed_bytes.load(Relaxed),
            by_engine: core::array::from_fn(|i| self.by_engine[i].load(Relaxed)),
            fallbacks: core::array::from_fn(|i| self.fallbacks[i].load(Relaxed)),
        }
    }

    fn reset(&self) {
        for c in [
            &self.calls,
            &self.bytes,
            &self.offloaded_calls,
            &self.offloaded_bytes,
            &self.worker_bytes,
            &self.fast_path_bytes,
            &self.kernel_path_bytes,
            &self.bypassed_bytes,
        ] {
            c.store(0, Relaxed);
        }
        for c in self.by_engine.iter().chain(self.fallbacks.iter()) {
            c.store(0, Relaxed);
        }
    }
}

static COUNTERS: [ClassCounters; Class::COUNT] = [const { ClassCounters::new() }; Class::COUNT];

/// The counters of `class`.
pub fn counters(class: Class) -> &'static ClassCounters {
    &COUNTERS[class.index()]
}

/// Zeroes every counter (in a fork child: its figures start from nothing).
pub fn reset_all() {
    COUNTERS.iter().for_each(ClassCounters::reset);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_splits_offloaded_from_cpu_and_counts_fallbacks() {
        let c = ClassCounters::new();
        c.record(100, Outcome::done_by(EngineId::AsyncCpu));
        c.record(50, Outcome::done_by(EngineId::Cpu));
        c.record(7, Outcome::fell_back(Fallback::PoolSaturated));
        c.add_worker_bytes(60);
        let s = c.snapshot();
        assert_eq!((s.calls, s.bytes, s.offloaded_calls, s.offloaded_bytes), (3, 157, 1, 100));
        assert_eq!(s.by_engine[EngineId::AsyncCpu.index()], 100);
        assert_eq!(s.by_engine[EngineId::Cpu.index()], 57);
        assert_eq!(s.fallbacks[Fallback::PoolSaturated.index()], 1);
        assert_eq!(s.worker_bytes, 60);
        c.reset();
        assert_eq!(c.snapshot(), ClassSnapshot::default());
    }

    #[test]
    fn ipc_calls_split_fast_and_kernel_bytes() {
        let c = ClassCounters::new();
        c.record_ipc(1000, 24, EngineId::Cpu, Some(Fallback::NotWaiting));
        c.record_ipc(0, 500, EngineId::Cpu, Some(Fallback::NoPeer));
        let s = c.snapshot();
        assert_eq!((s.calls, s.bytes, s.fast_path_bytes, s.kernel_path_bytes), (2, 1524, 1000, 524));
        assert_eq!((s.offloaded_calls, s.offloaded_bytes), (1, 1000));
        assert_eq!(s.by_engine[EngineId::Cpu.index()], 1000);
        assert_eq!(s.fallbacks[Fallback::NoPeer.index()], 1);
    }
}
