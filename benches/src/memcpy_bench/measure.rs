//! Timing loops. Both contenders run in the same process, in alternating
//! batches, so that a noisy neighbour or a frequency change hits both.

use core::ffi::c_void;
use std::hint::black_box;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{self, Relaxed};
use std::time::{Duration, Instant};

use ipc_offload_bench::median;
use serde_json::{Value, json};

type CopyFn = unsafe extern "C" fn(*mut c_void, *const c_void, usize) -> *mut c_void;

/// glibc's memcpy and the memcpy this process's calls reach (the hook).
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

/// How long and how often to measure.
#[derive(Clone, Copy)]
pub struct Options {
    rounds: usize,
    batch: Duration,
    quick: bool,
}

impl Options {
    pub fn new(quick: bool) -> Self {
        if quick {
            Options { rounds: 3, batch: Duration::from_millis(15), quick }
        } else {
            Options { rounds: 11, batch: Duration::from_millis(40), quick }
        }
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

/// The reference point of ../shared/baseline.md: glibc's memcpy on two
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
pub fn throughput(c: &Copier, o: Options) -> Result<Value, String> {
    let sizes: Vec<usize> = if o.quick {
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
    // The cold rotation spans this much per side: 16x the 32 MiB L3 here.
    let cold_span: usize = 512 << 20;
    let region = cold_span.max(*sizes.iter().max().unwrap_or(&0) * 2);
    let src = Region::new(region, 0x5a)?;
    let dst = Region::new(region, 0)?;
    let two = TwoThreads::start(c.glibc);
    let mut rows = vec![];
    for &size in &sizes {
        for cold in [false, true] {
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
                t.push(gbps(two.batch(&src, &dst, size, slots, iters)));
            }
            let (gm, hm, tm) = (median(g.clone()), median(h.clone()), median(t.clone()));
            let ratio = paired_ratio(&h, &g);
            let two_ratio = paired_ratio(&t, &g);
            eprintln!(
                "memcpy-bench: {:>9} {:4}: glibc {gm:6.1} GB/s, async-cpu {hm:6.1} GB/s ({ratio:.2}x), glibc on two threads {tm:6.1} GB/s ({two_ratio:.2}x)",
                size,
                if cold { "cold" } else { "hot" },
            );
            rows.push(json!({
                "size": size, "buffers": if cold { "cold" } else { "hot" }, "iterations": iters,
                "glibc_gbps": gm, "hooked_gbps": hm, "ratio": ratio,
                "two_threads_gbps": tm, "two_threads_ratio": two_ratio,
                "glibc_all": g, "hooked_all": h, "two_threads_all": t,
            }));
        }
    }
    Ok(json!({ "policy": "[memcpy] engine = \"async-cpu\", min_bytes = \"4KiB\"", "rows": rows }))
}

/// Sizes for the cost of the hook below its threshold.
const HOOK_SIZES: [usize; 6] = [16, 32, 64, 256, 1024, 4096];

/// ns per call of glibc and of the hook below its threshold.
pub fn hook_cost(c: &Copier, o: Options) -> Result<Value, String> {
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
pub fn plt_cost(o: Options) -> Result<Value, String> {
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
