//! The memcpy parts: throughput by size per engine and mode, the hook's
//! cost below its threshold, and the copy-worker sweep of `scaling`. Each
//! measurement is a phase of ipc_offload_bench::memcpy run in a child of
//! this executable, with the library and a policy written for it; glibc
//! and the hook alternate batch by batch inside it.

use std::time::Duration;

use serde_json::{Value, json};

use ipc_offload_bench::memcpy::{self, Options};
use ipc_offload_bench::stats::{Better, paired_speedups};
use ipc_offload_bench::suite::results::{Baseline, ChartKind, ChartSpec, PartResult, Row, Variant};
use ipc_offload_bench::suite::{Part, memcpy_policy, round_order};
use ipc_offload_bench::{median, size_label};

use crate::ctx::{Ctx, size_key};

/// The sizes and buffers of the memcpy part.
pub fn memcpy_options(quick: bool) -> Options {
    let mut o = Options::new(quick);
    if quick {
        o.sizes = vec![64 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20];
        o.cold_span = 256 << 20;
    }
    o
}

/// The sizes of the copy-worker sweep: cold buffers, no two-thread reference.
fn sweep_options(quick: bool) -> Options {
    let mut o = Options::new(quick);
    o.sizes = if quick { vec![4 << 20, 64 << 20] } else { vec![1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20] };
    o.hot = false;
    o.two_threads = false;
    if quick {
        o.cold_span = 256 << 20;
    } else {
        o.rounds = 7;
        o.batch = Duration::from_millis(30);
    }
    o
}

/// Units of progress of one throughput phase.
fn units(o: &Options) -> f64 {
    (o.sizes.len() * (usize::from(o.hot) + usize::from(o.cold))) as f64
}

pub fn plan_memcpy(ctx: &Ctx) -> f64 {
    units(&memcpy_options(ctx.quick)) * ctx.modes.len() as f64
}

pub fn plan_hook(ctx: &Ctx) -> f64 {
    1.0 + 2.0 * ctx.rounds as f64
}

pub fn plan_scaling(ctx: &Ctx) -> f64 {
    units(&sweep_options(ctx.quick)) * ctx.workers.len() as f64
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().into_iter().flatten().filter_map(Value::as_f64).collect()
}

/// Runs the throughput phase with `policy`; its rows.
fn throughput(ctx: &mut Ctx, name: &str, policy: &str, o: &Options) -> Result<Vec<Value>, String> {
    let file = ctx.scratch.join(format!("memcpy-{name}.toml"));
    let v = memcpy::run_phase(Some(&ctx.lib), "throughput", Some((policy, &file)), o)?;
    let rows = v["rows"].as_array().cloned().unwrap_or_default();
    let summary: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {:.2}x",
                size_label(r["size"].as_u64().unwrap_or(0)),
                r["buffers"].as_str().unwrap_or("?"),
                r["ratio"].as_f64().unwrap_or(f64::NAN)
            )
        })
        .collect();
    ctx.progress.step(units(o), &format!("async-cpu, {name}: {}", summary.join(", ")));
    Ok(rows)
}

/// memcpy throughput by size: glibc against the async-cpu engine in each
/// mode (one child per mode; the first also times glibc on two threads).
pub fn run_memcpy(ctx: &mut Ctx) -> Result<PartResult, String> {
    let base = memcpy_options(ctx.quick);
    let modes = ctx.modes.clone();
    let mut phases = vec![];
    for (i, mode) in modes.iter().enumerate() {
        let mut o = base.clone();
        o.two_threads = i == 0;
        phases.push((mode.clone(), throughput(ctx, mode, &memcpy_policy(mode, None), &o)?));
    }
    let mut rows = vec![];
    for (k, first) in phases[0].1.iter().enumerate() {
        let size = first["size"].as_u64().unwrap_or(0);
        let buffers = first["buffers"].as_str().unwrap_or("?").to_owned();
        let mut glibc = vec![];
        let mut variants = vec![];
        for (mode, phase) in &phases {
            let r = &phase[k];
            let (g, h) = (f64s(&r["glibc_all"]), f64s(&r["hooked_all"]));
            glibc.extend(&g);
            variants.push(Variant {
                name: mode.clone(),
                speedups: paired_speedups(Better::Higher, &g, &h),
                runs: h,
                fast_path: None,
            });
        }
        let r = &phases[0].1[k];
        let (g, t) = (f64s(&r["glibc_all"]), f64s(&r["two_threads_all"]));
        if !t.is_empty() {
            variants.push(Variant {
                name: "glibc, 2 threads".into(),
                speedups: paired_speedups(Better::Higher, &g, &t),
                runs: t,
                fast_path: None,
            });
        }
        rows.push(Row {
            key: format!("memcpy-{buffers}-{}", size_key(size)),
            title: format!("memcpy {}, {buffers} buffers", size_label(size)),
            label: size_label(size),
            group: format!("memcpy-{buffers}"),
            size: Some(size),
            unit: "GB/s".into(),
            better: Better::Higher,
            baseline: Baseline { name: "glibc".into(), runs: glibc },
            variants,
            note: None,
        });
    }
    let chart = |buffers: &str, what: &str| ChartSpec {
        file: format!("suite-memcpy-{buffers}.svg"),
        title: format!("memcpy throughput by size, {what}: glibc and the async-cpu engine by mode"),
        y: "GB/s".into(),
        group: format!("memcpy-{buffers}"),
        kind: ChartKind::LinesBySize { x: "bytes per memcpy call".into() },
    };
    let mut charts = vec![];
    if base.hot {
        charts.push(chart("hot", "hot buffers (one pair, reused)"));
    }
    if base.cold {
        charts.push(chart("cold", &format!("cold buffers (rotating over {})", size_label(base.cold_span as u64))));
    }
    Ok(PartResult {
        table: None,
        part: Part::Memcpy,
        rows,
        notes: vec![
            "One process per mode, the library preloaded with `[memcpy] engine = \"async-cpu\"`, `min_bytes = \"4KiB\"`, `workers = \"auto\"` and `[defaults] mode`; in it, batches of glibc's memcpy (looked up in libc.so.6) and of the hooked memcpy alternate. The glibc column is the median of every process's glibc batches; each speedup is a hooked batch over the glibc batch next to it.".into(),
            "\"glibc, 2 threads\": glibc's memcpy on two halves at once, on two threads, in the first process: what the machine's memory gives two threads at that moment.".into(),
            "The dsa engine runs here only against its software model, whose speed is not a device's: it is left out.".into(),
        ],
        skipped: None,
        settings: json!({
            "sizes": base.sizes, "hot": base.hot, "cold": base.cold, "cold_span_bytes": base.cold_span,
            "batches": base.rounds, "batch_ms": base.batch.as_millis() as u64,
            "policy": memcpy_policy("MODE", None),
        }),
        charts,
    })
}

/// The hook below its threshold: ns per call of glibc and of the hook in
/// one process (built-in policy), and of an unmodified loop of PLT calls in
/// processes without and with the library, alternating.
pub fn run_hook(ctx: &mut Ctx) -> Result<PartResult, String> {
    let o = Options::new(ctx.quick);
    let in_process = memcpy::run_phase(Some(&ctx.lib), "hook-cost", None, &o)?;
    ctx.progress.step(1.0, "same process: glibc and the hook, 16 B to 4 KiB");
    let mut rows = vec![];
    for r in in_process["rows"].as_array().into_iter().flatten() {
        let size = r["size"].as_u64().unwrap_or(0);
        let (g, h) = (f64s(&r["glibc_all"]), f64s(&r["hooked_all"]));
        rows.push(Row {
            key: format!("hook-{}", size_key(size)),
            title: format!("memcpy {}, same process", size_label(size)),
            label: size_label(size),
            group: "hook".into(),
            size: Some(size),
            unit: "ns".into(),
            better: Better::Lower,
            baseline: Baseline { name: "glibc".into(), runs: g.clone() },
            variants: vec![Variant {
                name: "through the hook".into(),
                speedups: paired_speedups(Better::Lower, &g, &h),
                runs: h,
                fast_path: None,
            }],
            note: None,
        });
    }
    // PLT calls: processes without and with the library, alternating.
    let (mut without, mut with) = (vec![], vec![]);
    for round in 0..ctx.rounds {
        for side in round_order(round, 2) {
            let lib = (side == 1).then_some(ctx.lib.as_path());
            let v = memcpy::run_phase(lib, "plt-cost", None, &o)?;
            let ns: Vec<f64> = v["rows"].as_array().into_iter().flatten().filter_map(|r| r["ns"].as_f64()).collect();
            let sizes: Vec<u64> =
                v["rows"].as_array().into_iter().flatten().filter_map(|r| r["size"].as_u64()).collect();
            let what = if side == 1 { "with the library" } else { "without the library" };
            ctx.progress.step(1.0, &format!("PLT calls, round {}/{}, {what}: {ns:.2?} ns", round + 1, ctx.rounds));
            if side == 1 { with.push((sizes, ns)) } else { without.push((sizes, ns)) }
        }
    }
    let sizes = without.first().map(|w| w.0.clone()).unwrap_or_default();
    for (i, size) in sizes.iter().enumerate() {
        let a: Vec<f64> = without.iter().map(|w| w.1.get(i).copied().unwrap_or(f64::NAN)).collect();
        let b: Vec<f64> = with.iter().map(|w| w.1.get(i).copied().unwrap_or(f64::NAN)).collect();
        rows.push(Row {
            key: format!("plt-{}", size_key(*size)),
            title: format!("memcpy {}, PLT calls in separate processes", size_label(*size)),
            label: size_label(*size),
            group: "plt".into(),
            size: Some(*size),
            unit: "ns".into(),
            better: Better::Lower,
            baseline: Baseline { name: "without the library".into(), runs: a.clone() },
            variants: vec![Variant {
                name: "with the library".into(),
                speedups: paired_speedups(Better::Lower, &a, &b),
                runs: b,
                fast_path: None,
            }],
            note: None,
        });
    }
    let added: Vec<String> = rows
        .iter()
        .filter(|r| r.group == "hook")
        .map(|r| format!("{} {:+.2} ns", r.label, median(r.variants[0].runs.clone()) - r.baseline_median()))
        .collect();
    Ok(PartResult {
        table: None,
        part: Part::Hook,
        rows,
        notes: vec![
            "Below `[memcpy] min_bytes` (built-in policy: 1 MiB) every call goes to glibc through the hook's compare and jump; \"speedup\" is glibc's time over the hook's (1.00x: no cost).".into(),
            format!("Added by the hook in the same process (medians): {}.", added.join(", ")),
        ],
        skipped: None,
        settings: json!({ "calls_per_batch": if ctx.quick { 1u64 << 21 } else { 1u64 << 23 }, "plt_rounds": ctx.rounds }),
        charts: vec![
            ChartSpec {
                file: "suite-hook.svg".into(),
                title: "memcpy below the threshold: glibc and the hook, same process".into(),
                y: "ns per call".into(),
                group: "hook".into(),
                kind: ChartKind::Bars,
            },
            ChartSpec {
                file: "suite-hook-plt.svg".into(),
                title: "memcpy below the threshold: PLT calls without and with the library".into(),
                y: "ns per call".into(),
                group: "plt".into(),
                kind: ChartKind::Bars,
            },
        ],
    })
}

/// The copy-worker sweep: glibc against async-cpu with each worker count
/// (throughput mode), cold buffers. Rows for the `scaling` part.
pub fn memcpy_workers(ctx: &mut Ctx) -> Result<(Vec<Row>, Value), String> {
    let o = sweep_options(ctx.quick);
    let workers = ctx.workers.clone();
    let mut phases = vec![];
    for n in &workers {
        let name = format!("{n} worker{}", if *n == 1 { "" } else { "s" });
        phases.push((name.clone(), throughput(ctx, &name, &memcpy_policy("throughput", Some(*n)), &o)?));
    }
    let mut rows = vec![];
    for (k, first) in phases[0].1.iter().enumerate() {
        let size = first["size"].as_u64().unwrap_or(0);
        let mut glibc = vec![];
        let mut variants = vec![];
        for (name, phase) in &phases {
            let (g, h) = (f64s(&phase[k]["glibc_all"]), f64s(&phase[k]["hooked_all"]));
            glibc.extend(&g);
            variants.push(Variant {
                name: name.clone(),
                speedups: paired_speedups(Better::Higher, &g, &h),
                runs: h,
                fast_path: None,
            });
        }
        rows.push(Row {
            key: format!("scaling-memcpy-{}", size_key(size)),
            title: format!("memcpy {}, cold buffers, async-cpu by workers", size_label(size)),
            label: size_label(size),
            group: "scaling-memcpy".into(),
            size: Some(size),
            unit: "GB/s".into(),
            better: Better::Higher,
            baseline: Baseline { name: "glibc".into(), runs: glibc },
            variants,
            note: None,
        });
    }
    let settings = json!({ "memcpy_sizes": o.sizes, "memcpy_workers": workers, "memcpy_cold_span_bytes": o.cold_span });
    Ok((rows, settings))
}

/// Arguments of cache-bench for the suite. Its threads hand each chunk
/// over by spinning, pinned to CPUs 0 and 1, which costs seconds per round
/// on a busy 2-CPU machine (a descheduled partner holds up every hand-over):
/// `--quick` runs 2 rounds of 16 MiB, the full suite its rounds of 64 MiB.
fn cache_args(ctx: &Ctx) -> Vec<String> {
    let (rounds, mib) = if ctx.quick { (2, 16) } else { (ctx.rounds, 64) };
    vec!["--rounds".into(), rounds.to_string(), "--mib".into(), mib.to_string()]
}

pub fn plan_cache(ctx: &Ctx) -> f64 {
    // About as long as this many IPC runs.
    if ctx.quick { 40.0 } else { 80.0 * ctx.rounds as f64 }
}

/// Cache placement: cache-bench (this executable's sibling) in a child,
/// its per-round figures turned into rows: `inject` the baseline, `bypass`
/// and `auto` against it round by round.
pub fn run_cache(ctx: &mut Ctx) -> Result<PartResult, String> {
    let bench = sibling("cache-bench")?;
    let json = ctx.scratch.join("cache.json");
    let args = cache_args(ctx);
    ctx.progress.say(&format!("cache-bench {} (in one process, without the library)", args.join(" ")));
    let out = std::process::Command::new(&bench)
        .args(&args)
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(ctx.scratch.join("cache.svg"))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", bench.display()))?;
    if !out.status.success() {
        return Err(format!(
            "cache-bench failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ));
    }
    let text = std::fs::read_to_string(&json).map_err(|e| format!("{}: {e}", json.display()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json.display()))?;
    let mut rows = vec![];
    for r in v["rows"].as_array().into_iter().flatten() {
        let case = r["case"].as_str().unwrap_or("?");
        let bytes = r["bytes"].as_u64().unwrap_or(0);
        let ipc = case.starts_with("IPC");
        // IPC chunks: the reader's copy-out, which placement is for; the
        // private copy: the copy itself.
        let runs = if ipc { &r["reader_runs"] } else { &r["total_runs"] };
        let names: Vec<String> =
            r["settings"].as_array().into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect();
        let per: Vec<Vec<f64>> = (0..names.len()).map(|i| f64s(&runs[i])).collect();
        if names.len() < 2 || per[0].is_empty() {
            return Err(format!("cache-bench's row {case:?} has no per-round figures"));
        }
        let (baseline, variants) = ipc_offload_bench::suite::results::paired(Better::Higher, &names, &per);
        rows.push(Row {
            key: format!("cache-{}-{}", if ipc { "ipc" } else { "private" }, size_key(bytes)),
            title: if ipc { format!("{case}: the reader's copy-out") } else { case.to_owned() },
            label: if ipc { size_label(bytes) } else { format!("private {}", size_label(bytes)) },
            group: "cache".into(),
            size: Some(bytes),
            unit: "GB/s".into(),
            better: Better::Higher,
            baseline,
            variants,
            note: None,
        });
    }
    ctx.progress.step(plan_cache(ctx), &format!("cache-bench: {} cases", rows.len()));
    Ok(PartResult {
        table: None,
        part: Part::Cache,
        rows,
        notes: vec![
            format!(
                "`target/release/cache-bench {}`: the cpu engine's copy routine with each placement of `cache` (`inject`, `bypass`, `auto`), in one process without the library; the settings run in turn in each round. IPC chunks: a writer thread copies each chunk into one of 8 ring slots, a reader thread copies it out with glibc, and the figure is the reader's copy-out; private copy: twice the last-level cache, one thread.",
                args.join(" ")
            ),
            "`auto` should match the better of the other two: `inject` for ring chunks and copies smaller than the last-level cache, `bypass` above.".into(),
        ],
        skipped: None,
        settings: json!({ "args": args, "last_level_cache": v["last_level_cache"] }),
        charts: vec![ChartSpec {
            file: "suite-cache.svg".into(),
            title: "Cache placement: inject, bypass and auto (IPC: the reader's copy-out)".into(),
            y: "GB/s".into(),
            group: "cache".into(),
            kind: ChartKind::Bars,
        }],
    })
}

/// A benchmark binary next to this executable (built with it).
fn sibling(name: &str) -> Result<std::path::PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe.with_file_name(name);
    if path.exists() { Ok(path) } else { Err(format!("{} is missing: run `cargo build --release`", path.display())) }
}

/// The rows of shm-lookup-bench's Markdown table (`| N | a | b | c |`,
/// `-` where not measured), as JSON objects.
pub fn parse_shm_table(text: &str) -> Result<Vec<Value>, String> {
    let num = |c: &str| -> Value { c.parse::<f64>().map_or(Value::Null, |x| json!(x)) };
    let rows: Vec<Value> = text
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim().trim_matches('|').split('|').map(str::trim).collect();
            let ranges = cells.first()?.parse::<u64>().ok()?;
            (cells.len() == 4).then(|| {
                json!({ "ranges": ranges, "lookup_miss_ns": num(cells[1]), "lookup_hit_ns": num(cells[2]), "update_ns": num(cells[3]) })
            })
        })
        .collect();
    if rows.is_empty() { Err(format!("shm-lookup-bench printed no table: {text:?}")) } else { Ok(rows) }
}

/// The `[shm]` class's costs: shm-lookup-bench in a child (its own table;
/// nothing to compare with a baseline).
pub fn run_shm(ctx: &mut Ctx) -> Result<PartResult, String> {
    let bench = sibling("shm-lookup-bench")?;
    let args: Vec<&str> = if ctx.quick { vec!["--quick"] } else { vec![] };
    let out = std::process::Command::new(&bench)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", bench.display()))?;
    if !out.status.success() {
        return Err(format!(
            "shm-lookup-bench failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ));
    }
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows = parse_shm_table(&table)?;
    ctx.progress.step(2.0, &format!("shm-lookup-bench: {} index sizes", rows.len()));
    Ok(PartResult {
        part: Part::Shm,
        rows: vec![],
        notes: vec![format!(
            "`target/release/shm-lookup-bench{}`: in one process, on the library's own index, ns per operation (medians): the lookup every memcpy-family call at or above the threshold pays while `[shm]` is on, missing every range or hitting one, and an insert plus a removal (what a shared mmap and its munmap add). See \"The shared-memory lookup\" in the README.",
            if ctx.quick { " --quick" } else { "" }
        )],
        skipped: None,
        settings: json!({ "rows": rows }),
        charts: vec![],
        table: Some(table),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shm_table() {
        let text = "| ranges | lookup, miss (ns) | lookup, hit (ns) | update: insert + remove (ns) |\n|---:|---:|---:|---:|\n| 0 | 2.5 | - | 33 |\n| 4096 | 116.3 | 76.3 | 7676 |\n";
        let rows = parse_shm_table(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], json!({ "ranges": 0, "lookup_miss_ns": 2.5, "lookup_hit_ns": null, "update_ns": 33.0 }));
        assert_eq!(rows[1]["update_ns"], 7676.0);
        assert!(parse_shm_table("nothing").is_err());
    }
}
