//! The report on stdout: a heading, the summary table, the table of
//! pairs, and a line on exit statuses and stdout.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::figures::{Figures, Metric, Row, Spread, seconds};
use super::session::Run;
use super::setup::Setup;
use super::sides::Side;
use super::verdict::Agreement;

/// The whole report.
pub fn report(setup: &Setup, runs: &[Run], figures: &Figures<'_>) -> String {
    let mut out = String::new();
    let o = &setup.options;
    let _ = writeln!(out, "## A/B: `{}`\n", heading(&setup.command_line()));
    let _ = writeln!(
        out,
        "A: without the library; B: with {} (policy: {}). {} pair{} after {} warm-up pair{}, run A B A B; stdin /dev/null.\n",
        setup.library.display(),
        setup.policy,
        o.runs,
        plural(o.runs as usize),
        o.warmup,
        plural(o.warmup as usize)
    );
    summary_table(&mut out, figures);
    out.push('\n');
    pairs_table(&mut out, figures);
    out.push('\n');
    let _ = writeln!(out, "{}", statuses(runs));
    let _ = writeln!(out, "{}", stdout_line(figures));
    out
}

fn summary_table(out: &mut String, figures: &Figures<'_>) {
    out.push_str("| metric | A min | A median | A max | B min | B median | B max | B/A median | B/A min | B/A max |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for Row { metric, a, b, ratio } in &figures.rows {
        let name = match metric {
            Metric::Wall => "wall",
            Metric::Cpu => "user+sys CPU",
            Metric::MaxRss => "peak RSS",
        };
        let cells = |s: &Option<Spread>, f: &dyn Fn(f64) -> String| match s {
            Some(s) => format!("{} | {} | {}", f(s.min), f(s.median), f(s.max)),
            None => "- | - | -".to_owned(),
        };
        let value = |x: f64| match metric {
            Metric::MaxRss => mib(x),
            _ => seconds(x),
        };
        let ratio = match ratio {
            Some(r) => format!("{} | {} | {}", times(r.median), times(r.min), times(r.max)),
            None => "- | - | -".to_owned(),
        };
        let _ = writeln!(out, "| {name} | {} | {} | {ratio} |", cells(a, &value), cells(b, &value));
    }
}

fn pairs_table(out: &mut String, figures: &Figures<'_>) {
    out.push_str("| pair | A wall | B wall | B/A wall | A CPU | B CPU | B/A CPU | A exit | B exit | B stdout |\n");
    out.push_str("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for (i, p) in figures.pairs.iter().enumerate() {
        let ratio = |m| p.ratio(m).map_or_else(|| "-".to_owned(), times);
        let same = match p.b.compared {
            Some((_, true)) => "same",
            Some((_, false)) => "differs",
            None => "-",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {same} |",
            i + 1,
            seconds(p.a.wall.as_secs_f64()),
            seconds(p.b.wall.as_secs_f64()),
            ratio(Metric::Wall),
            seconds(p.a.cpu().as_secs_f64()),
            seconds(p.b.cpu().as_secs_f64()),
            ratio(Metric::Cpu),
            p.a.exit,
            p.b.exit,
        );
    }
}

/// "Exit status: A 0 in 5 runs; B 0 in 4 runs, 1 in 1 run."
fn statuses(runs: &[Run]) -> String {
    let side = |side: Side| {
        let mut counts = BTreeMap::new();
        for r in runs.iter().filter(|r| !r.warmup && r.side == side) {
            *counts.entry(r.exit).or_insert(0usize) += 1;
        }
        let list: Vec<String> = counts.iter().map(|(exit, n)| format!("{exit} in {n} run{}", plural(*n))).collect();
        format!("{side} {}", list.join(", "))
    };
    format!("Exit status: {}; {}.", side(Side::A), side(Side::B))
}

/// "Stdout: B's the same as A's in 5 of 5 pairs (A 64 B)."
fn stdout_line(figures: &Figures<'_>) -> String {
    let agreement = Agreement::of(&figures.pairs);
    let n = figures.pairs.len();
    let first = figures.pairs.first().map_or(0, |p| p.a.stdout_bytes);
    let mut line = format!(
        "Stdout: B's the same as A's in {} of {n} pair{} (A's first: {first} byte{}).",
        n - agreement.stdout_differs.len(),
        plural(n),
        plural(usize::try_from(first).unwrap_or(usize::MAX))
    );
    if agreement.a_stdout_varies {
        line.push_str(" A's own runs differ: the command's stdout is not deterministic.");
    }
    line
}

/// The command line's first line, at most 100 characters (the JSON has
/// all of it).
fn heading(command: &str) -> String {
    const MAX: usize = 100;
    let first = command.lines().next().unwrap_or_default();
    if first.len() == command.len() && first.chars().count() <= MAX {
        return first.to_owned();
    }
    let cut: String = first.chars().take(MAX - 3).collect();
    format!("{cut}...")
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / f64::from(1u32 << 20))
}

fn times(r: f64) -> String {
    format!("{r:.3}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(seconds(1.23456), "1.235 s");
        assert_eq!(seconds(0.0123), "12.3 ms");
        assert_eq!(mib(200.0 * 1048576.0), "200.0 MiB");
        assert_eq!(times(0.5), "0.500");
        assert_eq!(heading("sh -c 'a | b'"), "sh -c 'a | b'");
        assert_eq!(heading("python3 -c 'import os\nprint(1)'"), "python3 -c 'import os...");
        assert_eq!(heading(&"x".repeat(200)).len(), 100);
    }
}
