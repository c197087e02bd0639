//! The suite's charts, drawn from its rows with [`crate::chart`].

use std::path::{Path, PathBuf};

use super::results::{ChartKind, ChartSpec, PartResult, Row};
use crate::chart::{self, ChartError, Labels, Series};

/// The sides of `rows`: the baseline's name (of the first row), then each
/// variant's in the order they first appear.
fn sides(rows: &[&Row]) -> Vec<String> {
    let mut names: Vec<String> = rows.first().map(|r| r.baseline.name.clone()).into_iter().collect();
    for r in rows {
        for v in &r.variants {
            if !names.contains(&v.name) {
                names.push(v.name.clone());
            }
        }
    }
    names
}

/// Each side's medians over `rows` (the baseline is side 0).
fn medians(rows: &[&Row], names: &[String]) -> Vec<Series> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| Series {
            name: name.clone(),
            values: rows
                .iter()
                .map(|r| {
                    let v = if i == 0 { r.baseline_median() } else { r.variant(name).map_or(f64::NAN, |v| v.median()) };
                    v.is_finite().then_some(v)
                })
                .collect(),
        })
        .collect()
}

/// Each variant's median speedup over `rows`.
fn speedups(rows: &[&Row], names: &[String]) -> Vec<Series> {
    names
        .iter()
        .map(|name| Series {
            name: name.clone(),
            values: rows
                .iter()
                .map(|r| r.variant(name).map(|v| v.speedup().median).filter(|s| s.is_finite()))
                .collect(),
        })
        .collect()
}

/// Draws one chart of `rows` into `dir`; its path.
pub fn draw(spec: &ChartSpec, rows: &[&Row], subtitle: &str, dir: &Path) -> Result<PathBuf, ChartError> {
    let path = dir.join(&spec.file);
    let x = match &spec.kind {
        ChartKind::LinesBySize { x } => x.as_str(),
        _ => "",
    };
    let labels = Labels { title: &spec.title, subtitle, y: &spec.y, x };
    let names = sides(rows);
    match &spec.kind {
        ChartKind::LinesBySize { .. } => {
            let mut rows: Vec<&Row> = rows.iter().copied().filter(|r| r.size.is_some()).collect();
            rows.sort_by_key(|r| r.size);
            let sizes: Vec<u64> = rows.iter().filter_map(|r| r.size).collect();
            chart::lines_by_size(&path, &labels, &sizes, &medians(&rows, &names))?;
        }
        ChartKind::Bars => {
            let categories: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
            chart::bars(&path, &labels, &categories, &medians(rows, &names))?;
        }
        ChartKind::Speedups => {
            let categories: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
            let series = speedups(rows, &names[1.min(names.len())..]);
            chart::speedup_bars(&path, &labels, &categories, &series)?;
        }
    }
    Ok(path)
}

/// Draws every chart of `part` into `dir`. Returns the files written and
/// the charts left out (nothing to draw: no rows of their group, or no
/// figures), with why.
pub fn draw_part(part: &PartResult, subtitle: &str, dir: &Path) -> Result<(Vec<PathBuf>, Vec<String>), String> {
    let (mut written, mut left_out) = (vec![], vec![]);
    for spec in &part.charts {
        let rows: Vec<&Row> = part.rows.iter().filter(|r| r.group == spec.group).collect();
        match draw(spec, &rows, subtitle, dir) {
            Ok(path) => written.push(path),
            Err(ChartError::Empty) => left_out.push(format!("{}: no figures to draw", spec.file)),
            Err(e) => return Err(format!("{}: {e}", spec.file)),
        }
    }
    Ok((written, left_out))
}

#[cfg(test)]
mod tests {
    use super::super::Part;
    use super::super::results::tests::row;
    use super::*;
    use crate::stats::Better;

    #[test]
    fn part_charts_are_svg_files_with_title_and_subtitle() {
        let dir = std::env::temp_dir().join(format!("suite-render-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rows = vec![
            row("pipe-stream-1MiB", "pipe", Some(1 << 20), Better::Higher, &[1.0], &[("latency", &[20.0])]),
            row("pipe-stream-64KiB", "pipe", Some(64 << 10), Better::Higher, &[1.1], &[("latency", &[1.0])]),
            row("other", "else", None, Better::Lower, &[1.0], &[("latency", &[0.5])]),
        ];
        let spec = |file: &str, kind: ChartKind| ChartSpec {
            file: file.into(),
            title: format!("Title of {file}"),
            y: "GB/s".into(),
            group: "pipe".into(),
            kind,
        };
        let part = PartResult {
            table: None,
            part: Part::Stream,
            rows,
            notes: vec![],
            skipped: None,
            settings: serde_json::json!({}),
            charts: vec![
                spec("lines.svg", ChartKind::LinesBySize { x: "bytes per write".into() }),
                spec("bars.svg", ChartKind::Bars),
                spec("speedups.svg", ChartKind::Speedups),
                ChartSpec { group: "nothing".into(), ..spec("none.svg", ChartKind::Bars) },
            ],
        };
        let (written, left_out) = draw_part(&part, "the machine, 2026-01-02", &dir).unwrap();
        assert_eq!(written.len(), 3);
        assert_eq!(left_out, vec!["none.svg: no figures to draw".to_owned()]);
        for path in written {
            let svg = std::fs::read_to_string(&path).unwrap();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(svg.starts_with("<svg"), "{file}");
            assert!(svg.contains(&format!("Title of {file}")), "{file}");
            assert!(svg.contains("the machine, 2026-01-02"), "{file}");
            assert!(svg.contains("latency"), "{file}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn series_per_side() {
        let a = row("a", "g", Some(1), Better::Higher, &[1.0, 3.0], &[("latency", &[4.0, 6.0])]);
        let b = row("b", "g", Some(2), Better::Higher, &[2.0], &[("efficiency", &[8.0])]);
        let rows = vec![&a, &b];
        let names = sides(&rows);
        assert_eq!(names, ["kernel", "latency", "efficiency"]);
        let m = medians(&rows, &names);
        assert_eq!(m[0].values, vec![Some(2.0), Some(2.0)]);
        assert_eq!(m[1].values, vec![Some(5.0), None]);
        let s = speedups(&rows, &names[1..]);
        assert_eq!(s[0].name, "latency");
        assert_eq!(s[0].values, vec![Some(3.0), None]);
        assert_eq!(s[1].values, vec![None, Some(4.0)]);
    }
}
