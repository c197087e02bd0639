//! The hidden `calibrate-child` command: what `calibrate` runs in child
//! processes, without and with the library preloaded. Each prints one
//! `SIZE NANOSECONDS` line per size on stdout: the time of one operation.
//!
//! - `memory OP SIZES MS`: OP (memcpy, memset, memcmp) on buffers of the
//!   largest size, each size repeated for at least MS milliseconds after a
//!   warm-up; the calls go to the `memcpy`/`memset`/`memcmp` symbols, so
//!   through the library's hooks when it is preloaded.
//! - `write SIZES BYTES`: writes messages of each size to stdout (a pipe or a
//!   Unix socket), as many as [`schedule`] says.
//! - `read SIZES BYTES`: reads the same messages from stdin, one `read_exact`
//!   per message, times the measured ones, and checks that EOF follows.

use std::fmt;
use std::fs::File;
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ipc_offload_policy::Class;

/// The command's name (not in the usage text: only `calibrate` runs it).
pub const COMMAND: &str = "calibrate-child";

/// Why a child failed.
#[derive(Debug)]
pub enum ChildError {
    /// Bad arguments (a bug in `calibrate`, or a person trying it).
    Usage(String),
    Io {
        what: &'static str,
        error: io::Error,
    },
    /// The reader found more bytes than the schedule after the last message.
    Trailing,
}

impl fmt::Display for ChildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildError::Usage(m) => write!(
                f,
                "{m}\nusage: ipc-offload-tool {COMMAND} memory memcpy|memset|memcmp SIZES MS\n       \
                 ipc-offload-tool {COMMAND} write|read SIZES BYTES"
            ),
            ChildError::Io { what, error } => write!(f, "{what}: {error}"),
            ChildError::Trailing => f.write_str("read: more bytes than were sent after the last message"),
        }
    }
}

pub fn main(args: &[String]) -> ExitCode {
    match run(args) {
        Ok(lines) => {
            print!("{lines}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ipc-offload-tool {COMMAND}: {e}");
            ExitCode::from(if matches!(e, ChildError::Usage(_)) { 2 } else { 1 })
        }
    }
}

fn run(args: &[String]) -> Result<String, ChildError> {
    let number = |text: &str, what: &str| {
        text.parse::<u64>().map_err(|_| ChildError::Usage(format!("{what} {text:?} is not a number")))
    };
    let times = match args {
        [role, op, sizes, ms] if role == "memory" => {
            let op = Class::from_name(op)
                .filter(|c| matches!(c, Class::Memcpy | Class::Memset | Class::Memcmp))
                .ok_or_else(|| ChildError::Usage(format!("unknown operation {op:?}")))?;
            memory(op, &parse_sizes(sizes)?, Duration::from_millis(number(ms, "MS")?))
        }
        [role, sizes, bytes] if role == "write" => {
            write(&schedule(&parse_sizes(sizes)?, number(bytes, "BYTES")?))?;
            Vec::new()
        }
        [role, sizes, bytes] if role == "read" => read(&schedule(&parse_sizes(sizes)?, number(bytes, "BYTES")?))?,
        _ => return Err(ChildError::Usage(format!("bad arguments {args:?}"))),
    };
    Ok(times.iter().map(|(size, t)| format!("{size} {}\n", t.as_nanos())).collect())
}

/// "65536,131072" as sizes (each at least 1).
pub fn parse_sizes(text: &str) -> Result<Vec<u64>, ChildError> {
    text.split(',')
        .map(|s| s.parse::<u64>().ok().filter(|n| *n > 0))
        .collect::<Option<Vec<u64>>>()
        .ok_or_else(|| ChildError::Usage(format!("SIZES {text:?}: expected sizes in bytes, comma-separated")))
}

/// Sizes as the command line takes them.
pub fn format_sizes(sizes: &[u64]) -> String {
    sizes.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// One size of an IPC run: `warm` messages, then `count` timed ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub size: u64,
    pub warm: u64,
    pub count: u64,
}

/// The messages of an IPC run: per size, `bytes` timed (at least 4
/// messages) after a quarter of that untimed (at least 2), so that the
/// shared-memory handshake and the size change are behind the timed part.
/// Writer and reader compute it from the same arguments.
pub fn schedule(sizes: &[u64], bytes: u64) -> Vec<Step> {
    sizes.iter().map(|&size| Step { size, warm: (bytes / 4 / size).max(2), count: (bytes / size).max(4) }).collect()
}

/// `n` bytes of memory, every page touched.
fn buffer(n: u64, byte: u8) -> Vec<u8> {
    vec![byte; usize::try_from(n).unwrap_or(usize::MAX)]
}

/// The time of one `op` of each size: repeated for at least `batch` (and 3
/// times) after a warm-up of a fifth of that.
fn memory(op: Class, sizes: &[u64], batch: Duration) -> Vec<(u64, Duration)> {
    let largest = sizes.iter().copied().max().unwrap_or(0);
    let src = buffer(largest, 0x5a);
    let mut dst = buffer(largest, 0x5a);
    let mut once = |n: usize| {
        let dst = black_box(&mut dst[..n]);
        let src = black_box(&src[..n]);
        if op == Class::Memset {
            dst.fill(black_box(0x5a));
        } else if op == Class::Memcmp {
            black_box(*dst == *src);
        } else {
            dst.copy_from_slice(src);
        }
    };
    let mut times = Vec::new();
    for &size in sizes {
        let n = size as usize;
        let repeat = |once: &mut dyn FnMut(usize), at_least: Duration| {
            let start = Instant::now();
            let mut count = 0u32;
            while count < 3 || start.elapsed() < at_least {
                once(n);
                count += 1;
            }
            start.elapsed() / count
        };
        repeat(&mut once, batch / 5);
        times.push((size, repeat(&mut once, batch)));
    }
    times
}

fn io_error(what: &'static str) -> impl FnOnce(io::Error) -> ChildError {
    move |error| ChildError::Io { what, error }
}

/// Writes the schedule's messages to stdout, one write_all each (write(2)
/// of the whole message first, through the library's hook when preloaded).
fn write(plan: &[Step]) -> Result<(), ChildError> {
    let fd = io::stdout().as_fd().try_clone_to_owned().map_err(io_error("dup stdout"))?;
    let mut out = File::from(fd);
    let largest = plan.iter().map(|s| s.size).max().unwrap_or(0);
    let message = buffer(largest, 0xa5);
    for step in plan {
        for _ in 0..step.warm + step.count {
            out.write_all(&message[..step.size as usize]).map_err(io_error("write"))?;
        }
    }
    Ok(())
}

/// Reads the schedule's messages from stdin; the time of one message of each
/// size, from the end of the warm-up to the end of the last message.
fn read(plan: &[Step]) -> Result<Vec<(u64, Duration)>, ChildError> {
    let fd = io::stdin().as_fd().try_clone_to_owned().map_err(io_error("dup stdin"))?;
    let mut input = File::from(fd);
    let largest = plan.iter().map(|s| s.size).max().unwrap_or(0);
    let mut message = buffer(largest, 0);
    let mut times = Vec::new();
    for step in plan {
        let buf = &mut message[..step.size as usize];
        for _ in 0..step.warm {
            input.read_exact(buf).map_err(io_error("read"))?;
        }
        let start = Instant::now();
        for _ in 0..step.count {
            input.read_exact(buf).map_err(io_error("read"))?;
        }
        times.push((step.size, start.elapsed() / u32::try_from(step.count).unwrap_or(u32::MAX)));
    }
    let mut extra = [0u8; 1];
    match input.read(&mut extra).map_err(io_error("read at the end"))? {
        0 => Ok(times),
        _ => Err(ChildError::Trailing),
    }
}
