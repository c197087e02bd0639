//! Copies that need neither libc nor the compiler's memcpy: `rep movsb`.
//!
//! These serve the hooks before the real libc functions are resolved (other
//! preloads' constructors may copy before ours runs) and whenever resolution
//! failed. They cannot recurse into a hook: the copy is one instruction, and
//! nothing here can be lowered by the compiler into a call to `memcpy`.

use core::arch::asm;
use core::ffi::{c_int, c_void};

/// Forward byte copy of `n` bytes.
///
/// # Safety
/// `src` must be readable and `dst` writable for `n` bytes; if they overlap,
/// `dst` must not be above `src` (a forward copy reads before it writes).
#[inline]
pub unsafe fn copy_forward(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: the caller guarantees the ranges; DF is clear per the SysV ABI,
    // so rep movsb copies upwards; rdi, rsi and rcx are consumed.
    unsafe {
        asm!(
            "rep movsb",
            inout("rdi") dst => _, inout("rsi") src => _, inout("rcx") n => _,
            options(nostack, preserves_flags),
        );
    }
}

/// Backward byte copy of `n` bytes (for overlapping moves with `dst` above `src`).
///
/// # Safety
/// `src` must be readable and `dst` writable for `n` bytes.
#[inline]
pub unsafe fn copy_backward(dst: *mut u8, src: *const u8, n: usize) {
    if n == 0 {
        return;
    }
    // SAFETY: the caller guarantees the ranges. With DF set, rep movsb starts
    // at the last byte and copies downwards; DF is cleared again before the
    // block ends, as the ABI requires. The last-byte pointers are in range
    // because n >= 1.
    unsafe {
        asm!(
            "std",
            "rep movsb",
            "cld",
            inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _, inout("rcx") n => _,
            options(nostack),
        );
    }
}

/// `memmove` semantics on top of the two directions.
///
/// # Safety
/// `src` must be readable and `dst` writable for `n` bytes.
#[inline]
pub unsafe fn copy_overlapping(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: forwarded contract; the direction avoids reading overwritten bytes.
    unsafe {
        if (dst as usize).wrapping_sub(src as usize) < n {
            copy_backward(dst, src, n)
        } else {
            copy_forward(dst, src, n)
        }
    }
}

/// `memcpy` before libc is resolved.
///
/// # Safety
/// As memcpy(3).
pub unsafe extern "C" fn memcpy(dst: *mut c_void, src: *const c_void, n: usize) -> *mut c_void {
    // SAFETY: memcpy's contract; old binaries expect overlap to work, so move.
    unsafe { copy_overlapping(dst.cast(), src.cast(), n) };
    dst
}

/// `memmove` before libc is resolved.
///
/// # Safety
/// As memmove(3).
pub unsafe extern "C" fn memmove(dst: *mut c_void, src: *const c_void, n: usize) -> *mut c_void {
    // SAFETY: memmove's contract.
    unsafe { copy_overlapping(dst.cast(), src.cast(), n) };
    dst
}

/// `mempcpy` before libc is resolved.
///
/// # Safety
/// As mempcpy(3).
pub unsafe extern "C" fn mempcpy(dst: *mut c_void, src: *const c_void, n: usize) -> *mut c_void {
    // SAFETY: mempcpy's contract; the returned pointer is one past the copy.
    unsafe {
        copy_overlapping(dst.cast(), src.cast(), n);
        dst.cast::<u8>().add(n).cast()
    }
}

/// glibc's fortify failure without glibc's `__chk_fail`: the same message,
/// then death by SIGABRT, whatever the program did with that signal.
pub fn chk_fail() -> ! {
    let _ = super::write_all(2, b"*** buffer overflow detected ***: terminated\n");
    // SAFETY: plain libc calls on locals: restore SIGABRT's default action,
    // unblock it, raise it; abort(3) does the same.
    unsafe {
        libc::signal(libc::SIGABRT, libc::SIG_DFL);
        let mut set = core::mem::MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGABRT);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, set.as_ptr(), core::ptr::null_mut());
        libc::raise(libc::SIGABRT);
    }
    super::exit_group(127)
}

/// `__memcpy_chk` before libc is resolved.
///
/// # Safety
/// As memcpy(3), with `dstlen` the size of the destination object.
pub unsafe extern "C" fn memcpy_chk(dst: *mut c_void, src: *const c_void, n: usize, dstlen: usize) -> *mut c_void {
    if dstlen < n {
        chk_fail();
    }
    // SAFETY: forwarded contract, bounds checked above.
    unsafe { memcpy(dst, src, n) }
}

/// `__memmove_chk` before libc is resolved.
///
/// # Safety
/// As memmove(3), with `dstlen` the size of the destination object.
pub unsafe extern "C" fn memmove_chk(dst: *mut c_void, src: *const c_void, n: usize, dstlen: usize) -> *mut c_void {
    if dstlen < n {
        chk_fail();
    }
    // SAFETY: forwarded contract, bounds checked above.
    unsafe { memmove(dst, src, n) }
}

/// `__mempcpy_chk` before libc is resolved.
///
/// # Safety
/// As mempcpy(3), with `dstlen` the size of the destination object.
pub unsafe extern "C" fn mempcpy_chk(dst: *mut c_void, src: *const c_void, n: usize, dstlen: usize) -> *mut c_void {
    if dstlen < n {
        chk_fail();
    }
    // SAFETY: forwarded contract, bounds checked above.
    unsafe { mempcpy(dst, src, n) }
}

/// `memset` before libc is resolved (`rep stosb`).
///
/// # Safety
/// As memset(3).
pub unsafe extern "C" fn memset(dst: *mut c_void, c: c_int, n: usize) -> *mut c_void {
    // SAFETY: memset's contract: `dst` writable for `n` bytes; rep stosb
    // stores al to [rdi, rdi + rcx) (the direction flag is clear, per ABI).
    unsafe {
        core::arch::asm!(
            "rep stosb",
            inout("rdi") dst => _,
            inout("rcx") n => _,
            in("al") c as u8,
            options(nostack, preserves_flags),
        );
    }
    dst
}

/// `__memset_chk` before libc is resolved.
///
/// # Safety
/// As memset(3), with `dstlen` the size of the destination object.
pub unsafe extern "C" fn memset_chk(dst: *mut c_void, c: c_int, n: usize, dstlen: usize) -> *mut c_void {
    if dstlen < n {
        chk_fail();
    }
    // SAFETY: forwarded contract, bounds checked above.
    unsafe { memset(dst, c, n) }
}

/// `memcmp` and `bcmp` before libc is resolved: the difference of the first
/// differing bytes, as unsigned chars. Volatile reads keep the compiler from
/// turning the loop back into a call to memcmp (this function).
///
/// # Safety
/// As memcmp(3).
pub unsafe extern "C" fn memcmp(a: *const c_void, b: *const c_void, n: usize) -> c_int {
    for i in 0..n {
        // SAFETY: both readable for `n` bytes (memcmp's contract).
        let (x, y) = unsafe { (a.cast::<u8>().add(i).read_volatile(), b.cast::<u8>().add(i).read_volatile()) };
        if x != y {
            return c_int::from(x) - c_int::from(y);
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn forward_and_backward_copy_like_memmove() {
        for n in [0usize, 1, 7, 64, 4097] {
            for shift in [1usize, 3, 64, n / 2 + 1] {
                let orig = pattern(n + shift);
                // Move up (dst above src): needs the backward copy.
                let mut buf = orig.clone();
                let base = buf.as_mut_ptr();
                // SAFETY: both ranges lie inside `buf` (n + shift bytes).
                unsafe { copy_overlapping(base.add(shift), base, n) };
                let mut want = orig.clone();
                want.copy_within(0..n, shift);
                assert_eq!(buf, want, "up n={n} shift={shift}");
                // Move down.
                let mut buf = orig.clone();
                let base = buf.as_mut_ptr();
                // SAFETY: as above.
                unsafe { copy_overlapping(base, base.add(shift), n) };
                let mut want = orig.clone();
                want.copy_within(shift..shift + n, 0);
                assert_eq!(buf, want, "down n={n} shift={shift}");
            }
        }
    }

    #[test]
    fn mempcpy_returns_the_end() {
        let src = pattern(100);
        let mut dst = vec![0u8; 100];
        // SAFETY: both buffers hold 100 bytes.
        let end = unsafe { mempcpy(dst.as_mut_ptr().cast(), src.as_ptr().cast(), 100) };
        assert_eq!(end as usize, dst.as_ptr() as usize + 100);
        assert_eq!(dst, src);
    }
}
