//! The benchmark suite (`bench-suite`): its parts, the order in which the
//! sides of a comparison run, the policies it writes, its results as JSON
//! and Markdown, its charts and its progress lines. The measuring itself is
//! the binary's (`benches/src/bench_suite/`); what is here is pure and
//! tested.

pub mod progress;
pub mod render;
pub mod report;
pub mod results;

/// The parts of the suite, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    /// memcpy throughput by size: glibc against the async-cpu engine in each mode.
    Memcpy,
    /// What the memcpy hook costs below its threshold.
    Hook,
    /// Cache placement of copies: inject, bypass, auto (cache-bench).
    Cache,
    /// The `[shm]` class's region lookup and index update (shm-lookup-bench).
    Shm,
    /// Pipe and Unix-socket streams by write size: throughput and CPU per GiB.
    Stream,
    /// 64 MiB request/response over a socket and over pipes; 64 B ping-pong.
    Reqresp,
    /// Event loops: select/poll relays, epoll readers, an epoll ping-pong, asyncio.
    Evloop,
    /// Sweeps for many-core machines: memcpy workers, concurrent pairs, IPC workers.
    Scaling,
    /// `dd | dd | dd` over a file.
    Dd,
    /// Python's multiprocessing.Pipe, duplex (socketpair) and simplex (pipe).
    Python,
    /// redis-server and redis-benchmark over a Unix socket and over TCP, 1 MB values.
    Redis,
    /// TCP over loopback: a stream, request/response, ping-pong, iperf3.
    Tcp,
}

impl Part {
    pub const ALL: [Part; 12] = [
        Part::Memcpy,
        Part::Hook,
        Part::Cache,
        Part::Shm,
        Part::Stream,
        Part::Reqresp,
        Part::Evloop,
        Part::Scaling,
        Part::Dd,
        Part::Python,
        Part::Redis,
        Part::Tcp,
    ];

    /// The name on the command line and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Part::Memcpy => "memcpy",
            Part::Hook => "hook",
            Part::Cache => "cache",
            Part::Shm => "shm",
            Part::Stream => "stream",
            Part::Reqresp => "reqresp",
            Part::Evloop => "evloop",
            Part::Scaling => "scaling",
            Part::Dd => "dd",
            Part::Python => "python",
            Part::Redis => "redis",
            Part::Tcp => "tcp",
        }
    }

    pub fn parse(name: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|p| p.name() == name)
    }

    /// One line for `--help` and the report's headings.
    pub fn what(self) -> &'static str {
        match self {
            Part::Memcpy => "memcpy throughput by size, glibc against the async-cpu engine in each mode",
            Part::Hook => "the memcpy hook's cost below its threshold (same process, and through the PLT)",
            Part::Cache => "cache placement of copies (inject, bypass, auto), for IPC chunks and a private copy",
            Part::Shm => "the [shm] class's region lookup and index update, by the number of shared ranges",
            Part::Stream => "pipe and Unix-socket streams by write size: throughput, and CPU seconds per GiB",
            Part::Reqresp => "64 MiB request/response over a socket and over pipes; 64 B ping-pong",
            Part::Evloop => {
                "event loops on nonblocking Unix sockets: select and poll relays, epoll readers, an epoll ping-pong, asyncio"
            }
            Part::Scaling => "memcpy workers, concurrent stream pairs, and IPC copy workers (for many-core machines)",
            Part::Dd => "dd | dd | dd over a file, and dd | dd with 64 KiB reads",
            Part::Python => "python3 multiprocessing.Pipe, duplex (socketpair) and simplex (pipe)",
            Part::Redis => "redis-server and redis-benchmark over a Unix socket and over TCP, 1 MB values",
            Part::Tcp => {
                "TCP over loopback: a stream, 64 MiB request/response (blocking and epoll), 64 B ping-pong, iperf3"
            }
        }
    }

    /// Parts named in a comma-separated list (`memcpy,stream`), in the
    /// suite's order, each once.
    pub fn parse_list(list: &str) -> Result<Vec<Part>, String> {
        let mut named = vec![];
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            named.push(Part::parse(name).ok_or_else(|| {
                let all: Vec<&str> = Part::ALL.iter().map(|p| p.name()).collect();
                format!("unknown part {name:?} (parts: {})", all.join(", "))
            })?);
        }
        if named.is_empty() {
            return Err("an empty list of parts".into());
        }
        Ok(Part::ALL.into_iter().filter(|p| named.contains(p)).collect())
    }
}

/// The modes of `[defaults] mode`, in the suite's order.
pub const MODES: [&str; 3] = ["latency", "throughput", "efficiency"];

/// Modes named in a comma-separated list, in the given order, each once.
pub fn parse_modes(list: &str) -> Result<Vec<String>, String> {
    let mut modes: Vec<String> = vec![];
    for m in list.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        if !MODES.contains(&m) {
            return Err(format!("unknown mode {m:?} (modes: {})", MODES.join(", ")));
        }
        if !modes.iter().any(|x| x == m) {
            modes.push(m.to_owned());
        }
    }
    if modes.is_empty() {
        return Err("an empty list of modes".into());
    }
    Ok(modes)
}

/// A comma-separated list of positive counts (`1,2,4`), ascending, each once.
pub fn parse_counts(list: &str) -> Result<Vec<usize>, String> {
    let mut counts = vec![];
    for n in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match n.parse::<usize>() {
            Ok(c) if (1..=256).contains(&c) => counts.push(c),
            _ => return Err(format!("bad count {n:?} (1 to 256)")),
        }
    }
    if counts.is_empty() {
        return Err("an empty list of counts".into());
    }
    counts.sort_unstable();
    counts.dedup();
    Ok(counts)
}

/// Powers of two from 1 up to `most`, and `most` itself.
pub fn sweep(most: usize) -> Vec<usize> {
    let most = most.max(1);
    let mut v: Vec<usize> =
        std::iter::successors(Some(1usize), |n| n.checked_mul(2)).take_while(|&n| n < most).collect();
    v.push(most);
    v
}

/// The default memcpy and IPC copy-worker sweep on a machine with `cpus`
/// CPUs: up to one fewer than the CPUs (the caller copies too), at most 16
/// (the most `workers = "auto"` gives).
pub fn default_workers(cpus: usize) -> Vec<usize> {
    sweep(cpus.saturating_sub(1).clamp(1, 16))
}

/// The default sweep of concurrent writer/reader pairs: up to one pair per
/// CPU (two processes per CPU at the end, to show oversubscription).
pub fn default_pairs(cpus: usize) -> Vec<usize> {
    sweep(cpus.max(1))
}

/// The order of the sides of a comparison in round `round` (from 0), for
/// `n` sides of which 0 is the baseline: 0, 1, ..., n-1 in even rounds and
/// the reverse in odd ones, so that the baseline runs right before the
/// first library side and right after the last, and no side always runs
/// first. Each side's speedup is taken against the baseline of its round.
pub fn round_order(round: usize, n: usize) -> Vec<usize> {
    if round % 2 == 0 { (0..n).collect() } else { (0..n).rev().collect() }
}

/// The policy file of a mode: `[defaults] mode` and nothing else (every other
/// key keeps its built-in value).
pub fn mode_policy(mode: &str) -> String {
    format!("[defaults]\nmode = \"{mode}\"\n")
}

/// memcpy through the async-cpu engine for every copy of 4 KiB or more,
/// in `mode`, with `workers` copy threads (None: `auto`).
pub fn memcpy_policy(mode: &str, workers: Option<usize>) -> String {
    let workers = workers.map_or("\"auto\"".to_owned(), |n| n.to_string());
    format!(
        "[defaults]\nmode = \"{mode}\"\n\n[memcpy]\nengine = \"async-cpu\"\nmin_bytes = \"4KiB\"\nworkers = {workers}\n"
    )
}

/// Both IPC classes copying through the async-cpu engine with `workers` threads.
pub fn ipc_workers_policy(workers: usize) -> String {
    format!(
        "[unix]\nengine = \"async-cpu\"\nworkers = {workers}\n\n[pipe]\nengine = \"async-cpu\"\nworkers = {workers}\n"
    )
}

/// `m:ss`.
pub fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_by_name_in_the_suites_order() {
        assert_eq!(Part::parse_list("redis,memcpy"), Ok(vec![Part::Memcpy, Part::Redis]));
        assert_eq!(Part::parse_list(" stream , stream "), Ok(vec![Part::Stream]));
        assert_eq!(Part::parse_list("scaling,evloop,reqresp"), Ok(vec![Part::Reqresp, Part::Evloop, Part::Scaling]));
        assert!(Part::parse_list("memcpy,gpu").unwrap_err().contains("parts: memcpy, hook, cache, shm, stream"));
        assert!(Part::parse_list(",").is_err());
        for p in Part::ALL {
            assert_eq!(Part::parse(p.name()), Some(p));
        }
    }

    #[test]
    fn modes_and_counts() {
        assert_eq!(parse_modes("efficiency,latency,latency"), Ok(vec!["efficiency".into(), "latency".into()]));
        assert!(parse_modes("fast").is_err());
        assert_eq!(parse_counts("4,1,2,2"), Ok(vec![1, 2, 4]));
        assert!(parse_counts("0").is_err());
        assert!(parse_counts("x").is_err());
    }

    #[test]
    fn sweeps_fit_the_machine() {
        assert_eq!(default_workers(2), vec![1]);
        assert_eq!(default_workers(1), vec![1]);
        assert_eq!(default_workers(8), vec![1, 2, 4, 7]);
        assert_eq!(default_workers(64), vec![1, 2, 4, 8, 16]);
        assert_eq!(default_pairs(2), vec![1, 2]);
        assert_eq!(default_pairs(12), vec![1, 2, 4, 8, 12]);
    }

    #[test]
    fn rounds_alternate() {
        assert_eq!(round_order(0, 4), vec![0, 1, 2, 3]);
        assert_eq!(round_order(1, 4), vec![3, 2, 1, 0]);
        assert_eq!(round_order(2, 2), vec![0, 1]);
        assert_eq!(round_order(3, 2), vec![1, 0]);
    }

    #[test]
    fn policies_name_what_they_set() {
        assert_eq!(mode_policy("latency"), "[defaults]\nmode = \"latency\"\n");
        let p = memcpy_policy("efficiency", Some(3));
        assert!(
            p.contains("mode = \"efficiency\"") && p.contains("engine = \"async-cpu\"") && p.contains("workers = 3")
        );
        assert!(memcpy_policy("throughput", None).contains("workers = \"auto\""));
        let p = ipc_workers_policy(2);
        assert!(p.contains("[unix]\nengine = \"async-cpu\"\nworkers = 2") && p.contains("[pipe]"));
    }

    #[test]
    fn policies_are_accepted_by_the_library() {
        let mut texts: Vec<String> = MODES.iter().map(|m| mode_policy(m)).collect();
        texts.extend(MODES.iter().map(|m| memcpy_policy(m, None)));
        texts.extend([memcpy_policy("throughput", Some(16)), ipc_workers_policy(1), ipc_workers_policy(16)]);
        for text in texts {
            if let Err(e) = ipc_offload_policy::parse(&text, "suite.toml") {
                panic!("{text}\nrejected: {e:?}");
            }
        }
    }

    #[test]
    fn clocks() {
        assert_eq!(clock(0.4), "0:00");
        assert_eq!(clock(75.0), "1:15");
        assert_eq!(clock(-3.0), "0:00");
    }
}
