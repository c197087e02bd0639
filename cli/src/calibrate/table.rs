//! The measured times, their medians, and what follows from them: the size
//! from which each engine wins, and the engine and threshold of each class.

use std::time::Duration;

use ipc_offload_policy::{Class, Engine, format_size};

use crate::stats::render;

/// Who moves the bytes in one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contender {
    /// Without the library: libc on the calling thread (memory classes) or
    /// the kernel (unix, pipe).
    Baseline,
    /// With the library, the class's engine set to this one.
    Engine(Engine),
}

impl Contender {
    /// "libc", "kernel", or the engine's name.
    pub fn label(self, class: Class) -> &'static str {
        match self {
            Contender::Baseline if class.is_ipc() => "kernel",
            Contender::Baseline => "libc",
            Contender::Engine(engine) => engine.name(),
        }
    }
}

/// An engine wins at a size when the baseline's median time is at least this
/// much larger than its own (5%: the noise of a shared machine is about
/// that).
pub const MARGIN: f64 = 0.05;

/// Everything measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// CPUs a process started here may use.
    pub cpus: u32,
    /// Runs of each contender per class.
    pub rounds: usize,
    /// The dsa and hybrid engines ran on the DSA device model.
    pub dsa_model: bool,
    pub classes: Vec<ClassTable>,
}

/// One class: per size, the time of one operation in each run.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassTable {
    pub class: Class,
    /// Ascending.
    pub sizes: Vec<u64>,
    /// The baseline's times, per size.
    pub baseline: Vec<Vec<Duration>>,
    /// Each engine's times, per size.
    pub engines: Vec<(Engine, Vec<Vec<Duration>>)>,
    /// Engines not measured, and why.
    pub skipped: Vec<(Engine, String)>,
}

/// What the table says a class should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub class: Class,
    /// The engine to use, or `Off` where none wins.
    pub engine: Engine,
    /// From which size (`None` with `Off`).
    pub min_bytes: Option<u64>,
    /// Why, in a few words.
    pub reason: String,
}

/// The median of `samples` (the lower middle of an even count: a time that
/// was measured); zero when empty.
pub fn median(samples: &[Duration]) -> Duration {
    let mut v = samples.to_vec();
    v.sort();
    v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or_default()
}

/// GB/s of `bytes` moved in `time` ("-" for no time).
fn gbps(bytes: u64, time: Duration) -> String {
    if time.is_zero() { "-".to_owned() } else { format!("{:.2}", bytes as f64 / time.as_secs_f64() / 1e9) }
}

impl ClassTable {
    pub fn new(class: Class, sizes: Vec<u64>, engines: &[Engine], skipped: Vec<(Engine, String)>) -> ClassTable {
        let empty = vec![Vec::new(); sizes.len()];
        ClassTable {
            class,
            baseline: empty.clone(),
            engines: engines.iter().map(|e| (*e, empty.clone())).collect(),
            sizes,
            skipped,
        }
    }

    /// Adds one run's times (one per size).
    pub fn record(&mut self, contender: Contender, times: &[Duration]) {
        let series = match contender {
            Contender::Baseline => Some(&mut self.baseline),
            Contender::Engine(engine) => self.engines.iter_mut().find(|(e, _)| *e == engine).map(|(_, s)| s),
        };
        if let Some(series) = series {
            for (per_size, t) in series.iter_mut().zip(times) {
                per_size.push(*t);
            }
        }
    }

    /// The engine's speedup over the baseline at size index `i`: the median
    /// of the ratios of the runs made in the same round (one after the
    /// other), so that a drift of the machine's speed between rounds
    /// cancels out.
    pub fn speedup(&self, series: &[Vec<Duration>], i: usize) -> f64 {
        let ratios: Vec<f64> = self.baseline[i]
            .iter()
            .zip(&series[i])
            .filter(|(_, own)| !own.is_zero())
            .map(|(base, own)| base.as_secs_f64() / own.as_secs_f64())
            .collect();
        let mut sorted = ratios;
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len().saturating_sub(1) / 2).copied().unwrap_or(0.0)
    }

    /// Whether the engine wins at size index `i`: a speedup of at least
    /// 1 + [`MARGIN`].
    fn wins(&self, series: &[Vec<Duration>], i: usize) -> bool {
        self.speedup(series, i) >= 1.0 + MARGIN
    }

    /// The smallest size from which the engine of `series` wins at that size
    /// and every larger one; `None` when it does not win at the largest.
    pub fn crossover(&self, series: &[Vec<Duration>]) -> Option<u64> {
        let losing_above = (0..self.sizes.len()).rev().find(|&i| !self.wins(series, i));
        let first = losing_above.map_or(0, |i| i + 1);
        self.sizes.get(first).copied()
    }

    /// The engine that wins and is fastest at the largest size (the sizes
    /// that carry the most bytes), from its crossover; `Off` when none wins.
    pub fn choice(&self) -> Choice {
        let off = |reason: String| Choice { class: self.class, engine: Engine::Off, min_bytes: None, reason };
        let base = Contender::Baseline.label(self.class);
        if self.engines.is_empty() {
            return off(format!("not measured: no engine to compare with {base} here"));
        }
        let last = self.sizes.len().saturating_sub(1);
        let best = self
            .engines
            .iter()
            .filter_map(|(engine, series)| self.crossover(series).map(|from| (*engine, series, from)))
            .min_by_key(|(_, series, _)| median(&series[last]));
        match best {
            None => off(format!("no engine beats {base} by {:.0}% up to {}", MARGIN * 100.0, self.largest())),
            Some((engine, series, from)) => {
                let speedup = self.speedup(series, last);
                let reason = if Some(&from) == self.sizes.first() {
                    format!("{engine} wins from the smallest size measured, {speedup:.2}x {base} at {}", self.largest())
                } else {
                    format!("{engine} wins from {}, {speedup:.2}x {base} at {}", format_size(from), self.largest())
                };
                Choice { class: self.class, engine, min_bytes: Some(from), reason }
            }
        }
    }

    fn largest(&self) -> String {
        self.sizes.last().map_or_else(String::new, |s| format_size(*s))
    }

    /// The class's table: per size, the median GB/s of each contender and
    /// each engine's speedup over the baseline (`*`: a win), then the
    /// crossovers and the choice.
    pub fn render(&self) -> String {
        let base = Contender::Baseline.label(self.class);
        let mut out = format!("[{}]", self.class);
        if self.engines.is_empty() {
            out.push_str(&format!(" {}\n", self.choice().reason));
            out.push_str(&self.skipped_lines());
            return out;
        }
        out.push_str(&format!(
            " GB/s, median of {} runs; vs {base}: median speedup in the same round, * a win (>= {:.0}%)\n",
            self.baseline.first().map_or(0, Vec::len),
            MARGIN * 100.0
        ));
        let mut header = vec!["SIZE".to_owned(), base.to_owned()];
        for (engine, _) in &self.engines {
            header.push(engine.name().to_owned());
            header.push(format!("vs {base}"));
        }
        let mut rows = vec![header];
        for (i, size) in self.sizes.iter().enumerate() {
            let mut row = vec![format_size(*size), gbps(*size, median(&self.baseline[i]))];
            for (_, series) in &self.engines {
                let own = median(&series[i]);
                row.push(gbps(*size, own));
                let mark = if self.wins(series, i) { " *" } else { "" };
                row.push(format!("{:.2}x{mark}", self.speedup(series, i)));
            }
            rows.push(row);
        }
        out.push_str(&indent(&render(&rows)));
        for (engine, series) in &self.engines {
            let wins = self
                .crossover(series)
                .map_or_else(|| "never wins".to_owned(), |s| format!("wins from {}", format_size(s)));
            out.push_str(&format!("  {engine} {wins}\n"));
        }
        out.push_str(&self.skipped_lines());
        let c = self.choice();
        let threshold = c.min_bytes.map_or_else(String::new, |m| format!(", min_bytes = \"{}\"", format_size(m)));
        out.push_str(&format!("  chosen: engine = \"{}\"{threshold} ({})\n", c.engine, c.reason));
        out
    }

    fn skipped_lines(&self) -> String {
        self.skipped.iter().map(|(engine, why)| format!("  {engine} not measured: {why}\n")).collect()
    }
}

impl Table {
    /// Every class's table, one after the other.
    pub fn render(&self) -> String {
        let mut out = format!("calibration on {} CPU(s), {} alternating runs per contender", self.cpus, self.rounds);
        if self.dsa_model {
            out.push_str("; dsa and hybrid on the DSA device model");
        }
        out.push('\n');
        for class in &self.classes {
            out.push_str(&class.render());
        }
        out
    }

    pub fn choices(&self) -> Vec<Choice> {
        self.classes.iter().map(ClassTable::choice).collect()
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
