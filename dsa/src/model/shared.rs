//! What the model's thread and its submitters share ([`Inner`]): the
//! portal page and its ring words, the counters, the injections, the
//! slowdown; and the ring's geometry. A leaf of the model: the executor
//! (`exec.rs`), the portal ring (`ring.rs`) and the model's API
//! (`model.rs`) stand on it.

use core::sync::atomic::Ordering::Relaxed;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::{Mutex, MutexGuard};

use ipc_offload_sys::syscall6;

use super::config::{ModelConfig, Slowdown, SwError};
use super::inject;
use crate::abi::Descriptor;

/// Slots of the portal ring.
pub const SLOTS: usize = 64;

/// Bytes of the portal page.
pub const PORTAL_BYTES: usize = 4096;

/// A reserved bit of word 0 (PASID word bit 30) that `enqcmd` sets in the
/// slot copy, and that the model clears, so that any descriptor is seen.
pub(super) const SHARED_MARKER: u64 = 1 << 30;

/// The counters, one atomic each.
#[derive(Debug, Default)]
pub(super) struct Stats {
    pub(super) accepted: AtomicU64,
    pub(super) executed: AtomicU64,
    pub(super) cache_control: AtomicU64,
    pub(super) noop: AtomicU64,
    pub(super) drain: AtomicU64,
    pub(super) memmove: AtomicU64,
    pub(super) memfill: AtomicU64,
    pub(super) compare: AtomicU64,
    pub(super) batch: AtomicU64,
    pub(super) invalid: AtomicU64,
    pub(super) bytes: AtomicU64,
    pub(super) work_ns: AtomicU64,
    pub(super) busy_ns: AtomicU64,
    pub(super) records: AtomicU64,
    pub(super) faults_injected: AtomicU64,
    pub(super) faults_blocked: AtomicU64,
    pub(super) errors_injected: AtomicU64,
    pub(super) retries_injected: AtomicU64,
    pub(super) queue_full: AtomicU64,
    pub(super) swerr: AtomicU64,
    pub(super) high_water: AtomicU64,
    pub(super) overruns: AtomicU64,
}

pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the model's thread and the submitters share.
#[derive(Debug)]
pub(super) struct Inner {
    pub(super) config: ModelConfig,
    /// The portal page (mapped in [`Model::start`], unmapped on drop).
    pub(super) portal: *mut u8,
    /// Descriptors finished.
    pub(super) completed: AtomicU64,
    /// Shared mode: slots handed out by `enqcmd`.
    pub(super) tickets: AtomicU64,
    pub(super) retries: AtomicU32,
    pub(super) slowdown_factor: AtomicU32,
    pub(super) slowdown_fixed: AtomicU64,
    pub(super) slowdown_per_kib: AtomicU64,
    pub(super) injections: Mutex<inject::Injections>,
    pub(super) last_swerr: Mutex<Option<SwError>>,
    pub(super) stop: AtomicBool,
    pub(super) sleeping: AtomicBool,
    pub(super) stats: Stats,
}

// SAFETY: `portal` names a private anonymous mapping owned by this value;
// after start-up it is only accessed through atomics (the ring words) or
// through the raw pointer handed to submitters, who write it with whole
// 64-byte stores. Everything else is atomic or behind a mutex.
unsafe impl Send for Inner {}
// SAFETY: as above.
unsafe impl Sync for Inner {}

impl Drop for Inner {
    fn drop(&mut self) {
        // SAFETY: unmapping the page mapped in `Model::start`; the thread that
        // read it has exited (it holds an Arc of this value), and the
        // submitters' pointers are only valid while the model lives.
        let _ = unsafe { syscall6(libc::SYS_munmap, [self.portal as usize, PORTAL_BYTES, 0, 0, 0, 0]) };
    }
}

impl Inner {
    /// Word `w` (0 to 7) of ring slot `ticket % SLOTS`.
    pub(super) fn word(&self, ticket: u64, w: usize) -> &AtomicU64 {
        let slot = (ticket % SLOTS as u64) as usize;
        // SAFETY: inside the mapped, 4096-aligned page (slot < 64, w < 8:
        // offset < 4096, 8-byte aligned); the page lives as long as `self`,
        // and every access to the ring words is atomic, or a whole 64-byte
        // store by a submitter into a slot the model has released.
        unsafe { AtomicU64::from_ptr(self.portal.add(slot * 64 + w * 8).cast::<u64>()) }
    }

    pub(super) fn slowdown(&self) -> Slowdown {
        Slowdown {
            factor: self.slowdown_factor.load(Relaxed),
            ns_per_descriptor: self.slowdown_fixed.load(Relaxed),
            ns_per_kib: self.slowdown_per_kib.load(Relaxed),
        }
    }

    pub(super) fn swerr(&self, status: u8, descriptor: &Descriptor) {
        bump(&self.stats.swerr);
        *lock(&self.last_swerr) = Some(SwError { status, descriptor: *descriptor });
    }
}
