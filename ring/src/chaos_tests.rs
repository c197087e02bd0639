//! Offers under schedule perturbation ([`crate::chaos`]): two writers race
//! to open the ring and place payloads whose bytes both sides can compute;
//! a reader takes them in reads of random sizes, and now and then stops
//! taking, so that writers withdraw what it left. Every byte a writer
//! counts as sent was taken, in order, exactly once; nothing withdrawn is
//! ever taken; the ring is always free again.

use super::offer::Staging;
use super::take::Taking;
use super::*;
use crate::chaos::{Enabled, within};
use core::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU64 as Counter};
use std::sync::{Arc, Mutex};

const GEOMETRY: Geometry = Geometry { slots: 4, slot_bytes: 16 << 10 };
const MAX_ROUNDS: u32 = 20_000;

fn copy() -> impl FnMut(*mut u8, *const u8, usize) {
    |d, s, n| {
        // SAFETY: the ring and the cursors pass ranges inside their buffers.
        unsafe { core::ptr::copy_nonoverlapping(s, d, n) }
    }
}

/// Byte `i` of offer `seq`: both sides can compute it.
fn byte(seq: u32, i: u64) -> u8 {
    (i as u32 ^ seq.wrapping_mul(2_654_435_761) >> 3) as u8
}

fn iov(buf: &mut [u8]) -> libc::iovec {
    libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() }
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[test]
fn every_counted_byte_is_taken_once_and_in_order_under_perturbation() {
    let chaos = Enabled::new("every_counted_byte_is_taken_once_and_in_order_under_perturbation");
    let seed = chaos.seed;
    // A run takes seconds; a hang (an offer nobody ends) fails.
    within(Duration::from_secs(120), move || offers(seed, false));
}

#[test]
fn every_counted_byte_of_grown_write_behind_offers_is_taken_once_and_in_order_under_perturbation() {
    // The writers leave their offers open (write-behind), grow them while
    // the reader takes ([`Ring::extend`]), then settle them.
    let chaos = Enabled::new("every_counted_byte_of_grown_write_behind_offers_is_taken_once_and_in_order");
    let seed = chaos.seed;
    within(Duration::from_secs(120), move || offers(seed, true));
}

/// How the writers stage: a 2 ms patience, a long drain; `behind`: return
/// once every byte is placed.
fn staging<'a>(alive: &'a mut dyn FnMut() -> bool, placed: &'a mut dyn FnMut(), behind: bool) -> Staging<'a> {
    Staging { patience: Duration::from_millis(2), drain: Duration::from_secs(20), alive, placed, behind }
}

/// Places the offer `offer` opened for `src`'s first `offer.total` bytes,
/// left open; then grows it from the rest of `src` a few times, as the
/// ring has room; then settles it. What counts as sent.
fn behind_and_grown(ring: &Ring, offer: &mut offer::Offer, src: &mut [u8], x: &mut u64) -> offer::Staged {
    let segs = [iov(src)];
    let mut cursor = Cursor::new(&segs);
    let (mut alive, mut placed) = (|| true, || {});
    let mut how = staging(&mut alive, &mut placed, true);
    // SAFETY: the cursor covers src.len() >= offer.total bytes.
    let staged = unsafe { ring.stage(offer, &mut cursor, &mut copy(), &mut how) };
    assert!(staged.behind && staged.abort.is_none(), "{staged:?}");
    let most = segs[0].iov_len as u64;
    for _ in 0..1 + xorshift(x) % 6 {
        let want = (1 + xorshift(x) % 30_000).min(most - offer.total);
        // SAFETY: the cursor stands at byte offer.total of src, and want
        // bytes follow it.
        let n = unsafe { ring.extend(offer, &mut cursor, want, &mut copy(), &mut || {}) };
        assert!(n <= want);
        if n == 0 {
            ipc_offload_sys::sched_yield();
        }
    }
    ring.settle(offer, &mut staging(&mut alive, &mut placed, false))
}

fn offers(seed: u64, grow: bool) {
    let (reader, fd) = Ring::create(GEOMETRY, std::process::id() as i32, 11, 22).unwrap();
    let reader = Arc::new(reader);
    let uid = ipc_offload_sys::net::geteuid();
    // (seq, bytes the writer counted sent), per closed offer.
    let sent = Arc::new(Mutex::new(Vec::<(u32, u64)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let withdrawn = Arc::new(Counter::new(0));
    let writers: Vec<_> = (1..=2)
        .map(|pid| {
            let ring = Ring::attach(fd.raw(), uid, 22).unwrap();
            let (sent, stop, withdrawn) = (Arc::clone(&sent), Arc::clone(&stop), Arc::clone(&withdrawn));
            let mut x = seed ^ pid as u64 | 1;
            std::thread::spawn(move || {
                crate::chaos::join();
                while !stop.load(SeqCst) {
                    // A write-behind offer opens with at most the ring's
                    // capacity (growing adds what the reader freed).
                    let total = 1 + xorshift(&mut x) % if grow { GEOMETRY.capacity() } else { 100_000 };
                    let before = if grow { RING_FIRST } else { 0 };
                    let Some(mut offer) = ring.try_open_after(total, pid, before) else {
                        ipc_offload_sys::sched_yield();
                        continue;
                    };
                    let payload = if grow { total + 200_000 } else { total };
                    let mut src: Vec<u8> = (0..payload).map(|i| byte(offer.seq, i)).collect();
                    let staged = if grow {
                        behind_and_grown(&ring, &mut offer, &mut src, &mut x)
                    } else {
                        let segs = [iov(&mut src)];
                        let (mut alive, mut placed) = (|| true, || {});
                        let mut how = staging(&mut alive, &mut placed, false);
                        // SAFETY: the cursor covers offer.total bytes.
                        unsafe { ring.stage(&offer, &mut Cursor::new(&segs), &mut copy(), &mut how) }
                    };
                    let total = offer.total;
                    assert!(staged.sent <= staged.placed && staged.placed <= total, "{staged:?}");
                    assert_ne!(staged.abort, Some(Abort::Corrupt));
                    assert_ne!(staged.abort, Some(Abort::PeerGone));
                    if staged.abort == Some(Abort::Withdrawn) {
                        withdrawn.fetch_add(1, SeqCst);
                    } else {
                        assert_eq!(staged.sent, total);
                    }
                    // Recorded before the ring is free: the reader's view of
                    // this offer is final once it closes.
                    sent.lock().unwrap().push((offer.seq, staged.sent));
                    ring.close(&offer);
                }
            })
        })
        .collect();
    crate::chaos::join();
    let mut x = seed;
    // What the reader took, per offer: (seq, bytes), in order.
    let mut taken: Vec<(u32, u64)> = Vec::new();
    for round in 0..MAX_ROUNDS {
        if round >= 600 && taken.len() > 100 && withdrawn.load(SeqCst) > 20 {
            break;
        }
        let r = xorshift(&mut x);
        if r % 8 == 0 {
            // Stop taking for a while: a writer withdraws what is left.
            std::thread::sleep(Duration::from_millis(3));
            continue;
        }
        let Some(o) = reader.open_offer() else {
            ipc_offload_sys::sched_yield();
            continue;
        };
        let size = 1 + (r >> 8) % 40_000;
        let mut buf = vec![0u8; size as usize];
        let segs = [iov(&mut buf)];
        let mut alive = || true;
        let mut how = Taking { more: Duration::from_micros(200), alive: &mut alive, sleep: Sleep::default() };
        // SAFETY: `buf` holds `size` bytes.
        let (got, abort) = unsafe { reader.take(o.seq, &mut Cursor::new(&segs), size, &mut copy(), &mut how) };
        assert_eq!(abort, None);
        if got == 0 {
            continue;
        }
        // The bytes continue the offer they belong to, from where it stood.
        let at = match taken.last_mut() {
            Some((seq, n)) if *seq == o.seq => n,
            _ => {
                taken.push((o.seq, 0));
                &mut taken.last_mut().unwrap().1
            }
        };
        for (i, b) in buf[..got as usize].iter().enumerate() {
            assert_eq!(*b, byte(o.seq, *at + i as u64), "offer {} byte {}", o.seq, *at + i as u64);
        }
        *at += got;
    }
    stop.store(true, SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    // Every offer the reader took from was counted by its writer exactly as
    // taken; offers it never touched counted nothing.
    let sent = sent.lock().unwrap();
    for (seq, n) in &taken {
        let counted: Vec<u64> = sent.iter().filter(|(s, _)| s == seq).map(|(_, c)| *c).collect();
        assert_eq!(counted, vec![*n], "offer {seq}");
    }
    for (seq, n) in sent.iter() {
        if !taken.iter().any(|(s, _)| s == seq) {
            assert_eq!(*n, 0, "offer {seq} counted bytes nobody took");
        }
    }
    assert!(reader.holder().is_none(), "every offer closed");
}
