//! Secure execution (AT_SECURE: set-user-ID programs, file capabilities):
//! the library, when glibc loads it at all, reads none of its variables
//! and stays a pass-through.
//!
//! glibc preloads into a secure process only a library named without a
//! slash, found in a trusted directory, with the set-user-ID bit. The test
//! gives it one without touching the system: in a private mount namespace
//! it bind-mounts a set-user-ID copy of the library over
//! `libBrokenLocale.so.1` (a glibc compatibility library nothing here
//! loads) and preloads that name. Root is needed (mount namespace,
//! setcap); without it the test is skipped with a message.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ipc_offload_tests::{Outcome, c_program, have, library, run, scratch};

const TRUSTED: &str = "/usr/lib/x86_64-linux-gnu/libBrokenLocale.so.1";
/// The name preloaded: without a slash, as glibc requires in secure mode.
const TRUSTED_NAME: &str = "libBrokenLocale.so.1";

/// Runs `program` as uid 65534 with the library preloaded from the trusted
/// name and `vars` set.
fn probe(dir: &Path, program: &Path, vars: &[(&str, String)]) -> Outcome {
    let lib = dir.join("libipc_offload.so");
    let mut env = format!("env -i PATH=/usr/bin:/bin LD_PRELOAD={TRUSTED_NAME}");
    for (name, value) in vars {
        env += &format!(" {name}={value}");
    }
    let script = format!(
        "mount --bind {} {TRUSTED} && exec setpriv --reuid=65534 --regid=65534 --clear-groups {env} {}",
        lib.display(),
        program.display()
    );
    let mut cmd = Command::new("unshare");
    cmd.env_remove("LD_PRELOAD").args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    run(&mut cmd, Duration::from_secs(60))
}

/// A copy of secure_probe at `dir/name`, anyone may run it.
fn copy(dir: &Path, name: &str, mode: u32) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(c_program("secure_probe", &["-O2", "-fno-builtin"]), &to).unwrap();
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
    to
}

/// Removes the set-user-ID and capability copies however the test ends.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_secure_process_ignores_every_variable() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root");
        return;
    }
    if !Path::new(TRUSTED).exists() || !have("unshare") || !have("setpriv") {
        eprintln!("SKIPPED: needs {TRUSTED}, unshare and setpriv");
        return;
    }
    let dir = scratch("secure");
    let _cleanup = Cleanup(dir.clone());
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::copy(library(), dir.join("libipc_offload.so")).unwrap();
    std::fs::set_permissions(dir.join("libipc_offload.so"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::write(dir.join("bad.toml"), "[memcpy\n").unwrap();
    let mut programs = vec![(copy(&dir, "plain", 0o755), false), (copy(&dir, "setuid", 0o4755), true)];
    if have("setcap") {
        let capped = copy(&dir, "capability", 0o755);
        let status = Command::new("setcap").arg("cap_net_bind_service+ep").arg(&capped).status().unwrap();
        assert!(status.success(), "setcap failed");
        programs.push((capped, true));
    }
    for (program, secure) in programs {
        let name = program.file_name().unwrap().to_string_lossy().into_owned();
        let stats = dir.join(format!("{name}.json"));
        let vars = [("IPC_OFFLOAD_STATS", stats.display().to_string()), ("IPC_OFFLOAD_LOG", "debug".to_owned())];
        let out = probe(&dir, &program, &vars);
        // Whether or not the process is secure, our library is the one
        // its memcpy calls: the check below is not vacuous.
        assert!(out.stdout.contains(&format!("secure {}\n", u8::from(secure))), "{name}: {out:#?}");
        assert!(out.stdout.contains("memcpy from ") && out.stdout.contains(TRUSTED_NAME), "{name}: {out:#?}");
        assert!(out.stdout.ends_with("copies ok\n"), "{name}: {out:#?}");
        assert_eq!(out.code(), 0, "{name}: {out:#?}");
        let wrote = stats.exists();
        let logged = !out.library_lines().is_empty();
        assert_eq!((wrote, logged), (!secure, !secure), "{name}: stats written, log lines: {out:#?}");
        // A rejected policy under strict mode exits 2, unless secure.
        let strict = [
            ("IPC_OFFLOAD_POLICY", dir.join("bad.toml").display().to_string()),
            ("IPC_OFFLOAD_STRICT", "1".to_owned()),
        ];
        let out = probe(&dir, &program, &strict);
        assert_eq!(out.code(), if secure { 0 } else { 2 }, "{name}: {out:#?}");
    }
}
