//! The pool's lease and part claiming under schedule perturbation
//! ([`crate::chaos`]): every part of every job is done exactly once, by
//! whoever claims it, and a job ended early does exactly the parts it
//! reports.

use super::*;
use crate::chaos::{Enabled, within};
use core::time::Duration;

/// A run takes seconds; a hang (a count that overshoots, a lost wake-up) fails.
const WATCHDOG: Duration = Duration::from_secs(60);
use crate::split::Split;

/// Which parts ran: `do_part` notes the destination of each part here while
/// a test collects (keys are addresses, so concurrent tests with their own
/// buffers do not mix).
pub(super) mod parts {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::Ordering::SeqCst;

    static SEEN: Mutex<Option<HashMap<usize, u32>>> = Mutex::new(None);
    /// The destination buffers the test watches: other tests' parts are
    /// not noted.
    static WATCHED: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

    fn seen() -> std::sync::MutexGuard<'static, Option<HashMap<usize, u32>>> {
        SEEN.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn watched() -> std::sync::MutexGuard<'static, Vec<(usize, usize)>> {
        WATCHED.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Buffers watched now: while none is, `note` takes no lock (other
    /// tests' copies run at full speed).
    static WATCHING: AtomicUsize = AtomicUsize::new(0);

    /// Notes the parts done in `buf` from now on.
    pub fn watch(buf: &[u8]) {
        watched().push((buf.as_ptr() as usize, buf.len()));
        WATCHING.fetch_add(1, SeqCst);
    }

    /// Stops noting parts done in `buf`.
    pub fn unwatch(buf: &[u8]) {
        watched().retain(|w| w.0 != buf.as_ptr() as usize);
        WATCHING.fetch_sub(1, SeqCst);
    }

    /// A part is being done at `dst`.
    pub fn note(dst: *mut u8, _n: usize) {
        if WATCHING.load(SeqCst) == 0 {
            return;
        }
        let at = dst as usize;
        if !watched().iter().any(|(start, len)| (*start..start + len).contains(&at)) {
            return;
        }
        if let Some(map) = seen().as_mut() {
            *map.entry(at).or_default() += 1;
        }
    }

    /// Starts collecting.
    pub fn collect() {
        *seen() = Some(HashMap::new());
    }

    /// How often a part was done at `dst`, forgetting it.
    pub fn take(dst: usize) -> u32 {
        seen().as_mut().and_then(|m| m.remove(&dst)).unwrap_or(0)
    }

    /// Stops collecting; what was noted and never taken.
    pub fn stop() -> usize {
        seen().take().map_or(0, |m| m.len())
    }
}

fn pool(workers: u32) -> &'static Pool {
    let pool: &'static Pool = Box::leak(Box::new(Pool::new()));
    pool.configure(workers, Wait::SpinThenSleep);
    pool.perturbed.store(true, core::sync::atomic::Ordering::Relaxed);
    pool.ensure_started().unwrap();
    pool
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn lease(pool: &'static Pool) -> Lease {
    loop {
        match pool.lease() {
            Ok(lease) => return lease,
            Err(PoolError::Saturated) => ipc_offload_sys::sched_yield(),
            Err(e) => panic!("{e:?}"),
        }
    }
}

const PART: usize = 4096;

#[test]
fn every_part_is_done_exactly_once_under_perturbation() {
    let chaos = Enabled::new("every_part_is_done_exactly_once_under_perturbation");
    let seed = chaos.seed;
    within(WATCHDOG, move || every_part_once(seed));
}

fn every_part_once(seed: u64) {
    let pool = pool(3);
    parts::collect();
    let callers: Vec<_> = (0..3u64)
        .map(|caller| {
            let seed = seed ^ (caller + 1).wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
            std::thread::spawn(move || {
                crate::chaos::join();
                let mut rng = Rng(seed);
                for round in 0..200 {
                    let parts = 1 + rng.below(48) as usize;
                    let len = parts * PART - rng.below(PART as u64) as usize;
                    let src: Vec<u8> = (0..len).map(|i| (i as u64 ^ seed ^ round) as u8).collect();
                    let mut dst = vec![0u8; len];
                    let job = Job {
                        dst: dst.as_mut_ptr(),
                        src: src.as_ptr(),
                        len,
                        split: Split { part: PART, parts: parts as u32 },
                        class: Class::Memcpy,
                        op: Op::Copy,
                    };
                    let wait = Wait::ALL[rng.below(Wait::ALL.len() as u64) as usize];
                    parts::watch(&dst);
                    let lease = lease(pool);
                    // SAFETY: two live vectors of len bytes, disjoint.
                    unsafe { lease.run(&job, wait, rng.below(4) as u32) }.unwrap();
                    drop(lease);
                    assert!(dst == src, "caller {caller} round {round}: bytes");
                    for i in 0..parts {
                        let at = dst.as_ptr() as usize + i * PART;
                        assert_eq!(parts::take(at), 1, "caller {caller} round {round}: part {i} of {parts}");
                    }
                    parts::unwatch(&dst);
                }
            })
        })
        .collect();
    for c in callers {
        c.join().unwrap();
    }
    assert_eq!(parts::stop(), 0, "parts done outside any job");
}

#[test]
fn a_job_ended_early_did_exactly_the_parts_it_reports() {
    let chaos = Enabled::new("a_job_ended_early_did_exactly_the_parts_it_reports");
    let seed = chaos.seed;
    within(WATCHDOG, move || ended_early(seed));
}

fn ended_early(seed: u64) {
    let pool = pool(2);
    parts::collect();
    let mut rng = Rng(seed);
    for round in 0..400u64 {
        let parts = 1 + rng.below(32) as usize;
        let len = parts * PART;
        let src: Vec<u8> = (0..len).map(|i| (i as u64 ^ round) as u8 | 1).collect();
        let mut dst = vec![0u8; len];
        let job = Job {
            dst: dst.as_mut_ptr(),
            src: src.as_ptr(),
            len,
            split: Split { part: PART, parts: parts as u32 },
            class: Class::Memcpy,
            op: Op::Copy,
        };
        parts::watch(&dst);
        let lease = lease(pool);
        // SAFETY: both vectors live until `finish` returns below.
        unsafe { lease.start(&job, 2) };
        for _ in 0..rng.below(20_000) {
            core::hint::spin_loop();
        }
        let taken = lease.finish(Wait::ALL[rng.below(Wait::ALL.len() as u64) as usize]).unwrap() as usize;
        drop(lease);
        assert!(taken <= parts);
        for i in 0..parts {
            let at = dst.as_ptr() as usize + i * PART;
            let expected = u32::from(i < taken);
            assert_eq!(parts::take(at), expected, "round {round}: part {i}, {taken} of {parts} reported done");
            let range = &dst[i * PART..(i + 1) * PART];
            if i < taken {
                assert!(range == &src[i * PART..(i + 1) * PART], "round {round}: part {i} copied");
            } else {
                assert!(range.iter().all(|b| *b == 0), "round {round}: part {i} untouched");
            }
        }
        parts::unwatch(&dst);
    }
    assert_eq!(parts::stop(), 0, "parts done outside any job");
}
