//! Helpers of the reliability tests (process death, exhaustion, soak):
//! stats summed over a process tree, what /dev/shm holds, the survivors'
//! leak reports, and seeds.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::{counter, fallbacks, read_stats};

/// FILE and the FILE.PID files its descendants wrote.
pub fn stats_files(stats: &Path) -> Vec<PathBuf> {
    let dir = stats.parent().unwrap();
    let name = stats.file_name().unwrap().to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n == name || n.strip_prefix(&format!("{name}.")).is_some_and(|pid| pid.parse::<u32>().is_ok())
        })
        .map(|e| e.path())
        .collect()
}

/// `stats[class][key]` summed over FILE and FILE.PID.
pub fn class_total(stats: &Path, class: &str, key: &str) -> u64 {
    stats_files(stats).iter().map(|f| counter(&read_stats(f), class, key)).sum()
}

/// `stats[class].write_behind[key]` (`offers`, `given_back_bytes`; class
/// `unix` or `tcp`) summed over FILE and FILE.PID.
pub fn write_behind_total(stats: &Path, class: &str, key: &str) -> u64 {
    stats_files(stats).iter().map(|f| read_stats(f)[class]["write_behind"][key].as_u64().unwrap_or(0)).sum()
}

/// `stats[class].fallbacks[reason]` summed over FILE and FILE.PID.
pub fn fallback_total(stats: &Path, class: &str, reason: &str) -> u64 {
    stats_files(stats).iter().map(|f| fallbacks(&read_stats(f), class, reason)).sum()
}

/// The names in /dev/shm, but for POSIX semaphores (`sem.*`: Python tests
/// running beside these make and remove them).
pub fn shm_entries() -> BTreeSet<String> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else { return Default::default() };
    dir.filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("sem."))
        .collect()
}

/// Whether a live process has `path` open or mapped (its /proc/PID/fd and
/// /proc/PID/maps).
fn held_by_a_process(path: &str) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else { return false };
    procs.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok()).any(|e| {
        let fds = std::fs::read_dir(e.path().join("fd")).into_iter().flatten().filter_map(|f| f.ok());
        let open = fds.filter_map(|f| std::fs::read_link(f.path()).ok()).any(|l| l.to_string_lossy().starts_with(path));
        open || std::fs::read_to_string(e.path().join("maps")).is_ok_and(|m| m.contains(path))
    })
}

/// New names in /dev/shm since `before` that no live process holds.
fn orphans_since(before: &BTreeSet<String>) -> Vec<String> {
    shm_entries().difference(before).filter(|n| !held_by_a_process(&format!("/dev/shm/{n}"))).cloned().collect()
}

/// Asserts that nothing was left in /dev/shm since `before`: a new name
/// that no process holds, and that does not go within a second. (The
/// programs under test have exited; names that other programs on the
/// machine hold, or remove at once, are theirs.)
pub fn assert_no_new_shm(before: &BTreeSet<String>) {
    if orphans_since(before).is_empty() {
        return;
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    let left = orphans_since(before);
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}

/// The leak reports a C program printed with `holdings_same` (tests/c/leaks.h):
/// every line must say "no leak", and there must be `expected` of them.
pub fn assert_no_leaks(stdout: &str, expected: usize) {
    let reports: Vec<&str> = stdout.lines().filter(|l| l.contains(": fds ")).collect();
    assert_eq!(reports.len(), expected, "leak reports missing: {stdout}");
    for r in reports {
        assert!(r.ends_with(": no leak"), "{r}");
    }
}

/// The seed of a randomized test: `IPC_OFFLOAD_SEED` if set (to replay a
/// failure), else the clock. Printed, so that a failure names it.
pub fn seed() -> u64 {
    let seed = std::env::var("IPC_OFFLOAD_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        t.as_nanos() as u64 | 1
    });
    eprintln!("seed {seed} (replay with IPC_OFFLOAD_SEED={seed})");
    seed
}
