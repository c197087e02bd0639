//! The IPC fast path's shared memory: the ring of one direction of a
//! connection and its rendezvous protocol (docs/ipc-protocol.md). The
//! socket side (opt-in, side channel, per-fd state) lives in the runtime.

pub mod cursor;
pub mod ring;
