//! Pipes and FIFOs: the few questions the fast path asks of one end.
//!
//! Both ends of a pipe see the same buffer: `FIONREAD` on either end counts
//! the bytes written and not yet read (pipe(7), "I/O on pipes and FIFOs";
//! `pipe_ioctl` in fs/pipe.c answers it for both ends).

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::mem::OwnedFd;

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
}
