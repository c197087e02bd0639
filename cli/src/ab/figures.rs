//! The figures of a comparison: min/median/max of each metric per side,
//! and the B/A ratio of each pair with its min/median/max.

use super::session::Run;
use super::sides::Side;

/// Min, median (the mean of the two middle values for an even count) and
/// max.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    /// `None` without values. NaNs are left out.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 };
        Some(Spread { min: v[0], median, max: v[v.len() - 1] })
    }
}

/// The metrics, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Seconds.
    Wall,
    /// user + sys seconds.
    Cpu,
    /// Bytes.
    MaxRss,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::Wall, Metric::Cpu, Metric::MaxRss];

    pub fn of(self, run: &Run) -> f64 {
        match self {
            Metric::Wall => run.wall.as_secs_f64(),
            Metric::Cpu => run.cpu().as_secs_f64(),
            Metric::MaxRss => run.max_rss_bytes as f64,
        }
    }

    /// The JSON key.
    pub fn key(self) -> &'static str {
        match self {
            Metric::Wall => "wall_s",
            Metric::Cpu => "cpu_s",
            Metric::MaxRss => "max_rss_bytes",
        }
    }
}

/// A measured pair.
#[derive(Clone, Copy, Debug)]
pub struct Pair<'r> {
    pub a: &'r Run,
    pub b: &'r Run,
}

impl Pair<'_> {
    /// B/A of `metric`; `None` when A's is 0 (a CPU time below the clock's
    /// resolution).
    pub fn ratio(&self, metric: Metric) -> Option<f64> {
        let (a, b) = (metric.of(self.a), metric.of(self.b));
        (a > 0.0).then(|| b / a)
    }
}

/// The measured pairs, in order (warm-up runs left out).
pub fn pairs(runs: &[Run]) -> Vec<Pair<'_>> {
    let measured = |side| runs.iter().filter(move |r| !r.warmup && r.side == side);
    measured(Side::A).zip(measured(Side::B)).map(|(a, b)| Pair { a, b }).collect()
}

/// One metric's figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    pub metric: Metric,
    /// A's runs.
    pub a: Option<Spread>,
    /// B's runs.
    pub b: Option<Spread>,
    /// The pairs' B/A ratios.
    pub ratio: Option<Spread>,
}

/// What the tables and the JSON show.
#[derive(Clone, Debug)]
pub struct Figures<'r> {
    pub pairs: Vec<Pair<'r>>,
    /// Per metric, in [`Metric::ALL`] order.
    pub rows: Vec<Row>,
}

impl<'r> Figures<'r> {
    pub fn of(runs: &'r [Run]) -> Figures<'r> {
        let pairs = pairs(runs);
        let rows = Metric::ALL
            .iter()
            .map(|&m| Row {
                metric: m,
                a: Spread::of(pairs.iter().map(|p| m.of(p.a))),
                b: Spread::of(pairs.iter().map(|p| m.of(p.b))),
                ratio: Spread::of(pairs.iter().filter_map(|p| p.ratio(m))),
            })
            .collect();
        Figures { pairs, rows }
    }

    /// A's and B's spreads of `metric`.
    pub fn sides(&self, metric: Metric) -> (Option<Spread>, Option<Spread>) {
        self.rows.iter().find(|r| r.metric == metric).map(|r| (r.a, r.b)).unwrap_or((None, None))
    }
}

/// `1.234 s`, or `12.3 ms` below a second.
pub fn seconds(s: f64) -> String {
    if s >= 1.0 { format!("{s:.3} s") } else { format!("{:.1} ms", s * 1e3) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ab::wait::Exit;
    use std::time::Duration;

    fn run(seq: usize, side: Side, warmup: bool, wall_ms: u64, cpu_ms: u64) -> Run {
        Run {
            seq,
            side,
            warmup,
            pair: 0,
            start: Duration::ZERO,
            wall: Duration::from_millis(wall_ms),
            user: Duration::from_millis(cpu_ms),
            sys: Duration::ZERO,
            max_rss_bytes: 1 << 20,
            exit: Exit::Code(0),
            stdout_bytes: 0,
            compared: None,
        }
    }

    fn close(s: Spread, [min, median, max]: [f64; 3]) {
        let near = |x: f64, y: f64| (x - y).abs() < 1e-12;
        assert!(near(s.min, min) && near(s.median, median) && near(s.max, max), "{s:?}");
    }

    #[test]
    fn spreads() {
        assert_eq!(Spread::of([3.0, 1.0, 2.0]), Some(Spread { min: 1.0, median: 2.0, max: 3.0 }));
        assert_eq!(Spread::of([4.0, 1.0, 2.0, 10.0]), Some(Spread { min: 1.0, median: 3.0, max: 10.0 }));
        assert_eq!(Spread::of([]), None);
        assert_eq!(Spread::of([f64::NAN, 5.0]), Some(Spread { min: 5.0, median: 5.0, max: 5.0 }));
    }

    #[test]
    fn ratios_pair_by_pair_without_the_warm_up() {
        let runs = [
            run(0, Side::A, true, 1000, 10),
            run(1, Side::B, true, 1, 10),
            run(2, Side::A, false, 100, 0),
            run(3, Side::B, false, 50, 10),
            run(4, Side::A, false, 200, 20),
            run(5, Side::B, false, 300, 10),
            run(6, Side::A, false, 400, 40),
            run(7, Side::B, false, 400, 10),
        ];
        let f = Figures::of(&runs);
        assert_eq!(f.pairs.len(), 3);
        assert_eq!((f.pairs[0].a.seq, f.pairs[0].b.seq), (2, 3));
        let Row { metric, a, b, ratio } = f.rows[0];
        assert_eq!(metric, Metric::Wall);
        assert_eq!(a.unwrap().median, 0.2);
        assert_eq!(b.unwrap().median, 0.3);
        // 0.5, 1.5, 1.0: the median of the ratios, not the ratio of medians.
        close(ratio.unwrap(), [0.5, 1.0, 1.5]);
        // A pair whose A used no measurable CPU has no CPU ratio.
        close(f.rows[1].ratio.unwrap(), [0.25, 0.375, 0.5]);
        assert_eq!(f.rows[2].ratio.unwrap().median, 1.0);
    }
}
