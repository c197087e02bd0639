//! TCP socket options whose promises only the kernel can keep
//! (docs/ipc-protocol.md, "TCP over loopback"): `MSG_ZEROCOPY` sends wait
//! for the kernel's completion notifications, and `SO_RCVLOWAT` makes a
//! blocking read wait for that many bytes. Each runs tests/c/sockopts.c
//! without and with the library: the same lines, the same end, and the
//! stats say which path carried the bytes.

use std::path::PathBuf;
use std::time::Duration;

use ipc_offload_tests::reliability::{class_total, fallback_total};
use ipc_offload_tests::*;

fn sockopts() -> PathBuf {
    c_program("sockopts", &["-O2", "-fno-builtin"])
}

/// Runs a mode without and with the library; returns the stats path of the
/// run with it.
fn differential(mode: &str) -> PathBuf {
    let plain = run_plain(sockopts(), &[mode]);
    assert!(plain.status.success(), "{mode} without the library: {plain:#?}");
    let dir = scratch(&format!("sockopts-{mode}"));
    let stats = dir.join("stats.json");
    let out = Preload::new().stats(&stats).timeout(Duration::from_secs(90)).run(sockopts(), &[mode]);
    assert_eq!(out.stdout, plain.stdout, "{mode}: {out:#?}");
    assert!(out.status.success(), "{mode}: {out:#?}");
    assert!(out.library_lines().is_empty(), "{}", out.stderr);
    stats
}

#[test]
fn zerocopy_sends_get_their_completions_from_the_kernel() {
    // Before MSG_ZEROCOPY went to the kernel path, the first send went
    // through the kernel in plain pieces and no completion ever came.
    let stats = differential("zerocopy");
    assert!(fallback_total(&stats, "tcp", "unsupported-call") >= 64, "every zerocopy send is the kernel's");
    assert_eq!(class_total(&stats, "tcp", "fast_path_bytes"), 0);
}

#[test]
fn a_reader_with_a_low_water_mark_gets_reads_of_at_least_that_many_bytes() {
    // Before SO_RCVLOWAT kept a reader on the kernel path, 249 of its reads
    // returned a 256 KiB step.
    let stats = differential("rcvlowat");
    assert!(fallback_total(&stats, "tcp", "opt-in-failed") > 0, "the reader did not opt in");
    assert_eq!(class_total(&stats, "tcp", "fast_path_bytes"), 0);
}

#[test]
fn a_unix_reader_with_a_low_water_mark_stays_on_the_kernel_path_too() {
    // A Unix stream socket honours SO_RCVLOWAT as TCP does.
    let plain = run_plain(sockopts(), &["rcvlowat", "unix"]);
    assert!(plain.status.success(), "{plain:#?}");
    let dir = scratch("sockopts-rcvlowat-unix");
    let stats = dir.join("stats.json");
    let out = Preload::new().stats(&stats).timeout(Duration::from_secs(90)).run(sockopts(), &["rcvlowat", "unix"]);
    assert_eq!(out.stdout, plain.stdout, "{out:#?}");
    assert!(fallback_total(&stats, "unix", "opt-in-failed") > 0, "the reader did not opt in");
    assert_eq!(class_total(&stats, "unix", "fast_path_bytes"), 0);
}
