//! The application's read and write calls as the hooks received them, and
//! the kernel path: replaying a call as it was, or reading or writing a part
//! of its buffers through the real libc functions.

use core::ffi::c_int;

use ipc_offload_sys::real::io::REAL_IO;

use super::endpoint::Family;

/// Most buffers of a readv/writev/recvmsg/sendmsg the fast path handles
/// (pieces of them are re-described in an array of this size on the stack);
/// calls with more take the kernel path.
pub const MAX_IOV: usize = 64;

/// Which read-family function the application called.
#[derive(Clone, Copy, Debug)]
pub enum ReadKind {
    /// read(fd, buf, n).
    Read,
    /// readv(fd, iov, count).
    Readv,
    /// recv(fd, buf, n, flags).
    Recv,
    /// recvfrom(fd, buf, n, flags, addr, addrlen).
    RecvFrom(*mut libc::sockaddr, *mut libc::socklen_t),
    /// recvmsg(fd, msg, flags).
    RecvMsg(*mut libc::msghdr),
}

/// Which write-family function the application called.
#[derive(Clone, Copy, Debug)]
pub enum WriteKind {
    /// write(fd, buf, n).
    Write,
    /// writev(fd, iov, count).
    Writev,
    /// send(fd, buf, n, flags).
    Send,
    /// sendto(fd, buf, n, flags, addr, addrlen).
    SendTo(*const libc::sockaddr, libc::socklen_t),
    /// sendmsg(fd, msg, flags).
    SendMsg(*const libc::msghdr),
}

/// A read-family call.
#[derive(Debug)]
pub struct ReadCall<'a> {
    /// The fd.
    pub fd: c_int,
    /// The caller's buffers.
    pub iov: &'a [libc::iovec],
    /// recv flags (0 for read, readv).
    pub flags: c_int,
    /// The function called.
    pub kind: ReadKind,
}

/// A write-family call.
#[derive(Debug)]
pub struct WriteCall<'a> {
    /// The fd.
    pub fd: c_int,
    /// The caller's buffers.
    pub iov: &'a [libc::iovec],
    /// send flags (0 for write, writev).
    pub flags: c_int,
    /// The function called.
    pub kind: WriteKind,
}

/// Sum of the lengths of `iov`.
pub fn total(iov: &[libc::iovec]) -> u64 {
    iov.iter().map(|s| s.iov_len as u64).sum()
}

impl ReadCall<'_> {
    /// Bytes the buffers hold.
    pub fn capacity(&self) -> u64 {
        total(self.iov)
    }

    /// True for read and readv, the calls a pipe takes.
    pub fn is_plain(&self) -> bool {
        matches!(self.kind, ReadKind::Read | ReadKind::Readv)
    }

    /// Where bytes `[offset, offset + len)` of the buffers are, if one
    /// buffer holds them all.
    pub fn contiguous(&self, offset: u64, len: u64) -> Option<*mut u8> {
        let mut start = 0u64;
        for seg in self.iov {
            let end = start + seg.iov_len as u64;
            if offset < end {
                // SAFETY: offset - start < iov_len: inside the segment.
                return (offset + len <= end)
                    .then(|| unsafe { seg.iov_base.cast::<u8>().add((offset - start) as usize) });
            }
            start = end;
        }
        None
    }

    /// True when the application asked for ancillary data (a control buffer).
    pub fn wants_control(&self) -> bool {
        // SAFETY: the hook passed the application's msghdr, valid for the call.
        matches!(self.kind, ReadKind::RecvMsg(msg) if !msg.is_null() && unsafe { (*msg).msg_controllen } > 0)
    }

    /// The call exactly as the application made it: the kernel path.
    ///
    /// # Safety
    /// The application's arguments, valid as for the libc function.
    pub unsafe fn replay(&self) -> isize {
        let (base, len) = self.iov.first().map_or((core::ptr::null_mut(), 0), |s| (s.iov_base, s.iov_len));
        // SAFETY: forwarded arguments of the original call.
        unsafe {
            match self.kind {
                ReadKind::Read => (REAL_IO.read.get())(self.fd, base, len),
                ReadKind::Readv => (REAL_IO.readv.get())(self.fd, self.iov.as_ptr(), self.iov.len() as c_int),
                ReadKind::Recv => (REAL_IO.recv.get())(self.fd, base, len, self.flags),
                ReadKind::RecvFrom(addr, addrlen) => {
                    (REAL_IO.recvfrom.get())(self.fd, base, len, self.flags, addr, addrlen)
                }
                ReadKind::RecvMsg(msg) => (REAL_IO.recvmsg.get())(self.fd, msg, self.flags),
            }
        }
    }

    /// The call through the kernel, for at most `max` bytes (a read may
    /// always return fewer than asked): read and readv as readv, recv as
    /// recvmsg with its flags. Calls that fill an address or control data,
    /// and MSG_WAITALL, go as they were.
    ///
    /// # Safety
    /// The application's arguments, valid as for the libc function.
    pub unsafe fn kernel_capped(&self, max: u64) -> isize {
        let mut parts = [libc::iovec { iov_base: core::ptr::null_mut(), iov_len: 0 }; MAX_IOV];
        let n = tail(self.iov, 0, &mut parts);
        truncate(&mut parts[..n], max);
        // SAFETY: `parts` describes the caller's buffers (a prefix of them),
        // or the call is replayed as it was.
        unsafe {
            match self.kind {
                ReadKind::Read | ReadKind::Readv => (REAL_IO.readv.get())(self.fd, parts.as_ptr(), n as c_int),
                ReadKind::Recv if self.flags & libc::MSG_WAITALL == 0 => {
                    // SAFETY: msghdr is plain data; zeroes is valid.
                    let mut msg: libc::msghdr = core::mem::zeroed();
                    msg.msg_iov = parts.as_mut_ptr();
                    msg.msg_iovlen = n;
                    (REAL_IO.recvmsg.get())(self.fd, &mut msg, self.flags)
                }
                _ => self.replay(),
            }
        }
    }

    /// Reads at most `most` bytes through the kernel into the buffers from
    /// byte `skip` on, with `flags` (recvmsg with a re-described buffer
    /// list).
    ///
    /// # Safety
    /// The buffers valid for writing, as for the original call.
    pub unsafe fn kernel_from(&self, skip: u64, most: u64, flags: c_int) -> isize {
        let mut parts = [libc::iovec { iov_base: core::ptr::null_mut(), iov_len: 0 }; MAX_IOV];
        let n = tail(self.iov, skip, &mut parts);
        truncate(&mut parts[..n], most);
        // SAFETY: msghdr is plain data; zeroes is valid.
        let mut msg: libc::msghdr = unsafe { core::mem::zeroed() };
        msg.msg_iov = parts.as_mut_ptr();
        msg.msg_iovlen = n;
        // SAFETY: `parts` describes the caller's buffers, valid per contract.
        unsafe { (REAL_IO.recvmsg.get())(self.fd, &mut msg, flags) }
    }
}

impl WriteCall<'_> {
    /// Bytes the buffers hold.
    pub fn length(&self) -> u64 {
        total(self.iov)
    }

    /// True for write and writev, the calls a pipe takes.
    pub fn is_plain(&self) -> bool {
        matches!(self.kind, WriteKind::Write | WriteKind::Writev)
    }

    /// True when the application names a destination (sendto's `addr`,
    /// sendmsg's `msg_name`): only the kernel may answer it (a connected
    /// Unix stream socket fails it with `EISCONN`; TCP ignores it).
    pub fn has_address(&self) -> bool {
        match self.kind {
            WriteKind::SendTo(addr, len) => !addr.is_null() && len > 0,
            WriteKind::SendMsg(msg) if !msg.is_null() => {
                // SAFETY: the hook passed the application's msghdr, valid for the call.
                let (name, len) = unsafe { ((*msg).msg_name, (*msg).msg_namelen) };
                !name.is_null() && len > 0
            }
            _ => false,
        }
    }

    /// True when the application sends ancillary data.
    pub fn has_control(&self) -> bool {
        // SAFETY: the hook passed the application's msghdr, valid for the call.
        matches!(self.kind, WriteKind::SendMsg(msg) if !msg.is_null() && unsafe { (*msg).msg_controllen } > 0)
    }

    /// The call exactly as the application made it: the kernel path.
    ///
    /// # Safety
    /// The application's arguments, valid as for the libc function.
    pub unsafe fn replay(&self) -> isize {
        let (base, len) = self.iov.first().map_or((core::ptr::null_mut(), 0), |s| (s.iov_base, s.iov_len));
        // SAFETY: forwarded arguments of the original call.
        unsafe {
            match self.kind {
                WriteKind::Write => (REAL_IO.write.get())(self.fd, base, len),
                WriteKind::Writev => (REAL_IO.writev.get())(self.fd, self.iov.as_ptr(), self.iov.len() as c_int),
                WriteKind::Send => (REAL_IO.send.get())(self.fd, base, len, self.flags),
                WriteKind::SendTo(addr, addrlen) => {
                    (REAL_IO.sendto.get())(self.fd, base, len, self.flags, addr, addrlen)
                }
                WriteKind::SendMsg(msg) => (REAL_IO.sendmsg.get())(self.fd, msg, self.flags),
            }
        }
    }

    /// Writes bytes `[skip, skip + max)` of the buffers through the kernel.
    /// On a socket, with the call's flags (sendmsg with a re-described
    /// buffer list: `write` on a socket is `sendmsg` with no flags, SIGPIPE
    /// included); `quiet` adds `MSG_NOSIGNAL`, for pieces after the first
    /// bytes of the call went out, where the kernel's own write would return
    /// its count rather than raise SIGPIPE. On a pipe, writev: a pipe's
    /// kernel raises SIGPIPE even for a write that moved bytes before its
    /// last reader left, so a piece does what the whole write would.
    ///
    /// # Safety
    /// The buffers valid for reading, as for the original call.
    pub unsafe fn kernel_piece(&self, skip: u64, max: u64, family: Family, quiet: bool) -> isize {
        let mut parts = [libc::iovec { iov_base: core::ptr::null_mut(), iov_len: 0 }; MAX_IOV];
        let n = tail(self.iov, skip, &mut parts);
        truncate(&mut parts[..n], max);
        if family == Family::Pipe {
            // SAFETY: `parts` describes the caller's buffers, valid per contract.
            return unsafe { (REAL_IO.writev.get())(self.fd, parts.as_ptr(), n as c_int) };
        }
        // SAFETY: msghdr is plain data; zeroes is valid.
        let mut msg: libc::msghdr = unsafe { core::mem::zeroed() };
        msg.msg_iov = parts.as_mut_ptr();
        msg.msg_iovlen = n;
        let flags = if quiet { self.flags | libc::MSG_NOSIGNAL } else { self.flags };
        // SAFETY: `parts` describes the caller's buffers, valid per contract.
        unsafe { (REAL_IO.sendmsg.get())(self.fd, &msg, flags) }
    }
}

/// Describes `iov` from byte `skip` on into `out`; returns how many entries.
fn tail(iov: &[libc::iovec], mut skip: u64, out: &mut [libc::iovec; MAX_IOV]) -> usize {
    let mut n = 0;
    for seg in iov {
        let len = seg.iov_len as u64;
        if skip >= len {
            skip -= len;
            continue;
        }
        if n == out.len() {
            break;
        }
        // SAFETY: skip < len: the pointer stays inside the segment.
        let base = unsafe { seg.iov_base.cast::<u8>().add(skip as usize) };
        out[n] = libc::iovec { iov_base: base.cast(), iov_len: (len - skip) as usize };
        skip = 0;
        n += 1;
    }
    n
}

/// Shortens `parts` to at most `max` bytes in all.
fn truncate(parts: &mut [libc::iovec], mut max: u64) {
    for p in parts {
        let len = (p.iov_len as u64).min(max);
        p.iov_len = len as usize;
        max -= len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iov(buf: &mut [u8]) -> libc::iovec {
        libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() }
    }

    #[test]
    fn tails_and_truncation() {
        let mut a = [0u8; 4];
        let mut b = [0u8; 6];
        let segs = [iov(&mut a), iov(&mut b)];
        let mut out = [libc::iovec { iov_base: core::ptr::null_mut(), iov_len: 0 }; MAX_IOV];
        assert_eq!(tail(&segs, 0, &mut out), 2);
        assert_eq!(tail(&segs, 5, &mut out), 1);
        assert_eq!(out[0].iov_len, 5);
        assert_eq!(out[0].iov_base as usize, b.as_ptr() as usize + 1);
        assert_eq!(tail(&segs, 10, &mut out), 0);
        let call = ReadCall { fd: -1, iov: &segs, flags: 0, kind: ReadKind::Readv };
        assert_eq!(call.contiguous(1, 3), Some(a.as_mut_ptr().wrapping_add(1)));
        assert_eq!(call.contiguous(4, 6), Some(b.as_mut_ptr()));
        assert_eq!(call.contiguous(3, 2), None, "two buffers");
        assert_eq!(call.contiguous(10, 1), None, "past the end");
        let n = tail(&segs, 2, &mut out);
        truncate(&mut out[..n], 3);
        assert_eq!((out[0].iov_len, out[1].iov_len), (2, 1));
        assert_eq!(total(&segs), 10);
    }
}
