//! The library's stderr log: `ipc-offload[PID]: LEVEL: message`, never on
//! stdout, formatted on the stack and written with one write(2) so that lines
//! from several processes do not interleave. Level from `IPC_OFFLOAD_LOG`.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};

use ipc_offload_sys as sys;

use crate::fmtbuf::StackBuf;

/// How much the library says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Only what stops the library from doing its job.
    Error = 0,
    /// Also what the user asked for but does not get (the default).
    #[default]
    Warn = 1,
    /// Also the plan at start-up.
    Info = 2,
    /// Also details of decisions.
    Debug = 3,
}

impl Level {
    /// The accepted spellings of `IPC_OFFLOAD_LOG`.
    pub const NAMES: &'static str = "error, warn, info, debug";

    /// Parses a spelling of `IPC_OFFLOAD_LOG`.
    pub fn from_name(text: &str) -> Option<Level> {
        match text {
            "error" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Warn as u8);

/// Sets the level.
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Relaxed);
}

/// True if messages of `level` are written.
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Relaxed)
}

/// Writes one log line if `level` is enabled.
pub fn log(level: Level, args: fmt::Arguments<'_>) {
    if enabled(level) {
        let mut line = StackBuf::<2048>::new();
        let _ = write!(line, "ipc-offload[{}]: {}: {}", sys::getpid(), level.label(), args);
        raw_line(line.as_bytes());
    }
}

/// True the first time it is called with `flag`: for what is said once.
pub fn first_time(flag: &AtomicBool) -> bool {
    !flag.swap(true, Relaxed)
}

/// Writes `text` and a newline to stderr as one write, whatever the level.
pub fn raw_line(text: &[u8]) {
    let mut line = StackBuf::<4096>::new();
    line.push_bytes(text);
    if line.overflowed() || line.as_bytes().len() == 4096 {
        let _ = sys::write_all(2, text);
        let _ = sys::write_all(2, b"\n");
    } else {
        line.push_bytes(b"\n");
        let _ = sys::write_all(2, line.as_bytes());
    }
}

/// `error!`-style helpers.
#[macro_export]
macro_rules! log_at {
    ($level:ident, $($arg:tt)*) => {
        $crate::log::log($crate::log::Level::$level, format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(Level::from_name("warn"), Some(Level::Warn));
        assert_eq!(Level::from_name("debug"), Some(Level::Debug));
        assert_eq!(Level::from_name("loud"), None);
        set_level(Level::Info);
        assert!(enabled(Level::Warn) && enabled(Level::Info) && !enabled(Level::Debug));
        set_level(Level::Warn);
    }
}
