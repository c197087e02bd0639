//! Shared-memory regions: which addresses of the process are shared
//! memory, so that a large copy from or into them can be the `shm` class.
//!
//! - [`index`]: the set of shared ranges (lock-free lookups, writers
//!   serialized), [`INDEX`] being the process's.
//! - [`lock`]: the writers' lock, held while the index changes.
//!
//! (The real mmap, munmap, mremap, shm_open and shm_unlink behind the
//! mapping hooks live with the other real functions, in
//! `ipc_offload_sys::real::mapping`.)
//!
//! What counts as shared memory (decided per mapping, at mmap time): a
//! `MAP_SHARED` (or `MAP_SHARED_VALIDATE`) mapping that is anonymous, or of
//! a regular file on a memory file system: tmpfs (POSIX shm objects under
//! `/dev/shm`, memfds, any tmpfs file), hugetlbfs (`MFD_HUGETLB` memfds
//! included) or ramfs. Shared mappings of files on disk (page-cache I/O)
//! and of devices are not: their copies stay in the `memcpy` class.
//! Private mappings of anything are not shared (copy-on-write).
//!
//! The classification only chooses a policy section: it never changes
//! which bytes are copied. So the index may lose addresses (a full index,
//! a signal handler that maps memory in the middle of an update), which
//! then read as not shared, but must never keep an address that is no
//! longer shared memory: every successful mmap, munmap and mremap removes
//! or replaces what it covered, and what a writer could not record in
//! order marks the index stale (read as empty, cleared by the next writer).
//!
//! Mapping calls of different threads race: between a shared mmap's return
//! and its insert, another thread may unmap the region (and a third map
//! something private there), and its removal may reach the index first.
//! The writers' lock is not held across the system calls (it would
//! serialize them, and with another preload's mmap hook behind ours, take
//! that library's locks under ours); instead every removal is logged with a
//! sequence number, and an insert takes a [`Ticket`] before its system call
//! and is dropped (counted as `raced`) when a removal logged since then
//! meets its range: the kernel may have handed the addresses on.

pub mod index;
pub mod lock;

use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize};

use ipc_offload_policy::Class;

use index::{Change, RangeIndex, end_of};
use ipc_offload_sys::mem;
use lock::{Busy, Guard, WriterLock};

/// Ranges the process's index holds at most (2 x 64 KiB of `.bss`, touched
/// only as ranges are added).
pub const CAPACITY: usize = 4096;

/// The process's index of shared ranges.
pub static INDEX: RangeIndex<CAPACITY> = RangeIndex::new();
static LOCK: WriterLock = WriterLock::new();
/// Set when the index may hold addresses that are no longer shared (a
/// fork while a writer held the lock, pending removals that did not fit):
/// lookups answer "not shared" and the next writer clears it.
static STALE: AtomicBool = AtomicBool::new(false);
/// Whether the mapping hooks maintain the index (the `shm` class is on).
static TRACKING: AtomicBool = AtomicBool::new(false);

/// The thresholds of the two classes a memcpy-family call may belong to;
/// `usize::MAX` where a class is off.
#[derive(Debug)]
struct Thresholds {
    shm: AtomicUsize,
    memcpy: AtomicUsize,
}

static THRESHOLDS: Thresholds = Thresholds { shm: AtomicUsize::new(usize::MAX), memcpy: AtomicUsize::new(usize::MAX) };

/// Turns the shm class on (`shm_min`: its threshold; the mapping hooks
/// start maintaining the index) and records the memcpy class's threshold
/// (`None`: off). From the constructor, before the memcpy hooks' threshold
/// is lowered.
pub fn enable(shm_min: Option<usize>, memcpy_min: Option<usize>) {
    THRESHOLDS.memcpy.store(memcpy_min.unwrap_or(usize::MAX), Relaxed);
    if let Some(min) = shm_min {
        THRESHOLDS.shm.store(min, Relaxed);
        TRACKING.store(true, Release);
    }
}

/// Whether the mapping hooks maintain the index.
#[inline]
pub fn tracking() -> bool {
    TRACKING.load(Relaxed)
}

/// The class of a memcpy-family call of `len` bytes that reached the slow
/// path (its length is at least one of the two thresholds): `shm` when it
/// is at or above the shm threshold and its source or destination meets a
/// shared range, else `memcpy` when at or above that class's threshold,
/// else `None` (libc, uncounted).
pub fn copy_class(dst: usize, src: usize, len: usize) -> Option<Class> {
    if len >= THRESHOLDS.shm.load(Relaxed) && is_shared(dst, src, len) {
        return Some(Class::Shm);
    }
    (len >= THRESHOLDS.memcpy.load(Relaxed)).then_some(Class::Memcpy)
}

/// Whether either `len`-byte span meets a shared range; "no" when that
/// cannot be known now (counted).
fn is_shared(a: usize, b: usize, len: usize) -> bool {
    if STALE.load(Acquire) {
        COUNTERS.unknown_lookups.fetch_add(1, Relaxed);
        return false;
    }
    INDEX.meets_either(a, b, len).unwrap_or_else(|| {
        COUNTERS.unknown_lookups.fetch_add(1, Relaxed);
        false
    })
}

/// Counters of the mapping hooks (stats `shm_regions`).
#[derive(Debug)]
pub struct Counters {
    shared_maps: AtomicU64,
    raced: AtomicU64,
    nested: AtomicU64,
    unknown_lookups: AtomicU64,
    shm_open: AtomicU64,
    shm_unlink: AtomicU64,
}

static COUNTERS: Counters = Counters {
    shared_maps: AtomicU64::new(0),
    raced: AtomicU64::new(0),
    nested: AtomicU64::new(0),
    unknown_lookups: AtomicU64::new(0),
    shm_open: AtomicU64::new(0),
    shm_unlink: AtomicU64::new(0),
};

/// The figures of the `shm_regions` stats object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Ranges in the index now.
    pub ranges: usize,
    /// Most ranges at once.
    pub peak_ranges: usize,
    /// The index's capacity.
    pub capacity: usize,
    /// Successful mmap and mremap calls that made shared memory.
    pub shared_maps: u64,
    /// Ranges or pieces the full index could not hold.
    pub not_indexed: u64,
    /// Shared mappings left out because another thread unmapped or
    /// remapped part of their range before they reached the index.
    pub raced: u64,
    /// Mapping calls made by a signal handler during an index update
    /// (their shared memory is not indexed; what they unmapped is removed).
    pub nested: u64,
    /// Copies whose class could not be looked up (writers kept the index
    /// busy, or it was stale): classified by size alone.
    pub unknown_lookups: u64,
    /// shm_open calls.
    pub shm_open: u64,
    /// shm_unlink calls.
    pub shm_unlink: u64,
}

/// The counters now.
pub fn snapshot() -> Snapshot {
    let c = &COUNTERS;
    Snapshot {
        ranges: INDEX.len(),
        peak_ranges: INDEX.peak(),
        capacity: CAPACITY,
        shared_maps: c.shared_maps.load(Relaxed),
        not_indexed: INDEX.dropped(),
        raced: c.raced.load(Relaxed),
        nested: c.nested.load(Relaxed),
        unknown_lookups: c.unknown_lookups.load(Relaxed),
        shm_open: c.shm_open.load(Relaxed),
        shm_unlink: c.shm_unlink.load(Relaxed),
    }
}

/// Counts a shm_open call.
pub fn count_shm_open() {
    COUNTERS.shm_open.fetch_add(1, Relaxed);
}

/// Counts a shm_unlink call.
pub fn count_shm_unlink() {
    COUNTERS.shm_unlink.fetch_add(1, Relaxed);
}

/// In a fork child (one thread): the lock and the pending removals of
/// threads that did not survive are dropped; if any existed, the index may
/// be behind the address space and is stale until the next writer. The
/// child's figures start from zero; its ranges are its parent's (it
/// inherited the mappings).
pub fn after_fork() {
    let held = LOCK.reset_after_fork();
    if PENDING.reset() || held {
        STALE.store(true, Release);
    }
    let c = &COUNTERS;
    for counter in [&c.shared_maps, &c.raced, &c.nested, &c.unknown_lookups, &c.shm_open, &c.shm_unlink] {
        counter.store(0, Relaxed);
    }
}

/// What a mapping is, for the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapKind {
    /// Shared memory (see the module's documentation).
    pub shared: bool,
    /// The mapping's page size (its length is rounded up to it).
    pub page: usize,
}

/// tmpfs (and the internal shm mount of memfds and SysV segments).
const TMPFS_MAGIC: i64 = 0x0102_1994;
/// hugetlbfs.
const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;
/// ramfs (shm on kernels without CONFIG_SHMEM).
const RAMFS_MAGIC: i64 = 0x8584_58f6;
const PAGE: usize = 4096;
/// The default huge page size of x86-64.
const HUGE_PAGE: usize = 2 << 20;
/// `MAP_HUGE_SHIFT`: where `MAP_HUGETLB` mappings encode log2 of their page size.
const MAP_HUGE_SHIFT: i32 = 26;

/// Classifies a mapping that mmap made with `flags` and `fd` (two
/// system calls, fstat and fstatfs, for a shared file mapping; none
/// otherwise).
pub fn map_kind(flags: i32, fd: i32) -> MapKind {
    let shared_type = matches!(flags & 0x0f, libc::MAP_SHARED | libc::MAP_SHARED_VALIDATE);
    let hugetlb_page = || match (flags >> MAP_HUGE_SHIFT) & 0x3f {
        0 => HUGE_PAGE,
        bits => 1usize.checked_shl(bits as u32).unwrap_or(HUGE_PAGE),
    };
    if flags & libc::MAP_ANONYMOUS != 0 {
        let page = if flags & libc::MAP_HUGETLB != 0 { hugetlb_page() } else { PAGE };
        return MapKind { shared: shared_type, page };
    }
    let fs = mem::fstatfs(fd).ok();
    let page = match fs {
        Some(fs) if fs.kind == HUGETLBFS_MAGIC => usize::try_from(fs.block).unwrap_or(HUGE_PAGE).max(PAGE),
        _ => PAGE,
    };
    let memory_fs = fs.is_some_and(|fs| matches!(fs.kind, TMPFS_MAGIC | HUGETLBFS_MAGIC | RAMFS_MAGIC));
    let shared = shared_type && memory_fs && mem::fstat(fd).is_ok_and(|st| st.mode & libc::S_IFMT == libc::S_IFREG);
    MapKind { shared, page }
}

/// `[addr, addr + len)` with `len` rounded up to `page`, as the kernel maps it.
pub fn span(addr: usize, len: usize, page: usize) -> (usize, usize) {
    let len = len.checked_next_multiple_of(page.max(1)).unwrap_or(usize::MAX);
    (addr, end_of(addr, len))
}

/// Removals that a signal handler could not apply itself (its thread held
/// the lock, or waited for it): whoever holds the lock next applies them
/// before releasing it.
#[derive(Debug)]
struct Pending {
    slots: [PendingSlot; 16],
}

#[derive(Debug)]
struct PendingSlot {
    state: AtomicU32,
    start: AtomicUsize,
    end: AtomicUsize,
}

const SLOT_FREE: u32 = 0;
const SLOT_WRITING: u32 = 1;
const SLOT_READY: u32 = 2;

static PENDING: Pending = Pending {
    slots: [const { PendingSlot { state: AtomicU32::new(0), start: AtomicUsize::new(0), end: AtomicUsize::new(0) } };
        16],
};

impl Pending {
    /// Records a removal; with every slot taken, marks the index stale.
    fn record(&self, start: usize, end: usize) {
        for slot in &self.slots {
            if slot.state.compare_exchange(SLOT_FREE, SLOT_WRITING, Acquire, Relaxed).is_ok() {
                slot.start.store(start, Relaxed);
                slot.end.store(end, Relaxed);
                slot.state.store(SLOT_READY, Release);
                return;
            }
        }
        STALE.store(true, Release);
    }

    /// Applies the ready removals (the caller holds the lock).
    fn drain(&self) {
        for slot in &self.slots {
            if slot.state.load(Acquire) == SLOT_READY {
                remove(slot.start.load(Relaxed), slot.end.load(Relaxed));
                slot.state.store(SLOT_FREE, Release);
            }
        }
    }

    /// True when a removal waits to be applied. (A slot still being
    /// written belongs to a thread that holds or waits for the lock, which
    /// applies it itself before leaving.)
    fn any_ready(&self) -> bool {
        self.slots.iter().any(|s| s.state.load(Acquire) == SLOT_READY)
    }

    /// Frees every slot; true if one was in use.
    fn reset(&self) -> bool {
        let mut used = false;
        for slot in &self.slots {
            used |= slot.state.swap(SLOT_FREE, Relaxed) != SLOT_FREE;
        }
        used
    }
}

/// Removals logged with their sequence numbers, so that an insert can
/// tell whether its range was unmapped or remapped since its system call.
/// Written under the writers' lock; read under it too, except the count
/// that a [`Ticket`] takes.
#[derive(Debug)]
struct RemovalLog {
    /// Removals logged so far; slot `n % LOG` holds removal `n`.
    count: AtomicU64,
    starts: [AtomicUsize; LOG],
    ends: [AtomicUsize; LOG],
}

/// Removals the log remembers: an insert whose system call saw more go by
/// is dropped.
const LOG: usize = 256;

static REMOVALS: RemovalLog = RemovalLog {
    count: AtomicU64::new(0),
    starts: [const { AtomicUsize::new(0) }; LOG],
    ends: [const { AtomicUsize::new(0) }; LOG],
};

/// Logs and applies a removal (writers only).
fn remove(start: usize, end: usize) -> Change {
    if start >= end {
        return Change::None;
    }
    let n = REMOVALS.count.load(Relaxed);
    REMOVALS.starts[n as usize % LOG].store(start, Relaxed);
    REMOVALS.ends[n as usize % LOG].store(end, Relaxed);
    REMOVALS.count.store(n + 1, Release);
    INDEX.remove(start, end)
}

/// Empties the index, logged as a removal of every address (writers only).
fn clear() {
    remove(0, usize::MAX);
}

/// Taken before a mapping system call that may make shared memory: the
/// removals logged after it are those its insert must look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(u64);

impl Ticket {
    /// Now (before the system call).
    pub fn take() -> Ticket {
        Ticket(REMOVALS.count.load(Acquire))
    }
}

/// The right to change the index, taken after the mapping system call;
/// dropping it applies pending removals, then releases the lock.
#[derive(Debug)]
pub struct Writer {
    guard: Option<Guard<'static>>,
}

/// Why a change could not be recorded in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// A signal handler interrupted this thread while it held the lock or
    /// waited for it: [`nested_removal`] records what it must remove.
    Nested,
}

impl Writer {
    /// Takes the lock (waiting for other threads' updates, which are short:
    /// no system call is made under it); refuses in a signal handler that
    /// interrupted its own thread's update.
    pub fn begin() -> Result<Writer, WriteError> {
        match LOCK.lock() {
            Ok(guard) => {
                if STALE.load(Acquire) {
                    clear();
                    STALE.store(false, Release);
                }
                Ok(Writer { guard: Some(guard) })
            }
            Err(Busy::ThisThread) => {
                COUNTERS.nested.fetch_add(1, Relaxed);
                Err(WriteError::Nested)
            }
        }
    }

    /// True when the log still holds every removal since `ticket` and none
    /// of them meets one of `spans`.
    pub fn unchanged_since(&self, ticket: Ticket, spans: &[(usize, usize)]) -> bool {
        let now = REMOVALS.count.load(Relaxed);
        if now.wrapping_sub(ticket.0) > LOG as u64 {
            return false;
        }
        (ticket.0..now).all(|n| {
            let slot = n as usize % LOG;
            let (s, e) = (REMOVALS.starts[slot].load(Relaxed), REMOVALS.ends[slot].load(Relaxed));
            spans.iter().all(|&(start, end)| e <= start || s >= end)
        })
    }

    /// `span` was made shared memory by a call that took `ticket` before
    /// its system call: inserted, unless a removal logged since then meets
    /// it or one of `also` (the kernel may have handed those addresses on:
    /// counted as `raced`). Returns whether it was inserted.
    pub fn shared(&self, ticket: Ticket, span: (usize, usize), also: &[(usize, usize)]) -> bool {
        COUNTERS.shared_maps.fetch_add(1, Relaxed);
        if !self.unchanged_since(ticket, &[span]) || !self.unchanged_since(ticket, also) {
            COUNTERS.raced.fetch_add(1, Relaxed);
            return false;
        }
        INDEX.insert(span.0, span.1);
        true
    }

    /// `[start, end)` is no longer shared memory (unmapped, or mapped
    /// private); logged for the inserts in flight.
    pub fn not_shared(&self, start: usize, end: usize) -> Change {
        remove(start, end)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        while let Some(guard) = self.guard.take() {
            PENDING.drain();
            drop(guard);
            // A handler that ran after the drain (on this thread, or on a
            // thread waiting for the lock) left a removal: apply it now,
            // unless another writer has the lock (it drains before leaving).
            if PENDING.any_ready() {
                self.guard = LOCK.lock().ok();
            }
        }
    }
}

/// Marks the index stale: lookups read it as empty until the next writer
/// clears it (after a bug in the bookkeeping was caught).
pub fn mark_stale() {
    STALE.store(true, Release);
}

/// In a signal handler that interrupted its thread's update: `[start,
/// end)` changed and is not shared memory as far as the index can tell
/// (shared memory mapped here is not indexed).
pub fn nested_removal(start: usize, end: usize) {
    PENDING.record(start, end);
}

#[cfg(test)]
mod tests;
