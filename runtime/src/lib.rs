//! The process side of ipc-offload: everything the injected library does
//! besides the exported symbols themselves.
//!
//! - [`init`]: the constructor (environment, policy, plan, stats, fork
//!   handler) and the final stats write at exit.
//! - [`dispatch`]: the slow path of the copy, memset and memcmp hooks: a
//!   large copy's class (`shm` or `memcpy`, asking [`mapping`]) and the
//!   class's engine.
//! - [`mapping`]: the mapping hooks' slow paths, which keep the index of
//!   shared-memory regions.
//! - [`ipc`]: the read and write hooks' slow paths (the shared-memory
//!   fast path for sockets, pipes and FIFOs) and the close hooks'
//!   bookkeeping; [`events`]: the epoll, poll and select hooks' (event
//!   loops on that path).
//! - [`fork`]: the fork child's handler: the child adopts the state, and
//!   what stayed with the parent (workers, counters, stats writer, IPC
//!   channels) is reset.
//! - [`plan`]: from a resolved policy to engines and workers;
//!   [`dsa_setup`]: finding the DSA device a policy asks for.
//! - [`stats_file`]: the JSON stats file, all of it rendered there.
//! - [`env`], [`log`], [`process`], [`guard`], [`state`], [`fmtbuf`]: the
//!   pieces those stand on.
//!
//! No two modules reach each other, directly or through others
//! (`scripts/module-loops runtime/src` checks it, and
//! `scripts/module-loops runtime/src/ipc` the submodules of a directory).
//! Each uses only modules of the lines below its own:
//!
//! 1. [`init`]
//! 2. [`fork`], [`events`]
//! 3. [`dispatch`], [`ipc`]
//! 4. [`mapping`], [`stats_file`]
//! 5. [`env`], [`state`]
//! 6. [`log`], [`plan`], [`dsa_setup`], [`guard`]
//! 7. [`fmtbuf`], [`process`]
//!
//! The `preload` crate's hooks call [`init::start`], [`init::finish`],
//! [`dispatch::large_copy`] and friends, the [`mapping`] hooks, and the
//! [`ipc`] and [`events`] slow paths; nothing else crosses that boundary.

pub mod dispatch;
pub mod dsa_setup;
pub mod env;
pub mod events;
pub mod fmtbuf;
pub mod fork;
pub mod guard;
pub mod init;
pub mod ipc;
pub mod log;
pub mod mapping;
pub mod plan;
pub mod process;
pub mod state;
pub mod stats_file;
