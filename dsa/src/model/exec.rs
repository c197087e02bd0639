//! Executing descriptors: checks, injections, the operations themselves
//! (with `rep movsb` and SSE2, never memcpy, memset or memcmp), and
//! completion records.
//!
//! Every address the model dereferences comes from a descriptor; the
//! submitter vouched for them when it wrote the descriptor to the portal
//! (an unsafe write through [`Model::portal`](super::Model::portal)) or
//! handed it to the unsafe [`Model::enqcmd`](super::Model::enqcmd): valid
//! for the operation until its completion record is written.

use core::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi64x, _mm_storeu_si128};
use core::sync::atomic::AtomicU8;
use core::sync::atomic::Ordering::{Relaxed, Release};
use std::time::{Duration, Instant};

use super::inject::{Access, Fault, Side};
use super::shared::{Inner, bump, lock};
use crate::abi::{Descriptor, flag, opcode, status};
use ipc_offload_sys::fallback;

/// The eight little-endian words of a descriptor.
pub(super) fn words(d: &Descriptor) -> [u64; 8] {
    let bytes = d.as_bytes();
    core::array::from_fn(|w| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[w * 8..w * 8 + 8]);
        u64::from_le_bytes(word)
    })
}

/// A descriptor from its eight words.
pub(super) fn descriptor(w: [u64; 8]) -> Descriptor {
    let mut op_specific = [0u8; 24];
    for (i, word) in w[5..].iter().enumerate() {
        op_specific[i * 8..i * 8 + 8].copy_from_slice(&word.to_le_bytes());
    }
    Descriptor {
        pasid: w[0] as u32,
        flags_opcode: (w[0] >> 32) as u32,
        completion_addr: w[1],
        src: w[2],
        dst: w[3],
        size: w[4] as u32,
        int_handle: (w[4] >> 32) as u16,
        rsvd: (w[4] >> 48) as u16,
        op_specific,
    }
}

/// A completion record's fields, `status` written last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Record {
    pub status: u8,
    pub result: u8,
    pub bytes_completed: u32,
    pub fault_addr: u64,
}

impl Record {
    fn status(status: u8) -> Record {
        Record { status, ..Record::default() }
    }
}

/// The model thread's executor.
#[derive(Debug)]
pub(super) struct Exec<'a> {
    inner: &'a Inner,
}

impl<'a> Exec<'a> {
    pub fn new(inner: &'a Inner) -> Exec<'a> {
        Exec { inner }
    }

    /// Runs a descriptor of the queue; the record to write once it counts
    /// as completed, if one is to be written.
    pub fn top(&self, d: &Descriptor) -> Option<(u64, Record)> {
        let (record, addr) = self.process(d, false);
        addr.map(|a| (a, record))
    }

    /// Writes a completion record: every field but the status, then the
    /// status with release.
    pub fn write_record(&self, addr: u64, r: &Record) {
        let p = addr as *mut u8;
        // SAFETY: `addr` is a descriptor's completion record address, checked
        // non-null and 32-byte aligned, valid for its 32 bytes per the
        // submission contract (module documentation); the submitter reads
        // the other fields only after an acquire load of the status byte
        // sees it set, which the release store below orders after them.
        unsafe {
            p.add(1).write_volatile(r.result);
            p.add(2).cast::<u16>().write_volatile(0);
            p.add(4).cast::<u32>().write_volatile(r.bytes_completed);
            p.add(8).cast::<u64>().write_volatile(r.fault_addr);
            p.add(16).cast::<u64>().write_volatile(0);
            p.add(24).cast::<u64>().write_volatile(0);
            AtomicU8::from_ptr(p).store(r.status, Release);
        }
        bump(&self.inner.stats.records);
    }

    /// Checks where the record goes, runs the descriptor, and says where
    /// its record is to be written (nowhere: no CRAV, RCR clear and
    /// success, or a record address the device cannot use).
    fn process(&self, d: &Descriptor, in_batch: bool) -> (Record, Option<u64>) {
        let inner = self.inner;
        bump(&inner.stats.executed);
        let flags = d.flags();
        if flags & flag::CC != 0 {
            bump(&inner.stats.cache_control);
        }
        let crav = flags & flag::CRAV != 0;
        let rcr = flags & flag::RCR != 0;
        let unusable = if rcr && !crav {
            Some(status::INVALID_FLAGS)
        } else if crav && d.completion_addr == 0 {
            Some(status::CRA_XLAT)
        } else if crav && d.completion_addr % 32 != 0 {
            Some(status::CRA_ALIGN)
        } else {
            None
        };
        if let Some(code) = unusable {
            bump(&inner.stats.invalid);
            inner.swerr(code, d);
            return (Record::status(code), None);
        }
        let record = self.execute(d, in_batch);
        if crav && (rcr || record.status != status::SUCCESS) {
            (record, Some(d.completion_addr))
        } else {
            if record.status & status::STATUS_MASK >= status::BAD_OPCODE {
                inner.swerr(record.status, d);
            }
            (record, None)
        }
    }

    /// The opcode and size checks, an injected error, or the operation.
    fn execute(&self, d: &Descriptor, in_batch: bool) -> Record {
        let inner = self.inner;
        let config = &inner.config;
        let op = d.opcode();
        let check = match op {
            opcode::NOOP => None,
            opcode::BATCH | opcode::DRAIN if in_batch => Some(status::BAD_OPCODE),
            opcode::DRAIN => None,
            opcode::BATCH if d.size < 2 || d.size > config.max_batch_size => Some(status::DESC_CNT_ERANGE),
            opcode::BATCH if d.src % 64 != 0 => Some(status::DESCLIST_ALIGN),
            opcode::BATCH => None,
            opcode::MEMMOVE | opcode::MEMFILL | opcode::COMPARE => {
                (d.size == 0 || d.size > config.max_transfer_size).then_some(status::XFER_ERANGE)
            }
            _ => Some(status::BAD_OPCODE),
        };
        if let Some(code) = check {
            bump(&inner.stats.invalid);
            return Record::status(code);
        }
        if let Some(code) = lock(&inner.injections).take_error(op) {
            bump(&inner.stats.errors_injected);
            let fault_addr = match op {
                opcode::MEMMOVE | opcode::COMPARE | opcode::BATCH => d.src,
                opcode::MEMFILL => d.dst,
                _ => 0,
            };
            return Record { status: code, fault_addr, ..Record::default() };
        }
        let s = &inner.stats;
        match op {
            opcode::NOOP => {
                bump(&s.noop);
                Record::status(status::SUCCESS)
            }
            opcode::DRAIN => {
                bump(&s.drain);
                Record::status(status::SUCCESS)
            }
            opcode::BATCH => {
                bump(&s.batch);
                self.batch(d)
            }
            _ => {
                bump(match op {
                    opcode::MEMMOVE => &s.memmove,
                    opcode::MEMFILL => &s.memfill,
                    _ => &s.compare,
                });
                let started = Instant::now();
                let cpu = ipc_offload_sys::thread_cpu_ns();
                let (record, bytes) = self.work(d, op);
                let worked = Duration::from_nanos(ipc_offload_sys::thread_cpu_ns().saturating_sub(cpu));
                self.slow_down(started, worked, bytes);
                let busy = started.elapsed();
                s.bytes.fetch_add(bytes, Relaxed);
                s.work_ns.fetch_add(worked.as_nanos() as u64, Relaxed);
                s.busy_ns.fetch_add(busy.as_nanos() as u64, Relaxed);
                record
            }
        }
    }

    /// MEMMOVE, MEMFILL or COMPARE, with injected faults: the record and
    /// the bytes processed.
    fn work(&self, d: &Descriptor, op: u8) -> (Record, u64) {
        let inner = self.inner;
        let len = u64::from(d.size);
        let descending = op == opcode::MEMMOVE && d.dst > d.src && d.dst - d.src < len;
        let src = Access { side: Some(Side::Source), base: d.src, len, write: false };
        let dst = Access { side: Some(Side::Destination), base: d.dst, len, write: op != opcode::COMPARE };
        let accesses: &[Access] = match op {
            opcode::MEMFILL => &[dst],
            _ => &[src, dst],
        };
        let faults = lock(&inner.injections).faults(accesses, descending);
        let bof = d.flags() & flag::BOF != 0;
        let first = if bof { None } else { faults.first().copied() };
        let direction = u8::from(descending);
        let Some(fault) = first else {
            // The whole operation; with BOF the faults it reaches are taken
            // and resolved on the way.
            let (record, reached) = self.run(d, op, 0, len, descending);
            for f in faults.iter().filter(|f| reached.contains(&f.pos)) {
                self.take_fault(f, true);
            }
            return (record, len.min(reached.end - reached.start));
        };
        let (lo, hi) = if descending { (fault.pos + 1, len) } else { (0, fault.pos) };
        let (record, _) = self.run(d, op, lo, hi, descending);
        if op == opcode::COMPARE && record.result != 0 {
            // A difference before the faulting byte: never reached.
            return (record, u64::from(record.bytes_completed) + 1);
        }
        self.take_fault(&fault, false);
        let code = status::PAGE_FAULT_NOBOF | if fault.write { status::WRITE_FAULT } else { 0 };
        let record =
            Record { status: code, result: direction, bytes_completed: (hi - lo) as u32, fault_addr: fault.addr };
        (record, hi - lo)
    }

    fn take_fault(&self, fault: &Fault, blocked: bool) {
        lock(&self.inner.injections).charge(fault);
        bump(&self.inner.stats.faults_injected);
        if blocked {
            bump(&self.inner.stats.faults_blocked);
        }
    }

    /// Bytes `[lo, hi)` of the operation (COMPARE always from 0): its
    /// success record, and the byte offsets it went through.
    fn run(&self, d: &Descriptor, op: u8, lo: u64, hi: u64, descending: bool) -> (Record, core::ops::Range<u64>) {
        let n = (hi - lo) as usize;
        let (src, dst) = (d.src as usize + lo as usize, d.dst as usize + lo as usize);
        let mut record = Record::status(status::SUCCESS);
        match op {
            opcode::MEMMOVE => {
                record.result = u8::from(descending);
                if descending {
                    // SAFETY: `[lo, hi)` lies inside the transfer (hi <=
                    // xfer_size), whose buffers the submitter vouched for; a
                    // descending move has its destination above its source.
                    unsafe { copy_down(dst as *mut u8, src as *const u8, n) };
                } else {
                    // SAFETY: as above; going up is right when the
                    // destination is below the source or apart from it.
                    unsafe { fallback::copy_forward(dst as *mut u8, src as *const u8, n) };
                }
            }
            // SAFETY: `[lo, hi)` lies inside the vouched-for destination.
            opcode::MEMFILL => unsafe { fill(dst as *mut u8, d.src, n) },
            _ => {
                // SAFETY: `[lo, hi)` lies inside both vouched-for buffers.
                if let Some(at) = unsafe { first_difference(src as *const u8, dst as *const u8, n) } {
                    record.result = 1;
                    record.bytes_completed = at as u32;
                    let expected = d.op_specific[0] & 1;
                    if d.flags() & flag::CR != 0 && expected != 1 {
                        record.status = status::SUCCESS_PRED;
                    }
                    return (record, 0..at as u64 + 1);
                }
                if d.flags() & flag::CR != 0 && d.op_specific[0] & 1 != 0 {
                    record.status = status::SUCCESS_PRED;
                }
            }
        }
        (record, lo..hi)
    }

    /// A BATCH that passed its checks.
    fn batch(&self, d: &Descriptor) -> Record {
        let inner = self.inner;
        let count = u64::from(d.size);
        let list = Access { side: None, base: d.src, len: count * 64, write: false };
        let faults = lock(&inner.injections).faults(&[list], false);
        let bof = d.flags() & flag::BOF != 0;
        // Without BOF the first fault ends the batch before the member whose
        // descriptor it is in.
        let fault = if bof { None } else { faults.first().copied() };
        let limit = fault.map_or(count, |f| f.pos / 64);
        let mut read = 0u64;
        let mut processed = 0u32;
        let mut failed = false;
        for i in 0..limit {
            let at = (d.src + i * 64) as *const u64;
            // SAFETY: member `i` of the list (64-byte aligned, `count`
            // descriptors), which the submitter vouched for with the batch.
            let member = descriptor(core::array::from_fn(|w| unsafe { at.add(w).read_volatile() }));
            read += 1;
            if failed && member.flags() & flag::FENCE != 0 {
                break;
            }
            let (record, addr) = self.process(&member, true);
            if let Some(addr) = addr {
                self.write_record(addr, &record);
            }
            failed |= record.status != status::SUCCESS;
            processed += 1;
        }
        if bof {
            // The faults in the descriptors read were taken and resolved.
            for f in faults.iter().filter(|f| f.pos / 64 < read) {
                self.take_fault(f, true);
            }
        }
        if let Some(f) = fault.filter(|_| u64::from(processed) == limit) {
            self.take_fault(&f, false);
            return Record {
                status: status::BATCH_PAGE_FAULT,
                result: 0,
                bytes_completed: processed,
                fault_addr: f.addr,
            };
        }
        if failed || u64::from(processed) < count {
            Record { status: status::BATCH_FAIL, result: 1, bytes_completed: processed, fault_addr: 0 }
        } else {
            Record { status: status::SUCCESS, result: 0, bytes_completed: processed, fault_addr: 0 }
        }
    }

    /// Waits until the operation started at `started`, whose work took
    /// `took` of its thread's CPU time, has taken as long as the slowdown
    /// asks. CPU time, not wall time: a model slowed 24x whose thread lost
    /// 83 ms to the scheduler in one descriptor made that descriptor take 2
    /// s, its waiter's stall timeout fired, and the copy returned while the
    /// model still held descriptors into the caller's buffers, which the
    /// program then unmapped (a SIGSEGV in CI, `the_hybrid_cpu_share_rises_
    /// when_the_device_is_slowed`, 2026-12-07).
    fn slow_down(&self, started: Instant, took: Duration, bytes: u64) {
        let s = self.inner.slowdown();
        let scaled = took.saturating_mul(s.factor.max(1));
        let fixed = Duration::from_nanos(s.ns_per_descriptor.saturating_add(s.ns_per_kib.saturating_mul(bytes) / 1024));
        let deadline = started + scaled.max(fixed);
        loop {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let left = deadline - now;
            if left > Duration::from_micros(200) {
                std::thread::sleep(left - Duration::from_micros(100));
            } else {
                core::hint::spin_loop();
            }
        }
    }
}

/// A move of `n` bytes from `src` to `dst` going down: `dst` above `src`.
/// Copies blocks from the end, each no longer than the distance between the
/// buffers (so a block never overwrites its own source) with `rep movsb`
/// going up, which is fast; byte by byte down when the buffers are closer
/// than 64 bytes.
///
/// # Safety
/// `src` readable and `dst` writable for `n` bytes; `dst >= src`.
unsafe fn copy_down(dst: *mut u8, src: *const u8, n: usize) {
    let distance = dst as usize - src as usize;
    if distance < 64 {
        // SAFETY: the caller's ranges.
        unsafe { fallback::copy_backward(dst, src, n) };
        return;
    }
    let block = distance.min(1 << 20);
    let mut end = n;
    while end > 0 {
        let start = end.saturating_sub(block);
        // SAFETY: inside the caller's ranges; the block's source
        // [src+start, src+end) ends at or below its destination's start
        // (dst + start = src + start + distance, distance >= end - start),
        // and the bytes below it have not been written yet.
        unsafe { fallback::copy_forward(dst.add(start), src.add(start), end - start) };
        end = start;
    }
}

/// Fills `n` bytes at `dst` with `pattern` (little-endian, from its first
/// byte), 16 bytes per store.
///
/// # Safety
/// `dst` writable for `n` bytes.
unsafe fn fill(dst: *mut u8, pattern: u64, n: usize) {
    let bytes = pattern.to_le_bytes();
    let mut i = 0;
    // SAFETY: the caller's range; unaligned SSE2 stores (SSE2 is part of
    // x86-64), then single bytes for the tail.
    unsafe {
        let v = _mm_set1_epi64x(pattern as i64);
        while i + 16 <= n {
            _mm_storeu_si128(dst.add(i).cast(), v);
            i += 16;
        }
        while i < n {
            dst.add(i).write_volatile(bytes[i % 8]);
            i += 1;
        }
    }
}

/// The offset of the first byte where `a` and `b` differ, 16 bytes per
/// comparison.
///
/// # Safety
/// `a` and `b` readable for `n` bytes.
unsafe fn first_difference(a: *const u8, b: *const u8, n: usize) -> Option<usize> {
    let mut i = 0;
    // SAFETY: the caller's ranges; unaligned SSE2 loads, then single bytes.
    unsafe {
        while i + 16 <= n {
            let x = _mm_loadu_si128(a.add(i).cast());
            let y = _mm_loadu_si128(b.add(i).cast());
            let equal = _mm_movemask_epi8(_mm_cmpeq_epi8(x, y)) as u32;
            if equal != 0xffff {
                return Some(i + (!equal).trailing_zeros() as usize);
            }
            i += 16;
        }
        while i < n {
            if a.add(i).read_volatile() != b.add(i).read_volatile() {
                return Some(i);
            }
            i += 1;
        }
    }
    None
}
