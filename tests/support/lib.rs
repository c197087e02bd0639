//! Shared pieces of the integration tests: build the library (never use a
//! stale one), compile the C test programs, run programs under the library
//! with a watchdog, and read stats files.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod reliability;
pub mod slow_loopback;

/// The workspace root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent")
}

fn cargo_build(package: &str) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "-p", package])
        .current_dir(root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build --release -p {package} failed");
}

/// `target/release/libipc_offload.so`, built by this test run; or, for
/// checking that tests fail against a broken build, the library that
/// `IPC_OFFLOAD_TEST_LIBRARY` names (a mutated copy, nothing is built).
pub fn library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        if let Some(lib) = std::env::var_os("IPC_OFFLOAD_TEST_LIBRARY").filter(|v| !v.is_empty()) {
            eprintln!("testing the library {} (IPC_OFFLOAD_TEST_LIBRARY)", Path::new(&lib).display());
            return PathBuf::from(lib);
        }
        cargo_build("ipc-offload-preload");
        let lib = root().join("target/release/libipc_offload.so");
        assert!(lib.exists(), "{} was not built", lib.display());
        lib
    })
}

/// `target/release/ipc-offload-tool`, built by this test run.
pub fn tool() -> &'static Path {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        cargo_build("ipc-offload-cli");
        root().join("target/release/ipc-offload-tool")
    })
}

/// True when running in CI, where a missing tool is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether the hard `RLIMIT_NOFILE` allows `needed` fds (the programs raise
/// their soft limit to it), for `what`. In CI a lower limit fails the test;
/// elsewhere it is skipped, saying why.
pub fn fd_limit_allows(needed: u64, what: &str) -> bool {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit(2) fills the struct it is given.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    if limit.rlim_max >= needed {
        return true;
    }
    assert!(!in_ci(), "the hard fd limit is {}: {what} need {needed}", limit.rlim_max);
    eprintln!("SKIPPED: the hard fd limit is {}, {what} need {needed}", limit.rlim_max);
    false
}

/// Whether `program` is on PATH. In CI a missing program fails the test.
pub fn have(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(!in_ci(), "{program} is missing in CI: .ci/run must install it");
        eprintln!("SKIPPED: {program} is not installed");
    }
    found
}

/// A fresh directory under target/ for one test.
pub fn scratch(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = root().join("target/test-scratch").join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compiles `tests/c/NAME.c` with `flags` (once per flag set and test run).
pub fn c_program(name: &str, flags: &[&str]) -> PathBuf {
    static BUILT: OnceLock<std::sync::Mutex<BTreeMap<String, PathBuf>>> = OnceLock::new();
    let key = format!("{name} {}", flags.join(" "));
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some(path) = built.get(&key) {
        return path.clone();
    }
    assert!(have("cc"), "a C compiler is needed");
    let dir = root().join("target/test-programs");
    std::fs::create_dir_all(&dir).unwrap();
    let tag: String = flags.join("").chars().filter(char::is_ascii_alphanumeric).collect();
    let out = dir.join(format!("{name}{}{tag}-{}", if tag.is_empty() { "" } else { "-" }, std::process::id()));
    let source = root().join("tests/c").join(format!("{name}.c"));
    let status = Command::new("cc")
        .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-pthread", "-g"])
        .args(flags)
        .arg(&source)
        .arg("-o")
        .arg(&out)
        .status()
        .expect("cc runs");
    assert!(status.success(), "cc {} failed", source.display());
    built.insert(key, out.clone());
    out
}

/// What a finished program did.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// The exit code, or panics with the output if killed by a signal.
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or_else(|| panic!("killed by a signal: {self:#?}"))
    }

    /// Asserts exit code 0 and returns self.
    pub fn success(self) -> Self {
        assert!(self.status.success(), "program failed: {self:#?}");
        self
    }

    /// The terminating signal, if any.
    pub fn signal(&self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        self.status.signal()
    }

    /// stderr lines that come from the library.
    pub fn library_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| l.starts_with("ipc-offload[")).collect()
    }
}

/// Runs `cmd` to completion; kills it and panics after `timeout` (a hang is
/// a failure, not a slow test). The program runs in a process group of its
/// own, which the watchdog kills whole; the deadline also covers its
/// children that keep the output pipes open after it exits.
pub fn run(cmd: &mut Command, timeout: Duration) -> Outcome {
    use std::os::unix::process::CommandExt;
    let deadline = Instant::now() + timeout;
    let mut child =
        cmd.process_group(0).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let group = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    for (index, mut pipe) in [
        (0, Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>),
        (1, Box::new(child.stderr.take().unwrap())),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = pipe.read_to_end(&mut s);
            let _ = tx.send((index, s));
        });
    }
    let kill_group = || {
        // SAFETY: kill(2) on the process group the child leads.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    };
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            kill_group();
            let _ = child.wait();
            panic!("watchdog: {cmd:?} still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut outputs = [Vec::new(), Vec::new()];
    for _ in 0..2 {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((index, bytes)) => outputs[index] = bytes,
            Err(_) => {
                kill_group();
                panic!("watchdog: {cmd:?} exited, but its children held its output open after {timeout:?}");
            }
        }
    }
    let [stdout, stderr] = outputs;
    Outcome {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Builds commands that run under the library.
#[derive(Clone, Debug, Default)]
pub struct Preload {
    env: Vec<(String, OsString)>,
    timeout: Option<Duration>,
}

impl Preload {
    /// No policy, no stats: the built-in policy.
    pub fn new() -> Self {
        Preload::default()
    }

    /// Sets an environment variable for the program.
    pub fn env(mut self, name: &str, value: impl Into<OsString>) -> Self {
        self.env.push((name.to_owned(), value.into()));
        self
    }

    /// Writes `text` to DIR/policy.toml and uses it.
    pub fn policy(self, dir: &Path, text: &str) -> Self {
        let file = dir.join("policy.toml");
        std::fs::write(&file, text).unwrap();
        self.env("IPC_OFFLOAD_POLICY", file)
    }

    /// Sets IPC_OFFLOAD_STATS.
    pub fn stats(self, file: &Path) -> Self {
        self.env("IPC_OFFLOAD_STATS", file)
    }

    /// Watchdog (default 120 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The command with LD_PRELOAD and the variables set (and no stray
    /// IPC_OFFLOAD_* from the test's own environment).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("IPC_OFFLOAD") {
                cmd.env_remove(name);
            }
        }
        cmd.env("LD_PRELOAD", library());
        for (name, value) in &self.env {
            cmd.env(name, value);
        }
        cmd
    }

    /// Runs `program ARGS` under the library.
    pub fn run(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Outcome {
        let mut cmd = self.command(program);
        cmd.args(args);
        run(&mut cmd, self.timeout.unwrap_or(Duration::from_secs(120)))
    }
}

/// Runs `program ARGS` without the library (the reference side).
pub fn run_plain(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Outcome {
    let mut cmd = Command::new(program);
    cmd.args(args).env_remove("LD_PRELOAD");
    run(&mut cmd, Duration::from_secs(120))
}

/// A parsed stats file.
pub fn read_stats(file: &Path) -> Value {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", file.display()))
}

/// `stats[class][key]` as a number (0 when absent).
pub fn counter(stats: &Value, class: &str, key: &str) -> u64 {
    stats[class][key].as_u64().unwrap_or(0)
}

/// `stats[class]["by_engine"][engine]`.
pub fn engine_bytes(stats: &Value, class: &str, engine: &str) -> u64 {
    stats[class]["by_engine"][engine].as_u64().unwrap_or(0)
}

/// `stats[class]["fallbacks"][reason]`.
pub fn fallbacks(stats: &Value, class: &str, reason: &str) -> u64 {
    stats[class]["fallbacks"][reason].as_u64().unwrap_or(0)
}

/// The real python interpreter (not a pyenv shim script).
pub fn python() -> Option<PathBuf> {
    if !have("python3") {
        return None;
    }
    let out = Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().ok()?;
    Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The bytes an `strace -o FILE` trace shows its calls returning (the sum
/// of the positive results of every line, resumed calls included): with
/// `-e trace=read,write,...`, what crossed the kernel.
pub fn strace_bytes(trace: &Path) -> u64 {
    std::fs::read_to_string(trace)
        .unwrap()
        .lines()
        // "pid call(args...) = N" and "pid <... call resumed>)    = N"
        .filter_map(|l| {
            let (_, result) = l.rsplit_once(')')?;
            result.trim_start().strip_prefix('=')?.split_whitespace().next()?.parse::<i64>().ok()
        })
        .filter(|n| *n > 0)
        .map(|n| n as u64)
        .sum()
}
