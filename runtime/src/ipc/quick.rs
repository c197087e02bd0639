//! Calls the library answers from its tables, without a system call of
//! its own: the steady state of every fd that is not moving bytes through
//! shared memory right now (docs/ipc-protocol.md, "What a call costs").
//!
//! - An fd known to be another kind of file: the kernel, uncounted.
//! - A reader whose writer has no library (quiet): the kernel.
//! - A nonblocking reader with nothing offered: the kernel (its EAGAIN,
//!   or bytes written through the kernel).
//! - A writer whose reader will not take an offer now (neither inside a
//!   read nor polling through the library, nor streaming): the kernel.
//!
//! Each looks at the fd's route and its channel (a try-lock, never a
//! wait); anything else, and every [`super::channel::tick`]-th call, goes
//! to the slow path, which re-learns what the tables cache (the file's
//! flags, REQUESTs, the reader's liveness). A stale table sends a call to
//! the kernel, which is right for any fd.

use ipc_offload_engine::stats;
use ipc_offload_engine::{EngineId, Fallback};
use ipc_offload_policy::Class;

use ipc_offload_sys::net;

use super::channel::{self, Channel, LOOK_EVERY, Role};
use super::hint::Dir;
use super::table::{FDS, FdKind};
use super::{route, writer};
use crate::state;

/// Largest write answered from the tables: a larger blocking write goes to
/// the slow path, which sends it in pieces and looks at the reader between
/// them (it may come to a read meanwhile).
const WRITE_MAX: u64 = 1 << 20;

/// A read the tables answer, or `None` for the slow path. `len`: its
/// buffers' length; `small`: below the threshold (routed); `flags`: the
/// call's recv flags.
pub fn read(fd: i32, len: u64, small: bool, flags: i32, kernel: &impl Fn() -> isize) -> Option<isize> {
    let info = FDS.get(fd)?;
    if info.kind == FdKind::Other {
        return Some(kernel());
    }
    let slot = route::slot(fd, Dir::Read)?;
    let class = class_of(info.key)?;
    if !small && channel::quiet_read(slot, info.key) {
        return Some(counted(class, Fallback::NoPeer, kernel()));
    }
    if small && !channel::ringed(slot, info.key) {
        if channel::small_reads_wanted(slot, info.key) {
            // A reader of small buffers without a ring yet: one of its reads
            // a millisecond answers REQUESTs (the slow path; its event
            // loop's wait answers them at once, if it waits in epoll).
            let now = super::hint::now_ms(state::get()?.started);
            return if channel::look_due(slot, now) { None } else { Some(kernel()) };
        }
        // No ring (any more): no offer can come.
        route::set(fd, slot, false);
        return Some(kernel());
    }
    let mut guard = channel::lock_index(slot, info.key, Role::Reader)?;
    let Channel::Reader(reader) = &mut *guard else { return None };
    let (ring, _) = reader.ring.as_ref()?;
    if ring.holder().is_some() {
        return None;
    }
    let dontwait = flags & libc::MSG_DONTWAIT != 0;
    if !dontwait && !channel::nonblocking(slot) {
        return None;
    }
    let n = channel::ticks(slot)?;
    if n % LOOK_EVERY == 0 {
        return None;
    }
    if !dontwait && n % channel::FLAGS_EVERY == 0 && net::is_blocking(fd).unwrap_or(true) {
        // Made blocking behind the library's back: this call may wait,
        // which the slow path does.
        channel::set_nonblocking(slot, false);
        return None;
    }
    let opted_small = channel::is_small(slot);
    if small && opted_small && !reader.served {
        // A miss of a reader that opted in for its small reads: at the
        // last one the slow path lets its ring go (reader.rs).
        if reader.misses + 1 >= channel::SMALL_MISSES {
            return None;
        }
        reader.misses += 1;
    }
    // The length a writer weighs: a reader that opted in for its small
    // reads only (reader.rs).
    let len = if opted_small { len } else { 0 };
    ring.note_read(len);
    reader.read_len = len;
    drop(guard);
    let r = kernel();
    Some(if small { r } else { counted(class, Fallback::NoOffer, r) })
}

/// A write the tables answer, or `None` for the slow path.
pub fn write(fd: i32, len: u64, kernel: &impl Fn() -> isize) -> Option<isize> {
    let info = FDS.get(fd)?;
    if info.kind == FdKind::Other {
        return Some(kernel());
    }
    if len > WRITE_MAX {
        return None;
    }
    let slot = route::slot(fd, Dir::Write)?;
    let class = class_of(info.key)?;
    let guard = channel::lock_index(slot, info.key, Role::Writer)?;
    let Channel::Writer(w) = &*guard else { return None };
    let (ring, _) = w.ring.as_ref()?;
    // An offer behind must end first: the slow path settles it.
    if w.behind.is_some() || writer::will_take(w, &ring.presence()) || !channel::tick(slot) {
        return None;
    }
    drop(guard);
    let r = kernel();
    if r >= 0
        && let Some(mut guard) = channel::lock_index(slot, info.key, Role::Writer)
        && let Channel::Writer(w) = &mut *guard
    {
        // A short count: the program comes back with the rest of its
        // message (`writer::kernel_has_room`).
        w.short = (r as u64) < len;
    }
    Some(counted(class, Fallback::NotWaiting, r))
}

/// The class of endpoint key `key`, if that class is on.
fn class_of(key: u64) -> Option<Class> {
    let class = super::endpoint::class_of_key(key);
    state::get()?.options[class.index()]?;
    Some(class)
}

/// Records a call that went to the kernel for `why`; returns its result.
fn counted(class: Class, why: Fallback, r: isize) -> isize {
    stats::counters(class).record_ipc(0, r.max(0) as u64, EngineId::Cpu, Some(why));
    r
}
