//! The x86-64 instructions the DSA engine needs, emitted only where CPUID
//! says the CPU has them (Intel SDM vol. 2: MOVDIR64B, ENQCMD, UMONITOR,
//! UMWAIT; CPUID leaf 7 subleaf 0 ECX bits 28, 29 and 5), and RDTSC.

use core::arch::asm;
use core::arch::x86_64::__cpuid_count;
use core::sync::atomic::AtomicU8;
use core::sync::atomic::Ordering::Relaxed;

/// The CPU features the DSA engine asks about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// MOVDIR64B: 64-byte direct store (dedicated work queues).
    pub movdir64b: bool,
    /// ENQCMD: non-posted 64-byte enqueue (shared work queues).
    pub enqcmd: bool,
    /// WAITPKG: UMONITOR, UMWAIT, TPAUSE.
    pub waitpkg: bool,
}

/// Bits 0-2: the features; bit 7: known.
static FEATURES: AtomicU8 = AtomicU8::new(0);

impl Features {
    /// This CPU's features (CPUID once, then cached).
    // `__cpuid_count` is a safe function from Rust 1.87 on, unsafe before.
    #[allow(unused_unsafe)]
    pub fn get() -> Features {
        let mut bits = FEATURES.load(Relaxed);
        if bits & 0x80 == 0 {
            // SAFETY: CPUID exists on every x86-64 CPU; leaf 0 says whether
            // leaf 7 does.
            let max = unsafe { __cpuid_count(0, 0) }.eax;
            let ecx = if max >= 7 {
                // SAFETY: leaf 7 exists (checked above).
                unsafe { __cpuid_count(7, 0) }.ecx
            } else {
                0
            };
            bits = 0x80
                | u8::from(ecx & (1 << 28) != 0)
                | u8::from(ecx & (1 << 29) != 0) << 1
                | u8::from(ecx & (1 << 5) != 0) << 2;
            FEATURES.store(bits, Relaxed);
        }
        Features { movdir64b: bits & 1 != 0, enqcmd: bits & 2 != 0, waitpkg: bits & 4 != 0 }
    }
}

/// Stores the 64 bytes at `src` to `dst` as one direct store (MOVDIR64B),
/// after a store fence so that the descriptor's completion record (zeroed
/// by the caller) is visible first.
///
/// # Safety
/// [`Features::get`]`().movdir64b`; `dst` 64-byte aligned and writable (a
/// work queue portal, or memory a device model reads); `src` readable for
/// 64 bytes.
pub unsafe fn movdir64b(dst: *mut u8, src: *const u8) {
    // SAFETY: the caller's contract; 66 0F 38 F8 /r is MOVDIR64B with the
    // destination in rax and the source in rdx (encoded as bytes: the
    // assembler may not know the mnemonic).
    unsafe {
        asm!(
            "sfence",
            ".byte 0x66, 0x0f, 0x38, 0xf8, 0x02",
            in("rax") dst,
            in("rdx") src,
            options(nostack, preserves_flags),
        );
    }
}

/// Enqueues the 64 bytes at `src` at shared work queue portal `dst`
/// (ENQCMD); false when the queue refused them (ZF set: full, or busy),
/// which asks for a retry.
///
/// # Safety
/// [`Features::get`]`().enqcmd`; `dst` a shared work queue portal mapped by
/// this process (64-byte aligned); `src` readable for 64 bytes.
pub unsafe fn enqcmd(dst: *mut u8, src: *const u8) -> bool {
    let refused: u8;
    // SAFETY: the caller's contract; F2 0F 38 F8 /r is ENQCMD with the
    // destination in rax and the source in rdx; setz reads its ZF.
    unsafe {
        asm!(
            "sfence",
            ".byte 0xf2, 0x0f, 0x38, 0xf8, 0x02",
            "setz {refused}",
            refused = out(reg_byte) refused,
            in("rax") dst,
            in("rdx") src,
            options(nostack),
        );
    }
    refused == 0
}

/// The time-stamp counter (RDTSC).
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC exists on every x86-64 CPU and reads a counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Arms address monitoring on the cache line of `addr` (UMONITOR), for a
/// following [`umwait`].
///
/// # Safety
/// [`Features::get`]`().waitpkg`; `addr` mapped.
pub unsafe fn umonitor(addr: *const u8) {
    // SAFETY: the caller's contract; F3 0F AE /6 with a register operand
    // (modrm F0: rax) is UMONITOR rax.
    unsafe { asm!(".byte 0xf3, 0x0f, 0xae, 0xf0", in("rax") addr, options(nostack, preserves_flags)) };
}

/// Waits in the light C0.2 state until the monitored line is written, an
/// interrupt, or the time-stamp counter reaches `deadline` (UMWAIT; the
/// operating system's limit, IA32_UMWAIT_CONTROL, may end it sooner: then
/// it returns true).
///
/// # Safety
/// [`Features::get`]`().waitpkg`, after [`umonitor`].
pub unsafe fn umwait(deadline: u64) -> bool {
    let os_limit: u8;
    // SAFETY: the caller's contract; F2 0F AE /6 with a register operand
    // (modrm F1: ecx, the control word: 0 asks for C0.2) is UMWAIT ecx,
    // with the deadline in edx:eax; CF reports the OS limit.
    unsafe {
        asm!(
            ".byte 0xf2, 0x0f, 0xae, 0xf1",
            "setc {limit}",
            limit = out(reg_byte) os_limit,
            in("ecx") 0u32,
            in("edx") (deadline >> 32) as u32,
            in("eax") deadline as u32,
            options(nostack),
        );
    }
    os_limit != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C, align(64))]
    struct Line([u8; 64]);

    #[test]
    fn movdir64b_stores_64_bytes_when_present() {
        let f = Features::get();
        assert_eq!(Features::get(), f, "cached");
        if !f.movdir64b {
            eprintln!("no MOVDIR64B on this CPU: skipped");
            return;
        }
        let src = Line(core::array::from_fn(|i| i as u8 ^ 0x5a));
        let mut dst = Line([0; 64]);
        // SAFETY: the CPU has MOVDIR64B; both lines are ours and aligned.
        unsafe { movdir64b(dst.0.as_mut_ptr(), src.0.as_ptr()) };
        assert_eq!(dst.0, src.0);
    }
}
