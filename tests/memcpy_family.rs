//! memcpy, memmove and mempcpy across sizes, alignments and overlaps, with
//! and without the library: same bytes (checked in the program against
//! closed-form expectations), same output, and stats that show the engine
//! and its workers did the copying.

use ipc_offload_tests::*;

const THRESHOLD: &str = "65536";
const POLICY: &str = "[memcpy]\nengine = \"async-cpu\"\nmin_bytes = \"64KiB\"\nworkers = 1\n";

fn matrix() -> std::path::PathBuf {
    c_program("memcpy_matrix", &["-O2", "-fno-builtin", "-fno-tree-loop-distribute-patterns"])
}

#[test]
fn every_size_alignment_and_overlap_matches_glibc() {
    let program = matrix();
    let plain = run_plain(&program, &[THRESHOLD]).success();
    let dir = scratch("matrix");
    let stats = dir.join("stats.json");
    let preloaded = Preload::new().policy(&dir, POLICY).stats(&stats).run(&program, &[THRESHOLD]).success();
    assert_eq!(preloaded.stdout, plain.stdout, "the library changed what the program computed");
    assert!(preloaded.library_lines().is_empty(), "unexpected library output: {}", preloaded.stderr);

    let s = read_stats(&stats);
    assert_eq!(s["final"], true);
    assert_eq!(s["memcpy"]["engine"], "async-cpu");
    let calls = counter(&s, "memcpy", "calls");
    let offloaded = engine_bytes(&s, "memcpy", "async-cpu");
    assert!(calls > 1000, "only {calls} calls reached the engine");
    assert!(offloaded > 1 << 30, "only {offloaded} bytes offloaded");
    assert!(counter(&s, "memcpy", "worker_bytes") > 0, "the workers copied nothing: {s}");
    // Close overlaps (distance 1, 63, 4096 bytes) go to libc's memmove, and say so.
    assert!(fallbacks(&s, "memcpy", "overlap-close") > 0, "{s}");
    assert_eq!(counter(&s, "memcpy", "offloaded_bytes"), offloaded);
}

#[test]
fn one_gibibyte_copies_and_moves() {
    let program = matrix();
    let dir = scratch("huge");
    let stats = dir.join("stats.json");
    let out = Preload::new().policy(&dir, POLICY).stats(&stats).run(&program, &[THRESHOLD, "huge"]).success();
    let plain = run_plain(&program, &[THRESHOLD, "huge"]).success();
    assert_eq!(out.stdout, plain.stdout);
    assert!(out.stdout.contains("huge: 4 cases"), "{}", out.stdout);
    let s = read_stats(&stats);
    assert!(engine_bytes(&s, "memcpy", "async-cpu") >= 4 << 30, "{s}");
    assert!(counter(&s, "memcpy", "worker_bytes") >= 256 << 20, "workers did too little of 4 GiB: {s}");
}

#[test]
fn below_the_threshold_nothing_is_counted() {
    // The built-in threshold is 1 MiB: with only small copies, no call is
    // counted (counting below the threshold would cost the fast path).
    let program = c_program("echo_exit", &["-O2", "-fno-builtin"]);
    let dir = scratch("below");
    let stats = dir.join("stats.json");
    let out = Preload::new().policy(&dir, "[memcpy]\nmin_bytes = \"4MiB\"\n").stats(&stats).run(&program, &["0"]);
    assert_eq!(out.success().stdout, "hello from the program: bytes ok\n");
    let s = read_stats(&stats);
    assert_eq!(counter(&s, "memcpy", "calls"), 0, "{s}");
    assert_eq!(s["memcpy"]["min_bytes"], 4 << 20);
}

#[test]
fn old_binaries_get_memmove_semantics_from_memcpy() {
    // Linked against memcpy@GLIBC_2.2.5, which glibc makes an alias of memmove.
    let program = c_program("legacy_memcpy", &["-O2", "-fno-builtin"]);
    let symbols = std::process::Command::new("nm").arg("-D").arg(&program).output().expect("nm runs");
    assert!(String::from_utf8_lossy(&symbols.stdout).contains("memcpy@GLIBC_2.2.5"), "not linked to the old memcpy");
    let dir = scratch("legacy");
    let stats = dir.join("stats.json");
    let out = Preload::new().policy(&dir, POLICY).stats(&stats).run(&program, &[]).success();
    assert_eq!(out.stdout, "legacy memcpy: 0 bad\n");
    // The old symbol bound to the hook: the far overlaps went through the
    // engine as waves, the close ones to libc's memmove.
    let s = read_stats(&stats);
    assert!(engine_bytes(&s, "memcpy", "async-cpu") > 0, "{s}");
    assert!(fallbacks(&s, "memcpy", "overlap-close") > 0, "{s}");
}

#[test]
fn the_threshold_is_at_or_above_min_bytes_for_every_function() {
    let program = c_program("sizes", &["-O2", "-fno-builtin"]);
    let policy = "[memcpy]\nengine = \"async-cpu\"\nmin_bytes = \"1MiB\"\nworkers = 1\n";
    for function in ["memcpy", "memmove", "mempcpy"] {
        let dir = scratch(function);
        let stats = dir.join("stats.json");
        let out = Preload::new()
            .policy(&dir, policy)
            .stats(&stats)
            .run(&program, &[function, "1048575", "1048576", "1048577", "65536"])
            .success();
        assert_eq!(out.stdout, "4 copies ok\n");
        let s = read_stats(&stats);
        assert_eq!(counter(&s, "memcpy", "calls"), 2, "{function}: {s}");
        assert_eq!(counter(&s, "memcpy", "bytes"), 1048576 + 1048577, "{function}: {s}");
    }
}
