//! Opening the DSA device a policy asks for (`[dsa]`), once, from the
//! constructor: the software model, or the first usable hardware work
//! queue from sysfs (queues on the caller's NUMA node first). The engine
//! itself is `ipc_offload_engine::dsa`.

use std::ffi::CString;
use std::path::Path;

use ipc_offload_engine::dsa::copy::{OnFault as CopyOnFault, Options};
use ipc_offload_engine::dsa::device::{self, Active, Kind, OpenError};
use ipc_offload_engine::dsa::model::{FaultRule, Model, ModelConfig, Side};
use ipc_offload_engine::dsa::queue::{Portal, Queue};
use ipc_offload_engine::dsa::sysfs::{self, Mode};
use ipc_offload_policy::{DsaDevice, DsaSettings, OnFault, Wait};

/// Why no device could be opened, for the log.
#[derive(Debug)]
pub enum Unavailable {
    /// The model could not start.
    Model(String),
    /// No usable hardware queue: how many were found, and why each open failed.
    Hardware { found: usize, failures: Vec<(String, String)> },
}

impl core::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Unavailable::Model(e) => write!(f, "the DSA model did not start: {e}"),
            Unavailable::Hardware { found: 0, .. } => f.write_str("no enabled user DSA work queue"),
            Unavailable::Hardware { found, failures } => {
                write!(f, "{found} DSA work queue(s), none could be opened:")?;
                for (queue, why) in failures {
                    write!(f, " {queue}: {why};")?;
                }
                Ok(())
            }
        }
    }
}

/// Opens the device `settings` names and makes it the process's; copies
/// wait for completions with `wait`.
pub fn open(settings: &DsaSettings, wait: Wait) -> Result<Kind, Unavailable> {
    let on_fault = match settings.on_fault {
        OnFault::Resubmit => CopyOnFault::Resubmit,
        OnFault::Cpu => CopyOnFault::Cpu,
    };
    // Each copy sets the cache-control flag from its class's `cache` key.
    let options = Options { cache_control: true, wait, on_fault };
    let (queue, kind) = match settings.device {
        DsaDevice::Model => (
            open_model(settings.model_fault_every, settings.model_slowdown, settings.model_shared)
                .map_err(Unavailable::Model)?,
            Kind::Model,
        ),
        DsaDevice::Hardware | DsaDevice::Auto => (open_hardware(Path::new(&settings.sysfs))?, Kind::Hardware),
    };
    // UMWAIT never asks for longer than the kernel allows.
    let max_time = std::fs::read_to_string("/sys/devices/system/cpu/umwait_control/max_time");
    if let Some(cycles) = max_time.ok().and_then(|t| t.trim().parse::<u64>().ok()) {
        ipc_offload_engine::dsa::copy::set_umwait_max(cycles);
    }
    let active: &'static Active = Box::leak(Box::new(Active { queue, options, kind }));
    device::install(active);
    Ok(kind)
}

/// Starts the model (for the life of the process) and a queue on its ring;
/// with `fault_every` > 0, every such descriptor of more than 64 KiB
/// reports a write fault at its byte 65537; each descriptor takes
/// `slowdown` times as long as its copy.
fn open_model(fault_every: u32, slowdown: u32, shared: bool) -> Result<Queue, String> {
    let mut config = ModelConfig::default();
    if shared {
        config.mode = ipc_offload_engine::dsa::model::Mode::Shared;
    }
    config.slowdown.factor = slowdown.max(1);
    if fault_every > 0 {
        config.faults.push(FaultRule::at(Side::Destination, 65537).every(fault_every).until_cleared());
    }
    let (size, max_transfer) = (config.size, config.max_transfer_size);
    let model = Model::start(config).map_err(|e| e.to_string())?;
    let portal =
        if shared { Portal::ModelShared(std::sync::Arc::as_ptr(&model)) } else { Portal::Ring(model.portal()) };
    // The model runs until the process ends.
    core::mem::forget(model);
    Ok(Queue::new(portal, size, max_transfer, true))
}

/// The first hardware queue that opens: a dedicated queue held by another
/// process (`EBUSY`) is skipped for the next.
fn open_hardware(root: &Path) -> Result<Queue, Unavailable> {
    // ENQCMD needs the kernel's PASID support as well as the CPU: where the
    // kernel disabled it, /proc/cpuinfo does not list it (and the
    // instruction would fault).
    let features = ipc_offload_engine::sys::x86::Features::get();
    let enqcmd = features.enqcmd
        && std::fs::read_to_string("/proc/cpuinfo")
            .is_ok_and(|c| c.lines().any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "enqcmd")));
    // Queues on the caller's NUMA node first.
    let node = ipc_offload_engine::sys::current_node();
    let found = sysfs::discover(root, node).map(|d| d.queues).unwrap_or_default();
    let mut failures = Vec::new();
    let mut busy = 0;
    for q in &found {
        let path = q.wq.char_device();
        let Ok(c_path) = CString::new(path.as_os_str().as_encoded_bytes()) else { continue };
        let shared = q.wq.mode == Mode::Shared;
        let usable = if shared { enqcmd } else { features.movdir64b };
        match device::open_portal(&c_path, shared, usable) {
            Ok(portal) => {
                device::note_busy_queues(busy);
                return Ok(Queue::new(portal, q.wq.size, q.max_transfer_size(), q.device.cache_control()));
            }
            Err(OpenError::Open(e)) => {
                // A dedicated queue admits one process: the next queue.
                busy += u32::from(e.0 == libc::EBUSY);
                failures.push((q.wq.entry(), format!("open: {e}")));
            }
        }
    }
    device::note_busy_queues(busy);
    Err(Unavailable::Hardware { found: found.len(), failures })
}
