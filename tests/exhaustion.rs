//! Exhaustion: transfers over pipes and Unix stream sockets while what the
//! library needs is used up (tests/c/exhaust.c, tests/c/echo_epoll.c): the
//! process at its fd limit, memfd_create or shared mmap failing (seccomp),
//! the ring budget used up, a ring stalled for 5 s, 1000 connections
//! through one epoll server. Every case must move every byte right (on the
//! kernel path where the library cannot have a ring), and leave the
//! process with the fds, ring mappings and threads it had before.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ipc_offload_tests::reliability::{assert_no_leaks, assert_no_new_shm, class_total, fallback_total, shm_entries};
use ipc_offload_tests::{Outcome, Preload, c_program, fd_limit_allows, scratch};

const TOTAL: u64 = 64 << 20;
const FAMILIES: [&str; 2] = ["pipe", "unix"];

fn exhaust() -> PathBuf {
    c_program("exhaust", &["-O2", "-pthread"])
}

/// What one run of `exhaust` did.
#[derive(Debug)]
struct Run {
    out: Outcome,
    /// Bytes the reader's read calls returned in the case's transfer (after
    /// the warm-up): TOTAL (and a few) when it all took the kernel path.
    kernel: u64,
    stats: PathBuf,
}

fn run_exhaust(args: &[&str], policy: Option<&str>) -> Run {
    let dir = scratch(&format!("exhaust-{}", args.join("-")));
    let stats = dir.join("stats.json");
    let mut preload = Preload::new().stats(&stats).timeout(Duration::from_secs(90));
    if let Some(policy) = policy {
        preload = preload.policy(&dir, policy);
    }
    let out = preload.run(exhaust(), args);
    assert!(out.status.success() && out.stdout.ends_with("transfer ok\n"), "exhaust {args:?}: {out:#?}");
    assert_no_leaks(&out.stdout, 1);
    let kernel = out
        .stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("kernel bytes ")?.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no kernel bytes: {}", out.stdout));
    Run { out, kernel, stats }
}

fn on_the_kernel_path(run: &Run, what: &str) {
    assert!(
        run.kernel >= TOTAL,
        "{what}: only {} of {TOTAL} bytes came through read calls: {:#?}",
        run.kernel,
        run.out
    );
}

fn on_the_fast_path(run: &Run, what: &str) {
    assert!(run.kernel < TOTAL / 2, "{what}: {} of {TOTAL} bytes came through read calls: {:#?}", run.kernel, run.out);
}

fn class(family: &str) -> &str {
    if family == "unix" { "unix" } else { "pipe" }
}

#[test]
fn without_exhaustion_the_transfer_takes_the_fast_path() {
    // The control of the cases below: the same transfer takes shared memory
    // when nothing is used up, so "on the kernel path" there means a fallback.
    for family in FAMILIES {
        on_the_fast_path(&run_exhaust(&[family, "plain"], None), family);
    }
}

#[test]
fn a_process_at_its_fd_limit_transfers_byte_exact() {
    // The side channel, the ring's memfd and the lifeline need fds: at the
    // limit (0 free) the reader cannot opt in and the writer cannot take an
    // OFFER's fds, so the transfer is the kernel's; with a few free, every
    // step in between (an OFFER whose fds do not all fit) still moves every
    // byte; with enough free, shared memory again.
    for family in FAMILIES {
        for who in ["reader", "writer", "both"] {
            for free in ["0", "1", "2", "3", "4"] {
                let run = run_exhaust(&[family, "nofile", free, who], None);
                if free == "0" {
                    on_the_kernel_path(&run, &format!("{family} {who} at its fd limit"));
                }
            }
            on_the_fast_path(
                &run_exhaust(&[family, "nofile", "16", who], None),
                &format!("{family} {who} with 16 fds"),
            );
        }
    }
}

#[test]
fn memfd_create_failing_falls_back_to_the_kernel() {
    for family in FAMILIES {
        let run = run_exhaust(&[family, "seccomp", "memfd", "reader"], None);
        on_the_kernel_path(&run, &format!("{family}: no memfd in the reader"));
        assert!(fallback_total(&run.stats, class(family), "no-peer") > 0, "{family}: no-peer not counted");
        // The writer makes no memfd: the fast path stays.
        on_the_fast_path(&run_exhaust(&[family, "seccomp", "memfd", "writer"], None), family);
    }
}

#[test]
fn shared_mmap_failing_falls_back_to_the_kernel() {
    for family in FAMILIES {
        for who in ["reader", "writer"] {
            let run = run_exhaust(&[family, "seccomp", "mmap-shared", who], None);
            on_the_kernel_path(&run, &format!("{family}: no shared mapping in the {who}"));
        }
    }
}

const NO_RING: &str = "[pipe]\nring_bytes = \"4KiB\"\n[unix]\nring_bytes = \"4KiB\"\n";
/// One 4 MiB ring (the default geometry) and no second.
const ONE_RING: &str = "[pipe]\nring_bytes = \"5MiB\"\n[unix]\nring_bytes = \"5MiB\"\n";

#[test]
fn the_ring_budget_used_up_falls_back_to_the_kernel() {
    for family in FAMILIES {
        let run = run_exhaust(&[family, "plain"], Some(NO_RING));
        on_the_kernel_path(&run, &format!("{family} without ring budget"));
        assert!(fallback_total(&run.stats, class(family), "ring-budget") > 0, "{family}: ring-budget not counted");
        assert_eq!(class_total(&run.stats, class(family), "fast_path_bytes"), 0);

        // Four channels at once with a budget for one: some take the ring,
        // the others the kernel, all byte-exact.
        let run = run_exhaust(&[family, "concurrent", "4"], Some(ONE_RING));
        assert!(fallback_total(&run.stats, class(family), "ring-budget") > 0, "{family}: ring-budget not counted");
        assert!(class_total(&run.stats, class(family), "fast_path_bytes") > 0, "{family}: no ring at all");
    }
}

fn stalled(what: &str) {
    // The program checks every byte, and its 60 s alarm and the watchdog
    // catch a side that never resumes after the 5 s stall.
    for family in FAMILIES {
        let run = run_exhaust(&[family, "stall", what], None);
        assert!(class_total(&run.stats, class(family), "fast_path_bytes") > 0, "{family} {what}: no fast path");
    }
}

#[test]
fn a_reader_that_stops_reading_for_5_s() {
    stalled("reader-sleeps");
}

#[test]
fn a_reader_stopped_for_5_s_mid_transfer() {
    stalled("reader-stopped");
}

#[test]
fn a_nonblocking_writer_is_not_held_by_a_stopped_reader() {
    // 16 MiB calls, more than a ring holds: the reader is stopped for 5 s
    // mid-stream. The kernel never holds a nonblocking write; neither may
    // the library: a claim of a nonblocking writer is at most one ring.
    for family in FAMILIES {
        let run = run_exhaust(&[family, "stall", "reader-stopped-nonblocking"], None);
        let line =
            run.out.stdout.lines().find_map(|l| l.strip_prefix("longest write call ")).expect("the longest write");
        let ms: u64 = line.trim_end_matches(" ms").parse().unwrap();
        assert!(ms < 2500, "{family}: a nonblocking write call took {ms} ms while the reader was stopped for 5 s");
        assert!(class_total(&run.stats, class(family), "fast_path_bytes") > 0, "{family}: no fast path");
    }
}

#[test]
fn a_writer_stopped_for_5_s_mid_transfer() {
    stalled("writer-stopped");
}

fn echo(dir: &Path, conns: &str) -> Outcome {
    let program = c_program("echo_epoll", &["-O2", "-pthread"]);
    // A budget of two rings (of 4 MiB): more connections than that ask
    // (each at its first large write: 300 KiB a round would not earn a
    // ring under the default `handshake_after`).
    let policy = "[unix]\nring_bytes = \"8MiB\"\nhandshake_after = 0\n";
    let preload = Preload::new().policy(dir, policy).stats(&dir.join("stats.json")).timeout(Duration::from_secs(120));
    let out = preload.run(program, &[conns, "16", "307200", "3"]);
    assert!(out.status.success() && out.stdout.ends_with("echo ok\n"), "{out:#?}");
    out
}

#[test]
fn a_thousand_connections_through_one_epoll_echo_server() {
    // 1000 connections open at once, each echoing 300 KiB three times: more
    // sockets than one page of the channel table (256), and more rings than
    // the budget holds (2 of 4 MiB). Every byte comes back; the client and
    // the server close with the fds, rings and threads they had before.
    // Each side holds 1000 sockets, and the client as many side channels:
    // the programs raise their soft limit to the hard one.
    if !fd_limit_allows(4096, "1000 connections") {
        return;
    }
    let shm_before = shm_entries();
    let dir = scratch("echo-1000");
    let out = echo(&dir, "1000");
    assert_no_leaks(&out.stdout, 2);
    assert_no_new_shm(&shm_before);
    let stats = dir.join("stats.json");
    assert_eq!(fallback_total(&stats, "unix", "busy"), 0, "a socket found no channel: {out:#?}");
    assert!(fallback_total(&stats, "unix", "ring-budget") > 0, "the ring budget never ran out: {out:#?}");
}
