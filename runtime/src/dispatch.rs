//! The slow path of every copy, memset and memcmp hook: a call at or above
//! its class threshold lands here, gets its class (a memcpy-family copy:
//! `shm` or `memcpy`, asking [`mapping`] whether its range is shared
//! memory), is handed to the class's engine, and is counted. The preload
//! crate's copy hooks reach the engines through here only.

use core::sync::atomic::AtomicBool;
use std::panic::{AssertUnwindSafe, catch_unwind};

use ipc_offload_engine::cpu::cpu_move;
use ipc_offload_engine::pool::POOL;
use ipc_offload_engine::stats;
use ipc_offload_engine::{self as engine, EngineId, Fallback, Outcome};
use ipc_offload_policy::Class;
use ipc_offload_sys as sys;
use ipc_offload_sys::real::REAL;

use crate::guard::Inside;
use crate::log::first_time;
use crate::{mapping, process, state, stats_file};

/// The slow path of memcpy, memmove, mempcpy and their `_chk` forms: the
/// copy goes to the `shm` class's engine when its source or destination
/// lies in shared memory (and it is at or above `[shm] min_bytes`), else to
/// the `memcpy` class's when it is at or above `[memcpy] min_bytes`, else
/// to libc, uncounted (the hook's threshold is the lower of the two).
///
/// # Safety
/// As memmove(3).
pub unsafe fn large_copy(dst: *mut u8, src: *const u8, len: usize) {
    match mapping::copy_class(dst as usize, src as usize, len) {
        // SAFETY: forwarded memmove contract.
        Some(class) => unsafe { copy_as(class, dst, src, len) },
        // SAFETY: forwarded memmove contract; cpu_move leaves errno alone.
        None => unsafe { cpu_move(dst, src, len) },
    }
}

/// Copies `len` bytes from `src` to `dst` with memmove semantics through
/// the engine of `class`, and counts the call. Never panics; errno is
/// left as it was.
///
/// # Safety
/// As memmove(3).
unsafe fn copy_as(class: Class, dst: *mut u8, src: *const u8, len: usize) {
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

/// The slow path of the memset hooks: `len` bytes at `dst` set to `c`
/// through the `memset` class's engine (`dsa`: MEMFILL), counted. Never
/// panics; errno is left as it was.
///
/// # Safety
/// As memset(3).
pub unsafe fn large_fill(dst: *mut u8, c: u8, len: usize) {
    let _errno = sys::ErrnoGuard::save();
    let libc = || {
        // SAFETY: forwarded memset contract.
        unsafe { (REAL.memset.get())(dst.cast(), i32::from(c), len) };
    };
    if !process::is_owner() {
        return libc();
    }
    let Some(_inside) = Inside::enter() else { return libc() };
    let Some(opts) = state::get().and_then(|s| s.options[Class::Memset.index()]) else { return libc() };
    stats_file::ensure_writer();
    let outcome = if opts.engine == EngineId::Dsa {
        // SAFETY: forwarded memset contract.
        catch_unwind(AssertUnwindSafe(|| unsafe { ipc_offload_engine::dsa_engine::fill(dst, c, len, &opts) }))
            .unwrap_or_else(|_| {
                libc();
                Outcome::fell_back(Fallback::Panic)
            })
    } else {
        libc();
        Outcome::done_by(EngineId::Cpu)
    };
    stats::counters(Class::Memset).record(len as u64, outcome);
}

/// The slow path of the memcmp hooks: the sign memcmp(3) gives, through the
/// `memcmp` class's engine (`dsa`: COMPARE), counted.
///
/// # Safety
/// As memcmp(3).
pub unsafe fn large_compare(a: *const u8, b: *const u8, len: usize) -> i32 {
    let _errno = sys::ErrnoGuard::save();
    // SAFETY: forwarded memcmp contract.
    let libc = || unsafe { (REAL.memcmp.get())(a.cast(), b.cast(), len) };
    if !process::is_owner() {
        return libc();
    }
    let Some(_inside) = Inside::enter() else { return libc() };
    let Some(opts) = state::get().and_then(|s| s.options[Class::Memcmp.index()]) else { return libc() };
    stats_file::ensure_writer();
    let (outcome, sign) = if opts.engine == EngineId::Dsa {
        // SAFETY: forwarded memcmp contract.
        catch_unwind(AssertUnwindSafe(|| unsafe { ipc_offload_engine::dsa_engine::compare(a, b, len) }))
            .unwrap_or_else(|_| (Outcome::fell_back(Fallback::Panic), libc()))
    } else {
        (Outcome::done_by(EngineId::Cpu), libc())
    };
    stats::counters(Class::Memcmp).record(len as u64, outcome);
    sign
}
