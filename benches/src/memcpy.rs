//! memcpy timing loops, and the phases that run them. Both contenders run
//! in the same process, in alternating batches, so that a noisy neighbour
//! or a frequency change hits both.
//!
//! A driver (`memcpy-bench`, `bench-suite`) runs each phase in a child: its
//! own executable again, with `--phase NAME` and the [`Options`] as
//! arguments, the library preloaded and a policy file written for it
//! ([`run_phase`]); the child answers with JSON on stdout ([`phase_main`]).

use core::ffi::c_void;
use std::hint::black_box;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{self, Relaxed};
use std::time::{Duration, Instant};

use crate::stats::{median, num};
use serde_json::{Value, json};

type CopyFn = unsafe extern "C" fn(*mut c_void, *const c_void, usize) -> *mut c_void;

/// glibc's memcpy and the memcpy this process's calls reach (the hook).
#[derive(Debug)]
pub struct Copier {
    glibc: CopyFn,
    hooked: CopyFn,
}

impl Copier {
    /// Looks both up; fails unless the library is preloaded.
    pub fn resolve() -> Result<Copier, String> {
        // SAFETY: dlopen with RTLD_NOLOAD only returns a handle to the
        // already-loaded libc; dlsym returns the address of `memcpy`, whose
        // prototype is CopyFn, or null (checked).
        unsafe {
            let libc_handle = libc::dlopen(c"libc.so.6".as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
            if libc_handle.is_null() {
                return Err("libc.so.6 is not loaded".into());
            }
            let glibc = libc::dlsym(libc_handle, c"memcpy".as_ptr());
            let hooked = libc::dlsym(libc::RTLD_DEFAULT, c"memcpy".as_ptr());
            if glibc.is_null() || hooked.is_null() {
                return Err("memcpy not found".into());
            }
            if glibc == hooked {
                return Err("memcpy is glibc's own: the library is not preloaded".into());
            }
            Ok(Copier {
                glibc: core::mem::transmute::<*mut c_void, CopyFn>(glibc),
                hooked: core::mem::transmute::<*mut c_void, CopyFn>(hooked),
            })
        }
    }
}

/// How long and how often to measure, and what.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Batches of each contender per size (alternating).
    pub rounds: usize,
    /// The length of one batch.
    pub batch: Duration,
    /// Fewer calls in the hook-cost loops.
    pub quick: bool,
    /// Copy sizes of the throughput phase, ascending.
    pub sizes: Vec<usize>,
    /// Buffers of the throughput phase: hot (one pair, reused), cold (a
    /// rotation over `cold_span` bytes per side), or both.
    pub hot: bool,
    pub cold: bool,
    /// Bytes per side the cold rotation spans (many times the last-level cache).
    pub cold_span: usize,
    /// Whether the throughput phase also times glibc on two threads.
    pub two_threads: bool,
}

impl Options {
    /// memcpy-bench's: 4 KiB to 512 MiB (with `quick`, five sizes), hot and
    /// cold, with the two-thread reference.
    pub fn new(quick: bool) -> Self {
        let sizes: Vec<usize> = if quick {
            vec![4 << 10, 256 << 10, 4 << 20, 64 << 20, 512 << 20]
        } else {
            vec![
                4 << 10,
                16 << 10,
                64 << 10,
                256 << 10,
                1 << 20,
                4 << 20,
                16 << 20,
                64 << 20,
                128 << 20,
                256 << 20,
                512 << 20,
            ]
        };
        let (rounds, batch) = if quick { (3, 15) } else { (11, 40) };
        Options {
            rounds,
            batch: Duration::from_millis(batch),
            quick,
            sizes,
            hot: true,
            cold: true,
            // 16x the 32 MiB L3 of the project's VM.
            cold_span: 512 << 20,
            two_threads: true,
        }
    }

    /// The options as arguments of a phase's child (see [`Options::from_args`]).
    pub fn to_args(&self) -> Vec<String> {
        let sizes: Vec<String> = self.sizes.iter().map(usize::to_string).collect();
        let mut args = vec![
            "--rounds".into(),
            self.rounds.to_string(),
            "--batch-us".into(),
            self.batch.as_micros().to_string(),
            "--sizes".into(),
            sizes.join(","),
            "--buffers".into(),
            match (self.hot, self.cold) {
                (true, false) => "hot",
                (false, true) => "cold",
                _ => "hot,cold",
            }
            .into(),
            "--cold-span".into(),
            self.cold_span.to_string(),
        ];
        if self.quick {
            args.push("--quick".into());
        }
        if !self.two_threads {
            args.push("--no-two-threads".into());
        }
        args
    }

    /// Reads what [`Options::to_args`] wrote (other arguments are skipped);
    /// what is missing keeps the value of `Options::new(quick)`.
    pub fn from_args(args: &[String]) -> Result<Options, String> {
        let quick = args.iter().any(|a| a == "--quick");
        let mut o = Options::new(quick);
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().ok_or(format!("{a} needs a value"));
            let number = |v: &str| v.parse::<usize>().map_err(|_| format!("{a}: bad number {v:?}"));
            match a.as_str() {
                "--rounds" => o.rounds = number(value()?)?.max(1),
                "--batch-us" => o.batch = Duration::from_micros(number(value()?)? as u64),
                "--sizes" => o.sizes = value()?.split(',').map(number).collect::<Result<_, _>>()?,
                "--buffers" => {
                    let v = value()?;
                    o.hot = v.split(',').any(|b| b == "hot");
                    o.cold = v.split(',').any(|b| b == "cold");
                }
                "--cold-span" => o.cold_span = number(value()?)?,
                "--no-two-threads" => o.two_threads = false,
                _ => {}
            }
        }
        if o.sizes.is_empty() || o.sizes.contains(&0) || !(o.hot || o.cold) {
            return Err("a phase needs sizes above 0 and hot or cold buffers".into());
        }
        Ok(o)
    }
}

/// Anonymous memory, prefaulted (page faults are not what we measure).
struct Region {
    ptr: *mut u8,
    len: usize,
}

impl Region {
    fn new(len: usize, byte: u8) -> Result<Region, String> {
        // SAFETY: a fresh private anonymous mapping; MAP_POPULATE faults it in.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap of {len} bytes failed"));
        }
        // SAFETY: the mapping is `len` bytes, writable.
        unsafe { core::ptr::write_bytes(p.cast::<u8>(), byte, len) };
        Ok(Region { ptr: p.cast(), len })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// The median of the ratios of batches run back to back: robust against
/// the machine's speed drifting during the run.
fn paired_ratio(a: &[f64], b: &[f64]) -> f64 {
    median(a.iter().zip(b).map(|(a, b)| a / b).collect())
}

/// Copies `iters` times, rotating over `slots` slots of `size` bytes.
fn batch(f: CopyFn, src: &Region, dst: &Region, size: usize, slots: usize, iters: usize) -> Duration {
    let start = Instant::now();
    for i in 0..iters {
        let offset = (i % slots) * size;
        // SAFETY: offset + size <= slots * size <= region length.
        unsafe { f(black_box(dst.ptr.add(offset).cast()), black_box(src.ptr.add(offset).cast()), size) };
    }
    start.elapsed()
}

/// The reference point of the project's first split-copy prototype (1.87x
/// glibc at 16 MiB, 1.9x at 512 MiB on the 2-core VM): glibc's memcpy on two
/// threads, the caller copying the first half while a spinning helper
/// copies the second. What the machine's memory allows two threads, in
/// the same run, without any of the library's machinery. The helper spins
/// only during its own batches (it parks between them, so that it does
/// not steal a CPU from the contenders).
struct TwoThreads {
    job: &'static Job,
    helper: std::thread::Thread,
    glibc: CopyFn,
}

struct Job {
    dst: AtomicUsize,
    src: AtomicUsize,
    len: AtomicUsize,
    /// IDLE, GO (copy published), DONE (helper finished), PARK.
    state: AtomicUsize,
}

const IDLE: usize = 0;
const GO: usize = 1;
const DONE: usize = 2;
const PARK: usize = 3;

impl TwoThreads {
    fn start(glibc: CopyFn) -> TwoThreads {
        let job: &'static Job = Box::leak(Box::new(Job {
            dst: AtomicUsize::new(0),
            src: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            state: AtomicUsize::new(PARK),
        }));
        let helper = std::thread::spawn(move || {
            loop {
                match job.state.load(Ordering::Acquire) {
                    GO => {
                        let (d, s, n) = (job.dst.load(Relaxed), job.src.load(Relaxed), job.len.load(Relaxed));
                        // SAFETY: the caller published a half it will not
                        // touch until `state` says done.
                        unsafe { glibc(d as *mut c_void, s as *const c_void, n) };
                        job.state.store(DONE, Ordering::Release);
                    }
                    PARK => std::thread::park(),
                    _ => core::hint::spin_loop(),
                }
            }
        });
        TwoThreads { job, helper: helper.thread().clone(), glibc }
    }

    fn copy(&self, dst: *mut u8, src: *const u8, n: usize) {
        let half = (n / 2) & !4095;
        self.job.dst.store(dst as usize + half, Relaxed);
        self.job.src.store(src as usize + half, Relaxed);
        self.job.len.store(n - half, Relaxed);
        self.job.state.store(GO, Ordering::Release);
        // SAFETY: the first half of the caller's ranges.
        unsafe { (self.glibc)(dst.cast(), src.cast(), half) };
        while self.job.state.load(Ordering::Acquire) != DONE {
            core::hint::spin_loop();
        }
        self.job.state.store(IDLE, Relaxed);
    }

    fn batch(&self, src: &Region, dst: &Region, size: usize, slots: usize, iters: usize) -> Duration {
        self.job.state.store(IDLE, Ordering::Release);
        self.helper.unpark();
        let start = Instant::now();
        for i in 0..iters {
            let offset = (i % slots) * size;
            // SAFETY: offset + size <= slots * size <= region length.
            unsafe { self.copy(dst.ptr.add(offset), src.ptr.add(offset), size) };
        }
        let elapsed = start.elapsed();
        self.job.state.store(PARK, Ordering::Release);
        elapsed
    }
}

/// Throughput of glibc and the hook, size by size.
pub fn throughput(c: &Copier, o: &Options) -> Result<Value, String> {
    let sizes = &o.sizes;
    let region = if o.cold { o.cold_span } else { 0 }.max(*sizes.iter().max().unwrap_or(&0) * 2);
    let src = Region::new(region, 0x5a)?;
    let dst = Region::new(region, 0)?;
    let two = TwoThreads::start(c.glibc);
    let mut rows = vec![];
    let buffers: Vec<bool> = [(o.hot, false), (o.cold, true)].into_iter().filter(|b| b.0).map(|b| b.1).collect();
    for &size in sizes {
        for &cold in &buffers {
            let slots = if cold { (region / size).max(2) } else { 1 };
            // Warm up both paths (the pool starts on the first large copy).
            batch(c.hooked, &src, &dst, size, slots, slots.min(4));
            batch(c.glibc, &src, &dst, size, slots, slots.min(4));
            let t1 = batch(c.glibc, &src, &dst, size, slots, 1).max(Duration::from_nanos(50));
            let mut iters = (o.batch.as_secs_f64() / t1.as_secs_f64()).ceil() as usize;
            if cold {
                iters = iters.max(2);
            }
            let iters = iters.clamp(1, 1 << 24);
            let (mut g, mut h, mut t) = (vec![], vec![], vec![]);
            for round in 0..o.rounds {
                let gbps = |d: Duration| (size * iters) as f64 / d.as_secs_f64() / 1e9;
                let mut glibc = || g.push(gbps(batch(c.glibc, &src, &dst, size, slots, iters)));
                if round % 2 == 0 {
                    glibc();
                    h.push(gbps(batch(c.hooked, &src, &dst, size, slots, iters)));
                } else {
                    h.push(gbps(batch(c.hooked, &src, &dst, size, slots, iters)));
                    glibc();
                }
                if o.two_threads {
                    t.push(gbps(two.batch(&src, &dst, size, slots, iters)));
                }
            }
            let (gm, hm, tm) = (median(g.clone()), median(h.clone()), median(t.clone()));
            let ratio = paired_ratio(&h, &g);
            let two_ratio = paired_ratio(&t, &g);
            if o.two_threads {
                eprintln!(
                    "memcpy-bench: {:>9} {:4}: glibc {gm:6.1} GB/s, async-cpu {hm:6.1} GB/s ({ratio:.2}x), glibc on two threads {tm:6.1} GB/s ({two_ratio:.2}x)",
                    size,
                    if cold { "cold" } else { "hot" },
                );
            } else {
                eprintln!(
                    "memcpy-bench: {:>9} {:4}: glibc {gm:6.1} GB/s, async-cpu {hm:6.1} GB/s ({ratio:.2}x)",
                    size,
                    if cold { "cold" } else { "hot" },
                );
            }
            rows.push(json!({
                "size": size, "buffers": if cold { "cold" } else { "hot" }, "iterations": iters,
                "glibc_gbps": gm, "hooked_gbps": hm, "ratio": ratio,
                "two_threads_gbps": num(tm), "two_threads_ratio": num(two_ratio),
                "glibc_all": g, "hooked_all": h, "two_threads_all": t,
            }));
        }
    }
    Ok(json!({ "policy": "[memcpy] engine = \"async-cpu\", min_bytes = \"4KiB\"", "rows": rows }))
}

/// Sizes for the cost of the hook below its threshold.
const HOOK_SIZES: [usize; 6] = [16, 32, 64, 256, 1024, 4096];

/// ns per call of glibc and of the hook below its threshold.
pub fn hook_cost(c: &Copier, o: &Options) -> Result<Value, String> {
    let src = Region::new(1 << 16, 0x33)?;
    let dst = Region::new(1 << 16, 0)?;
    let calls: usize = if o.quick { 1 << 21 } else { 1 << 23 };
    let rounds = o.rounds + 2;
    let mut rows = vec![];
    for size in HOOK_SIZES {
        let ns = |f: CopyFn| {
            let start = Instant::now();
            for _ in 0..calls {
                // SAFETY: both regions hold 64 KiB >= size.
                unsafe { f(black_box(dst.ptr.cast()), black_box(src.ptr.cast()), black_box(size)) };
            }
            start.elapsed().as_nanos() as f64 / calls as f64
        };
        ns(c.glibc);
        ns(c.hooked);
        let (mut g, mut h) = (vec![], vec![]);
        for round in 0..rounds {
            if round % 2 == 0 {
                g.push(ns(c.glibc));
                h.push(ns(c.hooked));
            } else {
                h.push(ns(c.hooked));
                g.push(ns(c.glibc));
            }
        }
        let (gm, hm) = (median(g.clone()), median(h.clone()));
        let added = median(h.iter().zip(&g).map(|(h, g)| h - g).collect());
        eprintln!("memcpy-bench: {size:>5} B: glibc {gm:.2} ns, hooked {hm:.2} ns, added {added:+.2} ns");
        rows.push(json!({
            "size": size, "calls": calls, "glibc_ns": gm, "hooked_ns": hm, "added_ns": added, "ratio": paired_ratio(&h, &g),
            "glibc_all": g, "hooked_all": h,
        }));
    }
    Ok(json!({ "policy": "built-in (min_bytes = 1MiB)", "rows": rows }))
}

/// ns per memcpy call through the PLT, as an unmodified program makes them:
/// run once without the library and once with it, by the driver.
pub fn plt_cost(o: &Options) -> Result<Value, String> {
    let src = Region::new(1 << 16, 0x33)?;
    let dst = Region::new(1 << 16, 0)?;
    let calls: usize = if o.quick { 1 << 21 } else { 1 << 23 };
    let mut rows = vec![];
    for size in HOOK_SIZES {
        let ns = || {
            let start = Instant::now();
            for _ in 0..calls {
                // SAFETY: both regions hold 64 KiB >= size. A call to the
                // `memcpy` symbol (the size is opaque to the compiler).
                unsafe { libc::memcpy(black_box(dst.ptr.cast()), black_box(src.ptr.cast()), black_box(size)) };
            }
            start.elapsed().as_nanos() as f64 / calls as f64
        };
        ns();
        let all: Vec<f64> = (0..o.rounds).map(|_| ns()).collect();
        rows.push(json!({ "size": size, "ns": median(all) }));
    }
    Ok(json!({ "rows": rows }))
}

/// The phases a child runs.
pub const PHASES: [&str; 3] = ["throughput", "hook-cost", "plt-cost"];

/// In a driver's `main`, first: when `args` (without the program's name)
/// ask for a phase (`--phase NAME`), runs it here, prints its JSON on
/// stdout and returns the exit code; else None.
pub fn phase_main(args: &[String], prog: &str) -> Option<ExitCode> {
    let i = args.iter().position(|a| a == "--phase")?;
    // A phase runs for its driver: when the driver is killed, so is the
    // phase (its loops would otherwise spin on for minutes).
    // SAFETY: prctl(PR_SET_PDEATHSIG) reads and writes no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    let options = match Options::from_args(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{prog}: {e}");
            return Some(ExitCode::from(2));
        }
    };
    let result = match args.get(i + 1).map(String::as_str) {
        Some("throughput") => Copier::resolve().and_then(|c| throughput(&c, &options)),
        Some("hook-cost") => Copier::resolve().and_then(|c| hook_cost(&c, &options)),
        Some("plt-cost") => plt_cost(&options),
        other => Err(format!("unknown phase {other:?}")),
    };
    Some(match result {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{prog}: {e}");
            ExitCode::FAILURE
        }
    })
}

/// Runs phase `name` in a child of this executable (which must call
/// [`phase_main`]): `lib` None runs it without the library, else with
/// `policy` (the text of a policy file, written to `policy_file`; None:
/// the built-in policy). Returns the phase's JSON.
pub fn run_phase(
    lib: Option<&Path>,
    name: &str,
    policy: Option<(&str, &Path)>,
    options: &Options,
) -> Result<Value, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.arg("--phase").arg(name).args(options.to_args());
    for var in ["IPC_OFFLOAD_POLICY", "IPC_OFFLOAD", "LD_PRELOAD", "IPC_OFFLOAD_STATS", "IPC_OFFLOAD_STRICT"] {
        cmd.env_remove(var);
    }
    if let Some(lib) = lib {
        cmd.env("LD_PRELOAD", lib);
    }
    if let Some((text, file)) = policy {
        std::fs::write(file, text).map_err(|e| format!("{}: {e}", file.display()))?;
        // A rejected policy would measure a pass-through: fail instead.
        cmd.env("IPC_OFFLOAD_POLICY", file).env("IPC_OFFLOAD_STRICT", "1");
    }
    let out = cmd.stderr(Stdio::inherit()).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("phase {name} failed ({})", out.status));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("phase {name}: bad output: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_travel_as_arguments() {
        for quick in [false, true] {
            let o = Options::new(quick);
            assert_eq!(Options::from_args(&o.to_args()), Ok(o));
        }
        let o = Options {
            rounds: 2,
            batch: Duration::from_micros(7500),
            quick: true,
            sizes: vec![1 << 20, 64 << 20],
            hot: false,
            cold: true,
            cold_span: 256 << 20,
            two_threads: false,
        };
        let mut args = vec!["--phase".to_owned(), "throughput".to_owned()];
        args.extend(o.to_args());
        assert_eq!(Options::from_args(&args), Ok(o));
    }

    #[test]
    fn options_refuse_nonsense() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(Options::from_args(&args(&["--sizes", "0"])).is_err());
        assert!(Options::from_args(&args(&["--sizes", "1x"])).is_err());
        assert!(Options::from_args(&args(&["--buffers", "warm"])).is_err());
        assert!(Options::from_args(&args(&["--rounds"])).is_err());
    }
}
