//! The stats file: one JSON object with the process's counters, rewritten
//! atomically (temporary file + rename) every `stats_interval` by a writer
//! thread, once at start-up, and at exit and `_exit`. No signal handlers:
//! a process killed by a signal leaves figures at most one interval old.
//!
//! The process that first saw `IPC_OFFLOAD_STATS` writes the file itself and
//! tells its descendants its pid through `IPC_OFFLOAD_STATS_ROOT`; every
//! other process writes `FILE.PID`. `-` writes one line to stderr at exit.
//!
//! Writing allocates nothing and uses raw system calls, so it is safe from
//! `_exit` and from the fork child's first copy alike.
//!
//! All of the file's JSON is rendered here, from plain snapshots: the
//! classes' counters (`ipc_offload_engine::stats`), the DSA device's, and
//! the shared-memory regions index's.

use core::fmt::Write as _;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicBool, AtomicI32};
use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipc_offload_engine::pool::POOL;
use ipc_offload_engine::stats::{self, ClassSnapshot};
use ipc_offload_engine::{EngineId, Fallback};
use ipc_offload_policy::Class;
use ipc_offload_sys as sys;

use crate::fmtbuf::StackBuf;
use crate::state::{self, Settings};

/// Longest stats path accepted (with room for `.PID` and `.tmp.TID`). The
/// path and the JSON are formatted on the stack of whatever calls `_exit`,
/// possibly a signal handler: the whole write stays under 12 KiB of stack.
const MAX_PATH: usize = 1024;
/// A stats object is about 2.5 KiB.
const MAX_JSON: usize = 8 << 10;
/// How long an exit waits for a periodic write in progress to finish.
const EXIT_WAIT: Duration = Duration::from_millis(200);

/// Where stats go.
#[derive(Debug)]
enum Destination {
    /// Standard error, one line at exit.
    Stderr,
    /// A file path (absolute, without NUL).
    File(Vec<u8>),
}

#[derive(Debug)]
struct Target {
    destination: Destination,
    /// The pid that writes the file itself.
    root: i32,
    interval: Duration,
}

static TARGET: OnceLock<Target> = OnceLock::new();
/// Set while a write is in progress in this process.
static BUSY: AtomicBool = AtomicBool::new(false);
/// Set once final figures are written: periodic writes stop, so that none
/// can replace them with `"final": false` while the process winds down.
static FINAL: AtomicBool = AtomicBool::new(false);
/// The pid whose periodic writer thread runs (0: none).
static WRITER_OF: AtomicI32 = AtomicI32::new(0);

/// Why stats cannot be written where asked.
#[derive(Debug, PartialEq, Eq)]
pub enum StatsError {
    /// The path is too long or contains a NUL byte.
    BadPath,
}

impl core::fmt::Display for StatsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StatsError::BadPath => write!(f, "the stats path is longer than {MAX_PATH} bytes or contains a NUL byte"),
        }
    }
}

/// Sets the destination (from the constructor). `root` is the pid that
/// writes the file itself.
pub fn enable(destination: &OsStr, root: i32, interval: Duration) -> Result<(), StatsError> {
    let destination = if destination == "-" {
        Destination::Stderr
    } else {
        let mut path = PathBuf::from(destination);
        if path.is_relative() {
            // The program may chdir later: anchor the path now.
            if let Ok(cwd) = std::env::current_dir() {
                path = cwd.join(path);
            }
        }
        let bytes = path.as_os_str().as_bytes().to_vec();
        if bytes.len() > MAX_PATH || bytes.contains(&0) {
            return Err(StatsError::BadPath);
        }
        Destination::File(bytes)
    };
    let _ = TARGET.set(Target { destination, root, interval });
    Ok(())
}

/// In a fork child: no writer thread exists here, no write is running, and
/// the child's final figures are still to come.
pub fn after_fork() {
    BUSY.store(false, Relaxed);
    FINAL.store(false, Relaxed);
}

/// Starts this process's periodic writer if it has none (first large copy,
/// and the first after a fork).
pub fn ensure_writer() {
    let Some(target) = TARGET.get() else { return };
    if matches!(target.destination, Destination::Stderr) {
        return;
    }
    let me = sys::getpid();
    let running = WRITER_OF.load(Relaxed);
    if running == me || WRITER_OF.compare_exchange(running, me, Relaxed, Relaxed).is_err() {
        return;
    }
    if let Err(e) = sys::thread::spawn_detached(writer_main, 0, 256 << 10, c"ipc-offload-st") {
        crate::log_at!(Warn, "stats: cannot start the writer thread ({e}); stats are written at exit only");
    }
}

extern "C" fn writer_main(_: *mut core::ffi::c_void) -> *mut core::ffi::c_void {
    let interval = TARGET.get().map_or(Duration::from_secs(1), |t| t.interval);
    loop {
        std::thread::sleep(interval);
        write(false);
    }
}

/// Writes the stats now; `last` at exit (waits for a periodic write in
/// progress instead of skipping).
pub fn write(last: bool) {
    // The checks come first, in a small frame: `_exit` calls this whether or
    // not stats are on, maybe from a handler on a small alternate stack.
    let (Some(target), Some(settings)) = (TARGET.get(), state::get()) else {
        return;
    };
    if last && sys::on_alternate_signal_stack() {
        // Too little stack to format on; the periodic figures stand.
        return;
    }
    let start = std::time::Instant::now();
    while BUSY.swap(true, Acquire) {
        if !last || start.elapsed() > EXIT_WAIT {
            return;
        }
        sys::sched_yield();
    }
    if !last && FINAL.load(Relaxed) {
        BUSY.store(false, Release);
        return;
    }
    write_locked(target, settings, last);
    if last {
        FINAL.store(true, Relaxed);
    }
    BUSY.store(false, Release);
}

/// Formats and writes, with `BUSY` held.
#[inline(never)]
fn write_locked(target: &Target, settings: &Settings, last: bool) {
    let pid = sys::getpid();
    let mut json = StackBuf::<MAX_JSON>::new();
    render(&mut json, settings, pid, last);
    match &target.destination {
        Destination::Stderr => {
            if last {
                json.push_bytes(b"\n");
                let _ = sys::write_all(2, json.as_bytes());
            }
        }
        Destination::File(base) => {
            if json.overflowed() {
                warn_once(sys::Errno(libc::EOVERFLOW));
            } else if let Err(e) = write_file(base, pid == target.root, pid, json.as_bytes()) {
                warn_once(e);
            }
        }
    }
}

fn warn_once(e: sys::Errno) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if crate::log::first_time(&WARNED) {
        crate::log_at!(Warn, "stats: cannot write the stats file: {e}");
    }
}

/// Writes `json` to `base` (or `base.PID`) through a temporary file.
fn write_file(base: &[u8], root: bool, pid: i32, json: &[u8]) -> Result<(), sys::Errno> {
    let mut path = StackBuf::<{ MAX_PATH + 64 }>::new();
    path.push_bytes(base);
    if !root {
        let _ = write!(path, ".{pid}");
    }
    let mut tmp = StackBuf::<{ MAX_PATH + 64 }>::new();
    tmp.push_bytes(path.as_bytes());
    // Distinct writers (the periodic thread, an exiting thread) use distinct names.
    let _ = write!(tmp, ".tmp.{}", sys::gettid());
    path.push_bytes(b"\0");
    tmp.push_bytes(b"\0");
    let (Ok(path), Ok(tmp)) = (CStr::from_bytes_with_nul(path.as_bytes()), CStr::from_bytes_with_nul(tmp.as_bytes()))
    else {
        return Err(sys::Errno(libc::ENAMETOOLONG));
    };
    may_replace(path)?;
    // Whatever sits at the temporary name (a leftover, or a link planted by
    // someone who can write the directory) is removed, not opened: O_EXCL
    // creates a new file or fails, and never follows a link.
    let _ = sys::unlink(tmp);
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    let fd = sys::open(tmp, flags, 0o600)?;
    let written = sys::write_all(fd, json);
    sys::close(fd);
    let renamed = written.and_then(|()| may_replace(path)).and_then(|()| sys::rename(tmp, path));
    if renamed.is_err() {
        let _ = sys::unlink(tmp);
    }
    renamed
}

/// The stats file replaces only what this process owns: nothing, or an
/// entry (a file, or a link itself, never what it points to) of its
/// effective uid. A file of another user stays as it is (`EEXIST`).
fn may_replace(path: &CStr) -> Result<(), sys::Errno> {
    match sys::mem::lstat(path) {
        Err(sys::Errno(libc::ENOENT)) => Ok(()),
        Err(e) => Err(e),
        Ok(st) if st.uid == sys::net::geteuid() => Ok(()),
        Ok(_) => Err(sys::Errno(libc::EEXIST)),
    }
}

/// Formats the stats object of this process.
pub fn render<const N: usize>(out: &mut StackBuf<N>, settings: &Settings, pid: i32, last: bool) {
    let snapshots: [ClassSnapshot; Class::COUNT] = core::array::from_fn(|i| stats::counters(Class::ALL[i]).snapshot());
    let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let _ = write!(out, "{{\"ipc_offload_stats\":1,\"pid\":{pid},\"process\":\"");
    out.push_json_escaped(settings.identity.display());
    out.push_bytes(b"\",\"exe\":\"");
    out.push_json_escaped(&settings.identity.exe);
    out.push_bytes(b"\",\"policy\":\"");
    out.push_json_escaped(&settings.policy);
    let _ = write!(
        out,
        "\",\"mode\":\"{}\",\"final\":{last},\"unix_time_ms\":{unix_ms},\"uptime_s\":{:.3},\"workers\":{}",
        settings.plan.mode,
        settings.started.elapsed().as_secs_f64(),
        POOL.workers()
    );
    for class in Class::ALL {
        render_class(out, settings, *class, &snapshots[class.index()]);
    }
    render_dsa(out);
    render_shm(out);
    out.push_bytes(b"}");
}

/// The `dsa` object: the device planned (`none`, `hardware` or `model`),
/// the queues open (0 until the first use, and after a failed open, whose
/// errno is `open_error`), and what became of the descriptors the process
/// submitted.
fn render_dsa<const N: usize>(out: &mut StackBuf<N>) {
    use core::sync::atomic::Ordering::Relaxed;
    use ipc_offload_dsa::{counters::COUNTERS as c, open};
    let name = open::planned().map_or("none", |k| k.name());
    let queues = open::opened().map_or(0, |a| a.queues().len());
    let _ = write!(out, ",\"dsa\":{{\"device\":\"{name}\",\"queues_open\":{queues},\"open_error\":");
    match open::open_error() {
        Some(open::MODEL_FAILED) => out.push_bytes(b"\"model-failed\""),
        Some(errno) => match ipc_offload_sys::Errno(errno).name() {
            Some(name) => {
                let _ = write!(out, "\"{name}\"");
            }
            None => {
                let _ = write!(out, "\"errno {errno}\"");
            }
        },
        None => out.push_bytes(b"null"),
    }
    let _ = write!(
        out,
        ",\"descriptors_submitted\":{},\"descriptors_completed\":{},\"page_faults\":{},\"retries\":{},\"queue_switches\":{},\"cpu_fallbacks\":{},\"queues_busy\":{}}}",
        c.submitted.load(Relaxed),
        c.completed.load(Relaxed),
        c.page_faults.load(Relaxed),
        c.retries.load(Relaxed),
        c.queue_switches.load(Relaxed),
        c.cpu_fallbacks.load(Relaxed),
        open::busy_queues()
    );
}

/// The `shm_regions` object: the snapshot of the index of shared-memory
/// regions (which the mapping hooks keep, see `regions`).
fn render_shm<const N: usize>(out: &mut StackBuf<N>) {
    use ipc_offload_regions as shm;
    let s = shm::snapshot();
    let _ = write!(
        out,
        ",\"shm_regions\":{{\"tracking\":{},\"ranges\":{},\"peak_ranges\":{},\"capacity\":{},\"shared_maps\":{},\"not_indexed\":{},\"raced\":{},\"nested\":{},\"unknown_lookups\":{},\"shm_open\":{},\"shm_unlink\":{}}}",
        shm::tracking(),
        s.ranges,
        s.peak_ranges,
        s.capacity,
        s.shared_maps,
        s.not_indexed,
        s.raced,
        s.nested,
        s.unknown_lookups,
        s.shm_open,
        s.shm_unlink
    );
}

fn render_class<const N: usize>(out: &mut StackBuf<N>, settings: &Settings, class: Class, s: &ClassSnapshot) {
    let plan = settings.plan.class(class);
    let engine = plan.engine.map_or("off", EngineId::name);
    let _ = write!(
        out,
        ",\"{class}\":{{\"engine\":\"{engine}\",\"min_bytes\":{},\"cache\":\"{}\",\"chunk_bytes\":{},\"depth\":{},\"calls\":{},\"bytes\":{},\"offloaded_calls\":{},\"offloaded_bytes\":{},\"worker_bytes\":{},\"bypassed_bytes\":{},\"by_engine\":{{",
        plan.rule.min_bytes,
        plan.rule.cache,
        plan.rule.chunk_bytes,
        plan.rule.depth,
        s.calls,
        s.bytes,
        s.offloaded_calls,
        s.offloaded_bytes,
        s.worker_bytes,
        s.bypassed_bytes
    );
    render_counts(out, EngineId::ALL.iter().map(|e| (e.name(), s.by_engine[e.index()])));
    out.push_bytes(b"},");
    if plan.engine == Some(EngineId::Hybrid) {
        let share =
            ipc_offload_engine::dsa_engine::cpu_share(class, settings.options[class.index()].and_then(|o| o.cpu_share));
        let _ = write!(out, "\"cpu_share\":{:.3},", f64::from(share) / 1000.0);
    }
    if class.is_ipc() {
        let _ = write!(
            out,
            "\"fast_path_bytes\":{},\"kernel_path_bytes\":{},\"ring_bytes\":{},",
            s.fast_path_bytes, s.kernel_path_bytes, plan.rule.ring_bytes
        );
        if let Some(family) = crate::ipc::endpoint::Family::of_class(class) {
            let r = crate::ipc::channel::ring_figures(family);
            let _ = write!(
                out,
                "\"rings\":{{\"held\":{},\"held_bytes\":{},\"peak_bytes\":{},\"made\":{},\"reclaimed\":{},\"served\":{}}},",
                r.held, r.held_bytes, r.peak_bytes, r.made, r.reclaimed, r.served
            );
            if family != crate::ipc::endpoint::Family::Pipe {
                let f = crate::ipc::behind::figures(family);
                let _ = write!(
                    out,
                    "\"write_behind\":{{\"offers\":{},\"grown\":{},\"given_back_bytes\":{}}},",
                    f.offers, f.grown, f.given_back
                );
            }
        }
    }
    out.push_bytes(b"\"fallbacks\":{");
    let reasons = if class.is_ipc() { Fallback::IPC } else { Fallback::COPY };
    render_counts(out, reasons.iter().map(|f| (f.name(), s.fallbacks[f.index()])));
    out.push_bytes(b"}}");
}

/// `"name":count` pairs, comma-separated.
fn render_counts<const N: usize>(out: &mut StackBuf<N>, pairs: impl Iterator<Item = (&'static str, u64)>) {
    for (i, (name, count)) in pairs.enumerate() {
        let _ = write!(out, "{}\"{name}\":{count}", if i == 0 { "" } else { "," });
    }
}
