//! Allocation-free tables for the IPC state: a try-lock slot type, and the
//! per-fd table (the process's: [`FDS`]), which holds any fd number
//! ([`super::paged`]).
//!
//! Nothing here blocks: a busy slot means "take the kernel path this time".
//! After fork the child resets every lock (its other threads are gone), so a
//! lock held by another thread at fork time cannot wedge it.

use core::cell::UnsafeCell;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};

use super::paged::{PerFd, fd_index};

/// A value behind a try-lock.
#[derive(Debug)]
pub struct TrySlot<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through `try_lock`, which hands out one
// guard at a time (the Acquire/Release pair orders the accesses).
unsafe impl<T: Send> Sync for TrySlot<T> {}

/// Exclusive access to a [`TrySlot`]'s value; unlocks on drop.
#[derive(Debug)]
pub struct Guard<'a, T> {
    slot: &'a TrySlot<T>,
}

impl<T> TrySlot<T> {
    /// An unlocked slot holding `value`.
    pub const fn new(value: T) -> Self {
        TrySlot { locked: AtomicBool::new(false), value: UnsafeCell::new(value) }
    }

    /// The value, if nobody else holds it.
    pub fn try_lock(&self) -> Option<Guard<'_, T>> {
        // `then`, not `then_some`: a guard built eagerly for a failed
        // attempt would be dropped at once, and its drop would unlock the
        // slot under its holder (two threads then shared a writer's
        // channel: found by the write-behind tests, 2026-12-06).
        (!self.locked.swap(true, Acquire)).then(|| Guard { slot: self })
    }

    /// In a fork child: forgets a lock held by a thread that does not exist
    /// here, and gives the value to `reset` (async-signal-safe work only).
    ///
    /// # Safety
    /// Only while the process has one thread (the fork child's handler).
    pub unsafe fn reset_after_fork(&self, reset: impl FnOnce(&mut T)) {
        self.locked.store(false, Relaxed);
        // SAFETY: single-threaded by the caller's contract: no guard exists.
        reset(unsafe { &mut *self.value.get() });
    }
}

impl<T> core::ops::Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves exclusive access.
        unsafe { &*self.slot.value.get() }
    }
}

impl<T> core::ops::DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves exclusive access.
        unsafe { &mut *self.slot.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.slot.locked.store(false, Release);
    }
}

/// What the library knows about an fd: the endpoint it referred to when it
/// was classified (its table key), and what it is. 0 means unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdInfo {
    /// The endpoint's key (`Endpoint::key`, at most 56 bits).
    pub key: u64,
    /// What kind of file it is.
    pub kind: FdKind,
}

/// Classes of fds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdKind {
    /// A Unix stream socket or a pipe: the fast path applies.
    Fast,
    /// One whose opt-in as a reader failed: its reads take the kernel path
    /// for good (its writes may still meet a reader).
    NoFast,
    /// Anything else.
    Other,
}

impl FdInfo {
    fn pack(self) -> u64 {
        let kind = match self.kind {
            FdKind::Fast => 1,
            FdKind::NoFast => 2,
            FdKind::Other => 3,
        };
        (self.key << 8) | kind
    }

    fn unpack(word: u64) -> Option<FdInfo> {
        let kind = match word & 0xff {
            1 => FdKind::Fast,
            2 => FdKind::NoFast,
            3 => FdKind::Other,
            _ => return None,
        };
        Some(FdInfo { key: word >> 8, kind })
    }
}

/// The per-fd table: one word per fd number.
#[derive(Debug)]
pub struct FdTable {
    words: PerFd<AtomicU64>,
    /// One past the highest fd ever recorded: the scans (every close of a
    /// socket asks whether another fd still refers to it) stop there, not
    /// at the end of the static page.
    top: AtomicUsize,
}

impl FdTable {
    /// An empty table.
    pub const fn new() -> Self {
        FdTable { words: PerFd::new(), top: AtomicUsize::new(0) }
    }

    /// The words of fds below [`Self::end`], with their fd numbers.
    fn known(&self) -> impl Iterator<Item = (usize, &AtomicU64)> {
        let top = self.top.load(Relaxed);
        self.words.iter().take_while(move |(fd, _)| *fd < top)
    }

    fn word(&self, fd: i32) -> Option<&AtomicU64> {
        self.words.get(fd_index(fd)?)
    }

    /// What is known of `fd`.
    pub fn get(&self, fd: i32) -> Option<FdInfo> {
        self.word(fd).and_then(|w| FdInfo::unpack(w.load(Relaxed)))
    }

    /// Records what `fd` is; false if it cannot be tracked (a negative
    /// fd, or no memory for its page of the table).
    pub fn set(&self, fd: i32, info: FdInfo) -> bool {
        let Some(index) = fd_index(fd) else { return false };
        let Some(word) = self.words.get_or_map(index) else { return false };
        if self.top.load(Relaxed) <= index {
            self.top.fetch_max(index + 1, Relaxed);
        }
        word.store(info.pack(), Relaxed);
        true
    }

    /// Forgets `fd`; returns what was known.
    pub fn forget(&self, fd: i32) -> Option<FdInfo> {
        self.word(fd).and_then(|w| FdInfo::unpack(w.swap(0, Relaxed)))
    }

    /// True if anything is known of `fd` (cheap: close's test). What is
    /// known of another kind of file goes too: the number's next file may
    /// be a socket.
    pub fn is_tracked(&self, fd: i32) -> bool {
        self.word(fd).is_some_and(|w| w.load(Relaxed) != 0)
    }

    /// True if another fd than `except` refers to the endpoint of `key`.
    pub fn other_fd_for(&self, key: u64, except: i32) -> bool {
        self.known().any(|(fd, w)| {
            fd as i32 != except
                && FdInfo::unpack(w.load(Relaxed)).is_some_and(|i| i.key == key && i.kind != FdKind::Other)
        })
    }

    /// Calls `f` with every fd that refers to the endpoint of `key`.
    pub fn each_fd_of(&self, key: u64, mut f: impl FnMut(i32)) {
        for (fd, w) in self.known() {
            if FdInfo::unpack(w.load(Relaxed)).is_some_and(|i| i.key == key && i.kind != FdKind::Other) {
                f(fd as i32);
            }
        }
    }

    /// One past the highest fd number the table may know (`close_range`'s
    /// bound).
    pub fn end(&self) -> usize {
        self.top.load(Relaxed)
    }

    /// Forgets everything (a fork child keeps its fds, but re-learns them).
    /// Only touches words in use: untouched pages stay unmapped.
    pub fn clear(&self) {
        for (_, w) in self.known() {
            if w.load(Relaxed) != 0 {
                w.store(0, Relaxed);
            }
        }
        self.top.store(0, Relaxed);
    }
}

impl Default for FdTable {
    fn default() -> Self {
        Self::new()
    }
}

/// What the process knows of its fds.
pub static FDS: FdTable = FdTable::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_slot_is_exclusive() {
        let slot = TrySlot::new(5);
        let mut g = slot.try_lock().unwrap();
        assert!(slot.try_lock().is_none());
        assert!(slot.try_lock().is_none(), "a failed attempt must leave the holder's lock alone");
        *g += 1;
        drop(g);
        assert_eq!(*slot.try_lock().unwrap(), 6);
        let _held = slot.try_lock().unwrap();
        // SAFETY: this test is the only user of `slot`.
        unsafe { slot.reset_after_fork(|v| *v = 0) };
        assert_eq!(*slot.try_lock().unwrap(), 0);
    }

    #[test]
    fn fd_table_round_trips() {
        // A static, as in the library: the table is too large to build on
        // a test thread's stack in a debug build.
        static TABLE: FdTable = FdTable::new();
        let t = &TABLE;
        assert_eq!(t.get(3), None);
        let info = FdInfo { key: 0x80_dead_beef_0001, kind: FdKind::Fast };
        assert!(t.set(3, info));
        assert_eq!(t.get(3), Some(info));
        assert!(t.is_tracked(3));
        assert!(!t.other_fd_for(0x80_dead_beef_0001, 3));
        t.set(9, info);
        assert!(t.other_fd_for(0x80_dead_beef_0001, 3));
        let mut seen = Vec::new();
        t.each_fd_of(0x80_dead_beef_0001, |fd| seen.push(fd));
        assert_eq!(seen, [3, 9]);
        assert_eq!(t.forget(3), Some(info));
        assert_eq!(t.get(3), None);
        assert!(!t.set(-1, info));
        assert_eq!(t.get(70_000), None);
        assert!(t.set(70_000, info), "fds past the static page are tracked");
        assert_eq!(t.get(70_000), Some(info));
        assert!(t.other_fd_for(0x80_dead_beef_0001, 9));
        assert!(t.end() > 70_000);
        t.clear();
        assert_eq!(t.get(70_000), None);
        assert_eq!(t.get(9), None);
        t.set(4, FdInfo { key: 1, kind: FdKind::Other });
        assert!(t.is_tracked(4), "forgotten at close too");
    }
}
