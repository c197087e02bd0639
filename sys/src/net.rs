//! Unix sockets as the IPC fast path needs them, on raw system calls (the
//! library's own `read`, `write`, `send`, `recv` and `close` are hooks):
//! abstract-address datagram sockets with `SCM_RIGHTS` and
//! `SCM_CREDENTIALS` (unix(7)), queue sizes (`SIOCINQ`, `SIOCOUTQ`), the
//! zero-byte send probe, poll(2), the peer's inode through sock_diag
//! (sock_diag(7), `UNIX_DIAG_PEER`), and pidfds (pidfd_open(2)).

use core::mem::{size_of, zeroed};
use core::time::Duration;

use super::mem::OwnedFd;
use super::{Errno, syscall6};

/// Longest abstract name (without the leading NUL) this module builds.
pub const MAX_NAME: usize = 100;

/// An abstract Unix socket address (`sun_path[0] == 0`).
#[derive(Clone, Copy)]
pub struct AbstractAddr {
    raw: libc::sockaddr_un,
    len: libc::socklen_t,
}

impl core::fmt::Debug for AbstractAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "AbstractAddr({:?})", self.name())
    }
}

impl AbstractAddr {
    /// The address `"\0" + name`; `None` if the name is too long.
    pub fn new(name: &[u8]) -> Option<Self> {
        if name.len() > MAX_NAME {
            return None;
        }
        // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
        let mut raw: libc::sockaddr_un = unsafe { zeroed() };
        raw.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (dst, src) in raw.sun_path[1..].iter_mut().zip(name) {
            *dst = *src as libc::c_char;
        }
        let len = (size_of::<libc::sa_family_t>() + 1 + name.len()) as libc::socklen_t;
        Some(AbstractAddr { raw, len })
    }

    /// The name, without the leading NUL (empty for an unnamed sender).
    pub fn name(&self) -> Vec<u8> {
        let n = (self.len as usize).saturating_sub(size_of::<libc::sa_family_t>() + 1);
        self.raw.sun_path[1..1 + n.min(self.raw.sun_path.len() - 1)].iter().map(|c| *c as u8).collect()
    }

    /// True for the same address: the same length and name bytes (the
    /// rest of `sun_path` is not part of it).
    pub fn same(&self, other: &AbstractAddr) -> bool {
        self.len == other.len && self.name() == other.name()
    }

    /// True for an address with a (possibly autobound) abstract name.
    pub fn is_abstract(&self) -> bool {
        self.len as usize > size_of::<libc::sa_family_t>() + 1 && self.raw.sun_path[0] == 0
    }
}

/// `SOCK_DGRAM` Unix socket, close-on-exec, nonblocking, with `SO_PASSCRED`
/// (every datagram received carries its sender's credentials).
pub fn dgram_socket() -> Result<OwnedFd, Errno> {
    let kind = (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) as usize;
    // SAFETY: socket(2) with constant arguments.
    let fd = OwnedFd::new(unsafe { syscall6(libc::SYS_socket, [libc::AF_UNIX as usize, kind, 0, 0, 0, 0]) }? as i32);
    let one: libc::c_int = 1;
    // SAFETY: SO_PASSCRED reads an int from this frame.
    unsafe {
        syscall6(
            libc::SYS_setsockopt,
            [
                fd.raw() as usize,
                libc::SOL_SOCKET as usize,
                libc::SO_PASSCRED as usize,
                &one as *const libc::c_int as usize,
                size_of::<libc::c_int>(),
                0,
            ],
        )
    }?;
    Ok(fd)
}

/// bind(2) to an abstract address (`EADDRINUSE` if taken).
pub fn bind(fd: i32, addr: &AbstractAddr) -> Result<(), Errno> {
    // SAFETY: the address lives on the caller's frame for the call.
    unsafe { syscall6(libc::SYS_bind, [fd as usize, &addr.raw as *const _ as usize, addr.len as usize, 0, 0, 0]) }
        .map(|_| ())
}

/// bind(2) with only the family: the kernel picks a unique abstract name.
pub fn autobind(fd: i32) -> Result<(), Errno> {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut raw: libc::sockaddr_un = unsafe { zeroed() };
    raw.sun_family = libc::AF_UNIX as libc::sa_family_t;
    // SAFETY: the address lives on this frame for the call.
    unsafe {
        syscall6(libc::SYS_bind, [fd as usize, &raw as *const _ as usize, size_of::<libc::sa_family_t>(), 0, 0, 0])
    }
    .map(|_| ())
}

/// Most descriptors one datagram carries.
pub const MAX_PASSED: usize = 2;

/// Sends one datagram to `to`, with the descriptors `pass` (at most
/// [`MAX_PASSED`]) attached as `SCM_RIGHTS`.
pub fn send_dgram(fd: i32, to: &AbstractAddr, bytes: &[u8], pass: &[i32]) -> Result<(), Errno> {
    let pass = &pass[..pass.len().min(MAX_PASSED)];
    let mut iov = libc::iovec { iov_base: bytes.as_ptr() as *mut _, iov_len: bytes.len() };
    // Control buffer for two fds, aligned for cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data; zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = &to.raw as *const _ as *mut _;
    msg.msg_namelen = to.len;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !pass.is_empty() {
        let bytes = size_of_val(pass) as u32;
        // SAFETY: CMSG_SPACE/CMSG_FIRSTHDR/CMSG_DATA compute positions inside
        // `control` (32 bytes; two fds need CMSG_SPACE(8) = 24); the header
        // and the fds are written in bounds.
        unsafe {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(bytes) as usize;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(bytes) as usize;
            for (i, fd) in pass.iter().enumerate() {
                core::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>().add(i), *fd);
            }
        }
    }
    let flags = (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as usize;
    // SAFETY: every pointer in `msg` refers to this frame or to `bytes`.
    unsafe { syscall6(libc::SYS_sendmsg, [fd as usize, &msg as *const _ as usize, flags, 0, 0, 0]) }.map(|_| ())
}

/// Whether a socket is still bound to `to` (its holder has not closed it,
/// exec'd or died): sends it an empty datagram from `fd`, which receivers
/// drop as too short. False only on `ECONNREFUSED`; a full queue counts as
/// bound.
pub fn bound(fd: i32, to: &AbstractAddr) -> bool {
    send_dgram(fd, to, &[], &[]) != Err(Errno(libc::ECONNREFUSED))
}

/// Credentials the kernel attached to a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Creds {
    /// Sender's pid.
    pub pid: i32,
    /// Sender's uid as the kernel attaches it (its real uid).
    pub uid: u32,
}

/// One received datagram.
#[derive(Debug)]
pub struct Datagram {
    /// Bytes received (at most the buffer's size).
    pub len: usize,
    /// The datagram was longer than the buffer.
    pub truncated: bool,
    /// The sender's address.
    pub from: AbstractAddr,
    /// The sender's credentials (always present with `SO_PASSCRED`).
    pub creds: Option<Creds>,
    /// Descriptors passed with `SCM_RIGHTS` (close-on-exec), in order;
    /// beyond [`MAX_PASSED`] they are closed.
    pub fds: [Option<OwnedFd>; MAX_PASSED],
}

/// Receives one datagram without blocking (`EAGAIN` when none is queued).
pub fn recv_dgram(fd: i32, buf: &mut [u8]) -> Result<Datagram, Errno> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut control = [0u64; 16];
    // SAFETY: plain data, zeroes valid.
    let mut from: libc::sockaddr_un = unsafe { zeroed() };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_un).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_un>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    let flags = (libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) as usize;
    // SAFETY: every pointer in `msg` refers to this frame or to `buf`.
    let len = unsafe { syscall6(libc::SYS_recvmsg, [fd as usize, &mut msg as *mut _ as usize, flags, 0, 0, 0]) }?;
    let mut creds = None;
    let mut passed: [Option<OwnedFd>; MAX_PASSED] = [None, None];
    // SAFETY: the CMSG macros walk the control buffer the kernel filled,
    // bounded by msg_controllen; data is read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            let data_len = (*cmsg).cmsg_len.saturating_sub(libc::CMSG_LEN(0) as usize);
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) if data_len >= size_of::<libc::ucred>() => {
                    let c = core::ptr::read_unaligned(data.cast::<libc::ucred>());
                    creds = Some(Creds { pid: c.pid, uid: c.uid });
                }
                (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                    for i in 0..data_len / size_of::<i32>() {
                        let fd = OwnedFd::new(core::ptr::read_unaligned(data.cast::<i32>().add(i)));
                        if let Some(slot) = passed.iter_mut().find(|p| p.is_none()) {
                            *slot = Some(fd);
                        } // else: dropped, which closes it
                    }
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Datagram {
        len: len.min(buf.len()),
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        from: AbstractAddr { raw: from, len: msg.msg_namelen },
        creds,
        fds: passed,
    })
}

pub(crate) fn getsockopt_int(fd: i32, level: i32, name: i32) -> Result<i32, Errno> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes an int and its length into this frame.
    unsafe {
        syscall6(
            libc::SYS_getsockopt,
            [fd as usize, level as usize, name as usize, &mut value as *mut _ as usize, &mut len as *mut _ as usize, 0],
        )
    }?;
    Ok(value)
}

/// True for a connected-or-not `AF_UNIX` `SOCK_STREAM` socket.
pub fn is_unix_stream(fd: i32) -> bool {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN) == Ok(libc::AF_UNIX)
        && getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE) == Ok(libc::SOCK_STREAM)
}

/// `SO_RCVLOWAT` (socket(7)): the fewest bytes a blocking read waits for
/// (1 unless the program set it).
pub fn receive_low_water(fd: i32) -> Result<i32, Errno> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT)
}

/// `SO_RCVTIMEO`: `None` when no receive timeout is set.
pub fn receive_timeout(fd: i32) -> Option<Duration> {
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    let mut len = size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: the kernel writes a timeval and its length into this frame.
    let r = unsafe {
        syscall6(
            libc::SYS_getsockopt,
            [
                fd as usize,
                libc::SOL_SOCKET as usize,
                libc::SO_RCVTIMEO as usize,
                &mut tv as *mut _ as usize,
                &mut len as *mut _ as usize,
                0,
            ],
        )
    };
    let d = Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64);
    (r.is_ok() && !d.is_zero()).then_some(d)
}

fn ioctl_int(fd: i32, request: u64) -> Result<i32, Errno> {
    let mut value: libc::c_int = 0;
    // SAFETY: these ioctls write one int into this frame.
    unsafe { syscall6(libc::SYS_ioctl, [fd as usize, request as usize, &mut value as *mut _ as usize, 0, 0, 0]) }?;
    Ok(value)
}

/// Bytes queued for this socket to read (`SIOCINQ`).
pub fn queued_in(fd: i32) -> Result<i32, Errno> {
    // SIOCINQ is FIONREAD on Linux.
    ioctl_int(fd, libc::FIONREAD)
}

/// Memory of this socket's writes not yet read by the peer (`SIOCOUTQ`):
/// zero exactly when every byte it wrote has been consumed.
pub fn queued_out(fd: i32) -> Result<i32, Errno> {
    // SIOCOUTQ is TIOCOUTQ on Linux.
    ioctl_int(fd, libc::TIOCOUTQ)
}

/// About how many bytes a send could queue now without waiting: the send
/// buffer (`SO_SNDBUF`, socket(7); TCP's autotuned size) less what is queued
/// of this socket's writes (`SIOCOUTQ`: unsent and unacknowledged bytes on
/// TCP, unread memory on a Unix socket). An estimate: the kernel counts
/// buffer memory, not payload, so a send may still take less.
pub fn send_room(fd: i32) -> Result<u64, Errno> {
    let buffer = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF)?;
    let queued = queued_out(fd)?;
    Ok((buffer as i64 - queued as i64).max(0) as u64)
}

/// A zero-byte send without signal: `EPIPE` when the socket can no longer
/// send (shut down, peer gone), `ENOTCONN` when it has no peer.
pub fn can_send(fd: i32) -> Result<(), Errno> {
    let flags = (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as usize;
    // SAFETY: a zero-length send reads no memory.
    unsafe { syscall6(libc::SYS_sendto, [fd as usize, 1, 0, flags, 0, 0]) }.map(|_| ())
}

/// send(2) of `len` bytes at `buf` on a stream socket, with `flags`: the
/// bytes it took.
///
/// # Safety
/// `buf` readable for `len` bytes.
pub unsafe fn send(fd: i32, buf: *const u8, len: usize, flags: i32) -> Result<usize, Errno> {
    // SAFETY: the caller vouches for the buffer; no address is passed.
    unsafe { syscall6(libc::SYS_sendto, [fd as usize, buf as usize, len, flags as usize, 0, 0]) }
}

/// shutdown(2).
pub fn shutdown(fd: i32, how: i32) -> Result<(), Errno> {
    // SAFETY: shutdown takes two integers.
    unsafe { syscall6(libc::SYS_shutdown, [fd as usize, how as usize, 0, 0, 0, 0]) }.map(|_| ())
}

/// fcntl(2) `F_DUPFD_CLOEXEC`: a close-on-exec duplicate of `fd`.
pub fn dup_cloexec(fd: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: F_DUPFD_CLOEXEC takes an integer.
    let new = unsafe { syscall6(libc::SYS_fcntl, [fd as usize, libc::F_DUPFD_CLOEXEC as usize, 0, 0, 0, 0]) }?;
    Ok(OwnedFd::new(new as i32))
}

/// The fd is blocking (no `O_NONBLOCK`).
pub fn is_blocking(fd: i32) -> Result<bool, Errno> {
    // SAFETY: F_GETFL takes no pointer.
    let flags = unsafe { syscall6(libc::SYS_fcntl, [fd as usize, libc::F_GETFL as usize, 0, 0, 0, 0]) }?;
    Ok(flags as i32 & libc::O_NONBLOCK == 0)
}

/// One entry of a poll set.
pub type PollFd = libc::pollfd;

/// poll(2); `None` waits forever. `Err(EINTR)` when a signal handler ran.
pub fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> Result<usize, Errno> {
    let ms = timeout.map_or(-1, |t| t.as_millis().clamp(0, i32::MAX as u128) as i32);
    // SAFETY: `fds` is a live slice of pollfd of the given length.
    unsafe { syscall6(libc::SYS_poll, [fds.as_mut_ptr() as usize, fds.len(), ms as usize, 0, 0, 0]) }
}

/// The inode of the peer of the Unix socket with inode `ino` (sock_diag).
pub fn peer_inode(ino: u32) -> Result<u32, Errno> {
    #[repr(C)]
    struct Request {
        nlh: libc::nlmsghdr,
        req: UnixDiagReq,
    }
    #[repr(C)]
    struct UnixDiagReq {
        family: u8,
        protocol: u8,
        pad: u16,
        states: u32,
        ino: u32,
        show: u32,
        cookie: [u32; 2],
    }
    const UDIAG_SHOW_PEER: u32 = 0x4;
    const UNIX_DIAG_PEER: u16 = 2;
    const DIAG_MSG: usize = 16; // struct unix_diag_msg

    let request = Request {
        nlh: diag_header(size_of::<Request>(), 1),
        req: UnixDiagReq {
            family: libc::AF_UNIX as u8,
            protocol: 0,
            pad: 0,
            states: u32::MAX,
            ino,
            show: UDIAG_SHOW_PEER,
            cookie: [u32::MAX; 2],
        },
    };
    let mut reply = [0u64; 128]; // 1 KiB, aligned
    parse_peer(sock_diag(&request, &mut reply)?, UNIX_DIAG_PEER, DIAG_MSG)
}

/// The netlink message type of sock_diag requests and replies.
pub(crate) const SOCK_DIAG_BY_FAMILY: u16 = 20;

/// The netlink header of a sock_diag request of `len` bytes in all.
pub(crate) fn diag_header(len: usize, seq: u32) -> libc::nlmsghdr {
    libc::nlmsghdr {
        nlmsg_len: len as u32,
        nlmsg_type: SOCK_DIAG_BY_FAMILY,
        nlmsg_flags: libc::NLM_F_REQUEST as u16,
        nlmsg_seq: seq,
        nlmsg_pid: 0,
    }
}

/// One sock_diag(7) round trip: sends `request` (a `#[repr(C)]` netlink
/// header and its body, plain data) on a new `NETLINK_SOCK_DIAG` socket,
/// returns the first reply in `reply`'s bytes.
pub(crate) fn sock_diag<'a, T>(request: &T, reply: &'a mut [u64]) -> Result<&'a [u8], Errno> {
    let kind = (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC) as usize;
    // SAFETY: socket(2) with constant arguments.
    let nl = OwnedFd::new(unsafe {
        syscall6(libc::SYS_socket, [libc::AF_NETLINK as usize, kind, libc::NETLINK_SOCK_DIAG as usize, 0, 0, 0])
    }? as i32);
    // SAFETY: sockaddr_nl is plain data.
    let mut kernel: libc::sockaddr_nl = unsafe { zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: `request` (plain data, size_of::<T>() bytes) and the address
    // live for the call.
    unsafe {
        syscall6(
            libc::SYS_sendto,
            [
                nl.raw() as usize,
                request as *const T as usize,
                size_of::<T>(),
                0,
                &kernel as *const _ as usize,
                size_of::<libc::sockaddr_nl>(),
            ],
        )
    }?;
    let size = size_of_val(reply);
    // SAFETY: the kernel writes at most the buffer's size.
    let n = unsafe { syscall6(libc::SYS_recvfrom, [nl.raw() as usize, reply.as_mut_ptr() as usize, size, 0, 0, 0]) }?;
    // SAFETY: viewing the u64 buffer as bytes; `n` is at most its size.
    Ok(unsafe { core::slice::from_raw_parts(reply.as_ptr().cast::<u8>(), n.min(size)) })
}

/// The error a sock_diag reply carries (`NLMSG_ERROR`), if it is one.
pub(crate) fn diag_error(bytes: &[u8]) -> Option<Errno> {
    let kind = bytes.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    (kind == Some(libc::NLMSG_ERROR as u16)).then(|| {
        let code = bytes.get(16..20).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        Errno(code.map_or(libc::EPROTO, |e| if e < 0 { -e } else { libc::EPROTO }))
    })
}

/// Finds the `UNIX_DIAG_PEER` attribute in a sock_diag reply.
fn parse_peer(bytes: &[u8], peer_attr: u16, diag_msg: usize) -> Result<u32, Errno> {
    let u32_at = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let u16_at = |at: usize| bytes.get(at..at + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let total = u32_at(0).ok_or(Errno(libc::EPROTO))? as usize;
    if let Some(err) = diag_error(bytes) {
        return Err(err);
    }
    let total = total.min(bytes.len());
    let mut at = 16 + diag_msg; // nlmsghdr + unix_diag_msg
    while at + 4 <= total {
        let len = u16_at(at).ok_or(Errno(libc::EPROTO))? as usize;
        let kind = u16_at(at + 2).ok_or(Errno(libc::EPROTO))?;
        if len < 4 {
            break;
        }
        if kind == peer_attr && len >= 8 {
            return u32_at(at + 4).ok_or(Errno(libc::EPROTO));
        }
        at += (len + 3) & !3;
    }
    Err(Errno(libc::ENOENT))
}

/// pidfd_open(2): a descriptor that polls readable once `pid` has exited.
pub fn pidfd_open(pid: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes a pid and flags.
    unsafe { syscall6(libc::SYS_pidfd_open, [pid as usize, 0, 0, 0, 0, 0]) }.map(|fd| OwnedFd::new(fd as i32))
}

/// A lifeline: a connected pair of stream sockets, close-on-exec. The end
/// given away reads as hung up (readable, EOF) once every copy of the end
/// kept is closed: its holder closed it, exec'd or died.
pub fn lifeline() -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut sv = [0i32; 2];
    let kind = (libc::SOCK_STREAM | libc::SOCK_CLOEXEC) as usize;
    // SAFETY: the kernel writes two fds into `sv`.
    unsafe { syscall6(libc::SYS_socketpair, [libc::AF_UNIX as usize, kind, 0, sv.as_mut_ptr() as usize, 0, 0]) }?;
    Ok((OwnedFd::new(sv[0]), OwnedFd::new(sv[1])))
}

/// True while the process behind `pidfd` runs; for the far end of a
/// [`lifeline`], while the near end is held. (Both read as readable once
/// the other side is gone.)
pub fn alive(pidfd: i32) -> bool {
    let mut fds = [PollFd { fd: pidfd, events: libc::POLLIN, revents: 0 }];
    !matches!(poll(&mut fds, Some(Duration::ZERO)), Ok(1))
}

/// geteuid(2).
pub fn geteuid() -> u32 {
    // SAFETY: geteuid takes no arguments.
    unsafe { syscall6(libc::SYS_geteuid, [0; 6]) }.map_or(u32::MAX, |u| u as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socketpair() -> (OwnedFd, OwnedFd) {
        let mut sv = [0i32; 2];
        // SAFETY: the kernel writes two fds into `sv`.
        unsafe {
            syscall6(
                libc::SYS_socketpair,
                [
                    libc::AF_UNIX as usize,
                    (libc::SOCK_STREAM | libc::SOCK_CLOEXEC) as usize,
                    0,
                    sv.as_mut_ptr() as usize,
                    0,
                    0,
                ],
            )
        }
        .unwrap();
        (OwnedFd::new(sv[0]), OwnedFd::new(sv[1]))
    }

    #[test]
    fn peer_inode_of_a_socketpair() {
        let (a, b) = socketpair();
        let ia = crate::mem::fstat(a.raw()).unwrap().ino as u32;
        let ib = crate::mem::fstat(b.raw()).unwrap().ino as u32;
        assert_eq!(peer_inode(ia), Ok(ib));
        assert_eq!(peer_inode(ib), Ok(ia));
        assert!(is_unix_stream(a.raw()));
    }

    #[test]
    fn queues_and_the_send_probe() {
        let (a, b) = socketpair();
        assert_eq!(queued_out(a.raw()), Ok(0));
        // SAFETY: writing 3 bytes from a literal.
        unsafe { syscall6(libc::SYS_write, [a.raw() as usize, b"abc".as_ptr() as usize, 3, 0, 0, 0]) }.unwrap();
        assert!(queued_out(a.raw()).unwrap() > 0);
        assert_eq!(queued_in(b.raw()), Ok(3));
        assert_eq!(can_send(a.raw()), Ok(()));
        drop(b);
        assert_eq!(can_send(a.raw()), Err(Errno(libc::EPIPE)));
    }

    #[test]
    fn datagrams_carry_credentials_and_fds() {
        let server = dgram_socket().unwrap();
        let name = format!("ipc-offload-test-{}", std::process::id());
        let addr = AbstractAddr::new(name.as_bytes()).unwrap();
        bind(server.raw(), &addr).unwrap();
        let other = dgram_socket().unwrap();
        assert_eq!(bind(other.raw(), &addr), Err(Errno(libc::EADDRINUSE)));
        let client = dgram_socket().unwrap();
        autobind(client.raw()).unwrap();
        let (pass, _keep) = socketpair();
        let (keep, give) = lifeline().unwrap();
        send_dgram(client.raw(), &addr, b"hello", &[pass.raw(), give.raw()]).unwrap();
        let mut buf = [0u8; 64];
        let d = recv_dgram(server.raw(), &mut buf).unwrap();
        assert_eq!(&buf[..d.len], b"hello");
        assert_eq!(d.creds, Some(Creds { pid: std::process::id() as i32, uid: geteuid() }));
        let [Some(got), Some(line)] = d.fds else { panic!("two fds") };
        assert!(is_unix_stream(got.raw()));
        // The lifeline holds while the kept end is open, anywhere.
        drop(give);
        assert!(alive(line.raw()));
        drop(keep);
        assert!(!alive(line.raw()));
        assert!(d.from.is_abstract());
        // Reply to the autobound sender.
        send_dgram(server.raw(), &d.from, b"back", &[]).unwrap();
        let d = recv_dgram(client.raw(), &mut buf).unwrap();
        assert_eq!(&buf[..d.len], b"back");
        assert_eq!(recv_dgram(client.raw(), &mut buf).unwrap_err(), Errno::AGAIN);
        // Nobody bound: refused.
        let nobody = AbstractAddr::new(b"ipc-offload-test-nobody-here").unwrap();
        assert_eq!(send_dgram(client.raw(), &nobody, b"x", &[]), Err(Errno(libc::ECONNREFUSED)));
    }

    #[test]
    fn pidfd_of_this_process_is_alive() {
        let fd = pidfd_open(std::process::id() as i32).unwrap();
        assert!(alive(fd.raw()));
        // A child that has exited (a zombie until reaped) reads as gone.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let fd = pidfd_open(child.id() as i32).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while alive(fd.raw()) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!alive(fd.raw()));
        child.wait().unwrap();
    }

    #[test]
    fn bound_sees_a_name_go_away() {
        let name = format!("ipc-offload-test-bound-{}", std::process::id());
        let addr = AbstractAddr::new(name.as_bytes()).unwrap();
        let prober = dgram_socket().unwrap();
        assert!(!bound(prober.raw(), &addr));
        let holder = dgram_socket().unwrap();
        bind(holder.raw(), &addr).unwrap();
        assert!(bound(prober.raw(), &addr));
        // The probe is an empty datagram.
        let mut buf = [0u8; 8];
        assert_eq!(recv_dgram(holder.raw(), &mut buf).unwrap().len, 0);
        drop(holder);
        assert!(!bound(prober.raw(), &addr));
    }

    #[test]
    fn sock_diag_reply_parsing_is_bounded() {
        assert_eq!(parse_peer(&[], 2, 16), Err(Errno(libc::EPROTO)));
        let mut reply = vec![0u8; 48];
        reply[0..4].copy_from_slice(&48u32.to_ne_bytes());
        // one attribute at 32: len 8, type 2, value 77
        reply[32..34].copy_from_slice(&8u16.to_ne_bytes());
        reply[34..36].copy_from_slice(&2u16.to_ne_bytes());
        reply[36..40].copy_from_slice(&77u32.to_ne_bytes());
        assert_eq!(parse_peer(&reply, 2, 16), Ok(77));
        // An attribute claiming more than the buffer holds stops the walk.
        reply[32..34].copy_from_slice(&200u16.to_ne_bytes());
        reply[34..36].copy_from_slice(&9u16.to_ne_bytes());
        assert_eq!(parse_peer(&reply, 2, 16), Err(Errno(libc::ENOENT)));
    }
}
