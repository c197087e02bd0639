//! The `shm` class: copies from or into shared memory (POSIX shm, memfd,
//! /dev/shm files, shared anonymous memory) are counted under `[shm]`,
//! copies of private memory under `[memcpy]`, across every way a region
//! can be unmapped, replaced, split or moved; with and without the library
//! the programs print the same and every byte is checked. Python's
//! `multiprocessing.shared_memory` moves 256 MiB between two processes.

use ipc_offload_tests::*;
use serde_json::Value;

/// Both classes at 64 KiB, on different engines, so that both the counts
/// and `by_engine` tell the classes apart.
const POLICY: &str = "[memcpy]\nengine = \"cpu\"\nmin_bytes = \"64KiB\"\n\
                      [shm]\nengine = \"async-cpu\"\nmin_bytes = \"64KiB\"\nworkers = 1\n";

fn program() -> std::path::PathBuf {
    c_program("shm_regions", &["-O2", "-fno-builtin"])
}

/// `expect shm CALLS BYTES memcpy CALLS BYTES`, the program's last line.
fn expected(stdout: &str) -> [u64; 4] {
    let line = stdout.lines().last().unwrap_or_default();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert!(words.len() == 7 && words[0] == "expect", "no expectation line: {stdout}");
    [words[2], words[3], words[5], words[6]].map(|w| w.parse().unwrap())
}

/// Runs SCENARIO without and with the library; same output, every byte
/// right (the program checks), and the stats.
fn scenario(name: &str) -> (Value, [u64; 4]) {
    let program = program();
    let plain = run_plain(&program, &[name]).success();
    let dir = scratch(&format!("shm-{name}"));
    let stats = dir.join("stats.json");
    let out = Preload::new().policy(&dir, POLICY).stats(&stats).run(&program, &[name]).success();
    assert_eq!(out.stdout, plain.stdout, "{name}: the library changed what the program computed");
    assert!(out.library_lines().is_empty(), "{name}: unexpected library output: {}", out.stderr);
    let s = read_stats(&stats);
    assert_eq!(s["final"], true);
    assert_eq!(s["shm"]["engine"], "async-cpu", "{s}");
    assert_eq!(s["shm_regions"]["tracking"], true, "{s}");
    (s, expected(&out.stdout))
}

/// The stats count exactly the copies the program says are in each class.
fn classified_exactly(name: &str) -> Value {
    let (s, [shm_calls, shm_bytes, memcpy_calls, memcpy_bytes]) = scenario(name);
    let got = [
        counter(&s, "shm", "calls"),
        counter(&s, "shm", "bytes"),
        counter(&s, "memcpy", "calls"),
        counter(&s, "memcpy", "bytes"),
    ];
    assert_eq!(got, [shm_calls, shm_bytes, memcpy_calls, memcpy_bytes], "{name}: shm and memcpy calls and bytes: {s}");
    // Each class went to its own engine.
    assert_eq!(engine_bytes(&s, "shm", "async-cpu"), shm_bytes, "{name}: {s}");
    assert_eq!(engine_bytes(&s, "memcpy", "cpu"), memcpy_bytes, "{name}: {s}");
    assert_eq!(counter(&s, "shm_regions", "unknown_lookups"), 0, "{name}: {s}");
    s
}

#[test]
fn posix_shm_objects_are_shared_memory() {
    // (Each scenario starts with one shm copy: the warm-up.)
    let s = classified_exactly("posix");
    assert_eq!(counter(&s, "shm", "calls"), 4);
    assert_eq!((counter(&s, "shm_regions", "shm_open"), counter(&s, "shm_regions", "shm_unlink")), (1, 1), "{s}");
    assert_eq!(counter(&s, "shm_regions", "shared_maps"), 3, "{s}");
    assert_eq!(counter(&s, "shm_regions", "ranges"), 0, "unmapped at the end: {s}");
}

#[test]
fn memfds_are_shared_memory() {
    assert_eq!(counter(&classified_exactly("memfd"), "shm", "calls"), 4);
}

#[test]
fn dev_shm_files_are_shared_memory() {
    assert_eq!(counter(&classified_exactly("devshm"), "shm", "calls"), 4);
}

#[test]
fn shared_anonymous_memory_is_shared_memory() {
    assert_eq!(counter(&classified_exactly("anon"), "shm", "calls"), 3);
}

#[test]
fn private_mappings_are_not() {
    let s = classified_exactly("private");
    assert_eq!((counter(&s, "shm", "calls"), counter(&s, "memcpy", "calls")), (1, 6), "the warm-up only");
}

#[test]
fn shared_mappings_of_disk_files_are_not() {
    // (Unless the test tree is on tmpfs: the program says which it expects.)
    classified_exactly("disk");
}

#[test]
fn map_fixed_and_remapping_at_the_same_address_leave_no_stale_region() {
    let s = classified_exactly("fixed");
    assert!(counter(&s, "memcpy", "calls") >= 8, "{s}");
}

#[test]
fn partial_munmap_splits_the_region() {
    classified_exactly("partial");
}

#[test]
fn mremap_grow_move_fixed_shrink_and_dontunmap() {
    classified_exactly("mremap");
}

#[test]
fn a_full_index_degrades_to_not_indexed() {
    let s = classified_exactly("full");
    let regions = &s["shm_regions"];
    assert_eq!(regions["capacity"], 4096, "{s}");
    assert_eq!(regions["peak_ranges"], 4096, "{s}");
    assert_eq!(regions["not_indexed"], 104, "{s}");
    assert_eq!(regions["ranges"], 0, "{s}");
}

#[test]
fn threads_map_and_unmap_while_others_copy() {
    let (s, [shm_calls, shm_bytes, memcpy_calls, memcpy_bytes]) = scenario("threads");
    // A lookup that writers kept busy classifies by size alone (counted):
    // tolerated here, and reported.
    let unknown = counter(&s, "shm_regions", "unknown_lookups");
    let got_shm = counter(&s, "shm", "calls");
    assert!(got_shm <= shm_calls && got_shm + unknown >= shm_calls, "{s}");
    assert_eq!(got_shm + counter(&s, "memcpy", "calls"), shm_calls + memcpy_calls, "{s}");
    assert_eq!(counter(&s, "shm", "bytes") + counter(&s, "memcpy", "bytes"), shm_bytes + memcpy_bytes, "{s}");
    assert!(counter(&s, "shm_regions", "shared_maps") > 10, "the mappers hardly ran: {s}");
    let raced = counter(&s, "shm_regions", "raced");
    eprintln!("threads: {got_shm} of {shm_calls} shm copies classified, {unknown} unknown lookups, {raced} raced maps");
}

#[test]
fn signal_handlers_that_map_memory_during_an_update() {
    // A 100 µs timer whose handler maps and unmaps, against a loop of
    // mapping calls: no deadlock (the watchdog), no stale region after.
    let s = classified_exactly("signals");
    eprintln!("signals: {} nested mapping calls", counter(&s, "shm_regions", "nested"));
}

#[test]
fn below_the_threshold_no_lookup_and_off_means_no_tracking() {
    let program = program();
    // [shm] off: its copies are memcpy's, and the mapping hooks do nothing.
    let dir = scratch("shm-off");
    let stats = dir.join("stats.json");
    let policy = "[memcpy]\nmin_bytes = \"64KiB\"\nengine = \"cpu\"\n[shm]\nengine = \"off\"\n";
    let out = Preload::new().policy(&dir, policy).stats(&stats).run(&program, &["memfd"]).success();
    let [shm_calls, shm_bytes, memcpy_calls, memcpy_bytes] = expected(&out.stdout);
    let s = read_stats(&stats);
    assert_eq!(s["shm"]["engine"], "off");
    assert_eq!(s["shm_regions"]["tracking"], false);
    assert_eq!(counter(&s, "shm_regions", "shared_maps"), 0);
    assert_eq!(counter(&s, "shm", "calls"), 0);
    assert_eq!(counter(&s, "memcpy", "calls"), shm_calls + memcpy_calls, "{s}");
    assert_eq!(counter(&s, "memcpy", "bytes"), shm_bytes + memcpy_bytes, "{s}");
    // [shm] above the copies' size: shm copies below it are memcpy's when
    // at or above [memcpy]'s threshold.
    let dir = scratch("shm-high");
    let stats = dir.join("stats.json");
    let policy = "[memcpy]\nmin_bytes = \"64KiB\"\n[shm]\nmin_bytes = \"1GiB\"\n";
    Preload::new().policy(&dir, policy).stats(&stats).run(&program, &["memfd"]).success();
    let s = read_stats(&stats);
    assert_eq!(counter(&s, "shm", "calls"), 0, "{s}");
    assert_eq!(counter(&s, "memcpy", "calls"), shm_calls + memcpy_calls, "{s}");
    // [memcpy] off, [shm] on: private copies go to libc uncounted.
    let dir = scratch("shm-only");
    let stats = dir.join("stats.json");
    let policy = "[memcpy]\nengine = \"off\"\n[shm]\nmin_bytes = \"64KiB\"\n";
    Preload::new().policy(&dir, policy).stats(&stats).run(&program, &["memfd"]).success();
    let s = read_stats(&stats);
    assert_eq!((counter(&s, "shm", "calls"), counter(&s, "shm", "bytes")), (shm_calls, shm_bytes), "{s}");
    assert_eq!(counter(&s, "memcpy", "calls"), 0, "{s}");
    // IPC_OFFLOAD=off: nothing at all.
    let out = Preload::new().env("IPC_OFFLOAD", "off").run(&program, &["mremap"]).success();
    assert_eq!(out.stdout, run_plain(&program, &["mremap"]).success().stdout);
}

#[test]
fn check_accepts_the_shm_section() {
    let dir = scratch("shm-check");
    let file = dir.join("p.toml");
    std::fs::write(&file, "[shm]\nengine = \"async-cpu\"\nmin_bytes = \"4MiB\"\nworkers = 1\ncache = \"bypass\"\n")
        .unwrap();
    let out = run(
        std::process::Command::new(root().join("scripts/ipc-offload"))
            .arg("check")
            .arg("--process")
            .arg("x")
            .arg(&file),
        std::time::Duration::from_secs(120),
    );
    assert_eq!(out.code(), 0, "{out:#?}");
    assert!(out.stdout.contains("[shm]"), "{}", out.stdout);
    std::fs::write(&file, "[shm]\nring_bytes = \"4MiB\"\n").unwrap();
    let out = run(
        std::process::Command::new(root().join("scripts/ipc-offload")).arg("check").arg(&file),
        std::time::Duration::from_secs(120),
    );
    assert_eq!(out.code(), 2, "{out:#?}");
    assert!(out.stderr.contains("unknown key `ring_bytes` in [shm]"), "{}", out.stderr);
}

/// A child process writes 256 MiB into a `SharedMemory` block, the parent
/// reads it back with `bytes(s.buf)`: same digest as without the library,
/// and each side's stats show the 256 MiB in the shm class.
const PYTHON: &str = r#"
import hashlib
from multiprocessing import Process, shared_memory
N = 256 << 20
def child(name):
    s = shared_memory.SharedMemory(name=name)
    data = bytes(bytearray(range(256)) * (N // 256))[7:] + b"tail..."
    s.buf[:N] = data                         # memcpy of 256 MiB into shared memory
    del data
    s.close()
if __name__ == "__main__":
    s = shared_memory.SharedMemory(create=True, size=N)
    p = Process(target=child, args=(s.name,))
    p.start()
    p.join()
    assert p.exitcode == 0, p.exitcode
    b = bytes(s.buf)                         # memcpy of 256 MiB out of it
    print(hashlib.sha256(b).hexdigest(), len(b))
    s.close()
    s.unlink()
"#;

#[test]
fn python_shared_memory_256_mib_byte_exact() {
    let Some(python) = python() else { return };
    let plain = run_plain(&python, &["-c", PYTHON]).success();
    let dir = scratch("shm-python");
    let stats = dir.join("stats.json");
    let out = Preload::new().stats(&stats).run(&python, &["-c", PYTHON]).success();
    assert_eq!(out.stdout, plain.stdout, "the bytes differ");
    assert!(out.stdout.contains(" 268435456"), "{}", out.stdout);
    let parent = read_stats(&stats);
    assert!(counter(&parent, "shm", "bytes") >= 256 << 20, "the parent's read: {parent}");
    assert!(counter(&parent, "shm", "offloaded_bytes") >= 256 << 20, "{parent}");
    assert_eq!(counter(&parent, "shm_regions", "shm_open"), 1, "{parent}");
    // The child (a fork, so a FILE.PID of its own) wrote 256 MiB into it.
    let children: Vec<Value> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("stats.json."))
        .map(|e| read_stats(&e.path()))
        .collect();
    let writer = children.iter().find(|c| counter(c, "shm", "bytes") >= 256 << 20);
    assert!(writer.is_some(), "no child counted the 256 MiB write: {children:?}");
}
