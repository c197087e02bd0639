//! Servers at scale (docs/design.md, "Tables without a cap"): more
//! connections held open at once than the old fixed tables took (256
//! channels per process), and fds numbered 65536 and up, each on the fast
//! path with every byte checked (tests/c/many_pairs.c). Without the paged
//! tables the first 256 connections took the fast path and the rest
//! counted `busy`; fds of 65536 and up never took it.

use std::path::PathBuf;
use std::time::Duration;

use ipc_offload_tests::{Outcome, Preload, c_program, fallbacks, read_stats, scratch};

/// Small rings (256 KiB) in a budget that holds them all: what is tested
/// is the tables, not the ring budget.
const POLICY: &str = "[unix]\nchunk_bytes = \"64KiB\"\ndepth = 4\nring_bytes = \"1GiB\"\n\
                      [pipe]\nchunk_bytes = \"64KiB\"\ndepth = 4\nring_bytes = \"1GiB\"\n";
const BYTES: &str = "8388608";

fn many_pairs() -> PathBuf {
    c_program("many_pairs", &["-O2"])
}

/// Runs `many_pairs FAMILY PAIRS BYTES [FIRST_FD]` under the library;
/// returns its output and (pairs, fast), or None if it skipped.
fn run(family: &str, pairs: usize, first_fd: Option<u32>) -> Option<(Outcome, usize, PathBuf)> {
    let dir = scratch(&format!("scale-{family}-{pairs}-{}", first_fd.unwrap_or(0)));
    let stats = dir.join("stats.json");
    let preload = Preload::new().policy(&dir, POLICY).stats(&stats).timeout(Duration::from_secs(120));
    let pairs_arg = pairs.to_string();
    let first = first_fd.map(|f| f.to_string());
    let mut args = vec![family, pairs_arg.as_str(), BYTES];
    args.extend(first.as_deref());
    let out = preload.run(many_pairs(), &args);
    if let Some(reason) = out.stdout.lines().find(|l| l.starts_with("SKIPPED:")) {
        eprintln!("{reason}");
        return None;
    }
    assert!(out.status.success() && out.stdout.ends_with("transfer ok\n"), "{args:?}: {out:#?}");
    let line = out.stdout.lines().find_map(|l| l.strip_prefix("pairs ")).expect("the summary line");
    let fast: usize = line.rsplit(' ').next().unwrap().parse().unwrap();
    Some((out, fast, stats))
}

#[test]
fn six_hundred_connections_held_at_once_all_take_the_fast_path() {
    for family in ["unix", "pipe"] {
        let (out, fast, stats) = run(family, 600, None).expect("no fd number to raise a limit for");
        assert_eq!(fast, 600, "{family}: connections whose reads went to the kernel: {out:#?}");
        let class = if family == "unix" { "unix" } else { "pipe" };
        let stats = read_stats(&stats);
        assert_eq!(fallbacks(&stats, class, "busy"), 0, "{family}: a connection found no channel");
    }
}

#[test]
fn fds_numbered_above_65536_take_the_fast_path() {
    // The process must be allowed more than 65536 fds: as root (with
    // CAP_SYS_RESOURCE) the program raises its limit; elsewhere it skips
    // and says why.
    for family in ["unix", "pipe"] {
        let Some((out, fast, _)) = run(family, 16, Some(70_000)) else { return };
        assert!(out.stdout.contains("lowest connection fd 70000"), "{out:#?}");
        assert_eq!(fast, 16, "{family}: fds above 65536 stayed on the kernel path: {out:#?}");
    }
}
