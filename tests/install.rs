//! `scripts/ipc-offload install` and `uninstall`: the installed wrapper runs
//! a real program under the installed library from another directory,
//! without the source tree, and uninstall leaves the prefix as it found it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ipc_offload_tests::reliability::stats_files;
use ipc_offload_tests::*;

/// A command without the caller's IPC_OFFLOAD_* variables or LD_PRELOAD.
fn without_preload(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("IPC_OFFLOAD") {
            cmd.env_remove(name);
        }
    }
    cmd.env_remove("LD_PRELOAD");
    cmd
}

/// [`without_preload`], with a PATH that reaches no cargo and no script of
/// the source tree: how the installed wrapper runs.
fn clean(program: &Path) -> Command {
    let mut cmd = without_preload(program);
    cmd.env("PATH", "/usr/bin:/bin");
    cmd
}

/// Every file and directory under `dir`, relative to it, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut found = vec![];
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            found.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() && !path.is_symlink() {
                todo.push(path);
            }
        }
    }
    found.sort();
    found
}

const INSTALLED: [&str; 5] = [
    "bin/ipc-offload",
    "lib/ipc-offload/libipc_offload.so",
    "lib/ipc-offload/ipc-offload-tool",
    "share/ipc-offload/example-policy.toml",
    "lib/ipc-offload/MANIFEST",
];

fn install(prefix: &Path) -> Outcome {
    // Built and fresh before the script looks: it then builds nothing.
    library();
    tool();
    // Cargo stays reachable: a source changed meanwhile makes it build.
    let out = run(
        without_preload(&root().join("scripts/ipc-offload")).arg("install").arg("--prefix").arg(prefix),
        Duration::from_secs(600),
    )
    .success();
    for file in INSTALLED {
        let line = format!("installed {}", prefix.join(file).display());
        assert!(out.stdout.lines().any(|l| l == line), "no '{line}' in:\n{}", out.stdout);
    }
    out
}

#[test]
fn installed_wrapper_runs_a_program_from_anywhere_and_uninstall_empties_the_prefix() {
    let dir = scratch("install");
    let prefix = dir.join("prefix");
    std::fs::create_dir(&prefix).unwrap();
    install(&prefix);
    // Again over it, as an upgrade does: the same files, and the manifest
    // still names the directories the first install created.
    install(&prefix);
    assert_eq!(
        tree(&prefix),
        [
            "bin",
            "bin/ipc-offload",
            "lib",
            "lib/ipc-offload",
            "lib/ipc-offload/MANIFEST",
            "lib/ipc-offload/ipc-offload-tool",
            "lib/ipc-offload/libipc_offload.so",
            "share",
            "share/ipc-offload",
            "share/ipc-offload/example-policy.toml",
        ]
    );
    let mode = |file: &str| std::fs::metadata(prefix.join(file)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("bin/ipc-offload"), 0o755);
    assert_eq!(mode("lib/ipc-offload/ipc-offload-tool"), 0o755);
    assert_eq!(mode("lib/ipc-offload/libipc_offload.so"), 0o644);
    assert_eq!(mode("share/ipc-offload/example-policy.toml"), 0o644);
    assert_eq!(
        std::fs::read(prefix.join("lib/ipc-offload/libipc_offload.so")).unwrap(),
        std::fs::read(root().join("target/release/libipc_offload.so")).unwrap()
    );
    // Nothing installed points into the source tree.
    let source = root().display().to_string();
    let wrapper = std::fs::read_to_string(prefix.join("bin/ipc-offload")).unwrap();
    assert!(!wrapper.contains(&source), "the installed wrapper names {source}");
    let manifest = std::fs::read_to_string(prefix.join("lib/ipc-offload/MANIFEST")).unwrap();
    assert!(!manifest.lines().any(|l| l.starts_with("file /") || l.starts_with("dir /")), "{manifest}");

    // The prefix moves with its files: the wrapper finds the library and the
    // tool from where it is.
    let moved = dir.join("moved");
    std::fs::rename(&prefix, &moved).unwrap();
    let wrapper = moved.join("bin/ipc-offload");
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();

    // A writer child and a reading parent over a socketpair, 64 MiB in 1 MiB
    // writes, checked byte for byte; once plainly, once through the wrapper.
    let program = c_program("unix_matrix", &["-O2", "-fno-builtin"]);
    let args = ["blocking", "67108864", "1048576", "1048576"];
    let plain = run_plain(&program, &args);
    assert!(plain.status.success(), "{plain:?}");
    let out = run(
        clean(&wrapper).current_dir(&elsewhere).args(["run", "--stats", "stats.json", "--"]).arg(&program).args(args),
        Duration::from_secs(120),
    )
    .success();
    assert_eq!(out.stdout, plain.stdout);
    assert!(out.library_lines().is_empty(), "{}", out.stderr);
    // The relative --stats path is the new directory's: the library was
    // loaded in both processes, and the bytes crossed shared memory.
    let stats = elsewhere.join("stats.json");
    let files = stats_files(&stats);
    assert_eq!(files.len(), 2, "{files:?}");
    let fast: u64 = files.iter().map(|f| counter(&read_stats(f), "unix", "fast_path_bytes")).sum();
    assert!(fast >= 2 * (48 << 20), "only {fast} bytes through shared memory");
    let lib = moved.join("lib/ipc-offload/libipc_offload.so");
    let shown = run(
        clean(&wrapper).current_dir(&elsewhere).args(["run", "--", "sh", "-c", "echo $LD_PRELOAD"]),
        Duration::from_secs(60),
    )
    .success();
    assert_eq!(shown.stdout.trim(), lib.display().to_string());

    // The installed tool: stats, check of the example policy, help.
    let table =
        run(clean(&wrapper).current_dir(&elsewhere).args(["stats", "stats.json"]), Duration::from_secs(60)).success();
    assert!(table.stdout.starts_with("PID ") && table.stdout.contains("unix_matrix"), "{}", table.stdout);
    let example = moved.join("share/ipc-offload/example-policy.toml");
    let check = run(clean(&wrapper).arg("check").arg(&example), Duration::from_secs(60)).success();
    assert!(check.stdout.contains(": ok"), "{}", check.stdout);
    // Install runs from the source tree only.
    let again = run(clean(&wrapper).args(["install", "--prefix"]).arg(dir.join("other")), Duration::from_secs(60));
    assert_eq!(again.code(), 2, "{again:?}");
    assert!(!dir.join("other").exists());

    // Uninstall, by the installed wrapper itself: its own prefix by default.
    let gone = run(clean(&wrapper).current_dir(&elsewhere).arg("uninstall"), Duration::from_secs(60)).success();
    for file in INSTALLED {
        let line = format!("removed {}", moved.join(file).display());
        assert!(gone.stdout.lines().any(|l| l == line), "no '{line}' in:\n{}", gone.stdout);
    }
    assert_eq!(tree(&moved), Vec::<String>::new(), "{}", gone.stdout);
    // Nothing left to uninstall.
    let nothing = run(
        clean(&root().join("scripts/ipc-offload")).args(["uninstall", "--prefix"]).arg(&moved),
        Duration::from_secs(60),
    );
    assert_eq!(nothing.code(), 2, "{nothing:?}");
}

#[test]
fn uninstall_removes_only_what_the_manifest_lists_and_the_directories_install_made() {
    let dir = scratch("install-shared");
    let prefix = dir.join("prefix");
    // A prefix with other software: its files and directories stay.
    std::fs::create_dir_all(prefix.join("bin")).unwrap();
    std::fs::create_dir_all(prefix.join("share/other")).unwrap();
    std::fs::write(prefix.join("bin/other-tool"), "#!/bin/sh\n").unwrap();
    install(&prefix);
    // A file someone added to the installed directory since.
    std::fs::write(prefix.join("share/ipc-offload/my-policy.toml"), "[defaults]\nmode = \"efficiency\"\n").unwrap();
    run(
        clean(&root().join("scripts/ipc-offload")).args(["uninstall", "--prefix"]).arg(&prefix),
        Duration::from_secs(60),
    )
    .success();
    assert_eq!(
        tree(&prefix),
        ["bin", "bin/other-tool", "share", "share/ipc-offload", "share/ipc-offload/my-policy.toml", "share/other"]
    );
}

#[test]
fn a_manifest_naming_a_path_outside_the_prefix_is_refused() {
    let dir = scratch("install-refuse");
    let prefix = dir.join("prefix");
    let victim = dir.join("victim");
    std::fs::write(&victim, "keep me\n").unwrap();
    std::fs::create_dir_all(prefix.join("lib/ipc-offload")).unwrap();
    for entry in ["file ../victim", "file /etc/hostname", "dir ../.."] {
        std::fs::write(prefix.join("lib/ipc-offload/MANIFEST"), format!("file bin/ipc-offload\n{entry}\n")).unwrap();
        let out = run(
            clean(&root().join("scripts/ipc-offload")).args(["uninstall", "--prefix"]).arg(&prefix),
            Duration::from_secs(60),
        );
        assert_eq!(out.code(), 2, "{entry}: {out:?}");
        assert!(out.stderr.contains("refusing"), "{entry}: {}", out.stderr);
        assert!(prefix.join("lib/ipc-offload/MANIFEST").exists());
    }
    assert!(victim.exists());
}
