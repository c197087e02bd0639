//! The process's device, opened at its first use: the runtime's constructor
//! finds what to open (a [`Plan`]: hardware queues from sysfs, or the
//! model) and the first operation that needs the device opens it. A
//! process that never makes a large copy never binds a queue (a dedicated
//! queue admits one process), and a fork child, whose parent's portal and
//! PASID did not come along, opens its own at its first copy.
//!
//! Opening a hardware queue is open(2) and mmap(2) of paths found at
//! start-up: no allocation, no lock, so it may run inside any hook. The
//! model's first use starts its thread (which allocates): the model is a
//! test device, and a program whose first large copy runs in a signal
//! handler that interrupted malloc is outside what it is for.
//!
//! One thread opens; others that need the device meanwhile copy without it
//! (counted `dsa-unavailable`). A failed open is not retried in this
//! process (its errno is in the stats); a fork child tries again.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicI32, AtomicPtr, AtomicU8, AtomicU32};
use std::ffi::CString;

use ipc_offload_sys as sys;

use crate::counters::COUNTERS;
use crate::device::{Active, Kind, MAX_QUEUES, Opened};
use crate::model::{FaultRule, Model, ModelConfig, Side};
use crate::options::Options;
use crate::portal::{OpenError, open_portal};
use crate::work_queue::{Portal, Queue};

/// A hardware work queue found at start-up.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Its character device, `/dev/dsa/wqD.Q`.
    pub path: CString,
    /// A shared queue (ENQCMD) rather than a dedicated one (MOVDIR64B).
    pub shared: bool,
    /// Whether the CPU (and, for ENQCMD, the kernel) has the instruction
    /// the mode needs; without it descriptors go through write(2).
    pub usable: bool,
    /// Entries of the queue.
    pub size: u32,
    /// Largest transfer of one descriptor.
    pub max_transfer: u32,
    /// Whether the device honours the cache-control flag.
    pub cache_control: bool,
}

/// The model's settings (`[dsa] model_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelSpec {
    /// Every N-th descriptor larger than 64 KiB reports a write fault at
    /// its byte 65537, until touched (0: never).
    pub fault_every: u32,
    /// Each descriptor takes this many times its plain copy.
    pub slowdown: u32,
    /// The model acts as a shared queue (ENQCMD semantics).
    pub shared: bool,
}

/// What to open.
#[derive(Clone, Debug)]
pub enum Source {
    /// Hardware queues, in order of preference (the caller's NUMA node
    /// first): the first that opens; after a shared one, up to
    /// [`MAX_QUEUES`] shared queues in all.
    Hardware(Vec<Candidate>),
    /// The software model.
    Model(ModelSpec),
}

/// What the constructor decided: the device and how copies use it.
#[derive(Clone, Debug)]
pub struct Plan {
    /// What to open.
    pub source: Source,
    /// Options of every operation.
    pub options: Options,
}

impl Plan {
    /// Hardware or model.
    pub fn kind(&self) -> Kind {
        match self.source {
            Source::Hardware(_) => Kind::Hardware,
            Source::Model(_) => Kind::Model,
        }
    }
}

const IDLE: u8 = 0;
const OPENING: u8 = 1;
const OPEN: u8 = 2;
const FAILED: u8 = 3;

static PLAN: AtomicPtr<Plan> = AtomicPtr::new(core::ptr::null_mut());
static STATE: AtomicU8 = AtomicU8::new(IDLE);
static ACTIVE: AtomicPtr<Active> = AtomicPtr::new(core::ptr::null_mut());
/// Why the last open failed: an errno, or [`MODEL_FAILED`]; 0: it did not.
static OPEN_ERROR: AtomicI32 = AtomicI32::new(0);
/// `OPEN_ERROR` of a model that did not start.
pub const MODEL_FAILED: i32 = -1;
/// Dedicated queues another process held (`EBUSY`) at the last open.
static BUSY_QUEUES: AtomicU32 = AtomicU32::new(0);
/// Fork generations: each process image's open uses the slot of its
/// generation, so a fork child never writes the `Active` its parent's
/// thread (copied into the child mid-copy by a fork from a signal handler)
/// may still be reading.
static GENERATION: AtomicU32 = AtomicU32::new(0);

/// Where the open device lives: no allocation when it opens.
struct Slots([UnsafeCell<MaybeUninit<Active>>; 2]);
// SAFETY: a slot is written only by the one thread that won the IDLE ->
// OPENING exchange of its generation, before it publishes the slot's
// address with release; readers reach it only through that address.
unsafe impl Sync for Slots {}
static SLOTS: Slots = Slots([const { UnsafeCell::new(MaybeUninit::uninit()) }; 2]);

/// Makes `plan` the process's: its device opens at first use (the
/// runtime's constructor, once).
pub fn prepare(plan: Plan) {
    let plan: &'static Plan = Box::leak(Box::new(plan));
    PLAN.store(plan as *const Plan as *mut Plan, Release);
}

/// The device the process will use, if one was planned.
pub fn planned() -> Option<Kind> {
    plan().map(Plan::kind)
}

fn plan() -> Option<&'static Plan> {
    // SAFETY: only `prepare` stores, a leaked (`'static`) plan.
    unsafe { PLAN.load(Acquire).as_ref() }
}

/// The process's device: opened now if this is the first use.
#[inline]
pub fn active() -> Option<&'static Active> {
    // SAFETY: only `open_now` stores, the address of an initialized slot
    // that is never written again in this process image's generation.
    match unsafe { ACTIVE.load(Acquire).as_ref() } {
        Some(active) => Some(active),
        None => open_now(),
    }
}

/// The device if it is open, without opening it (stats).
pub fn opened() -> Option<&'static Active> {
    // SAFETY: as in `active`.
    unsafe { ACTIVE.load(Acquire).as_ref() }
}

/// Why the open failed: an errno (`EBUSY`: every dedicated queue was held
/// by other processes), [`MODEL_FAILED`], or `None`.
pub fn open_error() -> Option<i32> {
    Some(OPEN_ERROR.load(Relaxed)).filter(|e| *e != 0)
}

/// Dedicated queues another process held at the last open.
pub fn busy_queues() -> u32 {
    BUSY_QUEUES.load(Relaxed)
}

#[cold]
fn open_now() -> Option<&'static Active> {
    let plan = plan()?;
    if STATE.compare_exchange(IDLE, OPENING, AcqRel, Acquire).is_err() {
        // Open, opening (go on without it), or failed.
        return opened();
    }
    let generation = GENERATION.load(Acquire);
    let opened = match &plan.source {
        Source::Hardware(candidates) => open_hardware(candidates),
        Source::Model(spec) => open_model(*spec),
    };
    let queues = match opened {
        Ok(queues) => queues,
        Err(errno) => {
            OPEN_ERROR.store(errno, Relaxed);
            STATE.store(FAILED, Release);
            return None;
        }
    };
    let slot = SLOTS.0[generation as usize % 2].get();
    let active = Active::new(queues, plan.options, plan.kind());
    // SAFETY: this thread won IDLE -> OPENING for this generation: no one
    // else writes the slot, and no reader has its address yet (see `Slots`).
    let active: &'static Active = unsafe { (*slot).write(active) };
    if GENERATION.load(Acquire) != generation {
        // A fork from a signal handler reset this child meanwhile: the
        // child opens its own at its next use.
        return None;
    }
    ACTIVE.store(active as *const Active as *mut Active, Release);
    STATE.store(OPEN, Release);
    Some(active)
}

/// Opens the first candidate that opens and, after a shared one, more
/// shared ones. `Err(errno)` of the last failure when none opens.
fn open_hardware(candidates: &[Candidate]) -> Result<Opened, i32> {
    let mut opened = Opened::default();
    let (mut busy, mut last) = (0, libc::ENODEV);
    for c in candidates {
        match opened.first_shared() {
            Some(false) => break,
            Some(true) if !c.shared => continue,
            _ if opened.len() == MAX_QUEUES => break,
            _ => {}
        }
        match open_portal(&c.path, c.shared, c.usable) {
            Ok(portal) => opened.push(Queue::new(portal, c.size, c.max_transfer, c.cache_control), c.shared),
            Err(OpenError::Open(e)) => {
                // A dedicated queue admits one process: the next queue.
                busy += u32::from(e.0 == libc::EBUSY);
                last = e.0;
            }
        }
    }
    BUSY_QUEUES.store(busy, Relaxed);
    if opened.len() == 0 { Err(last) } else { Ok(opened) }
}

/// Starts the model (for the life of the process) and a queue on its ring.
fn open_model(spec: ModelSpec) -> Result<Opened, i32> {
    let mut config = ModelConfig::default();
    if spec.shared {
        config.mode = super::model::Mode::Shared;
    }
    config.slowdown.factor = spec.slowdown.max(1);
    if spec.fault_every > 0 {
        config.faults.push(FaultRule::at(Side::Destination, 65537).every(spec.fault_every).until_cleared());
    }
    let (size, max_transfer) = (config.size, config.max_transfer_size);
    let model = Model::start(config).map_err(|_| MODEL_FAILED)?;
    let portal =
        if spec.shared { Portal::ModelShared(std::sync::Arc::as_ptr(&model)) } else { Portal::Ring(model.portal()) };
    // The model runs until the process ends.
    core::mem::forget(model);
    let mut opened = Opened::default();
    opened.push(Queue::new(portal, size, max_transfer, true), spec.shared);
    Ok(opened)
}

/// In a fork child: the parent's portal and PASID did not come along. A
/// queue file kept for write(2) is closed, so that a long-lived child does
/// not keep a dedicated queue from others; the child opens its own at its
/// first use. Async-signal-safe.
pub fn forget_after_fork() {
    GENERATION.fetch_add(1, AcqRel);
    let old = ACTIVE.swap(core::ptr::null_mut(), AcqRel);
    // SAFETY: only `open_now` stores, the address of an initialized slot.
    if let Some(active) = unsafe { old.as_ref() } {
        for queue in active.queues() {
            if let Portal::Write(fd) = queue.portal() {
                sys::close(fd);
            }
        }
    }
    OPEN_ERROR.store(0, Relaxed);
    BUSY_QUEUES.store(0, Relaxed);
    STATE.store(IDLE, Release);
    COUNTERS.reset();
}
