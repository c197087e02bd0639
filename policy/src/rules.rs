//! A parsed policy ([`Policy`]): the built-in one, its `[process."GLOB"]`
//! overrides, and the [`Rule`] per class it resolves to for a process. A
//! leaf beside the parser: the parser builds these, and reading a policy
//! file ([`Policy::load`]) lives with the parser.

use std::time::Duration;

use crate::model::{
    Addresses, Cache, Class, ClassSettings, CpuShare, DsaSettings, Engine, Mode, Settings, Wait, Workers,
};

/// The policy that applies when `IPC_OFFLOAD_POLICY` is not set, as a file.
/// [`Policy::builtin`] is this text, parsed (a unit test keeps them equal).
pub const BUILTIN_POLICY: &str = r#"# ipc-offload built-in policy: what applies when IPC_OFFLOAD_POLICY is unset.
strict = false
stats_interval = "1s"

[defaults]
mode = "throughput"

[memcpy]
engine = "auto"
min_bytes = "1MiB"
workers = "auto"
cache = "auto"

[unix]
engine = "auto"
min_bytes = "256KiB"
workers = "auto"
ring_bytes = "64MiB"
handshake_after = "4MiB"
write_behind = false
cache = "auto"

[pipe]
engine = "auto"
min_bytes = "256KiB"
workers = "auto"
ring_bytes = "64MiB"
handshake_after = "4MiB"
cache = "auto"

[memset]
engine = "off"
min_bytes = "1MiB"
workers = "auto"
cache = "auto"

[memcmp]
engine = "off"
min_bytes = "1MiB"
workers = "auto"
cache = "auto"

[shm]
engine = "auto"
min_bytes = "1MiB"
workers = "auto"
cache = "auto"

[tcp]
engine = "auto"
min_bytes = "256KiB"
workers = "auto"
ring_bytes = "64MiB"
handshake_after = "4MiB"
write_behind = false
cache = "auto"
addresses = "loopback"

[dsa]
device = "auto"
on_fault = "resubmit"
sysfs = "/sys"
model_fault_every = 0
model_slowdown = 1
model_shared = false
"#;

const DEFAULT_MODE: Mode = Mode::Throughput;
const DEFAULT_RING_BYTES: u64 = 64 << 20;
/// The IPC classes' built-in `handshake_after` (docs/ipc-protocol.md, "A
/// connection earns the fast path").
const DEFAULT_HANDSHAKE_AFTER: u64 = 4 << 20;
const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Built-in `(engine, min_bytes)` per class, indexed by [`Class::index`].
const CLASS_DEFAULTS: [(Engine, u64); Class::COUNT] = [
    (Engine::Auto, 1 << 20),
    (Engine::Auto, 256 << 10),
    (Engine::Auto, 256 << 10),
    (Engine::Off, 1 << 20),
    (Engine::Off, 1 << 20),
    // [shm]: the same as [memcpy] (its own section: docs/guide/policy.md).
    (Engine::Auto, 1 << 20),
    // [tcp]: as [unix].
    (Engine::Auto, 256 << 10),
];

/// A `[process."GLOB"]` section.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// Matched against basename(argv\[0\]) and basename(/proc/self/exe).
    pub pattern: glob::Pattern,
    /// What the section sets.
    pub settings: Settings,
}

/// A validated policy file (or the built-in policy).
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// `strict`: exit 2 instead of running as a pass-through when rejected.
    pub strict: bool,
    /// `stats_interval`: how often a running process rewrites its stats file.
    pub stats_interval: Duration,
    /// The file's top-level sections over the built-in values.
    pub base: Settings,
    /// `[process."GLOB"]` sections, in file order.
    pub overrides: Vec<Override>,
    /// `[dsa]`: one device setting for the whole process.
    pub dsa: DsaSettings,
}

/// The settings that govern one class in one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The engine as the policy names it (`auto` is decided by the runtime).
    pub engine: Engine,
    /// Calls moving fewer bytes than this are not intercepted.
    pub min_bytes: u64,
    /// Copy workers this class may use.
    pub workers: Workers,
    /// How a caller waits for its copy to complete.
    pub wait: Wait,
    /// IPC classes: most bytes of rings this process may create.
    pub ring_bytes: u64,
    /// IPC classes: bytes a connection's writer sends through the kernel
    /// before it asks its reader for a ring.
    pub handshake_after: u64,
    /// Where offloaded destination writes go.
    pub cache: Cache,
    /// The hybrid engine's CPU share.
    pub cpu_share: CpuShare,
    /// IPC: bytes of a ring slot; copies: largest part or descriptor.
    pub chunk_bytes: u64,
    /// IPC: slots of a ring; copies: descriptors in flight (dsa).
    pub depth: u32,
    /// `[tcp]`: which peers' connections are served.
    pub addresses: Addresses,
    /// `[unix]`: a nonblocking writer's write may return once its bytes
    /// are placed, before its reader took them (docs/ipc-protocol.md,
    /// "Write-behind").
    pub write_behind: bool,
}

/// A policy applied to one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The mode after overrides.
    pub mode: Mode,
    /// One rule per class, indexed by [`Class::index`].
    pub rules: [Rule; Class::COUNT],
    /// The patterns of the overrides that matched, in the order applied.
    pub matched: Vec<String>,
}

impl Resolved {
    /// The rule for `class`.
    pub fn rule(&self, class: Class) -> Rule {
        self.rules[class.index()]
    }
}

impl Policy {
    /// The built-in policy (the same as [`BUILTIN_POLICY`]).
    pub fn builtin() -> Policy {
        let mut base = Settings { mode: Some(DEFAULT_MODE), ..Settings::default() };
        for (class, (engine, min_bytes)) in Class::ALL.iter().zip(CLASS_DEFAULTS) {
            *base.class_mut(*class) = ClassSettings {
                engine: Some(engine),
                min_bytes: Some(min_bytes),
                workers: Some(Workers::Auto),
                wait: None,
                ring_bytes: class.is_ipc().then_some(DEFAULT_RING_BYTES),
                handshake_after: class.is_ipc().then_some(DEFAULT_HANDSHAKE_AFTER),
                cache: Some(Cache::Auto),
                cpu_share: None,
                chunk_bytes: None,
                depth: None,
                addresses: (*class == Class::Tcp).then_some(Addresses::Loopback),
                write_behind: matches!(class, Class::Unix | Class::Tcp).then_some(false),
            };
        }
        Policy {
            strict: false,
            stats_interval: DEFAULT_STATS_INTERVAL,
            base,
            overrides: Vec::new(),
            dsa: DsaSettings::default(),
        }
    }

    /// The rules for a process known by `names` (basenames of argv\[0\] and of
    /// /proc/self/exe): the base settings, then every override whose pattern
    /// matches one of the names, in file order, later values winning.
    pub fn resolve(&self, names: &[&str]) -> Resolved {
        let mut settings = self.base.clone();
        let mut matched = Vec::new();
        for o in &self.overrides {
            if names.iter().any(|name| o.pattern.matches(name)) {
                settings.overlay(&o.settings);
                matched.push(o.pattern.as_str().to_owned());
            }
        }
        let mode = settings.mode.unwrap_or(DEFAULT_MODE);
        let rules = core::array::from_fn(|i| {
            let s = &settings.classes[i];
            let (engine, min_bytes) = CLASS_DEFAULTS[i];
            Rule {
                engine: s.engine.unwrap_or(engine),
                min_bytes: s.min_bytes.unwrap_or(min_bytes),
                workers: s.workers.unwrap_or(Workers::Auto),
                wait: s.wait.unwrap_or(mode.default_wait()),
                ring_bytes: s.ring_bytes.unwrap_or(DEFAULT_RING_BYTES),
                handshake_after: s.handshake_after.unwrap_or(DEFAULT_HANDSHAKE_AFTER),
                cache: s.cache.unwrap_or(Cache::Auto),
                cpu_share: s.cpu_share.unwrap_or(CpuShare::Auto),
                chunk_bytes: s.chunk_bytes.unwrap_or_else(|| mode.chunk_bytes(Class::ALL[i])),
                depth: s.depth.unwrap_or_else(|| mode.depth(Class::ALL[i])),
                addresses: s.addresses.unwrap_or(Addresses::Loopback),
                write_behind: s.write_behind.unwrap_or(false),
            }
        });
        Resolved { mode, rules, matched }
    }
}
