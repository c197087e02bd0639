//! One run of the command: started with the side's environment, stdin
//! from /dev/null, stdout and stderr into capture files, timed from before
//! the fork to wait4's return.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::capture::{Capture, CaptureError};
use super::sides::EnvChanges;
use super::wait::{self, Waited};

/// Why a run could not be made.
#[derive(Debug)]
pub enum MeasureError {
    /// fork/exec failed (no such command, not executable...).
    Spawn { program: OsString, error: io::Error },
    /// wait4 failed.
    Wait(io::Error),
    /// A capture file.
    Capture(CaptureError),
}

impl fmt::Display for MeasureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MeasureError::Spawn { program, error } => write!(f, "cannot start {program:?}: {error}"),
            MeasureError::Wait(error) => write!(f, "wait4: {error}"),
            MeasureError::Capture(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for MeasureError {}

impl From<CaptureError> for MeasureError {
    fn from(error: CaptureError) -> Self {
        MeasureError::Capture(error)
    }
}

/// A finished run.
#[derive(Debug)]
pub struct Measured {
    /// When it was started, since `epoch`.
    pub start: Duration,
    /// Fork to wait4's return.
    pub wall: Duration,
    pub waited: Waited,
    pub stdout: Capture,
    pub stderr: Capture,
}

/// Runs `command` (CMD and its arguments) with `env` applied to ab's own
/// environment.
pub fn measure(command: &[OsString], env: &EnvChanges, epoch: Instant) -> Result<Measured, MeasureError> {
    let (program, args) = command.split_first().ok_or_else(|| MeasureError::Spawn {
        program: OsString::new(),
        error: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    let (stdout, stderr) = (Capture::new()?, Capture::new()?);
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stdout(stdout.stdio()?).stderr(stderr.stdio()?);
    for (name, value) in env {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    let started = Instant::now();
    let child = cmd.spawn().map_err(|error| MeasureError::Spawn { program: program.clone(), error })?;
    // The child is reaped here by wait4, not by std (`Child` does not wait
    // when dropped).
    let waited = wait::wait(child.id()).map_err(MeasureError::Wait)?;
    let wall = started.elapsed();
    drop(child);
    Ok(Measured { start: started.duration_since(epoch), wall, waited, stdout, stderr })
}
