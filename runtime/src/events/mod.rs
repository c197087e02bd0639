//! Event loops on the fast path (docs/ipc-protocol.md, "Event loops"): the
//! slow paths of the epoll, poll and select hooks.
//!
//! A program that waits for readiness before it reads sees a socket or
//! pipe as readable while a writer offers it bytes, although none is in
//! the kernel's queue. The library puts the reader channel's side-channel
//! socket, where writers send a WAKE for every step they place, beside the
//! program's fd in each wait: in its epoll sets as a twin with a data word
//! of the library's (`crate::ipc::twins`), in its poll and select sets for
//! the length of the call ([`poll`]). A wait that wakes for a twin answers
//! the channel and reports the program's own fd, with the program's own
//! data, when a read would take bytes now: level-triggered as long as they
//! last, edge-triggered once per step placed, one-shot until re-armed.
//! While it waits, it marks each watched ring as listened to, so that a
//! writer offers at once and announces every step.
//!
//! - [`epoll`]: epoll_ctl and the epoll_wait family.
//! - [`poll`]: poll, ppoll, select, pselect.
//! - [`timeout`]: the waits' timeouts and deadlines.
//! - [`stack`]: the waits' scratch lists, on the stack.
//!
//! What the fast path itself must keep in step as fds open, opt in and
//! close lives below it, in `crate::ipc`: the known epoll sets and their
//! nests (`epoll_sets`: epoll_create's record, an opting-in reader's
//! registrations, a set's close), the twins (`twins`), and a set's
//! registrations as the kernel lists them (`fdinfo`). Nothing in `ipc`
//! calls this module.

pub mod epoll;
pub mod poll;
mod stack;
pub mod timeout;
