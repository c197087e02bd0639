//! Threads the engine starts: detached pthreads that begin with every
//! asynchronous signal blocked, so that process-directed signals go to the
//! program's own threads, and with the synchronous fault signals (SIGSEGV,
//! SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS) open: a fault in a copy a worker
//! makes for the program reaches the program's handler (a garbage collector's
//! write barrier, a lazily mapped file) instead of killing the process, as a
//! blocked synchronous signal would. They run under the process's scheduling
//! policy and CPU set, not those of the thread that happened to start them.
//! See pthread_create(3), pthread_sigmask(3), sched_setaffinity(2),
//! pthread_setname_np(3).

use core::ffi::{CStr, c_void};
use core::mem::MaybeUninit;

use super::signal::SYNCHRONOUS;
use super::{Errno, syscall6};

/// Entry point of a thread started by [`spawn_detached`].
pub type Entry = extern "C" fn(*mut c_void) -> *mut c_void;

/// Why a thread could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnError {
    /// pthread_attr_* refused the attributes.
    Attributes(Errno),
    /// pthread_create failed (EAGAIN: thread or memory limits).
    Create(Errno),
}

impl core::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SpawnError::Attributes(e) => write!(f, "thread attributes refused: {e}"),
            SpawnError::Create(e) => write!(f, "pthread_create failed: {e}"),
        }
    }
}

fn pthread_result(code: i32) -> Result<(), Errno> {
    if code == 0 { Ok(()) } else { Err(Errno(code)) }
}

/// Starts a detached thread running `entry(arg)` on a stack of `stack_bytes`,
/// with every asynchronous signal blocked from its first instruction and the
/// default scheduling policy (SCHED_OTHER), whatever the caller's. `name` (at
/// most 15 bytes) is set before this returns, as /proc/self/task/*/comm, top
/// and gdb show it.
pub fn spawn_detached(entry: Entry, arg: usize, stack_bytes: usize, name: &CStr) -> Result<(), SpawnError> {
    let mut attr = MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: pthread_attr_init initialises the attribute object it is given.
    pthread_result(unsafe { libc::pthread_attr_init(attr.as_mut_ptr()) }).map_err(SpawnError::Attributes)?;
    let attr_ptr = attr.as_mut_ptr();
    let stack = stack_bytes.max(libc::PTHREAD_STACK_MIN);
    // SAFETY: `attr` was initialised above and is destroyed below.
    let configured = unsafe {
        let other = libc::sched_param { sched_priority: 0 };
        pthread_result(libc::pthread_attr_setstacksize(attr_ptr, stack))
            .and_then(|_| pthread_result(libc::pthread_attr_setinheritsched(attr_ptr, libc::PTHREAD_EXPLICIT_SCHED)))
            .and_then(|_| pthread_result(libc::pthread_attr_setschedpolicy(attr_ptr, libc::SCHED_OTHER)))
            .and_then(|_| pthread_result(libc::pthread_attr_setschedparam(attr_ptr, &other)))
    };
    let result = configured.map_err(SpawnError::Attributes).and_then(|_| {
        let mut all = MaybeUninit::<libc::sigset_t>::uninit();
        let mut old = MaybeUninit::<libc::sigset_t>::uninit();
        let mut thread = MaybeUninit::<libc::pthread_t>::uninit();
        // SAFETY: the sigset pointers are valid for writing; the new thread
        // inherits the blocked mask, and this thread's mask is restored right
        // after pthread_create, whatever it returned. The thread is created
        // joinable so that its handle stays valid (even if it has already
        // finished) until it is named and detached.
        unsafe {
            libc::sigfillset(all.as_mut_ptr());
            for signal in SYNCHRONOUS {
                libc::sigdelset(all.as_mut_ptr(), signal);
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, all.as_ptr(), old.as_mut_ptr());
            let created = libc::pthread_create(thread.as_mut_ptr(), attr_ptr, entry, arg as *mut c_void);
            libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), core::ptr::null_mut());
            pthread_result(created).map_err(SpawnError::Create)?;
            let thread = thread.assume_init();
            libc::pthread_setname_np(thread, name.as_ptr());
            libc::pthread_detach(thread);
            Ok(())
        }
    });
    // SAFETY: `attr` is initialised and no longer needed.
    unsafe { libc::pthread_attr_destroy(attr_ptr) };
    result
}

/// A CPU affinity mask of up to 8192 CPUs.
pub type CpuMask = [u64; 128];

/// The calling thread's CPU affinity mask (sched_getaffinity(2)).
pub fn current_affinity() -> Result<CpuMask, Errno> {
    let mut mask: CpuMask = [0; 128];
    // SAFETY: the kernel writes at most size_of_val(&mask) bytes into `mask`.
    unsafe { syscall6(libc::SYS_sched_getaffinity, [0, size_of_val(&mask), mask.as_mut_ptr() as usize, 0, 0, 0]) }
        .map(|_| mask)
}

/// Sets the calling thread's CPU affinity mask (sched_setaffinity(2)).
pub fn set_current_affinity(mask: &CpuMask) -> Result<(), Errno> {
    // SAFETY: the kernel reads size_of_val(mask) bytes from `mask`.
    unsafe { syscall6(libc::SYS_sched_setaffinity, [0, size_of_val(mask), mask.as_ptr() as usize, 0, 0, 0]) }
        .map(|_| ())
}

/// Registers `handler` to run in the child after every fork(2) made through
/// libc (pthread_atfork(3)). Not run after vfork, clone or `_Fork`.
pub fn at_fork_child(handler: unsafe extern "C" fn()) -> Result<(), Errno> {
    // SAFETY: registering a handler has no preconditions; the handler itself
    // must restrict itself to async-signal-safe work, which its owner ensures.
    pthread_result(unsafe { libc::pthread_atfork(None, None, Some(handler)) })
}

/// Registers `handler` to run in the parent before fork(2) (pthread_atfork(3)).
pub fn at_fork_prepare(handler: unsafe extern "C" fn()) -> Result<(), Errno> {
    // SAFETY: as above; the prepare handler runs in the forking thread,
    // before the fork, where any work is allowed.
    pthread_result(unsafe { libc::pthread_atfork(Some(handler), None, None) })
}

/// The number of CPUs the calling thread may run on (sched_getaffinity(2)).
pub fn affinity_cpu_count() -> Result<u32, Errno> {
    current_affinity().map(|mask| mask.iter().map(|w| w.count_ones()).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    static STARTED: AtomicU32 = AtomicU32::new(0);
    static BLOCKED_ALL: AtomicU32 = AtomicU32::new(0);

    extern "C" fn probe(arg: *mut c_void) -> *mut c_void {
        let mut mask = MaybeUninit::<libc::sigset_t>::uninit();
        let mut policy = 0;
        let mut param = libc::sched_param { sched_priority: 0 };
        // SAFETY: querying this thread's signal mask and scheduling policy
        // into locals.
        let ok = unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, core::ptr::null(), mask.as_mut_ptr());
            libc::pthread_getschedparam(libc::pthread_self(), &mut policy, &mut param);
            libc::sigismember(mask.as_ptr(), libc::SIGTERM) == 1
                && libc::sigismember(mask.as_ptr(), libc::SIGUSR1) == 1
                && libc::sigismember(mask.as_ptr(), libc::SIGSEGV) == 0
                && libc::sigismember(mask.as_ptr(), libc::SIGBUS) == 0
                && policy == libc::SCHED_OTHER
        };
        BLOCKED_ALL.store(ok as u32, Ordering::SeqCst);
        STARTED.store(arg as u32, Ordering::SeqCst);
        core::ptr::null_mut()
    }

    #[test]
    fn spawned_thread_blocks_asynchronous_signals_and_runs_sched_other() {
        // Spawn from a SCHED_BATCH thread with SIGUSR2 blocked: the new
        // thread must not inherit the policy, and the spawner's own signal
        // mask must come back as it was.
        std::thread::spawn(|| {
            let batch = libc::sched_param { sched_priority: 0 };
            let mut mine = MaybeUninit::<libc::sigset_t>::uninit();
            let mut after = MaybeUninit::<libc::sigset_t>::uninit();
            // SAFETY: plain libc calls on this thread and on local sigsets.
            unsafe {
                assert_eq!(libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_BATCH, &batch), 0);
                libc::sigemptyset(mine.as_mut_ptr());
                libc::sigaddset(mine.as_mut_ptr(), libc::SIGUSR2);
                libc::pthread_sigmask(libc::SIG_SETMASK, mine.as_ptr(), core::ptr::null_mut());
            }
            spawn_detached(probe, 7, 64 << 10, c"probe-thread").unwrap();
            // SAFETY: as above.
            unsafe {
                libc::pthread_sigmask(libc::SIG_SETMASK, core::ptr::null(), after.as_mut_ptr());
                assert_eq!(libc::sigismember(after.as_ptr(), libc::SIGUSR2), 1);
                assert_eq!(libc::sigismember(after.as_ptr(), libc::SIGTERM), 0, "the spawner's mask leaked");
            }
        })
        .join()
        .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while STARTED.load(Ordering::SeqCst) != 7 {
            assert!(std::time::Instant::now() < deadline, "thread never ran");
            std::thread::yield_now();
        }
        assert_eq!(BLOCKED_ALL.load(Ordering::SeqCst), 1);
    }
}

#[cfg(test)]
mod affinity_tests {
    use super::*;

    #[test]
    fn affinity_round_trips() {
        let mask = current_affinity().unwrap();
        assert!(mask.iter().any(|w| *w != 0));
        set_current_affinity(&mask).unwrap();
        assert_eq!(current_affinity().unwrap(), mask);
    }
}
