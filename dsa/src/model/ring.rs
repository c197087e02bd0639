//! The model's thread: the portal ring consumed in order.

use core::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::time::Instant;

use super::config::Mode;
use super::exec;
use super::shared::{Inner, SHARED_MARKER, SLOTS, bump};

/// The model's thread: consumes the ring in order until told to stop.
pub(super) fn run(inner: &Inner) {
    let dedicated = inner.config.mode == Mode::Dedicated;
    let size = u64::from(inner.config.size);
    let exec = exec::Exec::new(inner);
    // Ticket of the next slot to consume; tickets [next, ahead) are known
    // written (dedicated mode's look-ahead for the high-water mark).
    let mut next = 0u64;
    let mut ahead = 0u64;
    let mut idle_since: Option<Instant> = None;
    while !inner.stop.load(Acquire) {
        let first = inner.word(next, 0).load(Acquire);
        if first == 0 {
            idle(inner, next, &mut idle_since);
            continue;
        }
        idle_since = None;
        let mut words = [first, 0, 0, 0, 0, 0, 0, 0];
        for (w, word) in words.iter_mut().enumerate().skip(1) {
            *word = inner.word(next, w).load(Relaxed);
        }
        for w in 1..8 {
            inner.word(next, w).store(0, Relaxed);
        }
        inner.word(next, 0).store(0, Release);
        next += 1;
        if dedicated {
            bump(&inner.stats.accepted);
            ahead = ahead.max(next);
            while ahead < next + (SLOTS as u64 - 1) && inner.word(ahead, 0).load(Relaxed) != 0 {
                ahead += 1;
            }
            let seen = ahead - inner.completed.load(Relaxed);
            inner.stats.high_water.fetch_max(seen, Relaxed);
            if seen > size {
                bump(&inner.stats.overruns);
            }
        } else {
            words[0] &= !SHARED_MARKER;
        }
        let desc = exec::descriptor(words);
        let record = exec.top(&desc);
        inner.completed.fetch_add(1, Release);
        if let Some((addr, record)) = record {
            exec.write_record(addr, &record);
        }
    }
}

/// Waits for slot `next` to fill: spins for `spin`, then polls every
/// `idle_poll` (an `enqcmd` wakes the thread at once).
fn idle(inner: &Inner, next: u64, idle_since: &mut Option<Instant>) {
    let now = Instant::now();
    let since = *idle_since.get_or_insert(now);
    if now.duration_since(since) < inner.config.spin {
        for _ in 0..64 {
            core::hint::spin_loop();
        }
        return;
    }
    inner.sleeping.store(true, SeqCst);
    if inner.word(next, 0).load(SeqCst) == 0 && !inner.stop.load(SeqCst) {
        std::thread::park_timeout(inner.config.idle_poll);
    }
    inner.sleeping.store(false, Relaxed);
}
