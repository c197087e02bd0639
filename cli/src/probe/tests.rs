//! The probe against fixture sysfs trees (laid out as the kernel does:
//! attributes under `devices/.../dsaN/` and `.../dsaN/wqN.M/`, reached
//! through symlinks in `bus/dsa/devices/`), with the CPU features, the
//! CPU count and access(2) supplied by each test.

use super::*;
use std::os::unix::fs::symlink;

const DEVICE: &[(&str, &str)] = &[
    ("gen_cap", "0x40915f0107"),
    ("op_cap", "00000000,00000000,00000000,00000000,00000000,00000000,00000001,003f03ff"),
    ("numa_node", "0"),
    ("max_transfer_size", "2147483648"),
    ("max_batch_size", "1024"),
    ("pasid_enabled", "1"),
    ("state", "enabled"),
];

const QUEUE: &[(&str, &str)] = &[
    ("mode", "dedicated"),
    ("size", "16"),
    ("threshold", "0"),
    ("max_transfer_size", "2097152"),
    ("max_batch_size", "32"),
    ("type", "user"),
    ("state", "enabled"),
    ("block_on_fault", "1"),
    ("priority", "10"),
    ("name", "app1"),
];

/// A directory in a fresh temporary directory, removed on drop; a sysfs
/// tree when [`Tree::bus`] is called.
struct Tree {
    root: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("ipc-offload-probe-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Tree { root }
    }

    /// Creates the (empty) bus directory.
    fn bus(&self) -> &Tree {
        std::fs::create_dir_all(self.root.join(sysfs::BUS_DEVICES)).unwrap();
        self
    }

    fn device_dir(&self, id: u32) -> PathBuf {
        self.root.join(format!("devices/pci0000:{id:02x}/0000:{id:02x}:01.0/dsa{id}"))
    }

    fn write(&self, dir: &Path, name: &str, defaults: &[(&str, &str)], changes: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (attr, value) in defaults {
            let value = changes.iter().find(|(a, _)| a == attr).map_or(*value, |(_, v)| *v);
            std::fs::write(dir.join(attr), format!("{value}\n")).unwrap();
        }
        symlink(dir, self.root.join(sysfs::BUS_DEVICES).join(name)).unwrap();
    }

    fn device(&self, id: u32, changes: &[(&str, &str)]) -> &Tree {
        self.write(&self.device_dir(id), &format!("dsa{id}"), DEVICE, changes);
        self
    }

    fn queue(&self, device: u32, id: u32, changes: &[(&str, &str)]) -> &Tree {
        let name = format!("wq{device}.{id}");
        self.write(&self.device_dir(device).join(&name), &name, QUEUE, changes);
        self
    }

    /// A dedicated queue wq40.0 and a shared queue wq40.1 on dsa40, and a
    /// disabled queue wq40.2.
    fn two_queues(&self) -> &Tree {
        self.bus()
            .device(40, &[])
            .queue(40, 0, &[])
            .queue(40, 1, &[("mode", "shared"), ("threshold", "12"), ("size", "32")])
            .queue(40, 2, &[("state", "disabled")])
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.root.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn granted(_: &Path) -> io::Result<()> {
    Ok(())
}

fn missing(_: &Path) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::ENOENT))
}

fn denied(_: &Path) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::EACCES))
}

const NONE: Features = Features { movdir64b: false, enqcmd: false, waitpkg: false };
const ALL: Features = Features { movdir64b: true, enqcmd: true, waitpkg: true };

fn host(features: Features, access: fn(&Path) -> io::Result<()>) -> Host {
    Host { features, cpus: 2, llc: Some(32 << 20), access, env: Env::default() }
}

fn options(tree: &Tree, policy: Option<&Path>) -> Options {
    Options { policy: policy.map(Path::to_path_buf), process: None, sysfs: Some(tree.root.clone()) }
}

/// The report, asserting that there was no problem.
fn report(options: &Options, host: &Host) -> String {
    let (text, problems) = probe(options, host);
    assert!(problems.is_empty(), "{problems:?}\n{text}");
    text
}

/// The line that starts with `start` (after the indentation), in words.
fn line<'a>(text: &'a str, start: &str) -> Vec<&'a str> {
    let line = text.lines().find(|l| l.trim_start().starts_with(start)).unwrap_or_else(|| panic!("{start}:\n{text}"));
    line.split_whitespace().collect()
}

fn has_line(text: &str, expected: &str) -> bool {
    text.lines().any(|l| l.trim() == expected)
}

#[test]
fn without_a_bus_directory_it_says_there_is_no_device() {
    let tree = Tree::new();
    let text = report(&options(&tree, None), &host(NONE, granted));
    let bus = tree.root.join("bus/dsa/devices");
    let expected = format!(
        "\
cpu features (CPUID):
  movdir64b  no  submits to dedicated work queues
  enqcmd     no  submits to shared work queues
  waitpkg    no  UMONITOR/UMWAIT (wait = \"umwait\")
dsa devices (sysfs {root}):
  no DSA device: {bus} does not exist
policy built-in, for a process started here with 2 CPU(s):
  [dsa] device = \"auto\": unavailable: no DSA device: {bus} does not exist
  CLASS     ENGINE  USES       FROM    HELPERS  WAIT
  [memcpy]  auto    async-cpu  1MiB    1        spin-then-sleep
  [unix]    auto    cpu        256KiB  0        -
  [pipe]    auto    cpu        256KiB  0        -
  [memset]  off     off        -       0        -
  [memcmp]  off     off        -       0        -
  [shm]     auto    async-cpu  1MiB    1        spin-then-sleep
  [tcp]     auto    cpu        256KiB  0        -
  [tcp] addresses = \"loopback\": connections to a peer on a loopback address (127.0.0.0/8, ::1), in this network namespace, of this uid, with the library at both ends; any other stays on the kernel path (not-local)
  the dsa engine would fall back to async-cpu for [memcpy], cpu for [unix], cpu for [pipe], cpu for [memset], cpu for [memcmp], async-cpu for [shm], cpu for [tcp]
",
        root = tree.root.display(),
        bus = bus.display()
    );
    assert_eq!(text, expected);
}

#[test]
fn an_empty_bus_has_no_device_and_no_queue() {
    let tree = Tree::new();
    tree.bus();
    let text = report(&options(&tree, None), &host(ALL, granted));
    let bus = tree.root.join("bus/dsa/devices").display().to_string();
    assert!(has_line(&text, &format!("no DSA device under {bus}")), "{text}");
    assert!(has_line(&text, "none usable"), "{text}");
    assert!(has_line(&text, &format!("[dsa] device = \"auto\": unavailable: no DSA device under {bus}")), "{text}");
    assert!(text.contains("the dsa engine would fall back to"), "{text}");
}

#[test]
fn devices_queues_and_skipped_queues_are_listed() {
    let tree = Tree::new();
    tree.two_queues();
    let text = report(&options(&tree, None), &host(NONE, missing));
    assert_eq!(
        line(&text, "DEVICE"),
        ["DEVICE", "NUMA", "GEN_CAP", "CACHE", "CONTROL", "MAX", "TRANSFER", "MAX", "BATCH", "STATE", "PASID"]
    );
    assert_eq!(line(&text, "dsa40"), ["dsa40", "0", "0x40915f0107", "yes", "2GiB", "1024", "enabled", "yes"]);
    assert_eq!(
        line(&text, "wq40.0"),
        ["wq40.0", "dedicated", "16", "2MiB", "/dev/dsa/wq40.0", "no", "(does", "not", "exist)"]
    );
    assert_eq!(
        line(&text, "wq40.1"),
        ["wq40.1", "shared", "32", "2MiB", "/dev/dsa/wq40.1", "no", "(does", "not", "exist)"]
    );
    assert!(text.contains("dsa work queues skipped:\n  wq40.2  state is disabled\n"), "{text}");
    assert!(
        has_line(
            &text,
            "[dsa] device = \"auto\": unavailable: no DSA work queue opens: /dev/dsa/wq40.0 does not exist; \
             /dev/dsa/wq40.1 does not exist"
        ),
        "{text}"
    );
}

#[test]
fn a_device_without_cache_control_or_node_and_a_bad_device() {
    let tree = Tree::new();
    tree.bus().device(1, &[("gen_cap", "0x0"), ("numa_node", "-1")]).device(2, &[("state", "halted!")]);
    let text = report(&options(&tree, None), &host(NONE, granted));
    assert_eq!(line(&text, "dsa1 "), ["dsa1", "-", "0x0", "no", "2GiB", "1024", "enabled", "yes"]);
    let bad = line(&text, "dsa2:");
    assert_eq!(bad[..2], ["dsa2:", "unreadable:"], "{text}");
    assert!(text.contains("\"halted!\" is not a device state"), "{text}");
    assert!(text.contains("unavailable: no usable DSA work queue (1 device(s), 0 queue(s) skipped)"), "{text}");
}

#[test]
fn a_queue_that_opens_with_its_instruction_serves_the_dsa_engine() {
    let tree = Tree::new();
    tree.two_queues();
    let policy = tree.file(
        "p.toml",
        "[memcpy]\nengine = \"dsa\"\n[unix]\nengine = \"dsa\"\nwait = \"spin\"\n[pipe]\nengine = \"async-cpu\"\nworkers = 0\n",
    );
    let text = report(&options(&tree, Some(&policy)), &host(ALL, granted));
    assert_eq!(line(&text, "wq40.0")[5..], ["yes"]);
    assert!(has_line(&text, "[dsa] device = \"auto\": available: wq40.0 (dedicated, MOVDIR64B)"), "{text}");
    assert_eq!(line(&text, "[memcpy]"), ["[memcpy]", "dsa", "dsa", "1MiB", "0", "spin-then-sleep"]);
    assert_eq!(line(&text, "[unix]"), ["[unix]", "dsa", "dsa", "256KiB", "0", "spin"]);
    assert_eq!(line(&text, "[pipe]"), ["[pipe]", "async-cpu", "cpu", "256KiB", "0", "-"]);
    assert!(
        has_line(
            &text,
            "the library would warn: [pipe] engine \"async-cpu\" is unavailable (it has no worker: `workers` is 0 or \
             one CPU is available); using cpu"
        ),
        "{text}"
    );
    assert!(!text.contains("fall back"), "{text}");
    // Only ENQCMD: the shared queue is the one.
    let text = report(&options(&tree, Some(&policy)), &host(Features { enqcmd: true, ..NONE }, granted));
    assert!(has_line(&text, "[dsa] device = \"auto\": available: wq40.1 (shared, ENQCMD)"), "{text}");
}

#[test]
fn a_queue_that_opens_without_its_instruction_takes_write() {
    // No MOVDIR64B, no ENQCMD: the library submits through write(2).
    let tree = Tree::new();
    tree.two_queues();
    let policy = tree.file("p.toml", "[memcpy]\nengine = \"dsa\"\n");
    let text = report(&options(&tree, Some(&policy)), &host(NONE, granted));
    assert!(
        has_line(
            &text,
            "[dsa] device = \"auto\": available: wq40.0 (dedicated, the CPU lacks MOVDIR64B: descriptors go through \
             write(2) on the queue file)"
        ),
        "{text}"
    );
    assert_eq!(line(&text, "[memcpy]")[..3], ["[memcpy]", "dsa", "dsa"], "{text}");
    assert!(!text.contains("fall back"), "{text}");
}

#[test]
fn a_queue_this_user_may_not_open() {
    let tree = Tree::new();
    tree.bus().device(40, &[]).queue(40, 0, &[]);
    let text = report(&options(&tree, None), &host(ALL, denied));
    assert_eq!(line(&text, "wq40.0")[5..], ["no", "(permission", "denied)"]);
    assert!(text.contains("unavailable: no DSA work queue opens: /dev/dsa/wq40.0 permission denied"), "{text}");
}

#[test]
fn the_model_needs_no_hardware() {
    let tree = Tree::new();
    let policy = tree.file("p.toml", "[dsa]\ndevice = \"model\"\n[pipe]\nengine = \"dsa\"\nwait = \"spin\"\n");
    let text = report(&options(&tree, Some(&policy)), &host(NONE, missing));
    assert!(text.contains("no DSA device: "), "{text}");
    assert!(
        has_line(&text, "[dsa] device = \"model\": available: the software model (a thread of the process)"),
        "{text}"
    );
    assert_eq!(line(&text, "[pipe]"), ["[pipe]", "dsa", "dsa", "256KiB", "0", "spin"]);
    assert!(!text.contains("fall back"), "{text}");
}

#[test]
fn the_sysfs_root_is_the_policys_unless_given() {
    let tree = Tree::new();
    tree.two_queues();
    let policy = tree.file("p.toml", &format!("[dsa]\nsysfs = \"{}\"\n", tree.root.display()));
    let opts = Options { policy: Some(policy), ..Options::default() };
    let text = report(&opts, &host(NONE, missing));
    assert!(text.contains(&format!("dsa devices (sysfs {}):\n", tree.root.display())), "{text}");
    assert!(text.contains("wq40.1"), "{text}");
    let other = Tree::new();
    let text = report(&Options { sysfs: Some(other.root.clone()), ..opts }, &host(NONE, missing));
    assert!(text.contains(&format!("dsa devices (sysfs {}):\n", other.root.display())), "{text}");
}

#[test]
fn the_environment_names_the_policy_and_process_applies_overrides() {
    let tree = Tree::new();
    let policy = tree.file("p.toml", "[process.\"redis-*\"]\nmemcpy.engine = \"cpu\"\n");
    let mut h = host(NONE, missing);
    h.env.policy = Some(policy.clone().into_os_string());
    let text = report(&options(&tree, None), &h);
    assert!(
        text.contains(&format!(
            "policy {}, for a process (1 override(s) not applied: see --process) started here with 2 CPU(s):",
            policy.display()
        )),
        "{text}"
    );
    assert_eq!(line(&text, "[memcpy]")[..3], ["[memcpy]", "auto", "async-cpu"]);
    let opts = Options { process: Some("redis-server".into()), ..options(&tree, None) };
    let text = report(&opts, &h);
    assert!(text.contains("for process \"redis-server\" (overrides matched: redis-*) started here"), "{text}");
    assert_eq!(line(&text, "[memcpy]"), ["[memcpy]", "cpu", "cpu", "1MiB", "0", "-"]);
    // --policy wins over the environment.
    let builtin = tree.file("q.toml", "");
    let text = report(&Options { policy: Some(builtin.clone()), ..opts }, &h);
    assert!(text.contains(&format!("policy {}, for process", builtin.display())), "{text}");
    h.env.off = true;
    let text = report(&options(&tree, None), &h);
    assert!(has_line(&text, "IPC_OFFLOAD=off: the library would pass every call through"), "{text}");
}

#[test]
fn a_rejected_policy_exits_2_after_the_rest() {
    let tree = Tree::new();
    let policy = tree.file("p.toml", "[memcpy]\nengine = \"fast\"\n");
    let (text, problems) = probe(&options(&tree, Some(&policy)), &host(NONE, missing));
    assert!(text.starts_with("cpu features (CPUID):\n"), "{text}");
    assert!(text.contains("no DSA device: "), "{text}");
    assert!(
        text.ends_with(&format!(
            "policy {}: rejected (1 error(s), on stderr): the library would pass every call through\n",
            policy.display()
        )),
        "{text}"
    );
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].exit_code(), 2);
    assert_eq!(
        problems[0].report(),
        format!(
            "{}:2:10: bad value \"fast\" for `engine` in [memcpy] (expected one of: auto, cpu, async-cpu, dsa, hybrid, off)\n",
            policy.display()
        )
    );
    let (_, problems) = probe(&options(&tree, Some(&tree.root.join("none.toml"))), &host(NONE, missing));
    assert!(problems[0].report().contains("none.toml: cannot read policy file"), "{problems:?}");
}

#[test]
fn an_unreadable_bus_exits_1() {
    let tree = Tree::new();
    std::fs::create_dir_all(tree.root.join("bus/dsa")).unwrap();
    tree.file("bus/dsa/devices", "not a directory");
    let (text, problems) = probe(&options(&tree, None), &host(NONE, missing));
    assert!(text.contains("  cannot list DSA devices: "), "{text}");
    assert!(text.contains("[dsa] device = \"auto\": unavailable: cannot list DSA devices: "), "{text}");
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].exit_code(), 1);
}

#[test]
fn arguments() {
    let args = |a: &[&str]| parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(args(&[]).unwrap(), Some(Options::default()));
    assert_eq!(args(&["--help"]).unwrap(), None);
    assert_eq!(
        args(&["--sysfs", "/tmp/s", "--policy", "p.toml", "--process", "x"]).unwrap(),
        Some(Options { policy: Some("p.toml".into()), process: Some("x".into()), sysfs: Some("/tmp/s".into()) })
    );
    for (bad, message) in [
        (&["--sysfs"][..], "--sysfs needs a directory"),
        (&["--policy"], "--policy needs a file"),
        (&["--process"], "--process needs a name"),
        (&["--bogus"], "unknown argument --bogus"),
        (&["extra"], "unknown argument extra"),
    ] {
        let problem = args(bad).unwrap_err();
        assert_eq!(problem.exit_code(), 2);
        assert!(problem.report().starts_with(&format!("ipc-offload probe: {message}\nusage: ")), "{bad:?}");
    }
}

#[test]
fn the_tcp_plan_names_the_addresses_served() {
    let tree = Tree::new();
    tree.bus();
    let plan_of = |name: &str, text: &str| {
        let policy = tree.file(name, text);
        let text = report(&options(&tree, Some(&policy)), &host(NONE, missing));
        let plan = |l: &&str| ["[tcp] addresses", "[tcp] off"].iter().any(|p| l.trim_start().starts_with(p));
        text.lines().find(plan).map(str::to_owned).unwrap_or(text)
    };
    let local = plan_of("local.toml", "[tcp]\naddresses = \"local\"\n");
    assert!(local.contains("addresses = \"local\"") && local.contains("any address of this host"), "{local}");
    let off = plan_of("off.toml", "[tcp]\nengine = \"off\"\n");
    assert!(off.contains("[tcp] off: every TCP socket stays on the kernel path"), "{off}");
}
