//! mmap, mmap64, munmap, mremap, shm_open and shm_unlink: the calls that
//! make and unmake shared memory, so that the runtime's index of shared
//! regions follows the address space (the `shm` class). While the class
//! is off (or the library inert, or its constructor has not run yet) each
//! hook is one load, a branch and the real call.

use core::ffi::{c_char, c_int, c_void};

use ipc_offload_regions::tracking;
use ipc_offload_runtime::mapping;
use ipc_offload_sys::real::mapping as real;

/// mmap(2).
///
/// # Safety
/// As mmap(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: libc::off_t,
) -> *mut c_void {
    if !tracking() {
        // SAFETY: the caller's mmap contract, passed on unchanged.
        return unsafe { real::mmap(addr, len, prot, flags, fd, off) };
    }
    // SAFETY: the caller's mmap contract.
    unsafe { mapping::mmap(addr, len, prot, flags, fd, off) }
}

/// mmap64: glibc's alias of mmap on 64-bit systems (programs built with
/// `_FILE_OFFSET_BITS=64`, CPython's mmap module among them, call it).
///
/// # Safety
/// As mmap(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: libc::off_t,
) -> *mut c_void {
    // SAFETY: the same function under its other name.
    unsafe { mmap(addr, len, prot, flags, fd, off) }
}

/// munmap(2).
///
/// # Safety
/// As munmap(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: usize) -> c_int {
    if !tracking() {
        // SAFETY: the caller's munmap contract, passed on unchanged.
        return unsafe { real::munmap(addr, len) };
    }
    // SAFETY: the caller's munmap contract.
    unsafe { mapping::munmap(addr, len) }
}

/// mremap(2). Variadic in C (`new_address` follows `flags` only with
/// `MREMAP_FIXED`); on x86-64 a variadic caller passes it in the same
/// register as a fifth fixed argument, so this takes five and reads the
/// fifth only with `MREMAP_FIXED`, as libc does.
///
/// # Safety
/// As mremap(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mremap(
    old: *mut c_void,
    old_len: usize,
    new_len: usize,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    if !tracking() {
        // SAFETY: the caller's mremap contract, passed on unchanged.
        return unsafe { real::mremap(old, old_len, new_len, flags, new_addr) };
    }
    // SAFETY: the caller's mremap contract.
    unsafe { mapping::mremap(old, old_len, new_len, flags, new_addr) }
}

/// shm_open(3).
///
/// # Safety
/// As shm_open(3).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shm_open(name: *const c_char, oflag: c_int, mode: libc::mode_t) -> c_int {
    if !tracking() {
        // SAFETY: the caller's shm_open contract, passed on unchanged.
        return unsafe { real::shm_open(name, oflag, mode) };
    }
    // SAFETY: the caller's shm_open contract.
    unsafe { mapping::shm_open(name, oflag, mode) }
}

/// shm_unlink(3).
///
/// # Safety
/// As shm_unlink(3).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shm_unlink(name: *const c_char) -> c_int {
    if !tracking() {
        // SAFETY: the caller's shm_unlink contract, passed on unchanged.
        return unsafe { real::shm_unlink(name) };
    }
    // SAFETY: the caller's shm_unlink contract.
    unsafe { mapping::shm_unlink(name) }
}
