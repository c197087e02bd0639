//! Which engine serves the memcpy class, as the policy says: explicit
//! engines, `off`, an unavailable engine (one warning, then the next best),
//! and `[process."GLOB"]` overrides matched by argv[0] or the executable.

use ipc_offload_tests::*;

fn program() -> std::path::PathBuf {
    c_program("echo_exit", &["-O2", "-fno-builtin"])
}

/// Runs the program under `policy`; returns (stats, library stderr lines).
fn under(name: &str, policy: &str) -> (serde_json::Value, Vec<String>) {
    let dir = scratch(name);
    let stats = dir.join("stats.json");
    let out = Preload::new().policy(&dir, policy).stats(&stats).run(program(), &["0"]).success();
    assert_eq!(out.stdout, "hello from the program: bytes ok\n");
    (read_stats(&stats), out.library_lines().iter().map(|s| s.to_string()).collect())
}

#[test]
fn explicit_cpu_engine_moves_bytes_with_libc() {
    let (s, log) = under("cpu", "[memcpy]\nengine = \"cpu\"\n");
    assert!(log.is_empty(), "{log:?}");
    assert_eq!(s["memcpy"]["engine"], "cpu");
    assert_eq!(counter(&s, "memcpy", "calls"), 1);
    assert_eq!(engine_bytes(&s, "memcpy", "cpu"), 2 << 20);
    assert_eq!(counter(&s, "memcpy", "offloaded_calls"), 0);
}

#[test]
fn off_intercepts_nothing() {
    let (s, _) = under("off", "[memcpy]\nengine = \"off\"\n");
    assert_eq!(s["memcpy"]["engine"], "off");
    assert_eq!(counter(&s, "memcpy", "calls"), 0);
}

#[test]
fn unavailable_dsa_falls_back_with_one_warning() {
    for engine in ["dsa", "hybrid"] {
        let (s, log) = under(engine, &format!("[memcpy]\nengine = \"{engine}\"\nworkers = 1\n"));
        assert_eq!(log.len(), 1, "{log:?}");
        assert!(
            log[0].ends_with(&format!(
                "warning: [memcpy] engine \"{engine}\" is unavailable (no usable DSA work queue); using async-cpu"
            )),
            "{}",
            log[0]
        );
        assert_eq!(s["memcpy"]["engine"], "async-cpu");
        assert_eq!(engine_bytes(&s, "memcpy", "async-cpu"), 2 << 20);
    }
}

#[test]
fn auto_picks_silently() {
    let (s, log) = under("auto", "[memcpy]\nengine = \"auto\"\nworkers = 1\n");
    assert!(log.is_empty(), "{log:?}");
    assert_eq!(s["memcpy"]["engine"], "async-cpu");
}

#[test]
fn async_cpu_without_workers_is_the_cpu_engine() {
    let (s, log) = under("noworkers", "[memcpy]\nengine = \"async-cpu\"\nworkers = 0\n");
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].contains("engine \"async-cpu\" is unavailable (it has no worker"), "{}", log[0]);
    assert_eq!(s["memcpy"]["engine"], "cpu");
}

#[test]
fn process_overrides_match_argv0_and_the_executable() {
    let policy = "[memcpy]\nengine = \"async-cpu\"\nworkers = 1\n\
                  [process.\"echo_exit*\"]\nmemcpy.engine = \"cpu\"\n\
                  [process.\"renamed\"]\nmemcpy.min_bytes = \"16MiB\"\n";
    // argv[0] and the executable are both echo_exit-...: the first override applies.
    let (s, _) = under("override", policy);
    assert_eq!(s["memcpy"]["engine"], "cpu");
    // argv[0] "renamed" (exec -a): both overrides apply, by argv[0] and by
    // the executable's name, in file order.
    let dir = scratch("override-argv0");
    let stats = dir.join("stats.json");
    let mut cmd = Preload::new().policy(&dir, policy).stats(&stats).command("bash");
    cmd.arg("-c").arg(format!("exec -a renamed {} 0", program().display()));
    let out = run(&mut cmd, std::time::Duration::from_secs(60)).success();
    assert!(out.stdout.starts_with("hello"));
    let s = read_stats(&stats);
    assert_eq!(s["process"], "renamed");
    assert_eq!(s["memcpy"]["engine"], "cpu");
    assert_eq!(s["memcpy"]["min_bytes"], 16 << 20);
    assert_eq!(counter(&s, "memcpy", "calls"), 0, "a 2 MiB copy is below 16 MiB");
}

#[test]
fn info_log_describes_the_plan() {
    let dir = scratch("info");
    let out = Preload::new()
        .policy(&dir, "[memcpy]\nengine = \"async-cpu\"\nworkers = 1\n")
        .env("IPC_OFFLOAD_LOG", "info")
        .run(program(), &["0"])
        .success();
    let log = out.library_lines();
    assert!(
        log.iter().any(|l| l.contains("info: [memcpy] async-cpu for copies of 1MiB or more, 1 helper(s)")),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l.contains("info: [unix] ") && l.contains(" for copies of 256KiB or more")), "{log:?}");
    assert!(log.iter().any(|l| l.contains("info: [pipe] ") && l.contains(" for copies of 256KiB or more")), "{log:?}");
    assert_eq!(out.stdout, "hello from the program: bytes ok\n", "the log never goes to stdout");
    // An unknown level is reported and the default used.
    let out = Preload::new().env("IPC_OFFLOAD_LOG", "loud").run(program(), &["0"]).success();
    assert_eq!(out.library_lines().len(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("IPC_OFFLOAD_LOG=\"loud\" is not understood; using warn"), "{}", out.stderr);
}

#[test]
fn auto_workers_follow_the_affinity_mask_not_the_machine() {
    if !have("taskset") {
        return;
    }
    // Confined to one CPU, the process has no CPU to spare for a worker:
    // `auto` means the cpu engine, silently, and no thread is started.
    let dir = scratch("taskset");
    let stats = dir.join("stats.json");
    let mut cmd = Preload::new().policy(&dir, "[memcpy]\nengine = \"auto\"\n").stats(&stats).command("taskset");
    cmd.arg("-c").arg("0").arg(program()).arg("0");
    let out = run(&mut cmd, std::time::Duration::from_secs(60)).success();
    assert!(out.library_lines().is_empty(), "{}", out.stderr);
    let s = read_stats(&stats);
    assert_eq!(s["memcpy"]["engine"], "cpu", "{s}");
    assert_eq!(s["workers"], 0);
    assert_eq!(engine_bytes(&s, "memcpy", "cpu"), 2 << 20);
}

#[test]
fn auto_workers_are_the_cpus_to_spare() {
    // The built-in policy: workers = "auto", one fewer than the CPUs the
    // process may use (affinity and cgroup quota, as std reads them too).
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let dir = scratch("auto-workers");
    let stats = dir.join("stats.json");
    Preload::new().stats(&stats).run(program(), &["0"]).success();
    let s = read_stats(&stats);
    assert_eq!(s["workers"], (cpus - 1).min(16), "{s}");
    assert_eq!(s["memcpy"]["engine"], if cpus > 1 { "async-cpu" } else { "cpu" });
}

#[test]
fn the_hooks_chain_to_another_preload_in_either_order() {
    let counter_lib =
        c_program("count_memcpy", &["-shared", "-fPIC", "-fno-builtin", "-fno-tree-loop-distribute-patterns"]);
    let ours = library().display().to_string();
    let theirs = counter_lib.display().to_string();
    for (order, preload) in [("ours first", format!("{ours} {theirs}")), ("theirs first", format!("{theirs} {ours}"))] {
        let dir = scratch("chain");
        let stats = dir.join("stats.json");
        let mut cmd = Preload::new().policy(&dir, "[memcpy]\nworkers = 1\n").stats(&stats).command(program());
        cmd.env("LD_PRELOAD", &preload).arg("0");
        let out = run(&mut cmd, std::time::Duration::from_secs(60)).success();
        assert_eq!(out.stdout, "hello from the program: bytes ok\n", "{order}");
        // The other preload saw calls: ours passed them on (first), or
        // it passed them to us (second).
        let count: u64 = out
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix("count_memcpy: "))
            .and_then(|l| l.strip_suffix(" calls"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{order}: no count in {:?}", out.stderr));
        assert!(count >= 1, "{order}: {count}");
        // And our engine still served the 2 MiB copy.
        assert_eq!(engine_bytes(&read_stats(&stats), "memcpy", "async-cpu"), 2 << 20, "{order}");
    }
}
