//! Copies through a work queue: a copy is cut into descriptors of at most
//! the queue's maximum transfer size, up to [`DEPTH`] of them in flight at
//! once (and never more than the queue's size across every thread), their
//! completion records waited for in submission order; a partial completion
//! (a page fault without block-on-fault) is resumed, an error finished on
//! the CPU. The device (or its model) is the only one to touch the buffers
//! of a descriptor in flight; the CPU copies only what a descriptor did not.

use std::time::Instant;

use ipc_offload_sys::real;

use crate::abi::{CompletionRecord, Descriptor, flag, status};
use crate::inflight::{InFlight, Lease, Piece, STUCK, touch, wait_for};
use crate::options::{DEPTH, OnFault, Options, Report, STALLED};
use crate::submit::Queues;
use crate::work_queue::Queue;

/// Copies `len` bytes from `src` to `dst` through `queues` (see
/// [`Queues`]).
///
/// # Safety
/// As memcpy(3): `[src, src + len)` readable, `[dst, dst + len)` writable,
/// and disjoint unless `len` fits one descriptor (the device copies an
/// overlapping range as memmove does).
pub unsafe fn copy(queues: &[Queue], dst: *mut u8, src: *const u8, len: usize, opts: &Options) -> Report {
    // SAFETY: forwarded contract.
    unsafe { copy_shared(queues, dst, src, len, 0, opts) }
}

/// The hybrid engine's copy: the device takes bytes `[cpu_len, len)`, the
/// caller copies `[0, cpu_len)` itself once the device's first descriptors
/// are submitted, then waits for the rest; the report says how long each
/// side took.
///
/// # Safety
/// As [`copy`], the buffers disjoint.
pub unsafe fn copy_shared(
    queues: &[Queue],
    dst: *mut u8,
    src: *const u8,
    len: usize,
    cpu_len: usize,
    opts: &Options,
) -> Report {
    let cpu_len = cpu_len.min(len);
    let mut cpu_done = cpu_len == 0;
    let mut report = Report::default();
    let mut queues = Queues::new(queues);
    let max = queues.max_transfer().min(opts.chunk.max(4096));
    let mut flags = flag::CRAV | flag::RCR;
    if opts.cache_control && queues.cache_control() {
        flags |= flag::CC;
    }
    let Some(mut lease) = Lease::take().filter(|_| !queues.is_broken()) else {
        // No records to use, or a device that stopped: all on the CPU.
        report_all_cpu(dst, src, len, &mut report);
        return report;
    };
    let slots = lease.slots();
    let mut in_flight = InFlight::new();
    // Remainders of partial completions, submitted before new pieces.
    let mut again: [Piece; DEPTH] = Default::default();
    let mut n_again = 0usize;
    let mut next = cpu_len;
    let cpu = |piece: Piece, report: &mut Report| {
        // SAFETY: inside both buffers (the caller's contract); no
        // descriptor in flight covers this piece.
        unsafe { real::move_bytes(dst.add(piece.off), src.add(piece.off), piece.len) };
        report.cpu_bytes += piece.len as u64;
    };
    loop {
        // Submit while there is room.
        while in_flight.len() < opts.in_flight() {
            let piece = if n_again > 0 {
                n_again -= 1;
                again[n_again]
            } else if next < len {
                let piece = Piece { off: next, len: (len - next).min(max), stuck: 0 };
                next += piece.len;
                piece
            } else {
                break;
            };
            if !queues.reserve() {
                if in_flight.len() > 0 {
                    // Wait for one of ours to complete first.
                    again[n_again] = piece;
                    n_again += 1;
                    break;
                }
                // Other threads fill the queue: take turns with them.
                if !queues.wait_for_entry() {
                    cpu(piece, &mut report);
                    continue;
                }
            }
            let index = in_flight.free_slot();
            let slot = &mut slots[index];
            slot.record = CompletionRecord::default();
            slot.piece = piece;
            // SAFETY: the piece lies inside both buffers.
            let (s, d) = unsafe { (src.add(piece.off) as u64, dst.add(piece.off) as u64) };
            let desc = Descriptor::memmove(s, d, piece.len as u32, flags, &slot.record);
            match queues.submit(&desc, &mut report) {
                Ok(queue) => {
                    slot.queue = queue;
                    report.descriptors += 1;
                    in_flight.push(index);
                }
                Err(_) => cpu(piece, &mut report),
            }
        }
        if !cpu_done {
            // The device works on its first descriptors meanwhile.
            let started = Instant::now();
            cpu(Piece { off: 0, len: cpu_len, stuck: 0 }, &mut report);
            report.cpu_bytes -= cpu_len as u64; // the share, not a fallback
            report.cpu_time = started.elapsed();
            cpu_done = true;
        }
        // The oldest descriptor: wait for its record.
        let Some(index) = in_flight.pop() else { break };
        let slot = &slots[index];
        let before = Instant::now();
        let Some(code) = wait_for(&slot.record, opts.wait) else {
            // The device stopped: nothing it holds comes back. Its pieces,
            // and whatever was not submitted, go to the CPU.
            queues.get(slot.queue).mark_broken();
            lease.lost = true;
            for held in core::iter::once(index).chain(in_flight.indices()) {
                cpu(slots[held].piece, &mut report);
            }
            for piece in &again[..n_again] {
                cpu(*piece, &mut report);
            }
            cpu(Piece { off: next, len: len - next, stuck: 0 }, &mut report);
            report.error = Some(STALLED);
            return report;
        };
        if cpu_len > 0 {
            report.waited += before.elapsed();
        }
        queues.get(slot.queue).release();
        report.completed += 1;
        let piece = slot.piece;
        let record = slot.record;
        match code {
            status::SUCCESS => {}
            status::PAGE_FAULT_NOBOF => {
                report.faults += 1;
                let done = (record.bytes_completed as usize).min(piece.len);
                let stuck = if done == 0 { piece.stuck + 1 } else { 0 };
                // Ascending: the rest follows what was done; descending (an
                // overlapping move to a higher address): it precedes it.
                let rest = if record.result & 1 == 1 {
                    Piece { off: piece.off, len: piece.len - done, stuck }
                } else {
                    Piece { off: piece.off + done, len: piece.len - done, stuck }
                };
                if rest.len == 0 {
                    continue;
                }
                // SAFETY: the piece's range of both buffers is the caller's,
                // and no other descriptor in flight covers it.
                let touched = opts.on_fault == OnFault::Resubmit
                    && stuck < STUCK
                    && unsafe { touch(&record, dst.add(rest.off), src.add(rest.off), rest.len) }
                    && n_again < DEPTH;
                if touched {
                    again[n_again] = rest;
                    n_again += 1;
                } else {
                    cpu(rest, &mut report);
                }
            }
            error => {
                report.error = Some(error);
                cpu(piece, &mut report);
            }
        }
    }
    report
}

/// Copies all of a copy on the CPU.
fn report_all_cpu(dst: *mut u8, src: *const u8, len: usize, report: &mut Report) {
    // SAFETY: the caller's buffers (the copy's contract).
    unsafe { real::move_bytes(dst, src, len) };
    report.cpu_bytes += len as u64;
}

#[cfg(test)]
mod tests;
