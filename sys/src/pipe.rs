//! Pipes and FIFOs: the few questions the fast path asks of one end.
//!
//! Both ends of a pipe see the same buffer: `FIONREAD` on either end counts
//! the bytes written and not yet read (pipe(7), "I/O on pipes and FIFOs";
//! `pipe_ioctl` in fs/pipe.c answers it for both ends).

use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::Relaxed;

use super::mem::{self, OwnedFd};
use super::{Errno, syscall6};

/// How an open pipe end may be used (fcntl(2) `F_GETFL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Opened for reading (`O_RDONLY` or `O_RDWR`).
    pub read: bool,
    /// Opened for writing (`O_WRONLY` or `O_RDWR`).
    pub write: bool,
    /// No `O_NONBLOCK`.
    pub blocking: bool,
}

/// fcntl(2) `F_GETFL`, decoded.
pub fn access(fd: i32) -> Result<Access, Errno> {
    // SAFETY: F_GETFL takes no pointer.
    let flags = unsafe { syscall6(libc::SYS_fcntl, [fd as usize, libc::F_GETFL as usize, 0, 0, 0, 0]) }? as i32;
    let mode = flags & libc::O_ACCMODE;
    Ok(Access {
        read: mode == libc::O_RDONLY || mode == libc::O_RDWR,
        write: mode == libc::O_WRONLY || mode == libc::O_RDWR,
        blocking: flags & libc::O_NONBLOCK == 0,
    })
}

/// Bytes in the pipe, written and not yet read (ioctl(2) `FIONREAD`,
/// pipe(7)), whichever end `fd` is.
pub fn queued(fd: i32) -> Result<i32, Errno> {
    let mut value: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into this frame.
    unsafe {
        syscall6(libc::SYS_ioctl, [fd as usize, libc::FIONREAD as usize, &mut value as *mut _ as usize, 0, 0, 0])
    }?;
    Ok(value)
}

/// True when nobody holds the read end of the pipe whose write end is
/// `fd`: poll(2) reports `POLLERR` for a write end without readers
/// (`pipe_poll` in fs/pipe.c), where a write would fail with `EPIPE`.
pub fn no_readers(fd: i32) -> bool {
    let mut p = libc::pollfd { fd, events: 0, revents: 0 };
    // SAFETY: one live pollfd; a zero timeout never blocks.
    let r = unsafe { syscall6(libc::SYS_poll, [&mut p as *mut _ as usize, 1, 0, 0, 0, 0]) };
    r.is_ok_and(|n| n > 0) && p.revents & libc::POLLERR != 0
}

/// The device of pipefs, where pipe(2) makes its pipes (0 until learned;
/// `u64::MAX` if it cannot be).
static PIPEFS_DEV: AtomicU64 = AtomicU64::new(0);

/// A fresh pipe of this process's own: (read end, write end), close-on-exec
/// and nonblocking.
fn scratch() -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut fds = [0i32; 2];
    let flags = (libc::O_CLOEXEC | libc::O_NONBLOCK) as usize;
    // SAFETY: pipe2 writes two fds into this array.
    unsafe { syscall6(libc::SYS_pipe2, [fds.as_mut_ptr() as usize, flags, 0, 0, 0, 0]) }?;
    Ok((OwnedFd::new(fds[0]), OwnedFd::new(fds[1])))
}

/// True when a file of device `dev` with `S_IFIFO` is a FIFO in a file
/// system rather than a pipe made by pipe(2) (learned once, from a pipe of
/// our own; when that fails, every one counts as a FIFO).
pub fn is_named(dev: u64) -> bool {
    let mut known = PIPEFS_DEV.load(Relaxed);
    if known == 0 {
        known = scratch().and_then(|(r, _w)| mem::fstat(r.raw())).map_or(u64::MAX, |st| st.dev);
        PIPEFS_DEV.store(known, Relaxed);
    }
    known == u64::MAX || dev != known
}

/// True when the pipe whose read end is `fd` is empty and nobody holds its
/// write end: a read would return EOF now. For a FIFO opened with
/// `O_NONBLOCK` while it had no writer, poll(2) reports no `POLLHUP` until a
/// writer has opened it (fs/pipe.c, `fifo_open`), yet its reads return EOF
/// meanwhile: a reader about to wait for `POLLIN` or `POLLHUP` asks this
/// first. tee(2) of one byte into a pipe of our own with
/// `SPLICE_F_NONBLOCK` consumes nothing: 0 at EOF, `EAGAIN` while writers
/// exist and the pipe is empty (a byte, if one arrived meanwhile, lands in
/// our pipe, closed at once).
pub fn at_eof(fd: i32) -> bool {
    let Ok((_r, w)) = scratch() else { return false };
    // SAFETY: tee takes no pointer.
    let r =
        unsafe { syscall6(libc::SYS_tee, [fd as usize, w.raw() as usize, 1, libc::SPLICE_F_NONBLOCK as usize, 0, 0]) };
    r == Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 writes two fds into this array.
        unsafe { syscall6(libc::SYS_pipe2, [fds.as_mut_ptr() as usize, libc::O_CLOEXEC as usize, 0, 0, 0, 0]) }
            .unwrap();
        (OwnedFd::new(fds[0]), OwnedFd::new(fds[1]))
    }

    #[test]
    fn both_ends_count_the_same_bytes() {
        let (r, w) = pipe();
        assert_eq!((queued(r.raw()), queued(w.raw())), (Ok(0), Ok(0)));
        // SAFETY: 5 bytes of a static string.
        let n = unsafe { syscall6(libc::SYS_write, [w.raw() as usize, b"hello".as_ptr() as usize, 5, 0, 0, 0]) };
        assert_eq!(n, Ok(5));
        assert_eq!((queued(r.raw()), queued(w.raw())), (Ok(5), Ok(5)));
    }

    #[test]
    fn access_modes_and_readers() {
        let (r, w) = pipe();
        assert_eq!(access(r.raw()), Ok(Access { read: true, write: false, blocking: true }));
        assert_eq!(access(w.raw()).map(|a| (a.read, a.write)), Ok((false, true)));
        assert!(!no_readers(w.raw()));
        drop(r);
        assert!(no_readers(w.raw()));
        assert_eq!(access(-1), Err(Errno(libc::EBADF)));
    }

    #[test]
    fn pipes_are_not_named_and_eof_is_seen_without_consuming() {
        let (r, w) = pipe();
        let dev = mem::fstat(r.raw()).unwrap().dev;
        assert!(!is_named(dev));
        assert!(is_named(dev ^ 1));
        assert!(!at_eof(r.raw()), "a writer holds the pipe");
        // SAFETY: 3 bytes of a static string.
        unsafe { syscall6(libc::SYS_write, [w.raw() as usize, b"abc".as_ptr() as usize, 3, 0, 0, 0]) }.unwrap();
        drop(w);
        assert!(!at_eof(r.raw()), "bytes are left");
        assert_eq!(queued(r.raw()), Ok(3), "the probe consumed nothing");
        let mut buf = [0u8; 8];
        // SAFETY: reads into this frame's buffer.
        let n = unsafe { syscall6(libc::SYS_read, [r.raw() as usize, buf.as_mut_ptr() as usize, 8, 0, 0, 0]) };
        assert_eq!(n, Ok(3));
        assert!(at_eof(r.raw()));
    }
}
