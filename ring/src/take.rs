//! The reader's side of an offer (docs/ipc-protocol.md, "One offer"): see
//! what is open, take placed bytes into a read call's buffers, wait a
//! bounded while for more, and end the offer of a writer that is gone.
//!
//! One thread of the reader takes at a time (the caller holds its
//! channel's lock): the `copied` word then always follows the `taken`
//! word of the same thread.

use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, SeqCst};
use core::time::Duration;
use std::time::Instant;

use super::{
    Abort, CLOSED, CopyFn, Cursor, IDLE, MAX_OFFER, OFF_BEFORE, OFF_COPIED, OFF_OFFER, OFF_READS, OFF_STAGED,
    OFF_STAGED_BELL, OFF_TAKEN, OFF_TAKEN_BELL, OFF_TOTAL, OPEN, RING_FIRST, Ring, SETUP, Sleep, Waited, bytes_of,
    count, offer_word, pid_of, seq_of, seq_of_offer, state_of,
};
use crate::chaos::point;

/// An open offer as the reader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Open {
    /// Its sequence number.
    pub seq: u32,
    /// The writer's pid, as it wrote it.
    pub writer: i32,
    /// Bytes offered in all.
    pub total: u64,
    /// Bytes placed so far.
    pub staged: u64,
    /// Bytes taken so far.
    pub taken: u64,
}

impl Open {
    /// Bytes a read can take now.
    pub fn ready(&self) -> u64 {
        self.staged.saturating_sub(self.taken)
    }
}

/// A writer that holds the ring: opening an offer, or with one open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The offer's sequence number.
    pub seq: u32,
    /// The writer's pid.
    pub writer: i32,
    /// False while it is still setting the offer up.
    pub open: bool,
}

/// How a reader waits for bytes still to be placed.
pub struct Taking<'a> {
    /// After taking every byte placed, how long to wait for more of the
    /// same offer (without a new byte placed meanwhile) before the read
    /// returns what it has.
    pub more: Duration,
    /// Whether the writer still runs.
    pub alive: &'a mut dyn FnMut() -> bool,
    /// How to sleep: under which signal mask, and whether a handler ran.
    pub sleep: Sleep,
}

impl core::fmt::Debug for Taking<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Taking").field("more", &self.more).field("sleep", &self.sleep).finish()
    }
}

impl Ring {
    /// The open offer, if its words agree with each other.
    pub fn open_offer(&self) -> Option<Open> {
        let w = self.u64_at(OFF_OFFER).load(Acquire);
        if state_of(w) != OPEN {
            return None;
        }
        let seq = seq_of_offer(w);
        // `staged` before `total`: a write-behind offer's writer may grow
        // its total ([`Ring::extend`]) and stores it before the steps it
        // places, so read in this order an honest writer's words always
        // show staged <= total.
        let staged = self.u64_at(OFF_STAGED).load(Acquire);
        point();
        let total = self.u64_at(OFF_TOTAL).load(Acquire);
        let taken = self.u64_at(OFF_TAKEN).load(Acquire);
        if [total, staged, taken].iter().any(|word| seq_of(*word) != seq) || taken & CLOSED != 0 {
            return None;
        }
        Some(Open { seq, writer: pid_of(w), total: bytes_of(total), staged: bytes_of(staged), taken: bytes_of(taken) })
    }

    /// Where the open offer starts in the writer's stream ([`Ring::try_open_after`]):
    /// read after [`Ring::open_offer`] saw it OPEN, it is that offer's.
    pub fn stream_before(&self) -> u64 {
        self.u64_at(OFF_BEFORE).load(Acquire) & !RING_FIRST
    }

    /// Whether `holder`'s offer is a write-behind offer ([`RING_FIRST`])
    /// with bytes still to take: a read takes them before any byte the
    /// kernel holds.
    pub fn ring_first(&self, holder: &Holder) -> bool {
        holder.open
            && self.u64_at(OFF_BEFORE).load(Acquire) & RING_FIRST != 0
            && self.open_offer().is_some_and(|o| o.seq == holder.seq && o.taken < o.total)
    }

    /// Bytes a read could take now, without waiting.
    pub fn ready(&self) -> u64 {
        self.open_offer().map_or(0, |o| o.ready())
    }

    /// The writer holding the ring, if one does.
    pub fn holder(&self) -> Option<Holder> {
        let w = self.u64_at(OFF_OFFER).load(Acquire);
        match state_of(w) {
            SETUP => Some(Holder { seq: seq_of_offer(w), writer: pid_of(w), open: false }),
            OPEN => Some(Holder { seq: seq_of_offer(w), writer: pid_of(w), open: true }),
            _ => None,
        }
    }

    /// True while a writer sets an offer up, or has one open that is not
    /// taken in full: bytes are coming. (An offer taken in full is one its
    /// writer is about to close.)
    pub fn offer_pending(&self) -> bool {
        match self.holder() {
            None => false,
            Some(h) if !h.open => true,
            Some(h) => self.open_offer().is_some_and(|o| o.seq == h.seq && o.taken < o.total),
        }
    }

    /// A mark that changes whenever bytes are placed or an offer opens:
    /// what an edge-triggered watcher compares.
    pub fn placed_mark(&self) -> u64 {
        self.u64_at(OFF_STAGED).load(Acquire)
    }

    /// A mark that also changes with every read through the library:
    /// what an edge-triggered watcher compares. A program that read and
    /// left offered bytes behind (it took the kernel's bytes first, or
    /// filled its buffer) hears of them again at its next wait, as the
    /// kernel's socket would tell it of bytes its writer kept sending: an
    /// offer's writer sends nothing while it waits to be taken. (The read
    /// count sits above bit 40: a terabyte placed between two looks would
    /// be needed to hide a read.)
    pub fn edge_mark(&self) -> u64 {
        let reads = u64::from(self.u32_at(OFF_READS).load(Relaxed));
        self.placed_mark().wrapping_add(reads << 40)
    }

    /// Takes up to `max` bytes of offer `seq` into `dst`. Once it has
    /// taken every byte placed, waits up to `how.more` (no byte placed
    /// meanwhile) for more of the offer, then returns what it has. Returns
    /// the bytes taken, and why it stopped early (the writer gone, or
    /// garbage in the words). It never goes on into another offer: the
    /// caller looks at the kernel's queue between two (bytes written there
    /// before an offer opened come before it).
    ///
    /// # Safety
    /// `dst` must have room for `max` writable bytes.
    pub unsafe fn take(
        &self,
        seq: u32,
        dst: &mut Cursor<'_>,
        max: u64,
        copy: CopyFn<'_>,
        how: &mut Taking<'_>,
    ) -> (u64, Option<Abort>) {
        let capacity = self.geometry.capacity();
        let step = u64::from(self.geometry.slot_bytes);
        let mut got = 0u64;
        let mut waiting_since: Option<Instant> = None;
        while got < max {
            let Some(o) = self.open_offer().filter(|o| o.seq == seq) else { return (got, None) };
            let copied = self.u64_at(OFF_COPIED).load(Relaxed);
            let copied = if seq_of(copied) == o.seq { bytes_of(copied) } else { o.taken };
            if o.total > MAX_OFFER
                || o.staged > o.total
                || o.taken > o.staged
                || o.staged - copied.min(o.staged) > capacity
            {
                return (got, Some(Abort::Corrupt));
            }
            if o.taken == o.total {
                return (got, None);
            }
            let ready = o.ready();
            if ready == 0 {
                // The writer is placing the next step.
                let since = *waiting_since.get_or_insert_with(Instant::now);
                let deadline = since + how.more;
                let mark = self.placed_mark();
                let moved =
                    |ring: &Ring| ring.placed_mark() != mark || ring.open_offer().is_none_or(|n| n.seq != o.seq);
                match self.wait_until(OFF_STAGED_BELL, self.spin, deadline, &mut how.sleep, &mut || moved(self)) {
                    Waited::Done => continue,
                    Waited::Interrupted => return (got, None),
                    Waited::Deadline => {
                        return (got, if (how.alive)() { None } else { Some(Abort::PeerGone) });
                    }
                }
            }
            waiting_since = None;
            let (at, to_end) = self.at(o.taken);
            let n = ready.min(max - got).min(to_end).min(step);
            point();
            if self
                .u64_at(OFF_TAKEN)
                .compare_exchange(count(o.seq, o.taken), count(o.seq, o.taken + n), AcqRel, Acquire)
                .is_err()
            {
                continue; // withdrawn meanwhile, or moved by a peer's garbage
            }
            point();
            // SAFETY: [taken, taken + n) lies in the buffer (n <= to_end),
            // placed by the writer (n <= staged - taken, seen by the Acquire
            // load of `staged`), and ours since the compare-and-swap; the
            // caller vouches for `dst` (n <= max - got).
            unsafe { dst.copy_in(at, n as usize, copy) };
            point();
            self.u64_at(OFF_COPIED).store(count(o.seq, o.taken + n), SeqCst);
            // The writer sleeps for room (a step freed), for the end, or
            // (having withdrawn the rest) for this copy; it sees smaller
            // progress when it wakes for its patience.
            let withdrawn = self.u64_at(OFF_TAKEN).load(SeqCst) & CLOSED != 0;
            if (o.taken + n) / step != o.taken / step || o.taken + n == o.total || withdrawn {
                self.ring_bell(OFF_TAKEN_BELL);
            }
            got += n;
        }
        (got, None)
    }

    /// Ends the offer `seq` of writer `writer`, which is gone (it died or
    /// exec'd while it set the offer up, or with it open: the reader takes
    /// what it placed first). False if the ring moved on.
    pub fn end_orphan(&self, seq: u32, writer: i32) -> bool {
        let word = self.u64_at(OFF_OFFER);
        let w = word.load(Acquire);
        if seq_of_offer(w) != seq || pid_of(w) != writer || !matches!(state_of(w), SETUP | OPEN) {
            return false;
        }
        // Nothing more may be taken; what was taken was copied (one taker).
        let tw = self.u64_at(OFF_TAKEN).load(Acquire);
        let taken = if seq_of(tw) == seq && state_of(w) == OPEN { bytes_of(tw) } else { 0 };
        for off in [OFF_TOTAL, OFF_STAGED, OFF_COPIED] {
            if seq_of(self.u64_at(off).load(Relaxed)) != seq {
                self.u64_at(off).store(count(seq, taken), Relaxed);
            }
        }
        // The next writer needs taken == copied: both `taken` bytes, closed.
        // `copied` first: once `CLOSED` shows, a live writer (taken for
        // dead) may close and open the next offer at once, and a store of
        // this one's words after that would clobber the new offer's.
        self.u64_at(OFF_COPIED).store(count(seq, taken), Relaxed);
        self.u64_at(OFF_TAKEN).store(count(seq, taken) | CLOSED, SeqCst);
        word.compare_exchange(w, offer_word(IDLE, seq, 0), SeqCst, Relaxed).is_ok()
    }
}
