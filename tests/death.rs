//! Process death: a survivor runs 100 transfers over a pipe or a Unix
//! stream socket with a victim killed by SIGKILL at a random point
//! (tests/c/death.c). The survivor must end each transfer the way the
//! kernel path ends it (the same outcomes as a run without the library),
//! within 2 s of the kill (the program checks that; SIGALRM after 10 s and
//! the watchdog catch a hang), with every byte it read right, and hold no
//! more fds, ring mappings or threads after the 100 transfers than before;
//! nothing is left in /dev/shm.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use ipc_offload_tests::reliability::{assert_no_leaks, assert_no_new_shm, fallback_total, seed, shm_entries};
use ipc_offload_tests::{Preload, c_program, counter, read_stats, run_plain, scratch};

const TRANSFERS: &str = "100";
/// Runs without the library, for the kernel's outcomes.
const PLAIN_TRANSFERS: &str = "30";

fn program() -> PathBuf {
    c_program("death", &["-O2", "-pthread"])
}

/// The outcomes ("EOF", "EPIPE", ...) a run printed at least once.
fn outcomes(stdout: &str) -> BTreeSet<String> {
    let line =
        stdout.lines().find_map(|l| l.strip_prefix("outcomes:")).unwrap_or_else(|| panic!("no outcomes: {stdout}"));
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter(|(_, n)| n.parse::<u64>().unwrap() > 0)
        .map(|(k, _)| k.to_owned())
        .collect()
}

fn kill_scenario(family: &str, victim: &str) {
    let seed = seed().to_string();
    let plain = run_plain(program(), &[family, victim, PLAIN_TRANSFERS, &seed]);
    assert!(plain.status.success(), "without the library: {plain:#?}");
    let kernel = outcomes(&plain.stdout);

    let shm_before = shm_entries();
    let dir = scratch(&format!("death-{family}-{victim}"));
    let stats = dir.join("stats.json");
    let out = Preload::new()
        .stats(&stats)
        .timeout(Duration::from_secs(90))
        .run(program(), &[family, victim, TRANSFERS, &seed]);
    assert!(out.status.success(), "seed {seed}: {out:#?}");
    assert!(out.stdout.contains("failed transfers: 0\n"), "seed {seed}: {}", out.stdout);
    let library = outcomes(&out.stdout);
    assert!(
        library.is_subset(&kernel),
        "seed {seed}: the survivor saw {library:?} with the library, the kernel path gives {kernel:?}"
    );
    assert_no_leaks(&out.stdout, 1);
    assert_no_new_shm(&shm_before);

    // The kills met the fast path: the survivor moved bytes through shared
    // memory, and some transfer lost its peer mid-way.
    let survivor = read_stats(&stats);
    let class = if family == "unix" { "unix" } else { "pipe" };
    assert!(counter(&survivor, class, "fast_path_bytes") > 0, "seed {seed}: no transfer took the fast path");
    let gone = fallback_total(&stats, class, "peer-gone");
    eprintln!("{family} {victim}: {library:?} (kernel {kernel:?}), peer-gone {gone}");
}

#[test]
fn pipe_writer_killed_at_random_points() {
    kill_scenario("pipe", "writer");
}

#[test]
fn pipe_reader_killed_at_random_points() {
    kill_scenario("pipe", "reader");
}

#[test]
fn unix_writer_killed_at_random_points() {
    kill_scenario("unix", "writer");
}

#[test]
fn unix_reader_killed_at_random_points() {
    kill_scenario("unix", "reader");
}
