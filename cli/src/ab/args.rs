//! The command line of `ab`: options, then `--` and the command.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: ab [-n RUNS] [--warmup N] [--policy F] [--compare-output]
          [--fail-if-slower R] [--json FILE] -- CMD [ARGS...]

Runs CMD without (A) and with (B) libipc_offload.so, interleaved: N warm-up
pairs (not counted), then RUNS pairs, each A then B. Reports wall time,
user+sys CPU and peak RSS (the largest process of the tree, from wait4) as
min/median/max per side, and the B/A ratio of each pair (median, min, max),
as Markdown on stdout. CMD's stdin is /dev/null; its stdout and stderr are
captured, not shown: stdout to compare B's with A's, stderr to show the end
of a failing run's. A runs with the environment as it is (any
libipc_offload.so taken out of LD_PRELOAD), B with the library in front of
LD_PRELOAD. For pipelines: ab -- sh -c 'a | b'.

  -n, --runs RUNS       pairs measured (default 5)
  --warmup N            pairs run first and not measured (default 1)
  --policy F            B's policy file (IPC_OFFLOAD_POLICY); checked first
  --compare-output      exit 1 unless every B run's stdout bytes and exit
                        status equal those of the A run of its pair
  --fail-if-slower R    exit 1 when B's median wall time is more than R
                        times A's, or an exit status differs (not comparable)
  --json FILE           also write every run and the summary as JSON to
                        FILE ('-': JSON on stdout instead of the Markdown)
  --library F           the library (scripts/ab passes it; default:
                        libipc_offload.so beside this tool)

A command that exits non-zero (or is killed) is measured and reported like
any other; the end of its stderr is shown once per side. Exit status: 0;
1 when --compare-output or --fail-if-slower fails (stderr says why); 2 on a
usage error, a rejected policy, a command that cannot be started, or an
I/O error of ab's own.
";

/// The most pairs (or warm-up pairs) one invocation runs.
pub const MAX_RUNS: u32 = 100_000;

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Measured pairs (`-n`).
    pub runs: u32,
    /// Warm-up pairs (`--warmup`).
    pub warmup: u32,
    /// B's policy file, as given.
    pub policy: Option<PathBuf>,
    /// `--compare-output`.
    pub compare_output: bool,
    /// `--fail-if-slower R`.
    pub fail_if_slower: Option<f64>,
    /// `--json FILE`.
    pub json: Option<JsonTo>,
    /// `--library F`.
    pub library: Option<PathBuf>,
    /// CMD and its arguments (at least CMD).
    pub command: Vec<OsString>,
}

/// Where `--json` goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonTo {
    /// `-`: stdout, in place of the Markdown.
    Stdout,
    /// A file.
    File(PathBuf),
}

/// What the command line amounts to.
#[derive(Clone, Debug, PartialEq)]
pub enum Parsed {
    /// `-h`, `--help`.
    Help,
    /// A comparison to run.
    Run(Options),
}

/// Why the command line was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgsError {
    /// An option that takes a value came last.
    MissingValue { option: String, what: &'static str },
    /// A value that is not what the option takes.
    BadValue { option: String, value: String, expected: &'static str },
    /// An option ab does not have.
    UnknownOption(String),
    /// An option that is not valid UTF-8.
    NotUtf8(OsString),
    /// Nothing to run.
    NoCommand,
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::MissingValue { option, what } => write!(f, "{option} needs {what}"),
            ArgsError::BadValue { option, value, expected } => {
                write!(f, "bad value {value:?} for {option} (expected {expected})")
            }
            ArgsError::UnknownOption(option) => write!(f, "unknown option {option}"),
            ArgsError::NotUtf8(arg) => write!(f, "option {arg:?} is not valid UTF-8"),
            ArgsError::NoCommand => write!(f, "no command given (ab [OPTIONS] -- CMD [ARGS...])"),
        }
    }
}

impl std::error::Error for ArgsError {}

/// Parses the arguments after `ab`. Options come first; `--` or the first
/// argument that is not an option starts the command.
pub fn parse(args: &[OsString]) -> Result<Parsed, ArgsError> {
    let mut options = Options {
        runs: 5,
        warmup: 1,
        policy: None,
        compare_output: false,
        fail_if_slower: None,
        json: None,
        library: None,
        command: Vec::new(),
    };
    let mut rest = args.iter();
    while let Some(raw) = rest.next() {
        let arg = raw.to_str().ok_or_else(|| ArgsError::NotUtf8(raw.clone()))?;
        if arg == "--" {
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            options.command.push(raw.clone());
            break;
        }
        // `--opt=value` and `-nVALUE` carry their value inline.
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(OsString::from(value))),
            _ if arg.starts_with("-n") && arg.len() > 2 => ("-n", Some(OsString::from(&arg[2..]))),
            _ => (arg, None),
        };
        let mut value = |what: &'static str| -> Result<OsString, ArgsError> {
            inline
                .clone()
                .or_else(|| rest.next().cloned())
                .ok_or_else(|| ArgsError::MissingValue { option: name.to_owned(), what })
        };
        match name {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-n" | "--runs" => options.runs = count(name, &value("a number of pairs")?, 1)?,
            "--warmup" => options.warmup = count(name, &value("a number of pairs")?, 0)?,
            "--policy" => options.policy = Some(path(name, value("a policy file")?)?),
            "--library" => options.library = Some(path(name, value("a library file")?)?),
            "--json" => {
                let file = value("a file ('-' for stdout)")?;
                options.json = Some(if file == "-" { JsonTo::Stdout } else { JsonTo::File(path(name, file)?) });
            }
            "--fail-if-slower" => options.fail_if_slower = Some(ratio(name, &value("a ratio such as 1.05")?)?),
            "--compare-output" if inline.is_none() => options.compare_output = true,
            _ => return Err(ArgsError::UnknownOption(arg.to_owned())),
        }
    }
    options.command.extend(rest.cloned());
    if options.command.is_empty() || options.command[0].is_empty() {
        return Err(ArgsError::NoCommand);
    }
    Ok(Parsed::Run(options))
}

fn bad(option: &str, value: &OsStr, expected: &'static str) -> ArgsError {
    ArgsError::BadValue { option: option.to_owned(), value: value.to_string_lossy().into_owned(), expected }
}

/// A whole number from `min` to [`MAX_RUNS`].
fn count(option: &str, value: &OsStr, min: u32) -> Result<u32, ArgsError> {
    let expected = if min == 0 { "a whole number from 0 to 100000" } else { "a whole number from 1 to 100000" };
    value
        .to_str()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|n| (min..=MAX_RUNS).contains(n))
        .ok_or_else(|| bad(option, value, expected))
}

/// A finite number above 0.
fn ratio(option: &str, value: &OsStr) -> Result<f64, ArgsError> {
    value
        .to_str()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|r| r.is_finite() && *r > 0.0)
        .ok_or_else(|| bad(option, value, "a number above 0, such as 1.05"))
}

/// A non-empty path.
fn path(option: &str, value: OsString) -> Result<PathBuf, ArgsError> {
    if value.is_empty() { Err(bad(option, &value, "a path")) } else { Ok(PathBuf::from(value)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn run(list: &[&str]) -> Options {
        match parse(&args(list)) {
            Ok(Parsed::Run(options)) => options,
            other => panic!("{list:?}: {other:?}"),
        }
    }

    #[test]
    fn defaults_and_the_command_after_the_separator() {
        let o = run(&["--", "sh", "-c", "echo -n x"]);
        assert_eq!((o.runs, o.warmup, o.compare_output, o.fail_if_slower), (5, 1, false, None));
        assert_eq!(o.command, args(&["sh", "-c", "echo -n x"]));
    }

    #[test]
    fn every_option_in_both_spellings() {
        let o = run(&[
            "-n",
            "3",
            "--warmup=0",
            "--policy",
            "p.toml",
            "--compare-output",
            "--fail-if-slower",
            "1.05",
            "--json",
            "out.json",
            "--library=/l.so",
            "cmd",
            "--not-an-option-of-ab",
        ]);
        assert_eq!((o.runs, o.warmup, o.compare_output, o.fail_if_slower), (3, 0, true, Some(1.05)));
        assert_eq!(o.policy, Some(PathBuf::from("p.toml")));
        assert_eq!(o.json, Some(JsonTo::File("out.json".into())));
        assert_eq!(o.library, Some(PathBuf::from("/l.so")));
        assert_eq!(o.command, args(&["cmd", "--not-an-option-of-ab"]));
        assert_eq!(run(&["-n7", "--runs=2", "--json", "-", "--", "x"]).runs, 2);
        assert_eq!(run(&["--json", "-", "--", "x"]).json, Some(JsonTo::Stdout));
    }

    #[test]
    fn usage_errors() {
        let err = |list: &[&str]| parse(&args(list)).expect_err(&format!("{list:?} was accepted"));
        assert_eq!(err(&[]), ArgsError::NoCommand);
        assert_eq!(err(&["-n", "2"]), ArgsError::NoCommand);
        assert_eq!(err(&["--", ""]), ArgsError::NoCommand);
        assert!(matches!(err(&["-n"]), ArgsError::MissingValue { .. }));
        assert!(matches!(err(&["-n", "0", "x"]), ArgsError::BadValue { .. }));
        assert!(matches!(err(&["-n", "abc", "x"]), ArgsError::BadValue { .. }));
        assert!(matches!(err(&["-n", "100001", "x"]), ArgsError::BadValue { .. }));
        assert!(matches!(err(&["--warmup", "-1", "x"]), ArgsError::BadValue { .. }));
        for r in ["0", "-1", "nan", "inf", "fast"] {
            assert!(matches!(err(&["--fail-if-slower", r, "x"]), ArgsError::BadValue { .. }), "{r}");
        }
        assert!(matches!(err(&["--policy", "", "x"]), ArgsError::BadValue { .. }));
        assert_eq!(err(&["--bogus", "x"]), ArgsError::UnknownOption("--bogus".into()));
        assert_eq!(err(&["--compare-output=yes", "x"]), ArgsError::UnknownOption("--compare-output=yes".into()));
        assert!(err(&["-n"]).to_string().contains("-n needs a number"));
    }

    #[test]
    fn help_wins() {
        assert_eq!(parse(&args(&["-n", "3", "--help", "--", "x"])), Ok(Parsed::Help));
    }
}
