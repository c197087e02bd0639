//! Running an IPC workload (a command: `benches/c/ipc_bench.c`, a Python
//! script, a shell pipeline) once, without the library or with it, and
//! reading what the library's stats files say it did. Shared by `ipc-bench`
//! and `bench-suite`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::stats::Better;

/// Where a run's figures come from.
#[derive(Clone, Debug)]
pub enum Measure {
    /// The command prints them on stdout: numbers separated by white space
    /// (the first is the run's value).
    Printed,
    /// The command's wall time in seconds, from its spawn to its exit; its
    /// stderr must contain `check` exactly `count` times (dd's byte counts:
    /// every stage of a pipeline moved everything, whatever the pipeline's
    /// exit status, which is the last stage's).
    WallTime { check: String, count: usize },
    /// The command prints something that this function turns into figures.
    Parsed(fn(&str) -> Result<Vec<f64>, String>),
}

/// One workload: a command whose run gives one figure (or a few).
#[derive(Clone, Debug)]
pub struct Workload {
    /// Short key, used in the JSON.
    pub key: String,
    /// What it moves, for people.
    pub title: String,
    /// The figure's unit.
    pub unit: &'static str,
    pub better: Better,
    /// The issue's target as the least speedup (kernel over library for
    /// Lower figures, library over kernel for Higher ones) and its wording
    /// (ipc-bench's tables; the suite reports no targets).
    pub target: (f64, &'static str),
    /// Whether the library must have moved bytes on its fast path (a run
    /// that silently stayed on the kernel path measures nothing).
    pub expects_fast_path: bool,
    /// The stats class that counts its fast-path bytes (`unix`, `pipe`).
    pub class: &'static str,
    pub measure: Measure,
    /// The command; with the library, LD_PRELOAD is set for it and so for
    /// every process it starts.
    pub argv: Vec<String>,
}

/// Which side of a comparison a run is.
#[derive(Clone, Copy, Debug)]
pub enum Side<'a> {
    /// Without the library: the kernel path, glibc's copies.
    Kernel,
    /// With the library `lib` preloaded, and the policy file `policy` (None:
    /// the built-in policy). A policy the library rejects makes the run fail
    /// (IPC_OFFLOAD_STRICT=1) instead of measuring a pass-through.
    Library { lib: &'a Path, policy: Option<&'a Path> },
}

impl Side<'_> {
    /// The environment of a run on this side: every variable of the library
    /// cleared, then LD_PRELOAD, the policy and the stats file (in
    /// `stats_dir`, which is created) set for the library's side.
    pub fn apply(&self, cmd: &mut Command, stats_dir: &Path) -> Result<(), String> {
        for var in [
            "LD_PRELOAD",
            "IPC_OFFLOAD",
            "IPC_OFFLOAD_POLICY",
            "IPC_OFFLOAD_STATS",
            "IPC_OFFLOAD_STATS_ROOT",
            "IPC_OFFLOAD_STRICT",
        ] {
            cmd.env_remove(var);
        }
        let _ = std::fs::remove_dir_all(stats_dir);
        if let Side::Library { lib, policy } = self {
            std::fs::create_dir_all(stats_dir).map_err(|e| format!("{}: {e}", stats_dir.display()))?;
            cmd.env("LD_PRELOAD", lib).env("IPC_OFFLOAD_STATS", stats_dir.join("stats.json"));
            if let Some(policy) = policy {
                cmd.env("IPC_OFFLOAD_POLICY", policy).env("IPC_OFFLOAD_STRICT", "1");
            }
        }
        Ok(())
    }

    pub fn is_library(&self) -> bool {
        matches!(self, Side::Library { .. })
    }
}

/// What one run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The run's figure (the first of `values`).
    pub value: f64,
    /// Every figure the run gave.
    pub values: Vec<f64>,
    /// Bytes of the workload's stats class (`unix`, `pipe`) the library
    /// moved through shared memory and through the kernel (all processes of
    /// the run); zero without it.
    pub fast_path_bytes: u64,
    pub kernel_path_bytes: u64,
}

/// Runs `w` once, without the library (`lib` None) or with it and the
/// built-in policy; `scratch` holds its stats files. (ipc-bench's form of
/// [`run`].)
pub fn run_once(w: &Workload, lib: Option<&Path>, scratch: &Path) -> Result<Sample, String> {
    let side = match lib {
        Some(lib) => Side::Library { lib, policy: None },
        None => Side::Kernel,
    };
    run(w, side, &scratch.join(&w.key))
}

fn command(w: &Workload, side: Side<'_>, stats_dir: &Path) -> Result<Command, String> {
    let mut cmd = Command::new(&w.argv[0]);
    cmd.args(&w.argv[1..]);
    side.apply(&mut cmd, stats_dir)?;
    // A printed figure's command reports on stderr as it likes; a timed one's
    // stderr is checked, and shown only when something is wrong.
    let timed = matches!(w.measure, Measure::WallTime { .. });
    if timed {
        // dd's byte counts in English, whatever the machine's locale.
        cmd.env("LC_ALL", "C");
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(if timed { Stdio::piped() } else { Stdio::inherit() });
    Ok(cmd)
}

/// Runs `w` once on `side`; its stats files go to `stats_dir` (emptied
/// first).
pub fn run(w: &Workload, side: Side<'_>, stats_dir: &Path) -> Result<Sample, String> {
    let mut cmd = command(w, side, stats_dir)?;
    let start = Instant::now();
    let child = cmd.spawn().map_err(|e| format!("{}: {e}", w.argv[0]))?;
    finish(w, side, stats_dir, child, start)
}

/// Runs `copies` instances of `w` at once on `side` (each with its own
/// stats directory under `stats_dir`); their samples, in order.
pub fn run_concurrently(w: &Workload, side: Side<'_>, stats_dir: &Path, copies: usize) -> Result<Vec<Sample>, String> {
    let mut running = vec![];
    for i in 0..copies {
        let dir = stats_dir.join(format!("copy-{i}"));
        let mut cmd = command(w, side, &dir)?;
        let start = Instant::now();
        let child = cmd.spawn().map_err(|e| format!("{}: {e}", w.argv[0]))?;
        running.push((dir, child, start));
    }
    let mut samples = vec![];
    let mut first_error = None;
    for (dir, child, start) in running {
        // Every child is reaped, also after an error.
        match finish(w, side, &dir, child, start) {
            Ok(s) => samples.push(s),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(samples),
    }
}

fn finish(w: &Workload, side: Side<'_>, stats_dir: &Path, child: Child, start: Instant) -> Result<Sample, String> {
    let out = child.wait_with_output().map_err(|e| format!("{}: {e}", w.argv[0]))?;
    let elapsed = start.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    let errors = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let errors = if errors.is_empty() { String::new() } else { format!("\n{}", errors.trim_end()) };
        return Err(format!("{} failed ({}): {}{errors}", w.argv.join(" "), out.status, text.trim()));
    }
    let values = match &w.measure {
        Measure::Printed => parse_numbers(&text).map_err(|e| format!("{}: {e}", w.key))?,
        Measure::Parsed(parse) => parse(&text).map_err(|e| format!("{}: {e}", w.key))?,
        Measure::WallTime { check, count } => {
            let seen = errors.matches(check.as_str()).count();
            if seen != *count {
                return Err(format!(
                    "{}: {check:?} {seen} times on stderr, not {count}: a stage did not move everything:\n{}",
                    w.key,
                    errors.trim_end()
                ));
            }
            vec![(elapsed * 1e6).round() / 1e6]
        }
    };
    let (fast_path_bytes, kernel_path_bytes) = if side.is_library() { ipc_bytes(stats_dir, w.class)? } else { (0, 0) };
    Ok(Sample { value: values[0], values, fast_path_bytes, kernel_path_bytes })
}

/// The numbers of a command's output, separated by white space; at least one.
pub fn parse_numbers(text: &str) -> Result<Vec<f64>, String> {
    let values: Result<Vec<f64>, _> = text.split_whitespace().map(str::parse::<f64>).collect();
    match values {
        Ok(v) if !v.is_empty() && v.iter().all(|x| x.is_finite()) => Ok(v),
        _ => Err(format!("printed {:?}, not numbers", text.trim())),
    }
}

/// Sums the byte counts of stats class `class` (`unix`, `pipe`) over the
/// stats files of a run (`stats.json*` in `dir`).
pub fn ipc_bytes(dir: &Path, class: &str) -> Result<(u64, u64), String> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("stats.json")))
        .collect();
    if files.is_empty() {
        return Err(format!("the library wrote no stats in {}: was it loaded?", dir.display()));
    }
    let (mut fast, mut kernel) = (0, 0);
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: not a stats file: {e}", file.display()))?;
        fast += v[class]["fast_path_bytes"].as_u64().unwrap_or(0);
        kernel += v[class]["kernel_path_bytes"].as_u64().unwrap_or(0);
    }
    Ok((fast, kernel))
}

/// Writes the dd pipeline's input: `bytes` of a pseudo-random pattern (no
/// zero pages, nothing a file system could make sparse), synced so that no
/// writeback runs during the timed runs. Not timed.
pub fn write_dd_input(path: &Path, bytes: u64) -> Result<(), String> {
    use std::io::Write;
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut block = vec![0u8; 4 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for word in block.chunks_exact_mut(8) {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        word.copy_from_slice(&x.to_le_bytes());
    }
    let mut file = std::fs::File::create(path).map_err(err)?;
    let mut left = bytes;
    let mut index = 0u64;
    while left > 0 {
        // Every block differs from the others.
        block[..8].copy_from_slice(&index.to_le_bytes());
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n]).map_err(err)?;
        left -= n as u64;
        index += 1;
    }
    file.sync_all().map_err(err)
}

/// The project's three-dd pipeline (4 MiB pipe reads and writes through
/// read and write) over `input` (of `bytes` bytes), as a `/bin/sh -c`
/// command line.
pub fn dd_pipeline(input: &Path) -> String {
    format!("dd if={} bs=4M | dd iflag=fullblock bs=4M | dd iflag=fullblock bs=4M of=/dev/null", quoted(input))
}

/// `dd bs=4M | dd bs=64K of=/dev/null` over `input`: a reader of small
/// buffers (docs/ipc-protocol.md, "Readers with small buffers").
pub fn dd_small_reader(input: &Path) -> String {
    format!("dd if={} bs=4M | dd bs=64K of=/dev/null", quoted(input))
}

/// `path` in single quotes for sh.
fn quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// Compiles benches/c/ipc_bench.c into `out` with the system's C compiler.
pub fn compile(root: &Path, out: &Path) -> Result<(), String> {
    compile_program(root, "ipc_bench", out)
}

/// Compiles benches/c/`name`.c (`ipc_bench`, `evloop_bench`) into `out`
/// with the system's C compiler (`$CC`, or `cc`), as ipc_bench.c is; they
/// share tests/c/stream_pair.h (the connected pairs of each transport) with
/// the test programs.
pub fn compile_program(root: &Path, name: &str, out: &Path) -> Result<(), String> {
    let source = root.join(format!("benches/c/{name}.c"));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let status = Command::new(&cc)
        .args(["-O2", "-Wall", "-I"])
        .arg(root.join("tests/c"))
        .arg("-o")
        .arg(out)
        .arg(&source)
        .status()
        .map_err(|e| format!("{cc}: {e} (a C compiler is needed: apt-get install gcc)"))?;
    if status.success() { Ok(()) } else { Err(format!("{cc} {} failed ({status})", source.display())) }
}

/// The Python interpreter itself (not a pyenv shim, which would run several
/// processes under the library), or None without python3.
pub fn python() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .env_remove("LD_PRELOAD")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

/// A program on PATH (`which`), or None.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_of_a_line() {
        assert_eq!(parse_numbers("4.5 0.25 12.000001 13\n"), Ok(vec![4.5, 0.25, 12.000001, 13.0]));
        assert!(parse_numbers("").is_err());
        assert!(parse_numbers("1.0 fast").is_err());
        assert!(parse_numbers("nan").is_err());
    }

    #[test]
    fn dd_pipeline_quotes_its_input() {
        assert_eq!(
            dd_pipeline(Path::new("/tmp/it's")),
            r"dd if='/tmp/it'\''s' bs=4M | dd iflag=fullblock bs=4M | dd iflag=fullblock bs=4M of=/dev/null"
        );
    }

    #[test]
    fn evloop_bench_compiles_without_a_warning() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let dir = std::env::temp_dir().join(format!("evloop-bench-compile-{}", std::process::id()));
        let out = dir.join("evloop_bench");
        compile_program(root, "evloop_bench", &out).unwrap();
        assert!(out.exists());
        let strict = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
            .args(["-O2", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-I"])
            .arg(root.join("tests/c"))
            .arg(root.join("benches/c/evloop_bench.c"))
            .status()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(strict.success());
        assert!(compile_program(root, "no_such_program", &dir.join("x")).is_err());
    }

    #[test]
    fn finds_sh_on_path() {
        assert!(find_program("sh").is_some());
        assert!(find_program("no-such-program-here").is_none());
    }
}
