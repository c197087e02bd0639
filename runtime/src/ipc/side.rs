//! The side channel's datagrams (docs/ipc-protocol.md, "Opting in, and the
//! side channel"): REQUEST, OFFER and WAKE, their encoding, and the
//! abstract name a reader binds for a writer socket or a pipe.

use ipc_offload_sys::net::AbstractAddr;

use super::endpoint::{Endpoint, Family};

/// Every datagram starts with this.
pub const MAGIC: [u8; 4] = *b"IPCO";
/// The protocol version carried by names and datagrams.
pub const VERSION: u8 = 3;

/// A side-channel message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// A writer asks the reader of `writer_ino`'s peer for its ring.
    Request { writer_pid: i32, writer_ino: u32 },
    /// The reader's answer: the ring (its memfd and the far end of its
    /// lifeline travel as SCM_RIGHTS).
    Offer { ring_bytes: u64 },
    /// A writer opened offer `seq`, or placed more of it.
    Wake { seq: u32 },
}

const REQUEST: u8 = 1;
const OFFER: u8 = 2;
const WAKE: u8 = 3;

/// Longest encoded message.
pub const MAX_LEN: usize = 64;

impl Message {
    /// The datagram for this message.
    pub fn encode(&self) -> ([u8; MAX_LEN], usize) {
        let mut out = [0u8; MAX_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        let len = match *self {
            Message::Request { writer_pid, writer_ino } => {
                out[5] = REQUEST;
                out[8..12].copy_from_slice(&writer_pid.to_le_bytes());
                out[12..16].copy_from_slice(&writer_ino.to_le_bytes());
                16
            }
            Message::Offer { ring_bytes } => {
                out[5] = OFFER;
                out[8..16].copy_from_slice(&ring_bytes.to_le_bytes());
                16
            }
            Message::Wake { seq } => {
                out[5] = WAKE;
                out[8..12].copy_from_slice(&seq.to_le_bytes());
                12
            }
        };
        (out, len)
    }

    /// Decodes a datagram; `None` for anything but a well-formed message of
    /// this version.
    pub fn decode(bytes: &[u8]) -> Option<Message> {
        if bytes.len() < 8 || bytes[..4] != MAGIC || bytes[4] != VERSION {
            return None;
        }
        let u32_at = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        match (bytes[5], bytes.len()) {
            (REQUEST, 16) => Some(Message::Request { writer_pid: u32_at(8)? as i32, writer_ino: u32_at(12)? }),
            (OFFER, 16) => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&bytes[8..16]);
                Some(Message::Offer { ring_bytes: u64::from_le_bytes(b) })
            }
            (WAKE, 12) => Some(Message::Wake { seq: u32_at(8)? }),
            _ => None,
        }
    }
}

/// The abstract name the reader of what is written into `target` binds:
/// `ipc-offload/3/<W>` for the peer of socket `W` (Unix or TCP), `ipc-offload/3/p<dev>.<ino>`
/// for a pipe or FIFO (both ends are one inode).
pub fn reader_name(target: Endpoint) -> AbstractAddr {
    let mut name = Name { bytes: [0; 64], len: 0 };
    name.push(b"ipc-offload/3/");
    match target.family {
        // Socket inodes come from one counter, TCP's and Unix's alike.
        Family::Unix | Family::Tcp => name.number(target.ino & 0xffff_ffff),
        Family::Pipe => {
            name.push(b"p");
            name.number(target.dev);
            name.push(b".");
            name.number(target.ino);
        }
    }
    // At most 14 + 1 + 20 + 1 + 20 bytes: always within MAX_NAME.
    AbstractAddr::new(&name.bytes[..name.len]).expect("a short name")
}

/// A name being built on the stack (hooks never allocate).
struct Name {
    bytes: [u8; 64],
    len: usize,
}

impl Name {
    fn push(&mut self, part: &[u8]) {
        self.bytes[self.len..self.len + part.len()].copy_from_slice(part);
        self.len += part.len();
    }

    fn number(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        for m in [
            Message::Request { writer_pid: 1234, writer_ino: 0xfeed_beef },
            Message::Offer { ring_bytes: 8 << 20 },
            Message::Wake { seq: 77 },
        ] {
            let (bytes, len) = m.encode();
            assert_eq!(Message::decode(&bytes[..len]), Some(m));
        }
    }

    #[test]
    fn anything_else_is_refused() {
        let (bytes, len) = Message::Wake { seq: 1 }.encode();
        assert_eq!(Message::decode(&bytes[..len - 1]), None, "short");
        let mut other = bytes;
        other[4] = VERSION + 1;
        assert_eq!(Message::decode(&other[..len]), None, "other version");
        other = bytes;
        other[0] = b'X';
        assert_eq!(Message::decode(&other[..len]), None, "bad magic");
        other = bytes;
        other[5] = 9;
        assert_eq!(Message::decode(&other[..len]), None, "unknown type");
        assert_eq!(Message::decode(&[]), None);
    }

    #[test]
    fn names_carry_version_and_inode() {
        assert_eq!(reader_name(Endpoint::socket(44681)).name(), b"ipc-offload/3/44681");
        assert_eq!(reader_name(Endpoint::socket(0)).name(), b"ipc-offload/3/0");
        assert_eq!(reader_name(Endpoint::socket(u32::MAX)).name(), b"ipc-offload/3/4294967295");
        let pipe = Endpoint { family: Family::Pipe, dev: 14, ino: 92311 };
        assert_eq!(reader_name(pipe).name(), b"ipc-offload/3/p14.92311");
        let widest = Endpoint { family: Family::Pipe, dev: u64::MAX, ino: u64::MAX };
        assert_eq!(reader_name(widest).name(), b"ipc-offload/3/p18446744073709551615.18446744073709551615");
    }
}
