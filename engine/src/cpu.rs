//! The `cpu` engine: the real libc memcpy or memmove on the calling
//! thread, or the non-temporal stream copy when the copy goes around the
//! cache.

use ipc_offload_sys::{real, stream};

use crate::kinds::{CopyOptions, EngineId, Outcome};
use crate::split;

/// Copies on the calling thread: streaming stores when `opts` says the
/// copy bypasses the cache and the regions are disjoint, else libc.
///
/// # Safety
/// As memmove(3).
pub unsafe fn copy(dst: *mut u8, src: *const u8, len: usize, opts: &CopyOptions) -> Outcome {
    let stream = opts.bypass(len) && !split::overlap(dst as usize, src as usize, len);
    if stream {
        // SAFETY: forwarded memcpy contract (disjoint, checked).
        unsafe { stream::copy(dst, src, len) };
    } else {
        // SAFETY: forwarded memmove contract.
        unsafe { cpu_move(dst, src, len) };
    }
    Outcome::done_by(EngineId::Cpu).bypassing(stream)
}

/// The CPU engine: libc's memcpy, or memmove when the regions overlap.
///
/// # Safety
/// As memmove(3).
pub unsafe fn cpu_move(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: forwarded contract; memcpy only when the regions are disjoint.
    unsafe {
        if split::overlap(dst as usize, src as usize, len) {
            real::move_bytes(dst, src, len)
        } else {
            real::copy(dst, src, len)
        }
    }
}
