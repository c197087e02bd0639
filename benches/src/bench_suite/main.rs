//! Every benchmark of the project in one run: the kernel path and glibc
//! against libipc_offload.so in each mode, alternating, with medians and
//! per-round speedups; JSON, Markdown and SVG charts.
//!
//!     cargo build --release && target/release/bench-suite [--quick] [--only PART,...] [--out DIR]
//!
//! Parts (`--only`, `--skip`): memcpy, hook, cache, shm, stream, reqresp,
//! evloop, scaling, dd, python, redis (see `--help`). Writes `DIR/suite-PART.json` per part,
//! `DIR/suite-*.svg`, and `DIR/suite.md` (also on stdout); progress on
//! stderr.

mod copies;
mod ctx;
mod evloop;
mod programs;
mod tcp;
mod transfers;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;

use ipc_offload_bench::suite::progress::Progress;
use ipc_offload_bench::suite::render::{draw, draw_part};
use ipc_offload_bench::suite::report::{headline_chart_rows, report};
use ipc_offload_bench::suite::results::{ChartKind, ChartSpec, PartResult, Row};
use ipc_offload_bench::suite::{MODES, Part, clock, default_pairs, default_workers, parse_counts, parse_modes};
use ipc_offload_bench::{ipc, machine, memcpy};

use ctx::Ctx;

const USAGE: &str = "\
usage: bench-suite [--quick] [--only PART,...] [--skip PART,...] [--out DIR] [--rounds N]
                   [--modes LIST] [--workers LIST] [--pairs LIST] [--lib FILE]
                   [--allow-kernel-path]

Runs every benchmark of the project: the kernel path (or glibc) and
libipc_offload.so in each mode ([defaults] mode in a policy file the suite
writes), in alternating order, round after round; reports medians and the
median of each round's speedup (above 1: the library is better).

Parts, in the order they run:
  memcpy   memcpy throughput by size, glibc against async-cpu in each mode
  hook     the memcpy hook's cost below its threshold
  cache    cache placement (inject, bypass, auto): cache-bench
  shm      the [shm] class's region lookup and index update: shm-lookup-bench
  stream   pipe and Unix-socket streams, 64 KiB to 16 MiB writes: GB/s and CPU s/GiB
  reqresp  64 MiB request/response (socket, pipes); 64 B ping-pong; a connection per request
  evloop   event loops on nonblocking Unix sockets: select and poll relays
           (1 MiB and 16 KiB buffers), epoll readers (level- and edge-triggered),
           a 64 B epoll ping-pong, Python asyncio; CPU s/GiB
  scaling  memcpy copy workers, concurrent stream pairs, IPC copy workers
  dd       dd | dd | dd over a file, and dd | dd with 64 KiB reads
  python   python3 multiprocessing.Pipe, duplex and simplex
  redis    redis-server and redis-benchmark over a Unix socket (-c 4, -c 50) and TCP, 1 MB values,
           and over the Unix socket and TCP again with write_behind (skipped without redis)
  tcp      TCP over loopback: a stream, 64 MiB request/response (blocking, epoll),
           64 B ping-pong, iperf3 (and its default writes again with [tcp] write_behind;
           its rows skipped without iperf3)

  --quick              smaller runs and 3 rounds (under two minutes on 2 CPUs)
  --only PART,...      these parts only
  --skip PART,...      all parts but these
  --out DIR            where to write suite-PART.json, suite-*.svg and suite.md
                       (default: docs/bench of the repository)
  --rounds N           rounds per comparison (default 5; 3 with --quick)
  --modes LIST         modes to compare (default latency,throughput,efficiency)
  --workers LIST       copy-worker counts of `scaling` (default: 1, 2, 4, ... up to
                       one fewer than the CPUs, at most 16)
  --pairs LIST         concurrent stream pairs of `scaling` (default: 1, 2, 4, ...
                       up to the CPUs)
  --lib FILE           the library (default target/release/libipc_offload.so)
  --allow-kernel-path  exit 0 even when a run that should have used the shared-memory
                       path moved no byte on it (the row is marked either way)

Exit status: 0; 1 when a part failed or a run missed the fast path; 2 on a
usage error or a missing library.
";

struct Args {
    quick: bool,
    parts: Vec<Part>,
    out: PathBuf,
    rounds: usize,
    modes: Vec<String>,
    workers: Vec<usize>,
    pairs: Vec<usize>,
    lib: PathBuf,
    allow_kernel_path: bool,
}

fn parse_args(args: &[String], root: &Path) -> Result<Option<Args>, String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut a = Args {
        quick: false,
        parts: Part::ALL.to_vec(),
        out: root.join("docs/bench"),
        rounds: 0,
        modes: MODES.iter().map(|m| m.to_string()).collect(),
        workers: default_workers(cpus),
        pairs: default_pairs(cpus),
        lib: root.join("target/release/libipc_offload.so"),
        allow_kernel_path: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--only" => a.parts = Part::parse_list(&value("--only")?)?,
            "--skip" => {
                let skip = Part::parse_list(&value("--skip")?)?;
                a.parts.retain(|p| !skip.contains(p));
            }
            "--out" => a.out = value("--out")?.into(),
            "--rounds" => {
                a.rounds = value("--rounds")?
                    .parse()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or("--rounds needs a count from 1 to 100")?
            }
            "--modes" => a.modes = parse_modes(&value("--modes")?)?,
            "--workers" => a.workers = parse_counts(&value("--workers")?)?,
            "--pairs" => a.pairs = parse_counts(&value("--pairs")?)?,
            "--lib" => a.lib = value("--lib")?.into(),
            "--allow-kernel-path" => a.allow_kernel_path = true,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.parts.is_empty() {
        return Err("--skip left no part to run".into());
    }
    if a.rounds == 0 {
        a.rounds = if a.quick { 3 } else { 5 };
    }
    Ok(Some(a))
}

/// The command line as a person would type it (for the reports).
fn command_line(args: &[String]) -> String {
    let quote = |a: &String| {
        if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./,=:".contains(c)) {
            a.clone()
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    std::iter::once("target/release/bench-suite".to_owned()).chain(args.iter().map(quote)).collect::<Vec<_>>().join(" ")
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = memcpy::phase_main(&args, "bench-suite") {
        return code;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).to_path_buf();
    let a = match parse_args(&args, &root) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("bench-suite: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !a.lib.exists() {
        eprintln!("bench-suite: {} is missing: run `cargo build --release` first (or scripts/bench)", a.lib.display());
        return ExitCode::from(2);
    }
    let scratch = std::env::temp_dir().join(format!("bench-suite-{}", std::process::id()));
    let outcome = drive(&root, a, &args, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench-suite: {e}");
            ExitCode::FAILURE
        }
    }
}

fn plan(ctx: &Ctx, part: Part) -> f64 {
    match part {
        Part::Memcpy => copies::plan_memcpy(ctx),
        Part::Hook => copies::plan_hook(ctx),
        Part::Cache => copies::plan_cache(ctx),
        Part::Shm => 2.0,
        Part::Stream => transfers::plan_stream(ctx),
        Part::Reqresp => transfers::plan_reqresp(ctx),
        Part::Evloop => evloop::plan_evloop(ctx),
        Part::Scaling => copies::plan_scaling(ctx) + transfers::plan_scaling(ctx),
        Part::Dd => programs::plan_dd(ctx),
        Part::Python => programs::plan_python(ctx),
        Part::Redis => programs::plan_redis(ctx),
        Part::Tcp => tcp::plan_tcp(ctx),
    }
}

fn run_part(ctx: &mut Ctx, part: Part) -> Result<PartResult, String> {
    match part {
        Part::Memcpy => copies::run_memcpy(ctx),
        Part::Hook => copies::run_hook(ctx),
        Part::Cache => copies::run_cache(ctx),
        Part::Shm => copies::run_shm(ctx),
        Part::Stream => transfers::run_stream(ctx),
        Part::Reqresp => transfers::run_reqresp(ctx),
        Part::Evloop => evloop::run_evloop(ctx),
        Part::Scaling => transfers::run_scaling(ctx),
        Part::Dd => programs::run_dd(ctx),
        Part::Python => programs::run_python(ctx),
        Part::Redis => programs::run_redis(ctx),
        Part::Tcp => tcp::run_tcp(ctx),
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The command for the charts' subtitles: without where the files went or
/// which library file ran, which do not change what was measured.
fn chart_command(args: &[String]) -> String {
    let mut kept = vec![];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--out" || a == "--lib" {
            it.next();
        } else {
            kept.push(a.clone());
        }
    }
    command_line(&kept).replacen("target/release/", "", 1)
}

fn drive(root: &Path, a: Args, args: &[String], scratch: &Path) -> Result<ExitCode, String> {
    let command = &command_line(args);
    std::fs::create_dir_all(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let program = scratch.join("ipc_bench");
    ipc::compile(root, &program)?;
    let python = ipc::python();
    let mut ctx = Ctx {
        root: root.to_path_buf(),
        lib: a.lib.clone(),
        scratch: scratch.to_path_buf(),
        program,
        python,
        quick: a.quick,
        rounds: a.rounds,
        modes: a.modes.clone(),
        workers: a.workers.clone(),
        pairs: a.pairs.clone(),
        progress: Progress::new(1.0, a.parts.len()),
    };
    let total: f64 = a.parts.iter().map(|p| plan(&ctx, *p)).sum();
    ctx.progress = Progress::new(total, a.parts.len());
    let date = machine::today();
    let machine = machine::describe();
    let lib = a.lib.strip_prefix(root).unwrap_or(&a.lib).display().to_string();
    let shared = json!({
        "command": command,
        "date": date,
        "machine": machine,
        "library": lib,
        "quick": a.quick,
        "rounds": a.rounds,
        "modes": a.modes,
        "order": "each round runs the baseline and every variant once, forward in even rounds and backward in odd ones; a variant's speedups are over the baseline of the same round",
    });
    let subtitle = format!(
        "{} ({}), {date}, {}",
        machine["cpu"].as_str().unwrap_or("?"),
        machine["summary"].as_str().unwrap_or("?"),
        chart_command(args),
    );
    let mut results = vec![];
    let mut failed = vec![];
    let mut written = vec![];
    for &part in &a.parts {
        ctx.progress.part(part.name());
        let started = ctx.progress.elapsed();
        let result = run_part(&mut ctx, part).unwrap_or_else(|e| {
            eprintln!("bench-suite: part {} failed: {e}", part.name());
            failed.push(part.name());
            PartResult::skipped(part, format!("failed: {e}"))
        });
        let mut json = result.to_json(&shared);
        json["elapsed_s"] = json!((ctx.progress.elapsed() - started).round());
        let file = a.out.join(format!("suite-{}.json", part.name()));
        let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
        write(&file, &(text + "\n"))?;
        written.push(file);
        let (charts, left_out) = draw_part(&result, &subtitle, &a.out)?;
        for why in left_out {
            ctx.progress.say(&format!("chart left out: {why}"));
        }
        written.extend(charts);
        results.push(result);
    }
    // Across parts: the programs' speedups, and the headline's.
    let programs: Vec<&Row> = results.iter().flat_map(|p| &p.rows).filter(|r| r.group == programs::GROUP).collect();
    let headline_owned = headline_chart_rows(&results, &a.modes);
    let headline: Vec<&Row> = headline_owned.iter().collect();
    for (file, title, rows) in [
        ("suite-programs.svg", "Real programs: speedup over the kernel path, by mode", programs),
        ("suite-headline.svg", "Speedup over the kernel path and glibc, by mode", headline),
    ] {
        if rows.is_empty() {
            continue;
        }
        let spec = ChartSpec {
            file: file.into(),
            title: title.into(),
            y: "x (above 1: the library is better)".into(),
            group: String::new(),
            kind: ChartKind::Speedups,
        };
        written.push(draw(&spec, &rows, &subtitle, &a.out).map_err(|e| format!("{file}: {e}"))?);
    }
    let elapsed = ctx.progress.elapsed();
    let heading = format!(
        "## bench-suite\n\n{} ({}), {date}, `{command}`, {} in all.\n\n{} rounds per comparison; a round runs the kernel path (or glibc) and the library in each mode ({}) once each, forward in even rounds and backward in odd ones. Figures are medians of the runs; in bold, the median of each round's speedup over the baseline of the same round (above 1: the library is better; for times and CPU, the baseline's over the library's), with the range of the rounds in the part tables. Fast path: the share of the stats class's bytes the library moved through shared memory.",
        machine["cpu"].as_str().unwrap_or("?"),
        machine["summary"].as_str().unwrap_or("?"),
        clock(elapsed),
        a.rounds,
        a.modes.join(", "),
    );
    let md = report(&heading, &results, &a.modes);
    print!("{md}");
    let md_file = a.out.join("suite.md");
    write(&md_file, &md)?;
    written.push(md_file);
    eprintln!("bench-suite: done in {}; wrote {} files in {}", clock(elapsed), written.len(), a.out.display());
    let missing: Vec<String> = results
        .iter()
        .flat_map(|p| &p.rows)
        .filter(|r| !r.missing_fast_path().is_empty())
        .map(|r| format!("{} ({})", r.key, r.missing_fast_path().join(", ")))
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "bench-suite: {}: the library moved no byte through shared memory in runs that should have: {}",
            if a.allow_kernel_path { "warning" } else { "error" },
            missing.join("; ")
        );
    }
    if !failed.is_empty() {
        eprintln!("bench-suite: failed parts: {}", failed.join(", "));
    }
    let bad = !failed.is_empty() || (!missing.is_empty() && !a.allow_kernel_path);
    Ok(if bad { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Option<Args>, String> {
        let v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        parse_args(&v, Path::new("/repo"))
    }

    #[test]
    fn arguments() {
        let a = args(&["--quick", "--only", "stream,memcpy", "--modes", "latency"]).unwrap().unwrap();
        assert!(a.quick);
        assert_eq!(a.rounds, 3);
        assert_eq!(a.parts, vec![Part::Memcpy, Part::Stream]);
        assert_eq!(a.modes, vec!["latency".to_owned()]);
        assert_eq!(a.out, Path::new("/repo/docs/bench"));
        let a = args(&["--skip", "redis,python", "--rounds", "7", "--workers", "2,1", "--out", "x"]).unwrap().unwrap();
        assert_eq!(a.rounds, 7);
        assert_eq!(a.workers, vec![1, 2]);
        assert_eq!(a.out, Path::new("x"));
        assert!(!a.parts.contains(&Part::Redis) && a.parts.contains(&Part::Dd));
        assert!(args(&["--help"]).unwrap().is_none());
        assert!(args(&["--rounds", "0"]).is_err());
        assert!(args(&["--only", "gpu"]).is_err());
        assert!(args(&["--skip", "memcpy,hook,cache,shm,stream,reqresp,evloop,scaling,dd,python,redis,tcp"]).is_err());
        let a = args(&["--quick", "--only", "evloop"]).unwrap().unwrap();
        assert_eq!(a.parts, vec![Part::Evloop]);
        let a = args(&["--skip", "reqresp,scaling"]).unwrap().unwrap();
        let i = a.parts.iter().position(|p| *p == Part::Evloop).unwrap();
        assert_eq!((a.parts[i - 1], a.parts[i + 1]), (Part::Stream, Part::Dd));
        assert!(args(&["--bogus"]).is_err());
    }

    #[test]
    fn usage_lists_every_part_in_its_order() {
        let at: Vec<usize> = Part::ALL
            .iter()
            .map(|p| {
                USAGE.find(&format!("\n  {:<9}", p.name())).unwrap_or_else(|| panic!("{} is not listed", p.name()))
            })
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}");
    }

    #[test]
    fn command_lines_are_quoted() {
        let v: Vec<String> = ["--quick", "--out", "/tmp/a b"].iter().map(|s| s.to_string()).collect();
        assert_eq!(command_line(&v), "target/release/bench-suite --quick --out '/tmp/a b'");
        assert_eq!(chart_command(&v), "bench-suite --quick");
    }
}
