//! `ipc-offload-tool`: the compiled half of `scripts/ipc-offload`.
//!
//! - `check [--process NAME] FILE...`: validate policy files exactly as the
//!   library does (same parser, same messages); exit 0 or print
//!   `FILE:LINE:COL: message` lines and exit 2.
//! - `stats FILE...`: print stats files (and the `FILE.PID` files of
//!   descendants) as a table, for finished and running processes alike.
//! - `probe [--policy FILE] [--process NAME] [--sysfs DIR]`: the CPU
//!   features, DSA devices and work queues the `dsa` engine would find here,
//!   and the engine each class of the policy would use.
//! - `ab [OPTIONS] -- CMD ARGS...`: CMD without and with the library,
//!   interleaved; times, CPU, peak RSS, stdout and exit status compared.
//! - `calibrate [--out FILE] [--quick] [--dsa-model]`: measure where each
//!   engine beats libc or the kernel here and write the policy that follows
//!   (its runs are this program's hidden `calibrate-child` command).

mod ab;
mod calibrate;
mod check;
mod probe;
mod stats;

use std::ffi::OsString;
use std::process::ExitCode;

const USAGE: &str = "\
usage: ipc-offload-tool check [--process NAME] FILE...
       ipc-offload-tool stats [--json] FILE...
       ipc-offload-tool probe [--policy FILE] [--process NAME] [--sysfs DIR]
       ipc-offload-tool ab [-n RUNS] [--warmup N] [--policy F] [--compare-output]
                           [--fail-if-slower R] [--json FILE] -- CMD [ARGS...]
       ipc-offload-tool calibrate [--out FILE] [--quick] [--dsa-model]

check   validate policy files; prints nothing but a summary when they are
        valid (exit 0), else one FILE:LINE:COL: message line per problem
        (exit 2). --process NAME also shows the rules NAME would get.
stats   print stats files written by the library (IPC_OFFLOAD_STATS) as a
        table, one row per process and class, with FILE.PID files of
        descendant processes included. --json prints the objects read as a
        JSON array. Exits 1 if a file cannot be read or is not a stats file.
probe   print the CPU features (movdir64b, enqcmd, waitpkg), DSA devices
        and work queues the dsa engine would find here, and the engine each
        class of the policy would use in a process started here; opens no
        device. Exits 0, also without DSA.
ab      run CMD without (A) and with (B) the library, interleaved; wall
        time, user+sys CPU, peak RSS, B/A ratios; stdout and exit status
        compared. 'ab --help' says more.
calibrate
        measure where each engine available here beats libc (memcpy) or
        the kernel (Unix sockets, pipes) and write the policy with
        those thresholds; prints the table. About a minute (--quick: 15 s).
";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    if command == "ab" {
        // CMD's arguments need not be UTF-8.
        return ab::main(rest);
    }
    let Some(rest) = rest.iter().map(|a| a.to_str().map(str::to_owned)).collect::<Option<Vec<String>>>() else {
        eprintln!("ipc-offload-tool: an argument is not valid UTF-8");
        return ExitCode::from(2);
    };
    let rest = &rest[..];
    match command.to_string_lossy().as_ref() {
        "check" => check::main(rest),
        "stats" => stats::main(rest),
        "probe" => probe::main(rest),
        "calibrate" => calibrate::main(rest),
        calibrate::CHILD_COMMAND => calibrate::child_main(rest),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("ipc-offload-tool: unknown command {other:?}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
