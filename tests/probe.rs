//! scripts/ipc-offload probe against fixture sysfs trees: a device with a
//! dedicated, a shared and a kernel-owned work queue; an empty bus; no bus
//! at all; and the machine's own /sys. The fixture queues' files
//! (/dev/dsa/wq40.N) do not exist, so the hardware never opens and the
//! output does not depend on the CPU; the policies name their worker counts,
//! so the plan does not depend on the number of CPUs either.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ipc_offload_tests::*;

fn probe() -> Command {
    tool();
    let mut cmd = Command::new(root().join("scripts/ipc-offload"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("IPC_OFFLOAD") {
            cmd.env_remove(name);
        }
    }
    cmd.arg("probe");
    cmd
}

/// Writes `attributes` into `dir` and links `ROOT/bus/dsa/devices/NAME` to it,
/// as the kernel lays out sysfs.
fn entry(root: &Path, dir: &Path, name: &str, attributes: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (attr, value) in attributes {
        std::fs::write(dir.join(attr), format!("{value}\n")).unwrap();
    }
    std::fs::create_dir_all(root.join("bus/dsa/devices")).unwrap();
    symlink(dir, root.join("bus/dsa/devices").join(name)).unwrap();
}

fn queue(mode: &str, wq_type: &str, size: &str) -> Vec<(&'static str, String)> {
    [
        ("mode", mode),
        ("size", size),
        ("threshold", "0"),
        ("max_transfer_size", "2097152"),
        ("max_batch_size", "32"),
        ("type", wq_type),
        ("state", "enabled"),
        ("block_on_fault", "1"),
        ("priority", "10"),
        ("name", "app1"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect()
}

/// dsa40 with wq40.0 (dedicated), wq40.1 (shared), wq40.2 (kernel).
fn fixture(dir: &Path) -> PathBuf {
    let root = dir.join("sys");
    let device = root.join("devices/pci0000:e7/0000:e7:01.0/dsa40");
    entry(
        &root,
        &device,
        "dsa40",
        &[
            ("gen_cap", "0x40915f0107"),
            ("op_cap", "00000000,00000000,00000000,00000000,00000000,00000000,00000001,003f03ff"),
            ("numa_node", "1"),
            ("max_transfer_size", "2147483648"),
            ("max_batch_size", "1024"),
            ("pasid_enabled", "1"),
            ("state", "enabled"),
        ],
    );
    for (id, (mode, wq_type, size)) in
        [("dedicated", "user", "16"), ("shared", "user", "128"), ("dedicated", "kernel", "16")].into_iter().enumerate()
    {
        let name = format!("wq40.{id}");
        let attributes = queue(mode, wq_type, size);
        let attributes: Vec<(&str, &str)> = attributes.iter().map(|(k, v)| (*k, v.as_str())).collect();
        entry(&root, &device.join(&name), &name, &attributes);
    }
    // Entries the probe ignores.
    entry(&root, &device.join("engine40.0"), "engine40.0", &[]);
    entry(&root, &device.join("group40.0"), "group40.0", &[]);
    root
}

/// The words of the output line that starts with `start` (after the indentation).
fn words<'a>(text: &'a str, start: &str) -> Vec<&'a str> {
    let line = text.lines().find(|l| l.trim_start().starts_with(start)).unwrap_or_else(|| panic!("{start}:\n{text}"));
    line.split_whitespace().collect()
}

fn has_line(text: &str, expected: &str) -> bool {
    text.lines().any(|l| l.trim() == expected)
}

/// The CPU features section: three yes/no lines, whatever this CPU has.
fn assert_features(text: &str) {
    assert!(text.starts_with("cpu features (CPUID):\n"), "{text}");
    for feature in ["movdir64b", "enqcmd", "waitpkg"] {
        let w = words(text, feature);
        assert!(w[1] == "yes" || w[1] == "no", "{text}");
    }
}

#[test]
fn a_dedicated_and_a_shared_queue() {
    let dir = scratch("probe-queues");
    let root = fixture(&dir);
    let policy = dir.join("p.toml");
    std::fs::write(&policy, "[memcpy]\nengine = \"dsa\"\nworkers = 2\n[unix]\nworkers = 0\n[pipe]\nengine = \"off\"\n")
        .unwrap();
    let out = run(probe().arg("--sysfs").arg(&root).arg("--policy").arg(&policy), Duration::from_secs(120)).success();
    let text = &out.stdout;
    assert_eq!(out.stderr, "");
    assert_features(text);
    assert!(text.contains(&format!("\ndsa devices (sysfs {}):\n", root.display())), "{text}");
    assert_eq!(words(text, "dsa40"), ["dsa40", "1", "0x40915f0107", "yes", "2GiB", "1024", "enabled", "yes"]);
    assert_eq!(words(text, "QUEUE"), ["QUEUE", "MODE", "SIZE", "MAX", "TRANSFER", "DEVICE", "FILE", "READ/WRITE"]);
    assert_eq!(
        words(text, "wq40.0"),
        ["wq40.0", "dedicated", "16", "2MiB", "/dev/dsa/wq40.0", "no", "(does", "not", "exist)"]
    );
    assert_eq!(
        words(text, "wq40.1"),
        ["wq40.1", "shared", "128", "2MiB", "/dev/dsa/wq40.1", "no", "(does", "not", "exist)"]
    );
    assert!(text.contains("dsa work queues skipped:\n  wq40.2  type is kernel, not user\n"), "{text}");
    assert!(
        has_line(
            text,
            "[dsa] device = \"auto\": unavailable: no DSA work queue opens: /dev/dsa/wq40.0 does not exist; \
             /dev/dsa/wq40.1 does not exist"
        ),
        "{text}"
    );
    assert!(text.contains(&format!("policy {}, for a process started here with ", policy.display())), "{text}");
    assert_eq!(words(text, "[memcpy]"), ["[memcpy]", "dsa", "async-cpu", "1MiB", "2", "spin-then-sleep"]);
    assert_eq!(words(text, "[unix]"), ["[unix]", "auto", "cpu", "256KiB", "0", "-"]);
    assert_eq!(words(text, "[pipe]"), ["[pipe]", "off", "off", "-", "0", "-"]);
    assert!(
        has_line(
            text,
            "the library would warn: [memcpy] engine \"dsa\" is unavailable (no usable DSA work queue); using async-cpu"
        ),
        "{text}"
    );
    assert!(
        has_line(
            text,
            "the dsa engine would fall back to async-cpu for [memcpy], cpu for [unix], cpu for [pipe], cpu for \
             [memset], cpu for [memcmp], async-cpu for [shm], cpu for [tcp]"
        ),
        "{text}"
    );
}

#[test]
fn the_model_from_the_environment_and_the_policys_sysfs() {
    let dir = scratch("probe-model");
    let root = fixture(&dir);
    let policy = dir.join("p.toml");
    std::fs::write(
        &policy,
        format!(
            "[dsa]\ndevice = \"model\"\nsysfs = \"{}\"\n[memcpy]\nengine = \"dsa\"\nwait = \"spin\"\n",
            root.display()
        ),
    )
    .unwrap();
    let out = run(probe().env("IPC_OFFLOAD_POLICY", &policy), Duration::from_secs(120)).success();
    let text = &out.stdout;
    assert!(text.contains(&format!("\ndsa devices (sysfs {}):\n", root.display())), "{text}");
    assert!(text.contains("wq40.1"), "{text}");
    assert!(
        has_line(text, "[dsa] device = \"model\": available: the software model (a thread of the process)"),
        "{text}"
    );
    assert_eq!(words(text, "[memcpy]"), ["[memcpy]", "dsa", "dsa", "1MiB", "0", "spin"]);
    assert!(!text.contains("fall back"), "{text}");
}

#[test]
fn no_bus_and_an_empty_bus() {
    let dir = scratch("probe-empty");
    let out = run(probe().arg("--sysfs").arg(&dir), Duration::from_secs(120)).success();
    let text = &out.stdout;
    assert_features(text);
    let bus = dir.join("bus/dsa/devices");
    assert!(has_line(text, &format!("no DSA device: {} does not exist", bus.display())), "{text}");
    assert!(
        has_line(
            text,
            &format!("[dsa] device = \"auto\": unavailable: no DSA device: {} does not exist", bus.display())
        ),
        "{text}"
    );
    assert!(words(text, "the dsa engine would fall back to").len() > 6, "{text}");

    std::fs::create_dir_all(&bus).unwrap();
    let text = run(probe().arg("--sysfs").arg(&dir), Duration::from_secs(120)).success().stdout;
    assert!(has_line(&text, &format!("no DSA device under {}", bus.display())), "{text}");
    assert!(text.contains("dsa work queues:\n  none usable\n"), "{text}");
    assert!(text.contains("the dsa engine would fall back to"), "{text}");
}

#[test]
fn this_machine() {
    let out = run(&mut probe(), Duration::from_secs(120)).success();
    assert_features(&out.stdout);
    assert!(out.stdout.contains("\ndsa devices (sysfs /sys):\n"), "{}", out.stdout);
    assert!(out.stdout.contains("\npolicy built-in, for a process started here with "), "{}", out.stdout);
    if !Path::new("/sys/bus/dsa/devices").exists() {
        assert!(has_line(&out.stdout, "no DSA device: /sys/bus/dsa/devices does not exist"), "{}", out.stdout);
        assert!(out.stdout.contains("\n  the dsa engine would fall back to "), "{}", out.stdout);
    }
}

#[test]
fn help_usage_errors_and_a_rejected_policy() {
    for args in [&["--help"][..], &["-h"]] {
        let out = run(probe().args(args), Duration::from_secs(120)).success();
        assert!(out.stdout.starts_with("usage: ipc-offload probe "), "{}", out.stdout);
    }
    let out = run(Command::new(root().join("scripts/ipc-offload")).args(["help", "probe"]), Duration::from_secs(120));
    assert!(out.stdout.starts_with("usage: ipc-offload probe "), "{}", out.stdout);
    for args in [&["--sysfs"][..], &["--bogus"]] {
        let out = run(probe().args(args), Duration::from_secs(120));
        assert_eq!(out.code(), 2, "{args:?}: {out:?}");
        assert!(out.stderr.starts_with("ipc-offload probe: "), "{}", out.stderr);
    }
    let dir = scratch("probe-rejected");
    let policy = dir.join("p.toml");
    std::fs::write(&policy, "[memcpy]\nengine = 1\n").unwrap();
    let out = run(probe().arg("--sysfs").arg(&dir).arg("--policy").arg(&policy), Duration::from_secs(120));
    assert_eq!(out.code(), 2, "{out:?}");
    assert_eq!(
        out.stderr,
        format!("{}:2:10: `engine` in [memcpy] must be a string, found an integer\n", policy.display())
    );
    assert!(out.stdout.contains("no DSA device: "), "{}", out.stdout);
    assert!(out.stdout.ends_with("rejected (1 error(s), on stderr): the library would pass every call through\n"));
}
