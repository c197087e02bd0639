//! The async-cpu engine: a large copy is cut into parts that the caller and
//! the pool's workers copy at the same time. Overlapping moves run as waves
//! (see [`crate::split`]); anything the pool cannot take is copied by the
//! caller with libc, and the outcome says why.

use crate::cpu::cpu_move;
use crate::kinds::{CopyOptions, EngineId, Fallback, Outcome};
use crate::pool::{Job, Lease, Op, Pool, PoolError};
use crate::split::{self, Layout};
use ipc_offload_sys::real;

/// Copies with memmove semantics through `pool`.
///
/// # Safety
/// As memmove(3).
pub unsafe fn copy(pool: &'static Pool, dst: *mut u8, src: *const u8, len: usize, opts: &CopyOptions) -> Outcome {
    let layout = split::layout(dst as usize, src as usize, len);
    if layout == Layout::TooClose {
        // SAFETY: forwarded memmove contract.
        unsafe { real::move_bytes(dst, src, len) };
        return Outcome::fell_back(Fallback::OverlapClose);
    }
    let lease = match pool.ensure_started().and_then(|()| pool.lease()) {
        Ok(lease) => lease,
        Err(e) => {
            // SAFETY: forwarded memmove contract.
            unsafe { cpu_move(dst, src, len) };
            return Outcome::fell_back(match e {
                PoolError::Saturated => Fallback::PoolSaturated,
                PoolError::Unavailable => Fallback::PoolUnavailable,
            });
        }
    };
    let helpers = opts.helpers.min(pool.workers());
    let shape = Shape {
        agents: helpers + 1,
        streaming: opts.bypass(len),
        chunk: opts.chunk_bytes,
        class: opts.class,
        wait: opts.wait,
    };
    match layout {
        Layout::Waves { stride, descending } => {
            let mut forked = false;
            for (offset, n) in split::waves(len, stride, descending) {
                // SAFETY: each wave lies inside both regions, and within a
                // wave destination and source are disjoint (split's proof).
                unsafe {
                    let (wave_dst, wave_src) = (dst.add(offset), src.add(offset));
                    if forked {
                        real::copy(wave_dst, wave_src, n);
                    } else {
                        forked = run(&lease, wave_dst, wave_src, n, &shape).is_err();
                    }
                }
            }
        }
        // SAFETY: disjoint regions, per the caller's contract and `layout`.
        _ => unsafe {
            let _ = run(&lease, dst, src, len, &shape);
        },
    }
    Outcome::done_by(EngineId::AsyncCpu).bypassing(shape.streaming)
}

/// How every job of one copy is run.
struct Shape {
    agents: u32,
    streaming: bool,
    /// The largest part.
    chunk: usize,
    class: ipc_offload_policy::Class,
    wait: ipc_offload_policy::Wait,
}

/// Runs one disjoint job on the lease.
///
/// # Safety
/// As memcpy(3) for the job's range.
unsafe fn run(
    lease: &Lease,
    dst: *mut u8,
    src: *const u8,
    len: usize,
    shape: &Shape,
) -> Result<(), crate::pool::Forked> {
    let split = split::split(len, shape.agents).capped(len, shape.chunk);
    let op = if shape.streaming { Op::Stream } else { Op::Copy };
    let job = Job { dst, src, len, split, class: shape.class, op };
    // SAFETY: forwarded contract.
    unsafe { lease.run(&job, shape.wait, shape.agents - 1) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc_offload_policy::{Class, Wait};

    fn pool() -> &'static Pool {
        let pool: &'static Pool = Box::leak(Box::new(Pool::new()));
        pool.configure(2, Wait::SpinThenSleep);
        pool
    }

    fn opts() -> CopyOptions {
        CopyOptions {
            engine: EngineId::AsyncCpu,
            class: Class::Memcpy,
            wait: Wait::SpinThenSleep,
            helpers: 2,
            cache_below: usize::MAX,
            chunk_bytes: usize::MAX,
            depth: 16,
            cpu_share: None,
        }
    }

    /// memmove through the engine, checked against slice::copy_within.
    fn check_move(p: &'static Pool, total: usize, from: usize, to: usize, len: usize) -> Outcome {
        let orig: Vec<u8> = (0..total).map(|i| (i * 131 + i / 4093) as u8).collect();
        let mut want = orig.clone();
        want.copy_within(from..from + len, to);
        let mut buf = orig;
        let base = buf.as_mut_ptr();
        // SAFETY: both ranges lie inside `buf`.
        let outcome = unsafe { copy(p, base.add(to), base.add(from), len, &opts()) };
        assert!(buf == want, "from={from} to={to} len={len} outcome={outcome:?}");
        outcome
    }

    #[test]
    fn overlapping_moves_in_both_directions() {
        let p = pool();
        let len = 8 << 20;
        for distance in [split::MIN_WAVE, split::MIN_WAVE + 4097, 3 << 20, len - 1] {
            let up = check_move(p, len + distance, 0, distance, len);
            let down = check_move(p, len + distance, distance, 0, len);
            assert_eq!(up, Outcome::done_by(EngineId::AsyncCpu));
            assert_eq!(down, Outcome::done_by(EngineId::AsyncCpu));
        }
    }

    #[test]
    fn close_overlap_goes_to_memmove() {
        let p = pool();
        for distance in [1usize, 63, 4096, split::MIN_WAVE - 1] {
            assert_eq!(
                check_move(p, (2 << 20) + distance, 0, distance, 2 << 20),
                Outcome::fell_back(Fallback::OverlapClose)
            );
            assert_eq!(
                check_move(p, (2 << 20) + distance, distance, 0, 2 << 20),
                Outcome::fell_back(Fallback::OverlapClose)
            );
        }
        assert_eq!(check_move(p, 2 << 20, 0, 0, 2 << 20), Outcome::fell_back(Fallback::OverlapClose));
    }

    #[test]
    fn chunk_bytes_caps_the_parts_and_the_bytes_stay_exact() {
        let p = pool();
        let small = CopyOptions { chunk_bytes: 128 << 10, ..opts() };
        let len = (9 << 20) + 5;
        assert_eq!(split::split(len, 3).capped(len, small.chunk_bytes).part, 128 << 10);
        let orig: Vec<u8> = (0..(20usize << 20)).map(|i| (i * 31 + i / 4093) as u8).collect();
        let mut buf = orig.clone();
        let base = buf.as_mut_ptr();
        // SAFETY: both ranges lie inside `buf` and are disjoint.
        let outcome = unsafe { copy(p, base.add(10 << 20), base.add(3), len, &small) };
        assert_eq!(outcome, Outcome::done_by(EngineId::AsyncCpu));
        assert!(buf[10 << 20..(10 << 20) + len] == orig[3..3 + len]);
        assert!(buf[..10 << 20] == orig[..10 << 20]);
    }

    #[test]
    fn disjoint_unaligned_copies() {
        let p = pool();
        for (from, to, len) in [(1usize, (64 << 20) + 3, 5 << 20), ((40 << 20) + 7, 5, (9 << 20) + 1)] {
            assert_eq!(check_move(p, 80 << 20, from, to, len), Outcome::done_by(EngineId::AsyncCpu));
        }
    }

    #[test]
    fn streaming_copies_and_moves_are_exact() {
        let p = pool();
        let streaming = CopyOptions { cache_below: 1 << 20, ..opts() };
        for (total, from, to, len) in
            [(40usize << 20, 3usize, (20 << 20) + 5, (9 << 20) + 7), (12 << 20, 0, 3 << 20, 9 << 20)]
        {
            let orig: Vec<u8> = (0..total).map(|i| (i * 29 + i / 4099) as u8).collect();
            let mut want = orig.clone();
            want.copy_within(from..from + len, to);
            let mut buf = orig;
            let base = buf.as_mut_ptr();
            // SAFETY: both ranges lie inside `buf`.
            let outcome = unsafe { copy(p, base.add(to), base.add(from), len, &streaming) };
            assert_eq!(outcome, Outcome::done_by(EngineId::AsyncCpu).bypassing(true));
            assert!(buf == want, "total={total} from={from} to={to}");
        }
    }

    #[test]
    fn a_pool_with_every_slot_leased_falls_back() {
        let p = pool();
        let leases: Vec<_> = (0..crate::pool::SLOTS).map(|_| p.lease().unwrap()).collect();
        assert_eq!(check_move(p, 4 << 20, 0, 2 << 20, 1 << 20), Outcome::fell_back(Fallback::PoolSaturated));
        drop(leases);
        assert_eq!(check_move(p, 4 << 20, 0, 2 << 20, 1 << 20), Outcome::done_by(EngineId::AsyncCpu));
    }

    #[test]
    fn a_pool_that_cannot_start_falls_back() {
        let p: &'static Pool = Box::leak(Box::new(Pool::new()));
        p.configure(1, Wait::Sleep);
        p.force_failed();
        assert_eq!(check_move(p, 4 << 20, 0, 2 << 20, 1 << 20), Outcome::fell_back(Fallback::PoolUnavailable));
    }
}
