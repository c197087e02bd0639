//! Copies through a work queue: a copy is cut into descriptors of at most
//! the queue's maximum transfer size, up to [`DEPTH`] of them in flight at
//! once (and never more than the queue's size across every thread), their
//! completion records waited for in submission order; a partial completion
//! (a page fault without block-on-fault) is resumed, an error finished on
//! the CPU. The device (or its model) is the only one to touch the buffers
//! of a descriptor in flight; the CPU copies only what a descriptor did not.

use core::cell::UnsafeCell;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicU8, AtomicU64};
use std::time::{Duration, Instant};

use ipc_offload_policy::Wait;

use super::abi::{CompletionRecord, Descriptor, flag, status};
use super::queue::Queue;
use super::queues::Queues;
use crate::real;
use crate::sys::x86::{self, Features};

/// Descriptors one copy keeps in flight at most.
pub const DEPTH: usize = 16;
/// How long a waiter polls a completion record before it yields the CPU.
const SPIN: Duration = Duration::from_micros(50);
/// A record not written after this long means the device stopped (halted,
/// or its queue disabled): the queue is marked broken, the copy finishes on
/// the CPU, and the records stay the device's for good.
pub const STALL: Duration = Duration::from_secs(2);
/// Blocks of completion records (one per copy in progress).
const BLOCKS: usize = 64;

/// What to do about a page fault the device reported (a partial
/// completion: the device does not fault pages in itself without
/// block-on-fault).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFault {
    /// Touch the page (a write for a write fault) and submit the rest again.
    Resubmit,
    /// Copy the rest on the CPU.
    Cpu,
}

/// How copies are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Set the cache-control flag (destination writes allocate in the
    /// last-level cache); only honoured when the queue's device supports
    /// it.
    pub cache_control: bool,
    /// How a caller waits for a completion record: `spin` polls, `yield`
    /// gives the CPU away between polls, `umwait` sleeps in UMWAIT on the
    /// record's line where the CPU has WAITPKG, the others (and `umwait`
    /// without WAITPKG) poll for 50 µs, then yield.
    pub wait: Wait,
    /// What a page fault leads to.
    pub on_fault: OnFault,
    /// Largest descriptor (the queue's transfer limit caps it too).
    pub chunk: usize,
    /// Descriptors in flight per operation (at most [`DEPTH`]).
    pub depth: usize,
}

impl Options {
    /// Cache-control set, polling then yielding, faults resubmitted, the
    /// largest descriptors the queue takes, [`DEPTH`] in flight.
    pub const DEFAULT: Options = Options {
        cache_control: true,
        wait: Wait::SpinThenSleep,
        on_fault: OnFault::Resubmit,
        chunk: usize::MAX,
        depth: DEPTH,
    };

    /// These options shaped by a class's copy options for an operation of
    /// `len` bytes: the cache-control flag unless the copy bypasses the
    /// cache, the class's descriptor size and depth.
    pub fn shaped(&self, opts: &crate::engine::CopyOptions, len: usize) -> Options {
        Options { cache_control: !opts.bypass(len), chunk: opts.chunk_bytes, depth: opts.depth as usize, ..*self }
    }

    /// Descriptors in flight per operation, 1 to [`DEPTH`].
    pub(super) fn in_flight(&self) -> usize {
        self.depth.clamp(1, DEPTH)
    }
}

/// What one copy did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Descriptors submitted.
    pub descriptors: u32,
    /// Descriptors whose completion record was read.
    pub completed: u32,
    /// Page faults reported.
    pub faults: u32,
    /// Submissions refused and retried.
    pub retries: u32,
    /// Times a queue refused beyond its retries and the next queue was
    /// tried.
    pub queue_switches: u32,
    /// Bytes the CPU copied instead (errors, faults with `OnFault::Cpu`,
    /// refusals by every queue, a queue that cannot take descriptors).
    pub cpu_bytes: u64,
    /// The last error status a descriptor reported (0x10 and up), if any.
    pub error: Option<u8>,
    /// With a CPU share ([`copy_shared`]): how long the caller took to copy
    /// it, and how long it then waited for the device.
    pub cpu_time: Duration,
    /// See `cpu_time`.
    pub waited: Duration,
}

/// A piece of the copy: bytes `[off, off + len)` of both buffers, and how
/// many faults in a row it met without progress.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Piece {
    pub(super) off: usize,
    pub(super) len: usize,
    pub(super) stuck: u8,
}

/// Faults in a row without progress after which a piece goes to the CPU
/// (a page that touching does not make present: the copy must end).
pub(super) const STUCK: u8 = 3;

/// A descriptor in flight and its completion record.
#[derive(Debug, Default)]
#[repr(C, align(32))]
pub(super) struct Slot {
    pub(super) record: CompletionRecord,
    pub(super) piece: Piece,
    /// The queue (of the operation's [`Queues`]) holding the descriptor.
    pub(super) queue: u8,
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
pub(super) struct Lease {
    index: usize,
    pub(super) lost: bool,
}

impl Lease {
    /// A free block, if one is (64 copies in progress at once take them all).
    pub(super) fn take() -> Option<Lease> {
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
    pub(super) fn slots(&self) -> &'static mut [Slot; DEPTH] {
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

/// Copies `len` bytes from `src` to `dst` through `queues` (see
/// [`Queues`]).
///
/// # Safety
/// As memcpy(3): `[src, src + len)` readable, `[dst, dst + len)` writable,
/// and disjoint unless `len` fits one descriptor (the device copies an
/// overlapping range as memmove does).
pub unsafe fn copy(queues: &[Queue], dst: *mut u8, src: *const u8, len: usize, opts: &Options) -> Report {
    // SAFETY: forwarded contract.
    unsafe { copy_shared(queues, dst, src, len, 0, opts) }
}

/// The hybrid engine's copy: the device takes bytes `[cpu_len, len)`, the
/// caller copies `[0, cpu_len)` itself once the device's first descriptors
/// are submitted, then waits for the rest; the report says how long each
/// side took.
///
/// # Safety
/// As [`copy`], the buffers disjoint.
pub unsafe fn copy_shared(
    queues: &[Queue],
    dst: *mut u8,
    src: *const u8,
    len: usize,
    cpu_len: usize,
    opts: &Options,
) -> Report {
    let cpu_len = cpu_len.min(len);
    let mut cpu_done = cpu_len == 0;
    let mut report = Report::default();
    let mut queues = Queues::new(queues);
    let max = queues.max_transfer().min(opts.chunk.max(4096));
    let mut flags = flag::CRAV | flag::RCR;
    if opts.cache_control && queues.cache_control() {
        flags |= flag::CC;
    }
    let Some(mut lease) = Lease::take().filter(|_| !queues.is_broken()) else {
        // No records to use, or a device that stopped: all on the CPU.
        report_all_cpu(dst, src, len, &mut report);
        return report;
    };
    let slots = lease.slots();
    let mut in_flight = InFlight::new();
    // Remainders of partial completions, submitted before new pieces.
    let mut again: [Piece; DEPTH] = Default::default();
    let mut n_again = 0usize;
    let mut next = cpu_len;
    let cpu = |piece: Piece, report: &mut Report| {
        // SAFETY: inside both buffers (the caller's contract); no
        // descriptor in flight covers this piece.
        unsafe { real::move_bytes(dst.add(piece.off), src.add(piece.off), piece.len) };
        report.cpu_bytes += piece.len as u64;
    };
    loop {
        // Submit while there is room.
        while in_flight.len() < opts.in_flight() {
            let piece = if n_again > 0 {
                n_again -= 1;
                again[n_again]
            } else if next < len {
                let piece = Piece { off: next, len: (len - next).min(max), stuck: 0 };
                next += piece.len;
                piece
            } else {
                break;
            };
            if !queues.reserve() {
                if in_flight.len() > 0 {
                    // Wait for one of ours to complete first.
                    again[n_again] = piece;
                    n_again += 1;
                    break;
                }
                // Other threads fill the queue: take turns with them.
                if !queues.wait_for_entry() {
                    cpu(piece, &mut report);
                    continue;
                }
            }
            let index = in_flight.free_slot();
            let slot = &mut slots[index];
            slot.record = CompletionRecord::default();
            slot.piece = piece;
            // SAFETY: the piece lies inside both buffers.
            let (s, d) = unsafe { (src.add(piece.off) as u64, dst.add(piece.off) as u64) };
            let desc = Descriptor::memmove(s, d, piece.len as u32, flags, &slot.record);
            match queues.submit(&desc, &mut report) {
                Ok(queue) => {
                    slot.queue = queue;
                    report.descriptors += 1;
                    in_flight.push(index);
                }
                Err(_) => cpu(piece, &mut report),
            }
        }
        if !cpu_done {
            // The device works on its first descriptors meanwhile.
            let started = Instant::now();
            cpu(Piece { off: 0, len: cpu_len, stuck: 0 }, &mut report);
            report.cpu_bytes -= cpu_len as u64; // the share, not a fallback
            report.cpu_time = started.elapsed();
            cpu_done = true;
        }
        // The oldest descriptor: wait for its record.
        let Some(index) = in_flight.pop() else { break };
        let slot = &slots[index];
        let before = Instant::now();
        let Some(code) = wait_for(&slot.record, opts.wait) else {
            // The device stopped: nothing it holds comes back. Its pieces,
            // and whatever was not submitted, go to the CPU.
            queues.get(slot.queue).mark_broken();
            lease.lost = true;
            for held in core::iter::once(index).chain(in_flight.indices()) {
                cpu(slots[held].piece, &mut report);
            }
            for piece in &again[..n_again] {
                cpu(*piece, &mut report);
            }
            cpu(Piece { off: next, len: len - next, stuck: 0 }, &mut report);
            report.error = Some(STALLED);
            return report;
        };
        if cpu_len > 0 {
            report.waited += before.elapsed();
        }
        queues.get(slot.queue).release();
        report.completed += 1;
        let piece = slot.piece;
        let record = slot.record;
        match code {
            status::SUCCESS => {}
            status::PAGE_FAULT_NOBOF => {
                report.faults += 1;
                let done = (record.bytes_completed as usize).min(piece.len);
                let stuck = if done == 0 { piece.stuck + 1 } else { 0 };
                // Ascending: the rest follows what was done; descending (an
                // overlapping move to a higher address): it precedes it.
                let rest = if record.result & 1 == 1 {
                    Piece { off: piece.off, len: piece.len - done, stuck }
                } else {
                    Piece { off: piece.off + done, len: piece.len - done, stuck }
                };
                if rest.len == 0 {
                    continue;
                }
                // SAFETY: the piece's range of both buffers is the caller's,
                // and no other descriptor in flight covers it.
                let touched = opts.on_fault == OnFault::Resubmit
                    && stuck < STUCK
                    && unsafe { touch(&record, dst.add(rest.off), src.add(rest.off), rest.len) }
                    && n_again < DEPTH;
                if touched {
                    again[n_again] = rest;
                    n_again += 1;
                } else {
                    cpu(rest, &mut report);
                }
            }
            error => {
                report.error = Some(error);
                cpu(piece, &mut report);
            }
        }
    }
    report
}

/// The descriptors of one operation in flight, oldest first, as indices
/// into its block of records.
pub(super) struct InFlight {
    order: [usize; DEPTH],
    head: usize,
    len: usize,
}

impl InFlight {
    pub(super) fn new() -> InFlight {
        InFlight { order: [0; DEPTH], head: 0, len: 0 }
    }

    /// How many.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The indices in flight, oldest first.
    pub(super) fn indices(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len).map(|i| self.order[(self.head + i) % DEPTH])
    }

    /// A record index no descriptor in flight uses (call only below
    /// `DEPTH`).
    pub(super) fn free_slot(&self) -> usize {
        (0..DEPTH).find(|&i| !self.indices().any(|used| used == i)).unwrap_or(0)
    }

    /// The newest descriptor went out with record `index`.
    pub(super) fn push(&mut self, index: usize) {
        self.order[(self.head + self.len) % DEPTH] = index;
        self.len += 1;
    }

    /// The oldest, no longer in flight once its record is read.
    pub(super) fn pop(&mut self) -> Option<usize> {
        (self.len > 0).then(|| {
            let index = self.order[self.head];
            self.head = (self.head + 1) % DEPTH;
            self.len -= 1;
            index
        })
    }
}

/// Waits, yielding, for an entry of a queue that other threads keep full;
/// false after a second (the caller copies on the CPU).
pub(super) fn wait_for_entry(queue: &Queue) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        crate::sys::sched_yield();
        if queue.reserve() {
            return true;
        }
    }
    false
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

/// The `error` of a report whose device stopped answering (not a hardware
/// status: those are below 0x80).
pub const STALLED: u8 = 0xff;

/// Copies all of a copy on the CPU.
fn report_all_cpu(dst: *mut u8, src: *const u8, len: usize, report: &mut Report) {
    // SAFETY: the caller's buffers (the copy's contract).
    unsafe { real::move_bytes(dst, src, len) };
    report.cpu_bytes += len as u64;
}

/// Waits until the device has written `record` and returns its status code;
/// `None` after [`STALL`].
pub(super) fn wait_for(record: &CompletionRecord, wait: Wait) -> Option<u8> {
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
            crate::sys::sched_yield();
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
pub(super) unsafe fn touch(record: &CompletionRecord, dst: *mut u8, src: *const u8, len: usize) -> bool {
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

/// Descriptors submitted by every copy of the process, and what became of
/// them: the `dsa` object of the stats.
#[derive(Debug)]
pub struct Counters {
    /// Descriptors submitted.
    pub submitted: AtomicU64,
    /// Completion records read.
    pub completed: AtomicU64,
    /// Page faults reported.
    pub page_faults: AtomicU64,
    /// Refused submissions retried.
    pub retries: AtomicU64,
    /// Refusals beyond the retries after which the next queue was tried.
    pub queue_switches: AtomicU64,
    /// Copies of which the CPU finished a part (errors, faults with
    /// `on_fault = "cpu"`, refusals).
    pub cpu_fallbacks: AtomicU64,
}

impl Counters {
    /// All zero.
    pub const fn new() -> Counters {
        Counters {
            submitted: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            page_faults: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            queue_switches: AtomicU64::new(0),
            cpu_fallbacks: AtomicU64::new(0),
        }
    }

    /// Back to zero (a fork child counts its own).
    pub fn reset(&self) {
        for c in [
            &self.submitted,
            &self.completed,
            &self.page_faults,
            &self.retries,
            &self.queue_switches,
            &self.cpu_fallbacks,
        ] {
            c.store(0, Relaxed);
        }
    }

    /// Adds one copy's report.
    pub fn add(&self, r: &Report) {
        self.submitted.fetch_add(u64::from(r.descriptors), Relaxed);
        self.completed.fetch_add(u64::from(r.completed), Relaxed);
        self.page_faults.fetch_add(u64::from(r.faults), Relaxed);
        self.retries.fetch_add(u64::from(r.retries), Relaxed);
        self.queue_switches.fetch_add(u64::from(r.queue_switches), Relaxed);
        self.cpu_fallbacks.fetch_add(u64::from(r.cpu_bytes > 0), Relaxed);
    }
}

impl Default for Counters {
    fn default() -> Self {
        Self::new()
    }
}

/// The process's DSA counters.
pub static COUNTERS: Counters = Counters::new();

#[cfg(test)]
mod tests;
