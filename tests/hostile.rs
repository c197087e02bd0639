//! Hostile peers (issue 8, point 3): this test process speaks protocol v2
//! (written from docs/ipc-protocol.md, tests/hostile/peer.rs) to a victim
//! that runs under the library (tests/c/hostile_victim.c), then breaks it:
//! slot lengths out of range, claims larger than the wait, claims by pids
//! that do not exist, a writer that stops mid-transfer, a mailbox moved to
//! another ticket, a scribbled header, malformed side-channel datagrams and
//! OFFERs (truncated, oversized, unknown type, other version, wrong size,
//! fds that are no ring), a reader that withdraws, empties slots without
//! counting, waits for nothing, or jams its slot words.
//!
//! Every case checks that the victim exits normally within its watchdog,
//! that its read buffer is untouched past what each read returned (guard
//! pages and canaries, in the victim), and that the bytes it got are the
//! stream the peer sent: what the ring legitimately carried, then the
//! kernel's bytes, never garbage, never a gap.

#[path = "hostile/peer.rs"]
mod peer;
#[path = "hostile/script.rs"]
mod script;
#[path = "hostile/sys.rs"]
mod sys;

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use ipc_offload_tests::{counter, fallbacks};
use peer::Ring;
use script::{Family, LONG_WRITE_LEN, READ_LEN, SEED, Victim, WRITE_LEN, marked, pat};

const FAMILIES: [Family; 2] = [Family::Unix, Family::Pipe];

fn my_pid() -> i32 {
    std::process::id() as i32
}

// ---- the victim reads; the peer is a hostile writer ----

/// A hostile writer that met the victim reader: its side-channel socket,
/// the victim's name, the ring it was offered and its lifeline.
struct Met {
    side: OwnedFd,
    name: Vec<u8>,
    ino32: u32,
    ring: Ring,
    _lifeline: OwnedFd,
}

/// The victim's first read opts in; the peer's REQUEST waits for it; the
/// peer's first kernel bytes `k1` end that read; the next read answers with
/// an OFFER, which the peer maps.
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
    assert_eq!(offer.data.len(), 16, "{offer:?}");
    let [memfd, lifeline]: [OwnedFd; 2] = offer.fds.try_into().expect("a memfd and a lifeline");
    let ring = Ring::attach(&memfd);
    Met { side, name, ino32, ring, _lifeline: lifeline }
}

/// Runs the victim as a reader (1 MiB reads) against a hostile writer
/// that meets it, runs `act` (which returns what the ring delivered), then
/// sends 1000 more kernel bytes and closes. Checks that the victim got
/// exactly `k1`, what `act` says, then `k2`, and returns the victim.
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
        "{name} {family:?}: the victim got {} bytes, not the {} sent: {victim:#?}",
        victim.received.len(),
        expected.len()
    );
    victim
}

fn corrupt(v: &Victim, family: Family) -> u64 {
    fallbacks(&v.stats, family.name(), "corrupt")
}

fn peer_gone(v: &Victim, family: Family) -> u64 {
    fallbacks(&v.stats, family.name(), "peer-gone")
}

/// Claims the victim's wait as `pid`, for `total`, and tells it.
fn claim(met: &Met, total: u64, pid: i32) -> (u32, u64) {
    let (ticket, want) = met.ring.claim(total, pid);
    sys::send_to(&met.side, &met.name, &peer::wake(ticket), &[]).unwrap();
    (ticket, want)
}

#[test]
fn slot_lengths_out_of_range_are_caught() {
    for family in FAMILIES {
        // (claimed total, length word of slot 0): beyond the slot, zero,
        // beyond the claim.
        for (case, total, len) in
            [("beyond-slot", u64::MAX, 68 << 10), ("zero", u64::MAX, 0), ("beyond-claim", 100, 4096)]
        {
            let v = against_writer(family, &format!("slot-len-{case}"), |met| {
                claim(&met, total, my_pid());
                met.ring.fill(0, &marked(4096, 9), len);
                Vec::new()
            });
            assert_eq!(corrupt(&v, family), 1, "{case} {family:?}: {:#}", v.stats);
            assert_eq!(counter(&v.stats, family.name(), "fast_path_bytes"), 0, "{case} {family:?}");
        }
    }
}

/// Sends `data` through the ring as a well-behaved writer would (after a
/// claim), slot after slot.
fn send_through(ring: &Ring, data: &[u8]) {
    let slot_bytes = ring.slot_bytes as usize;
    for (k, chunk) in data.chunks(slot_bytes).enumerate() {
        let slot = (k % ring.slots as usize) as u32;
        peer::wait_until("a slot to empty", || {
            ring.slot_word(slot).load(std::sync::atomic::Ordering::SeqCst) & !(1 << 31) == peer::EMPTY
        });
        ring.fill(slot, chunk, chunk.len() as u32);
    }
}

#[test]
fn a_claim_beyond_the_wait_is_cut_to_it() {
    for family in FAMILIES {
        let v = against_writer(family, "claim-beyond-wait", |met| {
            let (ticket, want) = claim(&met, u64::MAX / 2, my_pid());
            assert_eq!(want, READ_LEN as u64);
            let data = marked(want as usize, 5);
            send_through(&met.ring, &data);
            let result = met.ring.map.u64_at(peer::OFF_RESULTS + 8 * (ticket as usize % 64));
            let counted = u64::from(ticket) << 40 | want;
            peer::wait_until("the victim to count the wait", || {
                result.load(std::sync::atomic::Ordering::SeqCst) == counted
            });
            data
        });
        assert_eq!(corrupt(&v, family) + peer_gone(&v, family), 0, "{:#}", v.stats);
        assert_eq!(counter(&v.stats, family.name(), "fast_path_bytes"), READ_LEN as u64);
    }
}

/// A pid that no process has (one that just exited).
fn dead_pid() -> i32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    child.wait().unwrap();
    pid
}

#[test]
fn a_claim_by_a_pid_that_does_not_exist_is_a_dead_writer() {
    // The claimer fills one slot and never another. A writer that is gone
    // (or never was: pid 0, a negative pid) must not keep the reader
    // waiting: it delivers the full slot and goes back to the kernel.
    for family in FAMILIES {
        for (case, pid) in [("exited", dead_pid()), ("zero", 0), ("negative", -5)] {
            let v = against_writer(family, &format!("dead-claimer-{case}"), |met| {
                claim(&met, u64::MAX, pid);
                let data = marked(met.ring.slot_bytes as usize, 3);
                met.ring.fill(0, &data, data.len() as u32);
                data
            });
            assert_eq!(peer_gone(&v, family), 1, "{case} {family:?}: {:#}", v.stats);
        }
    }
}

#[test]
fn a_writer_that_stops_mid_transfer_and_execs_is_noticed() {
    // It fills a slot, then closes its side-channel socket (what an exec
    // does): the reader delivers the slot and goes back to the kernel.
    for family in FAMILIES {
        let v = against_writer(family, "stops-mid-transfer", |met| {
            claim(&met, u64::MAX, my_pid());
            let data = marked(met.ring.slot_bytes as usize, 4);
            met.ring.fill(0, &data, data.len() as u32);
            // Slot 1 half written, never marked full.
            met.ring.map.write(met.ring.slot_offset(1), &marked(1000, 6));
            // Its side-channel address goes with the socket.
            drop(met.side);
            data
        });
        assert_eq!(peer_gone(&v, family), 1, "{family:?}: {:#}", v.stats);
    }
}

#[test]
fn a_mailbox_moved_to_another_ticket_is_a_new_wait() {
    for family in FAMILIES {
        let v = against_writer(family, "mailbox-moved", |met| {
            peer::wait_until("the reader to wait", || met.ring.state() == peer::WAITING);
            let ticket = met.ring.ticket();
            // A claim of a ticket that is not the reader's, and wakes.
            met.ring.set_mailbox(peer::mailbox(peer::CLAIMED, ticket + 5, my_pid()));
            sys::send_to(&met.side, &met.name, &peer::wake(ticket + 5), &[]).unwrap();
            // The reader waits afresh, with a ticket of its own; a real
            // claim of it goes through.
            peer::wait_until("a new wait", || met.ring.state() == peer::WAITING);
            let data = marked(3000, 8);
            claim(&met, data.len() as u64, my_pid());
            send_through(&met.ring, &data);
            data
        });
        assert_eq!(corrupt(&v, family), 0);
        assert_eq!(counter(&v.stats, family.name(), "fast_path_bytes"), 3000);
    }
}

#[test]
fn a_scribbled_header_changes_nothing_the_reader_trusts() {
    for family in FAMILIES {
        let v = against_writer(family, "scribbled-header", |met| {
            peer::wait_until("the reader to wait", || met.ring.state() == peer::WAITING);
            // Every header field but the mailbox's words: geometry, sizes,
            // pids, inodes, the magic, the result words, `arms`.
            met.ring.write_header(64, 16 << 20, -1, 0xdead, 0xbeef);
            met.ring.map.u64_at(0).store(0x4141_4141, std::sync::atomic::Ordering::SeqCst);
            met.ring.map.write(1024, &[0xff; 512]);
            met.ring.map.write(96, &[0xff; 4]);
            let data = marked(300_000, 10);
            claim(&met, data.len() as u64, my_pid());
            send_through(&met.ring, &data);
            data
        });
        assert_eq!(corrupt(&v, family), 0);
    }
}

#[test]
fn malformed_requests_get_no_offer_and_leak_nothing() {
    for family in FAMILIES {
        against_writer(family, "bad-requests", |met| {
            let pid = my_pid();
            let good = peer::request(pid, met.ino32);
            let mut long = good.clone();
            long.resize(100, 0);
            let mut version = good.clone();
            version[4] = 3;
            let mut kind = good.clone();
            kind[5] = 7;
            let fds: Vec<OwnedFd> = (0..3).map(|_| sys::memfd(1 << 16, true)).collect();
            let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
            let bad: [(&str, Vec<u8>, &[RawFd]); 8] = [
                ("truncated", good[..15].to_vec(), &[]),
                ("oversized", long, &[]),
                ("other version", version, &[]),
                ("unknown type", kind, &[]),
                ("another socket", peer::request(pid, met.ino32 ^ 1), &[]),
                ("another pid", peer::request(pid + 1, met.ino32), &[]),
                ("empty", Vec::new(), &[]),
                ("with fds", peer::wake(1), &raw),
            ];
            for (what, datagram, fds) in bad {
                sys::send_to(&met.side, &met.name, &datagram, fds).unwrap();
                assert!(sys::recv(&met.side, Duration::from_millis(200)).is_none(), "an OFFER for a request {what}");
            }
            // A well-formed REQUEST still gets the ring.
            sys::send_to(&met.side, &met.name, &good, &[]).unwrap();
            let offer = sys::recv(&met.side, peer::PATIENCE).expect("an OFFER for a good REQUEST");
            assert_eq!(offer.fds.len(), 2);
            Vec::new()
        });
    }
}

// ---- the victim writes; the peer is a hostile reader ----

/// Runs the victim as a writer of [`WRITE_LEN`] pattern bytes into a
/// connection whose reader name the peer holds; `act` gets the first
/// REQUEST and the peer's end, and returns the stream it read (ring bytes
/// it took, then kernel bytes to EOF). The stream must be the victim's,
/// byte for byte, and the victim's write must have sent all of it.
fn against_reader(family: Family, name: &str, act: impl FnOnce(&Side, &mut File) -> Vec<u8> + Send) -> Victim {
    against_reader_of(family, name, WRITE_LEN, act)
}

/// [`against_reader`] with a victim that writes `total` bytes.
fn against_reader_of(
    family: Family,
    name: &str,
    total: usize,
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
    let len = total.to_string();
    let seed = SEED.to_string();
    let (victim, stream) =
        script::run(&format!("{name}-{}", family.name()), victim_end, &["write", "100", &len, &seed], || {
            let request = sys::recv(&side, peer::PATIENCE).expect("a REQUEST");
            let side = Side { fd: side, to: request.from, r, w };
            script::nonblocking(&hostile);
            act(&side, &mut hostile)
        });
    assert!(victim.stdout.contains(&format!("wrote {total} end=ok")), "{name} {family:?}: {victim:#?}");
    assert_eq!(stream.len(), total, "{name} {family:?}");
    if let Some(i) = (0..total).find(|&i| stream[i] != pat(i, SEED)) {
        panic!("{name} {family:?}: stream byte {i} is wrong: {victim:#?}");
    }
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

    /// A well-formed ring of 4 x 64 KiB, waiting for `want` bytes.
    fn ring(&self, want: u64) -> (OwnedFd, Ring) {
        let (fd, ring) = Ring::create(4, 64 << 10, my_pid(), self.r, self.w);
        ring.map.u64_at(peer::OFF_WANT).store(want, std::sync::atomic::Ordering::SeqCst);
        ring.set_mailbox(peer::mailbox(peer::WAITING, 1, 0));
        (fd, ring)
    }
}

#[test]
fn offers_that_are_no_ring_are_refused() {
    for family in FAMILIES {
        let v = against_reader_of(family, "bad-offers", LONG_WRITE_LEN, |side, hostile| {
            let good_len = peer::DATA as u64 + 4 * (64 << 10);
            let good = peer::offer(good_len);
            // Each OFFER carries a ring that waits: one the victim took
            // would be claimed, as draining the kernel queue lets it claim.
            let well_formed = |s: &Side| {
                let (fd, ring) = s.ring(1 << 20);
                (fd, Some(ring))
            };
            let mut long = good.clone();
            long.resize(100, 0);
            let mut version = good.clone();
            version[4] = 3;
            let mut kind = good.clone();
            kind[5] = 9;
            // Rings with something wrong in the file or its header.
            let header = |slots: u32, slot_bytes: u32, size: u64, sealed: bool, pid: i32, w: u32| {
                move |s: &Side| {
                    let fd = sys::memfd(size, sealed);
                    let ring = Ring { map: sys::Map::new(&fd, size as usize), slots: 1, slot_bytes: 4096 };
                    if size >= peer::DATA as u64 {
                        ring.write_header(slots, slot_bytes, pid, s.r, w);
                        ring.map.u64_at(peer::OFF_WANT).store(1 << 20, std::sync::atomic::Ordering::SeqCst);
                        ring.set_mailbox(peer::mailbox(peer::WAITING, 1, 0));
                        ring.map.u64_at(peer::OFF_RING_BYTES).store(size, std::sync::atomic::Ordering::SeqCst);
                    }
                    (fd, (size >= peer::DATA as u64).then_some(ring))
                }
            };
            let bad_magic = |s: &Side| {
                let (fd, ring) = s.ring(1 << 20);
                ring.map.u64_at(0).store(0, std::sync::atomic::Ordering::SeqCst);
                (fd, Some(ring))
            };
            let not_memfd = |_: &Side| (sys::pipe().0, None);
            let (pid, w) = (my_pid(), side.w);
            let odd = peer::DATA as u64 + 4 * 5000;
            let many = peer::DATA as u64 + 65 * 4096;
            type Build<'a> = Box<dyn Fn(&Side) -> (OwnedFd, Option<Ring>) + 'a>;
            // (what, datagram, ring, with a lifeline)
            let offers: Vec<(&str, Vec<u8>, Build, bool)> = vec![
                ("truncated", good[..15].to_vec(), Box::new(well_formed), true),
                ("oversized", long, Box::new(well_formed), true),
                ("other version", version, Box::new(well_formed), true),
                ("unknown type", kind, Box::new(well_formed), true),
                ("wrong ring size", peer::offer(good_len + 4096), Box::new(well_formed), true),
                ("no lifeline", good.clone(), Box::new(well_formed), false),
                ("not sealed", good.clone(), Box::new(header(4, 64 << 10, good_len, false, pid, w)), true),
                ("too small", peer::offer(4096), Box::new(header(4, 64 << 10, 4096, true, pid, w)), true),
                ("geometry not the size", good.clone(), Box::new(header(3, 64 << 10, good_len, true, pid, w)), true),
                ("another reader's", good.clone(), Box::new(header(4, 64 << 10, good_len, true, pid + 1, w)), true),
                ("another connection's", good.clone(), Box::new(header(4, 64 << 10, good_len, true, pid, w ^ 1)), true),
                ("slots not pages", peer::offer(odd), Box::new(header(4, 5000, odd, true, pid, w)), true),
                ("too many slots", peer::offer(many), Box::new(header(65, 4096, many, true, pid, w)), true),
                (
                    "no slot",
                    peer::offer(peer::DATA as u64),
                    Box::new(header(0, 4096, peer::DATA as u64, true, pid, w)),
                    true,
                ),
                ("bad magic", good.clone(), Box::new(bad_magic), true),
                ("a pipe", good.clone(), Box::new(not_memfd), true),
            ];
            let mut stream = Vec::new();
            let mut held = Vec::new();
            for (what, msg, build, lifeline) in &offers {
                let (fd, ring) = build(side);
                let (keep, give) = sys::socketpair();
                let fds = if *lifeline { vec![fd.as_raw_fd(), give.as_raw_fd()] } else { vec![fd.as_raw_fd()] };
                // The victim's queue holds a few datagrams: it empties it
                // between its kernel pieces, which a little reading at a
                // time lets it write (a little: it must not finish first).
                peer::wait_until(&format!("room for the OFFER {what}"), || {
                    if sys::send_to(&side.fd, &side.to, msg, &fds).is_ok() {
                        return true;
                    }
                    let eof = script::drain_some(hostile, &mut stream, 64 << 10);
                    assert!(!eof, "the victim finished before it looked at the OFFER {what}");
                    false
                });
                held.push((what, fd, ring, keep));
            }
            script::read_to_eof(hostile, &mut stream);
            for (what, _, ring, _) in &held {
                if let Some(ring) = ring {
                    assert_eq!(ring.state(), peer::WAITING, "the OFFER {what} was taken: its wait was claimed");
                }
            }
            stream
        });
        assert_eq!(counter(&v.stats, family.name(), "fast_path_bytes"), 0, "{family:?}: {:#}", v.stats);
    }
}

/// Offers a well-formed ring waiting for `want` bytes and drains the
/// kernel queue until the victim claims it; returns the ring, its lifeline,
/// and the kernel bytes read so far.
fn claimed_ring(side: &Side, hostile: &mut File, want: u64) -> (Ring, OwnedFd, Vec<u8>) {
    let (fd, ring) = side.ring(want);
    let keep = side.offer(&peer::offer(ring.map_len()), fd.as_raw_fd());
    let mut stream = Vec::new();
    peer::wait_until("the victim to claim", || {
        script::drain(hostile, &mut stream);
        ring.state() == peer::CLAIMED
    });
    (ring, keep, stream)
}

impl Ring {
    fn map_len(&self) -> u64 {
        peer::DATA as u64 + u64::from(self.slots) * u64::from(self.slot_bytes)
    }
}

#[test]
fn a_reader_that_withdraws_after_a_partial_copy_gets_the_rest_from_the_kernel() {
    for family in FAMILIES {
        let v = against_reader(family, "withdraws", |side, hostile| {
            let (ring, _keep, mut stream) = claimed_ring(side, hostile, 1 << 20);
            peer::wait_until("slot 0 full", || ring.slot_word(0).load(std::sync::atomic::Ordering::SeqCst) & 1 == 1);
            // It takes 1000 bytes of slot 0, says so, and withdraws.
            stream.extend(ring.map.read(ring.slot_offset(0), 1000));
            ring.record(1, 1000);
            ring.set_mailbox(peer::mailbox(peer::IDLE, 1, 0));
            script::read_to_eof(hostile, &mut stream);
            stream
        });
        assert!(peer_gone(&v, family) >= 1, "{:#}", v.stats);
        assert_eq!(counter(&v.stats, family.name(), "fast_path_bytes"), 1000);
    }
}

#[test]
fn a_reader_that_empties_slots_without_counting_them_is_corrupt() {
    // It keeps the claim and empties every slot without recording a count
    // (or waits for nothing at all): the writer must not spin on it
    // forever; it counts nothing sent and sends the stream through the
    // kernel.
    for family in FAMILIES {
        for (case, want) in [("uncounted", 1 << 20), ("want-zero", 0)] {
            let v = against_reader(family, &format!("uncounted-{case}"), |side, hostile| {
                let (ring, _keep, mut stream) = claimed_ring(side, hostile, want);
                let fd = OwnedFd::from(hostile.try_clone().unwrap());
                peer::wait_until("kernel bytes again", || {
                    for slot in 0..ring.slots {
                        if ring.slot_word(slot).load(std::sync::atomic::Ordering::SeqCst) & 1 == 1 {
                            ring.set_slot(slot, peer::EMPTY);
                        }
                    }
                    sys::readable(&fd, Duration::ZERO)
                });
                script::read_to_eof(hostile, &mut stream);
                stream
            });
            assert_eq!(corrupt(&v, family), 1, "{case} {family:?}: {:#}", v.stats);
            assert_eq!(counter(&v.stats, family.name(), "fast_path_bytes"), 0);
        }
    }
}

#[test]
fn a_reader_that_jams_its_slots_then_goes_is_left() {
    for family in FAMILIES {
        let v = against_reader(family, "jammed", |side, hostile| {
            let (ring, keep, mut stream) = claimed_ring(side, hostile, 1 << 20);
            for slot in 0..ring.slots {
                ring.slot_word(slot).store(0x7fff_fff0, std::sync::atomic::Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(50));
            drop(keep); // the lifeline hangs up: the reader is gone
            script::read_to_eof(hostile, &mut stream);
            stream
        });
        assert!(peer_gone(&v, family) >= 1, "{:#}", v.stats);
        assert_eq!(counter(&v.stats, family.name(), "fast_path_bytes"), 0);
    }
}
