//! The slow path of every copy hook: a call at or above its class threshold
//! lands here, is handed to the class's engine, and is counted.

use core::sync::atomic::AtomicBool;
use std::panic::{AssertUnwindSafe, catch_unwind};

use ipc_offload_engine::engine::pool::POOL;
use ipc_offload_engine::engine::{self, Fallback, Outcome, cpu_move};
use ipc_offload_engine::{stats, sys};
use ipc_offload_policy::Class;

use crate::guard::Inside;
use crate::log::first_time;
use crate::{process, state, stats_file};

/// Copies `len` bytes from `src` to `dst` with memmove semantics through
/// the engine of `class`, and counts the call. Never panics; errno is
/// left as it was.
///
/// # Safety
/// As memmove(3).
pub unsafe fn large_copy(class: Class, dst: *mut u8, src: *const u8, len: usize) {
    let _errno = sys::ErrnoGuard::save();
    if !process::is_owner() {
        // A vfork or raw-clone child: the state is not ours to touch.
        // SAFETY: forwarded memmove contract.
        unsafe { cpu_move(dst, src, len) };
        return;
    }
    let counters = stats::counters(class);
    let Some(_inside) = Inside::enter() else {
        // SAFETY: forwarded memmove contract.
        unsafe { cpu_move(dst, src, len) };
        counters.record(len as u64, Outcome::fell_back(Fallback::Reentrant));
        return;
    };
    let Some(opts) = state::get().and_then(|s| s.options[class.index()]) else {
        // SAFETY: forwarded memmove contract.
        unsafe { cpu_move(dst, src, len) };
        return;
    };
    stats_file::ensure_writer();
    // The engines move no byte before their last fallible step, so a panic
    // (a bug) leaves the copy to be done from scratch.
    // SAFETY: forwarded memmove contract.
    let outcome = catch_unwind(AssertUnwindSafe(|| unsafe { engine::copy(dst, src, len, &opts) }));
    let outcome = outcome.unwrap_or_else(|_| {
        // SAFETY: forwarded memmove contract.
        unsafe { cpu_move(dst, src, len) };
        Outcome::fell_back(Fallback::Panic)
    });
    counters.record(len as u64, outcome);
    static POOL_WARNED: AtomicBool = AtomicBool::new(false);
    static PANIC_WARNED: AtomicBool = AtomicBool::new(false);
    match outcome.fallback {
        Some(Fallback::PoolUnavailable) if first_time(&POOL_WARNED) => {
            let why = POOL.start_error().map_or_else(|| "unknown error".to_owned(), |e| e.to_string());
            crate::log_at!(Warn, "cannot start copy workers ({why}); large copies are made by libc");
        }
        Some(Fallback::Panic) if first_time(&PANIC_WARNED) => {
            crate::log_at!(Error, "internal error: a copy engine panicked; that copy was made by libc");
        }
        _ => {}
    }
}
