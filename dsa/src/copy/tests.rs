//! The engine's copies through the device model: every byte in place, the
//! descriptors the transfer limit implies, faults resumed both ways, errors
//! finished on the CPU, and the queue size kept across threads.

use std::sync::Arc;

use super::*;
use crate::inflight::STALL;
use crate::model::{FaultRule, Model, ModelConfig, Side};
use crate::submit::RETRIES;
use crate::work_queue::Portal;
use ipc_offload_policy::Wait;

fn model(size: u32, max_transfer: u32) -> (Arc<Model>, Queue) {
    let config = ModelConfig { size, max_transfer_size: max_transfer, ..ModelConfig::default() };
    let model = Model::start(config).expect("the model starts");
    let queue = Queue::new(Portal::Ring(model.portal()), size, max_transfer, true);
    (model, queue)
}

fn opts(on_fault: OnFault) -> Options {
    Options { cache_control: true, wait: Wait::SpinThenSleep, on_fault, ..Options::DEFAULT }
}

fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn run(queue: &Queue, src: &[u8], dst: &mut [u8], on_fault: OnFault) -> Report {
    assert_eq!(src.len(), dst.len());
    // SAFETY: two distinct live buffers of the same length.
    unsafe { copy(core::slice::from_ref(queue), dst.as_mut_ptr(), src.as_ptr(), src.len(), &opts(on_fault)) }
}

#[test]
fn a_shared_queue_that_refuses_is_retried_then_left_to_the_cpu() {
    use crate::model::Mode;
    let config = ModelConfig { mode: Mode::Shared, size: 8, max_transfer_size: 256 << 10, ..ModelConfig::default() };
    let model = Model::start(config).unwrap();
    let queue = Queue::new(Portal::ModelShared(Arc::as_ptr(&model)), 8, 256 << 10, true);
    let len = 1 << 20;
    let src = pattern(len, 23);
    // A few refusals: retried, every byte through the device.
    model.inject_retries(10);
    let mut dst = vec![0u8; len];
    let r = run(&queue, &src, &mut dst, OnFault::Resubmit);
    assert!(dst == src);
    assert_eq!((r.retries, r.cpu_bytes), (10, 0));
    // A storm of refusals: after RETRIES for one piece, the CPU copies it.
    model.inject_retries(RETRIES + 5);
    let mut dst = vec![0u8; len];
    let r = run(&queue, &src, &mut dst, OnFault::Resubmit);
    assert!(dst == src);
    assert_eq!(r.retries, RETRIES + 5);
    assert_eq!(r.cpu_bytes, 256 << 10, "one piece went to the CPU");
    model.stop();
}

#[test]
fn a_large_copy_is_cut_by_the_transfer_limit_and_every_byte_arrives() {
    let (model, queue) = model(16, 1 << 20);
    for len in [1usize, 4095, 1 << 20, (1 << 20) + 1, (37 << 20) + 123] {
        let src = pattern(len, len as u64);
        let mut dst = vec![0u8; len];
        let before = model.counters().memmove;
        let r = run(&queue, &src, &mut dst, OnFault::Resubmit);
        assert!(dst == src, "len {len}");
        let expected = len.div_ceil(1 << 20) as u64;
        assert_eq!(model.counters().memmove - before, expected, "len {len}: descriptors the device executed");
        assert_eq!((u64::from(r.descriptors), u64::from(r.completed), r.cpu_bytes), (expected, expected, 0));
    }
    assert_eq!(queue.in_flight(), 0);
    assert!(queue.high_water() <= 16 && queue.high_water() > 1, "pipelined: {}", queue.high_water());
}

#[test]
fn the_cache_control_flag_follows_the_option_and_the_device() {
    let len = 4 << 20;
    let src = pattern(len, 5);
    let mut dst = vec![0u8; len];
    for (option, device, expected) in [(true, true, 4), (false, true, 0), (true, false, 0)] {
        let config = ModelConfig { size: 8, max_transfer_size: 1 << 20, ..ModelConfig::default() };
        let model = Model::start(config).unwrap();
        let queue = Queue::new(Portal::Ring(model.portal()), 8, 1 << 20, device);
        let o = Options { cache_control: option, ..opts(OnFault::Resubmit) };
        // SAFETY: two distinct live buffers of `len` bytes.
        unsafe { copy(core::slice::from_ref(&queue), dst.as_mut_ptr(), src.as_ptr(), len, &o) };
        assert!(dst == src);
        assert_eq!(model.counters().cache_control, expected, "option {option}, device supports it {device}");
    }
}

#[test]
fn faults_at_the_first_and_last_byte_are_resumed_after_a_touch() {
    let (model, queue) = model(8, 256 << 10);
    let len = 1 << 20;
    for rule in [
        FaultRule::at(Side::Destination, 0),
        FaultRule::at(Side::Destination, (256 << 10) - 1),
        FaultRule::at(Side::Source, 0),
        FaultRule::at(Side::Source, 4096).times(3),
    ] {
        model.inject_fault(rule);
        let src = pattern(len, 7);
        let mut dst = vec![0u8; len];
        let r = run(&queue, &src, &mut dst, OnFault::Resubmit);
        assert!(dst == src, "{rule:?}");
        assert!(r.faults >= 1, "{rule:?}: {r:?}");
        assert_eq!(r.cpu_bytes, 0, "{rule:?}: resubmitted, not copied by the CPU");
        model.clear_faults();
    }
}

#[test]
fn a_fault_that_touching_does_not_clear_ends_on_the_cpu() {
    // The model keeps faulting on one destination byte: resubmitting would
    // loop forever; after three faults without progress the CPU finishes.
    let (model, queue) = model(8, 256 << 10);
    let len = 1 << 20;
    let src = pattern(len, 13);
    let mut dst = vec![0u8; len];
    let at = dst.as_ptr() as u64 + 300_000;
    model.inject_fault(FaultRule::range(at, at + 1));
    let r = run(&queue, &src, &mut dst, OnFault::Resubmit);
    assert!(dst == src);
    assert!(r.faults >= 3 && r.cpu_bytes > 0, "{r:?}");
}

#[test]
fn with_on_fault_cpu_the_rest_of_a_faulting_descriptor_is_copied_by_the_cpu() {
    let (model, queue) = model(8, 256 << 10);
    model.inject_fault(FaultRule::at(Side::Destination, 1000));
    let len = 1 << 20;
    let src = pattern(len, 9);
    let mut dst = vec![0u8; len];
    let r = run(&queue, &src, &mut dst, OnFault::Cpu);
    assert!(dst == src);
    assert_eq!((r.faults, r.cpu_bytes), (1, (256 << 10) - 1000));
}

#[test]
fn a_descending_copy_that_faults_resumes_at_the_front() {
    // One descriptor, overlapping, destination above the source: the
    // device copies descending and a fault leaves the front to do.
    let (model, queue) = model(4, 1 << 20);
    let len = 256 << 10;
    let mut buf = pattern(len + 4096, 3);
    let expected: Vec<u8> = {
        let mut b = buf.clone();
        b.copy_within(0..len, 4096);
        b
    };
    model.inject_fault(FaultRule::at(Side::Destination, 100_000));
    let base = buf.as_mut_ptr();
    // SAFETY: both ranges lie in `buf`; one descriptor handles the overlap.
    let r = unsafe { copy(core::slice::from_ref(&queue), base.add(4096), base, len, &opts(OnFault::Resubmit)) };
    assert!(buf == expected);
    assert_eq!((r.faults, r.cpu_bytes), (1, 0));
}

#[test]
fn error_statuses_are_finished_on_the_cpu_and_reported() {
    let (model, queue) = model(8, 256 << 10);
    model.inject_errors(status::TRANSLATION_FAIL, 2, None);
    let len = 1 << 20;
    let src = pattern(len, 11);
    let mut dst = vec![0u8; len];
    let r = run(&queue, &src, &mut dst, OnFault::Resubmit);
    assert!(dst == src);
    assert_eq!(r.error, Some(status::TRANSLATION_FAIL));
    assert_eq!(r.cpu_bytes, 2 * (256 << 10));
}

#[test]
fn many_threads_never_put_more_than_the_queue_size_in_flight() {
    let (model, queue) = model(8, 64 << 10);
    std::thread::scope(|s| {
        for t in 0..32u64 {
            let queue = &queue;
            s.spawn(move || {
                let len = (1 << 20) + t as usize * 4097;
                let src = pattern(len, t);
                let mut dst = vec![0u8; len];
                for _ in 0..4 {
                    let r = run(queue, &src, &mut dst, OnFault::Resubmit);
                    assert!(dst == src, "thread {t}");
                    assert_eq!(r.cpu_bytes, 0);
                }
            });
        }
    });
    let c = model.counters();
    assert!(queue.high_water() <= 8, "engine's count: {}", queue.high_water());
    assert!(c.in_flight_high_water <= 8, "the model saw {}", c.in_flight_high_water);
    assert_eq!(c.overruns, 0);
    assert_eq!(queue.in_flight(), 0);
}

#[test]
fn a_device_that_stops_answering_is_left_behind_and_the_cpu_copies() {
    let (model, queue) = model(8, 256 << 10);
    model.stop();
    let len = 1 << 20;
    let src = pattern(len, 17);
    let mut dst = vec![0u8; len];
    let started = std::time::Instant::now();
    let r = run(&queue, &src, &mut dst, OnFault::Resubmit);
    assert!(started.elapsed() >= STALL, "it waited for the device first");
    assert!(dst == src);
    assert_eq!((r.error, r.cpu_bytes), (Some(STALLED), len as u64));
    assert!(queue.is_broken());
    // The next copy does not wait: the queue is known broken.
    let started = std::time::Instant::now();
    let r = run(&queue, &src, &mut dst, OnFault::Resubmit);
    assert!(started.elapsed() < STALL && r.descriptors == 0 && r.cpu_bytes == len as u64);
}

#[test]
fn every_wait_method_completes() {
    // UMWAIT where the CPU has WAITPKG (not these): polling otherwise.
    let (_model, queue) = model(8, 256 << 10);
    let len = 3 << 20;
    let src = pattern(len, 19);
    for wait in Wait::ALL {
        let mut dst = vec![0u8; len];
        let o = Options { wait: *wait, ..opts(OnFault::Resubmit) };
        // SAFETY: two distinct live buffers of `len` bytes.
        let r = unsafe { copy(core::slice::from_ref(&queue), dst.as_mut_ptr(), src.as_ptr(), len, &o) };
        assert!(dst == src, "{wait}");
        assert_eq!(r.cpu_bytes, 0, "{wait}");
    }
}
