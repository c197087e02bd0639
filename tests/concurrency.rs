//! Threads, fork, vfork and signal handlers around large copies. Every
//! program checks every byte and exits non-zero otherwise; a watchdog turns
//! a deadlock into a failure.

use std::time::Duration;

use ipc_offload_tests::*;

const POLICY: &str = "[memcpy]\nengine = \"async-cpu\"\nmin_bytes = \"1MiB\"\nworkers = 2\n";

fn program(name: &str) -> std::path::PathBuf {
    c_program(name, &["-O2", "-fno-builtin"])
}

/// 64 threads copy at once (the pool has 64 job slots and 2 workers), and
/// each copies once more from a thread-specific-data destructor while it
/// is being torn down.
#[test]
fn sixty_four_threads_copy_at_once() {
    let dir = scratch("threads");
    let stats = dir.join("stats.json");
    let out = Preload::new()
        .policy(&dir, POLICY)
        .stats(&stats)
        .timeout(Duration::from_secs(120))
        .run(program("threads"), &["64", "4"])
        .success();
    assert_eq!(out.stdout, "64 threads x 4 rounds: 0 failures, 64 teardown copies\n");
    let s = read_stats(&stats);
    // 64 threads x (4 rounds x (one copy + one move) + one copy at teardown).
    assert_eq!(counter(&s, "memcpy", "calls"), 64 * 9, "{s}");
    assert!(engine_bytes(&s, "memcpy", "async-cpu") > 0, "{s}");
    assert!(counter(&s, "memcpy", "worker_bytes") > 0, "{s}");
    assert_eq!(s["workers"], 2);
    assert_eq!(fallbacks(&s, "memcpy", "reentrant"), 0, "{s}");
}

#[test]
fn fork_children_get_a_fresh_pool() {
    let dir = scratch("fork");
    let stats = dir.join("stats.json");
    // Each child also checks that it has 2 live workers of its own.
    let out = Preload::new().policy(&dir, POLICY).stats(&stats).run(program("forks"), &["fork", "4", "2"]).success();
    assert_eq!(out.stdout, "fork x 4: 0 bad\n");
    // Each child wrote its own file, counting its own two copies, with a
    // pool of its own started after the fork.
    let children: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("stats.json."))
        .collect();
    assert_eq!(children.len(), 4, "{children:?}");
    for child in &children {
        let s = read_stats(child);
        assert_eq!(counter(&s, "memcpy", "calls"), 2, "{s}");
        assert_eq!(s["final"], true);
        // The child started workers of its own (the parent's are gone).
        assert_eq!(s["workers"], 2, "{s}");
    }
    assert_eq!(counter(&read_stats(&stats), "memcpy", "calls"), 2);
}

#[test]
fn fork_while_another_thread_copies_never_deadlocks() {
    let dir = scratch("fork-busy");
    let out = Preload::new()
        .policy(&dir, POLICY)
        .timeout(Duration::from_secs(90))
        .run(program("forks"), &["busy", "40"])
        .success();
    assert_eq!(out.stdout, "busy x 40: 0 bad\n");
}

#[test]
fn vfork_children_copy_with_libc_into_the_parent() {
    let dir = scratch("vfork");
    let stats = dir.join("stats.json");
    let out = Preload::new().policy(&dir, POLICY).stats(&stats).run(program("forks"), &["vfork", "8"]).success();
    assert_eq!(out.stdout, "vfork x 8: 0 bad\n");
    // The vfork children's copies are not the parent's: only the parent's
    // two own copies are counted, and no child wrote a stats file.
    assert_eq!(counter(&read_stats(&stats), "memcpy", "calls"), 2);
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files, 2, "only policy.toml and stats.json expected");
}

#[test]
fn signal_handlers_copy_safely() {
    let dir = scratch("signals");
    let stats = dir.join("stats.json");
    let out = Preload::new().policy(&dir, POLICY).stats(&stats).run(program("signals"), &["1500"]).success();
    assert!(out.stdout.contains(" 0 bad, handler ok"), "{}", out.stdout);
    let s = read_stats(&stats);
    assert!(counter(&s, "memcpy", "calls") > 10, "{s}");
    // Hundreds of signals, most landing in a copy of the main thread: those
    // copies were made by libc, not by a second entry into the engine.
    assert!(fallbacks(&s, "memcpy", "reentrant") > 0, "no signal interrupted a copy: {s}");
}

#[test]
fn faults_in_a_copy_reach_the_programs_handler_on_any_thread() {
    // The last 4 MiB of each 16 MiB destination are read-only until a
    // SIGSEGV handler opens them: workers fault too, and must not die of it.
    let dir = scratch("faults");
    let stats = dir.join("stats.json");
    let out = Preload::new().policy(&dir, POLICY).stats(&stats).run(program("faults"), &["20"]).success();
    assert_eq!(out.stdout, "20 rounds ok\n");
    assert!(counter(&read_stats(&stats), "memcpy", "worker_bytes") > 0);
}

#[test]
fn workers_run_on_the_process_cpus_not_the_first_copiers() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("SKIPPED: one CPU: nothing to pin away from");
        return;
    }
    // The main thread pins itself to CPU 0, then makes the first large copy
    // (which starts the workers); the workers keep the process's CPU set.
    let mine = std::fs::read_to_string("/proc/self/status").unwrap();
    let allowed = mine.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim().to_owned();
    let dir = scratch("pinned");
    let out = Preload::new().policy(&dir, POLICY).run(program("pinned"), &[]).success();
    assert_eq!(out.stdout, format!("worker {allowed}\nworker {allowed}\n"));
}

#[test]
fn exit_from_a_handler_on_a_small_alternate_stack() {
    let dir = scratch("altstack");
    let stats = dir.join("stats.json");
    let plain = run_plain(program("altstack_exit"), &[]);
    assert_eq!(plain.code(), 3);
    for with_stats in [false, true] {
        let mut preload = Preload::new().policy(&dir, POLICY);
        if with_stats {
            preload = preload.stats(&stats);
        }
        let out = preload.run(program("altstack_exit"), &[]);
        assert_eq!(out.code(), 3, "with_stats={with_stats}: {out:?}");
    }
    // No final write from the tiny stack; the start-up figures stand.
    assert_eq!(read_stats(&stats)["final"], false);
}
