//! The `evloop` part: event loops on nonblocking Unix sockets, over
//! benches/c/evloop_bench.c (select and poll relays, epoll readers, an
//! epoll ping-pong) and benches/python/asyncio_bench.py, the kernel path
//! against the library in each mode.

use std::path::Path;

use serde_json::json;

use ipc_offload_bench::ipc::{self, Measure, Sample, Workload};
use ipc_offload_bench::size_label;
use ipc_offload_bench::stats::{Better, figure};
use ipc_offload_bench::suite::Part;
use ipc_offload_bench::suite::results::{ChartKind, ChartSpec, PartResult};

use crate::ctx::{Ctx, RowSpec, row, size_key, text};

/// The relays: what the relay waits in, and its buffer's bytes (the
/// source's writes and the sink's reads are as large).
pub const RELAYS: [(&str, u64); 3] = [("select", 1 << 20), ("poll", 1 << 20), ("select", 16 << 10)];

/// The epoll readers: `evloop_bench epoll`'s argument and what it is.
pub const READERS: [(&str, &str); 2] = [("lt", "level-triggered"), ("et", "edge-triggered (EPOLLET)")];

/// One message of the epoll readers.
pub const MESSAGE: u64 = 64 << 20;

/// The ping-pong's message.
pub const PING: u64 = 64;

/// The library's built-in `[unix]` `min_bytes`: smaller calls stay on the
/// kernel path.
const UNIX_MIN_BYTES: u64 = 256 << 10;

/// Bytes through each relay run.
pub fn relay_total(quick: bool) -> u64 {
    if quick { 256 << 20 } else { 512 << 20 }
}

/// Messages of an epoll reader's run.
pub fn messages(quick: bool) -> u64 {
    if quick { 8 } else { 16 }
}

/// Round trips of a ping-pong run.
pub fn pings(quick: bool) -> u64 {
    if quick { 5_000 } else { 20_000 }
}

/// The epoll echo server's connections and message, and rounds per run.
pub const SERVER_CONNS: u64 = 1_000;
pub const SERVER_MESSAGE: u64 = 1 << 20;
pub fn server_rounds(quick: bool) -> u64 {
    if quick { 4 } else { 8 }
}

/// MiB of the asyncio message.
pub fn asyncio_mib(quick: bool) -> u64 {
    if quick { 64 } else { 256 }
}

/// One workload of the part and the rows made of its runs.
#[derive(Clone, Debug)]
pub struct Case {
    pub workload: Workload,
    /// For the progress lines.
    pub label: String,
    /// The units of the figures a run prints, in their order.
    pub units: &'static [&'static str],
    pub rows: Vec<RowSpec>,
}

/// What a run measured, for the progress lines: "0.21 s, 2.50 GB/s".
pub fn show(units: &[&str], s: &Sample) -> String {
    s.values.iter().zip(units).map(|(v, u)| format!("{} {u}", figure(*v))).collect::<Vec<_>>().join(", ")
}

fn workload(key: String, units: &'static [&'static str], better: Better, fast: bool, argv: Vec<String>) -> Workload {
    Workload {
        key,
        title: String::new(),
        unit: units[0],
        better,
        target: (0.0, ""),
        expects_fast_path: fast,
        class: "unix",
        measure: Measure::Printed,
        argv,
    }
}

fn spec(key: String, title: String, label: String, group: &str, unit: &'static str, value: usize) -> RowSpec {
    RowSpec {
        key,
        title,
        label,
        group: group.into(),
        size: None,
        unit,
        better: if unit == "GB/s" { Better::Higher } else { Better::Lower },
        value,
        expects_fast_path: None,
        note: None,
    }
}

/// The relays' cases: wall time and GB/s, and the CPU per GiB of the first
/// (select, 1 MiB).
fn relay_cases(quick: bool, program: &str) -> Vec<Case> {
    const UNITS: &[&str] = &["s", "GB/s", "CPU s/GiB"];
    let total = relay_total(quick);
    RELAYS
        .iter()
        .enumerate()
        .map(|(i, &(waiter, size))| {
            let below = size < UNIX_MIN_BYTES;
            let name = format!("evloop-relay-{waiter}-{}", size_key(size));
            let what = format!("{waiter}() relay, {} buffers", size_label(size));
            let argv = [program, "relay", waiter, &total.to_string(), &size.to_string()].map(String::from).to_vec();
            let label = format!("{waiter}, {}", size_label(size));
            let title = format!("{what}: {} source -> relay -> sink", size_label(total));
            let mut time = spec(
                format!("{name}-time"),
                format!("{title} (wall time)"),
                label.clone(),
                "evloop-relay-time",
                "s",
                0,
            );
            time.size = Some(size);
            time.expects_fast_path = Some(!below);
            time.note = below.then(|| {
                format!(
                    "below `[unix] min_bytes` ({}): the library leaves the relay's calls to the kernel, so its figures measure what its hooks (select, reads, writes) cost; target: never slower, 0.97x or more",
                    size_label(UNIX_MIN_BYTES)
                )
            });
            let gbps = RowSpec {
                key: name.clone(),
                title: title.clone(),
                group: "evloop-relay".into(),
                unit: "GB/s",
                better: Better::Higher,
                value: 1,
                note: None,
                ..time.clone()
            };
            let mut rows = vec![time, gbps.clone()];
            if i == 0 {
                rows.push(RowSpec {
                    value: 2,
                    ..gbps.cpu_per_gib(
                        format!("{name}-cpu"),
                        format!("{what}: CPU per GiB (user + sys, all three processes)"),
                        "evloop-cpu".into(),
                    )
                });
            }
            Case {
                workload: workload(name, UNITS, Better::Lower, !below, argv),
                label: format!("{what}, {}", size_label(total)),
                units: UNITS,
                rows,
            }
        })
        .collect()
}

/// The epoll readers' cases: GB/s, and the CPU per GiB of the first
/// (level-triggered).
fn reader_cases(quick: bool, program: &str) -> Vec<Case> {
    const UNITS: &[&str] = &["GB/s", "CPU s/GiB"];
    let count = messages(quick);
    READERS
        .iter()
        .enumerate()
        .map(|(i, &(kind, what))| {
            let name = format!("evloop-epoll-{kind}-{}", size_key(MESSAGE));
            let argv = [program, "epoll", kind, &MESSAGE.to_string(), &count.to_string()].map(String::from).to_vec();
            let how = if kind == "et" {
                "recv until EAGAIN on each event"
            } else {
                "one recv per event"
            };
            let mut gbps = spec(
                name.clone(),
                format!(
                    "epoll reader, {what}, {how} asking for the rest of the message: {count} messages of {}, blocking writer",
                    size_label(MESSAGE)
                ),
                what.split(' ').next().unwrap_or(what).into(),
                "evloop-epoll",
                "GB/s",
                0,
            );
            gbps.size = Some(MESSAGE);
            gbps.expects_fast_path = Some(true);
            let mut rows = vec![gbps.clone()];
            if i == 0 {
                rows.push(gbps.cpu_per_gib(
                    format!("evloop-epoll-{kind}-cpu"),
                    format!("epoll reader, {what}: CPU per GiB (user + sys, both processes)"),
                    "evloop-cpu".into(),
                ));
            }
            Case {
                workload: workload(name, UNITS, Better::Higher, true, argv),
                label: format!("epoll reader, {what}, {}", size_label(MESSAGE)),
                units: UNITS,
                rows,
            }
        })
        .collect()
}

/// Every case of the part, in its order; the asyncio one only with a
/// Python interpreter (`python`, and the script).
pub fn cases(quick: bool, program: &Path, python: Option<(&Path, &Path)>) -> Vec<Case> {
    let program = text(program);
    let mut all = relay_cases(quick, &program);
    all.extend(reader_cases(quick, &program));
    let n = pings(quick);
    const PING_UNITS: &[&str] = &["ns"];
    let mut ping = spec(
        format!("evloop-pingpong-{}", size_key(PING)),
        format!("{} ping-pong through epoll loops on both sides (round trip)", size_label(PING)),
        size_label(PING),
        "evloop-pingpong",
        "ns",
        0,
    );
    ping.size = Some(PING);
    ping.expects_fast_path = Some(false);
    ping.note = Some(
        "below every threshold: what the hooks (epoll_wait, recv, send) add to a small message; target: 0.95x or more"
            .into(),
    );
    all.push(Case {
        workload: workload(
            ping.key.clone(),
            PING_UNITS,
            Better::Lower,
            false,
            [program.as_str(), "pingpong", &n.to_string(), &PING.to_string()].map(String::from).to_vec(),
        ),
        label: format!("{} epoll ping-pong", size_label(PING)),
        units: PING_UNITS,
        rows: vec![ping],
    });
    all.push(server_case(quick, &program));
    if let Some((python, script)) = python {
        const UNITS: &[&str] = &["s"];
        let mib = asyncio_mib(quick);
        let mut s = spec(
            "asyncio-unix".into(),
            format!("python3 asyncio over a Unix socket, {mib} MiB client -> server, go to readexactly (wall time)"),
            "asyncio".into(),
            crate::programs::GROUP,
            "s",
            0,
        );
        s.size = Some(mib << 20);
        s.expects_fast_path = Some(true);
        all.push(Case {
            workload: workload(
                s.key.clone(),
                UNITS,
                Better::Lower,
                true,
                vec![text(python), text(script), mib.to_string()],
            ),
            label: format!("python3 asyncio, {mib} MiB"),
            units: UNITS,
            rows: vec![s],
        });
    }
    all
}

/// The epoll echo server with a thousand connections: aggregate GB/s and
/// CPU per GiB.
fn server_case(quick: bool, program: &str) -> Case {
    const UNITS: &[&str] = &["GB/s", "CPU s/GiB"];
    let rounds = server_rounds(quick);
    let name = format!("evloop-server-{SERVER_CONNS}-{}", size_key(SERVER_MESSAGE));
    let argv = [program, "server", &SERVER_CONNS.to_string(), &SERVER_MESSAGE.to_string(), &rounds.to_string()]
        .map(String::from)
        .to_vec();
    let what = format!(
        "epoll echo server, {SERVER_CONNS} connections open at once, {} request and reply",
        size_label(SERVER_MESSAGE)
    );
    let mut gbps = spec(
        name.clone(),
        format!("{what}: aggregate throughput, 4 client processes, {rounds} rounds"),
        format!("{SERVER_CONNS} connections"),
        "evloop-server",
        "GB/s",
        0,
    );
    gbps.size = Some(SERVER_MESSAGE);
    gbps.expects_fast_path = Some(true);
    let cpu = gbps.cpu_per_gib(
        format!("{name}-cpu"),
        format!("{what}: CPU per GiB (user + sys, server and clients)"),
        "evloop-cpu".into(),
    );
    Case {
        workload: workload(name, UNITS, Better::Higher, true, argv),
        label: format!("{what}, {rounds} rounds"),
        units: UNITS,
        rows: vec![gbps, cpu],
    }
}

pub fn plan_evloop(ctx: &Ctx) -> f64 {
    let workloads = RELAYS.len() + READERS.len() + 2 + usize::from(ctx.python.is_some());
    (workloads * ctx.rounds * (1 + ctx.modes.len())) as f64
}

/// Every case, kernel against each mode.
pub fn run_evloop(ctx: &mut Ctx) -> Result<PartResult, String> {
    let program = ctx.scratch.join("evloop_bench");
    ipc::compile_program(&ctx.root, "evloop_bench", &program)?;
    let script = ctx.root.join("benches/python/asyncio_bench.py");
    let python = ctx.python.clone();
    let sides = ctx.kernel_and_modes()?;
    let mut rows = vec![];
    for case in cases(ctx.quick, &program, python.as_deref().map(|p| (p, script.as_path()))) {
        let w = &case.workload;
        let samples = ctx.alternate(
            &case.label,
            &sides,
            |ctx, side| {
                let s = ipc::run(w, ctx.side(side), &ctx.stats_dir(&w.key, side))?;
                if s.values.len() < case.units.len() {
                    return Err(format!("{}: {} figures, not {}", w.key, s.values.len(), case.units.len()));
                }
                Ok(s)
            },
            |s| show(case.units, s),
        )?;
        rows.extend(case.rows.iter().map(|spec| row(spec, &sides, &samples)));
    }
    let (total, count, pings, mib) =
        (relay_total(ctx.quick), messages(ctx.quick), pings(ctx.quick), asyncio_mib(ctx.quick));
    let server_rounds = server_rounds(ctx.quick);
    let mut notes = vec![
        format!(
            "Relays (`evloop_bench relay select|poll {total} BUF`): a source writes {} in blocking writes of the buffer's size to a relay, which waits in select() (or poll()) on both of its nonblocking sockets, reads at most a buffer when nothing is pending, writes what it read at once, and keeps what a write did not take until the sink's socket is writable; the sink reads with blocking reads of the same size. Three processes, two socketpairs; wall time from the go signal to the sink's last byte.",
            size_label(total)
        ),
        format!(
            "epoll readers (`evloop_bench epoll lt|et {MESSAGE} {count}`): a writer sends {count} messages of {}, each in one blocking send(); the reader, nonblocking, waits in epoll_wait() and recv()s asking for the rest of the current message, as libzmq reads a large frame: one recv per event (level-triggered), or recv until EAGAIN on each event (EPOLLET).",
            size_label(MESSAGE)
        ),
        format!(
            "Ping-pong (`evloop_bench pingpong {pings} {PING}`): both sockets nonblocking, each side waits in epoll_wait() before its recv; ns per round trip over {pings} round trips after 100 of warm-up."
        ),
        format!(
            "Server (`evloop_bench server {SERVER_CONNS} {SERVER_MESSAGE} {server_rounds}`): one epoll echo server (level-triggered, nonblocking, a buffer malloc'd per request) and {SERVER_CONNS} Unix stream connections open at once, shared by 4 client processes that each send a {} request on each of their connections in turn and read the reply (blocking); {server_rounds} rounds after a warm-up round over every connection; request and reply bytes over the time from the go signal to the last reply.",
            size_label(SERVER_MESSAGE)
        ),
        "CPU: user + sys seconds of every process (getrusage: the parent's from the go signal to the last byte, the children's whole lives), per GiB. Every byte is checked as it arrives (a pattern of period 4093, its length and end of file); a mismatch fails the run.".into(),
        "Each mode is a policy file with `[defaults] mode` alone; LD_PRELOAD, the policy and a stats file are set for every process.".into(),
    ];
    match &python {
        Some(p) => notes.push(format!(
            "asyncio (`{} benches/python/asyncio_bench.py {mib}`): the server process starts a client process, which writes an 8-byte length and {mib} MiB with a StreamWriter; the server readexactly()s them. Timed from the server's go byte until readexactly() returns; the SHA-256 is checked after the clock.",
            p.display()
        )),
        None => notes.push("python3 is not installed: the asyncio row is left out.".into()),
    }
    Ok(PartResult {
        table: None,
        part: Part::Evloop,
        rows,
        notes,
        skipped: None,
        settings: json!({
            "relay_total_bytes": total,
            "relay_buffers": RELAYS.iter().map(|(w, b)| json!({ "wait": w, "buffer_bytes": b })).collect::<Vec<_>>(),
            "epoll_message_bytes": MESSAGE,
            "epoll_messages": count,
            "pingpong_rounds": pings,
            "pingpong_bytes": PING,
            "server_connections": SERVER_CONNS,
            "server_message_bytes": SERVER_MESSAGE,
            "server_rounds": server_rounds,
            "asyncio_mib": mib,
            "python": python.as_deref().map(text),
        }),
        charts: vec![
            ChartSpec {
                file: "suite-evloop-relay.svg".into(),
                title: format!(
                    "select() and poll() relays, {}: throughput, kernel and the library's modes",
                    size_label(total)
                ),
                y: "GB/s".into(),
                group: "evloop-relay".into(),
                kind: ChartKind::Bars,
            },
            ChartSpec {
                file: "suite-evloop-epoll.svg".into(),
                title: format!(
                    "epoll readers, {} messages: throughput, kernel and the library's modes",
                    size_label(MESSAGE)
                ),
                y: "GB/s".into(),
                group: "evloop-epoll".into(),
                kind: ChartKind::Bars,
            },
        ],
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn all(quick: bool, python: bool) -> Vec<Case> {
        let py = (Path::new("/usr/bin/python3"), Path::new("/repo/benches/python/asyncio_bench.py"));
        cases(quick, Path::new("/tmp/evloop_bench"), python.then_some(py))
    }

    #[test]
    fn cases_and_their_commands() {
        let c = all(true, true);
        let argv: Vec<String> = c.iter().map(|c| c.workload.argv[1..].join(" ")).collect();
        assert_eq!(
            argv,
            [
                "relay select 268435456 1048576",
                "relay poll 268435456 1048576",
                "relay select 268435456 16384",
                "epoll lt 67108864 8",
                "epoll et 67108864 8",
                "pingpong 5000 64",
                "server 1000 1048576 4",
                "/repo/benches/python/asyncio_bench.py 64",
            ]
        );
        assert!(c[..7].iter().all(|c| c.workload.argv[0] == "/tmp/evloop_bench"));
        assert_eq!(c[7].workload.argv[0], "/usr/bin/python3");
        // What plan_evloop counts.
        assert_eq!(c.len(), RELAYS.len() + READERS.len() + 3);
        let full = all(false, false);
        assert_eq!(full.len(), RELAYS.len() + READERS.len() + 2);
        assert_eq!(full[6].workload.argv[4], "8");
        assert_eq!(full[0].workload.argv[3], (512u64 << 20).to_string());
        assert_eq!(full[3].workload.argv[4], "16");
        assert_eq!(full[5].workload.argv[2], "20000");
        assert!(c.iter().all(|c| c.workload.class == "unix" && matches!(c.workload.measure, Measure::Printed)));
    }

    #[test]
    fn rows_take_the_figures_their_runs_print() {
        let c = all(false, true);
        let keys: Vec<&str> = c.iter().flat_map(|c| &c.rows).map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "evloop-relay-select-1MiB-time",
                "evloop-relay-select-1MiB",
                "evloop-relay-select-1MiB-cpu",
                "evloop-relay-poll-1MiB-time",
                "evloop-relay-poll-1MiB",
                "evloop-relay-select-16KiB-time",
                "evloop-relay-select-16KiB",
                "evloop-epoll-lt-64MiB",
                "evloop-epoll-lt-cpu",
                "evloop-epoll-et-64MiB",
                "evloop-pingpong-64B",
                "evloop-server-1000-1MiB",
                "evloop-server-1000-1MiB-cpu",
                "asyncio-unix",
            ]
        );
        assert_eq!(keys.iter().collect::<HashSet<_>>().len(), keys.len());
        for case in &c {
            assert_eq!(case.workload.unit, case.units[0]);
            for r in &case.rows {
                // The figure exists, and its unit and direction are its own.
                assert_eq!(case.units.get(r.value), Some(&r.unit), "{}", r.key);
                assert_eq!(r.better, if r.unit == "GB/s" { Better::Higher } else { Better::Lower }, "{}", r.key);
            }
        }
    }

    #[test]
    fn the_fast_path_is_expected_where_the_library_carries_the_bytes() {
        let c = all(true, true);
        let expected: Vec<(&str, Option<bool>)> =
            c.iter().flat_map(|c| &c.rows).map(|r| (r.key.as_str(), r.expects_fast_path)).collect();
        for (key, fast) in expected {
            let small = key.contains("16KiB") || key.contains("pingpong");
            assert_eq!(fast, Some(!small), "{key}");
        }
        for case in &c {
            assert_eq!(Some(case.workload.expects_fast_path), case.rows[0].expects_fast_path);
        }
        let notes: Vec<&str> = c.iter().flat_map(|c| &c.rows).filter_map(|r| r.note.as_deref()).collect();
        assert_eq!(notes.len(), 2);
        assert!(notes[0].contains("0.97x") && notes[1].contains("0.95x"));
    }

    #[test]
    fn progress_shows_every_figure_with_its_unit() {
        let s = Sample { value: 0.25, values: vec![0.25, 2.5, 0.5], fast_path_bytes: 0, kernel_path_bytes: 0 };
        assert_eq!(
            show(&["s", "GB/s", "CPU s/GiB"], &s),
            format!("{} s, {} GB/s, {} CPU s/GiB", figure(0.25), figure(2.5), figure(0.5))
        );
        assert_eq!(show(&["ns"], &s), format!("{} ns", figure(0.25)));
    }
}
