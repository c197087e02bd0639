//! The environment variables the library reads, read once in the
//! constructor. In a secure-execution process (set-user-ID and the like)
//! none is trusted and the library stays inert.

use std::ffi::OsString;

use crate::log::Level;

/// `IPC_OFFLOAD`: the kill switch.
pub const SWITCH: &str = "IPC_OFFLOAD";
/// `IPC_OFFLOAD_POLICY`: the policy file.
pub const POLICY: &str = "IPC_OFFLOAD_POLICY";
/// `IPC_OFFLOAD_STRICT`: exit 2 on any policy error.
pub const STRICT: &str = "IPC_OFFLOAD_STRICT";
/// `IPC_OFFLOAD_LOG`: stderr log level.
pub const LOG: &str = "IPC_OFFLOAD_LOG";
/// `IPC_OFFLOAD_STATS`: stats file, or `-` for stderr.
pub const STATS: &str = "IPC_OFFLOAD_STATS";
/// `IPC_OFFLOAD_STATS_ROOT`: set by the library for descendants: the pid of
/// the process that writes the stats file itself (the others add `.PID`).
pub const STATS_ROOT: &str = "IPC_OFFLOAD_STATS_ROOT";

/// What the environment asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Env {
    /// `IPC_OFFLOAD` turns the library off.
    pub off: bool,
    /// The policy file, if named.
    pub policy: Option<OsString>,
    /// `IPC_OFFLOAD_STRICT` is set to a true value.
    pub strict: bool,
    /// The log level.
    pub log: Level,
    /// The stats destination, if any.
    pub stats: Option<OsString>,
    /// The stats root pid inherited from an ancestor.
    pub stats_root: Option<i32>,
    /// Values that were not understood, as `(variable, value, meaning used)`.
    pub complaints: Vec<(&'static str, String, &'static str)>,
}

/// The spellings of yes (`1`, `on`, `true`, `yes`) and no (`0`, `off`,
/// `false`, `no`), in any case; `None` for anything else.
fn flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" => Some(true),
        "0" | "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

impl Env {
    /// Reads the variables through `get` (the process environment in the
    /// library; a map in tests).
    pub fn read(get: impl Fn(&str) -> Option<OsString>) -> Env {
        let mut env = Env::default();
        // An empty variable counts as unset, as for IPC_OFFLOAD_POLICY.
        let text = |name| get(name).map(|v| v.to_string_lossy().into_owned()).filter(|v| !v.trim().is_empty());
        if let Some(v) = text(SWITCH) {
            env.off = match flag(&v) {
                Some(on) => !on,
                None => {
                    // A kill switch fails safe: anything unclear means off.
                    env.complaints.push((SWITCH, v, "off"));
                    true
                }
            };
        }
        if let Some(v) = text(STRICT) {
            env.strict = flag(&v).unwrap_or_else(|| {
                env.complaints.push((STRICT, v, "not strict"));
                false
            });
        }
        if let Some(v) = text(LOG) {
            env.log = Level::from_name(v.trim()).unwrap_or_else(|| {
                env.complaints.push((LOG, v, "warn"));
                Level::Warn
            });
        }
        env.policy = get(POLICY).filter(|p| !p.is_empty());
        env.stats = get(STATS).filter(|p| !p.is_empty());
        env.stats_root = text(STATS_ROOT).and_then(|v| v.trim().parse().ok());
        env
    }

    /// Reads the process environment.
    pub fn from_process() -> Env {
        Env::read(|name| std::env::var_os(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Env {
        let map: HashMap<String, OsString> = pairs.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        Env::read(|name| map.get(name).cloned())
    }

    #[test]
    fn nothing_set() {
        let e = env(&[]);
        assert!(!e.off && !e.strict && e.policy.is_none() && e.stats.is_none());
        assert_eq!(e.log, Level::Warn);
    }

    #[test]
    fn switch_values() {
        assert!(env(&[("IPC_OFFLOAD", "off")]).off);
        assert!(env(&[("IPC_OFFLOAD", "0")]).off);
        assert!(!env(&[("IPC_OFFLOAD", "on")]).off);
        assert!(!env(&[("IPC_OFFLOAD", "")]).off, "empty is unset");
        assert!(env(&[("IPC_OFFLOAD", "FALSE")]).off);
        let e = env(&[("IPC_OFFLOAD", "disable")]);
        assert!(e.off);
        assert_eq!(e.complaints, vec![("IPC_OFFLOAD", "disable".to_string(), "off")]);
    }

    #[test]
    fn strict_log_stats() {
        let e = env(&[
            ("IPC_OFFLOAD_STRICT", "1"),
            ("IPC_OFFLOAD_LOG", "debug"),
            ("IPC_OFFLOAD_STATS", "/tmp/s.json"),
            ("IPC_OFFLOAD_STATS_ROOT", "42"),
            ("IPC_OFFLOAD_POLICY", ""),
        ]);
        assert!(e.strict);
        assert_eq!(e.log, Level::Debug);
        assert_eq!(e.stats, Some("/tmp/s.json".into()));
        assert_eq!(e.stats_root, Some(42));
        assert_eq!(e.policy, None, "an empty IPC_OFFLOAD_POLICY means the built-in policy");
        let e = env(&[("IPC_OFFLOAD_LOG", "chatty")]);
        assert_eq!(e.log, Level::Warn);
        assert_eq!(e.complaints.len(), 1);
    }
}
