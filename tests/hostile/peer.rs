//! A hostile peer's view of protocol v3 (docs/ipc-protocol.md): the side
//! channel's names and datagrams, and the ring's layout and offer words,
//! written from the document ("Opting in, and the side channel", "The
//! ring", "One offer") and not from the library's code. It speaks the
//! protocol well enough to get the library's ring and open offers in it (as
//! a writer) or to have the library offer its bytes in a ring of its own
//! (as a reader), then does what the test says.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

use super::sys::{self, Map};

// Ring layout (docs/ipc-protocol.md, "The ring").
pub const MAGIC: u64 = u64::from_le_bytes(*b"IPCORING");
pub const VERSION: u32 = 3;
pub const OFF_VERSION: usize = 8;
pub const OFF_SLOTS: usize = 12;
pub const OFF_SLOT_BYTES: usize = 16;
pub const OFF_READER_PID: usize = 20;
pub const OFF_RING_BYTES: usize = 24;
pub const OFF_READER_INO: usize = 32;
pub const OFF_WRITER_INO: usize = 36;
pub const OFF_OFFER: usize = 64;
pub const OFF_READER_CPU: usize = 128;
pub const OFF_WRITER_CPU: usize = 192;
pub const OFF_TOTAL: usize = 256;
pub const OFF_PLACED: usize = 320;
pub const OFF_TAKEN: usize = 384;
pub const OFF_COPIED: usize = 448;
pub const OFF_WAIT: usize = 512;
pub const OFF_LISTEN: usize = 576;
pub const OFF_READS: usize = 640;
pub const OFF_PLACED_BELL: usize = 704;
pub const OFF_TAKEN_BELL: usize = 768;
pub const DATA: usize = 8192;

// Offer states (the low byte of the offer word).
pub const IDLE: u64 = 0;
pub const SETUP: u64 = 1;
pub const OPEN: u64 = 2;
/// In `taken`: the writer withdrew what was not taken.
pub const CLOSED: u64 = 1 << 39;
/// In `wait`: the waiting reader sleeps (send it a WAKE).
pub const ASLEEP: u64 = 1 << 63;
/// Bit 31 of a bell: someone sleeps on it.
pub const SLEEPER: u32 = 1 << 31;

/// How long any step of a hostile script may wait for the victim.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The abstract name the reader of what is written into a socket of inode
/// `w` binds.
pub fn socket_name(w: u64) -> Vec<u8> {
    format!("ipc-offload/3/{}", w & 0xffff_ffff).into_bytes()
}

/// The name of a pipe's reader.
pub fn pipe_name(dev: u64, ino: u64) -> Vec<u8> {
    format!("ipc-offload/3/p{dev}.{ino}").into_bytes()
}

/// A side-channel datagram: magic, version, type, then `payload` at byte 8.
pub fn datagram(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut d = b"IPCO".to_vec();
    d.extend_from_slice(&[VERSION as u8, kind, 0, 0]);
    d.extend_from_slice(payload);
    d
}

pub fn request(pid: i32, ino: u32) -> Vec<u8> {
    datagram(1, &[pid.to_le_bytes(), ino.to_le_bytes()].concat())
}

pub fn offer(ring_bytes: u64) -> Vec<u8> {
    datagram(2, &ring_bytes.to_le_bytes())
}

pub fn wake(seq: u32) -> Vec<u8> {
    datagram(3, &seq.to_le_bytes())
}

/// The type byte of a datagram of this version, if it is one.
pub fn kind(d: &[u8]) -> Option<u8> {
    (d.len() >= 8 && &d[..4] == b"IPCO" && d[4] == VERSION as u8).then_some(d[5])
}

/// An offer word: `writer pid << 32 | seq << 8 | state`.
pub fn offer_word(state: u64, seq: u32, pid: i32) -> u64 {
    state | (u64::from(seq & 0x00ff_ffff) << 8) | (u64::from(pid as u32) << 32)
}

/// A count word: `seq << 40 | bytes`.
pub fn count(seq: u32, bytes: u64) -> u64 {
    (u64::from(seq & 0x00ff_ffff) << 40) | (bytes & ((1 << 39) - 1))
}

/// The sequence number of a count word.
pub fn seq_of(word: u64) -> u32 {
    ((word >> 40) & 0x00ff_ffff) as u32
}

/// The bytes of a count word (without `CLOSED`).
pub fn bytes_of(word: u64) -> u64 {
    word & ((1 << 39) - 1)
}

/// Polls `cond` until it holds, or panics after [`PATIENCE`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "hostile peer: gave up waiting for {what}");
        std::thread::sleep(Duration::from_micros(100));
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
    /// Maps a ring the library offered, checking it as the document says
    /// a writer does: sealed, its header consistent with its size.
    pub fn attach(memfd: &OwnedFd) -> Ring {
        let seals = sys::seals(memfd);
        let need = libc::F_SEAL_GROW | libc::F_SEAL_SHRINK;
        assert_eq!(seals & need, need, "the library's ring is sealed against resizing");
        let size = sys::size(memfd);
        let head = Map::new(memfd, DATA);
        assert_eq!(head.u64_at(0).load(SeqCst), MAGIC, "the library's ring has the documented magic");
        assert_eq!(head.u32_at(OFF_VERSION).load(SeqCst), VERSION);
        let (slots, slot_bytes) = (head.u32_at(OFF_SLOTS).load(SeqCst), head.u32_at(OFF_SLOT_BYTES).load(SeqCst));
        assert!(
            (1..=64).contains(&slots) && slot_bytes % 4096 == 0 && slot_bytes <= 16 << 20,
            "{slots} x {slot_bytes}"
        );
        let bytes = head.u64_at(OFF_RING_BYTES).load(SeqCst);
        assert_eq!(bytes, DATA as u64 + u64::from(slots) * u64::from(slot_bytes));
        assert_eq!(bytes, size, "the header's size is the memfd's");
        Ring { map: Map::new(memfd, bytes as usize), slots, slot_bytes }
    }

    /// Makes a well-formed ring as a reader would: the memfd, and the ring.
    pub fn create(slots: u32, slot_bytes: u32, reader_pid: i32, r: u32, w: u32) -> (OwnedFd, Ring) {
        let bytes = DATA as u64 + u64::from(slots) * u64::from(slot_bytes);
        let fd = sys::memfd(bytes, true);
        let ring = Ring { map: Map::new(&fd, bytes as usize), slots, slot_bytes };
        write_header(&ring.map, slots, slot_bytes, reader_pid, r, w);
        (fd, ring)
    }

    /// Bytes of the ring (header and buffer).
    pub fn len(&self) -> u64 {
        DATA as u64 + self.capacity()
    }

    /// Bytes of the buffer.
    pub fn capacity(&self) -> u64 {
        u64::from(self.slots) * u64::from(self.slot_bytes)
    }

    pub fn u64_at(&self, off: usize) -> &AtomicU64 {
        self.map.u64_at(off)
    }

    pub fn u32_at(&self, off: usize) -> &AtomicU32 {
        self.map.u32_at(off)
    }

    pub fn offer(&self) -> u64 {
        self.u64_at(OFF_OFFER).load(SeqCst)
    }

    pub fn set_offer(&self, word: u64) {
        self.u64_at(OFF_OFFER).store(word, SeqCst);
    }

    /// The offer word's state.
    pub fn state(&self) -> u64 {
        self.offer() & 0xff
    }

    /// The offer word's sequence number.
    pub fn seq(&self) -> u32 {
        ((self.offer() >> 8) & 0x00ff_ffff) as u32
    }

    /// The word at `off` (total, placed, taken, copied...).
    pub fn word(&self, off: usize) -> u64 {
        self.u64_at(off).load(SeqCst)
    }

    pub fn set_word(&self, off: usize, value: u64) {
        self.u64_at(off).store(value, SeqCst);
    }

    /// Bytes of count word `off` if it belongs to offer `seq`.
    pub fn bytes(&self, off: usize, seq: u32) -> Option<u64> {
        let w = self.word(off);
        (seq_of(w) == seq).then_some(bytes_of(w))
    }

    /// The buffer's offset of stream position `pos` of an offer.
    pub fn offset(&self, pos: u64) -> usize {
        DATA + (pos % self.capacity()) as usize
    }

    /// Bytes from stream position `pos` to the end of the buffer.
    pub fn to_end(&self, pos: u64) -> u64 {
        self.capacity() - pos % self.capacity()
    }

    /// Copies `bytes` in at stream position `pos`, wrapping.
    pub fn write_at(&self, pos: u64, bytes: &[u8]) {
        let first = (self.to_end(pos) as usize).min(bytes.len());
        self.map.write(self.offset(pos), &bytes[..first]);
        if first < bytes.len() {
            self.map.write(DATA, &bytes[first..]);
        }
    }

    /// Copies `n` bytes out from stream position `pos`, wrapping.
    pub fn read_at(&self, pos: u64, n: usize) -> Vec<u8> {
        let first = (self.to_end(pos) as usize).min(n);
        let mut out = self.map.read(self.offset(pos), first);
        if first < n {
            out.extend(self.map.read(DATA, n - first));
        }
        out
    }

    /// Rings a bell (`OFF_PLACED_BELL` or `OFF_TAKEN_BELL`): counts one
    /// and wakes a sleeper, as the document says.
    pub fn ring_bell(&self, bell: usize) {
        let word = self.u32_at(bell);
        let old = word.fetch_update(SeqCst, SeqCst, |v| Some(v.wrapping_add(1) & !SLEEPER)).unwrap();
        if old & SLEEPER != 0 {
            sys::futex_wake(word);
        }
    }

    // ---- as a writer ----

    /// Opens an offer of `total` bytes as writer `pid` ("One offer", step
    /// 2), which must be possible now: the offer word IDLE and every byte
    /// of the last offer copied out. Returns its sequence number.
    pub fn open(&self, total: u64, pid: i32) -> u32 {
        let (w, seq) = self.next_seq();
        let setup = offer_word(SETUP, seq, pid);
        assert!(self.u64_at(OFF_OFFER).compare_exchange(w, setup, SeqCst, SeqCst).is_ok());
        self.set_counts(seq, total);
        self.set_offer(offer_word(OPEN, seq, pid));
        seq
    }

    /// Opens an offer of `total` bytes as `pid` with `bytes` placed
    /// already, published in one store of the offer word (IDLE to OPEN):
    /// a reader never sees it half set up. For a pid with no process this
    /// matters: an offer the reader finds in SETUP for 1 ms, which a loaded
    /// machine can spend between two stores of this thread, is ended with
    /// nothing taken.
    pub fn open_placed(&self, total: u64, pid: i32, bytes: &[u8]) -> u32 {
        let (w, seq) = self.next_seq();
        self.set_counts(seq, total);
        self.write_at(0, bytes);
        self.set_word(OFF_PLACED, count(seq, bytes.len() as u64));
        assert!(self.u64_at(OFF_OFFER).compare_exchange(w, offer_word(OPEN, seq, pid), SeqCst, SeqCst).is_ok());
        self.ring_bell(OFF_PLACED_BELL);
        seq
    }

    /// The offer word of a free ring and the next offer's seq.
    fn next_seq(&self) -> (u64, u32) {
        let w = self.offer();
        assert_eq!(w & 0xff, IDLE, "the ring is free: {w:#x}");
        let (taken, copied) = (self.word(OFF_TAKEN), self.word(OFF_COPIED));
        assert!(
            bytes_of(taken) == bytes_of(copied) && seq_of(taken) == seq_of(copied),
            "every byte of the last offer was copied out: taken {taken:#x}, copied {copied:#x}"
        );
        (w, (((w >> 8) & 0x00ff_ffff) as u32 + 1) & 0x00ff_ffff)
    }

    /// The counts of a new offer `seq` of `total` bytes, nothing placed.
    fn set_counts(&self, seq: u32, total: u64) {
        self.set_word(OFF_TOTAL, count(seq, total));
        self.set_word(OFF_PLACED, count(seq, 0));
        self.set_word(OFF_TAKEN, count(seq, 0));
        self.set_word(OFF_COPIED, count(seq, 0));
    }

    /// Places `bytes` at stream position `pos` of offer `seq` and publishes
    /// `placed` = `pos + bytes.len()`, ringing the placed bell.
    pub fn place(&self, seq: u32, pos: u64, bytes: &[u8]) {
        self.write_at(pos, bytes);
        self.set_word(OFF_PLACED, count(seq, pos + bytes.len() as u64));
        self.ring_bell(OFF_PLACED_BELL);
    }

    /// Whether a WAKE is due after a step: a reader sleeps in a read, or a
    /// wait of the library watches the ring.
    pub fn wants_wake(&self) -> bool {
        self.word(OFF_WAIT) & ASLEEP != 0 || self.u32_at(OFF_LISTEN).load(SeqCst) > 0
    }

    /// Ends offer `seq` of `pid` (step 6): the word back to IDLE.
    pub fn close(&self, seq: u32, pid: i32) {
        let open = offer_word(OPEN, seq, pid);
        assert!(self.u64_at(OFF_OFFER).compare_exchange(open, offer_word(IDLE, seq, 0), SeqCst, SeqCst).is_ok());
    }

    // ---- as a reader ----

    /// Claims bytes `[from, to)` of offer `seq` with a compare-and-swap of
    /// `taken` (false: it moved, or the writer withdrew).
    pub fn claim(&self, seq: u32, from: u64, to: u64) -> bool {
        self.u64_at(OFF_TAKEN).compare_exchange(count(seq, from), count(seq, to), SeqCst, SeqCst).is_ok()
    }

    /// Publishes `copied` for offer `seq` and rings the taken bell.
    pub fn copied(&self, seq: u32, bytes: u64) {
        self.set_word(OFF_COPIED, count(seq, bytes));
        self.ring_bell(OFF_TAKEN_BELL);
    }
}

/// Writes a ring header (any values: a garbage one too) into `map`.
pub fn write_header(map: &Map, slots: u32, slot_bytes: u32, reader_pid: i32, r: u32, w: u32) {
    map.u64_at(0).store(MAGIC, SeqCst);
    map.u32_at(OFF_VERSION).store(VERSION, SeqCst);
    map.u32_at(OFF_SLOTS).store(slots, SeqCst);
    map.u32_at(OFF_SLOT_BYTES).store(slot_bytes, SeqCst);
    map.u32_at(OFF_READER_PID).store(reader_pid as u32, SeqCst);
    map.u64_at(OFF_RING_BYTES).store(DATA as u64 + u64::from(slots) * u64::from(slot_bytes), SeqCst);
    map.u32_at(OFF_READER_INO).store(r, SeqCst);
    map.u32_at(OFF_WRITER_INO).store(w, SeqCst);
}
