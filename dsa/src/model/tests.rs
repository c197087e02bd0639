//! The model against descriptors written to its ring as the engine writes
//! them (MOVDIR64B where the CPU has it), and against `enqcmd`.

use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicU8, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::abi::{CompletionRecord, Descriptor, flag, opcode, status};
use ipc_offload_sys::x86::{Features, movdir64b};

/// Flags of every descriptor the engine sends.
const F: u32 = flag::CRAV | flag::RCR;

fn has_movdir64b() -> bool {
    Features::get().movdir64b
}

/// Writes descriptor number `ticket` into its slot of a model's ring.
fn write_slot(model: &Model, ticket: u64, d: &Descriptor) {
    // SAFETY: slot `ticket % 64` of the model's 4096-byte portal page.
    let slot = unsafe { model.portal().add((ticket % 64) as usize * 64) };
    if has_movdir64b() {
        // SAFETY: the CPU has it; the slot is aligned, free (the tests keep at
        // most `size` descriptors in flight), and read by the model only
        // through atomic loads.
        unsafe { movdir64b(slot, d.as_bytes().as_ptr()) };
        return;
    }
    let words = exec::words(d);
    for w in (1..8).chain([0]) {
        // SAFETY: word `w` of the slot, 8-byte aligned, only accessed
        // atomically by the model.
        let word = unsafe { AtomicU64::from_ptr(slot.add(w * 8).cast::<u64>()) };
        word.store(words[w], if w == 0 { Release } else { Relaxed });
    }
}

/// A model and the count of descriptors submitted to its ring.
struct Dev {
    model: Arc<Model>,
    next: u64,
}

impl Dev {
    fn new(config: ModelConfig) -> Dev {
        Dev { model: Model::start(config).unwrap(), next: 0 }
    }

    fn with(f: impl FnOnce(&mut ModelConfig)) -> Dev {
        let mut config = ModelConfig::default();
        f(&mut config);
        Dev::new(config)
    }

    fn submit(&mut self, d: &Descriptor) {
        write_slot(&self.model, self.next, d);
        self.next += 1;
    }

    /// Submits `d` and waits for record `rec`.
    fn run(&mut self, d: &Descriptor, rec: *mut CompletionRecord) -> CompletionRecord {
        self.submit(d);
        wait(rec)
    }

    /// Waits until the model has finished `n` descriptors in all.
    fn drain(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.model.counters().completed < n {
            assert!(Instant::now() < deadline, "model stuck at {:?}", self.model.counters());
            std::thread::yield_now();
        }
    }
}

/// Completion records the model writes to, reached through raw pointers
/// only (the vector is not touched while the model may write).
struct Records {
    base: *mut CompletionRecord,
    _owner: Vec<CompletionRecord>,
}

impl Records {
    fn new(n: usize) -> Records {
        let mut owner = vec![CompletionRecord::default(); n];
        Records { base: owner.as_mut_ptr(), _owner: owner }
    }

    fn at(&self, i: usize) -> *mut CompletionRecord {
        assert!(i < self._owner.len());
        // SAFETY: inside the vector.
        unsafe { self.base.add(i) }
    }
}

/// The status byte of a record, loaded with acquire.
fn status_of(rec: *mut CompletionRecord) -> u8 {
    // SAFETY: a live record; the model stores its status byte atomically.
    unsafe { AtomicU8::from_ptr(rec.cast::<u8>()) }.load(Acquire)
}

/// Waits for a record's status, then reads the record.
fn wait(rec: *mut CompletionRecord) -> CompletionRecord {
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_of(rec) == 0 {
        assert!(Instant::now() < deadline, "no completion record");
        std::thread::yield_now();
    }
    // SAFETY: the model wrote every field before the status (release), seen
    // above (acquire); it writes nothing more there.
    unsafe { rec.read_volatile() }
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

fn addr(v: &mut [u8]) -> u64 {
    v.as_mut_ptr() as u64
}

fn memmove(src: u64, dst: u64, len: u32, rec: *mut CompletionRecord) -> Descriptor {
    Descriptor::memmove(src, dst, len, F, rec)
}

#[test]
fn memmove_copies_and_reports_the_direction() {
    let mut dev = Dev::new(ModelConfig::default());
    let recs = Records::new(16);
    let mut i = 0;
    let mut check = |dev: &mut Dev, n: usize, from: usize, to: usize, direction: u8| {
        let orig = pattern(n + from.max(to) + 16, n as u8);
        let mut buf = orig.clone();
        let base = addr(&mut buf);
        let cr = dev.run(&memmove(base + from as u64, base + to as u64, n as u32, recs.at(i)), recs.at(i));
        i += 1;
        assert_eq!((cr.status, cr.result), (status::SUCCESS, direction), "n={n} from={from} to={to}");
        let mut want = orig.clone();
        want.copy_within(from..from + n, to);
        assert!(buf == want, "n={n} from={from} to={to}");
    };
    check(&mut dev, 5000, 0, 6000, 0); // disjoint, above
    check(&mut dev, 5000, 6000, 0, 0); // disjoint, below
    check(&mut dev, 5000, 100, 0, 0); // overlapping, destination below: ascending
    check(&mut dev, 5000, 0, 1, 1); // overlapping, destination above: descending
    check(&mut dev, 5000, 0, 63, 1);
    check(&mut dev, 5000, 0, 64, 1);
    check(&mut dev, 5000, 0, 1000, 1);
    check(&mut dev, 1, 0, 0, 0); // onto itself
    let c = dev.model.counters();
    assert_eq!((c.memmove, c.completed, c.records, c.accepted), (8, 8, 8, 8));
    assert_eq!(c.bytes, 7 * 5000 + 1);
}

#[test]
fn memfill_repeats_the_pattern_over_odd_lengths() {
    let mut dev = Dev::new(ModelConfig::default());
    let recs = Records::new(16);
    let pat = 0x0807_0605_0403_0201u64;
    for (i, n) in [1usize, 7, 8, 15, 17, 33, 4095].into_iter().enumerate() {
        let mut buf = vec![0xeeu8; n + 32];
        let dst = addr(&mut buf) + 16;
        let cr = dev.run(&Descriptor::memfill(pat, dst, n as u32, F, recs.at(i)), recs.at(i));
        assert_eq!(cr.status, status::SUCCESS, "n={n}");
        assert!(buf[..16].iter().chain(&buf[16 + n..]).all(|b| *b == 0xee), "outside n={n}");
        assert!(buf[16..16 + n].iter().enumerate().all(|(j, b)| *b == (j % 8) as u8 + 1), "n={n}");
    }
    assert_eq!(dev.model.counters().memfill, 7);
}

#[test]
fn compare_reports_the_first_difference() {
    let mut dev = Dev::new(ModelConfig::default());
    let recs = Records::new(16);
    let n = 1000;
    let mut a = pattern(n, 1);
    let mut b = a.clone();
    let cr = dev.run(&Descriptor::compare(addr(&mut a), addr(&mut b), n as u32, F, recs.at(0)), recs.at(0));
    assert_eq!((cr.status, cr.result, cr.bytes_completed), (status::SUCCESS, 0, 0));
    for (i, at) in [0usize, 5, 15, 16, 31, 998, 999].into_iter().enumerate() {
        let mut b = a.clone();
        b[at] ^= 0x40;
        b[n - 1] ^= 1; // a later difference too (except when `at` is the last)
        let rec = recs.at(i + 1);
        let cr = dev.run(&Descriptor::compare(addr(&mut a), addr(&mut b), n as u32, F, rec), rec);
        assert_eq!((cr.status, cr.result, cr.bytes_completed), (status::SUCCESS, 1, at as u32), "at={at}");
    }
    // Check result (CR): a difference against an expected "equal" is a
    // false predicate.
    b[3] ^= 1;
    let d = Descriptor::compare(addr(&mut a), addr(&mut b), n as u32, F | flag::CR, recs.at(9));
    let cr = dev.run(&d, recs.at(9));
    assert_eq!((cr.status, cr.result, cr.bytes_completed), (status::SUCCESS_PRED, 1, 3));
    assert_eq!(dev.model.counters().compare, 9);
}

#[test]
fn noop_drain_and_records_by_flags() {
    let mut dev = Dev::new(ModelConfig::default());
    let recs = Records::new(8);
    assert_eq!(dev.run(&Descriptor::noop(F, recs.at(0)), recs.at(0)).status, status::SUCCESS);
    let drain = Descriptor { flags_opcode: F | u32::from(opcode::DRAIN) << 24, ..Descriptor::noop(F, recs.at(1)) };
    assert_eq!(dev.run(&drain, recs.at(1)).status, status::SUCCESS);
    // No flags at all: executed, no record.
    let mut src = pattern(100, 3);
    let mut dst = vec![0u8; 100];
    dev.submit(&Descriptor::memmove(addr(&mut src), addr(&mut dst), 100, 0, recs.at(2)));
    // CRAV without RCR: no record on success, a record on error.
    let mut dst2 = vec![0u8; 100];
    dev.submit(&Descriptor::memmove(addr(&mut src), addr(&mut dst2), 100, flag::CRAV, recs.at(3)));
    dev.submit(&Descriptor::memmove(addr(&mut src), addr(&mut dst2), 0, flag::CRAV, recs.at(4)));
    assert_eq!(wait(recs.at(4)).status, status::XFER_ERANGE);
    dev.drain(5);
    assert_eq!((status_of(recs.at(2)), status_of(recs.at(3))), (0, 0));
    assert!(dst == src && dst2 == src);
    let c = dev.model.counters();
    assert_eq!((c.noop, c.drain, c.memmove, c.records, c.executed, c.swerr), (1, 1, 2, 3, 5, 0));
}

#[test]
fn every_check_has_the_hardware_status() {
    let mut dev = Dev::with(|c| {
        c.max_transfer_size = 4096;
        c.max_batch_size = 4;
    });
    let recs = Records::new(16);
    let mut buf = vec![0u8; 8192];
    let (a, b) = (addr(&mut buf), addr(&mut buf) + 4096);
    let list = [Descriptor::noop(F, recs.at(15)); 8];
    let list_at = list.as_ptr() as u64;
    let with_opcode = |op: u8, rec| Descriptor { flags_opcode: F | u32::from(op) << 24, ..Descriptor::noop(F, rec) };
    let cases: Vec<(Descriptor, u8)> = vec![
        (with_opcode(0x07, recs.at(0)), status::BAD_OPCODE),
        (with_opcode(opcode::CRCGEN, recs.at(1)), status::BAD_OPCODE),
        (with_opcode(0xff, recs.at(2)), status::BAD_OPCODE),
        (memmove(a, b, 0, recs.at(3)), status::XFER_ERANGE),
        (memmove(a, b, 4097, recs.at(4)), status::XFER_ERANGE),
        (Descriptor::memfill(0, a, 0, F, recs.at(5)), status::XFER_ERANGE),
        (Descriptor::compare(a, b, 4097, F, recs.at(6)), status::XFER_ERANGE),
        (Descriptor::batch(list.as_ptr(), 1, F, recs.at(7)), status::DESC_CNT_ERANGE),
        (Descriptor::batch(list.as_ptr(), 5, F, recs.at(8)), status::DESC_CNT_ERANGE),
        (
            Descriptor { src: list_at + 32, ..Descriptor::batch(list.as_ptr(), 2, F, recs.at(9)) },
            status::DESCLIST_ALIGN,
        ),
    ];
    for (i, (d, want)) in cases.iter().enumerate() {
        let cr = dev.run(d, recs.at(i));
        assert_eq!((cr.status, cr.bytes_completed), (*want, 0), "case {i}");
    }
    assert!(buf.iter().all(|b| *b == 0), "nothing executed");
    assert_eq!(dev.model.counters().invalid, cases.len() as u64);
    assert_eq!(dev.model.counters().swerr, 0);

    // A misaligned completion record: nothing written, not executed, SWERR.
    let misaligned = (recs.at(10) as usize + 8) as *mut CompletionRecord;
    let mut src = pattern(64, 9);
    let d = Descriptor::memmove(addr(&mut src), a, 64, F, misaligned);
    dev.submit(&d);
    // A null completion record address: it does not translate.
    dev.submit(&Descriptor::memmove(addr(&mut src), a, 64, F, core::ptr::null()));
    // RCR without CRAV: invalid flags, nowhere to write them.
    let d2 = Descriptor::memmove(addr(&mut src), a, 64, flag::RCR, recs.at(11));
    dev.submit(&d2);
    dev.submit(&Descriptor::noop(F, recs.at(12)));
    wait(recs.at(12));
    // SAFETY: records 10 and 11 were never written (checked through bytes
    // the model would have written first).
    let untouched = unsafe { (recs.at(10).read_volatile(), recs.at(11).read_volatile()) };
    assert_eq!(untouched, (CompletionRecord::default(), CompletionRecord::default()));
    assert!(buf.iter().all(|b| *b == 0), "neither executed");
    let c = dev.model.counters();
    assert_eq!((c.swerr, c.memmove, c.invalid), (3, 0, cases.len() as u64 + 3));
    assert_eq!(dev.model.last_swerr(), Some(SwError { status: status::INVALID_FLAGS, descriptor: d2 }));
}

#[test]
fn batch_of_good_members_succeeds() {
    let mut dev = Dev::new(ModelConfig::default());
    let recs = Records::new(8);
    let mut src = pattern(300, 4);
    let mut dst = vec![0u8; 300];
    let mut fill = vec![0u8; 50];
    let mut same = src.clone();
    let list = [
        memmove(addr(&mut src), addr(&mut dst), 300, recs.at(1)),
        Descriptor::memfill(0x4141_4141_4141_4141, addr(&mut fill), 50, F, recs.at(2)),
        Descriptor::compare(addr(&mut src), addr(&mut same), 300, F, recs.at(3)),
        Descriptor::noop(F, recs.at(4)),
    ];
    let cr = dev.run(&Descriptor::batch(list.as_ptr(), 4, F, recs.at(0)), recs.at(0));
    assert_eq!((cr.status, cr.result, cr.bytes_completed), (status::SUCCESS, 0, 4));
    for i in 1..5 {
        assert_eq!(status_of(recs.at(i)), status::SUCCESS, "member {i}");
    }
    assert!(dst == src && fill.iter().all(|b| *b == 0x41));
    let c = dev.model.counters();
    assert_eq!((c.batch, c.executed, c.completed, c.records), (1, 5, 1, 5));
}

#[test]
fn batch_with_a_failing_member_fails_and_a_fence_abandons_the_rest() {
    let mut dev = Dev::new(ModelConfig::default());
    let recs = Records::new(16);
    let mut src = pattern(100, 5);
    let mut d1 = vec![0u8; 100];
    let mut d3 = vec![0u8; 100];
    let list = [
        memmove(addr(&mut src), addr(&mut d1), 100, recs.at(1)),
        memmove(addr(&mut src), addr(&mut d1), 0, recs.at(2)), // XFER_ERANGE
        memmove(addr(&mut src), addr(&mut d3), 100, recs.at(3)),
    ];
    let cr = dev.run(&Descriptor::batch(list.as_ptr(), 3, F, recs.at(0)), recs.at(0));
    assert_eq!((cr.status, cr.result, cr.bytes_completed), (status::BATCH_FAIL, 1, 3));
    assert_eq!([1, 2, 3].map(|i| status_of(recs.at(i))), [status::SUCCESS, status::XFER_ERANGE, status::SUCCESS]);
    assert!(d1 == src && d3 == src, "the members after a failure still run");

    // A fenced member after the failure: it and the rest are abandoned.
    let mut d6 = vec![0u8; 100];
    let list = [
        memmove(addr(&mut src), addr(&mut d1), 100, recs.at(5)),
        Descriptor::noop(F, recs.at(6)),
        memmove(addr(&mut src), addr(&mut d6), 0, recs.at(7)), // fails
        Descriptor::memmove(addr(&mut src), addr(&mut d6), 100, F | flag::FENCE, recs.at(8)),
        Descriptor::noop(F, recs.at(9)),
    ];
    let cr = dev.run(&Descriptor::batch(list.as_ptr(), 5, F, recs.at(4)), recs.at(4));
    assert_eq!((cr.status, cr.bytes_completed), (status::BATCH_FAIL, 3));
    assert_eq!([7, 8, 9].map(|i| status_of(recs.at(i))), [status::XFER_ERANGE, 0, 0]);
    assert!(d6.iter().all(|b| *b == 0));

    // Nested batches and drains are bad opcodes inside a batch.
    let inner = [Descriptor::noop(F, recs.at(13)); 2];
    let list = [
        Descriptor::batch(inner.as_ptr(), 2, F, recs.at(11)),
        Descriptor { flags_opcode: F | u32::from(opcode::DRAIN) << 24, ..Descriptor::noop(F, recs.at(12)) },
    ];
    let cr = dev.run(&Descriptor::batch(list.as_ptr(), 2, F, recs.at(10)), recs.at(10));
    assert_eq!((cr.status, cr.bytes_completed), (status::BATCH_FAIL, 2));
    assert_eq!([11, 12, 13].map(|i| status_of(recs.at(i))), [status::BAD_OPCODE, status::BAD_OPCODE, 0]);
}

#[test]
fn faults_at_the_first_and_last_byte() {
    let mut dev = Dev::new(ModelConfig::default());
    let recs = Records::new(16);
    let n = 4096usize;
    let src = pattern(n, 6);
    let mut i = 0;
    for (side, offset) in [(Side::Source, 0), (Side::Source, n - 1), (Side::Destination, 0), (Side::Destination, n - 1)]
    {
        let mut s = src.clone();
        let mut d = vec![0u8; n];
        dev.model.inject_fault(FaultRule::at(side, offset as u32));
        let cr = dev.run(&memmove(addr(&mut s), addr(&mut d), n as u32, recs.at(i)), recs.at(i));
        i += 1;
        let write = side == Side::Destination;
        let at = if write { addr(&mut d) } else { addr(&mut s) } + offset as u64;
        assert_eq!(cr.code(), status::PAGE_FAULT_NOBOF);
        assert_eq!(cr.write_fault(), write, "{side:?}");
        assert_eq!((cr.result, cr.bytes_completed, cr.fault_addr), (0, offset as u32, at), "{side:?} {offset}");
        assert_eq!(d[..offset], src[..offset], "done before the fault");
        assert!(d[offset..].iter().all(|b| *b == 0), "nothing from the fault on");
    }
    // MEMFILL faults are writes; COMPARE's second buffer is a read.
    let mut d = vec![0u8; 100];
    dev.model.inject_fault(FaultRule::at(Side::Destination, 99));
    let cr = dev.run(&Descriptor::memfill(!0, addr(&mut d), 100, F, recs.at(i)), recs.at(i));
    assert_eq!((cr.status, cr.bytes_completed), (status::PAGE_FAULT_NOBOF | status::WRITE_FAULT, 99));
    assert!(d[..99].iter().all(|b| *b == 0xff) && d[99] == 0);
    let (mut a, mut b) = (src.clone(), src.clone());
    dev.model.inject_fault(FaultRule::at(Side::Destination, 10));
    let cr = dev.run(&Descriptor::compare(addr(&mut a), addr(&mut b), 100, F, recs.at(i + 1)), recs.at(i + 1));
    assert_eq!((cr.status, cr.bytes_completed, cr.fault_addr), (status::PAGE_FAULT_NOBOF, 10, addr(&mut b) + 10));
    // A difference before the faulting byte wins, and the rule stays armed.
    b[5] ^= 1;
    dev.model.inject_fault(FaultRule::at(Side::Source, 10));
    let cr = dev.run(&Descriptor::compare(addr(&mut a), addr(&mut b), 100, F, recs.at(i + 2)), recs.at(i + 2));
    assert_eq!((cr.status, cr.result, cr.bytes_completed), (status::SUCCESS, 1, 5));
    b[5] ^= 1;
    let cr = dev.run(&Descriptor::compare(addr(&mut a), addr(&mut b), 100, F, recs.at(i + 3)), recs.at(i + 3));
    assert_eq!((cr.status, cr.bytes_completed), (status::PAGE_FAULT_NOBOF, 10));
    // Offsets past the transfer do not match: the rule waits for a longer one.
    dev.model.inject_fault(FaultRule::at(Side::Source, 200));
    let cr = dev.run(&Descriptor::compare(addr(&mut a), addr(&mut b), 100, F, recs.at(i + 4)), recs.at(i + 4));
    assert_eq!(cr.status, status::SUCCESS);
    let c = dev.model.counters();
    assert_eq!((c.faults_injected, c.faults_blocked), (7, 0));
}

#[test]
fn a_fault_on_a_descending_copy_leaves_the_front() {
    let mut dev = Dev::new(ModelConfig::default());
    let recs = Records::new(8);
    let (n, shift, at) = (1000usize, 100usize, 300usize);
    let orig = pattern(n + shift, 7);
    let mut buf = orig.clone();
    let base = addr(&mut buf);
    dev.model.inject_fault(FaultRule::at(Side::Source, at as u32));
    let cr = dev.run(&memmove(base, base + shift as u64, n as u32, recs.at(0)), recs.at(0));
    assert_eq!((cr.status, cr.result), (status::PAGE_FAULT_NOBOF, 1));
    assert_eq!((cr.bytes_completed, cr.fault_addr), ((n - 1 - at) as u32, base + at as u64));
    // The end is done, the front (up to and with the faulting byte) is not.
    assert_eq!(buf[shift + at + 1..shift + n], orig[at + 1..n]);
    assert_eq!(buf[..shift + at + 1], orig[..shift + at + 1]);
    // The remainder, resubmitted, finishes the move.
    let rest = (n - cr.bytes_completed as usize) as u32;
    let cr = dev.run(&memmove(base, base + shift as u64, rest, recs.at(1)), recs.at(1));
    assert_eq!((cr.status, cr.result), (status::SUCCESS, 1));
    let mut want = orig.clone();
    want.copy_within(0..n, shift);
    assert!(buf == want);

    // A range rule on a descending copy faults its highest byte in range: a
    // write fault on the destination's last byte.
    let mut buf = orig.clone();
    let base = addr(&mut buf);
    let dst_end = base + (shift + n) as u64;
    dev.model.inject_fault(FaultRule::range(dst_end - 1, dst_end).times(1));
    let cr = dev.run(&memmove(base, base + shift as u64, n as u32, recs.at(2)), recs.at(2));
    assert_eq!(cr.status, status::PAGE_FAULT_NOBOF | status::WRITE_FAULT);
    assert_eq!((cr.result, cr.bytes_completed, cr.fault_addr), (1, 0, dst_end - 1));
    assert!(buf == orig, "nothing moved");
}

#[test]
fn a_fault_in_a_batch_member_and_in_the_list() {
    let mut dev = Dev::new(ModelConfig::default());
    let recs = Records::new(16);
    let mut src = pattern(256, 8);
    let mut dsts = vec![vec![0u8; 256]; 3];
    let list: Vec<Descriptor> =
        (0..3).map(|i| memmove(addr(&mut src), addr(&mut dsts[i]), 256, recs.at(i + 1))).collect();
    // Member 1's destination, byte 16 on.
    let at = addr(&mut dsts[1]) + 16;
    dev.model.inject_fault(FaultRule::range(at, at + 64).times(1));
    let cr = dev.run(&Descriptor::batch(list.as_ptr(), 3, F, recs.at(0)), recs.at(0));
    assert_eq!((cr.status, cr.bytes_completed), (status::BATCH_FAIL, 3));
    let member = wait(recs.at(2));
    assert_eq!(member.status, status::PAGE_FAULT_NOBOF | status::WRITE_FAULT);
    assert_eq!((member.bytes_completed, member.fault_addr), (16, at));
    assert_eq!([1, 3].map(|i| status_of(recs.at(i))), [status::SUCCESS; 2]);
    assert!(dsts[0] == src && dsts[2] == src && dsts[1][..16] == src[..16]);

    // An offset rule that lets the first matching member pass hits the second.
    let list: Vec<Descriptor> =
        (0..3).map(|i| memmove(addr(&mut src), addr(&mut dsts[i]), 256, recs.at(i + 5))).collect();
    dev.model.inject_fault(FaultRule::at(Side::Source, 255).skipping(1));
    let cr = dev.run(&Descriptor::batch(list.as_ptr(), 3, F, recs.at(4)), recs.at(4));
    assert_eq!(cr.status, status::BATCH_FAIL);
    assert_eq!([5, 6, 7].map(|i| status_of(recs.at(i))), [status::SUCCESS, status::PAGE_FAULT_NOBOF, status::SUCCESS]);

    // A fault reading the list at member 2's descriptor: members 0 and 1 run.
    let list: Vec<Descriptor> = (0..3).map(|i| Descriptor::noop(F, recs.at(i + 9))).collect();
    let at = list.as_ptr() as u64 + 2 * 64 + 8;
    dev.model.inject_fault(FaultRule::range(at, at + 1).times(1));
    let cr = dev.run(&Descriptor::batch(list.as_ptr(), 3, F, recs.at(8)), recs.at(8));
    assert_eq!((cr.status, cr.bytes_completed, cr.fault_addr), (status::BATCH_PAGE_FAULT, 2, at));
    assert_eq!([9, 10, 11].map(|i| status_of(recs.at(i))), [status::SUCCESS, status::SUCCESS, 0]);
    assert_eq!(dev.model.counters().faults_injected, 3);
    // The same with block-on-fault: the device waits for the list's page.
    dev.model.inject_fault(FaultRule::range(at, at + 1).times(1));
    let cr = dev.run(&Descriptor::batch(list.as_ptr(), 3, F | flag::BOF, recs.at(12)), recs.at(12));
    assert_eq!((cr.status, cr.bytes_completed), (status::SUCCESS, 3));
    let c = dev.model.counters();
    assert_eq!((c.faults_injected, c.faults_blocked), (4, 1));
}

#[test]
fn faults_in_a_row_then_success_and_block_on_fault() {
    let mut dev = Dev::new(ModelConfig::default());
    let recs = Records::new(32);
    let n = 1000u32;
    let mut src = pattern(n as usize, 10);
    let mut dst = vec![0u8; n as usize];
    let (s, d) = (addr(&mut src), addr(&mut dst));
    // Three faults at offset 100 of whatever is submitted: resubmitting the
    // rest makes 100 bytes of progress each time.
    dev.model.inject_fault(FaultRule::at(Side::Source, 100).times(3));
    let mut done = 0u32;
    let mut i = 0;
    let mut statuses = Vec::new();
    while done < n {
        let cr = dev.run(&memmove(s + u64::from(done), d + u64::from(done), n - done, recs.at(i)), recs.at(i));
        i += 1;
        statuses.push((cr.status, cr.bytes_completed));
        done += if cr.status == status::SUCCESS { n - done } else { cr.bytes_completed };
    }
    let fault = (status::PAGE_FAULT_NOBOF, 100);
    assert_eq!(statuses, [fault, fault, fault, (status::SUCCESS, 0)]);
    assert!(dst == src);

    // A range until cleared: the same address faults every time. (The range
    // ends with `dst`: past it may lie `src`, whose reads would fault first.)
    let page = d + 512;
    dev.model.inject_fault(FaultRule::range(page, d + u64::from(n)));
    for _ in 0..5 {
        let cr = dev.run(&memmove(s, d, n, recs.at(i)), recs.at(i));
        assert_eq!((cr.bytes_completed, cr.fault_addr), (512, page));
        i += 1;
    }
    // With block-on-fault the device waits for the page: success, counted.
    let cr = dev.run(&Descriptor::memmove(s, d, n, F | flag::BOF, recs.at(i)), recs.at(i));
    assert_eq!(cr.status, status::SUCCESS);
    dev.model.clear_faults();
    let cr = dev.run(&memmove(s, d, n, recs.at(i + 1)), recs.at(i + 1));
    assert_eq!(cr.status, status::SUCCESS);
    let c = dev.model.counters();
    assert_eq!((c.faults_injected, c.faults_blocked), (9, 1));

    // Every third matching descriptor, twice.
    dev.model.inject_fault(FaultRule::at(Side::Destination, 0).every(3).times(2));
    let got: Vec<u8> = (0..8)
        .map(|k| {
            let rec = recs.at(i + 2 + k);
            dev.run(&memmove(s, d, n, rec), rec).status
        })
        .collect();
    let (ok, pf) = (status::SUCCESS, status::PAGE_FAULT_NOBOF | status::WRITE_FAULT);
    assert_eq!(got, [pf, ok, ok, pf, ok, ok, ok, ok]);
}

#[test]
fn faults_from_the_configuration() {
    let mut dev = Dev::with(|c| c.faults = vec![FaultRule::at(Side::Source, 7).every(2).until_cleared()]);
    let recs = Records::new(8);
    let mut src = pattern(64, 11);
    let mut dst = vec![0u8; 64];
    let got: Vec<u8> =
        (0..6).map(|k| dev.run(&memmove(addr(&mut src), addr(&mut dst), 64, recs.at(k)), recs.at(k)).status).collect();
    let (ok, pf) = (status::SUCCESS, status::PAGE_FAULT_NOBOF);
    assert_eq!(got, [pf, ok, pf, ok, pf, ok]);
    let bad = ModelConfig { faults: vec![FaultRule::range(5, 5)], ..ModelConfig::default() };
    assert!(matches!(Model::start(bad), Err(ModelError::Config(_))));
    assert!(matches!(Model::start(ModelConfig { size: 65, ..ModelConfig::default() }), Err(ModelError::Config(_))));
}

#[test]
fn injected_errors_for_the_next_descriptors() {
    let mut dev = Dev::new(ModelConfig::default());
    let recs = Records::new(16);
    let mut src = pattern(64, 12);
    let mut dst = vec![0u8; 64];
    let (s, d) = (addr(&mut src), addr(&mut dst));
    dev.model.inject_errors(status::TRANSLATION_FAIL, 2, None);
    let got: Vec<(u8, u64)> = (0..3)
        .map(|k| {
            let cr = dev.run(&memmove(s, d, 64, recs.at(k)), recs.at(k));
            (cr.status, cr.fault_addr)
        })
        .collect();
    assert_eq!(got, [(status::TRANSLATION_FAIL, s), (status::TRANSLATION_FAIL, s), (status::SUCCESS, 0)]);
    // Of one opcode only.
    dev.model.inject_errors(status::TRANSLATION_FAIL, 1, Some(opcode::MEMFILL));
    assert_eq!(dev.run(&memmove(s, d, 64, recs.at(3)), recs.at(3)).status, status::SUCCESS);
    let cr = dev.run(&Descriptor::memfill(0, d, 64, F, recs.at(4)), recs.at(4));
    assert_eq!((cr.status, cr.fault_addr), (status::TRANSLATION_FAIL, d));
    assert!(dst == src, "the failed fill wrote nothing");
    // A batch given an error runs no member.
    let list = [Descriptor::noop(F, recs.at(6)); 2];
    dev.model.inject_errors(0x1f, 1, None);
    let cr = dev.run(&Descriptor::batch(list.as_ptr(), 2, F, recs.at(5)), recs.at(5));
    assert_eq!(cr.status, 0x1f);
    assert_eq!(status_of(recs.at(6)), 0);
    // A member error fails the batch.
    let list: Vec<Descriptor> = (0..2).map(|k| Descriptor::noop(F, recs.at(8 + k))).collect();
    dev.model.inject_errors(status::TRANSLATION_FAIL, 1, Some(opcode::NOOP));
    let cr = dev.run(&Descriptor::batch(list.as_ptr(), 2, F, recs.at(7)), recs.at(7));
    assert_eq!((cr.status, cr.bytes_completed), (status::BATCH_FAIL, 2));
    assert_eq!([8, 9].map(|k| status_of(recs.at(k))), [status::TRANSLATION_FAIL, status::SUCCESS]);
    assert_eq!(dev.model.counters().errors_injected, 5);
}

/// ENQCMD of a descriptor whose buffers and record outlive the model's use
/// of them (every test keeps them until its end, after waiting).
fn enq(model: &Model, d: &Descriptor) -> bool {
    // SAFETY: as said above.
    unsafe { model.enqcmd(d) }
}

fn shared(size: u32) -> Arc<Model> {
    Model::start(ModelConfig { mode: Mode::Shared, size, ..ModelConfig::default() }).unwrap()
}

#[test]
fn shared_queue_retries_and_refuses_when_full() {
    let model = shared(2);
    let recs = Records::new(16);
    model.inject_retries(3);
    let noop = |i| Descriptor::noop(F, recs.at(i));
    let tries: Vec<bool> = (0..4).map(|_| enq(&model, &noop(0))).collect();
    assert_eq!(tries, [false, false, false, true]);
    assert_eq!(wait(recs.at(0)).status, status::SUCCESS);

    // Slow descriptors hold the queue's two entries.
    model.set_slowdown(Slowdown { ns_per_descriptor: 200_000_000, ..Slowdown::default() });
    let mut bufs = vec![0u8; 128];
    let base = addr(&mut bufs);
    let d1 = Descriptor::memfill(0, base, 1, F, recs.at(1));
    let d2 = Descriptor::memfill(0, base + 1, 1, F, recs.at(2));
    assert!(enq(&model, &d1) && enq(&model, &d2));
    assert!(!enq(&model, &noop(3)), "full");
    model.set_slowdown(Slowdown::default());
    wait(recs.at(1));
    // The first slow one is done: one entry free (the second may still run).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !enq(&model, &noop(3)) {
        assert!(Instant::now() < deadline);
        std::thread::yield_now();
    }
    assert_eq!(wait(recs.at(3)).status, status::SUCCESS);
    let c = model.counters();
    assert_eq!((c.retries_injected, c.accepted, c.completed), (3, 4, 4));
    assert!(c.queue_full >= 1);
    assert_eq!(c.in_flight_high_water, 2);
    // A descriptor whose first word is zero (a NOOP without flags) is seen.
    assert!(enq(&model, &Descriptor::noop(0, recs.at(4))));
    let deadline = Instant::now() + Duration::from_secs(10);
    while model.counters().completed < 5 {
        assert!(Instant::now() < deadline);
        std::thread::yield_now();
    }
    assert_eq!(model.counters().noop, 3);
}

#[test]
fn shared_queue_from_many_threads_never_exceeds_its_size() {
    let model = shared(4);
    let per_thread = 200;
    std::thread::scope(|s| {
        for _ in 0..8 {
            let model = &model;
            s.spawn(move || {
                let recs = Records::new(per_thread);
                let mut src = pattern(512, 1);
                let mut dst = vec![0u8; 512];
                for i in 0..per_thread {
                    let d = memmove(addr(&mut src), addr(&mut dst), 512, recs.at(i));
                    while !enq(model, &d) {
                        std::thread::yield_now();
                    }
                    assert_eq!(wait(recs.at(i)).status, status::SUCCESS);
                }
                assert!(dst == src);
            });
        }
    });
    let c = model.counters();
    assert_eq!((c.accepted, c.completed, c.memmove), (1600, 1600, 1600));
    assert!((1..=4).contains(&c.in_flight_high_water), "{c:?}");
    // ENQCMD to a dedicated queue is refused.
    let dedicated = Model::start(ModelConfig::default()).unwrap();
    let rec = Records::new(1);
    assert!(!enq(&dedicated, &Descriptor::noop(F, rec.at(0))));
}

#[test]
fn slowdown_is_measurable() {
    let mut dev = Dev::with(|c| c.max_transfer_size = 64 << 20);
    let recs = Records::new(16);
    let n = 16usize << 20;
    let mut src = pattern(n, 13);
    let mut dst = vec![0u8; n];
    let (s, d) = (addr(&mut src), addr(&mut dst));
    // Each run: the time seen here, and the model's own work and busy time.
    let time = |dev: &mut Dev, i: usize| {
        let (before, t) = (dev.model.counters(), Instant::now());
        assert_eq!(dev.run(&memmove(s, d, n as u32, recs.at(i)), recs.at(i)).status, status::SUCCESS);
        let (elapsed, after) = (t.elapsed(), dev.model.counters());
        let ns = Duration::from_nanos;
        (elapsed, ns(after.work_ns - before.work_ns), ns(after.busy_ns - before.busy_ns))
    };
    time(&mut dev, 0); // pages in
    let (elapsed, work, busy) = time(&mut dev, 1);
    assert!(work > Duration::ZERO && busy >= work && elapsed >= busy, "{work:?} {busy:?} {elapsed:?}");
    // Four times the model's own time (which the scheduler may stretch:
    // compared with the same run's work time, not another run's).
    dev.model.set_slowdown(Slowdown { factor: 4, ..Slowdown::default() });
    let (elapsed, work, busy) = time(&mut dev, 2);
    assert!(busy >= work * 4 && elapsed >= busy, "work {work:?}, busy {busy:?}, seen {elapsed:?}");
    // A fixed time per KiB: 16 MiB at 500 ns/KiB is at least 8 ms.
    dev.model.set_slowdown(Slowdown { ns_per_kib: 500, ..Slowdown::default() });
    assert!(time(&mut dev, 3).0 >= Duration::from_millis(8));
    // A fixed time per descriptor.
    dev.model.set_slowdown(Slowdown { ns_per_descriptor: 5_000_000, ..Slowdown::default() });
    let mut small = vec![0u8; 8];
    let t = Instant::now();
    dev.run(&Descriptor::memfill(0, addr(&mut small), 8, F, recs.at(4)), recs.at(4));
    assert!(t.elapsed() >= Duration::from_millis(5));
    assert!(dst == src);
}

#[test]
fn the_high_water_mark_sees_descriptors_waiting_in_the_ring() {
    // Eight descriptors written before the model sees the first one: slot 0
    // is written last.
    let mut dev = Dev::with(|c| c.size = 8);
    let recs = Records::new(16);
    let mut buf = vec![0u8; 64];
    let base = addr(&mut buf);
    let d: Vec<Descriptor> = (0..8)
        .map(|i| Descriptor::memfill(i * 0x0101_0101_0101_0101, base + i * 8, 8, F, recs.at(i as usize)))
        .collect();
    for (k, desc) in d.iter().enumerate().skip(1) {
        write_slot(&dev.model, k as u64, desc);
    }
    write_slot(&dev.model, 0, &d[0]);
    dev.next = 8;
    dev.drain(8);
    let c = dev.model.counters();
    assert_eq!((c.in_flight_high_water, c.overruns, c.accepted, c.completed), (8, 0, 8, 8));
    assert!((0..8u64).all(|i| buf[i as usize * 8..][..8].iter().all(|b| u64::from(*b) == i)));

    // Ten against a size of 4: overruns, executed all the same.
    let mut dev = Dev::with(|c| c.size = 4);
    let d: Vec<Descriptor> = (0..10).map(|i| Descriptor::noop(F, recs.at(i))).collect();
    for (k, desc) in d.iter().enumerate().skip(1) {
        write_slot(&dev.model, k as u64, desc);
    }
    write_slot(&dev.model, 0, &d[0]);
    dev.next = 10;
    dev.drain(10);
    let c = dev.model.counters();
    assert_eq!(c.in_flight_high_water, 10);
    assert!(c.overruns >= 1, "{c:?}");
}

#[test]
fn the_ring_wraps_many_times_within_the_queue_size() {
    let size = 16usize;
    let mut dev = Dev::with(|c| c.size = size as u32);
    let total = 1000usize;
    let recs = Records::new(total);
    let mut src = pattern(total, 14);
    let mut dst = vec![0u8; total];
    let (s, d) = (addr(&mut src), addr(&mut dst));
    let mut in_flight = std::collections::VecDeque::new();
    for i in 0..total {
        if in_flight.len() == size {
            let j: usize = in_flight.pop_front().unwrap();
            assert_eq!(wait(recs.at(j)).status, status::SUCCESS);
        }
        dev.submit(&memmove(s + i as u64, d + i as u64, 1, recs.at(i)));
        in_flight.push_back(i);
    }
    for j in in_flight {
        assert_eq!(wait(recs.at(j)).status, status::SUCCESS);
    }
    assert!(dst == src);
    let c = dev.model.counters();
    assert_eq!((c.accepted, c.completed, c.memmove, c.records, c.bytes), (1000, 1000, 1000, 1000, 1000));
    assert!((1..=size as u64).contains(&c.in_flight_high_water), "{c:?}");
    assert_eq!(c.overruns, 0);
}

/// CPU time the model's thread has used.
fn thread_cpu_time(model: &Model) -> Duration {
    use std::os::unix::thread::JoinHandleExt;
    let guard = lock(&model.handle);
    let thread = guard.as_ref().unwrap().as_pthread_t();
    let mut clock = 0;
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a live thread (its handle is held); the results go to locals.
    unsafe {
        assert_eq!(libc::pthread_getcpuclockid(thread, &mut clock), 0);
        assert_eq!(libc::clock_gettime(clock, &mut ts), 0);
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn an_idle_model_sleeps_and_stops_cleanly() {
    let models: Vec<Arc<Model>> = (0..32).map(|_| Model::start(ModelConfig::default()).unwrap()).collect();
    let idle = &models[0];
    std::thread::sleep(Duration::from_millis(20));
    let before = thread_cpu_time(idle);
    std::thread::sleep(Duration::from_millis(300));
    let used = thread_cpu_time(idle) - before;
    assert!(used < Duration::from_millis(100), "an idle model used {used:?} of 300 ms");
    for m in &models {
        assert!(m.is_running());
        m.stop();
        assert!(!m.is_running());
        m.stop(); // twice is fine
    }
    // A stopped model leaves its ring alone.
    let mut dev = Dev::new(ModelConfig::default());
    dev.model.stop();
    let recs = Records::new(1);
    dev.submit(&Descriptor::noop(F, recs.at(0)));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!((status_of(recs.at(0)), dev.model.counters().accepted), (0, 0));
    drop(models);
    // Dropping a running model stops it.
    let m = Model::start(ModelConfig::default()).unwrap();
    assert_eq!((m.portal() as usize % 4096, Model::slots()), (0, 64));
    drop(m);
}
