//! Which TCP sockets take the fast path (docs/ipc-protocol.md, "TCP over
//! loopback"): a connection whose other end is a socket of this host, in
//! this network namespace, owned by this uid, on an address `[tcp]
//! addresses` serves. Asked once per socket, at its first large call
//! (`classify`), and by a reader once more when it opts in.

use ipc_offload_engine::{Fallback, stats};
use ipc_offload_policy::{Addresses, Class};
use ipc_offload_sys::{Errno, tcp};

use crate::state;

/// Whether a TCP socket is one the fast path serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Connected, to a peer on an address that `addresses` serves.
    Served,
    /// Connected to a peer elsewhere (`not-local`, counted), or not a
    /// socket that getsockname and getpeername describe: never served.
    NotServed,
    /// Not connected (yet): a nonblocking connect under way, or a
    /// listening socket. Asked again later.
    NotYet,
}

/// Whether connected TCP socket `fd` may take the fast path: its peer's
/// address is a loopback one or, with `addresses = "local"`, one of this
/// host's. Whether a socket really is the other end is the reader's
/// question ([`peer`]); a connection to a local address through a
/// translation (NAT, a proxy) has none and stays on the kernel path.
pub fn admit(fd: i32) -> Admission {
    let c = match tcp::connection(fd) {
        Ok(c) => c,
        Err(Errno(libc::ENOTCONN)) => return Admission::NotYet,
        Err(_) => return Admission::NotServed,
    };
    let local = c.is_loopback() || (addresses() == Addresses::Local && tcp::is_local_address(c.remote.ip()));
    if local {
        return Admission::Served;
    }
    stats::counters(Class::Tcp).note_fallback(Fallback::NotLocal);
    Admission::NotServed
}

/// The inode of the socket at the other end of connected socket `fd`, if
/// one of this host and network namespace is, owned by `euid`. None is
/// counted as `not-local` (a translated address), another owner's as
/// `opt-in-failed` by the caller.
pub fn peer(fd: i32, euid: u32) -> Option<u32> {
    let c = tcp::connection(fd).ok()?;
    match tcp::peer_socket(&c) {
        Ok(peer) => (peer.uid == euid).then_some(peer.inode),
        Err(_) => {
            stats::counters(Class::Tcp).note_fallback(Fallback::NotLocal);
            None
        }
    }
}

/// `[tcp] addresses` of this process (loopback before the library set up).
fn addresses() -> Addresses {
    state::get().map_or(Addresses::Loopback, |s| s.plan.class(Class::Tcp).rule.addresses)
}
