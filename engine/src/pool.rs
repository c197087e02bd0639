//! The copy-worker pool behind the async-cpu engine.
//!
//! A caller leases one of [`SLOTS`] job slots, publishes a job (a copy cut
//! into parts), and then claims parts itself like any worker. Workers woken
//! for the job claim parts too. Claiming is a compare-and-swap on the slot's
//! `claim` word, so a part is copied exactly once, by whoever gets there
//! first; when no worker is free the caller simply copies every part, and a
//! slow or sleeping worker never holds a copy up by more than the one part it
//! claimed. The caller returns when the `done` count reaches the part count.
//!
//! Nothing here allocates or takes a lock after the workers exist, so a copy
//! is safe from any thread, including a signal handler (the runtime keeps a
//! handler that interrupted a copy on its own thread away from the pool).
//!
//! ## The claim word and slot reuse
//! `claim` holds `generation << 32 | next_part`. Between jobs the part half is
//! [`CLOSED`]. A worker reads `claim`, then the job fields, then
//! compare-and-swaps `claim` from the value it read. The publisher closes the
//! slot, issues a release fence, writes the fields, and opens the slot with a
//! new generation. If a worker read any field of a newer job, the fences make
//! the close visible to its CAS, which therefore fails (the claim word never
//! returns to an earlier value); so a successful CAS means the fields it read
//! all belong to the job it claimed from — the seqlock argument of Boehm,
//! "Can seqlocks get along with programming language memory models?" (2012).
//!
//! ## Fork
//! Workers do not survive fork. The runtime calls [`Pool::reset_after_fork`]
//! in the child, which frees every slot and bumps the epoch; a caller that
//! finds the epoch changed under it (a fork from a signal handler that
//! interrupted its copy) finishes its job alone.

use core::ffi::c_void;
use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, fence};
use core::time::Duration;
use std::time::Instant;

use ipc_offload_policy::{Class, Wait};

use crate::chaos::point;
use crate::split::Split;
use crate::stats;
use ipc_offload_sys::futex::{self, Woken};
use ipc_offload_sys::real;
use ipc_offload_sys::thread::{self, CpuMask, SpawnError};

/// Job slots: at most this many copies are in flight at once; a caller that
/// finds none free copies alone.
pub const SLOTS: usize = 64;
/// The part half of `claim` between jobs.
const CLOSED: u32 = u32::MAX;
/// Stack of a worker thread: it runs the claim loop and libc's memcpy only.
const WORKER_STACK: usize = 128 << 10;
/// A caller waiting with `spin-then-sleep` spins this long before sleeping.
const CALLER_SPIN: Duration = Duration::from_micros(50);
/// Even `spin` and `yield` sleep after polling this long: a caller with a
/// real-time priority would otherwise keep a worker that shares its CPU
/// from ever finishing the part it waits for.
const POLL_LIMIT: Duration = Duration::from_millis(10);
/// A sleeping caller re-checks the pool's epoch this often (see the module
/// documentation on fork).
const CALLER_NAP: Duration = Duration::from_millis(10);

const NOT_STARTED: u32 = 0;
const STARTING: u32 = 1;
const RUNNING: u32 = 2;
const FAILED: u32 = 3;

/// One job in flight. Aligned so that slots do not share cache lines.
#[derive(Debug)]
#[repr(C, align(128))]
struct Slot {
    /// `generation << 32 | next unclaimed part` ([`CLOSED`] between jobs).
    claim: AtomicU64,
    dst: AtomicUsize,
    src: AtomicUsize,
    len: AtomicUsize,
    part: AtomicUsize,
    parts: AtomicU32,
    class: AtomicU32,
    /// The job's [`Op`], as a number.
    op: AtomicU32,
    /// Parts completed; the owner sleeps on this word.
    done: AtomicU32,
    /// The `done` count the owner waits for: the part count, or fewer for a
    /// job ended early ([`Lease::finish`]); reaching it wakes the owner.
    target: AtomicU32,
    /// Non-zero while the owner may be asleep on `done`.
    waiter: AtomicU32,
}

impl Slot {
    const fn new() -> Self {
        Slot {
            claim: AtomicU64::new(CLOSED as u64),
            dst: AtomicUsize::new(0),
            src: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            part: AtomicUsize::new(0),
            parts: AtomicU32::new(0),
            class: AtomicU32::new(0),
            op: AtomicU32::new(0),
            done: AtomicU32::new(0),
            target: AtomicU32::new(0),
            waiter: AtomicU32::new(0),
        }
    }

    fn close(&self) {
        let generation = self.claim.load(Relaxed) >> 32;
        self.claim.store(generation << 32 | CLOSED as u64, Relaxed);
    }

    /// Marks one claimed part complete, waking the owner after the last it
    /// waits for.
    fn complete_one(&self) {
        point();
        if self.done.fetch_add(1, SeqCst) + 1 >= self.target.load(SeqCst) && self.waiter.load(SeqCst) != 0 {
            futex::wake(&self.done, 1);
        }
    }
}

/// What a job does with each of its parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Op {
    /// Copy from `src` to `dst`.
    Copy = 0,
    /// Copy with non-temporal stores.
    Stream = 1,
    /// Fault `dst` in, writable, without changing a byte (`src` unused):
    /// see [`Lease::start`].
    Populate = 2,
}

impl Op {
    fn from_u32(v: u32) -> Op {
        match v {
            1 => Op::Stream,
            2 => Op::Populate,
            _ => Op::Copy,
        }
    }
}

/// A copy to run as one job: `len` bytes from `src` to `dst` (disjoint).
#[derive(Clone, Copy, Debug)]
pub struct Job {
    /// Destination.
    pub dst: *mut u8,
    /// Source.
    pub src: *const u8,
    /// Bytes.
    pub len: usize,
    /// How the bytes are cut.
    pub split: Split,
    /// The class whose counters get the workers' bytes.
    pub class: Class,
    /// What is done to each part.
    pub op: Op,
}

/// Why a job could not be run by the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// Every slot is leased.
    Saturated,
    /// Not one worker thread could be started.
    Unavailable,
}

/// The process fork()ed while this caller was waiting (from a signal handler
/// that interrupted the copy): the caller finished the job alone and must not
/// touch the pool again for this copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forked;

/// The worker pool. A process has one, [`POOL`]; tests make their own.
#[derive(Debug)]
pub struct Pool {
    slots: [Slot; SLOTS],
    /// Bit i set: slot i can be leased.
    free: AtomicU64,
    /// Bit i set: slot i is leased (workers look only there).
    active: AtomicU64,
    /// Bumped on every publish; idle workers sleep on it.
    seq: AtomicU32,
    /// Workers asleep (or about to sleep) on `seq`.
    sleepers: AtomicU32,
    state: AtomicU32,
    /// Worker threads running.
    workers: AtomicU32,
    /// Bumped in a fork child.
    epoch: AtomicU32,
    /// Workers to start.
    target: AtomicU32,
    /// How long an idle worker polls before it sleeps, in microseconds.
    idle_spin_us: AtomicU32,
    /// Idle workers yield between polls instead of pausing.
    idle_yield: AtomicU32,
    /// The first error of a failed thread start (errno), or 0.
    spawn_error: AtomicU32,
    /// The CPUs workers run on (the process's, captured at start-up), and
    /// whether it was captured: not those of whichever thread starts them.
    affinity: [AtomicU64; 128],
    has_affinity: AtomicU32,
    /// Its workers take part in perturbed test runs ([`crate::chaos`]).
    #[cfg(test)]
    pub(crate) perturbed: core::sync::atomic::AtomicBool,
}

/// The process's pool.
pub static POOL: Pool = Pool::new();

impl Default for Pool {
    fn default() -> Self {
        Self::new()
    }
}

impl Pool {
    /// An unstarted pool with no workers configured.
    pub const fn new() -> Self {
        Pool {
            slots: [const { Slot::new() }; SLOTS],
            free: AtomicU64::new(u64::MAX),
            active: AtomicU64::new(0),
            seq: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            state: AtomicU32::new(NOT_STARTED),
            workers: AtomicU32::new(0),
            epoch: AtomicU32::new(0),
            target: AtomicU32::new(0),
            idle_spin_us: AtomicU32::new(0),
            idle_yield: AtomicU32::new(0),
            spawn_error: AtomicU32::new(0),
            affinity: [const { AtomicU64::new(0) }; 128],
            has_affinity: AtomicU32::new(0),
            #[cfg(test)]
            perturbed: core::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Sets the CPUs workers will run on (the process's CPU set, captured
    /// before the program pins any thread).
    pub fn set_affinity(&self, mask: &CpuMask) {
        for (slot, word) in self.affinity.iter().zip(mask) {
            slot.store(*word, Relaxed);
        }
        self.has_affinity.store(1, Release);
    }

    /// Sets the number of workers to start and how idle workers wait. Takes
    /// effect at the next start (the first copy, or the first after fork).
    pub fn configure(&self, workers: u32, idle: Wait) {
        self.target.store(workers, Relaxed);
        let (spin_us, yields) = match idle {
            Wait::Sleep => (0, false),
            Wait::Spin => (2000, false),
            Wait::Yield => (2000, true),
            Wait::SpinThenSleep | Wait::Umwait => (200, false),
        };
        self.idle_spin_us.store(spin_us, Relaxed);
        self.idle_yield.store(yields as u32, Relaxed);
    }

    /// Worker threads the pool starts on first use (or has started).
    pub fn planned(&self) -> u32 {
        self.target.load(Relaxed)
    }

    /// Worker threads currently running.
    pub fn workers(&self) -> u32 {
        self.workers.load(Relaxed)
    }

    /// The error that stopped the pool from starting any worker, if any.
    pub fn start_error(&self) -> Option<SpawnError> {
        match self.spawn_error.load(Relaxed) {
            0 => None,
            e => Some(SpawnError::Create(ipc_offload_sys::Errno(e as i32))),
        }
    }

    /// Starts the workers on first use. Callers that find the pool starting
    /// go ahead without waiting: they copy every part themselves if needed.
    pub fn ensure_started(&'static self) -> Result<(), PoolError> {
        match self.state.load(Acquire) {
            RUNNING | STARTING => return Ok(()),
            FAILED => return Err(PoolError::Unavailable),
            _ => {}
        }
        let epoch = self.epoch.load(Acquire);
        if self.state.compare_exchange(NOT_STARTED, STARTING, AcqRel, Acquire).is_err() {
            return Ok(());
        }
        let target = self.target.load(Relaxed);
        let mut started = 0;
        for _ in 0..target {
            match thread::spawn_detached(worker_main, self as *const Pool as usize, WORKER_STACK, c"ipc-offload-cp") {
                Ok(()) => started += 1,
                Err(SpawnError::Create(e) | SpawnError::Attributes(e)) => {
                    self.spawn_error.store(e.0 as u32, Relaxed);
                    break;
                }
            }
        }
        if self.epoch.load(Acquire) != epoch {
            // A signal handler forked while this thread was starting workers,
            // and this is the child, whose pool was reset meanwhile: leave it
            // unstarted (threads started after the fork help all the same).
            return Ok(());
        }
        self.workers.store(started, Relaxed);
        let failed = started == 0 && target > 0;
        self.state.store(if failed { FAILED } else { RUNNING }, Release);
        if failed { Err(PoolError::Unavailable) } else { Ok(()) }
    }

    /// Leases a job slot.
    pub fn lease(&'static self) -> Result<Lease, PoolError> {
        let mut free = self.free.load(Relaxed);
        loop {
            if free == 0 {
                return Err(PoolError::Saturated);
            }
            let index = free.trailing_zeros() as usize;
            let bit = 1u64 << index;
            point();
            match self.free.compare_exchange_weak(free, free & !bit, Acquire, Relaxed) {
                Ok(_) => {
                    point();
                    // Read once the slot is ours: a fork (from a signal
                    // handler) before this point reset the masks, and the
                    // lease then belongs to the child's epoch.
                    let epoch = self.epoch.load(Acquire);
                    self.active.fetch_or(bit, Relaxed);
                    return Ok(Lease { pool: self, index, epoch });
                }
                Err(now) => free = now,
            }
        }
    }

    /// Puts the pool of a fork child back in its unstarted state: the
    /// parent's workers do not exist here, and every slot is free.
    pub fn reset_after_fork(&self) {
        for slot in &self.slots {
            slot.close();
            slot.done.store(0, Relaxed);
            slot.waiter.store(0, Relaxed);
        }
        self.free.store(u64::MAX, Relaxed);
        self.active.store(0, Relaxed);
        self.sleepers.store(0, Relaxed);
        self.workers.store(0, Relaxed);
        self.spawn_error.store(0, Relaxed);
        self.state.store(NOT_STARTED, Relaxed);
        self.epoch.fetch_add(1, SeqCst);
    }

    /// Marks the pool as unable to start (tests of the fallback path).
    #[cfg(test)]
    pub(crate) fn force_failed(&self) {
        self.state.store(FAILED, Relaxed);
    }

    /// Claims and copies parts of `slot` until none is left; true if it
    /// copied at least one. Used by workers, for slots they do not own.
    fn help(&self, slot: &Slot) -> bool {
        let mut helped = false;
        loop {
            let claim = slot.claim.load(Acquire);
            let index = claim as u32;
            if index == CLOSED {
                return helped;
            }
            point();
            let dst = slot.dst.load(Relaxed);
            let src = slot.src.load(Relaxed);
            let len = slot.len.load(Relaxed);
            let part = slot.part.load(Relaxed);
            let parts = slot.parts.load(Relaxed);
            let class = slot.class.load(Relaxed);
            let op = Op::from_u32(slot.op.load(Relaxed));
            fence(Acquire);
            if index >= parts {
                return helped;
            }
            point();
            if slot.claim.compare_exchange(claim, claim + 1, AcqRel, Relaxed).is_err() {
                continue;
            }
            point();
            // The CAS succeeded: the fields above belong to this job.
            let split = Split { part, parts };
            let (offset, n) = split.range(index, len);
            // SAFETY: the job's owner guarantees [dst, dst+len) writable and
            // [src, src+len) readable and disjoint until every part is done,
            // which cannot happen before complete_one below.
            unsafe { do_part(op, (dst + offset) as *mut u8, (src + offset) as *const u8, n) };
            if let Some(class) = Class::ALL.get(class as usize).filter(|_| op != Op::Populate) {
                stats::counters(*class).add_worker_bytes(n as u64);
            }
            slot.complete_one();
            helped = true;
        }
    }

    /// One pass over the leased slots; true if any part was copied.
    fn help_any(&self, first: &mut usize) -> bool {
        let active = self.active.load(Acquire).rotate_right(*first as u32);
        let mut bits = active;
        while bits != 0 {
            let index = (bits.trailing_zeros() as usize + *first) % SLOTS;
            bits &= bits - 1;
            if self.help(&self.slots[index]) {
                *first = index;
                return true;
            }
        }
        false
    }

    /// The body of every worker thread.
    fn work(&self) -> ! {
        let mut first = 0;
        loop {
            let seen = self.seq.load(SeqCst);
            if self.help_any(&mut first) {
                continue;
            }
            if self.idle_poll(seen) {
                continue;
            }
            self.sleepers.fetch_add(1, SeqCst);
            if self.seq.load(SeqCst) == seen {
                futex::wait(&self.seq, seen, None);
            }
            self.sleepers.fetch_sub(1, SeqCst);
        }
    }

    /// Polls `seq` for up to the idle spin time; true if a job was published.
    fn idle_poll(&self, seen: u32) -> bool {
        let budget = Duration::from_micros(self.idle_spin_us.load(Relaxed) as u64);
        if budget.is_zero() {
            return false;
        }
        let yields = self.idle_yield.load(Relaxed) != 0;
        let start = Instant::now();
        loop {
            for _ in 0..64 {
                if self.seq.load(Relaxed) != seen {
                    return true;
                }
                if yields {
                    ipc_offload_sys::sched_yield();
                } else {
                    core::hint::spin_loop();
                }
            }
            if start.elapsed() >= budget {
                return false;
            }
        }
    }
}

/// Does one part: a copy, with streaming stores when the job asks for them
/// (the streaming copy fences its stores before returning, so the
/// completion count published next covers them), or a populate.
///
/// # Safety
/// As memcpy(3) (for a populate: `dst` writable for `n` bytes).
unsafe fn do_part(op: Op, dst: *mut u8, src: *const u8, n: usize) {
    #[cfg(test)]
    chaos_tests::parts::note(dst, n);
    // SAFETY: forwarded memcpy contract.
    unsafe {
        match op {
            Op::Copy => real::copy(dst, src, n),
            Op::Stream => ipc_offload_sys::stream::copy(dst, src, n),
            // Best effort: a range the kernel refuses is faulted in by the
            // owner's own copy.
            Op::Populate => drop(ipc_offload_sys::mem::populate_write(dst, n)),
        }
    }
}

extern "C" fn worker_main(arg: *mut c_void) -> *mut c_void {
    // SAFETY: `ensure_started` passes the address of a `'static` pool.
    let pool = unsafe { &*(arg as *const Pool) };
    #[cfg(test)]
    if pool.perturbed.load(Relaxed) {
        crate::chaos::join();
    }
    if pool.has_affinity.load(Acquire) != 0 {
        let mask: CpuMask = core::array::from_fn(|i| pool.affinity[i].load(Relaxed));
        // Best effort: a mask the kernel refuses leaves the inherited one.
        let _ = thread::set_current_affinity(&mask);
    }
    pool.work()
}

/// A leased job slot. Dropping it returns the slot.
#[derive(Debug)]
pub struct Lease {
    pool: &'static Pool,
    index: usize,
    epoch: u32,
}

impl Lease {
    fn slot(&self) -> &'static Slot {
        &self.pool.slots[self.index]
    }

    fn forked(&self) -> bool {
        self.pool.epoch.load(Acquire) != self.epoch
    }

    /// Publishes `job`, wakes up to `wake` sleeping workers, copies parts
    /// alongside them, and returns when every part is complete.
    ///
    /// # Safety
    /// `job.src` readable and `job.dst` writable for `job.len` bytes, the two
    /// disjoint, until this returns.
    pub unsafe fn run(&self, job: &Job, wait: Wait, wake: u32) -> Result<(), Forked> {
        let slot = self.slot();
        let parts = job.split.parts;
        self.publish(job, wake.min(parts - 1));
        // Copy parts until none is left unclaimed.
        loop {
            let claim = slot.claim.load(Relaxed);
            let index = claim as u32;
            if index >= parts {
                break;
            }
            point();
            if slot.claim.compare_exchange(claim, claim + 1, Relaxed, Relaxed).is_err() {
                continue;
            }
            let (offset, n) = job.split.range(index, job.len);
            // SAFETY: part `index` lies inside the job, per the caller's contract.
            unsafe { do_part(job.op, job.dst.add(offset), job.src.add(offset), n) };
            slot.complete_one();
        }
        let result = self.wait_done(parts, wait);
        if result.is_err() {
            // The slot was reset by the fork child handler; redo the job
            // alone (copying a disjoint job again is harmless).
            // SAFETY: the caller's contract.
            unsafe { real::copy(job.dst, job.src, job.len) };
        } else {
            slot.close();
        }
        result
    }

    /// Makes `job` visible to the workers and wakes up to `wake` of them.
    fn publish(&self, job: &Job, wake: u32) {
        let slot = self.slot();
        let Split { part, parts } = job.split;
        let generation = (slot.claim.load(Relaxed) >> 32).wrapping_add(1) & 0xffff_ffff;
        fence(Release);
        slot.dst.store(job.dst as usize, Relaxed);
        slot.src.store(job.src as usize, Relaxed);
        slot.len.store(job.len, Relaxed);
        slot.part.store(part, Relaxed);
        slot.parts.store(parts, Relaxed);
        slot.class.store(job.class.index() as u32, Relaxed);
        slot.op.store(job.op as u32, Relaxed);
        slot.done.store(0, Relaxed);
        slot.target.store(parts, Relaxed);
        slot.waiter.store(0, Relaxed);
        point();
        slot.claim.store(generation << 32, Release);
        point();
        self.pool.seq.fetch_add(1, SeqCst);
        if wake > 0 && self.pool.sleepers.load(SeqCst) > 0 {
            futex::wake(&self.pool.seq, wake);
        }
    }

    /// Publishes `job` for the workers alone and wakes up to `wake` of
    /// them; the caller goes on with other work, then calls [`finish`]
    /// (before anything the job touches may go). For work ahead of the
    /// caller's own, such as faulting in the far end of a buffer the caller
    /// is about to fill (`Op::Populate`): parts no worker took by then are
    /// simply not done.
    ///
    /// # Safety
    /// As for [`run`], until [`finish`] returns; and [`finish`] must be
    /// called before the lease is dropped (dropping it frees the slot with
    /// the job still open to workers).
    ///
    /// [`finish`]: Lease::finish
    /// [`run`]: Lease::run
    pub unsafe fn start(&self, job: &Job, wake: u32) {
        self.publish(job, wake.min(job.split.parts));
    }

    /// Ends a job begun with [`start`](Lease::start): withdraws the parts no
    /// worker has taken and waits for those taken. Returns how many parts
    /// were done.
    pub fn finish(&self, wait: Wait) -> Result<u32, Forked> {
        let slot = self.slot();
        let taken = loop {
            let claim = slot.claim.load(Acquire);
            let next = (claim as u32).min(slot.parts.load(Relaxed));
            let closed = (claim >> 32) << 32 | CLOSED as u64;
            point();
            if slot.claim.compare_exchange(claim, closed, AcqRel, Relaxed).is_ok() {
                break next;
            }
        };
        // The last part taken wakes this thread, not the last of the job.
        slot.target.store(taken, SeqCst);
        self.wait_done(taken, wait).map(|()| taken)
    }

    /// Waits until `done` reaches `parts`.
    fn wait_done(&self, parts: u32, wait: Wait) -> Result<(), Forked> {
        let done = &self.slot().done;
        let start = Instant::now();
        let mut polls: u32 = 0;
        loop {
            if done.load(Acquire) == parts {
                return Ok(());
            }
            if self.forked() {
                return Err(Forked);
            }
            polls = polls.wrapping_add(1);
            let polled_for = |limit| polls % 64 == 0 && start.elapsed() >= limit;
            let sleep = match wait {
                Wait::Sleep => true,
                Wait::Spin | Wait::Yield => polled_for(POLL_LIMIT),
                Wait::SpinThenSleep | Wait::Umwait => polled_for(CALLER_SPIN),
            };
            if !sleep {
                if wait == Wait::Yield {
                    ipc_offload_sys::sched_yield();
                } else {
                    core::hint::spin_loop();
                }
                continue;
            }
            self.slot().waiter.store(1, SeqCst);
            point();
            let seen = done.load(SeqCst);
            if seen != parts {
                let _: Woken = futex::wait(done, seen, Some(CALLER_NAP));
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.forked() {
            return; // the fork child already freed every slot
        }
        let bit = 1u64 << self.index;
        self.pool.active.fetch_and(!bit, Relaxed);
        self.pool.free.fetch_or(bit, Release);
    }
}

#[cfg(test)]
mod chaos_tests;
#[cfg(test)]
mod tests;
