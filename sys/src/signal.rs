//! Signal masks and waits for the library's own blocking calls: a wait on
//! the caller's behalf must be interruptible exactly where the kernel's own
//! would be, no earlier and no later (rt_sigprocmask(2), ppoll(2),
//! rt_sigaction(2)).

use core::time::Duration;

use super::net::PollFd;
use super::{Errno, syscall6};

/// The synchronous fault signals: never blocked, a blocked one kills the
/// process outright instead of running the program's handler.
pub const SYNCHRONOUS: [i32; 6] =
    [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE, libc::SIGTRAP, libc::SIGSYS];

/// A thread's signal mask as the kernel has it (64 signals on x86-64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigMask(u64);

/// The asynchronous signals a wait may hold back: all but the fault signals
/// and glibc's two internal ones (32 cancels threads, 33 runs setuid(2) on
/// every thread: another thread's setuid would wait for this one).
fn asynchronous() -> u64 {
    let mut set = !0u64;
    for signal in SYNCHRONOUS.into_iter().chain([32, 33]) {
        set &= !(1 << (signal - 1));
    }
    set
}

fn sigprocmask(how: i32, set: Option<u64>) -> SigMask {
    let mut old = 0u64;
    let new = set.as_ref().map_or(0, |s| s as *const u64 as usize);
    // SAFETY: an 8-byte set and an 8-byte result on this frame (sigsetsize 8).
    let _ = unsafe { syscall6(libc::SYS_rt_sigprocmask, [how as usize, new, &mut old as *mut u64 as usize, 8, 0, 0]) };
    SigMask(old)
}

/// Holds the asynchronous signals back in the calling thread until dropped:
/// one that arrives meanwhile stays pending, and interrupts the next
/// [`ppoll`] given [`Held::outside`], as it would interrupt a kernel wait.
#[derive(Debug)]
pub struct Held(SigMask);

impl Held {
    /// Blocks them; remembers the mask before.
    pub fn block() -> Held {
        Held(sigprocmask(libc::SIG_BLOCK, Some(asynchronous())))
    }

    /// The mask the caller had: the one to wait under.
    pub fn outside(&self) -> SigMask {
        self.0
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        sigprocmask(libc::SIG_SETMASK, Some(self.0.0));
    }
}

/// Puts `mask` in force in the calling thread; returns the mask before.
pub fn set(mask: SigMask) -> SigMask {
    sigprocmask(libc::SIG_SETMASK, Some(mask.0))
}

/// poll(2) with `mask` in force while it waits (ppoll(2)): `EINTR` if a
/// signal that `mask` lets through is pending or arrives.
pub fn ppoll(fds: &mut [PollFd], timeout: Option<Duration>, mask: SigMask) -> Result<usize, Errno> {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(t.subsec_nanos() as i32),
    });
    let ts_ptr = ts.as_ref().map_or(0, |t| t as *const libc::timespec as usize);
    // SAFETY: `fds` is a live slice of pollfd; the timespec and the 8-byte
    // mask live on this frame for the call.
    unsafe {
        syscall6(libc::SYS_ppoll, [fds.as_mut_ptr() as usize, fds.len(), ts_ptr, &mask.0 as *const u64 as usize, 8, 0])
    }
}

/// Whether every installed signal handler has SA_RESTART (rt_sigaction(2)):
/// then the kernel restarts a blocking call a handler interrupted before it
/// moved any byte, and a library that waits on the caller's behalf must do
/// the same.
pub fn every_handler_restarts() -> bool {
    (1..=64usize).filter(|s| *s != libc::SIGKILL as usize && *s != libc::SIGSTOP as usize).all(|signal| {
        // struct kernel_sigaction: handler, flags, restorer, mask (8 bytes).
        let mut old = [0usize; 4];
        // SAFETY: a null new action only queries; the kernel fills `old`
        // (sigsetsize 8 matches its 4-word layout).
        let r = unsafe { syscall6(libc::SYS_rt_sigaction, [signal, 0, old.as_mut_ptr() as usize, 8, 0, 0]) };
        let [handler, flags, _, _] = old;
        r.is_err() || handler == libc::SIG_DFL || handler == libc::SIG_IGN || flags & libc::SA_RESTART as usize != 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's mask.
    fn current() -> SigMask {
        sigprocmask(libc::SIG_BLOCK, None)
    }

    fn has(mask: SigMask, signal: i32) -> bool {
        mask.0 & (1 << (signal - 1)) != 0
    }

    #[test]
    fn held_signals_stay_pending_and_interrupt_ppoll() {
        // Runs on its own thread: the mask is per thread.
        std::thread::spawn(|| {
            let before = current();
            {
                let held = Held::block();
                assert_eq!(held.outside(), before);
                let inside = current();
                assert!(has(inside, libc::SIGUSR1) && has(inside, libc::SIGALRM));
                assert!(!has(inside, libc::SIGSEGV) && !has(inside, 33));
                // SIGUSR2 with a handler that does nothing (no SA_RESTART),
                // sent to this very thread while it is held.
                extern "C" fn nothing(_: libc::c_int) {}
                // SAFETY: a zeroed sigaction with a handler that touches
                // nothing; tgkill to this very thread.
                unsafe {
                    let mut sa: libc::sigaction = core::mem::zeroed();
                    sa.sa_sigaction = nothing as extern "C" fn(libc::c_int) as usize;
                    libc::sigaction(libc::SIGUSR2, &sa, core::ptr::null_mut());
                    libc::syscall(libc::SYS_tgkill, libc::getpid(), libc::gettid(), libc::SIGUSR2);
                }
                let mut fds: [PollFd; 0] = [];
                // Pending under the held mask: the wait with the caller's
                // mask ends at once.
                let r = ppoll(&mut fds, Some(Duration::from_secs(10)), held.outside());
                assert_eq!(r, Err(Errno::INTR));
                // Nothing pending any more: a short wait times out.
                assert_eq!(ppoll(&mut fds, Some(Duration::from_millis(5)), held.outside()), Ok(0));
            }
            assert_eq!(current(), before);
        })
        .join()
        .unwrap();
    }
}
