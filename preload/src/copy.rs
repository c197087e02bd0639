//! memcpy, memmove, mempcpy and their fortified `_chk` forms.
//!
//! The fast path reads `REAL.memcpy_min` (usize::MAX until the constructor
//! enables the class; the lower of `[memcpy]` and `[shm]` `min_bytes`) and
//! tail-calls the real function. At or above the threshold, the copy goes
//! to the runtime (which picks the `shm` or `memcpy` class) with memmove semantics: binaries
//! linked against `memcpy@GLIBC_2.2.5` rely on overlapping copies working,
//! and our unversioned `memcpy` serves them too. The `_chk` forms keep
//! glibc's bounds check: an overflowing call goes to the real `_chk`
//! function, which reports and aborts exactly as it would without us.

use core::ffi::c_void;
use core::sync::atomic::Ordering::Relaxed;

use ipc_offload_runtime::dispatch::large_copy;
use ipc_offload_sys::real::REAL;

/// memcpy(3).
///
/// # Safety
/// As memcpy(3).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut c_void, src: *const c_void, n: usize) -> *mut c_void {
    if n < REAL.memcpy_min.load(Relaxed) {
        // SAFETY: the caller's memcpy contract, passed on unchanged.
        return unsafe { (REAL.memcpy.get())(dst, src, n) };
    }
    // SAFETY: the caller's memcpy contract.
    unsafe { large(dst, src, n) }
}

/// memmove(3).
///
/// # Safety
/// As memmove(3).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut c_void, src: *const c_void, n: usize) -> *mut c_void {
    if n < REAL.memcpy_min.load(Relaxed) {
        // SAFETY: the caller's memmove contract, passed on unchanged.
        return unsafe { (REAL.memmove.get())(dst, src, n) };
    }
    // SAFETY: the caller's memmove contract.
    unsafe { large(dst, src, n) }
}

/// mempcpy(3): memcpy returning `dst + n`.
///
/// # Safety
/// As mempcpy(3).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mempcpy(dst: *mut c_void, src: *const c_void, n: usize) -> *mut c_void {
    if n < REAL.memcpy_min.load(Relaxed) {
        // SAFETY: the caller's mempcpy contract, passed on unchanged.
        return unsafe { (REAL.mempcpy.get())(dst, src, n) };
    }
    // SAFETY: the caller's mempcpy contract.
    unsafe { large_p(dst, src, n) }
}

/// `__memcpy_chk`: memcpy into an object of `dstlen` bytes (fortify).
///
/// # Safety
/// As memcpy(3); `dstlen` is the compiler's idea of the destination size.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __memcpy_chk(dst: *mut c_void, src: *const c_void, n: usize, dstlen: usize) -> *mut c_void {
    if n < REAL.memcpy_min.load(Relaxed) || dstlen < n {
        // SAFETY: the real function checks the bounds and aborts on overflow.
        return unsafe { (REAL.memcpy_chk.get())(dst, src, n, dstlen) };
    }
    // SAFETY: the bounds hold; the caller's memcpy contract.
    unsafe { large(dst, src, n) }
}

/// `__memmove_chk`: memmove into an object of `dstlen` bytes (fortify).
///
/// # Safety
/// As memmove(3); `dstlen` is the compiler's idea of the destination size.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __memmove_chk(dst: *mut c_void, src: *const c_void, n: usize, dstlen: usize) -> *mut c_void {
    if n < REAL.memcpy_min.load(Relaxed) || dstlen < n {
        // SAFETY: the real function checks the bounds and aborts on overflow.
        return unsafe { (REAL.memmove_chk.get())(dst, src, n, dstlen) };
    }
    // SAFETY: the bounds hold; the caller's memmove contract.
    unsafe { large(dst, src, n) }
}

/// `__mempcpy_chk`: mempcpy into an object of `dstlen` bytes (fortify).
///
/// # Safety
/// As mempcpy(3); `dstlen` is the compiler's idea of the destination size.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __mempcpy_chk(dst: *mut c_void, src: *const c_void, n: usize, dstlen: usize) -> *mut c_void {
    if n < REAL.memcpy_min.load(Relaxed) || dstlen < n {
        // SAFETY: the real function checks the bounds and aborts on overflow.
        return unsafe { (REAL.mempcpy_chk.get())(dst, src, n, dstlen) };
    }
    // SAFETY: the bounds hold; the caller's mempcpy contract.
    unsafe { large_p(dst, src, n) }
}

/// The slow path, out of line so that the fast path stays a compare and a
/// jump (no register saves): returns `dst`.
///
/// # Safety
/// As memmove(3).
#[cold]
#[inline(never)]
unsafe extern "C" fn large(dst: *mut c_void, src: *const c_void, n: usize) -> *mut c_void {
    // SAFETY: forwarded memmove contract (memcpy's implies it).
    unsafe { large_copy(dst.cast(), src.cast(), n) };
    dst
}

/// As [`large`], returning `dst + n` (mempcpy).
///
/// # Safety
/// As memmove(3).
#[cold]
#[inline(never)]
unsafe extern "C" fn large_p(dst: *mut c_void, src: *const c_void, n: usize) -> *mut c_void {
    // SAFETY: forwarded memmove contract; dst + n is one past the
    // destination object, which the contract makes valid to form.
    unsafe {
        large_copy(dst.cast(), src.cast(), n);
        dst.cast::<u8>().add(n).cast()
    }
}
