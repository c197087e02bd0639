//! SVG charts of benchmark results, drawn with plotters: grouped bars (one
//! group per workload or size, one bar per engine or setting) and lines
//! over a logarithmic size axis. Each chart carries its subtitle (the
//! machine and the date) so that a chart never travels without them.

use std::path::Path;

use plotters::prelude::*;

/// One series: a name for the legend and one value per category (`None`
/// where it was not measured).
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

/// A chart's words.
#[derive(Clone, Debug)]
pub struct Labels<'a> {
    pub title: &'a str,
    /// Under the title: the machine and the date.
    pub subtitle: &'a str,
    pub y: &'a str,
    /// Under the x axis (bars: may be empty).
    pub x: &'a str,
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(0x4c, 0x72, 0xb0),
    RGBColor(0xdd, 0x84, 0x52),
    RGBColor(0x55, 0xa8, 0x68),
    RGBColor(0xc4, 0x4e, 0x52),
    RGBColor(0x81, 0x72, 0xb3),
    RGBColor(0x93, 0x78, 0x60),
];

/// Why a chart was not drawn.
#[derive(Debug)]
pub enum ChartError {
    /// Nothing to draw.
    Empty,
    /// plotters failed (the message it gave), or the file could not be written.
    Draw(String),
}

impl core::fmt::Display for ChartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ChartError::Empty => f.write_str("no values to chart"),
            ChartError::Draw(e) => write!(f, "drawing the chart failed: {e}"),
        }
    }
}

/// Fills `root` white, writes the title and subtitle at its top, and
/// returns the area below them.
fn titled<'a>(
    root: &DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
    labels: &Labels<'_>,
) -> Result<DrawingArea<SVGBackend<'a>, plotters::coord::Shift>, ChartError> {
    root.fill(&WHITE).map_err(draw_err)?;
    let (head, body) = root.split_vertically(52);
    head.draw_text(labels.title, &("sans-serif", 20).into_text_style(&head), (12, 6)).map_err(draw_err)?;
    head.draw_text(labels.subtitle, &("sans-serif", 13).into_text_style(&head).color(&RGBColor(90, 90, 90)), (12, 32))
        .map_err(draw_err)?;
    Ok(body)
}

fn draw_err<E: std::fmt::Debug>(e: E) -> ChartError {
    ChartError::Draw(format!("{e:?}"))
}

/// Grouped bars: `categories` along x, one bar per series in each.
pub fn bars(path: &Path, labels: &Labels<'_>, categories: &[String], series: &[Series]) -> Result<(), ChartError> {
    bars_with_reference(path, labels, categories, series, None)
}

/// Grouped bars with a horizontal line at `reference` (1 on a chart of
/// speedups: where the library and the baseline are level).
pub fn bars_with_reference(
    path: &Path,
    labels: &Labels<'_>,
    categories: &[String],
    series: &[Series],
    reference: Option<f64>,
) -> Result<(), ChartError> {
    let top = series.iter().flat_map(|s| s.values.iter().flatten()).fold(0.0f64, |a, b| a.max(*b));
    if categories.is_empty() || series.is_empty() || top <= 0.0 {
        return Err(ChartError::Empty);
    }
    let width = (160 + categories.len() * (40 + 28 * series.len())).clamp(640, 1400) as u32;
    let root = SVGBackend::new(path, (width, 440)).into_drawing_area();
    let body = titled(&root, labels)?;
    let slots = series.len() + 1; // one empty slot between groups
    let n = categories.len() * slots;
    let mut chart = ChartBuilder::on(&body)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        // Room above the highest bar for the legend's lines.
        .build_cartesian_2d(0..n, 0.0..top * (1.12 + 0.08 * series.len() as f64))
        .map_err(draw_err)?;
    let names = categories.to_vec();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .max_light_lines(1)
        .x_labels(n)
        .x_label_formatter(&|x| {
            // The group's name under its middle bar.
            if x % slots == series.len() / 2 {
                names.get(x / slots).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc(labels.x)
        .y_desc(labels.y)
        .draw()
        .map_err(draw_err)?;
    for (k, s) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let bars = s.values.iter().enumerate().filter_map(|(c, v)| {
            let x = c * slots + k;
            v.map(|v| Rectangle::new([(x, 0.0), (x + 1, v)], color.filled()))
        });
        chart
            .draw_series(bars)
            .map_err(draw_err)?
            .label(s.name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    if let Some(r) = reference.filter(|r| r.is_finite() && *r > 0.0) {
        chart.draw_series(LineSeries::new([(0, r), (n, r)], BLACK.mix(0.6).stroke_width(1))).map_err(draw_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(draw_err)?;
    root.present().map_err(draw_err)
}

/// Lines over a logarithmic x axis of sizes in bytes (`sizes`, ascending),
/// one line per series.
pub fn lines_by_size(path: &Path, labels: &Labels<'_>, sizes: &[u64], series: &[Series]) -> Result<(), ChartError> {
    let top = series.iter().flat_map(|s| s.values.iter().flatten()).fold(0.0f64, |a, b| a.max(*b));
    let (Some(&lo), Some(&hi)) = (sizes.first(), sizes.last()) else { return Err(ChartError::Empty) };
    if series.is_empty() || top <= 0.0 || lo == 0 || hi <= lo {
        return Err(ChartError::Empty);
    }
    let root = SVGBackend::new(path, (900, 440)).into_drawing_area();
    let body = titled(&root, labels)?;
    let mut chart = ChartBuilder::on(&body)
        .margin(12)
        // The last size's label is centred on the right edge.
        .margin_right(36)
        .x_label_area_size(36)
        .y_label_area_size(64)
        // Ticks at the measured sizes, not at powers of ten (97 KiB).
        .build_cartesian_2d(
            (lo as f64..hi as f64).log_scale().with_key_points(sizes.iter().map(|s| *s as f64).collect()),
            0.0..top * (1.12 + 0.06 * series.len() as f64),
        )
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .max_light_lines(1)
        .x_label_formatter(&|x| crate::size_label(x.round() as u64))
        .x_desc(labels.x)
        .y_desc(labels.y)
        .draw()
        .map_err(draw_err)?;
    for (k, s) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let points: Vec<(f64, f64)> =
            sizes.iter().zip(&s.values).filter_map(|(x, v)| v.map(|v| (*x as f64, v))).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(draw_err)?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled()))).map_err(draw_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(draw_err)?;
    root.present().map_err(draw_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels<'a>() -> Labels<'a> {
        Labels { title: "Pipe stream <by size>", subtitle: "a 2-CPU VM, 2026-01-02", y: "GB/s", x: "bytes per write" }
    }

    fn series() -> Vec<Series> {
        vec![
            Series { name: "kernel".into(), values: vec![Some(1.0), Some(1.5), None] },
            Series { name: "throughput".into(), values: vec![Some(2.0), Some(30.0), Some(36.0)] },
        ]
    }

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("chart-test-{}-{name}.svg", std::process::id()))
    }

    #[test]
    fn bars_write_an_svg_with_the_title() {
        let path = temp("bars");
        let categories: Vec<String> = ["64 KiB", "1 MiB", "16 MiB"].map(String::from).to_vec();
        bars(&path, &labels(), &categories, &series()).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("Pipe stream &lt;by size&gt;") || svg.contains("Pipe stream <by size>"));
        assert!(svg.contains("a 2-CPU VM, 2026-01-02"));
        assert!(svg.contains("throughput") && svg.contains("16 MiB"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn a_reference_line_is_drawn() {
        let path = temp("reference");
        let categories: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        bars(&path, &labels(), &categories, &series()).unwrap();
        let without = std::fs::read_to_string(&path).unwrap();
        bars_with_reference(&path, &labels(), &categories, &series(), Some(1.0)).unwrap();
        let with = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(with.matches("<polyline").count(), without.matches("<polyline").count() + 1);
    }

    #[test]
    fn lines_write_an_svg_with_the_title() {
        let path = temp("lines");
        lines_by_size(&path, &labels(), &[64 << 10, 1 << 20, 16 << 20], &series()).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("a 2-CPU VM, 2026-01-02") && svg.contains("bytes per write"));
        assert!(svg.contains("kernel"));
    }

    #[test]
    fn nothing_to_draw() {
        let path = temp("empty");
        let none = vec![Series { name: "kernel".into(), values: vec![None] }];
        assert!(matches!(bars(&path, &labels(), &["a".into()], &none), Err(ChartError::Empty)));
        assert!(matches!(lines_by_size(&path, &labels(), &[], &series()), Err(ChartError::Empty)));
        assert!(matches!(lines_by_size(&path, &labels(), &[4096], &series()), Err(ChartError::Empty)));
        assert!(!path.exists());
    }
}
