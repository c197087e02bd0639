//! TCP connections between processes of one host: what the loopback fast
//! path asks of the kernel. A connected socket's two addresses
//! (getsockname(2), getpeername(2)), whether both are loopback addresses,
//! whether an address is one of this host's (bind(2) of a probe socket),
//! and the socket at the other end of the connection, by inode and owner,
//! from sock_diag(7): an exact `inet_diag` lookup by the connection's
//! reversed 4-tuple (the same lookup `ss` makes).
//!
//! Why the answer can be trusted: the lookup runs in the caller's network
//! namespace, so a socket found lives in it; a TCP connection is one
//! 4-tuple, unique within a namespace, so the socket whose local address is
//! our remote one and whose remote address is our local one is the other
//! end of this connection. An address translated on the way (NAT, a proxy)
//! leaves no socket with the reversed tuple, and nothing is found; a peer
//! on another host or in another namespace is never found.

use core::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::mem::OwnedFd;
use super::net::{SOCK_DIAG_BY_FAMILY, diag_error, diag_header, getsockopt_int, sock_diag};
use super::{Errno, syscall6};

/// The two addresses of a connected TCP socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection {
    /// This end's address (getsockname).
    pub local: SocketAddr,
    /// The other end's address (getpeername).
    pub remote: SocketAddr,
}

/// The socket at the other end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerSocket {
    /// Its inode (as `fstat` gives it in the process that holds it).
    pub inode: u32,
    /// Its owner's uid.
    pub uid: u32,
}

/// True for an `AF_INET` or `AF_INET6` `SOCK_STREAM` TCP socket,
/// connected or not.
pub fn is_tcp_stream(fd: i32) -> bool {
    let domain = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN);
    matches!(domain, Ok(libc::AF_INET | libc::AF_INET6))
        && getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE) == Ok(libc::SOCK_STREAM)
        && getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL) == Ok(libc::IPPROTO_TCP)
}

/// The addresses of connected socket `fd`: `ENOTCONN` if it has no peer.
pub fn connection(fd: i32) -> Result<Connection, Errno> {
    Ok(Connection { local: address(fd, libc::SYS_getsockname)?, remote: address(fd, libc::SYS_getpeername)? })
}

/// getsockname(2) or getpeername(2) as a socket address.
fn address(fd: i32, call: libc::c_long) -> Result<SocketAddr, Errno> {
    // SAFETY: sockaddr_storage is plain data.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes of address and its
    // length into this frame.
    unsafe { syscall6(call, [fd as usize, &mut storage as *mut _ as usize, &mut len as *mut _ as usize, 0, 0, 0]) }?;
    from_storage(&storage).ok_or(Errno(libc::EAFNOSUPPORT))
}

fn from_storage(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { *(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe { *(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(SocketAddr::V6(SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id)))
        }
        _ => None,
    }
}

/// An address as IPv4 if it is one (an IPv4-mapped IPv6 address included).
fn as_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    }
}

fn is_loopback_ip(ip: IpAddr) -> bool {
    as_v4(ip).map_or(ip.is_loopback(), |v4| v4.is_loopback())
}

impl Connection {
    /// Both ends on a loopback address (127.0.0.0/8, ::1, or 127.0.0.0/8
    /// mapped into IPv6): a connection inside this host by construction.
    pub fn is_loopback(&self) -> bool {
        is_loopback_ip(self.local.ip()) && is_loopback_ip(self.remote.ip())
    }
}

/// Whether `ip` is an address of this host in this network namespace: a
/// datagram socket can bind to it (ip(7): without `IP_FREEBIND`, bind(2)
/// to an address no interface holds fails with `EADDRNOTAVAIL`). An IPv6
/// link-local address needs its interface, which this does not know: it
/// counts as not local. Two system calls and a close, no allocation.
pub fn is_local_address(ip: IpAddr) -> bool {
    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let at = &mut storage as *mut libc::sockaddr_storage;
    let (domain, len) = match (as_v4(ip), ip) {
        (Some(v4), _) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a
            // sockaddr_in, and this frame owns it.
            let sin = unsafe { &mut *at.cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from(v4).to_be();
            (libc::AF_INET, size_of::<libc::sockaddr_in>())
        }
        (None, IpAddr::V6(v6)) => {
            // SAFETY: as above, for a sockaddr_in6.
            let sin6 = unsafe { &mut *at.cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = v6.octets();
            (libc::AF_INET6, size_of::<libc::sockaddr_in6>())
        }
        (None, IpAddr::V4(_)) => return false, // as_v4 gives every IPv4 address
    };
    let kind = (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC) as usize;
    // SAFETY: socket(2) with constant arguments.
    let Ok(fd) = (unsafe { syscall6(libc::SYS_socket, [domain as usize, kind, 0, 0, 0, 0]) }) else { return false };
    let fd = OwnedFd::new(fd as i32);
    // SAFETY: the kernel reads `len` bytes of address from this frame.
    unsafe { syscall6(libc::SYS_bind, [fd.raw() as usize, at as usize, len, 0, 0, 0]) }.is_ok()
}

/// `TCP_INFO` of connected socket `fd` (tcp(7)): one consistent snapshot
/// (the kernel fills it under the socket's lock).
fn info(fd: i32) -> Result<libc::tcp_info, Errno> {
    // SAFETY: tcp_info is plain data; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes of tcp_info and its
    // length into this frame.
    unsafe {
        syscall6(
            libc::SYS_getsockopt,
            [
                fd as usize,
                libc::IPPROTO_TCP as usize,
                libc::TCP_INFO as usize,
                &mut info as *mut libc::tcp_info as usize,
                &mut len as *mut libc::socklen_t as usize,
                0,
            ],
        )
    }?;
    // Kernels before 4.19 have no `tcpi_bytes_sent`: too short a reply.
    if (len as usize) < core::mem::offset_of!(libc::tcp_info, tcpi_bytes_retrans) + 8 {
        return Err(Errno(libc::ENOPROTOOPT));
    }
    Ok(info)
}

/// Bytes the application has written into connected socket `fd` since the
/// connection began: sent once (`tcpi_bytes_sent` less
/// `tcpi_bytes_retrans`) plus not sent yet (`tcpi_notsent_bytes`), that is
/// the send sequence's distance from its start. Each byte arrives in the
/// peer's receive queue some time after the write that sent it returned
/// (the network stack delivers it, on loopback in a softirq).
pub fn bytes_written(fd: i32) -> Result<u64, Errno> {
    let i = info(fd)?;
    Ok(i.tcpi_bytes_sent.saturating_sub(i.tcpi_bytes_retrans) + u64::from(i.tcpi_notsent_bytes))
}

/// The `tcpi_state` values of a socket that received its peer's FIN
/// (include/net/tcp_states.h; the libc crate does not define them).
const STATE_TIME_WAIT: u8 = 6;
const STATE_CLOSE_WAIT: u8 = 8;
const STATE_LAST_ACK: u8 = 9;
const STATE_CLOSING: u8 = 11;

/// Bytes connected socket `fd` has received in order since the connection
/// began: those read, and those queued (`SIOCINQ`). `tcpi_bytes_received`
/// counts the peer's FIN as one more (it advances the receive sequence),
/// which `SIOCINQ` leaves out: it is taken off here once the FIN is in
/// (the states that follow it), so that this less `SIOCINQ` is what the
/// application has read.
pub fn bytes_received(fd: i32) -> Result<u64, Errno> {
    let i = info(fd)?;
    let fin_in = matches!(i.tcpi_state, STATE_TIME_WAIT | STATE_CLOSE_WAIT | STATE_LAST_ACK | STATE_CLOSING);
    Ok(i.tcpi_bytes_received.saturating_sub(u64::from(fin_in)))
}

/// The socket at the other end of connection `c`, if it is in this
/// network namespace (`ENOENT` if none is: another host, another
/// namespace, a translated address, or a connection already gone; a socket
/// without an inode, in TIME_WAIT or orphaned, counts as none).
pub fn peer_socket(c: &Connection) -> Result<PeerSocket, Errno> {
    #[repr(C)]
    struct SockId {
        sport: u16,
        dport: u16,
        src: [u32; 4],
        dst: [u32; 4],
        interface: u32,
        cookie: [u32; 2],
    }
    #[repr(C)]
    struct ReqV2 {
        family: u8,
        protocol: u8,
        ext: u8,
        pad: u8,
        states: u32,
        id: SockId,
    }
    #[repr(C)]
    struct Request {
        nlh: libc::nlmsghdr,
        req: ReqV2,
    }
    // The peer's own view: its local address is our remote one.
    let (src, dst) = (c.remote, c.local);
    let v4 = as_v4(src.ip()).zip(as_v4(dst.ip()));
    let (family, src_words, dst_words) = match v4 {
        Some((s, d)) => (libc::AF_INET, [u32::from(s).to_be(), 0, 0, 0], [u32::from(d).to_be(), 0, 0, 0]),
        None => (libc::AF_INET6, words6(src.ip()), words6(dst.ip())),
    };
    let interface = match dst {
        SocketAddr::V6(v6) => v6.scope_id(),
        SocketAddr::V4(_) => 0,
    };
    let request = Request {
        nlh: diag_header(size_of::<Request>(), 2),
        req: ReqV2 {
            family: family as u8,
            protocol: libc::IPPROTO_TCP as u8,
            ext: 0,
            pad: 0,
            states: u32::MAX,
            id: SockId {
                sport: src.port().to_be(),
                dport: dst.port().to_be(),
                src: src_words,
                dst: dst_words,
                interface,
                cookie: [u32::MAX; 2], // INET_DIAG_NOCOOKIE
            },
        },
    };
    let mut reply = [0u64; 64]; // 512 bytes, aligned
    parse_diag_msg(sock_diag(&request, &mut reply)?)
}

/// An IPv6 address as four words in network order (IPv4: mapped).
fn words6(ip: IpAddr) -> [u32; 4] {
    let v6 = match ip {
        IpAddr::V6(v6) => v6,
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
    };
    let b = v6.octets();
    core::array::from_fn(|i| u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]))
}

/// The uid and inode of an `inet_diag_msg` reply (after its 16-byte
/// netlink header: family, state, timer, retrans, a 48-byte socket id,
/// expires, rqueue, wqueue, uid, inode).
fn parse_diag_msg(bytes: &[u8]) -> Result<PeerSocket, Errno> {
    const UID_AT: usize = 16 + 4 + 48 + 12;
    let u32_at = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    if let Some(err) = diag_error(bytes) {
        return Err(err);
    }
    if bytes.get(4..6) != Some(&SOCK_DIAG_BY_FAMILY.to_ne_bytes()[..]) {
        return Err(Errno(libc::EPROTO));
    }
    let (uid, inode) = u32_at(UID_AT).zip(u32_at(UID_AT + 4)).ok_or(Errno(libc::EPROTO))?;
    if inode == 0 {
        return Err(Errno(libc::ENOENT));
    }
    Ok(PeerSocket { inode, uid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::fstat;
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn inode(fd: i32) -> u32 {
        fstat(fd).unwrap().ino as u32
    }

    /// A connection to a listener on `at`, both ends: (client, server).
    fn pair(at: &str) -> Option<(TcpStream, TcpStream)> {
        let listener = TcpListener::bind(at).ok()?;
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        Some((client, server))
    }

    fn each_end_finds_the_other(client: &TcpStream, server: &TcpStream) {
        let uid = crate::net::geteuid();
        for (near, far) in [(client, server), (server, client)] {
            let c = connection(near.as_raw_fd()).unwrap();
            assert_eq!(c.local, near.local_addr().unwrap());
            assert_eq!(c.remote, near.peer_addr().unwrap());
            assert!(c.is_loopback(), "{c:?}");
            let peer = peer_socket(&c).unwrap();
            assert_eq!(peer, PeerSocket { inode: inode(far.as_raw_fd()), uid }, "{c:?}");
        }
    }

    #[test]
    fn ipv4_loopback_ends_find_each_other() {
        let (client, server) = pair("127.0.0.1:0").unwrap();
        each_end_finds_the_other(&client, &server);
        assert!(is_tcp_stream(client.as_raw_fd()) && is_tcp_stream(server.as_raw_fd()));
    }

    #[test]
    fn ipv6_loopback_ends_find_each_other() {
        let Some((client, server)) = pair("[::1]:0") else {
            eprintln!("skipped: no IPv6 loopback here (binding [::1] failed)");
            return;
        };
        each_end_finds_the_other(&client, &server);
    }

    #[test]
    fn an_ipv4_client_of_a_dual_stack_listener_is_found_through_the_mapped_address() {
        let Ok(listener) = TcpListener::bind("[::]:0") else {
            eprintln!("skipped: no IPv6 here (binding [::] failed)");
            return;
        };
        let port = listener.local_addr().unwrap().port();
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (server, _) = listener.accept().unwrap();
        let seen = connection(server.as_raw_fd()).unwrap();
        assert!(matches!(seen.remote, SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some()), "{seen:?}");
        each_end_finds_the_other(&client, &server);
    }

    #[test]
    fn a_closed_connection_has_no_peer() {
        let (client, server) = pair("127.0.0.1:0").unwrap();
        let c = connection(client.as_raw_fd()).unwrap();
        drop(server);
        drop(client);
        // The side that closed first lingers in FIN_WAIT or TIME_WAIT
        // without an inode: found as none.
        assert_eq!(peer_socket(&c), Err(Errno(libc::ENOENT)));
    }

    #[test]
    fn a_tuple_nobody_holds_is_not_found() {
        let (client, _server) = pair("127.0.0.1:0").unwrap();
        let mut c = connection(client.as_raw_fd()).unwrap();
        c.local.set_port(c.local.port().wrapping_add(1).max(1));
        assert_eq!(peer_socket(&c), Err(Errno(libc::ENOENT)));
    }

    #[test]
    fn an_unconnected_socket_has_no_connection_and_other_sockets_are_not_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(connection(listener.as_raw_fd()), Err(Errno(libc::ENOTCONN)));
        assert!(is_tcp_stream(listener.as_raw_fd()), "a listener is a TCP stream socket");
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (unix, _) = UnixStream::pair().unwrap();
        assert!(!is_tcp_stream(udp.as_raw_fd()) && !is_tcp_stream(unix.as_raw_fd()));
        assert!(!is_tcp_stream(-1));
    }

    #[test]
    fn loopback_means_both_ends() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        let c = |l: &str, r: &str| Connection { local: at(l), remote: at(r) };
        assert!(c("127.0.0.1:1", "127.0.0.2:2").is_loopback());
        assert!(c("[::1]:1", "[::1]:2").is_loopback());
        assert!(c("[::ffff:127.0.0.1]:1", "[::ffff:127.0.0.1]:2").is_loopback());
        assert!(!c("127.0.0.1:1", "10.0.0.1:2").is_loopback());
        assert!(!c("10.0.0.1:1", "127.0.0.1:2").is_loopback());
        assert!(!c("[::ffff:10.0.0.1]:1", "[::1]:2").is_loopback());
        assert!(!c("[fe80::1]:1", "[::1]:2").is_loopback());
    }

    /// This host's address on the route to `to`, if it has one (no packet
    /// is sent: connect(2) of a datagram socket only picks a route).
    fn own_address_towards(to: &str) -> Option<IpAddr> {
        let probe = UdpSocket::bind("0.0.0.0:0").ok()?;
        probe.connect(to).ok()?;
        Some(probe.local_addr().ok()?.ip())
    }

    #[test]
    fn local_addresses_are_this_hosts_own() {
        for local in ["127.0.0.1", "127.3.4.5", "::ffff:127.0.0.1"] {
            assert!(is_local_address(local.parse().unwrap()), "{local}");
        }
        // Documentation ranges (RFC 5737, RFC 3849): no host holds them.
        for other in ["192.0.2.1", "198.51.100.7", "2001:db8::1", "::ffff:192.0.2.1"] {
            assert!(!is_local_address(other.parse().unwrap()), "{other}");
        }
        if TcpListener::bind("[::1]:0").is_ok() {
            assert!(is_local_address("::1".parse().unwrap()));
        }
        match own_address_towards("192.0.2.1:9") {
            Some(own) if !own.is_loopback() => assert!(is_local_address(own), "{own}"),
            _ => eprintln!("skipped the non-loopback case: no route off this host"),
        }
    }

    #[test]
    fn a_connection_counts_what_each_end_wrote_and_received() {
        use std::io::{Read, Write};
        let (mut client, mut server) = pair("127.0.0.1:0").unwrap();
        assert_eq!((bytes_written(client.as_raw_fd()), bytes_received(server.as_raw_fd())), (Ok(0), Ok(0)));
        let data = vec![7u8; 300_000];
        client.write_all(&data).unwrap();
        assert_eq!(bytes_written(client.as_raw_fd()), Ok(300_000), "written counts at once");
        let mut buf = vec![0u8; 300_000];
        server.read_exact(&mut buf).unwrap();
        assert_eq!(bytes_received(server.as_raw_fd()), Ok(300_000), "read bytes were received");
        server.write_all(b"four").unwrap();
        assert_eq!(bytes_written(server.as_raw_fd()), Ok(4));
        let mut four = [0u8; 4];
        client.read_exact(&mut four).unwrap();
        assert_eq!(bytes_received(client.as_raw_fd()), Ok(4));
        let (a, _b) = UnixStream::pair().unwrap();
        assert!(bytes_written(a.as_raw_fd()).is_err(), "not TCP");
    }
}
