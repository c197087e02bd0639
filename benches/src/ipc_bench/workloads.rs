//! The workloads of each family (Unix sockets, pipes); ipc_offload_bench::ipc
//! runs them.

use std::path::Path;

use ipc_offload_bench::ipc::{Measure, Workload, dd_pipeline};
use ipc_offload_bench::size_label;
use ipc_offload_bench::stats::Better;

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
            key: "stream".into(),
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
            key: "reqresp".into(),
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
            key: "pingpong".into(),
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
            key: "python-duplex".into(),
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
    let pipeline = dd_pipeline(dd_input);
    let mut all = vec![
        Workload {
            key: "pipe-stream".into(),
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
            key: "dd-pipeline".into(),
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
            key: "pipe-cpu".into(),
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
            key: "python-simplex".into(),
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
