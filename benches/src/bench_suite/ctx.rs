//! What every part of the suite uses: the settings, the sides of a
//! comparison, the alternating runs and the rows made of them.

use std::path::{Path, PathBuf};

use ipc_offload_bench::ipc::{Sample, Side};
use ipc_offload_bench::stats::Better;
use ipc_offload_bench::suite::progress::Progress;
use ipc_offload_bench::suite::results::{FastPath, Row, paired};
use ipc_offload_bench::suite::{mode_policy, round_order};

/// The suite's settings and tools, for every part.
pub struct Ctx {
    pub root: PathBuf,
    pub lib: PathBuf,
    /// Policy files, stats files, the compiled C program, the dd input.
    pub scratch: PathBuf,
    /// benches/c/ipc_bench.c, compiled.
    pub program: PathBuf,
    /// The interpreter itself (not a pyenv shim), or None.
    pub python: Option<PathBuf>,
    pub quick: bool,
    /// Rounds (pairs of runs) of each comparison.
    pub rounds: usize,
    pub modes: Vec<String>,
    pub workers: Vec<usize>,
    pub pairs: Vec<usize>,
    pub progress: Progress,
}

/// One side of a comparison: the kernel path (no library), or the library
/// with a policy file (None: the built-in policy).
#[derive(Clone, Debug)]
pub struct SideSpec {
    pub name: String,
    pub library: bool,
    pub policy: Option<PathBuf>,
}

impl SideSpec {
    pub fn kernel() -> SideSpec {
        SideSpec { name: "kernel".into(), library: false, policy: None }
    }
}

impl Ctx {
    pub fn side<'a>(&'a self, spec: &'a SideSpec) -> Side<'a> {
        if spec.library { Side::Library { lib: &self.lib, policy: spec.policy.as_deref() } } else { Side::Kernel }
    }

    /// Writes a policy file into the scratch directory; its path.
    pub fn policy_file(&self, name: &str, text: &str) -> Result<PathBuf, String> {
        let path = self.scratch.join(format!("{name}.toml"));
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    /// The kernel, then the library in each mode.
    pub fn kernel_and_modes(&self) -> Result<Vec<SideSpec>, String> {
        self.kernel_and_modes_with("", "")
    }

    /// As [`Ctx::kernel_and_modes`], each mode's policy followed by `extra`
    /// (its files named with `tag`).
    pub fn kernel_and_modes_with(&self, tag: &str, extra: &str) -> Result<Vec<SideSpec>, String> {
        let mut sides = vec![SideSpec::kernel()];
        for m in &self.modes {
            let policy = self.policy_file(&format!("mode-{m}{tag}"), &format!("{}{extra}", mode_policy(m)))?;
            sides.push(SideSpec { name: m.clone(), library: true, policy: Some(policy) });
        }
        Ok(sides)
    }

    /// Where a side's run keeps its stats files.
    pub fn stats_dir(&self, key: &str, side: &SideSpec) -> PathBuf {
        self.scratch.join("stats").join(key).join(&side.name)
    }

    /// `self.rounds` rounds of one run of each side, in the order of
    /// [`round_order`]: `samples[side][round]`. `run` makes one run;
    /// `label` and `show` make the progress line of each.
    pub fn alternate(
        &mut self,
        label: &str,
        sides: &[SideSpec],
        mut run: impl FnMut(&Ctx, &SideSpec) -> Result<Sample, String>,
        show: impl Fn(&Sample) -> String,
    ) -> Result<Vec<Vec<Sample>>, String> {
        // Each side runs once per round: its runs are in the rounds' order.
        let mut samples: Vec<Vec<Sample>> = vec![vec![]; sides.len()];
        for round in 0..self.rounds {
            for s in round_order(round, sides.len()) {
                let sample = run(self, &sides[s])?;
                let line =
                    format!("{label}, round {}/{}, {}: {}", round + 1, self.rounds, sides[s].name, show(&sample));
                self.progress.step(1.0, &line);
                samples[s].push(sample);
            }
        }
        Ok(samples)
    }
}

/// What a row is, before its figures.
#[derive(Clone, Debug)]
pub struct RowSpec {
    pub key: String,
    pub title: String,
    pub label: String,
    pub group: String,
    pub size: Option<u64>,
    pub unit: &'static str,
    pub better: Better,
    /// Which of a run's figures (`Sample::values`) it is.
    pub value: usize,
    /// Whether the library's stats must show bytes through shared memory
    /// (None: the row has no stats class).
    pub expects_fast_path: Option<bool>,
    pub note: Option<String>,
}

impl RowSpec {
    /// The CPU-per-GiB row of the same runs (`ipc_bench xfer`'s second
    /// figure), under its own key, title and group.
    pub fn cpu_per_gib(&self, key: String, title: String, group: String) -> RowSpec {
        RowSpec { key, title, group, unit: "CPU s/GiB", better: Better::Lower, value: 1, note: None, ..self.clone() }
    }
}

/// The row of `spec` from `samples[side][round]`.
pub fn row(spec: &RowSpec, sides: &[SideSpec], samples: &[Vec<Sample>]) -> Row {
    let names: Vec<String> = sides.iter().map(|s| s.name.clone()).collect();
    let runs: Vec<Vec<f64>> = samples
        .iter()
        .map(|side| side.iter().map(|s| s.values.get(spec.value).copied().unwrap_or(f64::NAN)).collect())
        .collect();
    let (baseline, mut variants) = paired(spec.better, &names, &runs);
    if let Some(expected) = spec.expects_fast_path {
        for (v, side) in variants.iter_mut().zip(&samples[1..]) {
            v.fast_path = Some(FastPath {
                fast_path_bytes: side.iter().map(|s| s.fast_path_bytes).sum(),
                kernel_path_bytes: side.iter().map(|s| s.kernel_path_bytes).sum(),
                expected,
            });
        }
    }
    Row {
        key: spec.key.clone(),
        title: spec.title.clone(),
        label: spec.label.clone(),
        group: spec.group.clone(),
        size: spec.size,
        unit: spec.unit.into(),
        better: spec.better,
        baseline,
        variants,
        note: spec.note.clone(),
    }
}

/// "1MiB", "64KiB": a size for keys.
pub fn size_key(bytes: u64) -> String {
    ipc_offload_bench::size_label(bytes).replace(' ', "")
}

/// A file's path as text.
pub fn text(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(values: &[f64], fast: u64) -> Sample {
        Sample { value: values[0], values: values.to_vec(), fast_path_bytes: fast, kernel_path_bytes: 1 }
    }

    #[test]
    fn rows_take_their_figure_and_the_stats() {
        let sides = vec![
            SideSpec::kernel(),
            SideSpec { name: "latency".into(), library: true, policy: None },
            SideSpec { name: "efficiency".into(), library: true, policy: None },
        ];
        let samples = vec![
            vec![sample(&[2.0, 0.5], 0), sample(&[4.0, 0.5], 0)],
            vec![sample(&[8.0, 0.1], 10), sample(&[8.0, 0.25], 10)],
            vec![sample(&[1.0, 1.0], 0), sample(&[1.0, 1.0], 0)],
        ];
        let spec = RowSpec {
            key: "unix-cpu-1MiB".into(),
            title: "t".into(),
            label: "1 MiB".into(),
            group: "unix-cpu".into(),
            size: Some(1 << 20),
            unit: "CPU s/GiB",
            better: Better::Lower,
            value: 1,
            expects_fast_path: Some(true),
            note: None,
        };
        let r = row(&spec, &sides, &samples);
        assert_eq!(r.baseline.runs, vec![0.5, 0.5]);
        assert_eq!(r.variants[0].name, "latency");
        assert_eq!(r.variants[0].speedups, vec![5.0, 2.0]);
        assert_eq!(
            r.variants[0].fast_path,
            Some(FastPath { fast_path_bytes: 20, kernel_path_bytes: 2, expected: true })
        );
        assert_eq!(r.missing_fast_path(), vec!["efficiency"]);
        assert_eq!(size_key(64 << 10), "64KiB");
    }
}
