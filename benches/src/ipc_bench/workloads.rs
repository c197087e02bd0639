//! The workloads, and one run of one of them with or without the library.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ipc_offload_bench::size_label;

/// Which way a figure is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// One workload: a command that prints one figure on stdout.
pub struct Workload {
    /// Short key, used in the JSON.
    pub key: &'static str,
    /// What it moves, for people.
    pub title: String,
    /// The figure's unit.
    pub unit: &'static str,
    pub better: Better,
    /// The target as the least speedup (kernel over library for
    /// Lower figures, library over kernel for Higher ones) and its wording.
    pub target: (f64, &'static str),
    /// Whether the library must have moved bytes on its fast path (a run
    /// that silently stayed on the kernel path measures nothing).
    pub expects_fast_path: bool,
    pub argv: Vec<String>,
}

/// The workloads of the Unix-socket benchmark. `ipc_bench` is the compiled
/// benches/c/ipc_bench.c, `python` the interpreter (None: those are left out).
pub fn unix_socket(ipc_bench: &Path, python: Option<&Path>, root: &Path, quick: bool) -> Vec<Workload> {
    let c = |args: &[String]| -> Vec<String> {
        std::iter::once(ipc_bench.display().to_string()).chain(args.iter().cloned()).collect()
    };
    let total: u64 = if quick { 1 << 30 } else { 4 << 30 };
    let (rounds, pings) = if quick { (10, 5_000) } else { (20, 20_000) };
    let mib = 1u64 << 20;
    let mut all = vec![
        Workload {
            key: "stream",
            title: format!("socketpair stream, 1 MiB writes and reads, {} in all", size_label(total)),
            unit: "GB/s",
            better: Better::Higher,
            target: (1.8, "≥ 1.8x throughput"),
            expects_fast_path: true,
            argv: c(&["stream".into(), total.to_string(), mib.to_string(), mib.to_string()]),
        },
        Workload {
            key: "reqresp",
            title: "64 MiB request, 64 MiB reply (round trip, median)".into(),
            unit: "µs",
            better: Better::Lower,
            // 40% lower latency: the kernel's time is at least 1/0.6 of ours.
            target: (1.0 / 0.6, "≥ 40% lower latency"),
            expects_fast_path: true,
            argv: c(&["reqresp".into(), (64 * mib).to_string(), rounds.to_string()]),
        },
        Workload {
            key: "pingpong",
            title: "64 B ping-pong (round trip)".into(),
            unit: "ns",
            better: Better::Lower,
            target: (0.97, "within 3%"),
            expects_fast_path: false,
            argv: c(&["pingpong".into(), pings.to_string(), "64".into()]),
        },
    ];
    if let Some(python) = python {
        all.push(Workload {
            key: "python-duplex",
            title: "python3 multiprocessing.Pipe(duplex=True), 256 MiB, go to recv_bytes".into(),
            unit: "s",
            better: Better::Lower,
            target: (1.5, "≥ 1.5x faster"),
            expects_fast_path: true,
            argv: vec![
                python.display().to_string(),
                root.join("benches/python/pipe_bench.py").display().to_string(),
                "duplex".into(),
                "256".into(),
            ],
        });
    }
    all
}

/// What one run measured.
pub struct Sample {
    pub value: f64,
    /// Unix-socket bytes the library moved through shared memory and
    /// through the kernel (all processes of the run); zero without it.
    pub fast_path_bytes: u64,
    pub kernel_path_bytes: u64,
}

/// Runs `w` once, without the library (`lib` None) or with it and the
/// built-in policy; `scratch` holds its stats files.
pub fn run_once(w: &Workload, lib: Option<&Path>, scratch: &Path) -> Result<Sample, String> {
    let mut cmd = Command::new(&w.argv[0]);
    cmd.args(&w.argv[1..]);
    for var in ["LD_PRELOAD", "IPC_OFFLOAD", "IPC_OFFLOAD_POLICY", "IPC_OFFLOAD_STATS", "IPC_OFFLOAD_STATS_ROOT"] {
        cmd.env_remove(var);
    }
    let stats_dir = scratch.join(w.key);
    let _ = std::fs::remove_dir_all(&stats_dir);
    if let Some(lib) = lib {
        std::fs::create_dir_all(&stats_dir).map_err(|e| format!("{}: {e}", stats_dir.display()))?;
        cmd.env("LD_PRELOAD", lib).env("IPC_OFFLOAD_STATS", stats_dir.join("stats.json"));
    }
    let out = cmd.stderr(Stdio::inherit()).output().map_err(|e| format!("{}: {e}", w.argv[0]))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("{} failed ({}): {}", w.argv.join(" "), out.status, text.trim()));
    }
    let value: f64 = text.trim().parse().map_err(|_| format!("{}: printed {:?}, not a number", w.key, text.trim()))?;
    let (fast_path_bytes, kernel_path_bytes) = if lib.is_some() { unix_bytes(&stats_dir)? } else { (0, 0) };
    Ok(Sample { value, fast_path_bytes, kernel_path_bytes })
}

/// Sums the `unix` class's byte counts over the stats files of a run.
fn unix_bytes(dir: &Path) -> Result<(u64, u64), String> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("stats.json")))
        .collect();
    if files.is_empty() {
        return Err(format!("the library wrote no stats in {}: was it loaded?", dir.display()));
    }
    let (mut fast, mut kernel) = (0, 0);
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: not a stats file: {e}", file.display()))?;
        fast += v["unix"]["fast_path_bytes"].as_u64().unwrap_or(0);
        kernel += v["unix"]["kernel_path_bytes"].as_u64().unwrap_or(0);
    }
    Ok((fast, kernel))
}

/// Compiles benches/c/ipc_bench.c into `out` with the system's C compiler.
pub fn compile(root: &Path, out: &Path) -> Result<(), String> {
    let source = root.join("benches/c/ipc_bench.c");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let status = Command::new(&cc)
        .args(["-O2", "-Wall", "-o"])
        .arg(out)
        .arg(&source)
        .status()
        .map_err(|e| format!("{cc}: {e} (a C compiler is needed: apt-get install gcc)"))?;
    if status.success() { Ok(()) } else { Err(format!("{cc} {} failed ({status})", source.display())) }
}

/// The Python interpreter itself (not a pyenv shim, which would run several
/// processes under the library), or None without python3.
pub fn python() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .env_remove("LD_PRELOAD")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}
