//! Write-behind (`[unix]`/`[tcp] write_behind = true`), differentially: a
//! nonblocking writer's large writes return once their bytes are placed in
//! the reader's ring, and every reader still gets the writer's bytes, in
//! order, then EOF, exactly as without the library: readers that take the
//! offers in an epoll loop, readers that stop taking part (raw system
//! calls, an exec without the library), writers that write small after
//! large, close, exit, fork or are killed with offers open. The program is
//! tests/c/behind_edges.c (one case per mode); the stats show that offers
//! were left open, and, where the reader stopped taking them, given back
//! through the kernel. Over TCP (`tcp_*` tests) the same cases run on a
//! loopback connection, where an offer may open while bytes written before
//! it are still on their way or unread in the kernel: the reader takes
//! those first, by the offer's stream position. docs/ipc-protocol.md,
//! "Write-behind (opt-in)".

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ipc_offload_tests::reliability::{class_total, write_behind_total};
use ipc_offload_tests::*;

const WRITE_BEHIND: &str = "[unix]\nwrite_behind = true\n";
const TCP_WRITE_BEHIND: &str = "[tcp]\nwrite_behind = true\n";
const STREAM: &str = "bytes 67108864 hash d23246cd8221208e eof\n";
const WATCHDOG: Duration = Duration::from_secs(90);

fn edges() -> PathBuf {
    c_program("behind_edges", &["-O2", "-fno-builtin"])
}

/// What a case did under the library, summed over its processes' stats.
#[derive(Debug)]
struct Behind {
    out: Outcome,
    offers: u64,
    given_back: u64,
    fast: u64,
}

/// Runs `behind_edges MODE TRANSPORT` without the library (it must print
/// `expected` and exit 0) and with it under `policy`: the same output, the
/// same end, no complaint of the library.
fn case_on(transport: &str, mode: &str, expected: &str, policy: &str) -> Behind {
    let mut plain = Command::new(edges());
    plain.args([mode, transport]).env_remove("LD_PRELOAD");
    let plain = run(&mut plain, WATCHDOG);
    assert_eq!(plain.stdout, expected, "{mode} {transport} without the library: {plain:#?}");
    assert!(plain.status.success(), "{mode} {transport} without the library: {plain:#?}");
    let dir = scratch(&format!("behind-{mode}-{transport}"));
    let stats = dir.join("stats.json");
    let out = Preload::new().policy(&dir, policy).stats(&stats).timeout(WATCHDOG).run(edges(), &[mode, transport]);
    let what = format!("{mode} {transport}");
    assert_eq!(out.stdout, plain.stdout, "{what}: {out:#?}");
    assert_eq!((out.status.code(), out.signal()), (plain.status.code(), plain.signal()), "{what}: {out:#?}");
    assert!(out.library_lines().is_empty(), "{what}: {}", out.stderr);
    let class = if transport == "unix" { "unix" } else { "tcp" };
    let b = Behind {
        offers: write_behind_total(&stats, class, "offers"),
        given_back: write_behind_total(&stats, class, "given_back_bytes"),
        fast: class_total(&stats, class, "fast_path_bytes"),
        out,
    };
    eprintln!("{what}: {} offers behind, {} bytes given back, {} fast-path bytes", b.offers, b.given_back, b.fast);
    b
}

fn case_under(mode: &str, expected: &str, policy: &str) -> Behind {
    case_on("unix", mode, expected, policy)
}

/// How much a killed writer's reader had read when told the writer's
/// last write returned (behind_edges' stderr).
fn told(b: &Behind) -> Option<&str> {
    b.out.stderr.lines().find_map(|l| l.strip_prefix("reader: ")?.strip_suffix(" bytes read when told"))
}

fn case(mode: &str, expected: &str) -> Behind {
    case_under(mode, expected, WRITE_BEHIND)
}

fn tcp_case(mode: &str, expected: &str) -> Behind {
    case_on("tcp4", mode, expected, TCP_WRITE_BEHIND)
}

#[test]
fn small_writes_after_large_ones_come_after_their_offers() {
    let b = case("mixed", STREAM);
    assert!(b.offers > 0, "no write left its offer open: {b:#?}");
}

#[test]
fn small_writes_come_after_offers_given_back_to_a_reader_that_left() {
    // The reader turns to raw reads: it takes no offer (the ring-first
    // rule cannot order anything for it); each small write must end the
    // offer before it, giving its bytes back through the kernel first.
    let b = case("mixed-raw", STREAM);
    assert!(b.offers > 0 && b.given_back > 0, "no offer was left open and given back: {b:#?}");
}

#[test]
fn a_reader_takes_each_offer_before_the_kernel_bytes_written_after_it() {
    // The writer's small writes are raw system calls: nothing ends its
    // offers before them; the reader's order rule (ring first) does.
    let b = case("raw-writer", STREAM);
    assert!(b.offers > 0, "no write left its offer open: {b:#?}");
}

#[test]
fn a_reader_that_turns_to_raw_system_calls_gets_the_untaken_offers_through_the_kernel() {
    let b = case("raw", STREAM);
    assert!(b.offers > 0 && b.given_back > 0, "no offer was left open and given back: {b:#?}");
}

#[test]
fn a_reader_that_execs_without_the_library_gets_the_rest_in_order() {
    let expected = "bytes 16777216 hash 2b62f05b31c0c553 then exec\nexec-reader got 50331648 bytes to eof\n";
    let b = case("exec", expected);
    assert!(b.offers > 0 && b.given_back > 0, "no offer was left open and given back: {b:#?}");
}

#[test]
fn a_writer_that_exits_with_its_last_offer_untaken_delivers_it() {
    let b = case("exits", STREAM);
    assert!(b.given_back > 0, "the last offer was not given back at exit: {b:#?}");
}

#[test]
fn a_writer_that_closes_with_its_last_offer_untaken_delivers_it_before_eof() {
    let b = case("close", STREAM);
    assert!(b.given_back > 0, "the last offer was not given back at close: {b:#?}");
}

#[test]
fn a_shutdown_for_writing_comes_after_the_last_offers_bytes() {
    let b = case("shutdown", STREAM);
    assert!(b.given_back > 0, "the last offer was not given back at shutdown: {b:#?}");
}

#[test]
fn a_forked_child_writes_after_its_parents_offers() {
    let b = case("fork", STREAM);
    assert!(b.offers > 0, "no write left its offer open: {b:#?}");
}

#[test]
fn a_killed_writer_loses_none_of_what_its_writes_returned() {
    // The killed writer writes no stats: the reader's show the fast path.
    let b = case("killed", "prefix ok eof\n");
    assert!(b.fast > 0, "the stream never took the fast path: {b:#?}");
    // Its last write returned before the reader took a byte of it: the
    // reader had read 23 MiB of 24 when told, and the rest came from the
    // dead writer's offer.
    let told = told(&b);
    assert_eq!(told, Some("24117248"), "{b:#?}");
}

#[test]
fn without_write_behind_no_offer_outlives_its_write() {
    let b = case_under("raw", STREAM, "[unix]\nwrite_behind = false\n");
    assert_eq!((b.offers, b.given_back), (0, 0), "{b:#?}");
    assert!(b.fast > 0, "the stream never took the fast path: {b:#?}");
}

#[test]
fn tcp_small_writes_after_large_ones_come_after_their_offers() {
    // A large write after small ones opens its offer while their bytes
    // may still be unread in the reader's kernel queue: they come first.
    let b = tcp_case("mixed", STREAM);
    assert!(b.offers > 0, "no write left its offer open: {b:#?}");
}

#[test]
fn tcp_over_ipv6_small_writes_after_large_ones_come_after_their_offers() {
    let b = case_on("tcp6", "mixed", STREAM, TCP_WRITE_BEHIND);
    assert!(b.offers > 0, "no write left its offer open: {b:#?}");
}

#[test]
fn tcp_a_reader_takes_each_offer_between_the_kernel_bytes_before_and_after_it() {
    // Raw 4 KiB writes follow each offer into the kernel; bytes before it
    // may still be queued there too. The reader reads the kernel only up
    // to the offer's stream position, then the offer, then the rest.
    let b = tcp_case("raw-writer", STREAM);
    assert!(b.offers > 0, "no write left its offer open: {b:#?}");
}

#[test]
fn tcp_a_reader_that_turns_to_raw_system_calls_gets_the_untaken_offers_through_the_kernel() {
    let b = tcp_case("raw", STREAM);
    assert!(b.offers > 0 && b.given_back > 0, "no offer was left open and given back: {b:#?}");
}

#[test]
fn tcp_a_writer_that_closes_with_its_last_offer_untaken_delivers_it_before_eof() {
    let b = tcp_case("close", STREAM);
    assert!(b.given_back > 0, "the last offer was not given back at close: {b:#?}");
}

#[test]
fn tcp_the_kernel_bytes_before_a_killed_writers_last_offer_come_first_after_its_fin() {
    // The reader starts reading once the writer is dead: 1.5 MiB of kernel
    // bytes, then the FIN, are queued when it reads, and the last offer
    // starts after them. The FIN counts in the socket's received total
    // (not in its queue): read as a byte, it would put the offer before
    // the kernel's last byte.
    let b = tcp_case("killed-kernel", "prefix ok eof\n");
    assert!(b.fast > 0, "the stream never took the fast path: {b:#?}");
    let told = told(&b);
    assert_eq!(told, Some("24117248"), "the last write did not return before the reader read on: {b:#?}");
}

#[test]
fn tcp_a_killed_writer_loses_none_of_what_its_writes_returned() {
    let b = tcp_case("killed", "prefix ok eof\n");
    assert!(b.fast > 0, "the stream never took the fast path: {b:#?}");
}

#[test]
fn tcp_kernel_bytes_on_their_way_come_before_the_offer_and_those_written_after_it_after() {
    // On a rate-limited loopback the 256 KiB written before each offer are
    // still arriving while the reader reads, and the raw 4 KiB written
    // after it arrive right behind them: a read must stop at the offer's
    // start, whatever has arrived by the time it reads.
    if !slow_loopback::available() {
        return;
    }
    let args = ["in-flight", "tcp4"];
    let plain = run(&mut slow_loopback::command(&edges(), &args, &[]), WATCHDOG);
    assert_eq!(plain.stdout, STREAM, "without the library: {plain:#?}");
    for round in 0..3 {
        let dir = scratch(&format!("behind-in-flight-{round}"));
        let (policy, stats) = (dir.join("policy.toml"), dir.join("stats.json"));
        std::fs::write(&policy, TCP_WRITE_BEHIND).unwrap();
        let env = [
            ("LD_PRELOAD", library().as_os_str()),
            ("IPC_OFFLOAD_POLICY", policy.as_os_str()),
            ("IPC_OFFLOAD_STATS", stats.as_os_str()),
        ];
        let out = run(&mut slow_loopback::command(&edges(), &args, &env), WATCHDOG);
        assert_eq!(out.stdout, STREAM, "round {round}: {out:#?}");
        assert!(out.status.success() && out.library_lines().is_empty(), "round {round}: {out:#?}");
        let offers = write_behind_total(&stats, "tcp", "offers");
        eprintln!("in-flight round {round}: {offers} offers behind");
        assert!(offers > 0, "round {round}: no write left its offer open");
    }
}
