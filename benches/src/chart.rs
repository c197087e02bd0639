//! SVG charts of benchmark results, drawn with plotters: grouped bars (one
//! group per workload or size, one bar per engine or setting), speedups as
//! grouped bars on a logarithmic axis from a line at 1x, each with its
//! value written on it, and lines over a logarithmic size axis. Each chart
//! carries its subtitle (the machine and the date) so that a chart never
//! travels without them.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

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
    titled_with_legend(root, labels, &[])
}

/// [`titled`], with the series' names and colours right-aligned at the top:
/// in the title's row, else the subtitle's, else a row of their own below
/// them, whichever is the first they fit in beside the words.
fn titled_with_legend<'a>(
    root: &DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
    labels: &Labels<'_>,
    series: &[Series],
) -> Result<DrawingArea<SVGBackend<'a>, plotters::coord::Shift>, ChartError> {
    root.fill(&WHITE).map_err(draw_err)?;
    let title = ("sans-serif", 20).into_text_style(root);
    let subtitle = ("sans-serif", 13).into_text_style(root).color(&RGBColor(90, 90, 90));
    let legend = ("sans-serif", 13).into_text_style(root);
    let width = |text: &str, style: &TextStyle<'_>| root.estimate_text_size(text, style).map_or(0, |(w, _)| w as i32);
    let names: Vec<i32> = series.iter().map(|s| width(&s.name, &legend)).collect();
    // Each entry: a 12-pixel swatch, 6 pixels, the name, 16 pixels.
    let legend_width: i32 = names.iter().map(|w| w + 34).sum::<i32>() - 16;
    let right = root.dim_in_pixel().0 as i32 - 12;
    let rows = [(10, width(labels.title, &title)), (33, width(labels.subtitle, &subtitle))];
    let row = rows.iter().find(|(_, used)| 12 + used + 24 + legend_width <= right).map(|(y, _)| *y);
    let (head_height, legend_y) = match (series.is_empty(), row) {
        (true, _) => (52, 0),
        (false, Some(y)) => (52, y),
        (false, None) => (74, 56),
    };
    let (head, body) = root.split_vertically(head_height);
    head.draw_text(labels.title, &title, (12, 6)).map_err(draw_err)?;
    head.draw_text(labels.subtitle, &subtitle, (12, 32)).map_err(draw_err)?;
    let mut x = right - legend_width.max(0);
    for (k, (s, w)) in series.iter().zip(&names).enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        head.draw(&Rectangle::new([(x, legend_y + 1), (x + 12, legend_y + 13)], color.filled())).map_err(draw_err)?;
        head.draw_text(&s.name, &legend, (x + 18, legend_y)).map_err(draw_err)?;
        x += w + 34;
    }
    Ok(body)
}

fn draw_err<E: std::fmt::Debug>(e: E) -> ChartError {
    ChartError::Draw(format!("{e:?}"))
}

/// Grouped bars: `categories` along x, one bar per series in each.
pub fn bars(path: &Path, labels: &Labels<'_>, categories: &[String], series: &[Series]) -> Result<(), ChartError> {
    bars_with_reference(path, labels, categories, series, None)
}

/// Grouped bars on a linear axis with a horizontal line at `reference`.
/// Speedups are drawn by [`speedup_bars`], on a logarithmic axis.
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

/// A speedup as the charts write it: `0.87x`, `3.96x`, `16.5x`, `120x`.
fn speedup_label(v: f64) -> String {
    if v >= 99.95 {
        format!("{v:.0}x")
    } else if v >= 9.995 {
        format!("{v:.1}x")
    } else {
        format!("{v:.2}x")
    }
}

/// A tick of a logarithmic speedup axis: `0.5x`, `1x`, `20x`.
fn tick_label(v: f64) -> String {
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}x")
}

/// The ticks of a logarithmic axis from `lo` to `hi`: 1, 2 and 5 times the
/// powers of ten, or finer steps where that gives fewer than three.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decades = (lo.log10().floor() as i32)..=(hi.log10().ceil() as i32);
    let within = |mantissas: &[f64]| -> Vec<f64> {
        decades
            .clone()
            .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|v| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9))
            .collect()
    };
    let ticks = within(&[1.0, 2.0, 5.0]);
    if ticks.len() >= 3 { ticks } else { within(&[1.0, 1.1, 1.2, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]) }
}

/// The y range of a speedup chart: every value and 1 inside it, with room
/// (a share `room` of the axis) above the highest bar and below the lowest
/// for the values written at their ends.
fn speedup_range(values: impl Iterator<Item = f64>, room: f64) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((None, 1.0f64), |(lo, hi), v| (Some(lo.map_or(v, |l: f64| l.min(v))), hi.max(v)));
    let (lo, hi) = (lo?.min(1.0), hi);
    // Margins around the bars' ends, in log units: at least a fifth of a
    // factor of two either way, so that a chart of values near 1 still
    // shows the line at 1 between ticks.
    let (a, b) = ((lo / 1.15).ln(), (hi * 1.15).ln());
    let below = if lo < 1.0 { room } else { 0.0 };
    let total = (b - a) / (1.0 - room - below);
    Some(((a - below * total).exp(), (b + room * total).exp()))
}

/// Speedups as grouped bars on a logarithmic axis: `categories` along x,
/// one bar per series in each, every bar drawn from the line at 1 (where
/// the library and the baseline are level) up to its value, or down to it
/// below 1, with its value written at its end. Equal ratios look equal
/// (2x up as long as 0.5x down), and 1.1x and 25x are both readable on one
/// chart. The legend is at the top, beside the title or below it, clear of
/// the bars.
pub fn speedup_bars(
    path: &Path,
    labels: &Labels<'_>,
    categories: &[String],
    series: &[Series],
) -> Result<(), ChartError> {
    // The values written at the bars' ends take about this share of the axis.
    const ROOM: f64 = 0.13;
    let values = series.iter().flat_map(|s| s.values.iter().flatten().copied());
    let Some((lo, hi)) = speedup_range(values, ROOM) else { return Err(ChartError::Empty) };
    if categories.is_empty() || series.is_empty() {
        return Err(ChartError::Empty);
    }
    let width = (160 + categories.len() * (40 + 28 * series.len())).clamp(640, 1400) as u32;
    let root = SVGBackend::new(path, (width, 480)).into_drawing_area();
    let body = titled_with_legend(&root, labels, series)?;
    let slots = series.len() + 1; // one empty slot between groups
    // Two units per bar, so that a bar's middle has a coordinate.
    let n = categories.len() * slots * 2;
    // The groups' names under them, every other one a row lower where
    // neighbours would touch.
    let name_style = ("sans-serif", 13).into_text_style(&root).pos(Pos::new(HPos::Center, VPos::Top));
    let name_widths: Vec<i32> =
        categories.iter().map(|c| root.estimate_text_size(c, &name_style).map_or(0, |(w, _)| w as i32)).collect();
    let group_px = (width as i32 - 2 * 12 - 64) / categories.len() as i32;
    let stagger = name_widths.windows(2).any(|w| (w[0] + w[1]) / 2 + 8 > group_px);
    let names_height = if stagger { 40 } else { 24 };
    let mut chart = ChartBuilder::on(&body)
        .margin(12)
        .x_label_area_size(names_height + if labels.x.is_empty() { 0 } else { 20 })
        .y_label_area_size(64)
        .build_cartesian_2d(0..n, (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)))
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        // No ticks along x: the groups' names are written below.
        .x_labels(categories.len())
        .x_label_formatter(&|_| String::new())
        .set_tick_mark_size(LabelAreaPosition::Bottom, 0)
        .y_label_formatter(&|v| tick_label(*v))
        .x_desc(labels.x)
        .y_desc(labels.y)
        .draw()
        .map_err(draw_err)?;
    for (g, name) in categories.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(g * 2 * slots + series.len(), lo));
        let row = if stagger && g % 2 == 1 { 16 } else { 0 };
        root.draw_text(name, &name_style, (x, y + 6 + row)).map_err(draw_err)?;
    }
    let value_font = ("sans-serif", 12).into_font().transform(FontTransform::Rotate270);
    for (k, s) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let bars: Vec<(usize, f64)> = s
            .values
            .iter()
            .enumerate()
            .filter_map(|(c, v)| v.filter(|v| v.is_finite() && *v > 0.0).map(|v| ((c * slots + k) * 2, v)))
            .collect();
        chart
            .draw_series(bars.iter().map(|&(x, v)| Rectangle::new([(x, 1.0), (x + 2, v)], color.filled())))
            .map_err(draw_err)?;
        // Written upward from a bar's top, or downward from its bottom end
        // below 1, centred on the bar.
        let written = bars.iter().map(|&(x, v)| {
            let (anchor, gap) = if v >= 1.0 { (HPos::Left, -4) } else { (HPos::Right, 4) };
            let style = value_font.clone().color(&BLACK).pos(Pos::new(anchor, VPos::Center));
            EmptyElement::at((x + 1, v)) + Text::new(speedup_label(v), (0, gap), style)
        });
        chart.draw_series(written).map_err(draw_err)?;
    }
    chart.draw_series(LineSeries::new([(0, 1.0), (n, 1.0)], BLACK.stroke_width(1))).map_err(draw_err)?;
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

    /// The words of an SVG's text elements.
    fn texts(svg: &str) -> Vec<&str> {
        svg.split("<text").skip(1).filter_map(|t| Some(t.split_once('>')?.1.split("</text>").next()?.trim())).collect()
    }

    /// The bars of `color` in an SVG: (top y, height), in drawing order.
    fn bars_of(svg: &str, color: &str) -> Vec<(i64, i64)> {
        let attr = |tag: &str, name: &str| -> i64 {
            let start = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            tag[start..].split('"').next().unwrap().parse().unwrap()
        };
        svg.split("<rect")
            .skip(1)
            .map(|t| t.split('>').next().unwrap())
            .filter(|t| t.contains(&format!("fill=\"{color}\"")))
            .map(|t| (attr(t, "y"), attr(t, "height")))
            .collect()
    }

    #[test]
    fn speedups_on_a_log_axis_from_the_line_at_1x_with_their_values() {
        let path = temp("speedups");
        let categories: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let series = vec![
            Series { name: "latency".into(), values: vec![Some(2.0), Some(0.5), Some(8.0), None] },
            Series { name: "efficiency".into(), values: vec![Some(24.66), Some(0.87), Some(1.0), Some(4.0)] },
        ];
        speedup_bars(&path, &labels(), &categories, &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a 2-CPU VM, 2026-01-02") && svg.contains("latency") && svg.contains("efficiency"));
        // Ticks at 1, 2 and 5 times the powers of ten, the line at 1x.
        let words = texts(&svg);
        for tick in ["0.5x", "1x", "2x", "5x", "10x", "20x"] {
            assert!(words.contains(&tick), "no tick {tick}: {words:?}");
        }
        // Every bar's value, written along it.
        for value in ["2.00x", "0.50x", "8.00x", "24.7x", "0.87x", "1.00x", "4.00x"] {
            assert!(words.contains(&value), "no value {value}: {words:?}");
        }
        // Seven values and the y axis's description, written upward.
        assert_eq!(svg.matches("rotate(270").count(), 8);
        // Logarithmic, from the line at 1: 2x rises as far as 0.5x falls,
        // 8x three times as far; 0.5x hangs below the line where 2x stands on it.
        let bars = bars_of(&svg, "#4C72B0");
        assert_eq!(bars.len(), 4, "the legend's swatch and three bars");
        let [(top2, h2), (top05, h05), (top8, h8)] = [bars[1], bars[2], bars[3]];
        assert!((h2 - h05).abs() <= 1, "2x: {h2} px, 0.5x: {h05} px");
        assert!((h8 - 3 * h2).abs() <= 2, "2x: {h2} px, 8x: {h8} px");
        let line = top2 + h2;
        assert_eq!(top05, line);
        assert_eq!(top8 + h8, line);
        // The line at 1x: across the plot at the bars' base.
        let across = svg
            .split("<polyline")
            .skip(1)
            .filter_map(|t| t.split("points=\"").nth(1)?.split('"').next())
            .filter(|points| {
                let ends: Vec<(i64, i64)> = points
                    .split_whitespace()
                    .filter_map(|p| p.split_once(',').map(|(x, y)| (x.parse().unwrap(), y.parse().unwrap())))
                    .collect();
                ends.len() == 2 && ends[0].1 == line && ends[1].1 == line && ends[1].0 - ends[0].0 > 400
            })
            .count();
        assert_eq!(across, 1, "the line at 1x");
    }

    #[test]
    fn speedup_ticks_and_labels() {
        assert_eq!(log_ticks(0.4, 60.0), [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0]);
        assert_eq!(log_ticks(0.75, 1.25), [0.8, 0.9, 1.0, 1.1, 1.2]);
        assert_eq!(tick_label(0.5), "0.5x");
        assert_eq!(tick_label(1.0), "1x");
        assert_eq!(tick_label(20.0), "20x");
        assert_eq!(speedup_label(0.866), "0.87x");
        assert_eq!(speedup_label(16.51), "16.5x");
        assert_eq!(speedup_label(120.4), "120x");
        let (lo, hi) = speedup_range([2.0, 30.0].into_iter(), 0.13).unwrap();
        assert!(lo < 1.0 && lo > 0.8 && hi > 30.0, "{lo}..{hi}");
        let (lo, _) = speedup_range([0.5, 3.0].into_iter(), 0.13).unwrap();
        assert!(lo < 0.5 / 1.15);
        assert!(speedup_range([f64::NAN, 0.0].into_iter(), 0.13).is_none());
    }

    #[test]
    fn nothing_to_draw() {
        let path = temp("empty");
        let none = vec![Series { name: "kernel".into(), values: vec![None] }];
        assert!(matches!(bars(&path, &labels(), &["a".into()], &none), Err(ChartError::Empty)));
        assert!(matches!(lines_by_size(&path, &labels(), &[], &series()), Err(ChartError::Empty)));
        assert!(matches!(lines_by_size(&path, &labels(), &[4096], &series()), Err(ChartError::Empty)));
        assert!(matches!(speedup_bars(&path, &labels(), &["a".into()], &none), Err(ChartError::Empty)));
        assert!(matches!(speedup_bars(&path, &labels(), &[], &series()), Err(ChartError::Empty)));
        assert!(!path.exists());
    }
}
