//! Event-loop readers (epoll in its flavours, poll, ppoll, select, pselect
//! on nonblocking fds) and nonblocking writers on Unix stream sockets, pipes
//! and FIFOs, differentially: the same programs with and without the library
//! print the same bytes' count and hash and end the same way; with large
//! buffers the stats show that the shared-memory fast path carried the
//! stream. The programs are tests/c/evloop_matrix.c (one transfer, every
//! combination of transport, reader, read style and writer) and
//! tests/c/evloop_edges.c (one edge case per mode).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use ipc_offload_tests::reliability::{class_total, fallback_total, stats_files, write_behind_total};
use ipc_offload_tests::*;

const MIB: u64 = 1 << 20;

fn matrix() -> PathBuf {
    c_program("evloop_matrix", &["-O2", "-fno-builtin"])
}

fn edges() -> PathBuf {
    c_program("evloop_edges", &["-O2", "-fno-builtin", "-pthread"])
}

const TRANSPORTS: [&str; 3] = ["unix", "pipe", "fifo"];

const READERS: [&str; 10] = [
    "epoll-lt",
    "epoll-et",
    "epoll-oneshot",
    "epoll-exclusive",
    "epoll-lt-u64",
    "epoll-et-u64",
    "poll",
    "ppoll",
    "select",
    "pselect",
];

const RECVS: [&str; 2] = ["once", "drain"];

const WRITERS: [&str; 2] = ["blocking", "nonblocking"];

/// A threshold that 64 KiB reads reach, for both classes.
const THRESHOLD_64_KIB: &str = "[unix]\nmin_bytes = \"64KiB\"\n\n[pipe]\nmin_bytes = \"64KiB\"\n";

/// Byte `o` of the stream is byte `o % 8` (little-endian) of `word(o / 8)`:
/// evloop.h's `ev_word`.
fn word(w: u64) -> u64 {
    let mut x = w.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// The 64-bit FNV-1a hash of the first `total` bytes of the stream (once
/// per total and test run).
fn stream_hash(total: u64) -> u64 {
    static HASHES: OnceLock<Mutex<BTreeMap<u64, u64>>> = OnceLock::new();
    let mut hashes = HASHES.get_or_init(Default::default).lock().unwrap();
    *hashes.entry(total).or_insert_with(|| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for o in 0..total {
            h ^= (word(o >> 3) >> (8 * (o & 7))) & 0xff;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    })
}

/// One run of evloop_matrix.
#[derive(Clone, Copy, Debug)]
struct Case {
    transport: &'static str,
    reader: &'static str,
    recv: &'static str,
    writer: &'static str,
    buf: u64,
    total: u64,
}

impl Case {
    fn args(&self) -> Vec<String> {
        [self.transport, self.reader, self.recv, self.writer]
            .iter()
            .map(|s| s.to_string())
            .chain([self.buf.to_string(), self.total.to_string()])
            .collect()
    }

    /// The stats class of the transport.
    fn class(&self) -> &'static str {
        match self.transport {
            "unix" => "unix",
            "tcp4" | "tcp6" => "tcp",
            _ => "pipe",
        }
    }

    /// Large buffers and a long stream: the fast path must carry most of it.
    /// Not over TCP with a nonblocking writer: the kernel's deep TCP queue
    /// (megabytes on loopback) keeps a reader that checks every byte behind
    /// it, and a nonblocking writer waits at most 2 ms for its offer to be
    /// taken (docs/ipc-protocol.md, "TCP over loopback"): those cases must
    /// match the kernel, on whichever path.
    fn expects_fast_path(&self) -> bool {
        let tcp_nonblocking = self.class() == "tcp" && self.writer == "nonblocking";
        self.buf >= 65536 && self.total >= 16 * MIB && !tcp_nonblocking
    }
}

/// Every combination of the lists, with one buffer size and total.
fn cases(
    transports: &[&'static str],
    readers: &[&'static str],
    recvs: &[&'static str],
    writers: &[&'static str],
    buf: u64,
    total: u64,
) -> Vec<Case> {
    let mut all = Vec::new();
    for &transport in transports {
        for &reader in readers {
            for &recv in recvs {
                for &writer in writers {
                    all.push(Case { transport, reader, recv, writer, buf, total });
                }
            }
        }
    }
    all
}

/// Runs a case without and with the library (with `policy`, if given): the
/// run without must print the stream's line and exit 0, the run with it the
/// same, ending the same way. Returns the fast-path bytes of the case's
/// class (all processes: both ends count) and the write-behind offers, or
/// what went wrong.
fn differential(case: &Case, policy: Option<&str>) -> Result<(u64, Behind), String> {
    let args = case.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let expected = format!("bytes {} hash {:016x} eof\n", case.total, stream_hash(case.total));
    let plain = run_plain(matrix(), &args);
    if !plain.status.success() || plain.stdout != expected {
        return Err(format!("{case:?} without the library (expected {expected:?}): {plain:#?}"));
    }
    let dir = scratch("evloop");
    let stats = dir.join("stats.json");
    // A case takes about a second: a hang ends the whole group (a panic).
    let mut preload = Preload::new().stats(&stats).timeout(Duration::from_secs(60));
    if let Some(text) = policy {
        preload = preload.policy(&dir, text);
    }
    let out = preload.run(matrix(), &args);
    if out.stdout != plain.stdout || (out.status.code(), out.signal()) != (plain.status.code(), plain.signal()) {
        return Err(format!("{case:?} under the library differs from the kernel's {expected:?}: {out:#?}"));
    }
    if !out.library_lines().is_empty() {
        return Err(format!("{case:?}: the library complained: {}", out.stderr));
    }
    let fast = class_total(&stats, case.class(), "fast_path_bytes");
    let behind = Behind {
        offers: write_behind_total(&stats, case.class(), "offers"),
        grown: write_behind_total(&stats, case.class(), "grown"),
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok((fast, behind))
}

/// A case's write-behind figures (the stats' `write_behind`).
#[derive(Clone, Copy, Debug, Default)]
struct Behind {
    /// Writes that left their bytes in the ring.
    offers: u64,
    /// Of those, writes that grew the offer already open.
    grown: u64,
}

/// Runs `cases` (under `policy`), then fails with every case that went
/// wrong: a difference from the kernel, or (large buffers) too little on the
/// fast path. Both ends count what crossed shared memory, so at least the
/// total means each end saw at least half of the stream go that way (a
/// handshake of a few MiB through the kernel is allowed). After
/// `MAX_BROKEN` differences the rest of the group is skipped: each can cost
/// the program's 10 s readiness timeout. Returns the write-behind offers
/// figures of each case.
fn run_matrix(cases: &[Case], policy: Option<&str>) -> Vec<Behind> {
    const MAX_BROKEN: usize = 20;
    let mut wrong = Vec::new();
    let mut broken = 0;
    let mut offers = vec![];
    for (i, case) in cases.iter().enumerate() {
        if broken == MAX_BROKEN {
            wrong.push(format!("(stopped after {MAX_BROKEN} differences: {} cases not run)", cases.len() - i));
            break;
        }
        match differential(case, policy) {
            Err(e) => {
                broken += 1;
                wrong.push(e);
            }
            Ok((fast, behind)) => {
                eprintln!(
                    "{}: {fast} fast-path bytes, {} write-behind offers ({} grown)",
                    case.args().join(" "),
                    behind.offers,
                    behind.grown
                );
                offers.push(behind);
                if case.expects_fast_path() && fast < case.total {
                    wrong.push(format!("{case:?}: only {fast} fast-path bytes of 2 x {}", case.total));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{} cases, these went wrong:\n{}", cases.len(), wrong.join("\n"));
    offers
}

/// Every reader, read style and writer with 16 MiB buffers: the nonblocking
/// writer, too, must hand most of the stream over through shared memory.
fn large_buffers_on(transport: &'static str) {
    run_matrix(&cases(&[transport], &READERS, &RECVS, &WRITERS, 16 * MIB, 64 * MIB), None);
}

#[test]
fn every_event_loop_reader_with_16_mib_buffers_on_a_socket_takes_the_fast_path() {
    large_buffers_on("unix");
}

#[test]
fn every_event_loop_reader_with_16_mib_buffers_on_a_pipe_takes_the_fast_path() {
    large_buffers_on("pipe");
}

#[test]
fn every_event_loop_reader_with_16_mib_buffers_on_a_fifo_takes_the_fast_path() {
    large_buffers_on("fifo");
}

#[test]
fn every_event_loop_reader_with_16_mib_buffers_on_tcp_over_ipv4_loopback_takes_the_fast_path() {
    large_buffers_on("tcp4");
}

#[test]
fn every_event_loop_reader_with_16_mib_buffers_on_tcp_over_ipv6_loopback_takes_the_fast_path() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback here (binding [::1] failed)");
        return;
    }
    large_buffers_on("tcp6");
}

#[test]
fn event_loop_readers_with_small_buffers_on_tcp_match_the_kernel() {
    // 8 KiB reads (below any threshold) and 1 MiB reads with 64 KiB writes
    // (the fast path with a TCP writer's usual write size).
    let mut all = cases(&["tcp4"], &READERS, &RECVS, &WRITERS, 8192, 16 * MIB);
    all.extend(cases(&["tcp4"], &["epoll-lt", "epoll-et", "poll", "select"], &RECVS, &WRITERS, MIB, 64 * MIB));
    run_matrix(&all, None);
}

#[test]
fn event_loop_readers_with_64_kib_buffers_under_a_64_kib_threshold_take_the_fast_path() {
    // The built-in threshold (256 KiB) is above these reads: the policy
    // lowers it, as the README's Redis example does. The u64 variants and
    // ppoll and pselect wait as their siblings do; the 16 MiB tests have them.
    let readers = ["epoll-lt", "epoll-et", "epoll-oneshot", "epoll-exclusive", "poll", "select"];
    run_matrix(&cases(&TRANSPORTS, &readers, &RECVS, &WRITERS, 65536, 64 * MIB), Some(THRESHOLD_64_KIB));
}

#[test]
fn every_event_loop_reader_takes_a_write_behind_writers_stream_in_order() {
    // `write_behind`: the nonblocking writer's writes return once placed
    // (docs/ipc-protocol.md, "Write-behind (opt-in)"), on Unix sockets and
    // over TCP. Every reader and read style, with 16 MiB buffers (each
    // read takes whole offers and more) and 64 KiB ones (an offer taken in
    // 16 reads).
    const POLICY: &str = "[unix]\nwrite_behind = true\nmin_bytes = \"64KiB\"\n\n\
                          [tcp]\nwrite_behind = true\nmin_bytes = \"64KiB\"\n";
    let transports = ["unix", "tcp4"];
    let mut all = cases(&transports, &READERS, &RECVS, &["nonblocking"], 16 * MIB, 64 * MIB);
    all.extend(cases(
        &transports,
        &["epoll-lt", "epoll-et", "poll", "select"],
        &RECVS,
        &["nonblocking"],
        65536,
        64 * MIB,
    ));
    let figures = run_matrix(&all, Some(POLICY));
    let none: Vec<_> =
        all.iter().zip(&figures).filter(|(_, b)| b.offers == 0).map(|(c, _)| c.args().join(" ")).collect();
    assert!(none.is_empty(), "no write left its offer open in: {none:?}");
    // A write that finds the last offer still open grows it when the ring
    // has room (docs/ipc-protocol.md, "Growing an offer behind").
    let grown: u64 = figures.iter().map(|b| b.grown).sum();
    assert!(grown > 0, "no write grew an open offer in {} cases", all.len());
}

/// A reader of 16 KiB buffers (hiredis, redis-benchmark) opts in once its
/// filled reads carried the built-in `handshake_after` (docs/ipc-protocol.md,
/// "Readers with small buffers"); a write-behind writer's offers, and a
/// blocking writer's, are then taken 16 KiB per read. Without the opt-in
/// (or without routing the reads of a ring an event loop's wait made) no
/// byte took the fast path. Over TCP such a reader stays with the kernel,
/// by design: the same bytes, none through shared memory.
#[test]
fn event_loop_readers_with_16_kib_buffers_take_the_fast_path() {
    const POLICY: &str = "[unix]\nwrite_behind = true\n\n[tcp]\nwrite_behind = true\n";
    let readers = ["epoll-lt", "epoll-et", "poll", "select"];
    let mut all = cases(&["unix"], &readers, &RECVS, &WRITERS, 16 << 10, 64 * MIB);
    all.extend(cases(&["pipe"], &readers, &RECVS, &["blocking"], 16 << 10, 64 * MIB));
    all.extend(cases(&["tcp4"], &["epoll-lt", "poll"], &["once"], &WRITERS, 16 << 10, 64 * MIB));
    let mut wrong = Vec::new();
    for case in &all {
        // Both ends count: at least half the stream, each.
        let tcp = case.class() == "tcp";
        match differential(case, Some(POLICY)) {
            Err(e) => wrong.push(e),
            Ok((fast, _)) if tcp && fast > 0 => wrong.push(format!("{case:?}: {fast} fast-path bytes over TCP")),
            Ok((fast, _)) if !tcp && fast < case.total => {
                wrong.push(format!("{case:?}: only {fast} fast-path bytes of 2 x {}", case.total))
            }
            Ok((fast, behind)) => {
                eprintln!("{}: {fast} fast-path bytes, {} offers behind", case.args().join(" "), behind.offers)
            }
        }
    }
    assert!(wrong.is_empty(), "{} cases, these went wrong:\n{}", all.len(), wrong.join("\n"));
}

/// Without write-behind a nonblocking writer does not hold itself for a
/// reader of 16 KiB buffers (it would wait for 64 of its reads per MiB,
/// where the kernel's write returns once the socket is full): its writes
/// go to the kernel (`reader-reads-small`), never waiting out a patience
/// (`not-taken`), and the reader lets its ring go. The same bytes as the
/// kernel's, on sockets and pipes.
#[test]
fn a_nonblocking_writer_leaves_a_reader_of_16_kib_buffers_to_the_kernel() {
    let all = cases(&["unix", "pipe"], &["epoll-lt", "poll"], &["once"], &["nonblocking"], 16 << 10, 64 * MIB);
    let mut wrong = Vec::new();
    for case in &all {
        let args = case.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let plain = run_plain(matrix(), &args);
        let dir = scratch("evloop-small");
        let stats = dir.join("stats.json");
        let out = Preload::new().stats(&stats).timeout(Duration::from_secs(60)).run(matrix(), &args);
        let class = case.class();
        let small = fallback_total(&stats, class, "reader-reads-small");
        let not_taken = fallback_total(&stats, class, "not-taken");
        let fast = class_total(&stats, class, "fast_path_bytes");
        eprintln!("{}: reader-reads-small {small}, not-taken {not_taken}, fast {fast}", case.args().join(" "));
        if !plain.status.success() || out.stdout != plain.stdout || out.status.code() != plain.status.code() {
            wrong.push(format!("{case:?}: differs from the kernel's run {plain:#?}: {out:#?}"));
        } else if small == 0 || not_taken > 0 || fast > 0 {
            wrong.push(format!("{case:?}: reader-reads-small {small}, not-taken {not_taken}, fast {fast}"));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(wrong.is_empty(), "{} cases, these went wrong:\n{}", all.len(), wrong.join("\n"));
}

#[test]
fn event_loop_readers_with_small_buffers_match_the_kernel() {
    // 8 KiB reads, below any threshold: every combination. 1-byte reads
    // (one wait per byte, slow): level-triggered epoll and poll.
    let mut all = cases(&TRANSPORTS, &READERS, &RECVS, &WRITERS, 8192, 16 * MIB);
    all.extend(cases(&TRANSPORTS, &["epoll-lt", "poll"], &RECVS, &["blocking"], 1, 256 << 10));
    run_matrix(&all, None);
}

// --- edge cases: evloop_edges.c -----------------------------------------------

/// What an edge case did under the library.
#[derive(Debug)]
struct Edge {
    out: Outcome,
    /// Fast-path bytes, sockets and pipes, all processes that wrote stats.
    fast: u64,
    /// The stats files of the run with the library.
    stats: Vec<PathBuf>,
}

/// Runs `evloop_edges ARGS` without and with the library: the run without
/// prints `expected` and exits 0; the run with it prints the same and ends
/// the same way, within `watchdog`.
fn edge_case(args: &[&str], expected: &str, watchdog: Duration) -> Edge {
    let mut plain = Command::new(edges());
    plain.args(args).env_remove("LD_PRELOAD");
    let plain = run(&mut plain, watchdog);
    assert_eq!(plain.stdout, expected, "{args:?} without the library: {plain:#?}");
    assert!(plain.status.success(), "{args:?} without the library: {plain:#?}");
    let dir = scratch(&format!("evloop-edge-{}", args[0]));
    let stats = dir.join("stats.json");
    let out = Preload::new().stats(&stats).timeout(watchdog).run(edges(), args);
    assert_eq!(out.stdout, plain.stdout, "{args:?}: {out:#?}");
    assert_eq!((out.status.code(), out.signal()), (plain.status.code(), plain.signal()), "{args:?}: {out:#?}");
    assert!(out.library_lines().is_empty(), "{args:?}: {}", out.stderr);
    let fast = fast_bytes(&stats);
    eprintln!("{args:?}: {fast} fast-path bytes");
    Edge { out, fast, stats: stats_files(&stats) }
}

/// Fast-path bytes of both classes over FILE and FILE.PID.
fn fast_bytes(stats: &Path) -> u64 {
    class_total(stats, "unix", "fast_path_bytes") + class_total(stats, "pipe", "fast_path_bytes")
}

const WATCHDOG: Duration = Duration::from_secs(90);

/// A stream edge case: as `edge_case`, and the fast path carried some of it.
fn stream_edge(args: &[&str], expected: &str) -> Edge {
    let e = edge_case(args, expected, WATCHDOG);
    assert!(e.fast > 0, "{args:?}: the stream never took the fast path: {:#?}", e.out);
    e
}

#[test]
fn two_threads_sharing_one_epoll_set_read_the_stream_in_order() {
    // ET | ONESHOT, re-armed after each event: one thread reads at a time.
    stream_edge(&["shared-epoll"], "shared-epoll: 134217728 bytes in order, then eof; writer exited 0\n");
}

#[test]
fn a_wait_that_began_before_the_first_twin_never_returns_a_tag() {
    // In shared-epoll one thread often enters epoll_wait before the other
    // reads for the first time: no reader channel, no twin yet, so the
    // library hands that wait to the kernel as it is. The other thread's
    // read then opts in and puts its side channel in the set, and the first
    // wait wakes with the library's tag. CI found that tag reaching the
    // program ("an epoll event with data 0x..., which was never
    // registered"), about one run in three on a loaded machine: the waits
    // that began without the library must translate what they return once
    // a twin exists. Ten runs with both CPUs kept busy.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let runs = std::panic::catch_unwind(|| {
        for _ in 0..10 {
            edge_case(
                &["shared-epoll"],
                "shared-epoll: 134217728 bytes in order, then eof; writer exited 0\n",
                WATCHDOG,
            );
        }
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.into_iter().for_each(|t| t.join().unwrap());
    if let Err(panic) = runs {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn a_socket_added_while_another_thread_waits_is_reported_to_that_wait() {
    stream_edge(
        &["add-while-waiting"],
        "add-while-waiting: the waiting epoll_wait reported the socket that another thread added\n\
         add-while-waiting: 67108864 bytes in order, then eof; writer exited 0\n",
    );
}

#[test]
fn a_set_inside_a_set() {
    stream_edge(&["nested"], "nested: 67108864 bytes in order, then eof; writer exited 0\n");
}

#[test]
fn a_reader_that_leaves_its_epoll_set_answers_its_writer_at_once() {
    // While the socket's only twin lived, the reader was quiet (the wait
    // answered REQUESTs); the writer asks after its first 4 MiB, when the
    // set is gone. Once the quiet stayed: the REQUEST waited for the
    // reader's 64th read, some 16 MiB later.
    let e = stream_edge(&["leaves-epoll"], "leaves-epoll: 67108864 bytes in order, then eof; writer exited 0\n");
    // Both processes count what went through the ring: 59.5 MiB each (49
    // when the quiet stayed).
    assert!(e.fast >= 2 * (56 << 20), "{} MiB through the ring, both sides: {:#?}", e.fast >> 20, e.out);
}

#[test]
fn a_forked_child_reads_through_the_set_it_inherited() {
    stream_edge(
        &["fork-epoll"],
        "fork-epoll: the child read 67108864 bytes in order through the set it inherited, then eof\n\
         fork-epoll: reader exited 0; writer exited 0\n",
    );
}

#[test]
fn a_forked_child_hears_the_data_word_its_parent_set_last() {
    // The child registers the socket in the set it shares with its parent,
    // the parent changes the registration's data word, and the child's
    // first large read opts the socket in. The child's note of its own
    // registration was stale by then: its waits reported the old word
    // (the library's twin was made from the note) until notes were kept
    // only for sets the process made itself.
    stream_edge(
        &["fork-mod"],
        "fork-mod: the child read 67108864 bytes in order, every event with the parent's data word\n\
         fork-mod: reader exited 0; writer exited 0\n",
    );
}

#[test]
fn epollin_toggled_with_epoll_ctl_mod_as_libzmq_does() {
    // Also: while EPOLLIN is off, no wait reports it (bytes that the
    // library holds must not make the fd readable behind the mask).
    stream_edge(
        &["ctl-mod"],
        "ctl-mod: every epoll_ctl returned 0, EPOLLIN never reported while off; 67108864 bytes in order, then \
         eof; writer exited 0\n",
    );
}

#[test]
fn closing_the_original_while_its_dup_is_registered_and_read() {
    stream_edge(
        &["dup-close"],
        "dup-close: the original closed after 16 MiB; 67108864 bytes in order through the dup, then eof; writer \
         exited 0\n",
    );
}

#[test]
fn closing_the_registered_fd_while_a_dup_keeps_its_file_open() {
    // The kernel's set keeps reporting the closed fd's file (with its data)
    // as long as the dup holds it open.
    stream_edge(
        &["close-registered"],
        "close-registered: the original closed after 16 MiB; 67108864 bytes in order through the dup, then eof; \
         writer exited 0\n",
    );
}

#[test]
fn a_busy_socket_does_not_starve_a_pipe_in_the_same_set() {
    // The socket's writer streams until the reader has all 200 pipe bytes:
    // a loop that stopped reporting the pipe would hang (10 s: exit 1).
    edge_case(
        &["starvation"],
        "starvation: 200 pipe bytes in order while the stream flowed; the stream in order (at least 256 MiB: yes), \
         then eof\nstreamer exited 0; trickler exited 0\n",
        WATCHDOG,
    );
}

#[test]
fn an_edge_triggered_reader_that_drained_to_eagain_sees_no_edge_twice() {
    let mut expected = String::new();
    for round in 0..5 {
        expected += &format!("round {round}: 4 MiB, drained to EAGAIN, then no event within 300 ms\n");
    }
    expected += "edge-once: 20971520 bytes in order, then eof; writer exited 0\n";
    edge_case(&["edge-once"], &expected, WATCHDOG);
}

#[test]
fn a_one_shot_fd_the_kernel_disarmed_before_it_opted_in_stays_disarmed() {
    // The kernel reported the socket (EPOLLONESHOT) before its first large
    // read opted it in: its twin must start disarmed. The epoll_ctl hooks'
    // note of the registration cannot say so, so a one-shot registration is
    // looked up in fdinfo (found in review: the twin made from the note was
    // armed, and the next message was reported to a wait that had not
    // re-armed the fd).
    let mut expected = "oneshot-late: the kernel reported the socket once\n".to_owned();
    for round in 1..6 {
        expected += &format!("round {round}: no event within 300 ms\n");
    }
    expected += "oneshot-late: 25165824 bytes in order, then eof; writer exited 0\n";
    edge_case(&["oneshot-late"], &expected, WATCHDOG);
}

#[test]
fn epollout_is_not_followed_by_eagain() {
    // A nonblocking writer into a slow reader: when epoll says EPOLLOUT, the
    // next write makes progress (fewer than 3 exceptions in 32 MiB).
    edge_case(
        &["epollout"],
        "epollout: the reader got 33554432 bytes in order, then eof\n\
         epollout: the writer wrote 33554432 bytes, spurious 0; reader exited 0\n",
        WATCHDOG,
    );
}

#[test]
fn splice_after_the_fast_path() {
    stream_edge(
        &["splice-after"],
        "splice-after: the first 67108864 bytes in order with read() and recv() in an epoll loop\n\
         splice-after: then up to 268435456 by splice(2) through a pipe, in order, then eof; writer exited 0\n",
    );
}

#[test]
fn raw_system_calls_after_the_fast_path() {
    stream_edge(
        &["raw-after"],
        "raw-after: the first 67108864 bytes in order with read() and recv() in an epoll loop\n\
         raw-after: then up to 268435456 by raw SYS_read and SYS_recvfrom, in order, then eof; writer exited 0\n",
    );
}

const EXEC_READER: &str =
    "exec-reader: bytes 67108864 to 268435456 of the stream, in order, then eof; writer exited 0\n";

#[test]
fn exec_after_the_fast_path_with_the_library() {
    stream_edge(
        &["exec-after"],
        &format!(
            "exec-after: the first 67108864 bytes in order with read() and recv() in an epoll loop\n{EXEC_READER}"
        ),
    );
}

#[test]
fn exec_after_the_fast_path_without_the_library() {
    stream_edge(
        &["exec-after-nolib"],
        &format!(
            "exec-after-nolib: the first 67108864 bytes in order with read() and recv() in an epoll loop\n{EXEC_READER}"
        ),
    );
}

#[test]
fn an_epoll_set_inherited_across_exec_keeps_the_fast_path() {
    // The anchors lose their acceleration at exec (OpenOnload hands the new
    // program a plain kernel set): here the exec'd reader learns the set it
    // inherited at its first wait, and its own reads take the fast path.
    let e = stream_edge(
        &["exec-epoll"],
        "exec-epoll: the first 67108864 bytes in order in an epoll loop\n\
         exec-epoll-reader: bytes 67108864 to 268435456 of the stream through the inherited set, in order, \
         then eof; writer exited 0\n",
    );
    let pid: u32 = e
        .out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("exec-epoll-reader pid "))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid line: {:#?}", e.out));
    let reader = e
        .stats
        .iter()
        .map(|f| read_stats(f))
        .find(|s| s["pid"].as_u64() == Some(u64::from(pid)))
        .unwrap_or_else(|| panic!("no stats of the exec'd reader {pid}"));
    let fast = counter(&reader, "unix", "fast_path_bytes");
    assert!(fast >= 64 * MIB, "the exec'd reader took only {fast} bytes from the fast path");
}

#[test]
fn epoll_ctl_never_waits_for_a_spinning_wait() {
    // An OpenOnload defect: a thread spinning in epoll_wait delayed
    // epoll_ctl by over a second. Here a wait never holds what epoll_ctl
    // needs.
    stream_edge(
        &["ctl-while-spinning"],
        "ctl-while-spinning: 134217728 bytes in order, then eof; epoll_ctl never waited; writer exited 0\n",
    );
}

/// The reader kills the writer after 32 MiB of 256 MiB; on a socket and on
/// a pipe.
fn killed_writer(mode: &str) {
    for transport in ["unix", "pipe"] {
        edge_case(&[mode, transport], "prefix ok\nend\nwriter killed by KILL\n", WATCHDOG);
    }
}

#[test]
fn a_killed_writer_gives_an_epoll_reader_a_prefix_then_eof() {
    killed_writer("kill-writer-epoll");
}

#[test]
fn a_killed_writer_gives_a_poll_reader_a_prefix_then_eof() {
    killed_writer("kill-writer-poll");
}

#[test]
fn a_killed_writer_gives_a_select_reader_a_prefix_then_eof() {
    killed_writer("kill-writer-select");
}

#[test]
fn a_killed_reader_ends_a_nonblocking_writer() {
    // EPIPE (SIGPIPE ignored) or the writes completed: never a hang.
    for transport in ["unix", "pipe"] {
        edge_case(&["kill-reader", transport], "writer ended\nreader killed by KILL\n", WATCHDOG);
    }
}
