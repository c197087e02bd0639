//! ipc-offload's copy engines, above the platform layer and the DSA
//! interface: a large copy is handed to [`copy`] with the engine the policy
//! chose; it returns once every byte is in place, with an [`Outcome`] that
//! says which engine moved the bytes and, when it was not the chosen one,
//! why.
//!
//! From the floor up:
//! - [`kinds`]: the shared words (engine ids, fallback reasons, outcomes,
//!   copy options); [`stats`]: per-class counters of outcomes.
//! - [`split`]: the part/wave arithmetic; [`cache`]: where a copy's
//!   writes go (into the cache or around it).
//! - [`cpu`]: the `cpu` engine; [`pool`]: the copy-worker pool;
//!   [`async_cpu`]: the `async-cpu` engine (the caller and the pool share a
//!   copy); [`dsa_engine`]: the `dsa` and `hybrid` engines (the process's
//!   DSA device, alone or beside the caller).
//! - [`copy`] (here): the dispatcher, above every engine it calls.
//!
//! Nothing here reads the environment or a policy file: the runtime crate
//! decides, this crate executes.

pub mod async_cpu;
pub mod cache;
mod chaos;
pub mod cpu;
pub mod dsa_engine;
pub mod kinds;
pub mod pool;
pub mod split;
pub mod stats;

pub use kinds::{CopyOptions, EngineId, Fallback, Outcome};

/// Copies `len` bytes from `src` to `dst` with memmove semantics (regions may
/// overlap in either direction) using `opts.engine`, and returns only when
/// every byte is in place.
///
/// # Safety
/// As memmove(3): `src` readable and `dst` writable for `len` bytes, neither
/// freed or unmapped before the call returns.
pub unsafe fn copy(dst: *mut u8, src: *const u8, len: usize, opts: &CopyOptions) -> Outcome {
    match opts.engine {
        // SAFETY: forwarded memmove contract.
        EngineId::Cpu => unsafe { cpu::copy(dst, src, len, opts) },
        // SAFETY: forwarded memmove contract.
        EngineId::AsyncCpu => unsafe { async_cpu::copy(&pool::POOL, dst, src, len, opts) },
        // SAFETY: forwarded memmove contract.
        EngineId::Dsa => unsafe { dsa_engine::copy(dst, src, len, opts) },
        // SAFETY: forwarded memmove contract.
        EngineId::Hybrid => unsafe { dsa_engine::copy_hybrid(dst, src, len, opts) },
    }
}
