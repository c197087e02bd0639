//! What a comparison runs with ([`Setup`]: the options, the library, the
//! policy B uses), and how its command is shown.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

use super::args::Options;

/// The policy B runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyUsed {
    BuiltIn,
    /// `--policy`, made absolute.
    Option(PathBuf),
    /// `IPC_OFFLOAD_POLICY` from ab's environment, left to B as it is.
    Environment(PathBuf),
}

impl PolicyUsed {
    pub fn path(&self) -> Option<&Path> {
        match self {
            PolicyUsed::BuiltIn => None,
            PolicyUsed::Option(p) | PolicyUsed::Environment(p) => Some(p),
        }
    }

    /// `"option"`, `"environment"` or `"built-in"`.
    pub fn from(&self) -> &'static str {
        match self {
            PolicyUsed::BuiltIn => "built-in",
            PolicyUsed::Option(_) => "option",
            PolicyUsed::Environment(_) => "environment",
        }
    }
}

impl fmt::Display for PolicyUsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyUsed::BuiltIn => f.write_str("built-in"),
            PolicyUsed::Option(p) => write!(f, "{}", p.display()),
            PolicyUsed::Environment(p) => write!(f, "{} from IPC_OFFLOAD_POLICY", p.display()),
        }
    }
}

/// What a comparison runs with.
#[derive(Debug)]
pub struct Setup {
    pub options: Options,
    /// Absolute.
    pub library: PathBuf,
    pub policy: PolicyUsed,
}

impl Setup {
    /// The command as a shell would take it.
    pub fn command_line(&self) -> String {
        self.options.command.iter().map(|a| shell_word(a)).collect::<Vec<_>>().join(" ")
    }
}

/// `word`, quoted for a POSIX shell when it needs to be.
pub fn shell_word(word: &OsStr) -> String {
    let text = word.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.into_owned()
    } else if text.contains('\'') && !text.contains(['"', '\\', '$', '`', '!']) {
        format!("\"{text}\"")
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(shell_word(OsStr::new("sh")), "sh");
        assert_eq!(shell_word(OsStr::new("a | b")), "'a | b'");
        assert_eq!(shell_word(OsStr::new("it's")), "\"it's\"");
        assert_eq!(shell_word(OsStr::new("it's $HOME")), r"'it'\''s $HOME'");
        assert_eq!(shell_word(OsStr::new("")), "''");
    }
}
