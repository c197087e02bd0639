//! The real mmap, munmap, mremap, shm_open and shm_unlink behind the
//! mapping hooks, resolved once from the constructor (as
//! [`crate::real::io`] does for the I/O functions).
//!
//! Until then each slot holds a raw-system-call stand-in that sets errno
//! like libc (other preloads' constructors may map memory before ours
//! runs). mremap is variadic in C: the resolved function is called through
//! a variadic pointer, and before resolution the stand-in (a plain Rust
//! function) is called directly, never through a pointer of the other type.

use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicPtr, Ordering::Relaxed};

use crate::real::{MissingSymbol, next};
use crate::{Errno, syscall6};

/// mmap and mmap64: (addr, len, prot, flags, fd, offset).
pub type MmapFn = unsafe extern "C" fn(*mut c_void, usize, c_int, c_int, c_int, libc::off_t) -> *mut c_void;
/// munmap: (addr, len).
pub type MunmapFn = unsafe extern "C" fn(*mut c_void, usize) -> c_int;
/// mremap: (old, old_len, new_len, flags, ... new_address).
pub type MremapFn = unsafe extern "C" fn(*mut c_void, usize, usize, c_int, ...) -> *mut c_void;
/// shm_open: (name, oflag, mode).
pub type ShmOpenFn = unsafe extern "C" fn(*const c_char, c_int, libc::mode_t) -> c_int;
/// shm_unlink: (name).
pub type ShmUnlinkFn = unsafe extern "C" fn(*const c_char) -> c_int;

/// The resolved functions (null: not resolved, use the stand-in).
#[derive(Debug)]
pub struct RealMap {
    mmap: AtomicPtr<c_void>,
    munmap: AtomicPtr<c_void>,
    mremap: AtomicPtr<c_void>,
    shm_open: AtomicPtr<c_void>,
    shm_unlink: AtomicPtr<c_void>,
}

/// The process's table.
pub static REAL_MAP: RealMap = RealMap {
    mmap: AtomicPtr::new(core::ptr::null_mut()),
    munmap: AtomicPtr::new(core::ptr::null_mut()),
    mremap: AtomicPtr::new(core::ptr::null_mut()),
    shm_open: AtomicPtr::new(core::ptr::null_mut()),
    shm_unlink: AtomicPtr::new(core::ptr::null_mut()),
};

/// Resolves the real functions with dlsym(RTLD_NEXT), from the constructor.
/// Missing ones keep their stand-in; the first is returned.
pub fn resolve() -> Result<(), MissingSymbol> {
    let mut missing = None;
    for (slot, name) in [
        (&REAL_MAP.mmap, c"mmap"),
        (&REAL_MAP.munmap, c"munmap"),
        (&REAL_MAP.mremap, c"mremap"),
        (&REAL_MAP.shm_open, c"shm_open"),
        (&REAL_MAP.shm_unlink, c"shm_unlink"),
    ] {
        match next(name) {
            Ok(p) => slot.store(p, Relaxed),
            Err(e) => {
                missing.get_or_insert(e);
            }
        }
    }
    missing.map_or(Ok(()), Err)
}

/// Sets errno as libc does for a failed call.
fn set_errno(e: Errno) {
    // SAFETY: this thread's errno slot.
    unsafe { *libc::__errno_location() = e.0 };
}

/// mmap(2) through libc (or the raw system call before resolution).
///
/// # Safety
/// As mmap(2).
pub unsafe fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: libc::off_t,
) -> *mut c_void {
    let f = REAL_MAP.mmap.load(Relaxed);
    if !f.is_null() {
        // SAFETY: `f` is libc's mmap (see `resolve`); the caller's contract.
        return unsafe { core::mem::transmute::<*mut c_void, MmapFn>(f)(addr, len, prot, flags, fd, off) };
    }
    let args = [addr as usize, len, prot as usize, flags as usize, fd as usize, off as usize];
    // SAFETY: the arguments of the caller's mmap, passed to the system call.
    match unsafe { syscall6(libc::SYS_mmap, args) } {
        Ok(p) => p as *mut c_void,
        Err(e) => {
            set_errno(e);
            libc::MAP_FAILED
        }
    }
}

/// munmap(2) through libc (or the raw system call before resolution).
///
/// # Safety
/// As munmap(2).
pub unsafe fn munmap(addr: *mut c_void, len: usize) -> c_int {
    let f = REAL_MAP.munmap.load(Relaxed);
    if !f.is_null() {
        // SAFETY: `f` is libc's munmap; the caller's contract.
        return unsafe { core::mem::transmute::<*mut c_void, MunmapFn>(f)(addr, len) };
    }
    // SAFETY: the caller's munmap arguments, passed to the system call.
    match unsafe { syscall6(libc::SYS_munmap, [addr as usize, len, 0, 0, 0, 0]) } {
        Ok(_) => 0,
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

/// mremap(2) through libc (or the raw system call before resolution);
/// `new_addr` is read only with `MREMAP_FIXED`, as libc does.
///
/// # Safety
/// As mremap(2).
pub unsafe fn mremap(
    old: *mut c_void,
    old_len: usize,
    new_len: usize,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    let new_addr = if flags & libc::MREMAP_FIXED != 0 { new_addr } else { core::ptr::null_mut() };
    let f = REAL_MAP.mremap.load(Relaxed);
    if !f.is_null() {
        // SAFETY: `f` is libc's mremap, variadic, called as such; the
        // caller's contract.
        return unsafe { core::mem::transmute::<*mut c_void, MremapFn>(f)(old, old_len, new_len, flags, new_addr) };
    }
    let args = [old as usize, old_len, new_len, flags as usize, new_addr as usize, 0];
    // SAFETY: the caller's mremap arguments, passed to the system call.
    match unsafe { syscall6(libc::SYS_mremap, args) } {
        Ok(p) => p as *mut c_void,
        Err(e) => {
            set_errno(e);
            libc::MAP_FAILED
        }
    }
}

/// `/dev/shm/NAME` for a POSIX shm name as glibc builds it (leading
/// slashes skipped; empty names, `.`, `..` and names with a slash are
/// `EINVAL`, names over NAME_MAX `ENAMETOOLONG`), NUL-terminated in `buf`.
fn shm_path(name: *const c_char, buf: &mut [u8; 9 + 256]) -> Result<(), Errno> {
    // SAFETY: the caller's shm_open/shm_unlink contract: a NUL-terminated name.
    let mut name = unsafe { core::ffi::CStr::from_ptr(name) }.to_bytes();
    while let [b'/', rest @ ..] = name {
        name = rest;
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(Errno(libc::EINVAL));
    }
    if name.len() > 255 {
        return Err(Errno(libc::ENAMETOOLONG));
    }
    buf[..9].copy_from_slice(b"/dev/shm/");
    buf[9..9 + name.len()].copy_from_slice(name);
    buf[9 + name.len()] = 0;
    Ok(())
}

/// shm_open(3) through libc (or openat(2) under /dev/shm before resolution).
///
/// # Safety
/// As shm_open(3): `name` is a NUL-terminated string.
pub unsafe fn shm_open(name: *const c_char, oflag: c_int, mode: libc::mode_t) -> c_int {
    let f = REAL_MAP.shm_open.load(Relaxed);
    if !f.is_null() {
        // SAFETY: `f` is libc's shm_open; the caller's contract.
        return unsafe { core::mem::transmute::<*mut c_void, ShmOpenFn>(f)(name, oflag, mode) };
    }
    let mut path = [0u8; 9 + 256];
    let opened = shm_path(name, &mut path).and_then(|()| {
        let flags = oflag | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let args = [libc::AT_FDCWD as usize, path.as_ptr() as usize, flags as usize, mode as usize, 0, 0];
        // SAFETY: a NUL-terminated path on this frame.
        unsafe { syscall6(libc::SYS_openat, args) }
    });
    opened.map_or_else(
        |e| {
            set_errno(e);
            -1
        },
        |fd| fd as c_int,
    )
}

/// shm_unlink(3) through libc (or unlinkat(2) under /dev/shm before resolution).
///
/// # Safety
/// As shm_unlink(3): `name` is a NUL-terminated string.
pub unsafe fn shm_unlink(name: *const c_char) -> c_int {
    let f = REAL_MAP.shm_unlink.load(Relaxed);
    if !f.is_null() {
        // SAFETY: `f` is libc's shm_unlink; the caller's contract.
        return unsafe { core::mem::transmute::<*mut c_void, ShmUnlinkFn>(f)(name) };
    }
    let mut path = [0u8; 9 + 256];
    let unlinked = shm_path(name, &mut path).and_then(|()| {
        let args = [libc::AT_FDCWD as usize, path.as_ptr() as usize, 0, 0, 0, 0];
        // SAFETY: a NUL-terminated path on this frame.
        unsafe { syscall6(libc::SYS_unlinkat, args) }
    });
    unlinked.map_or_else(
        |e| {
            set_errno(e);
            -1
        },
        |_| 0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno() -> i32 {
        // SAFETY: this thread's errno slot.
        unsafe { *libc::__errno_location() }
    }

    #[test]
    fn standins_behave_like_libc() {
        // Before `resolve` (each test binary starts unresolved; this test
        // resolves at its end, and the other tests do not depend on it).
        let name = format!("/ipc-offload-standin-{}\0", std::process::id());
        // SAFETY: NUL-terminated names; a fresh mapping used only here.
        unsafe {
            let fd = shm_open(name.as_ptr().cast(), libc::O_CREAT | libc::O_RDWR | libc::O_EXCL, 0o600);
            assert!(fd >= 0, "errno {}", errno());
            assert_eq!(libc::ftruncate(fd, 8192), 0);
            let p = mmap(core::ptr::null_mut(), 8192, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0);
            assert_ne!(p, libc::MAP_FAILED);
            *p.cast::<u8>() = 9;
            let q = mremap(p, 8192, 16384, libc::MREMAP_MAYMOVE, core::ptr::null_mut());
            assert_ne!(q, libc::MAP_FAILED);
            assert_eq!(*q.cast::<u8>(), 9);
            assert_eq!(munmap(q, 16384), 0);
            assert_eq!(munmap(0x1001 as *mut c_void, 4096), -1);
            assert_eq!(errno(), libc::EINVAL);
            libc::close(fd);
            assert_eq!(shm_unlink(name.as_ptr().cast()), 0);
            assert_eq!(shm_unlink(name.as_ptr().cast()), -1);
            assert_eq!(errno(), libc::ENOENT);
            assert_eq!(shm_open(c"/a/b".as_ptr(), libc::O_RDONLY, 0), -1);
            assert_eq!(errno(), libc::EINVAL);
            assert_eq!(
                mmap(core::ptr::null_mut(), 0, libc::PROT_READ, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0),
                libc::MAP_FAILED
            );
            assert_eq!(errno(), libc::EINVAL);
        }
        resolve().unwrap();
        assert!(!REAL_MAP.mremap.load(Relaxed).is_null());
    }
}
