//! Start-up and shutdown: the constructor's work, and the final stats write
//! at exit and `_exit`.
//!
//! Start-up order matters: the real libc functions are resolved first (until
//! then the hooks use `rep movsb`), the memcpy threshold is lowered last,
//! once everything a slow path reads is in place.

use core::sync::atomic::Ordering::Release;
use std::ffi::CString;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use ipc_offload_engine::pool::POOL;
use ipc_offload_policy::{Class, Engine, Policy, Rejected, format_size};
use ipc_offload_sys::real::{self, REAL};
use ipc_offload_sys::{self as sys, cpus};

use crate::env::{self, Env};
use crate::log::{self, Level};
use crate::plan::{self, Plan};
use crate::process::{self, Identity};
use crate::state::{self, Settings};
use crate::{log_at, stats_file};

/// The exit status of a process whose policy is rejected under strict mode.
pub const STRICT_EXIT: i32 = 2;

/// The library constructor. `argv0` is the program's argv\[0\] as glibc
/// passes it to constructors. Never panics, never changes errno.
pub fn start(argv0: Option<&[u8]>) {
    let _errno = sys::ErrnoGuard::save();
    if catch_unwind(AssertUnwindSafe(|| start_inner(argv0))).is_err() {
        log_at!(Error, "internal error during start-up; every hook passes through to libc");
    }
}

fn start_inner(argv0: Option<&[u8]>) {
    let missing = real::resolve()
        .and(ipc_offload_sys::real::io::resolve())
        .and(ipc_offload_sys::real::wait::resolve())
        .and(ipc_offload_sys::real::mapping::resolve());
    crate::ipc::twins::new_magic();
    if sys::is_secure_exec() {
        return; // set-user-ID and friends: trust no variable, stay inert
    }
    let env = Env::from_process();
    log::set_level(env.log);
    for (name, value, used) in &env.complaints {
        log_at!(Warn, "{name}={value:?} is not understood; using {used}");
    }
    if let Err(e) = missing {
        log_at!(Warn, "{e}");
    }
    if env.off {
        log_at!(Debug, "{}=off: every hook passes through to libc", env::SWITCH);
        return;
    }
    process::claim();
    let (policy, source) = match &env.policy {
        None => (Policy::builtin(), "built-in".to_owned()),
        Some(path) => {
            let source = Path::new(path).display().to_string();
            match Policy::load(Path::new(path)) {
                Ok(policy) => (policy, source),
                Err(rejected) => return reject(&rejected, &source, env.strict),
            }
        }
    };
    let identity = Identity::current(argv0);
    let resolved = policy.resolve(&identity.names());
    let budget = cpus::current();
    let llc = cpus::last_level_cache(Path::new("/sys/devices/system/cpu"));
    let dsa = open_dsa(&policy, &resolved);
    let plan = plan::plan(&resolved, plan::Machine { cpus: budget.available(), llc, dsa });
    for note in &plan.notes {
        log_at!(Warn, "{note}");
    }
    announce(&source, &identity, &resolved.matched, &plan, budget);
    POOL.configure(plan.workers, plan.idle_wait);
    // Workers run on the CPUs the process started with, not on those of
    // whichever thread makes the first large copy (it may have pinned itself).
    if let Ok(mask) = sys::thread::current_affinity() {
        POOL.set_affinity(&mask);
    }
    let settings = state::set(Settings::new(source, identity, resolved.matched, plan));
    if let Some(destination) = &env.stats {
        start_stats(destination, env.stats_root, policy.stats_interval);
    }
    if let Err(e) = crate::fork::install_handler() {
        log_at!(Warn, "pthread_atfork failed ({e}): fork children copy with libc only");
    }
    crate::ipc::ctx::init();
    // The read/write hooks' one compare: the lowest threshold of the IPC
    // classes that are on (each class checks its own after).
    let io_min = [Class::Unix, Class::Pipe, Class::Tcp]
        .into_iter()
        .filter(|c| settings.options[c.index()].is_some())
        .map(|c| crate::ipc::ctx::threshold(c, settings.plan.class(c).rule.min_bytes))
        .min();
    if let Some(min) = io_min {
        // Readers with small buffers opt in once their filled reads carried
        // the lowest `handshake_after` (ipc/streak.rs).
        let after = [Class::Unix, Class::Pipe, Class::Tcp]
            .into_iter()
            .filter(|c| settings.options[c.index()].is_some())
            .map(|c| settings.plan.class(c).rule.handshake_after)
            .min()
            .unwrap_or(u64::MAX);
        crate::ipc::streak::set_bar(after);
        let io = &ipc_offload_sys::real::io::REAL_IO;
        io.stream_min.store(crate::ipc::streak::FULL_READ_MIN, Release);
        io.io_min.store(usize::try_from(min).unwrap_or(usize::MAX).max(1), Release);
    }
    // The memcpy-family hooks' one compare: the lower of [memcpy] and [shm].
    if let Some(min) = crate::mapping::enable(settings) {
        REAL.memcpy_min.store(min, Release);
    }
    for (class, threshold) in [(Class::Memset, &REAL.memset_min), (Class::Memcmp, &REAL.memcmp_min)] {
        if settings.options[class.index()].is_some() {
            let min = settings.plan.class(class).rule.min_bytes;
            threshold.store(usize::try_from(min).unwrap_or(usize::MAX).max(1), Release);
        }
    }
}

/// Finds the DSA device when a class asks for the `dsa` or `hybrid`
/// engine (it opens at first use); true when there is one to open.
fn open_dsa(policy: &Policy, resolved: &ipc_offload_policy::Resolved) -> bool {
    let wanted: Vec<Class> = Class::ALL
        .iter()
        .copied()
        .filter(|c| matches!(resolved.rule(*c).engine, Engine::Dsa | Engine::Hybrid))
        .collect();
    let Some(first) = wanted.first() else { return false };
    match crate::dsa_setup::prepare(&policy.dsa, resolved.rule(*first).wait) {
        Ok(kind) => {
            log_at!(Info, "DSA: {} device, opened at first use", kind.name());
            true
        }
        Err(why) => {
            // The plan's note warns that the engine is unavailable; this
            // says why, for whoever asks for details.
            log_at!(Info, "DSA: {why}");
            false
        }
    }
}

/// Reports a rejected policy and either stays inert or, when strict, exits.
fn reject(rejected: &Rejected, source: &str, env_strict: bool) {
    for d in &rejected.diagnostics {
        log::raw_line(d.to_string().as_bytes());
    }
    let count = rejected.diagnostics.len();
    let errors = if count == 1 { "1 error".to_owned() } else { format!("{count} errors") };
    if rejected.strict || env_strict {
        let why = if rejected.strict { "strict = true" } else { "IPC_OFFLOAD_STRICT is on" };
        log_at!(Error, "policy {source} rejected ({errors}) and {why}: exiting with status {STRICT_EXIT}");
        real::exit(STRICT_EXIT);
    }
    log_at!(Error, "policy {source} rejected ({errors}); every hook passes through to libc");
}

fn start_stats(destination: &std::ffi::OsStr, inherited_root: Option<i32>, interval: std::time::Duration) {
    let root = match inherited_root {
        Some(root) => root,
        None => {
            // The first process of the tree: descendants learn our pid.
            let me = sys::getpid();
            let value = CString::new(me.to_string()).unwrap_or_default();
            let name = CString::new(env::STATS_ROOT).unwrap_or_default();
            if let Err(e) = sys::setenv_single_threaded(&name, &value) {
                log_at!(Warn, "cannot set {}: {e}", env::STATS_ROOT);
            }
            me
        }
    };
    match stats_file::enable(destination, root, interval) {
        Ok(()) => stats_file::write(false),
        Err(e) => log_at!(Warn, "{}={}: {e}; no stats", env::STATS, Path::new(destination).display()),
    }
}

/// The start-up summary (info level).
fn announce(source: &str, identity: &Identity, matched: &[String], plan: &Plan, budget: cpus::CpuBudget) {
    if !log::enabled(Level::Info) {
        return;
    }
    let quota = budget.quota.map_or(String::new(), |q| format!(", cgroup quota {q:.2}"));
    let matched = if matched.is_empty() { "none".to_owned() } else { matched.join(", ") };
    log_at!(
        Info,
        "process {:?} (exe {:?}); policy {source}; overrides matched: {matched}; mode {}; {} CPU(s) available (affinity {}{quota}); pool of {} worker(s); cache = \"auto\" bypasses the cache from {}",
        identity.display(),
        identity.exe,
        plan.mode,
        budget.available(),
        budget.affinity,
        plan.workers,
        if plan.cache_limit == u64::MAX {
            "never (cache size unknown)".to_owned()
        } else {
            format_size(plan.cache_limit)
        }
    );
    for class in Class::ALL {
        let p = plan.class(*class);
        match p.engine {
            Some(engine) => log_at!(
                Info,
                "[{class}] {} for copies of {} or more, {} helper(s), wait {}",
                engine.name(),
                format_size(p.rule.min_bytes),
                p.helpers,
                p.wait
            ),
            None => log_at!(Info, "[{class}] off"),
        }
    }
}

/// Process exit (the library destructor) and `_exit`: the last stats write.
/// Skipped in a vfork child, whose memory is its parent's.
pub fn finish() {
    let _errno = sys::ErrnoGuard::save();
    if process::is_owner() {
        let _ = catch_unwind(crate::ipc::behind::at_exit);
        let _ = catch_unwind(stats_file_final);
    }
}

fn stats_file_final() {
    stats_file::write(true);
}
