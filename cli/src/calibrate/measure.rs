//! What is measured, in what order, and the [`Timer`] that measures it: child
//! processes of the tool for real ([`super::process::ProcessTimer`]), a fake
//! in the tests. The driver only orders the runs and collects their times
//! into a [`Table`]; it never looks at a clock.

use std::fmt;
use std::time::Duration;

use ipc_offload_policy::{Class, Engine};

use super::table::{ClassTable, Contender, Table};

/// What one class is measured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassPlan {
    pub class: Class,
    /// Bytes per operation (a copy, or a message), ascending.
    pub sizes: Vec<u64>,
    /// The engines measured against the baseline; none: the class is
    /// reported but not measured.
    pub engines: Vec<Engine>,
    /// Engines not measured here, and why.
    pub skipped: Vec<(Engine, String)>,
}

/// The whole measurement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub classes: Vec<ClassPlan>,
    /// Runs of each contender per class (each run times every size once).
    pub rounds: usize,
    /// CPUs a process started here may use (for the report).
    pub cpus: u32,
    /// The dsa and hybrid engines run on the DSA device model.
    pub dsa_model: bool,
}

/// Times operations. One call is one run: the time of one operation of
/// each size, in the order given.
pub trait Timer {
    fn time(&mut self, class: Class, contender: Contender, sizes: &[u64]) -> Result<Vec<Duration>, MeasureError>;
}

/// Why a measurement failed.
#[derive(Debug)]
pub enum MeasureError {
    /// A child process could not be started, or a file it needs written.
    Io { what: String, error: std::io::Error },
    /// A child process failed; its stderr.
    Child { what: String, status: String, stderr: String },
    /// A child process ran past its deadline and was killed.
    Hung { what: String, seconds: u64 },
    /// A child printed something else than `SIZE NANOSECONDS` lines.
    Output { what: String, text: String },
    /// A run with the library moved nothing through the engine: the
    /// figures would be the baseline's.
    NotOffloaded { what: String, detail: String },
    /// A timer returned a different number of times than sizes.
    Count { class: Class, contender: String, expected: usize, got: usize },
}

impl fmt::Display for MeasureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MeasureError::Io { what, error } => write!(f, "{what}: {error}"),
            MeasureError::Child { what, status, stderr } => {
                write!(f, "{what} failed ({status})")?;
                if !stderr.trim().is_empty() {
                    write!(f, ":\n{}", stderr.trim_end())?;
                }
                Ok(())
            }
            MeasureError::Hung { what, seconds } => write!(f, "{what} did not finish within {seconds} s"),
            MeasureError::Output { what, text } => write!(f, "{what} printed {text:?}, not SIZE NANOSECONDS lines"),
            MeasureError::NotOffloaded { what, detail } => write!(f, "{what}: the library moved no byte ({detail})"),
            MeasureError::Count { class, contender, expected, got } => {
                write!(f, "[{class}] {contender}: {got} times for {expected} sizes")
            }
        }
    }
}

impl std::error::Error for MeasureError {}

/// Runs `plan` with `timer`: per class, `rounds` rounds in which every
/// contender runs once, the baseline first in even rounds and last in odd
/// ones, so that a drift of the machine's speed hits all of them.
/// `progress` gets one line per round.
pub fn run(plan: &Plan, timer: &mut dyn Timer, progress: &mut dyn FnMut(&str)) -> Result<Table, MeasureError> {
    let mut classes = Vec::new();
    for p in &plan.classes {
        let mut t = ClassTable::new(p.class, p.sizes.clone(), &p.engines, p.skipped.clone());
        if p.engines.is_empty() {
            progress(&format!(
                "[{}] not measured: no engine to compare with {}",
                p.class,
                Contender::Baseline.label(p.class)
            ));
            classes.push(t);
            continue;
        }
        let mut order: Vec<Contender> =
            std::iter::once(Contender::Baseline).chain(p.engines.iter().map(|e| Contender::Engine(*e))).collect();
        for round in 0..plan.rounds {
            let names: Vec<&str> = order.iter().map(|c| c.label(p.class)).collect();
            progress(&format!("[{}] round {}/{}: {}", p.class, round + 1, plan.rounds, names.join(", ")));
            for contender in &order {
                let times = timer.time(p.class, *contender, &p.sizes)?;
                if times.len() != p.sizes.len() {
                    return Err(MeasureError::Count {
                        class: p.class,
                        contender: contender.label(p.class).to_owned(),
                        expected: p.sizes.len(),
                        got: times.len(),
                    });
                }
                t.record(*contender, &times);
            }
            order.reverse();
        }
        classes.push(t);
    }
    Ok(Table { cpus: plan.cpus, rounds: plan.rounds, dsa_model: plan.dsa_model, classes })
}
