//! A work queue as the engine submits to it: where its descriptors go, and
//! the count of descriptors in flight that a dedicated queue needs (a
//! posted MOVDIR64B gets no feedback: more than `size` in flight would be
//! dropped by the device).

use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};

use super::abi::Descriptor;
use ipc_offload_sys::x86::{self, Features};

/// Where a queue's descriptors go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Portal {
    /// A dedicated queue's mapped portal page: MOVDIR64B to its start.
    Dedicated(*mut u8),
    /// A shared queue's mapped portal page: ENQCMD, which may refuse.
    Shared(*mut u8),
    /// The queue file, when mapping its portal was refused (EPERM without
    /// CAP_SYS_RAWIO): write(2) of each descriptor, the kernel submits.
    Write(i32),
    /// A device model's portal page, read by the model as a ring of 64
    /// slots: descriptor `k` goes to slot `k mod 64`, by MOVDIR64B where
    /// the CPU has it, else by plain stores with the descriptor's first
    /// word (the one the model polls) stored last, with release.
    Ring(*mut u8),
    /// A device model in shared mode: [`Model::enqcmd`] accepts or refuses
    /// each descriptor exactly as ENQCMD would (the CPUs here lack ENQCMD).
    ///
    /// [`Model::enqcmd`]: super::model::Model::enqcmd
    ModelShared(*const super::model::Model),
}

/// Slots of a [`Portal::Ring`].
pub const RING_SLOTS: u64 = 64;

/// Why a submission did not go through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue is full or busy (ENQCMD's ZF, `EAGAIN` from write(2)):
    /// retry, use another queue, or the CPU.
    Retry,
    /// The queue cannot take descriptors at all (write(2) failed, or the
    /// CPU lacks the instruction the portal needs).
    Broken,
}

/// A work queue: its portal, its size and transfer limit, and the count of
/// descriptors submitted and not yet seen complete, shared by every thread.
#[derive(Debug)]
pub struct Queue {
    portal: Portal,
    /// Entries of the queue (at most [`RING_SLOTS`] for a model).
    pub size: u32,
    /// Largest `xfer_size` of one descriptor.
    pub max_transfer: u32,
    /// Whether the device honours the cache-control flag (gen_cap bit 2).
    pub cache_control: bool,
    in_flight: AtomicU32,
    high_water: AtomicU32,
    seq: AtomicU64,
    broken: AtomicBool,
}

// SAFETY: the portal pointer names device (or model) memory written only
// through whole-descriptor stores; every other field is atomic or constant.
unsafe impl Send for Queue {}
// SAFETY: as above.
unsafe impl Sync for Queue {}

impl Queue {
    /// A queue of `size` entries behind `portal`.
    pub fn new(portal: Portal, size: u32, max_transfer: u32, cache_control: bool) -> Queue {
        let size = match portal {
            Portal::Ring(_) | Portal::ModelShared(_) => size.clamp(1, RING_SLOTS as u32),
            _ => size.max(1),
        };
        Queue {
            portal,
            size,
            max_transfer: max_transfer.max(1),
            cache_control,
            in_flight: AtomicU32::new(0),
            high_water: AtomicU32::new(0),
            seq: AtomicU64::new(0),
            broken: AtomicBool::new(false),
        }
    }

    /// A placeholder that takes no descriptor (broken from the start).
    pub fn unused() -> Queue {
        let queue = Queue::new(Portal::Write(-1), 1, 1, false);
        queue.mark_broken();
        queue
    }

    /// The portal.
    pub fn portal(&self) -> Portal {
        self.portal
    }

    /// Takes an entry of the queue for one descriptor; false when `size`
    /// are in flight already (across every thread).
    pub fn reserve(&self) -> bool {
        let mut now = self.in_flight.load(Relaxed);
        loop {
            if now >= self.size {
                return false;
            }
            match self.in_flight.compare_exchange_weak(now, now + 1, AcqRel, Relaxed) {
                Ok(_) => {
                    self.high_water.fetch_max(now + 1, Relaxed);
                    return true;
                }
                Err(seen) => now = seen,
            }
        }
    }

    /// Marks the queue as one whose device stopped answering: no copy
    /// submits to it again.
    pub fn mark_broken(&self) {
        self.broken.store(true, Release);
    }

    /// Whether the device stopped answering.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Acquire)
    }

    /// Gives back an entry: its descriptor's completion record was seen
    /// written, or it was never submitted.
    pub fn release(&self) {
        self.in_flight.fetch_sub(1, Release);
    }

    /// Descriptors in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Acquire)
    }

    /// The most ever in flight at once.
    pub fn high_water(&self) -> u32 {
        self.high_water.load(Relaxed)
    }

    /// Submits `desc`, for which the caller holds an entry
    /// ([`reserve`](Queue::reserve)); its completion record is zeroed.
    ///
    /// # Safety
    /// The descriptor's addresses are valid for its operation until its
    /// completion record is written; the portal is mapped (or the model
    /// running) for as long as the queue is used.
    pub unsafe fn submit(&self, desc: &Descriptor) -> Result<(), Refused> {
        let features = Features::get();
        let bytes = desc.as_bytes().as_ptr();
        match self.portal {
            Portal::Dedicated(page) if features.movdir64b => {
                // SAFETY: a mapped portal page; the CPU has MOVDIR64B.
                unsafe { x86::movdir64b(page, bytes) };
                Ok(())
            }
            Portal::Shared(page) if features.enqcmd => {
                // SAFETY: a mapped shared portal page; the CPU has ENQCMD.
                if unsafe { x86::enqcmd(page, bytes) } { Ok(()) } else { Err(Refused::Retry) }
            }
            Portal::Dedicated(_) | Portal::Shared(_) => Err(Refused::Broken),
            Portal::Write(fd) => match ipc_offload_sys::write_all(fd, desc.as_bytes()) {
                Ok(()) => Ok(()),
                Err(e) if e.0 == libc::EAGAIN || e.0 == libc::EBUSY => Err(Refused::Retry),
                Err(_) => Err(Refused::Broken),
            },
            // SAFETY: the model outlives the queue (the caller's contract),
            // and the descriptor's addresses are valid (this function's).
            Portal::ModelShared(model) => match unsafe { (*model).enqcmd(desc) } {
                true => Ok(()),
                false => Err(Refused::Retry),
            },
            Portal::Ring(page) => {
                let k = self.seq.fetch_add(1, Relaxed) % RING_SLOTS;
                // SAFETY: slot k of the model's page (64 slots of 64 bytes);
                // the model consumed it already (at most `size` <= 64
                // descriptors are in flight, and it consumes in order).
                let slot = unsafe { page.add(k as usize * 64) };
                if features.movdir64b {
                    // SAFETY: as above; the CPU has MOVDIR64B.
                    unsafe { x86::movdir64b(slot, bytes) };
                } else {
                    // SAFETY: as above.
                    unsafe { store_last_word_released(slot, desc) };
                }
                Ok(())
            }
        }
    }
}

/// A descriptor into a model's ring slot without MOVDIR64B: words 1 to 7
/// first, then word 0 (pasid, flags and opcode: what the model polls) with
/// release, so that the model never sees a half-written descriptor.
///
/// # Safety
/// `slot` 64-byte aligned, writable, read by the model only through an
/// acquire load of its first word.
unsafe fn store_last_word_released(slot: *mut u8, desc: &Descriptor) {
    let words = desc.as_bytes().as_ptr().cast::<u64>();
    let dst = slot.cast::<u64>();
    for i in (1..8).chain([0]) {
        // SAFETY: word i of the 64-byte slot and of the descriptor (both
        // 64-byte aligned); the model reads the slot's words atomically.
        let (word, value) = unsafe { (AtomicU64::from_ptr(dst.add(i)), words.add(i).read()) };
        word.store(value, if i == 0 { Release } else { Relaxed });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{CompletionRecord, flag};

    #[repr(C, align(4096))]
    struct Page([u8; 4096]);

    #[test]
    fn reservations_never_exceed_the_size_across_threads() {
        let q = Queue::new(Portal::Write(-1), 4, 1 << 20, false);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        if q.reserve() {
                            assert!(q.in_flight() <= 4);
                            q.release();
                        }
                    }
                });
            }
        });
        assert_eq!(q.in_flight(), 0);
        assert!((1..=4).contains(&q.high_water()));
    }

    #[test]
    fn ring_submissions_go_to_successive_slots() {
        let mut page = Page([0; 4096]);
        let q = Queue::new(Portal::Ring(page.0.as_mut_ptr()), 128, 1 << 20, false);
        assert_eq!(q.size, 64, "a ring holds at most 64");
        let cr = CompletionRecord::default();
        for i in 0..3u64 {
            let d = Descriptor::memmove(0x1000 + i, 0x2000, 64, flag::CRAV | flag::RCR, &cr);
            // SAFETY: the page stands in for a model's portal; nothing reads it.
            unsafe { q.submit(&d) }.unwrap();
        }
        for i in 0..3usize {
            let slot = &page.0[i * 64..i * 64 + 64];
            assert_eq!(&slot[16..24], &(0x1000 + i as u64).to_le_bytes());
            assert_eq!(slot[7], crate::abi::opcode::MEMMOVE);
        }
        assert!(page.0[3 * 64..].iter().all(|b| *b == 0));
    }

    #[test]
    fn a_queue_file_that_refuses_is_broken() {
        let q = Queue::new(Portal::Write(-1), 1, 1 << 20, false);
        let cr = CompletionRecord::default();
        let d = Descriptor::noop(flag::CRAV | flag::RCR, &cr);
        // SAFETY: fd -1: write(2) fails without touching memory.
        assert_eq!(unsafe { q.submit(&d) }, Err(Refused::Broken));
    }
}
