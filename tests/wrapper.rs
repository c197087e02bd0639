//! scripts/ipc-offload: run, check, stats and their --help.

use std::process::Command;
use std::time::Duration;

use ipc_offload_tests::*;

fn wrapper() -> Command {
    // Make sure the artifacts exist and are fresh before the script looks.
    library();
    tool();
    let mut cmd = Command::new(root().join("scripts/ipc-offload"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("IPC_OFFLOAD") {
            cmd.env_remove(name);
        }
    }
    cmd
}

#[test]
fn run_prepends_the_library_and_keeps_other_preloads() {
    let program = c_program("echo_exit", &["-O2", "-fno-builtin"]);
    let dir = scratch("wrapper-run");
    let stats = dir.join("stats.json");
    // Another preload that is harmless: libc itself.
    let other = "/lib/x86_64-linux-gnu/libc.so.6";
    // A stale root from some earlier tree: `run --stats` starts a new one.
    let out = run(
        wrapper().env("IPC_OFFLOAD_STATS_ROOT", "1").env("LD_PRELOAD", other).current_dir(&dir).args([
            "run",
            "--stats",
            "stats.json",
            "--",
            program.to_str().unwrap(),
            "4",
            "preload",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(out.code(), 4, "{out:?}");
    let lib = library().display().to_string();
    assert_eq!(out.stdout, format!("hello from the program: bytes ok\nLD_PRELOAD={lib} {other}\n"));
    // The relative --stats path was made absolute and written by the
    // program itself (the root of the new tree), not as stats.json.PID.
    assert_eq!(counter(&read_stats(&stats), "memcpy", "calls"), 1);
}

#[test]
fn run_off_is_a_pass_through() {
    let program = c_program("echo_exit", &["-O2", "-fno-builtin"]);
    let dir = scratch("wrapper-off");
    let stats = dir.join("stats.json");
    let out = run(
        wrapper().args(["run", "--off", "--stats"]).arg(&stats).arg("--").arg(&program).arg("0"),
        Duration::from_secs(60),
    )
    .success();
    assert!(out.stdout.starts_with("hello"));
    assert!(!stats.exists());
}

#[test]
fn every_command_has_help() {
    for args in [&["--help"][..], &["run", "--help"], &["check", "--help"], &["stats", "--help"], &["help", "run"]] {
        let out = run(wrapper().args(args), Duration::from_secs(60)).success();
        assert!(out.stdout.starts_with("usage: "), "{args:?}: {}", out.stdout);
    }
}

#[test]
fn bad_usage_exits_2_with_a_message() {
    for args in [&["run"][..], &["run", "--bogus", "--", "true"], &["frobnicate"], &["check"]] {
        let out = run(wrapper().args(args), Duration::from_secs(60));
        assert_eq!(out.code(), 2, "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn check_through_the_wrapper() {
    let dir = scratch("wrapper-check");
    let file = dir.join("p.toml");
    std::fs::write(&file, "[memcpy]\nengine = \"cpu\"\n").unwrap();
    let out = run(wrapper().arg("check").arg(&file), Duration::from_secs(60)).success();
    assert_eq!(out.stdout, format!("{}: ok (0 process override(s))\n", file.display()));
    std::fs::write(&file, "[memcpy]\nengine = 1\n").unwrap();
    let out = run(wrapper().arg("check").arg(&file), Duration::from_secs(60));
    assert_eq!(out.code(), 2);
    assert_eq!(
        out.stderr,
        format!("{}:2:10: `engine` in [memcpy] must be a string, found an integer\n", file.display())
    );
}
