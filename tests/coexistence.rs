//! Another preload before or after ours: a shim that interposes memcpy and
//! memmove, a tracing shim that interposes read and write (both in
//! tests/c/, forwarding with dlsym(RTLD_NEXT)), and a malloc replacement
//! (jemalloc, when installed). In either order both libraries work: the
//! shim counts calls, our stats count offloaded and fast-path bytes, every
//! byte arrives exact, and the chain ends in libc.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use ipc_offload_tests::{Outcome, Preload, c_program, counter, in_ci, library, read_stats, root, run, scratch};

const JEMALLOC: &str = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";

/// Compiles `tests/c/NAME.c` into a shared object (once per test run).
fn shim(name: &str) -> PathBuf {
    static BUILT: OnceLock<std::sync::Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some((_, path)) = built.iter().find(|(n, _)| n == name) {
        return path.clone();
    }
    let dir = root().join("target/test-programs");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("{name}-{}.so", std::process::id()));
    let source = root().join("tests/c").join(format!("{name}.c"));
    let status = Command::new("cc")
        .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2", "-fno-builtin", "-shared", "-fPIC"])
        .arg(&source)
        .arg("-o")
        .arg(&out)
        .status()
        .expect("cc runs");
    assert!(status.success(), "cc {} failed", source.display());
    built.push((name.to_owned(), out.clone()));
    out
}

fn program() -> PathBuf {
    c_program("coexist", &["-O2", "-fno-builtin"])
}

/// Runs `coexist ARGS` with LD_PRELOAD in the order given ("ours" is our
/// library) and stats in DIR/stats.json.
fn coexist(dir: &Path, order: &[&Path], args: &[&str]) -> Outcome {
    let preload: Vec<String> = order.iter().map(|p| p.display().to_string()).collect();
    let mut cmd = Preload::new().stats(&dir.join("stats.json")).command(program());
    cmd.env("LD_PRELOAD", preload.join(":")).args(args);
    run(&mut cmd, Duration::from_secs(120))
}

/// `key` of `class`, summed over DIR/stats.json and its FILE.PID siblings.
fn total(dir: &Path, class: &str, key: &str) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name == "stats.json" || name.strip_prefix("stats.json.").is_some_and(|pid| pid.parse::<u32>().is_ok())
        })
        .map(|p| counter(&read_stats(&p), class, key))
        .sum()
}

/// The shim's summary lines: `(fields by name, the library it forwards to)`.
fn shim_lines<'a>(out: &'a Outcome, prefix: &str) -> Vec<Vec<&'a str>> {
    out.stderr.lines().filter(|l| l.starts_with(prefix)).map(|l| l.split_whitespace().collect()).collect()
}

/// The number after `word` in `fields`.
fn after(fields: &[&str], word: &str) -> u64 {
    let i = fields.iter().position(|f| *f == word).unwrap_or_else(|| panic!("{word} in {fields:?}"));
    fields[i + 1].parse().unwrap()
}

/// The library a shim forwards to: ours when it comes first, else libc.
fn expect_next(fields: &[&str], shim_first: bool) {
    let next = fields[fields.iter().position(|f| *f == "next").unwrap() + 1];
    let ours = library().display().to_string();
    let wanted = if shim_first { ours.as_str() } else { "libc.so" };
    assert!(next.contains(wanted), "the shim forwards to {next}, expected {wanted}: {fields:?}");
}

#[test]
fn a_memcpy_shim_before_or_after_ours() {
    let shim = shim("shim_memcpy");
    for shim_first in [true, false] {
        let dir = scratch(&format!("memcpy-shim-{shim_first}"));
        let order: Vec<&Path> = if shim_first { vec![&shim, library()] } else { vec![library(), &shim] };
        let out = coexist(&dir, &order, &["copies"]).success();
        assert!(out.stdout.starts_with("copies ok\n"), "{out:#?}");
        let lines = shim_lines(&out, "shim_memcpy:");
        assert_eq!(lines.len(), 1, "{out:#?}");
        assert!(after(&lines[0], "memcpy") >= 10 && after(&lines[0], "memmove") >= 1, "{out:#?}");
        expect_next(&lines[0], shim_first);
        assert!(total(&dir, "memcpy", "offloaded_bytes") >= 4 * (8 << 20), "our library offloaded: {out:#?}");
    }
}

#[test]
fn a_read_write_tracing_shim_before_or_after_ours() {
    let shim = shim("shim_io");
    let size: u64 = 64 << 20;
    for shim_first in [true, false] {
        let dir = scratch(&format!("io-shim-{shim_first}"));
        let order: Vec<&Path> = if shim_first { vec![&shim, library()] } else { vec![library(), &shim] };
        let out = coexist(&dir, &order, &["pipe", &size.to_string()]).success();
        assert!(out.stdout.starts_with(&format!("pipe {size} bytes ok\n")), "{out:#?}");
        let lines = shim_lines(&out, "shim_io:");
        assert_eq!(lines.len(), 2, "the reader and the writer each report: {out:#?}");
        let reads: u64 = lines.iter().map(|l| after(l, "read")).sum();
        let writes: u64 = lines.iter().map(|l| after(l, "write")).sum();
        assert!(reads > 0 && writes > 0, "the shim saw calls: {out:#?}");
        for line in &lines {
            expect_next(line, shim_first);
        }
        if shim_first {
            // Every call of the program passes the shim first.
            let read_bytes: u64 = lines.iter().map(|l| l[4].parse::<u64>().unwrap()).sum();
            assert!(read_bytes >= size, "{out:#?}");
        }
        assert!(total(&dir, "pipe", "fast_path_bytes") > 0, "our fast path ran: {out:#?}");
    }
}

#[test]
fn a_malloc_replacement_before_or_after_ours() {
    if !Path::new(JEMALLOC).exists() {
        assert!(!in_ci(), "{JEMALLOC} is missing in CI: .ci/run must install libjemalloc2");
        eprintln!("SKIPPED: {JEMALLOC} is not installed");
        return;
    }
    let jemalloc = Path::new(JEMALLOC);
    for jemalloc_first in [true, false] {
        let order: Vec<&Path> = if jemalloc_first { vec![jemalloc, library()] } else { vec![library(), jemalloc] };
        let dir = scratch(&format!("jemalloc-copies-{jemalloc_first}"));
        let out = coexist(&dir, &order, &["copies"]).success();
        assert!(out.stdout.contains("copies ok\n") && out.stdout.contains("malloc from "), "{out:#?}");
        assert!(out.stdout.contains("libjemalloc.so.2"), "jemalloc is the malloc: {out:#?}");
        assert!(total(&dir, "memcpy", "offloaded_bytes") >= 4 * (8 << 20), "{out:#?}");
        let dir = scratch(&format!("jemalloc-pipe-{jemalloc_first}"));
        let size: u64 = 64 << 20;
        let out = coexist(&dir, &order, &["pipe", &size.to_string()]).success();
        assert!(out.stdout.starts_with(&format!("pipe {size} bytes ok\n")), "{out:#?}");
        assert!(total(&dir, "pipe", "fast_path_bytes") > 0, "{out:#?}");
    }
}
