//! Hostile peers (issue 8, point 3): this test process speaks protocol v3
//! (written from docs/ipc-protocol.md, tests/hostile/peer.rs) to a victim
//! that runs under the library (tests/c/hostile_victim.c), then breaks it.
//!
//! As a writer, against a victim reader: counts out of range (`placed`
//! beyond `total` or beyond the capacity, a `total` above the largest
//! offer, `taken` beyond `placed`); offers by pids with no process; a
//! writer that stops mid-offer, then execs (its side channel closes); an
//! offer left in SETUP, or taken in full and never closed, by a pid that is
//! gone; the offer word moved to another sequence number mid-take; a
//! scribbled header; malformed side-channel datagrams.
//!
//! As a reader, against a victim writer: malformed OFFERs and rings that
//! are no ring (truncated, oversized, other version or type, wrong size,
//! no lifeline, fds that are not a sealed memfd of this uid, headers that
//! disagree with the file or the connection); a reader that takes bytes
//! and never publishes them copied; one that publishes `taken` or `copied`
//! out of range; one that claims bytes, then goes away; one that jams its
//! `wait` and `listen` words and never takes.
//!
//! Every case checks that the victim exits normally within its watchdog,
//! that its buffers are untouched past what each call returned (guard
//! pages and canaries, in the victim), that it ends without an fd of the
//! library's, and that the bytes that arrived are the stream that was
//! sent: what the ring legitimately carried (for a victim writer, exactly
//! what its count says it sent, "One offer" step 5 and "Errors"), then the
//! kernel's bytes, never garbage, never a gap, never a repeat.

#[path = "hostile/peer.rs"]
mod peer;
#[path = "hostile/script.rs"]
mod script;
#[path = "hostile/sys.rs"]
mod sys;

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use ipc_offload_tests::{counter, fallbacks};
use peer::{
    ASLEEP, CLOSED, DATA, IDLE, OFF_COPIED, OFF_LISTEN, OFF_OFFER, OFF_PLACED, OFF_PLACED_BELL, OFF_READER_CPU,
    OFF_READER_PID, OFF_READS, OFF_RING_BYTES, OFF_TAKEN, OFF_TAKEN_BELL, OFF_TOTAL, OFF_VERSION, OFF_WAIT,
    OFF_WRITER_CPU, OFF_WRITER_INO, OPEN, Ring, SETUP, bytes_of, count, offer_word,
};
use script::{Family, LONG_WRITE_LEN, READ_LEN, SEED, Victim, WRITE_LEN, marked, pat};
use sys::Map;

const FAMILIES: [Family; 2] = [Family::Unix, Family::Pipe];

fn my_pid() -> i32 {
    std::process::id() as i32
}

/// A pid that no process has (one that just exited).
fn dead_pid() -> i32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    child.wait().unwrap();
    pid
}

fn corrupt(v: &Victim, family: Family) -> u64 {
    fallbacks(&v.stats, family.name(), "corrupt")
}

fn peer_gone(v: &Victim, family: Family) -> u64 {
    fallbacks(&v.stats, family.name(), "peer-gone")
}

fn fast_bytes(v: &Victim, family: Family) -> u64 {
    counter(&v.stats, family.name(), "fast_path_bytes")
}

// ---- the victim reads; the peer is a hostile writer ----

/// A hostile writer that met the victim reader: its side-channel socket,
/// the victim's name, the ring it was offered, the victim's pid and the
/// lifeline's far end.
struct Met {
    side: OwnedFd,
    name: Vec<u8>,
    ino32: u32,
    ring: Ring,
    victim: i32,
    lifeline: OwnedFd,
    /// The writer's end of the file, for bytes through the kernel.
    kernel: File,
}

/// The victim's first read opts in; the peer's REQUEST waits for it; the
/// peer's first kernel bytes `k1` end that read; the next read answers with
/// an OFFER, which the peer checks and maps.
fn meet_reader(family: Family, hostile: &mut File, k1: &[u8]) -> Met {
    let (dev, ino) = sys::identity(&OwnedFd::from(hostile.try_clone().unwrap()));
    let name = match family {
        Family::Unix => peer::socket_name(ino),
        Family::Pipe => peer::pipe_name(dev, ino),
    };
    let ino32 = ino as u32;
    let side = sys::dgram(None).unwrap();
    peer::wait_until("the victim to opt in", || {
        sys::send_to(&side, &name, &peer::request(my_pid(), ino32), &[]).is_ok()
    });
    script::send_all(hostile, k1);
    let offer = sys::recv(&side, peer::PATIENCE).expect("an OFFER");
    assert_eq!((peer::kind(&offer.data), offer.data.len()), (Some(2), 16), "an OFFER: {offer:?}");
    let ring_bytes = u64::from_le_bytes(offer.data[8..16].try_into().unwrap());
    let victim = offer.pid.expect("the OFFER's credentials");
    let [memfd, lifeline]: [OwnedFd; 2] = offer.fds.try_into().expect("a memfd and a lifeline");
    let ring = Ring::attach(&memfd);
    assert_eq!(ring.len(), ring_bytes, "the OFFER names the ring's size");
    assert_eq!(ring.u32_at(OFF_READER_PID).load(SeqCst) as i32, victim, "the header names the reader");
    assert_eq!(ring.u32_at(OFF_WRITER_INO).load(SeqCst), ino32, "the header names the writer's socket");
    assert!(!sys::hung_up(&lifeline));
    // The OFFER can go before the victim read `k1` (it served the REQUEST
    // first): kernel bytes still queued when a test's offer opens would be
    // read first, and with a dead writer's offer they may drop its step.
    let pipe = matches!(family, Family::Pipe);
    peer::wait_until("the victim to read k1", || sys::unread(hostile.as_raw_fd(), pipe) == 0);
    let kernel = hostile.try_clone().unwrap();
    Met { side, name, ino32, ring, victim, lifeline, kernel }
}

/// Runs the victim as a reader (1 MiB reads) against a hostile writer
/// that meets it, runs `act` (which returns what the ring delivered, and
/// leaves no offer open), then sends 1000 more kernel bytes and closes.
/// Checks that the victim got exactly `k1`, what `act` says, then `k2`, and
/// returns the victim.
fn against_writer(family: Family, name: &str, act: impl FnOnce(Met) -> Vec<u8> + Send) -> Victim {
    let (victim_end, mut hostile) = script::connection(family, true);
    script::nonblocking(&hostile);
    let (k1, k2) = (marked(1000, 1), marked(1000, 2));
    let len = READ_LEN.to_string();
    let (victim, delivered) =
        script::run(&format!("{name}-{}", family.name()), victim_end, &["read", "100", &len, "OUT"], || {
            let met = meet_reader(family, &mut hostile, &k1);
            let delivered = act(met);
            script::send_all(&mut hostile, &k2);
            drop(hostile);
            delivered
        });
    let expected = [k1, delivered, k2].concat();
    assert!(victim.stdout.contains("end=eof"), "{name} {family:?}: {victim:#?}");
    assert!(
        victim.received == expected,
        "{name} {family:?}: the victim got {} bytes, not the {} sent (first difference at {:?}): {victim:#?}",
        victim.received.len(),
        expected.len(),
        victim.received.iter().zip(&expected).position(|(a, b)| a != b),
    );
    victim
}

/// Sends a WAKE for offer `seq` if the ring says one is due: a reader
/// sleeps in a read, or a wait of the library watches the ring.
fn announce(met: &Met, seq: u32) {
    if met.ring.wants_wake() {
        // A full queue is a reader that has WAKEs to read already.
        let _ = sys::send_to(&met.side, &met.name, &peer::wake(seq), &[]);
    }
}

/// Places `data` from position 0 of offer `seq` as a well-behaved writer:
/// a step at a time, as the victim's copies free room, announcing each;
/// returns once the victim took and copied out all of it.
fn place_all(met: &Met, seq: u32, data: &[u8]) {
    let ring = &met.ring;
    let (len, cap, step) = (data.len() as u64, ring.capacity(), u64::from(ring.slot_bytes));
    let mut placed = 0u64;
    peer::wait_until("the victim to take the offer", || {
        let copied = ring.bytes(OFF_COPIED, seq).expect("`copied` of this offer");
        while placed < len && placed - copied < cap {
            let n = (len - placed).min(cap - (placed - copied)).min(step).min(ring.to_end(placed));
            ring.place(seq, placed, &data[placed as usize..(placed + n) as usize]);
            placed += n;
            announce(met, seq);
        }
        let taken = ring.word(OFF_TAKEN);
        assert_eq!(taken & CLOSED, 0, "the victim closed a live writer's offer: {taken:#x}");
        bytes_of(taken) == len && copied == len
    });
}

/// Offers `data` as a well-behaved writer would ("One offer"): opens,
/// places, waits while the victim takes it all, closes.
fn deliver(met: &Met, data: &[u8]) {
    let seq = met.ring.open(data.len() as u64, my_pid());
    place_all(met, seq, data);
    met.ring.close(seq, my_pid());
}

#[test]
fn counts_out_of_range_are_caught() {
    // The writer opens an offer, then publishes words the reader must not
    // act on: it takes nothing, drops the ring (its lifeline hangs up),
    // and reads the kernel.
    for family in FAMILIES {
        for case in ["placed-beyond-total", "placed-beyond-capacity", "total-above-max", "taken-beyond-placed"] {
            let v = against_writer(family, &format!("counts-{case}"), |met| {
                let ring = &met.ring;
                let cap = ring.capacity();
                // The document does not say how large an offer may be; the
                // library's limit is its public MAX_OFFER.
                let max_offer = ipc_offload_ring::MAX_OFFER;
                let (total, placed, taken) = match case {
                    "placed-beyond-total" => (100, 4096, 0),
                    "placed-beyond-capacity" => (1 << 30, cap + 4096, 0),
                    "total-above-max" => (max_offer + 1, 4096, 0),
                    _ => (1 << 20, 4096, 8192),
                };
                let seq = ring.open(1 << 20, my_pid());
                ring.write_at(0, &marked(8192, 9));
                ring.set_word(OFF_TOTAL, count(seq, total));
                ring.set_word(OFF_TAKEN, count(seq, taken));
                ring.set_word(OFF_PLACED, count(seq, placed));
                ring.ring_bell(OFF_PLACED_BELL);
                sys::send_to(&met.side, &met.name, &peer::wake(seq), &[]).unwrap();
                peer::wait_until("the victim to drop the ring", || sys::hung_up(&met.lifeline));
                Vec::new()
            });
            assert_eq!(corrupt(&v, family), 1, "{case} {family:?}: {:#}", v.stats);
            assert_eq!(fast_bytes(&v, family), 0, "{case} {family:?}");
        }
    }
}

#[test]
fn an_offer_by_a_pid_with_no_process_is_a_dead_writer() {
    // The offer word names a writer that is gone (or never was: pid 0, a
    // negative pid); it placed one step and never another. The reader takes
    // the step, ends the orphan offer and goes back to the kernel; a live
    // writer's offer then goes through.
    for family in FAMILIES {
        for (case, pid) in [("exited", dead_pid()), ("zero", 0), ("negative", -5)] {
            let v = against_writer(family, &format!("dead-writer-{case}"), |met| {
                let ring = &met.ring;
                let orphan = marked(ring.slot_bytes as usize, 3);
                let seq = ring.open_placed(1 << 20, pid, &orphan);
                sys::send_to(&met.side, &met.name, &peer::wake(seq), &[]).unwrap();
                peer::wait_until("the victim to end the orphan offer", || ring.state() == IDLE);
                let n = orphan.len() as u64;
                assert_eq!(ring.seq(), seq);
                assert_eq!(ring.word(OFF_TAKEN), count(seq, n) | CLOSED, "took the step, then CLOSED");
                let after = marked(5000, 13);
                deliver(&met, &after);
                [orphan, after].concat()
            });
            assert_eq!(peer_gone(&v, family), 1, "{case} {family:?}: {:#}", v.stats);
            assert_eq!(fast_bytes(&v, family), 64 * 1024 + 5000, "{case} {family:?}");
        }
    }
}

#[test]
fn a_dead_writers_untaken_step_never_follows_kernel_bytes_written_after_it() {
    // A writer died with a step placed and not taken; another writer of the
    // file then wrote through the kernel. The kernel's bytes come first (the
    // reader reads its queue first), so the step, delivered after them,
    // would break the order: it is dropped, as a write killed after
    // copying nothing. The reader sleeps when the offer opens (no WAKE is
    // sent): only the kernel's bytes wake it.
    for family in FAMILIES {
        let v = against_writer(family, "dead-writer-then-kernel", |mut met| {
            peer::wait_until("the victim to sleep in its read", || met.ring.wants_wake());
            let orphan = marked(met.ring.slot_bytes as usize, 7);
            let seq = met.ring.open_placed(1 << 20, dead_pid(), &orphan);
            let later = marked(3000, 8);
            script::send_all(&mut met.kernel, &later);
            peer::wait_until("the victim to end the orphan offer", || met.ring.state() == IDLE);
            assert_eq!(met.ring.word(OFF_TAKEN), count(seq, 0) | CLOSED, "ended with nothing taken");
            later
        });
        assert_eq!(peer_gone(&v, family), 1, "{family:?}: {:#}", v.stats);
    }
}

#[test]
fn a_writer_that_stops_mid_offer_then_execs_is_noticed() {
    // It places a step, half writes the next and stops (SIGSTOP-like: it
    // touches nothing more): the reader waits for it, as a kernel read
    // waits for a stopped writer. Then its side-channel socket closes (what
    // an exec does): the reader keeps the step and goes back to the kernel.
    for family in FAMILIES {
        let v = against_writer(family, "stops-mid-offer", |met| {
            let pid = my_pid();
            let ring = &met.ring;
            let seq = ring.open(1 << 20, pid);
            let step = marked(ring.slot_bytes as usize, 4);
            let n = step.len() as u64;
            ring.place(seq, 0, &step);
            announce(&met, seq);
            peer::wait_until("the victim to take the step", || ring.bytes(OFF_COPIED, seq) == Some(n));
            ring.write_at(n, &marked(1000, 6));
            std::thread::sleep(Duration::from_millis(300));
            assert_eq!(ring.offer(), offer_word(OPEN, seq, pid), "the offer of a writer that lives was ended");
            assert_eq!(ring.word(OFF_TAKEN), count(seq, n));
            let Met { side, ring, .. } = met;
            drop(side);
            peer::wait_until("the victim to end the offer", || ring.state() == IDLE);
            assert_eq!(ring.word(OFF_TAKEN), count(seq, n) | CLOSED);
            step
        });
        assert_eq!(peer_gone(&v, family), 1, "{family:?}: {:#}", v.stats);
        assert_eq!(fast_bytes(&v, family), 64 * 1024, "{family:?}");
    }
}

#[test]
fn a_writer_that_execs_and_asks_again_ends_its_earlier_offer() {
    // A writer's offer was taken in full, and before it closed it another of
    // its threads exec'd: its side channel closed with the exec, and the new
    // program (the same pid, with the library) sends a REQUEST from a new
    // address. The reader answers it; the earlier offer must then be ended,
    // not kept alive on the new address (before the fix the reader waited
    // on it for ever), and the new program's offers go through.
    for family in FAMILIES {
        let v = against_writer(family, "exec-asks-again", |mut met| {
            let taken = marked(3000, 15);
            let seq = met.ring.open_placed(3000, my_pid(), &taken);
            sys::send_to(&met.side, &met.name, &peer::wake(seq), &[]).unwrap();
            peer::wait_until("the victim to take the offer", || met.ring.bytes(OFF_COPIED, seq) == Some(3000));
            std::thread::sleep(Duration::from_millis(30));
            assert_eq!(met.ring.state(), OPEN, "the offer of a writer that lives was ended");
            drop(std::mem::replace(&mut met.side, sys::dgram(None).unwrap()));
            sys::send_to(&met.side, &met.name, &peer::request(my_pid(), met.ino32), &[]).unwrap();
            let offer = sys::recv(&met.side, peer::PATIENCE).expect("an OFFER for the new program");
            assert_eq!(peer::kind(&offer.data), Some(2), "an OFFER: {offer:?}");
            peer::wait_until("the victim to end the earlier offer", || met.ring.state() == IDLE);
            let after = marked(5000, 14);
            deliver(&met, &after);
            [taken, after].concat()
        });
        assert_eq!(peer_gone(&v, family), 1, "{family:?}: {:#}", v.stats);
        assert_eq!(fast_bytes(&v, family), 8000, "{family:?}");
    }
}

#[test]
fn an_offer_left_by_a_gone_writer_is_cleared() {
    // A writer that died between its swap and OPEN leaves the word in
    // SETUP (its other words half written, bytes in the buffer); one that
    // died after its offer was taken in full leaves it OPEN. The reader
    // clears either (never delivering a byte of the first), and a live
    // writer's offer then goes through.
    for family in FAMILIES {
        for case in ["setup", "taken-in-full"] {
            let v = against_writer(family, &format!("left-{case}"), |met| {
                let ring = &met.ring;
                let gone = dead_pid();
                let mut delivered = Vec::new();
                if case == "setup" {
                    let seq = ring.seq() + 1;
                    ring.set_offer(offer_word(SETUP, seq, gone));
                    ring.write_at(0, &marked(65536, 11));
                    ring.set_word(OFF_TOTAL, count(seq, 1 << 20));
                    ring.set_word(OFF_PLACED, count(seq, 65536));
                    ring.ring_bell(OFF_PLACED_BELL);
                    sys::send_to(&met.side, &met.name, &peer::wake(seq), &[]).unwrap();
                } else {
                    delivered = marked(3000, 12);
                    let seq = ring.open_placed(3000, gone, &delivered);
                    sys::send_to(&met.side, &met.name, &peer::wake(seq), &[]).unwrap();
                    peer::wait_until("the victim to take the offer", || ring.bytes(OFF_COPIED, seq) == Some(3000));
                }
                peer::wait_until("the victim to clear the offer", || ring.state() == IDLE);
                let after = marked(5000, 13);
                deliver(&met, &after);
                [delivered, after].concat()
            });
            assert_eq!(peer_gone(&v, family), 1, "{case} {family:?}: {:#}", v.stats);
            let ring_bytes = if case == "setup" { 5000 } else { 8000 };
            assert_eq!(fast_bytes(&v, family), ring_bytes, "{case} {family:?}");
        }
    }
}

#[test]
fn an_offer_word_moved_to_another_seq_mid_take_is_not_taken_from() {
    // The reader took a step of offer `seq`; the word then names offer
    // `seq + 5`, whose counts do not exist, and more bytes are placed under
    // `seq`. The reader takes none of them (every count carries its offer's
    // sequence number); once the word is IDLE again, a new offer goes
    // through.
    for family in FAMILIES {
        let v = against_writer(family, "offer-moved", |met| {
            let pid = my_pid();
            let ring = &met.ring;
            let step = marked(ring.slot_bytes as usize, 14);
            let n = step.len() as u64;
            let seq = ring.open(3 * n, pid);
            ring.place(seq, 0, &step);
            announce(&met, seq);
            peer::wait_until("the victim to take the step", || ring.bytes(OFF_COPIED, seq) == Some(n));
            let moved = seq + 5;
            ring.set_offer(offer_word(OPEN, moved, pid));
            ring.place(seq, n, &marked(step.len(), 15));
            let _ = sys::send_to(&met.side, &met.name, &peer::wake(moved), &[]);
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(ring.word(OFF_TAKEN), count(seq, n), "bytes of an offer the word does not name were taken");
            ring.set_offer(offer_word(IDLE, moved, 0));
            let after = marked(3000, 16);
            deliver(&met, &after);
            [step, after].concat()
        });
        assert_eq!(corrupt(&v, family), 0, "{family:?}: {:#}", v.stats);
        assert_eq!(fast_bytes(&v, family), 64 * 1024 + 3000, "{family:?}");
    }
}

#[test]
fn a_scribbled_header_changes_nothing_the_reader_trusts() {
    // Every field the reader wrote once and must not read back: geometry,
    // sizes, pid, inodes, magic, version; the advisory CPU words, the
    // bells, the unused header bytes. A legitimate offer larger than the
    // buffer (it wraps) then goes through.
    for family in FAMILIES {
        let v = against_writer(family, "scribbled-header", |met| {
            let ring = &met.ring;
            peer::write_header(&ring.map, 64, 16 << 20, -1, 0xdead, 0xbeef);
            ring.set_word(OFF_RING_BYTES, u64::MAX);
            ring.set_word(0, 0x4141_4141);
            ring.u32_at(OFF_VERSION).store(2, SeqCst);
            ring.u32_at(OFF_READER_CPU).store(u32::MAX, SeqCst);
            ring.u32_at(OFF_WRITER_CPU).store(0x7fff_0000, SeqCst);
            ring.u32_at(OFF_TAKEN_BELL).store(0x7fff_fff0, SeqCst);
            ring.u32_at(OFF_PLACED_BELL).store(0x7fff_fff0, SeqCst);
            ring.map.write(1024, &[0xff; 512]);
            ring.map.write(4096, &[0xff; 4096]);
            let data = marked(300_000, 10);
            deliver(&met, &data);
            data
        });
        assert_eq!(corrupt(&v, family), 0, "{family:?}: {:#}", v.stats);
        assert_eq!(fast_bytes(&v, family), 300_000, "{family:?}");
    }
}

#[test]
fn malformed_requests_get_no_offer_and_leak_nothing() {
    for family in FAMILIES {
        against_writer(family, "bad-requests", |met| {
            let pid = my_pid();
            // A writer of version 2 looks for another name, which nobody
            // holds.
            let v2_name = String::from_utf8(met.name.clone()).unwrap().replace("ipc-offload/3/", "ipc-offload/2/");
            let err = sys::send_to(&met.side, v2_name.as_bytes(), &peer::request(pid, met.ino32), &[]).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ECONNREFUSED), "{v2_name} is bound");
            let fds_before = sys::fd_count(met.victim);
            let good = peer::request(pid, met.ino32);
            let edit = |at: usize, value: u8| {
                let mut d = good.clone();
                d[at] = value;
                d
            };
            let mut long = good.clone();
            long.resize(100, 0);
            let memfds: Vec<OwnedFd> = (0..3).map(|_| sys::memfd(1 << 16, true)).collect();
            let three: Vec<RawFd> = memfds.iter().map(AsRawFd::as_raw_fd).collect();
            let (pair, _) = sys::socketpair();
            let ring_and_pair = [three[0], pair.as_raw_fd()];
            let bad: [(&str, Vec<u8>, &[RawFd]); 12] = [
                ("truncated", good[..15].to_vec(), &[]),
                ("oversized", long, &[]),
                ("of version 2", edit(4, 2), &[]),
                ("of version 4", edit(4, 4), &[]),
                ("of an unknown type", edit(5, 7), &[]),
                ("with a bad magic", edit(0, b'X'), &[]),
                ("for another socket", peer::request(pid, met.ino32 ^ 1), &[]),
                ("naming another pid", peer::request(pid + 1, met.ino32), &[]),
                ("empty", Vec::new(), &[]),
                ("a WAKE with fds", peer::wake(1), &three),
                ("an OFFER with a ring", peer::offer(1 << 16), &ring_and_pair),
                ("a REQUEST with fds", good.clone(), &three),
            ];
            for (what, datagram, fds) in bad {
                sys::send_to(&met.side, &met.name, &datagram, fds).unwrap();
                let reply = sys::recv(&met.side, Duration::from_millis(200));
                // A REQUEST with fds is a REQUEST: answered or not, its fds
                // must not stay with the victim (counted below).
                if what != "a REQUEST with fds" {
                    assert!(reply.is_none(), "a reply to a datagram {what}: {reply:?}");
                }
            }
            // Credentials of another uid (only root can forge them).
            match sys::send_as(&met.side, &met.name, &good, &[], Some((pid, 65534))) {
                Ok(()) => {
                    let reply = sys::recv(&met.side, Duration::from_millis(200));
                    assert!(reply.is_none(), "a reply to a REQUEST of another uid: {reply:?}");
                }
                Err(e) => eprintln!("SKIPPED: a REQUEST with another uid's credentials: {e}"),
            }
            // A well-formed REQUEST still gets the ring.
            sys::send_to(&met.side, &met.name, &good, &[]).unwrap();
            let offer = sys::recv(&met.side, peer::PATIENCE).expect("an OFFER for a good REQUEST");
            assert_eq!(peer::kind(&offer.data), Some(2), "{offer:?}");
            assert_eq!(offer.fds.len(), 2);
            assert_eq!(sys::fd_count(met.victim), fds_before, "the victim's fds after the malformed datagrams");
            Vec::new()
        });
    }
}

// ---- the victim writes; the peer is a hostile reader ----

/// How the victim writes: `total` pattern bytes, at most `chunk` per
/// write() call (0: as many as are left), blocking or not.
#[derive(Clone, Copy, Debug)]
struct Writes {
    total: usize,
    chunk: usize,
    nonblocking: bool,
}

const BLOCKING: Writes = Writes { total: WRITE_LEN, chunk: 0, nonblocking: false };
const NONBLOCKING: Writes = Writes { total: WRITE_LEN, chunk: 0, nonblocking: true };

impl Writes {
    fn mode(&self) -> &'static str {
        if self.nonblocking { "nonblock" } else { "block" }
    }
}

/// A number the victim printed as `key=N`.
fn printed(v: &Victim, key: &str) -> u64 {
    let at = v.stdout.find(&format!(" {key}=")).unwrap_or_else(|| panic!("no {key}= in {v:#?}"));
    let rest = &v.stdout[at + key.len() + 2..];
    rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

/// Runs the victim as a writer of [`WRITE_LEN`] pattern bytes (one
/// blocking write) into a connection whose reader name the peer holds.
fn against_reader(family: Family, name: &str, act: impl FnOnce(&Side, &mut File) -> Vec<u8> + Send) -> Victim {
    against_reader_of(family, name, BLOCKING, act)
}

/// Runs the victim as a writer (`writes`) into a connection whose reader
/// name the peer holds; `act` gets the first REQUEST and the peer's end,
/// and returns the stream it read (kernel bytes and the ring bytes that
/// count as sent, in order, to EOF). The stream must be the victim's, byte
/// for byte, and the victim must have sent all of it.
fn against_reader_of(
    family: Family,
    name: &str,
    writes: Writes,
    act: impl FnOnce(&Side, &mut File) -> Vec<u8> + Send,
) -> Victim {
    let (victim_end, mut hostile) = script::connection(family, false);
    let (dev, ino) = sys::identity(&victim_end);
    let reader_name = match family {
        Family::Unix => peer::socket_name(ino),
        Family::Pipe => peer::pipe_name(dev, ino),
    };
    let side = sys::dgram(Some(&reader_name)).expect("bind the reader's name");
    let (r, w) = match family {
        Family::Unix => (sys::identity(&OwnedFd::from(hostile.try_clone().unwrap())).1 as u32, ino as u32),
        Family::Pipe => (ino as u32, ino as u32),
    };
    let total = writes.total;
    let (len, seed, chunk) = (total.to_string(), SEED.to_string(), writes.chunk.to_string());
    let args = ["write", "100", &len, &seed, &chunk, writes.mode()];
    let (victim, stream) = script::run(&format!("{name}-{}", family.name()), victim_end, &args, || {
        let request = sys::recv(&side, peer::PATIENCE).expect("a REQUEST");
        assert_eq!(peer::kind(&request.data), Some(1), "a REQUEST: {request:?}");
        let side = Side { fd: side, to: request.from, r, w };
        script::nonblocking(&hostile);
        act(&side, &mut hostile)
    });
    assert!(victim.stdout.contains(&format!("wrote {total} end=ok")), "{name} {family:?}: {victim:#?}");
    if let Some(i) = (0..total.min(stream.len())).find(|&i| stream[i] != pat(i, SEED)) {
        panic!("{name} {family:?}: stream byte {i} (of {}) is wrong: {victim:#?}", stream.len());
    }
    assert_eq!(stream.len(), total, "{name} {family:?}: the stream's length");
    victim
}

/// The hostile reader's side channel: its bound socket, the victim
/// writer's address, and the inodes a ring header names.
struct Side {
    fd: OwnedFd,
    to: Vec<u8>,
    r: u32,
    w: u32,
}

impl Side {
    /// Offers `memfd` (and a lifeline, whose kept end it returns) with
    /// datagram `msg`.
    fn offer(&self, msg: &[u8], memfd: RawFd) -> OwnedFd {
        let (keep, give) = sys::socketpair();
        sys::send_to(&self.fd, &self.to, msg, &[memfd, give.as_raw_fd()]).unwrap();
        keep
    }

    /// Drops every datagram queued for the reader.
    fn flush(&self) {
        while sys::recv(&self.fd, Duration::ZERO).is_some() {}
    }

    /// Waits for a REQUEST from the victim: a writer without a ring asks
    /// for one.
    fn expect_request(&self, why: &str) {
        let deadline = Instant::now() + peer::PATIENCE;
        loop {
            let d = sys::recv(&self.fd, deadline.saturating_duration_since(Instant::now()));
            let d = d.unwrap_or_else(|| panic!("no REQUEST from the victim: {why}"));
            if peer::kind(&d.data) == Some(1) {
                return;
            }
        }
    }
}

/// A well-formed ring of 4 x 64 KiB whose `wait` says a reader waits
/// inside a read (a writer offers to it at once), offered to the victim;
/// returns the ring and the kept end of its lifeline.
fn offer_ring(side: &Side) -> (Ring, OwnedFd) {
    let (fd, ring) = Ring::create(4, 64 << 10, my_pid(), side.r, side.w);
    ring.set_word(OFF_WAIT, 1 << 20);
    let keep = side.offer(&peer::offer(ring.len()), fd.as_raw_fd());
    (ring, keep)
}

/// Reads the kernel until the victim opens an offer other than `after` in
/// `ring`, and what the kernel holds then (the victim wrote it before it
/// opened: kernel bytes come first); returns the offer's seq.
///
/// A nonblocking victim withdraws an untaken offer after 2 ms, which a
/// loaded machine can spend before this thread looks or claims; it then
/// offers again only once the reader reads through the library again
/// (`reads` moves). This peer does what such a reader would: it counts a
/// read once for each offer it finds closed (`after` included: one it saw
/// but could not claim in time).
fn next_offer(ring: &Ring, hostile: &mut File, stream: &mut Vec<u8>, after: u32) -> u32 {
    let mut seq = after;
    let mut counted = None;
    peer::wait_until("the victim to offer", || {
        let word = ring.offer();
        seq = ((word >> 8) & 0xff_ffff) as u32;
        let open = word & 0xff == OPEN && seq != after;
        if word & 0xff != OPEN && counted != Some(seq) {
            counted = Some(seq);
            ring.u32_at(OFF_READS).fetch_add(1, SeqCst);
        }
        let eof = script::drain(hostile, stream);
        assert!(!eof || open, "the victim finished without offering");
        open
    });
    seq
}

/// Whether offer `seq` is still open and not withdrawn.
fn still_open(ring: &Ring, seq: u32) -> bool {
    ring.state() == OPEN && ring.seq() == seq && ring.word(OFF_TAKEN) & CLOSED == 0
}

/// Claims bytes `[0, n)` of the victim's next offer after offer `after`
/// (0: the first) once `placed` reaches `need`; on the offer after that
/// when the victim withdrew first (its patience can run out before this
/// thread runs). Returns the offer's seq.
fn claim_first(ring: &Ring, hostile: &mut File, stream: &mut Vec<u8>, n: u64, need: u64, mut after: u32) -> u32 {
    loop {
        let seq = next_offer(ring, hostile, stream, after);
        peer::wait_until("bytes placed", || {
            !still_open(ring, seq) || ring.bytes(OFF_PLACED, seq).is_some_and(|p| p >= need)
        });
        if ring.claim(seq, 0, n) {
            return seq;
        }
        after = seq;
    }
}

/// Takes the first step of one of the victim's offers as a well-behaved
/// reader (claims it, copies it into `stream`, publishes `copied`), then
/// waits for the victim to place the next one into the room freed (it saw
/// the take: its patience starts again); on the next offer if the victim
/// withdrew meanwhile (the step then counted as sent). Returns the seq.
fn take_first_step(ring: &Ring, hostile: &mut File, stream: &mut Vec<u8>) -> u32 {
    let (step, cap) = (u64::from(ring.slot_bytes), ring.capacity());
    let mut after = 0;
    loop {
        let seq = claim_first(ring, hostile, stream, step, step, after);
        after = seq;
        stream.extend(ring.read_at(0, step as usize));
        ring.copied(seq, step);
        let mut open = true;
        peer::wait_until("the victim to refill the room", || {
            open = still_open(ring, seq);
            !open || ring.bytes(OFF_PLACED, seq).is_some_and(|p| p > cap)
        });
        if open {
            return seq;
        }
    }
}

/// Takes offer `seq` as a well-behaved reader, a step at a time, until it
/// is taken in full or withdrawn; returns the bytes taken.
fn take_offer(ring: &Ring, seq: u32, stream: &mut Vec<u8>) -> u64 {
    let step = u64::from(ring.slot_bytes);
    let mut took = 0;
    loop {
        let tw = ring.word(OFF_TAKEN);
        let (Some(total), Some(placed)) = (ring.bytes(OFF_TOTAL, seq), ring.bytes(OFF_PLACED, seq)) else {
            return took;
        };
        if peer::seq_of(tw) != seq || tw & CLOSED != 0 || bytes_of(tw) == total || ring.seq() != seq {
            return took;
        }
        let taken = bytes_of(tw);
        if placed > taken {
            let n = (placed - taken).min(step).min(ring.to_end(taken));
            if ring.claim(seq, taken, taken + n) {
                stream.extend(ring.read_at(taken, n as usize));
                ring.copied(seq, taken + n);
                took += n;
            }
        } else {
            std::thread::sleep(Duration::from_micros(20));
        }
    }
}

/// Reads to EOF as a well-behaved reader: the kernel's bytes, and every
/// offer the victim opens in `ring` (the kernel's queue first); returns the
/// bytes taken from the ring.
fn follow(ring: &Ring, hostile: &mut File, stream: &mut Vec<u8>) -> u64 {
    let deadline = Instant::now() + peer::PATIENCE * 2;
    let mut took = 0;
    loop {
        if ring.state() == OPEN {
            script::drain(hostile, stream);
            took += take_offer(ring, ring.seq(), stream);
            continue;
        }
        if script::drain(hostile, stream) && ring.state() != OPEN {
            return took;
        }
        assert!(Instant::now() < deadline, "hostile peer: no EOF from the victim");
        std::thread::sleep(Duration::from_micros(50));
    }
}

#[test]
fn offers_that_are_no_ring_are_refused() {
    for family in FAMILIES {
        let long_writes = Writes { total: LONG_WRITE_LEN, ..BLOCKING };
        let mut took = 0;
        let v = against_reader_of(family, "bad-offers", long_writes, |side, hostile| {
            let good_len = DATA as u64 + 4 * (64 << 10);
            let good = peer::offer(good_len);
            let (pid, w) = (my_pid(), side.w);
            // A memfd of `size` bytes with `seals`, whose header (as much as
            // fits) says a reader waits, as a ring taken would be offered in.
            let ring_file = |size: u64, seals: i32, slots: u32, slot_bytes: u32, reader: i32, w: u32| {
                let fd = sys::memfd_sealed(size, seals);
                let map = Map::new(&fd, (size as usize).min(DATA));
                peer::write_header(&map, slots, slot_bytes, reader, side.r, w);
                map.u64_at(OFF_RING_BYTES).store(size, SeqCst);
                map.u64_at(OFF_WAIT).store(1 << 20, SeqCst);
                (fd, Some(map))
            };
            let well_formed = || ring_file(good_len, sys::RING_SEALS, 4, 64 << 10, pid, w);
            let with = |edit: &dyn Fn(&Map)| {
                let (fd, map) = well_formed();
                edit(map.as_ref().unwrap());
                (fd, map)
            };
            let edit = |at: usize, value: u8| {
                let mut d = good.clone();
                d[at] = value;
                d
            };
            let mut long = good.clone();
            long.resize(100, 0);
            let odd = DATA as u64 + 4 * 5000;
            let many = DATA as u64 + 65 * 4096;
            let huge_slot = (16 << 20) + 4096;
            let too_large = 2 << 30;
            let not_memfd = || (sys::pipe().0, None);
            let grow_only = libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
            let other_owner = || {
                let (fd, map) = well_formed();
                sys::chown(&fd, 65534).then_some((fd, map))
            };
            type Made = (OwnedFd, Option<Map>);
            // (what, datagram, the file, how the fds go, forged credentials)
            let mut offers: Vec<(&str, Vec<u8>, Made, Fds, bool)> = vec![
                ("truncated", good[..15].to_vec(), well_formed(), Fds::Both, false),
                ("oversized", long, well_formed(), Fds::Both, false),
                ("of version 2", edit(4, 2), well_formed(), Fds::Both, false),
                ("of an unknown type", edit(5, 9), well_formed(), Fds::Both, false),
                ("of a REQUEST's type", edit(5, 1), well_formed(), Fds::Both, false),
                ("naming another size", peer::offer(good_len + 4096), well_formed(), Fds::Both, false),
                ("without a lifeline", good.clone(), well_formed(), Fds::MemfdOnly, false),
                ("with its fds swapped", good.clone(), well_formed(), Fds::Swapped, false),
                ("not sealed", good.clone(), ring_file(good_len, 0, 4, 64 << 10, pid, w), Fds::Both, false),
                (
                    "that can shrink",
                    good.clone(),
                    ring_file(good_len, grow_only, 4, 64 << 10, pid, w),
                    Fds::Both,
                    false,
                ),
                ("too small", peer::offer(4096), ring_file(4096, sys::RING_SEALS, 0, 0, pid, w), Fds::Both, false),
                (
                    "too large",
                    peer::offer(too_large),
                    ring_file(too_large, sys::RING_SEALS, 128, 16 << 20, pid, w),
                    Fds::Both,
                    false,
                ),
                (
                    "whose geometry is not its size",
                    good.clone(),
                    ring_file(good_len, sys::RING_SEALS, 3, 64 << 10, pid, w),
                    Fds::Both,
                    false,
                ),
                (
                    "of slots not pages",
                    peer::offer(odd),
                    ring_file(odd, sys::RING_SEALS, 4, 5000, pid, w),
                    Fds::Both,
                    false,
                ),
                (
                    "of too many slots",
                    peer::offer(many),
                    ring_file(many, sys::RING_SEALS, 65, 4096, pid, w),
                    Fds::Both,
                    false,
                ),
                (
                    "of too large a slot",
                    peer::offer(DATA as u64 + huge_slot),
                    ring_file(DATA as u64 + huge_slot, sys::RING_SEALS, 1, huge_slot as u32, pid, w),
                    Fds::Both,
                    false,
                ),
                (
                    "of no slot",
                    peer::offer(DATA as u64),
                    ring_file(DATA as u64, sys::RING_SEALS, 0, 4096, pid, w),
                    Fds::Both,
                    false,
                ),
                (
                    "of another reader",
                    good.clone(),
                    ring_file(good_len, sys::RING_SEALS, 4, 64 << 10, pid + 1, w),
                    Fds::Both,
                    false,
                ),
                (
                    "of another connection",
                    good.clone(),
                    ring_file(good_len, sys::RING_SEALS, 4, 64 << 10, pid, w ^ 1),
                    Fds::Both,
                    false,
                ),
                ("with a bad magic", good.clone(), with(&|m| m.u64_at(0).store(0, SeqCst)), Fds::Both, false),
                (
                    "of version 2 inside",
                    good.clone(),
                    with(&|m| m.u32_at(OFF_VERSION).store(2, SeqCst)),
                    Fds::Both,
                    false,
                ),
                ("that is a pipe", good.clone(), not_memfd(), Fds::Both, false),
            ];
            match other_owner() {
                Some(made) => offers.push(("owned by another uid", good.clone(), made, Fds::Both, false)),
                None => eprintln!("SKIPPED: a ring owned by another uid (needs root)"),
            }
            offers.push(("sent with another uid's credentials", good.clone(), well_formed(), Fds::Both, true));
            // The control, last: a well-formed ring, which the victim must
            // accept and offer in. It is sent once the victim has written
            // 1 MiB more through the kernel (it looked at every OFFER queued
            // between its pieces): a bad ring it accepted is offered in at
            // once, not replaced by the good one unseen.
            let (good_fd, good_ring) = Ring::create(4, 64 << 10, pid, side.r, w);
            good_ring.set_word(OFF_WAIT, 1 << 20);
            let good_map = Map::new(&good_fd, DATA);
            offers.push(("well formed", good.clone(), (good_fd, Some(good_map)), Fds::Both, false));
            let mut stream = Vec::new();
            let mut held = Vec::new();
            for (what, msg, (fd, map), fds, forged) in offers {
                if what == "well formed" {
                    let until = stream.len() + (1 << 20);
                    peer::wait_until("the victim to write on", || {
                        let eof = script::drain_some(hostile, &mut stream, 64 << 10);
                        assert!(!eof, "the victim finished before the well-formed OFFER");
                        stream.len() >= until
                    });
                }
                let (keep, give) = sys::socketpair();
                let fds = match fds {
                    Fds::Both => vec![fd.as_raw_fd(), give.as_raw_fd()],
                    Fds::MemfdOnly => vec![fd.as_raw_fd()],
                    Fds::Swapped => vec![give.as_raw_fd(), fd.as_raw_fd()],
                };
                let creds = forged.then_some((pid, 65534));
                // The victim's queue holds a few datagrams: it empties it
                // between its kernel pieces, which a little reading at a
                // time lets it write (a little: it must not finish first).
                let mut forging_refused = false;
                peer::wait_until(&format!("room for the OFFER {what}"), || {
                    match sys::send_as(&side.fd, &side.to, &msg, &fds, creds) {
                        Ok(()) => return true,
                        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                            forging_refused = true;
                            return true;
                        }
                        Err(_) => {}
                    }
                    let eof = script::drain_some(hostile, &mut stream, 64 << 10);
                    assert!(!eof, "the victim finished before it looked at the OFFER {what}");
                    false
                });
                if forging_refused {
                    eprintln!("SKIPPED: an OFFER {what} (needs root)");
                }
                held.push((what, fd, map, keep));
            }
            took = follow(&good_ring, hostile, &mut stream);
            for (what, _, map, _) in &held {
                let Some(map) = map else { continue };
                let (offer, total) = (map.u64_at(OFF_OFFER).load(SeqCst), map.u64_at(OFF_TOTAL).load(SeqCst));
                if *what == "well formed" {
                    assert_ne!(offer, 0, "the victim never offered in the well-formed ring");
                } else {
                    assert_eq!((offer, total), (0, 0), "the victim offered in the ring {what}: it accepted it");
                }
            }
            assert!(took > 0, "the victim's offers in the well-formed ring carried nothing");
            stream
        });
        assert_eq!(fast_bytes(&v, family), took, "{family:?}: {:#}", v.stats);
    }
}

/// How an OFFER's fds go.
#[derive(Clone, Copy, Debug)]
enum Fds {
    /// The memfd, then the lifeline.
    Both,
    MemfdOnly,
    /// The lifeline, then the memfd.
    Swapped,
}

#[test]
fn a_reader_that_never_publishes_copied_does_not_hold_the_writer() {
    // It claims 1000 bytes, copies them for itself, and never says so
    // (`copied` stays 0). The writer withdraws after its patience and
    // counts what was taken (the reader lives: "One offer", step 5); no
    // later offer can open in that ring (step 2: the last offer's bytes are
    // not all copied out), so the rest goes through the kernel, right after
    // the 1000 bytes. Every case runs; the failures are listed at the end.
    let mut failures = Vec::new();
    for family in FAMILIES {
        for writes in [BLOCKING, NONBLOCKING] {
            let name = format!("never-copied-{}", writes.mode());
            let mut held = None;
            let v = against_reader_of(family, &name, writes, |side, hostile| {
                let (ring, keep) = offer_ring(side);
                let mut stream = Vec::new();
                let n = 1000;
                let seq = claim_first(&ring, hostile, &mut stream, n, n, 0);
                ring.set_word(OFF_WAIT, 0);
                let before = stream.len();
                let took = ring.read_at(0, n as usize);
                let claimed = Instant::now();
                let hold = Duration::from_secs(3);
                let fd = OwnedFd::from(hostile.try_clone().unwrap());
                let mut after = Vec::new();
                while !script::drain(hostile, &mut after) {
                    if claimed.elapsed() > hold && held.is_none() {
                        let words = format!(
                            "offer {:#x}, total {:#x}, placed {:#x}, taken {:#x}, copied {:#x}",
                            ring.offer(),
                            ring.word(OFF_TOTAL),
                            ring.word(OFF_PLACED),
                            ring.word(OFF_TAKEN),
                            ring.word(OFF_COPIED)
                        );
                        held = Some(words);
                        // Let it go (it waits while the reader lives), so
                        // that it ends before its watchdog.
                        break;
                    }
                    sys::readable(&fd, Duration::from_millis(20));
                }
                let Some(words) = &held else {
                    assert_eq!(ring.state(), IDLE, "the victim closed its offer");
                    assert_eq!(ring.seq(), seq, "no offer opened after one whose bytes were not all copied out");
                    assert_eq!(ring.word(OFF_TAKEN), count(seq, n) | CLOSED, "the victim withdrew");
                    drop(keep);
                    return [stream, took, after].concat();
                };
                drop(keep);
                script::read_to_eof(hostile, &mut after);
                // The reader is gone now: the document says the writer
                // counts what was copied out (0); see what it counted.
                let counted = |with: &[u8]| {
                    let s = [&stream[..], with, &after[..]].concat();
                    s.iter().enumerate().all(|(i, b)| *b == pat(i, SEED))
                };
                let (what, s) = if counted(&[]) {
                    ("0 (what was copied out)", [stream.clone(), after.clone()].concat())
                } else if counted(&took) {
                    ("1000 (what was taken, though the reader is gone)", [stream.clone(), took, after.clone()].concat())
                } else {
                    ("neither 0 nor 1000", [stream.clone(), took, after.clone()].concat())
                };
                held = Some(format!(
                    "{name} {family:?}: the victim's write was still held {hold:?} after the reader claimed {n} bytes \
                     (at stream byte {before}) it never published copied, and ended only once the lifeline hung up, \
                     counting {what}; ring then: {words}"
                ));
                s
            });
            match held {
                Some(failure) => failures.push(failure),
                None => {
                    let bytes = fast_bytes(&v, family);
                    if bytes != 1000 {
                        failures.push(format!("{name} {family:?}: fast_path_bytes {bytes}, not 1000: {:#}", v.stats));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_reader_that_publishes_counts_out_of_range_is_corrupt() {
    // It takes a step as it should, then publishes `taken` beyond what was
    // placed, or `copied` beyond what it took (within, or beyond, what was
    // placed). The writer withdraws, counts what the reader copied out (at
    // most what it placed), forgets the ring (it asks for a new one) and
    // sends the rest through the kernel.
    for family in FAMILIES {
        for case in ["taken-beyond-placed", "copied-beyond-taken", "copied-beyond-placed"] {
            let mut counted = 0;
            let v = against_reader(family, &format!("reader-counts-{case}"), |side, hostile| {
                let (ring, _keep) = offer_ring(side);
                let (step, cap) = (u64::from(ring.slot_bytes), ring.capacity());
                let mut stream = Vec::new();
                let seq = loop {
                    let seq = take_first_step(&ring, hostile, &mut stream);
                    side.flush();
                    // The victim placed the room the step freed: `placed`
                    // is `cap + step` now, and stays so.
                    match case {
                        "taken-beyond-placed" => {
                            if !ring.claim(seq, step, 3 * cap) {
                                continue; // withdrawn first: the step counted
                            }
                            counted = step;
                        }
                        "copied-beyond-taken" => {
                            stream.extend(ring.read_at(step, 5000));
                            ring.copied(seq, step + 5000);
                            counted = step + 5000;
                        }
                        _ => {
                            peer::wait_until("the room refilled", || ring.bytes(OFF_PLACED, seq) == Some(cap + step));
                            stream.extend(ring.read_at(step, cap as usize));
                            ring.copied(seq, cap + 2 * step);
                            counted = cap + step;
                        }
                    }
                    break seq;
                };
                side.expect_request("it forgets a ring with counts out of range");
                script::read_to_eof(hostile, &mut stream);
                assert_eq!((ring.state(), ring.seq()), (IDLE, seq), "an offer in a ring the victim forgot");
                stream
            });
            assert_eq!(corrupt(&v, family), 1, "{case} {family:?}: {:#}", v.stats);
            assert_eq!(fast_bytes(&v, family), counted, "{case} {family:?}");
        }
    }
}

#[test]
fn a_reader_that_claims_bytes_then_goes_away_is_left() {
    // It takes a step as it should, claims 2000 more bytes, copies out 1000
    // of them, and closes its end of the lifeline (it died, or exec'd):
    // the writer counts what was copied out, forgets the ring and sends
    // the rest through the kernel, from there.
    for family in FAMILIES {
        let mut counted = 0;
        let v = against_reader(family, "claims-then-goes", |side, hostile| {
            let (ring, keep) = offer_ring(side);
            let step = u64::from(ring.slot_bytes);
            let mut stream = Vec::new();
            let seq = take_first_step(&ring, hostile, &mut stream);
            side.flush();
            assert!(ring.claim(seq, step, step + 2000), "the victim withdrew a moment after a take");
            stream.extend(ring.read_at(step, 1000));
            ring.copied(seq, step + 1000);
            drop(keep);
            counted = step + 1000;
            side.expect_request("it forgets the ring of a reader that is gone");
            script::read_to_eof(hostile, &mut stream);
            assert_eq!((ring.state(), ring.seq()), (IDLE, seq), "an offer in a ring the victim forgot");
            stream
        });
        assert_eq!(peer_gone(&v, family), 1, "{family:?}: {:#}", v.stats);
        assert_eq!(fast_bytes(&v, family), counted, "{family:?}");
    }
}

#[test]
fn a_reader_that_jams_wait_and_listen_and_never_takes_costs_one_patience() {
    // Its `listen` word is stuck at a huge count (a wait of the library
    // watching the ring, it says), or its `wait` word says a reader sleeps
    // in a read, or both; it never takes a byte, nor reads its side
    // channel (the WAKEs pile up). The writer, 4 MiB in calls of 256 KiB,
    // offers once, withdraws after its patience, and does not offer again
    // until the reader's `reads` count moves (it never does): the write
    // goes through the kernel with no stall per call. Every case runs; the
    // failures are listed at the end.
    let mut failures = Vec::new();
    for family in FAMILIES {
        for base in [BLOCKING, NONBLOCKING] {
            for jam in ["listen", "wait", "both"] {
                let writes = Writes { total: 4 << 20, chunk: 256 << 10, ..base };
                let name = format!("jammed-{jam}-{}", writes.mode());
                let mut offers = 0;
                let v = against_reader_of(family, &name, writes, |side, hostile| {
                    let (fd, ring) = Ring::create(4, 64 << 10, my_pid(), side.r, side.w);
                    if jam != "wait" {
                        ring.u32_at(OFF_LISTEN).store(0x7fff_fff0, SeqCst);
                    }
                    if jam != "listen" {
                        ring.set_word(OFF_WAIT, ASLEEP | 1 << 20);
                    }
                    let _keep = side.offer(&peer::offer(ring.len()), fd.as_raw_fd());
                    let mut stream = Vec::new();
                    script::read_to_eof(hostile, &mut stream);
                    offers = ring.seq();
                    assert_eq!(ring.state(), IDLE, "{name}: an offer left open");
                    assert_eq!(bytes_of(ring.word(OFF_TAKEN)), 0);
                    // What would let the writer offer again never moved.
                    assert_eq!(ring.u32_at(OFF_READS).load(SeqCst), 0);
                    stream
                });
                let (ms, not_taken) = (printed(&v, "ms"), fallbacks(&v.stats, family.name(), "not-taken"));
                assert_eq!(fast_bytes(&v, family), 0, "{name} {family:?}");
                let calls = printed(&v, "calls");
                if ms >= 3000 || offers != 1 || not_taken > 1 {
                    failures.push(format!(
                        "{name} {family:?}: {offers} offers (not 1) in {calls} calls, {ms} ms, not-taken {not_taken}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "a reader that never took held the writer:\n{}", failures.join("\n"));
}
