//! `check`: validate policy files with the library's own parser.

use std::path::Path;
use std::process::ExitCode;

use ipc_offload_policy::{Class, Policy, format_size};

const USAGE: &str = "\
usage: ipc-offload check [--process NAME] FILE...

Validates policy files with the parser the library uses. Prints one line
per valid file and exits 0; otherwise prints FILE:LINE:COL: message for
every problem and exits 2. With --process NAME, also prints the rules a
process named NAME (basename of argv[0] or of its executable) would get.
";

pub fn main(args: &[String]) -> ExitCode {
    let mut process = None;
    let mut files = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--process" => match it.next() {
                Some(name) => process = Some(name.clone()),
                None => return usage_error("--process needs a name"),
            },
            "--" => files.extend(it.by_ref().cloned()),
            flag if flag.starts_with('-') && flag.len() > 1 => return usage_error(&format!("unknown option {flag}")),
            file => files.push(file.to_owned()),
        }
    }
    if files.is_empty() {
        return usage_error("no policy file given");
    }
    let mut failed = false;
    for file in &files {
        match Policy::load(Path::new(file)) {
            Ok(policy) => {
                println!("{file}: ok ({} process override(s))", policy.overrides.len());
                if let Some(name) = &process {
                    explain(&policy, name);
                }
            }
            Err(rejected) => {
                failed = true;
                for d in &rejected.diagnostics {
                    eprintln!("{d}");
                }
            }
        }
    }
    if failed { ExitCode::from(2) } else { ExitCode::SUCCESS }
}

fn explain(policy: &Policy, name: &str) {
    let r = policy.resolve(&[name]);
    let matched = if r.matched.is_empty() { "none".to_owned() } else { r.matched.join(", ") };
    println!("  process {name:?}: mode {}, overrides matched: {matched}", r.mode);
    for class in Class::ALL {
        let rule = r.rule(*class);
        println!(
            "  [{class}] engine {}, min_bytes {}, workers {}, wait {}",
            rule.engine,
            format_size(rule.min_bytes),
            rule.workers,
            rule.wait
        );
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("ipc-offload check: {message}\n{USAGE}");
    ExitCode::from(2)
}
