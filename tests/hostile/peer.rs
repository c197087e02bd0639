//! A hostile peer's view of protocol v2 (docs/ipc-protocol.md): the side
//! channel's names and datagrams, and the ring's layout, written from the
//! document. It speaks the rendezvous well enough to get the library's
//! ring (as a writer) or to have the library take its ring (as a reader),
//! then does what the test says.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use super::sys::{self, Map};

// Ring layout (docs/ipc-protocol.md, "The ring").
pub const MAGIC: u64 = u64::from_le_bytes(*b"IPCORING");
pub const OFF_SLOTS: usize = 12;
pub const OFF_SLOT_BYTES: usize = 16;
pub const OFF_READER_PID: usize = 20;
pub const OFF_RING_BYTES: usize = 24;
pub const OFF_READER_INO: usize = 32;
pub const OFF_WRITER_INO: usize = 36;
pub const OFF_MAILBOX: usize = 64;
pub const OFF_WANT: usize = 72;
pub const OFF_TOTAL: usize = 80;
pub const OFF_RESULTS: usize = 1024;
pub const SLOT_WORDS: usize = 4096;
pub const DATA: usize = 8192;

pub const IDLE: u64 = 0;
pub const WAITING: u64 = 1;
pub const CLAIMED: u64 = 3;
pub const EMPTY: u32 = 0;
pub const FULL: u32 = 1;

/// How long any step of a hostile script may wait for the victim.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The abstract name the reader of what is written into a socket of inode
/// `w` binds.
pub fn socket_name(w: u64) -> Vec<u8> {
    format!("ipc-offload/2/{}", w & 0xffff_ffff).into_bytes()
}

/// The name of a pipe's reader.
pub fn pipe_name(dev: u64, ino: u64) -> Vec<u8> {
    format!("ipc-offload/2/p{dev}.{ino}").into_bytes()
}

/// A side-channel datagram: magic, version, type, then `payload` at byte 8.
pub fn datagram(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut d = b"IPCO".to_vec();
    d.extend_from_slice(&[2, kind, 0, 0]);
    d.extend_from_slice(payload);
    d
}

pub fn request(pid: i32, ino: u32) -> Vec<u8> {
    datagram(1, &[pid.to_le_bytes(), ino.to_le_bytes()].concat())
}

pub fn offer(ring_bytes: u64) -> Vec<u8> {
    datagram(2, &ring_bytes.to_le_bytes())
}

pub fn wake(ticket: u32) -> Vec<u8> {
    datagram(3, &ticket.to_le_bytes())
}

pub fn mailbox(state: u64, ticket: u32, pid: i32) -> u64 {
    state | (u64::from(ticket & 0x00ff_ffff) << 8) | (u64::from(pid as u32) << 32)
}

/// Polls `cond` until it holds, or panics after [`PATIENCE`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "hostile peer: gave up waiting for {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A ring mapped by the hostile peer, with the geometry it read or wrote.
#[derive(Debug)]
pub struct Ring {
    pub map: Map,
    pub slots: u32,
    pub slot_bytes: u32,
}

impl Ring {
    /// Maps a ring the library offered.
    pub fn attach(memfd: &OwnedFd) -> Ring {
        let head = Map::new(memfd, DATA);
        assert_eq!(head.u64_at(0).load(SeqCst), MAGIC, "the library's ring has the documented magic");
        let bytes = head.u64_at(OFF_RING_BYTES).load(SeqCst) as usize;
        let (slots, slot_bytes) = (head.u32_at(OFF_SLOTS).load(SeqCst), head.u32_at(OFF_SLOT_BYTES).load(SeqCst));
        assert_eq!(bytes, DATA + slots as usize * slot_bytes as usize);
        Ring { map: Map::new(memfd, bytes), slots, slot_bytes }
    }

    /// Makes a well-formed ring as a reader would: the memfd, and the ring.
    pub fn create(slots: u32, slot_bytes: u32, reader_pid: i32, r: u32, w: u32) -> (OwnedFd, Ring) {
        let bytes = DATA as u64 + u64::from(slots) * u64::from(slot_bytes);
        let fd = sys::memfd(bytes, true);
        let ring = Ring { map: Map::new(&fd, bytes as usize), slots, slot_bytes };
        ring.write_header(slots, slot_bytes, reader_pid, r, w);
        (fd, ring)
    }

    /// Writes a header (any values: a garbage one too).
    pub fn write_header(&self, slots: u32, slot_bytes: u32, reader_pid: i32, r: u32, w: u32) {
        let m = &self.map;
        m.u64_at(0).store(MAGIC, SeqCst);
        m.u32_at(8).store(2, SeqCst);
        m.u32_at(OFF_SLOTS).store(slots, SeqCst);
        m.u32_at(OFF_SLOT_BYTES).store(slot_bytes, SeqCst);
        m.u32_at(OFF_READER_PID).store(reader_pid as u32, SeqCst);
        m.u64_at(OFF_RING_BYTES).store(DATA as u64 + u64::from(slots) * u64::from(slot_bytes), SeqCst);
        m.u32_at(OFF_READER_INO).store(r, SeqCst);
        m.u32_at(OFF_WRITER_INO).store(w, SeqCst);
    }

    pub fn mailbox(&self) -> u64 {
        self.map.u64_at(OFF_MAILBOX).load(SeqCst)
    }

    pub fn set_mailbox(&self, word: u64) {
        self.map.u64_at(OFF_MAILBOX).store(word, SeqCst);
    }

    pub fn ticket(&self) -> u32 {
        ((self.mailbox() >> 8) & 0x00ff_ffff) as u32
    }

    pub fn state(&self) -> u64 {
        self.mailbox() & 0xff
    }

    pub fn slot_word(&self, slot: u32) -> &std::sync::atomic::AtomicU32 {
        self.map.u32_at(SLOT_WORDS + 64 * slot as usize)
    }

    pub fn slot_len(&self, slot: u32) -> &std::sync::atomic::AtomicU32 {
        self.map.u32_at(SLOT_WORDS + 64 * slot as usize + 4)
    }

    pub fn slot_offset(&self, slot: u32) -> usize {
        DATA + slot as usize * self.slot_bytes as usize
    }

    /// Marks `slot` as `value`, waking a sleeper.
    pub fn set_slot(&self, slot: u32, value: u32) {
        self.slot_word(slot).store(value, SeqCst);
        sys::futex_wake(self.slot_word(slot));
    }

    /// Puts `data` (at most a slot) into `slot` with length word `len`, and
    /// marks it full.
    pub fn fill(&self, slot: u32, data: &[u8], len: u32) {
        self.map.write(self.slot_offset(slot), data);
        self.slot_len(slot).store(len, SeqCst);
        self.set_slot(slot, FULL);
    }

    /// Records `bytes` as copied for `ticket`, as a reader does.
    pub fn record(&self, ticket: u32, bytes: u64) {
        self.map.u64_at(OFF_RESULTS + 8 * (ticket as usize % 64)).store(u64::from(ticket) << 40 | bytes, SeqCst);
    }

    /// As a writer: waits for the reader to wait, then claims its wait for
    /// `total` bytes as `pid`. Returns the ticket and the reader's `want`.
    pub fn claim(&self, total: u64, pid: i32) -> (u32, u64) {
        wait_until("the reader to wait", || self.state() == WAITING);
        let ticket = self.ticket();
        let want = self.map.u64_at(OFF_WANT).load(SeqCst);
        self.map.u64_at(OFF_TOTAL).store(total, SeqCst);
        let waiting = mailbox(WAITING, ticket, 0);
        let claimed = mailbox(CLAIMED, ticket, pid);
        assert!(self.map.u64_at(OFF_MAILBOX).compare_exchange(waiting, claimed, SeqCst, SeqCst).is_ok());
        (ticket, want)
    }
}
