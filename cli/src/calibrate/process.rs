//! The real [`Timer`]: each run is a child process of the tool (its hidden
//! `calibrate-child` command), or for unix and pipe a writer and a reader
//! joined by a socketpair or a pipe, started without the library for the
//! baseline and with it (`LD_PRELOAD`, a one-class policy, a stats file)
//! for an engine. A run with the library must show in its stats file that
//! the engine moved bytes, else its times would be the baseline's.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ipc_offload_policy::{Class, Engine};
use serde_json::Value;

use super::child::{self, format_sizes};
use super::measure::{MeasureError, Timer};
use super::table::Contender;

/// How much each run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Memory classes: each size is repeated this long per run.
    pub batch: Duration,
    /// unix, pipe: bytes timed per size per run.
    pub ipc_bytes: u64,
    /// A run still going after this long is killed, and the calibration fails.
    pub deadline: Duration,
    /// Runs with the library use the DSA device model (`[dsa] device = "model"`).
    pub dsa_model: bool,
}

/// A directory removed with everything in it when dropped.
#[derive(Debug)]
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs children of `tool` (this program) with and without `lib`.
#[derive(Debug)]
pub struct ProcessTimer {
    tool: PathBuf,
    lib: PathBuf,
    settings: Settings,
    scratch: Scratch,
    runs: usize,
}

impl ProcessTimer {
    /// A timer with a fresh scratch directory for the runs' policies and
    /// stats files.
    pub fn new(tool: PathBuf, lib: PathBuf, settings: Settings) -> Result<ProcessTimer, MeasureError> {
        let dir = std::env::temp_dir().join(format!("ipc-offload-calibrate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|error| MeasureError::Io { what: dir.display().to_string(), error })?;
        Ok(ProcessTimer { tool, lib, settings, scratch: Scratch(dir), runs: 0 })
    }

    /// A child of the tool; with `engine`, under the library with a policy
    /// that gives `class` that engine from `min_bytes`, its stats file
    /// `stats`.
    fn command(&self, args: &[&str], library: Option<(&Path, &Path)>) -> Command {
        let mut cmd = Command::new(&self.tool);
        cmd.arg(child::COMMAND).args(args);
        for (name, _) in std::env::vars_os() {
            if name == "LD_PRELOAD" || name.to_string_lossy().starts_with("IPC_OFFLOAD") {
                cmd.env_remove(name);
            }
        }
        if let Some((policy, stats)) = library {
            cmd.env("LD_PRELOAD", &self.lib)
                .env("IPC_OFFLOAD_POLICY", policy)
                .env("IPC_OFFLOAD_STRICT", "1")
                .env("IPC_OFFLOAD_STATS", stats);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }

    /// The policy file of one run.
    fn policy(&self, class: Class, engine: Engine, min_bytes: u64) -> Result<PathBuf, MeasureError> {
        let path = self.scratch.0.join(format!("run-{}.toml", self.runs));
        std::fs::write(&path, child_policy(class, engine, min_bytes, self.settings.dsa_model))
            .map_err(|error| MeasureError::Io { what: path.display().to_string(), error })?;
        Ok(path)
    }

    fn stats_file(&self, role: &str) -> PathBuf {
        self.scratch.0.join(format!("run-{}-{role}.json", self.runs))
    }

    fn memory(&self, class: Class, engine: Option<Engine>, sizes: &[u64]) -> Result<Vec<Duration>, MeasureError> {
        let what = format!("[{class}] {} run", label(class, engine));
        let ms = self.settings.batch.as_millis().max(1).to_string();
        let args = ["memory", class.name(), &format_sizes(sizes), &ms];
        let stats = self.stats_file("memory");
        let policy = engine.map(|e| self.policy(class, e, sizes[0])).transpose()?;
        let mut cmd = self.command(&args, policy.as_deref().map(|p| (p, stats.as_path())));
        let child = spawn(&mut cmd, &what)?;
        let out = finish(child, &what, Instant::now() + self.settings.deadline)?;
        if engine.is_some() {
            let moved = counter(&stats, class, "offloaded_bytes", &what)?;
            if moved == 0 {
                return Err(MeasureError::NotOffloaded { what, detail: format!("{class}.offloaded_bytes is 0") });
            }
        }
        times(&out, sizes, &what)
    }

    fn ipc(&self, class: Class, engine: Option<Engine>, sizes: &[u64]) -> Result<Vec<Duration>, MeasureError> {
        let what = format!("[{class}] {} run", label(class, engine));
        let io = |error| MeasureError::Io { what: what.clone(), error };
        let args = |role: &str| [role.to_owned(), format_sizes(sizes), self.settings.ipc_bytes.to_string()];
        let policy = engine.map(|e| self.policy(class, e, sizes[0])).transpose()?;
        let (writer_stats, reader_stats) = (self.stats_file("writer"), self.stats_file("reader"));
        let (w_args, r_args) = (args("write"), args("read"));
        let w_lib = policy.as_deref().map(|p| (p, writer_stats.as_path()));
        let r_lib = policy.as_deref().map(|p| (p, reader_stats.as_path()));
        let mut writer = self.command(&w_args.each_ref().map(String::as_str), w_lib);
        let mut reader = self.command(&r_args.each_ref().map(String::as_str), r_lib);
        // Each Command holds its end of the channel until dropped: dropped
        // right after the spawn, so that the reader sees EOF when the
        // writer exits.
        let (mut writer, reader) = if class == Class::Pipe {
            writer.stdout(Stdio::piped());
            let mut w = spawn(&mut writer, &what)?;
            let pipe = w.stdout.take().ok_or_else(|| io(std::io::Error::other("no pipe")))?;
            reader.stdin(Stdio::from(pipe));
            let r = spawn(&mut reader, &what);
            drop(reader);
            (w, r)
        } else {
            let (a, b) = UnixStream::pair().map_err(io)?;
            writer.stdout(Stdio::from(OwnedFd::from(a)));
            reader.stdin(Stdio::from(OwnedFd::from(b)));
            let w = spawn(&mut writer, &what)?;
            drop(writer);
            let r = spawn(&mut reader, &what);
            drop(reader);
            (w, r)
        };
        let deadline = Instant::now() + self.settings.deadline;
        let read = reader.and_then(|r| finish(r, &format!("{what} (reader)"), deadline));
        if read.is_err() {
            let _ = writer.kill();
        }
        let written = finish(writer, &format!("{what} (writer)"), deadline);
        let out = read?;
        written?;
        if engine.is_some() {
            let fast = counter(&reader_stats, class, "fast_path_bytes", &what)?;
            if fast == 0 {
                let kernel = counter(&reader_stats, class, "kernel_path_bytes", &what)?;
                let detail = format!("the reader's {class}.fast_path_bytes is 0, kernel_path_bytes {kernel}");
                return Err(MeasureError::NotOffloaded { what, detail });
            }
        }
        times(&out, sizes, &what)
    }
}

impl Timer for ProcessTimer {
    fn time(&mut self, class: Class, contender: Contender, sizes: &[u64]) -> Result<Vec<Duration>, MeasureError> {
        self.runs += 1;
        let engine = match contender {
            Contender::Baseline => None,
            Contender::Engine(e) => Some(e),
        };
        if sizes.is_empty() {
            return Ok(Vec::new());
        }
        if class.is_ipc() { self.ipc(class, engine, sizes) } else { self.memory(class, engine, sizes) }
    }
}

fn label(class: Class, engine: Option<Engine>) -> &'static str {
    engine.map_or(Contender::Baseline, Contender::Engine).label(class)
}

/// The policy of a run with the library: the measured class gets the
/// engine from the smallest size, the DSA device is the model if asked;
/// everything else is built-in.
pub fn child_policy(class: Class, engine: Engine, min_bytes: u64, dsa_model: bool) -> String {
    let mut text = format!(
        "# ipc-offload calibrate: one run\nstrict = true\n\n[{class}]\nengine = \"{engine}\"\nmin_bytes = {min_bytes}\n"
    );
    if dsa_model {
        text.push_str("\n[dsa]\ndevice = \"model\"\n");
    }
    text
}

fn spawn(cmd: &mut Command, what: &str) -> Result<Child, MeasureError> {
    cmd.spawn().map_err(|error| MeasureError::Io {
        what: format!("{what}: {}", Path::new(cmd.get_program()).display()),
        error,
    })
}

/// What a child printed, once it has exited successfully before `deadline`
/// (it is killed then). Its output is a few lines: it fits the pipes while
/// it runs.
fn finish(mut child: Child, what: &str, deadline: Instant) -> Result<String, MeasureError> {
    let status = wait(&mut child, what, deadline)?;
    let read = |pipe: Option<&mut dyn Read>| {
        let mut text = String::new();
        if let Some(p) = pipe {
            let _ = p.read_to_string(&mut text);
        }
        text
    };
    let stdout = read(child.stdout.as_mut().map(|p| p as &mut dyn Read));
    let stderr = read(child.stderr.as_mut().map(|p| p as &mut dyn Read));
    if !status.success() {
        return Err(MeasureError::Child { what: what.to_owned(), status: status.to_string(), stderr });
    }
    Ok(stdout)
}

fn wait(child: &mut Child, what: &str, deadline: Instant) -> Result<ExitStatus, MeasureError> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(MeasureError::Hung { what: what.to_owned(), seconds: start.elapsed().as_secs() });
            }
            Err(error) => return Err(MeasureError::Io { what: what.to_owned(), error }),
        }
    }
}

/// The `SIZE NANOSECONDS` lines of a child, one per size, in order.
fn times(out: &str, sizes: &[u64], what: &str) -> Result<Vec<Duration>, MeasureError> {
    let bad = || MeasureError::Output { what: what.to_owned(), text: out.to_owned() };
    let lines: Vec<&str> = out.lines().collect();
    if lines.len() != sizes.len() {
        return Err(bad());
    }
    lines
        .iter()
        .zip(sizes)
        .map(|(line, size)| match line.split_once(' ') {
            Some((s, ns)) if s.parse() == Ok(*size) => ns.parse().map(Duration::from_nanos).map_err(|_| bad()),
            _ => Err(bad()),
        })
        .collect()
}

/// A counter of `class` in a stats file.
fn counter(stats: &Path, class: Class, key: &str, what: &str) -> Result<u64, MeasureError> {
    let text = std::fs::read_to_string(stats)
        .map_err(|error| MeasureError::Io { what: format!("{what}: stats file {}", stats.display()), error })?;
    let v: Value = serde_json::from_str(&text).map_err(|e| MeasureError::NotOffloaded {
        what: what.to_owned(),
        detail: format!("{} is not a stats file: {e}", stats.display()),
    })?;
    Ok(v[class.name()][key].as_u64().unwrap_or(0))
}
