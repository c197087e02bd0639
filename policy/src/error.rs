//! What can be wrong with a policy file, and how it is reported:
//! `FILE:LINE:COL: message`, or `FILE: message` where there is no position.

use core::fmt;

/// A problem found in a policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file could not be read (missing, permissions, not UTF-8...).
    Unreadable { reason: String },
    /// The text is not valid TOML.
    Syntax { message: String },
    /// A key that no section of this version knows.
    UnknownKey { key: String, section: String, expected: &'static [&'static str] },
    /// A value of the wrong TOML type.
    WrongType { key: String, section: String, expected: &'static str, found: &'static str },
    /// A value of the right type that is not allowed.
    BadValue { key: String, section: String, value: String, expected: String },
    /// A `[process."GLOB"]` pattern that is not a valid glob.
    BadPattern { pattern: String, reason: String },
}

/// One reported problem, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as the user named it.
    pub file: String,
    /// 1-based line and column (in characters), where the file has them.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl Diagnostic {
    /// A diagnostic at byte `offset` of `text`.
    pub fn at(file: &str, text: &str, offset: usize, kind: ErrorKind) -> Self {
        Diagnostic { file: file.to_owned(), position: Some(line_col(text, offset)), kind }
    }
}

/// 1-based line and character column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// `in [memcpy]` or `at the top level`.
fn place(section: &str) -> String {
    if section.is_empty() { "at the top level".to_owned() } else { format!("in [{section}]") }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Unreadable { reason } => write!(f, "cannot read policy file: {reason}"),
            ErrorKind::Syntax { message } => write!(f, "TOML syntax error: {message}"),
            ErrorKind::UnknownKey { key, section, expected } => {
                write!(f, "unknown key `{key}` {} (expected one of: {})", place(section), expected.join(", "))
            }
            ErrorKind::WrongType { key, section, expected, found } => {
                write!(f, "`{key}` {} must be {expected}, found {found}", place(section))
            }
            ErrorKind::BadValue { key, section, value, expected } => {
                write!(f, "bad value {value} for `{key}` {} (expected {expected})", place(section))
            }
            ErrorKind::BadPattern { pattern, reason } => {
                write!(f, "bad process pattern \"{pattern}\": {reason}")
            }
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.file, self.kind),
            None => write!(f, "{}: {}", self.file, self.kind),
        }
    }
}

/// Why a policy was not loaded: every problem found, and whether the file
/// asked for strict handling (`strict = true`, readable even when other keys
/// are wrong).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// At least one diagnostic, in file order.
    pub diagnostics: Vec<Diagnostic>,
    /// The file's own `strict = true`, when it could be read.
    pub strict: bool,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejected {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 4), (1, 5));
        assert_eq!(line_col(text, 6), (2, 1));
        // 'é' is two bytes but one column: the space after it is column 3.
        assert_eq!(line_col(text, 9), (2, 3));
        assert_eq!(line_col(text, 1000), (3, 1));
    }

    #[test]
    fn display_with_and_without_position() {
        let d = Diagnostic {
            file: "p.toml".into(),
            position: Some((3, 10)),
            kind: ErrorKind::BadValue {
                key: "engine".into(),
                section: "memcpy".into(),
                value: "\"fast\"".into(),
                expected: "one of: auto, cpu".into(),
            },
        };
        assert_eq!(
            d.to_string(),
            "p.toml:3:10: bad value \"fast\" for `engine` in [memcpy] (expected one of: auto, cpu)"
        );
        let d =
            Diagnostic { file: "/x".into(), position: None, kind: ErrorKind::Unreadable { reason: "denied".into() } };
        assert_eq!(d.to_string(), "/x: cannot read policy file: denied");
    }
}
