//! The writer's side of an offer (docs/ipc-protocol.md, "One offer"): open
//! the ring, place bytes step by step as the reader frees room, wait while
//! it takes them, and take back what it did not take when the patience
//! runs out or the reader goes.

use core::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use core::time::Duration;
use std::time::Instant;

use super::{
    Abort, CLOSED, CopyFn, Cursor, IDLE, MAX_OFFER, OFF_BEFORE, OFF_COPIED, OFF_OFFER, OFF_STAGED, OFF_STAGED_BELL,
    OFF_TAKEN, OFF_TAKEN_BELL, OFF_TOTAL, OPEN, Ring, SEQ_MASK, SETUP, Sleep, Waited, bytes_of, count, offer_word,
    seq_of, seq_of_offer, state_of,
};
use crate::chaos::point;

/// An offer this writer opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offer {
    /// Its sequence number.
    pub seq: u32,
    /// The bytes it offers.
    pub total: u64,
    /// The writer's pid.
    pub pid: i32,
}

/// How a writer waits for its reader while it stages.
pub struct Staging<'a> {
    /// Longest it waits without the reader taking a byte before it takes
    /// the rest back.
    pub patience: Duration,
    /// Longest it waits, once every byte is taken, for the reader to
    /// finish copying (so that the next offer finds the room free); past
    /// that, what was taken counts as sent (a reader stopped mid-copy
    /// copies it when it runs again).
    pub drain: Duration,
    /// Whether the reader still runs (its lifeline).
    pub alive: &'a mut dyn FnMut() -> bool,
    /// Called after each step placed, to announce it (a WAKE).
    pub placed: &'a mut dyn FnMut(),
    /// Return as soon as every byte is placed, the offer left open for the
    /// reader to take later (a write-behind offer; [`Ring::settle`] ends it).
    pub behind: bool,
}

impl core::fmt::Debug for Staging<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Staging").field("patience", &self.patience).field("drain", &self.drain).finish()
    }
}

/// How a staged offer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Staged {
    /// Bytes that count as sent: the reader took them.
    pub sent: u64,
    /// Bytes placed in the ring (at least `sent`).
    pub placed: u64,
    /// Why it ended before `total`, if it did.
    pub abort: Option<Abort>,
    /// Left open, every byte placed and some not taken yet
    /// ([`Staging::behind`]): `sent` counts them all, and the offer is
    /// the writer's to [`Ring::settle`] before anything else it writes.
    pub behind: bool,
}

impl Ring {
    /// Opens an offer of `total` bytes as writer `pid`, if the ring is
    /// free: no offer open, and every byte of the last one copied out (its
    /// room is free). `None` otherwise: the caller takes the kernel path.
    pub fn try_open(&self, total: u64, pid: i32) -> Option<Offer> {
        self.try_open_after(total, pid, 0)
    }

    /// [`Ring::try_open`] for a transport whose kernel bytes reach the
    /// reader after the write that sent them returned (TCP: through the
    /// network stack): `before` is how many bytes the writer's socket had
    /// accepted through the kernel, in all, when the offer opened. The
    /// reader takes nothing of the offer before it has received them all,
    /// so that they come first.
    pub fn try_open_after(&self, total: u64, pid: i32, before: u64) -> Option<Offer> {
        if total == 0 || total > MAX_OFFER {
            return None;
        }
        let word = self.u64_at(OFF_OFFER);
        let w = word.load(Acquire);
        if state_of(w) != IDLE {
            return None;
        }
        let prev = seq_of_offer(w);
        let (taken, copied) = (self.u64_at(OFF_TAKEN).load(Acquire), self.u64_at(OFF_COPIED).load(Acquire));
        if seq_of(taken) != prev || seq_of(copied) != prev || bytes_of(taken) != bytes_of(copied) {
            return None;
        }
        let seq = prev.wrapping_add(1) & SEQ_MASK;
        word.compare_exchange(w, offer_word(SETUP, seq, pid), SeqCst, Relaxed).ok()?;
        point();
        self.u64_at(OFF_BEFORE).store(before, Relaxed);
        self.u64_at(OFF_TOTAL).store(count(seq, total), Relaxed);
        self.u64_at(OFF_STAGED).store(count(seq, 0), Relaxed);
        self.u64_at(OFF_COPIED).store(count(seq, 0), Relaxed);
        self.u64_at(OFF_TAKEN).store(count(seq, 0), Release);
        point();
        // Published after its words: a reader that sees OPEN sees them. A
        // compare-and-swap, not a store: a reader that took this writer for
        // dead may have ended the half-made offer (IDLE, words CLOSED), and
        // a store would reopen it over that; the write then goes on through
        // the kernel (its words are consistent for the next offer either
        // way: `taken` and `copied` both count 0 of this sequence).
        word.compare_exchange(offer_word(SETUP, seq, pid), offer_word(OPEN, seq, pid), SeqCst, Relaxed).ok()?;
        Some(Offer { seq, total, pid })
    }

    /// Ends `offer` (after [`Ring::stage`]): the ring is free for the next.
    pub fn close(&self, offer: &Offer) {
        point();
        let _ = self.u64_at(OFF_OFFER).compare_exchange(
            offer_word(OPEN, offer.seq, offer.pid),
            offer_word(IDLE, offer.seq, 0),
            SeqCst,
            Relaxed,
        );
    }

    /// Places `offer.total` bytes taken from `src` in the ring, pipelined
    /// with the reader, and waits while it takes them; takes back what it
    /// has not taken once `how.patience` passes without a take, or once it
    /// is gone. Returns what counts as sent: what the reader took (what it
    /// copied out, if it died); `src` then stands past every byte placed,
    /// and the caller resumes from the count.
    ///
    /// # Safety
    /// `src` must yield `offer.total` readable bytes.
    pub unsafe fn stage(&self, offer: &Offer, src: &mut Cursor<'_>, copy: CopyFn<'_>, how: &mut Staging<'_>) -> Staged {
        // SAFETY: forwarded contract.
        unsafe { self.stage_from(offer, 0, src, copy, how) }
    }

    /// Adds up to `most` bytes from `src` to the end of `offer`, a
    /// write-behind offer whose every byte is placed ([`Staged::behind`]),
    /// as far as the ring has room for them now: the offer's `total`
    /// grows first, then each step is placed and announced (`placed`), as
    /// [`Ring::stage`] places them. The reader sees a longer offer of the
    /// same sequence: it takes on where it stood. Returns the bytes added
    /// (the offer's `total` is updated), or 0 when the ring has no room or
    /// the offer is no longer open for this writer (ended by its reader,
    /// or withdrawn): then it must be settled instead.
    ///
    /// # Safety
    /// `src` must yield `most` readable bytes.
    pub unsafe fn extend(
        &self,
        offer: &mut Offer,
        src: &mut Cursor<'_>,
        most: u64,
        copy: CopyFn<'_>,
        placed: &mut dyn FnMut(),
    ) -> u64 {
        let seq = offer.seq;
        if self.u64_at(OFF_OFFER).load(Acquire) != offer_word(OPEN, seq, offer.pid) {
            return 0;
        }
        let tw = self.u64_at(OFF_TAKEN).load(Acquire);
        let cw = self.u64_at(OFF_COPIED).load(Acquire);
        if seq_of(tw) != seq || tw & CLOSED != 0 || seq_of(cw) != seq || bytes_of(cw) > offer.total {
            return 0;
        }
        let capacity = self.geometry.capacity();
        let room = capacity.saturating_sub(offer.total - bytes_of(cw));
        let n = most.min(room).min(MAX_OFFER - offer.total.min(MAX_OFFER));
        if n == 0 {
            return 0;
        }
        // The total first: a reader that sees a placed byte past the old
        // total sees the total that covers it (it checks staged <= total).
        let total = offer.total + n;
        self.u64_at(OFF_TOTAL).store(count(seq, total), Release);
        let step = u64::from(self.geometry.slot_bytes);
        let mut at_byte = offer.total;
        while at_byte < total {
            // Ended meanwhile (its reader took this writer for dead): what
            // is placed so far is the write's; the settle gives back what
            // the reader did not take.
            let tw = self.u64_at(OFF_TAKEN).load(Acquire);
            if self.u64_at(OFF_OFFER).load(Acquire) != offer_word(OPEN, seq, offer.pid) || tw & CLOSED != 0 {
                break;
            }
            let (at, to_end) = self.at(at_byte);
            let k = (total - at_byte).min(to_end).min(step);
            point();
            // SAFETY: [at_byte, at_byte + k) lies in the buffer (k <=
            // to_end) and is free: the reader copied out everything below
            // `copied` (read above), and total - copied <= capacity. The
            // caller vouches for `src`.
            unsafe { src.copy_out(at, k as usize, copy) };
            at_byte += k;
            self.u64_at(OFF_STAGED).store(count(seq, at_byte), Release);
            self.ring_bell(OFF_STAGED_BELL);
            placed();
        }
        let added = at_byte - offer.total;
        offer.total = at_byte;
        added
    }

    /// Waits, as [`Ring::stage`] does once every byte is placed, for the
    /// reader to take the rest of a write-behind offer ([`Staged::behind`]):
    /// `how.patience` counted from now and from each take. What it returns
    /// is final: past `sent`, the bytes are the writer's again (withdrawn,
    /// to go through the kernel: [`Ring::backlog`]). The caller closes the
    /// offer once it has sent them.
    pub fn settle(&self, offer: &Offer, how: &mut Staging<'_>) -> Staged {
        let mut nothing = Cursor::new(&[]);
        let mut no_copy = |_: *mut u8, _: *const u8, _: usize| {};
        // SAFETY: every byte is placed: nothing is read from the cursor
        // (and `how.behind` never applies: no step is placed).
        unsafe { self.stage_from(offer, offer.total, &mut nothing, &mut no_copy, how) }
    }

    /// The bytes of `offer` from stream position `from`, as placed, up to
    /// the end of the offer or of the buffer (where it wraps): what a
    /// writer sends through the kernel after [`Ring::settle`] gave them
    /// back. A pointer, not a slice: the peer can write to the mapping.
    pub fn backlog(&self, offer: &Offer, from: u64) -> (*const u8, u64) {
        let (at, to_end) = self.at(from);
        (at.cast_const(), to_end.min(offer.total.saturating_sub(from)))
    }

    #[allow(clippy::too_many_arguments)]
    unsafe fn stage_from(
        &self,
        offer: &Offer,
        placed_before: u64,
        src: &mut Cursor<'_>,
        copy: CopyFn<'_>,
        how: &mut Staging<'_>,
    ) -> Staged {
        let capacity = self.geometry.capacity();
        let step = u64::from(self.geometry.slot_bytes);
        let seq = offer.seq;
        let (mut placed, mut last_taken) = (placed_before, 0u64);
        let mut since = Instant::now();
        // The reader's liveness is asked once a nap has passed without it
        // taking (a lifeline poll is a system call).
        let mut asked = since;
        let mut sleep = Sleep::default();
        loop {
            // `copied` before `taken`: the reader moves `taken` first and
            // `copied` after it, so read in this order an honest reader's
            // words always show copied <= taken. (Read the other way round,
            // a reader that claims and copies a step between the two loads
            // looks like one that copied more than it took: the offer was
            // cut short as corrupt, counted as sent only what was copied,
            // and the step claimed meanwhile went twice, once from the ring
            // and once through the kernel.)
            let cw = self.u64_at(OFF_COPIED).load(Acquire);
            point();
            let tw = self.u64_at(OFF_TAKEN).load(Acquire);
            let (taken, copied) = (bytes_of(tw), bytes_of(cw));
            if seq_of(tw) != seq || seq_of(cw) != seq || copied > taken || taken > placed {
                // Only a peer writing garbage moves our words like this.
                self.withdraw(seq);
                let sent = if seq_of(cw) == seq { copied.min(placed) } else { 0 };
                return Staged { behind: false, sent, placed, abort: Some(Abort::Corrupt) };
            }
            if tw & CLOSED != 0 {
                // The reader took us for dead and ended the offer: what it
                // took is what went.
                return Staged { behind: false, sent: taken, placed, abort: Some(Abort::Withdrawn) };
            }
            if taken > last_taken {
                (last_taken, since) = (taken, Instant::now());
            }
            if taken == offer.total {
                if self.drain(seq, taken, how) {
                    return Staged { behind: false, sent: taken, placed, abort: None };
                }
                // Gone before it copied the last: what it did not copy was
                // never read.
                self.withdraw(seq);
                let copied = bytes_of(self.u64_at(OFF_COPIED).load(Acquire)).min(placed);
                return Staged { behind: false, sent: copied, placed, abort: Some(Abort::PeerGone) };
            }
            if placed < offer.total && placed - copied < capacity {
                let (at, to_end) = self.at(placed);
                let n = (offer.total - placed).min(capacity - (placed - copied)).min(to_end).min(step);
                point();
                // SAFETY: [placed, placed + n) lies in the buffer (n <= to_end)
                // and is free: the reader copied out everything below
                // `copied`, and placed + n - copied <= capacity. The caller
                // vouches for `src`.
                unsafe { src.copy_out(at, n as usize, copy) };
                placed += n;
                point();
                self.u64_at(OFF_STAGED).store(count(seq, placed), Release);
                self.ring_bell(OFF_STAGED_BELL);
                (how.placed)();
                if how.behind && placed == offer.total {
                    return Staged { sent: offer.total, placed, abort: None, behind: true };
                }
                continue;
            }
            let now = Instant::now();
            if now - since.max(asked) >= super::NAP {
                asked = now;
                if !(how.alive)() {
                    self.withdraw(seq);
                    let copied = bytes_of(self.u64_at(OFF_COPIED).load(Acquire)).min(placed);
                    return Staged { behind: false, sent: copied, placed, abort: Some(Abort::PeerGone) };
                }
            }
            let deadline = since + how.patience;
            if now >= deadline {
                // Taken back at once: a reader that took bytes and stopped
                // copying (a hostile one, or one stopped) does not hold
                // the write; what it took counts as sent, unless it is
                // gone (then only what it copied was read).
                // (At most what was placed: a hostile reader may have
                // moved `taken` since the check above.)
                let taken = self.withdraw(seq).min(placed);
                if !(how.alive)() {
                    let copied = bytes_of(self.u64_at(OFF_COPIED).load(Acquire)).min(placed);
                    return Staged { behind: false, sent: copied, placed, abort: Some(Abort::PeerGone) };
                }
                return Staged { behind: false, sent: taken, placed, abort: Some(Abort::Withdrawn) };
            }
            let moved =
                |ring: &Ring| ring.u64_at(OFF_TAKEN).load(Acquire) != tw || ring.u64_at(OFF_COPIED).load(Acquire) != cw;
            // A step is placed: the reader is a moment away. Poll as the
            // mode says, then sleep for it (a nap at most: then its
            // liveness is asked).
            let until = deadline.min(now + super::NAP);
            let _: Waited = self.wait_until(OFF_TAKEN_BELL, self.spin, until, &mut sleep, &mut || moved(self));
        }
    }

    /// Takes back what the reader has not taken of offer `seq`; returns
    /// what it took, which is then final.
    pub(super) fn withdraw(&self, seq: u32) -> u64 {
        let word = self.u64_at(OFF_TAKEN);
        let mut tw = word.load(Acquire);
        loop {
            if seq_of(tw) != seq || tw & CLOSED != 0 {
                return bytes_of(tw);
            }
            point();
            match word.compare_exchange(tw, tw | CLOSED, SeqCst, Acquire) {
                Ok(_) => return bytes_of(tw),
                Err(now) => tw = now,
            }
        }
    }

    /// Waits for the reader to copy out the `taken` bytes of offer `seq`
    /// it claimed (it copies after claiming): at most `how.drain`. False if
    /// it had not, and is gone.
    fn drain(&self, seq: u32, taken: u64, how: &mut Staging<'_>) -> bool {
        let done = |ring: &Ring| {
            let cw = ring.u64_at(OFF_COPIED).load(Acquire);
            seq_of(cw) != seq || bytes_of(cw) >= taken
        };
        if done(self) {
            return true;
        }
        let mut sleep = Sleep::default();
        self.wait_until(OFF_TAKEN_BELL, self.spin, Instant::now() + how.drain, &mut sleep, &mut || done(self))
            == Waited::Done
            || (how.alive)()
    }
}
