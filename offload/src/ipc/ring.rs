//! The shared-memory ring of one direction of a connection, as laid out in
//! docs/ipc-protocol.md: a header page, a page of slot words, then the
//! slots. Created and pre-faulted by the reader, mapped by the writer.
//!
//! Both sides keep the geometry they validated when they mapped the ring and
//! never re-read it from shared memory: a peer that scribbles over the
//! header can break a transfer, never make this side touch memory outside
//! its mapping. Every word both sides use is an atomic at a fixed, aligned
//! offset; payload bytes are copied only between a Release store and an
//! Acquire load of the slot word that hands the slot over.

use core::ffi::CStr;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use core::sync::atomic::{AtomicU32, AtomicU64};
use core::time::Duration;
use std::time::Instant;

use crate::chaos::point;
use crate::sys;
use crate::sys::futex::{self, Woken};
use crate::sys::mem::{self, Mapping, OwnedFd};
use crate::sys::signal::{self, SigMask};

/// "IPCORING", little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"IPCORING");
/// Protocol version of the layout and of the mailbox.
pub const VERSION: u32 = 2;
/// Most slots a ring may have.
pub const MAX_SLOTS: u32 = 64;
/// Largest slot.
pub const MAX_SLOT_BYTES: u32 = 16 << 20;

const HEADER_BYTES: usize = 4096;
const SLOT_WORDS: usize = 4096; // offset of the slot words' page
const DATA: usize = 8192; // offset of slot 0

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_SLOTS: usize = 12;
const OFF_SLOT_BYTES: usize = 16;
const OFF_READER_PID: usize = 20;
const OFF_RING_BYTES: usize = 24;
const OFF_READER_INO: usize = 32;
const OFF_WRITER_INO: usize = 36;
const OFF_MAILBOX: usize = 64;
const OFF_WANT: usize = 72;
const OFF_TOTAL: usize = 80;
const OFF_ARMS: usize = 96;
/// The CPU each side last ran on, plus one (0: not known): advisory, for
/// the decision to poll (see [`Ring::spin_for`]).
/// Each in a cache line of its own: a side writes its word as it hands
/// slots over, and must not take the mailbox's line from the peer.
const OFF_READER_CPU: usize = 128;
const OFF_WRITER_CPU: usize = 192;
/// Per-ticket results: `ticket << 40 | bytes the reader copied`, at
/// `OFF_RESULTS + 8 * (ticket % RESULTS)`.
const OFF_RESULTS: usize = 1024;
const RESULTS: u32 = 64;

/// Mailbox states.
const IDLE: u64 = 0;
const WAITING: u64 = 1;
const CLAIMING: u64 = 2;
const CLAIMED: u64 = 3;

/// Slot word values.
const EMPTY: u32 = 0;
const FULL: u32 = 1;
const SLEEPER: u32 = 1 << 31;

/// How long a side polls a slot word before it sleeps, unless
/// [`Ring::set_spin`] says otherwise.
pub const SPIN: Duration = Duration::from_micros(50);
/// How long a side that waits by sleeping polls first: about what one
/// futex sleep and wake-up cost here, so that a wait never costs more than
/// twice the cheaper of polling and sleeping (the classic competitive
/// rule). Most hand-overs of a stream are shorter than that; sleeping at
/// every one cost more CPU than it saved (measured: see README, "Choosing
/// a mode").
pub const SLEEP_POLL: Duration = Duration::from_micros(20);
/// How long a sleep lasts before the peer's liveness is checked.
const NAP: Duration = Duration::from_millis(20);

fn mailbox(state: u64, ticket: u32, pid: i32) -> u64 {
    state | (u64::from(ticket & 0x00ff_ffff) << 8) | (u64::from(pid as u32) << 32)
}

fn state_of(word: u64) -> u64 {
    word & 0xff
}

fn ticket_of(word: u64) -> u32 {
    ((word >> 8) & 0x00ff_ffff) as u32
}

fn pid_of(word: u64) -> i32 {
    (word >> 32) as u32 as i32
}

/// The size and shape of a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Number of slots.
    pub slots: u32,
    /// Bytes per slot (a multiple of 4096).
    pub slot_bytes: u32,
}

impl Geometry {
    /// Bytes of the whole ring (header, slot words, slots).
    pub fn ring_bytes(&self) -> u64 {
        DATA as u64 + u64::from(self.slots) * u64::from(self.slot_bytes)
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
    System(crate::sys::Errno),
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

impl From<crate::sys::Errno> for RingError {
    fn from(e: crate::sys::Errno) -> Self {
        RingError::System(e)
    }
}

/// How a side sleeps while it waits for a slot.
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
    /// The other side gave the transfer up (the mailbox moved on).
    Withdrawn,
    /// A peer writing garbage: a slot length out of range (reader), a
    /// slot emptied without its count (writer).
    Corrupt,
}

/// A claim a writer won: it must send exactly `total` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The wait it answers.
    pub ticket: u32,
    /// Bytes to send.
    pub total: u64,
}

/// What the reader finds in its mailbox while it waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Still waiting; nobody claimed.
    Waiting,
    /// A writer is writing its claim: look again in a moment.
    Claiming { writer: i32 },
    /// Claimed: `total` bytes will come from `writer`.
    Claimed { writer: i32, total: u64 },
    /// Not this wait any more (withdrawn or ended).
    Other,
}

/// Copies `n` bytes from `src` to `dst` (the class's engine).
pub type CopyFn<'a> = &'a mut dyn FnMut(*mut u8, *const u8, usize);

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
        let ring = Ring { map, geometry, reader_pid, spin: SPIN, cpu_words: (OFF_READER_CPU, OFF_WRITER_CPU) };
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
        Ok(Ring { map: probe.map, geometry, reader_pid, spin: SPIN, cpu_words: probe.cpu_words })
    }

    /// How long this end polls a slot (or the mailbox) before it sleeps in
    /// a futex: the class's `wait` (0 for `sleep`).
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// How long to poll for the peer before sleeping, at most `spin`: not
    /// at all while the peer last ran on this thread's CPU. Polling there
    /// keeps the peer from running, which is what it waits for: with both
    /// processes on one CPU (a one-CPU container, a pipeline with more
    /// stages than CPUs) a 2 ms poll per hand-over made a stream 20 times
    /// slower than the kernel's. Publishes this side's CPU for the peer.
    pub fn spin_for(&self, spin: Duration) -> Duration {
        if self.peer_shares_cpu() { Duration::ZERO } else { spin }
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
        debug_assert!(off % 4 == 0 && off + 4 <= DATA);
        // SAFETY: as `u64_at`, 4-aligned, inside the first two pages.
        unsafe { &*self.map.ptr().add(off).cast::<AtomicU32>() }
    }

    fn slot_word(&self, slot: u32) -> &AtomicU32 {
        self.u32_at(SLOT_WORDS + 64 * (slot % self.geometry.slots) as usize)
    }

    fn slot_len(&self, slot: u32) -> &AtomicU32 {
        self.u32_at(SLOT_WORDS + 64 * (slot % self.geometry.slots) as usize + 4)
    }

    fn slot_data(&self, slot: u32) -> *mut u8 {
        let offset = DATA + (slot % self.geometry.slots) as usize * self.geometry.slot_bytes as usize;
        // SAFETY: slot < slots and the mapping is ring_bytes long (checked),
        // so the slot's bytes lie inside it.
        unsafe { self.map.ptr().add(offset) }
    }

    // ---- the reader's side of the mailbox ----

    /// Starts waiting for up to `want` bytes; returns the wait's ticket.
    /// Every slot is empty between transfers; this makes sure of it.
    pub fn begin_wait(&self, want: u64) -> u32 {
        for slot in 0..self.geometry.slots {
            self.slot_word(slot).store(EMPTY, Relaxed);
        }
        let ticket = ticket_of(self.u64_at(OFF_MAILBOX).load(Relaxed)).wrapping_add(1) & 0x00ff_ffff;
        self.u64_at(OFF_WANT).store(want, Relaxed);
        // The wait's result record starts at 0 bytes, before a writer can
        // claim: the record a claiming writer reads is then its own ticket's
        // or a later one's, never one left from 2^24 tickets ago (see
        // `overtaken`).
        self.record_consumed(ticket, 0);
        point();
        self.u64_at(OFF_MAILBOX).store(mailbox(WAITING, ticket, 0), SeqCst);
        point();
        // Tell a writer sleeping in `wait_for_reader`.
        let arms = self.u32_at(OFF_ARMS);
        if arms.fetch_add(1, SeqCst) & SLEEPER != 0 {
            arms.fetch_and(!SLEEPER, SeqCst);
            futex::wake_shared(arms, u32::MAX);
        }
        ticket
    }

    /// Looks at the mailbox of wait `ticket`.
    pub fn seen(&self, ticket: u32) -> Seen {
        let word = self.u64_at(OFF_MAILBOX).load(Acquire);
        if ticket_of(word) != ticket {
            return Seen::Other;
        }
        match state_of(word) {
            WAITING => Seen::Waiting,
            CLAIMING => Seen::Claiming { writer: pid_of(word) },
            CLAIMED => Seen::Claimed { writer: pid_of(word), total: self.u64_at(OFF_TOTAL).load(Relaxed) },
            _ => Seen::Other,
        }
    }

    /// Takes wait `ticket` back; false if a writer claimed it first (then
    /// the transfer must be taken).
    pub fn withdraw(&self, ticket: u32) -> bool {
        point();
        self.u64_at(OFF_MAILBOX)
            .compare_exchange(mailbox(WAITING, ticket, 0), mailbox(IDLE, ticket, 0), SeqCst, Acquire)
            .is_ok()
    }

    /// Takes wait `ticket` back from writer `writer`, which died between
    /// claiming it and publishing its claim; false if the claim moved on.
    pub fn abandon_claim(&self, ticket: u32, writer: i32) -> bool {
        self.u64_at(OFF_MAILBOX)
            .compare_exchange(mailbox(CLAIMING, ticket, writer), mailbox(IDLE, ticket, 0), SeqCst, Acquire)
            .is_ok()
    }

    /// Ends wait `ticket` after its transfer (complete or abandoned).
    pub fn end(&self, ticket: u32) {
        self.u64_at(OFF_MAILBOX).store(mailbox(IDLE, ticket, 0), SeqCst);
    }

    // ---- the writer's side of the mailbox ----

    /// True while a reader waits.
    pub fn reader_waiting(&self) -> bool {
        state_of(self.u64_at(OFF_MAILBOX).load(Acquire)) == WAITING
    }

    /// Waits up to `patience` for a reader to wait, sleeping in a futex the
    /// reader's `begin_wait` wakes. True if one waits.
    pub fn wait_for_reader(&self, patience: Duration) -> bool {
        let arms = self.u32_at(OFF_ARMS);
        let start = Instant::now();
        let deadline = start + patience;
        // A streaming reader is usually a few microseconds away: spin first
        // (unless it needs this CPU to get here).
        let spin = self.spin_for(self.spin).min(patience);
        while start.elapsed() < spin {
            if self.reader_waiting() {
                return true;
            }
            core::hint::spin_loop();
        }
        loop {
            let seen = arms.load(SeqCst);
            if self.reader_waiting() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let sleeping = seen | SLEEPER;
            if seen & SLEEPER == 0 && arms.compare_exchange(seen, sleeping, SeqCst, Relaxed).is_err() {
                continue;
            }
            if self.reader_waiting() {
                return true;
            }
            futex::wait_shared(arms, sleeping, Some(deadline - now));
        }
    }

    /// Claims the waiting reader for at most `max` bytes, as writer `pid`.
    pub fn try_claim(&self, max: u64, pid: i32) -> Option<Claim> {
        let mb = self.u64_at(OFF_MAILBOX);
        let word = mb.load(Acquire);
        if state_of(word) != WAITING {
            return None;
        }
        let ticket = ticket_of(word);
        point();
        mb.compare_exchange(word, mailbox(CLAIMING, ticket, pid), SeqCst, Relaxed).ok()?;
        point();
        let want = self.u64_at(OFF_WANT).load(Relaxed);
        let total = want.min(max);
        self.u64_at(OFF_TOTAL).store(total, Relaxed);
        point();
        // A reader that took us for dead meanwhile has abandoned the claim.
        mb.compare_exchange(mailbox(CLAIMING, ticket, pid), mailbox(CLAIMED, ticket, pid), SeqCst, Relaxed).ok()?;
        Some(Claim { ticket, total })
    }

    /// True while claim `claim`, by writer `pid`, stands.
    fn claim_stands(&self, claim: &Claim, pid: i32) -> bool {
        self.u64_at(OFF_MAILBOX).load(Acquire) == mailbox(CLAIMED, claim.ticket, pid)
    }

    // ---- slots ----

    /// Waits until slot word `slot` reads `want` (FULL or EMPTY), polling it
    /// for up to `spin` first. `go_on` is asked after every nap; an error
    /// abandons the wait (unless the slot got there meanwhile).
    fn wait_slot(
        &self,
        slot: u32,
        want: u32,
        spin: Duration,
        go_on: &mut dyn FnMut() -> Result<(), Abort>,
        sleep: &mut Sleep,
    ) -> Result<(), Abort> {
        let word = self.slot_word(slot);
        let start = Instant::now();
        let spin = if spin.is_zero() { spin } else { self.spin_for(spin) };
        let mut polls = 0u32;
        loop {
            point();
            let value = word.load(Acquire);
            if value & !SLEEPER == want {
                return Ok(());
            }
            polls = polls.wrapping_add(1);
            if polls % 64 != 0 || start.elapsed() < spin {
                core::hint::spin_loop();
                continue;
            }
            let sleeping = value | SLEEPER;
            if value & SLEEPER == 0 && word.compare_exchange(value, sleeping, SeqCst, Relaxed).is_err() {
                continue;
            }
            let held = sleep.mask.map(signal::set);
            let woken = futex::wait_shared(word, sleeping, Some(NAP));
            if let Some(held) = held {
                signal::set(held);
            }
            match woken {
                Woken::Interrupted => sleep.interrupted = true,
                Woken::TimedOut => {
                    if let Err(abort) = go_on() {
                        return if word.load(Acquire) & !SLEEPER == want { Ok(()) } else { Err(abort) };
                    }
                }
                Woken::Changed => {}
            }
        }
    }

    /// Hands slot `slot` over as `value`, waking the other side if it sleeps.
    fn set_slot(&self, slot: u32, value: u32) {
        self.note_cpu();
        let word = self.slot_word(slot);
        point();
        if word.swap(value, SeqCst) & SLEEPER != 0 {
            futex::wake_shared(word, 1);
        }
    }

    /// Writer: sends `claim.total` bytes taken from `src` through the slots,
    /// pipelined with the reader, and waits until the reader has copied the
    /// last of them (at most `drain`, when given). `alive` says whether the
    /// reader still runs. Returns the bytes the reader took, as it recorded
    /// them for this ticket: all of them, unless it went away or withdrew;
    /// bytes it had not copied out of their slots were never read, and
    /// `src` then stands past bytes that were not sent: the caller resumes
    /// from the count. After `drain`, what was placed counts as sent.
    ///
    /// # Safety
    /// `src` must yield `claim.total` readable bytes.
    pub unsafe fn send(
        &self,
        claim: &Claim,
        pid: i32,
        src: &mut Cursor<'_>,
        copy: CopyFn<'_>,
        alive: &mut dyn FnMut() -> bool,
        drain: Option<Duration>,
    ) -> (u64, Option<Abort>) {
        let slot_bytes = u64::from(self.geometry.slot_bytes);
        if claim.total == 0 {
            // A reader that waits for nothing wrote garbage (a read
            // call's buffer holds at least the threshold): ending the
            // transfer with 0 bytes "sent" would let it hold the writer in
            // a loop of empty claims.
            return (0, Some(Abort::Corrupt));
        }
        let (mut sent, mut slot) = (0u64, 0u32);
        let mut go_on = || {
            if !self.claim_stands(claim, pid) {
                Err(Abort::Withdrawn)
            } else if !alive() {
                Err(Abort::PeerGone)
            } else {
                Ok(())
            }
        };
        let mut sleep = Sleep::default();
        let taken = |sent: u64| self.consumed(claim.ticket).unwrap_or(0).min(sent);
        while sent < claim.total {
            if self.slot_word(slot).load(Acquire) & !SLEEPER != EMPTY {
                // The ring is full: the reader is the slower side (copying
                // into pages it faults in, say). Sleep until half the ring
                // is free (the reader empties slots in order) instead of
                // spinning beside it, which slows it down (a spinning CPU
                // shares a core or a host with it), and being woken once per
                // slot.
                let half = (slot + (self.geometry.slots / 2).max(1) - 1) % self.geometry.slots;
                if let Err(abort) = self.wait_slot(half, EMPTY, Duration::ZERO, &mut go_on, &mut sleep) {
                    return (taken(sent), Some(abort));
                }
            }
            if let Err(abort) = self.wait_slot(slot, EMPTY, self.spin, &mut go_on, &mut sleep) {
                return (taken(sent), Some(abort));
            }
            if !self.claim_stands(claim, pid) {
                // Given up by the reader: the slots are not ours any more.
                return (taken(sent), Some(Abort::Withdrawn));
            }
            let n = (claim.total - sent).min(slot_bytes);
            point();
            // SAFETY: the slot holds slot_bytes >= n bytes and is ours until
            // it is marked full (the claim stands); the caller vouches for
            // `src`.
            unsafe { src.copy_out(self.slot_data(slot), n as usize, copy) };
            point();
            self.slot_len(slot).store(n as u32, Relaxed);
            self.set_slot(slot, FULL);
            sent += n;
            slot = (slot + 1) % self.geometry.slots;
        }
        // The reader copies the last slots. It empties them in order and
        // records its count first: sleep on the newest slot, trust the count.
        // Every byte is placed: a reader that ended the ticket took them all
        // (it ends a claimed wait early only for a writer it takes for dead
        // or one that wrote garbage), so a record a later ticket overwrote
        // means all of them too.
        let all_taken = || self.consumed(claim.ticket) == Some(sent) || self.overtaken(claim.ticket);
        let newest = (slot + self.geometry.slots - 1) % self.geometry.slots;
        let start = Instant::now();
        if all_taken() || drain.is_some_and(|d| start.elapsed() >= d) {
            return (sent, None);
        }
        // With a `drain` bound (a nonblocking writer), the wait gives up once
        // it is past: wait_slot asks `go_on` after every nap, and a reader
        // that is stopped (alive, its claim standing) must not hold the
        // write. What was placed then counts as sent.
        let drained = || drain.is_some_and(|d| start.elapsed() >= d);
        let mut go_on_draining = || if drained() { Err(Abort::Withdrawn) } else { go_on() };
        if let Err(abort) = self.wait_slot(newest, EMPTY, self.spin, &mut go_on_draining, &mut sleep) {
            return if all_taken() || drained() { (sent, None) } else { (taken(sent), Some(abort)) };
        }
        point();
        if all_taken() {
            return (sent, None);
        }
        if !self.claim_stands(claim, pid) {
            // Emptied by a reader that gave the claim up.
            return (taken(sent), Some(Abort::Withdrawn));
        }
        // The newest slot is empty under a standing claim, yet the count is
        // not all of it. A reader records its count before it empties a slot
        // (and the Acquire load that saw the slot empty sees that count), so
        // this one wrote garbage; waiting on would never look at its
        // liveness again.
        (taken(sent), Some(Abort::Corrupt))
    }

    /// What the reader recorded as copied for `ticket`, if the record is
    /// that ticket's (none before it copied its first slot, nor once a
    /// later ticket took the record's place: see [`Ring::overtaken`]).
    fn consumed(&self, ticket: u32) -> Option<u64> {
        let record = self.u64_at(OFF_RESULTS + 8 * (ticket % RESULTS) as usize).load(Acquire);
        (record >> 40 == u64::from(ticket)).then_some(record & ((1 << 40) - 1))
    }

    /// True once `ticket`'s record holds a later ticket's: the reader ended
    /// `ticket` and has since begun a wait `RESULTS` (or a multiple) later
    /// (a writer descheduled that long while other writers claimed the
    /// reader, on a pipe several processes write). The reader zeroes a
    /// wait's record as it begins the wait, so a writer that claimed
    /// `ticket` finds `ticket` there or a later one; tickets are compared
    /// in their 24-bit circle, a later one less than half of it ahead.
    fn overtaken(&self, ticket: u32) -> bool {
        let record = self.u64_at(OFF_RESULTS + 8 * (ticket % RESULTS) as usize).load(Acquire);
        let ahead = ((record >> 40) as u32).wrapping_sub(ticket) & 0x00ff_ffff;
        ahead != 0 && ahead < 1 << 23
    }

    fn record_consumed(&self, ticket: u32, bytes: u64) {
        self.u64_at(OFF_RESULTS + 8 * (ticket % RESULTS) as usize).store(u64::from(ticket) << 40 | bytes, Release);
    }

    /// Reader: receives `total` bytes of claimed wait `ticket` into `dst`,
    /// recording its count for the writer as it goes. `alive` says whether
    /// the writer still runs. `sleep.mask`, when given, is the signal mask
    /// to sleep under (the caller holds signals back otherwise);
    /// `sleep.interrupted` tells whether a signal arrived while it slept.
    /// Returns the bytes delivered (all of them unless the writer went away
    /// or wrote garbage).
    ///
    /// # Safety
    /// `dst` must have room for `total` writable bytes.
    pub unsafe fn receive(
        &self,
        ticket: u32,
        total: u64,
        dst: &mut Cursor<'_>,
        copy: CopyFn<'_>,
        alive: &mut dyn FnMut() -> bool,
        sleep: &mut Sleep,
    ) -> (u64, Option<Abort>) {
        let slot_bytes = u64::from(self.geometry.slot_bytes);
        let mut received = 0u64;
        let mut slot = 0u32;
        while received < total {
            let mut go_on = || if alive() { Ok(()) } else { Err(Abort::PeerGone) };
            if let Err(abort) = self.wait_slot(slot, FULL, self.spin, &mut go_on, sleep) {
                return (received, Some(abort));
            }
            point();
            let n = u64::from(self.slot_len(slot).load(Relaxed));
            if n == 0 || n > slot_bytes || n > total - received {
                return (received, Some(Abort::Corrupt));
            }
            // SAFETY: n <= slot_bytes: the bytes lie in the slot, handed over
            // by the Acquire load in wait_slot; the caller vouches for `dst`.
            unsafe { dst.copy_in(self.slot_data(slot), n as usize, copy) };
            received += n;
            point();
            self.record_consumed(ticket, received);
            self.set_slot(slot, EMPTY);
            slot = (slot + 1) % self.geometry.slots;
        }
        (received, None)
    }
}

/// A position in a list of buffers (an iovec array), consumed front to back.
#[derive(Debug)]
pub struct Cursor<'a> {
    segments: &'a [libc::iovec],
    index: usize,
    offset: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `segments`.
    pub fn new(segments: &'a [libc::iovec]) -> Self {
        Cursor { segments, index: 0, offset: 0 }
    }

    /// Total bytes left.
    pub fn remaining(&self) -> u64 {
        let left: usize = self.segments.iter().skip(self.index).map(|s| s.iov_len).sum();
        (left - self.offset.min(left)) as u64
    }

    /// Moves `n` bytes forward without copying.
    pub fn advance(&mut self, n: u64) {
        self.spans(n as usize, &mut |_, _| {});
    }

    /// Calls `f(ptr, len)` for each span covering the next `n` bytes.
    fn spans(&mut self, mut n: usize, f: &mut dyn FnMut(*mut u8, usize)) {
        while n > 0 && self.index < self.segments.len() {
            let seg = &self.segments[self.index];
            let take = (seg.iov_len - self.offset).min(n);
            if take > 0 {
                // SAFETY: offset + take <= iov_len: inside the segment.
                f(unsafe { seg.iov_base.cast::<u8>().add(self.offset) }, take);
            }
            self.offset += take;
            n -= take;
            if self.offset == seg.iov_len {
                self.index += 1;
                self.offset = 0;
            }
        }
    }

    /// Copies the next `n` bytes of the buffers to `dst`.
    ///
    /// # Safety
    /// `dst` writable for `n` bytes, the buffers readable for `n` more bytes.
    pub unsafe fn copy_out(&mut self, dst: *mut u8, n: usize, copy: CopyFn<'_>) {
        let mut at = 0;
        self.spans(n, &mut |src, len| {
            // SAFETY: at + len <= n: inside `dst`; `src` is a span of a buffer.
            copy(unsafe { dst.add(at) }, src, len);
            at += len;
        });
    }

    /// Copies `n` bytes from `src` into the next bytes of the buffers.
    ///
    /// # Safety
    /// `src` readable for `n` bytes, the buffers writable for `n` more bytes.
    pub unsafe fn copy_in(&mut self, src: *const u8, n: usize, copy: CopyFn<'_>) {
        let mut at = 0;
        self.spans(n, &mut |dst, len| {
            // SAFETY: at + len <= n: inside `src`; `dst` is a span of a buffer.
            copy(dst, unsafe { src.add(at) }, len);
            at += len;
        });
    }
}

/// The memfd name rings get (visible in /proc/PID/fd and /proc/PID/maps).
pub const MEMFD_NAME: &CStr = c"ipc-offload-ring";

#[cfg(test)]
mod chaos_tests;
#[cfg(test)]
mod tests;
