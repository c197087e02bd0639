//! Devices and work queues of the idxd driver, read from sysfs under a
//! configurable root (`/sys` normally; tests pass fixture trees).
//!
//! The bus directory `ROOT/bus/dsa/devices/` holds `dsaN` (devices), `wqN.M`
//! (work queue M of device N), and also `engineN.M`, `groupN.M` and, on
//! machines with IAA, `iaxN` with its own `wqN.M` (device numbers are shared
//! by both kinds); the entries are symlinks into `/sys/devices/...`. A user
//! queue's character device is `/dev/dsa/wqN.M`.
//!
//! [`discover`] lists the queues this library can use (enabled, type
//! `user`, on an enabled DSA device with PASID, so shared virtual
//! addressing), the caller's NUMA node first, and says why it skipped every
//! other queue. Nothing here panics on what sysfs holds: missing files and
//! garbage values become [`SysfsError`]s. Discovery runs once, off the hot
//! path, so it allocates freely.
//!
//! Attribute formats are those of `drivers/dma/idxd/sysfs.c`: numbers in
//! decimal, `gen_cap` as `%#llx`, and `op_cap` in one of the three forms
//! kernels have printed (see [`parse_op_cap`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::abi;

/// The sysfs root used outside tests.
pub const DEFAULT_ROOT: &str = "/sys";

/// The bus directory, relative to the sysfs root.
pub const BUS_DEVICES: &str = "bus/dsa/devices";

/// Where the driver creates the queues' character devices.
pub const CHAR_DEVICE_DIR: &str = "/dev/dsa";

/// Attribute files longer than this are garbage (sysfs attributes are at
/// most a page).
const MAX_ATTRIBUTE: u64 = 4096;

/// Why an attribute or the bus directory could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SysfsError {
    /// The attribute file does not exist.
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The file or directory exists but could not be read.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        kind: io::ErrorKind,
    },
    /// The attribute holds text that is not a value of its kind.
    Garbage {
        /// The file.
        path: PathBuf,
        /// Its text, trimmed (at most 64 characters of it).
        text: String,
        /// What it should have held.
        expected: &'static str,
    },
    /// A bus entry that looks like a device or queue has a malformed name
    /// (`wqx.1`, `dsa01`).
    BadName {
        /// The entry's name.
        name: String,
    },
}

impl fmt::Display for SysfsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SysfsError::Missing { path } => write!(f, "{}: missing", path.display()),
            SysfsError::Io { path, kind } => write!(f, "{}: {kind}", path.display()),
            SysfsError::Garbage { path, text, expected } => {
                write!(f, "{}: {text:?} is not {expected}", path.display())
            }
            SysfsError::BadName { name } => write!(f, "{name:?}: malformed device or queue name"),
        }
    }
}

impl std::error::Error for SysfsError {}

/// A device's `state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceState {
    /// `enabled`.
    Enabled,
    /// `disabled`.
    Disabled,
    /// `halted`: the device hit an error and stopped.
    Halted,
    /// `unknown` (the kernel's word for any other state).
    Unknown,
}

impl DeviceState {
    fn parse(text: &str) -> Option<DeviceState> {
        Some(match text {
            "enabled" => DeviceState::Enabled,
            "disabled" => DeviceState::Disabled,
            "halted" => DeviceState::Halted,
            "unknown" => DeviceState::Unknown,
            _ => return None,
        })
    }

    /// The sysfs word.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Enabled => "enabled",
            DeviceState::Disabled => "disabled",
            DeviceState::Halted => "halted",
            DeviceState::Unknown => "unknown",
        }
    }
}

/// A work queue's `mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `dedicated`: one process opens it; submit with MOVDIR64B.
    Dedicated,
    /// `shared`: any number of processes; submit with ENQCMD.
    Shared,
}

impl Mode {
    fn parse(text: &str) -> Option<Mode> {
        match text {
            "dedicated" => Some(Mode::Dedicated),
            "shared" => Some(Mode::Shared),
            _ => None,
        }
    }

    /// The sysfs word.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Dedicated => "dedicated",
            Mode::Shared => "shared",
        }
    }
}

/// A work queue's `type`: who may use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WqType {
    /// `user`: a character device for processes.
    User,
    /// `kernel`: owned by a kernel driver (dmaengine, crypto...).
    Kernel,
    /// `none`: not configured.
    None,
}

impl WqType {
    fn parse(text: &str) -> Option<WqType> {
        match text {
            "user" => Some(WqType::User),
            "kernel" => Some(WqType::Kernel),
            "none" => Some(WqType::None),
            _ => None,
        }
    }

    /// The sysfs word.
    pub fn as_str(self) -> &'static str {
        match self {
            WqType::User => "user",
            WqType::Kernel => "kernel",
            WqType::None => "none",
        }
    }
}

/// A work queue's `state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WqState {
    /// `enabled`.
    Enabled,
    /// `disabled`.
    Disabled,
    /// `locked` (older kernels: configured by the device, not by software).
    Locked,
    /// `unknown`.
    Unknown,
}

impl WqState {
    fn parse(text: &str) -> Option<WqState> {
        Some(match text {
            "enabled" => WqState::Enabled,
            "disabled" => WqState::Disabled,
            "locked" => WqState::Locked,
            "unknown" => WqState::Unknown,
            _ => return None,
        })
    }

    /// The sysfs word.
    pub fn as_str(self) -> &'static str {
        match self {
            WqState::Enabled => "enabled",
            WqState::Disabled => "disabled",
            WqState::Locked => "locked",
            WqState::Unknown => "unknown",
        }
    }
}

/// A DSA device (`dsaN`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// N.
    pub id: u32,
    /// `gen_cap`: the general capabilities register.
    pub gen_cap: u64,
    /// `op_cap`: supported opcodes, least significant word first (word i
    /// holds opcodes 64 i to 64 i + 63).
    pub op_cap: Vec<u64>,
    /// `numa_node`; `None` for -1 (no affinity).
    pub numa_node: Option<u32>,
    /// `max_transfer_size`, bytes.
    pub max_transfer_size: u64,
    /// `max_batch_size`, descriptors.
    pub max_batch_size: u32,
    /// `pasid_enabled`: user queues get shared virtual addressing.
    pub pasid_enabled: bool,
    /// `state`.
    pub state: DeviceState,
}

impl Device {
    /// `dsaN`.
    pub fn entry(&self) -> String {
        format!("dsa{}", self.id)
    }

    /// Whether descriptors may set the cache-control flag.
    pub fn cache_control(&self) -> bool {
        supports_cache_control(self.gen_cap)
    }

    /// Whether the device executes `opcode`.
    pub fn supports(&self, opcode: u8) -> bool {
        supports_op(&self.op_cap, opcode)
    }
}

/// A work queue (`wqN.M`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkQueue {
    /// N, the device's id.
    pub device_id: u32,
    /// M.
    pub id: u32,
    /// `mode`.
    pub mode: Mode,
    /// `size`: entries; for a dedicated queue, the most descriptors in flight.
    pub size: u32,
    /// `threshold`: entries of a shared queue that ENQCMD may fill.
    pub threshold: u32,
    /// `max_transfer_size`, bytes.
    pub max_transfer_size: u64,
    /// `max_batch_size`, descriptors.
    pub max_batch_size: u32,
    /// `type`.
    pub wq_type: WqType,
    /// `state`.
    pub state: WqState,
    /// `block_on_fault`: the device may wait for faulting pages (the BOF flag
    /// is honoured).
    pub block_on_fault: bool,
    /// `priority`.
    pub priority: u32,
    /// `name`: the label set by accel-config (may be empty).
    pub name: String,
}

impl WorkQueue {
    /// `wqN.M`.
    pub fn entry(&self) -> String {
        format!("wq{}.{}", self.device_id, self.id)
    }

    /// `/dev/dsa/wqN.M`.
    pub fn char_device(&self) -> PathBuf {
        Path::new(CHAR_DEVICE_DIR).join(self.entry())
    }
}

/// A queue [`discover`] found usable, with its device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queue {
    /// The device the queue belongs to.
    pub device: Device,
    /// The queue.
    pub wq: WorkQueue,
}

impl Queue {
    /// The largest transfer one descriptor may carry: the smaller of the
    /// queue's and the device's limits, at most `u32::MAX` (the
    /// descriptor's size field).
    pub fn max_transfer_size(&self) -> u32 {
        let limit = self.wq.max_transfer_size.min(self.device.max_transfer_size);
        u32::try_from(limit).unwrap_or(u32::MAX)
    }
}

/// Why [`discover`] did not use a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// Its device is `iaxN` (IAA), not DSA.
    NotDsa(String),
    /// No `dsaN` entry for `wqN.M`.
    NoDevice,
    /// `state` is not `enabled`.
    Disabled(WqState),
    /// `type` is not `user` (kernel-owned or unconfigured).
    NotUser(WqType),
    /// The device's attributes are missing or garbage.
    BadDevice(SysfsError),
    /// The device is not `enabled`.
    DeviceNotEnabled(DeviceState),
    /// The device has PASID disabled: no shared virtual addressing.
    NoPasid,
    /// One of the queue's attributes is missing or garbage.
    BadAttribute(SysfsError),
    /// This attribute of an enabled queue is 0.
    Zero(&'static str),
}

impl SkipReason {
    /// A short stable key for counting (`"disabled"`, `"not-user"`...).
    pub fn key(&self) -> &'static str {
        match self {
            SkipReason::NotDsa(_) => "not-dsa",
            SkipReason::NoDevice => "no-device",
            SkipReason::Disabled(_) => "disabled",
            SkipReason::NotUser(_) => "not-user",
            SkipReason::BadDevice(_) => "bad-device",
            SkipReason::DeviceNotEnabled(_) => "device-not-enabled",
            SkipReason::NoPasid => "no-pasid",
            SkipReason::BadAttribute(_) => "bad-attribute",
            SkipReason::Zero(_) => "zero-size",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NotDsa(device) => write!(f, "belongs to {device}, not a DSA device"),
            SkipReason::NoDevice => write!(f, "its device is not on the bus"),
            SkipReason::Disabled(state) => write!(f, "state is {}", state.as_str()),
            SkipReason::NotUser(ty) => write!(f, "type is {}, not user", ty.as_str()),
            SkipReason::BadDevice(e) => write!(f, "device unreadable: {e}"),
            SkipReason::DeviceNotEnabled(state) => write!(f, "device state is {}", state.as_str()),
            SkipReason::NoPasid => write!(f, "device has PASID disabled (no shared virtual addressing)"),
            SkipReason::BadAttribute(e) => write!(f, "{e}"),
            SkipReason::Zero(attribute) => write!(f, "{attribute} is 0"),
        }
    }
}

/// What [`discover`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovery {
    /// Every DSA device whose attributes parsed, by id.
    pub devices: Vec<Device>,
    /// Usable queues: those on the requested NUMA node first, then by
    /// device id and queue id.
    pub queues: Vec<Queue>,
    /// Every other queue (`wqN.M`, or the malformed entry's name) and why,
    /// by device id and queue id.
    pub skipped: Vec<(String, SkipReason)>,
    /// DSA devices whose attributes are missing or garbage, or whose
    /// entry name is malformed.
    pub bad_devices: Vec<(String, SysfsError)>,
}

/// Whether `gen_cap` allows the cache-control flag (`flag::CC`).
pub fn supports_cache_control(gen_cap: u64) -> bool {
    gen_cap & abi::GEN_CAP_CACHE_CONTROL != 0
}

/// Whether bit `opcode` of `op_cap` (least significant word first) is set.
pub fn supports_op(op_cap: &[u64], opcode: u8) -> bool {
    op_cap.get(usize::from(opcode / 64)).is_some_and(|word| (word >> (opcode % 64)) & 1 == 1)
}

/// Parses `op_cap` into 64-bit words, least significant first. Kernels
/// have printed it three ways:
/// - one word, `%#llx` (before 5.13): `0x1003f03ff`;
/// - four words separated by spaces, `%#llx` each, least significant
///   first (5.13 to 6.2): `0x1003f03ff 0 0 0`;
/// - a `%*pb` bitmap: 32-bit hex groups without `0x`, separated by commas,
///   most significant first (6.3 on): `00000000,...,00000001,003f03ff`.
pub fn parse_op_cap(text: &str) -> Option<Vec<u64>> {
    let text = text.trim();
    if text.contains(',') {
        let groups: Vec<&str> = text.split(',').collect();
        let mut words = vec![0u64; groups.len().div_ceil(2)];
        for (i, group) in groups.iter().rev().enumerate() {
            if group.is_empty() || group.len() > 8 || !group.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            let value = u32::from_str_radix(group, 16).ok()?;
            words[i / 2] |= u64::from(value) << (32 * (i % 2));
        }
        Some(words)
    } else {
        let words: Option<Vec<u64>> = text.split_ascii_whitespace().map(parse_hex).collect();
        words.filter(|w| !w.is_empty())
    }
}

/// `0x1f`, `0X1F` or `1f` (at most 64 bits).
pub fn parse_hex(text: &str) -> Option<u64> {
    let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// Plain decimal digits (no sign), within the type's range.
fn parse_dec<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

/// `-1` (no node) or a node number.
fn parse_numa_node(text: &str) -> Option<Option<u32>> {
    if text == "-1" { Some(None) } else { parse_dec(text).map(Some) }
}

/// The trimmed text of `dir/name`.
fn attribute(dir: &Path, name: &str) -> Result<String, SysfsError> {
    let path = dir.join(name);
    let io_error = |e: io::Error, path: PathBuf| match e.kind() {
        io::ErrorKind::NotFound => SysfsError::Missing { path },
        kind => SysfsError::Io { path, kind },
    };
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) => return Err(io_error(e, path)),
    };
    let mut bytes = Vec::new();
    if let Err(e) = file.take(MAX_ATTRIBUTE + 1).read_to_end(&mut bytes) {
        return Err(io_error(e, path));
    }
    if bytes.len() as u64 > MAX_ATTRIBUTE {
        return Err(SysfsError::Garbage { path, text: "(longer than a page)".into(), expected: "a sysfs attribute" });
    }
    Ok(String::from_utf8_lossy(&bytes).trim().to_owned())
}

/// `dir/name` parsed by `parse`.
fn parsed<T>(
    dir: &Path,
    name: &str,
    expected: &'static str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, SysfsError> {
    let text = attribute(dir, name)?;
    parse(&text).ok_or_else(|| SysfsError::Garbage {
        path: dir.join(name),
        text: text.chars().take(64).collect(),
        expected,
    })
}

/// Reads the device whose sysfs directory is `dir`.
pub fn read_device(dir: &Path, id: u32) -> Result<Device, SysfsError> {
    Ok(Device {
        id,
        gen_cap: parsed(dir, "gen_cap", "a hex number", parse_hex)?,
        op_cap: parsed(dir, "op_cap", "an opcode bitmap", parse_op_cap)?,
        numa_node: parsed(dir, "numa_node", "a NUMA node or -1", parse_numa_node)?,
        max_transfer_size: parsed(dir, "max_transfer_size", "a byte count", parse_dec)?,
        max_batch_size: parsed(dir, "max_batch_size", "a descriptor count", parse_dec)?,
        pasid_enabled: parsed(dir, "pasid_enabled", "0 or 1", parse_bool)?,
        state: parsed(dir, "state", "a device state", DeviceState::parse)?,
    })
}

fn read_wq_state(dir: &Path) -> Result<WqState, SysfsError> {
    parsed(dir, "state", "enabled, disabled, locked or unknown", WqState::parse)
}

fn read_wq_type(dir: &Path) -> Result<WqType, SysfsError> {
    parsed(dir, "type", "user, kernel or none", WqType::parse)
}

/// Reads queue `id` of device `device_id`, whose sysfs directory is `dir`.
pub fn read_work_queue(dir: &Path, device_id: u32, id: u32) -> Result<WorkQueue, SysfsError> {
    Ok(WorkQueue {
        device_id,
        id,
        mode: parsed(dir, "mode", "dedicated or shared", Mode::parse)?,
        size: parsed(dir, "size", "an entry count", parse_dec)?,
        threshold: parsed(dir, "threshold", "an entry count", parse_dec)?,
        max_transfer_size: parsed(dir, "max_transfer_size", "a byte count", parse_dec)?,
        max_batch_size: parsed(dir, "max_batch_size", "a descriptor count", parse_dec)?,
        wq_type: read_wq_type(dir)?,
        state: read_wq_state(dir)?,
        block_on_fault: parsed(dir, "block_on_fault", "0 or 1", parse_bool)?,
        priority: parsed(dir, "priority", "a priority", parse_dec)?,
        name: attribute(dir, "name")?,
    })
}

/// A decimal id without sign or leading zeros.
fn parse_id(text: &str) -> Option<u32> {
    if text.len() > 1 && text.starts_with('0') {
        return None;
    }
    parse_dec(text)
}

/// What a bus entry's name says it is.
enum Entry {
    /// `dsaN`.
    Dsa(u32),
    /// `iaxN`: a device of another kind on the same bus.
    Other(u32),
    /// `wqN.M`.
    Queue(u32, u32),
    /// Looks like `dsa...` or `wq...` but does not parse.
    BadDevice,
    BadQueue,
    /// `engineN.M`, `groupN.M`, anything else.
    Ignored,
}

fn classify(name: &str) -> Entry {
    if let Some(rest) = name.strip_prefix("wq") {
        let ids = rest.split_once('.').and_then(|(d, q)| Some((parse_id(d)?, parse_id(q)?)));
        return ids.map_or(Entry::BadQueue, |(d, q)| Entry::Queue(d, q));
    }
    if let Some(rest) = name.strip_prefix("dsa") {
        return parse_id(rest).map_or(Entry::BadDevice, Entry::Dsa);
    }
    if let Some(id) = name.strip_prefix("iax").and_then(parse_id) {
        return Entry::Other(id);
    }
    Entry::Ignored
}

/// Finds the DSA devices and work queues under `root` (normally
/// [`DEFAULT_ROOT`]) and the queues this library may use: enabled, type
/// `user`, on an enabled DSA device with PASID, with nonzero `size` and
/// `max_transfer_size`. Those whose device is on `numa_node` come first.
///
/// A root without the bus directory (no idxd driver, no root at all) is
/// no error: an empty [`Discovery`]. An error is returned only when the
/// bus directory exists but cannot be listed.
pub fn discover(root: &Path, numa_node: Option<u32>) -> Result<Discovery, SysfsError> {
    let bus = root.join(BUS_DEVICES);
    let entries = match std::fs::read_dir(&bus) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Discovery::default()),
        Err(e) => return Err(SysfsError::Io { path: bus, kind: e.kind() }),
    };
    let mut device_ids = BTreeSet::new();
    let mut other_devices = BTreeMap::new();
    let mut queue_ids = BTreeSet::new();
    let mut found = Discovery::default();
    let mut bad_queue_names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SysfsError::Io { path: bus.clone(), kind: e.kind() })?;
        // Names that are not UTF-8 are nothing the driver creates.
        let Ok(name) = entry.file_name().into_string() else { continue };
        match classify(&name) {
            Entry::Dsa(id) => {
                device_ids.insert(id);
            }
            Entry::Other(id) => {
                other_devices.insert(id, name);
            }
            Entry::Queue(device, queue) => {
                queue_ids.insert((device, queue));
            }
            Entry::BadDevice => found.bad_devices.push((name.clone(), SysfsError::BadName { name })),
            Entry::BadQueue => bad_queue_names.push(name),
            Entry::Ignored => {}
        }
    }
    bad_queue_names.sort();

    let mut devices = BTreeMap::new();
    for id in device_ids {
        let name = format!("dsa{id}");
        match read_device(&bus.join(&name), id) {
            Ok(device) => {
                found.devices.push(device.clone());
                devices.insert(id, Ok(device));
            }
            Err(e) => {
                found.bad_devices.push((name, e.clone()));
                devices.insert(id, Err(e));
            }
        }
    }

    for (device_id, id) in queue_ids {
        let name = format!("wq{device_id}.{id}");
        let dir = bus.join(&name);
        match usable(&dir, device_id, id, devices.get(&device_id), other_devices.get(&device_id)) {
            Ok(queue) => found.queues.push(queue),
            Err(reason) => found.skipped.push((name, reason)),
        }
    }
    for name in bad_queue_names {
        let reason = SkipReason::BadAttribute(SysfsError::BadName { name: name.clone() });
        found.skipped.push((name, reason));
    }
    found.queues.sort_by_key(|q| (numa_node.is_none() || q.device.numa_node != numa_node, q.device.id, q.wq.id));
    Ok(found)
}

/// The queue at `dir` if the library may use it, or why not. The queue's
/// own state and type are checked before its device and its other
/// attributes, so that a disabled or kernel queue is reported as such even
/// when it is unconfigured.
fn usable(
    dir: &Path,
    device_id: u32,
    id: u32,
    device: Option<&Result<Device, SysfsError>>,
    other_device: Option<&String>,
) -> Result<Queue, SkipReason> {
    let device = match (device, other_device) {
        (Some(device), _) => device,
        (None, Some(other)) => return Err(SkipReason::NotDsa(other.clone())),
        (None, None) => return Err(SkipReason::NoDevice),
    };
    let state = read_wq_state(dir).map_err(SkipReason::BadAttribute)?;
    if state != WqState::Enabled {
        return Err(SkipReason::Disabled(state));
    }
    let wq_type = read_wq_type(dir).map_err(SkipReason::BadAttribute)?;
    if wq_type != WqType::User {
        return Err(SkipReason::NotUser(wq_type));
    }
    let device = device.as_ref().map_err(|e| SkipReason::BadDevice(e.clone()))?;
    if device.state != DeviceState::Enabled {
        return Err(SkipReason::DeviceNotEnabled(device.state));
    }
    if !device.pasid_enabled {
        return Err(SkipReason::NoPasid);
    }
    let wq = read_work_queue(dir, device_id, id).map_err(SkipReason::BadAttribute)?;
    if wq.size == 0 {
        return Err(SkipReason::Zero("size"));
    }
    if wq.max_transfer_size == 0 {
        return Err(SkipReason::Zero("max_transfer_size"));
    }
    if device.max_transfer_size == 0 {
        return Err(SkipReason::Zero("the device's max_transfer_size"));
    }
    Ok(Queue { device: device.clone(), wq })
}

#[cfg(test)]
mod tests;
