//! The `dsa` and `hybrid` engines: copies (and memset, memcmp) through
//! the process's DSA device from the `ipc-offload-dsa` crate, alone or with
//! the caller copying a tuned share; without a device, the `async-cpu`
//! engine (counted `dsa-unavailable`).

use core::sync::atomic::AtomicU32;
use core::sync::atomic::Ordering::Relaxed;
use core::time::Duration;

use ipc_offload_dsa::copy;
use ipc_offload_dsa::counters::COUNTERS;
use ipc_offload_dsa::open::active;
use ipc_offload_dsa::options::Options;
use ipc_offload_policy::Class;
use ipc_offload_sys::real::REAL;

use crate::cpu::cpu_move;
use crate::kinds::{CopyOptions, EngineId, Fallback, Outcome};
use crate::{async_cpu, pool, split};

/// The device's options shaped by a class's copy options for an operation
/// of `len` bytes: the cache-control flag unless the copy bypasses the
/// cache, the class's descriptor size and depth.
pub fn shaped(device: &Options, opts: &CopyOptions, len: usize) -> Options {
    Options { cache_control: !opts.bypass(len), chunk: opts.chunk_bytes, depth: opts.depth as usize, ..*device }
}

/// The `dsa` engine: copies through the process's device, with memmove
/// semantics; the class's `cache_inject` asks for the cache-control flag
/// (set only where the device supports it). Overlapping moves go to libc's memmove
/// (`overlap-close`). Without a device (its open failed, or another thread
/// is opening it), the `async-cpu` engine copies, counted `dsa-unavailable`.
///
/// # Safety
/// As memmove(3).
pub unsafe fn copy(dst: *mut u8, src: *const u8, len: usize, opts: &CopyOptions) -> Outcome {
    let Some(active) = active() else {
        // SAFETY: forwarded contract.
        return unsafe { without_device(dst, src, len, opts) };
    };
    if split::overlap(dst as usize, src as usize, len) {
        // Descriptors in flight together must be disjoint, and a single one
        // that stops part-way has overwritten part of its own source.
        // SAFETY: forwarded contract.
        unsafe { cpu_move(dst, src, len) };
        return Outcome::fell_back(Fallback::OverlapClose);
    }
    let options = shaped(&active.options, opts, len);
    // SAFETY: forwarded contract (disjoint, or one descriptor).
    let report = unsafe { copy::copy(active.queues(), dst, src, len, &options) };
    COUNTERS.add(&report);
    if report.cpu_bytes == len as u64 {
        Outcome::fell_back(Fallback::DsaError)
    } else {
        Outcome::done_by(EngineId::Dsa).bypassing(!options.cache_control)
    }
}

/// The hybrid engine's CPU share of each class's copies while `auto`, in
/// thousandths: tuned after every copy, shown in the stats.
static SHARES: [AtomicU32; Class::COUNT] = [const { AtomicU32::new(SHARE_START) }; Class::COUNT];
/// Where an `auto` share starts: a DSA device moves about three times what
/// one core copies (on the order of 30 GB/s against 10).
const SHARE_START: u32 = 250;
/// The share stays within these, so that both sides keep being measured.
const SHARE_RANGE: (u32, u32) = (50, 950);

/// memset through the process's device (MEMFILL); libc without one.
///
/// # Safety
/// As memset(3).
pub unsafe fn fill(dst: *mut u8, c: u8, len: usize, opts: &CopyOptions) -> Outcome {
    let Some(active) = active() else {
        // SAFETY: forwarded contract.
        unsafe { (REAL.memset.get())(dst.cast(), i32::from(c), len) };
        return Outcome::fell_back(Fallback::DsaUnavailable);
    };
    let options = shaped(&active.options, opts, len);
    // SAFETY: forwarded contract.
    let report = unsafe { ipc_offload_dsa::ops::fill(active.queues(), dst, c, len, &options) };
    COUNTERS.add(&report);
    if report.cpu_bytes == len as u64 {
        Outcome::fell_back(Fallback::DsaError)
    } else {
        Outcome::done_by(EngineId::Dsa)
    }
}

/// memcmp through the process's device (COMPARE): its sign, as libc's.
///
/// # Safety
/// As memcmp(3).
pub unsafe fn compare(a: *const u8, b: *const u8, len: usize) -> (Outcome, i32) {
    let Some(active) = active() else {
        // SAFETY: forwarded contract.
        let r = unsafe { (REAL.memcmp.get())(a.cast(), b.cast(), len) };
        return (Outcome::fell_back(Fallback::DsaUnavailable), r);
    };
    // SAFETY: forwarded contract.
    let (report, sign) = unsafe { ipc_offload_dsa::ops::compare(active.queues(), a, b, len, &active.options) };
    COUNTERS.add(&report);
    let outcome = if report.cpu_bytes == len as u64 {
        Outcome::fell_back(Fallback::DsaError)
    } else {
        Outcome::done_by(EngineId::Dsa)
    };
    (outcome, sign)
}

/// The CPU share `class`'s hybrid copies use now, in thousandths.
pub fn cpu_share(class: Class, fixed: Option<u16>) -> u32 {
    fixed.map_or_else(|| SHARES[class.index()].load(Relaxed), u32::from)
}

/// The `hybrid` engine: the caller copies `opts.cpu_share` of each copy
/// (or the tuned share) while the device copies the rest. Without a device,
/// the `async-cpu` engine; overlapping moves go to libc.
///
/// # Safety
/// As memmove(3).
pub unsafe fn copy_hybrid(dst: *mut u8, src: *const u8, len: usize, opts: &CopyOptions) -> Outcome {
    let Some(active) = active() else {
        // SAFETY: forwarded contract.
        return unsafe { without_device(dst, src, len, opts) };
    };
    if split::overlap(dst as usize, src as usize, len) {
        // SAFETY: forwarded contract.
        unsafe { cpu_move(dst, src, len) };
        return Outcome::fell_back(Fallback::OverlapClose);
    }
    let share = cpu_share(opts.class, opts.cpu_share);
    let cpu_len = (len as u64 * u64::from(share) / 1000) as usize / 4096 * 4096;
    let options = shaped(&active.options, opts, len);
    // SAFETY: forwarded contract; the buffers are disjoint (checked).
    let report = unsafe { copy::copy_shared(active.queues(), dst, src, len, cpu_len, &options) };
    COUNTERS.add(&report);
    if opts.cpu_share.is_none() {
        let next = next_share(share, cpu_len, len - cpu_len, report.cpu_time, report.waited);
        SHARES[opts.class.index()].store(next, Relaxed);
    }
    Outcome::done_by(EngineId::Hybrid).bypassing(!options.cache_control)
}

/// A copy of the `dsa` or `hybrid` engine without a device: `async-cpu`,
/// counted `dsa-unavailable`.
///
/// # Safety
/// As memmove(3).
unsafe fn without_device(dst: *mut u8, src: *const u8, len: usize, opts: &CopyOptions) -> Outcome {
    // SAFETY: forwarded contract.
    let outcome = unsafe { async_cpu::copy(&pool::POOL, dst, src, len, opts) };
    Outcome { fallback: outcome.fallback.or(Some(Fallback::DsaUnavailable)), ..outcome }
}

/// The next `auto` share after a copy in which the caller copied `cpu_len`
/// bytes in `cpu_time` while the device copied `dev_len`, then waited
/// `waited` for the device. When the caller waited, both rates are known
/// and the share that would have made both sides end together is the
/// target; when it did not, the device kept up and gets a tenth more.
/// Moves a quarter of the way each time (copies vary).
pub fn next_share(share: u32, cpu_len: usize, dev_len: usize, cpu_time: Duration, waited: Duration) -> u32 {
    let target = if cpu_len > 0 && dev_len > 0 && waited > cpu_time / 16 && !cpu_time.is_zero() {
        let cpu_rate = cpu_len as f64 / cpu_time.as_secs_f64();
        let dev_rate = dev_len as f64 / (cpu_time + waited).as_secs_f64();
        (1000.0 * cpu_rate / (cpu_rate + dev_rate)) as u32
    } else {
        share * 9 / 10
    };
    ((3 * share + target) / 4).clamp(SHARE_RANGE.0, SHARE_RANGE.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc_offload_dsa::model::{Model, ModelConfig, Slowdown};
    use ipc_offload_dsa::options::OnFault;
    use ipc_offload_dsa::work_queue::{Portal, Queue};

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_share_follows_the_slower_side_and_stays_in_range() {
        // The caller waited as long as it copied, for three times its bytes:
        // the device is 1.5x the CPU's rate: 40% is where both end together.
        let s = next_share(250, 1 << 20, 3 << 20, 10 * MS, 10 * MS);
        assert!(s > 250, "{s}");
        assert_eq!(s, (3 * 250 + 400) / 4);
        // No wait: the device kept up, and gets more.
        assert!(next_share(250, 1 << 20, 3 << 20, 10 * MS, Duration::ZERO) < 250);
        assert_eq!(next_share(50, 1, 1, MS, Duration::ZERO), 50, "the floor");
        assert_eq!(next_share(950, 1 << 30, 1, MS, 100 * MS), 950, "the ceiling");
    }

    #[test]
    fn a_slowed_device_gets_a_smaller_share_of_each_copy() {
        let len = 16 << 20;
        let src: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut dst = vec![0u8; len];
        let mut shares = Vec::new();
        for factor in [1, 24] {
            let config = ModelConfig { size: 16, max_transfer_size: 1 << 20, ..ModelConfig::default() };
            let model = Model::start(config).unwrap();
            model.set_slowdown(Slowdown { factor, ..Slowdown::default() });
            let queue = Queue::new(Portal::Ring(model.portal()), 16, 1 << 20, false);
            let options = Options { cache_control: false, on_fault: OnFault::Resubmit, ..Options::DEFAULT };
            let mut share = SHARE_START;
            for _ in 0..12 {
                let cpu_len = len * share as usize / 1000 / 4096 * 4096;
                dst.fill(0);
                // SAFETY: two distinct live buffers of `len` bytes.
                let r = unsafe {
                    copy::copy_shared(
                        core::slice::from_ref(&queue),
                        dst.as_mut_ptr(),
                        src.as_ptr(),
                        len,
                        cpu_len,
                        &options,
                    )
                };
                assert!(dst == src);
                share = next_share(share, cpu_len, len - cpu_len, r.cpu_time, r.waited);
            }
            shares.push(share);
        }
        assert!(shares[1] > shares[0], "the CPU share with the device slowed 24x: {shares:?}");
    }
}
