//! The ring's claim and slot hand-over under schedule perturbation
//! ([`crate::chaos`]): a reader that waits, withdraws at random moments or
//! takes transfers, and two writers racing to claim it. Every wait is
//! claimed at most once, a withdrawn wait never, and every claimed
//! transfer delivers exactly the writer's bytes.

use super::*;
use crate::chaos::{Enabled, within};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

const GEOMETRY: Geometry = Geometry { slots: 4, slot_bytes: 16 << 10 };
const MAX_ROUNDS: u32 = 20_000;

fn copy() -> impl FnMut(*mut u8, *const u8, usize) {
    |d, s, n| {
        // SAFETY: the ring and the cursors pass ranges inside their buffers.
        unsafe { core::ptr::copy_nonoverlapping(s, d, n) }
    }
}

/// The bytes a writer sends for `ticket`: both sides can compute them.
fn payload(ticket: u32, n: usize) -> Vec<u8> {
    (0..n).map(|i| (i as u32 ^ ticket.wrapping_mul(2_654_435_761) >> 3) as u8).collect()
}

fn iov(buf: &mut [u8]) -> libc::iovec {
    libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() }
}

#[test]
fn one_claim_per_wait_and_exact_bytes_under_perturbation() {
    let chaos = Enabled::new("one_claim_per_wait_and_exact_bytes_under_perturbation");
    let seed = chaos.seed;
    // A run takes seconds; a hang (a transfer nobody finishes) fails.
    within(Duration::from_secs(120), move || claims_and_transfers(seed));
}

fn claims_and_transfers(seed: u64) {
    let (reader, fd) = Ring::create(GEOMETRY, std::process::id() as i32, 11, 22).unwrap();
    let reader = Arc::new(reader);
    let uid = crate::sys::net::geteuid();
    let claims = Arc::new(Mutex::new(Vec::<(u32, i32, u64)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (1..=2)
        .map(|pid| {
            let ring = Ring::attach(fd.raw(), uid, 22).unwrap();
            let (claims, stop) = (Arc::clone(&claims), Arc::clone(&stop));
            let mut x = seed ^ pid as u64 | 1;
            std::thread::spawn(move || {
                crate::chaos::join();
                while !stop.load(SeqCst) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let max = 1 + x % 100_000;
                    let Some(claim) = ring.try_claim(max, pid) else {
                        crate::sys::sched_yield();
                        continue;
                    };
                    claims.lock().unwrap().push((claim.ticket, pid, claim.total));
                    let mut src = payload(claim.ticket, claim.total as usize);
                    let segs = [iov(&mut src)];
                    // SAFETY: the cursor covers claim.total bytes.
                    let sent =
                        unsafe { ring.send(&claim, pid, &mut Cursor::new(&segs), &mut copy(), &mut || true, None) };
                    assert_eq!(sent, (claim.total, None), "writer {pid}, ticket {}", claim.ticket);
                }
            })
        })
        .collect();
    let mut x = seed;
    let mut withdrawn = Vec::new();
    let mut received = Vec::new();
    // Whether a withdrawal beats the writers is up to the schedule: go on
    // past 600 rounds until both outcomes happened often enough (a bound
    // keeps a schedule that never lets one happen from running forever).
    for round in 0..MAX_ROUNDS {
        if round >= 600 && received.len() > 100 && withdrawn.len() > 50 {
            break;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let want = 1 + x % 80_000;
        let ticket = reader.begin_wait(want);
        for _ in 0..(x >> 20) % 3000 {
            core::hint::spin_loop();
        }
        if x % 3 == 0 && reader.withdraw(ticket) {
            withdrawn.push(ticket);
            continue;
        }
        let start = Instant::now();
        loop {
            match reader.seen(ticket) {
                Seen::Claimed { writer, total } => {
                    assert!(total <= want, "round {round}: claimed {total} of a wait for {want}");
                    let mut out = vec![0u8; want as usize];
                    let segs = [iov(&mut out)];
                    // SAFETY: `out` holds want >= total bytes.
                    let got = unsafe {
                        reader.receive(
                            ticket,
                            total,
                            &mut Cursor::new(&segs),
                            &mut copy(),
                            &mut || true,
                            &mut Sleep::default(),
                        )
                    };
                    reader.end(ticket);
                    assert_eq!(got, (total, None), "round {round}");
                    assert!(out[..total as usize] == payload(ticket, total as usize)[..], "round {round}: bytes");
                    received.push((ticket, writer, total));
                    break;
                }
                Seen::Claiming { .. } => std::thread::yield_now(),
                Seen::Waiting => {
                    if start.elapsed() > Duration::from_millis(2) && reader.withdraw(ticket) {
                        withdrawn.push(ticket);
                        break;
                    }
                    std::thread::yield_now();
                }
                Seen::Other => panic!("round {round}: the wait vanished"),
            }
        }
    }
    stop.store(true, SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    let mut claims = claims.lock().unwrap().clone();
    claims.sort();
    for pair in claims.windows(2) {
        assert_ne!(pair[0].0, pair[1].0, "two claims of one wait: {pair:?}");
    }
    for t in &withdrawn {
        assert!(!claims.iter().any(|c| c.0 == *t), "a withdrawn wait ({t}) was claimed");
    }
    received.sort();
    assert_eq!(received, claims, "every claim was received, as claimed");
    assert!(
        received.len() > 100 && withdrawn.len() > 50,
        "both outcomes happened within {MAX_ROUNDS} rounds: {} {}",
        received.len(),
        withdrawn.len()
    );
}
