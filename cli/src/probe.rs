//! `probe`: what the `dsa` engine would find on this machine. The CPU
//! features it uses, the DSA devices and work queues sysfs lists, and the
//! engine each class of a policy would get in a process started here,
//! decided by the runtime's own planning code (`ipc_offload_runtime::plan`).
//! No device is opened: whether a queue would open is judged from access(2)
//! on its file and from CPUID.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ipc_offload_dsa::sysfs::{self, Discovery, Mode, Queue, SysfsError};
use ipc_offload_engine::EngineId;
use ipc_offload_policy::{Addresses, Class, DsaDevice, Engine, Policy, Rejected, Resolved, format_size};
use ipc_offload_runtime::env::{self, Env};
use ipc_offload_runtime::plan::{self, Machine};
use ipc_offload_sys::cpus;
use ipc_offload_sys::x86::Features;

use crate::stats::render;

const USAGE: &str = "\
usage: ipc-offload probe [--policy FILE] [--process NAME] [--sysfs DIR]

Prints what the dsa engine would find here, without opening any device:
the CPU features it uses (movdir64b, enqcmd, waitpkg); the DSA devices and
work queues listed under DIR/bus/dsa/devices, and whether this user may
open each usable queue's /dev/dsa/wqN.M for reading and writing; and the
engine each class of the policy would use in a process started here.

  --policy FILE   the policy (default: IPC_OFFLOAD_POLICY, else built-in)
  --process NAME  apply the [process.\"GLOB\"] overrides NAME matches
  --sysfs DIR     the sysfs root (default: the policy's [dsa] sysfs, /sys)

Exits 0 (also without DSA); 2 on bad usage or a rejected policy (its
FILE:LINE:COL: message lines go to stderr); 1 if the bus directory exists
but cannot be read.
";

/// What the command line asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Options {
    /// `--policy FILE`.
    policy: Option<PathBuf>,
    /// `--process NAME`.
    process: Option<String>,
    /// `--sysfs DIR`.
    sysfs: Option<PathBuf>,
}

/// Why the probe's answer is incomplete, or could not be given.
#[derive(Debug)]
enum Problem {
    /// The command line is wrong.
    Usage(String),
    /// The policy was rejected: the library would pass every call through.
    Policy(Rejected),
    /// The bus directory exists but could not be listed.
    Sysfs(SysfsError),
}

impl Problem {
    fn exit_code(&self) -> u8 {
        match self {
            Problem::Usage(_) | Problem::Policy(_) => 2,
            Problem::Sysfs(_) => 1,
        }
    }

    /// The lines for stderr.
    fn report(&self) -> String {
        match self {
            Problem::Usage(message) => format!("ipc-offload probe: {message}\n{USAGE}"),
            Problem::Policy(rejected) => format!("{rejected}\n"),
            Problem::Sysfs(e) => format!("ipc-offload probe: {e}\n"),
        }
    }
}

/// What the probe reads from the process and the machine besides sysfs
/// and the policy file (tests supply their own).
struct Host {
    /// CPUID.
    features: Features,
    /// CPUs a process started here may use.
    cpus: u32,
    /// The last-level cache, if known.
    llc: Option<u64>,
    /// Whether this user may open a file for reading and writing.
    access: fn(&Path) -> io::Result<()>,
    /// The library's environment variables.
    env: Env,
}

impl Host {
    fn current() -> Host {
        Host {
            features: Features::get(),
            cpus: cpus::current().available(),
            llc: cpus::last_level_cache(Path::new("/sys/devices/system/cpu")),
            access: read_write_access,
            env: Env::from_process(),
        }
    }
}

/// access(2) with `R_OK | W_OK` (the real user's permissions).
fn read_write_access(path: &Path) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: access(2) reads the NUL-terminated path and nothing else.
    if unsafe { libc::access(c_path.as_ptr(), libc::R_OK | libc::W_OK) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn main(args: &[String]) -> ExitCode {
    let options = match parse_args(args) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprint!("{}", problem.report());
            return ExitCode::from(problem.exit_code());
        }
    };
    let (text, problems) = probe(&options, &Host::current());
    print!("{text}");
    for problem in &problems {
        eprint!("{}", problem.report());
    }
    ExitCode::from(problems.iter().map(Problem::exit_code).max().unwrap_or(0))
}

/// The options, or `None` for `--help`.
fn parse_args(args: &[String]) -> Result<Option<Options>, Problem> {
    let mut options = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |what: &str| it.next().cloned().ok_or_else(|| Problem::Usage(format!("{arg} needs {what}")));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--policy" => options.policy = Some(PathBuf::from(value("a file")?)),
            "--process" => options.process = Some(value("a name")?),
            "--sysfs" => options.sysfs = Some(PathBuf::from(value("a directory")?)),
            other => return Err(Problem::Usage(format!("unknown argument {other}"))),
        }
    }
    Ok(Some(options))
}

/// What the bus directory holds.
#[derive(Debug)]
enum Bus {
    /// It does not exist: no idxd driver, or no DSA device.
    Missing,
    /// It exists but could not be listed.
    Unreadable(SysfsError),
    /// What discovery found.
    Found(Discovery),
}

/// A usable queue, and whether this process could submit to it.
#[derive(Debug)]
struct QueueCheck<'a> {
    queue: &'a Queue,
    /// access(2) on its file.
    access: io::Result<()>,
    /// The instruction its mode needs, and whether the CPU has it.
    instruction: (&'static str, bool),
}

impl QueueCheck<'_> {
    fn new<'a>(queue: &'a Queue, host: &Host) -> QueueCheck<'a> {
        let instruction = match queue.wq.mode {
            Mode::Dedicated => ("MOVDIR64B", host.features.movdir64b),
            Mode::Shared => ("ENQCMD", host.features.enqcmd),
        };
        QueueCheck { queue, access: (host.access)(&queue.wq.char_device()), instruction }
    }
}

/// Whether a process started here would get a DSA device.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Availability {
    /// It would: the model, or this hardware queue.
    Yes(String),
    /// It would not, and why.
    No(String),
}

impl Availability {
    fn describe(&self) -> String {
        match self {
            Availability::Yes(what) => format!("available: {what}"),
            Availability::No(why) => format!("unavailable: {why}"),
        }
    }
}

/// "does not exist", "permission denied", or the system's words.
fn access_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => "does not exist".to_owned(),
        Some(libc::EACCES) | Some(libc::EPERM) => "permission denied".to_owned(),
        _ => e.to_string(),
    }
}

/// Whether the device the `[dsa]` section names would open, as the runtime
/// opens it (`runtime/src/dsa_setup.rs`): the model always; hardware when a
/// usable queue's file opens and the CPU has the instruction its mode needs.
fn availability(device: DsaDevice, bus_dir: &Path, bus: &Bus, checks: &[QueueCheck<'_>]) -> Availability {
    if device == DsaDevice::Model {
        return Availability::Yes("the software model (a thread of the process)".to_owned());
    }
    let found = match bus {
        Bus::Missing => return Availability::No(format!("no DSA device: {} does not exist", bus_dir.display())),
        Bus::Unreadable(e) => return Availability::No(format!("cannot list DSA devices: {e}")),
        Bus::Found(found) => found,
    };
    if found.devices.is_empty() && found.bad_devices.is_empty() {
        return Availability::No(format!("no DSA device under {}", bus_dir.display()));
    }
    if checks.is_empty() {
        return Availability::No(format!(
            "no usable DSA work queue ({} device(s), {} queue(s) skipped)",
            found.devices.len(),
            found.skipped.len()
        ));
    }
    if let Some(c) = checks.iter().find(|c| c.access.is_ok() && c.instruction.1) {
        let q = &c.queue.wq;
        return Availability::Yes(format!("{} ({}, {})", q.entry(), q.mode.as_str(), c.instruction.0));
    }
    if let Some(c) = checks.iter().find(|c| c.access.is_ok()) {
        let q = &c.queue.wq;
        return Availability::Yes(format!(
            "{} ({}, the CPU lacks {}: descriptors go through write(2) on the queue file)",
            q.entry(),
            q.mode.as_str(),
            c.instruction.0
        ));
    }
    let why: Vec<String> = checks
        .iter()
        .filter_map(|c| c.access.as_ref().err().map(|e| (c, e)))
        .map(|(c, e)| format!("{} {}", c.queue.wq.char_device().display(), access_error(e)))
        .collect();
    Availability::No(format!("no DSA work queue opens: {}", why.join("; ")))
}

/// What the bus directory under `root` (`bus_dir`) holds.
fn read_bus(root: &Path, bus_dir: &Path) -> Bus {
    match std::fs::metadata(bus_dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Bus::Missing,
        _ => match sysfs::discover(root, None) {
            Ok(found) => Bus::Found(found),
            Err(e) => Bus::Unreadable(e),
        },
    }
}

/// Whether a process started here would get the DSA device `policy`'s
/// `[dsa]` section names, and the probe's words for it (`calibrate`
/// measures the dsa and hybrid engines only then).
pub(crate) fn dsa_availability(policy: &Policy) -> (bool, String) {
    let host = Host::current();
    let root = PathBuf::from(&policy.dsa.sysfs);
    let bus_dir = root.join(sysfs::BUS_DEVICES);
    let bus = read_bus(&root, &bus_dir);
    let checks: Vec<QueueCheck<'_>> = match &bus {
        Bus::Found(found) => found.queues.iter().map(|q| QueueCheck::new(q, &host)).collect(),
        _ => Vec::new(),
    };
    match availability(policy.dsa.device, &bus_dir, &bus, &checks) {
        Availability::Yes(what) => (true, what),
        Availability::No(why) => (false, why),
    }
}

/// The probe's report and its problems.
fn probe(options: &Options, host: &Host) -> (String, Vec<Problem>) {
    let mut out = String::new();
    let mut problems = Vec::new();

    let source = options.policy.as_deref().map(Path::as_os_str).or(host.env.policy.as_deref());
    let policy = match source {
        None => Ok((Policy::builtin(), "built-in".to_owned())),
        Some(path) => {
            let path = Path::new(path);
            Policy::load(path).map(|p| (p, path.display().to_string()))
        }
    };
    let root = match (&options.sysfs, &policy) {
        (Some(dir), _) => dir.clone(),
        (None, Ok((policy, _))) => PathBuf::from(&policy.dsa.sysfs),
        (None, Err(_)) => PathBuf::from(sysfs::DEFAULT_ROOT),
    };

    out.push_str(&features_section(host.features));

    let bus_dir = root.join(sysfs::BUS_DEVICES);
    let bus = read_bus(&root, &bus_dir);
    let checks: Vec<QueueCheck<'_>> = match &bus {
        Bus::Found(found) => found.queues.iter().map(|q| QueueCheck::new(q, host)).collect(),
        _ => Vec::new(),
    };
    out.push_str(&format!("dsa devices (sysfs {}):\n", root.display()));
    out.push_str(&devices_section(&bus_dir, &bus, &checks));

    match policy {
        Ok((policy, source)) => {
            let available = availability(policy.dsa.device, &bus_dir, &bus, &checks);
            out.push_str(&plan_section(&policy, &source, options.process.as_deref(), host, &available));
        }
        Err(rejected) => {
            let count = rejected.diagnostics.len();
            out.push_str(&format!(
                "policy {}: rejected ({count} error(s), on stderr): the library would pass every call through\n",
                source.map(|s| Path::new(s).display().to_string()).unwrap_or_default()
            ));
            problems.push(Problem::Policy(rejected));
        }
    }
    if let Bus::Unreadable(e) = bus {
        problems.push(Problem::Sysfs(e));
    }
    (out, problems)
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn features_section(f: Features) -> String {
    let rows = vec![
        vec!["movdir64b".into(), yes_no(f.movdir64b).into(), "submits to dedicated work queues".into()],
        vec!["enqcmd".into(), yes_no(f.enqcmd).into(), "submits to shared work queues".into()],
        vec!["waitpkg".into(), yes_no(f.waitpkg).into(), "UMONITOR/UMWAIT (wait = \"umwait\")".into()],
    ];
    format!("cpu features (CPUID):\n{}", indent(&render(&rows)))
}

fn devices_section(bus_dir: &Path, bus: &Bus, checks: &[QueueCheck<'_>]) -> String {
    let found = match bus {
        Bus::Missing => return format!("  no DSA device: {} does not exist\n", bus_dir.display()),
        Bus::Unreadable(e) => return format!("  cannot list DSA devices: {e}\n"),
        Bus::Found(found) => found,
    };
    let mut out = String::new();
    if found.devices.is_empty() && found.bad_devices.is_empty() {
        out.push_str(&format!("  no DSA device under {}\n", bus_dir.display()));
    }
    if !found.devices.is_empty() {
        let mut rows = vec![
            ["DEVICE", "NUMA", "GEN_CAP", "CACHE CONTROL", "MAX TRANSFER", "MAX BATCH", "STATE", "PASID"]
                .map(String::from)
                .to_vec(),
        ];
        for d in &found.devices {
            rows.push(vec![
                d.entry(),
                d.numa_node.map_or("-".to_owned(), |n| n.to_string()),
                format!("{:#x}", d.gen_cap),
                yes_no(d.cache_control()).to_owned(),
                format_size(d.max_transfer_size),
                d.max_batch_size.to_string(),
                d.state.as_str().to_owned(),
                yes_no(d.pasid_enabled).to_owned(),
            ]);
        }
        out.push_str(&indent(&render(&rows)));
    }
    for (name, e) in &found.bad_devices {
        out.push_str(&format!("  {name}: unreadable: {e}\n"));
    }
    out.push_str("dsa work queues:\n");
    if checks.is_empty() {
        out.push_str("  none usable\n");
    } else {
        let mut rows =
            vec![["QUEUE", "MODE", "SIZE", "MAX TRANSFER", "DEVICE FILE", "READ/WRITE"].map(String::from).to_vec()];
        for c in checks {
            let q = &c.queue.wq;
            rows.push(vec![
                q.entry(),
                q.mode.as_str().to_owned(),
                q.size.to_string(),
                format_size(u64::from(c.queue.max_transfer_size())),
                q.char_device().display().to_string(),
                match &c.access {
                    Ok(()) => "yes".to_owned(),
                    Err(e) => format!("no ({})", access_error(e)),
                },
            ]);
        }
        out.push_str(&indent(&render(&rows)));
    }
    if !found.skipped.is_empty() {
        out.push_str("dsa work queues skipped:\n");
        let rows: Vec<Vec<String>> =
            found.skipped.iter().map(|(name, reason)| vec![name.clone(), reason.to_string()]).collect();
        out.push_str(&indent(&render(&rows)));
    }
    out
}

/// The policy as the runtime would resolve and plan it here.
fn plan_section(policy: &Policy, source: &str, process: Option<&str>, host: &Host, available: &Availability) -> String {
    let names: Vec<&str> = process.into_iter().collect();
    let resolved = policy.resolve(&names);
    let machine = |dsa| Machine { cpus: host.cpus, llc: host.llc, dsa };
    let with = plan::plan(&resolved, machine(true));
    let without = plan::plan(&resolved, machine(false));
    let chosen = if matches!(available, Availability::Yes(_)) { &with } else { &without };

    let who = match process {
        Some(name) => {
            let matched = if resolved.matched.is_empty() { "none".to_owned() } else { resolved.matched.join(", ") };
            format!("process {name:?} (overrides matched: {matched})")
        }
        None if policy.overrides.is_empty() => "a process".to_owned(),
        None => format!("a process ({} override(s) not applied: see --process)", policy.overrides.len()),
    };
    let mut out = format!("policy {source}, for {who} started here with {} CPU(s):\n", host.cpus);
    if host.env.off {
        out.push_str(&format!("  {}=off: the library would pass every call through\n", env::SWITCH));
    }
    out.push_str(&format!("  [dsa] device = \"{}\": {}\n", policy.dsa.device, available.describe()));

    let mut rows = vec![["CLASS", "ENGINE", "USES", "FROM", "HELPERS", "WAIT"].map(String::from).to_vec()];
    for class in Class::ALL {
        let c = chosen.class(*class);
        let uses = c.engine.map_or("off", EngineId::name).to_owned();
        // The cpu engine never waits.
        let waits = |p: &plan::ClassPlan| !matches!(p.engine, None | Some(EngineId::Cpu));
        let wait = if waits(c) { c.wait.name() } else { "-" };
        rows.push(vec![
            format!("[{class}]"),
            c.rule.engine.name().to_owned(),
            uses,
            if c.engine.is_some() { format_size(c.rule.min_bytes) } else { "-".to_owned() },
            c.helpers.to_string(),
            wait.to_owned(),
        ]);
    }
    out.push_str(&indent(&render(&rows)));
    out.push_str(&tcp_plan(chosen.class(Class::Tcp)));
    let warn = |out: &mut String, when: &str, note: &plan::Note| {
        out.push_str(&format!("  {when}the library would warn: {note}\n"));
    };
    for note in &chosen.notes {
        warn(&mut out, "", note);
    }
    let fall_back = match available {
        Availability::Yes(_) => None,
        Availability::No(_) => Some(""),
    };
    if let Some(when) = fall_back {
        out.push_str(&format!("  {when}the dsa engine would fall back to {}\n", fallbacks(&resolved, host)));
    }
    out
}

/// What a class naming `dsa` would get without a device, per class:
/// "async-cpu for [memcpy], cpu for [unix], cpu for [pipe]".
fn fallbacks(resolved: &Resolved, host: &Host) -> String {
    let mut all_dsa = resolved.clone();
    for rule in &mut all_dsa.rules {
        rule.engine = Engine::Dsa;
    }
    let p = plan::plan(&all_dsa, Machine { cpus: host.cpus, llc: host.llc, dsa: false });
    let parts: Vec<String> = Class::ALL
        .iter()
        .map(|class| format!("{} for [{class}]", p.class(*class).engine.map_or("off", EngineId::name)))
        .collect();
    parts.join(", ")
}

/// Which TCP connections `[tcp]` would serve (docs/ipc-protocol.md, "TCP
/// over loopback").
fn tcp_plan(tcp: &plan::ClassPlan) -> String {
    if tcp.engine.is_none() {
        return "  [tcp] off: every TCP socket stays on the kernel path\n".to_owned();
    }
    let peers = match tcp.rule.addresses {
        Addresses::Loopback => "a peer on a loopback address (127.0.0.0/8, ::1)",
        Addresses::Local => "a peer on a loopback address or on any address of this host",
    };
    format!(
        "  [tcp] addresses = \"{}\": connections to {peers}, in this network namespace, of this uid, with the library at both ends; any other stays on the kernel path (not-local)\n",
        tcp.rule.addresses
    )
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

#[cfg(test)]
mod tests;
