//! The runs of a comparison, in order: the warm-up pairs, then the measured
//! pairs, each A then B. Each B's stdout is compared with the A of its
//! pair, each measured A's with the first measured A's.

use std::collections::HashSet;
use std::ffi::OsString;
use std::time::{Duration, Instant};

use super::capture::{Capture, CaptureError};
use super::measure::{self, MeasureError, Measured};
use super::progress::Progress;
use super::sides::{Environments, Side};
use super::wait::Exit;

/// One run, as recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// Start order, from 0, over every run (warm-up ones included).
    pub seq: usize,
    pub side: Side,
    /// A warm-up run (not in the figures).
    pub warmup: bool,
    /// The pair it belongs to, from 0 within its phase (warm-up, measured).
    pub pair: usize,
    /// Started this long after the first run.
    pub start: Duration,
    pub wall: Duration,
    pub user: Duration,
    pub sys: Duration,
    pub max_rss_bytes: u64,
    pub exit: Exit,
    pub stdout_bytes: u64,
    /// The run whose stdout this one's was compared with (`seq`), and
    /// whether they were the same: for B the A of its pair, for a measured
    /// A the first measured A (none for that one itself).
    pub compared: Option<(usize, bool)>,
}

impl Run {
    /// user + sys.
    pub fn cpu(&self) -> Duration {
        self.user + self.sys
    }
}

/// The order of the runs: `(side, warm-up, pair)`.
pub fn schedule(warmup: u32, pairs: u32) -> Vec<(Side, bool, usize)> {
    let phase = |count: u32, warm: bool| {
        (0..count as usize).flat_map(move |pair| [(Side::A, warm, pair), (Side::B, warm, pair)])
    };
    phase(warmup, true).chain(phase(pairs, false)).collect()
}

/// Makes every run of the schedule, showing progress and, on stderr, the
/// end of the stderr of the first failing run of each side and the
/// library's own lines the first time B prints some.
pub fn run_all(command: &[OsString], envs: &Environments, warmup: u32, pairs: u32) -> Result<Vec<Run>, MeasureError> {
    let plan = schedule(warmup, pairs);
    let progress = Progress::new();
    let mut notes = Notes::default();
    let epoch = Instant::now();
    let mut runs = Vec::with_capacity(plan.len());
    // The first measured A's stdout, and the A of the pair under way
    // (`None` while that is the first measured A), with their `seq`.
    let mut reference: Option<(usize, Capture)> = None;
    let mut pair_a: Option<(usize, Capture)> = None;
    for (seq, &(side, warm, pair)) in plan.iter().enumerate() {
        let phase =
            if warm { format!("warm-up pair {}/{warmup}", pair + 1) } else { format!("pair {}/{pairs}", pair + 1) };
        progress.started(format!("run {}/{} ({side}, {phase})", seq + 1, plan.len()));
        let m = measure::measure(command, envs.of(side), epoch)?;
        progress.ended(format!("{:.2} s, exit status {}", m.wall.as_secs_f64(), m.waited.exit));
        notes.after(side, seq, &m)?;
        let compared = match side {
            Side::A if warm => None,
            Side::A => match &reference {
                Some((with, first)) => Some((*with, m.stdout.same_as(first)?)),
                None => None,
            },
            Side::B => match pair_a.as_ref().or(reference.as_ref()) {
                Some((with, a)) => Some((*with, m.stdout.same_as(a)?)),
                None => None,
            },
        };
        runs.push(Run {
            seq,
            side,
            warmup: warm,
            pair,
            start: m.start,
            wall: m.wall,
            user: m.waited.user,
            sys: m.waited.sys,
            max_rss_bytes: m.waited.max_rss_bytes,
            exit: m.waited.exit,
            stdout_bytes: m.stdout.len()?,
            compared,
        });
        if side == Side::A {
            if !warm && reference.is_none() {
                // The first measured A: the reference, and its pair's A.
                reference = Some((seq, m.stdout));
                pair_a = None;
            } else {
                pair_a = Some((seq, m.stdout));
            }
        }
    }
    Ok(runs)
}

/// What was already said on stderr.
#[derive(Debug, Default)]
struct Notes {
    /// Sides whose failing run was shown.
    failures: HashSet<Side>,
    /// Whether B's library lines were shown.
    library_lines: bool,
}

impl Notes {
    fn after(&mut self, side: Side, seq: usize, m: &Measured) -> Result<(), CaptureError> {
        if !m.waited.exit.success() && self.failures.insert(side) {
            let tail = m.stderr.tail(10)?;
            eprintln!(
                "ab: run {} ({side}) exited with status {}{}",
                seq + 1,
                m.waited.exit,
                if tail.is_empty() { "; its stderr is empty" } else { "; the end of its stderr:" }
            );
            for line in tail {
                eprintln!("  {line}");
            }
        }
        if side == Side::B && !self.library_lines {
            let lines = m.stderr.lines_starting("ipc-offload[")?;
            if !lines.is_empty() {
                self.library_lines = true;
                eprintln!("ab: the library wrote to B's stderr (run {}):", seq + 1);
                for line in lines.iter().take(5) {
                    eprintln!("  {line}");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_pairs_then_measured_pairs_a_before_b() {
        let s = schedule(1, 2);
        assert_eq!(
            s,
            [
                (Side::A, true, 0),
                (Side::B, true, 0),
                (Side::A, false, 0),
                (Side::B, false, 0),
                (Side::A, false, 1),
                (Side::B, false, 1)
            ]
        );
        assert_eq!(schedule(0, 1).len(), 2);
    }
}
