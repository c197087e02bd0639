//! Where a run's stdout and stderr go: an unlinked file in the temporary
//! directory (a file, not a pipe: nothing of ab's runs while the command
//! writes, and a background process that keeps it open holds nothing up).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a capture file could not be made or read.
#[derive(Debug)]
pub enum CaptureError {
    /// Creating (or unlinking) the file in the temporary directory.
    Create { path: PathBuf, error: io::Error },
    /// Handing it to the child, or reading it back.
    Io(io::Error),
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::Create { path, error } => write!(f, "cannot create {}: {error}", path.display()),
            CaptureError::Io(error) => write!(f, "reading a captured output: {error}"),
        }
    }
}

impl std::error::Error for CaptureError {}

impl From<io::Error> for CaptureError {
    fn from(error: io::Error) -> Self {
        CaptureError::Io(error)
    }
}

/// One captured stream.
#[derive(Debug)]
pub struct Capture {
    file: File,
}

impl Capture {
    /// A new empty file under `$TMPDIR` (or /tmp), already unlinked.
    pub fn new() -> Result<Capture, CaptureError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ipc-offload-ab.{}.{n}", std::process::id()));
        let create = |path: &PathBuf| {
            let file = OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(path)?;
            std::fs::remove_file(path)?;
            Ok(file)
        };
        match create(&path) {
            Ok(file) => Ok(Capture { file }),
            Err(error) => {
                let _ = std::fs::remove_file(&path);
                Err(CaptureError::Create { path, error })
            }
        }
    }

    /// The file as a child's stdout or stderr.
    pub fn stdio(&self) -> Result<Stdio, CaptureError> {
        Ok(Stdio::from(self.file.try_clone()?))
    }

    /// Bytes written.
    pub fn len(&self) -> Result<u64, CaptureError> {
        Ok(self.file.metadata()?.len())
    }

    /// Whether both hold the same bytes.
    pub fn same_as(&self, other: &Capture) -> Result<bool, CaptureError> {
        let len = self.len()?;
        if len != other.len()? {
            return Ok(false);
        }
        const CHUNK: usize = 1 << 20;
        let (mut mine, mut theirs) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
        let mut at = 0u64;
        while at < len {
            let n = usize::try_from(len - at).unwrap_or(CHUNK).min(CHUNK);
            self.file.read_exact_at(&mut mine[..n], at)?;
            other.file.read_exact_at(&mut theirs[..n], at)?;
            if mine[..n] != theirs[..n] {
                return Ok(false);
            }
            at += n as u64;
        }
        Ok(true)
    }

    /// At most `max` bytes from `offset`, as text.
    fn text_at(&self, offset: u64, max: u64) -> Result<String, CaptureError> {
        let n = usize::try_from(self.len()?.saturating_sub(offset).min(max)).unwrap_or(0);
        let mut bytes = vec![0u8; n];
        self.file.read_exact_at(&mut bytes, offset)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The last `lines` lines (from the last 8 KiB).
    pub fn tail(&self, lines: usize) -> Result<Vec<String>, CaptureError> {
        const WINDOW: u64 = 8 << 10;
        let len = self.len()?;
        let text = self.text_at(len.saturating_sub(WINDOW), WINDOW)?;
        let all: Vec<&str> = text.lines().collect();
        Ok(all[all.len().saturating_sub(lines)..].iter().map(|l| (*l).to_owned()).collect())
    }

    /// The lines of the first 64 KiB that start with `prefix`.
    pub fn lines_starting(&self, prefix: &str) -> Result<Vec<String>, CaptureError> {
        let text = self.text_at(0, 64 << 10)?;
        Ok(text.lines().filter(|l| l.starts_with(prefix)).map(str::to_owned).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn holding(bytes: &[u8]) -> Capture {
        let c = Capture::new().unwrap();
        (&c.file).write_all(bytes).unwrap();
        c
    }

    #[test]
    fn compares_bytes_and_reads_tails() {
        let big: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
        let mut other = big.clone();
        assert!(holding(&big).same_as(&holding(&other)).unwrap());
        *other.last_mut().unwrap() ^= 1;
        assert!(!holding(&big).same_as(&holding(&other)).unwrap());
        assert!(!holding(b"abc").same_as(&holding(b"abcd")).unwrap());
        assert!(holding(b"").same_as(&holding(b"")).unwrap());
        let c = holding(b"one\nipc-offload[1]: warn\nthree\nfour\n");
        assert_eq!(c.len().unwrap(), 36);
        assert_eq!(c.tail(2).unwrap(), ["three", "four"]);
        assert_eq!(c.tail(9).unwrap().len(), 4);
        assert_eq!(c.lines_starting("ipc-offload[").unwrap(), ["ipc-offload[1]: warn"]);
    }
}
