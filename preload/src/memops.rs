//! memset, `__memset_chk`, memcmp and bcmp. Below their class's threshold
//! (`REAL.memset_min`, `REAL.memcmp_min`: usize::MAX unless the policy turns
//! the class on, which the built-in policy does not) each is one compare
//! and a jump to libc; at or above it, the call goes to the runtime (the
//! `dsa` engine's MEMFILL and COMPARE). `__memset_chk` keeps glibc's bounds
//! check, as `__memcpy_chk` does.

use core::ffi::{c_int, c_void};
use core::sync::atomic::Ordering::Relaxed;

use ipc_offload_runtime::dispatch::{large_compare, large_fill};
use ipc_offload_sys::real::REAL;

/// memset(3).
///
/// # Safety
/// As memset(3).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut c_void, c: c_int, n: usize) -> *mut c_void {
    if n < REAL.memset_min.load(Relaxed) {
        // SAFETY: the caller's memset contract, passed on unchanged.
        return unsafe { (REAL.memset.get())(dst, c, n) };
    }
    // SAFETY: the caller's memset contract.
    unsafe { fill(dst, c, n) }
}

/// `__memset_chk`: memset of an object of `dstlen` bytes (fortify).
///
/// # Safety
/// As memset(3); `dstlen` is the compiler's idea of the destination size.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __memset_chk(dst: *mut c_void, c: c_int, n: usize, dstlen: usize) -> *mut c_void {
    if n < REAL.memset_min.load(Relaxed) || dstlen < n {
        // SAFETY: the real function checks the bounds and aborts on overflow.
        return unsafe { (REAL.memset_chk.get())(dst, c, n, dstlen) };
    }
    // SAFETY: the bounds hold; the caller's memset contract.
    unsafe { fill(dst, c, n) }
}

/// memcmp(3).
///
/// # Safety
/// As memcmp(3).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const c_void, b: *const c_void, n: usize) -> c_int {
    if n < REAL.memcmp_min.load(Relaxed) {
        // SAFETY: the caller's memcmp contract, passed on unchanged.
        return unsafe { (REAL.memcmp.get())(a, b, n) };
    }
    // SAFETY: the caller's memcmp contract.
    unsafe { compare(a, b, n) }
}

/// bcmp(3): zero when equal, nonzero otherwise (memcmp's answer serves).
///
/// # Safety
/// As bcmp(3).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const c_void, b: *const c_void, n: usize) -> c_int {
    if n < REAL.memcmp_min.load(Relaxed) {
        // SAFETY: the caller's bcmp contract, passed on unchanged.
        return unsafe { (REAL.bcmp.get())(a, b, n) };
    }
    // SAFETY: the caller's bcmp contract (memcmp's).
    unsafe { compare(a, b, n) }
}

/// The memset slow path, out of line: returns `dst`.
///
/// # Safety
/// As memset(3).
#[cold]
#[inline(never)]
unsafe extern "C" fn fill(dst: *mut c_void, c: c_int, n: usize) -> *mut c_void {
    // SAFETY: forwarded memset contract; memset stores `c` as unsigned char.
    unsafe { large_fill(dst.cast(), c as u8, n) };
    dst
}

/// The memcmp slow path, out of line.
///
/// # Safety
/// As memcmp(3).
#[cold]
#[inline(never)]
unsafe extern "C" fn compare(a: *const c_void, b: *const c_void, n: usize) -> c_int {
    // SAFETY: forwarded memcmp contract.
    unsafe { large_compare(a.cast(), b.cast(), n) }
}
