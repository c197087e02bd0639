//! Unix-socket IPC through libipc_offload.so against the kernel path, in the
//! same run.
//!
//!     cargo build --release && target/release/ipc-bench [--quick] [--runs N] [--json FILE]
//!
//! Each workload (benches/c/ipc_bench.c, compiled here with `cc`, and
//! benches/python/pipe_bench.py) runs as a pair of processes without the
//! library and with it (built-in policy), alternately: A B, then B A, and so
//! on, so that a drift of the machine's speed hits both sides. Reported: the
//! median of each side, and the median and range of the speedups of the pairs
//! run back to back. With the library, the run's stats files prove the bytes
//! took the shared-memory path (`fast_path_bytes`); a run that did not is an
//! error, not a figure. (The JSON's `fast_path_bytes` and `kernel_path_bytes` sum
//! the stats files of every process of every run: both ends count a byte.)
//!
//! Prints a Markdown table on stdout, progress on stderr, and writes JSON.

mod workloads;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ipc_offload_bench::{machine, median};
use serde_json::{Value, json};

use workloads::{Better, Sample, Workload};

const USAGE: &str = "\
usage: ipc-bench [--quick] [--runs N] [--json FILE] [--lib FILE]

Measures Unix stream socket workloads between two processes without and
with libipc_offload.so (built-in policy), alternately: a 1 MiB-write stream,
a 64 MiB request/reply, a 64 B ping-pong, and Python's multiprocessing.Pipe.

  --quick      smaller workloads, 3 pairs (about 10 seconds)
  --runs N     pairs of runs per workload (default 5; 3 with --quick)
  --json FILE  where to write the results (default docs/bench/unix.json)
  --lib FILE   the library (default target/release/libipc_offload.so)
";

struct Args {
    quick: bool,
    runs: usize,
    json_out: PathBuf,
    lib: PathBuf,
}

fn parse_args(root: &Path) -> Result<Option<Args>, String> {
    let mut a = Args {
        quick: false,
        runs: 0,
        json_out: root.join("docs/bench/unix.json"),
        lib: root.join("target/release/libipc_offload.so"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--runs" => {
                a.runs = value("--runs")?.parse().ok().filter(|&n| n > 0).ok_or("--runs needs a positive integer")?
            }
            "--json" => a.json_out = value("--json")?.into(),
            "--lib" => a.lib = value("--lib")?.into(),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.runs == 0 {
        a.runs = if a.quick { 3 } else { 5 };
    }
    Ok(Some(a))
}

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).to_path_buf();
    let args = match parse_args(&root) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ipc-bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !args.lib.exists() {
        eprintln!("ipc-bench: {} is missing: run `cargo build --release` first", args.lib.display());
        return ExitCode::from(2);
    }
    match drive(&root, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipc-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn drive(root: &Path, args: &Args) -> Result<(), String> {
    let scratch = std::env::temp_dir().join(format!("ipc-bench-{}", std::process::id()));
    let program = scratch.join("ipc_bench");
    workloads::compile(root, &program)?;
    let python = workloads::python();
    if python.is_none() {
        eprintln!("ipc-bench: python3 not found: its workload is left out");
    }
    let all = workloads::unix_socket(&program, python.as_deref(), root, args.quick);
    let mut rows = vec![];
    for w in &all {
        rows.push(compare(w, &args.lib, &scratch, args.runs)?);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let mut command = String::from("target/release/ipc-bench");
    if args.quick {
        command.push_str(" --quick");
    }
    if args.runs != if args.quick { 3 } else { 5 } {
        command.push_str(&format!(" --runs {}", args.runs));
    }
    let result = json!({
        "benchmark": "unix",
        "command": command,
        "date": machine::today(),
        "machine": machine::describe(),
        "policy": "built-in",
        "runs": args.runs,
        "rows": rows,
    });
    print!("{}", report(&result));
    if let Some(dir) = args.json_out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let text = serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?;
    std::fs::write(&args.json_out, text + "\n").map_err(|e| format!("{}: {e}", args.json_out.display()))?;
    eprintln!("ipc-bench: wrote {}", args.json_out.display());
    Ok(())
}

/// `runs` pairs of runs of `w`, without and with the library, alternating
/// which goes first.
fn compare(w: &Workload, lib: &Path, scratch: &Path, runs: usize) -> Result<Value, String> {
    let (mut kernel, mut library): (Vec<f64>, Vec<f64>) = (vec![], vec![]);
    let (mut fast, mut slow) = (0u64, 0u64);
    for i in 0..runs {
        let mut pair: [Option<Sample>; 2] = [None, None];
        for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            pair[side] = Some(workloads::run_once(w, (side == 1).then_some(lib), scratch)?);
        }
        let [Some(k), Some(l)] = pair else { unreachable!("both sides ran") };
        if w.expects_fast_path && l.fast_path_bytes == 0 {
            return Err(format!(
                "{}: the library moved no byte on its fast path: the figures would be the kernel's",
                w.key
            ));
        }
        eprintln!(
            "ipc-bench: {} [{}/{runs}] kernel {} {unit}, library {} {unit}",
            w.key,
            i + 1,
            k.value,
            l.value,
            unit = w.unit
        );
        kernel.push(k.value);
        library.push(l.value);
        fast += l.fast_path_bytes;
        slow += l.kernel_path_bytes;
    }
    let speedups: Vec<f64> =
        kernel.iter().zip(&library).map(|(k, l)| if w.better == Better::Higher { l / k } else { k / l }).collect();
    let lo = speedups.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = speedups.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let speedup = median(speedups.clone());
    Ok(json!({
        "workload": w.key,
        "title": w.title,
        "unit": w.unit,
        "better": if w.better == Better::Higher { "higher" } else { "lower" },
        "kernel": median(kernel.clone()),
        "library": median(library.clone()),
        "kernel_runs": kernel,
        "library_runs": library,
        "speedup": speedup,
        "speedup_min": lo,
        "speedup_max": hi,
        "target": w.target.1,
        "target_speedup": w.target.0,
        "target_met": speedup >= w.target.0,
        "fast_path_bytes": fast,
        "kernel_path_bytes": slow,
    }))
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// Three or four significant digits.
fn figure(x: f64) -> String {
    match x.abs() {
        a if a >= 100.0 => format!("{x:.0}"),
        a if a >= 10.0 => format!("{x:.1}"),
        a if a >= 1.0 => format!("{x:.2}"),
        _ => format!("{x:.3}"),
    }
}

/// The Markdown table.
fn report(result: &Value) -> String {
    let mut out = format!(
        "ipc-bench on {} ({}), {}, {} pairs per workload\n\n",
        result["machine"]["cpu"].as_str().unwrap_or("?"),
        result["machine"]["summary"].as_str().unwrap_or("?"),
        result["date"].as_str().unwrap_or("?"),
        result["runs"],
    );
    out.push_str("Unix stream sockets, kernel path vs the library (built-in policy): medians of alternating runs;\n");
    out.push_str("speedup: median of the pairs (range), >1 means the library is better; fast path: share of the\n");
    out.push_str("socket bytes that went through shared memory (stats files of both ends)\n\n");
    out.push_str("| workload | unit | kernel | library | speedup | target | fast path |\n");
    out.push_str("|:---|:---|---:|---:|---:|:---|---:|\n");
    for row in result["rows"].as_array().into_iter().flatten() {
        let (fast, slow) =
            (row["fast_path_bytes"].as_u64().unwrap_or(0), row["kernel_path_bytes"].as_u64().unwrap_or(0));
        let share = if fast + slow == 0 {
            "-".to_owned()
        } else {
            format!("{:.1}%", 100.0 * fast as f64 / (fast + slow) as f64)
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.2}x ({:.2}-{:.2}) | {} {} | {} |\n",
            row["title"].as_str().unwrap_or("?"),
            row["unit"].as_str().unwrap_or("?"),
            figure(f(row, "kernel")),
            figure(f(row, "library")),
            f(row, "speedup"),
            f(row, "speedup_min"),
            f(row, "speedup_max"),
            row["target"].as_str().unwrap_or("?"),
            if row["target_met"].as_bool() == Some(true) { "✓" } else { "✗" },
            share,
        ));
    }
    out
}
