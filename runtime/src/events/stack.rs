//! A fixed-capacity list on the caller's stack, uninitialised until pushed:
//! a wait's scratch lists (the twins it watches, the marks it must undo,
//! the events it adds) cost what they hold, not their capacity. Built as
//! arrays of `WATCHED` entries, a wait wrote about 10 KiB of defaults
//! before it looked at its first twin: 5% of redis-benchmark's CPU when it
//! waits once per 16 KiB reply read (2026-12-07, `perf record`).

use core::mem::MaybeUninit;

/// Up to `N` values of a `Copy` type (nothing to drop).
pub struct Stack<T: Copy, const N: usize> {
    items: [MaybeUninit<T>; N],
    len: usize,
}

impl<T: Copy, const N: usize> Stack<T, N> {
    /// An empty list (nothing written).
    pub fn new() -> Self {
        Stack { items: [const { MaybeUninit::uninit() }; N], len: 0 }
    }

    /// Appends `value`; false (and nothing stored) when full.
    pub fn push(&mut self, value: T) -> bool {
        let Some(slot) = self.items.get_mut(self.len) else { return false };
        slot.write(value);
        self.len += 1;
        true
    }

    /// True when `N` values are held.
    pub fn is_full(&self) -> bool {
        self.len == N
    }

    /// The values pushed, in order.
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: the first `len` items were written by `push`, and
        // `MaybeUninit<T>` has `T`'s layout.
        unsafe { core::slice::from_raw_parts(self.items.as_ptr().cast::<T>(), self.len) }
    }

    /// The values pushed, in order, to change in place.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as `as_slice`; the borrow is exclusive.
        unsafe { core::slice::from_raw_parts_mut(self.items.as_mut_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Copy, const N: usize> Default for Stack<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_was_pushed_up_to_its_capacity() {
        let mut s: Stack<u64, 3> = Stack::new();
        assert!(s.as_slice().is_empty() && !s.is_full());
        assert!(s.push(7) && s.push(8) && s.push(9));
        assert!(s.is_full());
        assert!(!s.push(10), "full: refused");
        assert_eq!(s.as_slice(), [7, 8, 9]);
        s.as_mut_slice()[1] = 80;
        assert_eq!(s.as_slice(), [7, 80, 9]);
    }
}
