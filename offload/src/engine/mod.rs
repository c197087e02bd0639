//! Copy engines. A large copy is handed to [`copy`] with the engine the
//! policy chose; it returns once every byte is in place, with an [`Outcome`]
//! that says which engine moved the bytes and, when it was not the chosen
//! one, why.

pub mod async_cpu;
pub mod pool;
pub mod split;

use ipc_offload_policy::{Class, Wait, named_enum};

use crate::real;

named_enum! {
    /// An engine that actually moved bytes.
    EngineId {
        /// The real libc memcpy/memmove on the calling thread.
        Cpu = "cpu",
        /// The copy-worker pool, with the caller copying a share.
        AsyncCpu = "async-cpu",
    }
}

named_enum! {
    /// Why a copy meant for an offload engine was done by the CPU instead.
    Fallback {
        /// Source and destination overlap too closely to split the move.
        OverlapClose = "overlap-close",
        /// Every job slot of the pool was in use.
        PoolSaturated = "pool-saturated",
        /// The pool could not start a single worker thread.
        PoolUnavailable = "pool-unavailable",
        /// A copy made while this thread was already inside the library
        /// (a signal handler that interrupted a copy, or the library itself).
        Reentrant = "reentrant",
        /// A bug: the library panicked before moving any byte.
        Panic = "panic",
    }
}

/// What happened to one large copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The engine that moved the bytes.
    pub engine: EngineId,
    /// Set when `engine` is not the one the policy chose.
    pub fallback: Option<Fallback>,
}

impl Outcome {
    /// The chosen engine did the copy.
    pub fn done_by(engine: EngineId) -> Self {
        Outcome { engine, fallback: None }
    }

    /// The CPU did the copy instead of the chosen engine.
    pub fn fell_back(reason: Fallback) -> Self {
        Outcome { engine: EngineId::Cpu, fallback: Some(reason) }
    }
}

/// How a copy is to be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyOptions {
    /// The engine chosen by the policy (never `auto` here).
    pub engine: EngineId,
    /// The class the copy is counted under.
    pub class: Class,
    /// How the caller waits for workers.
    pub wait: Wait,
    /// At most this many workers are woken to help.
    pub helpers: u32,
    /// Offloaded copies of at least this many bytes use non-temporal stores
    /// (the destination cannot stay in the last-level cache anyway).
    pub stream_min: usize,
}

/// Copies `len` bytes from `src` to `dst` with memmove semantics (regions may
/// overlap in either direction) using `opts.engine`, and returns only when
/// every byte is in place.
///
/// # Safety
/// As memmove(3): `src` readable and `dst` writable for `len` bytes, neither
/// freed or unmapped before the call returns.
pub unsafe fn copy(dst: *mut u8, src: *const u8, len: usize, opts: &CopyOptions) -> Outcome {
    match opts.engine {
        EngineId::Cpu => {
            // SAFETY: forwarded memmove contract.
            unsafe { cpu_move(dst, src, len) };
            Outcome::done_by(EngineId::Cpu)
        }
        // SAFETY: forwarded memmove contract.
        EngineId::AsyncCpu => unsafe { async_cpu::copy(&pool::POOL, dst, src, len, opts) },
    }
}

/// The CPU engine: libc's memcpy, or memmove when the regions overlap.
///
/// # Safety
/// As memmove(3).
pub unsafe fn cpu_move(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: forwarded contract; memcpy only when the regions are disjoint.
    unsafe {
        if split::overlap(dst as usize, src as usize, len) {
            real::move_bytes(dst, src, len)
        } else {
            real::copy(dst, src, len)
        }
    }
}
