//! Finding the DSA device a policy asks for (`[dsa]`), once, from the
//! constructor: the software model, or the enabled user work queues in
//! sysfs that this process may open (queues on the caller's NUMA node
//! first). The device opens at its first use
//! (`ipc_offload_dsa::open`); the engine itself is
//! `ipc_offload_dsa` (device) and `ipc_offload_engine::dsa_engine`.

use std::ffi::CString;
use std::path::Path;

use ipc_offload_dsa::device::Kind;
use ipc_offload_dsa::open::{self, Candidate, ModelSpec, Plan, Source};
use ipc_offload_dsa::options::{OnFault as CopyOnFault, Options};
use ipc_offload_dsa::sysfs::{self, Mode};
use ipc_offload_policy::{DsaDevice, DsaSettings, OnFault, Wait};

/// Why no device can be used, for the log.
#[derive(Debug)]
pub enum Unavailable {
    /// No usable hardware queue: how many were found, and why each is not
    /// accessible.
    Hardware { found: usize, failures: Vec<(String, String)> },
}

impl core::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Unavailable::Hardware { found: 0, .. } => f.write_str("no enabled user DSA work queue"),
            Unavailable::Hardware { found, failures } => {
                write!(f, "{found} DSA work queue(s), none accessible:")?;
                for (queue, why) in failures {
                    write!(f, " {queue}: {why};")?;
                }
                Ok(())
            }
        }
    }
}

/// Finds the device `settings` names and makes it the process's, to open
/// at its first use; copies wait for completions with `wait`.
pub fn prepare(settings: &DsaSettings, wait: Wait) -> Result<Kind, Unavailable> {
    let on_fault = match settings.on_fault {
        OnFault::Resubmit => CopyOnFault::Resubmit,
        OnFault::Cpu => CopyOnFault::Cpu,
    };
    // Each copy sets the cache-control flag from its class's `cache` key.
    let options = Options { cache_control: true, wait, on_fault, ..Options::DEFAULT };
    let source = match settings.device {
        DsaDevice::Model => Source::Model(ModelSpec {
            fault_every: settings.model_fault_every,
            slowdown: settings.model_slowdown,
            shared: settings.model_shared,
        }),
        DsaDevice::Hardware | DsaDevice::Auto => Source::Hardware(candidates(Path::new(&settings.sysfs))?),
    };
    // UMWAIT never asks for longer than the kernel allows.
    let max_time = std::fs::read_to_string("/sys/devices/system/cpu/umwait_control/max_time");
    if let Some(cycles) = max_time.ok().and_then(|t| t.trim().parse::<u64>().ok()) {
        ipc_offload_dsa::inflight::set_umwait_max(cycles);
    }
    let plan = Plan { source, options };
    let kind = plan.kind();
    open::prepare(plan);
    Ok(kind)
}

/// The enabled user queues under `root` this process may open (read and
/// write access to the queue file), the caller's NUMA node first.
fn candidates(root: &Path) -> Result<Vec<Candidate>, Unavailable> {
    // ENQCMD needs the kernel's PASID support as well as the CPU: where the
    // kernel disabled it, /proc/cpuinfo does not list it (and the
    // instruction would fault).
    let features = ipc_offload_sys::x86::Features::get();
    let enqcmd = features.enqcmd
        && std::fs::read_to_string("/proc/cpuinfo")
            .is_ok_and(|c| c.lines().any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "enqcmd")));
    let node = ipc_offload_sys::current_node();
    let found = sysfs::discover(root, node).map(|d| d.queues).unwrap_or_default();
    let mut failures = Vec::new();
    let mut usable = Vec::new();
    for q in &found {
        let path = q.wq.char_device();
        let Ok(c_path) = CString::new(path.as_os_str().as_encoded_bytes()) else { continue };
        // access(2) now; open(2) and the queue's binding wait for the first
        // copy (a dedicated queue busy by then is skipped for the next).
        if let Err(e) = ipc_offload_sys::access(&c_path, libc::R_OK | libc::W_OK) {
            failures.push((q.wq.entry(), format!("{}: {e}", path.display())));
            continue;
        }
        let shared = q.wq.mode == Mode::Shared;
        usable.push(Candidate {
            path: c_path,
            shared,
            usable: if shared { enqcmd } else { features.movdir64b },
            size: q.wq.size,
            max_transfer: q.max_transfer_size(),
            cache_control: q.device.cache_control(),
        });
    }
    if usable.is_empty() {
        return Err(Unavailable::Hardware { found: found.len(), failures });
    }
    Ok(usable)
}
