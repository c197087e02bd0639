//! Grow-only paged tables: one element per index, for any index below
//! `PAGE * PAGES`, with no lock and no allocation on a lookup
//! (docs/design.md, "Tables without a cap").
//!
//! Page 0 is part of the static itself, so the common indexes (fds below
//! 65536, the first channels) cost what a flat array costs: a bounds test
//! and a load. Later pages are mapped on the first write that needs them
//! (mmap, never malloc: a hook may run inside the allocator), published
//! with one compare-and-swap in a directory of pointers, and never freed:
//! a reference handed out stays valid for the life of the process, and a
//! fork child inherits every page as private memory, like the static.
//! A page that cannot be mapped leaves its indexes untracked: the caller
//! takes the kernel path, as it did for any fd above the old fixed cap.

use core::ptr;
use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};

/// An element type: its empty value, and whether all-zero bytes are it (a
/// page of such elements needs no initialising, and only the pages of it
/// that are written become resident).
///
/// # Safety
/// `ZERO_IS_EMPTY` may be true only if the all-zero bit pattern is a valid
/// value of the type, equal to `EMPTY`.
pub unsafe trait Element: Sync + 'static {
    const EMPTY: Self;
    const ZERO_IS_EMPTY: bool;
}

// SAFETY: an atomic integer's zero is all-zero bytes.
unsafe impl Element for AtomicU64 {
    const EMPTY: Self = AtomicU64::new(0);
    const ZERO_IS_EMPTY: bool = true;
}

// SAFETY: as above.
unsafe impl Element for AtomicU32 {
    const EMPTY: Self = AtomicU32::new(0);
    const ZERO_IS_EMPTY: bool = true;
}

// SAFETY: as above.
unsafe impl Element for AtomicBool {
    const EMPTY: Self = AtomicBool::new(false);
    const ZERO_IS_EMPTY: bool = true;
}

/// A table of `PAGE * PAGES` elements, `PAGE` of them static.
pub struct Paged<T: Element, const PAGE: usize, const PAGES: usize> {
    first: [T; PAGE],
    /// Pages 1 and up (entry 0 unused), null until mapped.
    more: [AtomicPtr<T>; PAGES],
    /// One past the highest page mapped so far (1: only the static one).
    used: AtomicUsize,
}

impl<T: Element, const PAGE: usize, const PAGES: usize> Paged<T, PAGE, PAGES> {
    /// Every index a table can hold.
    pub const CAPACITY: usize = PAGE * PAGES;

    /// A table of empty elements, none mapped beyond the first page.
    pub const fn new() -> Self {
        Paged {
            first: [const { T::EMPTY }; PAGE],
            more: [const { AtomicPtr::new(ptr::null_mut()) }; PAGES],
            used: AtomicUsize::new(1),
        }
    }

    /// The element at `index`, if its page exists (lock-free: a bounds
    /// test and a load below `PAGE`, one more load above).
    #[inline(always)]
    pub fn get(&self, index: usize) -> Option<&T> {
        if index < PAGE {
            return Some(&self.first[index]);
        }
        self.get_far(index)
    }

    #[inline(never)]
    fn get_far(&self, index: usize) -> Option<&T> {
        let page = self.more.get(index / PAGE)?.load(Acquire);
        if page.is_null() {
            return None;
        }
        // SAFETY: a published page holds PAGE initialised elements and is
        // never unmapped; `index % PAGE < PAGE`.
        Some(unsafe { &*page.add(index % PAGE) })
    }

    /// The element at `index`, mapping its page if needed; None if the
    /// index is out of range or the page cannot be mapped.
    pub fn get_or_map(&self, index: usize) -> Option<&T> {
        if let Some(element) = self.get(index) {
            return Some(element);
        }
        let page = index / PAGE;
        let entry = self.more.get(page)?;
        let len = Self::page_bytes();
        let fresh = ipc_offload_sys::mem::anonymous(len).ok()?.cast::<T>();
        if !T::ZERO_IS_EMPTY {
            for i in 0..PAGE {
                // SAFETY: `fresh` is a new private mapping of PAGE
                // elements' bytes, suitably aligned (page-aligned), which
                // nothing else can see yet.
                unsafe { fresh.add(i).write(T::EMPTY) };
            }
        }
        match entry.compare_exchange(ptr::null_mut(), fresh, AcqRel, Acquire) {
            Ok(_) => {
                self.used.fetch_max(page + 1, Relaxed);
            }
            // SAFETY: our mapping lost the race and was never published.
            Err(_) => unsafe { ipc_offload_sys::mem::unmap(fresh.cast(), len) },
        }
        self.get(index)
    }

    /// One past the highest index that may hold a non-empty element.
    pub fn end(&self) -> usize {
        self.used.load(Acquire).min(PAGES) * PAGE
    }

    /// Every element that exists, with its index, in order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> + '_ {
        (0..self.used.load(Acquire).min(PAGES)).flat_map(move |page| {
            let base: Option<&[T]> = if page == 0 {
                Some(&self.first)
            } else {
                let p = self.more[page].load(Acquire);
                // SAFETY: a published page holds PAGE initialised elements
                // and is never unmapped.
                (!p.is_null()).then(|| unsafe { core::slice::from_raw_parts(p.cast_const(), PAGE) })
            };
            base.into_iter().flatten().enumerate().map(move |(i, e)| (page * PAGE + i, e))
        })
    }

    fn page_bytes() -> usize {
        (PAGE * size_of::<T>()).next_multiple_of(4096)
    }
}

impl<T: Element, const PAGE: usize, const PAGES: usize> Default for Paged<T, PAGE, PAGES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Element, const PAGE: usize, const PAGES: usize> core::fmt::Debug for Paged<T, PAGE, PAGES> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Paged").field("pages", &self.used.load(Relaxed)).finish()
    }
}

/// Elements per page of the per-fd tables: fds below it (all of most
/// programs') are in the static page.
pub const FD_PAGE: usize = 65536;
/// Pages of the per-fd tables: every fd number an `int` can hold.
pub const FD_PAGES: usize = (1 << 31) / FD_PAGE;

/// A per-fd table of `T`: any fd number, the first 65536 static.
pub type PerFd<T> = Paged<T, FD_PAGE, FD_PAGES>;

/// The index of `fd` in a per-fd table (None for a negative fd).
#[inline(always)]
pub fn fd_index(fd: i32) -> Option<usize> {
    usize::try_from(fd).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Odd(AtomicU32);

    // SAFETY: ZERO_IS_EMPTY is false: pages are filled with EMPTY.
    unsafe impl Element for Odd {
        const EMPTY: Self = Odd(AtomicU32::new(7));
        const ZERO_IS_EMPTY: bool = false;
    }

    #[test]
    fn far_indexes_map_their_page_once_and_keep_it() {
        let t: &'static Paged<AtomicU64, 16, 8> = Box::leak(Box::new(Paged::new()));
        assert_eq!(t.end(), 16);
        assert!(t.get(3).is_some());
        assert!(t.get(40).is_none(), "page 2 not mapped yet");
        t.get_or_map(40).unwrap().store(9, Relaxed);
        assert_eq!(t.get(40).unwrap().load(Relaxed), 9);
        assert!(t.get(33).is_some(), "the same page");
        assert!(t.get(17).is_none(), "page 1 still not mapped");
        assert_eq!(t.end(), 48);
        assert!(t.get_or_map(16 * 8).is_none(), "beyond the directory");
        let seen: Vec<usize> = t.iter().filter(|(_, w)| w.load(Relaxed) != 0).map(|(i, _)| i).collect();
        assert_eq!(seen, [40]);
        assert_eq!(t.iter().count(), 32, "the static page and page 2");
    }

    #[test]
    fn pages_of_nonzero_elements_are_filled() {
        let t: &'static Paged<Odd, 4, 4> = Box::leak(Box::new(Paged::new()));
        assert_eq!(t.get(1).unwrap().0.load(Relaxed), 7);
        assert!(t.iter().all(|(_, e)| e.0.load(Relaxed) == 7));
        assert_eq!(t.get_or_map(13).unwrap().0.load(Relaxed), 7);
        assert_eq!(t.get(12).unwrap().0.load(Relaxed), 7);
    }

    #[test]
    fn racing_threads_publish_one_page() {
        let t: &'static Paged<AtomicU64, 16, 64> = Box::leak(Box::new(Paged::new()));
        std::thread::scope(|s| {
            for k in 0..4u64 {
                s.spawn(move || {
                    for i in 16..1024usize {
                        t.get_or_map(i).unwrap().fetch_add(k + 1, Relaxed);
                    }
                });
            }
        });
        assert!(
            (16..1024).all(|i| t.get(i).unwrap().load(Relaxed) == 10),
            "no write lost to a page that lost the race"
        );
    }
}
