use super::*;
use std::sync::Arc;

const GEOMETRY: Geometry = Geometry { slots: 4, slot_bytes: 64 << 10 };

fn uid() -> u32 {
    crate::sys::net::geteuid()
}

/// A reader's ring and the writer's mapping of the same memfd.
fn pair(geometry: Geometry) -> (Arc<Ring>, Arc<Ring>) {
    let (reader, fd) = Ring::create(geometry, std::process::id() as i32, 11, 22).unwrap();
    let writer = Ring::attach(fd.raw(), uid(), 22).unwrap();
    (Arc::new(reader), Arc::new(writer))
}

fn plain_copy() -> impl FnMut(*mut u8, *const u8, usize) {
    |d, s, n| {
        // SAFETY: the ring and the cursors pass ranges inside their buffers.
        unsafe { core::ptr::copy_nonoverlapping(s, d, n) }
    }
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed ^ (i >> 12) as u8)).collect()
}

fn iov(buf: &mut [u8]) -> libc::iovec {
    libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() }
}

/// One full rendezvous of `n` bytes (reader buffer `want`), writer in a thread.
fn rendezvous(reader: &Arc<Ring>, writer: &Arc<Ring>, n: usize, want: usize) -> Vec<u8> {
    let data = Arc::new(pattern(n, n as u8));
    let w = Arc::clone(writer);
    let d = Arc::clone(&data);
    let writer_thread = std::thread::spawn(move || {
        let claim = loop {
            if let Some(c) = w.try_claim(d.len() as u64, 4242) {
                break c;
            }
            std::thread::yield_now();
        };
        let mut src = d[..claim.total as usize].to_vec();
        let segs = [iov(&mut src)];
        let mut cursor = Cursor::new(&segs);
        // SAFETY: the cursor covers claim.total bytes.
        unsafe { w.send(&claim, 4242, &mut cursor, &mut plain_copy(), &mut || true, None) }
    });
    let ticket = reader.begin_wait(want as u64);
    let total = loop {
        match reader.seen(ticket) {
            Seen::Claimed { writer, total } => {
                assert_eq!(writer, 4242);
                break total;
            }
            Seen::Waiting | Seen::Claiming { .. } => std::thread::yield_now(),
            Seen::Other => panic!("the wait vanished"),
        }
    };
    let mut out = vec![0u8; want];
    let segs = [iov(&mut out)];
    let mut cursor = Cursor::new(&segs);
    // SAFETY: `out` holds want >= total bytes.
    let (got, abort) =
        unsafe { reader.receive(ticket, total, &mut cursor, &mut plain_copy(), &mut || true, &mut Sleep::default()) };
    reader.end(ticket);
    assert_eq!((got, abort), (total, None));
    assert_eq!(writer_thread.join().unwrap(), (total, None));
    out.truncate(total as usize);
    assert_eq!(out, data[..total as usize]);
    out
}

#[test]
fn create_and_attach_agree() {
    let (reader, writer) = pair(GEOMETRY);
    assert_eq!(writer.geometry(), GEOMETRY);
    assert_eq!(writer.reader_pid(), std::process::id() as i32);
    assert_eq!(reader.geometry().ring_bytes(), 8192 + 4 * (64 << 10));
}

#[test]
fn attach_refuses_what_the_protocol_forbids() {
    let (_reader, fd) = Ring::create(GEOMETRY, 1, 11, 22).unwrap();
    assert_eq!(Ring::attach(fd.raw(), uid(), 23).unwrap_err(), RingError::Refused("ring of another connection"));
    assert_eq!(Ring::attach(fd.raw(), uid() + 1, 22).unwrap_err(), RingError::Refused("owned by another user"));
    // A memfd that is not sealed, or that is not a ring.
    let loose = {
        let flags = (libc::MFD_CLOEXEC) as usize;
        // SAFETY: memfd_create with a literal name.
        let fd = unsafe { crate::sys::syscall6(libc::SYS_memfd_create, [c"x".as_ptr() as usize, flags, 0, 0, 0, 0]) };
        OwnedFd::new(fd.unwrap() as i32)
    };
    assert_eq!(Ring::attach(loose.raw(), uid(), 22).unwrap_err(), RingError::Refused("not sealed against resizing"));
    let garbage = crate::sys::mem::sealed_memfd(c"garbage", 1 << 20).unwrap();
    assert_eq!(Ring::attach(garbage.raw(), uid(), 22).unwrap_err(), RingError::Refused("bad magic"));
    assert_eq!(Ring::create(Geometry { slots: 0, slot_bytes: 4096 }, 1, 1, 2).unwrap_err(), RingError::BadGeometry);
    assert_eq!(Ring::create(Geometry { slots: 4, slot_bytes: 1000 }, 1, 1, 2).unwrap_err(), RingError::BadGeometry);
}

#[test]
fn transfers_of_every_shape() {
    let (reader, writer) = pair(GEOMETRY);
    for (n, want) in [(1, 1 << 20), (65536, 65536), (65537, 1 << 20), (1 << 20, 1 << 20), ((3 << 20) + 5, 1 << 22)] {
        rendezvous(&reader, &writer, n, want);
    }
    // The reader's buffer is smaller than the write: the claim covers it only.
    let got = rendezvous(&reader, &writer, 1 << 20, 300_000);
    assert_eq!(got.len(), 300_000);
}

#[test]
fn a_withdrawn_wait_cannot_be_claimed() {
    let (reader, writer) = pair(GEOMETRY);
    let ticket = reader.begin_wait(1 << 20);
    assert!(writer.reader_waiting());
    assert!(reader.withdraw(ticket));
    assert!(!writer.reader_waiting());
    assert_eq!(writer.try_claim(100, 1), None);
    // A claimed wait cannot be withdrawn.
    let ticket = reader.begin_wait(1 << 20);
    let claim = writer.try_claim(100, 7).unwrap();
    assert_eq!(claim.ticket, ticket);
    assert!(!reader.withdraw(ticket));
    assert_eq!(reader.seen(ticket), Seen::Claimed { writer: 7, total: 100 });
    assert_eq!(writer.try_claim(100, 8), None, "one claim per wait");
}

#[test]
fn a_claim_left_half_made_can_be_abandoned() {
    let (reader, writer) = pair(GEOMETRY);
    let ticket = reader.begin_wait(1 << 20);
    // A writer that died between CLAIMING and CLAIMED.
    writer.u64_at(OFF_MAILBOX).store(mailbox(CLAIMING, ticket, 99), SeqCst);
    assert_eq!(reader.seen(ticket), Seen::Claiming { writer: 99 });
    assert!(!reader.withdraw(ticket));
    assert!(!reader.abandon_claim(ticket, 98), "only the claimer's own claim");
    assert!(reader.abandon_claim(ticket, 99));
    assert_eq!(reader.seen(ticket), Seen::Other);
    // The ring is usable again.
    let ticket = reader.begin_wait(100);
    assert_eq!(writer.try_claim(100, 7).map(|c| c.ticket), Some(ticket));
    assert!(!reader.abandon_claim(ticket, 7), "a published claim stands");
}

#[test]
fn the_reader_keeps_what_a_dead_writer_sent() {
    let (reader, writer) = pair(GEOMETRY);
    let ticket = reader.begin_wait(1 << 20);
    let claim = writer.try_claim(300_000, 9).unwrap();
    // The writer sends one slot of its claim, then "dies".
    let mut src = pattern(65536, 1);
    let segs = [iov(&mut src)];
    let partial = Claim { ticket: claim.ticket, total: 65536 };
    // It waits for the reader to copy the slot; told the reader is gone, it
    // counts nothing sent, and the slot stays full.
    // SAFETY: 65536 bytes available.
    let sent = unsafe { writer.send(&partial, 9, &mut Cursor::new(&segs), &mut plain_copy(), &mut || false, None) };
    assert_eq!(sent, (0, Some(Abort::PeerGone)));
    let mut out = vec![0u8; 1 << 20];
    let segs = [iov(&mut out)];
    let mut checks = 0;
    // SAFETY: `out` holds 1 MiB.
    let (got, abort) = unsafe {
        let mut alive = || {
            checks += 1;
            false
        };
        reader.receive(
            ticket,
            claim.total,
            &mut Cursor::new(&segs),
            &mut plain_copy(),
            &mut alive,
            &mut Sleep::default(),
        )
    };
    reader.end(ticket);
    assert_eq!((got, abort), (65536, Some(Abort::PeerGone)));
    assert!(checks >= 1);
    assert_eq!(out[..65536], pattern(65536, 1)[..]);
}

#[test]
fn the_writer_stops_when_the_reader_is_gone() {
    let (reader, writer) = pair(GEOMETRY);
    let _ticket = reader.begin_wait(1 << 22);
    let claim = writer.try_claim(1 << 22, 5).unwrap();
    let mut src = pattern(1 << 22, 2);
    let segs = [iov(&mut src)];
    // Nobody drains: the writer fills the 4 slots, then finds the reader
    // gone; none of those bytes was read, so none counts as sent.
    // SAFETY: 4 MiB available.
    let (sent, abort) =
        unsafe { writer.send(&claim, 5, &mut Cursor::new(&segs), &mut plain_copy(), &mut || false, None) };
    assert_eq!((sent, abort), (0, Some(Abort::PeerGone)));
}

#[test]
fn a_writer_counts_what_a_vanished_reader_copied() {
    let (reader, writer) = pair(GEOMETRY);
    let ticket = reader.begin_wait(1 << 22);
    let claim = writer.try_claim(1 << 22, 5).unwrap();
    let mut src = pattern(1 << 22, 2);
    let segs = [iov(&mut src)];
    // The "reader" copies slots 0 and 1 at the writer's first nap, then
    // vanishes: the writer refills them, waits on slot 2 and gives up.
    let mut naps = 0;
    let mut alive = || {
        naps += 1;
        if naps == 1 {
            reader.record_consumed(ticket, 2 * 65536);
            reader.set_slot(0, EMPTY);
            reader.set_slot(1, EMPTY);
        }
        naps == 1
    };
    // SAFETY: 4 MiB available.
    let (sent, abort) = unsafe { writer.send(&claim, 5, &mut Cursor::new(&segs), &mut plain_copy(), &mut alive, None) };
    assert_eq!((sent, abort), (2 * 65536, Some(Abort::PeerGone)));
}

#[test]
fn the_writer_stops_when_the_reader_gives_up() {
    let (reader, writer) = pair(GEOMETRY);
    let ticket = reader.begin_wait(1 << 22);
    let claim = writer.try_claim(1 << 22, 5).unwrap();
    reader.end(ticket);
    let mut src = pattern(1 << 22, 2);
    let segs = [iov(&mut src)];
    // SAFETY: 4 MiB available.
    let (sent, abort) =
        unsafe { writer.send(&claim, 5, &mut Cursor::new(&segs), &mut plain_copy(), &mut || true, None) };
    assert_eq!((sent, abort), (0, Some(Abort::Withdrawn)));
}

#[test]
fn a_slot_length_out_of_range_is_caught() {
    let (reader, writer) = pair(GEOMETRY);
    let ticket = reader.begin_wait(1 << 20);
    let claim = writer.try_claim(1 << 20, 3).unwrap();
    // A hostile writer: slot 0 "full" with a length beyond the slot.
    writer.slot_len(0).store(10 << 20, Relaxed);
    writer.set_slot(0, FULL);
    let mut out = vec![0u8; 1 << 20];
    let segs = [iov(&mut out)];
    // SAFETY: `out` holds 1 MiB.
    let r = unsafe {
        reader.receive(
            ticket,
            claim.total,
            &mut Cursor::new(&segs),
            &mut plain_copy(),
            &mut || true,
            &mut Sleep::default(),
        )
    };
    reader.end(ticket);
    assert_eq!(r, (0, Some(Abort::Corrupt)));
}

#[test]
fn cursors_span_iovecs() {
    let mut a = vec![0u8; 3];
    let mut b = vec![0u8; 0];
    let mut c = vec![0u8; 10];
    let segs = [iov(&mut a), iov(&mut b), iov(&mut c)];
    let mut cursor = Cursor::new(&segs);
    assert_eq!(cursor.remaining(), 13);
    let src: Vec<u8> = (1..=8).collect();
    // SAFETY: 8 bytes of src, 13 of room.
    unsafe { cursor.copy_in(src.as_ptr(), 8, &mut plain_copy()) };
    assert_eq!(cursor.remaining(), 5);
    assert_eq!(a, [1, 2, 3]);
    assert_eq!(&c[..5], &[4, 5, 6, 7, 8]);
}

#[test]
fn a_writer_sleeps_until_the_reader_waits() {
    let (reader, writer) = pair(GEOMETRY);
    assert!(!writer.wait_for_reader(Duration::from_millis(5)), "nobody waits yet");
    let r = Arc::clone(&reader);
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        r.begin_wait(100)
    });
    let start = Instant::now();
    assert!(writer.wait_for_reader(Duration::from_secs(20)));
    assert!(start.elapsed() < Duration::from_secs(10), "woken, not timed out");
    let ticket = t.join().unwrap();
    assert!(reader.withdraw(ticket));
}

#[test]
fn each_ticket_keeps_its_own_count() {
    // A writer that looks late at its transfer must find its own count, not
    // that of the next writer's claim on the same ring.
    let (reader, writer) = pair(GEOMETRY);
    let first = rendezvous(&reader, &writer, 300_000, 1 << 20);
    assert_eq!(first.len(), 300_000);
    let t1 = ticket_of(reader.u64_at(OFF_MAILBOX).load(SeqCst));
    let second = rendezvous(&reader, &writer, 70_000, 1 << 20);
    assert_eq!(second.len(), 70_000);
    assert_eq!(writer.consumed(t1), Some(300_000));
    assert_eq!(writer.consumed(t1.wrapping_add(1) & 0x00ff_ffff), Some(70_000));
    assert_eq!(writer.consumed(t1.wrapping_add(2) & 0x00ff_ffff), None, "nothing copied for a wait not yet made");
}

#[test]
fn a_reader_that_empties_slots_without_counting_is_corrupt() {
    // A hostile reader keeps the claim and empties each slot without
    // recording its count (or waits for nothing). The writer must end the
    // transfer, counting nothing it cannot vouch for, instead of spinning
    // on an empty slot forever.
    for want in [1u64 << 20, 0] {
        let (reader, writer) = pair(GEOMETRY);
        let ticket = reader.begin_wait(want);
        let claim = writer.try_claim(1 << 20, 5).unwrap();
        assert_eq!(claim.total, want);
        let w = Arc::clone(&writer);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut src = pattern(1 << 20, 2);
            let segs = [iov(&mut src)];
            // SAFETY: 1 MiB available.
            let r = unsafe { w.send(&claim, 5, &mut Cursor::new(&segs), &mut plain_copy(), &mut || true, None) };
            let _ = tx.send(r);
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let result = loop {
            for slot in 0..GEOMETRY.slots {
                if reader.slot_word(slot).load(SeqCst) & !SLEEPER == FULL {
                    reader.set_slot(slot, EMPTY);
                }
            }
            if let Ok(r) = rx.try_recv() {
                break r;
            }
            assert!(Instant::now() < deadline, "want {want}: the writer spins on an uncounted reader");
            std::thread::yield_now();
        };
        assert_eq!(result, (0, Some(Abort::Corrupt)), "want {want}");
        reader.end(ticket);
    }
}

/// An unsealed memfd (sealable) of `len` bytes holding `header` at 0.
fn loose_ring(len: u64, header: &[u8]) -> OwnedFd {
    let flags = (libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) as usize;
    // SAFETY: memfd_create with a literal name, then plain calls on it; the
    // header is a readable slice.
    unsafe {
        let fd = OwnedFd::new(
            crate::sys::syscall6(libc::SYS_memfd_create, [c"loose".as_ptr() as usize, flags, 0, 0, 0, 0]).unwrap()
                as i32,
        );
        assert_eq!(libc::ftruncate(fd.raw(), len as libc::off_t), 0);
        assert_eq!(libc::pwrite(fd.raw(), header.as_ptr().cast(), header.len(), 0), header.len() as isize);
        fd
    }
}

#[test]
fn attach_reads_the_size_only_once_it_cannot_change() {
    // A hostile reader offers an unsealed memfd, then shrinks and seals it
    // while the writer attaches. Checked in the other order (size, then
    // seals), the writer could map the old size over a file that no longer
    // has it, and take SIGBUS at its first slot. Seals first: once the
    // file is sealed against resizing, the size read next is the size.
    use std::sync::Barrier;
    use std::sync::atomic::AtomicI32;
    let geometry = Geometry { slots: 1, slot_bytes: 4096 };
    let (model, _) = Ring::create(geometry, std::process::id() as i32, 11, 22).unwrap();
    let mut header = vec![0u8; 4096];
    // SAFETY: the first page of the model ring's mapping.
    unsafe { core::ptr::copy_nonoverlapping(model.map.ptr(), header.as_mut_ptr(), 4096) };
    let big = geometry.ring_bytes();
    let fd_now = Arc::new(AtomicI32::new(-1));
    let barrier = Arc::new(Barrier::new(2));
    const ROUNDS: u32 = 20000;
    let attacker = {
        let (fd_now, barrier) = (Arc::clone(&fd_now), Arc::clone(&barrier));
        std::thread::spawn(move || {
            for round in 0..ROUNDS {
                barrier.wait();
                let fd = fd_now.load(SeqCst);
                for _ in 0..(round % 509) * 4 {
                    core::hint::spin_loop();
                }
                // Shrink below the slot, then seal.
                // SAFETY: plain calls on a memfd the main thread keeps open
                // until the second barrier.
                unsafe {
                    libc::ftruncate(fd, 8192);
                    libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL);
                }
                barrier.wait();
            }
        })
    };
    let mut mismatched = 0;
    for _ in 0..ROUNDS {
        let fd = loose_ring(big, &header);
        fd_now.store(fd.raw(), SeqCst);
        barrier.wait();
        let attached = Ring::attach(fd.raw(), uid(), 22);
        barrier.wait();
        if let Ok(ring) = attached {
            let size = crate::sys::mem::fstat(fd.raw()).unwrap().size;
            if ring.geometry().ring_bytes() > size {
                mismatched += 1;
            }
        }
    }
    attacker.join().unwrap();
    assert_eq!(mismatched, 0, "rings mapped past the end of their sealed file, in {ROUNDS} rounds");
}

#[test]
fn a_record_overwritten_by_a_later_ticket_says_the_wait_ended() {
    let (reader, _) = pair(Geometry { slots: 2, slot_bytes: 4096 });
    // Nothing recorded yet (the record holds ticket 0): not overtaken.
    assert!(!reader.overtaken(5));
    reader.record_consumed(5, 100);
    assert_eq!(reader.consumed(5), Some(100));
    assert!(!reader.overtaken(5), "its own record");
    reader.record_consumed(5 + RESULTS, 7);
    assert_eq!(reader.consumed(5), None);
    assert!(reader.overtaken(5), "a later ticket's record in its place");
    assert!(!reader.overtaken(5 + 2 * RESULTS), "an earlier ticket's record: not yet");
    // Across the 24-bit wrap of tickets.
    let last = 0x00ff_ffff - 3;
    reader.record_consumed(last, 1);
    assert!(!reader.overtaken(last));
    reader.record_consumed((last + RESULTS) & 0x00ff_ffff, 1);
    assert!(reader.overtaken(last), "a later ticket past the wrap");
    assert!(!reader.overtaken((last + 2 * RESULTS) & 0x00ff_ffff));
}

#[test]
fn a_side_polls_only_while_its_peer_runs_on_another_cpu() {
    // Pin this thread, so that the CPU it publishes stays its own.
    let cpu = crate::sys::current_cpu().expect("sched_getcpu");
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread (0).
    unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        assert_eq!(libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set), 0);
    }
    let (reader, writer) = pair(Geometry { slots: 2, slot_bytes: 4096 });
    let spin = Duration::from_millis(2);
    // A peer never seen, or last seen on another CPU: poll.
    assert_eq!(writer.spin_for(spin), spin);
    writer.u32_at(OFF_READER_CPU).store(cpu + 2, Relaxed);
    assert_eq!(writer.spin_for(spin), spin);
    // The reader publishes its CPU (this one) when it looks: now each side
    // sees the other on its own CPU, and sleeps at once.
    assert_eq!(reader.spin_for(spin), Duration::ZERO, "the writer published this CPU above");
    assert_eq!(writer.spin_for(spin), Duration::ZERO);
    // A slot hand-over publishes the CPU too.
    reader.u32_at(OFF_WRITER_CPU).store(0, Relaxed);
    writer.set_slot(0, FULL);
    assert_eq!(reader.spin_for(spin), Duration::ZERO);
    // Garbage in the words only changes the decision.
    writer.u32_at(OFF_READER_CPU).store(u32::MAX, Relaxed);
    assert_eq!(writer.spin_for(spin), spin);
}

#[test]
fn a_wait_begun_far_along_the_ticket_circle_is_not_taken_for_overtaken() {
    let (reader, _) = pair(Geometry { slots: 2, slot_bytes: 4096 });
    // The next wait's ticket is 0xfffff0; its record was never written
    // (ticket 0), which the circle puts 16 tickets after it.
    reader.u64_at(OFF_MAILBOX).store(mailbox(IDLE, 0x00ff_ffef, 0), SeqCst);
    let ticket = reader.begin_wait(4096);
    assert_eq!(ticket, 0x00ff_fff0);
    assert_eq!(reader.consumed(ticket), Some(0), "begin_wait starts the record at 0 bytes");
    assert!(!reader.overtaken(ticket));
}
