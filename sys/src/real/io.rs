//! The real libc I/O functions behind the read/write hooks, and the IPC
//! threshold, in one cache line (as [`crate::real`] does for the copies).
//!
//! Before the constructor resolves them, every slot holds a raw-system-call
//! stand-in that sets errno like libc: other preloads' constructors may read
//! and write before ours runs.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::Relaxed};

use crate::real::MissingSymbol;
use crate::syscall6;

/// read, write: (fd, buf, n).
pub type ReadFn = unsafe extern "C" fn(c_int, *mut c_void, usize) -> isize;
/// write: (fd, buf, n).
pub type WriteFn = unsafe extern "C" fn(c_int, *const c_void, usize) -> isize;
/// readv, writev: (fd, iov, count).
pub type VecFn = unsafe extern "C" fn(c_int, *const libc::iovec, c_int) -> isize;
/// recv: (fd, buf, n, flags).
pub type RecvFn = unsafe extern "C" fn(c_int, *mut c_void, usize, c_int) -> isize;
/// send: (fd, buf, n, flags).
pub type SendFn = unsafe extern "C" fn(c_int, *const c_void, usize, c_int) -> isize;
/// recvfrom: (fd, buf, n, flags, addr, addrlen).
pub type RecvFromFn =
    unsafe extern "C" fn(c_int, *mut c_void, usize, c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> isize;
/// sendto: (fd, buf, n, flags, addr, addrlen).
pub type SendToFn =
    unsafe extern "C" fn(c_int, *const c_void, usize, c_int, *const libc::sockaddr, libc::socklen_t) -> isize;
/// recvmsg: (fd, msg, flags).
pub type RecvMsgFn = unsafe extern "C" fn(c_int, *mut libc::msghdr, c_int) -> isize;
/// sendmsg: (fd, msg, flags).
pub type SendMsgFn = unsafe extern "C" fn(c_int, *const libc::msghdr, c_int) -> isize;
/// close: (fd).
pub type CloseFn = unsafe extern "C" fn(c_int) -> c_int;
/// dup2: (old, new).
pub type Dup2Fn = unsafe extern "C" fn(c_int, c_int) -> c_int;
/// dup3: (old, new, flags).
pub type Dup3Fn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
/// close_range: (first, last, flags).
pub type CloseRangeFn = unsafe extern "C" fn(u32, u32, c_int) -> c_int;

/// A function pointer slot, swapped once at start-up.
#[derive(Debug)]
pub struct Slot<F> {
    ptr: AtomicPtr<c_void>,
    _kind: core::marker::PhantomData<F>,
}

macro_rules! io_slot {
    ($fnty:ty) => {
        impl Slot<$fnty> {
            const fn new(f: $fnty) -> Self {
                Slot { ptr: AtomicPtr::new(f as *mut c_void), _kind: core::marker::PhantomData }
            }

            /// The current function.
            #[inline(always)]
            pub fn get(&self) -> $fnty {
                // SAFETY: the slot only ever holds a function of type
                // `$fnty`: the stand-in, or what `resolve` stored.
                unsafe { core::mem::transmute::<*mut c_void, $fnty>(self.ptr.load(Relaxed)) }
            }
        }
    };
}
io_slot!(ReadFn);
io_slot!(WriteFn);
io_slot!(VecFn);
io_slot!(RecvFn);
io_slot!(SendFn);
io_slot!(RecvFromFn);
io_slot!(SendToFn);
io_slot!(RecvMsgFn);
io_slot!(SendMsgFn);
io_slot!(CloseFn);
io_slot!(Dup2Fn);
io_slot!(Dup3Fn);
io_slot!(CloseRangeFn);

/// The hot line of the I/O hooks.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct RealIo {
    /// Reads and writes of at least this many bytes leave the fast path;
    /// `usize::MAX` while no IPC class is on.
    pub io_min: AtomicUsize,
    /// A read below `io_min` that fills a buffer of at least this many
    /// bytes is counted toward its fd's opt-in (a reader that streams with
    /// small buffers); `usize::MAX` while no IPC class is on.
    pub stream_min: AtomicUsize,
    /// read.
    pub read: Slot<ReadFn>,
    /// write.
    pub write: Slot<WriteFn>,
    /// readv.
    pub readv: Slot<VecFn>,
    /// writev.
    pub writev: Slot<VecFn>,
    /// recv.
    pub recv: Slot<RecvFn>,
    /// send.
    pub send: Slot<SendFn>,
    /// recvfrom.
    pub recvfrom: Slot<RecvFromFn>,
    /// sendto.
    pub sendto: Slot<SendToFn>,
    /// recvmsg.
    pub recvmsg: Slot<RecvMsgFn>,
    /// sendmsg.
    pub sendmsg: Slot<SendMsgFn>,
    /// close.
    pub close: Slot<CloseFn>,
    /// dup2.
    pub dup2: Slot<Dup2Fn>,
    /// dup3.
    pub dup3: Slot<Dup3Fn>,
    /// close_range.
    pub close_range: Slot<CloseRangeFn>,
}

/// A raw system call's result as libc returns it: the value, or -1 with errno.
fn libc_result(r: Result<usize, crate::Errno>) -> isize {
    match r {
        Ok(v) => v as isize,
        Err(e) => {
            // SAFETY: this thread's errno slot.
            unsafe { *libc::__errno_location() = e.0 };
            -1
        }
    }
}

/// Raw system call stand-ins, used until the constructor resolves libc's.
mod standin {
    use super::*;

    macro_rules! standin {
        ($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $nr:expr) => {
            pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
                let args = [$($arg as usize),*];
                let mut six = [0usize; 6];
                six[..args.len()].copy_from_slice(&args);
                // SAFETY: the same arguments libc's wrapper would pass to the
                // system call; the caller's contract is the libc function's.
                libc_result(unsafe { syscall6($nr, six) }) as $ret
            }
        };
    }
    standin!(read(fd: c_int, buf: *mut c_void, n: usize) -> isize = libc::SYS_read);
    standin!(write(fd: c_int, buf: *const c_void, n: usize) -> isize = libc::SYS_write);
    standin!(readv(fd: c_int, iov: *const libc::iovec, count: c_int) -> isize = libc::SYS_readv);
    standin!(writev(fd: c_int, iov: *const libc::iovec, count: c_int) -> isize = libc::SYS_writev);
    standin!(recvfrom(fd: c_int, buf: *mut c_void, n: usize, flags: c_int, addr: *mut libc::sockaddr, len: *mut libc::socklen_t) -> isize = libc::SYS_recvfrom);
    standin!(sendto(fd: c_int, buf: *const c_void, n: usize, flags: c_int, addr: *const libc::sockaddr, len: libc::socklen_t) -> isize = libc::SYS_sendto);
    standin!(recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> isize = libc::SYS_recvmsg);
    standin!(sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> isize = libc::SYS_sendmsg);
    standin!(close(fd: c_int) -> c_int = libc::SYS_close);
    standin!(dup2(old: c_int, new: c_int) -> c_int = libc::SYS_dup2);
    standin!(dup3(old: c_int, new: c_int, flags: c_int) -> c_int = libc::SYS_dup3);
    standin!(close_range(first: u32, last: u32, flags: c_int) -> c_int = libc::SYS_close_range);

    pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, n: usize, flags: c_int) -> isize {
        // SAFETY: recv(2) is recvfrom(2) without an address.
        unsafe { recvfrom(fd, buf, n, flags, core::ptr::null_mut(), core::ptr::null_mut()) }
    }

    pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, n: usize, flags: c_int) -> isize {
        // SAFETY: send(2) is sendto(2) without an address.
        unsafe { sendto(fd, buf, n, flags, core::ptr::null(), 0) }
    }
}

/// The process's table.
pub static REAL_IO: RealIo = RealIo {
    io_min: AtomicUsize::new(usize::MAX),
    stream_min: AtomicUsize::new(usize::MAX),
    read: Slot::<ReadFn>::new(standin::read),
    write: Slot::<WriteFn>::new(standin::write),
    readv: Slot::<VecFn>::new(standin::readv),
    writev: Slot::<VecFn>::new(standin::writev),
    recv: Slot::<RecvFn>::new(standin::recv),
    send: Slot::<SendFn>::new(standin::send),
    recvfrom: Slot::<RecvFromFn>::new(standin::recvfrom),
    sendto: Slot::<SendToFn>::new(standin::sendto),
    recvmsg: Slot::<RecvMsgFn>::new(standin::recvmsg),
    sendmsg: Slot::<SendMsgFn>::new(standin::sendmsg),
    close: Slot::<CloseFn>::new(standin::close),
    dup2: Slot::<Dup2Fn>::new(standin::dup2),
    dup3: Slot::<Dup3Fn>::new(standin::dup3),
    close_range: Slot::<CloseRangeFn>::new(standin::close_range),
};

/// Resolves every real I/O function with dlsym(RTLD_NEXT), from the
/// constructor. Missing ones keep their stand-in; the first is returned.
pub fn resolve() -> Result<(), MissingSymbol> {
    let mut missing = None;
    macro_rules! resolve_slot {
        ($slot:expr, $name:literal) => {
            match crate::real::next($name) {
                // SAFETY: the next definition of the libc function $name,
                // whose prototype is the slot's type; slots are only read
                // through `get`, which transmutes back to that type.
                Ok(p) => $slot.ptr.store(p, Relaxed),
                Err(e) => {
                    missing.get_or_insert(e);
                }
            }
        };
    }
    resolve_slot!(REAL_IO.read, c"read");
    resolve_slot!(REAL_IO.write, c"write");
    resolve_slot!(REAL_IO.readv, c"readv");
    resolve_slot!(REAL_IO.writev, c"writev");
    resolve_slot!(REAL_IO.recv, c"recv");
    resolve_slot!(REAL_IO.send, c"send");
    resolve_slot!(REAL_IO.recvfrom, c"recvfrom");
    resolve_slot!(REAL_IO.sendto, c"sendto");
    resolve_slot!(REAL_IO.recvmsg, c"recvmsg");
    resolve_slot!(REAL_IO.sendmsg, c"sendmsg");
    resolve_slot!(REAL_IO.close, c"close");
    resolve_slot!(REAL_IO.dup2, c"dup2");
    resolve_slot!(REAL_IO.dup3, c"dup3");
    resolve_slot!(REAL_IO.close_range, c"close_range");
    missing.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standins_behave_like_libc() {
        let mut sv = [0i32; 2];
        // SAFETY: socketpair writes two fds.
        assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, sv.as_mut_ptr()) }, 0);
        // SAFETY: literal buffers of the sizes given.
        unsafe {
            assert_eq!(standin::send(sv[0], b"hey".as_ptr().cast(), 3, 0), 3);
            let mut buf = [0u8; 8];
            assert_eq!(standin::recv(sv[1], buf.as_mut_ptr().cast(), 8, 0), 3);
            assert_eq!(&buf[..3], b"hey");
            assert_eq!(standin::close(sv[0]), 0);
            assert_eq!(standin::close(sv[0]), -1);
            assert_eq!(*libc::__errno_location(), libc::EBADF);
            assert_eq!(standin::close(sv[1]), 0);
        }
    }

    #[test]
    fn resolve_finds_libc_io() {
        resolve().unwrap();
        assert_ne!(REAL_IO.read.get() as *const () as usize, standin::read as *const () as usize);
    }
}
