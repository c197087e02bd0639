//! The process side of ipc-offload: everything the injected library does
//! besides the exported symbols themselves.
//!
//! - [`init`]: the constructor (environment, policy, plan, stats, fork
//!   handler) and the final stats write at exit.
//! - [`dispatch`]: the slow path of the copy hooks.
//! - [`shm`]: the `shm` class: which class a large copy is, and the
//!   mapping hooks that keep the index of shared-memory regions.
//! - [`ipc`]: the read and write hooks' slow paths (the shared-memory
//!   fast path for sockets, pipes and FIFOs); [`events`]: the epoll, poll
//!   and select hooks' (event loops on that path).
//! - [`plan`]: from a resolved policy to engines and workers.
//! - [`stats_file`]: the JSON stats file.
//! - [`env`], [`log`], [`process`], [`guard`], [`state`], [`fmtbuf`]: the
//!   pieces those stand on.
//!
//! The `preload` crate's hooks call [`init::start`], [`init::finish`] and
//! [`dispatch::large_copy`] and friends, and the [`shm`] hooks; nothing
//! else crosses that boundary.

pub mod dispatch;
pub mod dsa;
pub mod env;
pub mod events;
pub mod fmtbuf;
pub mod guard;
pub mod init;
pub mod ipc;
pub mod log;
pub mod plan;
pub mod process;
pub mod shm;
pub mod state;
pub mod stats_file;
