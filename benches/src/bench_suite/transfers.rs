//! The IPC parts over benches/c/ipc_bench.c: streams by write size
//! (throughput and CPU per GiB from the same runs), request/response and
//! ping-pong, and the IPC sweeps of `scaling` (concurrent pairs, copy
//! workers).

use serde_json::{Value, json};

use ipc_offload_bench::ipc::{self, Measure, Sample, Workload};
use ipc_offload_bench::size_label;
use ipc_offload_bench::stats::{Better, figure};
use ipc_offload_bench::suite::results::{ChartKind, ChartSpec, PartResult, Row};
use ipc_offload_bench::suite::{Part, ipc_workers_policy};

use crate::ctx::{Ctx, RowSpec, SideSpec, row, size_key, text};

/// Write (and read) sizes of the streams.
pub const STREAM_SIZES: [u64; 5] = [64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20];

/// The library's built-in `[unix]`/`[pipe]` `min_bytes`: smaller calls stay
/// on the kernel path.
const IPC_MIN_BYTES: u64 = 256 << 10;

const TRANSPORTS: [(&str, &str); 2] = [("unix", "Unix socket"), ("pipe", "pipe")];

/// Bytes of one stream run.
fn stream_total(quick: bool) -> u64 {
    if quick { 256 << 20 } else { 1 << 30 }
}

fn workload(ctx: &Ctx, key: String, class: &'static str, args: &[String]) -> Workload {
    Workload {
        key,
        title: String::new(),
        unit: "",
        better: Better::Higher,
        target: (0.0, ""),
        expects_fast_path: false,
        class,
        measure: Measure::Printed,
        argv: std::iter::once(text(&ctx.program)).chain(args.iter().cloned()).collect(),
    }
}

/// `ipc_bench xfer`: GB/s, CPU s/GiB, and the clock at its start and end.
fn xfer(ctx: &Ctx, transport: &'static str, size: u64, total: u64) -> Workload {
    let args = ["xfer".to_owned(), transport.into(), total.to_string(), size.to_string(), size.to_string()];
    workload(ctx, format!("{transport}-xfer-{}", size_key(size)), transport, &args)
}

/// Write size of the stream to a consumer.
const CONSUMER_SIZE: u64 = 1 << 20;

/// `ipc_bench xfer ... 1`: the same stream to a reader that adds up every
/// byte it reads before its next read, slower than the copies, so that the
/// writer waits for it, and how each mode waits shows in the CPU figure.
fn xfer_to_consumer(ctx: &Ctx, transport: &'static str, total: u64) -> Workload {
    let size = CONSUMER_SIZE.to_string();
    let args = ["xfer".to_owned(), transport.into(), total.to_string(), size.clone(), size, "1".into()];
    workload(ctx, format!("{transport}-consumer-{}", size_key(CONSUMER_SIZE)), transport, &args)
}

pub fn plan_stream(ctx: &Ctx) -> f64 {
    (TRANSPORTS.len() * (STREAM_SIZES.len() + 1) * ctx.rounds * (1 + ctx.modes.len())) as f64
}

pub fn plan_reqresp(ctx: &Ctx) -> f64 {
    (4 * ctx.rounds * (1 + ctx.modes.len())) as f64
}

/// The connection-per-request row: connections, and each message's size.
fn conns(quick: bool) -> (u64, u64) {
    (if quick { 500 } else { 2_000 }, 4 << 20)
}

pub fn plan_scaling(ctx: &Ctx) -> f64 {
    let pairs = TRANSPORTS.len() * ctx.pairs.len() * ctx.rounds * 2;
    let workers = TRANSPORTS.len() * ctx.rounds * (2 + ctx.workers.len());
    (pairs + workers) as f64
}

/// Runs `w` on every side, alternating; the stats of the library's runs
/// are checked by the rows. (The real programs' part uses it too.)
pub(crate) fn compare(
    ctx: &mut Ctx,
    label: &str,
    w: &Workload,
    sides: &[SideSpec],
    unit: &str,
) -> Result<Vec<Vec<Sample>>, String> {
    ctx.alternate(
        label,
        sides,
        |ctx, side| ipc::run(w, ctx.side(side), &ctx.stats_dir(&w.key, side)),
        |s| format!("{} {unit}", figure(s.value)),
    )
}

/// Pipe and Unix-socket streams by write size, kernel against each mode.
pub fn run_stream(ctx: &mut Ctx) -> Result<PartResult, String> {
    let sides = ctx.kernel_and_modes()?;
    let total = stream_total(ctx.quick);
    let mut rows = vec![];
    for (transport, what) in TRANSPORTS {
        let mut cpu_rows = vec![];
        for size in STREAM_SIZES {
            let w = xfer(ctx, transport, size, total);
            let samples = compare(ctx, &format!("{what} stream, {} writes", size_label(size)), &w, &sides, "GB/s")?;
            let below = size < IPC_MIN_BYTES;
            let note = below.then(|| {
                format!(
                    "below `[{transport}] min_bytes` ({}): the library leaves these calls to the kernel, so its figures measure the hooks' overhead",
                    size_label(IPC_MIN_BYTES)
                )
            });
            let spec = RowSpec {
                key: format!("{transport}-stream-{}", size_key(size)),
                title: format!("{what} stream, {} writes and reads", size_label(size)),
                label: size_label(size),
                group: format!("{transport}-throughput"),
                size: Some(size),
                unit: "GB/s",
                better: Better::Higher,
                value: 0,
                expects_fast_path: Some(!below),
                note,
            };
            rows.push(row(&spec, &sides, &samples));
            let cpu = spec.cpu_per_gib(
                format!("{transport}-cpu-{}", size_key(size)),
                format!("{what} stream, {} writes: CPU per GiB (user + sys, both processes)", size_label(size)),
                format!("{transport}-cpu"),
            );
            cpu_rows.push(row(&cpu, &sides, &samples));
        }
        rows.extend(cpu_rows);
        rows.extend(consumer_rows(ctx, transport, what, total, &sides)?);
    }
    let mut charts = vec![];
    for (transport, what) in TRANSPORTS {
        charts.push(ChartSpec {
            file: format!("suite-stream-{transport}.svg"),
            title: format!("{what} stream: throughput by write size, kernel and the library's modes"),
            y: "GB/s".into(),
            group: format!("{transport}-throughput"),
            kind: ChartKind::LinesBySize { x: "bytes per write (and per read)".into() },
        });
        charts.push(ChartSpec {
            file: format!("suite-cpu-{transport}.svg"),
            title: format!("{what} stream: CPU seconds (user + sys, both processes) per GiB moved"),
            y: "CPU s/GiB".into(),
            group: format!("{transport}-cpu"),
            kind: ChartKind::LinesBySize { x: "bytes per write (and per read)".into() },
        });
    }
    Ok(PartResult {
        table: None,
        part: Part::Stream,
        rows,
        notes: vec![
            format!(
                "`ipc_bench xfer`: a writer child sends {} in writes of the size, the parent reads them with reads of the same size; GB/s from the go signal to the last read. CPU: the reader's user + sys time over the same span plus the writer's whole life (getrusage), per GiB.",
                size_label(total)
            ),
            "Each mode is a policy file with `[defaults] mode` alone; LD_PRELOAD, the policy and a stats file are set for both processes.".into(),
        ],
        skipped: None,
        settings: json!({ "total_bytes": total, "sizes": STREAM_SIZES }),
        charts,
    })
}

/// The stream to a consumer: its GB/s and its CPU per GiB, kernel against
/// each mode.
fn consumer_rows(
    ctx: &mut Ctx,
    transport: &'static str,
    what: &str,
    total: u64,
    sides: &[SideSpec],
) -> Result<Vec<Row>, String> {
    let w = xfer_to_consumer(ctx, transport, total);
    let label = format!("{what} stream to a consumer, {} writes", size_label(CONSUMER_SIZE));
    let samples = compare(ctx, &label, &w, sides, "GB/s")?;
    let note = "the reader adds up every byte of each read before the next (`ipc_bench xfer ... 1`), slower than the copies: the writer waits for it, by polling (`latency`), briefly polling (`throughput`) or sleeping (`efficiency`)";
    let spec = RowSpec {
        key: format!("{transport}-consumer-{}", size_key(CONSUMER_SIZE)),
        title: format!("{label} and reads"),
        label: size_label(CONSUMER_SIZE),
        group: format!("{transport}-consumer"),
        size: Some(CONSUMER_SIZE),
        unit: "GB/s",
        better: Better::Higher,
        value: 0,
        expects_fast_path: Some(true),
        note: Some(note.into()),
    };
    let cpu = spec.cpu_per_gib(
        format!("{transport}-consumer-cpu-{}", size_key(CONSUMER_SIZE)),
        format!("{label}: CPU per GiB (user + sys, both processes)"),
        format!("{transport}-consumer"),
    );
    Ok(vec![row(&spec, sides, &samples), row(&cpu, sides, &samples)])
}

/// 64 MiB request/response over a socketpair and over two pipes, and the
/// 64 B ping-pong, kernel against each mode.
pub fn run_reqresp(ctx: &mut Ctx) -> Result<PartResult, String> {
    let sides = ctx.kernel_and_modes()?;
    let size: u64 = 64 << 20;
    let (trips, pings) = if ctx.quick { (5, 5_000) } else { (20, 20_000) };
    let mut rows = vec![];
    for (transport, what, mode) in [("unix", "Unix socket", "reqresp"), ("pipe", "pipes", "pipe-reqresp")] {
        let w = workload(
            ctx,
            format!("{transport}-reqresp"),
            transport,
            &[mode.into(), size.to_string(), trips.to_string()],
        );
        let samples = compare(ctx, &format!("64 MiB request/response, {what}"), &w, &sides, "µs")?;
        let spec = RowSpec {
            key: format!("{transport}-reqresp-{}", size_key(size)),
            title: format!("{} request, {} reply, {what} (round trip)", size_label(size), size_label(size)),
            label: what.into(),
            group: "reqresp".into(),
            size: Some(size),
            unit: "µs",
            better: Better::Lower,
            value: 0,
            expects_fast_path: Some(true),
            note: None,
        };
        rows.push(row(&spec, &sides, &samples));
    }
    let w = workload(ctx, "unix-pingpong".into(), "unix", &["pingpong".into(), pings.to_string(), "64".into()]);
    let samples = compare(ctx, "64 B ping-pong, Unix socket", &w, &sides, "ns")?;
    let spec = RowSpec {
        key: "unix-pingpong-64B".into(),
        title: "64 B ping-pong, Unix socket (round trip)".into(),
        label: "64 B".into(),
        group: "pingpong".into(),
        size: Some(64),
        unit: "ns",
        better: Better::Lower,
        value: 0,
        expects_fast_path: Some(false),
        note: Some("below every threshold: what the hooks add to a small message".into()),
    };
    rows.push(row(&spec, &sides, &samples));
    let (count, message) = conns(ctx.quick);
    let args = ["conns".to_owned(), count.to_string(), message.to_string()];
    let w = workload(ctx, "unix-conns".into(), "unix", &args);
    let samples = compare(ctx, "a connection per 4 MiB request, Unix socket", &w, &sides, "requests/s")?;
    let spec = RowSpec {
        key: format!("unix-conns-{}", size_key(message)),
        title: format!(
            "a new connection per request, {} request and {} reply, Unix socket",
            size_label(message),
            size_label(message)
        ),
        label: "connection per request".into(),
        group: "conns".into(),
        size: Some(message),
        unit: "requests/s",
        better: Better::Higher,
        value: 0,
        expects_fast_path: Some(false),
        note: Some("one 4 MiB message each way per connection: the library leaves such connections to the kernel (docs/ipc-protocol.md, \"A connection earns the fast path\")".into()),
    };
    rows.push(row(&spec, &sides, &samples));
    Ok(PartResult {
        table: None,
        part: Part::Reqresp,
        rows,
        notes: vec![format!(
            "Request/response: the median of {trips} round trips per run after a warm-up one; the socket's reads use MSG_WAITALL, the pipes' a loop of read(2). Ping-pong: {pings} round trips per run. Connection per request: `ipc_bench conns {count} {message}`, requests per second over {count} connections after a warm-up one (connect, send, MSG_WAITALL reply, close)."
        )],
        skipped: None,
        settings: json!({ "message_bytes": size, "round_trips": trips, "pings": pings, "connections": count, "connection_message_bytes": message }),
        charts: vec![ChartSpec {
            file: "suite-reqresp.svg".into(),
            title: "64 MiB request, 64 MiB reply: round trip, kernel and the library's modes".into(),
            y: "µs per round trip".into(),
            group: "reqresp".into(),
            kind: ChartKind::Bars,
        }],
    })
}

/// `copies` streams at once; the aggregate GB/s (every copy's bytes over
/// the span from the first go signal to the last read).
fn concurrent(ctx: &Ctx, w: &Workload, side: &SideSpec, copies: usize, total: u64) -> Result<Sample, String> {
    let samples = ipc::run_concurrently(w, ctx.side(side), &ctx.stats_dir(&w.key, side), copies)?;
    let start = samples.iter().filter_map(|s| s.values.get(2)).copied().fold(f64::INFINITY, f64::min);
    let end = samples.iter().filter_map(|s| s.values.get(3)).copied().fold(f64::NEG_INFINITY, f64::max);
    // No clock readings: start is infinite, end minus infinite.
    if end <= start {
        return Err(format!("{}: no clock readings in its output", w.key));
    }
    let gbps = (copies as u64 * total) as f64 / (end - start) / 1e9;
    Ok(Sample {
        value: gbps,
        values: vec![gbps],
        fast_path_bytes: samples.iter().map(|s| s.fast_path_bytes).sum(),
        kernel_path_bytes: samples.iter().map(|s| s.kernel_path_bytes).sum(),
    })
}

/// The IPC sweeps of `scaling`: concurrent stream pairs (kernel against
/// the built-in policy), and the IPC classes' copy workers.
pub fn ipc_scaling(ctx: &mut Ctx) -> Result<(Vec<Row>, Value), String> {
    let total = stream_total(ctx.quick);
    let size: u64 = 1 << 20;
    let builtin = SideSpec { name: "library (built-in policy)".into(), library: true, policy: None };
    let pair_sides = vec![SideSpec::kernel(), builtin.clone()];
    let mut rows = vec![];
    for (transport, what) in TRANSPORTS {
        for &p in &ctx.pairs.clone() {
            let w = xfer(ctx, transport, size, total);
            let label = format!("{what}, {p} pair{}", if p == 1 { "" } else { "s" });
            let samples = ctx.alternate(
                &format!("{label} at once, 1 MiB writes"),
                &pair_sides,
                |ctx, side| concurrent(ctx, &w, side, p, total),
                |s| format!("{} GB/s in all", figure(s.value)),
            )?;
            let spec = RowSpec {
                key: format!("scaling-{transport}-pairs-{p}"),
                title: format!("{label} at once, 1 MiB writes (aggregate)"),
                label,
                group: "scaling-pairs".into(),
                size: None,
                unit: "GB/s",
                better: Better::Higher,
                value: 0,
                expects_fast_path: Some(true),
                note: None,
            };
            rows.push(row(&spec, &pair_sides, &samples));
        }
    }
    let mut worker_sides = pair_sides.clone();
    for &n in &ctx.workers {
        let policy = ctx.policy_file(&format!("ipc-workers-{n}"), &ipc_workers_policy(n))?;
        worker_sides.push(SideSpec {
            name: format!("async-cpu, {n} worker{}", if n == 1 { "" } else { "s" }),
            library: true,
            policy: Some(policy),
        });
    }
    for (transport, what) in TRANSPORTS {
        let w = xfer(ctx, transport, size, total);
        let samples = compare(ctx, &format!("{what} stream by copy workers"), &w, &worker_sides, "GB/s")?;
        let spec = RowSpec {
            key: format!("scaling-{transport}-workers"),
            title: format!("{what} stream, 1 MiB writes, by the class's copy workers"),
            label: what.into(),
            group: "scaling-ipc-workers".into(),
            size: None,
            unit: "GB/s",
            better: Better::Higher,
            value: 0,
            expects_fast_path: Some(true),
            note: None,
        };
        rows.push(row(&spec, &worker_sides, &samples));
    }
    let settings = json!({ "ipc_total_bytes_per_pair": total, "ipc_write_bytes": size, "pairs": ctx.pairs, "ipc_workers": ctx.workers });
    Ok((rows, settings))
}

/// The `scaling` part: memcpy workers, concurrent pairs, IPC copy workers.
pub fn run_scaling(ctx: &mut Ctx) -> Result<PartResult, String> {
    let (mut rows, mut settings) = crate::copies::memcpy_workers(ctx)?;
    let (ipc_rows, ipc_settings) = ipc_scaling(ctx)?;
    rows.extend(ipc_rows);
    if let (Some(s), Some(i)) = (settings.as_object_mut(), ipc_settings.as_object()) {
        s.extend(i.clone());
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(PartResult {
        table: None,
        part: Part::Scaling,
        rows,
        notes: vec![
            format!(
                "Sweeps sized for this machine ({cpus} CPUs; `--workers` and `--pairs` set them): on a many-core machine run `bench-suite --only scaling --workers 1,2,4,8,16 --pairs 1,2,4,8,16`."
            ),
            "memcpy: `[memcpy] engine = \"async-cpu\"`, `min_bytes = \"4KiB\"`, `workers = N`, throughput mode, cold buffers; glibc and the hook alternate in each process.".into(),
            "Pairs: N writer/reader pairs of `ipc_bench xfer` at once; GB/s of all of them over the span from the first go signal to the last read (CLOCK_MONOTONIC, the same in every process).".into(),
            "Copy workers: `[unix]` and `[pipe]` `engine = \"async-cpu\"`, `workers = N`, against the built-in policy (`auto`: async-cpu only from 3 CPUs up).".into(),
        ],
        skipped: None,
        settings,
        charts: vec![
            ChartSpec {
                file: "suite-scaling-memcpy.svg".into(),
                title: "memcpy, cold buffers: glibc and async-cpu by copy workers".into(),
                y: "GB/s".into(),
                group: "scaling-memcpy".into(),
                kind: ChartKind::Bars,
            },
            ChartSpec {
                file: "suite-scaling-pairs.svg".into(),
                title: "Concurrent stream pairs, 1 MiB writes: aggregate throughput".into(),
                y: "GB/s (all pairs)".into(),
                group: "scaling-pairs".into(),
                kind: ChartKind::Bars,
            },
            ChartSpec {
                file: "suite-scaling-ipc-workers.svg".into(),
                title: "Streams, 1 MiB writes: the IPC classes' copy workers".into(),
                y: "GB/s".into(),
                group: "scaling-ipc-workers".into(),
                kind: ChartKind::Bars,
            },
        ],
    })
}
