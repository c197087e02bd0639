//! memcpy through libipc_offload.so against glibc's memcpy, in the same run.
//!
//!     cargo build --release && target/release/memcpy-bench [--quick] [--json FILE]
//!
//! The driver re-runs this binary with the library preloaded, once per phase:
//!
//! - `throughput`: policy `[memcpy] engine = "async-cpu", min_bytes = 4KiB`.
//!   For each size from 4 KiB to 512 MiB, the same process times glibc's
//!   memcpy (looked up in libc.so.6 itself) and the interposed memcpy (looked
//!   up in the global scope, i.e. the hook), in interleaved batches, with
//!   buffers hot (one pair, reused) and cold (a rotation over 512 MiB of
//!   buffers, far beyond the last-level cache). Medians of each, and the
//!   median of the ratios of batches run back to back.
//! - `hook-cost`: the built-in policy (1 MiB threshold). 16 B to 4 KiB copies
//!   in a tight loop through the hook and through glibc directly: the
//!   difference is what the hook adds below its threshold.
//! - `plt-cost`: the same copies as an unmodified program makes them (calls
//!   to the `memcpy` symbol through the GOT/PLT), run in processes without and
//!   with the library, interleaved.
//!
//! Prints Markdown tables on stdout, progress on stderr, and writes JSON.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value, json};

use ipc_offload_bench::memcpy::{self, Options};
use ipc_offload_bench::{machine, median, size_label};

const USAGE: &str = "\
usage: memcpy-bench [--quick] [--json FILE] [--lib FILE]

Measures memcpy throughput through libipc_offload.so (async-cpu) against
glibc, 4 KiB to 512 MiB, hot and cold buffers, and the cost of the hook on
16 B to 4 KiB copies. Same process, interleaved runs, medians and ratios.

  --quick      fewer sizes and rounds (about 20 seconds)
  --json FILE  where to write the results (default docs/bench/memcpy.json)
  --lib FILE   the library (default target/release/libipc_offload.so)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = memcpy::phase_main(&args, "memcpy-bench") {
        return code;
    }
    let mut quick = false;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut json_out = root.join("docs/bench/memcpy.json");
    let mut lib = root.join("target/release/libipc_offload.so");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--json" => json_out = it.next().map(PathBuf::from).unwrap_or(json_out),
            "--lib" => lib = it.next().map(PathBuf::from).unwrap_or(lib),
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("memcpy-bench: unknown argument {other}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    if !lib.exists() {
        eprintln!("memcpy-bench: {} is missing: run `cargo build --release` first", lib.display());
        return ExitCode::from(2);
    }
    match drive(&lib, quick, &json_out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memcpy-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a phase in a child; `lib` None runs it without the library.
fn run_phase(lib: Option<&Path>, name: &str, policy: Option<&str>, quick: bool) -> Result<Value, String> {
    let policy_file = std::env::temp_dir().join(format!("memcpy-bench-{}-{name}.toml", std::process::id()));
    let result = memcpy::run_phase(lib, name, policy.map(|p| (p, policy_file.as_path())), &Options::new(quick));
    let _ = std::fs::remove_file(&policy_file);
    result
}

fn drive(lib: &Path, quick: bool, json_out: &Path) -> Result<(), String> {
    let throughput =
        run_phase(Some(lib), "throughput", Some("[memcpy]\nengine = \"async-cpu\"\nmin_bytes = \"4KiB\"\n"), quick)?;
    let hook_cost = run_phase(Some(lib), "hook-cost", None, quick)?;
    let plt_cost = plt_ab(lib, quick)?;
    let command = format!("target/release/memcpy-bench{}", if quick { " --quick" } else { "" });
    let result = json!({
        "benchmark": "memcpy",
        "command": command,
        "date": machine::today(),
        "machine": machine::describe(),
        "throughput": throughput,
        "hook_cost": hook_cost,
        "plt_cost": plt_cost,
    });
    print!("{}", report(&result));
    if let Some(dir) = json_out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let text = serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?;
    std::fs::write(json_out, text + "\n").map_err(|e| format!("{}: {e}", json_out.display()))?;
    eprintln!("memcpy-bench: wrote {}", json_out.display());
    Ok(())
}

/// The PLT phase without (A) and with (B) the library, interleaved A B A B.
fn plt_ab(lib: &Path, quick: bool) -> Result<Value, String> {
    let runs = if quick { 3 } else { 5 };
    let (mut a, mut b): (Vec<Value>, Vec<Value>) = (vec![], vec![]);
    for _ in 0..runs {
        a.push(run_phase(None, "plt-cost", None, quick)?);
        b.push(run_phase(Some(lib), "plt-cost", None, quick)?);
    }
    let sizes: Vec<u64> = a[0]["rows"].as_array().into_iter().flatten().filter_map(|r| r["size"].as_u64()).collect();
    let ns_of = |runs: &[Value], i: usize| -> Vec<f64> { runs.iter().map(|r| f(&r["rows"][i], "ns")).collect() };
    let rows: Vec<Value> = sizes
        .iter()
        .enumerate()
        .map(|(i, size)| {
            let (na, nb) = (ns_of(&a, i), ns_of(&b, i));
            let ratio = median(nb.iter().zip(&na).map(|(b, a)| b / a).collect());
            let added = median(nb.iter().zip(&na).map(|(b, a)| b - a).collect());
            json!({ "size": size, "without_ns": median(na), "with_ns": median(nb), "added_ns": added, "ratio": ratio })
        })
        .collect();
    eprintln!("memcpy-bench: PLT calls without/with the library done ({runs} runs each)");
    Ok(json!({ "runs": runs, "rows": rows }))
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// The Markdown tables.
fn report(result: &Value) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "memcpy-bench on {} ({}), {}\n\n",
        result["machine"]["cpu"].as_str().unwrap_or("?"),
        result["machine"]["summary"].as_str().unwrap_or("?"),
        result["date"].as_str().unwrap_or("?")
    ));
    out.push_str("memcpy throughput, glibc vs the hook with engine async-cpu (GB/s, medians, same process);\n");
    out.push_str(
        "\"2 threads\": glibc's memcpy on two halves at once, what the machine's memory allows two threads\n\n",
    );
    out.push_str(
        "| size | buffers | glibc | async-cpu | ratio | 2 threads | ratio |\n|---:|:---|---:|---:|---:|---:|---:|\n",
    );
    for row in result["throughput"]["rows"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {:.2}x | {:.1} | {:.2}x |\n",
            size_label(row["size"].as_u64().unwrap_or(0)),
            row["buffers"].as_str().unwrap_or("?"),
            f(row, "glibc_gbps"),
            f(row, "hooked_gbps"),
            f(row, "ratio"),
            f(row, "two_threads_gbps"),
            f(row, "two_threads_ratio")
        ));
    }
    let cost_rows = |key: &str, a: &str, b: &str| -> String {
        let mut t = String::new();
        for row in result[key]["rows"].as_array().into_iter().flatten() {
            t.push_str(&format!(
                "| {} | {:.2} | {:.2} | {:+.2} | {:.3}x |\n",
                size_label(row["size"].as_u64().unwrap_or(0)),
                f(row, a),
                f(row, b),
                f(row, "added_ns"),
                f(row, "ratio")
            ));
        }
        t
    };
    out.push_str("\nhook cost below the threshold (ns per call, tight loop, medians, same process)\n\n");
    out.push_str("| size | glibc | through the hook | added | ratio |\n|---:|---:|---:|---:|---:|\n");
    out.push_str(&cost_rows("hook_cost", "glibc_ns", "hooked_ns"));
    out.push_str("\nhook cost through the PLT, an unmodified loop of memcpy calls without and with LD_PRELOAD ");
    out.push_str("(ns per call, medians of interleaved processes)\n\n");
    out.push_str("| size | without | with | added | ratio |\n|---:|---:|---:|---:|---:|\n");
    out.push_str(&cost_rows("plt_cost", "without_ns", "with_ns"));
    out
}
