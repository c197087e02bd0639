//! What an fd is to the fast path: one end of a Unix stream socket, of a
//! TCP connection, or of a pipe (or FIFO), who it is, and the few questions
//! whose system calls differ between them (docs/ipc-protocol.md, "Pipes and
//! FIFOs", "TCP over loopback").

use ipc_offload_engine::Fallback;
use ipc_offload_policy::Class;
use ipc_offload_sys::mem::FileStat;
use ipc_offload_sys::{net, pipe, tcp};

/// The kinds of files with a fast path (the index of a per-family array).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// A Unix-domain stream socket.
    Unix,
    /// A pipe or a FIFO.
    Pipe,
    /// A TCP socket (IPv4 or IPv6) whose peer is on this host.
    Tcp,
}

impl Family {
    /// How many there are: the length of per-family arrays.
    pub const COUNT: usize = 3;

    /// The family of an IPC class (None for the copy classes).
    pub fn of_class(class: Class) -> Option<Family> {
        match class {
            Class::Unix => Some(Family::Unix),
            Class::Pipe => Some(Family::Pipe),
            Class::Tcp => Some(Family::Tcp),
            _ => None,
        }
    }
}

/// A file with a fast path, by identity. For a socket, `ino` is the socket's
/// inode (`dev` is not needed: sockfs is one file system); both ends of a
/// pipe are one inode, on pipefs or, for a FIFO, on the file system that
/// holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Socket or pipe.
    pub family: Family,
    /// `st_dev` (pipes; 0 for sockets).
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

/// Tag bit of pipe keys (socket keys are inode numbers below 2^32).
const PIPE_KEY: u64 = 1 << 55;
/// Tag bit of TCP socket keys (beside the inode, below 2^32).
const TCP_KEY: u64 = 1 << 54;

/// True for the key of a pipe or FIFO.
pub fn is_pipe_key(key: u64) -> bool {
    key & PIPE_KEY != 0
}

/// The policy class of the endpoint with key `key`.
pub fn class_of_key(key: u64) -> Class {
    if is_pipe_key(key) {
        Class::Pipe
    } else if key & TCP_KEY != 0 {
        Class::Tcp
    } else {
        Class::Unix
    }
}

impl Endpoint {
    /// The endpoint `fd` refers to, from its fstat, if it is one.
    pub fn of(fd: i32, st: &FileStat) -> Option<Endpoint> {
        if st.is_socket() {
            let family = if net::is_unix_stream(fd) {
                Family::Unix
            } else if tcp::is_tcp_stream(fd) {
                Family::Tcp
            } else {
                return None;
            };
            return Some(Endpoint { family, dev: 0, ino: st.ino });
        }
        st.is_fifo().then_some(Endpoint { family: Family::Pipe, dev: st.dev, ino: st.ino })
    }

    /// The Unix socket of inode `ino` (a socket's peer, from sock_diag).
    pub fn socket(ino: u32) -> Endpoint {
        Endpoint { family: Family::Unix, dev: 0, ino: u64::from(ino) }
    }

    /// The TCP socket of inode `ino` (a connection's other end, from
    /// inet_diag).
    pub fn tcp(ino: u32) -> Endpoint {
        Endpoint { family: Family::Tcp, dev: 0, ino: u64::from(ino) }
    }

    /// The socket of inode `ino` whose key is `key` (a socket the table
    /// knows: its family is in the key).
    pub fn socket_with_key(ino: u32, key: u64) -> Endpoint {
        if key & TCP_KEY != 0 { Endpoint::tcp(ino) } else { Endpoint::socket(ino) }
    }

    /// The policy class of its calls.
    pub fn class(self) -> Class {
        match self.family {
            Family::Unix => Class::Unix,
            Family::Pipe => Class::Pipe,
            Family::Tcp => Class::Tcp,
        }
    }

    /// A nonzero key of at most 56 bits for the per-process tables. Sockets
    /// and pipes made by pipe(2) key by inode (below 2^32, from one
    /// counter); a FIFO's inode and device are folded, so two FIFOs may
    /// share a key: the tables then hold the full endpoint and compare it.
    pub fn key(self) -> u64 {
        match self.family {
            Family::Unix => self.ino & 0xffff_ffff,
            Family::Tcp => TCP_KEY | (self.ino & 0xffff_ffff),
            Family::Pipe => {
                let folded = self.ino ^ (self.ino >> 32).rotate_left(13) ^ self.dev.rotate_left(32);
                PIPE_KEY | (folded & (PIPE_KEY - 1))
            }
        }
    }

    /// The inode as the ring header and REQUESTs carry it (32 bits: a check
    /// of what the name already says).
    pub fn ino32(self) -> u32 {
        self.ino as u32
    }

    /// Whether a write could deliver at all: a socket that is shut down or
    /// has no peer, a pipe without readers, is the kernel's to report.
    pub fn can_write(self, fd: i32) -> Result<(), Fallback> {
        match self.family {
            Family::Unix | Family::Tcp => net::can_send(fd).map_err(|_| Fallback::SocketError),
            Family::Pipe if pipe::no_readers(fd) => Err(Fallback::NoReaders),
            Family::Pipe => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_families_apart() {
        let sock = Endpoint::socket(7);
        let pipe = Endpoint { family: Family::Pipe, dev: 14, ino: 7 };
        assert_eq!(sock.key(), 7);
        assert_ne!(pipe.key(), sock.key());
        assert!(pipe.key() < 1 << 56 && pipe.key() != 0);
        let fifo = Endpoint { family: Family::Pipe, dev: 0x803, ino: 1 << 40 };
        assert!(fifo.key() < 1 << 56);
        assert_ne!(fifo.key(), Endpoint { dev: 0x804, ..fifo }.key());
        assert_eq!((sock.class(), pipe.class()), (Class::Unix, Class::Pipe));
        let tcp = Endpoint::tcp(7);
        assert!(tcp.key() != sock.key() && tcp.key() != pipe.key() && tcp.key() < 1 << 56);
        assert_eq!(tcp.class(), Class::Tcp);
        for e in [sock, pipe, fifo, tcp] {
            assert_eq!(class_of_key(e.key()), e.class(), "{e:?}");
        }
        assert_eq!(Endpoint::socket_with_key(7, tcp.key()), tcp);
        assert_eq!(Endpoint::socket_with_key(7, sock.key()), sock);
    }
}
