//! Unix-socket and pipe IPC through libipc_offload.so against the kernel
//! path, in the same run.
//!
//!     cargo build --release && target/release/ipc-bench [--quick] [--runs N] [--only unix|pipe]
//!
//! Each workload (benches/c/ipc_bench.c, compiled here with `cc`,
//! benches/python/pipe_bench.py, and for pipes a three-dd shell pipeline)
//! runs without the library and with it (built-in policy; LD_PRELOAD set for
//! the command, so for every process it starts), alternately: A B, then B A,
//! and so on, so that a drift of the machine's speed hits both sides.
//! Reported: the median of each side, and the median and range of the
//! speedups of the pairs run back to back. With the library, the run's stats
//! files prove the bytes took the shared-memory path (`fast_path_bytes` of the
//! family's stats class, `unix` or `pipe`); a run that did not is an error,
//! not a figure. (The JSON's `fast_path_bytes` and `kernel_path_bytes` sum
//! the stats files of every process of every run: both ends count a byte.)
//!
//! Two families, each with its JSON file: `unix` (Unix stream sockets,
//! docs/bench/unix.json) and `pipe` (pipes, docs/bench/pipe.json).
//! Prints a Markdown table per family on stdout, progress on stderr.

mod workloads;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ipc_offload_bench::ipc::{self as run, Sample, Workload};
use ipc_offload_bench::stats::{Better, figure};
use ipc_offload_bench::{machine, median, size_label};
use serde_json::{Value, json};

use workloads::Family;

const USAGE: &str = "\
usage: ipc-bench [--quick] [--runs N] [--only unix|pipe] [--json-dir DIR] [--json FILE]
                 [--lib FILE] [--allow-kernel-path]

Measures IPC workloads between processes without and with libipc_offload.so
(built-in policy), alternately, in two families:
  unix  Unix stream sockets: a 1 MiB-write stream, a 64 MiB request/reply,
        a 64 B ping-pong, Python's multiprocessing.Pipe(duplex=True)
  pipe  pipes: a 1 MiB-write stream (throughput, and CPU seconds per GiB),
        dd | dd | dd with bs=4M over a file made once (wall time), Python's
        multiprocessing.Pipe(duplex=False)

  --quick              smaller workloads, 3 pairs (about 30 seconds for both)
  --runs N             pairs of runs per workload (default 5; 3 with --quick)
  --only unix|pipe     one family (default: both, unix first)
  --json-dir DIR       where to write FAMILY.json (default docs/bench)
  --json FILE          where to write the results of the one family of --only
  --lib FILE           the library (default target/release/libipc_offload.so)
  --allow-kernel-path  warn instead of failing when a workload that expects the
                       fast path moved no byte on it (its figures are then the
                       kernel's on both sides; for a class still being built)
";

struct Args {
    quick: bool,
    runs: usize,
    only: Option<Family>,
    json_dir: PathBuf,
    json_out: Option<PathBuf>,
    lib: PathBuf,
    allow_kernel_path: bool,
}

fn parse_args(root: &Path) -> Result<Option<Args>, String> {
    let mut a = Args {
        quick: false,
        runs: 0,
        only: None,
        json_dir: root.join("docs/bench"),
        json_out: None,
        lib: root.join("target/release/libipc_offload.so"),
        allow_kernel_path: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--runs" => {
                a.runs = value("--runs")?.parse().ok().filter(|&n| n > 0).ok_or("--runs needs a positive integer")?
            }
            "--only" => {
                let name = value("--only")?;
                a.only = Some(Family::parse(&name).ok_or(format!("--only {name}: expected unix or pipe"))?);
            }
            "--json-dir" => a.json_dir = value("--json-dir")?.into(),
            "--json" => a.json_out = Some(value("--json")?.into()),
            "--lib" => a.lib = value("--lib")?.into(),
            "--allow-kernel-path" => a.allow_kernel_path = true,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.json_out.is_some() && a.only.is_none() {
        return Err("--json FILE needs --only (each family writes its own file; see --json-dir)".into());
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
    let scratch = std::env::temp_dir().join(format!("ipc-bench-{}", std::process::id()));
    let outcome = drive(&root, &args, &scratch);
    // Also after an error: the scratch dir holds the dd pipeline's input.
    let _ = std::fs::remove_dir_all(&scratch);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipc-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn drive(root: &Path, args: &Args, scratch: &Path) -> Result<(), String> {
    let program = scratch.join("ipc_bench");
    run::compile(root, &program)?;
    let python = run::python();
    if python.is_none() {
        eprintln!("ipc-bench: python3 not found: its workloads are left out");
    }
    let families = match args.only {
        Some(family) => vec![family],
        None => Family::ALL.to_vec(),
    };
    for family in families {
        let all = match family {
            Family::Unix => workloads::unix_socket(&program, python.as_deref(), root, args.quick),
            Family::Pipe => {
                let dd_bytes: u64 = if args.quick { 256 << 20 } else { 512 << 20 };
                let dd_input = scratch.join("dd-input");
                eprintln!("ipc-bench: writing the dd pipeline's input ({}, not timed)", size_label(dd_bytes));
                run::write_dd_input(&dd_input, dd_bytes)?;
                workloads::pipe(&program, python.as_deref(), root, args.quick, &dd_input, dd_bytes)
            }
        };
        let mut rows = vec![];
        for w in &all {
            rows.push(compare(w, &args.lib, scratch, args.runs, args.allow_kernel_path)?);
        }
        let _ = std::fs::remove_file(scratch.join("dd-input"));
        let result = json!({
            "benchmark": family.name(),
            "command": command_line(args),
            "date": machine::today(),
            "machine": machine::describe(),
            "policy": "built-in",
            "runs": args.runs,
            "rows": rows,
        });
        print!("{}", report(&result, family));
        let json_out = args.json_out.clone().unwrap_or_else(|| args.json_dir.join(format!("{}.json", family.name())));
        if let Some(dir) = json_out.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        let text = serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?;
        std::fs::write(&json_out, text + "\n").map_err(|e| format!("{}: {e}", json_out.display()))?;
        eprintln!("ipc-bench: wrote {}", json_out.display());
    }
    Ok(())
}

/// The options that change what is measured, as a command line.
fn command_line(args: &Args) -> String {
    let mut command = String::from("target/release/ipc-bench");
    if args.quick {
        command.push_str(" --quick");
    }
    if args.runs != if args.quick { 3 } else { 5 } {
        command.push_str(&format!(" --runs {}", args.runs));
    }
    if let Some(family) = args.only {
        command.push_str(&format!(" --only {}", family.name()));
    }
    if args.allow_kernel_path {
        command.push_str(" --allow-kernel-path");
    }
    command
}

/// `runs` pairs of runs of `w`, without and with the library, alternating
/// which goes first.
/// `allow_kernel_path`: a run of a workload that expects the fast path and
/// moved no byte on it is a warning, not an error.
fn compare(w: &Workload, lib: &Path, scratch: &Path, runs: usize, allow_kernel_path: bool) -> Result<Value, String> {
    let (mut kernel, mut library): (Vec<f64>, Vec<f64>) = (vec![], vec![]);
    let (mut fast, mut slow) = (0u64, 0u64);
    for i in 0..runs {
        let mut pair: [Option<Sample>; 2] = [None, None];
        for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            pair[side] = Some(run::run_once(w, (side == 1).then_some(lib), scratch)?);
        }
        let [Some(k), Some(l)] = pair else { unreachable!("both sides ran") };
        if w.expects_fast_path && l.fast_path_bytes == 0 {
            let what = format!(
                "{}: the library moved no byte on its fast path (stats class \"{}\"): the figures would be the kernel's",
                w.key, w.class
            );
            if !allow_kernel_path {
                return Err(what);
            }
            eprintln!("ipc-bench: warning: {what} (--allow-kernel-path)");
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
        "better": w.better.name(),
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
        "expects_fast_path": w.expects_fast_path,
        "stats_class": w.class,
        "fast_path_bytes": fast,
        "kernel_path_bytes": slow,
    }))
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// The Markdown table.
fn report(result: &Value, family: Family) -> String {
    let mut out = format!(
        "ipc-bench on {} ({}), {}, {} pairs per workload\n\n",
        result["machine"]["cpu"].as_str().unwrap_or("?"),
        result["machine"]["summary"].as_str().unwrap_or("?"),
        result["date"].as_str().unwrap_or("?"),
        result["runs"],
    );
    out.push_str(&format!(
        "{}, kernel path vs the library (built-in policy): medians of alternating runs;\n",
        family.what()
    ));
    out.push_str("speedup: median of the pairs (range), >1 means the library is better; fast path: share of the\n");
    out.push_str(&format!(
        "bytes of stats class \"{}\" that went through shared memory (stats files of all processes)\n\n",
        family.name()
    ));
    out.push_str("| workload | unit | kernel | library | speedup | target | fast path |\n");
    out.push_str("|:---|:---|---:|---:|---:|:---|---:|\n");
    for row in result["rows"].as_array().into_iter().flatten() {
        let (fast, slow) =
            (row["fast_path_bytes"].as_u64().unwrap_or(0), row["kernel_path_bytes"].as_u64().unwrap_or(0));
        let share = if fast == 0 && row["expects_fast_path"].as_bool() == Some(true) {
            // Only with --allow-kernel-path: otherwise no figure is reported.
            "none ✗".to_owned()
        } else if fast + slow == 0 {
            "-".to_owned()
        } else {
            format!("{:.1}%", 100.0 * fast as f64 / (fast + slow) as f64)
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.2}x ({:.2}-{:.2}) | {} {} | {} |\n",
            // A `|` in a title (dd | dd | dd) would end its cell.
            row["title"].as_str().unwrap_or("?").replace('|', "\\|"),
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
