use super::*;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

fn ranges<const CAP: usize>(index: &RangeIndex<CAP>) -> Vec<(usize, usize)> {
    let mut out = vec![(0, 0); CAP];
    let n = index.snapshot(&mut out).unwrap();
    out.truncate(n);
    out
}

#[test]
fn insert_sorts_and_coalesces() {
    let index = RangeIndex::<8>::new();
    assert_eq!(index.insert(0x5000, 0x6000), Change::Published);
    assert_eq!(index.insert(0x1000, 0x2000), Change::Published);
    assert_eq!(index.insert(0x9000, 0xa000), Change::Published);
    assert_eq!(ranges(&index), [(0x1000, 0x2000), (0x5000, 0x6000), (0x9000, 0xa000)]);
    // Contained: nothing to publish.
    assert_eq!(index.insert(0x5000, 0x5800), Change::None);
    // Touching on either side merges.
    index.insert(0x2000, 0x3000);
    index.insert(0x4000, 0x5000);
    assert_eq!(ranges(&index), [(0x1000, 0x3000), (0x4000, 0x6000), (0x9000, 0xa000)]);
    // Overlapping several: one range.
    index.insert(0x2800, 0x9800);
    assert_eq!(ranges(&index), [(0x1000, 0xa000)]);
    assert_eq!(index.peak(), 3);
    // Empty and reversed ranges change nothing.
    assert_eq!(index.insert(0x20000, 0x20000), Change::None);
    assert_eq!(index.remove(0x3000, 0x2000), Change::None);
}

#[test]
fn lookups() {
    let index = RangeIndex::<8>::new();
    assert_eq!(index.meets(0x1000, 0x1000), Some(false));
    index.insert(0x10000, 0x20000);
    index.insert(0x30000, 0x31000);
    assert_eq!(index.meets(0x0, 0x10000), Some(false), "ends right before");
    assert_eq!(index.meets(0x0, 0x10001), Some(true));
    assert_eq!(index.meets(0x1ffff, 1), Some(true));
    assert_eq!(index.meets(0x20000, 0x10000), Some(false), "starts right after, ends right before the next");
    assert_eq!(index.meets(0x20000, 0x10001), Some(true));
    assert_eq!(index.meets(usize::MAX - 10, 100), Some(false), "saturates at the top");
    assert_eq!(index.meets(0x15000, 0), Some(false), "an empty span meets nothing");
    assert_eq!(index.meets_either(0x0, 0x15000, 16), Some(true));
    assert_eq!(index.meets_either(0x15000, 0x0, 16), Some(true));
    assert_eq!(index.meets_either(0x0, 0x40000, 16), Some(false));
    assert_eq!(index.range_at(0x30fff), Ok(Some((0x30000, 0x31000))));
    assert_eq!(index.range_at(0x31000), Ok(None));
    assert_eq!(index.range_at(0xffff), Ok(None));
}

#[test]
fn partial_removal_splits() {
    let index = RangeIndex::<8>::new();
    index.insert(0x10000, 0x20000);
    // The middle: two pieces.
    assert_eq!(index.remove(0x14000, 0x16000), Change::Published);
    assert_eq!(ranges(&index), [(0x10000, 0x14000), (0x16000, 0x20000)]);
    // The head and the tail.
    index.remove(0x0, 0x11000);
    index.remove(0x1f000, 0x30000);
    assert_eq!(ranges(&index), [(0x11000, 0x14000), (0x16000, 0x1f000)]);
    // A span across both pieces and the gap.
    index.remove(0x12000, 0x17000);
    assert_eq!(ranges(&index), [(0x11000, 0x12000), (0x17000, 0x1f000)]);
    // Nothing there: nothing published.
    assert_eq!(index.remove(0x14000, 0x16000), Change::None);
    assert_eq!(index.remove(0x40000, 0x50000), Change::None);
    // Everything.
    index.remove(0, usize::MAX);
    assert!(index.is_empty());
    assert_eq!(index.clear(), Change::None);
}

#[test]
fn an_overlapping_map_replaces_what_it_covers() {
    // MAP_FIXED of a private mapping over part of a shared one: removed;
    // of a shared one over a private gap: added and merged.
    let index = RangeIndex::<8>::new();
    index.insert(0x10000, 0x18000);
    index.remove(0x12000, 0x14000);
    assert_eq!(index.range_at(0x13000), Ok(None));
    index.insert(0x12000, 0x14000);
    assert_eq!(ranges(&index), [(0x10000, 0x18000)]);
    // munmap then mmap private at the same address: not shared.
    index.remove(0x10000, 0x18000);
    index.remove(0x10000, 0x18000);
    assert_eq!(index.meets(0x10000, 0x8000), Some(false));
}

#[test]
fn a_full_index_loses_addresses_and_never_invents_them() {
    let index = RangeIndex::<3>::new();
    for i in 0..3 {
        assert_eq!(index.insert(i * 0x10000, i * 0x10000 + 0x1000), Change::Published);
    }
    // A fourth separate range does not fit: not indexed, counted.
    assert_eq!(index.insert(0x80000, 0x81000), Change::Dropped);
    assert_eq!(index.dropped(), 1);
    assert_eq!(index.meets(0x80000, 1), Some(false));
    // One that merges still fits.
    assert_eq!(index.insert(0x1000, 0x2000), Change::Published);
    assert_eq!(ranges(&index), [(0x0, 0x2000), (0x10000, 0x11000), (0x20000, 0x21000)]);
    // A split with no room drops the last range, never keeps the removed part.
    assert_eq!(index.remove(0x800, 0x1000), Change::Dropped);
    assert_eq!(index.dropped(), 2);
    assert_eq!(ranges(&index), [(0x0, 0x800), (0x1000, 0x2000), (0x10000, 0x11000)]);
    assert_eq!(index.meets(0x800, 0x800), Some(false));
    assert_eq!(index.len(), 3);
    assert_eq!(index.capacity(), 3);
}

/// A tiny reference model: a sorted list of byte ranges merged on insert.
#[test]
fn random_operations_match_a_page_bitmap() {
    let index = RangeIndex::<64>::new();
    let mut pages = [false; 256];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let a = (next() % 256) as usize;
        let b = (a + 1 + (next() % 16) as usize).min(256);
        if next() % 3 == 0 {
            index.remove(a << 12, b << 12);
            pages[a..b].iter_mut().for_each(|p| *p = false);
        } else {
            assert_ne!(index.insert(a << 12, b << 12), Change::Dropped, "64 ranges always fit 256 pages' gaps");
            pages[a..b].iter_mut().for_each(|p| *p = true);
        }
        let r = ranges(&index);
        assert!(r.windows(2).all(|w| w[0].1 < w[1].0), "sorted, disjoint, not touching: {r:x?}");
        for (i, p) in pages.iter().enumerate() {
            assert_eq!(index.meets(i << 12, 4096), Some(*p), "page {i}");
        }
    }
}

#[test]
fn concurrent_readers_see_the_old_or_the_new_state() {
    // The writer cycles through states whose ranges differ at both ends;
    // a reader mixing them would see a start of one with an end of the other.
    const N: usize = 64;
    let index = Arc::new(RangeIndex::<{ 2 * N }>::new());
    let base = |i: usize| 0x100_0000 + i * 0x10000;
    let state_a: Vec<(usize, usize)> = (0..N).map(|i| (base(i), base(i) + 0x1000)).collect();
    let state_b: Vec<(usize, usize)> = (0..N).map(|i| (base(i) + 0x100, base(i) + 0x2000)).collect();
    // Three states, so that each buffer is rewritten with a different one
    // each time (with two, a buffer would always get the same state back).
    let state_c: Vec<(usize, usize)> = (0..N).map(|i| (base(i) + 0x200, base(i) + 0x3000)).collect();
    for &(s, e) in &state_a {
        index.insert(s, e);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|t| {
            let (index, stop) = (index.clone(), stop.clone());
            let (a, b, c) = (state_a.clone(), state_b.clone(), state_c.clone());
            std::thread::spawn(move || {
                let (mut seen, mut unknown) = (0u64, 0u64);
                let mut i = t;
                while !stop.load(Relaxed) {
                    i = (i + 7) % N;
                    match index.range_at(base(i) + 0x800) {
                        Ok(Some(r)) => {
                            assert!(r == a[i] || r == b[i] || r == c[i], "torn range {r:x?} at {i}");
                            seen += 1;
                        }
                        Ok(None) => panic!("range {i} vanished: every state has it"),
                        Err(()) => unknown += 1,
                    }
                    let mut snap = [(0, 0); 2 * N];
                    if let Some(n) = index.snapshot(&mut snap) {
                        assert!(
                            snap[..n] == a[..] || snap[..n] == b[..] || snap[..n] == c[..],
                            "a snapshot mixed states"
                        );
                    }
                    // A slow reader, overtaken by writers between its loads
                    // of a range's start and end: it must retry, not mix.
                    let delay = i * 37 % 2000;
                    let slow = index.read(|buf, n| {
                        let start = buf.starts[i.min(n.saturating_sub(1))].load(Relaxed);
                        let t = std::time::Instant::now();
                        while t.elapsed().as_nanos() < delay as u128 {
                            core::hint::spin_loop();
                        }
                        (start, buf.ends[i.min(n.saturating_sub(1))].load(Relaxed))
                    });
                    match slow {
                        Some(r) => {
                            assert!(r == a[i] || r == b[i] || r == c[i], "a slow reader saw a torn range {r:x?} at {i}")
                        }
                        None => unknown += 1,
                    }
                }
                (seen, unknown)
            })
        })
        .collect();
    let mut flips = 0;
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_millis(1500) {
        // Each state is published whole (going from A to B by removals and
        // inserts would publish states in between).
        let to = [&state_b, &state_c, &state_a][flips % 3];
        index.publish(|_, _, out| to.iter().for_each(|&(s, e)| out.push(s, e)));
        flips += 1;
    }
    stop.store(true, Relaxed);
    let (mut total, mut unknown) = (0, 0);
    for r in readers {
        let (seen, gave_up) = r.join().unwrap();
        total += seen;
        unknown += gave_up;
    }
    eprintln!("{flips} flips, {total} consistent lookups, {unknown} given up");
    assert!(flips > 1000 && total > 1000, "{flips} flips, {total} lookups");
}
