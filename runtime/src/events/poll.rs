//! poll, ppoll, select and pselect on the fast path (docs/ipc-protocol.md,
//! "Event loops"): for the length of the call, the side-channel socket of
//! each reader channel the program asks about goes beside its fd, and a
//! wake-up there that leaves bytes ready for a read reports the fd
//! readable (POLLIN, or its bit in the read set).
//!
//! The program's arrays are copied into a larger one on the stack
//! ([`ARRAY`] entries at most); a call with more entries, or more reader
//! channels than [`EXTRA`], watches what fits and leaves the rest to the
//! kernel (their writers then use the kernel path, which wakes the call by
//! itself).

use super::stack::Stack;
use core::ffi::c_int;
use core::time::Duration;

use ipc_offload_sys as sys;

use crate::ipc::watch::{self, Look};

/// Most reader channels one call watches.
const EXTRA: usize = 32;
/// Most pollfd entries one call copies (the program's and the extras).
const ARRAY: usize = 256;
/// select's limit on fd numbers.
const SETSIZE: usize = libc::FD_SETSIZE;

/// The reader channels a call watches: which entry (poll) or fd (select)
/// each one answers for, and how it looked.
struct Watched {
    entries: Stack<(usize, Look), EXTRA>,
}

impl Watched {
    fn new() -> Watched {
        Watched { entries: Stack::new() }
    }

    /// Adds the reader channel of `fd`, if it has one (and takes rings:
    /// see `Look::declines`), for `entry`.
    fn add(&mut self, entry: usize, fd: i32) {
        if self.entries.is_full() {
            return;
        }
        if let Some((slot, key)) = watch::channel_of(fd)
            && let Some(look) = watch::look(slot, key, true).filter(|l| !l.declines && !l.small_ringless)
        {
            self.entries.push((entry, look));
        }
    }

    fn looks(&self) -> &[(usize, Look)] {
        self.entries.as_slice()
    }

    fn any_ready(&self) -> bool {
        self.looks().iter().any(|(_, l)| l.ready > 0)
    }

    fn unlisten(&self) {
        for (_, look) in self.looks() {
            watch::unlisten(look);
        }
    }

    /// Looks again, marking each ring listened to.
    fn relook(&mut self) {
        for (_, look) in self.entries.as_mut_slice() {
            if let Some(again) = watch::look(look.slot, look.key, true) {
                *look = again;
            }
        }
    }
}

/// After a wake-up on reader channel `look`'s side channel: answer it, and
/// say whether a read would take bytes now.
fn woken_ready(look: &Look) -> bool {
    watch::serve(look.slot, look.key);
    watch::look(look.slot, look.key, false).is_some_and(|l| l.ready > 0)
}

/// poll(2)'s slow path: `fds` the program's array, `timeout` None for no
/// limit; `real` polls a given array for a given time.
///
/// # Safety
/// `fds` valid for `n` entries, as for poll(2).
pub unsafe fn poll(
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    timeout: Option<Duration>,
    real: &mut dyn FnMut(*mut libc::pollfd, libc::nfds_t, Option<Duration>) -> c_int,
) -> c_int {
    if fds.is_null() || n == 0 || n as usize > ARRAY {
        return real(fds, n, timeout);
    }
    // SAFETY: the caller's array of `n` entries.
    let program = unsafe { core::slice::from_raw_parts_mut(fds, n as usize) };
    let mut watched = Watched::new();
    for (i, p) in program.iter().enumerate() {
        if p.fd >= 0 && p.events & libc::POLLIN != 0 {
            watched.add(i, p.fd);
        }
    }
    if watched.looks().is_empty() || program.len() + watched.looks().len() > ARRAY {
        watched.unlisten();
        return real(fds, n, timeout);
    }
    let deadline = super::timeout::deadline(timeout);
    loop {
        if watched.any_ready() {
            // Bytes are ready now: the kernel's state of this moment too.
            watched.unlisten();
            let r = real(fds, n, Some(Duration::ZERO));
            if r < 0 {
                return r;
            }
            for (entry, look) in watched.looks() {
                if look.ready > 0 {
                    program[*entry].revents |= libc::POLLIN;
                }
            }
            return count_poll(program);
        }
        let mut all = [libc::pollfd { fd: -1, events: 0, revents: 0 }; ARRAY];
        all[..program.len()].copy_from_slice(program);
        for (k, (_, look)) in watched.looks().iter().enumerate() {
            all[program.len() + k] = libc::pollfd { fd: look.side, events: libc::POLLIN, revents: 0 };
        }
        let len = program.len() + watched.looks().len();
        let r = real(all.as_mut_ptr(), len as libc::nfds_t, super::timeout::remaining(deadline));
        let errno = sys::ErrnoGuard::save();
        watched.unlisten();
        if r < 0 {
            core::mem::forget(errno);
            return r;
        }
        drop(errno);
        program.copy_from_slice(&all[..program.len()]);
        for (k, (entry, look)) in watched.looks().iter().enumerate() {
            if all[program.len() + k].revents != 0 && woken_ready(look) {
                program[*entry].revents |= libc::POLLIN;
            }
        }
        let found = count_poll(program);
        if found > 0 || r == 0 || super::timeout::remaining(deadline).is_some_and(|d| d.is_zero()) {
            return found;
        }
        // Only the library's wake-ups, with nothing for the program yet.
        watched.relook();
    }
}

fn count_poll(fds: &[libc::pollfd]) -> c_int {
    fds.iter().filter(|p| p.revents != 0).count() as c_int
}

/// An fd_set as its bits.
type Bits = [u64; SETSIZE / 64];

/// The program's set behind `set`, or an empty one.
///
/// # Safety
/// `set` null or a valid fd_set.
unsafe fn bits_of(set: *const libc::fd_set) -> Bits {
    if set.is_null() {
        return [0; SETSIZE / 64];
    }
    // SAFETY: an fd_set is FD_SETSIZE bits of plain data (select(2)).
    unsafe { core::ptr::read(set.cast::<Bits>()) }
}

/// Writes `bits` back into the program's set, if it gave one.
///
/// # Safety
/// `set` null or a valid, writable fd_set.
unsafe fn store_bits(set: *mut libc::fd_set, bits: &Bits) {
    if !set.is_null() {
        // SAFETY: as bits_of.
        unsafe { core::ptr::write(set.cast::<Bits>(), *bits) };
    }
}

fn has(bits: &Bits, fd: usize) -> bool {
    fd < SETSIZE && bits[fd / 64] & 1 << (fd % 64) != 0
}

fn put(bits: &mut Bits, fd: usize, on: bool) {
    if fd < SETSIZE {
        if on {
            bits[fd / 64] |= 1 << (fd % 64);
        } else {
            bits[fd / 64] &= !(1 << (fd % 64));
        }
    }
}

fn count_bits(bits: &Bits) -> c_int {
    bits.iter().map(|w| w.count_ones() as c_int).sum()
}

/// select(2)'s slow path (and pselect's): the program's sets and `nfds`,
/// `timeout` None for no limit; `real` selects on given sets for a given
/// time.
///
/// # Safety
/// The sets null or valid, as for select(2).
pub unsafe fn select(
    nfds: c_int,
    read: *mut libc::fd_set,
    write: *mut libc::fd_set,
    except: *mut libc::fd_set,
    timeout: Option<Duration>,
    real: &mut dyn FnMut(c_int, *mut libc::fd_set, *mut libc::fd_set, *mut libc::fd_set, Option<Duration>) -> c_int,
) -> c_int {
    if read.is_null() || nfds <= 0 || nfds as usize > SETSIZE {
        return real(nfds, read, write, except, timeout);
    }
    // SAFETY: the caller's sets, valid per contract.
    let (r0, w0, e0) = unsafe { (bits_of(read), bits_of(write), bits_of(except)) };
    let mut watched = Watched::new();
    for fd in 0..nfds as usize {
        if has(&r0, fd) {
            watched.add(fd, fd as i32);
        }
    }
    if watched.looks().is_empty() || watched.looks().iter().any(|(_, l)| l.side as usize >= SETSIZE) {
        watched.unlisten();
        return real(nfds, read, write, except, timeout);
    }
    let deadline = super::timeout::deadline(timeout);
    loop {
        let (mut r, mut w, mut e) = (r0, w0, e0);
        let ready_now = watched.any_ready();
        let mut top = nfds;
        if !ready_now {
            for (_, look) in watched.looks() {
                put(&mut r, look.side as usize, true);
                top = top.max(look.side + 1);
            }
        } else {
            watched.unlisten();
        }
        let wait = if ready_now { Some(Duration::ZERO) } else { super::timeout::remaining(deadline) };
        let res = real(top, as_set(&mut r), as_set_or_null(&mut w, write), as_set_or_null(&mut e, except), wait);
        let errno = sys::ErrnoGuard::save();
        if !ready_now {
            watched.unlisten();
        }
        if res < 0 {
            core::mem::forget(errno);
            return res;
        }
        drop(errno);
        for (fd, look) in watched.looks() {
            let side_woke = !ready_now && has(&r, look.side as usize);
            put(&mut r, look.side as usize, false);
            if (ready_now && look.ready > 0) || (side_woke && woken_ready(look)) {
                put(&mut r, *fd, true);
            }
        }
        let found = count_bits(&r) + count_bits(&w) + count_bits(&e);
        if found > 0 || ready_now || res == 0 || super::timeout::remaining(deadline).is_some_and(|d| d.is_zero()) {
            // SAFETY: the caller's sets, valid per contract.
            unsafe {
                store_bits(read, &r);
                store_bits(write, &w);
                store_bits(except, &e);
            }
            return found;
        }
        watched.relook();
    }
}

fn as_set(bits: &mut Bits) -> *mut libc::fd_set {
    (bits as *mut Bits).cast()
}

/// Our copy of a set the program gave, or null as it gave none.
fn as_set_or_null(bits: &mut Bits, program: *mut libc::fd_set) -> *mut libc::fd_set {
    if program.is_null() { core::ptr::null_mut() } else { as_set(bits) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_set_bits_round_trip() {
        // SAFETY: an fd_set is plain data: all zeroes is the empty set.
        let mut set: libc::fd_set = unsafe { core::mem::zeroed() };
        // SAFETY: a local fd_set.
        unsafe {
            libc::FD_SET(3, &mut set);
            libc::FD_SET(1000, &mut set);
        }
        // SAFETY: a local fd_set.
        let mut bits = unsafe { bits_of(&set) };
        assert!(has(&bits, 3) && has(&bits, 1000) && !has(&bits, 4));
        assert!(!has(&bits, SETSIZE), "beyond the set");
        assert_eq!(count_bits(&bits), 2);
        put(&mut bits, 3, false);
        put(&mut bits, 64, true);
        put(&mut bits, SETSIZE + 5, true);
        assert_eq!(count_bits(&bits), 2);
        // SAFETY: a local fd_set.
        unsafe {
            store_bits(&mut set, &bits);
            assert!(!libc::FD_ISSET(3, &set) && libc::FD_ISSET(64, &set) && libc::FD_ISSET(1000, &set));
        }
        // SAFETY: null is an empty set, and writing to none does nothing.
        unsafe {
            assert_eq!(count_bits(&bits_of(core::ptr::null())), 0);
            store_bits(core::ptr::null_mut(), &bits);
        }
    }
}
