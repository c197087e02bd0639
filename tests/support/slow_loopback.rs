//! A network namespace of its own whose loopback is rate-limited (`tc`
//! tbf, 2 Gbit/s): TCP bytes stay on their way for a while after the write
//! that sent them returned, as on a busy machine, so that the tests of the
//! fast path's order rules over TCP ("Bytes still on their way" in
//! docs/ipc-protocol.md) meet that case in every run.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `program ARGS` in a new network namespace (`unshare --net`, root) with
/// lo up behind the rate limit, with the variables `env` set (none: the
/// library stays out, whatever the test's own environment says).
pub fn command(program: &Path, args: &[&str], env: &[(&str, &OsStr)]) -> Command {
    let script =
        r#"ip link set lo up && tc qdisc add dev lo root tbf rate 2gbit burst 256kb latency 100ms && exec "$@""#;
    let mut cmd = Command::new("unshare");
    cmd.env_remove("LD_PRELOAD");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("IPC_OFFLOAD") {
            cmd.env_remove(name);
        }
    }
    cmd.args(["--net", "sh", "-c", script, "sh"]);
    if !env.is_empty() {
        cmd.arg("env");
        for (name, value) in env {
            let mut pair = std::ffi::OsString::from(format!("{name}="));
            pair.push(value);
            cmd.arg(pair);
        }
    }
    cmd.arg(program).args(args);
    cmd
}

/// Whether [`command`] works here (root, unshare, ip, tc with tbf); says
/// why not on stderr.
pub fn available() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || !crate::have("unshare") || !crate::have("ip") || !crate::have("tc") {
        eprintln!("SKIPPED: a slow loopback needs root, unshare, ip and tc (iproute2)");
        return false;
    }
    let out = crate::run(&mut command(Path::new("true"), &[], &[]), Duration::from_secs(30));
    if !out.status.success() {
        eprintln!("SKIPPED: no network namespace with a tbf loopback: {}", out.stderr.trim());
    }
    out.status.success()
}
