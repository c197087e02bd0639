//! Discovery against fixture trees built in a temporary directory, laid out
//! as the kernel does: the attributes under `devices/pci.../dsaN/` and
//! `.../dsaN/wqN.M/`, reached through symlinks in `bus/dsa/devices/`.

use super::*;
use crate::abi::opcode;
use std::os::unix::fs::symlink;

/// A realistic Sapphire Rapids `op_cap` (6.3+ format): opcodes 0x00-0x09,
/// 0x10-0x15 and CFLUSH (0x20).
const SPR_OP_CAP: &str = "00000000,00000000,00000000,00000000,00000000,00000000,00000001,003f03ff";

const DEVICE: &[(&str, &str)] = &[
    ("gen_cap", "0x40915f0107"),
    ("op_cap", SPR_OP_CAP),
    ("numa_node", "0"),
    ("max_transfer_size", "2147483648"),
    ("max_batch_size", "1024"),
    ("pasid_enabled", "1"),
    ("state", "enabled"),
    // Attributes the library does not read.
    ("max_work_queues", "8"),
    ("cdev_major", "236"),
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
    ("group_id", "0"),
];

/// A sysfs tree in a fresh temporary directory, removed on drop.
struct Tree {
    root: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("ipc-offload-dsa-sysfs-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join(BUS_DEVICES)).unwrap();
        Tree { root }
    }

    fn device_dir(&self, id: u32) -> PathBuf {
        self.root.join(format!("devices/pci0000:{id:02x}/0000:{id:02x}:01.0/dsa{id}"))
    }

    /// Writes `defaults` overridden by `changes` into `dir` (`None` leaves
    /// the attribute out), and links `bus/dsa/devices/NAME` to it.
    fn write(&self, dir: &Path, name: &str, defaults: &[(&str, &str)], changes: &[(&str, Option<&str>)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (attr, value) in defaults {
            if !changes.iter().any(|(a, _)| a == attr) {
                std::fs::write(dir.join(attr), format!("{value}\n")).unwrap();
            }
        }
        for (attr, value) in changes {
            if let Some(value) = value {
                std::fs::write(dir.join(attr), format!("{value}\n")).unwrap();
            }
        }
        symlink(dir, self.root.join(BUS_DEVICES).join(name)).unwrap();
    }

    fn device(&self, id: u32, changes: &[(&str, Option<&str>)]) -> &Tree {
        self.write(&self.device_dir(id), &format!("dsa{id}"), DEVICE, changes);
        self
    }

    fn queue(&self, device: u32, id: u32, changes: &[(&str, Option<&str>)]) -> &Tree {
        let name = format!("wq{device}.{id}");
        self.write(&self.device_dir(device).join(&name), &name, QUEUE, changes);
        self
    }

    /// An empty directory on the bus (engines, groups, other devices).
    fn entry(&self, name: &str) -> &Tree {
        let dir = self.root.join("devices/other").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        symlink(&dir, self.root.join(BUS_DEVICES).join(name)).unwrap();
        self
    }

    fn discover(&self, numa_node: Option<u32>) -> Discovery {
        discover(&self.root, numa_node).unwrap()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn names(found: &Discovery) -> Vec<String> {
    found.queues.iter().map(|q| q.wq.entry()).collect()
}

fn skipped(found: &Discovery) -> Vec<(&str, &'static str)> {
    found.skipped.iter().map(|(name, reason)| (name.as_str(), reason.key())).collect()
}

#[test]
fn a_dedicated_queue_with_every_attribute() {
    let tree = Tree::new();
    tree.device(0, &[]).queue(0, 0, &[]).entry("engine0.0").entry("group0.0");
    let found = tree.discover(None);
    assert_eq!(found.skipped, vec![]);
    assert_eq!(found.bad_devices, vec![]);
    let device = Device {
        id: 0,
        gen_cap: 0x40915f0107,
        op_cap: vec![0x1_003f_03ff, 0, 0, 0],
        numa_node: Some(0),
        max_transfer_size: 1 << 31,
        max_batch_size: 1024,
        pasid_enabled: true,
        state: DeviceState::Enabled,
    };
    assert_eq!(found.devices, vec![device.clone()]);
    let wq = WorkQueue {
        device_id: 0,
        id: 0,
        mode: Mode::Dedicated,
        size: 16,
        threshold: 0,
        max_transfer_size: 2 << 20,
        max_batch_size: 32,
        wq_type: WqType::User,
        state: WqState::Enabled,
        block_on_fault: true,
        priority: 10,
        name: "app1".into(),
    };
    assert_eq!(found.queues, vec![Queue { device, wq }]);
    let queue = &found.queues[0];
    assert_eq!(queue.wq.entry(), "wq0.0");
    assert_eq!(queue.device.entry(), "dsa0");
    assert_eq!(queue.wq.char_device(), Path::new("/dev/dsa/wq0.0"));
    assert_eq!(queue.max_transfer_size(), 2 << 20);
    assert!(queue.device.cache_control());
    for op in [opcode::NOOP, opcode::BATCH, opcode::MEMMOVE, opcode::MEMFILL, opcode::COMPARE, opcode::CFLUSH] {
        assert!(queue.device.supports(op), "{op:#x}");
    }
    assert!(!queue.device.supports(0x0a));
    assert!(!queue.device.supports(0x21));
    assert!(!queue.device.supports(255));
}

#[test]
fn shared_queues_and_their_threshold() {
    let tree = Tree::new();
    tree.device(0, &[]).queue(0, 1, &[("mode", Some("shared")), ("threshold", Some("12")), ("name", Some(""))]);
    let found = tree.discover(Some(0));
    assert_eq!(names(&found), ["wq0.1"]);
    let wq = &found.queues[0].wq;
    assert_eq!((wq.mode, wq.threshold, wq.name.as_str()), (Mode::Shared, 12, ""));
}

#[test]
fn disabled_and_kernel_queues_are_skipped_and_reported() {
    let tree = Tree::new();
    tree.device(0, &[])
        .queue(0, 0, &[("state", Some("disabled"))])
        // An unconfigured disabled queue: reported as disabled, not as garbage.
        .queue(0, 1, &[("state", Some("disabled")), ("size", Some("0")), ("mode", None), ("type", Some("none"))])
        .queue(0, 2, &[("type", Some("kernel"))])
        .queue(0, 3, &[("type", Some("none"))])
        .queue(0, 4, &[("state", Some("locked"))])
        .queue(0, 5, &[]);
    let found = tree.discover(None);
    assert_eq!(names(&found), ["wq0.5"]);
    assert_eq!(
        found.skipped,
        vec![
            ("wq0.0".to_owned(), SkipReason::Disabled(WqState::Disabled)),
            ("wq0.1".to_owned(), SkipReason::Disabled(WqState::Disabled)),
            ("wq0.2".to_owned(), SkipReason::NotUser(WqType::Kernel)),
            ("wq0.3".to_owned(), SkipReason::NotUser(WqType::None)),
            ("wq0.4".to_owned(), SkipReason::Disabled(WqState::Locked)),
        ]
    );
    assert_eq!(found.skipped[2].1.to_string(), "type is kernel, not user");
    assert_eq!(found.skipped[0].1.to_string(), "state is disabled");
}

#[test]
fn a_missing_attribute_skips_the_queue() {
    let tree = Tree::new();
    tree.device(0, &[]).queue(0, 0, &[("max_transfer_size", None)]).queue(0, 1, &[("state", None)]);
    let found = tree.discover(None);
    assert!(found.queues.is_empty());
    assert_eq!(
        found.skipped,
        vec![
            (
                "wq0.0".to_owned(),
                SkipReason::BadAttribute(SysfsError::Missing {
                    path: tree.root.join(BUS_DEVICES).join("wq0.0/max_transfer_size")
                })
            ),
            (
                "wq0.1".to_owned(),
                SkipReason::BadAttribute(SysfsError::Missing { path: tree.root.join(BUS_DEVICES).join("wq0.1/state") })
            ),
        ]
    );
    let text = found.skipped[0].1.to_string();
    assert!(text.ends_with("bus/dsa/devices/wq0.0/max_transfer_size: missing"), "{text}");
}

#[test]
fn garbage_values_skip_the_queue() {
    let cases: &[(&str, &str)] = &[
        ("mode", "exclusive"),
        ("size", "-1"),
        ("size", "sixteen"),
        ("size", "+16"),
        ("size", "4294967296"),
        ("size", ""),
        ("threshold", "1.5"),
        ("max_transfer_size", "0x200000"),
        ("max_batch_size", "32 32"),
        ("type", "User"),
        ("state", "on"),
        ("block_on_fault", "yes"),
        ("block_on_fault", "2"),
        ("priority", "high"),
    ];
    for (attr, value) in cases {
        let tree = Tree::new();
        tree.device(0, &[]).queue(0, 0, &[(attr, Some(value))]);
        let found = tree.discover(None);
        assert!(found.queues.is_empty(), "{attr}={value:?}");
        assert_eq!(skipped(&found), [("wq0.0", "bad-attribute")], "{attr}={value:?}");
        let SkipReason::BadAttribute(SysfsError::Garbage { path, text, .. }) = &found.skipped[0].1 else {
            panic!("{attr}={value:?}: {:?}", found.skipped);
        };
        assert!(path.ends_with(format!("wq0.0/{attr}")), "{}", path.display());
        assert_eq!(text, value);
    }
}

#[test]
fn zero_sizes_and_unreadable_attributes() {
    let tree = Tree::new();
    tree.device(0, &[]).queue(0, 0, &[("size", Some("0"))]).queue(0, 1, &[("max_transfer_size", Some("0"))]);
    // A directory where a file should be.
    tree.queue(0, 2, &[("priority", None)]);
    std::fs::create_dir(tree.device_dir(0).join("wq0.2/priority")).unwrap();
    // Binary garbage, and a file longer than a page.
    tree.queue(0, 3, &[("name", None)]);
    std::fs::write(tree.device_dir(0).join("wq0.3/name"), vec![b'x'; 5000]).unwrap();
    tree.queue(0, 4, &[("size", None)]);
    std::fs::write(tree.device_dir(0).join("wq0.4/size"), [0xff, 0xfe, b'1']).unwrap();
    let found = tree.discover(None);
    assert!(found.queues.is_empty());
    assert_eq!(
        skipped(&found),
        [
            ("wq0.0", "zero-size"),
            ("wq0.1", "zero-size"),
            ("wq0.2", "bad-attribute"),
            ("wq0.3", "bad-attribute"),
            ("wq0.4", "bad-attribute")
        ]
    );
    assert_eq!(found.skipped[0].1, SkipReason::Zero("size"));
    assert_eq!(found.skipped[1].1, SkipReason::Zero("max_transfer_size"));
    assert!(matches!(&found.skipped[2].1, SkipReason::BadAttribute(SysfsError::Io { .. })), "{:?}", found.skipped);
    assert!(matches!(&found.skipped[3].1, SkipReason::BadAttribute(SysfsError::Garbage { .. })));
    assert!(matches!(&found.skipped[4].1, SkipReason::BadAttribute(SysfsError::Garbage { .. })));
}

#[test]
fn device_problems_skip_its_queues() {
    let tree = Tree::new();
    tree.device(0, &[("op_cap", Some("lots"))])
        .queue(0, 0, &[])
        .device(1, &[("state", Some("halted"))])
        .queue(1, 0, &[])
        .device(2, &[("pasid_enabled", Some("0"))])
        .queue(2, 0, &[])
        .device(3, &[("numa_node", None)])
        .queue(3, 0, &[])
        .device(4, &[("numa_node", Some("-2"))])
        .queue(4, 0, &[])
        .device(5, &[("gen_cap", Some("0xg"))])
        .queue(5, 0, &[])
        .device(6, &[])
        .queue(6, 0, &[]);
    let found = tree.discover(None);
    assert_eq!(names(&found), ["wq6.0"]);
    assert_eq!(
        skipped(&found),
        [
            ("wq0.0", "bad-device"),
            ("wq1.0", "device-not-enabled"),
            ("wq2.0", "no-pasid"),
            ("wq3.0", "bad-device"),
            ("wq4.0", "bad-device"),
            ("wq5.0", "bad-device")
        ]
    );
    let bad: Vec<&str> = found.bad_devices.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(bad, ["dsa0", "dsa3", "dsa4", "dsa5"]);
    assert!(matches!(&found.bad_devices[1].1, SysfsError::Missing { path } if path.ends_with("dsa3/numa_node")));
    let ids: Vec<u32> = found.devices.iter().map(|d| d.id).collect();
    assert_eq!(ids, [1, 2, 6]);
    assert_eq!(found.skipped[1].1, SkipReason::DeviceNotEnabled(DeviceState::Halted));
}

#[test]
fn queues_of_missing_or_other_devices() {
    let tree = Tree::new();
    tree.device(0, &[]).queue(0, 0, &[]);
    // wq1.0 belongs to an IAA device; wq2.0 has no device entry.
    tree.entry("iax1").entry("wq1.0").entry("wq2.0");
    // Malformed names.
    tree.entry("wqx.0").entry("wq0").entry("wq01.0").entry("dsa").entry("dsa01");
    let found = tree.discover(None);
    assert_eq!(names(&found), ["wq0.0"]);
    assert_eq!(
        skipped(&found),
        [
            ("wq1.0", "not-dsa"),
            ("wq2.0", "no-device"),
            ("wq0", "bad-attribute"),
            ("wq01.0", "bad-attribute"),
            ("wqx.0", "bad-attribute")
        ]
    );
    assert_eq!(found.skipped[0].1, SkipReason::NotDsa("iax1".into()));
    let bad: Vec<&str> = found.bad_devices.iter().map(|(name, _)| name.as_str()).collect();
    bad.iter().for_each(|name| assert!(["dsa", "dsa01"].contains(name), "{name}"));
    assert_eq!(bad.len(), 2);
}

#[test]
fn the_callers_numa_node_comes_first() {
    let tree = Tree::new();
    tree.device(0, &[("numa_node", Some("0"))])
        .device(1, &[("numa_node", Some("1"))])
        .device(2, &[("numa_node", Some("-1"))])
        .device(3, &[("numa_node", Some("1"))]);
    for (device, queue) in [(3, 0), (0, 1), (2, 0), (1, 2), (0, 0), (1, 0), (3, 1)] {
        tree.queue(device, queue, &[]);
    }
    let on = |node| names(&tree.discover(node));
    let by_id = ["wq0.0", "wq0.1", "wq1.0", "wq1.2", "wq2.0", "wq3.0", "wq3.1"];
    assert_eq!(on(None), by_id);
    assert_eq!(on(Some(7)), by_id);
    assert_eq!(on(Some(1)), ["wq1.0", "wq1.2", "wq3.0", "wq3.1", "wq0.0", "wq0.1", "wq2.0"]);
    assert_eq!(on(Some(0)), ["wq0.0", "wq0.1", "wq1.0", "wq1.2", "wq2.0", "wq3.0", "wq3.1"]);
    let found = tree.discover(Some(1));
    assert_eq!(found.devices.iter().map(|d| d.numa_node).collect::<Vec<_>>(), [Some(0), Some(1), None, Some(1)]);
}

#[test]
fn several_devices_with_their_own_limits() {
    let tree = Tree::new();
    tree.device(0, &[("gen_cap", Some("0x40915f0103")), ("max_transfer_size", Some("1048576"))])
        .queue(0, 0, &[("max_transfer_size", Some("2097152"))])
        .device(1, &[("max_transfer_size", Some("8589934592"))])
        .queue(1, 0, &[("max_transfer_size", Some("8589934592")), ("mode", Some("shared"))]);
    let found = tree.discover(None);
    assert_eq!(names(&found), ["wq0.0", "wq1.0"]);
    let [a, b] = &found.queues[..] else { panic!() };
    assert!(!a.device.cache_control());
    assert!(b.device.cache_control());
    // The smaller of the queue's and the device's limits, within u32.
    assert_eq!(a.max_transfer_size(), 1 << 20);
    assert_eq!(b.max_transfer_size(), u32::MAX);
}

#[test]
fn op_cap_in_every_kernel_format() {
    // 6.3 on: 32-bit groups, most significant first.
    assert_eq!(parse_op_cap(SPR_OP_CAP), Some(vec![0x1_003f_03ff, 0, 0, 0]));
    assert_eq!(
        parse_op_cap("00000000,00000000,00000000,00000000,00000000,00000004,00000000,00000001\n"),
        Some(vec![1, 4, 0, 0])
    );
    assert_eq!(parse_op_cap("3,00000001"), Some(vec![0x3_0000_0001]));
    assert_eq!(parse_op_cap("1,00000000,00000000"), Some(vec![0, 1]));
    // 5.13 to 6.2: four %#llx words, least significant first (0 has no 0x).
    assert_eq!(parse_op_cap("0x1003f03ff 0 0 0\n"), Some(vec![0x1_003f_03ff, 0, 0, 0]));
    assert_eq!(parse_op_cap("0x1 0x4 0 0"), Some(vec![1, 4, 0, 0]));
    // Before 5.13: one word.
    assert_eq!(parse_op_cap("0x1003f03ff"), Some(vec![0x1_003f_03ff]));
    assert_eq!(parse_op_cap("0"), Some(vec![0]));
    for garbage in ["", " ", "0x", "0xzz", "1,,2", ",1", "123456789,0", "0x1,0", "+1,0", "1 2 x", "0x10000000000000000"]
    {
        assert_eq!(parse_op_cap(garbage), None, "{garbage:?}");
    }
    // Bit `opcode`, whichever word it is in.
    let caps = [1u64, 4];
    assert!(supports_op(&caps, 0));
    assert!(!supports_op(&caps, 2));
    assert!(supports_op(&caps, 66));
    assert!(!supports_op(&caps, 64));
    assert!(!supports_op(&caps, 200));
    assert!(!supports_op(&[], opcode::NOOP));
    // The whole path through a fixture, in both multi-word formats.
    for text in ["0x1 0x4 0 0", "00000000,00000000,00000000,00000000,00000000,00000004,00000000,00000001"] {
        let tree = Tree::new();
        tree.device(0, &[("op_cap", Some(text))]).queue(0, 0, &[]);
        let found = tree.discover(None);
        let device = &found.queues[0].device;
        assert!(device.supports(opcode::NOOP) && device.supports(66), "{text}");
        assert!(!device.supports(opcode::MEMMOVE), "{text}");
    }
}

#[test]
fn gen_cap_cache_control_bit() {
    assert!(supports_cache_control(0x40915f0107));
    assert!(supports_cache_control(abi::GEN_CAP_CACHE_CONTROL));
    assert!(!supports_cache_control(0x40915f0103));
    assert!(!supports_cache_control(0));
    assert_eq!(parse_hex("0x40915f0107"), Some(0x40915f0107));
    assert_eq!(parse_hex("0X1F"), Some(0x1f));
    assert_eq!(parse_hex("1f"), Some(0x1f));
    for garbage in ["", "0x", "0x-1", "-0x1", "+1", "0x 1", "g"] {
        assert_eq!(parse_hex(garbage), None, "{garbage:?}");
    }
}

#[test]
fn no_devices_is_an_empty_list() {
    let nowhere = std::env::temp_dir().join(format!("ipc-offload-dsa-sysfs-none-{}", std::process::id()));
    assert_eq!(discover(&nowhere, None), Ok(Discovery::default()));
    // A root without the dsa bus (no idxd driver).
    let tree = Tree::new();
    std::fs::remove_dir_all(tree.root.join("bus/dsa")).unwrap();
    assert_eq!(discover(&tree.root, Some(0)), Ok(Discovery::default()));
    // An empty bus.
    let tree = Tree::new();
    assert_eq!(tree.discover(None), Discovery::default());
    // Devices without queues.
    tree.device(0, &[]);
    let found = tree.discover(None);
    assert_eq!((found.devices.len(), found.queues.len(), found.skipped.len()), (1, 0, 0));
}

#[test]
fn an_unlistable_bus_is_an_error() {
    let tree = Tree::new();
    let bus = tree.root.join(BUS_DEVICES);
    std::fs::remove_dir(&bus).unwrap();
    std::fs::write(&bus, "not a directory").unwrap();
    let err = discover(&tree.root, None).unwrap_err();
    assert!(matches!(&err, SysfsError::Io { path, .. } if *path == bus), "{err:?}");
    assert!(err.to_string().contains("bus/dsa/devices"), "{err}");
}
