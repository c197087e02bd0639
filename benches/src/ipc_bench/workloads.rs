//! The workloads of each family (Unix sockets, pipes), and one run of one of
//! them with or without the library.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use ipc_offload_bench::size_label;

/// Which way a figure is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// Where a run's figure comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Measure {
    /// The command prints it on stdout.
    Printed,
    /// The command's wall time in seconds, from its spawn to its exit; its
    /// stderr must contain `check` exactly `count` times (dd's byte counts:
    /// every stage of a pipeline moved everything, whatever the pipeline's
    /// exit status, which is the last stage's).
    WallTime { check: String, count: usize },
}

/// The workloads of one family share a stats class and a JSON file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Unix,
    Pipe,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Unix, Family::Pipe];

    /// `unix` or `pipe`: the `--only` value, the JSON's `benchmark` and file
    /// name, and the stats class that counts the family's fast-path bytes.
    pub fn name(self) -> &'static str {
        match self {
            Family::Unix => "unix",
            Family::Pipe => "pipe",
        }
    }

    pub fn parse(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name)
    }

    /// What the family's workloads move, for the report.
    pub fn what(self) -> &'static str {
        match self {
            Family::Unix => "Unix stream sockets",
            Family::Pipe => "Pipes",
        }
    }
}

/// One workload: a command whose run gives one figure.
pub struct Workload {
    /// Short key, used in the JSON.
    pub key: &'static str,
    /// What it moves, for people.
    pub title: String,
    /// The figure's unit.
    pub unit: &'static str,
    pub better: Better,
    /// The issue's target as the least speedup (kernel over library for
    /// Lower figures, library over kernel for Higher ones) and its wording.
    pub target: (f64, &'static str),
    /// Whether the library must have moved bytes on its fast path (a run
    /// that silently stayed on the kernel path measures nothing).
    pub expects_fast_path: bool,
    /// The stats class that counts its fast-path bytes (`unix`, `pipe`).
    pub class: &'static str,
    pub measure: Measure,
    /// The command; with the library, LD_PRELOAD is set for it and so for
    /// every process it starts.
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
            class: "unix",
            measure: Measure::Printed,
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
            class: "unix",
            measure: Measure::Printed,
            argv: c(&["reqresp".into(), (64 * mib).to_string(), rounds.to_string()]),
        },
        Workload {
            key: "pingpong",
            title: "64 B ping-pong (round trip)".into(),
            unit: "ns",
            better: Better::Lower,
            target: (0.97, "within 3%"),
            expects_fast_path: false,
            class: "unix",
            measure: Measure::Printed,
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
            class: "unix",
            measure: Measure::Printed,
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

/// The workloads of the pipe benchmark (issue 4). `ipc_bench` is the
/// compiled benches/c/ipc_bench.c, `python` the interpreter (None: that one
/// is left out), `dd_input` the pipeline's input file, of `dd_bytes` bytes
/// (see [`write_dd_input`]).
pub fn pipe(
    ipc_bench: &Path,
    python: Option<&Path>,
    root: &Path,
    quick: bool,
    dd_input: &Path,
    dd_bytes: u64,
) -> Vec<Workload> {
    let c = |args: &[String]| -> Vec<String> {
        std::iter::once(ipc_bench.display().to_string()).chain(args.iter().cloned()).collect()
    };
    let total: u64 = if quick { 1 << 30 } else { 4 << 30 };
    let mib = 1u64 << 20;
    let stream = |mode: &str| c(&[mode.into(), total.to_string(), mib.to_string(), mib.to_string()]);
    let quoted = format!("'{}'", dd_input.display().to_string().replace('\'', r"'\''"));
    let pipeline = format!("dd if={quoted} bs=4M | dd iflag=fullblock bs=4M | dd iflag=fullblock bs=4M of=/dev/null");
    let mut all = vec![
        Workload {
            key: "pipe-stream",
            title: format!("pipe stream, 1 MiB writes and reads, {} in all", size_label(total)),
            unit: "GB/s",
            better: Better::Higher,
            target: (5.0, "≥ 5x throughput"),
            expects_fast_path: true,
            class: "pipe",
            measure: Measure::Printed,
            argv: stream("pipe"),
        },
        Workload {
            key: "dd-pipeline",
            title: format!("dd | dd | dd, bs=4M, {} file (wall time)", size_label(dd_bytes)),
            unit: "s",
            better: Better::Lower,
            target: (2.0, "≥ 2x faster"),
            expects_fast_path: true,
            class: "pipe",
            // Each dd reports the bytes it copied on stderr.
            measure: Measure::WallTime { check: format!("{dd_bytes} bytes"), count: 3 },
            argv: vec!["/bin/sh".into(), "-c".into(), pipeline],
        },
        Workload {
            key: "pipe-cpu",
            title: format!("CPU (user + sys, both ends) per GiB, pipe stream, 1 MiB writes, {}", size_label(total)),
            unit: "CPU s/GiB",
            better: Better::Lower,
            target: (2.0, "≤ half the CPU"),
            expects_fast_path: true,
            class: "pipe",
            measure: Measure::Printed,
            argv: stream("pipe-cpu"),
        },
    ];
    if let Some(python) = python {
        all.push(Workload {
            key: "python-simplex",
            title: "python3 multiprocessing.Pipe(duplex=False), 256 MiB, go to recv_bytes".into(),
            unit: "s",
            better: Better::Lower,
            target: (2.0, "≥ 2x faster"),
            expects_fast_path: true,
            class: "pipe",
            measure: Measure::Printed,
            argv: vec![
                python.display().to_string(),
                root.join("benches/python/pipe_bench.py").display().to_string(),
                "simplex".into(),
                "256".into(),
            ],
        });
    }
    all
}

/// Writes the dd pipeline's input: `bytes` of a pseudo-random pattern (no
/// zero pages, nothing a file system could make sparse), synced so that no
/// writeback runs during the timed runs. Not timed.
pub fn write_dd_input(path: &Path, bytes: u64) -> Result<(), String> {
    use std::io::Write;
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut block = vec![0u8; 4 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for word in block.chunks_exact_mut(8) {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        word.copy_from_slice(&x.to_le_bytes());
    }
    let mut file = std::fs::File::create(path).map_err(err)?;
    let mut left = bytes;
    let mut index = 0u64;
    while left > 0 {
        // Every block differs from the others.
        block[..8].copy_from_slice(&index.to_le_bytes());
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n]).map_err(err)?;
        left -= n as u64;
        index += 1;
    }
    file.sync_all().map_err(err)
}

/// What one run measured.
pub struct Sample {
    pub value: f64,
    /// Bytes of the workload's stats class (`unix`, `pipe`) the library
    /// moved through shared memory and through the kernel (all processes of
    /// the run); zero without it.
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
    // A printed figure's command reports on stderr as it likes; a timed one's
    // stderr is checked, and shown only when something is wrong.
    let printed = w.measure == Measure::Printed;
    if !printed {
        // dd's byte counts in English, whatever the machine's locale.
        cmd.env("LC_ALL", "C");
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(if printed { Stdio::inherit() } else { Stdio::piped() });
    let start = Instant::now();
    let out = cmd.output().map_err(|e| format!("{}: {e}", w.argv[0]))?;
    let elapsed = start.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    let errors = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let errors = if printed { String::new() } else { format!("\n{}", errors.trim_end()) };
        return Err(format!("{} failed ({}): {}{errors}", w.argv.join(" "), out.status, text.trim()));
    }
    let value = match &w.measure {
        Measure::Printed => {
            text.trim().parse().map_err(|_| format!("{}: printed {:?}, not a number", w.key, text.trim()))?
        }
        Measure::WallTime { check, count } => {
            let seen = errors.matches(check.as_str()).count();
            if seen != *count {
                return Err(format!(
                    "{}: {check:?} {seen} times on stderr, not {count}: a stage did not move everything:\n{}",
                    w.key,
                    errors.trim_end()
                ));
            }
            (elapsed * 1e6).round() / 1e6
        }
    };
    let (fast_path_bytes, kernel_path_bytes) = if lib.is_some() { ipc_bytes(&stats_dir, w.class)? } else { (0, 0) };
    Ok(Sample { value, fast_path_bytes, kernel_path_bytes })
}

/// Sums the byte counts of stats class `class` (`unix`, `pipe`) over the
/// stats files of a run.
fn ipc_bytes(dir: &Path, class: &str) -> Result<(u64, u64), String> {
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
        fast += v[class]["fast_path_bytes"].as_u64().unwrap_or(0);
        kernel += v[class]["kernel_path_bytes"].as_u64().unwrap_or(0);
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
