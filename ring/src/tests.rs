use super::offer::{Offer, Staged, Staging};
use super::take::Taking;
use super::*;
use core::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

const GEOMETRY: Geometry = Geometry { slots: 4, slot_bytes: 64 << 10 };
const WRITER: i32 = 4242;

fn uid() -> u32 {
    ipc_offload_sys::net::geteuid()
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

/// Stages `data` as one offer (opened by the caller), with `patience` and
/// liveness `alive`.
fn stage_all(ring: &Ring, offer: &Offer, data: &[u8], patience: Duration, alive: &AtomicBool) -> Staged {
    let mut src = data.to_vec();
    let segs = [iov(&mut src)];
    let mut cursor = Cursor::new(&segs);
    let mut still = || alive.load(SeqCst);
    let mut how =
        Staging { patience, drain: Duration::from_millis(200), alive: &mut still, placed: &mut || {}, behind: false };
    // SAFETY: the cursor covers offer.total bytes.
    let staged = unsafe { ring.stage(offer, &mut cursor, &mut plain_copy(), &mut how) };
    ring.close(offer);
    staged
}

/// The reader's side: takes reads of `size` bytes until it has `n`.
fn take_all(ring: &Ring, n: usize, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let start = Instant::now();
    while out.len() < n {
        assert!(start.elapsed() < Duration::from_secs(20), "stuck at {} of {n}", out.len());
        let mut buf = vec![0u8; size.min(n - out.len())];
        let segs = [iov(&mut buf)];
        let mut cursor = Cursor::new(&segs);
        let mut alive = || true;
        let mut how = Taking { more: Duration::from_millis(5), alive: &mut alive, sleep: Sleep::default() };
        let Some(o) = ring.open_offer() else {
            std::thread::yield_now();
            continue;
        };
        // SAFETY: `buf` holds buf.len() bytes.
        let (got, abort) = unsafe { ring.take(o.seq, &mut cursor, buf.len() as u64, &mut plain_copy(), &mut how) };
        assert_eq!(abort, None);
        out.extend_from_slice(&buf[..got as usize]);
        if got == 0 {
            std::thread::yield_now();
        }
    }
    out
}

/// One offer of `n` bytes taken in reads of `size`; returns what the writer
/// counted.
fn offer_taken_in(reader: &Arc<Ring>, writer: &Arc<Ring>, n: usize, size: usize) -> Staged {
    let data = Arc::new(pattern(n, n as u8));
    let (w, d) = (Arc::clone(writer), Arc::clone(&data));
    let writing = std::thread::spawn(move || {
        let offer = w.try_open(d.len() as u64, WRITER).expect("the ring is free");
        stage_all(&w, &offer, &d, Duration::from_secs(20), &AtomicBool::new(true))
    });
    let got = take_all(reader, n, size);
    let staged = writing.join().unwrap();
    assert!(got == *data, "{n} bytes in reads of {size}: the bytes differ");
    staged
}

/// The sequence number of the ring's last offer.
fn offer_seq(ring: &Ring) -> u32 {
    seq_of_offer(ring.u64_at(OFF_OFFER).load(SeqCst))
}

#[test]
fn create_and_attach_agree() {
    let (reader, writer) = pair(GEOMETRY);
    assert_eq!(writer.geometry(), GEOMETRY);
    assert_eq!(writer.reader_pid(), std::process::id() as i32);
    assert_eq!(reader.geometry().ring_bytes(), 8192 + 4 * (64 << 10));
    assert_eq!(reader.geometry().capacity(), 4 * (64 << 10));
}

#[test]
fn a_new_ring_takes_memory_only_for_the_pages_used() {
    // A short connection pays for the header page, not for the buffer:
    // neither side's mapping faults the buffer in (docs/ipc-protocol.md,
    // "The ring"). A page written by one side is the other's at once.
    let geometry = Geometry { slots: 16, slot_bytes: 256 << 10 };
    let (reader, writer) = pair(geometry);
    let buffer = |ring: &Ring, off: usize| ring.map.ptr().wrapping_add(DATA + off).cast_const();
    let resident = |ring: &Ring, off: usize| ipc_offload_sys::mem::resident(buffer(ring, off)).unwrap();
    for off in [0, 1 << 20, (4 << 20) - 4096] {
        assert!(!resident(&reader, off), "buffer byte {off} faulted in by the reader's set-up");
        assert!(!resident(&writer, off), "buffer byte {off} faulted in by the writer's mapping");
    }
    assert!(ipc_offload_sys::mem::resident(reader.map.ptr()).unwrap(), "the header is written at once");
    // SAFETY: inside the writer's mapping of the buffer.
    unsafe { *buffer(&writer, 1 << 20).cast_mut() = 9 };
    assert!(resident(&reader, 1 << 20));
    // SAFETY: inside the reader's mapping of the same page.
    assert_eq!(unsafe { *buffer(&reader, 1 << 20) }, 9);
    assert!(!resident(&reader, 2 << 20), "only the page used");
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
        let fd =
            unsafe { ipc_offload_sys::syscall6(libc::SYS_memfd_create, [c"x".as_ptr() as usize, flags, 0, 0, 0, 0]) };
        OwnedFd::new(fd.unwrap() as i32)
    };
    assert_eq!(Ring::attach(loose.raw(), uid(), 22).unwrap_err(), RingError::Refused("not sealed against resizing"));
    let garbage = ipc_offload_sys::mem::sealed_memfd(c"garbage", 1 << 20).unwrap();
    assert_eq!(Ring::attach(garbage.raw(), uid(), 22).unwrap_err(), RingError::Refused("bad magic"));
    assert_eq!(Ring::create(Geometry { slots: 0, slot_bytes: 4096 }, 1, 1, 2).unwrap_err(), RingError::BadGeometry);
    assert_eq!(Ring::create(Geometry { slots: 4, slot_bytes: 1000 }, 1, 1, 2).unwrap_err(), RingError::BadGeometry);
}

#[test]
fn offers_of_every_shape_arrive_whole_in_reads_of_every_size() {
    let (reader, writer) = pair(GEOMETRY);
    for (n, size) in [
        (1, 1),
        (4096, 1),
        (65536, 65536),
        (65537, 4096),
        (1 << 20, 1 << 20),
        (1 << 20, 7),
        ((3 << 20) + 5, 1 << 22),
        (5 << 20, 100_000),
    ] {
        let staged = offer_taken_in(&reader, &writer, n, size);
        assert_eq!(
            staged,
            Staged { sent: n as u64, placed: n as u64, abort: None, behind: false },
            "{n} in reads of {size}"
        );
        assert_eq!(reader.ready(), 0);
    }
}

#[test]
fn a_reader_that_never_comes_gets_nothing_and_the_writer_keeps_its_bytes() {
    let (reader, writer) = pair(GEOMETRY);
    let offer = writer.try_open(1 << 20, WRITER).unwrap();
    let start = Instant::now();
    let staged = stage_all(&writer, &offer, &pattern(1 << 20, 1), Duration::from_millis(30), &AtomicBool::new(true));
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(staged.sent, 0);
    assert_eq!(staged.abort, Some(Abort::Withdrawn));
    assert_eq!(staged.placed, GEOMETRY.capacity(), "it filled the ring, then waited");
    assert_eq!(reader.open_offer(), None, "closed");
    assert_eq!(reader.ready(), 0);
    // The ring is free again, and the next offer goes through whole.
    offer_taken_in(&reader, &writer, 300_000, 65536);
}

#[test]
fn what_was_taken_counts_and_the_rest_is_withdrawn() {
    let (reader, writer) = pair(GEOMETRY);
    let data = pattern(1 << 20, 9);
    let (w, d) = (Arc::clone(&writer), data.clone());
    let writing = std::thread::spawn(move || {
        let offer = w.try_open(d.len() as u64, WRITER).unwrap();
        stage_all(&w, &offer, &d, Duration::from_millis(100), &AtomicBool::new(true))
    });
    let got = take_all(&reader, 100_000, 30_000);
    let staged = writing.join().unwrap();
    assert_eq!((staged.sent, staged.abort), (100_000, Some(Abort::Withdrawn)));
    assert_eq!(got, data[..100_000]);
    // Nothing more can be taken from the withdrawn offer.
    let mut buf = vec![0u8; 4096];
    let segs = [iov(&mut buf)];
    let mut alive = || true;
    let mut how = Taking { more: Duration::ZERO, alive: &mut alive, sleep: Sleep::default() };
    // SAFETY: 4096 bytes of room.
    let r = unsafe { reader.take(offer_seq(&writer), &mut Cursor::new(&segs), 4096, &mut plain_copy(), &mut how) };
    assert_eq!(r, (0, None));
}

#[test]
fn a_second_offer_waits_until_the_first_is_copied_out() {
    let (reader, writer) = pair(GEOMETRY);
    assert!(writer.try_open(0, WRITER).is_none(), "an empty offer");
    let first = writer.try_open(100, WRITER).unwrap();
    assert!(writer.try_open(100, WRITER + 1).is_none(), "one offer at a time");
    assert_eq!(reader.holder().map(|h| (h.writer, h.open)), Some((WRITER, true)));
    // Taken but not yet copied out: its room is not free.
    let taken = writer.u64_at(OFF_TAKEN);
    taken.store(count(first.seq, 50), SeqCst);
    writer.u64_at(OFF_STAGED).store(count(first.seq, 100), SeqCst);
    writer.withdraw(first.seq);
    writer.close(&first);
    assert_eq!(reader.holder(), None);
    assert!(writer.try_open(100, WRITER).is_none(), "the reader still copies");
    writer.u64_at(OFF_COPIED).store(count(first.seq, 50), SeqCst);
    let second = writer.try_open(100, WRITER).expect("copied out: free");
    assert_eq!(second.seq, first.seq + 1);
}

#[test]
fn the_reader_keeps_what_a_dead_writer_placed_and_ends_its_offer() {
    let (reader, writer) = pair(GEOMETRY);
    let data = pattern(200_000, 3);
    let offer = writer.try_open(1 << 20, WRITER).unwrap();
    // The writer placed 200 000 bytes of a megabyte, then died.
    let mut src = data.clone();
    let segs = [iov(&mut src)];
    // SAFETY: 200 000 bytes into the start of the buffer (capacity 256 KiB).
    unsafe { Cursor::new(&segs).copy_out(writer.at(0).0, data.len(), &mut plain_copy()) };
    writer.u64_at(OFF_STAGED).store(count(offer.seq, data.len() as u64), SeqCst);
    let mut out = vec![0u8; 1 << 20];
    let segs = [iov(&mut out)];
    let mut dead = || false;
    let mut how = Taking { more: Duration::from_millis(5), alive: &mut dead, sleep: Sleep::default() };
    // SAFETY: a megabyte of room.
    let (got, abort) = unsafe { reader.take(offer.seq, &mut Cursor::new(&segs), 1 << 20, &mut plain_copy(), &mut how) };
    assert_eq!((got, abort), (200_000, Some(Abort::PeerGone)));
    assert_eq!(out[..200_000], data[..]);
    assert!(reader.end_orphan(offer.seq, WRITER));
    assert_eq!(reader.holder(), None);
    assert!(writer.try_open(10, WRITER).is_some(), "the ring is free for the next writer");
}

#[test]
fn a_writer_that_died_setting_its_offer_up_is_cleared() {
    let (reader, writer) = pair(GEOMETRY);
    let word = writer.u64_at(OFF_OFFER);
    word.store(offer_word(SETUP, 7, WRITER), SeqCst);
    assert_eq!(reader.holder(), Some(super::take::Holder { seq: 7, writer: WRITER, open: false }));
    assert_eq!(reader.open_offer(), None);
    assert!(!reader.end_orphan(7, WRITER + 1), "another writer's");
    assert!(reader.end_orphan(7, WRITER));
    let next = writer.try_open(10, WRITER).expect("free");
    assert_eq!(next.seq, 8);
}

#[test]
fn the_writer_counts_only_what_a_vanished_reader_copied() {
    let (reader, writer) = pair(GEOMETRY);
    let offer = writer.try_open(1 << 20, WRITER).unwrap();
    let alive = Arc::new(AtomicBool::new(true));
    let (w, a) = (Arc::clone(&writer), Arc::clone(&alive));
    let writing = std::thread::spawn(move || stage_all(&w, &offer, &pattern(1 << 20, 2), Duration::from_secs(20), &a));
    let got = take_all(&reader, 70_000, 70_000);
    assert_eq!(got.len(), 70_000);
    // It claims more, but goes away before copying it.
    while reader.ready() == 0 {
        std::thread::yield_now();
    }
    let o = reader.open_offer().unwrap();
    reader.u64_at(OFF_TAKEN).store(count(o.seq, o.taken + 1000), SeqCst);
    alive.store(false, SeqCst);
    let staged = writing.join().unwrap();
    assert_eq!((staged.sent, staged.abort), (70_000, Some(Abort::PeerGone)));
}

#[test]
fn garbage_in_the_counts_is_caught_on_both_sides() {
    let (reader, writer) = pair(GEOMETRY);
    let offer = writer.try_open(1000, WRITER).unwrap();
    // The writer says it placed more than it offers.
    writer.u64_at(OFF_STAGED).store(count(offer.seq, 5000), SeqCst);
    let mut buf = vec![0u8; 8192];
    let segs = [iov(&mut buf)];
    let mut alive = || true;
    let mut how = Taking { more: Duration::ZERO, alive: &mut alive, sleep: Sleep::default() };
    // SAFETY: 8192 bytes of room.
    let r = unsafe { reader.take(offer.seq, &mut Cursor::new(&segs), 8192, &mut plain_copy(), &mut how) };
    assert_eq!(r, (0, Some(Abort::Corrupt)));
    writer.u64_at(OFF_STAGED).store(count(offer.seq, 0), SeqCst);
    writer.close(&offer);
    // The reader says it took bytes never placed.
    let offer = writer.try_open(1 << 20, WRITER).unwrap();
    let evil = Arc::clone(&reader);
    let seq = offer.seq;
    let corrupting = std::thread::spawn(move || {
        while evil.ready() == 0 {
            std::thread::yield_now();
        }
        evil.u64_at(OFF_TAKEN).store(count(seq, 1 << 20), SeqCst);
    });
    let staged = stage_all(&writer, &offer, &pattern(1 << 20, 4), Duration::from_secs(20), &AtomicBool::new(true));
    corrupting.join().unwrap();
    assert_eq!(staged.abort, Some(Abort::Corrupt));
    assert!(staged.sent <= staged.placed);
}

#[test]
fn a_reader_that_moves_taken_beyond_placed_as_the_patience_ends_gets_no_more_than_was_placed() {
    // The writer asks the reader's liveness a nap after its last take, just
    // before its patience check: a hostile reader that moves `taken` past
    // what was placed at that moment is seen only by the withdraw. What
    // counts as sent never exceeds what was placed (else a write returns
    // more than it was asked to write).
    let (_reader, writer) = pair(GEOMETRY);
    let total = 2 * GEOMETRY.capacity();
    let offer = writer.try_open(total, WRITER).unwrap();
    let mut src = pattern(total as usize, 9);
    let segs = [iov(&mut src)];
    let hostile = Arc::clone(&writer);
    let seq = offer.seq;
    let mut alive = || {
        hostile.u64_at(OFF_TAKEN).store(count(seq, total), SeqCst);
        true
    };
    let mut how = Staging {
        patience: NAP,
        drain: Duration::from_millis(200),
        alive: &mut alive,
        placed: &mut || {},
        behind: false,
    };
    // SAFETY: the cursor covers offer.total bytes.
    let staged = unsafe { writer.stage(&offer, &mut Cursor::new(&segs), &mut plain_copy(), &mut how) };
    writer.close(&offer);
    assert_eq!(staged.placed, GEOMETRY.capacity(), "{staged:?}");
    assert!(staged.sent <= staged.placed, "{staged:?}");
}

#[test]
fn presence_says_where_the_reader_is() {
    let (reader, writer) = pair(GEOMETRY);
    assert_eq!(writer.presence(), Presence::default());
    assert!(!writer.presence().inside());
    reader.begin_wait(1 << 20);
    assert_eq!(writer.presence().want, 1 << 20);
    assert!(writer.presence().inside() && !writer.presence().needs_wake());
    reader.sleeping();
    assert!(writer.presence().asleep && writer.presence().needs_wake());
    reader.end_wait();
    assert!(!writer.presence().inside());
    reader.listen(true);
    reader.listen(true);
    assert_eq!(writer.presence().listening, 2);
    assert_eq!(writer.presence().waits, 2, "each wait entered counts");
    assert!(writer.presence().inside() && writer.presence().needs_wake());
    reader.listen(false);
    reader.listen(false);
    reader.listen(false);
    assert_eq!(writer.presence().listening, 0, "never below zero");
    assert_eq!(writer.presence().read_len, 0, "not known before the first read");
    reader.note_read(16 << 10);
    assert_eq!(writer.presence().reads, 1);
    assert_eq!(writer.presence().read_len, 16 << 10);
    reader.note_read(1 << 20);
    assert_eq!((writer.presence().reads, writer.presence().read_len), (2, 1 << 20), "the last read's length");
}

#[test]
fn a_placed_step_rings_the_reader_awake_and_moves_the_mark() {
    let (reader, writer) = pair(GEOMETRY);
    let before = reader.placed_mark();
    let taker = {
        let r = Arc::clone(&reader);
        std::thread::spawn(move || {
            let start = Instant::now();
            let got = take_all(&r, 70_000, 1 << 20);
            (got.len(), start.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(30));
    let offer = writer.try_open(70_000, WRITER).unwrap();
    let staged = stage_all(&writer, &offer, &pattern(70_000, 5), Duration::from_secs(20), &AtomicBool::new(true));
    assert_eq!(staged.sent, 70_000);
    let (n, _) = taker.join().unwrap();
    assert_eq!(n, 70_000);
    assert_ne!(reader.placed_mark(), before);
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

/// An unsealed memfd (sealable) of `len` bytes holding `header` at 0.
fn loose_ring(len: u64, header: &[u8]) -> OwnedFd {
    let flags = (libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) as usize;
    // SAFETY: memfd_create with a literal name, then plain calls on it; the
    // header is a readable slice.
    unsafe {
        let fd = OwnedFd::new(
            ipc_offload_sys::syscall6(libc::SYS_memfd_create, [c"loose".as_ptr() as usize, flags, 0, 0, 0, 0]).unwrap()
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
            let size = ipc_offload_sys::mem::fstat(fd.raw()).unwrap().size;
            if ring.geometry().ring_bytes() > size {
                mismatched += 1;
            }
        }
    }
    attacker.join().unwrap();
    assert_eq!(mismatched, 0, "rings mapped past the end of their sealed file, in {ROUNDS} rounds");
}

#[test]
fn a_side_polls_only_while_its_peer_runs_on_another_cpu() {
    // Pin this thread, so that the CPU it publishes stays its own.
    let cpu = ipc_offload_sys::current_cpu().expect("sched_getcpu");
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
    // A bell rung publishes the CPU too.
    reader.u32_at(OFF_WRITER_CPU).store(0, Relaxed);
    writer.ring_bell(OFF_STAGED_BELL);
    assert_eq!(reader.spin_for(spin), Duration::ZERO);
    // Garbage in the words only changes the decision.
    writer.u32_at(OFF_READER_CPU).store(u32::MAX, Relaxed);
    assert_eq!(writer.spin_for(spin), spin);
}

#[test]
fn a_read_through_the_library_moves_the_edge_mark_but_not_the_placed_mark() {
    let (reader, _writer) = pair(GEOMETRY);
    let (placed, edge) = (reader.placed_mark(), reader.edge_mark());
    reader.note_read(1 << 20);
    assert_eq!(reader.placed_mark(), placed, "a read places nothing");
    assert_ne!(reader.edge_mark(), edge, "an edge-triggered wait hears of what the read left");
    let edge = reader.edge_mark();
    reader.note_read(1 << 20);
    assert_ne!(reader.edge_mark(), edge, "every read moves it");
}

#[test]
fn a_geometry_made_to_fit_a_budget() {
    let full = Geometry { slots: 16, slot_bytes: 256 << 10 }; // 4 MiB and the header
    assert_eq!(full.within(u64::MAX), full);
    assert_eq!(full.within(full.ring_bytes()), full);
    // Fewer slots first: 1 MiB holds 3 slots and the header.
    let fewer = full.within(1 << 20);
    assert_eq!(fewer, Geometry { slots: 3, slot_bytes: 256 << 10 });
    assert!(fewer.ring_bytes() <= 1 << 20);
    // Then smaller slots, the largest that fit (whole pages).
    let budget = 134_217;
    let small = full.within(budget);
    assert_eq!(small.slots, 2);
    assert_eq!(small.slot_bytes % 4096, 0);
    assert!(small.ring_bytes() <= budget && small.ring_bytes() + 2 * 4096 > budget, "{small:?}");
    assert!(small.valid());
    // Never below the smallest slot, whatever the budget.
    assert_eq!(full.within(0), Geometry { slots: 2, slot_bytes: MIN_SLOT_BYTES });
    // A one-slot ring keeps its one slot; slots smaller than the floor stay.
    let one = Geometry { slots: 1, slot_bytes: 8192 };
    assert_eq!(one.within(0), one);
    // Not a geometry a ring can have: returned as it is, no division by 0.
    let none = Geometry { slots: 0, slot_bytes: 0 };
    assert_eq!(none.within(0), none);
}

/// Stages `data` as a write-behind offer: returns as soon as every byte is
/// placed, the offer left open.
fn stage_behind(ring: &Ring, offer: &Offer, data: &[u8]) -> Staged {
    let mut src = data.to_vec();
    let segs = [iov(&mut src)];
    let mut cursor = Cursor::new(&segs);
    let mut alive = || true;
    let mut how = Staging {
        patience: NAP,
        drain: Duration::from_millis(200),
        alive: &mut alive,
        placed: &mut || {},
        behind: true,
    };
    // SAFETY: the cursor covers offer.total bytes.
    unsafe { ring.stage(offer, &mut cursor, &mut plain_copy(), &mut how) }
}

fn settle(ring: &Ring, offer: &Offer, patience: Duration) -> Staged {
    let mut alive = || true;
    let mut how =
        Staging { patience, drain: Duration::from_millis(200), alive: &mut alive, placed: &mut || {}, behind: false };
    ring.settle(offer, &mut how)
}

#[test]
fn a_write_behind_offer_returns_placed_and_is_taken_after_its_writer_left() {
    let (reader, writer) = pair(GEOMETRY);
    let data = pattern(200_000, 7);
    let offer = writer.try_open_after(data.len() as u64, WRITER, RING_FIRST).unwrap();
    let staged = stage_behind(&writer, &offer, &data);
    assert_eq!(staged, Staged { sent: data.len() as u64, placed: data.len() as u64, abort: None, behind: true });
    let holder = reader.holder().expect("the offer stays open");
    assert!(reader.ring_first(&holder), "the reader is told to take it before the kernel's bytes");
    assert_eq!(reader.stream_before(), 0, "RING_FIRST is no stream position");
    assert!(reader.offer_pending());
    // Nobody else may open an offer over the placed bytes meanwhile.
    assert!(writer.try_open(10, WRITER + 1).is_none());
    let got = take_all(&reader, data.len(), 48 << 10);
    assert!(got == data, "the bytes differ");
    let settled = settle(&writer, &offer, Duration::from_millis(50));
    assert_eq!((settled.sent, settled.abort), (data.len() as u64, None));
    writer.close(&offer);
    assert!(writer.try_open(10, WRITER).is_some(), "closed: the ring is free");
}

#[test]
fn a_write_behind_offer_not_taken_is_given_back_for_the_kernel_in_order() {
    let (reader, writer) = pair(GEOMETRY);
    // An offer taken in full first: the second one's words carry the next
    // sequence number (each offer starts at the buffer's first byte).
    let first = pattern(100_000, 1);
    let o1 = writer.try_open(first.len() as u64, WRITER).unwrap();
    stage_behind(&writer, &o1, &first);
    assert!(take_all(&reader, first.len(), 1 << 20) == first);
    assert_eq!(settle(&writer, &o1, Duration::from_millis(50)).sent, first.len() as u64);
    writer.close(&o1);
    let data = pattern(GEOMETRY.capacity() as usize, 9);
    let offer = writer.try_open_after(data.len() as u64, WRITER, RING_FIRST).unwrap();
    stage_behind(&writer, &offer, &data);
    // The reader takes 70,000 bytes, then stops coming.
    let head = take_all(&reader, 70_000, 70_000);
    let settled = settle(&writer, &offer, Duration::from_millis(5));
    assert_eq!((settled.sent, settled.abort), (70_000, Some(Abort::Withdrawn)));
    assert_eq!(reader.open_offer(), None, "withdrawn: nothing more can be taken");
    // What the writer sends through the kernel: the rest, from the ring.
    let mut rest = Vec::new();
    let mut from = settled.sent;
    while from < offer.total {
        let (at, n) = writer.backlog(&offer, from);
        assert!(n > 0);
        // SAFETY: `backlog` names placed bytes inside the mapping.
        rest.extend_from_slice(unsafe { core::slice::from_raw_parts(at, n as usize) });
        from += n;
    }
    assert!(head == data[..70_000] && rest == data[70_000..], "the bytes given back differ");
    writer.close(&offer);
}

fn extend(ring: &Ring, offer: &mut Offer, data: &[u8]) -> u64 {
    let iov = [libc::iovec { iov_base: data.as_ptr() as *mut _, iov_len: data.len() }];
    let mut cursor = Cursor::new(&iov);
    // SAFETY: the cursor covers data.len() bytes.
    unsafe { ring.extend(offer, &mut cursor, data.len() as u64, &mut plain_copy(), &mut || {}) }
}

#[test]
fn a_write_behind_offer_grows_as_far_as_the_ring_has_room_and_is_taken_in_order() {
    let (reader, writer) = pair(GEOMETRY);
    let capacity = GEOMETRY.capacity() as usize;
    let data = pattern(3 * capacity, 5);
    let first = capacity / 2;
    let mut offer = writer.try_open_after(first as u64, WRITER, RING_FIRST).unwrap();
    stage_behind(&writer, &offer, &data[..first]);
    // The reader has taken nothing: room for half the ring more, no more.
    assert_eq!(extend(&writer, &mut offer, &data[first..]), (capacity - first) as u64);
    assert_eq!(offer.total, capacity as u64);
    assert_eq!(extend(&writer, &mut offer, &data[capacity..]), 0, "a full ring has no room");
    // It takes a third of the ring: that much room again, and it takes on
    // where it stood, through the grown part.
    let mut got = take_all(&reader, capacity / 3, 48 << 10);
    assert_eq!(extend(&writer, &mut offer, &data[capacity..]), (capacity / 3) as u64);
    let open = reader.open_offer().expect("the offer stays open");
    assert_eq!((open.total, open.staged), (offer.total, offer.total));
    got.extend(take_all(&reader, offer.total as usize - capacity / 3, 48 << 10));
    assert!(got == data[..offer.total as usize], "the bytes differ");
    let settled = settle(&writer, &offer, Duration::from_millis(50));
    assert_eq!((settled.sent, settled.abort), (offer.total, None));
    writer.close(&offer);
}

#[test]
fn a_withdrawn_or_ended_offer_does_not_grow() {
    let (reader, writer) = pair(GEOMETRY);
    let data = pattern(100_000, 3);
    let mut offer = writer.try_open_after(50_000, WRITER, RING_FIRST).unwrap();
    stage_behind(&writer, &offer, &data[..50_000]);
    let settled = settle(&writer, &offer, Duration::from_millis(2));
    assert_eq!(settled.abort, Some(Abort::Withdrawn));
    assert_eq!(extend(&writer, &mut offer, &data[50_000..]), 0, "withdrawn: the rest goes through the kernel");
    assert_eq!(offer.total, 50_000);
    writer.close(&offer);
    // An offer its reader ended (it took the writer for dead).
    let mut offer = writer.try_open_after(50_000, WRITER, RING_FIRST).unwrap();
    stage_behind(&writer, &offer, &data[..50_000]);
    assert!(reader.end_orphan(offer.seq, WRITER));
    assert_eq!(extend(&writer, &mut offer, &data[50_000..]), 0, "ended by its reader");
}
