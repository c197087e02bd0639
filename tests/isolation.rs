//! Isolation: peers of another uid, of another pid namespace, or behind a
//! restricted /proc never get shared memory; every transfer stays byte-exact
//! through the kernel; the shared objects the library makes are owner-only.
//!
//! The ends run `tests/c/uid_pair.c`, which moves one end apart (uid 65534,
//! or a new pid namespace) before it execs itself under the library, and
//! reports the memfds each end holds and maps. Root is needed (setresuid,
//! namespaces, mounts); without it the tests are skipped with a message.
//! strace shows what crossed the side channel: an OFFER carries the ring's
//! memfd with SCM_RIGHTS, which the application itself never sends here.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ipc_offload_tests::{Outcome, c_program, have, library, read_stats, run, scratch};

const TOTAL: u64 = 32 << 20;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("SKIPPED: needs root");
    }
    root
}

/// A scratch directory anyone may write (the stats files of uid 65534, the
/// FIFO), holding copies of the library and of uid_pair that anyone may
/// read and run.
struct Stage {
    dir: PathBuf,
    lib: PathBuf,
    program: PathBuf,
}

fn stage(name: &str) -> Stage {
    let dir = scratch(name);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let lib = dir.join("libipc_offload.so");
    let program = dir.join("uid_pair");
    std::fs::copy(library(), &lib).unwrap();
    std::fs::copy(c_program("uid_pair", &["-O2", "-fno-builtin"]), &program).unwrap();
    for file in [&lib, &program] {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    Stage { dir, lib, program }
}

/// What one uid_pair run showed.
#[derive(Debug)]
struct Pair {
    out: Outcome,
    /// fast_path_bytes summed over every process's stats file.
    fast: u64,
    /// `no-peer` fallbacks, likewise.
    no_peer: u64,
    /// Lines of the strace log: side-channel and file calls.
    trace: String,
}

impl Pair {
    fn ends(&self) -> Vec<&str> {
        self.out.stdout.lines().filter(|l| l.starts_with("read: ") || l.starts_with("write: ")).collect()
    }

    /// The value after `key` on each end's line.
    fn field<'a>(&'a self, key: &str) -> Vec<&'a str> {
        self.ends()
            .iter()
            .map(|l| {
                let mut words = l.split_whitespace();
                words.find(|w| *w == key).and_then(|_| words.next()).unwrap_or_else(|| panic!("{key} in {l}"))
            })
            .collect()
    }

    fn count(&self, key: &str) -> u64 {
        self.field(key).iter().map(|v| v.parse::<u64>().unwrap()).sum()
    }

    /// Asserts both ends got or sent every byte exactly.
    fn exact(&self) {
        assert!(self.out.status.success(), "{self:#?}");
        let ends = self.ends();
        assert_eq!(ends.len(), 2, "{self:#?}");
        for line in ends {
            assert!(line.contains(&format!(": {TOTAL} bytes ok ")), "{line}: {self:#?}");
        }
    }

    /// Asserts that no shared memory was made or passed.
    fn no_shared_memory(&self) {
        assert_eq!(self.fast, 0, "no byte may take the fast path: {self:#?}");
        assert!(self.no_peer > 0, "the stats say why: {self:#?}");
        assert_eq!((self.count("memfd_fds"), self.count("memfd_maps")), (0, 0), "{self:#?}");
        assert!(!self.trace.contains("SCM_RIGHTS"), "an OFFER was sent: {}", self.trace);
        assert!(!self.trace.contains("memfd_create("), "a ring was made: {}", self.trace);
        assert!(!self.trace.contains("/dev/shm"), "{}", self.trace);
    }
}

fn class(kind: &str) -> &'static str {
    if kind == "unix" { "unix" } else { "pipe" }
}

/// Sums `key` of `class` over DIR/stats.json and its FILE.PID siblings.
fn stats_sum(dir: &Path, class: &str, get: impl Fn(&serde_json::Value) -> u64) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name == "stats.json" || name.strip_prefix("stats.json.").is_some_and(|pid| pid.parse::<u32>().is_ok())
        })
        .map(|p| get(&read_stats(&p)[class]))
        .sum()
}

/// Runs `wrapper... uid_pair ROLE KIND HOW TOTAL DIR` under strace, with the
/// library preloaded into uid_pair only (strace -E).
fn pair(stage: &Stage, wrapper: &[&str], role: &str, kind: &str, how: &str) -> Pair {
    let trace = stage.dir.join("trace");
    let mut cmd = Command::new("strace");
    cmd.env_remove("LD_PRELOAD").args(["-f", "-qq", "-e", "trace=sendmsg,recvmsg,memfd_create,openat,open", "-o"]);
    cmd.arg(&trace);
    cmd.arg("-E").arg(format!("LD_PRELOAD={}", stage.lib.display()));
    cmd.arg("-E").arg(format!("IPC_OFFLOAD_STATS={}", stage.dir.join("stats.json").display()));
    cmd.args(wrapper).arg(&stage.program).args([role, kind, how, &TOTAL.to_string()]).arg(&stage.dir);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("IPC_OFFLOAD") {
            cmd.env_remove(name);
        }
    }
    let out = run(&mut cmd, Duration::from_secs(120));
    let class = class(kind);
    Pair {
        fast: stats_sum(&stage.dir, class, |c| c["fast_path_bytes"].as_u64().unwrap_or(0)),
        no_peer: stats_sum(&stage.dir, class, |c| c["fallbacks"]["no-peer"].as_u64().unwrap_or(0)),
        trace: std::fs::read_to_string(&trace).unwrap_or_default(),
        out,
    }
}

fn ready() -> bool {
    is_root() && have("strace")
}

#[test]
fn a_peer_of_another_uid_gets_no_shared_memory() {
    if !ready() {
        return;
    }
    for kind in ["unix", "pipe", "fifo"] {
        for role in ["read", "write"] {
            let name = format!("uid-{kind}-{role}");
            let p = pair(&stage(&name), &[], role, kind, "nobody");
            p.exact();
            assert!(p.field("uid").contains(&"65534"), "{name}: one end runs as nobody: {p:#?}");
            p.no_shared_memory();
        }
    }
}

/// The control of the test above: the same pair with one uid takes the fast
/// path, through an OFFER that strace sees, with an owner-only sealed ring
/// that uid 65534 cannot open through /proc.
#[test]
fn a_peer_of_the_same_uid_gets_an_owner_only_sealed_ring() {
    if !ready() {
        return;
    }
    for kind in ["unix", "fifo"] {
        let p = pair(&stage(&format!("same-{kind}")), &[], "read", kind, "same");
        p.exact();
        assert!(p.fast > 0, "{kind}: {p:#?}");
        assert!(p.trace.contains("SCM_RIGHTS") && p.trace.contains("memfd_create("), "{kind}: {}", p.trace);
        assert!(!p.trace.contains("/dev/shm"), "{}", p.trace);
        let modes: Vec<&str> = p.field("modes").iter().flat_map(|m| m.trim_matches(['[', ']']).split(',')).collect();
        let modes: Vec<&str> = modes.into_iter().filter(|m| !m.is_empty()).collect();
        assert!(!modes.is_empty(), "{kind}: the reader holds its ring's memfd: {p:#?}");
        for mode in modes {
            let (perm, seals) = mode.split_once('/').unwrap();
            assert_eq!(perm, "600", "{kind}: the ring is owner-only: {p:#?}");
            let seals = u32::from_str_radix(seals, 16).unwrap();
            let wanted = (libc::F_SEAL_SEAL | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK) as u32;
            assert_eq!(seals & wanted, wanted, "{kind}: sealed against resizing: {p:#?}");
        }
        assert_eq!(p.count("others_opened"), 0, "{kind}: uid 65534 opened the ring: {p:#?}");
    }
}

/// SCM_CREDENTIALS carries the sender's pid as the receiver's namespace
/// sees it: across pid namespaces it never matches the pid a REQUEST
/// names, so neither end can verify the other, and both use the kernel.
#[test]
fn a_peer_in_another_pid_namespace_falls_back() {
    if !ready() {
        return;
    }
    for kind in ["unix", "pipe", "fifo"] {
        for role in ["read", "write"] {
            let p = pair(&stage(&format!("pidns-{kind}-{role}")), &[], role, kind, "pidns");
            p.exact();
            p.no_shared_memory();
        }
    }
}

#[test]
fn both_ends_inside_one_pid_namespace_take_the_fast_path() {
    if !ready() || !have("unshare") {
        return;
    }
    let wrapper = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"];
    for kind in ["unix", "fifo"] {
        let p = pair(&stage(&format!("in-pidns-{kind}")), &wrapper, "read", kind, "same");
        p.exact();
        assert!(p.fast > 0, "{kind}: {p:#?}");
    }
}

/// With /proc mounted hidepid=2 (others' processes invisible) and both ends
/// of uid 65534: the library needs no /proc entry of its peer (credentials,
/// pidfds and lifelines), so the pair still takes the fast path; a peer of
/// another uid still gets none.
#[test]
fn a_restricted_proc_keeps_transfers_exact() {
    if !ready() || !have("unshare") || !have("setpriv") {
        return;
    }
    let nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
    for (how, fast) in [("same", true), ("nobody", false)] {
        let stage = stage(&format!("hidepid-{how}"));
        let script = format!(
            "mount -t proc -o hidepid=2 proc /proc && grep -q 'hidepid=\\(2\\|invisible\\)' /proc/self/mountinfo && exec {} \"$@\"",
            if how == "same" { nobody.join(" ") } else { String::new() }
        );
        let wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c", &script, "sh"];
        let p = pair(&stage, &wrapper, "read", "unix", how);
        p.exact();
        if fast {
            assert!(p.field("uid").iter().all(|u| *u == "65534"), "{p:#?}");
            assert!(p.fast > 0, "{p:#?}");
        } else {
            p.no_shared_memory();
        }
    }
}
