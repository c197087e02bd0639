//! ipc-offload's copy engines and everything below them.
//!
//! - [`engine`]: `cpu` (libc) and `async-cpu` (a worker pool that shares a
//!   large copy with the caller), the part/wave arithmetic, the pool.
//! - [`real`]: the real libc functions, resolved once, and the memcpy
//!   threshold the hooks test.
//! - [`dsa`]: the DSA interface (descriptors, discovery, submission) and
//!   its device model.
//! - [`shm`]: the index of shared-memory regions that makes a copy the
//!   `shm` class, and the real mapping functions.
//! - [`stats`]: per-class counters.
//! - [`cpus`]: how many CPUs the process may use (affinity, cgroup quota).
//! - [`sys`]: raw system calls, futexes, threads, `rep movsb`; the only home
//!   of `unsafe` that talks to the kernel or the CPU.
//!
//! Nothing here reads the environment or a policy file: the runtime crate
//! decides, this crate executes.

mod chaos;
pub mod cpus;
pub mod dsa;
pub mod engine;
pub mod ipc;
pub mod real;
pub mod real_io;
pub mod real_wait;
pub mod shm;
pub mod stats;
pub mod sys;
