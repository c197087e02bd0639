//! Real event-loop programs under the library, differentially: Python
//! asyncio over a Unix socket, a selectors relay between two socketpairs, a
//! multiprocessing.Queue whose consumer waits in poll, redis-server with
//! redis-cli and redis-benchmark. Without and with the library they print
//! the same bytes and exit the same way; with it, the stats show that the
//! readers waiting in epoll, poll or select and the nonblocking writers took
//! the shared-memory fast path. And, seen from outside with strace, an epoll
//! loop whose peer runs without the library pays no system call of the
//! library per large call.
//!
//! Only outputs and stats are checked, never how the library gets there.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipc_offload_tests::reliability::{class_total, stats_files};
use ipc_offload_tests::*;
use serde_json::Value;

const MIB: u64 = 1 << 20;

/// Every program's watchdog: the tests of this file run side by side on
/// small machines, each moving hundreds of MiB.
const WATCHDOG: Duration = Duration::from_secs(300);

/// A command without the library, and without IPC_OFFLOAD_* from the
/// test's own environment (the reference side).
fn plain_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_remove("LD_PRELOAD");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("IPC_OFFLOAD") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// One stats file per line: the process, its pid and the class's fast-path
/// bytes and fallbacks (for failure messages).
fn stats_report(stats: &Path, class: &str) -> String {
    let mut files = stats_files(stats);
    files.sort();
    let lines: Vec<String> = files
        .iter()
        .map(|f| {
            let s = read_stats(f);
            format!(
                "  {}: {} pid {}: {class} calls {} fast_path_bytes {} kernel_path_bytes {} fallbacks {}",
                f.file_name().unwrap().to_string_lossy(),
                s["process"],
                s["pid"],
                counter(&s, class, "calls"),
                counter(&s, class, "fast_path_bytes"),
                counter(&s, class, "kernel_path_bytes"),
                s[class]["fallbacks"]
            )
        })
        .collect();
    if lines.is_empty() { format!("  no stats file {}(.PID)", stats.display()) } else { lines.join("\n") }
}

/// The stats that process `pid` wrote: FILE.PID, or FILE if it was the
/// first process.
fn stats_of(stats: &Path, pid: u32) -> Value {
    let own = PathBuf::from(format!("{}.{pid}", stats.display()));
    if own.exists() {
        return read_stats(&own);
    }
    let first = read_stats(stats);
    assert_eq!(first["pid"].as_u64(), Some(u64::from(pid)), "no stats of pid {pid}:\n{}", stats_report(stats, "unix"));
    first
}

/// The pid a Python script reported on stderr as "pid ROLE N".
fn pid_of(out: &Outcome, role: &str) -> u32 {
    out.stderr
        .lines()
        .find_map(|l| l.strip_prefix(&format!("pid {role} ")))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no \"pid {role}\" line: {out:#?}"))
}

/// What a Python script did without and with the library.
struct Differential {
    plain: Outcome,
    out: Outcome,
    /// The library run's stats file (its children write FILE.PID).
    stats: PathBuf,
}

/// Writes `script` to a file (its children exec it again, or import it
/// under multiprocessing's spawn) and runs it without, then with the
/// library; `args` gets the run's directory. Both runs must succeed and
/// print the same stdout.
fn python_differential(name: &str, script: &str, args: impl Fn(&Path) -> Vec<String>) -> Option<Differential> {
    let python = python()?;
    let go = |preload: bool| -> (Outcome, PathBuf) {
        let dir = scratch(&format!("evprog-{name}-{}", if preload { "lib" } else { "plain" }));
        let file = dir.join(format!("evloop_{name}.py"));
        std::fs::write(&file, script).unwrap();
        let stats = dir.join("stats.json");
        let mut cmd = if preload { Preload::new().stats(&stats).command(&python) } else { plain_command(&python) };
        cmd.arg(&file).args(args(&dir));
        let started = Instant::now();
        let out = run(&mut cmd, WATCHDOG);
        let side = if preload { "with" } else { "without" };
        eprintln!("{name} {side} the library: {:.1} s", started.elapsed().as_secs_f64());
        assert!(out.status.success(), "{name} failed {side} the library: {out:#?}");
        (out, stats)
    };
    let (plain, _) = go(false);
    let (out, stats) = go(true);
    assert_eq!(out.stdout, plain.stdout, "{name}: not the same output with the library; its stderr:\n{}", out.stderr);
    Some(Differential { plain, out, stats })
}

/// A server and a client in two processes (the client exec'd with
/// subprocess, so both load the library): the client sends an 8-byte
/// length and 256 MiB, the server readexactly()s and hashes them and sends
/// back 256 MiB derived from the hash, which the client readexactly()s and
/// hashes. Each 256 MiB never repeats (SHAKE-256 output).
const ASYNCIO: &str = r#"
import asyncio, hashlib, os, subprocess, sys

N = 256 << 20

def payload(seed):
    return hashlib.shake_256(seed).digest(N)

async def serve(reader, writer):
    n = int.from_bytes(await reader.readexactly(8), "big")
    data = await reader.readexactly(n)
    digest = hashlib.sha256(data).digest()
    del data
    print("server got", n, "bytes, sha256", digest.hex(), flush=True)
    reply = payload(digest)
    print("server sends", len(reply), "bytes, sha256", hashlib.sha256(reply).hexdigest(), flush=True)
    writer.write(len(reply).to_bytes(8, "big") + reply)
    del reply
    await writer.drain()
    writer.close()
    await writer.wait_closed()

async def server(path):
    os.write(2, b"pid server %d\n" % os.getpid())  # one write: other processes share stderr
    loop = asyncio.get_running_loop()
    served = loop.create_future()

    async def handle(reader, writer):
        try:
            await serve(reader, writer)
            served.set_result(None)
        except Exception as e:
            served.set_exception(e)

    srv = await asyncio.start_unix_server(handle, path)
    client = subprocess.Popen([sys.executable, __file__, "client", path])
    exited = loop.run_in_executor(None, client.wait)
    async with srv:
        await asyncio.wait([served, exited], return_when=asyncio.FIRST_COMPLETED)
        if not served.done():
            sys.exit(f"the client exited with {exited.result()} before the exchange ended")
        served.result()
    rc = await exited
    print("client exit", rc, flush=True)
    sys.exit(rc)

async def client(path):
    os.write(2, b"pid client %d\n" % os.getpid())  # one write: other processes share stderr
    reader, writer = await asyncio.open_unix_connection(path)
    data = payload(b"request")
    print("client sends", len(data), "bytes, sha256", hashlib.sha256(data).hexdigest(), flush=True)
    writer.write(len(data).to_bytes(8, "big"))
    writer.write(data)
    del data
    await writer.drain()
    n = int.from_bytes(await reader.readexactly(8), "big")
    reply = await reader.readexactly(n)
    print("client got", len(reply), "bytes, sha256", hashlib.sha256(reply).hexdigest(), flush=True)
    del reply
    if await reader.read(1) != b"":
        sys.exit("bytes after the reply")
    writer.close()
    await writer.wait_closed()

if __name__ == "__main__":
    if sys.argv[1] == "client":
        asyncio.run(client(sys.argv[2]))
    else:
        asyncio.run(server(sys.argv[1]))
"#;

/// The hash in a line "... bytes, sha256 HEX".
fn sha_of(line: &str) -> &str {
    line.rsplit_once("sha256 ").map(|(_, h)| h).unwrap_or_else(|| panic!("no hash in {line:?}"))
}

#[test]
fn asyncio_server_and_client_exchange_256_mib_each_way() {
    let Some(t) = python_differential("asyncio", ASYNCIO, |dir| vec![dir.join("s.sock").display().to_string()]) else {
        return;
    };
    let n = 256 * MIB;
    let lines: Vec<&str> = t.plain.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", t.plain.stdout);
    assert!(lines[0].starts_with(&format!("client sends {n} bytes, ")), "{}", t.plain.stdout);
    assert!(lines[1].starts_with(&format!("server got {n} bytes, ")), "{}", t.plain.stdout);
    assert!(lines[2].starts_with(&format!("server sends {n} bytes, ")), "{}", t.plain.stdout);
    assert!(lines[3].starts_with(&format!("client got {n} bytes, ")), "{}", t.plain.stdout);
    assert_eq!(lines[4], "client exit 0");
    assert_eq!(sha_of(lines[0]), sha_of(lines[1]), "the request arrived different");
    assert_eq!(sha_of(lines[2]), sha_of(lines[3]), "the reply arrived different");
    // Both ends count a byte they exchanged: 1 GiB if all of it took the
    // fast path. At least one 256 MiB message's worth must have.
    let fast = class_total(&t.stats, "unix", "fast_path_bytes");
    assert!(
        fast >= n,
        "only {fast} fast-path bytes; the asyncio ends read in an epoll loop:\n{}",
        stats_report(&t.stats, "unix")
    );
    eprintln!("asyncio: {fast} unix fast-path bytes");
}

/// source -> relay -> sink over two socketpairs, the source and the sink
/// forked with multiprocessing. The relay (the parent) reads and writes
/// nonblocking through selectors.DefaultSelector: recv(1 MiB), send, and
/// what a send did not take waits in a pending buffer (reading stops) until
/// EVENT_WRITE. 512 MiB that never repeat; the source and the sink hash.
const RELAY: &str = r#"
import hashlib, multiprocessing as mp, os, selectors, socket, sys

BLOCK = 64 << 20
BLOCKS = 8
CHUNK = 1 << 20

def source(out, report, others):
    for s in others:
        s.close()
    os.write(2, b"pid source %d\n" % os.getpid())  # one write: other processes share stderr
    h = hashlib.sha256()
    for k in range(BLOCKS):
        block = hashlib.shake_256(b"block %d" % k).digest(BLOCK)
        h.update(block)
        view = memoryview(block)
        for at in range(0, BLOCK, CHUNK):
            out.sendall(view[at : at + CHUNK])
    out.close()
    os.write(report, b"source sent %d bytes, sha256 %s\n" % (BLOCK * BLOCKS, h.hexdigest().encode()))

def sink(inp, report, others):
    for s in others:
        s.close()
    os.write(2, b"pid sink %d\n" % os.getpid())  # one write: other processes share stderr
    h = hashlib.sha256()
    got = 0
    while True:
        chunk = inp.recv(CHUNK)
        if not chunk:
            break
        h.update(chunk)
        got += len(chunk)
    os.write(report, b"sink got %d bytes, sha256 %s\n" % (got, h.hexdigest().encode()))

def relay(inp, out):
    inp.setblocking(False)
    out.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(inp, selectors.EVENT_READ)
    pending = b""
    relayed = 0
    eof = False
    while not (eof and not pending):
        for key, events in sel.select():
            if key.fileobj is inp:
                try:
                    chunk = inp.recv(CHUNK)
                except BlockingIOError:
                    continue
                if not chunk:
                    eof = True
                    sel.unregister(inp)
                    continue
                relayed += len(chunk)
                try:
                    sent = out.send(chunk)
                except BlockingIOError:
                    sent = 0
                if sent < len(chunk):
                    pending = chunk[sent:]
                    sel.unregister(inp)
                    sel.register(out, selectors.EVENT_WRITE)
            else:
                try:
                    sent = out.send(pending)
                except BlockingIOError:
                    sent = 0
                pending = pending[sent:]
                if not pending:
                    sel.unregister(out)
                    if not eof:
                        sel.register(inp, selectors.EVENT_READ)
    sel.close()
    out.close()
    return relayed

if __name__ == "__main__":
    os.write(2, b"pid relay %d\n" % os.getpid())  # one write: other processes share stderr
    ctx = mp.get_context("fork")
    a_in, a_out = socket.socketpair()    # source -> relay
    b_in, b_out = socket.socketpair()    # relay -> sink
    report_r, report_w = os.pipe()
    src = ctx.Process(target=source, args=(a_out, report_w, [a_in, b_in, b_out]))
    dst = ctx.Process(target=sink, args=(b_in, report_w, [a_in, a_out, b_out]))
    src.start()
    dst.start()
    a_out.close()
    b_in.close()
    os.close(report_w)
    relayed = relay(a_in, b_out)
    src.join()
    dst.join()
    reports = b""
    while True:
        r = os.read(report_r, 4096)
        if not r:
            break
        reports += r
    lines = sorted(reports.decode().splitlines(), reverse=True)  # source, then sink
    print(lines[0] if lines else "no source report")
    print("relay relayed %d bytes" % relayed)
    print(lines[1] if len(lines) > 1 else "no sink report")
    sys.exit(0 if src.exitcode == 0 and dst.exitcode == 0 else 1)
"#;

#[test]
fn a_selectors_relay_passes_512_mib_between_two_socketpairs() {
    let Some(t) = python_differential("relay", RELAY, |_| Vec::new()) else { return };
    let n = 512 * MIB;
    let lines: Vec<&str> = t.plain.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", t.plain.stdout);
    assert!(lines[0].starts_with(&format!("source sent {n} bytes, ")), "{}", t.plain.stdout);
    assert_eq!(lines[1], format!("relay relayed {n} bytes"));
    assert!(lines[2].starts_with(&format!("sink got {n} bytes, ")), "{}", t.plain.stdout);
    assert_eq!(sha_of(lines[0]), sha_of(lines[2]), "the sink got other bytes than the source sent");
    // Both ends count a byte they exchanged: the source's figures are the
    // first hop's, the sink's the second's.
    let report = stats_report(&t.stats, "unix");
    let first = counter(&stats_of(&t.stats, pid_of(&t.out, "source")), "unix", "fast_path_bytes");
    let second = counter(&stats_of(&t.stats, pid_of(&t.out, "sink")), "unix", "fast_path_bytes");
    assert!(first > 0, "source -> relay (the relay reads nonblocking in select) never took the fast path:\n{report}");
    assert!(second > 0, "relay -> sink (the relay writes nonblocking) never took the fast path:\n{report}");
    let total = class_total(&t.stats, "unix", "fast_path_bytes");
    assert!(total >= n, "only {total} fast-path bytes over both hops:\n{report}");
    eprintln!("relay: {first} fast-path bytes on the first hop, {second} on the second, {total} in all");
}

/// A multiprocessing.Queue (a pipe, and a feeder thread that writes it)
/// carrying eight 64 MiB bytes objects to a consumer started with spawn,
/// whose q.get(timeout=30) polls the pipe before it reads.
const QUEUE: &str = r#"
import hashlib, multiprocessing as mp, os, sys

ITEMS = 8
SIZE = 64 << 20

def item(k):
    return hashlib.shake_256(b"item %d" % k).digest(SIZE)

def consumer(q, results):
    os.write(2, b"pid consumer %d\n" % os.getpid())  # one write: other processes share stderr
    for k in range(ITEMS):
        data = q.get(timeout=30)
        results.put("item %d: %d bytes, sha256 %s" % (k, len(data), hashlib.sha256(data).hexdigest()))

if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    results = ctx.Queue()
    p = ctx.Process(target=consumer, args=(q, results))
    p.start()
    for k in range(ITEMS):
        data = item(k)
        print("put %d: %d bytes, sha256 %s" % (k, len(data), hashlib.sha256(data).hexdigest()), flush=True)
        q.put(data)
        del data
    got = [results.get(timeout=60) for _ in range(ITEMS)]
    p.join(60)
    for line in got:
        print(line)
    print("consumer exit", p.exitcode)
    sys.exit(0 if p.exitcode == 0 else 1)
"#;

#[test]
fn a_multiprocessing_queue_carries_64_mib_items_to_a_polling_consumer() {
    let Some(t) = python_differential("queue", QUEUE, |_| Vec::new()) else { return };
    let lines: Vec<&str> = t.plain.stdout.lines().collect();
    assert_eq!(lines.len(), 17, "{}", t.plain.stdout);
    for k in 0..8 {
        let (put, got) = (lines[k], lines[8 + k]);
        assert!(put.starts_with(&format!("put {k}: {} bytes, ", 64 * MIB)), "{put}");
        assert!(got.starts_with(&format!("item {k}: {} bytes, ", 64 * MIB)), "{got}");
        assert_eq!(sha_of(put), sha_of(got), "item {k} arrived different");
    }
    assert_eq!(lines[16], "consumer exit 0");
    let fast = class_total(&t.stats, "pipe", "fast_path_bytes");
    assert!(fast > 0, "the queue's pipe never took the fast path:\n{}", stats_report(&t.stats, "pipe"));
    let consumer = counter(&stats_of(&t.stats, pid_of(&t.out, "consumer")), "pipe", "fast_path_bytes");
    eprintln!("queue: {fast} pipe fast-path bytes, {consumer} of them counted by the consumer");
}

/// A redis-server on a Unix socket in `dir`, with the library (its stats
/// in `stats`) or without; killed if a test fails before it stops it.
struct Redis {
    child: Option<Child>,
    sock: PathBuf,
}

impl Redis {
    fn start(dir: &Path, stats: Option<&Path>) -> Redis {
        Redis::start_with(dir, stats, None)
    }

    /// As [`Redis::start`], with the library under `policy` (when given).
    fn start_with(dir: &Path, stats: Option<&Path>, policy: Option<&str>) -> Redis {
        let sock = dir.join("redis.sock");
        let mut cmd = match (stats, policy) {
            (Some(stats), Some(text)) => Preload::new().stats(stats).policy(dir, text).command("redis-server"),
            (Some(stats), None) => Preload::new().stats(stats).command("redis-server"),
            (None, _) => plain_command("redis-server"),
        };
        cmd.args(["--port", "0", "--unixsocket"])
            .arg(&sock)
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("redis.log")).unwrap())
            .stderr(Stdio::inherit());
        let child = cmd.spawn().expect("redis-server starts");
        let mut redis = Redis { child: Some(child), sock };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !redis.sock.exists() {
            if let Some(status) = redis.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("redis-server exited ({status}): {}", std::fs::read_to_string(dir.join("redis.log")).unwrap());
            }
            assert!(Instant::now() < deadline, "redis-server did not open {} within 30 s", redis.sock.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    /// SIGTERM (redis shuts down and exits, and the library writes its
    /// final stats), then waits for it.
    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on the child this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("watchdog: redis-server did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success(), "redis-server exited with {status}");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn have_redis() -> bool {
    // have() fails in CI and prints why it skips elsewhere.
    have("redis-server") && have("redis-cli") && have("redis-benchmark")
}

/// `sh -c SCRIPT sh ARGS` (the script execs the client, which is then the
/// process the stats name), with or without the library.
fn client(script: &str, args: &[&Path], stats: Option<&Path>) -> Outcome {
    let mut cmd = match stats {
        Some(stats) => Preload::new().stats(stats).command("sh"),
        None => plain_command("sh"),
    };
    cmd.args(["-c", script, "sh"]).args(args);
    let out = run(&mut cmd, WATCHDOG);
    assert!(out.status.success(), "{script} {args:?} failed: {out:#?}");
    out
}

/// 256 MiB that never repeat (splitmix64), the same on every run.
fn value(n: usize) -> Vec<u8> {
    let mut x = 0x0123_4567_89ab_cdefu64;
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        v.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    v.truncate(n);
    v
}

#[test]
fn redis_sets_and_gets_a_256_mib_value_byte_exact() {
    if !have_redis() {
        return;
    }
    let n = 256usize << 20;
    let value = value(n);
    let mut replies = Vec::new();
    for preload in [false, true] {
        let dir = scratch(&format!("evprog-redis-value-{}", if preload { "lib" } else { "plain" }));
        let file = dir.join("value");
        std::fs::write(&file, &value).unwrap();
        let stats = |name: &str| preload.then(|| dir.join(name));
        let redis = Redis::start(&dir, stats("server.json").as_deref());
        let started = Instant::now();
        let set =
            client(r#"exec redis-cli -s "$1" -x SET big < "$2""#, &[&redis.sock, &file], stats("set.json").as_deref());
        let len = client(r#"exec redis-cli -s "$1" STRLEN big"#, &[&redis.sock], stats("strlen.json").as_deref());
        let got_file = dir.join("got");
        client(
            r#"exec redis-cli -s "$1" --raw GET big > "$2""#,
            &[&redis.sock, &got_file],
            stats("get.json").as_deref(),
        );
        let side = if preload { "with" } else { "without" };
        eprintln!("redis 256 MiB SET and GET {side} the library: {:.1} s", started.elapsed().as_secs_f64());
        redis.stop();
        // redis-cli --raw ends the value with a newline of its own.
        let got = std::fs::read(&got_file).unwrap();
        assert_eq!(got.len(), n + 1, "{side} the library: GET returned {} bytes", got.len());
        assert!(got[..n] == value[..] && got[n] == b'\n', "{side} the library: GET returned other bytes");
        // 512 MiB of files: not left behind under target/.
        let _ = std::fs::remove_file(&file);
        let _ = std::fs::remove_file(&got_file);
        replies.push((set.stdout, len.stdout));
        if preload {
            eprintln!("redis SET and GET, the server's figures:\n{}", stats_report(&dir.join("server.json"), "unix"));
        }
    }
    assert_eq!(replies[0], ("OK\n".to_owned(), format!("{n}\n")));
    assert_eq!(replies[1], replies[0], "redis-cli answered differently with the library");
}

/// GET replies of 1 MB, which redis-benchmark reads 16 KiB at a time (as
/// every hiredis client does), take the fast path once the client's
/// filled reads opted it in and the server leaves its replies behind
/// (`write_behind`): docs/ipc-protocol.md, "Readers with small buffers".
/// Before, such a reader never opted in and no reply byte took it. The
/// same tests complete with and without the library.
#[test]
fn redis_benchmark_gets_take_the_fast_path_with_write_behind() {
    if !have_redis() {
        return;
    }
    const POLICY: &str = "[unix]\nwrite_behind = true\n";
    let mut tests = Vec::new();
    for preload in [false, true] {
        let dir = scratch(&format!("evprog-redis-get-{}", if preload { "lib" } else { "plain" }));
        let (server_stats, bench_stats) = (dir.join("server.json"), dir.join("bench.json"));
        let redis = Redis::start_with(&dir, preload.then_some(server_stats.as_path()), Some(POLICY));
        // The value GET fetches, set without the library (the client's
        // stats then count GET replies alone).
        let mut set = plain_command("redis-benchmark");
        set.arg("-s").arg(&redis.sock).args(["-t", "set", "-d", "1000000", "-n", "4", "-c", "1", "-q"]);
        assert!(run(&mut set, WATCHDOG).status.success(), "redis-benchmark -t set failed");
        let mut bench = if preload {
            Preload::new().stats(&bench_stats).policy(&dir, POLICY).command("redis-benchmark")
        } else {
            plain_command("redis-benchmark")
        };
        bench.arg("-s").arg(&redis.sock).args(["-t", "get", "-d", "1000000", "-n", "200", "-c", "4", "-q"]);
        let out = run(&mut bench, WATCHDOG);
        let side = if preload { "with" } else { "without" };
        assert!(out.status.success(), "redis-benchmark failed {side} the library: {out:#?}");
        redis.stop();
        tests.push(benchmark_tests(&out.stdout));
        if preload {
            // Its fast-path bytes are GET replies (200 of 1 MB, the first 4
            // MiB of each connection's through the kernel while its reads
            // earn the opt-in).
            let fast = class_total(&bench_stats, "unix", "fast_path_bytes");
            let report = stats_report(&bench_stats, "unix");
            assert!(
                fast >= 100_000_000,
                "redis-benchmark's GET replies took the fast path for {fast} bytes:\n{report}"
            );
            eprintln!("redis-benchmark GET: {fast} fast-path bytes in the client:\n{report}");
        }
    }
    assert_eq!(tests[0], ["GET"]);
    assert_eq!(tests[1], tests[0]);
}

/// The test lines of `redis-benchmark -q` ("SET: 2105.26 requests per
/// second, ..."), progress lines left out.
fn benchmark_tests(stdout: &str) -> Vec<String> {
    stdout
        .split(['\r', '\n'])
        .filter(|l| l.contains(" requests per second"))
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim().to_owned()))
        .collect()
}

#[test]
fn redis_benchmark_with_1_mb_values_completes() {
    if !have_redis() {
        return;
    }
    let mut tests = Vec::new();
    for preload in [false, true] {
        let dir = scratch(&format!("evprog-redis-bench-{}", if preload { "lib" } else { "plain" }));
        let server_stats = dir.join("server.json");
        let redis = Redis::start(&dir, preload.then_some(server_stats.as_path()));
        let mut bench = if preload {
            Preload::new().stats(&dir.join("bench.json")).command("redis-benchmark")
        } else {
            plain_command("redis-benchmark")
        };
        bench.arg("-s").arg(&redis.sock).args(["-t", "set,get", "-d", "1000000", "-n", "200", "-c", "4", "-q"]);
        let started = Instant::now();
        let out = run(&mut bench, WATCHDOG);
        let side = if preload { "with" } else { "without" };
        eprintln!("redis-benchmark {side} the library: {:.1} s", started.elapsed().as_secs_f64());
        assert!(out.status.success(), "redis-benchmark failed {side} the library: {out:#?}");
        redis.stop();
        let names = benchmark_tests(&out.stdout);
        assert_eq!(names, ["SET", "GET"], "{side} the library: {:?}", out.stdout);
        tests.push(names);
        if preload {
            // The server reads 1 MB SETs in its epoll loop and writes 1 MB
            // replies nonblocking.
            let fast = class_total(&server_stats, "unix", "fast_path_bytes");
            let report = stats_report(&server_stats, "unix");
            assert!(fast > 0, "redis-server never took the fast path:\n{report}");
            eprintln!("redis-benchmark: {fast} fast-path bytes in redis-server:\n{report}");
        }
    }
    assert_eq!(tests[0], tests[1]);
}

fn evloop_plain() -> PathBuf {
    c_program("evloop_plain", &["-O2", "-fno-builtin"])
}

/// What a traced reader cost.
struct Traced {
    out: Outcome,
    /// System calls of the reader process beyond its loop's own epoll_wait
    /// and recv calls (which depend on timing): start-up, connect, output,
    /// and whatever the library added.
    rest: i64,
}

/// Counts the system calls in an `strace -f -o` trace: one per call (a
/// call split into "<unfinished ...>" and "<... resumed>" counts once;
/// signals and exits are not calls).
fn strace_call_count(trace: &Path) -> i64 {
    let text = std::fs::read_to_string(trace).unwrap();
    text.lines()
        .filter(|l| {
            let rest = l.split_once(' ').map_or("", |(_, r)| r).trim_start();
            !rest.is_empty() && !rest.starts_with("<...") && !rest.starts_with("---") && !rest.starts_with("+++")
        })
        .count() as i64
}

/// evloop_plain's writer, without the library, listening on `sock`;
/// killed if a test fails before it finishes.
struct Writer(Child);

impl Writer {
    fn start(sock: &Path, total: u64) -> Writer {
        let child = plain_command(evloop_plain())
            .arg("serve")
            .arg(sock)
            .arg(total.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut writer = Writer(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !sock.exists() {
            assert!(writer.0.try_wait().unwrap().is_none(), "the writer exited before it listened");
            assert!(Instant::now() < deadline, "the writer did not listen within 30 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        writer
    }

    /// Waits for the writer (it ends when its reader took everything):
    /// it must say it served `total` bytes.
    fn finish(mut self, total: u64) {
        let deadline = Instant::now() + WATCHDOG;
        let status = loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "watchdog: the writer still runs after {WATCHDOG:?}");
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut stdout = String::new();
        use std::io::Read;
        self.0.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        assert!(status.success(), "the writer failed ({status}): {stdout}");
        assert_eq!(stdout, format!("served {total} bytes\n"));
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Serves `total` bytes from a writer without the library to evloop_plain's
/// epoll reader, run under strace, with or without the library.
fn traced_reader(mode: &str, total: u64, preload: bool) -> Traced {
    let dir = scratch("evprog-strace");
    let sock = dir.join("w.sock");
    let trace = dir.join("trace");
    let writer = Writer::start(&sock, total);
    // strace -E: the library goes into the reader only, not into strace.
    let mut cmd = plain_command("strace");
    cmd.args(["-f", "-qq", "-o"]).arg(&trace);
    if preload {
        cmd.arg("-E").arg(format!("LD_PRELOAD={}", library().display()));
    }
    cmd.arg(evloop_plain()).arg(mode).arg(&sock).arg(total.to_string());
    let started = Instant::now();
    let out = run(&mut cmd, WATCHDOG);
    let side = if preload { "with" } else { "without" };
    eprintln!("{total} bytes through the traced reader {side} the library: {:.1} s", started.elapsed().as_secs_f64());
    assert!(out.status.success(), "the reader of {total} bytes failed: {out:#?}");
    writer.finish(total);
    let loop_calls: i64 = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("loop calls: "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no \"loop calls\" line: {out:#?}"));
    let calls = strace_call_count(&trace);
    Traced { out, rest: calls - loop_calls }
}

/// The library's system calls beside a traced loop of large reads whose
/// peer never qualifies (reader mode `mode`), for 0, 64 MiB and 256 MiB:
/// the start-up, then what the first few calls on the fd cost, and nothing
/// per call after them.
fn no_system_call_per_large_call(mode: &str) {
    // The library's start-up costs what it costs (reading its policy, the
    // CPU's features...): a reader that only meets EOF measures it, and the
    // large reads' extra is taken against it.
    let mut extra = Vec::new();
    for total in [0, 64 * MIB, 256 * MIB] {
        let plain = traced_reader(mode, total, false);
        let with = traced_reader(mode, total, true);
        assert_eq!(with.out.stdout, plain.out.stdout, "{mode}, {total} bytes");
        assert_eq!(plain.out.stdout, format!("got {total} bytes, eof, ok\n"));
        let loop_line =
            |t: &Traced| t.out.stderr.lines().find(|l| l.starts_with("loop calls")).unwrap_or("").to_owned();
        eprintln!(
            "{mode}, {total} bytes: {} calls beside the loop without the library, {} with it; loop without: {}; with: {}",
            plain.rest,
            with.rest,
            loop_line(&plain),
            loop_line(&with)
        );
        extra.push(with.rest - plain.rest);
    }
    let (start, small, large) = (extra[0], extra[1], extra[2]);
    // Beyond the start-up: the first few calls on the fd, at most.
    assert!(small - start <= 40, "{mode}, 64 MiB: {small} extra system calls, {start} of them the start-up");
    assert!(large - start <= 40, "{mode}, 256 MiB: {large} extra system calls, {start} of them the start-up");
    // Four times the large calls, no more extra calls.
    assert!(
        (large - small).abs() <= 4,
        "{mode}: the extra calls grow with the large calls: {small} for 64 MiB, {large} for 256 MiB"
    );
    // And the peer never qualified.
    let dir = scratch("evprog-strace-stats");
    let sock = dir.join("w.sock");
    let stats = dir.join("stats.json");
    let writer = Writer::start(&sock, 64 * MIB);
    let args = [mode.to_owned(), sock.display().to_string(), (64 * MIB).to_string()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = Preload::new().stats(&stats).timeout(WATCHDOG).run(evloop_plain(), &args);
    assert!(out.status.success(), "{out:#?}");
    writer.finish(64 * MIB);
    assert_eq!(out.stdout, format!("got {} bytes, eof, ok\n", 64 * MIB));
    assert_eq!(class_total(&stats, "unix", "fast_path_bytes"), 0, "{}", stats_report(&stats, "unix"));
}

#[test]
fn an_epoll_loop_whose_peer_has_no_library_pays_no_system_call_per_large_call() {
    if !have("strace") {
        return;
    }
    no_system_call_per_large_call("read");
}

#[test]
fn blocking_and_nonblocking_reads_mixed_pay_no_system_call_per_large_call_either() {
    // The issue's "whatever its mix of blocking and nonblocking calls": the
    // same loop, turning blocking for two reads after every 4th event.
    if !have("strace") {
        return;
    }
    no_system_call_per_large_call("read-mixed");
}
