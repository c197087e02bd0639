//! `ipc-offload-tool`: the compiled half of `scripts/ipc-offload`.
//!
//! - `check [--process NAME] FILE...`: validate policy files exactly as the
//!   library does (same parser, same messages); exit 0 or print
//!   `FILE:LINE:COL: message` lines and exit 2.
//! - `stats FILE...`: print stats files (and the `FILE.PID` files of
//!   descendants) as a table, for finished and running processes alike.

mod check;
mod stats;

use std::process::ExitCode;

const USAGE: &str = "\
usage: ipc-offload-tool check [--process NAME] FILE...
       ipc-offload-tool stats [--json] FILE...

check   validate policy files; prints nothing but a summary when they are
        valid (exit 0), else one FILE:LINE:COL: message line per problem
        (exit 2). --process NAME also shows the rules NAME would get.
stats   print stats files written by the library (IPC_OFFLOAD_STATS) as a
        table, one row per process and class, with FILE.PID files of
        descendant processes included. --json prints the objects read as a
        JSON array. Exits 1 if a file cannot be read or is not a stats file.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    match command.as_str() {
        "check" => check::main(rest),
        "stats" => stats::main(rest),
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
