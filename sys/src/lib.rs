//! The platform layer: raw Linux system calls, futexes, threads, the copy
//! routine that needs no libc, and the real libc functions behind the hooks
//! ([`real`]). The crates above it (DSA, ring, regions, engines) reach the
//! kernel and the CPU through this crate; its own `unsafe` blocks each carry
//! a `// SAFETY:` line.
//!
//! System calls are issued with the `syscall` instruction rather than through
//! libc: they never touch `errno` (a hook must leave the caller's errno as it
//! was), they work before libc's symbols are resolved, and they are safe in
//! signal handlers and vfork children. Each wrapper names its man page.

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!("ipc-offload supports x86-64 Linux only");

pub mod cpus;
pub mod epoll;
pub mod fallback;
pub mod futex;
pub mod mem;
pub mod net;
pub mod pipe;
pub mod real;
pub mod signal;
pub mod stream;
pub mod tcp;
pub mod thread;
pub mod x86;

use core::arch::asm;
use core::ffi::CStr;

/// A kernel error number (`-ret` of a failed system call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// `EINTR`: interrupted by a signal handler.
    pub const INTR: Errno = Errno(libc::EINTR);
    /// `EAGAIN`: the futex word did not hold the expected value.
    pub const AGAIN: Errno = Errno(libc::EAGAIN);
    /// `ETIMEDOUT`: a timed wait expired.
    pub const TIMEDOUT: Errno = Errno(libc::ETIMEDOUT);

    /// The symbolic name of the errors opening a device file gives, for
    /// logs and stats that must not allocate; `None` for the others.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::ENXIO => "ENXIO",
            libc::EBUSY => "EBUSY",
            libc::ENODEV => "ENODEV",
            libc::EINVAL => "EINVAL",
            libc::EACCES => "EACCES",
            libc::EMFILE => "EMFILE",
            libc::ENFILE => "ENFILE",
            libc::ENOMEM => "ENOMEM",
            libc::EOPNOTSUPP => "EOPNOTSUPP",
            _ => return None,
        })
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

/// Result of a raw system call.
pub type SysResult = Result<usize, Errno>;

fn check(ret: isize) -> SysResult {
    // The kernel returns -4095..-1 for errors, anything else is a value.
    if (-4095..0).contains(&ret) { Err(Errno(-ret as i32)) } else { Ok(ret as usize) }
}

/// Issues system call `nr` with up to six arguments (unused ones are 0).
///
/// # Safety
/// The arguments must be valid for system call `nr`: pointers must point to
/// memory of the size and mutability the call expects.
#[inline]
pub unsafe fn syscall6(nr: i64, a: [usize; 6]) -> SysResult {
    let ret: isize;
    // SAFETY: the x86-64 Linux syscall ABI: number in rax, arguments in rdi,
    // rsi, rdx, r10, r8, r9; rcx and r11 are clobbered; the stack is not used.
    // The caller vouches for the arguments.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack, preserves_flags),
        );
    }
    check(ret)
}

/// getpid(2): never fails, never cached (a vfork child sees its own pid).
pub fn getpid() -> i32 {
    // SAFETY: getpid takes no arguments.
    unsafe { syscall6(libc::SYS_getpid, [0; 6]) }.map_or(0, |pid| pid as i32)
}

/// `CLOCK_MONOTONIC` in nanoseconds (clock_gettime(2), through the vDSO):
/// one clock for every process of the machine, and nothing to set up (no
/// lock a fork could catch held).
pub fn monotonic_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    (t.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec as u64)
}

/// The calling thread's CPU time in nanoseconds (clock_gettime(2),
/// `CLOCK_THREAD_CPUTIME_ID`): what it ran, not what it waited to run.
pub fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    (t.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec as u64)
}

/// gettid(2).
pub fn gettid() -> i32 {
    // SAFETY: gettid takes no arguments.
    unsafe { syscall6(libc::SYS_gettid, [0; 6]) }.map_or(0, |tid| tid as i32)
}

/// The CPU the calling thread runs on, sched_getcpu(3) (glibc reads it
/// from the thread's rseq area or the vDSO: no system call), or `None`.
/// Only a hint: the thread may move at once.
pub fn current_cpu() -> Option<u32> {
    // SAFETY: sched_getcpu takes no arguments and touches no memory of ours.
    let cpu = unsafe { libc::sched_getcpu() };
    u32::try_from(cpu).ok()
}

/// sched_yield(2).
pub fn sched_yield() {
    // SAFETY: sched_yield takes no arguments.
    let _ = unsafe { syscall6(libc::SYS_sched_yield, [0; 6]) };
}

/// exit_group(2): ends every thread of the process at once.
pub fn exit_group(code: i32) -> ! {
    // SAFETY: exit_group takes an int and does not return.
    let _ = unsafe { syscall6(libc::SYS_exit_group, [code as usize, 0, 0, 0, 0, 0]) };
    // exit_group cannot fail; satisfy the type checker without a libc call.
    loop {
        core::hint::spin_loop();
    }
}

/// The NUMA node of the CPU the caller runs on now (getcpu(2)).
pub fn current_node() -> Option<u32> {
    let (mut cpu, mut node) = (0u32, 0u32);
    // SAFETY: getcpu writes two u32 into this frame; the cache argument is
    // unused since Linux 2.6.24.
    let r = unsafe {
        syscall6(libc::SYS_getcpu, [&mut cpu as *mut u32 as usize, &mut node as *mut u32 as usize, 0, 0, 0, 0])
    };
    r.ok().map(|_| node)
}

/// write(2) of all of `bytes` to `fd`, retrying on EINTR and short writes.
pub fn write_all(fd: i32, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a live slice of the given length.
        let r = unsafe { syscall6(libc::SYS_write, [fd as usize, bytes.as_ptr() as usize, bytes.len(), 0, 0, 0]) };
        match r {
            Ok(0) => return Err(Errno(libc::EIO)),
            Ok(n) => bytes = &bytes[n.min(bytes.len())..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// openat(2) relative to the working directory; returns the new fd.
pub fn open(path: &CStr, flags: i32, mode: u32) -> Result<i32, Errno> {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    unsafe {
        syscall6(
            libc::SYS_openat,
            [libc::AT_FDCWD as usize, path.as_ptr() as usize, flags as usize, mode as usize, 0, 0],
        )
    }
    .map(|fd| fd as i32)
}

/// faccessat(2) relative to the working directory, with the real ids:
/// `mode` of `R_OK`, `W_OK`, `X_OK` or `F_OK`.
pub fn access(path: &CStr, mode: i32) -> Result<(), Errno> {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    unsafe { syscall6(libc::SYS_faccessat, [libc::AT_FDCWD as usize, path.as_ptr() as usize, mode as usize, 0, 0, 0]) }
        .map(|_| ())
}

/// close(2).
pub fn close(fd: i32) {
    // SAFETY: closing a descriptor the caller owns.
    let _ = unsafe { syscall6(libc::SYS_close, [fd as usize, 0, 0, 0, 0, 0]) };
}

/// renameat(2) relative to the working directory; replaces `to` atomically.
pub fn rename(from: &CStr, to: &CStr) -> Result<(), Errno> {
    let cwd = libc::AT_FDCWD as usize;
    // SAFETY: both paths are NUL-terminated and outlive the call.
    unsafe { syscall6(libc::SYS_renameat, [cwd, from.as_ptr() as usize, cwd, to.as_ptr() as usize, 0, 0]) }.map(|_| ())
}

/// unlinkat(2) relative to the working directory.
pub fn unlink(path: &CStr) -> Result<(), Errno> {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    unsafe { syscall6(libc::SYS_unlinkat, [libc::AT_FDCWD as usize, path.as_ptr() as usize, 0, 0, 0, 0]) }.map(|_| ())
}

/// True while the calling thread runs on an alternate signal stack
/// (sigaltstack(2) reports SS_ONSTACK): a signal handler with little stack.
pub fn on_alternate_signal_stack() -> bool {
    let mut current = core::mem::MaybeUninit::<libc::stack_t>::zeroed();
    // SAFETY: a null new stack only queries; the kernel fills `current`.
    let r = unsafe { syscall6(libc::SYS_sigaltstack, [0, current.as_mut_ptr() as usize, 0, 0, 0, 0]) };
    // SAFETY: zero-initialised, then possibly filled by the kernel.
    r.is_ok() && unsafe { current.assume_init() }.ss_flags & libc::SS_ONSTACK != 0
}

/// True in a set-user-ID, set-group-ID or capability-raising program
/// (getauxval(3) AT_SECURE): the environment is not to be trusted.
pub fn is_secure_exec() -> bool {
    // SAFETY: getauxval reads the auxiliary vector; it has no preconditions.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// setenv(3), overwriting.
///
/// Only while the process has a single thread (the library constructor):
/// setenv races with every other reader of the environment.
pub fn setenv_single_threaded(name: &CStr, value: &CStr) -> Result<(), Errno> {
    // SAFETY: both strings are NUL-terminated; the caller guarantees no
    // other thread reads or writes the environment meanwhile.
    let r = unsafe { libc::setenv(name.as_ptr(), value.as_ptr(), 1) };
    if r == 0 { Ok(()) } else { Err(Errno(libc::ENOMEM)) }
}

/// The calling thread's `errno`, saved and restored around the side work a
/// hook does, so the caller never sees a value the library left behind.
#[derive(Debug)]
pub struct ErrnoGuard(i32);

impl ErrnoGuard {
    /// Saves the current errno.
    pub fn save() -> Self {
        // SAFETY: __errno_location returns the calling thread's errno slot,
        // valid for the life of the thread.
        ErrnoGuard(unsafe { *libc::__errno_location() })
    }
}

impl Drop for ErrnoGuard {
    fn drop(&mut self) {
        // SAFETY: as in `save`; restoring the value read there.
        unsafe { *libc::__errno_location() = self.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getpid_matches_std() {
        assert_eq!(getpid() as u32, std::process::id());
    }

    #[test]
    fn errors_are_negative_returns() {
        assert_eq!(check(-2), Err(Errno(2)));
        assert_eq!(check(5), Ok(5));
        assert_eq!(open(c"/nonexistent/x", libc::O_RDONLY, 0), Err(Errno(libc::ENOENT)));
    }

    #[test]
    fn raw_calls_leave_errno_alone() {
        let _g = ErrnoGuard::save();
        // SAFETY: this thread's errno slot.
        unsafe { *libc::__errno_location() = 1234 };
        let _ = open(c"/nonexistent/x", libc::O_RDONLY, 0);
        // SAFETY: as above.
        assert_eq!(unsafe { *libc::__errno_location() }, 1234);
    }

    #[test]
    fn affinity_counts_at_least_one_cpu() {
        let n = thread::affinity_cpu_count().unwrap();
        // std's figure also applies the cgroup quota, so it can only be lower.
        let std_count = std::thread::available_parallelism().unwrap().get();
        assert!(n >= 1 && n as usize >= std_count, "{n} < {std_count}");
    }
}
