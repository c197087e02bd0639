//! What a part of the suite measured: rows of one figure each, a baseline
//! (the kernel path, glibc) and the library's variants (its modes, worker
//! counts), every run kept, medians and the speedups of runs paired back to
//! back; and their JSON.

use serde_json::{Value, json};

use super::Part;
use crate::stats::{Better, Spread, num};

/// The version of the JSON files' schema (`"suite"`).
pub const SCHEMA: u64 = 1;

/// The baseline of a row: its name (`kernel`, `glibc`) and every run's figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Baseline {
    pub name: String,
    pub runs: Vec<f64>,
}

/// What the library's stats files say about a variant's runs: bytes of the
/// row's class moved through shared memory and through the kernel (every
/// process of every run), and whether the row needs the former.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastPath {
    pub fast_path_bytes: u64,
    pub kernel_path_bytes: u64,
    pub expected: bool,
}

impl FastPath {
    /// The share of the bytes that went through shared memory; None when
    /// the library moved none of the class's bytes at or above its threshold.
    pub fn share(&self) -> Option<f64> {
        let all = self.fast_path_bytes + self.kernel_path_bytes;
        (all > 0).then(|| self.fast_path_bytes as f64 / all as f64)
    }

    /// Expected, and missing: the library's figures would be the kernel's.
    pub fn missing(&self) -> bool {
        self.expected && self.fast_path_bytes == 0
    }
}

/// One way of running the library (a mode, a worker count).
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    pub name: String,
    pub runs: Vec<f64>,
    /// One per pair of runs (or batches) taken back to back with the
    /// baseline; above 1: better than the baseline (see [`Better::speedup`]).
    pub speedups: Vec<f64>,
    /// For IPC rows; None where no stats class counts the row's bytes.
    pub fast_path: Option<FastPath>,
}

impl Variant {
    pub fn median(&self) -> f64 {
        Spread::of(&self.runs).median
    }

    pub fn speedup(&self) -> Spread {
        Spread::of(&self.speedups)
    }
}

/// One figure measured on every side.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Unique within the suite: `unix-stream-1MiB`.
    pub key: String,
    /// For the tables: `Unix socket stream, 1 MiB writes`.
    pub title: String,
    /// For charts' categories: `1 MiB`, `Unix socket`.
    pub label: String,
    /// The rows a chart draws together: `unix-throughput`.
    pub group: String,
    /// The size the row is about (bytes), where it has one: a chart's x.
    pub size: Option<u64>,
    pub unit: String,
    pub better: Better,
    pub baseline: Baseline,
    pub variants: Vec<Variant>,
    /// Something to know when reading the figure.
    pub note: Option<String>,
}

impl Row {
    pub fn baseline_median(&self) -> f64 {
        Spread::of(&self.baseline.runs).median
    }

    pub fn variant(&self, name: &str) -> Option<&Variant> {
        self.variants.iter().find(|v| v.name == name)
    }

    /// Variants that were expected to move bytes through shared memory and
    /// moved none.
    pub fn missing_fast_path(&self) -> Vec<&str> {
        self.variants.iter().filter(|v| v.fast_path.is_some_and(|f| f.missing())).map(|v| v.name.as_str()).collect()
    }

    pub fn to_json(&self) -> Value {
        let base = Spread::of(&self.baseline.runs);
        let variants: Vec<Value> = self
            .variants
            .iter()
            .map(|v| {
                let runs = Spread::of(&v.runs);
                let mut o = json!({
                    "name": v.name,
                    "runs": v.runs.iter().map(|x| num(*x)).collect::<Vec<_>>(),
                    "median": num(runs.median),
                    "min": num(runs.min),
                    "max": num(runs.max),
                    "speedups": v.speedups.iter().map(|x| num(*x)).collect::<Vec<_>>(),
                    "speedup": v.speedup().to_json(),
                });
                if let Some(f) = v.fast_path {
                    o["fast_path_bytes"] = json!(f.fast_path_bytes);
                    o["kernel_path_bytes"] = json!(f.kernel_path_bytes);
                    o["expects_fast_path"] = json!(f.expected);
                    o["fast_path_share"] = f.share().map_or(Value::Null, |s| json!(s));
                }
                o
            })
            .collect();
        json!({
            "key": self.key,
            "title": self.title,
            "label": self.label,
            "group": self.group,
            "size": self.size,
            "unit": self.unit,
            "better": self.better.name(),
            "baseline": {
                "name": self.baseline.name,
                "runs": self.baseline.runs.iter().map(|x| num(*x)).collect::<Vec<_>>(),
                "median": num(base.median),
                "min": num(base.min),
                "max": num(base.max),
            },
            "variants": variants,
            "note": self.note,
        })
    }
}

/// How a chart draws the rows of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChartKind {
    /// One line per side over the rows' sizes (log x), with this x label.
    LinesBySize { x: String },
    /// Bars of each side's median, one group of bars per row.
    Bars,
    /// Bars of each variant's median speedup over the baseline, one group
    /// per row.
    Speedups,
}

/// A chart a part draws from its rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChartSpec {
    /// The file name, in the output directory: `suite-stream-unix.svg`.
    pub file: String,
    pub title: String,
    pub y: String,
    /// The rows drawn: those of this group.
    pub group: String,
    pub kind: ChartKind,
}

/// One part's results.
#[derive(Clone, Debug, PartialEq)]
pub struct PartResult {
    pub part: Part,
    pub rows: Vec<Row>,
    /// What a reader needs to know (what was left out, and why).
    pub notes: Vec<String>,
    /// Why the part measured nothing (a program is not installed), or None.
    pub skipped: Option<String>,
    /// The part's settings: sizes, byte counts, rounds, sweeps.
    pub settings: Value,
    pub charts: Vec<ChartSpec>,
    /// A Markdown table the part reports as it is, for a benchmark that
    /// compares nothing with a baseline (its figures are in `settings`).
    pub table: Option<String>,
}

impl PartResult {
    pub fn skipped(part: Part, why: String) -> PartResult {
        PartResult {
            part,
            rows: vec![],
            notes: vec![],
            skipped: Some(why),
            settings: json!({}),
            charts: vec![],
            table: None,
        }
    }

    /// The part's JSON file; `run` holds what every part of a run shares
    /// (command, date, machine, library, modes, rounds, quick).
    pub fn to_json(&self, run: &Value) -> Value {
        let mut v = json!({
            "suite": SCHEMA,
            "part": self.part.name(),
            "what": self.part.what(),
            "skipped": self.skipped,
            "notes": self.notes,
            "settings": self.settings,
            "rows": self.rows.iter().map(Row::to_json).collect::<Vec<_>>(),
            "charts": self.charts.iter().map(|c| c.file.clone()).collect::<Vec<_>>(),
            "table": self.table,
        });
        if let (Some(obj), Some(shared)) = (v.as_object_mut(), run.as_object()) {
            for (k, x) in shared {
                obj.insert(k.clone(), x.clone());
            }
        }
        v
    }
}

/// Pairs each variant's runs with the baseline's of the same round:
/// `runs[side][round]`, side 0 the baseline. Returns the row's baseline and
/// variants (without stats; the caller adds them).
pub fn paired(better: Better, names: &[String], runs: &[Vec<f64>]) -> (Baseline, Vec<Variant>) {
    let baseline = Baseline { name: names[0].clone(), runs: runs[0].clone() };
    let variants = names[1..]
        .iter()
        .zip(&runs[1..])
        .map(|(name, r)| Variant {
            name: name.clone(),
            runs: r.clone(),
            speedups: crate::stats::paired_speedups(better, &runs[0], r),
            fast_path: None,
        })
        .collect();
    (baseline, variants)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A row of two variants over a kernel baseline, for the tests of this
    /// module and its siblings.
    pub(crate) fn row(
        key: &str,
        group: &str,
        size: Option<u64>,
        better: Better,
        base: &[f64],
        modes: &[(&str, &[f64])],
    ) -> Row {
        let mut names = vec!["kernel".to_owned()];
        let mut runs = vec![base.to_vec()];
        for (name, r) in modes {
            names.push(name.to_string());
            runs.push(r.to_vec());
        }
        let (baseline, variants) = paired(better, &names, &runs);
        Row {
            key: key.into(),
            title: format!("the {key}"),
            label: key.into(),
            group: group.into(),
            size,
            unit: if better == Better::Higher { "GB/s".into() } else { "s".into() },
            better,
            baseline,
            variants,
            note: None,
        }
    }

    #[test]
    fn pairs_give_speedups_per_round() {
        let r = row("x", "g", None, Better::Lower, &[2.0, 4.0, 3.0], &[("latency", &[1.0, 1.0, 1.0])]);
        assert_eq!(r.variants[0].speedups, vec![2.0, 4.0, 3.0]);
        assert_eq!(r.variants[0].speedup(), Spread { median: 3.0, min: 2.0, max: 4.0 });
        assert_eq!(r.baseline_median(), 3.0);
        assert_eq!(r.variant("latency").map(Variant::median), Some(1.0));
        assert!(r.variant("efficiency").is_none());
    }

    #[test]
    fn fast_path_share_and_missing() {
        let f = FastPath { fast_path_bytes: 3, kernel_path_bytes: 1, expected: true };
        assert_eq!(f.share(), Some(0.75));
        assert!(!f.missing());
        let none = FastPath { fast_path_bytes: 0, kernel_path_bytes: 0, expected: true };
        assert_eq!(none.share(), None);
        assert!(none.missing());
        assert!(!FastPath { expected: false, ..none }.missing());
        let mut r = row("x", "g", None, Better::Higher, &[1.0], &[("latency", &[2.0]), ("efficiency", &[2.0])]);
        r.variants[1].fast_path = Some(none);
        assert_eq!(r.missing_fast_path(), vec!["efficiency"]);
    }

    #[test]
    fn json_shape() {
        let mut r = row(
            "unix-stream-1MiB",
            "unix-throughput",
            Some(1 << 20),
            Better::Higher,
            &[4.0, 5.0],
            &[("throughput", &[36.0, 40.0])],
        );
        r.variants[0].fast_path = Some(FastPath { fast_path_bytes: 99, kernel_path_bytes: 1, expected: true });
        let part = PartResult {
            table: None,
            part: Part::Stream,
            rows: vec![r],
            notes: vec!["a note".into()],
            skipped: None,
            settings: json!({ "total_bytes": 1 << 30 }),
            charts: vec![ChartSpec {
                file: "suite-stream-unix.svg".into(),
                title: "t".into(),
                y: "GB/s".into(),
                group: "unix-throughput".into(),
                kind: ChartKind::Bars,
            }],
        };
        let v = part.to_json(&json!({ "date": "2026-01-02", "rounds": 2 }));
        assert_eq!(v["suite"], 1);
        assert_eq!(v["part"], "stream");
        assert_eq!(v["date"], "2026-01-02");
        assert_eq!(v["rounds"], 2);
        assert_eq!(v["skipped"], Value::Null);
        assert_eq!(v["charts"], json!(["suite-stream-unix.svg"]));
        let row = &v["rows"][0];
        assert_eq!(row["key"], "unix-stream-1MiB");
        assert_eq!(row["size"], 1 << 20);
        assert_eq!(row["better"], "higher");
        assert_eq!(
            row["baseline"],
            json!({ "name": "kernel", "runs": [4.0, 5.0], "median": 4.5, "min": 4.0, "max": 5.0 })
        );
        let t = &row["variants"][0];
        assert_eq!(t["name"], "throughput");
        assert_eq!(t["median"], 38.0);
        assert_eq!(t["speedups"], json!([9.0, 8.0]));
        assert_eq!(t["speedup"], json!({ "median": 8.5, "min": 8.0, "max": 9.0 }));
        assert_eq!(t["fast_path_share"], 0.99);
        assert_eq!(t["expects_fast_path"], true);
        let skipped = PartResult::skipped(Part::Redis, "redis-server is not installed".into()).to_json(&json!({}));
        assert_eq!(skipped["skipped"], "redis-server is not installed");
        assert_eq!(skipped["rows"], json!([]));
    }

    #[test]
    fn nan_is_null_in_json() {
        let r = row("x", "g", None, Better::Lower, &[1.0], &[("latency", &[0.0])]);
        let v = r.to_json();
        assert_eq!(v["variants"][0]["speedups"], json!([null]));
        assert_eq!(v["variants"][0]["speedup"]["median"], Value::Null);
    }
}
