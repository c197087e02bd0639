//! Event loops on the fast path (docs/ipc-protocol.md, "Event loops"): the
//! slow paths of the epoll, poll and select hooks.
//!
//! A program that waits for readiness before it reads sees a socket or
//! pipe as readable while a writer offers it bytes, although none is in
//! the kernel's queue. The library puts the reader channel's side-channel
//! socket, where writers send a WAKE for every step they place, beside the
//! program's fd in each wait: in its epoll sets as a twin with a data word
//! of the library's ([`twins`]), in its poll and select sets for the
//! length of the call ([`poll`]). A wait that wakes for a twin answers the
//! channel and reports the program's own fd, with the program's own data,
//! when a read would take bytes now: level-triggered as long as they
//! last, edge-triggered once per step placed, one-shot until re-armed.
//! While it waits, it marks each watched ring as listened to, so that a
//! writer offers at once and announces every step.
//!
//! - [`epoll`]: epoll_create, epoll_ctl, the epoll_wait family, nested
//!   sets. [`fdinfo`]: a set's registrations as the kernel lists them.
//! - [`poll`]: poll, ppoll, select, pselect.

pub mod epoll;
pub mod fdinfo;
pub mod poll;
pub mod timeout;
pub mod twins;

use core::time::Duration;
use std::time::Instant;

/// When a wait of `timeout` (None: no limit) started now ends.
pub fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

/// What is left of a wait until `deadline`.
pub fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// In the fork child: the parent's twins and sets do not hold here.
pub fn after_fork() {
    twins::after_fork();
    epoll::after_fork();
}

/// Before the program closes `fd`, a socket or pipe the library knows
/// (close, dup2 and dup3 over it, close_range). While another fd keeps its
/// file open the kernel keeps its registrations (epoll's own rule: they
/// belong to the file), and so do its twins; with the last, its side
/// channel closes and leaves every set, and its twins are freed. (An epoll
/// set's close: [`epoll::closed`].)
pub fn closing(fd: i32, channel_lives: bool, key: u64) {
    if twins::any() && !channel_lives {
        twins::remove_fd(fd, false);
        if let Some(slot) = crate::ipc::route::slot(fd, crate::ipc::hint::Dir::Read) {
            twins::remove_channel(slot, key);
        }
    }
}
