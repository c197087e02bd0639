//! A randomized soak: for a given time, runs randomly chosen programs under
//! the library with random sizes, modes, engines (cpu, async-cpu, dsa on the
//! device model), cache placement and ring geometry, some of them killing
//! one side of their transfers at random points, and checks every byte of
//! every run (the C programs check each byte against its pattern; dd's
//! output file and python's messages are compared whole).
//!
//! `IPC_OFFLOAD_SOAK` sets the time (`90s`, `2m`, `30m`, `1h`; default
//! 10 s, for `cargo test`), `IPC_OFFLOAD_SEED` the seed (printed: the same
//! seed replays the same choices). `scripts/soak --duration 2m` runs it
//! with its progress shown.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use ipc_offload_tests::reliability::seed;
use ipc_offload_tests::{Outcome, Preload, c_program, python, scratch};

const MIB: u64 = 1 << 20;

/// xorshift64*: the soak's only source of choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// "90s", "2m", "1h", or plain seconds.
fn parse_duration(text: &str) -> Duration {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number.parse().unwrap_or_else(|_| panic!("IPC_OFFLOAD_SOAK={text}: expected e.g. 90s, 2m, 1h"));
    match unit {
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(60 * n),
        "h" => Duration::from_secs(3600 * n),
        _ => panic!("IPC_OFFLOAD_SOAK={text}: the unit is s, m or h"),
    }
}

/// A random policy: mode, engines, cache placement, ring geometry, the DSA
/// model (with injected faults now and then).
fn random_policy(rng: &mut Rng) -> String {
    let mut p = format!("[defaults]\nmode = \"{}\"\n", rng.pick(&["latency", "throughput", "efficiency"]));
    let engines = ["auto", "cpu", "async-cpu", "dsa"];
    let caches = ["auto", "inject", "bypass"];
    p += &format!(
        "[memcpy]\nengine = \"{}\"\ncache = \"{}\"\nmin_bytes = \"1MiB\"\n",
        rng.pick(&engines),
        rng.pick(&caches)
    );
    for class in ["unix", "pipe"] {
        p += &format!(
            "[{class}]\nengine = \"{}\"\ncache = \"{}\"\nmin_bytes = \"{}\"\n",
            rng.pick(&engines),
            rng.pick(&caches),
            rng.pick(&["64KiB", "256KiB", "1MiB"])
        );
        if rng.below(2) == 0 {
            p += &format!(
                "chunk_bytes = \"{}\"\ndepth = {}\n",
                rng.pick(&["64KiB", "256KiB", "1MiB"]),
                rng.pick(&["2", "4", "8", "16"])
            );
        }
    }
    p += &format!("[dsa]\ndevice = \"model\"\nmodel_fault_every = {}\n", rng.pick(&["0", "0", "7", "101"]));
    p
}

/// A size from `lo` to `hi` bytes, rounded down to a multiple of `align`.
fn size(rng: &mut Rng, lo: u64, hi: u64, align: u64) -> u64 {
    ((lo + rng.below(hi - lo + 1)) / align * align).max(align)
}

fn io_size(rng: &mut Rng) -> String {
    rng.pick(&["4096", "65536", "262144", "1048576", "4194304", "16777216"]).to_owned()
}

/// What an iteration ran, and whether every byte was right.
type Checked = Result<(), String>;

fn expect(out: &Outcome, ok: bool, what: &str) -> Checked {
    if out.status.success() && ok { Ok(()) } else { Err(format!("{what}: {out:#?}")) }
}

const PIPE_MODES: [&str; 14] = [
    "blocking",
    "readv",
    "eintr",
    "fread",
    "nonblock-poll",
    "epoll-lt",
    "epoll-et",
    "select",
    "nbwrite",
    "fwrite-mix",
    "fifo",
    "splice",
    "fionread",
    "two-two",
];
const UNIX_MODES: [&str; 14] = [
    "blocking",
    "nonblock-poll",
    "epoll-lt",
    "epoll-et",
    "select",
    "waitall",
    "peek",
    "readv",
    "recvmsg",
    "eintr",
    "rcvtimeo",
    "shutdown",
    "nbwrite",
    "fionread",
];

fn matrix(rng: &mut Rng, preload: &Preload, unix: bool) -> (String, Checked) {
    let (name, modes) = if unix { ("unix_matrix", UNIX_MODES) } else { ("pipe_matrix", PIPE_MODES) };
    let mode = modes[rng.below(modes.len() as u64) as usize];
    let args = [mode.to_owned(), size(rng, 1, 64 * MIB, 8).to_string(), io_size(rng), io_size(rng)];
    let out = preload.run(c_program(name, &["-O2", "-fno-builtin"]), &args.each_ref().map(String::as_str));
    let ok = out.stdout.lines().last().is_some_and(|l| l.ends_with(" ok"));
    (format!("{name} {}", args.join(" ")), expect(&out, ok, name))
}

fn death(rng: &mut Rng, preload: &Preload) -> (String, Checked) {
    let family = rng.pick(&["pipe", "unix"]);
    let victim = rng.pick(&["writer", "reader"]);
    let args = [family.to_owned(), victim.to_owned(), (2 + rng.below(9)).to_string(), rng.next().to_string()];
    let out = preload.run(c_program("death", &["-O2", "-pthread"]), &args.each_ref().map(String::as_str));
    // The kernel path's outcomes (tests/death.rs compares them with runs
    // without the library): a killed writer gives EOF, a killed reader EPIPE.
    let expected = if victim == "writer" { "EOF=" } else { "EPIPE=" };
    let outcomes_ok = out.stdout.lines().any(|l| {
        l.strip_prefix("outcomes: ")
            .is_some_and(|o| o.split(' ').all(|kv| kv.starts_with(expected) || kv.ends_with("=0")))
    });
    let ok = outcomes_ok && out.stdout.contains("failed transfers: 0\n") && out.stdout.contains(": no leak\n");
    (format!("death {}", args.join(" ")), expect(&out, ok, "death"))
}

fn exhaust(rng: &mut Rng, preload: &Preload) -> (String, Checked) {
    let family = rng.pick(&["pipe", "unix"]).to_owned();
    let args = match rng.below(3) {
        0 => vec![family, "plain".into()],
        1 => vec![family, "concurrent".into(), (2 + rng.below(5)).to_string()],
        _ => {
            vec![family, "nofile".into(), rng.below(6).to_string(), rng.pick(&["reader", "writer", "both"]).to_owned()]
        }
    };
    let out =
        preload.run(c_program("exhaust", &["-O2", "-pthread"]), &args.iter().map(String::as_str).collect::<Vec<_>>());
    let ok = out.stdout.ends_with("transfer ok\n") && out.stdout.contains(": no leak\n");
    (format!("exhaust {}", args.join(" ")), expect(&out, ok, "exhaust"))
}

fn memcpy(preload: &Preload) -> (String, Checked) {
    let program = c_program("memcpy_matrix", &["-O2", "-fno-builtin", "-fno-tree-loop-distribute-patterns"]);
    let out = preload.run(program, &["1048576"]);
    (String::from("memcpy_matrix 1048576"), expect(&out, true, "memcpy_matrix"))
}

/// A dd pipeline copying a random file; the output must be the file.
fn dd(rng: &mut Rng, preload: &Preload, dir: &Path) -> (String, Checked) {
    let len = size(rng, 1, 48 * MIB, 1) as usize;
    let mut x = rng.next() | 1;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let (input, output) = (dir.join("dd.in"), dir.join("dd.out"));
    std::fs::write(&input, &data).unwrap();
    let (bs1, bs2) = (io_size(rng), io_size(rng));
    let script = format!(
        "dd if={} bs={bs1} status=none | dd of={} bs={bs2} iflag=fullblock status=none",
        input.display(),
        output.display()
    );
    let out = preload.run("sh", &["-c", &script]);
    let same = std::fs::read(&output).is_ok_and(|got| got == data);
    (format!("dd {len} bytes, bs {bs1} | bs {bs2}"), expect(&out, same, "dd"))
}

/// multiprocessing: a child sends messages of random sizes through a Pipe
/// (os.pipe, or a socketpair when duplex); the parent compares each.
const PYTHON: &str = r#"
import multiprocessing as mp, sys
sizes = [int(s) for s in sys.argv[2].split(",")]
def message(i, n):
    return (bytes(range(i % 256, 256)) + bytes(range(256)) * (n // 256 + 1))[:n]
def child(conn):
    for i, n in enumerate(sizes):
        conn.send_bytes(message(i, n))
    conn.close()
if __name__ == "__main__":
    mp.set_start_method("fork")
    recv, send = mp.Pipe(duplex=sys.argv[1] == "duplex")
    p = mp.Process(target=child, args=(send,))
    p.start()
    send.close()
    for i, n in enumerate(sizes):
        got = recv.recv_bytes()
        assert got == message(i, n), f"message {i} ({n} bytes) differs"
    p.join()
    assert p.exitcode == 0
    print("messages ok")
"#;

fn multiprocessing(rng: &mut Rng, preload: &Preload, python: &Path) -> (String, Checked) {
    let duplex = rng.pick(&["simplex", "duplex"]);
    let sizes: Vec<String> = (0..1 + rng.below(6)).map(|_| size(rng, 1, 32 * MIB, 1).to_string()).collect();
    let sizes = sizes.join(",");
    let out = preload.run(python, &["-c", PYTHON, duplex, &sizes]);
    let ok = out.stdout == "messages ok\n";
    (format!("python multiprocessing {duplex} {sizes}"), expect(&out, ok, "python"))
}

#[derive(Clone, Copy, Debug)]
enum Program {
    PipeMatrix,
    UnixMatrix,
    Death,
    Exhaust,
    Dd,
    Python,
    Memcpy,
}

/// The programs, and how often each is picked: memcpy_matrix takes some
/// 13 s, the others one or two.
const PROGRAMS: [(Program, u64); 7] = [
    (Program::PipeMatrix, 4),
    (Program::UnixMatrix, 4),
    (Program::Death, 3),
    (Program::Exhaust, 2),
    (Program::Dd, 2),
    (Program::Python, 2),
    (Program::Memcpy, 1),
];

fn pick_program(rng: &mut Rng, have_python: bool) -> Program {
    let choices: Vec<_> = PROGRAMS.iter().filter(|(p, _)| have_python || !matches!(p, Program::Python)).collect();
    let mut n = rng.below(choices.iter().map(|(_, w)| w).sum());
    for (program, weight) in choices {
        if n < *weight {
            return *program;
        }
        n -= weight;
    }
    unreachable!("the weights add up")
}

#[test]
fn soak() {
    let duration = std::env::var("IPC_OFFLOAD_SOAK").map_or(Duration::from_secs(10), |d| parse_duration(&d));
    let seed = seed();
    let mut rng = Rng(seed);
    let python = python();
    let dir = scratch("soak");
    let start = Instant::now();
    let (mut runs, mut failures) = (0u64, Vec::new());
    while start.elapsed() < duration {
        let policy = random_policy(&mut rng);
        let preload = Preload::new().policy(&dir, &policy).timeout(Duration::from_secs(120));
        let program = pick_program(&mut rng, python.is_some());
        let result = catch_unwind(AssertUnwindSafe(|| match program {
            Program::PipeMatrix => matrix(&mut rng, &preload, false),
            Program::UnixMatrix => matrix(&mut rng, &preload, true),
            Program::Death => death(&mut rng, &preload),
            Program::Exhaust => exhaust(&mut rng, &preload),
            Program::Dd => dd(&mut rng, &preload, &dir),
            Program::Python => multiprocessing(&mut rng, &preload, python.as_deref().unwrap()),
            Program::Memcpy => memcpy(&preload),
        }));
        let (what, checked) = result.unwrap_or_else(|panic| {
            let text =
                panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            (String::from("(panicked)"), Err(text.unwrap_or_default()))
        });
        runs += 1;
        let verdict = if checked.is_ok() { "ok" } else { "FAILED" };
        let flat_policy = policy.replace('\n', " ");
        eprintln!(
            "soak [{:>5.0}s/{}s] #{runs} {what}: {verdict} (policy: {flat_policy})",
            start.elapsed().as_secs_f64(),
            duration.as_secs()
        );
        if let Err(error) = checked {
            eprintln!("{error}");
            failures.push(format!("#{runs} {what} (policy: {flat_policy})"));
        }
    }
    eprintln!("soak: {runs} runs, {} failures in {:.0} s, seed {seed}", failures.len(), start.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "seed {seed}: {} of {runs} runs failed: {failures:#?}", failures.len());
}
