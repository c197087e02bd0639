//! The `tcp` part: TCP over loopback (docs/ipc-protocol.md, "TCP over
//! loopback"), the kernel path against the library in each mode: a stream,
//! 64 MiB request/response through blocking calls and through epoll loops,
//! a 64 B ping-pong, and iperf3 (the redis rows over TCP are in the `redis`
//! part, beside its Unix-socket rows).

use serde_json::json;

use ipc_offload_bench::ipc::{self, Measure, Workload, find_program};
use ipc_offload_bench::size_label;
use ipc_offload_bench::stats::Better;
use ipc_offload_bench::suite::Part;
use ipc_offload_bench::suite::results::{ChartKind, ChartSpec, PartResult, Row};

use crate::ctx::{Ctx, RowSpec, SideSpec, row, size_key, text};
use crate::programs::free_port;
use crate::transfers::compare;

/// The request and the reply of the request/response rows.
const MESSAGE: u64 = 64 << 20;
/// The stream's write and read size.
const STREAM_WRITES: u64 = 1 << 20;

/// Bytes of a stream run.
fn stream_total(quick: bool) -> u64 {
    if quick { 256 << 20 } else { 1 << 30 }
}

/// Round trips of a request/response run, and of a ping-pong run.
fn trips(quick: bool) -> (u64, u64) {
    if quick { (5, 5_000) } else { (20, 20_000) }
}

/// Seconds of an iperf3 run.
fn iperf_seconds(quick: bool) -> u64 {
    if quick { 3 } else { 10 }
}

/// iperf3's write sizes: its default (128 KiB, below the built-in `[tcp]
/// min_bytes`), and 1 MiB.
const IPERF_WRITES: [(Option<u64>, &str); 2] = [(None, "default 128 KiB writes"), (Some(1 << 20), "1 MiB writes")];

/// What the library sides of the write-behind iperf3 row add to their
/// policies: iperf3's default writes take the fast path, and its
/// nonblocking writer's writes return once placed.
const IPERF_WRITE_BEHIND: &str = "\n[tcp]\nwrite_behind = true\nmin_bytes = \"128KiB\"\n";

pub fn plan_tcp(ctx: &Ctx) -> f64 {
    let iperf = if find_program("iperf3").is_some() { IPERF_WRITES.len() + 1 } else { 0 };
    ((4 + iperf) * ctx.rounds * (1 + ctx.modes.len())) as f64
}

fn workload(key: String, unit: &'static str, better: Better, argv: Vec<String>, measure: Measure) -> Workload {
    Workload {
        key,
        title: String::new(),
        unit,
        better,
        target: (0.0, ""),
        expects_fast_path: false,
        class: "tcp",
        measure,
        argv,
    }
}

/// One workload's row, after its runs on every side.
fn measured(ctx: &mut Ctx, sides: &[SideSpec], w: &Workload, spec: RowSpec, label: &str) -> Result<Row, String> {
    let samples = compare(ctx, label, w, sides, spec.unit)?;
    Ok(row(&spec, sides, &samples))
}

/// The row of iperf3 workload `w` (writes of `writes` bytes, iperf3's
/// default if None; `what` in words), run on `sides`; `fast`: its stream
/// is expected on the fast path.
fn iperf_row(
    ctx: &mut Ctx,
    sides: &[SideSpec],
    w: Workload,
    (writes, what): (Option<u64>, &str),
    fast: bool,
    note: Option<String>,
) -> Result<Row, String> {
    let spec = RowSpec {
        key: w.key.clone(),
        title: format!("iperf3 -c 127.0.0.1, {what}, {} s", iperf_seconds(ctx.quick)),
        label: format!("iperf3, {what}"),
        group: "tcp-throughput".into(),
        size: writes,
        unit: "Gbit/s",
        better: Better::Higher,
        value: 0,
        expects_fast_path: Some(fast),
        note,
    };
    measured(ctx, sides, &w, spec, &format!("iperf3, {what}"))
}

/// iperf3's received throughput in Gbit/s, from its `-J` report.
pub fn parse_iperf_json(out: &str) -> Result<Vec<f64>, String> {
    let start = out.find('{').ok_or(format!("no JSON in iperf3's output: {out:?}"))?;
    let v: serde_json::Value = serde_json::from_str(&out[start..]).map_err(|e| format!("iperf3's JSON: {e}"))?;
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or(format!("no end.sum_received.bits_per_second in iperf3's report: {}", v["error"]))?;
    Ok(vec![bps / 1e9])
}

/// One iperf3 run: a one-off server and the client, both under the side's
/// LD_PRELOAD (a shell starts them).
fn iperf(ctx: &Ctx, iperf3: &str, writes: Option<u64>) -> Result<Workload, String> {
    let port = free_port()?;
    let length = writes.map_or(String::new(), |n| format!(" -l {n}"));
    let seconds = iperf_seconds(ctx.quick);
    let script = format!(
        "{iperf3} -s -1 -p {port} >/dev/null 2>&1 & sleep 0.5; {iperf3} -c 127.0.0.1 -p {port} -t {seconds}{length} -J; s=$?; wait; exit $s"
    );
    let key = format!("tcp-iperf3-{}", writes.map_or("default".into(), size_key));
    let argv = vec!["/bin/sh".into(), "-c".into(), script];
    Ok(workload(key, "Gbit/s", Better::Higher, argv, Measure::Parsed(parse_iperf_json)))
}

/// Every row of the part, kernel against each mode.
pub fn run_tcp(ctx: &mut Ctx) -> Result<PartResult, String> {
    let sides = ctx.kernel_and_modes()?;
    let evloop = ctx.scratch.join("evloop_bench");
    ipc::compile_program(&ctx.root, "evloop_bench", &evloop)?;
    let (ipc_bench, evloop) = (text(&ctx.program), text(&evloop));
    let total = stream_total(ctx.quick);
    let (trips, pings) = trips(ctx.quick);
    let mut rows = vec![];

    let argv = [&ipc_bench, "xfer", "tcp4", &total.to_string(), &STREAM_WRITES.to_string(), &STREAM_WRITES.to_string()];
    let w = workload("tcp-xfer".into(), "GB/s", Better::Higher, argv.map(String::from).to_vec(), Measure::Printed);
    let spec = RowSpec {
        key: format!("tcp-stream-{}", size_key(STREAM_WRITES)),
        title: format!("TCP stream over 127.0.0.1, {} writes and reads", size_label(STREAM_WRITES)),
        label: "stream".into(),
        group: "tcp-throughput".into(),
        size: Some(STREAM_WRITES),
        unit: "GB/s",
        better: Better::Higher,
        value: 0,
        expects_fast_path: Some(true),
        note: None,
    };
    rows.push(measured(ctx, &sides, &w, spec, "TCP stream, 1 MiB writes")?);

    let message = MESSAGE.to_string();
    let blocking = [&ipc_bench, "reqresp", &message, &trips.to_string(), "tcp4"];
    let looped = [&evloop, "reqresp", &message, &trips.to_string(), "tcp4"];
    for (argv, what, key) in [(blocking, "blocking calls", "blocking"), (looped, "epoll loops", "epoll")] {
        let w = workload(
            format!("tcp-reqresp-{key}"),
            "µs",
            Better::Lower,
            argv.map(String::from).to_vec(),
            Measure::Printed,
        );
        let spec = RowSpec {
            key: format!("tcp-reqresp-{key}-{}", size_key(MESSAGE)),
            title: format!(
                "{} request, {} reply over TCP (127.0.0.1), {what} (round trip)",
                size_label(MESSAGE),
                size_label(MESSAGE)
            ),
            label: what.into(),
            group: "tcp-reqresp".into(),
            size: Some(MESSAGE),
            unit: "µs",
            better: Better::Lower,
            value: 0,
            expects_fast_path: Some(true),
            note: None,
        };
        rows.push(measured(ctx, &sides, &w, spec, &format!("64 MiB request/response over TCP, {what}"))?);
    }

    let argv = [&ipc_bench, "pingpong", &pings.to_string(), "64", "tcp4"];
    let w = workload("tcp-pingpong".into(), "ns", Better::Lower, argv.map(String::from).to_vec(), Measure::Printed);
    let spec = RowSpec {
        key: "tcp-pingpong-64B".into(),
        title: "64 B ping-pong over TCP (127.0.0.1), blocking calls (round trip)".into(),
        label: "64 B".into(),
        group: "tcp-pingpong".into(),
        size: Some(64),
        unit: "ns",
        better: Better::Lower,
        value: 0,
        expects_fast_path: Some(false),
        note: Some("below every threshold: what the hooks add to a small message".into()),
    };
    rows.push(measured(ctx, &sides, &w, spec, "64 B ping-pong over TCP")?);

    let iperf3 = find_program("iperf3");
    if let Some(iperf3) = &iperf3 {
        let below = "iperf3's default writes (128 KiB) are below the built-in `[tcp] min_bytes` (256 KiB): its figures measure what the hooks cost";
        for (writes, what) in IPERF_WRITES {
            let w = iperf(ctx, &text(iperf3), writes)?;
            let note = writes.is_none().then(|| below.to_owned());
            rows.push(iperf_row(ctx, &sides, w, (writes, what), writes.is_some(), note)?);
        }
        // The default writes again, with write-behind and the threshold at
        // their size (docs/ipc-protocol.md, "Growing an offer behind").
        let behind_sides = ctx.kernel_and_modes_with("-tcp-write-behind", IPERF_WRITE_BEHIND)?;
        let mut w = iperf(ctx, &text(iperf3), None)?;
        w.key = format!("{}-wb", w.key);
        let note = "`[tcp] write_behind = true` and `min_bytes = \"128KiB\"` added to each mode's policy; its kernel column is a kernel run of its own";
        let what = (None, "default 128 KiB writes, write_behind");
        rows.push(iperf_row(ctx, &behind_sides, w, what, true, Some(note.into()))?);
    }
    let mut notes = vec![
        format!(
            "`ipc_bench xfer tcp4 {total} {STREAM_WRITES} {STREAM_WRITES}`: a writer child sends {} over a TCP connection on 127.0.0.1, the parent reads it; GB/s from the go signal to the last read.",
            size_label(total)
        ),
        format!(
            "Request/response: `ipc_bench reqresp {MESSAGE} {trips} tcp4` (blocking calls, MSG_WAITALL reads) and `evloop_bench reqresp {MESSAGE} {trips} tcp4` (both sides nonblocking, waiting in epoll_wait before each recv and for EPOLLOUT when a send finds no room); the median round trip of {trips} after a warm-up one. Ping-pong: `ipc_bench pingpong {pings} 64 tcp4`."
        ),
    ];
    match &iperf3 {
        Some(_) => notes.push(format!(
            "iperf3: `iperf3 -s -1 -p PORT & iperf3 -c 127.0.0.1 -p PORT -t {} [-l 1048576] -J`, both under the side's LD_PRELOAD; the receiver's bits per second.",
            iperf_seconds(ctx.quick)
        )),
        None => notes.push("iperf3 is not installed (`apt-get install iperf3`): its rows are left out".into()),
    }
    Ok(PartResult {
        table: None,
        part: Part::Tcp,
        rows,
        notes,
        skipped: None,
        settings: json!({ "stream_bytes": total, "message_bytes": MESSAGE, "round_trips": trips, "pings": pings, "iperf_seconds": iperf_seconds(ctx.quick) }),
        charts: vec![ChartSpec {
            file: "suite-tcp-reqresp.svg".into(),
            title: "64 MiB request, 64 MiB reply over TCP loopback: round trip, kernel and the library's modes".into(),
            y: "µs per round trip".into(),
            group: "tcp-reqresp".into(),
            kind: ChartKind::Bars,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iperf3_json_gives_the_receivers_rate() {
        let out =
            r#"{"start":{},"end":{"sum_sent":{"bits_per_second":2.5e10},"sum_received":{"bits_per_second":2.4e10}}}"#;
        assert_eq!(parse_iperf_json(out), Ok(vec![24.0]));
        assert!(parse_iperf_json("iperf3: error - unable to connect").unwrap_err().contains("no JSON"));
        let failed = r#"{"start":{},"end":{},"error":"unable to connect to server"}"#;
        assert!(parse_iperf_json(failed).unwrap_err().contains("unable to connect"));
    }
}
