//! The shared-memory ring of one direction of a connection, protocol v3
//! (docs/ipc-protocol.md, "The ring"): a header page, then one circular
//! buffer of `slots x slot_bytes` bytes. Created and pre-faulted by the
//! reader, mapped by its writers.
//!
//! A transfer is an *offer* ([`offer`]): a writer, inside its write call,
//! opens the ring, places its bytes step by step, and waits while the
//! reader takes them from inside its own read calls ([`take`]), as many and
//! as small as it likes. When the write call ends, whatever was not taken
//! is withdrawn and stays the writer's: nothing is ever left in the ring
//! while no writer is inside a write.
//!
//! Both sides keep the geometry they validated when they mapped the ring
//! and never re-read it from shared memory: a peer that scribbles over the
//! header can break a transfer, never make this side touch memory outside
//! its mapping. Every word both sides use is an atomic at a fixed, aligned
//! offset; payload bytes are written before a Release store of the count
//! that hands them over, and read after the Acquire load that saw it.

mod chaos;
pub mod cursor;
pub mod offer;
pub mod take;

use core::ffi::CStr;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use core::sync::atomic::{AtomicU32, AtomicU64};
use core::time::Duration;
use std::time::Instant;

use ipc_offload_sys as sys;
use ipc_offload_sys::futex::{self, Woken};
use ipc_offload_sys::mem::{self, Mapping, OwnedFd};
use ipc_offload_sys::signal::{self, SigMask};

pub use cursor::{CopyFn, Cursor};

/// "IPCORING", little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"IPCORING");
/// Protocol version of the layout and of the offer words.
pub const VERSION: u32 = 3;
/// Most slots a ring may have.
pub const MAX_SLOTS: u32 = 64;
/// Largest slot.
pub const MAX_SLOT_BYTES: u32 = 16 << 20;
/// The smallest slot [`Geometry::within`] makes: below it, each step's
/// hand-over costs more than its copy.
pub const MIN_SLOT_BYTES: u32 = 16 << 10;

const HEADER_BYTES: usize = 4096;
const DATA: usize = 8192; // offset of the buffer

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_SLOTS: usize = 12;
const OFF_SLOT_BYTES: usize = 16;
const OFF_READER_PID: usize = 20;
const OFF_RING_BYTES: usize = 24;
const OFF_READER_INO: usize = 32;
const OFF_WRITER_INO: usize = 36;
/// The offer: `writer pid << 32 | seq << 8 | state`.
const OFF_OFFER: usize = 64;
/// The CPU each side last ran on, plus one (0: not known): advisory, for
/// the decision to poll (see [`Ring::spin_for`]).
const OFF_READER_CPU: usize = 128;
const OFF_WRITER_CPU: usize = 192;
/// `seq << 40 | bytes` words of the open offer: what the writer offers in
/// all, what it has placed, what the reader has taken (with the `CLOSED`
/// bit once the writer withdrew the rest), what the reader has copied out.
const OFF_TOTAL: usize = 256;
const OFF_STAGED: usize = 320;
const OFF_TAKEN: usize = 384;
const OFF_COPIED: usize = 448;
/// `ASLEEP << 63 | want`: a reader inside a blocking read with nothing to
/// take, and its buffer's length (0: none).
const OFF_WAIT: usize = 512;
/// Reader threads inside a library poll (epoll_wait, poll, select...) that
/// watches this ring, and will wake for a WAKE on the side channel.
const OFF_LISTEN: usize = 576;
/// Bumped by every read call of the reader on the ring's socket or pipe
/// that goes through the library: a writer whose offer went untaken waits
/// for this to move before it offers again.
const OFF_READS: usize = 640;
/// Futex words: the reader sleeps on the first for more bytes, the writer
/// on the second for takes and copies. Low 31 bits count rings, bit 31
/// says someone sleeps.
const OFF_STAGED_BELL: usize = 704;
const OFF_TAKEN_BELL: usize = 768;
/// Bumped by the reader each time a thread enters a library wait that
/// watches the ring: a writer sends one WAKE per such wait, not one per
/// step (the woken reader takes the steps that follow while it is awake).
const OFF_LISTEN_GEN: usize = 832;
/// Where the open offer starts in the writer's stream, for a transport
/// that delivers kernel bytes after the write returns (TCP): the bytes the
/// writer's socket had accepted through the kernel when the offer opened.
/// The reader takes nothing of the offer before it has received that many
/// (0: nothing to wait for).
const OFF_BEFORE: usize = 896;
/// The buffer length of the reader's last read call through the library
/// (0: none yet): a nonblocking writer without write-behind does not hold
/// itself for a reader that takes an offer a small piece per call
/// (docs/ipc-protocol.md, "When a writer offers").
const OFF_READ_LEN: usize = 960;

/// Set in the `before` word by a write-behind offer (docs/ipc-protocol.md,
/// "Write-behind"): its writer had no byte in the kernel's queue when it
/// opened it, so kernel bytes queued while it has untaken bytes came after
/// it, and the reader takes it first.
pub const RING_FIRST: u64 = 1 << 63;

/// Offer states.
const IDLE: u64 = 0;
const SETUP: u64 = 1;
const OPEN: u64 = 2;

/// Offer sequence numbers live in 24 bits.
const SEQ_MASK: u32 = 0x00ff_ffff;
/// Bytes of a counter word (below its sequence number and `CLOSED`).
const BYTES_MASK: u64 = (1 << 39) - 1;
/// Set in `taken` once the writer withdrew what was not taken.
const CLOSED: u64 = 1 << 39;
/// The most one offer may carry.
pub const MAX_OFFER: u64 = 1 << 38;
/// Set in `wait` while the waiting reader sleeps in poll (send it a WAKE).
const ASLEEP: u64 = 1 << 63;
/// Bit 31 of a bell: a thread sleeps on it.
const SLEEPER: u32 = 1 << 31;

/// How long a side polls before it sleeps, unless [`Ring::set_spin`] says
/// otherwise.
pub const SPIN: Duration = Duration::from_micros(50);
/// How long a side that waits by sleeping polls first: about what one
/// futex sleep and wake-up cost here, so that a wait never costs more than
/// twice the cheaper of polling and sleeping (the classic competitive
/// rule).
pub const SLEEP_POLL: Duration = Duration::from_micros(20);
/// How long a sleep lasts before the peer's liveness is checked.
pub const NAP: Duration = Duration::from_millis(20);
/// Polls in a row that ended in a sleep, after which an end stops polling
/// (see [`Ring::spin_for`]).
const MISSES: u32 = 3;

fn offer_word(state: u64, seq: u32, pid: i32) -> u64 {
    state | (u64::from(seq & SEQ_MASK) << 8) | (u64::from(pid as u32) << 32)
}

fn state_of(word: u64) -> u64 {
    word & 0xff
}

fn seq_of_offer(word: u64) -> u32 {
    ((word >> 8) as u32) & SEQ_MASK
}

fn pid_of(word: u64) -> i32 {
    (word >> 32) as u32 as i32
}

fn count(seq: u32, bytes: u64) -> u64 {
    (u64::from(seq & SEQ_MASK) << 40) | (bytes & BYTES_MASK)
}

fn seq_of(word: u64) -> u32 {
    (word >> 40) as u32 & SEQ_MASK
}

fn bytes_of(word: u64) -> u64 {
    word & BYTES_MASK
}

/// The size and shape of a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Number of slots (steps of the buffer).
    pub slots: u32,
    /// Bytes per slot (a multiple of 4096): the step in which a writer
    /// places bytes and a reader copies them out, so that the two overlap.
    pub slot_bytes: u32,
}

impl Geometry {
    /// Bytes of the whole ring (header pages and buffer).
    pub fn ring_bytes(&self) -> u64 {
        DATA as u64 + self.capacity()
    }

    /// Bytes of the buffer.
    pub fn capacity(&self) -> u64 {
        u64::from(self.slots) * u64::from(self.slot_bytes)
    }

    /// This geometry, made smaller if it must to take at most `bytes` of
    /// ring (header included): fewer slots first, down to two (the step
    /// that lets the two ends overlap stays), then smaller slots, down to
    /// [`MIN_SLOT_BYTES`]. A geometry already within `bytes` (or not valid)
    /// is returned as it is; one that cannot be made small enough is the
    /// smallest there is (two slots of [`MIN_SLOT_BYTES`]; a one-slot ring
    /// keeps its one slot, and slots already smaller keep their size).
    pub fn within(self, bytes: u64) -> Geometry {
        if !self.valid() || self.ring_bytes() <= bytes {
            return self;
        }
        let room = bytes.saturating_sub(DATA as u64);
        let slot = u64::from(self.slot_bytes);
        let slots = (room / slot).clamp(2.min(u64::from(self.slots)), u64::from(self.slots)) as u32;
        if DATA as u64 + u64::from(slots) * slot <= bytes {
            return Geometry { slots, slot_bytes: self.slot_bytes };
        }
        let floor = MIN_SLOT_BYTES.min(self.slot_bytes);
        let fitted = (room / u64::from(slots) / 4096 * 4096) as u32;
        Geometry { slots, slot_bytes: fitted.clamp(floor, self.slot_bytes) }
    }

    fn valid(&self) -> bool {
        (1..=MAX_SLOTS).contains(&self.slots)
            && self.slot_bytes > 0
            && self.slot_bytes <= MAX_SLOT_BYTES
            && self.slot_bytes % 4096 == 0
    }
}

/// Why a ring could not be created or accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The geometry is out of range.
    BadGeometry,
    /// memfd_create, ftruncate, seals or mmap failed.
    System(ipc_offload_sys::Errno),
    /// A received memfd is not what the protocol says (owner, size, seals,
    /// magic, version, inodes).
    Refused(&'static str),
}

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RingError::BadGeometry => f.write_str("ring geometry out of range"),
            RingError::System(e) => write!(f, "{e}"),
            RingError::Refused(why) => write!(f, "ring refused: {why}"),
        }
    }
}

impl From<ipc_offload_sys::Errno> for RingError {
    fn from(e: ipc_offload_sys::Errno) -> Self {
        RingError::System(e)
    }
}

/// How a side sleeps while it waits.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sleep {
    /// The signal mask to sleep under (None: the thread's own).
    pub mask: Option<SigMask>,
    /// Set when a signal handler ran while it slept.
    pub interrupted: bool,
}

/// Why a transfer stopped before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abort {
    /// The other side is gone: it exited or exec'd (its pidfd or its
    /// lifeline read as hung up, or its side channel is closed).
    PeerGone,
    /// The writer took back what was not taken: its reader did not come
    /// for the bytes within its patience.
    Withdrawn,
    /// A peer writing garbage: counts out of range.
    Corrupt,
}

/// What a writer can tell of its reader at once, from the ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Presence {
    /// A reader is inside a blocking read with nothing to take, for up to
    /// this many bytes (0: none).
    pub want: u64,
    /// That reader sleeps in poll: it needs a WAKE.
    pub asleep: bool,
    /// Reader threads inside a library poll that watches the ring.
    pub listening: u32,
    /// The reader's count of read calls through the library.
    pub reads: u32,
    /// The reader's count of waits entered (see [`Ring::listen`]).
    pub waits: u32,
    /// The buffer length of the reader's last read through the library (0:
    /// not known).
    pub read_len: u64,
}

impl Presence {
    /// True if a reader is inside a library call that will take an offer:
    /// a blocking read, or a poll that watches the ring.
    pub fn inside(&self) -> bool {
        self.want > 0 || self.listening > 0
    }

    /// True if an offer must be announced with a WAKE datagram.
    pub fn needs_wake(&self) -> bool {
        self.asleep || self.listening > 0
    }
}

/// A mapped ring.
#[derive(Debug)]
pub struct Ring {
    map: Mapping,
    geometry: Geometry,
    reader_pid: i32,
    /// How long this end polls before it sleeps (its class's `wait`).
    spin: Duration,
    /// This end's CPU word and the peer's ([`OFF_READER_CPU`] and
    /// [`OFF_WRITER_CPU`], by side).
    cpu_words: (usize, usize),
    /// This end's recent polls that ended in a sleep anyway (see
    /// [`Ring::spin_for`]); this process's own, not shared.
    misses: AtomicU32,
    /// Waits since the last poll allowed while missing.
    waits: AtomicU32,
}

impl Ring {
    /// Creates a ring for the reader of socket `reader_ino`, whose peer is
    /// `writer_ino`: a sealed memfd, mapped and pre-faulted.
    pub fn create(
        geometry: Geometry,
        reader_pid: i32,
        reader_ino: u32,
        writer_ino: u32,
    ) -> Result<(Ring, OwnedFd), RingError> {
        if !geometry.valid() {
            return Err(RingError::BadGeometry);
        }
        let bytes = geometry.ring_bytes();
        let fd = mem::sealed_memfd(MEMFD_NAME, bytes)?;
        let map = Mapping::shared(fd.raw(), bytes as usize)?;
        let ring = Ring {
            map,
            geometry,
            reader_pid,
            spin: SPIN,
            cpu_words: (OFF_READER_CPU, OFF_WRITER_CPU),
            misses: AtomicU32::new(0),
            waits: AtomicU32::new(0),
        };
        ring.u64_at(OFF_MAGIC).store(MAGIC, Relaxed);
        ring.u32_at(OFF_VERSION).store(VERSION, Relaxed);
        ring.u32_at(OFF_SLOTS).store(geometry.slots, Relaxed);
        ring.u32_at(OFF_SLOT_BYTES).store(geometry.slot_bytes, Relaxed);
        ring.u32_at(OFF_READER_PID).store(reader_pid as u32, Relaxed);
        ring.u64_at(OFF_RING_BYTES).store(bytes, Relaxed);
        ring.u32_at(OFF_READER_INO).store(reader_ino, Relaxed);
        ring.u32_at(OFF_WRITER_INO).store(writer_ino, Release);
        Ok((ring, fd))
    }

    /// Maps a ring received from a reader, after checking everything the
    /// protocol lets the writer check: owner `uid`, size, seals, magic,
    /// version, geometry, and that it serves writer socket `writer_ino`.
    pub fn attach(fd: i32, uid: u32, writer_ino: u32) -> Result<Ring, RingError> {
        // Seals first: once the file cannot grow or shrink, the size fstat
        // reads next is the size for good. The other order lets a peer
        // shrink and seal between the two, and this side map (and later
        // touch, SIGBUS) pages past the end of the file.
        let need = libc::F_SEAL_GROW | libc::F_SEAL_SHRINK;
        if mem::seals(fd)? & need != need {
            return Err(RingError::Refused("not sealed against resizing"));
        }
        let st = mem::fstat(fd)?;
        if st.uid != uid {
            return Err(RingError::Refused("owned by another user"));
        }
        if st.size < DATA as u64 || st.size > DATA as u64 + u64::from(MAX_SLOTS) * u64::from(MAX_SLOT_BYTES) {
            return Err(RingError::Refused("size out of range"));
        }
        let map = Mapping::shared(fd, st.size as usize)?;
        let probe = Ring {
            map,
            geometry: Geometry { slots: 1, slot_bytes: 4096 },
            reader_pid: 0,
            spin: SPIN,
            cpu_words: (OFF_WRITER_CPU, OFF_READER_CPU),
            misses: AtomicU32::new(0),
            waits: AtomicU32::new(0),
        };
        if probe.u64_at(OFF_MAGIC).load(Acquire) != MAGIC {
            return Err(RingError::Refused("bad magic"));
        }
        if probe.u32_at(OFF_VERSION).load(Relaxed) != VERSION {
            return Err(RingError::Refused("other protocol version"));
        }
        let geometry = Geometry {
            slots: probe.u32_at(OFF_SLOTS).load(Relaxed),
            slot_bytes: probe.u32_at(OFF_SLOT_BYTES).load(Relaxed),
        };
        if !geometry.valid() || geometry.ring_bytes() != st.size {
            return Err(RingError::Refused("geometry does not match the size"));
        }
        if probe.u32_at(OFF_WRITER_INO).load(Relaxed) != writer_ino {
            return Err(RingError::Refused("ring of another connection"));
        }
        let reader_pid = probe.u32_at(OFF_READER_PID).load(Relaxed) as i32;
        Ok(Ring { geometry, reader_pid, ..probe })
    }

    /// How long this end polls before it sleeps in a futex: the class's
    /// `wait` (0 for `sleep`).
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// This end's polling time (see [`Ring::set_spin`]).
    pub fn spin(&self) -> Duration {
        self.spin
    }

    /// How long to poll for the peer before sleeping, at most `spin`: not
    /// at all while the peer last ran on this thread's CPU, nor while this
    /// end's last polls ended in a sleep anyway. Polling on the peer's CPU
    /// keeps the peer from running, which is what it waits for: with both
    /// processes on one CPU (a one-CPU container, a pipeline with more
    /// stages than CPUs) a 2 ms poll per hand-over made a stream 20 times
    /// slower than the kernel's. Polling in vain takes a CPU from a third
    /// process (a relay between two others, on two CPUs: `latency`'s 2 ms
    /// polls made one 0.7x the kernel's); after [`MISSES`] polls in a row
    /// that ended in a sleep, an end sleeps at once, polling again every
    /// 16th wait to see whether it pays again. Publishes this side's CPU
    /// for the peer.
    pub fn spin_for(&self, spin: Duration) -> Duration {
        if spin.is_zero() || self.peer_shares_cpu() {
            return Duration::ZERO;
        }
        let probing = self.waits.fetch_add(1, Relaxed) % 16 == 0;
        if self.misses.load(Relaxed) >= MISSES && !probing { Duration::ZERO } else { spin }
    }

    /// Notes how a wait that polled for `spin` ended: within the poll
    /// (`true`), or in a sleep.
    pub fn polled(&self, spin: Duration, in_time: bool) {
        if spin.is_zero() {
            return;
        }
        let misses = if in_time { 0 } else { (self.misses.load(Relaxed) + 1).min(MISSES) };
        self.misses.store(misses, Relaxed);
    }

    /// Records this side's CPU; true if the peer last ran on it too.
    fn peer_shares_cpu(&self) -> bool {
        let Some(mine) = self.note_cpu() else { return false };
        self.u32_at(self.cpu_words.1).load(Relaxed) == mine
    }

    /// Publishes this side's CPU (plus one) for the peer, storing only a
    /// change.
    fn note_cpu(&self) -> Option<u32> {
        let mine = sys::current_cpu()?.wrapping_add(1);
        let own = self.u32_at(self.cpu_words.0);
        if own.load(Relaxed) != mine {
            own.store(mine, Relaxed);
        }
        Some(mine)
    }

    /// The geometry this side checked.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The reader's pid, as read once when the ring was mapped.
    pub fn reader_pid(&self) -> i32 {
        self.reader_pid
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off % 8 == 0 && off + 8 <= HEADER_BYTES);
        // SAFETY: `off` is one of the header constants: 8-aligned, inside
        // the first page of a mapping of at least DATA bytes (checked at
        // create/attach), and the page is page-aligned.
        unsafe { &*self.map.ptr().add(off).cast::<AtomicU64>() }
    }

    fn u32_at(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off % 4 == 0 && off + 4 <= HEADER_BYTES);
        // SAFETY: as `u64_at`, 4-aligned, inside the first page.
        unsafe { &*self.map.ptr().add(off).cast::<AtomicU32>() }
    }

    /// The buffer's byte at stream position `pos` of an offer, and how many
    /// bytes follow it before the buffer wraps.
    fn at(&self, pos: u64) -> (*mut u8, u64) {
        let capacity = self.geometry.capacity();
        let offset = pos % capacity;
        // SAFETY: offset < capacity and the mapping is DATA + capacity
        // bytes long (checked at create/attach).
        (unsafe { self.map.ptr().add(DATA + offset as usize) }, capacity - offset)
    }

    // ---- the reader's announcements ----

    /// A reader enters a blocking read with nothing to take, for up to
    /// `want` bytes.
    pub fn begin_wait(&self, want: u64) {
        self.u64_at(OFF_WAIT).store(want.clamp(1, ASLEEP - 1), SeqCst);
    }

    /// The waiting reader is about to sleep in poll: writers must send it
    /// a WAKE. The caller looks at the offer again after this.
    pub fn sleeping(&self) {
        self.u64_at(OFF_WAIT).fetch_or(ASLEEP, SeqCst);
    }

    /// The reader leaves its blocking read.
    pub fn end_wait(&self) {
        self.u64_at(OFF_WAIT).store(0, SeqCst);
    }

    /// A reader thread enters (`true`) or leaves a library poll watching
    /// the ring. Entering is followed by a look at the offer.
    pub fn listen(&self, entering: bool) {
        let word = self.u32_at(OFF_LISTEN);
        if entering {
            self.u32_at(OFF_LISTEN_GEN).fetch_add(1, SeqCst);
            word.fetch_add(1, SeqCst);
        } else {
            // Never below 0, even against a peer's garbage.
            let _ = word.fetch_update(SeqCst, Relaxed, |n| Some(n.saturating_sub(1)));
        }
    }

    /// A read call of the reader went through the library, with buffers of
    /// `len` bytes in all.
    pub fn note_read(&self, len: u64) {
        self.u32_at(OFF_READS).fetch_add(1, Relaxed);
        self.set_read_len(len);
    }

    /// The reader's reads ask for `len` bytes (see [`Presence::read_len`]),
    /// as its last read, or the read that made it opt in, did.
    pub fn set_read_len(&self, len: u64) {
        // Stored only when it changes: the line stays shared with the
        // writer while the reader's calls keep one size.
        let word = self.u64_at(OFF_READ_LEN);
        if word.load(Relaxed) != len {
            word.store(len, Relaxed);
        }
    }

    /// What the writer can tell of its reader now.
    pub fn presence(&self) -> Presence {
        let wait = self.u64_at(OFF_WAIT).load(SeqCst);
        Presence {
            want: wait & !ASLEEP,
            asleep: wait & ASLEEP != 0,
            listening: self.u32_at(OFF_LISTEN).load(SeqCst),
            reads: self.u32_at(OFF_READS).load(Relaxed),
            waits: self.u32_at(OFF_LISTEN_GEN).load(SeqCst),
            read_len: self.u64_at(OFF_READ_LEN).load(Relaxed),
        }
    }

    // ---- bells ----

    /// Wakes whoever sleeps on `bell` (after the change it announces).
    fn ring_bell(&self, bell: usize) {
        self.note_cpu();
        let word = self.u32_at(bell);
        let old = word.fetch_update(SeqCst, Relaxed, |v| Some(v.wrapping_add(1) & !SLEEPER)).unwrap_or(0);
        if old & SLEEPER != 0 {
            futex::wake_shared(word, u32::MAX);
        }
    }

    /// The value of `bell` to sleep on: read it before looking at the
    /// condition it announces.
    fn bell(&self, bell: usize) -> u32 {
        self.u32_at(bell).load(SeqCst)
    }

    /// Sleeps on `bell` while it still reads `seen`, at most `timeout`,
    /// under `sleep.mask`.
    fn sleep_on(&self, bell: usize, seen: u32, timeout: Duration, sleep: &mut Sleep) -> Woken {
        let word = self.u32_at(bell);
        let sleeping = seen | SLEEPER;
        if seen & SLEEPER == 0 && word.compare_exchange(seen, sleeping, SeqCst, Relaxed).is_err() {
            return Woken::Changed;
        }
        let held = sleep.mask.map(signal::set);
        let woken = futex::wait_shared(word, sleeping, Some(timeout));
        if let Some(held) = held {
            signal::set(held);
        }
        if woken == Woken::Interrupted {
            sleep.interrupted = true;
        }
        woken
    }

    /// Polls `done` for up to `spin`, then sleeps on `bell` (naps of at
    /// most [`NAP`]) until `done` holds or `deadline` passes. With a
    /// `sleep.mask`, a signal handler that ran ends the wait too.
    fn wait_until(
        &self,
        bell: usize,
        spin: Duration,
        deadline: Instant,
        sleep: &mut Sleep,
        done: &mut dyn FnMut() -> bool,
    ) -> Waited {
        let start = Instant::now();
        let spin = self.spin_for(spin);
        let mut polls = 0u32;
        let mut slept = false;
        let waited = loop {
            let seen = self.bell(bell);
            if done() {
                break Waited::Done;
            }
            polls = polls.wrapping_add(1);
            if polls % 64 != 0 {
                core::hint::spin_loop();
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                break Waited::Deadline;
            }
            if now - start < spin {
                core::hint::spin_loop();
                continue;
            }
            slept = true;
            if self.sleep_on(bell, seen, (deadline - now).min(NAP), sleep) == Woken::Interrupted && sleep.mask.is_some()
            {
                break if done() { Waited::Done } else { Waited::Interrupted };
            }
        };
        self.polled(spin, waited == Waited::Done && !slept);
        waited
    }
}

/// How a wait on a bell ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waited {
    /// The condition holds.
    Done,
    /// The deadline passed first.
    Deadline,
    /// A signal handler ran (only when sleeping under a given mask).
    Interrupted,
}

/// The memfd name rings get (visible in /proc/PID/fd and /proc/PID/maps).
pub const MEMFD_NAME: &CStr = c"ipc-offload-ring";

#[cfg(test)]
mod chaos_tests;
#[cfg(test)]
mod tests;
