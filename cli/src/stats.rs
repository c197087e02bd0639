//! `stats`: stats files as a table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

const USAGE: &str = "\
usage: ipc-offload stats [--json] FILE...

Prints stats files written by the library (IPC_OFFLOAD_STATS=FILE) as a
table: one row per process and class. FILE.PID files written by descendant
processes are included. Files of running processes are read as they are
(they are rewritten every stats_interval); STATE says running, exited
(final figures) or gone (killed before writing final figures).
--json prints the objects read, as a JSON array, instead of the table.
Exits 1 if a file cannot be read or is not a stats file (the others are
still shown).
";

const CLASSES: [&str; 5] = ["memcpy", "shm", "unix", "pipe", "tcp"];

pub fn main(args: &[String]) -> ExitCode {
    let mut json = false;
    let mut files = Vec::new();
    for arg in args {
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--json" => json = true,
            flag if flag.starts_with('-') && flag.len() > 1 => {
                eprintln!("ipc-offload stats: unknown option {flag}\n{USAGE}");
                return ExitCode::from(2);
            }
            file => files.push(PathBuf::from(file)),
        }
    }
    if files.is_empty() {
        eprintln!("ipc-offload stats: no stats file given\n{USAGE}");
        return ExitCode::from(2);
    }
    let mut objects = Vec::new();
    let mut failed = false;
    for path in expand(&files) {
        match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| format!("not a stats file: {e}")))
        {
            Ok(v) if v.get("ipc_offload_stats").is_some() => objects.push(v),
            Ok(_) => {
                eprintln!("{}: not an ipc-offload stats file", path.display());
                failed = true;
            }
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                failed = true;
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&Value::Array(objects)).unwrap_or_default());
    } else if !objects.is_empty() {
        print!("{}", table(&objects));
    }
    if failed { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

/// The files named, each followed by its `FILE.PID` siblings (sorted by pid).
fn expand(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for file in files {
        let mut found = vec![];
        if file.exists() || !has_descendants(file) {
            found.push(file.clone());
        }
        let mut children: Vec<(u64, PathBuf)> = descendants(file);
        children.sort();
        found.extend(children.into_iter().map(|(_, p)| p));
        for p in found {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

fn has_descendants(file: &Path) -> bool {
    !descendants(file).is_empty()
}

fn descendants(file: &Path) -> Vec<(u64, PathBuf)> {
    let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
        return vec![];
    };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let prefix = format!("{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let pid: u64 = n.strip_prefix(&prefix)?.parse().ok()?;
            Some((pid, file.with_file_name(n)))
        })
        .collect()
}

fn num(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("?")
}

/// "1.50 GiB".
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.2} {}", UNITS[unit]) }
}

fn state(v: &Value) -> String {
    if v.get("final").and_then(Value::as_bool).unwrap_or(false) {
        return "exited".into();
    }
    let pid = num(v, "pid") as i32;
    // SAFETY: kill with signal 0 only checks that the process exists.
    let alive = pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM));
    if !alive {
        return "gone".into();
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let age = now.saturating_sub(num(v, "unix_time_ms")) as f64 / 1000.0;
    format!("running ({age:.1}s ago)")
}

#[derive(Default)]
struct Totals {
    calls: u64,
    bytes: u64,
    offloaded: u64,
    workers: u64,
}

fn table(objects: &[Value]) -> String {
    let header =
        ["PID", "PROCESS", "STATE", "CLASS", "ENGINE", "CALLS", "BYTES", "OFFLOADED", "BY WORKERS", "FALLBACKS"];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    let mut totals: BTreeMap<&str, Totals> = BTreeMap::new();
    for v in objects {
        let mut shown = false;
        for class in CLASSES {
            let Some(c) = v.get(class) else { continue };
            let engine = text(c, "engine");
            let calls = num(c, "calls");
            // A class that did nothing is shown only when it is memcpy's,
            // unix's or pipe's (so that each process has a row); shm copies
            // are memcpy-family copies that met shared memory, and a
            // process without TCP traffic needs no tcp row.
            if calls == 0 && (engine == "off" || class == "shm" || class == "tcp") {
                continue;
            }
            shown = true;
            let offloaded = num(c, "offloaded_bytes");
            let workers = num(c, "worker_bytes");
            let t = totals.entry(class).or_default();
            t.calls += calls;
            t.bytes += num(c, "bytes");
            t.offloaded += offloaded;
            t.workers += workers;
            let fallbacks: Vec<String> = c
                .get("fallbacks")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter().filter(|(_, n)| n.as_u64().unwrap_or(0) > 0).map(|(k, n)| format!("{k}={n}")).collect()
                })
                .unwrap_or_default();
            rows.push(vec![
                num(v, "pid").to_string(),
                text(v, "process").to_string(),
                state(v),
                class.to_string(),
                engine.to_string(),
                calls.to_string(),
                human(num(c, "bytes")),
                human(offloaded),
                share(workers, offloaded),
                if fallbacks.is_empty() { "-".into() } else { fallbacks.join(" ") },
            ]);
        }
        if !shown {
            rows.push(vec![num(v, "pid").to_string(), text(v, "process").into(), state(v), "-".into(), "off".into()]);
        }
    }
    if objects.len() > 1 {
        for (class, t) in &totals {
            rows.push(vec![
                "total".into(),
                format!("{} processes", objects.len()),
                String::new(),
                class.to_string(),
                String::new(),
                t.calls.to_string(),
                human(t.bytes),
                human(t.offloaded),
                share(t.workers, t.offloaded),
                String::new(),
            ]);
        }
    }
    render(&rows)
}

fn share(part: u64, whole: u64) -> String {
    if whole == 0 { "-".into() } else { format!("{:.1}%", part as f64 * 100.0 / whole as f64) }
}

/// Rows as columns padded to their widest cell, two spaces apart.
pub(crate) fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1536), "1.50 KiB");
        assert_eq!(human(3 << 30), "3.00 GiB");
    }

    #[test]
    fn table_has_a_row_per_class_and_totals() {
        let a: Value = serde_json::from_str(
            r#"{"ipc_offload_stats":1,"pid":1,"process":"a","final":true,
            "memcpy":{"engine":"async-cpu","calls":2,"bytes":4194304,"offloaded_bytes":4194304,"worker_bytes":2097152,
            "fallbacks":{"pool-saturated":1,"panic":0}},
            "unix":{"engine":"off","calls":0}}"#,
        )
        .unwrap();
        let t = table(&[a.clone(), a]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(
            lines[1].contains("async-cpu") && lines[1].contains("50.0%") && lines[1].contains("pool-saturated=1"),
            "{t}"
        );
        assert!(lines[3].starts_with("total") && lines[3].contains("8.00 MiB"), "{t}");
    }

    #[test]
    fn the_shm_class_has_a_row_when_it_counted_copies() {
        let stats = |shm_calls: u64| -> Value {
            serde_json::from_str(&format!(
                r#"{{"ipc_offload_stats":1,"pid":1,"process":"a","final":true,
                "memcpy":{{"engine":"async-cpu","calls":0}},
                "shm":{{"engine":"async-cpu","calls":{shm_calls},"bytes":268435456,"offloaded_bytes":268435456}}}}"#
            ))
            .unwrap()
        };
        let t = table(&[stats(0)]);
        assert_eq!(t.lines().count(), 2, "{t}");
        let t = table(&[stats(1)]);
        assert!(t.lines().nth(2).is_some_and(|l| l.contains("shm") && l.contains("256.00 MiB")), "{t}");
    }
}
