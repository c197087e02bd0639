//! The wait family: epoll_create, epoll_create1, epoll_ctl, epoll_wait,
//! epoll_pwait, epoll_pwait2, poll, ppoll, select and pselect.
//!
//! While the process has no reader channel (no socket, pipe or FIFO has
//! opted in), a wait hook is one load and a jump to libc, and the
//! epoll_ctl and epoll_create hooks note only which fds are epoll sets
//! (`ipc_offload_runtime::ipc::epoll_sets`).
//! Otherwise the call goes to `ipc_offload_runtime::events`, which watches
//! the reader channels' side channels beside the program's fds and reports
//! offered bytes as readiness (docs/ipc-protocol.md, "Event loops"). The
//! real function always does the waiting, with the program's signal mask.

use core::ffi::c_int;
use core::time::Duration;
use std::panic::{AssertUnwindSafe, catch_unwind};

use ipc_offload_runtime::events;
use ipc_offload_runtime::events::timeout::{from_ms, from_timespec, to_ms, to_timespec};
use ipc_offload_runtime::ipc::channel::{any_reader, had_reader};
use ipc_offload_runtime::ipc::epoll_sets;
use ipc_offload_sys::real::wait::REAL_WAIT;

/// Runs a wait's slow path; a panic (a bug) falls back to the real call.
fn guarded(slow: impl FnOnce() -> c_int, real: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(slow)).unwrap_or_else(|_| real())
}

/// epoll_create(2).
///
/// # Safety
/// As epoll_create(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_create(size: c_int) -> c_int {
    // SAFETY: the caller's argument, passed on.
    let fd = unsafe { (REAL_WAIT.epoll_create.get())(size) };
    epoll_sets::created(fd);
    fd
}

/// epoll_create1(2).
///
/// # Safety
/// As epoll_create1(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_create1(flags: c_int) -> c_int {
    // SAFETY: the caller's argument, passed on.
    let fd = unsafe { (REAL_WAIT.epoll_create1.get())(flags) };
    epoll_sets::created(fd);
    fd
}

/// epoll_ctl(2): the kernel's, then mirrored for reader channels.
///
/// # Safety
/// As epoll_ctl(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_ctl(epfd: c_int, op: c_int, fd: c_int, event: *mut libc::epoll_event) -> c_int {
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { (REAL_WAIT.epoll_ctl.get())(epfd, op, fd, event) };
    // Mirrored once the process has had a reader channel, even while it
    // has none: the registration of an fd that opts in later is then known
    // without reading fdinfo. Before that, one load (no IPC, no cost).
    if r == 0 && (had_reader() || epoll_sets::is_epoll(fd)) {
        // SAFETY: the caller's event, valid for ADD and MOD.
        let (bits, data) = if event.is_null() { (0, 0) } else { unsafe { ((*event).events, (*event).u64) } };
        let _errno = ipc_offload_sys::ErrnoGuard::save();
        let _ = catch_unwind(AssertUnwindSafe(|| events::epoll::ctl(epfd, op, fd, bits, data)));
    }
    r
}

/// epoll_wait(2).
///
/// # Safety
/// As epoll_wait(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_wait(epfd: c_int, ev: *mut libc::epoll_event, max: c_int, ms: c_int) -> c_int {
    // SAFETY: the caller's arguments, passed on.
    let real = |ev, max, ms| unsafe { (REAL_WAIT.epoll_wait.get())(epfd, ev, max, ms) };
    if !events::epoll::involved() {
        // SAFETY: forwarded contract; the kernel waits with the time left.
        return unsafe { events::epoll::plain(epfd, ev, max, from_ms(ms), &mut |ev, max, t| real(ev, max, to_ms(t))) };
    }
    guarded(
        // SAFETY: forwarded contract; the kernel waits with the time left.
        || unsafe { events::epoll::wait(epfd, ev, max, from_ms(ms), &mut |ev, max, t| real(ev, max, to_ms(t))) },
        || real(ev, max, ms),
    )
}

/// epoll_pwait(2).
///
/// # Safety
/// As epoll_pwait(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_pwait(
    epfd: c_int,
    ev: *mut libc::epoll_event,
    max: c_int,
    ms: c_int,
    mask: *const libc::sigset_t,
) -> c_int {
    // SAFETY: the caller's arguments, passed on.
    let real = |ev, max, ms| unsafe { (REAL_WAIT.epoll_pwait.get())(epfd, ev, max, ms, mask) };
    if !events::epoll::involved() {
        // SAFETY: forwarded contract; the kernel waits with the time left.
        return unsafe { events::epoll::plain(epfd, ev, max, from_ms(ms), &mut |ev, max, t| real(ev, max, to_ms(t))) };
    }
    guarded(
        // SAFETY: forwarded contract; the kernel waits with the time left.
        || unsafe { events::epoll::wait(epfd, ev, max, from_ms(ms), &mut |ev, max, t| real(ev, max, to_ms(t))) },
        || real(ev, max, ms),
    )
}

/// epoll_pwait2(2).
///
/// # Safety
/// As epoll_pwait2(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_pwait2(
    epfd: c_int,
    ev: *mut libc::epoll_event,
    max: c_int,
    timeout: *const libc::timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    // SAFETY: the caller's arguments, passed on.
    let real = |ev, max, ts: *const libc::timespec| unsafe { (REAL_WAIT.epoll_pwait2.get())(epfd, ev, max, ts, mask) };
    let mut left = |ev, max, t: Option<Duration>| {
        let ts = t.map(to_timespec);
        real(ev, max, ts.as_ref().map_or(core::ptr::null(), |t| t as *const libc::timespec))
    };
    if !events::epoll::involved() {
        // SAFETY: forwarded contract; the kernel waits with the time left.
        return unsafe { events::epoll::plain(epfd, ev, max, from_timespec(timeout), &mut left) };
    }
    guarded(
        || {
            // SAFETY: forwarded contract; the kernel waits with the time left.
            unsafe { events::epoll::wait(epfd, ev, max, from_timespec(timeout), &mut left) }
        },
        || real(ev, max, timeout),
    )
}

/// poll(2).
///
/// # Safety
/// As poll(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, ms: c_int) -> c_int {
    // SAFETY: the caller's arguments, passed on.
    let real = |fds, n, ms| unsafe { (REAL_WAIT.poll.get())(fds, n, ms) };
    if !any_reader() {
        return real(fds, n, ms);
    }
    guarded(
        // SAFETY: forwarded contract; the kernel waits with the time left.
        || unsafe { events::poll::poll(fds, n, from_ms(ms), &mut |fds, n, t| real(fds, n, to_ms(t))) },
        || real(fds, n, ms),
    )
}

/// ppoll(2).
///
/// # Safety
/// As ppoll(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ppoll(
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    timeout: *const libc::timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    // SAFETY: the caller's arguments, passed on.
    let real = |fds, n, ts: *const libc::timespec| unsafe { (REAL_WAIT.ppoll.get())(fds, n, ts, mask) };
    if !any_reader() {
        return real(fds, n, timeout);
    }
    guarded(
        || {
            let mut left = |fds, n, t: Option<Duration>| {
                let ts = t.map(to_timespec);
                real(fds, n, ts.as_ref().map_or(core::ptr::null(), |t| t as *const libc::timespec))
            };
            // SAFETY: forwarded contract; the kernel waits with the time left.
            unsafe { events::poll::poll(fds, n, from_timespec(timeout), &mut left) }
        },
        || real(fds, n, timeout),
    )
}

/// select(2): on Linux it writes the time left back into `timeout`.
///
/// # Safety
/// As select(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn select(
    nfds: c_int,
    read: *mut libc::fd_set,
    write: *mut libc::fd_set,
    except: *mut libc::fd_set,
    timeout: *mut libc::timeval,
) -> c_int {
    // SAFETY: the caller's arguments, passed on.
    let real = |n, r, w, e, tv: *mut libc::timeval| unsafe { (REAL_WAIT.select.get())(n, r, w, e, tv) };
    if !any_reader() {
        return real(nfds, read, write, except, timeout);
    }
    // SAFETY: the caller's timeval, if any, readable.
    let given = (!timeout.is_null()).then(|| unsafe { *timeout });
    let limit = given.map(|tv| Duration::new(tv.tv_sec.max(0) as u64, (tv.tv_usec.clamp(0, 999_999) * 1000) as u32));
    let started = std::time::Instant::now();
    let r = guarded(
        || {
            let mut left = |n, r, w, e, t: Option<Duration>| {
                let mut tv = t.map(|d| libc::timeval {
                    tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
                    tv_usec: libc::suseconds_t::from(d.subsec_micros() as i32),
                });
                real(n, r, w, e, tv.as_mut().map_or(core::ptr::null_mut(), |t| t as *mut libc::timeval))
            };
            // SAFETY: forwarded contract; the kernel waits with the time left.
            unsafe { events::poll::select(nfds, read, write, except, limit, &mut left) }
        },
        || real(nfds, read, write, except, timeout),
    );
    if let Some(limit) = limit {
        let left = limit.saturating_sub(started.elapsed());
        // SAFETY: the caller's timeval, writable (select(2) writes it).
        unsafe {
            *timeout = libc::timeval {
                tv_sec: left.as_secs() as libc::time_t,
                tv_usec: libc::suseconds_t::from(left.subsec_micros() as i32),
            }
        };
    }
    r
}

/// pselect(2).
///
/// # Safety
/// As pselect(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pselect(
    nfds: c_int,
    read: *mut libc::fd_set,
    write: *mut libc::fd_set,
    except: *mut libc::fd_set,
    timeout: *const libc::timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    // SAFETY: the caller's arguments, passed on.
    let real = |n, r, w, e, ts: *const libc::timespec| unsafe { (REAL_WAIT.pselect.get())(n, r, w, e, ts, mask) };
    if !any_reader() {
        return real(nfds, read, write, except, timeout);
    }
    guarded(
        || {
            let mut left = |n, r, w, e, t: Option<Duration>| {
                let ts = t.map(to_timespec);
                real(n, r, w, e, ts.as_ref().map_or(core::ptr::null(), |t| t as *const libc::timespec))
            };
            // SAFETY: forwarded contract; the kernel waits with the time left.
            unsafe { events::poll::select(nfds, read, write, except, from_timespec(timeout), &mut left) }
        },
        || real(nfds, read, write, except, timeout),
    )
}
