//! A bad policy never breaks the host program: one clear message per
//! problem (FILE:LINE:COL: message) on stderr, then a pass-through, with the
//! program's stdout and exit status unchanged; strict mode exits 2 instead.
//! The `check` command reports the same messages.

use std::path::Path;
use std::process::Command;

use ipc_offload_tests::*;

fn program() -> std::path::PathBuf {
    c_program("echo_exit", &["-O2", "-fno-builtin"])
}

/// What the program prints with `threads` when the library started nothing.
const HELLO_ONE_THREAD: &str = "hello from the program: bytes ok\nthreads=1\n";

/// Runs the program (exit status 3) under `policy`; checks that stdout and
/// the status are untouched, that the library started no thread and wrote
/// no stats, and returns stderr.
fn pass_through(dir: &Path, policy_file: &Path, extra: &[(&str, &str)]) -> String {
    let stats = dir.join("stats.json");
    let mut preload = Preload::new().env("IPC_OFFLOAD_POLICY", policy_file).stats(&stats);
    for (k, v) in extra {
        preload = preload.env(k, *v);
    }
    let out = preload.run(program(), &["3", "threads"]);
    assert_eq!(out.stdout, HELLO_ONE_THREAD, "{}", out.stderr);
    assert_eq!(out.code(), 3);
    assert!(!stats.exists(), "a rejected policy must leave the library inert");
    out.stderr
}

/// The two lines a rejected policy prints: the diagnostic and the verdict.
fn expect_rejected(stderr: &str, diagnostic: &str, source: &Path) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "expected exactly one diagnostic and one verdict:\n{stderr}");
    assert_eq!(lines[0], diagnostic);
    assert!(
        lines[1].starts_with("ipc-offload[")
            && lines[1].ends_with(&format!(
                "]: error: policy {} rejected (1 error); every hook passes through to libc",
                source.display()
            )),
        "{}",
        lines[1]
    );
}

fn case(name: &str, text: &str, diagnostic: impl Fn(&Path) -> String) {
    let dir = scratch(name);
    let file = dir.join("bad.toml");
    std::fs::write(&file, text).unwrap();
    let stderr = pass_through(&dir, &file, &[]);
    expect_rejected(&stderr, &diagnostic(&file), &file);
    // `check` agrees, line for line, and exits 2.
    let out = run(Command::new(tool()).arg("check").arg(&file), std::time::Duration::from_secs(30));
    assert_eq!(out.code(), 2);
    assert_eq!(out.stderr.trim_end(), diagnostic(&file));
}

#[test]
fn missing_file() {
    let dir = scratch("missing");
    let file = dir.join("nope.toml");
    let stderr = pass_through(&dir, &file, &[]);
    expect_rejected(
        &stderr,
        &format!("{}: cannot read policy file: No such file or directory (os error 2)", file.display()),
        &file,
    );
}

#[test]
fn unreadable_file() {
    let dir = scratch("unreadable");
    // A directory cannot be read as a file, whoever runs the test (root
    // ignores permission bits).
    let stderr = pass_through(&dir, &dir, &[]);
    expect_rejected(
        &stderr,
        &format!("{}: cannot read policy file: Is a directory (os error 21)", dir.display()),
        &dir,
    );
}

#[test]
fn syntax_error() {
    case("syntax", "[memcpy]\nengine = \"cpu\n", |f| {
        format!("{}:2:14: TOML syntax error: invalid basic string, expected `\"`", f.display())
    });
}

#[test]
fn unknown_key() {
    case("unknown-key", "[memcpy]\nengine = \"cpu\"\nthreshold = 5\n", |f| {
        format!(
            "{}:3:1: unknown key `threshold` in [memcpy] (expected one of: engine, min_bytes, workers, wait, cache, cpu_share, chunk_bytes, depth)",
            f.display()
        )
    });
}

#[test]
fn unknown_section() {
    case("unknown-section", "[memcopy]\nengine = \"cpu\"\n", |f| {
        format!(
            "{}:1:2: unknown key `memcopy` at the top level (expected one of: strict, stats_interval, defaults, memcpy, unix, pipe, memset, memcmp, shm, tcp, dsa, process)",
            f.display()
        )
    });
}

#[test]
fn bad_values() {
    case("bad-engine", "[unix]\nengine = \"turbo\"\n", |f| {
        format!(
            "{}:2:10: bad value \"turbo\" for `engine` in [unix] (expected one of: auto, cpu, async-cpu, dsa, hybrid, off)",
            f.display()
        )
    });
    case("bad-size", "[memcpy]\nmin_bytes = \"1MB\"\n", |f| {
        format!(
            "{}:2:13: bad value \"1MB\" for `min_bytes` in [memcpy] (expected a non-negative integer or a size such as \"256KiB\", \"1MiB\", \"1GiB\")",
            f.display()
        )
    });
    case("bad-mode", "[defaults]\nmode = \"fast\"\n", |f| {
        format!(
            "{}:2:8: bad value \"fast\" for `mode` in [defaults] (expected one of: latency, throughput, efficiency)",
            f.display()
        )
    });
    case("bad-workers", "[pipe]\nworkers = -2\n", |f| {
        format!(
            "{}:2:11: bad value -2 for `workers` in [pipe] (expected \"auto\" or an integer from 0 to 256)",
            f.display()
        )
    });
    case("bad-override", "[process.\"redis*\"]\nunix.wait = \"nap\"\n", |f| {
        format!(
            "{}:2:13: bad value \"nap\" for `wait` in [process.\"redis*\".unix] (expected one of: spin, sleep, spin-then-sleep, umwait, yield)",
            f.display()
        )
    });
}

#[test]
fn strict_in_the_file_exits_2_before_main() {
    let dir = scratch("strict");
    let file = dir.join("strict.toml");
    std::fs::write(&file, "strict = true\n[memcpy]\nengine = \"nope\"\n").unwrap();
    let out = Preload::new().env("IPC_OFFLOAD_POLICY", &file).run(program(), &["0"]);
    assert_eq!(out.code(), 2);
    assert_eq!(out.stdout, "", "the program must not run");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stderr);
    assert!(lines[0].starts_with(&format!("{}:3:10: bad value \"nope\"", file.display())));
    assert!(lines[1].ends_with("rejected (1 error) and strict = true: exiting with status 2"), "{}", lines[1]);
}

#[test]
fn strict_from_the_environment_covers_unparseable_files() {
    let dir = scratch("strict-env");
    let file = dir.join("broken.toml");
    std::fs::write(&file, "strict = true\n[[[\n").unwrap();
    // Unparseable: the file's own `strict` cannot be read, so it passes through...
    let stderr = pass_through(&dir, &file, &[]);
    assert!(stderr.contains("TOML syntax error"), "{stderr}");
    // ...unless the environment says strict.
    let out = Preload::new().env("IPC_OFFLOAD_POLICY", &file).env("IPC_OFFLOAD_STRICT", "1").run(program(), &["0"]);
    assert_eq!(out.code(), 2);
    assert_eq!(out.stdout, "");
    assert!(out.stderr.contains("and IPC_OFFLOAD_STRICT is on: exiting with status 2"), "{}", out.stderr);
    // And a missing file too.
    let missing = dir.join("missing.toml");
    let out = Preload::new().env("IPC_OFFLOAD_POLICY", &missing).env("IPC_OFFLOAD_STRICT", "1").run(program(), &["0"]);
    assert_eq!(out.code(), 2);
}

#[test]
fn every_error_of_a_file_is_reported_once() {
    let dir = scratch("many");
    let file = dir.join("many.toml");
    std::fs::write(&file, "[memcpy]\nengine = \"x\"\nwait = \"y\"\n[pipe]\nzzz = 1\n").unwrap();
    let stderr = pass_through(&dir, &file, &[]);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{stderr}");
    let prefix = file.display().to_string();
    assert!(lines[0].starts_with(&format!("{prefix}:2:10: ")));
    assert!(lines[1].starts_with(&format!("{prefix}:3:8: ")));
    assert!(lines[2].starts_with(&format!("{prefix}:5:1: ")));
    assert!(lines[3].contains("rejected (3 errors)"));
}

#[test]
fn check_accepts_a_good_policy_and_explains_a_process() {
    let dir = scratch("check-ok");
    let file = dir.join("good.toml");
    std::fs::write(
        &file,
        "[memcpy]\nmin_bytes = \"2MiB\"\n[process.\"redis-*\"]\nmemcpy.engine = \"cpu\"\nunix.min_bytes = \"64KiB\"\n",
    )
    .unwrap();
    let out = run(
        Command::new(tool()).arg("check").arg("--process").arg("redis-server").arg(&file),
        std::time::Duration::from_secs(30),
    );
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.starts_with(&format!("{}: ok (1 process override(s))\n", file.display())));
    assert!(out.stdout.contains("[memcpy] engine cpu, min_bytes 2MiB"), "{}", out.stdout);
    assert!(out.stdout.contains("[unix] engine auto, min_bytes 64KiB"), "{}", out.stdout);
}

#[test]
fn kill_switch_makes_every_hook_a_pass_through() {
    let dir = scratch("off");
    let stats = dir.join("stats.json");
    let out = Preload::new()
        .env("IPC_OFFLOAD", "off")
        .policy(&dir, "[memcpy]\nmin_bytes = 1\n")
        .stats(&stats)
        .run(program(), &["5", "threads"]);
    assert_eq!((out.stdout.as_str(), out.code()), (HELLO_ONE_THREAD, 5));
    assert_eq!(out.stderr, "");
    assert!(!stats.exists(), "IPC_OFFLOAD=off writes nothing");
    // The same program with the library on runs a worker for its copy.
    let out = Preload::new().policy(&dir, "[memcpy]\nmin_bytes = 1\nworkers = 1\n").run(program(), &["5", "threads"]);
    assert_eq!(out.stdout, "hello from the program: bytes ok\nthreads=2\n");
}
