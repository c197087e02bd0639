//! The epoll family on the fast path (docs/ipc-protocol.md, "Event
//! loops"): the program's epoll_ctl mirrored (nested sets, and twins of
//! reader channels, which `crate::ipc::epoll_sets` and `crate::ipc::twins`
//! keep), and the wait that merges the kernel's events with what writers
//! offer.
//!
//! The program's own registrations stay the kernel's, untouched but for
//! one case: a one-shot fd the library reports is disarmed in the kernel
//! too (EPOLL_CTL_MOD with no events), as the kernel disarms one it
//! reports, so that the program hears of it once until it re-arms it.

use core::sync::atomic::Ordering::{Acquire, Relaxed};
use core::time::Duration;

use ipc_offload_sys::real::wait::REAL_WAIT;
use ipc_offload_sys::{self as sys, mem};

use crate::ipc::channel::{self, Role};
use crate::ipc::epoll_sets::{self, NESTED, drop_nests, is_epoll, mark_set, set_nest};
use crate::ipc::fdinfo::{self, Registration};
use crate::ipc::registered;
use crate::ipc::twins::{self, TwinView};
use crate::ipc::watch::{self, Look};

use super::stack::Stack;

/// After the program's epoll_ctl on `epfd` succeeded: mirror it.
pub fn ctl(epfd: i32, op: i32, fd: i32, events: u32, data: u64) {
    match op {
        libc::EPOLL_CTL_ADD | libc::EPOLL_CTL_MOD => {
            if is_epoll(fd) {
                set_nest(epfd, fd, events, data);
                return;
            }
            // Kept for when the fd opts in (it may have no channel yet), in
            // a set this process made: one inherited across fork, or
            // learnt from a wait, may be changed by another process.
            if epoll_sets::is_own(epfd) {
                registered::note(epfd, fd, events, data);
            }
            if let Some((slot, key)) = watch::channel_of(fd) {
                if op == libc::EPOLL_CTL_MOD && twins::find(epfd, fd).is_some() {
                    twins::modified(epfd, fd, events, data);
                } else if let Some(look) = watch::look(slot, key, false).filter(|l| !l.declines) {
                    twins::install(epfd, fd, events, data, slot, key, look.side);
                }
            }
        }
        libc::EPOLL_CTL_DEL => {
            // The twin stays registered, disarmed: a loop that takes an fd
            // out of its set and puts it back (asyncio pauses reading this
            // way for every chunk its buffer holds) pays no system call of
            // the library's for it. Its side channel leaves the set when
            // the fd's last close releases it.
            twins::modified(epfd, fd, 0, 0);
            registered::removed(epfd, fd);
            drop_nests(|outer, inner| outer == epfd && inner == fd);
        }
        _ => {}
    }
}

/// A set the library did not see made (inherited across exec, made before
/// the library started): learn it, and twin its members that are reader
/// channels.
fn adopt_set(epfd: i32) {
    mark_set(epfd, true);
    fdinfo::registrations(epfd, &mut |r: Registration| {
        if is_epoll(r.fd) {
            set_nest(epfd, r.fd, r.events, r.data);
            return;
        }
        let Some((slot, key)) = watch::channel_of(r.fd) else { return };
        if mem::fstat(r.fd).is_ok_and(|st| st.ino == r.ino)
            && let Some(look) = watch::look(slot, key, false).filter(|l| !l.declines)
        {
            twins::install(epfd, r.fd, r.events, r.data, slot, key, look.side);
        }
    });
}

/// True if a read of the twin's fd would take bytes now, and the program
/// should hear of it: level-triggered while bytes are ready, edge-triggered
/// once per step placed or read made since it last heard.
fn due(t: &TwinView, look: &Look) -> bool {
    look.ready > 0 && (!t.edge() || look.mark != t.mark)
}

/// Most twins one wait watches (and events it adds); the rest wake
/// through the kernel only.
const WATCHED: usize = 64;

/// An event the library adds to a wait's results.
#[derive(Clone, Copy, Debug, Default)]
struct Added {
    events: u32,
    data: u64,
    /// The twin it reports (None: a nested set's).
    twin: Option<Reported>,
}

/// A twin an added event reports: what to note once it is delivered.
#[derive(Clone, Copy, Debug)]
struct Reported {
    index: usize,
    mark: u64,
    oneshot: bool,
    epfd: i32,
    fd: i32,
}

impl Reported {
    fn of(t: &TwinView, look: &Look) -> Reported {
        Reported { index: t.index, mark: look.mark, oneshot: t.oneshot(), epfd: t.epfd, fd: t.fd }
    }
}

/// What one pass of a wait watches: marks to undo, events ready now.
struct Pass {
    looks: Stack<Look, WATCHED>,
    ready: Stack<Added, WATCHED>,
}

impl Pass {
    fn new() -> Pass {
        Pass { looks: Stack::new(), ready: Stack::new() }
    }

    /// Looks at the twins of set `epfd`, marking them listened to; events
    /// due go to `ready` as `report` says (the twin's own, or the nest's).
    fn watch(&mut self, epfd: i32, nest: Option<u64>) {
        let mut twins_here: Stack<TwinView, WATCHED> = Stack::new();
        // The first WATCHED of the set, as the table holds them: a wait of
        // a set of thousands looks no further.
        twins::each_in(epfd, &mut |t| twins_here.push(t) && !twins_here.is_full());
        for t in twins_here.as_slice() {
            if !t.armed() || self.looks.is_full() {
                continue;
            }
            if !channel::serves(t.slot, t.key, Role::Reader) {
                twins::remove_at(t.index, false);
                continue;
            }
            let Some(look) = watch::look(t.slot, t.key, true) else { continue };
            self.looks.push(look);
            if !due(t, &look) || self.ready.is_full() {
                continue;
            }
            let added = match nest {
                Some(data) => Added { events: libc::EPOLLIN as u32, data, twin: None },
                None => Added { events: libc::EPOLLIN as u32, data: t.data, twin: Some(Reported::of(t, &look)) },
            };
            if !self.ready.as_slice().iter().any(|r| r.data == added.data) {
                self.ready.push(added);
            }
        }
    }

    fn unlisten(&self) {
        for look in self.looks.as_slice() {
            watch::unlisten(look);
        }
    }
}

/// Whether an epoll wait needs [`wait`] (a reader channel exists);
/// otherwise the hooks wait through [`plain`].
pub fn involved() -> bool {
    channel::any_reader()
}

/// The epoll_wait family's slow path: the program's wait on `epfd`, with
/// `events` holding `max` entries and `timeout` (None: no limit). `real`
/// waits in the kernel for a given time (Some(0): a look).
///
/// # Safety
/// `events` valid for `max` entries, as for epoll_wait(2).
pub unsafe fn wait(
    epfd: i32,
    events: *mut libc::epoll_event,
    max: i32,
    timeout: Option<Duration>,
    real: &mut dyn FnMut(*mut libc::epoll_event, i32, Option<Duration>) -> i32,
) -> i32 {
    if max <= 0 || events.is_null() {
        return real(events, max, timeout);
    }
    if !channel::any_reader() {
        // SAFETY: forwarded contract.
        return unsafe { plain(epfd, events, max, timeout, real) };
    }
    if !is_epoll(epfd) {
        adopt_set(epfd);
    }
    let nested = NESTED.iter().any(|n| n.live.load(Relaxed) && n.outer.load(Relaxed) == epfd);
    if !twins::any() || (!nested && !twins::any_in(epfd)) {
        // SAFETY: forwarded contract.
        return unsafe { plain(epfd, events, max, timeout, real) };
    }
    let deadline = super::timeout::deadline(timeout);
    // SAFETY: the caller's array of `max` entries.
    let out = unsafe { core::slice::from_raw_parts_mut(events, max as usize) };
    loop {
        let mut pass = Pass::new();
        pass.watch(epfd, None);
        for n in &NESTED {
            if n.live.load(Acquire)
                && n.outer.load(Relaxed) == epfd
                && n.events.load(Relaxed) & libc::EPOLLIN as u32 != 0
            {
                pass.watch(n.inner.load(Relaxed), Some(n.data.load(Relaxed)));
            }
        }
        let ready = pass.ready.as_slice();
        if !ready.is_empty() {
            // Bytes are ready now: the kernel's events of this moment too.
            pass.unlisten();
            let room = max as usize - ready.len().min(max as usize);
            let n = if room > 0 { real(events, room as i32, Some(Duration::ZERO)) } else { 0 };
            if n < 0 {
                return n;
            }
            let kept = translate(epfd, out, n as usize);
            return merge(out, kept, ready) as i32;
        }
        let n = real(events, max, super::timeout::remaining(deadline));
        let errno = sys::ErrnoGuard::save();
        pass.unlisten();
        if n < 0 {
            core::mem::forget(errno);
            return n;
        }
        drop(errno);
        let kept = translate(epfd, out, n as usize);
        if kept > 0 || n == 0 || super::timeout::remaining(deadline).is_some_and(|d| d.is_zero()) {
            return kept as i32;
        }
        // Only the library's wake-ups, with nothing for the program yet
        // (a REQUEST answered, a step already taken): wait on.
    }
}

/// A wait with no twin of this set to watch when it begins: the kernel's
/// alone. Its results can still hold a tag once a twin exists (another
/// thread opted in and installed one in this set during the wait, or one
/// was freed while its side channel was registered): those are
/// translated as [`wait`] does, and when nothing is left for the program
/// and time remains, the wait goes on. The clock is read only for a wait
/// with a positive timeout.
///
/// # Safety
/// `events` valid for `max` entries, as for epoll_wait(2).
pub unsafe fn plain(
    epfd: i32,
    events: *mut libc::epoll_event,
    max: i32,
    timeout: Option<Duration>,
    real: &mut dyn FnMut(*mut libc::epoll_event, i32, Option<Duration>) -> i32,
) -> i32 {
    let deadline = super::timeout::deadline(timeout.filter(|t| !t.is_zero()));
    let n = real(events, max, timeout);
    if n <= 0 || max <= 0 || events.is_null() || !twins::ever() {
        return n;
    }
    // SAFETY: the kernel filled the first `n` of the caller's entries.
    let out = unsafe { core::slice::from_raw_parts_mut(events, n as usize) };
    if !out.iter().any(|e| twins::is_tag_shaped(e.u64)) {
        return n;
    }
    let errno = sys::ErrnoGuard::save();
    let kept = translate(epfd, out, n as usize);
    if kept > 0 || timeout.is_some_and(|t| t.is_zero()) {
        return kept as i32;
    }
    drop(errno);
    // SAFETY: forwarded contract.
    unsafe { wait(epfd, events, max, super::timeout::remaining(deadline), real) }
}

/// The one-shot twins of a set, gathered once per batch of events: a
/// program's own event for a one-shot fd disarms its twin. (Scanning the
/// table for each event cost a server of a thousand connections a thousand
/// loads per event.)
struct OneShots {
    found: [(u64, usize); WATCHED],
    n: usize,
    /// All of them are in `found` (else each event scans the table).
    all: bool,
}

impl OneShots {
    fn of(epfd: i32) -> OneShots {
        let mut s = OneShots { found: [(0, 0); WATCHED], n: 0, all: true };
        if !twins::oneshot_seen() {
            return s;
        }
        twins::each_in(epfd, &mut |t| {
            if !t.oneshot() {
                return true;
            }
            if s.n < WATCHED {
                s.found[s.n] = (t.data, t.index);
                s.n += 1;
                true
            } else {
                s.all = false;
                false
            }
        });
        s
    }

    /// The program's fd with data word `data` was reported: its one-shot
    /// twins are disarmed.
    fn reported(&self, epfd: i32, data: u64) {
        if self.all {
            self.found[..self.n].iter().filter(|(d, _)| *d == data).for_each(|(_, index)| twins::disarm(*index));
            return;
        }
        twins::each_in(epfd, &mut |t| {
            if t.oneshot() && t.data == data {
                twins::disarm(t.index);
            }
            true
        });
    }
}

/// Turns the kernel's `n` events in `out` into the program's: a twin's tag
/// becomes its fd's event when a read would take bytes now (its channel
/// answered first), and is dropped otherwise; a one-shot fd the kernel
/// reported disarms its twin. Returns how many events are left.
fn translate(epfd: i32, out: &mut [libc::epoll_event], n: usize) -> usize {
    let mut kept = 0;
    let mut added = [Added::default(); WATCHED];
    let mut nadded = 0;
    let mut oneshots: Option<OneShots> = None;
    for i in 0..n {
        let e = out[i];
        let data = e.u64;
        if let Some(t) = twins::by_tag(data) {
            if !channel::serves(t.slot, t.key, Role::Reader) {
                twins::remove_at(t.index, false);
                continue;
            }
            watch::serve(t.slot, t.key);
            if let Some(look) = watch::look(t.slot, t.key, false)
                && t.armed()
                && due(&t, &look)
                && nadded < WATCHED
            {
                added[nadded] =
                    Added { events: libc::EPOLLIN as u32, data: t.data, twin: Some(Reported::of(&t, &look)) };
                nadded += 1;
            }
            continue;
        }
        if twins::is_tag_shaped(data) {
            continue; // a twin freed since (or the parent's, after fork)
        }
        oneshots.get_or_insert_with(|| OneShots::of(epfd)).reported(epfd, data);
        out[kept] = e;
        kept += 1;
    }
    merge(out, kept, &added[..nadded])
}

/// Adds the library's events to the first `kept` of `out`: one for the
/// same data word joins its bits (never the same fd twice in one batch),
/// the others go after, while there is room. Returns the new count.
fn merge(out: &mut [libc::epoll_event], mut kept: usize, added: &[Added]) -> usize {
    for a in added {
        if let Some(e) = out[..kept].iter_mut().find(|e| ({ e.u64 }) == a.data) {
            e.events |= a.events;
        } else if kept < out.len() {
            out[kept] = libc::epoll_event { events: a.events, u64: a.data };
            kept += 1;
        } else {
            continue; // no room: the next wait reports it (level), or the next step (edge)
        }
        if let Some(r) = a.twin {
            twins::reported(r.index, r.mark, r.oneshot);
            if r.oneshot {
                // As the kernel disarms a one-shot fd it reports.
                let mut ev = libc::epoll_event { events: libc::EPOLLONESHOT as u32, u64: a.data };
                // SAFETY: epoll_ctl(2) with a local event.
                let _ = unsafe { (REAL_WAIT.epoll_ctl.get())(r.epfd, libc::EPOLL_CTL_MOD, r.fd, &mut ev) };
            }
        }
    }
    kept
}
