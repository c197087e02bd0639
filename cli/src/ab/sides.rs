//! The two sides of a comparison and the environment each runs with.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A side: A without the library, B with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    A,
    B,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::A => "A",
            Side::B => "B",
        })
    }
}

/// Changes to ab's own environment for one side: `None` removes a
/// variable.
pub type EnvChanges = Vec<(&'static str, Option<OsString>)>;

/// The environment changes of both sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environments {
    pub a: EnvChanges,
    pub b: EnvChanges,
}

impl Environments {
    pub fn of(&self, side: Side) -> &EnvChanges {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }
}

/// The environments for `library` (absolute), B's `policy` (absolute, or
/// `None` to leave `IPC_OFFLOAD_POLICY` as it is) and the `LD_PRELOAD` ab
/// was started with.
///
/// A gets `LD_PRELOAD` without any copy of the library (unset when nothing
/// is left); B gets the library in front of that, separated by a space, as
/// `ipc-offload run` does. Both start a new tree of stats files
/// (`IPC_OFFLOAD_STATS_ROOT` removed).
pub fn environments(library: &Path, policy: Option<&Path>, preload: Option<&OsStr>) -> Environments {
    let others = preload.map(|p| without_library(p, library)).filter(|p| !p.is_empty());
    let mut b_preload = library.as_os_str().to_owned();
    if let Some(others) = &others {
        b_preload.push(" ");
        b_preload.push(others);
    }
    let mut b = vec![("LD_PRELOAD", Some(b_preload)), ("IPC_OFFLOAD_STATS_ROOT", None)];
    if let Some(policy) = policy {
        b.push(("IPC_OFFLOAD_POLICY", Some(policy.as_os_str().to_owned())));
    }
    Environments { a: vec![("LD_PRELOAD", others), ("IPC_OFFLOAD_STATS_ROOT", None)], b }
}

/// `preload` (a list separated by spaces or colons, as ld.so reads it)
/// without the entries that name `library`, or any `libipc_offload.so`,
/// the others kept in order, separated by single spaces.
fn without_library(preload: &OsStr, library: &Path) -> OsString {
    let mut kept = OsString::new();
    for entry in preload.as_bytes().split(|b| *b == b' ' || *b == b':').filter(|e| !e.is_empty()) {
        let entry = OsStr::from_bytes(entry);
        let path = Path::new(entry);
        if path == library || path.file_name() == Some(OsStr::new("libipc_offload.so")) {
            continue;
        }
        if !kept.is_empty() {
            kept.push(" ");
        }
        kept.push(entry);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(changes: &EnvChanges, name: &str) -> Option<Option<String>> {
        changes.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_ref().map(|v| v.to_string_lossy().into_owned()))
    }

    #[test]
    fn without_an_existing_preload() {
        let e = environments(Path::new("/t/libipc_offload.so"), None, None);
        assert_eq!(value(&e.a, "LD_PRELOAD"), Some(None));
        assert_eq!(value(&e.b, "LD_PRELOAD"), Some(Some("/t/libipc_offload.so".into())));
        assert_eq!(value(&e.b, "IPC_OFFLOAD_POLICY"), None, "left as it is");
        assert_eq!(value(&e.a, "IPC_OFFLOAD_STATS_ROOT"), Some(None));
        assert_eq!(value(&e.b, "IPC_OFFLOAD_STATS_ROOT"), Some(None));
    }

    #[test]
    fn the_library_goes_in_front_of_other_preloads_and_out_of_a() {
        let lib = Path::new("/t/libipc_offload.so");
        let e = environments(
            lib,
            Some(Path::new("/p.toml")),
            Some(OsStr::new("/x/liba.so:/t/libipc_offload.so /y/libb.so")),
        );
        assert_eq!(value(&e.a, "LD_PRELOAD"), Some(Some("/x/liba.so /y/libb.so".into())));
        assert_eq!(value(&e.b, "LD_PRELOAD"), Some(Some("/t/libipc_offload.so /x/liba.so /y/libb.so".into())));
        assert_eq!(value(&e.b, "IPC_OFFLOAD_POLICY"), Some(Some("/p.toml".into())));
        // Another copy of the library (another build) is not A's either.
        let e = environments(lib, None, Some(OsStr::new("/old/libipc_offload.so")));
        assert_eq!(value(&e.a, "LD_PRELOAD"), Some(None));
        assert_eq!(value(&e.b, "LD_PRELOAD"), Some(Some("/t/libipc_offload.so".into())));
    }
}
