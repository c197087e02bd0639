//! Whether B agrees with A (stdout bytes, exit status), and the gates of
//! `--compare-output` and `--fail-if-slower`.

use std::fmt;

use super::figures::seconds;
use super::figures::{Figures, Metric, Pair};

/// How far B's runs agree with A's, over the measured pairs (numbered from
/// 1 here).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Agreement {
    /// Pairs whose B wrote other stdout bytes than their A.
    pub stdout_differs: Vec<usize>,
    /// Pairs whose B ended otherwise than their A.
    pub status_differs: Vec<usize>,
    /// Measured A runs whose stdout differs from the first measured A's:
    /// the command's output is not deterministic.
    pub a_stdout_varies: bool,
}

impl Agreement {
    pub fn of(pairs: &[Pair<'_>]) -> Agreement {
        let mut agreement = Agreement::default();
        for (i, p) in pairs.iter().enumerate() {
            if p.b.compared.is_some_and(|(_, same)| !same) {
                agreement.stdout_differs.push(i + 1);
            }
            if p.a.exit != p.b.exit {
                agreement.status_differs.push(i + 1);
            }
            if p.a.compared.is_some_and(|(_, same)| !same) {
                agreement.a_stdout_varies = true;
            }
        }
        agreement
    }
}

/// A gate that failed.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// `--compare-output`: B's stdout or exit status differs from A's.
    Output { details: Vec<String>, a_stdout_varies: bool },
    /// `--fail-if-slower R`: B's median wall time is above R times A's.
    Slower { limit: f64, a: f64, b: f64 },
    /// `--fail-if-slower R`: an exit status differs, so the times are not
    /// those of the same work.
    NotComparable { limit: f64, details: Vec<String> },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Output { details, a_stdout_varies } => {
                write!(f, "--compare-output: B differs from A: {}", details.join("; "))?;
                if *a_stdout_varies {
                    write!(f, " (A's own runs differ too: the command's stdout is not deterministic)")?;
                }
                Ok(())
            }
            Failure::Slower { limit, a, b } => {
                let (ratio, b, a) = (b / a, seconds(*b), seconds(*a));
                write!(f, "--fail-if-slower {limit}: B's median wall time {b} is {ratio:.3} times A's {a}")
            }
            Failure::NotComparable { limit, details } => write!(
                f,
                "--fail-if-slower {limit}: exit statuses differ ({}): the times are not comparable",
                details.join("; ")
            ),
        }
    }
}

/// "1 byte", "45 bytes".
fn bytes(n: u64) -> String {
    format!("{n} byte{}", if n == 1 { "" } else { "s" })
}

/// The failures of the gates asked for (empty: exit 0).
pub fn gates(figures: &Figures<'_>, compare_output: bool, fail_if_slower: Option<f64>) -> Vec<Failure> {
    let agreement = Agreement::of(&figures.pairs);
    let status_details = || {
        agreement
            .status_differs
            .iter()
            .map(|&i| {
                let p = &figures.pairs[i - 1];
                format!("pair {i}: exit status A {}, B {}", p.a.exit, p.b.exit)
            })
            .collect::<Vec<_>>()
    };
    let mut failures = Vec::new();
    if compare_output && (!agreement.stdout_differs.is_empty() || !agreement.status_differs.is_empty()) {
        let mut details: Vec<String> = agreement
            .stdout_differs
            .iter()
            .map(|&i| {
                let p = &figures.pairs[i - 1];
                format!("pair {i}: stdout not the same (A {}, B {})", bytes(p.a.stdout_bytes), bytes(p.b.stdout_bytes))
            })
            .collect();
        details.extend(status_details());
        failures.push(Failure::Output { details, a_stdout_varies: agreement.a_stdout_varies });
    }
    if let Some(limit) = fail_if_slower {
        if !agreement.status_differs.is_empty() {
            failures.push(Failure::NotComparable { limit, details: status_details() });
        } else if let (Some(a), Some(b)) = figures.sides(Metric::Wall) {
            if b.median > limit * a.median {
                failures.push(Failure::Slower { limit, a: a.median, b: b.median });
            }
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ab::session::Run;
    use crate::ab::sides::Side;
    use crate::ab::wait::Exit;
    use std::time::Duration;

    fn run(seq: usize, side: Side, wall_ms: u64, exit: i32, same: Option<bool>) -> Run {
        Run {
            seq,
            side,
            warmup: false,
            pair: seq / 2,
            start: Duration::ZERO,
            wall: Duration::from_millis(wall_ms),
            user: Duration::ZERO,
            sys: Duration::ZERO,
            max_rss_bytes: 0,
            exit: Exit::Code(exit),
            stdout_bytes: 1,
            compared: same.map(|s| (0, s)),
        }
    }

    #[test]
    fn agreeing_runs_pass_every_gate() {
        let runs = [run(0, Side::A, 100, 0, None), run(1, Side::B, 104, 0, Some(true))];
        assert_eq!(gates(&Figures::of(&runs), true, Some(1.05)), []);
    }

    #[test]
    fn output_and_status_differences_fail_compare_output_only() {
        let runs = [run(0, Side::A, 100, 0, None), run(1, Side::B, 100, 0, Some(false))];
        let f = gates(&Figures::of(&runs), true, None);
        assert!(matches!(&f[..], [Failure::Output { a_stdout_varies: false, .. }]), "{f:?}");
        assert!(f[0].to_string().contains("pair 1: stdout"), "{}", f[0]);
        assert_eq!(gates(&Figures::of(&runs), false, Some(2.0)), []);
        let runs = [run(0, Side::A, 100, 0, None), run(1, Side::B, 10, 1, Some(true))];
        let f = gates(&Figures::of(&runs), true, Some(2.0));
        assert!(matches!(&f[..], [Failure::Output { .. }, Failure::NotComparable { .. }]), "{f:?}");
        assert!(f[1].to_string().contains("exit status A 0, B 1"), "{}", f[1]);
    }

    #[test]
    fn slower_compares_medians() {
        let runs = [
            run(0, Side::A, 100, 0, None),
            run(1, Side::B, 120, 0, Some(true)),
            run(2, Side::A, 100, 0, Some(true)),
            run(3, Side::B, 500, 0, Some(true)),
            run(4, Side::A, 300, 0, Some(false)),
            run(5, Side::B, 100, 0, Some(true)),
        ];
        // Medians: A 0.1, B 0.12.
        assert_eq!(gates(&Figures::of(&runs), false, Some(1.25)), []);
        let f = gates(&Figures::of(&runs), false, Some(1.1));
        assert!(matches!(f[..], [Failure::Slower { limit: 1.1, .. }]), "{f:?}");
        assert_eq!(f[0].to_string(), "--fail-if-slower 1.1: B's median wall time 120.0 ms is 1.200 times A's 100.0 ms");
        assert!(Agreement::of(&Figures::of(&runs).pairs).a_stdout_varies);
    }
}
