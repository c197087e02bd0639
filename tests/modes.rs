//! Modes and cache placement end to end: each mode shapes the rings and
//! picks the engines it documents, every mode and `cache` setting moves the
//! same bytes as the kernel and glibc, and the stats show which copies went
//! around the cache.

use std::path::Path;

use ipc_offload_tests::*;

/// The stats of the process that wrote `file` and of its children
/// (`file.PID`), the parent first.
fn stats_of_run(file: &Path) -> Vec<serde_json::Value> {
    let dir = file.parent().unwrap();
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let mut children: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{name}.")))
        .map(|e| read_stats(&e.path()))
        .collect();
    children.insert(0, read_stats(file));
    children
}

/// The last-level cache's size as the library reads it (`None` if unknown).
fn llc() -> Option<u64> {
    ipc_offload_sys::cpus::last_level_cache(Path::new("/sys/devices/system/cpu"))
}

#[test]
fn each_mode_shapes_the_rings_and_moves_the_same_bytes() {
    let unix = c_program("unix_matrix", &["-O2"]);
    let pipe = c_program("pipe_matrix", &["-O2"]);
    let args = ["blocking", "100000000", "1048576", "4194304"];
    let plain_unix = run_plain(&unix, &args).success();
    let plain_pipe = run_plain(&pipe, &args).success();
    for (mode, chunk, depth) in
        [("latency", 256 << 10, 16), ("throughput", 256 << 10, 16), ("efficiency", 256 << 10, 8)]
    {
        for (family, program, plain) in [("unix", &unix, &plain_unix), ("pipe", &pipe, &plain_pipe)] {
            let dir = scratch(&format!("modes-{mode}-{family}"));
            let stats = dir.join("stats.json");
            let policy = format!("[defaults]\nmode = \"{mode}\"\n");
            let out = Preload::new().policy(&dir, &policy).stats(&stats).run(program, &args).success();
            assert_eq!(out.stdout, plain.stdout, "{mode} {family}");
            let all = stats_of_run(&stats);
            let reader = &all[0];
            assert_eq!(reader["mode"], mode);
            assert_eq!(
                (reader[family]["chunk_bytes"].as_u64(), reader[family]["depth"].as_u64()),
                (Some(chunk), Some(depth)),
                "{mode} {family}"
            );
            let fast: u64 = all.iter().map(|s| counter(s, family, "fast_path_bytes")).sum();
            assert!(fast > 50_000_000, "{mode} {family}: the shared-memory path carried the stream: {reader}");
        }
    }
}

#[test]
fn efficiency_mode_copies_on_the_calling_cpu_and_throughput_mode_with_workers() {
    let program = c_program("sizes", &["-O2", "-fno-builtin"]);
    let args = ["memcpy", "67108864", "16777216"];
    let plain = run_plain(&program, &args).success();
    for (mode, engine) in [("efficiency", "cpu"), ("throughput", "async-cpu")] {
        let dir = scratch(&format!("modes-engine-{mode}"));
        let stats = dir.join("stats.json");
        // Two CPUs at least, so that `auto` has a worker to give.
        let out = Preload::new()
            .policy(&dir, &format!("[defaults]\nmode = \"{mode}\"\n[memcpy]\nworkers = 1\n"))
            .stats(&stats)
            .run(&program, &args)
            .success();
        assert_eq!(out.stdout, plain.stdout);
        let s = read_stats(&stats);
        assert_eq!(s["memcpy"]["engine"], engine, "{mode}: {s}");
        assert_eq!(engine_bytes(&s, "memcpy", engine), (64 + 16) << 20, "{mode}: {s}");
    }
}

#[test]
fn cache_settings_decide_which_copies_go_around_the_cache() {
    let Some(llc) = llc() else { return };
    let program = c_program("sizes", &["-O2", "-fno-builtin"]);
    let (small, large) = (2u64 << 20, 2 * llc);
    let args = ["memcpy".to_owned(), small.to_string(), large.to_string()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let plain = run_plain(&program, &args).success();
    for (engine, cache, bypassed) in [
        ("cpu", "inject", 0),
        ("cpu", "bypass", small + large),
        ("cpu", "auto", large),
        ("async-cpu", "inject", 0),
        ("async-cpu", "bypass", small + large),
        ("async-cpu", "auto", large),
    ] {
        let dir = scratch(&format!("modes-cache-{engine}-{cache}"));
        let stats = dir.join("stats.json");
        let policy = format!("[memcpy]\nengine = \"{engine}\"\nworkers = 1\ncache = \"{cache}\"\n");
        let out = Preload::new().policy(&dir, &policy).stats(&stats).run(&program, &args).success();
        assert_eq!(out.stdout, plain.stdout, "{engine} {cache}");
        let s = read_stats(&stats);
        assert_eq!(s["memcpy"]["cache"], cache);
        assert_eq!(counter(&s, "memcpy", "bytes"), small + large);
        assert_eq!(counter(&s, "memcpy", "bypassed_bytes"), bypassed, "{engine} {cache}: {s}");
    }
}

#[test]
fn ipc_auto_keeps_ring_chunks_in_the_cache_and_bypasses_large_reads() {
    let Some(llc) = llc() else { return };
    let program = c_program("unix_matrix", &["-O2"]);
    // Reads of twice the cache's size: `auto` bypasses them on the reader's
    // side; the writer's copies into the ring stay in the cache.
    let total = (8 * llc).to_string();
    let read = (2 * llc).to_string();
    let args = ["waitall", total.as_str(), "1048576", read.as_str()];
    let plain = run_plain(&program, &args).success();
    for cache in ["auto", "inject", "bypass"] {
        let dir = scratch(&format!("modes-ipc-cache-{cache}"));
        let stats = dir.join("stats.json");
        let policy = format!("[unix]\ncache = \"{cache}\"\n");
        let out = Preload::new().policy(&dir, &policy).stats(&stats).run(&program, &args).success();
        assert_eq!(out.stdout, plain.stdout, "{cache}");
        let all = stats_of_run(&stats);
        let (reader, writer) = (&all[0], &all[1]);
        let read_fast = counter(reader, "unix", "fast_path_bytes");
        let write_fast = counter(writer, "unix", "fast_path_bytes");
        assert!(read_fast > 0 && write_fast > 0, "{cache}: {reader} {writer}");
        let (read_bypassed, write_bypassed) =
            (counter(reader, "unix", "bypassed_bytes"), counter(writer, "unix", "bypassed_bytes"));
        match cache {
            "auto" => assert_eq!((read_bypassed, write_bypassed), (read_fast, 0), "{reader} {writer}"),
            "inject" => assert_eq!((read_bypassed, write_bypassed), (0, 0)),
            _ => assert_eq!((read_bypassed, write_bypassed), (read_fast, write_fast)),
        }
    }
}
