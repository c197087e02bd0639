//! The real libc functions behind the wait hooks (epoll_create,
//! epoll_create1, epoll_ctl, epoll_wait, epoll_pwait, epoll_pwait2, poll,
//! ppoll, select, pselect), resolved once from the constructor as
//! [`crate::real::io`] does for the read/write family.
//!
//! Before that, each slot holds a raw-system-call stand-in that sets errno
//! like libc: another preload's constructor may wait on an fd before ours
//! runs. The stand-ins follow glibc's own wrappers (epoll_wait is
//! epoll_pwait without a mask, poll is ppoll, select is pselect6 with the
//! remaining time written back), man pages epoll_wait(2), poll(2) and
//! select(2).

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicPtr, Ordering::Relaxed};

use crate::real::{MissingSymbol, next};
use crate::syscall6;

/// epoll_create: (size).
pub type EpollCreateFn = unsafe extern "C" fn(c_int) -> c_int;
/// epoll_create1: (flags).
pub type EpollCreate1Fn = unsafe extern "C" fn(c_int) -> c_int;
/// epoll_ctl: (epfd, op, fd, event).
pub type EpollCtlFn = unsafe extern "C" fn(c_int, c_int, c_int, *mut libc::epoll_event) -> c_int;
/// epoll_wait: (epfd, events, maxevents, timeout ms).
pub type EpollWaitFn = unsafe extern "C" fn(c_int, *mut libc::epoll_event, c_int, c_int) -> c_int;
/// epoll_pwait: (epfd, events, maxevents, timeout ms, sigmask).
pub type EpollPwaitFn =
    unsafe extern "C" fn(c_int, *mut libc::epoll_event, c_int, c_int, *const libc::sigset_t) -> c_int;
/// epoll_pwait2: (epfd, events, maxevents, timeout, sigmask).
pub type EpollPwait2Fn =
    unsafe extern "C" fn(c_int, *mut libc::epoll_event, c_int, *const libc::timespec, *const libc::sigset_t) -> c_int;
/// poll: (fds, nfds, timeout ms).
pub type PollFn = unsafe extern "C" fn(*mut libc::pollfd, libc::nfds_t, c_int) -> c_int;
/// ppoll: (fds, nfds, timeout, sigmask).
pub type PpollFn =
    unsafe extern "C" fn(*mut libc::pollfd, libc::nfds_t, *const libc::timespec, *const libc::sigset_t) -> c_int;
/// select: (nfds, readfds, writefds, exceptfds, timeout).
pub type SelectFn =
    unsafe extern "C" fn(c_int, *mut libc::fd_set, *mut libc::fd_set, *mut libc::fd_set, *mut libc::timeval) -> c_int;
/// pselect: (nfds, readfds, writefds, exceptfds, timeout, sigmask).
pub type PselectFn = unsafe extern "C" fn(
    c_int,
    *mut libc::fd_set,
    *mut libc::fd_set,
    *mut libc::fd_set,
    *const libc::timespec,
    *const libc::sigset_t,
) -> c_int;

/// A function pointer slot, swapped once at start-up.
#[derive(Debug)]
pub struct Slot<F> {
    ptr: AtomicPtr<c_void>,
    _kind: core::marker::PhantomData<F>,
}

macro_rules! wait_slot {
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
wait_slot!(EpollCreateFn);
wait_slot!(EpollCtlFn);
wait_slot!(EpollWaitFn);
wait_slot!(EpollPwaitFn);
wait_slot!(EpollPwait2Fn);
wait_slot!(PollFn);
wait_slot!(PpollFn);
wait_slot!(SelectFn);
wait_slot!(PselectFn);

/// The real wait functions.
#[derive(Debug)]
pub struct RealWait {
    /// epoll_create.
    pub epoll_create: Slot<EpollCreateFn>,
    /// epoll_create1 (same signature as epoll_create).
    pub epoll_create1: Slot<EpollCreate1Fn>,
    /// epoll_ctl.
    pub epoll_ctl: Slot<EpollCtlFn>,
    /// epoll_wait.
    pub epoll_wait: Slot<EpollWaitFn>,
    /// epoll_pwait.
    pub epoll_pwait: Slot<EpollPwaitFn>,
    /// epoll_pwait2.
    pub epoll_pwait2: Slot<EpollPwait2Fn>,
    /// poll.
    pub poll: Slot<PollFn>,
    /// ppoll.
    pub ppoll: Slot<PpollFn>,
    /// select.
    pub select: Slot<SelectFn>,
    /// pselect.
    pub pselect: Slot<PselectFn>,
}

/// A raw system call's result as libc returns it: the value, or -1 with errno.
fn libc_result(r: Result<usize, crate::Errno>) -> c_int {
    match r {
        Ok(v) => v as c_int,
        Err(e) => {
            // SAFETY: this thread's errno slot.
            unsafe { *libc::__errno_location() = e.0 };
            -1
        }
    }
}

/// The size of the kernel's sigset (8 bytes on x86-64).
const SIGSET: usize = 8;

/// Raw system call stand-ins, used until the constructor resolves libc's.
mod standin {
    use super::*;

    pub unsafe extern "C" fn epoll_create(size: c_int) -> c_int {
        if size <= 0 {
            // SAFETY: this thread's errno slot.
            unsafe { *libc::__errno_location() = libc::EINVAL };
            return -1;
        }
        // SAFETY: epoll_create1 takes no pointer.
        unsafe { epoll_create1(0) }
    }

    pub unsafe extern "C" fn epoll_create1(flags: c_int) -> c_int {
        // SAFETY: epoll_create1 takes no pointer.
        libc_result(unsafe { syscall6(libc::SYS_epoll_create1, [flags as usize, 0, 0, 0, 0, 0]) })
    }

    pub unsafe extern "C" fn epoll_ctl(epfd: c_int, op: c_int, fd: c_int, event: *mut libc::epoll_event) -> c_int {
        let args = [epfd as usize, op as usize, fd as usize, event as usize, 0, 0];
        // SAFETY: the caller's arguments, as epoll_ctl(2) takes them.
        libc_result(unsafe { syscall6(libc::SYS_epoll_ctl, args) })
    }

    pub unsafe extern "C" fn epoll_wait(epfd: c_int, events: *mut libc::epoll_event, max: c_int, ms: c_int) -> c_int {
        // SAFETY: as epoll_pwait without a mask.
        unsafe { epoll_pwait(epfd, events, max, ms, core::ptr::null()) }
    }

    pub unsafe extern "C" fn epoll_pwait(
        epfd: c_int,
        events: *mut libc::epoll_event,
        max: c_int,
        ms: c_int,
        mask: *const libc::sigset_t,
    ) -> c_int {
        let args = [epfd as usize, events as usize, max as usize, ms as usize, mask as usize, SIGSET];
        // SAFETY: the caller's arguments, as epoll_pwait(2) takes them.
        libc_result(unsafe { syscall6(libc::SYS_epoll_pwait, args) })
    }

    pub unsafe extern "C" fn epoll_pwait2(
        epfd: c_int,
        events: *mut libc::epoll_event,
        max: c_int,
        timeout: *const libc::timespec,
        mask: *const libc::sigset_t,
    ) -> c_int {
        let args = [epfd as usize, events as usize, max as usize, timeout as usize, mask as usize, SIGSET];
        // SAFETY: the caller's arguments, as epoll_pwait2(2) takes them.
        libc_result(unsafe { syscall6(libc::SYS_epoll_pwait2, args) })
    }

    pub unsafe extern "C" fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, ms: c_int) -> c_int {
        let ts = (ms >= 0).then(|| libc::timespec {
            tv_sec: libc::time_t::from(ms / 1000),
            tv_nsec: libc::c_long::from(ms % 1000) * 1_000_000,
        });
        let ts_ptr = ts.as_ref().map_or(core::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: as ppoll with the timeout converted, no mask.
        unsafe { ppoll(fds, n, ts_ptr, core::ptr::null()) }
    }

    pub unsafe extern "C" fn ppoll(
        fds: *mut libc::pollfd,
        n: libc::nfds_t,
        timeout: *const libc::timespec,
        mask: *const libc::sigset_t,
    ) -> c_int {
        // The kernel writes the time left back: give it a copy.
        // SAFETY: the caller's timeout, if any, is readable.
        let mut copy = (!timeout.is_null()).then(|| unsafe { *timeout });
        let ts_ptr = copy.as_mut().map_or(0, |t| t as *mut libc::timespec as usize);
        let args = [fds as usize, n as usize, ts_ptr, mask as usize, SIGSET, 0];
        // SAFETY: the caller's arguments, as ppoll(2) takes them.
        libc_result(unsafe { syscall6(libc::SYS_ppoll, args) })
    }

    pub unsafe extern "C" fn select(
        n: c_int,
        r: *mut libc::fd_set,
        w: *mut libc::fd_set,
        e: *mut libc::fd_set,
        timeout: *mut libc::timeval,
    ) -> c_int {
        let mut ts = (!timeout.is_null()).then(|| {
            // SAFETY: the caller's timeval, readable and writable.
            let tv = unsafe { *timeout };
            libc::timespec { tv_sec: tv.tv_sec, tv_nsec: tv.tv_usec * 1000 }
        });
        let ts_ptr = ts.as_mut().map_or(0, |t| t as *mut libc::timespec as usize);
        let args = [n as usize, r as usize, w as usize, e as usize, ts_ptr, 0];
        // SAFETY: the caller's sets, as pselect6(2) takes them (no mask).
        let result = libc_result(unsafe { syscall6(libc::SYS_pselect6, args) });
        if let (Some(ts), false) = (ts, timeout.is_null()) {
            // Linux's select(2) writes the time left back.
            // SAFETY: the caller's timeval, writable.
            unsafe { *timeout = libc::timeval { tv_sec: ts.tv_sec, tv_usec: ts.tv_nsec / 1000 } };
        }
        result
    }

    pub unsafe extern "C" fn pselect(
        n: c_int,
        r: *mut libc::fd_set,
        w: *mut libc::fd_set,
        e: *mut libc::fd_set,
        timeout: *const libc::timespec,
        mask: *const libc::sigset_t,
    ) -> c_int {
        // SAFETY: the caller's timeout, if any, is readable.
        let mut copy = (!timeout.is_null()).then(|| unsafe { *timeout });
        let ts_ptr = copy.as_mut().map_or(0, |t| t as *mut libc::timespec as usize);
        // pselect6 takes its mask as {sigset pointer, size}.
        let sig = [mask as usize, SIGSET];
        let sig_ptr = if mask.is_null() { 0 } else { sig.as_ptr() as usize };
        let args = [n as usize, r as usize, w as usize, e as usize, ts_ptr, sig_ptr];
        // SAFETY: the caller's sets and mask, as pselect6(2) takes them.
        libc_result(unsafe { syscall6(libc::SYS_pselect6, args) })
    }
}

/// The process's table.
pub static REAL_WAIT: RealWait = RealWait {
    epoll_create: Slot::<EpollCreateFn>::new(standin::epoll_create),
    epoll_create1: Slot::<EpollCreate1Fn>::new(standin::epoll_create1),
    epoll_ctl: Slot::<EpollCtlFn>::new(standin::epoll_ctl),
    epoll_wait: Slot::<EpollWaitFn>::new(standin::epoll_wait),
    epoll_pwait: Slot::<EpollPwaitFn>::new(standin::epoll_pwait),
    epoll_pwait2: Slot::<EpollPwait2Fn>::new(standin::epoll_pwait2),
    poll: Slot::<PollFn>::new(standin::poll),
    ppoll: Slot::<PpollFn>::new(standin::ppoll),
    select: Slot::<SelectFn>::new(standin::select),
    pselect: Slot::<PselectFn>::new(standin::pselect),
};

/// Resolves every real wait function with dlsym(RTLD_NEXT), from the
/// constructor. Missing ones keep their stand-in; the first is returned.
pub fn resolve() -> Result<(), MissingSymbol> {
    let mut missing = None;
    for (slot, name) in [
        (&REAL_WAIT.epoll_create.ptr, c"epoll_create"),
        (&REAL_WAIT.epoll_create1.ptr, c"epoll_create1"),
        (&REAL_WAIT.epoll_ctl.ptr, c"epoll_ctl"),
        (&REAL_WAIT.epoll_wait.ptr, c"epoll_wait"),
        (&REAL_WAIT.epoll_pwait.ptr, c"epoll_pwait"),
        (&REAL_WAIT.epoll_pwait2.ptr, c"epoll_pwait2"),
        (&REAL_WAIT.poll.ptr, c"poll"),
        (&REAL_WAIT.ppoll.ptr, c"ppoll"),
        (&REAL_WAIT.select.ptr, c"select"),
        (&REAL_WAIT.pselect.ptr, c"pselect"),
    ] {
        match next(name) {
            // The next definition of the libc function `name`, whose
            // prototype is the slot's type; slots are only read through
            // `get`, which transmutes back to that type.
            Ok(p) => slot.store(p, Relaxed),
            Err(e) => {
                missing.get_or_insert(e);
            }
        }
    }
    missing.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standins_behave_like_libc() {
        // SAFETY: plain calls with literal arguments and local buffers.
        unsafe {
            let ep = standin::epoll_create1(libc::EPOLL_CLOEXEC);
            assert!(ep >= 0);
            let mut fds = [0i32; 2];
            assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 77 };
            assert_eq!(standin::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fds[0], &mut ev), 0);
            let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
            assert_eq!(standin::epoll_wait(ep, out.as_mut_ptr(), 4, 0), 0);
            assert_eq!(libc::write(fds[1], b"x".as_ptr().cast(), 1), 1);
            assert_eq!(standin::epoll_wait(ep, out.as_mut_ptr(), 4, 1000), 1);
            let (events, data) = (out[0].events, out[0].u64);
            assert_eq!((events, data), (libc::EPOLLIN as u32, 77));
            let mut p = [libc::pollfd { fd: fds[0], events: libc::POLLIN, revents: 0 }];
            assert_eq!(standin::poll(p.as_mut_ptr(), 1, 0), 1);
            assert_eq!(p[0].revents, libc::POLLIN);
            let mut set: libc::fd_set = core::mem::zeroed();
            libc::FD_SET(fds[0], &mut set);
            let mut tv = libc::timeval { tv_sec: 1, tv_usec: 0 };
            assert_eq!(standin::select(fds[0] + 1, &mut set, core::ptr::null_mut(), core::ptr::null_mut(), &mut tv), 1);
            assert!(libc::FD_ISSET(fds[0], &set));
            assert_eq!(standin::epoll_create(0), -1);
            assert_eq!(*libc::__errno_location(), libc::EINVAL);
            for fd in [ep, fds[0], fds[1]] {
                libc::close(fd);
            }
        }
    }

    #[test]
    fn resolve_finds_libc_waits() {
        resolve().unwrap();
        assert_ne!(REAL_WAIT.poll.get() as *const () as usize, standin::poll as *const () as usize);
    }
}
