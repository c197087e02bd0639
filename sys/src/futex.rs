//! futex(2) on process-private words: the blocking half of every wait in the
//! engine. See futex(2) and Drepper, "Futexes Are Tricky".

use core::sync::atomic::AtomicU32;
use core::time::Duration;

use super::{Errno, syscall6};

const WAIT_PRIVATE: usize = (libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG) as usize;
const WAKE_PRIVATE: usize = (libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG) as usize;
const WAIT_SHARED: usize = libc::FUTEX_WAIT as usize;
const WAKE_SHARED: usize = libc::FUTEX_WAKE as usize;

/// Why a wait returned. Callers re-check their condition in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Woken {
    /// A wake-up, a value that already differed, or a spurious return.
    Changed,
    /// The timeout expired.
    TimedOut,
    /// A signal handler ran.
    Interrupted,
}

/// Blocks while `word` holds `expected`, for at most `timeout` when given
/// (FUTEX_WAIT, private).
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Woken {
    wait_op(word, expected, timeout, WAIT_PRIVATE)
}

/// As [`wait`], on a word in memory shared with other processes.
pub fn wait_shared(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Woken {
    wait_op(word, expected, timeout, WAIT_SHARED)
}

fn wait_op(word: &AtomicU32, expected: u32, timeout: Option<Duration>, op: usize) -> Woken {
    let ts;
    let ts_ptr = match timeout {
        Some(t) => {
            ts = libc::timespec { tv_sec: t.as_secs() as libc::time_t, tv_nsec: t.subsec_nanos() as libc::c_long };
            &ts as *const libc::timespec as usize
        }
        None => 0,
    };
    // SAFETY: `word` is a live, aligned u32 for the duration of the call, and
    // `ts_ptr` is null or points to a timespec on this stack frame.
    let r = unsafe { syscall6(libc::SYS_futex, [word.as_ptr() as usize, op, expected as usize, ts_ptr, 0, 0]) };
    match r {
        Err(Errno::TIMEDOUT) => Woken::TimedOut,
        Err(Errno::INTR) => Woken::Interrupted,
        _ => Woken::Changed,
    }
}

/// Wakes at most `count` threads blocked on `word` (FUTEX_WAKE, private).
pub fn wake(word: &AtomicU32, count: u32) {
    wake_op(word, count, WAKE_PRIVATE);
}

/// As [`wake`], for a word in memory shared with other processes.
pub fn wake_shared(word: &AtomicU32, count: u32) {
    wake_op(word, count, WAKE_SHARED);
}

fn wake_op(word: &AtomicU32, count: u32, op: usize) {
    // SAFETY: FUTEX_WAKE only uses the address as a key; it never dereferences
    // memory beyond the aligned word, which is live.
    let _ = unsafe { syscall6(libc::SYS_futex, [word.as_ptr() as usize, op, count as usize, 0, 0, 0]) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    #[test]
    fn wait_returns_at_once_when_the_value_differs() {
        let w = AtomicU32::new(1);
        assert_eq!(wait(&w, 0, None), Woken::Changed);
    }

    #[test]
    fn wait_times_out() {
        let w = AtomicU32::new(0);
        assert_eq!(wait(&w, 0, Some(Duration::from_millis(5))), Woken::TimedOut);
    }

    #[test]
    fn wake_releases_a_waiter() {
        // The waiter blocks with a long timeout; if wake did nothing it
        // would come back with TimedOut, and the test fails.
        let w = Arc::new(AtomicU32::new(0));
        let w2 = Arc::clone(&w);
        let t = std::thread::spawn(move || {
            let mut results = vec![];
            while w2.load(Ordering::Acquire) == 0 {
                results.push(wait(&w2, 0, Some(Duration::from_secs(20))));
            }
            results
        });
        std::thread::sleep(Duration::from_millis(50));
        w.store(1, Ordering::Release);
        wake(&w, 1);
        let results = t.join().unwrap();
        assert!(!results.contains(&Woken::TimedOut), "{results:?}");
    }
}
