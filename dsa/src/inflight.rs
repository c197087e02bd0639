//! The in-flight machinery of every DSA operation: completion records in
//! static blocks leased one per operation (a device that stops answering
//! keeps its block for good, so the caller can return), the order of the
//! descriptors in flight, the wait for a record (spin, yield or UMWAIT),
//! and the page touch that lets a faulted descriptor be resubmitted.

use core::cell::UnsafeCell;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicU8, AtomicU64};
use std::time::{Duration, Instant};

use ipc_offload_policy::Wait;
use ipc_offload_sys::x86::{self, Features};

use crate::abi::{CompletionRecord, status};
use crate::options::DEPTH;

/// How long a waiter polls a completion record before it yields the CPU.
const SPIN: Duration = Duration::from_micros(50);
/// A record not written after this long means the device stopped (halted,
/// or its queue disabled): the queue is marked broken, the copy finishes on
/// the CPU, and the records stay the device's for good.
pub const STALL: Duration = Duration::from_secs(2);
/// Blocks of completion records (one per copy in progress).
const BLOCKS: usize = 64;

/// A piece of the copy: bytes `[off, off + len)` of both buffers, and how
/// many faults in a row it met without progress.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Piece {
    pub(crate) off: usize,
    pub(crate) len: usize,
    pub(crate) stuck: u8,
}

/// Faults in a row without progress after which a piece goes to the CPU
/// (a page that touching does not make present: the copy must end).
pub(crate) const STUCK: u8 = 3;

/// A descriptor in flight and its completion record.
#[derive(Debug, Default)]
#[repr(C, align(32))]
pub(crate) struct Slot {
    pub(crate) record: CompletionRecord,
    pub(crate) piece: Piece,
    /// The queue (of the operation's [`Queues`]) holding the descriptor.
    pub(crate) queue: u8,
}

/// Completion records live in these static blocks rather than on the
/// caller's stack, so that a copy whose device stops answering can return:
/// it leaves its block to the device, never to be used again.
struct Blocks {
    /// Bit i: block i is leased.
    leased: AtomicU64,
    /// Bit i: block i was left to a device that stopped answering.
    lost: AtomicU64,
    blocks: [UnsafeCell<[Slot; DEPTH]>; BLOCKS],
}

// SAFETY: a block is reached only by the thread that leased it (the lease
// is a compare-and-swap on `leased`).
unsafe impl Sync for Blocks {}

static RECORDS: Blocks = Blocks {
    leased: AtomicU64::new(0),
    lost: AtomicU64::new(0),
    blocks: [const { UnsafeCell::new([const { Slot::EMPTY }; DEPTH]) }; BLOCKS],
};

impl Slot {
    const EMPTY: Slot = Slot { record: CompletionRecord::ZERO, piece: Piece { off: 0, len: 0, stuck: 0 }, queue: 0 };
}

/// A leased block of records.
pub(crate) struct Lease {
    index: usize,
    pub(crate) lost: bool,
}

impl Lease {
    /// A free block, if one is (64 copies in progress at once take them all).
    pub(crate) fn take() -> Option<Lease> {
        let mut leased = RECORDS.leased.load(Relaxed);
        loop {
            let free = !(leased | RECORDS.lost.load(Relaxed));
            if free == 0 {
                return None;
            }
            let index = free.trailing_zeros() as usize;
            match RECORDS.leased.compare_exchange_weak(leased, leased | 1 << index, Acquire, Relaxed) {
                Ok(_) => return Some(Lease { index, lost: false }),
                Err(now) => leased = now,
            }
        }
    }

    /// The block's slots, for as long as the lease is held (the caller
    /// keeps the lease alive while it uses them).
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn slots(&self) -> &'static mut [Slot; DEPTH] {
        // SAFETY: this lease holds the block exclusively (see `take`), and
        // the copy that holds the lease drops it only after its last use of
        // the slots (a lost block is never leased again).
        unsafe { &mut *RECORDS.blocks[self.index].get() }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.lost {
            RECORDS.lost.fetch_or(1 << self.index, Relaxed);
        }
        RECORDS.leased.fetch_and(!(1 << self.index), Release);
    }
}

/// The descriptors of one operation in flight, oldest first, as indices
/// into its block of records.
pub(crate) struct InFlight {
    order: [usize; DEPTH],
    head: usize,
    len: usize,
}

impl InFlight {
    pub(crate) fn new() -> InFlight {
        InFlight { order: [0; DEPTH], head: 0, len: 0 }
    }

    /// How many.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The indices in flight, oldest first.
    pub(crate) fn indices(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len).map(|i| self.order[(self.head + i) % DEPTH])
    }

    /// A record index no descriptor in flight uses (call only below
    /// `DEPTH`).
    pub(crate) fn free_slot(&self) -> usize {
        (0..DEPTH).find(|&i| !self.indices().any(|used| used == i)).unwrap_or(0)
    }

    /// The newest descriptor went out with record `index`.
    pub(crate) fn push(&mut self, index: usize) {
        self.order[(self.head + self.len) % DEPTH] = index;
        self.len += 1;
    }

    /// The oldest, no longer in flight once its record is read.
    pub(crate) fn pop(&mut self) -> Option<usize> {
        (self.len > 0).then(|| {
            let index = self.order[self.head];
            self.head = (self.head + 1) % DEPTH;
            self.len -= 1;
            index
        })
    }
}

/// The longest UMWAIT asks for, in time-stamp counter cycles: the
/// kernel's limit (`/sys/devices/system/cpu/umwait_control/max_time`, set
/// with [`set_umwait_max`]) or 100 000 cycles (tens of microseconds),
/// whichever is less; a wait that ends early just looks again.
static UMWAIT_MAX: AtomicU64 = AtomicU64::new(100_000);

/// Honours the kernel's UMWAIT limit (`max_time`, TSC cycles; 0: none).
pub fn set_umwait_max(max_time: u64) {
    if max_time > 0 {
        UMWAIT_MAX.fetch_min(max_time, Relaxed);
    }
}

fn umwait_cycles() -> u64 {
    UMWAIT_MAX.load(Relaxed)
}

/// Waits until the device has written `record` and returns its status code;
/// `None` after [`STALL`].
pub(crate) fn wait_for(record: &CompletionRecord, wait: Wait) -> Option<u8> {
    // SAFETY: the status byte of a live record; the device writes it last,
    // and an acquire load orders the other fields after it.
    let byte = unsafe { &*(&record.status as *const u8).cast::<AtomicU8>() };
    let start = Instant::now();
    let mut polls = 0u32;
    let umwait = wait == Wait::Umwait && Features::get().waitpkg;
    loop {
        let s = byte.load(Acquire);
        if s != status::NONE {
            return Some(s & status::STATUS_MASK);
        }
        if umwait {
            // SAFETY: the CPU has WAITPKG; the record is mapped.
            unsafe { x86::umonitor(&record.status) };
            // Written between the load above and the monitor: seen now.
            if byte.load(Acquire) == status::NONE {
                // SAFETY: as above, after UMONITOR.
                unsafe { x86::umwait(x86::rdtsc() + umwait_cycles()) };
            }
            if start.elapsed() > STALL {
                return None;
            }
            continue;
        }
        if polls % 4096 == 0 && start.elapsed() > STALL {
            return None;
        }
        polls = polls.wrapping_add(1);
        let spin = wait == Wait::Spin || (wait != Wait::Yield && (polls % 64 != 0 || start.elapsed() < SPIN));
        if spin {
            core::hint::spin_loop();
        } else {
            ipc_offload_sys::sched_yield();
        }
    }
}

/// Faults in the page of a reported fault, as the access the device made
/// would have: a write (of the byte's own value) for a write fault, a read
/// otherwise. False when the address lies outside what is left of the
/// faulting piece (the device reported nonsense: the CPU takes over).
///
/// # Safety
/// `[dst, dst + len)` and `[src, src + len)` are what is left of the
/// faulting piece, which no descriptor in flight covers.
pub(crate) unsafe fn touch(record: &CompletionRecord, dst: *mut u8, src: *const u8, len: usize) -> bool {
    let at = record.fault_addr as usize;
    let inside = |base: usize| at >= base && at < base + len;
    if record.write_fault() && inside(dst as usize) {
        let p = at as *mut u8;
        // SAFETY: a byte of the caller's destination, written by nobody else
        // now (see above); reading and writing it back changes nothing.
        unsafe { p.write_volatile(p.read_volatile()) };
        true
    } else if !record.write_fault() && inside(src as usize) {
        // SAFETY: a byte of the caller's source.
        let _ = unsafe { (at as *const u8).read_volatile() };
        true
    } else {
        false
    }
}
