//! Faulting in the far part of a large read's buffer on the copy pool while
//! the reader copies into its near part.
//!
//! A program that receives a large message into memory it has just
//! allocated (Python's `recv_bytes`, any allocator that maps large buffers
//! fresh) pays a page fault per 4 KiB as the reader copies out of the ring,
//! and on these machines the faults, not the copy, bound the transfer
//! (about 0.06 s of 0.11 s for 256 MiB). The writer, meanwhile, mostly
//! sleeps: it is the faster side. So when a transfer of at least [`MIN`]
//! bytes is claimed and its far part is not resident, the reader hands the
//! faulting of that part (`MADV_POPULATE_WRITE`, which writes no byte) to a
//! worker of the process's copy pool, in parts of [`PART`] bytes, and
//! faults the near part itself as it copies: measured, a helper that starts
//! at 40% reaches the end with it, and 256 MiB into fresh memory takes
//! 0.05 s instead of 0.11 s. The job ends with the read: parts no worker has
//! taken by then are withdrawn.

use ipc_offload_engine::pool::{Job, Lease, Op, POOL};
use ipc_offload_engine::split::Split;
use ipc_offload_policy::{Class, Wait};
use ipc_offload_sys::mem;

/// Transfers below this are not worth a job.
pub const MIN: u64 = 16 << 20;
/// The share of the transfer the reader faults in itself, in percent.
const NEAR_PERCENT: u64 = 40;
/// Bytes per populate part: small enough that the job ends promptly when
/// the read does, large enough to cost one system call per 2 MiB.
const PART: usize = 2 << 20;

/// A populate job in flight on a leased pool slot.
#[derive(Debug)]
pub struct Ahead {
    lease: Lease,
}

impl Ahead {
    /// Starts faulting in the far part of `[dst, dst + total)` if it is
    /// worth it: a large transfer, a far part not resident yet, a pool
    /// with a worker and a free slot.
    ///
    /// # Safety
    /// `[dst, dst + total)` is the caller's buffer that the read is about to
    /// fill, valid until [`finish`](Ahead::finish).
    pub unsafe fn start(dst: *mut u8, total: u64, class: Class) -> Option<Ahead> {
        if total < MIN || POOL.planned() == 0 {
            return None;
        }
        let near = (total * NEAR_PERCENT / 100) as usize;
        // SAFETY: near < total: inside the caller's buffer.
        let far = unsafe { dst.add(near) };
        if mem::resident(far).unwrap_or(true) {
            return None; // faulted in already (a buffer in reuse), or not memory
        }
        POOL.ensure_started().ok()?;
        if POOL.workers() == 0 {
            return None; // still starting (another thread is at it)
        }
        let lease = POOL.lease().ok()?;
        let len = total as usize - near;
        let split = Split { part: PART, parts: len.div_ceil(PART) as u32 };
        let job = Job { dst: far, src: core::ptr::null(), len, split, class, op: Op::Populate };
        // SAFETY: the far part of the caller's buffer, which it vouches for
        // until finish; a populate writes no byte.
        unsafe { lease.start(&job, 1) };
        Some(Ahead { lease })
    }

    /// Withdraws what no worker took, waits for what they did: the job
    /// never outlives the read (also when the read unwinds).
    pub fn finish(self) {
        drop(self);
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        let _ = self.lease.finish(Wait::SpinThenSleep);
    }
}
