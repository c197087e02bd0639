//! `ab`: runs a command without (A) and with (B) the library, interleaved,
//! and compares wall time, user+sys CPU, peak RSS, stdout and exit status.
//! `scripts/ab` is its wrapper (it finds and builds the library).
//!
//! - `args`: the command line; `sides`: A's and B's environments;
//! - `session`: the order of the runs; `measure`: one run (`capture`: its
//!   stdout and stderr files; `wait`: wait4, the only unsafe code);
//!   `progress`: what stderr shows of long runs;
//! - `figures`: min/median/max and the pair ratios; `verdict`: agreement
//!   and the gates; `markdown`, `json`: the reports.

mod args;
mod capture;
mod figures;
mod json;
mod markdown;
mod measure;
mod progress;
mod session;
mod setup;
mod sides;
mod verdict;
mod wait;

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use ipc_offload_policy::{Policy, Rejected};

use args::{ArgsError, JsonTo, Options, Parsed, USAGE};
use measure::MeasureError;
use setup::{PolicyUsed, Setup};

/// Why `ab` could not compare (exit 2).
#[derive(Debug)]
enum AbError {
    Usage(ArgsError),
    /// The library file is missing.
    Library {
        path: PathBuf,
        error: io::Error,
    },
    /// B's policy was rejected: B would be a pass-through.
    Policy(Rejected),
    /// A run could not be made.
    Measure(MeasureError),
    /// `--json FILE` could not be written.
    Json {
        path: PathBuf,
        error: io::Error,
    },
}

impl fmt::Display for AbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbError::Usage(e) => write!(f, "ab: {e} (see 'ab --help')"),
            AbError::Library { path, error } => {
                write!(f, "ab: library {}: {error} (build it with cargo build --release)", path.display())
            }
            AbError::Policy(rejected) => {
                write!(f, "{rejected}\nab: B's policy was rejected: B would not use the library")
            }
            AbError::Measure(e) => write!(f, "ab: {e}"),
            AbError::Json { path, error } => write!(f, "ab: cannot write {}: {error}", path.display()),
        }
    }
}

impl std::error::Error for AbError {}

pub fn main(args: &[OsString]) -> ExitCode {
    match compare(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// The comparison; `Ok` with 0 or 1 (a gate failed).
fn compare(args: &[OsString]) -> Result<u8, AbError> {
    let options = match args::parse(args).map_err(AbError::Usage)? {
        Parsed::Help => {
            let _ = io::stdout().write_all(USAGE.as_bytes());
            return Ok(0);
        }
        Parsed::Run(options) => options,
    };
    let setup = setup(options)?;
    warn_if_switched_off();
    let envs = sides::environments(
        &setup.library,
        match &setup.policy {
            PolicyUsed::Option(p) => Some(p),
            _ => None,
        },
        std::env::var_os("LD_PRELOAD").as_deref(),
    );
    let o = &setup.options;
    let runs = session::run_all(&o.command, &envs, o.warmup, o.runs).map_err(AbError::Measure)?;
    let figures = figures::Figures::of(&runs);
    let failures = verdict::gates(&figures, o.compare_output, o.fail_if_slower);
    let code = u8::from(!failures.is_empty());
    let document = || json::document(&setup, &runs, &figures, &failures, code);
    let mut stdout = io::stdout().lock();
    // A closed stdout is not ab's failure: the exit status still says it.
    match &o.json {
        Some(JsonTo::Stdout) => {
            let _ = writeln!(stdout, "{:#}", document());
        }
        other => {
            let _ = stdout.write_all(markdown::report(&setup, &runs, &figures).as_bytes());
            if let Some(JsonTo::File(path)) = other {
                std::fs::write(path, format!("{:#}\n", document()))
                    .map_err(|error| AbError::Json { path: path.clone(), error })?;
            }
        }
    }
    let _ = stdout.flush();
    for failure in &failures {
        eprintln!("ab: {failure}");
    }
    Ok(code)
}

/// Finds the library and checks B's policy.
fn setup(options: Options) -> Result<Setup, AbError> {
    let library = match &options.library {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("libipc_offload.so")))
            .unwrap_or_else(|| PathBuf::from("libipc_offload.so")),
    };
    let library = std::fs::canonicalize(&library)
        .and_then(|p| if p.is_file() { Ok(p) } else { Err(io::Error::other("not a file")) })
        .map_err(|error| AbError::Library { path: library, error })?;
    let policy = match (&options.policy, std::env::var_os("IPC_OFFLOAD_POLICY").filter(|p| !p.is_empty())) {
        (Some(path), _) => PolicyUsed::Option(std::path::absolute(path).unwrap_or_else(|_| path.clone())),
        (None, Some(path)) => PolicyUsed::Environment(PathBuf::from(path)),
        (None, None) => PolicyUsed::BuiltIn,
    };
    if let Some(path) = policy.path() {
        Policy::load(path).map_err(AbError::Policy)?;
    }
    Ok(Setup { options, library, policy })
}

/// `IPC_OFFLOAD=off` (or any value the library reads as off) makes B a
/// pass-through: worth a word.
fn warn_if_switched_off() {
    if let Some(value) = std::env::var_os("IPC_OFFLOAD") {
        let v = value.to_string_lossy().to_ascii_lowercase();
        if !["", "on", "1", "true", "yes"].contains(&v.as_str()) {
            eprintln!(
                "ab: warning: IPC_OFFLOAD={} is set: B loads the library as a pass-through",
                value.to_string_lossy()
            );
        }
    }
}
