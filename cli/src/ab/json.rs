//! The JSON document (`--json`): the setup, every run, the pairs and the
//! summary. The schema is in docs/guide/ab.md; `"ab": 1` is
//! its version. Runs and pairs are numbered from 1, as in the tables.

use serde_json::{Value, json};

use super::figures::{Figures, Metric, Row, Spread};
use super::session::Run;
use super::setup::Setup;
use super::verdict::{Agreement, Failure};

/// The document.
pub fn document(setup: &Setup, runs: &[Run], figures: &Figures<'_>, failures: &[Failure], exit_code: u8) -> Value {
    let o = &setup.options;
    let agreement = Agreement::of(&figures.pairs);
    let side = |pick: fn(&Row) -> Option<Spread>| {
        figures
            .rows
            .iter()
            .map(|row| (row.metric.key().to_owned(), spread(pick(row), row.metric == Metric::MaxRss)))
            .collect::<serde_json::Map<_, _>>()
    };
    let ratios = figures
        .rows
        .iter()
        .map(|row| (ratio_key(row.metric).to_owned(), spread(row.ratio, false)))
        .collect::<serde_json::Map<_, _>>();
    let wall = figures.sides(Metric::Wall);
    json!({
        "ab": 1,
        "command": setup.options.command.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>(),
        "library": setup.library.display().to_string(),
        "policy": setup.policy.path().map(|p| p.display().to_string()),
        "policy_from": setup.policy.from(),
        "warmup_pairs": o.warmup,
        "measured_pairs": o.runs,
        "runs": runs.iter().map(run).collect::<Vec<_>>(),
        "pairs": figures.pairs.iter().enumerate().map(|(i, p)| json!({
            "pair": i + 1,
            "a": p.a.seq + 1,
            "b": p.b.seq + 1,
            "wall_ratio": p.ratio(Metric::Wall),
            "cpu_ratio": p.ratio(Metric::Cpu),
            "max_rss_ratio": p.ratio(Metric::MaxRss),
        })).collect::<Vec<_>>(),
        "summary": {"A": side(|r| r.a), "B": side(|r| r.b), "ratio": ratios},
        "stdout_differs": agreement.stdout_differs,
        "status_differs": agreement.status_differs,
        "a_stdout_varies": agreement.a_stdout_varies,
        "gates": {
            "compare_output": o.compare_output.then(|| json!({
                "passed": !failures.iter().any(|f| matches!(f, Failure::Output { .. })),
            })),
            "fail_if_slower": o.fail_if_slower.map(|limit| json!({
                "limit": limit,
                "ratio_of_medians": wall.0.zip(wall.1).map(|(a, b)| b.median / a.median),
                "passed": !failures.iter().any(|f| matches!(f, Failure::Slower { .. } | Failure::NotComparable { .. })),
            })),
        },
        "failures": failures.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "exit_code": exit_code,
    })
}

fn ratio_key(metric: Metric) -> &'static str {
    match metric {
        Metric::Wall => "wall",
        Metric::Cpu => "cpu",
        Metric::MaxRss => "max_rss",
    }
}

/// `{"min", "median", "max"}`, as whole numbers for `bytes`.
fn spread(s: Option<Spread>, bytes: bool) -> Value {
    let number = |x: f64| if bytes { json!(x.round() as u64) } else { json!(x) };
    s.map_or(Value::Null, |s| json!({"min": number(s.min), "median": number(s.median), "max": number(s.max)}))
}

fn run(r: &Run) -> Value {
    let (code, signal) = match r.exit {
        super::wait::Exit::Code(c) => (Some(c), None),
        super::wait::Exit::Signal(s) => (None, Some(s)),
    };
    json!({
        "seq": r.seq + 1,
        "side": r.side.to_string(),
        "warmup": r.warmup,
        "pair": r.pair + 1,
        "start_s": r.start.as_secs_f64(),
        "wall_s": r.wall.as_secs_f64(),
        "user_s": r.user.as_secs_f64(),
        "sys_s": r.sys.as_secs_f64(),
        "cpu_s": r.cpu().as_secs_f64(),
        "max_rss_bytes": r.max_rss_bytes,
        "exit_code": code,
        "signal": signal,
        "stdout_bytes": r.stdout_bytes,
        "stdout_compared_with": r.compared.map(|(seq, _)| seq + 1),
        "stdout_same": r.compared.map(|(_, same)| same),
    })
}
