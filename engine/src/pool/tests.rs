use super::*;
use crate::split;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// A pool of its own for each test, leaked to get the `'static` the
/// workers need.
fn pool(workers: u32, idle: Wait) -> &'static Pool {
    let pool: &'static Pool = Box::leak(Box::new(Pool::new()));
    pool.configure(workers, idle);
    pool.ensure_started().unwrap();
    pool
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn run_job(pool: &'static Pool, src: &[u8], dst: &mut [u8], agents: u32, wait: Wait) {
    run_job_as(pool, src, dst, agents, wait, Class::Memcpy);
}

fn run_job_as(pool: &'static Pool, src: &[u8], dst: &mut [u8], agents: u32, wait: Wait, class: Class) {
    let lease = pool.lease().unwrap();
    let job = Job {
        dst: dst.as_mut_ptr(),
        src: src.as_ptr(),
        len: src.len(),
        split: split::split(src.len(), agents),
        class,
        op: Op::Copy,
    };
    // SAFETY: two distinct live vectors of job.len bytes.
    unsafe { lease.run(&job, wait, agents - 1) }.unwrap();
}

#[test]
fn every_wait_method_copies_every_byte() {
    let p = pool(2, Wait::SpinThenSleep);
    for wait in Wait::ALL {
        for len in [1usize, 4096, split::MIN_PART + 1, (3 << 20) + 17] {
            let src = pattern(len, len as u64);
            let mut dst = vec![0u8; len];
            run_job(p, &src, &mut dst, 3, *wait);
            assert!(dst == src, "wait={wait} len={len}");
        }
    }
}

#[test]
fn workers_take_parts() {
    // Counted under the pipe class, which no other test of this binary
    // uses: the worker bytes seen here are this pool's.
    let p = pool(1, Wait::Spin);
    let before = stats::counters(Class::Pipe).snapshot().worker_bytes;
    let src = pattern(32 << 20, 3);
    let mut dst = vec![0u8; src.len()];
    // Many parts: the caller cannot claim them all before the woken worker
    // starts. Repeat to be independent of scheduling luck.
    for _ in 0..20 {
        run_job_as(p, &src, &mut dst, 2, Wait::Spin, Class::Pipe);
        if stats::counters(Class::Pipe).snapshot().worker_bytes > before {
            break;
        }
    }
    assert!(dst == src);
    assert!(stats::counters(Class::Pipe).snapshot().worker_bytes > before, "no worker ever copied a part");
    assert_eq!(p.workers(), 1);
}

#[test]
fn zero_workers_means_the_caller_copies_alone() {
    let p = pool(0, Wait::Sleep);
    let src = pattern(1 << 20, 9);
    let mut dst = vec![0u8; src.len()];
    run_job(p, &src, &mut dst, 4, Wait::Sleep);
    assert!(dst == src);
    assert_eq!(p.workers(), 0);
}

#[test]
fn many_threads_share_a_small_pool() {
    let p = pool(2, Wait::SpinThenSleep);
    let threads: Vec<_> = (0..64u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut saturated = 0;
                for round in 0..4u64 {
                    let len = (1 << 20) + (t as usize * 4099) + round as usize;
                    let src = pattern(len, t * 100 + round);
                    let mut dst = vec![0u8; len];
                    match p.lease() {
                        Ok(lease) => {
                            let job = Job {
                                dst: dst.as_mut_ptr(),
                                src: src.as_ptr(),
                                len,
                                split: split::split(len, 3),
                                class: Class::Memcpy,
                                op: if t % 2 == 0 { Op::Stream } else { Op::Copy },
                            };
                            // SAFETY: distinct live vectors of `len` bytes.
                            unsafe { lease.run(&job, Wait::SpinThenSleep, 2) }.unwrap();
                        }
                        Err(PoolError::Saturated) => {
                            saturated += 1;
                            dst.copy_from_slice(&src);
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                    assert!(dst == src, "thread {t} round {round}");
                }
                saturated
            })
        })
        .collect();
    let saturated: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    // 64 slots for 64 threads: nobody should have been turned away.
    assert_eq!(saturated, 0);
    assert_eq!(p.free.load(Relaxed), u64::MAX, "a slot leaked");
}

#[test]
fn the_65th_lease_is_refused_and_slots_come_back() {
    let p = pool(0, Wait::Sleep);
    let leases: Vec<_> = (0..SLOTS).map(|_| p.lease().unwrap()).collect();
    assert_eq!(p.lease().unwrap_err(), PoolError::Saturated);
    drop(leases);
    assert!(p.lease().is_ok());
}

/// A caller waits on a part that a "worker" claimed and will never finish
/// (that worker does not exist in a fork child). When the pool is reset as
/// in a fork child, the caller must notice, finish alone, and return.
#[test]
fn caller_survives_a_reset_while_waiting() {
    let p = pool(0, Wait::Sleep);
    let len = 64 << 20;
    let src = pattern(len, 77);
    // The caller may claim every part before the thief gets one; try again
    // until the thief has stolen a part (nearly always the first attempt).
    for _attempt in 0..50 {
        let lease = p.lease().unwrap();
        let slot: &'static Slot = &p.slots[lease.index];
        let stolen = Arc::new(AtomicBool::new(false));
        let finished = Arc::new(AtomicBool::new(false));
        let thief = {
            let (stolen, finished) = (Arc::clone(&stolen), Arc::clone(&finished));
            std::thread::spawn(move || {
                while !finished.load(SeqCst) {
                    let claim = slot.claim.load(Acquire);
                    let index = claim as u32;
                    if index < slot.parts.load(Acquire)
                        && slot.claim.compare_exchange(claim, claim + 1, AcqRel, Relaxed).is_ok()
                    {
                        // Claimed and never completed: like a worker lost to fork.
                        stolen.store(true, SeqCst);
                        std::thread::sleep(Duration::from_millis(30));
                        p.reset_after_fork();
                        return;
                    }
                    core::hint::spin_loop();
                }
            })
        };
        let mut dst = vec![0u8; len];
        let job = Job {
            dst: dst.as_mut_ptr(),
            src: src.as_ptr(),
            len,
            split: split::split(len, 2),
            class: Class::Memcpy,
            op: Op::Copy,
        };
        // SAFETY: distinct live buffers of `len` bytes.
        let result = unsafe { lease.run(&job, Wait::Sleep, 1) };
        finished.store(true, SeqCst);
        thief.join().unwrap();
        assert!(dst == src);
        drop(lease);
        assert_eq!(p.free.load(Relaxed), u64::MAX, "a slot leaked");
        if stolen.load(SeqCst) {
            assert_eq!(result, Err(Forked));
            return;
        }
        assert_eq!(result, Ok(()));
    }
    panic!("the thief never got a part");
}

#[test]
fn reset_returns_the_pool_to_unstarted() {
    let p = pool(1, Wait::Sleep);
    assert_eq!(p.state.load(Relaxed), RUNNING);
    let _lease = p.lease().unwrap();
    p.reset_after_fork();
    assert_eq!(p.state.load(Relaxed), NOT_STARTED);
    assert_eq!(p.workers(), 0);
    assert_eq!(p.free.load(Relaxed), u64::MAX);
}

#[test]
fn a_started_populate_job_is_done_by_workers_and_finish_withdraws_the_rest() {
    let p = pool(1, Wait::Sleep);
    let len = 64usize << 20;
    let mut buf = vec![0u8; len];
    let lease = p.lease().unwrap();
    let part = 2usize << 20;
    let job = Job {
        dst: buf.as_mut_ptr(),
        src: core::ptr::null(),
        len,
        split: split::Split { part, parts: (len / part) as u32 },
        class: Class::Pipe,
        op: Op::Populate,
    };
    // SAFETY: `buf` is ours and stays alive until finish returns.
    unsafe { lease.start(&job, 1) };
    // The worker takes parts while this thread does nothing: wait for some.
    let start = Instant::now();
    while p.slots[lease.index].done.load(Acquire) < 2 && start.elapsed() < Duration::from_secs(10) {
        std::thread::yield_now();
    }
    let done = lease.finish(Wait::SpinThenSleep).unwrap();
    assert!((2..=job.split.parts).contains(&done), "{done}");
    // No part is taken after finish: the count stays.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(p.slots[lease.index].done.load(Acquire), done);
    assert!(buf.iter().all(|b| *b == 0), "a populate changes no byte");
    drop(lease);
    // The slot serves an ordinary copy afterwards.
    let src = pattern(3 << 20, 7);
    let mut dst = vec![0u8; src.len()];
    run_job(p, &src, &mut dst, 2, Wait::SpinThenSleep);
    assert!(dst == src);
}
