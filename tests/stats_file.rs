//! The stats file: written at start, rewritten every stats_interval while
//! the process runs, written at exit, _exit and _Exit; PATH for the first
//! process, PATH.PID for its descendants; `-` for stderr; owner-only.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipc_offload_tests::*;

fn program() -> std::path::PathBuf {
    c_program("exit_modes", &["-O2", "-fno-builtin"])
}

/// A child process killed when the test ends, whichever way it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_way_of_exiting_leaves_final_figures() {
    for mode in ["return", "exit", "_exit", "_Exit"] {
        let dir = scratch(mode);
        let stats = dir.join("stats.json");
        let out = Preload::new().stats(&stats).run(program(), &[mode, "3"]).success();
        assert_eq!(out.stdout, "3 copies done, errno kept\n");
        let s = read_stats(&stats);
        assert_eq!(s["final"], true, "{mode}: {s}");
        assert_eq!(counter(&s, "memcpy", "calls"), 3, "{mode}: {s}");
        assert_eq!(counter(&s, "memcpy", "bytes"), 3 * (4 << 20));
        let mode_bits = std::fs::metadata(&stats).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode_bits, 0o600, "the stats file must be owner-only");
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).collect();
        assert_eq!(leftovers.len(), 1, "temporary files left behind: {leftovers:?}");
    }
}

#[test]
fn a_running_process_rewrites_its_file_and_a_killed_one_leaves_it() {
    let dir = scratch("periodic");
    let stats = dir.join("stats.json");
    let child = Preload::new()
        .policy(&dir, "stats_interval = \"50ms\"\n")
        .stats(&stats)
        .command(program())
        .args(["sleep", "2"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    // The file appears at start (zeros), then shows the copies while the
    // process sleeps, rewritten every 50 ms: three different stamps within
    // well under the default interval of one second.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stamps = vec![];
    while stamps.len() < 3 {
        assert!(Instant::now() < deadline, "the stats file was not rewritten: {stamps:?}");
        if let Ok(text) = std::fs::read_to_string(&stats) {
            let s: serde_json::Value = serde_json::from_str(&text).expect("never a torn file");
            if counter(&s, "memcpy", "calls") == 2 {
                let stamp = s["unix_time_ms"].as_u64().unwrap();
                if stamps.last() != Some(&stamp) {
                    stamps.push(stamp);
                }
                assert_eq!(s["final"], false);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(stamps[2] - stamps[0] < 900, "stats_interval ignored: {stamps:?}");
    // While it runs, the table says so.
    let out = run(Command::new(tool()).arg("stats").arg(&stats), Duration::from_secs(30)).success();
    assert!(out.stdout.contains(" running ("), "{}", out.stdout);
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let s = read_stats(&stats);
    assert_eq!(s["final"], false, "killed: the last periodic figures stay");
    assert_eq!(counter(&s, "memcpy", "calls"), 2);
    // The table shows the process as gone.
    let out = run(Command::new(tool()).arg("stats").arg(&stats), Duration::from_secs(30)).success();
    assert!(out.stdout.contains(" gone "), "{}", out.stdout);
}

#[test]
fn descendants_write_path_dot_pid() {
    let dir = scratch("tree");
    let stats = dir.join("stats.json");
    let p = program();
    let script = format!("{p} return 1 && {p} _exit 2; echo shell-done", p = p.display());
    let mut cmd = Preload::new().stats(&stats).command("sh");
    cmd.arg("-c").arg(&script);
    let out = run(&mut cmd, Duration::from_secs(60)).success();
    assert!(out.stdout.ends_with("shell-done\n"));
    // sh wrote stats.json; each of its two children stats.json.PID.
    let root = read_stats(&stats);
    assert_eq!(root["process"], "sh");
    let mut children: Vec<u64> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.strip_prefix("stats.json.")?.parse::<u64>().ok()?;
            let s = read_stats(&e.path());
            assert_eq!(s["pid"], pid);
            Some(counter(&s, "memcpy", "calls"))
        })
        .collect();
    children.sort();
    assert_eq!(children, vec![1, 2]);
    // The table lists all three with a total.
    let out = run(Command::new(tool()).arg("stats").arg(&stats), Duration::from_secs(30)).success();
    assert!(out.stdout.contains("total  3 processes"), "{}", out.stdout);
}

#[test]
fn dash_writes_one_line_to_stderr_at_exit() {
    let out = Preload::new().env("IPC_OFFLOAD_STATS", "-").run(program(), &["_exit", "2"]).success();
    assert_eq!(out.stdout, "2 copies done, errno kept\n");
    let json: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(json.len(), 1, "{}", out.stderr);
    let s: serde_json::Value = serde_json::from_str(json[0]).unwrap();
    assert_eq!(counter(&s, "memcpy", "calls"), 2);
    assert_eq!(s["final"], true);
}

#[test]
fn a_symlink_at_the_stats_path_is_replaced_not_followed() {
    let dir = scratch("symlink");
    let stats = dir.join("stats.json");
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    // rename(2) replaces the link itself; the file it pointed to is untouched.
    std::os::unix::fs::symlink(&victim, &stats).unwrap();
    Preload::new().stats(&stats).run(program(), &["return", "1"]).success();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(!std::fs::symlink_metadata(&stats).unwrap().file_type().is_symlink());
}

#[test]
fn final_figures_are_not_replaced_while_the_process_winds_down() {
    // Another library's destructor runs after ours and lingers for 300 ms
    // while our writer thread wakes every 20 ms: the file must stay final.
    let lingering = c_program("slow_destructor", &["-shared", "-fPIC"]);
    for order in [0, 1] {
        let dir = scratch("final");
        let stats = dir.join("stats.json");
        let ours = library().display().to_string();
        let theirs = lingering.display().to_string();
        let preload = if order == 0 { format!("{ours} {theirs}") } else { format!("{theirs} {ours}") };
        let mut cmd = Preload::new().policy(&dir, "stats_interval = \"20ms\"\n").stats(&stats).command(program());
        cmd.env("LD_PRELOAD", preload).args(["return", "2"]);
        run(&mut cmd, Duration::from_secs(60)).success();
        let s = read_stats(&stats);
        assert_eq!(s["final"], true, "order {order}: {s}");
        assert_eq!(counter(&s, "memcpy", "calls"), 2);
    }
}
