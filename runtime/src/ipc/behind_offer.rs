//! The record of an offer a write left open (write-behind: [`super::behind`]
//! settles it; a writer channel holds it), and the process's count of them.
//! Apart from `behind.rs` so that the channels that hold these records
//! need nothing of the module that settles them.

use core::sync::atomic::AtomicU32;
use core::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use ipc_offload_ring::offer::Offer;
use ipc_offload_sys::mem::OwnedFd;

/// Offers behind in this process (the courier sleeps while there are none).
pub static BEHIND: AtomicU32 = AtomicU32::new(0);

/// An offer a write left open.
#[derive(Debug)]
pub struct Behind {
    /// The offer.
    pub offer: Offer,
    /// The fd the write went through. Checked to still be the socket
    /// before a byte is sent on it (a program may close an fd behind the
    /// library's back: stdio's fclose), and duplicated for the sends.
    pub fd: i32,
    /// The library's own duplicate of the socket, once the program closed
    /// its last fd while the kernel had no room for the rest.
    pub owned: Option<OwnedFd>,
    /// When the write returned, or the reader last took a byte of it.
    pub since: Instant,
    /// Bytes taken by the reader when last looked at.
    pub taken: u64,
    /// Once withdrawn: the next byte to send through the kernel.
    pub given_back: Option<u64>,
    /// The writer channel's slot (its `behind` flag).
    pub slot: usize,
}

impl Behind {
    /// A record of `offer`, left open by a write on `fd` (through writer
    /// channel `slot`) that returns now.
    pub fn new(offer: Offer, fd: i32, slot: usize) -> Behind {
        Behind { offer, fd, owned: None, since: Instant::now(), taken: 0, given_back: None, slot }
    }

    /// The program closed its last fd of the socket: the library holds a
    /// duplicate until the rest is sent.
    pub fn handed_off(&self) -> bool {
        self.owned.is_some()
    }

    /// The fd to send on: the library's duplicate once it has one.
    pub fn fd(&self) -> i32 {
        self.owned.as_ref().map_or(self.fd, OwnedFd::raw)
    }
}

impl Drop for Behind {
    fn drop(&mut self) {
        // Settled, or its channel went (the fd closed while another thread
        // held it, a fork child's reset): one offer fewer for the courier.
        BEHIND.fetch_sub(1, Relaxed);
    }
}
