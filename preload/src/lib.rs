//! `libipc_offload.so`: the symbols that LD_PRELOAD puts in front of libc.
//!
//! Every exported symbol lives in this crate and nothing of substance does:
//! a hook tests the size against the class threshold and either tail-calls
//! the real function or hands the call to `ipc_offload_runtime`. Below the
//! threshold the memcpy hook is one load of the hot cache line, one compare
//! and one indirect jump (see docs/design.md for the disassembly).

mod copy;
mod exit;
mod io;
mod lifecycle;
mod mapping;
mod memops;
mod wait;
