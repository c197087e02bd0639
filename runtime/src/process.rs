//! Which process the library's state belongs to, and who it is.
//!
//! The state (pool, counters, stats target) belongs to the process that ran
//! the constructor, or to a child of fork(2), which the atfork handler
//! (`crate::fork`) adopts. A vfork child shares the parent's memory, and a
//! child of raw clone(2) or `_Fork` runs no atfork handler: in both,
//! getpid() differs from the recorded owner, and the hooks pass every call
//! to libc without touching shared state (but for one counter: a large IPC
//! call that a standing hint sends to the kernel is counted before the
//! owner is asked, see `ipc::hint`).
//!
//! A leaf: it uses no other module of the crate.

use core::sync::atomic::{AtomicI32, Ordering::Relaxed};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use ipc_offload_sys as sys;

static OWNER: AtomicI32 = AtomicI32::new(0);

/// Records the calling process as the owner of the library's state.
pub fn claim() {
    OWNER.store(sys::getpid(), Relaxed);
}

/// True if the calling process owns the state (not a vfork/clone child).
pub fn is_owner() -> bool {
    let owner = OWNER.load(Relaxed);
    owner != 0 && sys::getpid() == owner
}

/// The owner's pid, as [`is_owner`] last checked it: where that returned
/// true, the calling process's pid without a system call; 0 while no
/// process has claimed the state.
pub fn owner_pid() -> i32 {
    OWNER.load(Relaxed)
}

/// How the process is known to `[process."GLOB"]` patterns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// basename(argv\[0\]).
    pub argv0: String,
    /// basename(/proc/self/exe).
    pub exe: String,
}

impl Identity {
    /// From argv\[0\] as given to the constructor, and /proc/self/exe.
    pub fn current(argv0: Option<&[u8]>) -> Identity {
        let base = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let argv0 = argv0.map(|a| base(Path::new(OsStr::from_bytes(a)))).unwrap_or_default();
        let exe = std::fs::read_link("/proc/self/exe").map(|p| base(&p)).unwrap_or_default();
        Identity { argv0, exe }
    }

    /// The distinct non-empty names, for matching.
    pub fn names(&self) -> Vec<&str> {
        let mut names = vec![];
        for n in [self.argv0.as_str(), self.exe.as_str()] {
            if !n.is_empty() && !names.contains(&n) {
                names.push(n);
            }
        }
        names
    }

    /// The name to show: argv\[0\]'s, else the executable's.
    pub fn display(&self) -> &str {
        if self.argv0.is_empty() { &self.exe } else { &self.argv0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_takes_basenames() {
        let id = Identity::current(Some(b"/usr/bin/redis-server"));
        assert_eq!(id.argv0, "redis-server");
        assert!(!id.exe.is_empty());
        assert!(id.names().contains(&"redis-server"));
        let id = Identity { argv0: "x".into(), exe: "x".into() };
        assert_eq!(id.names(), vec!["x"]);
    }

    #[test]
    fn ownership() {
        assert!(!is_owner() || OWNER.load(Relaxed) == sys::getpid());
        claim();
        assert!(is_owner());
    }
}
