//! `calibrate`: where each engine available here starts to beat libc (memory
//! classes) or the kernel (unix, pipe), measured on this machine, and the
//! policy that follows from it.
//!
//! - [`measure`]: what runs in what order, behind the [`measure::Timer`]
//!   trait;
//! - [`process`]: the real timer (child processes, `child` their command);
//! - [`table`]: medians, crossovers, the choice per class, the printed table;
//! - [`write`]: the policy text, a pure function of the table.

mod child;
mod measure;
mod process;
mod table;
mod write;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ipc_offload_engine::EngineId;
use ipc_offload_policy::{Class, Engine, Policy, Rejected};
use ipc_offload_runtime::plan::{self, Machine, Note};
use ipc_offload_sys::cpus;

pub use child::{COMMAND as CHILD_COMMAND, main as child_main};
use measure::{ClassPlan, MeasureError, Plan};
use process::{ProcessTimer, Settings};

const USAGE: &str = "\
usage: ipc-offload calibrate [--out FILE] [--quick] [--dsa-model]

Measures on this machine, for each class, where each engine available here
starts to beat libc (memcpy; memset and memcmp when a DSA device is open)
or the kernel (unix and pipe: a writer and a reader process, messages of
64 KiB to 16 MiB), and writes the policy that follows: per class the engine
that wins and is fastest at the largest size, from the smallest size at
which it is at least 5% faster and stays so at every larger size, or
engine = \"off\" where none wins. Runs alternate without and with the
library (LD_PRELOAD of IPC_OFFLOAD_LIB, else the libipc_offload.so next to
this tool); medians of several runs. Progress goes to stderr.

  --out FILE  write the policy to FILE and print the table (the policy
              passes `ipc-offload check`); without it the policy, table
              included as comments, goes to stdout
  --quick     fewer and shorter runs (about 15 s instead of about a minute)
  --dsa-model measure the dsa and hybrid engines on the DSA device model
              ([dsa] device = \"model\", a thread of each process): for
              testing the engine's path, not a figure of any hardware

Exits 0; 2 on bad usage; 1 when a measurement fails.
";

/// What the command line asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Options {
    out: Option<PathBuf>,
    quick: bool,
    dsa_model: bool,
}

/// Why `calibrate` failed.
#[derive(Debug)]
enum CalibrateError {
    /// The command line is wrong.
    Usage(String),
    /// The library to measure is not there.
    Library(PathBuf),
    /// This program's own path is unknown (it runs itself as the children).
    Exe(std::io::Error),
    Measure(MeasureError),
    /// The policy file could not be written.
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The written policy does not pass check: a bug.
    Rejected(Rejected),
}

impl CalibrateError {
    fn exit_code(&self) -> u8 {
        if matches!(self, CalibrateError::Usage(_)) { 2 } else { 1 }
    }
}

impl fmt::Display for CalibrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CalibrateError::Usage(m) => write!(f, "{m}\n{USAGE}"),
            CalibrateError::Library(path) => write!(
                f,
                "the library {} does not exist: build it (cargo build --release -p ipc-offload-preload) or set IPC_OFFLOAD_LIB",
                path.display()
            ),
            CalibrateError::Exe(e) => write!(f, "cannot find this program's own path: {e}"),
            CalibrateError::Measure(e) => write!(f, "{e}"),
            CalibrateError::Write { path, error } => write!(f, "{}: {error}", path.display()),
            CalibrateError::Rejected(r) => write!(f, "the policy written does not pass check (a bug):\n{r}"),
        }
    }
}

impl From<MeasureError> for CalibrateError {
    fn from(e: MeasureError) -> Self {
        CalibrateError::Measure(e)
    }
}

pub fn main(args: &[String]) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipc-offload calibrate: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The options, or `None` for `--help`.
fn parse_args(args: &[String]) -> Result<Option<Options>, CalibrateError> {
    let mut options = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--quick" => options.quick = true,
            "--dsa-model" => options.dsa_model = true,
            "--out" => {
                let file = it.next().ok_or_else(|| CalibrateError::Usage("--out needs a file".into()))?;
                options.out = Some(PathBuf::from(file));
            }
            other => return Err(CalibrateError::Usage(format!("unknown argument {other}"))),
        }
    }
    if let Some(out) = &options.out {
        check_out(out)?;
    }
    Ok(Some(options))
}

/// Refuses an output path that cannot be written before a minute is spent
/// measuring: a directory, or a file in a directory that does not exist.
fn check_out(out: &Path) -> Result<(), CalibrateError> {
    if out.as_os_str().is_empty() || out.is_dir() {
        return Err(CalibrateError::Usage(format!("--out {}: not a file", out.display())));
    }
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(CalibrateError::Usage(format!("--out {}: {} is not a directory", out.display(), dir.display())));
    }
    Ok(())
}

fn run(args: &[String]) -> Result<(), CalibrateError> {
    let Some(options) = parse_args(args)? else {
        print!("{USAGE}");
        return Ok(());
    };
    let tool = std::env::current_exe().map_err(CalibrateError::Exe)?;
    let lib = library(&tool);
    if !lib.is_file() {
        return Err(CalibrateError::Library(lib));
    }
    let (hardware, dsa_reason) = crate::probe::dsa_availability(&Policy::builtin());
    let machine = Machine {
        cpus: cpus::current().available(),
        llc: cpus::last_level_cache(Path::new("/sys/devices/system/cpu")),
        dsa: hardware || options.dsa_model,
    };
    let mut plan = measure_plan(options.quick, machine, &dsa_reason);
    plan.dsa_model = options.dsa_model;
    if let Some(load) = load_average().filter(|l| *l > f64::from(machine.cpus) / 2.0) {
        eprintln!(
            "calibrate: warning: load average {load:.2} on {} CPU(s): other programs compete for the CPUs, and the figures will show it",
            machine.cpus
        );
    }
    let settings = Settings { dsa_model: options.dsa_model, ..settings(options.quick) };
    let mut timer = ProcessTimer::new(tool, lib, settings)?;
    let start = Instant::now();
    let table = measure::run(&plan, &mut timer, &mut |line| eprintln!("calibrate: {line}"))?;
    let text = write::policy(&table);
    match &options.out {
        None => {
            ipc_offload_policy::parse(&text, "<calibrated>").map_err(CalibrateError::Rejected)?;
            print!("{text}");
        }
        Some(path) => {
            std::fs::write(path, &text).map_err(|error| CalibrateError::Write { path: path.clone(), error })?;
            // What `check` does with the file.
            Policy::load(path).map_err(CalibrateError::Rejected)?;
            print!("{}", table.render());
            println!("wrote {}", path.display());
        }
    }
    eprintln!("calibrate: done in {:.0} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// The library: IPC_OFFLOAD_LIB as scripts/ipc-offload sets it, else the
/// one next to this program (target/release/).
fn library(tool: &Path) -> PathBuf {
    match std::env::var_os("IPC_OFFLOAD_LIB") {
        Some(lib) if !lib.is_empty() => PathBuf::from(lib),
        _ => tool.with_file_name("libipc_offload.so"),
    }
}

/// The 1-minute load average (/proc/loadavg).
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

fn settings(quick: bool) -> Settings {
    let deadline = Duration::from_secs(60);
    if quick {
        Settings { batch: Duration::from_millis(20), ipc_bytes: 32 << 20, deadline, dsa_model: false }
    } else {
        Settings { batch: Duration::from_millis(50), ipc_bytes: 64 << 20, deadline, dsa_model: false }
    }
}

/// Sizes from `from` to `to`, each `factor` times the last.
fn sizes(from: u64, to: u64, factor: u64) -> Vec<u64> {
    std::iter::successors(Some(from), |s| Some(s * factor)).take_while(|s| *s <= to).collect()
}

/// The classes in the order they are measured and written.
const CLASSES: [Class; 5] = [Class::Memcpy, Class::Unix, Class::Pipe, Class::Memset, Class::Memcmp];

/// What to measure on `machine`.
fn measure_plan(quick: bool, machine: Machine, dsa_reason: &str) -> Plan {
    let classes = CLASSES
        .iter()
        .map(|&class| {
            let sizes = if class.is_ipc() { sizes(64 << 10, 16 << 20, 2) } else { sizes(64 << 10, 64 << 20, 2) };
            let mut engines = Vec::new();
            let mut skipped = Vec::new();
            for &engine in candidates(class) {
                match available(class, engine, machine) {
                    Ok(()) => engines.push(engine),
                    Err(why) if matches!(engine, Engine::Dsa | Engine::Hybrid) => {
                        skipped.push((engine, if machine.dsa { why } else { dsa_reason.to_owned() }))
                    }
                    Err(why) => skipped.push((engine, why)),
                }
            }
            ClassPlan { class, sizes, engines, skipped }
        })
        .collect();
    Plan { classes, rounds: if quick { 9 } else { 15 }, cpus: machine.cpus, dsa_model: false }
}

/// The engines that could beat the baseline of `class`: for memcpy libc's
/// `cpu` is the baseline itself; for unix and pipe every engine means the
/// shared-memory path; memset and memcmp are served by libc or DSA only
/// (hybrid is dsa for them).
fn candidates(class: Class) -> &'static [Engine] {
    if class.is_ipc() {
        &[Engine::Cpu, Engine::AsyncCpu, Engine::Dsa, Engine::Hybrid]
    } else if class == Class::Memcpy {
        &[Engine::AsyncCpu, Engine::Dsa, Engine::Hybrid]
    } else {
        &[Engine::Dsa]
    }
}

/// Whether a process started here with `engine` for `class` would run it,
/// as the runtime's own plan decides; else why not.
fn available(class: Class, engine: Engine, machine: Machine) -> Result<(), String> {
    let mut resolved = Policy::builtin().resolve(&[]);
    resolved.rules[class.index()].engine = engine;
    let p = plan::plan(&resolved, machine);
    if p.class(class).engine.is_some_and(|id| Some(id) == EngineId::from_name(engine.name())) {
        return Ok(());
    }
    let reason = p.notes.iter().find_map(|n| match n {
        Note::EngineUnavailable { class: c, reason, .. } if *c == class => Some(*reason),
        _ => None,
    });
    Err(match engine {
        Engine::AsyncCpu => format!("no copy worker for [{class}] on {} CPU(s)", machine.cpus),
        _ => reason.unwrap_or("unavailable here").to_owned(),
    })
}

#[cfg(test)]
mod tests;
