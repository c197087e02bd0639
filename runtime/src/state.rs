//! What the constructor decided, frozen for the life of the process (a fork
//! child inherits it). Read lock-free by the hooks' slow paths and the stats
//! writer.

use std::sync::OnceLock;
use std::time::Instant;

use ipc_offload_engine::CopyOptions;
use ipc_offload_engine::cache::{self, Dest};
use ipc_offload_policy::Class;

use crate::plan::Plan;
use crate::process::Identity;

/// The process's settings.
#[derive(Debug)]
pub struct Settings {
    /// `built-in`, or the policy file as named.
    pub policy: String,
    /// Names of the process.
    pub identity: Identity,
    /// Patterns of the `[process."GLOB"]` sections that matched.
    pub matched: Vec<String>,
    /// Engines and workers.
    pub plan: Plan,
    /// How each class's copies are made, `None` where not intercepted.
    pub options: [Option<CopyOptions>; Class::COUNT],
    /// When the constructor ran.
    pub started: Instant,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// The settings, once the constructor has made them.
pub fn get() -> Option<&'static Settings> {
    SETTINGS.get()
}

/// Freezes the settings (first call wins).
pub fn set(settings: Settings) -> &'static Settings {
    SETTINGS.get_or_init(|| settings)
}

impl Settings {
    /// Builds the settings of a plan.
    pub fn new(policy: String, identity: Identity, matched: Vec<String>, plan: Plan) -> Settings {
        let options = core::array::from_fn(|i| {
            let class = Class::ALL[i];
            let p = plan.class(class);
            p.engine.map(|engine| CopyOptions {
                engine,
                class,
                wait: p.wait,
                helpers: p.helpers,
                cache_below: cache::cache_below(p.rule.cache, Dest::Copy, plan.cache_limit),
                chunk_bytes: usize::try_from(p.rule.chunk_bytes).unwrap_or(usize::MAX),
                depth: p.rule.depth,
                cpu_share: match p.rule.cpu_share {
                    ipc_offload_policy::CpuShare::Auto => None,
                    ipc_offload_policy::CpuShare::Permille(p) => Some(p),
                },
            })
        });
        Settings { policy, identity, matched, plan, options, started: Instant::now() }
    }
}
