//! Real programs, unmodified: the three-dd pipeline, Python's
//! multiprocessing.Pipe, and redis-server driven by redis-benchmark.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use ipc_offload_bench::ipc::{self, Measure, Workload, find_program};
use ipc_offload_bench::size_label;
use ipc_offload_bench::stats::{Better, figure};
use ipc_offload_bench::suite::Part;
use ipc_offload_bench::suite::results::PartResult;

use crate::ctx::{Ctx, RowSpec, SideSpec, row, text};
use crate::transfers::compare;

/// The group of the programs' rows: one chart of speedups for all of them.
pub const GROUP: &str = "programs";

fn dd_bytes(quick: bool) -> u64 {
    if quick { 256 << 20 } else { 512 << 20 }
}

fn python_mib(quick: bool) -> u64 {
    if quick { 64 } else { 256 }
}

fn redis_requests(quick: bool) -> u64 {
    if quick { 400 } else { 2000 }
}

pub fn plan_dd(ctx: &Ctx) -> f64 {
    (2 * ctx.rounds * (1 + ctx.modes.len())) as f64 + 2.0
}

pub fn plan_python(ctx: &Ctx) -> f64 {
    (2 * ctx.rounds * (1 + ctx.modes.len())) as f64
}

pub fn plan_redis(ctx: &Ctx) -> f64 {
    (REDIS_RUNS.len() * (ctx.rounds * (1 + ctx.modes.len()) + 1)) as f64
}

/// A row of this part: a program's wall time (lower is better), whose
/// class must take the fast path.
fn wall_time_row(key: String, title: String, label: String, size: Option<u64>) -> RowSpec {
    RowSpec {
        key,
        title,
        label,
        group: GROUP.into(),
        size,
        unit: "s",
        better: Better::Lower,
        value: 0,
        expects_fast_path: Some(true),
        note: None,
    }
}

/// `dd | dd | dd` with bs=4M over a file written once, and `dd bs=4M | dd
/// bs=64K` (a reader of small buffers), wall time.
pub fn run_dd(ctx: &mut Ctx) -> Result<PartResult, String> {
    let sides = ctx.kernel_and_modes()?;
    let bytes = dd_bytes(ctx.quick);
    let input = ctx.scratch.join("dd-input");
    ctx.progress.say(&format!("writing the pipeline's input, {} (not timed)", size_label(bytes)));
    ipc::write_dd_input(&input, bytes)?;
    ctx.progress.step(2.0, "input written");
    let pipelines = [
        (
            "dd-pipeline",
            "dd | dd | dd",
            ipc::dd_pipeline(&input),
            3,
            format!("dd | dd | dd, bs=4M, {} file, of=/dev/null (wall time)", size_label(bytes)),
        ),
        (
            "dd-small-reader",
            "dd | dd bs=64K",
            ipc::dd_small_reader(&input),
            2,
            format!(
                "dd bs=4M | dd bs=64K (a reader of 64 KiB buffers), {} file, of=/dev/null (wall time)",
                size_label(bytes)
            ),
        ),
    ];
    let mut rows = vec![];
    for (key, label, command, stages, title) in pipelines {
        let w = Workload {
            key: key.into(),
            title: String::new(),
            unit: "s",
            better: Better::Lower,
            target: (0.0, ""),
            expects_fast_path: true,
            class: "pipe",
            measure: Measure::WallTime { check: format!("{bytes} bytes"), count: stages },
            argv: vec!["/bin/sh".into(), "-c".into(), command],
        };
        let samples = match compare(ctx, label, &w, &sides, "s") {
            Ok(samples) => samples,
            Err(e) => {
                let _ = std::fs::remove_file(&input);
                return Err(e);
            }
        };
        rows.push(row(&wall_time_row(key.into(), title, label.into(), None), &sides, &samples));
    }
    let _ = std::fs::remove_file(&input);
    Ok(PartResult {
        table: None,
        part: Part::Dd,
        rows,
        notes: vec![format!(
            "`{}` and `{}` on a file of {} written once before the runs; every dd's byte count is checked; with the library every process of the pipeline runs preloaded.",
            ipc::dd_pipeline(Path::new("FILE")),
            ipc::dd_small_reader(Path::new("FILE")),
            size_label(bytes)
        )],
        skipped: None,
        settings: json!({ "file_bytes": bytes }),
        charts: vec![],
    })
}

/// benches/python/pipe_bench.py, duplex (a socketpair) and simplex (a pipe).
pub fn run_python(ctx: &mut Ctx) -> Result<PartResult, String> {
    let Some(python) = ctx.python.clone() else {
        return Ok(PartResult::skipped(Part::Python, "python3 is not installed".into()));
    };
    let sides = ctx.kernel_and_modes()?;
    let mib = python_mib(ctx.quick);
    let script = text(&ctx.root.join("benches/python/pipe_bench.py"));
    let mut rows = vec![];
    for (kind, class, what) in [("duplex", "unix", "socketpair"), ("simplex", "pipe", "pipe")] {
        let w = Workload {
            key: format!("python-{kind}"),
            title: String::new(),
            unit: "s",
            better: Better::Lower,
            target: (0.0, ""),
            expects_fast_path: true,
            class,
            measure: Measure::Printed,
            argv: vec![text(&python), script.clone(), kind.into(), mib.to_string()],
        };
        let samples = compare(ctx, &format!("python3 Pipe(duplex={})", kind == "duplex"), &w, &sides, "s")?;
        let title = format!(
            "python3 multiprocessing.Pipe(duplex={}) ({what}), {mib} MiB, go to recv_bytes",
            if kind == "duplex" { "True" } else { "False" }
        );
        let spec = wall_time_row(format!("python-{kind}"), title, format!("python {kind}"), Some(mib << 20));
        rows.push(row(&spec, &sides, &samples));
    }
    Ok(PartResult {
        table: None,
        part: Part::Python,
        rows,
        notes: vec![format!(
            "`{} benches/python/pipe_bench.py duplex|simplex {mib}`: a child sends {mib} MiB, the parent times from its go signal until recv_bytes() returns; the bytes are checked after the clock.",
            python.display()
        )],
        skipped: None,
        settings: json!({ "mib": mib, "python": text(&python) }),
        charts: vec![],
    })
}

/// Where a redis-server listens.
enum Listen {
    /// Its Unix socket (and no TCP port).
    Unix(PathBuf),
    /// A TCP port on 127.0.0.1 (and no Unix socket).
    Tcp(u16),
}

impl Listen {
    /// redis-server's arguments for it.
    fn server_args(&self) -> Vec<String> {
        match self {
            Listen::Unix(socket) => vec!["--port".into(), "0".into(), "--unixsocket".into(), text(socket)],
            Listen::Tcp(port) => vec!["--port".into(), port.to_string(), "--bind".into(), "127.0.0.1".into()],
        }
    }

    /// redis-benchmark's arguments for it.
    fn client_args(&self) -> Vec<String> {
        match self {
            Listen::Unix(socket) => vec!["-s".into(), text(socket)],
            Listen::Tcp(port) => vec!["-h".into(), "127.0.0.1".into(), "-p".into(), port.to_string()],
        }
    }

    /// PING answers +PONG.
    fn pong(&self) -> bool {
        let patience = Some(Duration::from_millis(500));
        match self {
            Listen::Unix(socket) => UnixStream::connect(socket).is_ok_and(|mut s| {
                let _ = s.set_read_timeout(patience);
                ping(&mut s)
            }),
            Listen::Tcp(port) => TcpStream::connect(("127.0.0.1", *port)).is_ok_and(|mut s| {
                let _ = s.set_read_timeout(patience);
                ping(&mut s)
            }),
        }
    }
}

/// PING on a connection answers +PONG.
fn ping(s: &mut (impl Read + Write)) -> bool {
    let mut answer = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
}

/// A redis-server of one side, on its own socket or port; stopped when
/// dropped.
struct Server {
    child: Child,
    listen: Listen,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Its figures are not needed: SIGKILL, and reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(ctx: &Ctx, server: &Path, side: &SideSpec, dir: &Path, listen: Listen) -> Result<Server, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut cmd = Command::new(server);
    cmd.args(listen.server_args())
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no", "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    ctx.side(side).apply(&mut cmd, &dir.join("stats"))?;
    // SAFETY: between fork and exec the closure makes one async-signal-safe
    // system call (prctl), touching no memory of the parent: a suite killed
    // before it stops its servers takes them along (SIGTERM).
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let child = cmd.spawn().map_err(|e| format!("{}: {e}", server.display()))?;
    let server = Server { child, listen };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.listen.pong() {
        if Instant::now() > deadline {
            let at = server.listen.client_args().join(" ");
            return Err(format!("redis-server ({}) did not answer PING at {at} within 10 s", side.name));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(server)
}

/// SET and GET requests per second from `redis-benchmark --csv`.
pub fn parse_redis_csv(out: &str) -> Result<Vec<f64>, String> {
    let rps = |test: &str| -> Result<f64, String> {
        let prefix = format!("\"{test}\",\"");
        let line = out.lines().find(|l| l.starts_with(&prefix)).ok_or(format!("no {test} line in {out:?}"))?;
        line[prefix.len()..]
            .split('"')
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or(format!("a {test} line without requests per second: {line:?}"))
    };
    Ok(vec![rps("SET")?, rps("GET")?])
}

/// redis-server with 1 MB values, driven by redis-benchmark over its Unix
/// socket; the kernel and each mode each have a server, started before the
/// runs and stopped after them, and the benchmark's runs alternate between
/// them. The server and redis-benchmark run on the same side.
pub fn run_redis(ctx: &mut Ctx) -> Result<PartResult, String> {
    let (Some(server), Some(bench)) = (find_program("redis-server"), find_program("redis-benchmark")) else {
        return Ok(PartResult::skipped(
            Part::Redis,
            "redis-server or redis-benchmark is not installed (`apt-get install redis-server redis-tools`)".into(),
        ));
    };
    let plain_sides = ctx.kernel_and_modes()?;
    let behind_sides = ctx.kernel_and_modes_with("-write-behind", WRITE_BEHIND)?;
    let n = redis_requests(ctx.quick);
    let note = "redis-server serves its clients from an epoll loop on nonblocking sockets; the fast-path column counts redis-benchmark's bytes (the SET values it sends, the GET replies it reads), and no share is required of it".to_owned();
    let mut rows = vec![];
    for (transport, what, clients, behind) in REDIS_RUNS {
        let sides = if behind { &behind_sides } else { &plain_sides };
        let (what, tag) = if behind { (format!("{what}, write_behind"), "-wb") } else { (what.to_owned(), "") };
        let mut servers = vec![];
        for side in sides {
            let dir = ctx.scratch.join("redis").join(format!("{transport}-c{clients}{tag}")).join(&side.name);
            let listen = match transport {
                "tcp" => Listen::Tcp(free_port()?),
                _ => Listen::Unix(dir.join("redis.sock")),
            };
            servers.push(start_server(ctx, &server, side, &dir, listen)?);
        }
        ctx.progress.step(1.0, &format!("{} redis-server processes answer PING ({what}, -c {clients})", servers.len()));
        let c = clients.to_string();
        let workloads: Vec<Workload> = servers
            .iter()
            .zip(sides)
            .map(|(s, side)| {
                let tail =
                    ["-t", "set,get", "-d", "1000000", "-n", &n.to_string(), "-c", &c, "--csv"].map(String::from);
                Workload {
                    key: format!("redis-benchmark-{transport}-c{clients}{tag}-{}", side.name),
                    title: String::new(),
                    unit: "requests/s",
                    better: Better::Higher,
                    target: (0.0, ""),
                    expects_fast_path: false,
                    class: transport,
                    measure: Measure::Parsed(parse_redis_csv),
                    argv: std::iter::once(text(&bench)).chain(s.listen.client_args()).chain(tail).collect(),
                }
            })
            .collect();
        let samples = ctx.alternate(
            &format!("redis-benchmark -t set,get -d 1000000 -c {clients}, {what}"),
            sides,
            |ctx, side| {
                let i = sides.iter().position(|s| s.name == side.name).unwrap_or(0);
                let w = &workloads[i];
                ipc::run(w, ctx.side(side), &ctx.stats_dir(&w.key, side))
            },
            |s| {
                format!(
                    "SET {} GET {} requests/s",
                    figure(s.values[0]),
                    figure(s.values.get(1).copied().unwrap_or(f64::NAN))
                )
            },
        );
        drop(servers);
        let samples = samples?;
        for (i, test) in ["SET", "GET"].into_iter().enumerate() {
            // The Unix socket's rows with 4 clients keep their keys from
            // before TCP and before the 50-client rows.
            let prefix = match (transport, clients) {
                ("unix", 4) => "redis".to_owned(),
                (_, 4) => format!("redis-{transport}"),
                _ => format!("redis-{transport}-c{clients}"),
            } + tag;
            let spec = RowSpec {
                key: format!("{prefix}-{}", test.to_lowercase()),
                title: format!("redis-server {test}, 1 MB values, redis-benchmark -c {clients} over {what}"),
                label: format!(
                    "redis {test} ({transport}, -c {clients}{})",
                    if behind { ", write-behind" } else { "" }
                ),
                group: GROUP.into(),
                size: Some(1_000_000),
                unit: "requests/s",
                better: Better::Higher,
                value: i,
                expects_fast_path: Some(false),
                note: (i == 0 && transport == "unix" && clients == 4 && !behind).then(|| note.clone()),
            };
            rows.push(row(&spec, sides, &samples));
        }
    }
    Ok(PartResult {
        table: None,
        part: Part::Redis,
        rows,
        notes: vec![format!(
            "Per side and transport, `redis-server --port 0 --unixsocket SOCK --save '' --appendonly no` (or `--port PORT --bind 127.0.0.1`), and `redis-benchmark -s SOCK (or -h 127.0.0.1 -p PORT) -t set,get -d 1000000 -n {n} -c 4 --csv` with the same LD_PRELOAD and policy (and over the Unix socket again with `-c 50`); the fast-path column counts redis-benchmark's bytes. The write_behind rows run the same (over the Unix socket, with 4 and 50 clients, and over TCP with 4) with `write_behind = true` added to each mode's `[unix]` and `[tcp]` (docs/ipc-protocol.md, \"Write-behind (opt-in)\"); their kernel column is a kernel run of their own."
        )],
        skipped: None,
        settings: json!({ "requests": n, "value_bytes": 1_000_000, "runs": REDIS_RUNS.iter().map(|(t, _, c, b)| json!({ "transport": t, "clients": c, "write_behind": b })).collect::<Vec<_>>() }),
        charts: vec![],
    })
}

/// The runs of redis: the transport (its stats class), in words,
/// redis-benchmark's clients, and whether the library sides add
/// [`WRITE_BEHIND`] to their policies.
const REDIS_RUNS: [(&str, &str, u32, bool); 6] = [
    ("unix", "a Unix socket", 4, false),
    ("tcp", "TCP (127.0.0.1)", 4, false),
    ("unix", "a Unix socket", 50, false),
    ("unix", "a Unix socket", 4, true),
    ("unix", "a Unix socket", 50, true),
    ("tcp", "TCP (127.0.0.1)", 4, true),
];

/// What the write-behind runs add to each mode's policy.
const WRITE_BEHIND: &str = "\n[unix]\nwrite_behind = true\n\n[tcp]\nwrite_behind = true\n";

/// A port nobody listens on now (the kernel's pick for a socket bound to
/// port 0, released at once).
pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("a free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| format!("a free port: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_benchmark_csv() {
        let out = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\"\n\"SET\",\"3921.57\",\"0.929\",\"0.600\"\n\"GET\",\"4166.67\",\"0.089\",\"0.040\"\n";
        assert_eq!(parse_redis_csv(out), Ok(vec![3921.57, 4166.67]));
        assert!(parse_redis_csv("\"SET\",\"1\"\n").unwrap_err().contains("no GET line"));
        assert!(parse_redis_csv("\"SET\",\"x\"\n\"GET\",\"1\"\n").is_err());
    }
}
