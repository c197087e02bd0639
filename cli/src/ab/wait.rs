//! wait4(2): how a child ended and what it and its descendants used. The
//! only unsafe code of `ab`.

use std::fmt;
use std::io;
use std::time::Duration;

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Exit {
    /// `exit(code)`.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "{code}"),
            Exit::Signal(signal) => write!(f, "signal {signal}"),
        }
    }
}

/// What wait4 says of a child: its own use and that of the descendants it
/// waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waited {
    pub exit: Exit,
    /// `ru_utime`.
    pub user: Duration,
    /// `ru_stime`.
    pub sys: Duration,
    /// `ru_maxrss` in bytes: the largest resident set of the child or of
    /// any descendant it waited for (not their sum).
    pub max_rss_bytes: u64,
}

/// Waits for the child `pid` (started by this process and not yet waited
/// for), retrying on EINTR.
pub fn wait(pid: u32) -> io::Result<Waited> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is a C struct of integers and timevals, for which all
    // zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 writes an int to `status` and a struct rusage to
        // `usage`, both valid and exclusively borrowed for the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        match r {
            _ if r == pid => break,
            -1 => match io::Error::last_os_error() {
                e if e.kind() == io::ErrorKind::Interrupted => continue,
                e => return Err(e),
            },
            _ => return Err(io::Error::other(format!("wait4({pid}) returned {r}"))),
        }
    }
    let exit = if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        Exit::Code(libc::WEXITSTATUS(status))
    };
    Ok(Waited {
        exit,
        user: duration(usage.ru_utime),
        sys: duration(usage.ru_stime),
        // Linux counts ru_maxrss in KiB.
        max_rss_bytes: u64::try_from(usage.ru_maxrss).unwrap_or(0).saturating_mul(1024),
    })
}

fn duration(t: libc::timeval) -> Duration {
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let micros = u32::try_from(t.tv_usec).unwrap_or(0).min(999_999);
    Duration::new(secs, micros * 1000)
}
