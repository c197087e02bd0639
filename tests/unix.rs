//! The shared-memory fast path for Unix stream sockets, differentially: the
//! same programs with and without the library give the same bytes in the
//! same order, the same totals, errors and EOF; the stats (and strace, from
//! outside) show where the fast path carried the payload.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipc_offload_tests::reliability::stats_files;
use ipc_offload_tests::*;

fn matrix() -> PathBuf {
    c_program("unix_matrix", &["-O2", "-fno-builtin"])
}

fn peer() -> PathBuf {
    c_program("unix_peer", &["-O2", "-fno-builtin"])
}

fn edges() -> PathBuf {
    c_program("unix_edges", &["-O2", "-fno-builtin", "-pthread"])
}

/// What an edge case did under the library.
struct Edge {
    out: Outcome,
    /// Fast-path bytes, all processes.
    fast: u64,
    /// Transfers cut short by a peer that died or exec'd, all processes.
    peer_gone: u64,
}

/// Runs an edge case of unix_edges.c without and with the library: the same
/// output and the same end (exit code or signal), within `watchdog`.
fn edge_case(mode: &str, watchdog: Duration) -> Edge {
    // The cases are small (a few MiB per writer): each connection's first
    // large write must take part.
    edge_case_under(mode, "[unix]\nhandshake_after = 0\n", watchdog)
}

/// [`edge_case`] under the policy `policy`.
fn edge_case_under(mode: &str, policy: &str, watchdog: Duration) -> Edge {
    let mut plain = Command::new(edges());
    plain.arg(mode).env_remove("LD_PRELOAD");
    let plain = run(&mut plain, watchdog);
    let dir = scratch(&format!("edge-{mode}"));
    let stats = dir.join("stats.json");
    let preload = Preload::new().policy(&dir, policy).stats(&stats).timeout(watchdog);
    let out = preload.run(edges(), &[mode]);
    assert_eq!(out.stdout, plain.stdout, "{mode}: {out:#?}");
    assert_eq!((out.status.code(), out.signal()), (plain.status.code(), plain.signal()), "{mode}: {out:#?}");
    Edge { out, fast: unix_total(&stats, "fast_path_bytes"), peer_gone: unix_fallbacks(&stats, "peer-gone") }
}

/// Sums a stats counter of the unix class over FILE and its FILE.PID siblings.
fn unix_total(stats: &Path, key: &str) -> u64 {
    stats_files(stats).iter().map(|f| counter(&read_stats(f), "unix", key)).sum()
}

/// Sums a unix fallback count over FILE and its FILE.PID siblings.
fn unix_fallbacks(stats: &Path, reason: &str) -> u64 {
    stats_files(stats).iter().map(|f| fallbacks(&read_stats(f), "unix", reason)).sum()
}

/// Runs the matrix program without and with the library; same output.
/// Returns the fast-path bytes the two processes counted.
fn differential(mode: &str, total: u64, write: u64, read: u64) -> u64 {
    let args = [mode.to_owned(), total.to_string(), write.to_string(), read.to_string()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let plain = run_plain(matrix(), &args);
    assert!(plain.status.success(), "{mode} without the library failed: {plain:?}");
    let dir = scratch(&format!("unix-{mode}"));
    let stats = dir.join("stats.json");
    let out = Preload::new().stats(&stats).run(matrix(), &args);
    assert!(out.status.success(), "{mode} w={write} r={read} failed under the library: {out:?}");
    assert_eq!(out.stdout, plain.stdout, "{mode} w={write} r={read}");
    assert!(out.library_lines().is_empty(), "{}", out.stderr);
    unix_total(&stats, "fast_path_bytes")
}

#[test]
fn blocking_readers_of_every_shape_match_the_kernel_and_take_the_fast_path() {
    for mode in ["blocking", "waitall", "readv", "recvmsg", "eintr", "rcvtimeo", "shutdown"] {
        let fast = differential(mode, 64 << 20, 1 << 20, 1 << 20);
        // Both ends count what crossed shared memory: the handshake costs
        // the first write or two, the rest must take the fast path.
        assert!(fast >= 2 * (48 << 20), "{mode}: only {fast} fast-path bytes");
    }
    // A nonblocking writer does not wait for the reader to come back: it
    // sends kernel pieces meanwhile, and rendezvous when it finds it waiting.
    assert!(differential("nbwrite", 64 << 20, 1 << 20, 1 << 20) > 0);
}

#[test]
fn read_and_write_sizes_from_1_byte_up() {
    let cases: &[(u64, u64, u64)] = &[
        (300_000, 1, 1 << 20),
        (300_000, 1 << 20, 1),
        (8 << 20, 300_000, 65536),
        (8 << 20, 65536, 4 << 20),
        (16 << 20, 5_000_000, 3_000_000),
        (256 << 20, 256 << 20, 64 << 20),
    ];
    for &(total, write, read) in cases {
        differential("blocking", total, write, read);
        differential("waitall", total, write, read);
    }
}

#[test]
fn a_reader_gets_all_that_fionread_said_at_once() {
    // Also while the ends are still meeting, when the reader's kernel reads
    // are short (docs/ipc-protocol.md, "Opting in").
    for (write, read) in [(1 << 20, 1 << 20), (300_000, 4 << 20)] {
        differential("fionread", 64 << 20, write, read);
    }
}

#[test]
fn nonblocking_readers_get_the_writers_bytes_in_order() {
    // Whatever path the bytes take (tests/evloop.rs checks that event
    // loops take the fast path).
    for mode in ["nonblock-poll", "epoll-lt", "epoll-et", "select"] {
        for (write, read) in [(1 << 20, 1 << 20), (300_000, 65536), (65536, 4 << 20)] {
            differential(mode, 16 << 20, write, read);
        }
    }
}

#[test]
fn peeking_readers_stay_on_the_kernel_path() {
    for (write, read) in [(1 << 20, 1 << 20), (300_000, 65536), (65536, 4 << 20)] {
        assert_eq!(differential("peek", 16 << 20, write, read), 0);
    }
}

#[test]
fn payload_does_not_cross_the_socket() {
    if !have("strace") {
        return;
    }
    // strace counts the bytes every data system call moved, library or not.
    let moved = |preload: bool| -> u64 {
        let dir = scratch("strace");
        let trace = dir.join("trace");
        let mut cmd = if preload { Preload::new().command("strace") } else { Command::new("strace") };
        cmd.args(["-f", "-qq", "-e", "trace=read,write,readv,writev,recvfrom,sendto,recvmsg,sendmsg", "-o"])
            .arg(&trace)
            .arg(matrix())
            .args(["blocking", &(256u64 << 20).to_string(), &(1u64 << 20).to_string(), &(1u64 << 20).to_string()]);
        if !preload {
            cmd.env_remove("LD_PRELOAD");
        }
        run(&mut cmd, Duration::from_secs(120)).success();
        strace_bytes(&trace)
    };
    let without = moved(false);
    let with = moved(true);
    // Each byte is written once and read once through the kernel without
    // the library; with it, only the handshake's first piece and the
    // side channel's small datagrams.
    assert!(without >= 2 * (256 << 20), "the kernel path moved {without} bytes");
    assert!(with < 16 << 20, "{with} bytes crossed the socket with the library");
}

/// A server and a client of unix_peer, each with or without the library.
struct Pair {
    dir: PathBuf,
    server: Child,
}

fn start_server(dir: &Path, addr: &str, total: u64, how: &str, preload: bool) -> Child {
    let mut cmd =
        if preload { Preload::new().stats(&dir.join("server.json")).command(peer()) } else { Command::new(peer()) };
    if !preload {
        cmd.env_remove("LD_PRELOAD");
    }
    cmd.args(["serve", addr, &total.to_string(), &(1u64 << 20).to_string(), how])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

impl Pair {
    fn new(name: &str, addr_kind: &str, total: u64, how: &str, server_preloaded: bool) -> (Pair, String) {
        let dir = scratch(name);
        let addr = if addr_kind == "abstract" {
            format!("@ipc-offload-test-{}-{name}", std::process::id())
        } else {
            dir.join("sock").display().to_string()
        };
        let server = start_server(&dir, &addr, total, how, server_preloaded);
        (Pair { dir, server }, addr)
    }

    fn client(&self, addr: &str, total: u64, preload: bool) -> Command {
        let mut cmd = if preload {
            Preload::new().stats(&self.dir.join("client.json")).command(peer())
        } else {
            Command::new(peer())
        };
        if !preload {
            cmd.env_remove("LD_PRELOAD");
        }
        cmd.args(["send", addr, &total.to_string(), &(1u64 << 20).to_string()]);
        cmd
    }

    fn server_output(mut self, within: Duration) -> Outcome {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.server.try_wait().unwrap() {
                let mut stdout = String::new();
                let mut stderr = String::new();
                use std::io::Read;
                self.server.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
                self.server.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
                return Outcome { status, stdout, stderr };
            }
            if Instant::now() > deadline {
                let _ = self.server.kill();
                panic!("watchdog: the server did not finish within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn transfer(name: &str, addr_kind: &str, how: &str, server: bool, client: bool) -> (Outcome, u64) {
    let total = 64u64 << 20;
    let (pair, addr) = Pair::new(name, addr_kind, total, how, server);
    let sent = run(&mut pair.client(&addr, total, client), Duration::from_secs(120)).success();
    assert_eq!(sent.stdout, format!("sent {total} bytes, closed\n"));
    let dir = pair.dir.clone();
    let out = pair.server_output(Duration::from_secs(120));
    assert!(out.status.success(), "{name}: {out:?}");
    assert!(out.stdout.ends_with(&format!("got {total} bytes, eof, ok\n")), "{name}: {}", out.stdout);
    let fast = unix_total(&dir.join("server.json"), "fast_path_bytes")
        + unix_total(&dir.join("client.json"), "fast_path_bytes");
    (out, fast)
}

#[test]
fn path_and_abstract_addresses_take_the_fast_path() {
    for kind in ["path", "abstract"] {
        let (_, fast) = transfer(&format!("both-{kind}"), kind, "read", true, true);
        assert!(fast >= 2 * (48 << 20), "{kind}: {fast}");
    }
}

#[test]
fn only_one_side_preloaded_is_the_kernel_path() {
    for (server, client) in [(true, false), (false, true)] {
        let (_, fast) = transfer(&format!("one-side-{server}"), "path", "read", server, client);
        assert_eq!(fast, 0);
    }
}

#[test]
fn a_stdio_reader_gets_plain_bytes() {
    // fread reads inside glibc: it never opts in, the writer never frames.
    let (_, fast) = transfer("stdio", "path", "stdio", true, true);
    assert_eq!(fast, 0);
}

#[test]
fn a_reader_that_execs_a_program_without_the_library() {
    // The first half through shared memory, then the exec'd program (no
    // library) reads the rest through the kernel. (The reader's own stats
    // end at the exec; the writer's show the first half.)
    let (_, fast) = transfer("exec", "path", "exec", true, true);
    assert!(fast >= 24 << 20, "{fast}");
}

#[test]
fn forked_readers_share_the_socket() {
    // A child reads the first half, then the parent the rest: each opts in
    // in turn (the name is free again once the child is gone).
    let (_, fast) = transfer("fork", "path", "fork", true, true);
    assert!(fast >= 2 * (40 << 20), "{fast}");
}

#[test]
fn a_socket_passed_with_scm_rights() {
    let (_, fast) = transfer("pass", "abstract", "pass", true, true);
    assert!(fast >= 2 * (48 << 20), "{fast}");
}

#[test]
fn a_killed_writer_gives_the_reader_eof() {
    for round in 0..5 {
        let total = 64u64 << 30; // far more than can move before the kill
        let (pair, addr) = Pair::new(&format!("kill-writer-{round}"), "path", total, "read", true);
        let mut client = pair.client(&addr, total, true).stdout(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(100 + 50 * round));
        client.kill().unwrap();
        client.wait().unwrap();
        let killed = Instant::now();
        let out = pair.server_output(Duration::from_secs(2));
        assert!(killed.elapsed() < Duration::from_secs(2));
        // Short of the total (exit 1), but every byte it got was right.
        assert!(out.stdout.contains("bytes, eof, ok"), "{out:?}");
    }
}

#[test]
fn a_killed_reader_gives_the_writer_epipe() {
    for round in 0..5 {
        let total = 64u64 << 30;
        let (mut pair, addr) = Pair::new(&format!("kill-reader-{round}"), "path", total, "read", true);
        let mut client = pair.client(&addr, total, true).stdout(Stdio::piped()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(100 + 50 * round));
        pair.server.kill().unwrap();
        pair.server.wait().unwrap();
        let killed = Instant::now();
        let deadline = killed + Duration::from_secs(2);
        let status = loop {
            if let Some(s) = client.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = client.kill();
                panic!("watchdog: the writer did not see EPIPE within 2 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(status.success());
        let mut out = String::new();
        use std::io::Read;
        client.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        assert!(out.ends_with("bytes, EPIPE\n"), "{out}");
    }
}

#[test]
fn a_write_cut_short_by_a_dead_reader_returns_its_count_without_sigpipe() {
    // The kernel raises SIGPIPE only for a write that sent nothing: a write
    // whose reader dies midway returns its count, the next one is killed.
    let e = edge_case("sigpipe", Duration::from_secs(30));
    assert_eq!(e.out.stdout, "first write: partial\nsend(MSG_NOSIGNAL): Broken pipe\n");
    assert_eq!(e.out.signal(), Some(libc::SIGPIPE));
    assert!(e.fast > 0, "the write never took the fast path");
}

#[test]
fn a_signal_ends_a_waitall_read_that_has_bytes() {
    let e = edge_case("waitall-signal", Duration::from_secs(30));
    assert!(e.out.stdout.starts_with(&format!("interrupted recv(MSG_WAITALL) returned {}\n", 1 << 20)), "{:#?}", e.out);
    // The 1 MiB that read got went through shared memory, not the socket:
    // what the writer passed to the kernel for it, counted by strace (its
    // own wchar misses the library's kernel pieces, which are sendmsg).
    let sent = traced_test_write();
    assert!(sent < 64 << 10, "{sent} bytes of the test write crossed the socket");
}

/// Runs `unix_edges waitall-signal` under `strace -f` and the library, and
/// returns the bytes its writer passed to write-like and send-like system
/// calls for the test write: between the warm-up's 1-byte ack and its
/// "test write" line on stderr (the side channel's datagrams included:
/// tens of bytes).
fn traced_test_write() -> u64 {
    let dir = scratch("edge-waitall-traced");
    let trace = dir.join("trace");
    let mut cmd = Preload::new().policy(&dir, "[unix]\nhandshake_after = 0\n").command("strace");
    cmd.args(["-f", "-qq", "-e", "trace=read,write,writev,sendmsg,sendto", "-e", "signal=none", "-o"]).arg(&trace);
    cmd.arg(edges()).arg("waitall-signal");
    let out = run(&mut cmd, Duration::from_secs(60));
    assert!(out.status.success(), "{out:#?}");
    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let marker = lines.iter().position(|l| l.contains("write(2, \"test write")).expect("the writer's stderr line");
    let pid = lines[marker].split_whitespace().next().unwrap();
    let mut sent = 0;
    for line in lines[..marker].iter().rev().filter(|l| l.split_whitespace().next() == Some(pid)) {
        let call = line.split_whitespace().nth(1).unwrap_or("");
        let result = line.rsplit_once(" = ").and_then(|(_, r)| r.split_whitespace().next()?.parse::<u64>().ok());
        // A call another thread's line cut in two ends as "<... NAME resumed>".
        let named = |n: &str| call.starts_with(&format!("{n}(")) || line.contains(&format!("<... {n} resumed>"));
        if named("read") && result == Some(1) {
            return sent; // the warm-up's ack: the test write came after it
        }
        if ["write", "writev", "sendmsg", "sendto"].iter().any(|n| named(n)) && !call.starts_with("write(2,") {
            sent += result.unwrap_or(0);
        }
    }
    panic!("no 1-byte read before the test write in {}", trace.display());
}

#[test]
fn a_writer_slow_to_earn_the_fast_path_is_answered_at_once() {
    // Its first 4 MiB (the default `handshake_after`) take 48 ms and more
    // than 16 reads, which once made the reader quiet (no REQUEST in its
    // first 20 ms and 16 reads): the REQUEST that came next waited for the
    // reader's 64th read, and 11.75 of the last 28 MiB took the ring.
    let e = edge_case_under("slow-start", "", Duration::from_secs(60));
    assert_eq!(e.out.stdout, "32 MiB read in order\n", "{:#?}", e.out);
    // Both processes count what went through the ring: 27.5 MiB each
    // (the handshake's pieces and the reader's first take of the kernel's
    // queue go through the kernel).
    assert!(e.fast >= 2 * (24 << 20), "{} MiB through the ring, both sides: {:#?}", e.fast >> 20, e.out);
}

#[test]
fn a_large_send_that_names_a_destination_fails_as_the_kernels() {
    // sendto and sendmsg with an address on a connected stream socket:
    // EISCONN from the kernel. The fast path once took the bytes (its
    // kernel pieces drop the address), and the stream had them twice.
    let e = edge_case("addressed", Duration::from_secs(60));
    let expected = "sendto with an address: -1 (Transport endpoint is already connected)\n\
                    sendmsg with an address: -1 (Transport endpoint is already connected)\n\
                    8 MiB read in order, then EOF\n";
    assert_eq!(e.out.stdout, expected, "{:#?}", e.out);
    assert!(e.fast > 0, "the writes around them never took the fast path: {:#?}", e.out);
}

#[test]
fn a_writer_that_execs_from_another_thread_mid_transfer() {
    // The pid lives on through the exec; the reader must notice the claim
    // is dead (its writer's side channel closed with the exec), deliver the
    // slots it has and go back to the kernel, where the exec'd program's
    // bytes come next.
    let e = edge_case("writer-execs", Duration::from_secs(30));
    assert_eq!(e.out.stdout, "a prefix of the stream, the marker, then eof; sh ok\n");
    assert!(e.peer_gone >= 1, "the exec did not cut a transfer: the case was not exercised");
}

#[test]
fn a_reader_that_execs_from_another_thread_mid_transfer() {
    // The writer must notice its reader is gone (its lifeline hangs up at
    // the exec), count only what the reader copied out, and send the rest to
    // the exec'd reader: no gap, no repeat. Every run must get that right;
    // whether the exec lands inside an offer (rather than between two reads)
    // is up to the schedule, so the case runs until it did, a few times at
    // most.
    let mut cut = 0;
    for _ in 0..5 {
        let e = edge_case("reader-execs", Duration::from_secs(30));
        assert_eq!(
            e.out.stdout,
            "the exec'd reader got the rest of the stream without a gap\nthe writes completed; the reader ok\n"
        );
        cut += e.peer_gone;
        if cut >= 1 {
            break;
        }
    }
    assert!(cut >= 1, "the exec never cut a transfer in 5 runs: the case was not exercised");
}

#[test]
fn scm_credentials_travel_with_their_bytes() {
    // Control data goes through the kernel, in order with the bytes around
    // it that took the fast path, and never joined with another sender's.
    let e = edge_case("credentials", Duration::from_secs(30));
    assert_eq!(
        e.out.stdout,
        "recvmsg: 1048576 bytes, each read with its sender's credentials\n9 MiB in order; writers ok\n"
    );
    assert!(e.fast > 0);
}

#[test]
fn fds_beyond_the_table_stay_on_the_kernel_path() {
    let e = edge_case("highfd", Duration::from_secs(30));
    if e.out.stdout.starts_with("skipped") {
        // Raising RLIMIT_NOFILE past 65536 needs CAP_SYS_RESOURCE.
        eprintln!("SKIPPED: {}", e.out.stdout.trim());
        return;
    }
    assert_eq!(e.out.stdout, "64 MiB read on fd 70000\n");
    assert_eq!(e.fast, 0, "an untracked fd took the fast path: its close could not release it");
}

#[test]
fn python_multiprocessing_pipe_duplex() {
    let Some(python) = python() else { return };
    let script = r#"
import hashlib, multiprocessing as mp, sys
def child(conn, n):
    data = bytes(bytearray(range(251)) * (n // 251 + 1))[:n]
    conn.send_bytes(data)
    conn.send_bytes(hashlib.sha256(data).digest())
if __name__ == "__main__":
    mp.set_start_method("fork")
    n = 256 << 20
    a, b = mp.Pipe(duplex=True)
    p = mp.Process(target=child, args=(b, n))
    p.start()
    data = a.recv_bytes()
    digest = a.recv_bytes()
    p.join()
    ok = len(data) == n and hashlib.sha256(data).digest() == digest
    print("received", len(data), "ok" if ok else "BAD")
    sys.exit(0 if ok and p.exitcode == 0 else 1)
"#;
    let plain = run_plain(&python, &["-c", script]).success();
    let dir = scratch("python-pipe");
    let stats = dir.join("stats.json");
    let out = Preload::new().stats(&stats).run(&python, &["-c", script]).success();
    assert_eq!(out.stdout, plain.stdout);
    assert_eq!(out.stdout, format!("received {} ok\n", 256 << 20));
    let fast = unix_total(&stats, "fast_path_bytes");
    // Both ends count; the message switches to shared memory within its
    // first few MiB (the reader's handshake reads are short: see
    // docs/ipc-protocol.md, "Opting in").
    assert!(fast >= 2 * (232 << 20), "only {fast} bytes through shared memory");
}

#[test]
fn a_budget_smaller_than_a_ring_gives_a_smaller_ring() {
    // 1 MiB of budget, rings of 4 MiB by the class's geometry: the reader
    // makes a ring of 3 slots (once the earlier behaviour: none at all).
    let dir = scratch("budget-small");
    let stats = dir.join("stats.json");
    let args = ["blocking", "33554432", "1048576", "1048576"];
    let plain = run_plain(matrix(), &args).success();
    let policy = "[unix]\nring_bytes = \"1MiB\"\nhandshake_after = 0\n";
    let out = Preload::new().policy(&dir, policy).stats(&stats).run(matrix(), &args).success();
    assert_eq!(out.stdout, plain.stdout);
    assert!(unix_total(&stats, "fast_path_bytes") >= 2 * (24 << 20), "{out:#?}");
    let peaks: Vec<u64> =
        stats_files(&stats).iter().map(|f| read_stats(f)["unix"]["rings"]["peak_bytes"].as_u64().unwrap()).collect();
    assert!(peaks.iter().any(|&p| p > 0) && peaks.iter().all(|&p| p <= 1 << 20), "peak ring bytes {peaks:?}");
    assert_eq!(unix_fallbacks(&stats, "ring-budget"), 0);
}

#[test]
fn ring_budget_exhaustion_falls_back() {
    // A budget smaller than the smallest ring (two 16 KiB slots and the
    // header; a budget below the class's ring size gives a smaller ring):
    // the reader cannot make one.
    let dir = scratch("budget");
    let stats = dir.join("stats.json");
    let args = ["blocking", "16777216", "1048576", "1048576"];
    let plain = run_plain(matrix(), &args).success();
    let out =
        Preload::new().policy(&dir, "[unix]\nring_bytes = \"32KiB\"\n").stats(&stats).run(matrix(), &args).success();
    assert_eq!(out.stdout, plain.stdout);
    assert_eq!(unix_total(&stats, "fast_path_bytes"), 0);
    assert!(unix_fallbacks(&stats, "ring-budget") > 0);
    assert!(out.stderr.contains("ring_bytes budget used up"), "{}", out.stderr);
}

#[test]
fn unix_off_is_the_kernel_path() {
    let dir = scratch("unix-off");
    let stats = dir.join("stats.json");
    let args = ["blocking", "16777216", "1048576", "1048576"];
    let out = Preload::new().policy(&dir, "[unix]\nengine = \"off\"\n").stats(&stats).run(matrix(), &args).success();
    assert!(out.stdout.ends_with("ok\n"));
    assert_eq!(unix_total(&stats, "calls"), 0);
}

#[test]
fn unix_cpu_engine_is_the_fast_path_with_libc_copies() {
    let dir = scratch("unix-cpu");
    let stats = dir.join("stats.json");
    let args = ["blocking", "33554432", "1048576", "1048576"];
    Preload::new().policy(&dir, "[unix]\nengine = \"cpu\"\n").stats(&stats).run(matrix(), &args).success();
    assert!(unix_total(&stats, "fast_path_bytes") >= 2 * (24 << 20));
    let s = read_stats(&stats);
    assert_eq!(s["unix"]["engine"], "cpu");
}

#[test]
fn redis_through_the_wrapper() {
    if !have("redis-server") || !have("redis-cli") || !have("redis-benchmark") {
        return;
    }
    let dir = scratch("redis");
    let sock = dir.join("r.sock");
    let wrapper = root().join("scripts/ipc-offload");
    library();
    let mut server = Command::new(&wrapper)
        .args(["run", "--stats"])
        .arg(dir.join("server.json"))
        .args(["--", "redis-server", "--port", "0", "--unixsocket"])
        .arg(&sock)
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Stop<'a>(&'a mut Child);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _stop = Stop(&mut server);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A 256 MiB value in, the same 256 MiB out.
    let value: Vec<u8> = (0..256usize << 20).map(|i| (i * 7 + (i >> 11)) as u8).collect();
    let file = dir.join("value");
    std::fs::write(&file, &value).unwrap();
    let cli = |args: &[&str], stdin: Option<&Path>| {
        let mut cmd = Command::new(&wrapper);
        cmd.args(["run", "--", "redis-cli", "-s"]).arg(&sock).args(args);
        if let Some(f) = stdin {
            cmd.stdin(std::fs::File::open(f).unwrap());
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let out = cmd.spawn().unwrap().wait_with_output().unwrap();
        assert!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    assert_eq!(cli(&["-x", "set", "big"], Some(&file)), b"OK\n");
    let got = cli(&["--raw", "get", "big"], None);
    assert_eq!(got.len(), value.len() + 1, "value plus the newline redis-cli adds");
    assert!(got[..value.len()] == value[..], "the value came back different");
    // The project's redis load (1 MB values, 4 clients) completes.
    let mut bench = Command::new(&wrapper);
    bench.args(["run", "--", "redis-benchmark", "-s"]).arg(&sock);
    bench.args(["-t", "set,get", "-d", "1000000", "-n", "2000", "-c", "4", "-q"]);
    let out = run(&mut bench, Duration::from_secs(240)).success();
    assert!(out.stdout.contains("SET:") && out.stdout.contains("GET:"), "{}", out.stdout);
}

/// Counts, in an `strace -o` trace, the calls of each name in `names`.
fn strace_calls(trace: &Path, names: &[&str]) -> u64 {
    let text = std::fs::read_to_string(trace).unwrap();
    text.lines()
        .filter(|l| {
            // "PID name(args...) = N": the name follows the pid.
            let call = l.split_whitespace().nth(1).unwrap_or("");
            names.iter().any(|n| call.starts_with(&format!("{n}(")))
        })
        .count() as u64
}

#[test]
fn an_event_loops_large_calls_pay_no_system_call_of_the_library() {
    // A nonblocking reader never opts in, so its writer's REQUESTs are
    // refused: after the first ones, both ends' large calls go to the
    // kernel on a hint (docs/ipc-protocol.md, "What stays on the kernel
    // path"), without the getpid, fstat and fcntl that found it out.
    let Some(python) = python() else { return };
    if !have("strace") {
        return;
    }
    let program = r#"
import os, socket, time
a, b = socket.socketpair()
a.setblocking(False)
b.setblocking(False)
chunk = b"x" * (1 << 20)
calls = moved = 0
end = time.monotonic() + 0.6
while time.monotonic() < end:
    n = os.write(a.fileno(), chunk)
    calls += 1
    got = 0
    while got < n:
        got += len(os.read(b.fileno(), 1 << 20))
        calls += 1
    moved += n
print(calls, moved)
"#;
    let traced = |preload: bool| -> (u64, u64) {
        let dir = scratch("hints");
        let trace = dir.join("trace");
        let mut cmd = if preload { Preload::new().command("strace") } else { Command::new("strace") };
        cmd.args(["-f", "-qq", "-e", "trace=getpid,fstat,newfstatat,fcntl", "-o"])
            .arg(&trace)
            .arg(&python)
            .args(["-c", program]);
        if !preload {
            cmd.env_remove("LD_PRELOAD");
        }
        let out = run(&mut cmd, Duration::from_secs(60)).success();
        let calls = out.stdout.split_whitespace().next().unwrap().parse().unwrap();
        (calls, strace_calls(&trace, &["getpid", "fstat", "newfstatat", "fcntl"]))
    };
    let (_, without) = traced(false);
    let (calls, with) = traced(true);
    assert!(calls > 200, "only {calls} large calls");
    let extra = with.saturating_sub(without);
    // Before the hints: at least two (getpid, fstat) per call. With them:
    // the calls that set them (each hint lasts up to 100 ms) and the
    // library's start.
    assert!(extra * 4 < calls, "{extra} checks for {calls} large calls ({with} against {without} without the library)");
}

#[test]
fn a_reader_that_turns_blocking_keeps_the_fast_path() {
    // Phase 1: the reader reads nonblocking, after select. Phase 2, 150 ms
    // after it turned blocking (behind the library's back: a flag the
    // library caches and looks at again now and then), its blocking reads
    // take the shared-memory path, byte-exact.
    let Some(python) = python() else { return };
    let program = r#"
import hashlib, os, select, socket, time
a, b = socket.socketpair()
go_r, go_w = os.pipe()
n = 64 << 20
data = bytes(range(256)) * (n // 256)
if os.fork() == 0:
    b.close()
    os.write(a.fileno(), data[: 4 << 20])
    os.read(go_r, 1)
    view = memoryview(data)
    sent = 0
    while sent < n:
        sent += os.write(a.fileno(), view[sent : sent + (1 << 20)])
    os._exit(0)
a.close()
b.setblocking(False)
got = 0
while got < 4 << 20:
    select.select([b], [], [])
    got += len(os.read(b.fileno(), 1 << 20))
b.setblocking(True)
time.sleep(0.15)
os.write(go_w, b"g")
h = hashlib.sha256()
got = 0
while got < n:
    chunk = os.read(b.fileno(), 1 << 20)
    h.update(chunk)
    got += len(chunk)
os.wait()
print(h.hexdigest() == hashlib.sha256(data).hexdigest())
"#;
    let dir = scratch("hint-lapse");
    let stats = dir.join("stats.json");
    let out = Preload::new().stats(&stats).run(&python, &["-c", program]).success();
    assert_eq!(out.stdout.trim(), "True", "the bytes differ");
    let fast = unix_total(&stats, "fast_path_bytes");
    assert!(fast >= 32 << 20, "only {fast} bytes through shared memory once the reader blocked");
}
