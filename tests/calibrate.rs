//! scripts/ipc-offload calibrate, for real: a quick calibration of this
//! machine writes a policy that passes check, and prints the table it
//! measured. The figures depend on the machine and its load: nothing here
//! asserts a time or a threshold.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ipc_offload_tests::*;

fn wrapper() -> Command {
    // The library and the tool, fresh, before the script looks.
    library();
    tool();
    let mut cmd = Command::new(root().join("scripts/ipc-offload"));
    for (name, _) in std::env::vars_os() {
        if name == "LD_PRELOAD" || name.to_string_lossy().starts_with("IPC_OFFLOAD") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// The value of `key` in section `[class]` of a policy file's text.
fn key<'a>(text: &'a str, class: &str, key: &str) -> Option<&'a str> {
    let section = text.split(&format!("\n[{class}]\n")).nth(1)?;
    let section = section.split("\n[").next()?;
    section.lines().find_map(|l| l.strip_prefix(&format!("{key} = ")))
}

#[test]
fn quick_calibration_writes_a_policy_that_passes_check() {
    let dir = scratch("calibrate");
    let file = dir.join("calibrated.toml");
    let out = run(wrapper().args(["calibrate", "--quick", "--out"]).arg(&file), Duration::from_secs(240)).success();

    // The table: per measured class, a row per size and the choice. unix
    // and pipe are always measured (the shared-memory path with libc
    // copies); memcpy where async-cpu has a worker (2 CPUs or more).
    let memcpy = !out.stdout.contains("[memcpy] not measured: no engine to compare with libc here");
    let measured: &[&str] = if memcpy { &["memcpy", "unix", "pipe"] } else { &["unix", "pipe"] };
    for class in measured {
        assert!(out.stdout.contains(&format!("[{class}] GB/s, median of 9 runs")), "{}", out.stdout);
        assert!(out.stderr.contains(&format!("calibrate: [{class}] round 9/9: ")), "{}", out.stderr);
    }
    for size in ["64KiB", "1MiB", "16MiB"] {
        assert!(out.stdout.lines().any(|l| l.trim_start().starts_with(size)), "{size}: {}", out.stdout);
    }
    assert_eq!(out.stdout.matches("  chosen: engine = ").count(), measured.len(), "{}", out.stdout);
    assert!(out.stdout.contains("  kernel  cpu"), "{}", out.stdout);
    assert!(out.stdout.ends_with(&format!("wrote {}\n", file.display())), "{}", out.stdout);
    assert!(out.stderr.contains("calibrate: done in "), "{}", out.stderr);

    // The file passes check, and says what the table chose.
    let checked = run(wrapper().arg("check").arg(&file), Duration::from_secs(60)).success();
    assert_eq!(checked.stdout, format!("{}: ok (0 process override(s))\n", file.display()));
    let text = std::fs::read_to_string(&file).unwrap();
    for class in ["memcpy", "unix", "pipe", "memset", "memcmp"] {
        let engine = key(&text, class, "engine").unwrap_or_else(|| panic!("[{class}] engine: {text}"));
        let min_bytes = key(&text, class, "min_bytes");
        let expected = format!("  chosen: engine = {engine}");
        match min_bytes {
            Some(min) => assert!(out.stdout.contains(&format!("{expected}, min_bytes = {min} (")), "{class}: {text}"),
            None => assert_eq!(engine, "\"off\"", "{class}: {text}"),
        }
    }
    // The table rides along as comments.
    assert!(text.contains("\n# [pipe] GB/s, median of 9 runs"), "{text}");
}

#[test]
fn bad_arguments_exit_2_before_measuring() {
    for (args, message) in [
        (&["calibrate", "--bogus"][..], "ipc-offload calibrate: unknown argument --bogus\n"),
        (&["calibrate", "--out"][..], "ipc-offload calibrate: --out needs a file\n"),
        (
            &["calibrate", "--out", "/nonexistent-dir/p.toml"][..],
            "ipc-offload calibrate: --out /nonexistent-dir/p.toml: /nonexistent-dir is not a directory\n",
        ),
    ] {
        let out = run(wrapper().args(args), Duration::from_secs(60));
        assert_eq!(out.code(), 2, "{args:?}: {out:?}");
        assert!(out.stderr.starts_with(message), "{args:?}: {out:?}");
        assert!(out.stderr.contains("usage: ipc-offload calibrate [--out FILE] [--quick] [--dsa-model]"), "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
    }
    let help = run(wrapper().args(["help", "calibrate"]), Duration::from_secs(60)).success();
    assert!(help.stdout.starts_with("usage: ipc-offload calibrate [--out FILE] [--quick] [--dsa-model]\n"), "{help:?}");
}

#[test]
fn a_missing_library_is_reported() {
    // IPC_OFFLOAD_LIB names the library to measure; the tool checks it
    // before measuring (the script builds only the default one).
    let missing = Path::new("/nonexistent-dir/libipc_offload.so");
    let out = run(
        Command::new(tool()).args(["calibrate", "--quick"]).env("IPC_OFFLOAD_LIB", missing),
        Duration::from_secs(60),
    );
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(out.stderr.contains("the library /nonexistent-dir/libipc_offload.so does not exist"), "{out:?}");
}
