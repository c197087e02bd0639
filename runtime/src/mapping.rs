//! Shared-memory regions, the mapping side of the `shm` class: the mmap,
//! munmap, mremap, shm_open and shm_unlink hooks' slow paths, which keep
//! the index of shared-memory regions (`ipc_offload_regions`) in step
//! with the address space, and what the rest of the crate asks of that
//! index: [`enable`] (from the constructor) and [`copy_class`] (for
//! `dispatch`, which chooses a large copy's class). The stats file reads
//! the index's own snapshot.
//!
//! A mapping hook takes a ticket, makes the real call, classifies what it
//! mapped, then records it under the index's writer lock: shared memory
//! mapped (inserted, unless a removal logged since the ticket meets it:
//! another thread unmapped the addresses in the meantime), anything else
//! mapped over, unmapped or moved away (removed, and logged). Errno is the
//! real call's; the bookkeeping uses raw system calls only and allocates
//! nothing.

use core::ffi::{c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use ipc_offload_policy::Class;
use ipc_offload_regions::{self as shm, Ticket, Writer, span};
use ipc_offload_sys as sys;
use ipc_offload_sys::real::mapping as real;

use crate::process;
use crate::state::Settings;

/// The page size the kernel rounds lengths up to (huge pages aside).
const PAGE: usize = 4096;
/// `MREMAP_DONTUNMAP` (Linux 5.7): the old range stays mapped.
const MREMAP_DONTUNMAP: c_int = 4;

/// From the constructor, with the settings frozen: whether the shm class is
/// on (the mapping hooks then keep the index) and the threshold the
/// memcpy-family hooks test, the lower of the two classes' (`None`: both off).
pub fn enable(settings: &Settings) -> Option<usize> {
    let min = |class: Class| {
        settings.options[class.index()]
            .map(|_| usize::try_from(settings.plan.class(class).rule.min_bytes).unwrap_or(usize::MAX))
    };
    let (shm_min, memcpy_min) = (min(Class::Shm), min(Class::Memcpy));
    shm::enable(shm_min, memcpy_min);
    shm_min.into_iter().chain(memcpy_min).min()
}

/// The class of a memcpy-family copy of `len` bytes that reached the slow
/// path (`dispatch` asks): `shm` when it is at or above `[shm] min_bytes`
/// and its source or destination meets a shared-memory region, else
/// `memcpy` when it is at or above `[memcpy] min_bytes`, else `None`.
pub fn copy_class(dst: usize, src: usize, len: usize) -> Option<Class> {
    shm::copy_class(dst, src, len)
}

/// Runs a mapping call and records what it did: `call` makes the system
/// call (and whatever else must not run under the writers' lock, such as
/// classifying the mapping), then `record` runs with the lock held (a
/// writer, or `None` in a signal handler that interrupted its thread's
/// update) and the ticket taken before the call. Keeps the call's errno.
fn tracked<R: Copy>(call: impl FnOnce() -> R, record: impl FnOnce(Option<&Writer>, Ticket, R)) -> R {
    if !process::is_owner() {
        // A vfork or raw-clone child: the index is not ours to change.
        return call();
    }
    let ticket = Ticket::take();
    let result = call();
    let _errno = sys::ErrnoGuard::save();
    let writer = Writer::begin().ok();
    if catch_unwind(AssertUnwindSafe(|| record(writer.as_ref(), ticket, result))).is_err() {
        // A bug; the index may be wrong now: forget it.
        shm::mark_stale();
    }
    drop(writer);
    result
}

/// `span` is no longer shared memory.
fn removed(writer: Option<&Writer>, (start, end): (usize, usize)) {
    match writer {
        Some(w) => {
            w.not_shared(start, end);
        }
        None => shm::nested_removal(start, end),
    }
}

/// `span` was made shared memory by a call that took `ticket`; `also`:
/// other spans whose removal since then makes the insert unsafe.
fn made_shared(writer: Option<&Writer>, ticket: Ticket, span: (usize, usize), also: &[(usize, usize)]) {
    match writer {
        Some(w) => {
            w.shared(ticket, span, also);
        }
        // A nested call cannot insert: its range reads as not shared.
        None => shm::nested_removal(span.0, span.1),
    }
}

/// The mmap and mmap64 hooks.
///
/// # Safety
/// As mmap(2).
pub unsafe fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: libc::off_t,
) -> *mut c_void {
    tracked(
        || {
            // SAFETY: the caller's mmap contract.
            let ret = unsafe { real::mmap(addr, len, prot, flags, fd, off) };
            // fstat and fstatfs, before the lock is taken.
            (ret, (ret != libc::MAP_FAILED).then(|| shm::map_kind(flags, fd)))
        },
        |writer, ticket, (ret, kind)| match kind {
            Some(kind) if kind.shared => made_shared(writer, ticket, span(ret as usize, len, kind.page), &[]),
            Some(kind) => removed(writer, span(ret as usize, len, kind.page)),
            // A failed MAP_FIXED may have unmapped what was there.
            None if flags & libc::MAP_FIXED != 0 => removed(writer, span(addr as usize, len, PAGE)),
            None => {}
        },
    )
    .0
}

/// The munmap hook.
///
/// # Safety
/// As munmap(2).
pub unsafe fn munmap(addr: *mut c_void, len: usize) -> c_int {
    tracked(
        // SAFETY: the caller's munmap contract.
        || unsafe { real::munmap(addr, len) },
        // A failed munmap (EINVAL, or ENOMEM for a split past the map
        // count) changed nothing.
        |writer, _, ret| {
            if ret == 0 {
                removed(writer, span(addr as usize, len, PAGE));
            }
        },
    )
}

/// `a` without `b`: up to two pieces (empty ones are `(x, x)`).
fn minus(a: (usize, usize), b: (usize, usize)) -> [(usize, usize); 2] {
    [(a.0, a.1.min(b.0).max(a.0)), (a.0.max(b.1).min(a.1), a.1)]
}

/// The mremap hook (`new_addr` is read only with `MREMAP_FIXED`).
///
/// # Safety
/// As mremap(2).
pub unsafe fn mremap(
    old: *mut c_void,
    old_len: usize,
    new_len: usize,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    let old_span = span(old as usize, old_len, PAGE);
    tracked(
        || {
            // Whether the old range is shared memory, read before the call
            // (a removal of it logged since the ticket voids the answer).
            let was_shared = shm::INDEX.range_at(old as usize).is_ok_and(|r| r.is_some());
            // SAFETY: the caller's mremap contract.
            (unsafe { real::mremap(old, old_len, new_len, flags, new_addr) }, was_shared)
        },
        |writer, ticket, (ret, was_shared)| {
            if ret == libc::MAP_FAILED {
                if flags & libc::MREMAP_FIXED != 0 {
                    // A failed MREMAP_FIXED may have unmapped its target.
                    removed(writer, span(new_addr as usize, new_len, PAGE));
                }
                return;
            }
            let new_span = span(ret as usize, new_len, PAGE);
            // The new range first (its check must not see this call's own
            // removal of the old range), then what is left of the old one
            // (all of it after a move; the cut-off tail after a shrink).
            if was_shared {
                made_shared(writer, ticket, new_span, &[old_span]);
            } else {
                removed(writer, new_span);
            }
            if flags & MREMAP_DONTUNMAP == 0 {
                for piece in minus(old_span, new_span) {
                    removed(writer, piece);
                }
            }
        },
    )
    .0
}

/// The shm_open hook: counted, then libc's.
///
/// # Safety
/// As shm_open(3).
pub unsafe fn shm_open(name: *const c_char, oflag: c_int, mode: libc::mode_t) -> c_int {
    shm::count_shm_open();
    // SAFETY: the caller's shm_open contract.
    unsafe { real::shm_open(name, oflag, mode) }
}

/// The shm_unlink hook: counted, then libc's.
///
/// # Safety
/// As shm_unlink(3).
pub unsafe fn shm_unlink(name: *const c_char) -> c_int {
    shm::count_shm_unlink();
    // SAFETY: the caller's shm_unlink contract.
    unsafe { real::shm_unlink(name) }
}

#[cfg(test)]
mod tests {
    use super::minus;

    #[test]
    fn what_is_left_of_an_old_range() {
        let a = (0x1000, 0x5000);
        assert_eq!(minus(a, (0x8000, 0x9000)), [a, (0x5000, 0x5000)], "moved away");
        assert_eq!(minus(a, (0x0, 0x800)), [(0x1000, 0x1000), a], "moved below");
        assert_eq!(minus(a, (0x1000, 0x9000)), [(0x1000, 0x1000), (0x5000, 0x5000)], "grown in place");
        assert_eq!(minus(a, (0x1000, 0x2000)), [(0x1000, 0x1000), (0x2000, 0x5000)], "shrunk");
        assert_eq!(minus(a, (0x2000, 0x3000)), [(0x1000, 0x2000), (0x3000, 0x5000)], "a hole");
    }
}
