//! The writers' lock of the region index: a futex mutex (Drepper,
//! "Futexes Are Tricky", mutex 2) that knows when the calling thread
//! already holds it.
//!
//! A writer holds it while it changes the index (after its mapping system
//! call: no system call is made under it). A signal handler that maps or
//! unmaps memory while its thread holds the lock (or waits for it) must
//! not wait for itself: [`WriterLock::lock`] then says
//! [`Busy::ThisThread`], and the caller records its change as a pending
//! removal instead, which the lock's holder applies before releasing it.

use core::cell::Cell;
use core::sync::atomic::AtomicU32;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use ipc_offload_sys::futex;

const FREE: u32 = 0;
const LOCKED: u32 = 1;
/// Locked, and a thread may be asleep waiting for it.
const CONTENDED: u32 = 2;
/// Polls before sleeping.
const SPINS: u32 = 100;

thread_local! {
    /// Set while this thread holds the lock or waits for it: set before
    /// trying, cleared after releasing, so that a signal handler running at
    /// any point in between sees it. `const`, without destructor.
    static HOLDING: Cell<bool> = const { Cell::new(false) };
}

/// Why the lock was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Busy {
    /// This thread already holds it or waits for it (a signal handler
    /// interrupted a writer).
    ThisThread,
}

/// The lock.
#[derive(Debug)]
pub struct WriterLock {
    word: AtomicU32,
}

impl Default for WriterLock {
    fn default() -> Self {
        Self::new()
    }
}

/// Holding the lock; released on drop.
#[derive(Debug)]
pub struct Guard<'a> {
    lock: &'a WriterLock,
}

impl WriterLock {
    /// A free lock.
    pub const fn new() -> Self {
        WriterLock { word: AtomicU32::new(FREE) }
    }

    /// Takes the lock, waiting for other threads; refuses when this thread
    /// already holds it or waits for it.
    pub fn lock(&self) -> Result<Guard<'_>, Busy> {
        let entered = HOLDING.try_with(|h| !h.replace(true)).unwrap_or(false);
        if !entered {
            return Err(Busy::ThisThread);
        }
        if self.word.compare_exchange(FREE, LOCKED, Acquire, Relaxed).is_err() {
            self.lock_slow();
        }
        Ok(Guard { lock: self })
    }

    #[cold]
    fn lock_slow(&self) {
        for _ in 0..SPINS {
            core::hint::spin_loop();
            if self.word.load(Relaxed) == FREE && self.word.compare_exchange(FREE, LOCKED, Acquire, Relaxed).is_ok() {
                return;
            }
        }
        while self.word.swap(CONTENDED, Acquire) != FREE {
            futex::wait(&self.word, CONTENDED, None);
        }
    }

    /// True while some thread holds the lock.
    pub fn is_locked(&self) -> bool {
        self.word.load(Relaxed) != FREE
    }

    /// In a fork child: the threads that held or waited for the lock are
    /// gone. Returns whether it was held (the index may then be behind the
    /// address space).
    pub fn reset_after_fork(&self) -> bool {
        self.word.swap(FREE, Relaxed) != FREE
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if self.lock.word.swap(FREE, Release) == CONTENDED {
            futex::wake(&self.lock.word, 1);
        }
        let _ = HOLDING.try_with(|h| h.set(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn the_holder_is_refused_a_second_time() {
        let lock = WriterLock::new();
        let guard = lock.lock().unwrap();
        assert_eq!(lock.lock().unwrap_err(), Busy::ThisThread);
        assert!(lock.is_locked());
        drop(guard);
        assert!(!lock.is_locked());
        drop(lock.lock().unwrap());
    }

    #[test]
    fn threads_exclude_each_other() {
        let lock = Arc::new(WriterLock::new());
        let counter = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (lock, counter) = (lock.clone(), counter.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        let _g = lock.lock().unwrap();
                        // A non-atomic increment: lost updates if two threads got in.
                        let v = counter.load(Relaxed);
                        counter.store(v + 1, Relaxed);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(counter.load(Relaxed), 80_000);
    }

    #[test]
    fn a_fork_child_finds_it_free() {
        let lock = WriterLock::new();
        let guard = lock.lock().unwrap();
        core::mem::forget(guard);
        assert!(lock.reset_after_fork());
        assert!(!lock.reset_after_fork());
        HOLDING.with(|h| h.set(false));
    }
}
