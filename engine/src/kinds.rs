//! The words every engine, the stats and the runtime share: which engine
//! moved the bytes ([`EngineId`]), why a call fell back ([`Fallback`]),
//! what one copy did ([`Outcome`]) and how it is to be made
//! ([`CopyOptions`]). A leaf: it uses nothing of this crate.

use ipc_offload_policy::{Class, Wait, named_enum};

named_enum! {
    /// An engine that actually moved bytes.
    EngineId {
        /// The real libc memcpy/memmove on the calling thread.
        Cpu = "cpu",
        /// The copy-worker pool, with the caller copying a share.
        AsyncCpu = "async-cpu",
        /// A DSA work queue (hardware, or the device model).
        Dsa = "dsa",
        /// The caller's CPU and a DSA work queue, each a share of a copy.
        Hybrid = "hybrid",
    }
}

named_enum! {
    /// Why a call meant for an offload engine or the shared-memory path was
    /// served by the CPU or the kernel instead.
    Fallback {
        /// Source and destination overlap too closely to split the move.
        OverlapClose = "overlap-close",
        /// Every job slot of the pool was in use.
        PoolSaturated = "pool-saturated",
        /// The pool could not start a single worker thread.
        PoolUnavailable = "pool-unavailable",
        /// A call made while this thread was already inside the library
        /// (a signal handler that interrupted it, or the library itself).
        Reentrant = "reentrant",
        /// A bug: the library panicked before moving any byte.
        Panic = "panic",
        /// The `dsa` engine had no device (none usable, or a fork child's
        /// before it was opened again).
        DsaUnavailable = "dsa-unavailable",
        /// Every descriptor of a `dsa` copy failed (an error status, a
        /// queue that refused): the CPU copied it.
        DsaError = "dsa-error",
        /// IPC: the peer has not opted in (no library, no large blocking
        /// reads), or the handshake has not completed yet.
        NoPeer = "no-peer",
        /// IPC writer: the reader was neither inside a read nor polling the
        /// socket through the library, nor streaming.
        NotWaiting = "reader-not-waiting",
        /// IPC writer: the reader did not take an offer within the writer's
        /// patience; the rest went through the kernel.
        NotTaken = "not-taken",
        /// IPC writer (without write-behind): a nonblocking write whose
        /// socket had room for the rest of it sent that to the kernel; held
        /// for its reader, it would have waited where the kernel's does not.
        KernelRoom = "kernel-had-room",
        /// IPC writer (without write-behind): a nonblocking write whose
        /// reader's last read asked for less than the threshold went to the
        /// kernel; held for its reader, it would have waited for as many of
        /// that reader's calls as its bytes fill.
        SmallReads = "reader-reads-small",
        /// IPC reader: a nonblocking socket or MSG_DONTWAIT.
        Nonblocking = "nonblocking",
        /// IPC reader: no writer offered bytes; the call read what the
        /// kernel had (or its EAGAIN).
        NoOffer = "no-offer",
        /// IPC: MSG_PEEK, MSG_OOB, ancillary data, a named destination, or
        /// too many buffers.
        Unsupported = "unsupported-call",
        /// IPC: another thread of the process was using the channel, or the
        /// channel table was full.
        Busy = "busy",
        /// IPC reader: the opt-in failed (sock_diag, or the name is taken).
        OptInFailed = "opt-in-failed",
        /// IPC reader: bytes written through the kernel were queued first.
        KernelFirst = "kernel-bytes-first",
        /// IPC reader: a signal interrupted the wait.
        Interrupted = "interrupted",
        /// IPC reader: SO_RCVTIMEO expired.
        TimedOut = "timed-out",
        /// IPC: the peer exited during a transfer.
        PeerGone = "peer-gone",
        /// IPC: the peer wrote garbage into the ring; the ring was dropped.
        Corrupt = "corrupt",
        /// IPC reader: the ring_bytes budget was used up.
        RingBudget = "ring-budget",
        /// IPC writer: the socket cannot send (shut down, no peer): the
        /// kernel reports the error.
        SocketError = "socket-error",
        /// IPC writer: nobody holds the pipe's read end: the kernel
        /// reports the error (EPIPE, SIGPIPE).
        NoReaders = "no-readers",
        /// TCP: the connection's peer is not on an address `[tcp]
        /// addresses` serves (not loopback; with `local`, not an address of
        /// this host), or no socket of this host and namespace is its other
        /// end (an address translated on the way): the kernel path, for
        /// good on that socket.
        NotLocal = "not-local",
    }
}

impl Fallback {
    /// The reasons that apply to copies (the memcpy class).
    pub const COPY: &'static [Fallback] = &[
        Fallback::OverlapClose,
        Fallback::PoolSaturated,
        Fallback::PoolUnavailable,
        Fallback::Reentrant,
        Fallback::Panic,
        Fallback::DsaUnavailable,
        Fallback::DsaError,
    ];

    /// The reasons that apply to the IPC classes (their copies into and out
    /// of rings fall back like any copy, but are not counted separately).
    pub const IPC: &'static [Fallback] = &[
        Fallback::NoPeer,
        Fallback::NotWaiting,
        Fallback::NotTaken,
        Fallback::KernelRoom,
        Fallback::SmallReads,
        Fallback::Nonblocking,
        Fallback::NoOffer,
        Fallback::Unsupported,
        Fallback::Busy,
        Fallback::OptInFailed,
        Fallback::KernelFirst,
        Fallback::Interrupted,
        Fallback::TimedOut,
        Fallback::PeerGone,
        Fallback::Corrupt,
        Fallback::RingBudget,
        Fallback::SocketError,
        Fallback::NoReaders,
        Fallback::NotLocal,
        Fallback::Reentrant,
        Fallback::Panic,
    ];
}

/// What happened to one large copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The engine that moved the bytes.
    pub engine: EngineId,
    /// Set when `engine` is not the one the policy chose.
    pub fallback: Option<Fallback>,
    /// The destination writes went around the cache (non-temporal stores,
    /// or DSA without its cache-control flag).
    pub bypassed: bool,
}

impl Outcome {
    /// The chosen engine did the copy.
    pub fn done_by(engine: EngineId) -> Self {
        Outcome { engine, fallback: None, bypassed: false }
    }

    /// The CPU did the copy instead of the chosen engine.
    pub fn fell_back(reason: Fallback) -> Self {
        Outcome { engine: EngineId::Cpu, fallback: Some(reason), bypassed: false }
    }

    /// The same outcome, its writes around the cache when `yes`.
    pub fn bypassing(self, yes: bool) -> Self {
        Outcome { bypassed: yes, ..self }
    }
}

/// How a copy is to be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyOptions {
    /// The engine chosen by the policy (never `auto` here).
    pub engine: EngineId,
    /// The class the copy is counted under.
    pub class: Class,
    /// How the caller waits for workers.
    pub wait: Wait,
    /// At most this many workers are woken to help.
    pub helpers: u32,
    /// Copies shorter than this go into the cache (ordinary stores; DSA's
    /// cache-control flag), longer ones around it (non-temporal stores; no
    /// flag): `usize::MAX` for `cache = "inject"`, 0 for `"bypass"`, a
    /// size tied to the last-level cache for `"auto"`.
    pub cache_below: usize,
    /// async-cpu: the largest part of a split copy; dsa: the largest
    /// descriptor.
    pub chunk_bytes: usize,
    /// dsa: descriptors in flight per copy.
    pub depth: u32,
    /// The hybrid engine's CPU share in thousandths (`None`: tuned).
    pub cpu_share: Option<u16>,
}

impl CopyOptions {
    /// Whether a copy of `len` bytes goes around the cache.
    pub fn bypass(&self, len: usize) -> bool {
        len >= self.cache_below
    }
}
