//! What an event loop's wait needs from a reader channel
//! (docs/ipc-protocol.md, "Event loops"): the side-channel socket to watch
//! beside the program's fds, whether a read would take offered bytes now,
//! and a mark on the ring saying that a wait of the library watches it
//! (writers then offer at once, and announce every step with a WAKE).
//!
//! Channels are looked at under their try-lock, retried for a moment: a
//! thread of the program inside a read holds it while it reads, and a wait
//! that cannot look at a channel leaves it unwatched this time (its writer
//! then uses the kernel, which wakes the wait by itself).

use std::time::{Duration, Instant};

use super::channel::{self, Channel, Locked, Role};
use super::ctx::Ctx;
use super::hint::Dir;
use super::table::FDS;
use super::{endpoint, reader, route};

/// How long a wait tries for a channel another thread holds.
const RETRY: Duration = Duration::from_micros(50);

/// A reader channel as a wait sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Look {
    /// Its slot and key in the channel table.
    pub slot: usize,
    /// The endpoint key it serves.
    pub key: u64,
    /// Its side-channel socket: readable when a REQUEST or a WAKE came.
    pub side: i32,
    /// The ring it had, if any (0: none).
    pub ring_id: u64,
    /// Offered bytes a read would take now.
    pub ready: u64,
    /// The ring's edge mark (changes with every step placed and every
    /// read through the library).
    pub mark: u64,
    /// This look marked the ring as listened to.
    pub listening: bool,
    /// A reader of small buffers that let its ring go, no writer offering
    /// to it (reader.rs): waits leave its side channel out.
    pub declines: bool,
    /// A reader that opted in for its small reads and has no ring yet:
    /// its reads answer REQUESTs (reader.rs), and poll and select leave its
    /// side channel out (a loop whose writer has no library paid an extra
    /// socket in every wait for nothing).
    pub small_ringless: bool,
}

fn lock(slot: usize, key: u64) -> Option<Locked> {
    let start = Instant::now();
    loop {
        if let Some(guard) = channel::lock_index(slot, key, Role::Reader) {
            return Some(guard);
        }
        if start.elapsed() >= RETRY || !channel_alive(slot, key) {
            return None;
        }
        ipc_offload_sys::sched_yield();
    }
}

/// Still a reader channel of `key` (so a failed try-lock means busy).
fn channel_alive(slot: usize, key: u64) -> bool {
    channel::serves(slot, key, Role::Reader)
}

/// The reader channel `fd` reads through, if it has one: its slot and key.
pub fn channel_of(fd: i32) -> Option<(usize, u64)> {
    let info = FDS.get(fd)?;
    let slot = route::slot(fd, Dir::Read)?;
    channel::serves(slot, info.key, Role::Reader).then_some((slot, info.key))
}

/// Looks at the reader channel in `slot`; with `listen`, marks its ring as
/// listened to (undo with [`unlisten`]).
pub fn look(slot: usize, key: u64, listen: bool) -> Option<Look> {
    let guard = lock(slot, key)?;
    let Channel::Reader(r) = &*guard else { return None };
    let mut look = Look {
        slot,
        key,
        side: r.side.raw(),
        ring_id: r.ring_id,
        declines: r.declines,
        small_ringless: r.ring.is_none() && channel::is_small(slot),
        ..Look::default()
    };
    if let Some((ring, _)) = &r.ring {
        if listen {
            ring.listen(true);
            look.listening = true;
        }
        look.ready = ring.ready();
        look.mark = ring.edge_mark();
    }
    Some(look)
}

/// Undoes the mark [`look`] put on a ring, if the channel still has it.
pub fn unlisten(look: &Look) {
    if !look.listening {
        return;
    }
    // The mark must go: try a while longer than a look does.
    let start = Instant::now();
    loop {
        if let Some(guard) = channel::lock_index(look.slot, look.key, Role::Reader) {
            if let Channel::Reader(r) = &*guard
                && r.ring_id == look.ring_id
                && let Some((ring, _)) = &r.ring
            {
                ring.listen(false);
            }
            return;
        }
        if !channel_alive(look.slot, look.key) || start.elapsed() >= RETRY * 20 {
            // Gone with its ring, or held by a thread waiting in a read:
            // a mark left behind makes a writer offer once to a reader that
            // does not come, which it then stops doing.
            return;
        }
        ipc_offload_sys::sched_yield();
    }
}

/// Answers the side channel of the reader channel in `slot`: REQUESTs get
/// the ring (made on the first), WAKEs are dropped.
pub fn serve(slot: usize, key: u64) {
    let Some(mut guard) = lock(slot, key) else { return };
    let class = endpoint::class_of_key(key);
    let Some(ctx) = Ctx::current(class) else { return };
    if let Channel::Reader(r) = &mut *guard {
        reader::serve_side(r, &ctx, slot);
    }
}
