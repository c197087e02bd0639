//! The process's DSA device: the work queue the `dsa` engine submits to,
//! opened once by the runtime (a hardware queue from sysfs, or the model),
//! and the engine's entry point.
//!
//! A hardware queue is its character device `/dev/dsa/wqD.Q`: opening it
//! binds the process's address space (PASID); mapping its first page gives
//! the portal. Since the INTEL-SA-01084 fixes the mapping may need
//! CAP_SYS_RAWIO and fail with `EPERM`: descriptors then go through write(2)
//! on the file, the kernel submitting them. A dedicated queue admits one
//! process (`EBUSY` for the others). Neither the PASID nor the portal
//! survives fork (the portal is `VM_DONTCOPY`): the fork child forgets the
//! queue and the runtime opens it again.

use core::ffi::CStr;
use core::sync::atomic::AtomicPtr;
use core::sync::atomic::Ordering::{AcqRel, Acquire, Release};

use super::copy::{self, COUNTERS, Options};
use super::queue::{Portal, Queue};
use crate::engine::{EngineId, Fallback, Outcome, cpu_move, split};
use crate::sys::{self, Errno, syscall6};

/// What kind of device the queue belongs to (the `dsa.device` of the stats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A DSA work queue of the machine.
    Hardware,
    /// The software model.
    Model,
}

impl Kind {
    /// As the stats name it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hardware => "hardware",
            Kind::Model => "model",
        }
    }
}

/// The device in use: a queue and how copies through it are made.
#[derive(Debug)]
pub struct Active {
    /// The queue.
    pub queue: Queue,
    /// Options of every copy.
    pub options: Options,
    /// Hardware or model.
    pub kind: Kind,
}

static ACTIVE: AtomicPtr<Active> = AtomicPtr::new(core::ptr::null_mut());

/// Makes `active` the process's device (the runtime, once the queue is
/// open). A previous one is leaked: a copy may still be using it.
pub fn install(active: &'static Active) {
    ACTIVE.swap(active as *const Active as *mut Active, AcqRel);
}

/// The process's device, if one is open.
pub fn active() -> Option<&'static Active> {
    // SAFETY: only `install` stores, a `'static` reference.
    unsafe { ACTIVE.load(Acquire).as_ref() }
}

/// In a fork child: the queue's portal and PASID did not come along.
pub fn forget_after_fork() {
    ACTIVE.store(core::ptr::null_mut(), Release);
}

/// The `dsa` engine: copies through the process's device, with memmove
/// semantics; `cache_inject` asks for the cache-control flag (set only
/// where the device supports it). Without a device (none usable, or the fork child before the
/// runtime reopened it), libc copies, counted `dsa-unavailable`; an
/// overlapping move longer than one descriptor goes to libc's memmove
/// (`overlap-close`): descriptors in flight together must be disjoint.
///
/// # Safety
/// As memmove(3).
pub unsafe fn copy(dst: *mut u8, src: *const u8, len: usize, cache_inject: bool) -> Outcome {
    let Some(active) = active() else {
        // SAFETY: forwarded contract.
        unsafe { cpu_move(dst, src, len) };
        return Outcome::fell_back(Fallback::DsaUnavailable);
    };
    if split::overlap(dst as usize, src as usize, len) && len > active.queue.max_transfer as usize {
        // SAFETY: forwarded contract.
        unsafe { cpu_move(dst, src, len) };
        return Outcome::fell_back(Fallback::OverlapClose);
    }
    let options = Options { cache_control: cache_inject, ..active.options };
    // SAFETY: forwarded contract (disjoint, or one descriptor).
    let report = unsafe { copy::copy(&active.queue, dst, src, len, &options) };
    COUNTERS.add(&report);
    if report.cpu_bytes == len as u64 {
        Outcome::fell_back(Fallback::DsaError)
    } else {
        Outcome::done_by(EngineId::Dsa)
    }
}

/// Why a hardware queue could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// open(2) failed: `EBUSY` for a dedicated queue another process holds,
    /// `ENOENT` without the device, `EACCES`/`EPERM` without permission.
    Open(Errno),
    /// The CPU lacks the instruction the queue's mode needs, and its portal
    /// could be mapped (write(2) is used only when mapping is refused).
    NoInstruction,
}

/// Opens the queue file at `path` (`/dev/dsa/wqD.Q`) and maps its portal;
/// when the mapping is refused (`EPERM`), keeps the file to submit by
/// write(2). `shared` selects ENQCMD over MOVDIR64B.
pub fn open_portal(path: &CStr, shared: bool) -> Result<Portal, OpenError> {
    let fd = sys::open(path, libc::O_RDWR | libc::O_CLOEXEC, 0).map_err(OpenError::Open)?;
    let prot = libc::PROT_WRITE as usize;
    let flags = (libc::MAP_SHARED | libc::MAP_POPULATE) as usize;
    // SAFETY: a new mapping of the queue file's portal page, chosen by the
    // kernel; nothing else is touched.
    let mapped = unsafe { syscall6(libc::SYS_mmap, [0, 4096, prot, flags, fd as usize, 0]) };
    match mapped {
        Ok(page) => {
            sys::close(fd); // the mapping keeps the queue bound
            let features = crate::sys::x86::Features::get();
            let page = page as *mut u8;
            let usable = if shared { features.enqcmd } else { features.movdir64b };
            if !usable {
                // SAFETY: unmapping the page just mapped.
                let _ = unsafe { syscall6(libc::SYS_munmap, [page as usize, 4096, 0, 0, 0, 0]) };
                return Err(OpenError::NoInstruction);
            }
            Ok(if shared { Portal::Shared(page) } else { Portal::Dedicated(page) })
        }
        Err(Errno(libc::EPERM)) => Ok(Portal::Write(fd)),
        Err(e) => {
            sys::close(fd);
            Err(OpenError::Open(e))
        }
    }
}
