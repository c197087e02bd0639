//! Running a victim under the library against a hostile peer script, and
//! the stream bookkeeping both sides of a scenario share.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipc_offload_tests::{Preload, c_program, read_stats, scratch};
use serde_json::Value;

use super::sys;

/// The victim's rings: 4 slots of 64 KiB, so that a 1 MiB transfer wraps.
/// (`handshake_after = 0`: the victim's first large write asks for a ring,
/// as the scripts expect.)
pub const POLICY: &str = "[unix]\nchunk_bytes = \"64KiB\"\ndepth = 4\nhandshake_after = 0\n\
                          [pipe]\nchunk_bytes = \"64KiB\"\ndepth = 4\nhandshake_after = 0\n";
/// The victim reader's buffer.
pub const READ_LEN: usize = 1 << 20;
/// What a victim writer sends, from pattern seed [`SEED`].
pub const WRITE_LEN: usize = 2 << 20;
/// What it sends when the peer feeds it many OFFERs (it reads them
/// between its kernel pieces of 256 KiB).
pub const LONG_WRITE_LEN: usize = 16 << 20;
pub const SEED: u32 = 7;
/// A victim that has not finished by then hangs: a failure.
const WATCHDOG: Duration = Duration::from_secs(30);

/// Byte `i` of the victim writer's stream (tests/c/common.h `pat`).
pub fn pat(i: usize, seed: u32) -> u8 {
    let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed);
    (x ^ (x >> 11) ^ (x >> 23)) as u8
}

/// Bytes no victim ever gets by accident: a tagged pattern.
pub fn marked(n: usize, tag: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(13) ^ tag).collect()
}

/// Socket or pipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Unix,
    Pipe,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Unix => "unix",
            Family::Pipe => "pipe",
        }
    }
}

/// The two ends of a connection: the victim's and the hostile peer's.
/// `victim_reads` chooses the direction (for a pipe, which end is whose).
pub fn connection(family: Family, victim_reads: bool) -> (OwnedFd, File) {
    let (a, b) = match family {
        Family::Unix => sys::socketpair(),
        // (read end, write end)
        Family::Pipe => sys::pipe(),
    };
    let (victim, hostile) = if victim_reads || family == Family::Unix { (a, b) } else { (b, a) };
    let hostile = File::from(hostile);
    (victim, hostile)
}

/// What a finished victim did.
#[derive(Debug)]
pub struct Victim {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub stats: Value,
    /// The reader's output file (what its reads returned).
    pub received: Vec<u8>,
}

/// One victim at a time: the fds the tests pass must reach only it.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `hostile_victim ARGS` under the library with `fd` as its fd 100
/// (ARGS may name "OUT", the reader's output file), while `peer` runs in a
/// thread of this process; returns both results. The victim is killed and
/// the test fails if it runs past the watchdog.
pub fn run<T: Send>(name: &str, fd: OwnedFd, args: &[&str], peer: impl FnOnce() -> T + Send) -> (Victim, T) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch(&format!("hostile-{name}"));
    let stats = dir.join("stats.json");
    let out = dir.join("received");
    let program = c_program("hostile_victim", &["-O2"]);
    let mut cmd = Preload::new().policy(&dir, POLICY).stats(&stats).command(program);
    for a in args {
        cmd.arg(if *a == "OUT" { out.as_os_str() } else { a.as_ref() });
    }
    let (stdout, stderr) = (dir.join("stdout"), dir.join("stderr"));
    cmd.stdin(Stdio::null()).stdout(File::create(&stdout).unwrap()).stderr(File::create(&stderr).unwrap());
    sys::give_fd(&mut cmd, fd.as_raw_fd(), 100);
    let mut child = cmd.spawn().expect("spawn the victim");
    drop(fd);
    let deadline = Instant::now() + WATCHDOG;
    let (status, peer_result) = std::thread::scope(|s| {
        let peer = s.spawn(peer);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let err = std::fs::read_to_string(&stderr).unwrap_or_default();
                panic!("watchdog: the victim of {name} still runs after {WATCHDOG:?} (a hang); stderr: {err}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        (status, peer.join())
    });
    let peer_result = peer_result.unwrap_or_else(|e| std::panic::resume_unwind(e));
    let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    let victim = Victim {
        status,
        stdout: read(&stdout),
        stderr: read(&stderr),
        stats: if stats.exists() { read_stats(&stats) } else { Value::Null },
        received: std::fs::read(&out).unwrap_or_default(),
    };
    assert!(victim.status.success(), "the victim of {name} failed: {victim:#?}");
    // A panic inside the library is caught and counted; none may happen.
    assert!(!victim.stderr.contains("panic"), "the library panicked in {name}: {victim:#?}");
    // Whatever the library opened for the connection (side channel, ring,
    // lifeline, pidfds) went with it: the victim ends with one fd less
    // than it started with, the connection's.
    let fds = victim.stdout.split("fds=").nth(1).and_then(|f| f.trim().split_once("->"));
    let (start, end) = fds.map(|(a, b)| (a.parse::<i32>().unwrap(), b.parse::<i32>().unwrap())).expect("fds=A->B");
    assert_eq!(end, start - 1, "{name}: the victim's fds at start and at the end: {victim:#?}");
    for class in ["unix", "pipe"] {
        assert_eq!(ipc_offload_tests::fallbacks(&victim.stats, class, "panic"), 0, "{name}: {victim:#?}");
    }
    (victim, peer_result)
}

/// Reads what `file` has now without blocking (it is nonblocking); true
/// at EOF.
pub fn drain(file: &mut File, into: &mut Vec<u8>) -> bool {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("hostile peer: read: {e}"),
        }
    }
}

/// One nonblocking read of at most `max` bytes; true at EOF.
pub fn drain_some(file: &mut File, into: &mut Vec<u8>, max: usize) -> bool {
    let mut buf = vec![0u8; max];
    match file.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => {
            into.extend_from_slice(&buf[..n]);
            false
        }
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) => false,
        Err(e) => panic!("hostile peer: read: {e}"),
    }
}

/// Reads `file` to EOF (waiting for the victim), appending to `into`.
pub fn read_to_eof(file: &mut File, into: &mut Vec<u8>) {
    let fd = file.try_clone().unwrap();
    let fd = OwnedFd::from(fd);
    let deadline = Instant::now() + super::peer::PATIENCE * 2;
    while !drain(file, into) {
        assert!(Instant::now() < deadline, "hostile peer: no EOF from the victim");
        sys::readable(&fd, Duration::from_millis(50));
    }
}

/// Makes the hostile end nonblocking.
pub fn nonblocking(file: &File) {
    // SAFETY: fcntl flags on a valid fd.
    unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

/// Writes all of `bytes` to the (nonblocking) hostile end.
pub fn send_all(file: &mut File, bytes: &[u8]) {
    let mut at = 0;
    let deadline = Instant::now() + super::peer::PATIENCE;
    while at < bytes.len() {
        match file.write(&bytes[at..]) {
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "hostile peer: the victim does not read");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("hostile peer: write: {e}"),
        }
    }
}
