//! The vocabulary of a policy: operation classes, engines, modes, wait methods,
//! and the settings a section or a process override can carry.

/// Defines a fieldless enum whose variants have fixed spellings (in policy
/// files, stats files and logs), with `ALL`, `NAMES`, `COUNT`, `name`,
/// `from_name`, `index` (position in arrays keyed by the enum) and `Display`.
#[macro_export]
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in the order the documentation lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The spellings, in the same order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];
            /// Number of values: the length of arrays keyed by this enum.
            pub const COUNT: usize = Self::ALL.len();

            /// The spelling of this value.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses a spelling; `None` for anything else.
            pub fn from_name(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }

            /// Position of this value in arrays keyed by the enum.
            pub fn index(self) -> usize {
                self as usize
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

named_enum! {
    /// An operation class: which calls a section of the policy governs.
    Class {
        /// memcpy, memmove, mempcpy and their `_chk` forms.
        Memcpy = "memcpy",
        /// Reads and writes on Unix-domain stream sockets.
        Unix = "unix",
        /// Reads and writes on pipes and FIFOs.
        Pipe = "pipe",
        /// memset and `__memset_chk` (off unless a policy turns it on).
        Memset = "memset",
        /// memcmp and bcmp (off unless a policy turns it on).
        Memcmp = "memcmp",
        /// memcpy-family copies whose source or destination lies in a
        /// shared-memory region (POSIX shm, memfd, tmpfs and hugetlbfs files,
        /// shared anonymous memory) that the library saw mapped.
        Shm = "shm",
        /// Reads and writes on TCP sockets (IPv4 and IPv6) whose peer is a
        /// socket of this host, in this network namespace (`addresses`).
        Tcp = "tcp",
    }
}

impl Class {
    /// True for the classes that move bytes between processes.
    pub fn is_ipc(self) -> bool {
        matches!(self, Class::Unix | Class::Pipe | Class::Tcp)
    }

    /// True for memset and memcmp: one buffer filled, or two compared, not
    /// a copy (only `cpu` and `dsa` serve them).
    pub fn is_memory_op(self) -> bool {
        matches!(self, Class::Memset | Class::Memcmp)
    }
}

named_enum! {
    /// The engine that moves the bytes of a large copy.
    Engine {
        /// Pick the best available engine, silently.
        Auto = "auto",
        /// The real libc memcpy (for IPC classes: shared memory with libc copies).
        Cpu = "cpu",
        /// A pool of copy threads; the caller copies a share too.
        AsyncCpu = "async-cpu",
        /// Intel Data Streaming Accelerator work queues.
        Dsa = "dsa",
        /// One copy split between the CPU and DSA.
        Hybrid = "hybrid",
        /// Not intercepted: the real call (for IPC classes: the kernel path).
        Off = "off",
    }
}

named_enum! {
    /// The trade-off a process asks for.
    Mode {
        /// Lowest latency per copy: the caller spins while it waits.
        Latency = "latency",
        /// Most bytes per second.
        Throughput = "throughput",
        /// Fewest CPU cycles per byte: waiters sleep.
        Efficiency = "efficiency",
    }
}

impl Mode {
    /// The wait method a class uses when its section does not name one.
    pub fn default_wait(self) -> Wait {
        match self {
            Mode::Latency => Wait::Spin,
            Mode::Throughput => Wait::SpinThenSleep,
            Mode::Efficiency => Wait::Sleep,
        }
    }

    /// `chunk_bytes` when the section does not set it: the IPC classes'
    /// ring slot (the pipelining step between writer and reader), the copy
    /// classes' largest part (async-cpu) or descriptor (dsa).
    pub fn chunk_bytes(self, class: Class) -> u64 {
        // IPC: 256 KiB measured best for latency and for throughput alike on
        // the project's machines (64 KiB: more hand-overs; 1 MiB: slots
        // leave the L2 cache, streams fall to a quarter).
        match (self, class.is_ipc()) {
            (_, true) => 256 << 10,
            (Mode::Latency, false) => 256 << 10,
            (Mode::Throughput | Mode::Efficiency, false) => 2 << 20,
        }
    }

    /// `depth` when the section does not set it: the IPC classes' ring
    /// slots, the copy classes' descriptors in flight per copy (dsa).
    pub fn depth(self, class: Class) -> u32 {
        match (self, class.is_ipc()) {
            (Mode::Latency | Mode::Throughput, _) => 16,
            (Mode::Efficiency, true) => 8,
            (Mode::Efficiency, false) => 4,
        }
    }
}

named_enum! {
    /// Which TCP connections `[tcp]` serves, by the peer's address.
    Addresses {
        /// Peers on a loopback address (127.0.0.0/8, ::1, and IPv4-mapped
        /// 127.x): traffic that never leaves the host.
        Loopback = "loopback",
        /// Peers on a loopback address or on any address of this host (in
        /// this network namespace): also a service reached by the host's
        /// own IP.
        Local = "local",
    }
}

/// Accepted `chunk_bytes`: multiples of 4 KiB in this range.
pub const CHUNK_BYTES: core::ops::RangeInclusive<u64> = (4 << 10)..=(64 << 20);
/// Accepted `depth`.
pub const DEPTH: core::ops::RangeInclusive<u32> = 1..=64;

named_enum! {
    /// How a thread waits for copies that other agents are completing.
    Wait {
        /// Busy-poll with a pause hint.
        Spin = "spin",
        /// Block in the kernel (futex) at once.
        Sleep = "sleep",
        /// Busy-poll briefly, then block.
        SpinThenSleep = "spin-then-sleep",
        /// UMONITOR/UMWAIT on a DSA completion record (waitpkg); the CPU
        /// engines use spin-then-sleep instead.
        Umwait = "umwait",
        /// Poll, giving the CPU away between polls.
        Yield = "yield",
    }
}

named_enum! {
    /// Where an offloaded copy's destination writes go.
    Cache {
        /// Inject what a reader will want soon (IPC ring chunks, copies
        /// below the last-level cache's size), bypass the cache for larger
        /// copies.
        Auto = "auto",
        /// Into the cache: ordinary stores on the CPU engines, DSA's
        /// cache-control flag.
        Inject = "inject",
        /// Around the cache, to memory: non-temporal stores on the CPU
        /// engines, no cache-control flag on DSA.
        Bypass = "bypass",
    }
}

/// The hybrid engine's CPU share of a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CpuShare {
    /// Tuned from each copy's observed waits.
    Auto,
    /// This many thousandths of each copy, always.
    Permille(u16),
}

impl core::fmt::Display for CpuShare {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CpuShare::Auto => f.write_str("auto"),
            CpuShare::Permille(p) => write!(f, "{}", f64::from(*p) / 1000.0),
        }
    }
}

named_enum! {
    /// Which DSA device the `dsa` and `hybrid` engines use.
    DsaDevice {
        /// The hardware's work queues when there are usable ones, else none.
        Auto = "auto",
        /// The hardware's work queues only.
        Hardware = "hardware",
        /// The software model of the device, on a thread of the process
        /// (for testing and for demonstrating the engine without hardware).
        Model = "model",
    }
}

named_enum! {
    /// What the `dsa` engine does about a page fault the device reports.
    OnFault {
        /// Touch the page and submit the rest of the descriptor again.
        Resubmit = "resubmit",
        /// Finish the descriptor on the CPU.
        Cpu = "cpu",
    }
}

/// The `[dsa]` section: how the DSA device is found and driven.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DsaSettings {
    /// `device`.
    pub device: DsaDevice,
    /// `on_fault`.
    pub on_fault: OnFault,
    /// `sysfs`: where the devices and work queues are listed.
    pub sysfs: String,
    /// `model_fault_every`: with the model, every N-th descriptor reports a
    /// page fault on a destination write (0: none), to exercise the fault
    /// path end to end.
    pub model_fault_every: u32,
    /// `model_slowdown`: with the model, each descriptor takes this many
    /// times as long as its plain copy (1: as fast as the model can).
    pub model_slowdown: u32,
    /// `model_shared`: the model acts as a shared queue (ENQCMD, which may
    /// refuse) rather than a dedicated one (MOVDIR64B).
    pub model_shared: bool,
}

impl Default for DsaSettings {
    fn default() -> Self {
        DsaSettings {
            device: DsaDevice::Auto,
            on_fault: OnFault::Resubmit,
            sysfs: "/sys".to_owned(),
            model_fault_every: 0,
            model_slowdown: 1,
            model_shared: false,
        }
    }
}

/// How many copy workers a class may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Workers {
    /// One fewer than the CPUs this process may run on (affinity mask and
    /// cgroup CPU quota), at most [`Workers::AUTO_MAX`].
    Auto,
    /// Exactly this many (0 means the caller copies alone).
    Count(u32),
}

impl Workers {
    /// Upper bound of an explicit `workers` value.
    pub const MAX: u32 = 256;
    /// Upper bound of `auto`: beyond this, memory bandwidth, not threads, limits a copy.
    pub const AUTO_MAX: u32 = 16;

    /// The worker count for a process that may run on `cpus` CPUs.
    pub fn count(self, cpus: u32) -> u32 {
        match self {
            Workers::Auto => cpus.saturating_sub(1).min(Self::AUTO_MAX),
            Workers::Count(n) => n,
        }
    }
}

impl core::fmt::Display for Workers {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Workers::Auto => f.write_str("auto"),
            Workers::Count(n) => write!(f, "{n}"),
        }
    }
}

/// What one section (`[memcpy]`, `[unix]`, `[pipe]`) sets; `None` leaves the
/// value to earlier layers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassSettings {
    /// `engine`.
    pub engine: Option<Engine>,
    /// `min_bytes`: copies of this many bytes or more are intercepted.
    pub min_bytes: Option<u64>,
    /// `workers`.
    pub workers: Option<Workers>,
    /// `wait`.
    pub wait: Option<Wait>,
    /// `ring_bytes` (IPC classes): the per-process budget of ring memory.
    pub ring_bytes: Option<u64>,
    /// `handshake_after` (IPC classes): bytes a connection's writer sends
    /// through the kernel before it asks its reader for a ring.
    pub handshake_after: Option<u64>,
    /// `cache`.
    pub cache: Option<Cache>,
    /// `cpu_share` (the hybrid engine).
    pub cpu_share: Option<CpuShare>,
    /// `chunk_bytes` (see [`Mode::chunk_bytes`]).
    pub chunk_bytes: Option<u64>,
    /// `depth` (see [`Mode::depth`]).
    pub depth: Option<u32>,
    /// `addresses` (`[tcp]` only).
    pub addresses: Option<Addresses>,
    /// `write_behind` (`[unix]` and `[tcp]`).
    pub write_behind: Option<bool>,
}

impl ClassSettings {
    /// Overlays `other` on `self`: values `other` sets win.
    pub fn overlay(&mut self, other: &ClassSettings) {
        self.engine = other.engine.or(self.engine);
        self.min_bytes = other.min_bytes.or(self.min_bytes);
        self.workers = other.workers.or(self.workers);
        self.wait = other.wait.or(self.wait);
        self.ring_bytes = other.ring_bytes.or(self.ring_bytes);
        self.handshake_after = other.handshake_after.or(self.handshake_after);
        self.cache = other.cache.or(self.cache);
        self.cpu_share = other.cpu_share.or(self.cpu_share);
        self.chunk_bytes = other.chunk_bytes.or(self.chunk_bytes);
        self.depth = other.depth.or(self.depth);
        self.addresses = other.addresses.or(self.addresses);
        self.write_behind = other.write_behind.or(self.write_behind);
    }
}

/// One layer of settings: the file's top level, or one `[process."GLOB"]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// `[defaults] mode`.
    pub mode: Option<Mode>,
    /// One entry per [`Class`], indexed by [`Class::index`].
    pub classes: [ClassSettings; Class::COUNT],
}

impl Settings {
    /// Overlays `other` on `self`: values `other` sets win.
    pub fn overlay(&mut self, other: &Settings) {
        self.mode = other.mode.or(self.mode);
        for (mine, theirs) in self.classes.iter_mut().zip(other.classes.iter()) {
            mine.overlay(theirs);
        }
    }

    /// The section for `class`.
    pub fn class(&self, class: Class) -> &ClassSettings {
        &self.classes[class.index()]
    }

    /// The section for `class`, mutable.
    pub fn class_mut(&mut self, class: Class) -> &mut ClassSettings {
        &mut self.classes[class.index()]
    }
}
