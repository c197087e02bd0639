//! The cost of the `shm` class's region lookup, which every memcpy-family
//! call at or above the threshold pays, and of an index update, which
//! every mmap, munmap and mremap pays while the class is on.
//!
//!     cargo build --release && target/release/shm-lookup-bench [--quick]
//!
//! In this process (no preload), on the library's own code: the process's
//! index (`ipc_offload_regions::INDEX`, 4096 ranges at most) holding N
//! separate ranges, then
//!
//! - `lookup`: `shm::copy_class(dst, src, 1 MiB)`, what the memcpy hook's
//!   slow path adds (the thresholds, the stale flag, one consistent read
//!   answering for the source and the destination), for copies that meet
//!   no range (the common case: both binary searches run to the end) and
//!   copies whose destination is in a range;
//! - `update`: one insert and one removal among the N ranges (growing one
//!   and cutting it back: each publishes a new state), through the
//!   writers' lock (what a shared mmap and its munmap add to the
//!   system calls themselves).
//!
//! Medians of 21 rounds (7 with --quick), ns per operation. Markdown on stdout.

use std::hint::black_box;
use std::time::Instant;

use ipc_offload_bench::median;
use ipc_offload_regions::{self as shm, CAPACITY, Writer};

const GAP: usize = 1 << 20;
const BASE: usize = 0x1000_0000_0000;

/// Range i: 64 KiB at BASE + i MiB.
fn range(i: usize) -> (usize, usize) {
    (BASE + i * GAP, BASE + i * GAP + (64 << 10))
}

fn fill(n: usize) {
    let w = Writer::begin().expect("no other writer");
    w.not_shared(0, usize::MAX);
    for i in 0..n {
        let (s, e) = range(i);
        w.shared(shm::Ticket::take(), (s, e), &[]);
    }
}

/// ns per call of `f`, `iters` calls per round, median of `rounds`.
fn time(rounds: usize, iters: usize, mut f: impl FnMut(usize)) -> f64 {
    let v = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for i in 0..iters {
                f(i);
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    median(v)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 7 } else { 21 };
    shm::enable(Some(64 << 10), Some(1 << 20));
    println!("| ranges | lookup, miss (ns) | lookup, hit (ns) | update: insert + remove (ns) |");
    println!("|---:|---:|---:|---:|");
    for n in [0, 1, 16, 256, 1024, CAPACITY] {
        fill(n);
        assert_eq!(shm::INDEX.len(), n);
        let private = 0x2000_0000_0000usize;
        // Addresses spread over the ranges' span, in the gaps (a miss) or in
        // a range (a hit), in an order the branch predictor cannot learn.
        let spread = |i: usize| (i.wrapping_mul(2_654_435_761) % n.max(1)) * GAP;
        let miss = time(rounds, 200_000, |i| {
            let dst = BASE + spread(i) + (512 << 10);
            black_box(shm::copy_class(black_box(dst), black_box(private), 1 << 20));
        });
        let hit = if n == 0 {
            f64::NAN
        } else {
            time(rounds, 200_000, |i| {
                let dst = BASE + spread(i) + 4096;
                let class = shm::copy_class(black_box(dst), black_box(private), 1 << 20);
                assert!(class == Some(ipc_offload_policy::Class::Shm));
            })
        };
        let update = time(rounds, if n >= 1024 { 2_000 } else { 20_000 }, |i| {
            let w = Writer::begin().expect("no other writer");
            // Touching range i's end: a merge, then a cut (both publish a
            // new state even in a full index).
            let at = range(i % n.max(1)).1;
            w.shared(shm::Ticket::take(), (at, at + 4096), &[]);
            w.not_shared(at, at + 4096);
        });
        let hit = if hit.is_nan() { "-".to_owned() } else { format!("{hit:.1}") };
        println!("| {n} | {miss:.1} | {hit} | {update:.0} |");
    }
}
