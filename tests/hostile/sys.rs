//! The system calls a hostile peer needs, written from docs/ipc-protocol.md
//! and not from the library's code: sockets and pipes, memfds and seals, a
//! shared mapping of 32- and 64-bit words, abstract datagram sockets with
//! SCM_RIGHTS and SCM_CREDENTIALS, futex wakes.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

/// A connected pair of Unix stream sockets (close-on-exec).
pub fn socketpair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two fds into the array.
    check(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })
        .unwrap();
    // SAFETY: two fresh fds, owned from here on.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// A pipe (read end, write end), close-on-exec.
pub fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }).unwrap();
    // SAFETY: two fresh fds, owned from here on.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Bytes written into `fd` (a stream socket's or a pipe's write end) that
/// its reader has not read yet: `SIOCOUTQ` for a Unix socket, `FIONREAD`
/// for a pipe (unix(7), pipe(7)).
pub fn unread(fd: RawFd, pipe: bool) -> usize {
    let mut n: libc::c_int = 0;
    let request = if pipe { libc::FIONREAD } else { libc::TIOCOUTQ };
    // SAFETY: the ioctl writes one int into this frame.
    check(unsafe { libc::ioctl(fd, request, &mut n) }).unwrap();
    n as usize
}

/// `st_dev` and `st_ino` of `fd`.
pub fn identity(fd: &OwnedFd) -> (u64, u64) {
    // SAFETY: plain data, zeroes valid; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid fd and a stat buffer of this frame.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }).unwrap();
    (st.st_dev, st.st_ino)
}

/// The seals a ring gets (docs/ipc-protocol.md, "The ring").
pub const RING_SEALS: libc::c_int = libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;

/// A memfd of `size` bytes, sealed against resizing when `sealed`.
pub fn memfd(size: u64, sealed: bool) -> OwnedFd {
    memfd_sealed(size, if sealed { RING_SEALS } else { 0 })
}

/// A memfd of `size` bytes with `seals` added.
pub fn memfd_sealed(size: u64, seals: libc::c_int) -> OwnedFd {
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: a literal name; the result is checked.
    let fd = check(unsafe { libc::memfd_create(c"hostile-ring".as_ptr(), flags) }).unwrap();
    // SAFETY: a fresh fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: a valid fd.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) }).unwrap();
    if seals != 0 {
        // SAFETY: a valid memfd made with MFD_ALLOW_SEALING.
        check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) }).unwrap();
    }
    fd
}

/// The seals of a memfd.
pub fn seals(fd: &OwnedFd) -> libc::c_int {
    // SAFETY: F_GET_SEALS on a valid fd.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) }).unwrap()
}

/// The size of a file.
pub fn size(fd: &OwnedFd) -> u64 {
    // SAFETY: plain data, zeroes valid; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid fd and a stat buffer of this frame.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }).unwrap();
    st.st_size as u64
}

/// Gives a file to another owner (only root may); false if refused.
pub fn chown(fd: &OwnedFd, uid: u32) -> bool {
    // SAFETY: fchown on a valid fd.
    unsafe { libc::fchown(fd.as_raw_fd(), uid, uid) == 0 }
}

/// Whether the peer of a connected stream socket has closed its end.
pub fn hung_up(fd: &OwnedFd) -> bool {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN | libc::POLLRDHUP, revents: 0 };
    // SAFETY: one pollfd of this frame.
    unsafe { libc::poll(&mut pfd, 1, 0) > 0 && pfd.revents & (libc::POLLHUP | libc::POLLRDHUP) != 0 }
}

/// How many fds process `pid` has open (/proc/PID/fd).
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
}

/// A shared read-write mapping of a file.
#[derive(Debug)]
pub struct Map {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; every access below is atomic
// or a copy the caller orders with atomics.
unsafe impl Send for Map {}
// SAFETY: as above.
unsafe impl Sync for Map {}

impl Map {
    /// Maps `len` bytes of `fd`.
    pub fn new(fd: &OwnedFd, len: usize) -> Map {
        // SAFETY: a fresh shared mapping of a valid fd; checked below.
        let ptr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap: {}", io::Error::last_os_error());
        Map { ptr: ptr.cast(), len }
    }

    /// The aligned 32-bit word at `off`.
    pub fn u32_at(&self, off: usize) -> &AtomicU32 {
        assert!(off % 4 == 0 && off + 4 <= self.len);
        // SAFETY: inside the mapping, aligned (the mapping is page-aligned).
        unsafe { &*self.ptr.add(off).cast::<AtomicU32>() }
    }

    /// The aligned 64-bit word at `off`.
    pub fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= self.len);
        // SAFETY: inside the mapping, aligned.
        unsafe { &*self.ptr.add(off).cast::<AtomicU64>() }
    }

    /// Copies `n` bytes at `off` out.
    pub fn read(&self, off: usize, n: usize) -> Vec<u8> {
        assert!(off + n <= self.len);
        let mut out = vec![0u8; n];
        // SAFETY: inside the mapping; the peer's concurrent writes can only
        // make the bytes garbage.
        unsafe { core::ptr::copy_nonoverlapping(self.ptr.add(off), out.as_mut_ptr(), n) };
        out
    }

    /// Copies `bytes` in at `off`.
    pub fn write(&self, off: usize, bytes: &[u8]) {
        assert!(off + bytes.len() <= self.len);
        // SAFETY: inside the mapping.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(off), bytes.len()) };
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Wakes every process sleeping in a (shared) futex on `word`.
pub fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a valid word; nothing is written.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX, 0, 0, 0) };
}

/// A nonblocking datagram socket with SO_PASSCRED, bound to the abstract
/// `name`, or autobound when `name` is None.
pub fn dgram(name: Option<&[u8]>) -> io::Result<OwnedFd> {
    let kind = libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    // SAFETY: plain socket(2).
    let fd = check(unsafe { libc::socket(libc::AF_UNIX, kind, 0) })?;
    // SAFETY: a fresh fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: an int option of this frame.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    let (addr, len) = abstract_addr(name.unwrap_or(b""));
    // An address of the family alone autobinds.
    let len = if name.is_none() { size_of::<libc::sa_family_t>() as libc::socklen_t } else { len };
    // SAFETY: an address of this frame and its length.
    check(unsafe { libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len) })?;
    Ok(fd)
}

fn abstract_addr(name: &[u8]) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: plain data, zeroes valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    assert!(name.len() < addr.sun_path.len());
    for (i, b) in name.iter().enumerate() {
        addr.sun_path[i + 1] = *b as libc::c_char;
    }
    (addr, (size_of::<libc::sa_family_t>() + 1 + name.len()) as libc::socklen_t)
}

/// Sends `data` to the abstract `name` with `fds` attached.
pub fn send_to(fd: &OwnedFd, name: &[u8], data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    send_as(fd, name, data, fds, None)
}

/// [`send_to`] with explicit SCM_CREDENTIALS `(pid, uid)`: only root may
/// name another uid than its own.
pub fn send_as(fd: &OwnedFd, name: &[u8], data: &[u8], fds: &[RawFd], creds: Option<(i32, u32)>) -> io::Result<()> {
    let (mut addr, addr_len) = abstract_addr(name);
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    let mut control = [0u64; 32];
    // SAFETY: plain data, zeroes valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_un).cast();
    msg.msg_namelen = addr_len;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    let rights = size_of_val(fds) as u32;
    let ucred = size_of::<libc::ucred>() as u32;
    // SAFETY: CMSG_SPACE is arithmetic.
    let space = unsafe {
        (if fds.is_empty() { 0 } else { libc::CMSG_SPACE(rights) })
            + (if creds.is_some() { libc::CMSG_SPACE(ucred) } else { 0 })
    } as usize;
    if space > 0 {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        assert!(msg.msg_controllen <= size_of_val(&control));
        // SAFETY: the control buffer holds `space` bytes: room for both
        // messages, walked with the CMSG macros.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            if !fds.is_empty() {
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(rights) as usize;
                core::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast::<RawFd>(), fds.len());
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
            if let Some((pid, uid)) = creds {
                assert!(!cmsg.is_null());
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_CREDENTIALS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(ucred) as usize;
                let cred = libc::ucred { pid, uid, gid: uid };
                core::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::ucred>(), cred);
            }
        }
    }
    // SAFETY: every pointer in `msg` refers to this frame or to `data`.
    let r = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// A datagram received: its bytes, the sender's abstract name, its pid (from
/// SCM_CREDENTIALS) and the fds it carried.
#[derive(Debug)]
pub struct Dgram {
    pub data: Vec<u8>,
    pub from: Vec<u8>,
    pub pid: Option<i32>,
    pub fds: Vec<OwnedFd>,
}

/// The next datagram on `fd`, waiting up to `patience`.
pub fn recv(fd: &OwnedFd, patience: Duration) -> Option<Dgram> {
    let deadline = Instant::now() + patience;
    loop {
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let left = deadline.saturating_duration_since(Instant::now()).as_millis() as i32;
        // SAFETY: one pollfd of this frame.
        let n = unsafe { libc::poll(&mut pfd, 1, left) };
        if n == 0 {
            return None;
        }
        if n < 0 {
            continue; // EINTR
        }
        let mut data = vec![0u8; 256];
        let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
        let mut control = [0u64; 64];
        // SAFETY: plain data, zeroes valid.
        let mut from: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_un).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_un>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control);
        // SAFETY: every pointer in `msg` refers to this frame or to `data`.
        let r = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT) };
        if r < 0 {
            continue;
        }
        data.truncate(r as usize);
        let mut out = Dgram { data, from: Vec::new(), pid: None, fds: Vec::new() };
        let name_len = (msg.msg_namelen as usize).saturating_sub(size_of::<libc::sa_family_t>() + 1);
        out.from = from.sun_path[1..1 + name_len].iter().map(|c| *c as u8).collect();
        // SAFETY: the CMSG macros walk the control buffer the kernel filled.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let data = libc::CMSG_DATA(cmsg);
                let len = (*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize;
                match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                    (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) => {
                        out.pid = Some(core::ptr::read_unaligned(data.cast::<libc::ucred>()).pid);
                    }
                    (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                        for i in 0..len / size_of::<RawFd>() {
                            out.fds.push(OwnedFd::from_raw_fd(core::ptr::read_unaligned(data.cast::<RawFd>().add(i))));
                        }
                    }
                    _ => {}
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        return Some(out);
    }
}

/// Whether `fd` has bytes to read within `patience`.
pub fn readable(fd: &OwnedFd, patience: Duration) -> bool {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one pollfd of this frame.
    unsafe { libc::poll(&mut pfd, 1, patience.as_millis() as i32) > 0 }
}

/// Makes the child's fd `at` a copy of `fd` (not close-on-exec), in the
/// child between fork and exec.
pub fn give_fd(cmd: &mut std::process::Command, fd: RawFd, at: RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: dup2 is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, at) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
