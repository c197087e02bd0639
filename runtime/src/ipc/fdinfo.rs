//! Reading an epoll set's registrations from `/proc/self/fdinfo/EPFD`
//! (proc(5): one line per registration, `tfd: N events: HEX data: HEX
//! pos:P ino:HEX sdev:HEX`). The library learns a set's members this way
//! when it did not see them registered: an fd that opts in after the
//! program added it, a set inherited across exec.
//!
//! No allocation: the file is read into a stack buffer in pieces, and each
//! complete line is parsed as it comes.

use ipc_offload_sys as sys;

/// One registration of an epoll set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The registered fd number.
    pub fd: i32,
    /// Its events mask.
    pub events: u32,
    /// Its data word.
    pub data: u64,
    /// The inode of the file it was registered for.
    pub ino: u64,
    /// That file's device (`sdev`, as the kernel encodes a dev_t).
    pub sdev: u64,
}

/// Calls `each` for every registration of epoll set `epfd`; false if its
/// fdinfo could not be read.
pub fn registrations(epfd: i32, each: &mut dyn FnMut(Registration)) -> bool {
    if epfd < 0 {
        return false;
    }
    let mut path = [0u8; 48];
    let prefix = b"/proc/self/fdinfo/";
    path[..prefix.len()].copy_from_slice(prefix);
    let mut at = prefix.len() + write_decimal(&mut path[prefix.len()..], epfd as u64);
    path[at] = 0;
    at += 1;
    let Ok(path) = core::ffi::CStr::from_bytes_with_nul(&path[..at]) else { return false };
    let Ok(fd) = sys::open(path, libc::O_RDONLY | libc::O_CLOEXEC, 0) else { return false };
    let mut buf = [0u8; 4096];
    let mut held = 0usize;
    loop {
        let free = &mut buf[held..];
        // SAFETY: read(2) into the free part of a stack buffer (a raw call:
        // libc's read is this library's own hook).
        let n =
            unsafe { sys::syscall6(libc::SYS_read, [fd as usize, free.as_mut_ptr() as usize, free.len(), 0, 0, 0]) };
        match n {
            Ok(n) if n > 0 => held += n,
            _ => break,
        }
        let mut start = 0;
        while let Some(end) = buf[start..held].iter().position(|b| *b == b'\n') {
            if let Some(r) = parse_line(&buf[start..start + end]) {
                each(r);
            }
            start += end + 1;
        }
        buf.copy_within(start..held, 0);
        held -= start;
        if held == buf.len() {
            held = 0; // a line longer than the buffer: not a registration
        }
    }
    sys::close(fd);
    true
}

/// True if fdinfo's `sdev` (the kernel's internal dev_t: major << 20 |
/// minor) names the device `st_dev` (glibc's encoding) does.
pub fn same_device(sdev: u64, st_dev: u64) -> bool {
    let (major, minor) = (libc::major(st_dev) as u64, libc::minor(st_dev) as u64);
    sdev == (major << 20 | minor)
}

fn write_decimal(out: &mut [u8], mut v: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in 0..n {
        out[i] = digits[n - 1 - i];
    }
    n
}

/// Parses `tfd: N events: HEX data: HEX ... ino:HEX ...`.
fn parse_line(line: &[u8]) -> Option<Registration> {
    let line = core::str::from_utf8(line).ok()?;
    let rest = line.strip_prefix("tfd:")?;
    let mut words = rest.split_whitespace();
    let fd = words.next()?.parse().ok()?;
    let mut events = None;
    let mut data = None;
    let (mut ino, mut sdev) = (0, 0);
    while let Some(word) = words.next() {
        match word {
            "events:" => events = u32::from_str_radix(words.next()?, 16).ok(),
            "data:" => data = u64::from_str_radix(words.next()?, 16).ok(),
            w if w.starts_with("ino:") => ino = u64::from_str_radix(&w[4..], 16).ok()?,
            w if w.starts_with("sdev:") => sdev = u64::from_str_radix(&w[5..], 16).ok()?,
            _ => {}
        }
    }
    Some(Registration { fd, events: events?, data: data?, ino, sdev })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_as_the_kernel_writes_them() {
        let line = b"tfd:        5 events:       19 data: 7f00dead0000beef  pos:0 ino:3a1b sdev:9";
        assert_eq!(
            parse_line(line),
            Some(Registration { fd: 5, events: 0x19, data: 0x7f00_dead_0000_beef, ino: 0x3a1b, sdev: 9 })
        );
        assert_eq!(parse_line(b"pos:\t0"), None);
        assert_eq!(parse_line(b"tfd: x events: 1 data: 2"), None);
    }

    #[test]
    fn a_real_sets_registrations_are_read() {
        // SAFETY: plain calls on fds this test owns.
        unsafe {
            let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
            let mut fds = [0i32; 2];
            assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
            let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLET) as u32, u64: 0x1234_5678_9abc };
            assert_eq!(libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fds[0], &mut ev), 0);
            let mut seen = Vec::new();
            assert!(registrations(ep, &mut |r| seen.push(r)));
            assert_eq!(seen.len(), 1);
            assert_eq!((seen[0].fd, seen[0].data), (fds[0], 0x1234_5678_9abc));
            assert_eq!(seen[0].events & libc::EPOLLET as u32, libc::EPOLLET as u32);
            let mut st: libc::stat = core::mem::zeroed();
            libc::fstat(fds[0], &mut st);
            assert_eq!(seen[0].ino, st.st_ino);
            assert!(same_device(seen[0].sdev, st.st_dev));
            assert!(!registrations(-1, &mut |_| {}));
            for fd in [ep, fds[0], fds[1]] {
                libc::close(fd);
            }
        }
    }
}
