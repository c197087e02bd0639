//! A software model of a DSA device with one work queue: a thread that
//! executes the same 64-byte descriptors as the hardware and writes the same
//! 32-byte completion records, so that the engine's submission and
//! completion code can be proved without a device. It is the only code that
//! touches the sources and destinations of the operations it runs, and it
//! copies, fills and compares with `rep movsb` and SSE2 loads and stores, never
//! through memcpy, memset or memcmp (which this library may interpose).
//!
//! # The portal ring
//! [`Model::portal`] is one 4096-byte page read as a ring of [`SLOTS`] slots
//! of 64 bytes: descriptor number `k` (counted from 0 by the submitter) goes
//! to slot `k % 64`, written whole by MOVDIR64B, or by plain stores of words
//! 1 to 7 followed by a release store of word 0. The model consumes the slots
//! in order. **A slot holds a descriptor when its first eight bytes (the
//! `pasid` and `flags_opcode` words) are not zero**: every descriptor the
//! engine sends sets CRAV|RCR, so its `flags_opcode` is never zero (a NOOP
//! without flags and with PASID 0 would be invisible, and would stall the
//! ring). The model loads word 0 with acquire, reads the other seven words,
//! stores zero to words 1 to 7 and then to word 0 with release, and only
//! then executes the descriptor: a slot is free again before the completion
//! record of its descriptor is written.
//!
//! # Queue modes
//! - [`Mode::Dedicated`]: posted submissions (MOVDIR64B to the ring); the
//!   model never refuses. The submitter must keep at most `size` descriptors
//!   submitted and not completed.
//! - [`Mode::Shared`]: submissions through [`Model::enqcmd`], which answers
//!   as ENQCMD's zero flag would: `false` (retry) when `size` descriptors are
//!   accepted and not completed, or when a retry was injected. An accepted
//!   descriptor is copied by `enqcmd` itself into the next ring slot (with a
//!   model-private marker bit in the reserved bits of word 0, so that even an
//!   all-zero first word is seen); the submitter must not write the portal
//!   itself in this mode.
//!
//! A descriptor is *completed* when the model has finished with it, just
//! before its completion record's status byte is stored (whether or not a
//! record is written).
//!
//! # Operations
//! NOOP, DRAIN (nothing to wait for: the model executes in order), MEMMOVE,
//! MEMFILL, COMPARE and BATCH; every other opcode (and BATCH or DRAIN inside a
//! batch) completes with `BAD_OPCODE`. Checked, in this order:
//! 1. RCR without CRAV: `INVALID_FLAGS`.
//! 2. With CRAV, a completion record address of 0 (`CRA_XLAT`) or not
//!    32-byte aligned (`CRA_ALIGN`).
//! 3. The opcode (`BAD_OPCODE`).
//! 4. MEMMOVE, MEMFILL, COMPARE: `xfer_size` 0 or above the maximum transfer
//!    size: `XFER_ERANGE`. BATCH: `desc_count` below 2 or above the maximum
//!    batch size: `DESC_CNT_ERANGE`; a list address not 64-byte aligned:
//!    `DESCLIST_ALIGN`.
//!
//! A failed check means the operation is not executed. Reserved fields and
//! the PASID are not checked.
//!
//! # Completion records
//! Written when CRAV is set and either RCR is set or the status is not
//! SUCCESS (the hardware writes the record of a descriptor without RCR only
//! when something went wrong). Without CRAV nothing is written. Every field
//! other than `status` is written first (`op_specific` and `rsvd` as zeros),
//! then the status byte with a release store. When the record cannot be
//! written (the first two checks above, or an error without CRAV) the model
//! does what the hardware does with its SWERROR register: it counts the
//! error in [`Counters::swerr`] and keeps the last one for
//! [`Model::last_swerr`]; nothing is written anywhere.
//!
//! - MEMMOVE: `result` 0 for an ascending copy, 1 when the copy ran
//!   descending (the destination is above the source and the ranges overlap).
//! - MEMFILL: the 8-byte pattern (`src`) little-endian, repeated from the
//!   first byte; any length.
//! - COMPARE (`src` with `dst`): SUCCESS, `result` 0 when equal, 1 when they
//!   differ, with `bytes_completed` the offset of the first difference. With
//!   the CR (check result) flag and a `result` other than the expected one
//!   (bit 0 of `op_specific[0]`, descriptor byte 40) the status is
//!   SUCCESS_PRED (which counts as not successful in a batch).
//! - BATCH: the members run one after another, each with its own record,
//!   and a failed member does not stop the others, except that a member
//!   with the FENCE flag after a failed one abandons it and the rest (no
//!   record). The batch's record: SUCCESS when every member completed with
//!   SUCCESS, else BATCH_FAIL with `result` 1; `bytes_completed` is the
//!   number of members processed, successful or not (all of them unless a
//!   fence abandoned some). The choice follows the specification's
//!   "descriptors completed" and the kernel's idxd event-log handler, which
//!   marks a failed batch with BATCH_FAIL and result 1; Intel DML's
//!   software path stops at the first failing member instead.
//!
//! # Page faults
//! Injected by [`FaultRule`]s: at a byte offset of a descriptor's source
//! or destination, or on any access to an address range. When a rule fires
//! on a descriptor without BOF (block on fault), the operation stops at the
//! fault and reports a partial completion: PAGE_FAULT_NOBOF, with bit 7 set
//! when the faulting access was a write (the destination of MEMMOVE or
//! MEMFILL; both COMPARE buffers are reads), `fault_addr` the faulting byte,
//! and `result` the copy direction. Ascending, `bytes_completed` = the
//! faulting offset and the bytes before it are done; descending (MEMMOVE
//! only), the bytes after the faulting offset are done, `bytes_completed` =
//! `len - 1 - offset`, and the remainder is at the front. With BOF the
//! device would wait for the page: the model counts the fault as injected
//! and blocked, and completes the operation. A rule covering a batch's
//! descriptor list makes the batch stop before the member whose descriptor
//! it covers: BATCH_PAGE_FAULT, `result` 0, `bytes_completed` the members
//! processed before it, `fault_addr` the faulting list byte. Real unmapped
//! memory is not detected: addresses are trusted.
//!
//! # Other injections
//! Retries (the next `n` [`Model::enqcmd`] calls refuse), error statuses
//! for the next `n` descriptors (optionally of one opcode) that pass the
//! checks above, and a [`Slowdown`].
//!
//! # The in-flight high-water mark
//! The submitter's count is `submitted - completed`. In shared mode the
//! model sees every submission when `enqcmd` accepts it, so the mark is
//! exact. In dedicated mode it sees a descriptor only when it consumes its
//! slot: at each consumption it counts the descriptor consumed, the
//! following slots already written (consecutive non-empty slots after it)
//! and subtracts the descriptors completed. That is a lower bound of the
//! submitter's count at that moment (descriptors submitted later, or
//! written over a slot the model had not yet consumed, are not seen), so
//! tests check both this mark (`<= size`) and the submitter's own count.
//! Every consumption that sees more than `size` is counted in
//! [`Counters::overruns`] (the hardware would drop such a descriptor; the
//! model executes it, so that a test fails on the count instead of hanging).
//!
//! # Idle and stop
//! An idle model spins for [`ModelConfig::spin`], then polls every
//! [`ModelConfig::idle_poll`] (`enqcmd` wakes it at once). [`Model::stop`]
//! (also run on drop) ends the thread after the descriptor it is executing;
//! descriptors still in the ring are never executed.

mod config;
mod exec;
mod inject;
mod ring;
mod shared;
#[cfg(test)]
mod tests;

use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};

use super::abi::Descriptor;
use ipc_offload_sys::syscall6;

pub use config::{Counters, Mode, ModelConfig, ModelError, Slowdown, SwError};
pub use inject::{FaultRule, FaultTarget, Side};
use shared::{Inner, SHARED_MARKER, Stats, bump, lock};
pub use shared::{PORTAL_BYTES, SLOTS};

/// A running device model (see the module documentation).
#[derive(Debug)]
pub struct Model {
    inner: Arc<Inner>,
    thread: Thread,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl Model {
    /// Maps the portal page and starts the model's thread (with the
    /// process's asynchronous signals blocked, as the library's other
    /// threads).
    pub fn start(config: ModelConfig) -> Result<Arc<Model>, ModelError> {
        if config.size == 0 || config.size as usize > SLOTS {
            return Err(ModelError::Config("size must be 1 to 64"));
        }
        if config.max_transfer_size == 0 {
            return Err(ModelError::Config("max_transfer_size must be at least 1"));
        }
        if let Some(why) = config.faults.iter().find_map(FaultRule::check) {
            return Err(ModelError::Config(why));
        }
        let prot = (libc::PROT_READ | libc::PROT_WRITE) as usize;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as usize;
        // SAFETY: a new anonymous mapping chosen by the kernel; nothing else
        // is touched. Its pages read as zeros: every slot is empty.
        let page = unsafe { syscall6(libc::SYS_mmap, [0, PORTAL_BYTES, prot, flags, usize::MAX, 0]) }
            .map_err(ModelError::Portal)?;
        let inner = Arc::new(Inner {
            portal: page as *mut u8,
            completed: AtomicU64::new(0),
            tickets: AtomicU64::new(0),
            retries: AtomicU32::new(0),
            slowdown_factor: AtomicU32::new(config.slowdown.factor),
            slowdown_fixed: AtomicU64::new(config.slowdown.ns_per_descriptor),
            slowdown_per_kib: AtomicU64::new(config.slowdown.ns_per_kib),
            injections: Mutex::new(inject::Injections::new(&config.faults)),
            last_swerr: Mutex::new(None),
            stop: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            stats: Stats::default(),
            config,
        });
        let for_thread = Arc::clone(&inner);
        let handle = {
            let _held = ipc_offload_sys::signal::Held::block();
            std::thread::Builder::new().name("dsa-model".into()).spawn(move || ring::run(&for_thread))
        }
        .map_err(|e| ModelError::Spawn(e.to_string()))?;
        Ok(Arc::new(Model { inner, thread: handle.thread().clone(), handle: Mutex::new(Some(handle)) }))
    }

    /// The portal page: [`SLOTS`] slots of 64 bytes, 4096-byte aligned.
    pub fn portal(&self) -> *mut u8 {
        self.inner.portal
    }

    /// Slots of the ring.
    pub const fn slots() -> usize {
        SLOTS
    }

    /// The configuration the model was started with.
    pub fn config(&self) -> &ModelConfig {
        &self.inner.config
    }

    /// ENQCMD of `desc` to this (shared) queue: true when the model accepted
    /// it and will execute it; false, as ENQCMD's ZF=1, when `size`
    /// descriptors are accepted and not completed, when a retry was
    /// injected, or when the queue is dedicated (which takes no ENQCMD).
    ///
    /// # Safety
    /// As for a descriptor given to the device: every address in `desc` (and
    /// in a batch's list and members) must be valid for its operation until
    /// its completion record is written, or the model is stopped.
    pub unsafe fn enqcmd(&self, desc: &Descriptor) -> bool {
        let inner = &*self.inner;
        if inner.config.mode != Mode::Shared {
            bump(&inner.stats.queue_full);
            return false;
        }
        if inner.retries.fetch_update(AcqRel, Relaxed, |n| n.checked_sub(1)).is_ok() {
            bump(&inner.stats.retries_injected);
            return false;
        }
        let size = u64::from(inner.config.size);
        let mut ticket = inner.tickets.load(Relaxed);
        loop {
            // `completed` only grows, and never passes the tickets handed
            // out: read after `ticket`, it may be ahead of a stale `ticket`
            // (then the exchange below fails), never behind the truth by
            // more than the descriptors finished meanwhile (a refusal a
            // moment early, never an acceptance too many).
            let in_flight = ticket.saturating_sub(inner.completed.load(Acquire));
            if in_flight >= size {
                bump(&inner.stats.queue_full);
                return false;
            }
            match inner.tickets.compare_exchange_weak(ticket, ticket + 1, AcqRel, Relaxed) {
                Ok(_) => {
                    inner.stats.high_water.fetch_max(in_flight + 1, Relaxed);
                    break;
                }
                Err(now) => ticket = now,
            }
        }
        bump(&inner.stats.accepted);
        // The slot is free: at most `size` <= 64 tickets are not completed,
        // and the model frees a slot before it completes its descriptor.
        let words = exec::words(desc);
        for (w, value) in words.iter().enumerate().skip(1) {
            inner.word(ticket, w).store(*value, Relaxed);
        }
        inner.word(ticket, 0).store(words[0] | SHARED_MARKER, SeqCst);
        if inner.sleeping.load(SeqCst) {
            self.thread.unpark();
        }
        true
    }

    /// Adds a fault rule.
    pub fn inject_fault(&self, rule: FaultRule) {
        lock(&self.inner.injections).add_fault(rule);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        lock(&self.inner.injections).clear_faults();
    }

    /// Makes the next `n` [`enqcmd`](Model::enqcmd) calls refuse (added to
    /// those still pending).
    pub fn inject_retries(&self, n: u32) {
        self.inner.retries.fetch_add(n, AcqRel);
    }

    /// Makes the next `count` descriptors that pass the checks (of
    /// `opcode` only, when given; batch members included, after their
    /// batch) complete with `status` (nonzero; 0 is ignored) and do nothing
    /// else: `bytes_completed` 0, `fault_addr` the first address the
    /// operation would have touched. A batch given an error runs no member.
    pub fn inject_errors(&self, status: u8, count: u32, opcode: Option<u8>) {
        if status != 0 && count != 0 {
            lock(&self.inner.injections).add_error(status, count, opcode);
        }
    }

    /// Removes every pending error and retry injection (fault rules stay).
    pub fn clear_errors(&self) {
        lock(&self.inner.injections).clear_errors();
        self.inner.retries.store(0, Release);
    }

    /// Changes the slowdown, from the next descriptor on.
    pub fn set_slowdown(&self, slowdown: Slowdown) {
        self.inner.slowdown_factor.store(slowdown.factor, Relaxed);
        self.inner.slowdown_fixed.store(slowdown.ns_per_descriptor, Relaxed);
        self.inner.slowdown_per_kib.store(slowdown.ns_per_kib, Relaxed);
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        let s = &self.inner.stats;
        let get = |c: &AtomicU64| c.load(Relaxed);
        Counters {
            accepted: get(&s.accepted),
            completed: self.inner.completed.load(Acquire),
            executed: get(&s.executed),
            cache_control: get(&s.cache_control),
            noop: get(&s.noop),
            drain: get(&s.drain),
            memmove: get(&s.memmove),
            memfill: get(&s.memfill),
            compare: get(&s.compare),
            batch: get(&s.batch),
            invalid: get(&s.invalid),
            bytes: get(&s.bytes),
            work_ns: get(&s.work_ns),
            busy_ns: get(&s.busy_ns),
            records: get(&s.records),
            faults_injected: get(&s.faults_injected),
            faults_blocked: get(&s.faults_blocked),
            errors_injected: get(&s.errors_injected),
            retries_injected: get(&s.retries_injected),
            queue_full: get(&s.queue_full),
            swerr: get(&s.swerr),
            in_flight_high_water: get(&s.high_water),
            overruns: get(&s.overruns),
        }
    }

    /// The last error that had no completion record to go to.
    pub fn last_swerr(&self) -> Option<SwError> {
        *lock(&self.inner.last_swerr)
    }

    /// Whether the model's thread is running.
    pub fn is_running(&self) -> bool {
        lock(&self.handle).as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Ends the model's thread after the descriptor it is executing, and
    /// waits for it. The portal stays mapped until the model is dropped.
    pub fn stop(&self) {
        self.inner.stop.store(true, SeqCst);
        self.thread.unpark();
        if let Some(handle) = lock(&self.handle).take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        self.stop();
    }
}
