//! The read and write families, and the calls that close fds.
//!
//! Below the IPC threshold (`REAL_IO.io_min`: usize::MAX while no IPC class
//! is on) a write hook is two compares and a jump to libc (the second, of
//! a flag set once the process left a write-behind offer open, adds the
//! fd's write route from then on: a write of every size must end such an
//! offer first), a read hook three (the fd's route word says whether an
//! offer can be open for it: then reads of every size take its bytes first;
//! and buffers of 16 KiB or more go through a `*_counted` function, whose
//! read, if it filled them, counts toward the fd's opt-in:
//! `ipc::small_read_filled`; callgrind: 3 instructions more per 1 KiB read
//! than before it, 53 per filled 16 KiB read of a file). Above it,
//! the call goes to `ipc_offload_runtime::ipc`, which serves Unix stream
//! sockets whose peer runs the library and replays everything else as it
//! was. The vector forms add up their lengths first (a short loop).

use core::ffi::{c_int, c_void};
use core::sync::atomic::Ordering::Relaxed;

use ipc_offload_runtime::ipc::behind;
use ipc_offload_runtime::ipc::call::{ReadCall, ReadKind, WriteCall, WriteKind, total};
use ipc_offload_runtime::ipc::route::{routed, write_routed};
use ipc_offload_runtime::ipc::{self, closing, tracked};
use ipc_offload_sys::real::io::REAL_IO;

fn below(n: u64) -> bool {
    n < REAL_IO.io_min.load(Relaxed) as u64
}

/// A write that needs nothing of the library: below the threshold, on an
/// fd whose last large write left no offer open (looked at only once
/// write-behind was used in the process).
#[inline(always)]
fn small_write(fd: c_int, n: u64) -> bool {
    below(n) && !(behind::USED.load(Relaxed) && write_routed(fd))
}

/// A read that needs nothing of the library: below the threshold, on an fd
/// for which no offer can be open.
#[inline(always)]
fn small_read(fd: c_int, n: u64) -> bool {
    below(n) && !routed(fd)
}

/// Whether a small read of `n` bytes with `flags` is one whose result the
/// hook looks at: buffers of at least `REAL_IO.stream_min`, not a peek. Its
/// call goes through a `*_counted` function, out of line, so that every
/// other small read stays a jump to libc (made one function with it, the
/// hook kept a frame for both: 8 to 11 instructions more per read).
#[inline(always)]
fn counts(n: u64, flags: c_int) -> bool {
    n >= REAL_IO.stream_min.load(Relaxed) as u64 && flags & libc::MSG_PEEK == 0
}

/// After a counted small read returned `r` for buffers of `n` bytes: one
/// that filled them counts toward its fd's opt-in as a reader that streams
/// with small buffers (`ipc::small_read_filled`). `r` is passed back.
#[inline(always)]
fn after_counted(fd: c_int, n: u64, r: isize) -> isize {
    if r as u64 == n {
        ipc::small_read_filled(fd, n);
    }
    r
}

/// The caller's iovec array as a slice (empty for a null or negative count).
///
/// # Safety
/// `iov` valid for `count` entries when `count > 0`.
unsafe fn iovecs<'a>(iov: *const libc::iovec, count: usize) -> &'a [libc::iovec] {
    if iov.is_null() || count == 0 {
        &[]
    } else {
        // SAFETY: the caller's contract.
        unsafe { core::slice::from_raw_parts(iov, count) }
    }
}

/// read(2).
///
/// # Safety
/// As read(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, n: usize) -> isize {
    if small_read(fd, n as u64) {
        if counts(n as u64, 0) {
            // SAFETY: as read(2).
            return unsafe { read_counted(fd, buf, n) };
        }
        // SAFETY: the caller's arguments, passed on.
        return unsafe { (REAL_IO.read.get())(fd, buf, n) };
    }
    // SAFETY: as read(2).
    unsafe { read_large(fd, buf, n) }
}

#[inline(never)]
unsafe fn read_counted(fd: c_int, buf: *mut c_void, n: usize) -> isize {
    // SAFETY: the caller's arguments, passed on.
    after_counted(fd, n as u64, unsafe { (REAL_IO.read.get())(fd, buf, n) })
}

#[cold]
#[inline(never)]
unsafe extern "C" fn read_large(fd: c_int, buf: *mut c_void, n: usize) -> isize {
    // SAFETY: as read(2).
    unsafe { read_one(fd, buf, n, 0, ReadKind::Read) }
}

/// recv(2).
///
/// # Safety
/// As recv(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, n: usize, flags: c_int) -> isize {
    if small_read(fd, n as u64) {
        if counts(n as u64, flags) {
            // SAFETY: as recv(2).
            return unsafe { recv_counted(fd, buf, n, flags) };
        }
        // SAFETY: the caller's arguments, passed on.
        return unsafe { (REAL_IO.recv.get())(fd, buf, n, flags) };
    }
    // SAFETY: as recv(2).
    unsafe { recv_large(fd, buf, n, flags) }
}

#[inline(never)]
unsafe fn recv_counted(fd: c_int, buf: *mut c_void, n: usize, flags: c_int) -> isize {
    // SAFETY: the caller's arguments, passed on.
    after_counted(fd, n as u64, unsafe { (REAL_IO.recv.get())(fd, buf, n, flags) })
}

#[cold]
#[inline(never)]
unsafe extern "C" fn recv_large(fd: c_int, buf: *mut c_void, n: usize, flags: c_int) -> isize {
    // SAFETY: as recv(2).
    unsafe { read_one(fd, buf, n, flags, ReadKind::Recv) }
}

/// recvfrom(2).
///
/// # Safety
/// As recvfrom(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    n: usize,
    flags: c_int,
    addr: *mut libc::sockaddr,
    addrlen: *mut libc::socklen_t,
) -> isize {
    if small_read(fd, n as u64) {
        if counts(n as u64, flags) {
            // SAFETY: as recvfrom(2).
            return unsafe { recvfrom_counted(fd, buf, n, flags, addr, addrlen) };
        }
        // SAFETY: the caller's arguments, passed on.
        return unsafe { (REAL_IO.recvfrom.get())(fd, buf, n, flags, addr, addrlen) };
    }
    // SAFETY: as recvfrom(2).
    unsafe { recvfrom_large(fd, buf, n, flags, addr, addrlen) }
}

#[inline(never)]
unsafe fn recvfrom_counted(
    fd: c_int,
    buf: *mut c_void,
    n: usize,
    flags: c_int,
    addr: *mut libc::sockaddr,
    addrlen: *mut libc::socklen_t,
) -> isize {
    // SAFETY: the caller's arguments, passed on.
    after_counted(fd, n as u64, unsafe { (REAL_IO.recvfrom.get())(fd, buf, n, flags, addr, addrlen) })
}

#[cold]
#[inline(never)]
unsafe extern "C" fn recvfrom_large(
    fd: c_int,
    buf: *mut c_void,
    n: usize,
    flags: c_int,
    addr: *mut libc::sockaddr,
    addrlen: *mut libc::socklen_t,
) -> isize {
    // SAFETY: as recvfrom(2).
    unsafe { read_one(fd, buf, n, flags, ReadKind::RecvFrom(addr, addrlen)) }
}

/// A single-buffer read call, for the runtime.
unsafe fn read_one(fd: c_int, buf: *mut c_void, n: usize, flags: c_int, kind: ReadKind) -> isize {
    let iov = [libc::iovec { iov_base: buf, iov_len: n }];
    // SAFETY: the caller's buffer, as for the libc function.
    unsafe { ipc::read(&ReadCall { fd, iov: &iov, flags, kind }) }
}

/// readv(2).
///
/// # Safety
/// As readv(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const libc::iovec, count: c_int) -> isize {
    // SAFETY: as readv(2): `iov` holds `count` entries.
    let segments = unsafe { iovecs(iov, count.max(0) as usize) };
    let n = total(segments);
    if small_read(fd, n) {
        // SAFETY: the caller's arguments, passed on.
        if counts(n, 0) {
            // SAFETY: as readv(2).
            return unsafe { readv_counted(fd, iov, count, n) };
        }
        // SAFETY: the caller's arguments, passed on.
        return unsafe { (REAL_IO.readv.get())(fd, iov, count) };
    }
    // SAFETY: the caller's buffers, as for readv(2).
    unsafe { ipc::read(&ReadCall { fd, iov: segments, flags: 0, kind: ReadKind::Readv }) }
}

/// recvmsg(2).
///
/// # Safety
/// As recvmsg(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> isize {
    // SAFETY: as recvmsg(2): `msg` is valid, its iov holds iovlen entries.
    let segments = unsafe { if msg.is_null() { &[] } else { iovecs((*msg).msg_iov, (*msg).msg_iovlen) } };
    let n = total(segments);
    if small_read(fd, n) {
        // SAFETY: the caller's arguments, passed on.
        if counts(n, flags) {
            // SAFETY: as recvmsg(2).
            return unsafe { recvmsg_counted(fd, msg, flags, n) };
        }
        // SAFETY: the caller's arguments, passed on.
        return unsafe { (REAL_IO.recvmsg.get())(fd, msg, flags) };
    }
    // SAFETY: the caller's message, as for recvmsg(2).
    unsafe { ipc::read(&ReadCall { fd, iov: segments, flags, kind: ReadKind::RecvMsg(msg) }) }
}

/// readv(2) of `n` bytes in all, counted (see [`counts`]).
#[inline(never)]
unsafe fn readv_counted(fd: c_int, iov: *const libc::iovec, count: c_int, n: u64) -> isize {
    // SAFETY: the caller's arguments, passed on.
    after_counted(fd, n, unsafe { (REAL_IO.readv.get())(fd, iov, count) })
}

/// recvmsg(2) of `n` bytes in all, counted (see [`counts`]).
#[inline(never)]
unsafe fn recvmsg_counted(fd: c_int, msg: *mut libc::msghdr, flags: c_int, n: u64) -> isize {
    // SAFETY: the caller's arguments, passed on.
    after_counted(fd, n, unsafe { (REAL_IO.recvmsg.get())(fd, msg, flags) })
}

/// write(2).
///
/// # Safety
/// As write(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, n: usize) -> isize {
    if small_write(fd, n as u64) {
        // SAFETY: the caller's arguments, passed on.
        return unsafe { (REAL_IO.write.get())(fd, buf, n) };
    }
    // SAFETY: as write(2).
    unsafe { write_large(fd, buf, n) }
}

#[cold]
#[inline(never)]
unsafe extern "C" fn write_large(fd: c_int, buf: *const c_void, n: usize) -> isize {
    // SAFETY: as write(2).
    unsafe { write_one(fd, buf, n, 0, WriteKind::Write) }
}

/// send(2).
///
/// # Safety
/// As send(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, n: usize, flags: c_int) -> isize {
    if small_write(fd, n as u64) {
        // SAFETY: the caller's arguments, passed on.
        return unsafe { (REAL_IO.send.get())(fd, buf, n, flags) };
    }
    // SAFETY: as send(2).
    unsafe { send_large(fd, buf, n, flags) }
}

#[cold]
#[inline(never)]
unsafe extern "C" fn send_large(fd: c_int, buf: *const c_void, n: usize, flags: c_int) -> isize {
    // SAFETY: as send(2).
    unsafe { write_one(fd, buf, n, flags, WriteKind::Send) }
}

/// sendto(2).
///
/// # Safety
/// As sendto(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    n: usize,
    flags: c_int,
    addr: *const libc::sockaddr,
    addrlen: libc::socklen_t,
) -> isize {
    if small_write(fd, n as u64) {
        // SAFETY: the caller's arguments, passed on.
        return unsafe { (REAL_IO.sendto.get())(fd, buf, n, flags, addr, addrlen) };
    }
    // SAFETY: as sendto(2).
    unsafe { sendto_large(fd, buf, n, flags, addr, addrlen) }
}

#[cold]
#[inline(never)]
unsafe extern "C" fn sendto_large(
    fd: c_int,
    buf: *const c_void,
    n: usize,
    flags: c_int,
    addr: *const libc::sockaddr,
    addrlen: libc::socklen_t,
) -> isize {
    // SAFETY: as sendto(2).
    unsafe { write_one(fd, buf, n, flags, WriteKind::SendTo(addr, addrlen)) }
}

/// A single-buffer write call, for the runtime.
unsafe fn write_one(fd: c_int, buf: *const c_void, n: usize, flags: c_int, kind: WriteKind) -> isize {
    let iov = [libc::iovec { iov_base: buf.cast_mut(), iov_len: n }];
    // SAFETY: the caller's buffer, as for the libc function.
    unsafe { ipc::write(&WriteCall { fd, iov: &iov, flags, kind }) }
}

/// writev(2).
///
/// # Safety
/// As writev(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const libc::iovec, count: c_int) -> isize {
    // SAFETY: as writev(2): `iov` holds `count` entries.
    let segments = unsafe { iovecs(iov, count.max(0) as usize) };
    if small_write(fd, total(segments)) {
        // SAFETY: the caller's arguments, passed on.
        return unsafe { (REAL_IO.writev.get())(fd, iov, count) };
    }
    // SAFETY: the caller's buffers, as for writev(2).
    unsafe { ipc::write(&WriteCall { fd, iov: segments, flags: 0, kind: WriteKind::Writev }) }
}

/// sendmsg(2).
///
/// # Safety
/// As sendmsg(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> isize {
    // SAFETY: as sendmsg(2): `msg` is valid, its iov holds iovlen entries.
    let segments = unsafe { if msg.is_null() { &[] } else { iovecs((*msg).msg_iov, (*msg).msg_iovlen) } };
    // A message with control data (fds it passes) ends every write-behind
    // offer first, whatever its size.
    // SAFETY: as above.
    let control = behind::USED.load(Relaxed) && !msg.is_null() && unsafe { (*msg).msg_controllen } > 0;
    if small_write(fd, total(segments)) && !control {
        // SAFETY: the caller's arguments, passed on.
        return unsafe { (REAL_IO.sendmsg.get())(fd, msg, flags) };
    }
    // SAFETY: the caller's message, as for sendmsg(2).
    unsafe { ipc::write(&WriteCall { fd, iov: segments, flags, kind: WriteKind::SendMsg(msg) }) }
}

/// shutdown(2): a shutdown for writing ends the fd's write-behind offer
/// first (its bytes come before the end of the stream).
///
/// # Safety
/// As shutdown(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    ipc::shutting_down(fd, how);
    match ipc_offload_sys::net::shutdown(fd, how) {
        Ok(()) => 0,
        Err(e) => {
            // SAFETY: this thread's errno slot.
            unsafe { *libc::__errno_location() = e.0 };
            -1
        }
    }
}

/// close(2): forgets a socket the library tracks, then closes.
///
/// # Safety
/// As close(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if tracked(fd) {
        closing(fd);
    }
    // SAFETY: the caller's argument, passed on.
    unsafe { (REAL_IO.close.get())(fd) }
}

/// dup2(2): `new` is closed first if open.
///
/// # Safety
/// As dup2(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    if old != new && tracked(new) {
        closing(new);
    }
    // SAFETY: the caller's arguments, passed on.
    unsafe { (REAL_IO.dup2.get())(old, new) }
}

/// dup3(2): `new` is closed first if open.
///
/// # Safety
/// As dup3(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    if old != new && tracked(new) {
        closing(new);
    }
    // SAFETY: the caller's arguments, passed on.
    unsafe { (REAL_IO.dup3.get())(old, new, flags) }
}

/// close_range(2).
///
/// # Safety
/// As close_range(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close_range(first: u32, last: u32, flags: c_int) -> c_int {
    if flags & libc::CLOSE_RANGE_CLOEXEC as c_int == 0 {
        // Only numbers the tables may know.
        let end = (u64::from(last) + 1).min(ipc::tracked_end() as u64);
        for fd in u64::from(first)..end {
            if tracked(fd as c_int) {
                closing(fd as c_int);
            }
        }
    }
    // SAFETY: the caller's arguments, passed on.
    unsafe { (REAL_IO.close_range.get())(first, last, flags) }
}
