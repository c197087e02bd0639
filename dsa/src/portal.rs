//! Opening a hardware work queue's portal: the queue file
//! `/dev/dsa/wqD.Q`, its first page mapped for MOVDIR64B or ENQCMD, or the
//! file kept for write(2) where the mapping is refused.

use core::ffi::CStr;

use ipc_offload_sys::{self as sys, Errno, syscall6};

use crate::work_queue::Portal;

/// Why a hardware queue could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// open(2) failed: `EBUSY` for a dedicated queue another process holds,
    /// `ENOENT` without the device, `EACCES`/`EPERM` without permission.
    Open(Errno),
}

/// Opens the queue file at `path` (`/dev/dsa/wqD.Q`) and maps its portal;
/// `shared` selects ENQCMD over MOVDIR64B. When the mapping is refused
/// (`EPERM`), or the instruction the mode needs is missing (`usable`: the
/// CPU has it and, for ENQCMD, the kernel enabled it), keeps the file to
/// submit by write(2), the kernel submitting for us.
pub fn open_portal(path: &CStr, shared: bool, usable: bool) -> Result<Portal, OpenError> {
    let fd = sys::open(path, libc::O_RDWR | libc::O_CLOEXEC, 0).map_err(OpenError::Open)?;
    let prot = libc::PROT_WRITE as usize;
    let flags = (libc::MAP_SHARED | libc::MAP_POPULATE) as usize;
    // SAFETY: a new mapping of the queue file's portal page, chosen by the
    // kernel; nothing else is touched.
    let mapped = unsafe { syscall6(libc::SYS_mmap, [0, 4096, prot, flags, fd as usize, 0]) };
    match mapped {
        Ok(page) if usable => {
            sys::close(fd); // the mapping keeps the queue bound
            let page = page as *mut u8;
            Ok(if shared { Portal::Shared(page) } else { Portal::Dedicated(page) })
        }
        Ok(page) => {
            // SAFETY: unmapping the page just mapped.
            let _ = unsafe { syscall6(libc::SYS_munmap, [page, 4096, 0, 0, 0, 0]) };
            Ok(Portal::Write(fd))
        }
        Err(Errno(libc::EPERM)) => Ok(Portal::Write(fd)),
        Err(e) => {
            sys::close(fd);
            Err(OpenError::Open(e))
        }
    }
}
