//! scripts/ab: what it runs, in which order, what it compares and reports,
//! and its exit status. Behaviour, not timing: the only timing test makes
//! one side sleep half a second.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ipc_offload_tests::*;
use serde_json::Value;

/// scripts/ab with fresh artifacts, and no LD_PRELOAD or IPC_OFFLOAD_* of
/// the test's own.
fn ab() -> Command {
    library();
    tool();
    let mut cmd = Command::new(root().join("scripts/ab"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("IPC_OFFLOAD") {
            cmd.env_remove(name);
        }
    }
    cmd.env_remove("LD_PRELOAD");
    cmd
}

fn run_ab(cmd: &mut Command) -> Outcome {
    run(cmd, Duration::from_secs(180))
}

/// Runs `ab OPTIONS --json DIR/ab.json -- COMMAND...`; the outcome and the
/// JSON.
fn ab_json(dir: &Path, options: &[&str], command: &[&str]) -> (Outcome, Value) {
    let json = dir.join("ab.json");
    let out = run_ab(ab().args(options).arg("--json").arg(&json).arg("--").args(command));
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("{}: {e}\n{out:#?}", json.display()));
    (out, serde_json::from_str(&text).unwrap())
}

fn runs(json: &Value) -> &Vec<Value> {
    json["runs"].as_array().expect("runs")
}

fn measured<'j>(json: &'j Value, side: &str) -> Vec<&'j Value> {
    runs(json).iter().filter(|r| r["side"] == side && r["warmup"] == false).collect()
}

#[test]
fn compare_output_passes_when_only_stderr_differs() {
    let dir = scratch("ab-same");
    let (out, json) = ab_json(
        &dir,
        &["-n", "2", "--warmup", "0", "--compare-output"],
        &["sh", "-c", "seq 1 20000; echo \"$LD_PRELOAD\" >&2"],
    );
    assert_eq!(out.code(), 0, "{out:#?}");
    assert!(out.stdout.contains("| wall |") && out.stdout.contains("| peak RSS |"), "{}", out.stdout);
    assert!(out.stdout.contains("in 2 of 2 pairs"), "{}", out.stdout);
    for b in measured(&json, "B") {
        assert_eq!(b["stdout_same"], true, "{b}");
        assert_eq!(b["stdout_bytes"], 108_894, "{b}");
    }
    assert_eq!(json["gates"]["compare_output"]["passed"], true);
    assert_eq!(json["exit_code"], 0);
}

#[test]
fn compare_output_fails_when_stdout_depends_on_ld_preload() {
    let command = ["sh", "-c", "echo \"$LD_PRELOAD\""];
    let out = run_ab(ab().args(["-n", "2", "--warmup", "0", "--compare-output", "--"]).args(command));
    assert_eq!(out.code(), 1, "{out:#?}");
    assert!(out.stderr.contains("--compare-output: B differs from A: pair 1: stdout not the same"), "{}", out.stderr);
    assert!(out.stdout.contains("| differs |"), "{}", out.stdout);
    // Without the gate the difference is reported, not an error.
    let out = run_ab(ab().args(["-n", "1", "--warmup", "0", "--"]).args(command));
    assert_eq!(out.code(), 0, "{out:#?}");
    assert!(out.stdout.contains("in 0 of 1 pair "), "{}", out.stdout);
    // As many bytes, one of them different.
    let dir = scratch("ab-differs");
    let (out, json) = ab_json(
        &dir,
        &["-n", "1", "--warmup", "0", "--compare-output"],
        &["sh", "-c", "if [ -n \"$LD_PRELOAD\" ]; then echo B; else echo A; fi"],
    );
    assert_eq!(out.code(), 1, "{out:#?}");
    assert_eq!((&json["runs"][1]["stdout_bytes"], &json["runs"][1]["stdout_same"]), (&2.into(), &false.into()));
}

#[test]
fn compare_output_fails_when_the_exit_status_depends_on_ld_preload() {
    let dir = scratch("ab-status");
    let (out, json) =
        ab_json(&dir, &["-n", "2", "--warmup", "0", "--compare-output"], &["sh", "-c", "[ -z \"$LD_PRELOAD\" ]"]);
    assert_eq!(out.code(), 1, "{out:#?}");
    assert!(out.stderr.contains("pair 1: exit status A 0, B 1"), "{}", out.stderr);
    assert_eq!(json["status_differs"], serde_json::json!([1, 2]));
    assert_eq!(json["gates"]["compare_output"]["passed"], false);
    assert_eq!(json["exit_code"], 1);
}

#[test]
fn fail_if_slower_gates_on_the_median_wall_time() {
    let dir = scratch("ab-slower");
    let slow_b = ["sh", "-c", "[ -n \"$LD_PRELOAD\" ] && sleep 0.5; true"];
    let (out, json) = ab_json(&dir, &["-n", "2", "--warmup", "0", "--fail-if-slower", "1.2"], &slow_b);
    assert_eq!(out.code(), 1, "{out:#?}");
    assert!(out.stderr.contains("--fail-if-slower 1.2: B's median wall time"), "{}", out.stderr);
    assert_eq!(json["gates"]["fail_if_slower"]["passed"], false);
    assert!(json["gates"]["fail_if_slower"]["ratio_of_medians"].as_f64().unwrap() > 1.2);
    let slow_a = ["sh", "-c", "[ -z \"$LD_PRELOAD\" ] && sleep 0.5; true"];
    let (out, json) = ab_json(&dir, &["-n", "2", "--warmup", "0", "--fail-if-slower", "1.2"], &slow_a);
    assert_eq!(out.code(), 0, "{out:#?}");
    assert_eq!(json["gates"]["fail_if_slower"]["passed"], true);
    let ratio = json["summary"]["ratio"]["wall"]["median"].as_f64().unwrap();
    assert!(ratio < 1.0, "B did not sleep: {ratio}");
}

#[test]
fn fail_if_slower_refuses_runs_whose_exit_status_differs() {
    // B fails fast: its time says nothing of the same work.
    let out = run_ab(ab().args(["-n", "1", "--warmup", "0", "--fail-if-slower", "100", "--"]).args([
        "sh",
        "-c",
        "[ -z \"$LD_PRELOAD\" ]",
    ]));
    assert_eq!(out.code(), 1, "{out:#?}");
    assert!(out.stderr.contains("the times are not comparable"), "{}", out.stderr);
}

#[test]
fn runs_are_interleaved_a_then_b_after_the_warm_up() {
    let dir = scratch("ab-order");
    let log = dir.join("order.log");
    let script = format!("if [ -n \"$LD_PRELOAD\" ]; then echo B; else echo A; fi >> '{}'", log.display());
    let (out, json) = ab_json(&dir, &["-n", "3", "--warmup", "1"], &["sh", "-c", &script]);
    assert_eq!(out.code(), 0, "{out:#?}");
    // What the command itself saw, in the order it ran.
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "A\nB\n".repeat(4));
    let runs = runs(&json);
    assert_eq!(runs.len(), 8);
    let sides: String = runs.iter().map(|r| r["side"].as_str().unwrap()).collect();
    assert_eq!(sides, "ABABABAB");
    let warm: Vec<bool> = runs.iter().map(|r| r["warmup"].as_bool().unwrap()).collect();
    assert_eq!(warm, [true, true, false, false, false, false, false, false]);
    let mut end = 0.0;
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(r["seq"], i + 1);
        let start = r["start_s"].as_f64().unwrap();
        assert!(start >= end, "run {} started before the one before it ended: {runs:#?}", i + 1);
        end = start + r["wall_s"].as_f64().unwrap();
    }
    let pairs: Vec<(u64, u64)> = json["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["a"].as_u64().unwrap(), p["b"].as_u64().unwrap()))
        .collect();
    assert_eq!(pairs, [(3, 4), (5, 6), (7, 8)]);
    assert_eq!((json["warmup_pairs"].as_u64(), json["measured_pairs"].as_u64()), (Some(1), Some(3)));
}

#[test]
fn b_prepends_the_library_to_ld_preload_and_gets_the_policy() {
    let dir = scratch("ab-env");
    std::fs::write(dir.join("p.toml"), "[memcpy]\nmin_bytes = \"2MiB\"\n").unwrap();
    let log = dir.join("env.log");
    let other = "/lib/x86_64-linux-gnu/libc.so.6";
    let script = format!("echo \"$LD_PRELOAD|${{IPC_OFFLOAD_POLICY:-}}\" >> '{}'", log.display());
    let out = run_ab(
        ab().current_dir(&dir)
            .env("LD_PRELOAD", other)
            .args(["-n", "1", "--warmup", "0", "--policy", "p.toml", "--", "sh", "-c", &script]),
    );
    assert_eq!(out.code(), 0, "{out:#?}");
    let lib = library().display().to_string();
    let policy = dir.join("p.toml").display().to_string();
    assert_eq!(std::fs::read_to_string(&log).unwrap(), format!("{other}|\n{lib} {other}|{policy}\n"));
}

#[test]
fn a_failing_command_is_measured_and_reported() {
    let dir = scratch("ab-fails");
    let (out, json) =
        ab_json(&dir, &["-n", "2", "--warmup", "0", "--compare-output"], &["sh", "-c", "echo oops >&2; exit 3"]);
    // The same failure on both sides: nothing to fail on.
    assert_eq!(out.code(), 0, "{out:#?}");
    assert!(out.stdout.contains("Exit status: A 3 in 2 runs; B 3 in 2 runs."), "{}", out.stdout);
    assert!(out.stderr.contains("run 1 (A) exited with status 3; the end of its stderr:\n  oops"), "{}", out.stderr);
    assert!(out.stderr.contains("run 2 (B) exited with status 3"), "{}", out.stderr);
    assert!(runs(&json).iter().all(|r| r["exit_code"] == 3 && r["signal"].is_null()), "{json:#}");
    let (out, json) = ab_json(&dir, &["-n", "1", "--warmup", "0"], &["sh", "-c", "kill -9 $$"]);
    assert_eq!(out.code(), 0, "{out:#?}");
    assert!(runs(&json).iter().all(|r| r["signal"] == 9 && r["exit_code"].is_null()), "{json:#}");
    assert!(out.stdout.contains("| signal 9 | signal 9 |"), "{}", out.stdout);
}

#[test]
fn usage_errors_exit_2_and_run_nothing() {
    let dir = scratch("ab-usage");
    std::fs::write(dir.join("bad.toml"), "[memcpy]\nengine = \"fast\"\n").unwrap();
    let marker = dir.join("ran");
    let touch = format!("touch '{}'", marker.display());
    let bad_policy = dir.join("bad.toml").display().to_string();
    let cases: [&[&str]; 9] = [
        &[],
        &["-n", "2"],
        &["-n", "0", "--", "true"],
        &["-n", "many", "--", "true"],
        &["--warmup", "-1", "--", "true"],
        &["--fail-if-slower", "0", "--", "true"],
        &["--bogus", "--", "true"],
        &["--json"],
        &["--policy", &bad_policy, "--", "sh", "-c", &touch],
    ];
    for args in cases {
        let out = run_ab(ab().args(args));
        assert_eq!(out.code(), 2, "{args:?}: {out:#?}");
        assert!(out.stderr.starts_with("ab: ") || out.stderr.contains("bad.toml:2:"), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
    assert!(!marker.exists(), "a command ran under a rejected policy");
    let out = run_ab(ab().args(["--", "/nonexistent/program"]));
    assert_eq!(out.code(), 2, "{out:#?}");
    assert!(out.stderr.contains("cannot start \"/nonexistent/program\""), "{}", out.stderr);
    let out = run_ab(ab().arg("--help")).success();
    assert!(out.stdout.starts_with("usage: ab "), "{}", out.stdout);
}

#[test]
fn a_pipeline_through_sh_c_gives_the_same_bytes() {
    let dir = scratch("ab-pipeline");
    let data = dir.join("data");
    let status =
        Command::new("sh").args(["-c", &format!("head -c 32M /dev/urandom > '{}'", data.display())]).status().unwrap();
    assert!(status.success());
    let pipeline =
        format!("dd if='{}' bs=4M 2>/dev/null | dd iflag=fullblock bs=4M 2>/dev/null | sha256sum", data.display());
    let (out, json) = ab_json(&dir, &["-n", "2", "--warmup", "0", "--compare-output"], &["sh", "-c", &pipeline]);
    assert_eq!(out.code(), 0, "{out:#?}");
    // "<64 hex digits>  -\n" on every run, the same.
    assert!(runs(&json).iter().all(|r| r["stdout_bytes"] == 68 && r["exit_code"] == 0), "{json:#}");
    assert_eq!(json["stdout_differs"], serde_json::json!([]));
}

#[test]
fn peak_rss_covers_descendants() {
    let Some(python) = python() else { return };
    let dir = scratch("ab-rss");
    // python3 is a grandchild: sh forks it and waits (`; true`).
    let script = format!("'{}' -c 'b = bytearray(200 << 20)'; true", python.display());
    let (out, json) = ab_json(&dir, &["-n", "1", "--warmup", "0"], &["sh", "-c", &script]);
    assert_eq!(out.code(), 0, "{out:#?}");
    for r in runs(&json) {
        let rss = r["max_rss_bytes"].as_u64().unwrap();
        assert!(rss >= 200 << 20, "peak RSS {rss} bytes: {r}");
    }
    let a = json["summary"]["A"]["max_rss_bytes"]["median"].as_u64().unwrap();
    assert!(a >= 200 << 20, "{json:#}");
    let row = out.stdout.lines().find(|l| l.starts_with("| peak RSS |")).unwrap();
    let mib: f64 = row.split('|').nth(2).unwrap().trim().trim_end_matches(" MiB").parse().unwrap();
    assert!(mib >= 200.0, "{row}");
}

#[test]
fn long_runs_show_progress_and_json_can_go_to_stdout() {
    let out = run_ab(ab().args(["-n", "1", "--warmup", "0", "--json", "-", "--", "sleep", "1.2"]));
    assert_eq!(out.code(), 0, "{out:#?}");
    let json: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert_eq!(runs(&json).len(), 2);
    for label in ["run 1/2 (A, pair 1/1)", "run 2/2 (B, pair 1/1)"] {
        assert!(out.stderr.contains(&format!("ab: {label}: running...")), "{}", out.stderr);
        assert!(out.stderr.contains(&format!("ab: {label}: 1.")), "{}", out.stderr);
    }
}
