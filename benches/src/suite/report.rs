//! The suite's Markdown: a table per part and the headline table.

use super::results::{PartResult, Row};
use crate::stats::{Better, figure};

/// The rows of the headline table, by key, in its order, with a short
/// name for the headline chart: the figures of the README's "Results"
/// (where their part ran).
pub const HEADLINE: [(&str, &str); 41] = [
    ("memcpy-hot-4MiB", "memcpy 4M hot"),
    ("memcpy-cold-64MiB", "memcpy 64M cold"),
    ("unix-stream-1MiB", "socket GB/s"),
    ("pipe-stream-1MiB", "pipe GB/s"),
    ("unix-cpu-1MiB", "socket CPU"),
    ("pipe-cpu-1MiB", "pipe CPU"),
    ("pipe-consumer-cpu-1MiB", "consumer CPU"),
    ("unix-reqresp-64MiB", "socket RTT"),
    ("pipe-reqresp-64MiB", "pipe RTT"),
    ("unix-pingpong-64B", "ping-pong"),
    ("unix-conns-4MiB", "conn/request"),
    ("dd-pipeline", "dd|dd|dd"),
    ("dd-small-reader", "dd|dd 64K"),
    ("python-duplex", "py duplex"),
    ("python-simplex", "py simplex"),
    ("redis-set", "redis SET"),
    ("redis-get", "redis GET"),
    ("evloop-relay-select-1MiB", "select relay"),
    ("evloop-relay-select-1MiB-cpu", "relay CPU"),
    ("evloop-relay-select-16KiB", "relay 16K"),
    ("evloop-epoll-lt-64MiB", "epoll LT"),
    ("evloop-epoll-et-64MiB", "epoll ET"),
    ("evloop-pingpong-64B", "epoll 64B"),
    ("evloop-server-1000-1MiB", "1000 conns"),
    ("asyncio-unix", "asyncio"),
    ("tcp-stream-1MiB", "TCP GB/s"),
    ("tcp-reqresp-blocking-64MiB", "TCP RTT"),
    ("tcp-reqresp-epoll-64MiB", "TCP epoll RTT"),
    ("tcp-pingpong-64B", "TCP 64B"),
    ("tcp-iperf3-1MiB", "iperf3 1M"),
    ("tcp-iperf3-default-wb", "iperf3 wb"),
    ("redis-tcp-set", "redis TCP SET"),
    ("redis-tcp-get", "redis TCP GET"),
    ("redis-unix-c50-set", "redis SET c50"),
    ("redis-unix-c50-get", "redis GET c50"),
    ("redis-wb-set", "redis SET wb"),
    ("redis-wb-get", "redis GET wb"),
    ("redis-unix-c50-wb-set", "redis SET c50 wb"),
    ("redis-unix-c50-wb-get", "redis GET c50 wb"),
    ("redis-tcp-wb-set", "redis TCP SET wb"),
    ("redis-tcp-wb-get", "redis TCP GET wb"),
];

/// The headline's rows found among `parts`, in [`HEADLINE`]'s order.
pub fn headline_rows(parts: &[PartResult]) -> Vec<&Row> {
    HEADLINE.iter().filter_map(|(key, _)| parts.iter().flat_map(|p| &p.rows).find(|r| r.key == *key)).collect()
}

/// The headline's rows for its chart: labelled with their short names, and
/// only the variants of `modes`.
pub fn headline_chart_rows(parts: &[PartResult], modes: &[String]) -> Vec<Row> {
    headline_rows(parts)
        .into_iter()
        .map(|r| {
            let mut r = r.clone();
            r.label = HEADLINE.iter().find(|(k, _)| *k == r.key).map_or(r.label, |(_, short)| (*short).to_owned());
            r.variants.retain(|v| modes.contains(&v.name));
            r
        })
        .collect()
}

fn cell(text: &str) -> String {
    // A `|` in a title (dd | dd | dd) would end its cell.
    text.replace('|', "\\|")
}

/// "36.1 (**7.17x**)", with the range of the pairs' speedups when `range`.
fn variant_cell(row: &Row, name: &str, range: bool) -> String {
    let Some(v) = row.variant(name) else { return "-".into() };
    let s = v.speedup();
    let mut text = format!("{} (**{:.2}x**", figure(v.median()), s.median);
    if range && v.speedups.len() > 1 {
        text.push_str(&format!(", {:.2}-{:.2}", s.min, s.max));
    }
    text.push(')');
    if v.fast_path.is_some_and(|f| f.missing()) {
        text.push_str(" ✗ no fast path");
    }
    text
}

/// The names of the variants of `rows`, in the order they first appear.
fn variant_names<'a>(rows: impl IntoIterator<Item = &'a Row>) -> Vec<&'a str> {
    let mut names: Vec<&str> = vec![];
    for r in rows {
        for v in &r.variants {
            if !names.contains(&v.name.as_str()) {
                names.push(&v.name);
            }
        }
    }
    names
}

/// The share of the bytes the library moved through shared memory, over
/// the variants of a row: "99.9%", "98.0-99.9%", "-".
fn fast_path_cell(row: &Row) -> String {
    let shares: Vec<f64> = row.variants.iter().filter_map(|v| v.fast_path?.share()).collect();
    let missing = row.missing_fast_path();
    if !missing.is_empty() {
        return format!("none ✗ ({})", missing.join(", "));
    }
    if shares.is_empty() {
        return if row.variants.iter().any(|v| v.fast_path.is_some()) { "0%".into() } else { "-".into() };
    }
    let lo = shares.iter().copied().fold(f64::INFINITY, f64::min) * 100.0;
    let hi = shares.iter().copied().fold(f64::NEG_INFINITY, f64::max) * 100.0;
    if (hi - lo).abs() < 0.05 { format!("{hi:.1}%") } else { format!("{lo:.1}-{hi:.1}%") }
}

/// One part's section: a heading, the table, its notes.
pub fn part_table(part: &PartResult) -> String {
    let mut out = format!("### {}: {}\n\n", part.part.name(), part.part.what());
    if let Some(why) = &part.skipped {
        out.push_str(&format!("Skipped: {why}.\n"));
        return out;
    }
    if let Some(table) = &part.table {
        out.push_str(table.trim_end());
        out.push('\n');
        if part.rows.is_empty() {
            if !part.notes.is_empty() {
                out.push('\n');
            }
            for n in &part.notes {
                out.push_str(&format!("- {n}\n"));
            }
            return out;
        }
        out.push('\n');
    }
    let names = variant_names(&part.rows);
    let bases: Vec<&str> = part.rows.iter().map(|r| r.baseline.name.as_str()).collect();
    let base_head = match bases.first() {
        Some(first) if bases.iter().all(|b| b == first) => (*first).to_owned(),
        _ => "baseline".to_owned(),
    };
    let with_fast = part.rows.iter().any(|r| r.variants.iter().any(|v| v.fast_path.is_some()));
    out.push_str(&format!("| workload | unit | {base_head} |"));
    for n in &names {
        out.push_str(&format!(" {n} |"));
    }
    if with_fast {
        out.push_str(" fast path |");
    }
    out.push_str("\n|:---|:---|---:|");
    out.push_str(&"---:|".repeat(names.len()));
    if with_fast {
        out.push_str("---:|");
    }
    out.push('\n');
    for r in &part.rows {
        let base = if base_head == "baseline" {
            format!("{} {}", r.baseline.name, figure(r.baseline_median()))
        } else {
            figure(r.baseline_median())
        };
        out.push_str(&format!("| {} | {} | {base} |", cell(&r.title), r.unit));
        for n in &names {
            out.push_str(&format!(" {} |", variant_cell(r, n, true)));
        }
        if with_fast {
            out.push_str(&format!(" {} |", fast_path_cell(r)));
        }
        out.push('\n');
    }
    let row_notes: Vec<String> =
        part.rows.iter().filter_map(|r| Some(format!("- {}: {}", cell(&r.title), r.note.as_ref()?))).collect();
    if !part.notes.is_empty() || !row_notes.is_empty() {
        out.push('\n');
        for n in &part.notes {
            out.push_str(&format!("- {n}\n"));
        }
        for n in row_notes {
            out.push_str(&n);
            out.push('\n');
        }
    }
    out
}

/// The headline table: each headline row's baseline and its value in each
/// of `modes`, with the median speedup of the pairs.
pub fn headline(parts: &[PartResult], modes: &[String]) -> String {
    let rows = headline_rows(parts);
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from("| workload | unit | kernel / glibc |");
    for m in modes {
        out.push_str(&format!(" {m} |"));
    }
    out.push_str("\n|:---|:---|---:|");
    out.push_str(&"---:|".repeat(modes.len()));
    out.push('\n');
    for r in rows {
        let what = match r.better {
            Better::Higher => "",
            Better::Lower => ", lower is better",
        };
        out.push_str(&format!("| {} | {}{what} | {} |", cell(&r.title), r.unit, figure(r.baseline_median())));
        for m in modes {
            out.push_str(&format!(" {} |", variant_cell(r, m, false)));
        }
        out.push('\n');
    }
    out
}

/// The whole report: `heading` (who, where, when, how), the headline, then
/// every part's table.
pub fn report(heading: &str, parts: &[PartResult], modes: &[String]) -> String {
    let mut out = format!("{heading}\n\n");
    let head = headline(parts, modes);
    if !head.is_empty() {
        out.push_str("### Headline\n\n");
        out.push_str(&head);
        out.push('\n');
    }
    for p in parts {
        out.push_str(&part_table(p));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::Part;
    use super::super::results::tests::row;
    use super::super::results::{FastPath, PartResult};
    use super::*;

    fn stream_part() -> PartResult {
        let mut fast = row(
            "unix-stream-1MiB",
            "unix-throughput",
            Some(1 << 20),
            Better::Higher,
            &[4.0, 6.0],
            &[("latency", &[20.0, 30.0]), ("throughput", &[40.0, 36.0])],
        );
        for v in &mut fast.variants {
            v.fast_path = Some(FastPath { fast_path_bytes: 999, kernel_path_bytes: 1, expected: true });
        }
        let mut slow = row("dd-pipeline", "programs", None, Better::Lower, &[0.6], &[("latency", &[0.1])]);
        slow.title = "dd | dd | dd".into();
        slow.variants[0].fast_path = Some(FastPath { fast_path_bytes: 0, kernel_path_bytes: 5, expected: true });
        slow.note = Some("three processes".into());
        PartResult {
            table: None,
            part: Part::Stream,
            rows: vec![fast, slow],
            notes: vec!["dsa left out".into()],
            skipped: None,
            settings: serde_json::json!({}),
            charts: vec![],
        }
    }

    #[test]
    fn part_table_has_a_column_per_variant() {
        let t = part_table(&stream_part());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "### stream: pipe and Unix-socket streams by write size: throughput, and CPU seconds per GiB"
        );
        assert_eq!(lines[2], "| workload | unit | kernel | latency | throughput | fast path |");
        assert_eq!(lines[3], "|:---|:---|---:|---:|---:|---:|");
        assert_eq!(
            lines[4],
            "| the unix-stream-1MiB | GB/s | 5.00 | 25.0 (**5.00x**, 5.00-5.00) | 38.0 (**8.00x**, 6.00-10.00) | 99.9% |"
        );
        assert_eq!(
            lines[5],
            "| dd \\| dd \\| dd | s | 0.600 | 0.100 (**6.00x**) ✗ no fast path | - | none ✗ (latency) |"
        );
        assert!(t.contains("- dsa left out\n"));
        assert!(t.contains("- dd \\| dd \\| dd: three processes\n"));
    }

    #[test]
    fn a_part_with_a_table_of_its_own() {
        let mut p = PartResult::skipped(Part::Shm, String::new());
        p.skipped = None;
        p.table = Some("| ranges | ns |\n|---:|---:|\n| 0 | 2.5 |\n".into());
        p.notes = vec!["in one process".into()];
        let t = part_table(&p);
        assert!(t.ends_with("| 0 | 2.5 |\n\n- in one process\n"), "{t}");
        assert!(!t.contains("| workload |"));
    }

    #[test]
    fn skipped_part() {
        let t = part_table(&PartResult::skipped(Part::Redis, "redis-server is not installed".into()));
        assert!(t.ends_with("Skipped: redis-server is not installed.\n"));
    }

    #[test]
    fn headline_in_its_order_with_the_modes_asked() {
        let parts = [stream_part()];
        let rows = headline_rows(&parts);
        assert_eq!(rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["unix-stream-1MiB", "dd-pipeline"]);
        let modes = vec!["latency".to_owned(), "efficiency".to_owned()];
        let chart = headline_chart_rows(&parts, &modes);
        assert_eq!(chart.iter().map(|r| r.label.as_str()).collect::<Vec<_>>(), ["socket GB/s", "dd|dd|dd"]);
        assert_eq!(chart[0].variants.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["latency"]);
        let h = headline(&parts, &modes);
        let lines: Vec<&str> = h.lines().collect();
        assert_eq!(lines[0], "| workload | unit | kernel / glibc | latency | efficiency |");
        assert_eq!(lines[2], "| the unix-stream-1MiB | GB/s | 5.00 | 25.0 (**5.00x**) | - |");
        assert_eq!(
            lines[3],
            "| dd \\| dd \\| dd | s, lower is better | 0.600 | 0.100 (**6.00x**) ✗ no fast path | - |"
        );
        let r = report("# heading", &parts, &modes);
        assert!(r.starts_with("# heading\n\n### Headline\n\n| workload"));
        assert!(headline(&[], &modes).is_empty());
    }
}
