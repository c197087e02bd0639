//! memset and memcmp through a work queue: MEMFILL and COMPARE descriptors
//! of at most the queue's transfer size, up to [`DEPTH`] in flight, records
//! read in order, faults resumed, errors finished by libc; the same
//! machinery as [`super::copy`].

use ipc_offload_sys::real::REAL;

use crate::abi::{Descriptor, flag, status};
use crate::inflight::{InFlight, Lease, Piece, STUCK, touch, wait_for};
use crate::options::{Options, Report, STALLED};
use crate::submit::Queues;
use crate::work_queue::Queue;

/// What one descriptor asks of the device.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// Fill with this 8-byte pattern.
    Fill(u64),
    /// Compare the two buffers.
    Compare,
}

/// What a finished piece said.
enum Done {
    /// Filled, or equal.
    Ok,
    /// The buffers first differ at this offset of the whole operation.
    Differs(usize),
}

/// Fills `len` bytes at `dst` with byte `c` through `queues`.
///
/// # Safety
/// As memset(3).
pub unsafe fn fill(queues: &[Queue], dst: *mut u8, c: u8, len: usize, opts: &Options) -> Report {
    let pattern = u64::from_ne_bytes([c; 8]);
    // SAFETY: forwarded contract (the second buffer is unused by a fill).
    let (report, _) = unsafe { run(queues, dst, core::ptr::null(), len, Op::Fill(pattern), opts) };
    report
}

/// Compares `len` bytes of `a` and `b` through `queues`: the sign memcmp(3)
/// gives (the difference of the first differing bytes as unsigned chars,
/// from the offset the device reports).
///
/// # Safety
/// As memcmp(3).
pub unsafe fn compare(queues: &[Queue], a: *const u8, b: *const u8, len: usize, opts: &Options) -> (Report, i32) {
    // SAFETY: forwarded contract; a COMPARE writes nothing.
    let (report, first) = unsafe { run(queues, a.cast_mut(), b, len, Op::Compare, opts) };
    let sign = first.map_or(0, |at| {
        // SAFETY: `at` < len: inside both buffers.
        let (x, y) = unsafe { (*a.add(at), *b.add(at)) };
        i32::from(x) - i32::from(y)
    });
    (report, sign)
}

/// The CPU's version of one piece: `Some(offset)` of a first difference.
///
/// # Safety
/// The piece lies inside the buffers.
unsafe fn on_cpu(op: Op, a: *mut u8, b: *const u8, piece: Piece, report: &mut Report) -> Option<usize> {
    report.cpu_bytes += piece.len as u64;
    // SAFETY: the piece lies inside the buffers.
    unsafe {
        let (pa, pb) = (a.add(piece.off), if b.is_null() { b } else { b.add(piece.off) });
        match op {
            Op::Fill(pattern) => {
                (REAL.memset.get())(pa.cast(), i32::from(pattern as u8), piece.len);
                None
            }
            Op::Compare => {
                if (REAL.memcmp.get())(pa.cast(), pb.cast(), piece.len) == 0 {
                    return None;
                }
                (0..piece.len).find(|&i| *pa.add(i) != *pb.add(i)).map(|i| piece.off + i)
            }
        }
    }
}

/// Runs `op` over `[0, len)` of `a` (and `b`); the first difference found,
/// in order, for a compare.
///
/// # Safety
/// `a` writable (fill) or readable (compare), `b` readable (compare), for
/// `len` bytes.
unsafe fn run(
    queues: &[Queue],
    a: *mut u8,
    b: *const u8,
    len: usize,
    op: Op,
    opts: &Options,
) -> (Report, Option<usize>) {
    let mut report = Report::default();
    let mut first: Option<usize> = None;
    let mut queues = Queues::new(queues);
    let Some(mut lease) = Lease::take().filter(|_| !queues.is_broken()) else {
        // SAFETY: the whole range, on the CPU.
        let first = unsafe { on_cpu(op, a, b, Piece { off: 0, len, stuck: 0 }, &mut report) };
        return (report, first);
    };
    let slots = lease.slots();
    let max = queues.max_transfer().min(opts.chunk.max(4096));
    let mut flags = flag::CRAV | flag::RCR;
    if opts.cache_control && queues.cache_control() && matches!(op, Op::Fill(_)) {
        flags |= flag::CC;
    }
    let mut in_flight = InFlight::new();
    let mut next = 0usize;
    let mut again: Option<Piece> = None;
    loop {
        // A compare that found a difference submits no new piece (the rest
        // of an earlier one still goes: its difference would come first).
        while in_flight.len() < opts.in_flight() {
            let piece = match again.take() {
                Some(p) => p,
                None if next < len && first.is_none() => {
                    let p = Piece { off: next, len: (len - next).min(max), stuck: 0 };
                    next += p.len;
                    p
                }
                None => break,
            };
            if !queues.reserve() && (in_flight.len() > 0 || !queues.wait_for_entry()) {
                if in_flight.len() > 0 {
                    again = Some(piece);
                    break;
                }
                // SAFETY: inside the buffers.
                first = first.or(unsafe { on_cpu(op, a, b, piece, &mut report) });
                continue;
            }
            let index = in_flight.free_slot();
            let slot = &mut slots[index];
            slot.record = Default::default();
            slot.piece = piece;
            // The piece lies inside the buffers (`b` is null for a fill).
            let (pa, pb) = (a.wrapping_add(piece.off) as u64, b.wrapping_add(piece.off) as u64);
            let desc = match op {
                Op::Fill(pattern) => Descriptor::memfill(pattern, pa, piece.len as u32, flags, &slot.record),
                Op::Compare => Descriptor::compare(pa, pb, piece.len as u32, flags, &slot.record),
            };
            if let Ok(queue) = queues.submit(&desc, &mut report) {
                slot.queue = queue;
                report.descriptors += 1;
                in_flight.push(index);
            } else {
                // SAFETY: inside the buffers.
                first = first.or(unsafe { on_cpu(op, a, b, piece, &mut report) });
            }
        }
        let Some(index) = in_flight.pop() else { break };
        let slot = &slots[index];
        let Some(code) = wait_for(&slot.record, opts.wait) else {
            queues.get(slot.queue).mark_broken();
            lease.lost = true;
            report.error = Some(STALLED);
            // Everything from the oldest unconfirmed piece on, on the CPU.
            let from = slot.piece.off.min(again.map_or(usize::MAX, |p| p.off));
            let rest = Piece { off: from, len: len - from, stuck: 0 };
            // SAFETY: inside the buffers.
            let found = unsafe { on_cpu(op, a, b, rest, &mut report) };
            return (report, first.or(found));
        };
        queues.get(slot.queue).release();
        report.completed += 1;
        let (piece, record) = (slot.piece, slot.record);
        let done = match code {
            status::SUCCESS if matches!(op, Op::Compare) && record.result & 1 == 1 => {
                Done::Differs(piece.off + (record.bytes_completed as usize).min(piece.len - 1))
            }
            status::SUCCESS => Done::Ok,
            status::PAGE_FAULT_NOBOF => {
                report.faults += 1;
                let finished = (record.bytes_completed as usize).min(piece.len);
                let stuck = if finished == 0 { piece.stuck + 1 } else { 0 };
                let rest = Piece { off: piece.off + finished, len: piece.len - finished, stuck };
                // SAFETY: the rest of the piece, which nothing in flight covers.
                let touched =
                    stuck < STUCK && unsafe { touch(&record, a.add(rest.off), b.wrapping_add(rest.off), rest.len) };
                if rest.len > 0 && touched && again.is_none() {
                    again = Some(rest);
                    Done::Ok
                } else if rest.len > 0 {
                    // SAFETY: inside the buffers.
                    unsafe { on_cpu(op, a, b, rest, &mut report) }.map_or(Done::Ok, Done::Differs)
                } else {
                    Done::Ok
                }
            }
            error => {
                report.error = Some(error);
                // SAFETY: inside the buffers.
                unsafe { on_cpu(op, a, b, piece, &mut report) }.map_or(Done::Ok, Done::Differs)
            }
        };
        if let Done::Differs(at) = done {
            first = Some(first.map_or(at, |f| f.min(at)));
        }
    }
    (report, first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FaultRule, Model, ModelConfig, Side};
    use crate::options::OnFault;
    use crate::work_queue::Portal;
    use ipc_offload_policy::Wait;
    use std::sync::Arc;

    fn model() -> (Arc<Model>, Queue) {
        let config = ModelConfig { size: 8, max_transfer_size: 256 << 10, ..ModelConfig::default() };
        let model = Model::start(config).unwrap();
        let queue = Queue::new(Portal::Ring(model.portal()), 8, 256 << 10, true);
        (model, queue)
    }

    const OPTS: Options =
        Options { cache_control: true, wait: Wait::SpinThenSleep, on_fault: OnFault::Resubmit, ..Options::DEFAULT };

    fn libc_sign(a: &[u8], b: &[u8]) -> i32 {
        a.iter().zip(b).find(|(x, y)| x != y).map_or(0, |(x, y)| i32::from(*x) - i32::from(*y))
    }

    #[test]
    fn fills_of_odd_lengths_across_descriptors() {
        let (model, queue) = model();
        for len in [1usize, 7, 4095, (256 << 10) + 3, (3 << 20) + 17] {
            let mut buf = vec![0x11u8; len + 2];
            // SAFETY: `len` bytes of `buf`, after its first.
            let r = unsafe { fill(core::slice::from_ref(&queue), buf.as_mut_ptr().add(1), 0xa5, len, &OPTS) };
            assert!(buf[1..=len].iter().all(|b| *b == 0xa5), "len {len}");
            assert_eq!((buf[0], buf[len + 1]), (0x11, 0x11), "len {len}: nothing around it");
            assert_eq!(r.cpu_bytes, 0);
        }
        assert!(model.counters().memfill >= 1 + 1 + 1 + 2 + 13);
    }

    #[test]
    fn compares_give_libcs_sign_from_the_first_difference() {
        let (model, queue) = model();
        let len = (1 << 20) + 333;
        let a: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        for at in [None, Some(0), Some(len - 1), Some(300_000), Some(700_000)] {
            let mut b = a.clone();
            if let Some(at) = at {
                b[at] = b[at].wrapping_add(if at % 2 == 0 { 1 } else { 200 });
                // A later difference of the other sign must not win.
                if at + 5000 < len {
                    b[at + 5000] = b[at + 5000].wrapping_sub(3);
                }
            }
            // SAFETY: two live buffers of `len` bytes.
            let (r, sign) = unsafe { compare(core::slice::from_ref(&queue), a.as_ptr(), b.as_ptr(), len, &OPTS) };
            assert_eq!(sign, libc_sign(&a, &b), "difference at {at:?}");
            assert_eq!(r.cpu_bytes, 0);
        }
        assert!(model.counters().compare > 0);
    }

    #[test]
    fn a_fill_that_faults_is_resumed() {
        let (model, queue) = model();
        model.inject_fault(FaultRule::at(Side::Destination, 1000).times(2));
        let len = 1 << 20;
        let mut buf = vec![0u8; len];
        // SAFETY: `buf` holds `len` bytes.
        let r = unsafe { fill(core::slice::from_ref(&queue), buf.as_mut_ptr(), 7, len, &OPTS) };
        assert!(buf.iter().all(|b| *b == 7));
        assert_eq!((r.faults, r.cpu_bytes), (2, 0));
    }
}
