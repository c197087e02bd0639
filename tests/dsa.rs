//! The `dsa` engine end to end, on the device model (`[dsa] device =
//! "model"`): programs copy through descriptors byte-exactly, the stats
//! show the device and its descriptors, the device opens at the first copy
//! that needs it (a fork child's too), and a machine without a device says
//! so and copies with the CPU.

use ipc_offload_tests::*;

const MODEL: &str = "[memcpy]\nengine = \"dsa\"\n[dsa]\ndevice = \"model\"\n";

#[test]
fn python_copies_a_gib_through_the_model_byte_exact() {
    let Some(python) = python() else { return };
    let script = r#"
import hashlib
n = 1 << 30
src = bytes(bytearray(range(251)) * (n // 251 + 1))[:n]
a = bytearray(src)
b = bytes(a)
print(len(b), hashlib.sha256(b).hexdigest(), b == src)
"#;
    let plain = run_plain(&python, &["-c", script]).success();
    let dir = scratch("dsa-python");
    let stats = dir.join("stats.json");
    let out = Preload::new().policy(&dir, MODEL).stats(&stats).run(&python, &["-c", script]).success();
    assert_eq!(out.stdout, plain.stdout);
    assert!(out.stdout.ends_with(" True\n"), "{}", out.stdout);
    let s = read_stats(&stats);
    assert_eq!(s["memcpy"]["engine"], "dsa");
    assert_eq!(s["dsa"]["device"], "model");
    assert!(engine_bytes(&s, "memcpy", "dsa") >= 2 << 30, "{s}");
    let submitted = s["dsa"]["descriptors_submitted"].as_u64().unwrap();
    // 2 GiB at least, in descriptors of at most 2 MiB (the model's limit).
    assert!(submitted >= 1024, "{submitted} descriptors");
    assert_eq!(s["dsa"]["descriptors_completed"].as_u64(), Some(submitted));
    assert_eq!(s["dsa"]["cpu_fallbacks"].as_u64(), Some(0));
    assert_eq!(s["dsa"]["queues_busy"].as_u64(), Some(0));
}

#[test]
fn injected_page_faults_are_resumed_end_to_end() {
    // Every 5th descriptor faults on a destination write mid-way: the
    // engine touches the page and submits the rest again.
    let program = c_program("sizes", &["-O2", "-fno-builtin"]);
    let dir = scratch("dsa-faults");
    let stats = dir.join("stats.json");
    let policy = format!("{MODEL}on_fault = \"resubmit\"\nmodel_fault_every = 5\n");
    let args = ["memcpy", "67108864", "33554433", "4194304", "1048576", "67108864"];
    let plain = run_plain(&program, &args).success();
    let out = Preload::new().policy(&dir, &policy).stats(&stats).run(&program, &args).success();
    assert_eq!(out.stdout, plain.stdout);
    let s = read_stats(&stats);
    let faults = s["dsa"]["page_faults"].as_u64().unwrap();
    assert!(faults > 0, "{s}");
    assert_eq!(s["dsa"]["cpu_fallbacks"].as_u64(), Some(0), "resubmitted, not finished on the CPU");
    assert!(s["dsa"]["descriptors_submitted"].as_u64().unwrap() > faults);
}

#[test]
fn a_shared_model_queue_takes_the_copies_through_enqcmd() {
    let program = c_program("sizes", &["-O2", "-fno-builtin"]);
    let args = ["memcpy", "67108864", "33554433", "67108864"];
    let plain = run_plain(&program, &args).success();
    let dir = scratch("dsa-shared");
    let stats = dir.join("stats.json");
    let out = Preload::new()
        .policy(&dir, &format!("{MODEL}model_shared = true\n"))
        .stats(&stats)
        .run(&program, &args)
        .success();
    assert_eq!(out.stdout, plain.stdout);
    let s = read_stats(&stats);
    assert!(engine_bytes(&s, "memcpy", "dsa") >= 128 << 20, "{s}");
    assert_eq!(s["dsa"]["cpu_fallbacks"].as_u64(), Some(0));
}

#[test]
fn fork_children_open_their_own_device_at_their_first_copy() {
    // The model's thread and the queue's portal stay with the parent: each
    // child opens its own at its first dsa copy, byte-exact (forks.c checks).
    let program = c_program("forks", &["-O2", "-fno-builtin", "-pthread"]);
    let dir = scratch("dsa-fork");
    let stats = dir.join("stats.json");
    let out = Preload::new().policy(&dir, MODEL).stats(&stats).run(&program, &["fork", "3"]);
    assert_eq!(out.code(), 0, "{out:#?}");
    let parent = read_stats(&stats);
    assert_eq!((parent["dsa"]["device"].as_str(), parent["dsa"]["queues_open"].as_u64()), (Some("model"), Some(1)));
    assert!(parent["dsa"]["descriptors_submitted"].as_u64().unwrap() > 0);
    let children: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("stats.json."))
        .map(|e| read_stats(&e.path()))
        .collect();
    assert_eq!(children.len(), 3);
    for child in &children {
        assert_eq!((child["dsa"]["device"].as_str(), child["dsa"]["queues_open"].as_u64()), (Some("model"), Some(1)));
        let submitted = child["dsa"]["descriptors_submitted"].as_u64().unwrap();
        assert!(submitted > 0, "the child's own descriptors: {child}");
        assert_eq!(child["dsa"]["descriptors_completed"].as_u64(), Some(submitted));
        assert_eq!(fallbacks(child, "memcpy", "dsa-unavailable"), 0, "{child}");
    }
}

#[test]
fn the_device_opens_at_the_first_copy_that_needs_it() {
    // A process that makes no large copy never starts the model (nor binds
    // a hardware queue); the first large copy opens it.
    let Some(python) = python() else { return };
    let script = r#"
import os
def threads():
    return sorted(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
print("before", "dsa-model" in threads())
a = bytearray(64 << 20)
b = bytes(a)
print("after", "dsa-model" in threads())
"#;
    let dir = scratch("dsa-lazy");
    let stats = dir.join("stats.json");
    let out = Preload::new().policy(&dir, MODEL).stats(&stats).run(&python, &["-c", script]).success();
    assert_eq!(out.stdout, "before False\nafter True\n", "{out:#?}");
    let s = read_stats(&stats);
    assert_eq!((s["dsa"]["queues_open"].as_u64(), s["dsa"]["open_error"].as_null()), (Some(1), Some(())));
    assert!(s["dsa"]["descriptors_submitted"].as_u64().unwrap() > 0);
}

#[test]
fn without_a_device_the_engine_is_refused_once_and_libc_copies() {
    let dir = scratch("dsa-none");
    let sysfs = dir.join("sysfs");
    std::fs::create_dir_all(&sysfs).unwrap();
    let policy = format!(
        "[memcpy]\nengine = \"dsa\"\nworkers = 0\n[dsa]\ndevice = \"hardware\"\nsysfs = \"{}\"\n",
        sysfs.display()
    );
    let stats = dir.join("stats.json");
    let program = c_program("echo_exit", &["-O2", "-fno-builtin"]);
    let out = Preload::new().policy(&dir, &policy).stats(&stats).run(&program, &["0"]).success();
    assert_eq!(out.stdout, "hello from the program: bytes ok\n");
    let log = out.library_lines();
    assert_eq!(log.len(), 1, "{}", out.stderr);
    assert!(
        log[0].ends_with("warning: [memcpy] engine \"dsa\" is unavailable (no usable DSA work queue); using cpu"),
        "{}",
        out.stderr
    );
    let s = read_stats(&stats);
    assert_eq!((s["memcpy"]["engine"].as_str(), s["dsa"]["device"].as_str()), (Some("cpu"), Some("none")));
}

#[test]
fn the_hybrid_cpu_share_rises_when_the_device_is_slowed() {
    let program = c_program("sizes", &["-O2", "-fno-builtin"]);
    let args: Vec<String> =
        std::iter::once("memcpy".to_owned()).chain((0..16).map(|_| (32u64 << 20).to_string())).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let plain = run_plain(&program, &args).success();
    let mut shares = Vec::new();
    // 1x against 24x: on a loaded 2-CPU machine the model at 1x can already
    // be slow enough for a share above 0.8 (CI saw 0.841 at 1x, 0.833 at 6x);
    // at 24x the tuned share heads for its ceiling (0.95).
    for slowdown in [1, 24] {
        let dir = scratch(&format!("dsa-hybrid-{slowdown}"));
        let stats = dir.join("stats.json");
        let policy = format!("[memcpy]\nengine = \"hybrid\"\n[dsa]\ndevice = \"model\"\nmodel_slowdown = {slowdown}\n");
        let out = Preload::new().policy(&dir, &policy).stats(&stats).run(&program, &args).success();
        assert_eq!(out.stdout, plain.stdout);
        let s = read_stats(&stats);
        assert_eq!(s["memcpy"]["engine"], "hybrid");
        assert!(engine_bytes(&s, "memcpy", "hybrid") >= 16 * (32 << 20), "{s}");
        assert!(s["dsa"]["descriptors_submitted"].as_u64().unwrap() > 0);
        shares.push(s["memcpy"]["cpu_share"].as_f64().expect("the current share is in the stats"));
    }
    assert!(shares[1] > shares[0], "CPU share with the model at 1x and 24x: {shares:?}");
}

#[test]
fn memset_and_memcmp_go_through_fill_and_compare_descriptors() {
    let program = c_program("memops", &["-O2", "-fno-builtin"]);
    let plain = run_plain(&program, &["64"]).success();
    assert!(plain.stdout.ends_with("ok\n"), "{}", plain.stdout);
    let dir = scratch("dsa-memops");
    let stats = dir.join("stats.json");
    let policy =
        "[memset]\nengine = \"dsa\"\n[memcmp]\nengine = \"dsa\"\n[dsa]\ndevice = \"model\"\nmodel_fault_every = 7\n";
    let out = Preload::new().policy(&dir, policy).stats(&stats).run(&program, &["64"]).success();
    assert_eq!(out.stdout, plain.stdout);
    let s = read_stats(&stats);
    assert_eq!((s["memset"]["engine"].as_str(), s["memcmp"]["engine"].as_str()), (Some("dsa"), Some("dsa")));
    assert!(engine_bytes(&s, "memset", "dsa") >= 64 << 20, "{s}");
    assert!(engine_bytes(&s, "memcmp", "dsa") >= 64 << 20, "{s}");
    assert!(s["dsa"]["descriptors_submitted"].as_u64().unwrap() > 0);
    assert!(s["dsa"]["page_faults"].as_u64().unwrap() > 0, "injected faults, resumed: {s}");
}

#[test]
fn memset_and_memcmp_are_off_by_default() {
    let program = c_program("memops", &["-O2", "-fno-builtin"]);
    let dir = scratch("dsa-memops-off");
    let stats = dir.join("stats.json");
    let out = Preload::new().stats(&stats).run(&program, &["8"]).success();
    assert!(out.stdout.ends_with("ok\n"));
    let s = read_stats(&stats);
    assert_eq!((s["memset"]["engine"].as_str(), s["memcmp"]["engine"].as_str()), (Some("off"), Some("off")));
    assert_eq!((counter(&s, "memset", "calls"), counter(&s, "memcmp", "calls")), (0, 0));
}
