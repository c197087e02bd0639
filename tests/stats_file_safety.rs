//! The stats file is written only where the library may write: created
//! owner-only, never through a link planted at its temporary name, never
//! over a file of another user. Some cases need root (a file owned by
//! `nobody`, a pid namespace for predictable thread ids); without root they
//! are skipped with a message.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

use ipc_offload_tests::{Preload, c_program, library, read_stats, run, scratch};

const NOBODY: u32 = 65534;

fn program() -> std::path::PathBuf {
    c_program("exit_modes", &["-O2", "-fno-builtin"])
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("SKIPPED: needs root");
    }
    root
}

/// Files in `dir` whose name starts with `prefix`.
fn named(dir: &std::path::Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[test]
fn the_stats_file_is_owner_only_whatever_the_umask() {
    let dir = scratch("umask");
    let stats = dir.join("stats.json");
    let mut cmd = Preload::new().stats(&stats).command("sh");
    cmd.args(["-c", "umask 000; exec \"$0\" return 2"]).arg(program());
    run(&mut cmd, Duration::from_secs(60)).success();
    let mode = std::fs::metadata(&stats).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "umask 000 must not open the stats file to others");
    assert_eq!(read_stats(&stats)["final"], true);
}

#[test]
fn a_stats_file_of_another_user_is_not_replaced() {
    if !is_root() {
        return;
    }
    for (owner, replaced) in [(NOBODY, false), (0, true)] {
        let dir = scratch(&format!("owner-{owner}"));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let stats = dir.join("stats.json");
        std::fs::write(&stats, "theirs").unwrap();
        std::os::unix::fs::chown(&stats, Some(owner), Some(owner)).unwrap();
        let out = Preload::new().stats(&stats).run(program(), &["return", "2"]).success();
        let meta = std::fs::symlink_metadata(&stats).unwrap();
        if replaced {
            // The control: a file of our own uid is replaced, so the check
            // above is what keeps nobody's file.
            assert_eq!(read_stats(&stats)["final"], true, "owner {owner}");
        } else {
            assert_eq!(std::fs::read_to_string(&stats).unwrap(), "theirs", "owner {owner}: {out:#?}");
            assert_eq!(meta.uid(), NOBODY);
            assert!(out.stderr.contains("cannot write the stats file"), "a warning says why: {out:#?}");
        }
        assert_eq!(named(&dir, "stats.json.tmp"), Vec::<String>::new(), "no temporary file is left behind");
    }
}

/// Links planted at every temporary name the process can use: in a pid
/// namespace its threads are numbered from 1.
#[test]
fn links_planted_at_the_temporary_name_are_not_written_through() {
    if !is_root() || !ipc_offload_tests::have("unshare") {
        return;
    }
    for kind in ["symlink", "hardlink"] {
        let dir = scratch(&format!("planted-{kind}"));
        let stats = dir.join("stats.json");
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        for tid in 1..=64 {
            let link = dir.join(format!("stats.json.tmp.{tid}"));
            match kind {
                "symlink" => std::os::unix::fs::symlink(&victim, &link).unwrap(),
                _ => std::fs::hard_link(&victim, &link).unwrap(),
            }
        }
        // unshare itself runs without the library: the program is the
        // namespace's pid 1 and the first process of the stats tree.
        let mut cmd = Command::new("unshare");
        cmd.env_remove("LD_PRELOAD").args(["--pid", "--fork", "--kill-child", "env"]);
        cmd.arg(format!("LD_PRELOAD={}", library().display())).arg(format!("IPC_OFFLOAD_STATS={}", stats.display()));
        cmd.arg(program()).args(["return", "3"]);
        let out = run(&mut cmd, Duration::from_secs(60)).success();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious", "{kind}: {out:#?}");
        let s = read_stats(&stats);
        assert_eq!((s["pid"].as_u64(), &s["final"]), (Some(1), &serde_json::Value::Bool(true)), "{kind}: {s}");
        assert_eq!(std::fs::symlink_metadata(&stats).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
