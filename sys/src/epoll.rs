//! Questions about epoll sets that need no change to them.

use super::{Errno, syscall6};

/// `KCMP_EPOLL_TFD` (linux/kcmp.h): is a file registered in an epoll set?
const KCMP_EPOLL_TFD: usize = 7;

/// `struct kcmp_epoll_slot` (linux/kcmp.h).
#[repr(C)]
struct KcmpEpollSlot {
    efd: u32,
    tfd: u32,
    toff: u32,
}

/// True if the file `fd` refers to now is registered in epoll set `epfd`
/// under the fd number `fd` (kcmp(2) `KCMP_EPOLL_TFD`, Linux 4.13; needs
/// `CONFIG_KCMP`): false when no registration of that number exists there
/// or it is of another file (the number was closed and reused). Changes
/// nothing. `Err` where the kernel cannot answer (ENOSYS, EPERM).
pub fn holds(epfd: i32, fd: i32) -> Result<bool, Errno> {
    let (Ok(efd), Ok(tfd)) = (u32::try_from(epfd), u32::try_from(fd)) else { return Ok(false) };
    let slot = KcmpEpollSlot { efd, tfd, toff: 0 };
    let pid = super::getpid() as usize;
    // SAFETY: kcmp reads the slot, a local that outlives the call.
    let r = unsafe {
        syscall6(libc::SYS_kcmp, [pid, pid, KCMP_EPOLL_TFD, tfd as usize, &slot as *const KcmpEpollSlot as usize, 0])
    };
    match r {
        Ok(0) => Ok(true),
        // 1 or 2: ordered, not equal (another file).
        Ok(_) | Err(Errno(libc::ENOENT)) | Err(Errno(libc::EBADF)) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::OwnedFd;

    fn call(nr: i64, args: [usize; 6]) -> OwnedFd {
        // SAFETY: the tests' plain calls, whose results are fds.
        OwnedFd::new(unsafe { syscall6(nr, args) }.unwrap() as i32)
    }

    #[test]
    fn a_registration_is_found_for_its_file_only() {
        let ep = call(libc::SYS_epoll_create1, [libc::EPOLL_CLOEXEC as usize, 0, 0, 0, 0, 0]);
        let mut sv = [0i32; 2];
        // SAFETY: the kernel writes two fds into `sv`.
        unsafe {
            syscall6(
                libc::SYS_socketpair,
                [libc::AF_UNIX as usize, libc::SOCK_STREAM as usize, 0, sv.as_mut_ptr() as usize, 0, 0],
            )
        }
        .unwrap();
        let (a, b) = (OwnedFd::new(sv[0]), OwnedFd::new(sv[1]));
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 7 };
        // SAFETY: epoll_ctl(2) with a local event.
        unsafe {
            syscall6(
                libc::SYS_epoll_ctl,
                [ep.raw() as usize, libc::EPOLL_CTL_ADD as usize, a.raw() as usize, &mut ev as *mut _ as usize, 0, 0],
            )
        }
        .unwrap();
        assert_eq!(holds(ep.raw(), a.raw()), Ok(true));
        assert_eq!(holds(ep.raw(), b.raw()), Ok(false));
        assert_eq!(holds(ep.raw(), -1), Ok(false));
        // The number of `a`, now naming `b`'s file: not the registered one.
        let a_no = a.raw();
        // SAFETY: dup2 over our own fd.
        unsafe { syscall6(libc::SYS_dup2, [b.raw() as usize, a_no as usize, 0, 0, 0, 0]) }.unwrap();
        assert_eq!(holds(ep.raw(), a_no), Ok(false));
    }
}
