//! Cache placement (`cache = "inject" | "bypass" | "auto"`), measured with
//! the library's own copy routine and its own `auto` decision
//! (`ipc_offload_engine::cache`), in one process:
//!
//!     cargo build --release && target/release/cache-bench [--quick] [--json FILE] [--svg FILE]
//!
//! - **IPC chunks**: a writer thread (CPU 0) copies each chunk from a
//!   source far larger than the cache into one of 8 ring slots, with the
//!   setting's stores; a reader thread (CPU 1) then copies the slot out with
//!   glibc into a destination far larger than the cache, as a reader of a
//!   ring does. Per chunk size: the reader's copy-out time (what placement
//!   is for) and the total of both copies, one chunk at a time.
//! - **Private copy larger than the cache**: one thread copies twice the
//!   last-level cache's size with the setting's stores.
//!
//! The three settings alternate round by round; medians of the rounds. For
//! each case, `auto` is compared with the better of `inject` and `bypass`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use ipc_offload_bench::chart::{self, Labels, Series};
use ipc_offload_bench::{machine, median, size_label};
use ipc_offload_engine::cache::{Dest, cache_below};
use ipc_offload_engine::{self as engine, CopyOptions, EngineId};
use ipc_offload_policy::{Cache, Class, Wait};

const USAGE: &str = "\
usage: cache-bench [--quick] [--rounds N] [--mib N] [--json FILE] [--svg FILE]

Measures cache placement (inject, bypass, auto) for IPC chunks of 64 KiB
to 16 MiB (the reader's copy-out time and the total) and for a private copy
of twice the last-level cache.

  --quick      fewer rounds and bytes (about 30 seconds on an idle machine)
  --rounds N   rounds per case (default 7; 3 with --quick)
  --mib N      MiB copied per IPC round (default 256; 64 with --quick)
  --json FILE  results (default docs/bench/cache.json)
  --svg FILE   chart of the reader's copy-out throughput (default docs/bench/cache.svg)
";

const SETTINGS: [Cache; 3] = [Cache::Inject, Cache::Bypass, Cache::Auto];
const SLOTS: usize = 8;
/// Source and destination pools: far beyond any last-level cache.
const POOL: usize = 512 << 20;

struct Args {
    quick: bool,
    /// Rounds and bytes per IPC round; 0: from `quick`.
    rounds: usize,
    mib: usize,
    json: PathBuf,
    svg: PathBuf,
}

fn parse_args() -> Result<Option<Args>, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default();
    let mut a = Args {
        quick: false,
        rounds: 0,
        mib: 0,
        json: root.join("docs/bench/cache.json"),
        svg: root.join("docs/bench/cache.svg"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--rounds" | "--mib" => {
                let n = it
                    .next()
                    .and_then(|v| v.parse::<usize>().ok())
                    .filter(|n| (1..=4096).contains(n))
                    .ok_or(format!("{arg} needs a count from 1 to 4096"))?;
                if arg == "--rounds" { a.rounds = n } else { a.mib = n }
            }
            "--json" => a.json = it.next().ok_or("--json needs a file")?.into(),
            "--svg" => a.svg = it.next().ok_or("--svg needs a file")?.into(),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(a))
}

/// Copy options of the `cpu` engine with `setting`'s placement for `dest`.
fn options(setting: Cache, dest: Dest, llc: u64) -> CopyOptions {
    CopyOptions {
        engine: EngineId::Cpu,
        class: Class::Memcpy,
        wait: Wait::Spin,
        helpers: 0,
        cache_below: cache_below(setting, dest, llc),
        chunk_bytes: usize::MAX,
        depth: 1,
        cpu_share: None,
    }
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it;
    // sched_setaffinity(0, ...) changes only the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Memory touched once (no page faults in the timed copies).
struct Buf(Vec<u8>);

impl Buf {
    fn new(len: usize, seed: u8) -> Buf {
        Buf((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect())
    }
    fn at(&self, off: usize) -> *const u8 {
        self.0[off..].as_ptr()
    }
    fn at_mut(&mut self, off: usize) -> *mut u8 {
        self.0[off..].as_mut_ptr()
    }
}

/// One round of the IPC case: `bytes` in chunks of `chunk`; returns the
/// reader's copy-out seconds and the total (both copies) seconds.
fn ipc_round(chunk: usize, bytes: usize, opts: CopyOptions, bufs: &mut Bufs) -> (f64, f64) {
    let n = bytes / chunk;
    // Chunk k: written by the writer when `turn` = 2k, read when 2k + 1.
    let turn = Arc::new(AtomicUsize::new(0));
    let ring = bufs.ring.at_mut(0) as usize;
    let src = bufs.src.at(0) as usize;
    let dst = bufs.dst.at_mut(0) as usize;
    let writer = {
        let turn = Arc::clone(&turn);
        std::thread::spawn(move || {
            pin(0);
            let mut spent = Duration::ZERO;
            for k in 0..n {
                while turn.load(Acquire) != 2 * k {
                    core::hint::spin_loop();
                }
                let from = (src + (k * chunk) % (POOL - chunk)) as *const u8;
                let slot = (ring + (k % SLOTS) * chunk) as *mut u8;
                let t = Instant::now();
                // SAFETY: a slot of the ring and a span of the source pool,
                // disjoint, both `chunk` bytes long and alive for the round.
                unsafe { engine::copy(slot, from, chunk, &opts) };
                spent += t.elapsed();
                turn.store(2 * k + 1, Release);
            }
            spent
        })
    };
    pin(1.min(std::thread::available_parallelism().map_or(1, |n| n.get()) - 1));
    let mut read = Duration::ZERO;
    for k in 0..n {
        while turn.load(Acquire) != 2 * k + 1 {
            core::hint::spin_loop();
        }
        let slot = (ring + (k % SLOTS) * chunk) as *const u8;
        let to = (dst + (k * chunk) % (POOL - chunk)) as *mut u8;
        let t = Instant::now();
        // SAFETY: as above; glibc's copy, as a reader of a ring makes it.
        unsafe { libc::memcpy(to.cast(), slot.cast(), chunk) };
        read += t.elapsed();
        turn.store(2 * k + 2, Release);
    }
    let wrote = writer.join().unwrap_or_default();
    (read.as_secs_f64(), (read + wrote).as_secs_f64())
}

struct Bufs {
    src: Buf,
    dst: Buf,
    ring: Buf,
}

fn gbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e9
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("cache-bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let llc = ipc_offload_sys::cpus::last_level_cache(std::path::Path::new("/sys/devices/system/cpu"));
    let Some(llc) = llc else {
        eprintln!(
            "cache-bench: the last-level cache's size is unknown here: `auto` would never bypass; nothing to measure"
        );
        return ExitCode::from(1);
    };
    // Described before any thread is pinned (pinning narrows what the
    // process may run on).
    let described = machine::describe();
    let (mut rounds, mut bytes) = if args.quick { (3, 64 << 20) } else { (7, 256 << 20) };
    if args.rounds > 0 {
        rounds = args.rounds;
    }
    if args.mib > 0 {
        // At least one chunk of the largest size.
        bytes = (args.mib << 20).max(16 << 20);
    }
    let chunks: [usize; 5] = [64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20];
    eprintln!(
        "cache-bench: last-level cache {}; preparing {} of buffers",
        size_label(llc),
        size_label(3 * POOL as u64)
    );
    let mut bufs = Bufs { src: Buf::new(POOL, 1), dst: Buf::new(POOL, 2), ring: Buf::new(SLOTS * (16 << 20), 3) };
    let mut rows = Vec::new();
    for &chunk in &chunks {
        let mut read = [const { Vec::new() }; 3];
        let mut total = [const { Vec::new() }; 3];
        for round in 0..rounds {
            eprint!("\rcache-bench: IPC chunks of {:>7}, round {}/{rounds}   ", size_label(chunk as u64), round + 1);
            for (i, setting) in SETTINGS.iter().enumerate() {
                let (r, t) = ipc_round(chunk, bytes, options(*setting, Dest::RingChunk, llc), &mut bufs);
                read[i].push(gbps(bytes, r));
                total[i].push(gbps(bytes, t));
            }
        }
        rows.push(row(&format!("IPC chunk {}", size_label(chunk as u64)), chunk as u64, read, total));
    }
    // A private copy of twice the cache.
    let len = (2 * llc as usize).min(POOL);
    let mut total = [const { Vec::new() }; 3];
    for round in 0..rounds {
        eprint!("\rcache-bench: private copy of {}, round {}/{rounds}        ", size_label(len as u64), round + 1);
        for (i, setting) in SETTINGS.iter().enumerate() {
            let opts = options(*setting, Dest::Copy, llc);
            let t = Instant::now();
            // SAFETY: spans of the two pools, disjoint, `len` bytes each.
            unsafe { engine::copy(bufs.dst.at_mut(0), bufs.src.at(0), len, &opts) };
            total[i].push(gbps(len, t.elapsed().as_secs_f64()));
        }
    }
    rows.push(row(&format!("private copy {}", size_label(len as u64)), len as u64, [vec![], vec![], vec![]], total));
    eprintln!();
    let result = json!({
        "benchmark": "cache",
        "command": format!(
            "target/release/cache-bench{}{}{}",
            if args.quick { " --quick" } else { "" },
            if args.rounds > 0 { format!(" --rounds {}", args.rounds) } else { String::new() },
            if args.mib > 0 { format!(" --mib {}", args.mib) } else { String::new() },
        ),
        "machine": described,
        "date": machine::today(),
        "last_level_cache": llc,
        "unit": "GB/s",
        "rows": rows,
    });
    print!("{}", report(&result));
    if let Err(e) = write_outputs(&args, &result) {
        eprintln!("cache-bench: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// One case: medians per setting, and auto against the better of the two
/// fixed settings (on the total; the reader's copy-out too for IPC).
fn row(case: &str, bytes: u64, read: [Vec<f64>; 3], total: [Vec<f64>; 3]) -> Value {
    let med = |v: &[Vec<f64>; 3]| -> Vec<Option<f64>> {
        v.iter().map(|x| if x.is_empty() { None } else { Some(median(x.clone())) }).collect()
    };
    let (read_median, total_median) = (med(&read), med(&total));
    let versus = |v: &[Option<f64>]| match (v[0], v[1], v[2]) {
        (Some(i), Some(b), Some(a)) => Some(a / i.max(b)),
        _ => None,
    };
    json!({
        "case": case,
        "bytes": bytes,
        "settings": SETTINGS.iter().map(|s| s.name()).collect::<Vec<_>>(),
        "reader_gbps": read_median,
        "total_gbps": total_median,
        // Every round's figure, per setting (the rounds ran the settings in turn).
        "reader_runs": read,
        "total_runs": total,
        "auto_vs_best_reader": versus(&read_median),
        "auto_vs_best_total": versus(&total_median),
    })
}

fn report(result: &Value) -> String {
    let f = |v: &Value| v.as_f64().map_or("-".to_owned(), |x| format!("{x:.2}"));
    let mut out = format!(
        "## Cache placement ({}, {})\n\n`{}`; GB/s, medians; last-level cache {}\n\n",
        result["machine"]["summary"].as_str().unwrap_or(""),
        result["date"].as_str().unwrap_or(""),
        result["command"].as_str().unwrap_or(""),
        size_label(result["last_level_cache"].as_u64().unwrap_or(0)),
    );
    out.push_str("| case | reader inject | reader bypass | reader auto | total inject | total bypass | total auto | auto / best (reader, total) |\n");
    out.push_str("|:---|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in result["rows"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {}, {} |\n",
            r["case"].as_str().unwrap_or(""),
            f(&r["reader_gbps"][0]),
            f(&r["reader_gbps"][1]),
            f(&r["reader_gbps"][2]),
            f(&r["total_gbps"][0]),
            f(&r["total_gbps"][1]),
            f(&r["total_gbps"][2]),
            f(&r["auto_vs_best_reader"]),
            f(&r["auto_vs_best_total"]),
        ));
    }
    out
}

fn write_outputs(args: &Args, result: &Value) -> Result<(), String> {
    for path in [&args.json, &args.svg] {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
    }
    let text = serde_json::to_string_pretty(result).map_err(|e| e.to_string())? + "\n";
    std::fs::write(&args.json, text).map_err(|e| format!("{}: {e}", args.json.display()))?;
    let rows: Vec<&Value> = result["rows"].as_array().into_iter().flatten().collect();
    let categories: Vec<String> = rows.iter().map(|r| r["case"].as_str().unwrap_or("").to_owned()).collect();
    // The reader's copy-out for IPC chunks, the copy itself for the private one.
    let series: Vec<Series> = SETTINGS
        .iter()
        .enumerate()
        .map(|(i, s)| Series {
            name: s.name().to_owned(),
            values: rows.iter().map(|r| r["reader_gbps"][i].as_f64().or(r["total_gbps"][i].as_f64())).collect(),
        })
        .collect();
    let subtitle = format!(
        "{}, {}; IPC: the reader's copy-out; private: the copy",
        result["machine"]["summary"].as_str().unwrap_or(""),
        result["date"].as_str().unwrap_or("")
    );
    let labels = Labels { title: "Cache placement: inject, bypass, auto", subtitle: &subtitle, y: "GB/s", x: "" };
    chart::bars(&args.svg, &labels, &categories, &series).map_err(|e| format!("{}: {e}", args.svg.display()))
}
