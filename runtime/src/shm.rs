//! The `shm` class: the slow path of the memcpy-family hooks (which class a
//! large copy belongs to), and the mapping hooks that keep the index of
//! shared-memory regions (`ipc_offload_engine::shm`) in step with the
//! address space.
//!
//! A mapping hook takes the index's writer lock, makes the real call, and
//! records what it did before releasing the lock: shared memory mapped
//! (inserted), anything else mapped over, unmapped or moved away
//! (removed). The lock makes the index see the calls in the kernel's
//! order: without it, a thread's insert of a region that another thread
//! unmapped in the meantime (and a third mapped private) could land last.
//! Errno is the real call's; the bookkeeping uses raw system calls only
//! and allocates nothing.

use core::ffi::{c_char, c_int, c_void};
use core::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};

use ipc_offload_engine::engine::cpu_move;
use ipc_offload_engine::shm::{self, Writer, real, span};
use ipc_offload_engine::sys;
use ipc_offload_policy::Class;

use crate::fmtbuf::StackBuf;
use crate::state::Settings;
use crate::{dispatch, process};

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

/// The slow path of memcpy, memmove, mempcpy and their `_chk` forms: the
/// copy goes to the `shm` class's engine when its source or destination
/// lies in shared memory (and it is at or above `[shm] min_bytes`), else to
/// the `memcpy` class's when it is at or above `[memcpy] min_bytes`, else
/// to libc, uncounted (the hook's threshold is the lower of the two).
///
/// # Safety
/// As memmove(3).
pub unsafe fn large_copy(dst: *mut u8, src: *const u8, len: usize) {
    match shm::copy_class(dst as usize, src as usize, len) {
        // SAFETY: forwarded memmove contract.
        Some(class) => unsafe { dispatch::large_copy(class, dst, src, len) },
        // SAFETY: forwarded memmove contract; cpu_move leaves errno alone.
        None => unsafe { cpu_move(dst, src, len) },
    }
}

/// Runs a mapping call `call` and records what it did with `record`
/// (given the writer, or `None` in a signal handler that interrupted its
/// thread's update, and the call's result), keeping the call's errno.
fn tracked<R: Copy>(call: impl FnOnce() -> R, record: impl FnOnce(Option<&Writer>, R)) -> R {
    if !process::is_owner() {
        // A vfork or raw-clone child: the index is not ours to change.
        return call();
    }
    let writer = Writer::begin().ok();
    let result = call();
    let _errno = sys::ErrnoGuard::save();
    if catch_unwind(AssertUnwindSafe(|| record(writer.as_ref(), result))).is_err() {
        // A bug; the index may be wrong now: forget it.
        shm::mark_stale();
    }
    drop(writer);
    result
}

/// Records that `[start, end)` now is (or is not) shared memory.
fn note(writer: Option<&Writer>, (start, end): (usize, usize), shared: bool) {
    match writer {
        Some(w) if shared => w.shared(start, end),
        Some(w) => {
            w.not_shared(start, end);
        }
        None => shm::nested_removal(start, end),
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
        // SAFETY: the caller's mmap contract.
        || unsafe { real::mmap(addr, len, prot, flags, fd, off) },
        |writer, ret| {
            if ret != libc::MAP_FAILED {
                let kind = shm::map_kind(flags, fd);
                note(writer, span(ret as usize, len, kind.page), kind.shared);
            } else if flags & libc::MAP_FIXED != 0 {
                // A failed MAP_FIXED may have unmapped what was there.
                note(writer, span(addr as usize, len, PAGE), false);
            }
        },
    )
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
        |writer, ret| {
            if ret == 0 {
                note(writer, span(addr as usize, len, PAGE), false);
            }
        },
    )
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
    tracked(
        // SAFETY: the caller's mremap contract.
        || unsafe { real::mremap(old, old_len, new_len, flags, new_addr) },
        |writer, ret| {
            if ret != libc::MAP_FAILED {
                // The index still shows the old range as it was before the
                // call (only writers change it, and this one holds the lock).
                // A nested call cannot insert: its new range reads as not shared.
                let was_shared = writer.is_some_and(|w| w.is_shared(old as usize));
                if flags & MREMAP_DONTUNMAP == 0 {
                    note(writer, span(old as usize, old_len, PAGE), false);
                }
                note(writer, span(ret as usize, new_len, PAGE), was_shared);
            } else if flags & libc::MREMAP_FIXED != 0 {
                // A failed MREMAP_FIXED may have unmapped its target.
                note(writer, span(new_addr as usize, new_len, PAGE), false);
            }
        },
    )
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

/// The stats file's `shm_regions` object.
pub fn render<const N: usize>(out: &mut StackBuf<N>) {
    let s = shm::snapshot();
    let _ = write!(
        out,
        ",\"shm_regions\":{{\"tracking\":{},\"ranges\":{},\"peak_ranges\":{},\"capacity\":{},\"shared_maps\":{},\"not_indexed\":{},\"nested\":{},\"unknown_lookups\":{},\"shm_open\":{},\"shm_unlink\":{}}}",
        shm::tracking(),
        s.ranges,
        s.peak_ranges,
        s.capacity,
        s.shared_maps,
        s.not_indexed,
        s.nested,
        s.unknown_lookups,
        s.shm_open,
        s.shm_unlink
    );
}
