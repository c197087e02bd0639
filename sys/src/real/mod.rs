//! The real libc functions behind the hooks, and the memcpy threshold, packed
//! in one cache line: below its threshold a hook reads this line once,
//! compares, and jumps.
//!
//! The other real functions live beside this file, each resolved once
//! from the constructor: [`io`] (read/write family, sockets), [`wait`]
//! (epoll, poll, select), [`mapping`] (mmap, shm_open).
//!
//! Until [`resolve`] runs (from the library constructor) every slot holds a
//! `rep movsb` fallback from [`crate::fallback`], and the threshold is
//! `usize::MAX`, so nothing is offloaded and nothing can recurse. Slots are
//! atomics: a thread copying while another resolves sees either function,
//! and both are correct.

pub mod io;
pub mod mapping;
pub mod wait;

use core::ffi::{CStr, c_int, c_void};
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::Relaxed};

use crate::fallback;

/// memcpy, memmove and mempcpy.
pub type CopyFn = unsafe extern "C" fn(*mut c_void, *const c_void, usize) -> *mut c_void;
/// `__memcpy_chk` and friends: a copy with the destination object's size.
pub type CheckedCopyFn = unsafe extern "C" fn(*mut c_void, *const c_void, usize, usize) -> *mut c_void;
/// `_exit` and `_Exit`.
pub type ExitFn = unsafe extern "C" fn(c_int) -> !;
/// memset.
pub type FillFn = unsafe extern "C" fn(*mut c_void, c_int, usize) -> *mut c_void;
/// `__memset_chk`: memset with the destination object's size.
pub type CheckedFillFn = unsafe extern "C" fn(*mut c_void, c_int, usize, usize) -> *mut c_void;
/// memcmp and bcmp.
pub type CompareFn = unsafe extern "C" fn(*const c_void, *const c_void, usize) -> c_int;

/// A function pointer slot that can be swapped while other threads call it.
#[derive(Debug)]
pub struct Slot<F> {
    ptr: AtomicPtr<c_void>,
    _kind: core::marker::PhantomData<F>,
}

impl Slot<CopyFn> {
    const fn new(f: CopyFn) -> Self {
        Slot { ptr: AtomicPtr::new(f as *mut c_void), _kind: core::marker::PhantomData }
    }
}

impl Slot<CheckedCopyFn> {
    const fn new(f: CheckedCopyFn) -> Self {
        Slot { ptr: AtomicPtr::new(f as *mut c_void), _kind: core::marker::PhantomData }
    }
}

impl Slot<FillFn> {
    const fn new(f: FillFn) -> Self {
        Slot { ptr: AtomicPtr::new(f as *mut c_void), _kind: core::marker::PhantomData }
    }
}

impl Slot<CheckedFillFn> {
    const fn new(f: CheckedFillFn) -> Self {
        Slot { ptr: AtomicPtr::new(f as *mut c_void), _kind: core::marker::PhantomData }
    }
}

impl Slot<CompareFn> {
    const fn new(f: CompareFn) -> Self {
        Slot { ptr: AtomicPtr::new(f as *mut c_void), _kind: core::marker::PhantomData }
    }
}

impl Slot<Option<ExitFn>> {
    const fn empty() -> Self {
        Slot { ptr: AtomicPtr::new(core::ptr::null_mut()), _kind: core::marker::PhantomData }
    }
}

impl<F> Slot<F> {
    /// Stores a resolved address.
    ///
    /// # Safety
    /// `p` must be the address of a function of type `F` (for `Option<F>`, a
    /// non-null one), callable for the rest of the process's life.
    unsafe fn set_raw(&self, p: *mut c_void) {
        self.ptr.store(p, Relaxed);
    }
}

macro_rules! slot_impl {
    ($fnty:ty) => {
        impl Slot<$fnty> {
            /// The current function.
            #[inline(always)]
            pub fn get(&self) -> $fnty {
                // SAFETY: the slot only ever holds pointers to functions of
                // type `$fnty` (null only for `Option`): the initial value,
                // or what `set_raw` stored under its contract.
                unsafe { core::mem::transmute::<*mut c_void, $fnty>(self.ptr.load(Relaxed)) }
            }
        }
    };
}
slot_impl!(CopyFn);
slot_impl!(CheckedCopyFn);
slot_impl!(Option<ExitFn>);
slot_impl!(FillFn);
slot_impl!(CheckedFillFn);
slot_impl!(CompareFn);

/// The hot line: the memcpy-class threshold and the real copy functions.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct Real {
    /// memcpy-family calls moving at least this many bytes leave the fast
    /// path; `usize::MAX` while the class is disabled (before init, `off`).
    pub memcpy_min: AtomicUsize,
    /// memcpy.
    pub memcpy: Slot<CopyFn>,
    /// memmove.
    pub memmove: Slot<CopyFn>,
    /// mempcpy.
    pub mempcpy: Slot<CopyFn>,
    /// `__memcpy_chk`.
    pub memcpy_chk: Slot<CheckedCopyFn>,
    /// `__memmove_chk`.
    pub memmove_chk: Slot<CheckedCopyFn>,
    /// `__mempcpy_chk`.
    pub mempcpy_chk: Slot<CheckedCopyFn>,
    /// `_exit` (`None`: use the exit_group system call).
    pub exit: Slot<Option<ExitFn>>,
    /// memset calls of at least this many bytes leave the fast path.
    pub memset_min: AtomicUsize,
    /// memcmp and bcmp calls of at least this many bytes leave the fast path.
    pub memcmp_min: AtomicUsize,
    /// memset.
    pub memset: Slot<FillFn>,
    /// `__memset_chk`.
    pub memset_chk: Slot<CheckedFillFn>,
    /// memcmp.
    pub memcmp: Slot<CompareFn>,
    /// bcmp.
    pub bcmp: Slot<CompareFn>,
}

/// The process's table. Statics keep it allocation-free and fork-proof.
pub static REAL: Real = Real {
    memcpy_min: AtomicUsize::new(usize::MAX),
    memcpy: Slot::<CopyFn>::new(fallback::memcpy),
    memmove: Slot::<CopyFn>::new(fallback::memmove),
    mempcpy: Slot::<CopyFn>::new(fallback::mempcpy),
    memcpy_chk: Slot::<CheckedCopyFn>::new(fallback::memcpy_chk),
    memmove_chk: Slot::<CheckedCopyFn>::new(fallback::memmove_chk),
    mempcpy_chk: Slot::<CheckedCopyFn>::new(fallback::mempcpy_chk),
    exit: Slot::<Option<ExitFn>>::empty(),
    memset_min: AtomicUsize::new(usize::MAX),
    memcmp_min: AtomicUsize::new(usize::MAX),
    memset: Slot::<FillFn>::new(fallback::memset),
    memset_chk: Slot::<CheckedFillFn>::new(fallback::memset_chk),
    memcmp: Slot::<CompareFn>::new(fallback::memcmp),
    bcmp: Slot::<CompareFn>::new(fallback::memcmp),
};

/// A symbol the next object in the lookup order does not define.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingSymbol(pub &'static CStr);

impl core::fmt::Display for MissingSymbol {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "dlsym(RTLD_NEXT, \"{}\") found nothing; using a built-in stand-in", self.0.to_string_lossy())
    }
}

/// dlsym(RTLD_NEXT, name).
pub(crate) fn next(name: &'static CStr) -> Result<*mut c_void, MissingSymbol> {
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name; it returns the
    // next definition after this library in the lookup order, or null.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    if p.is_null() { Err(MissingSymbol(name)) } else { Ok(p) }
}

/// Resolves every real function with dlsym(RTLD_NEXT). Called once, from the
/// library constructor (dlsym may allocate: never from a hook). Slots whose
/// symbol is missing keep their fallback; the first such symbol is returned.
pub fn resolve() -> Result<(), MissingSymbol> {
    let mut missing = None;
    macro_rules! resolve_slot {
        ($slot:expr, $name:literal) => {
            match next($name) {
                // SAFETY: `p` is the next definition of the libc function
                // named $name, whose C prototype is the slot's function type.
                Ok(p) => unsafe { $slot.set_raw(p) },
                Err(e) => {
                    missing.get_or_insert(e);
                }
            }
        };
    }
    resolve_slot!(REAL.memcpy, c"memcpy");
    resolve_slot!(REAL.memmove, c"memmove");
    resolve_slot!(REAL.mempcpy, c"mempcpy");
    resolve_slot!(REAL.memcpy_chk, c"__memcpy_chk");
    resolve_slot!(REAL.memmove_chk, c"__memmove_chk");
    resolve_slot!(REAL.mempcpy_chk, c"__mempcpy_chk");
    resolve_slot!(REAL.exit, c"_exit");
    resolve_slot!(REAL.memset, c"memset");
    resolve_slot!(REAL.memset_chk, c"__memset_chk");
    resolve_slot!(REAL.memcmp, c"memcmp");
    resolve_slot!(REAL.bcmp, c"bcmp");
    missing.map_or(Ok(()), Err)
}

/// Copies `n` bytes with the real memcpy (regions must not overlap).
///
/// # Safety
/// As memcpy(3).
#[inline]
pub unsafe fn copy(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: forwarded memcpy contract.
    unsafe { (REAL.memcpy.get())(dst.cast(), src.cast(), n) };
}

/// Moves `n` bytes with the real memmove (regions may overlap).
///
/// # Safety
/// As memmove(3).
#[inline]
pub unsafe fn move_bytes(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: forwarded memmove contract.
    unsafe { (REAL.memmove.get())(dst.cast(), src.cast(), n) };
}

/// Ends the process with the real `_exit` (or exit_group before resolution).
pub fn exit(code: c_int) -> ! {
    match REAL.exit.get() {
        // SAFETY: the real _exit takes a status and does not return.
        Some(f) => unsafe { f(code) },
        None => crate::exit_group(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_finds_libc() {
        resolve().unwrap();
        let src = [1u8, 2, 3, 4];
        let mut dst = [0u8; 4];
        // SAFETY: four-byte buffers.
        unsafe { copy(dst.as_mut_ptr(), src.as_ptr(), 4) };
        assert_eq!(dst, src);
        assert!(REAL.exit.get().is_some());
        assert_ne!(REAL.memcpy.get() as usize, fallback::memcpy as *const () as usize);
    }
}
