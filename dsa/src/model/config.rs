//! The model's configuration, counters and errors.

use core::fmt;
use std::time::Duration;

use super::inject::FaultRule;
use crate::abi::Descriptor;
use ipc_offload_sys::Errno;

/// How the work queue takes descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Posted (MOVDIR64B): never refused.
    Dedicated,
    /// Non-posted (ENQCMD through
    /// [`Model::enqcmd`](super::Model::enqcmd)): may ask for a retry.
    Shared,
}

/// Extra time each work descriptor (MEMMOVE, MEMFILL, COMPARE, also as a
/// batch member) takes: it completes no earlier than
/// `max(factor * t, ns_per_descriptor + ns_per_kib * bytes / 1024)` after it
/// started, `t` being the time the model took to do its work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slowdown {
    /// Multiplies the model's own time (0 and 1: no slowdown).
    pub factor: u32,
    /// Fixed time per descriptor.
    pub ns_per_descriptor: u64,
    /// Time per KiB of the transfer size.
    pub ns_per_kib: u64,
}

impl Default for Slowdown {
    fn default() -> Self {
        Slowdown { factor: 1, ns_per_descriptor: 0, ns_per_kib: 0 }
    }
}

/// How a model is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelConfig {
    /// Dedicated or shared.
    pub mode: Mode,
    /// Queue entries, 1 to [`SLOTS`](super::SLOTS).
    pub size: u32,
    /// Largest `xfer_size` (at least 1).
    pub max_transfer_size: u32,
    /// Largest `desc_count` of a batch.
    pub max_batch_size: u32,
    /// The initial slowdown
    /// ([`Model::set_slowdown`](super::Model::set_slowdown) changes it).
    pub slowdown: Slowdown,
    /// Fault rules in force from the start
    /// ([`Model::inject_fault`](super::Model::inject_fault) adds more).
    pub faults: Vec<FaultRule>,
    /// How long an idle model spins before it polls.
    pub spin: Duration,
    /// How often an idle model polls after spinning.
    pub idle_poll: Duration,
}

impl Default for ModelConfig {
    /// Dedicated, 32 entries, 2 MiB transfers, batches of up to 32 (the
    /// idxd driver's defaults), no slowdown, no faults.
    fn default() -> Self {
        ModelConfig {
            mode: Mode::Dedicated,
            size: 32,
            max_transfer_size: 2 << 20,
            max_batch_size: 32,
            slowdown: Slowdown::default(),
            faults: Vec::new(),
            spin: Duration::from_micros(100),
            idle_poll: Duration::from_micros(50),
        }
    }
}

/// Why a model did not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelError {
    /// A configuration value out of range (which one, and why).
    Config(&'static str),
    /// The portal page could not be mapped.
    Portal(Errno),
    /// The thread could not be started.
    Spawn(String),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Config(why) => write!(f, "DSA model configuration: {why}"),
            ModelError::Portal(e) => write!(f, "DSA model portal page: {e}"),
            ModelError::Spawn(e) => write!(f, "DSA model thread: {e}"),
        }
    }
}

impl std::error::Error for ModelError {}

/// What the model has done so far (each field read on its own: a snapshot
/// taken while the model runs is not one instant).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Descriptors taken from the queue (ring slots consumed in dedicated
    /// mode, `enqcmd` acceptances in shared mode).
    pub accepted: u64,
    /// Descriptors of the queue finished (batch members not counted).
    pub completed: u64,
    /// Descriptors processed, batch members included, whatever their status.
    pub executed: u64,
    /// Of those, descriptors with the cache-control flag.
    pub cache_control: u64,
    /// NOOPs run.
    pub noop: u64,
    /// DRAINs run.
    pub drain: u64,
    /// MEMMOVEs run (partial ones included).
    pub memmove: u64,
    /// MEMFILLs run.
    pub memfill: u64,
    /// COMPAREs run.
    pub compare: u64,
    /// BATCHes run.
    pub batch: u64,
    /// Descriptors that failed a check (invalid flags, record address,
    /// opcode, size, count, list alignment).
    pub invalid: u64,
    /// Bytes moved, filled or compared.
    pub bytes: u64,
    /// Nanoseconds of CPU the model's thread spent moving, filling and
    /// comparing (time it waited to run is not work).
    pub work_ns: u64,
    /// Nanoseconds those descriptors took, slowdown included.
    pub busy_ns: u64,
    /// Completion records written.
    pub records: u64,
    /// Injected page faults taken (reported or blocked).
    pub faults_injected: u64,
    /// Of those, the ones on descriptors with BOF (not reported).
    pub faults_blocked: u64,
    /// Descriptors given an injected error status.
    pub errors_injected: u64,
    /// `enqcmd` refusals injected.
    pub retries_injected: u64,
    /// `enqcmd` refusals because the queue was full (or the mode dedicated).
    pub queue_full: u64,
    /// Errors that could not be written to a completion record.
    pub swerr: u64,
    /// The most descriptors seen submitted and not completed at once.
    pub in_flight_high_water: u64,
    /// Consumptions that saw more than `size` in flight (dedicated mode).
    pub overruns: u64,
}

/// An error reported where the hardware's SWERROR register would have it:
/// one that could not go to a completion record (no usable record address,
/// or none given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwError {
    /// The status the record would have had.
    pub status: u8,
    /// The descriptor.
    pub descriptor: Descriptor,
}
