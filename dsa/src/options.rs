//! What a DSA operation is asked to do ([`Options`]) and what it did
//! ([`Report`]): the vocabulary shared by submission, the in-flight
//! machinery, the copies and the other operations.

use core::time::Duration;

use ipc_offload_policy::Wait;

/// Descriptors one copy keeps in flight at most.
pub const DEPTH: usize = 16;

/// The `error` of a report whose device stopped answering (not a hardware
/// status: those are below 0x80).
pub const STALLED: u8 = 0xff;

/// What to do about a page fault the device reported (a partial
/// completion: the device does not fault pages in itself without
/// block-on-fault).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFault {
    /// Touch the page (a write for a write fault) and submit the rest again.
    Resubmit,
    /// Copy the rest on the CPU.
    Cpu,
}

/// How copies are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Set the cache-control flag (destination writes allocate in the
    /// last-level cache); only honoured when the queue's device supports
    /// it.
    pub cache_control: bool,
    /// How a caller waits for a completion record: `spin` polls, `yield`
    /// gives the CPU away between polls, `umwait` sleeps in UMWAIT on the
    /// record's line where the CPU has WAITPKG, the others (and `umwait`
    /// without WAITPKG) poll for 50 µs, then yield.
    pub wait: Wait,
    /// What a page fault leads to.
    pub on_fault: OnFault,
    /// Largest descriptor (the queue's transfer limit caps it too).
    pub chunk: usize,
    /// Descriptors in flight per operation (at most [`DEPTH`]).
    pub depth: usize,
}

impl Options {
    /// Cache-control set, polling then yielding, faults resubmitted, the
    /// largest descriptors the queue takes, [`DEPTH`] in flight.
    pub const DEFAULT: Options = Options {
        cache_control: true,
        wait: Wait::SpinThenSleep,
        on_fault: OnFault::Resubmit,
        chunk: usize::MAX,
        depth: DEPTH,
    };

    /// Descriptors in flight per operation, 1 to [`DEPTH`].
    pub fn in_flight(&self) -> usize {
        self.depth.clamp(1, DEPTH)
    }
}

/// What one copy did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Descriptors submitted.
    pub descriptors: u32,
    /// Descriptors whose completion record was read.
    pub completed: u32,
    /// Page faults reported.
    pub faults: u32,
    /// Submissions refused and retried.
    pub retries: u32,
    /// Times a queue refused beyond its retries and the next queue was
    /// tried.
    pub queue_switches: u32,
    /// Bytes the CPU copied instead (errors, faults with `OnFault::Cpu`,
    /// refusals by every queue, a queue that cannot take descriptors).
    pub cpu_bytes: u64,
    /// The last error status a descriptor reported (0x10 and up), if any.
    pub error: Option<u8>,
    /// With a CPU share ([`crate::copy::copy_shared`]): how long the caller took to copy
    /// it, and how long it then waited for the device.
    pub cpu_time: Duration,
    /// See `cpu_time`.
    pub waited: Duration,
}
