//! Fortified programs (-O2 -D_FORTIFY_SOURCE=2) call __memcpy_chk,
//! __memmove_chk and __mempcpy_chk: large copies are offloaded, and an
//! overflowing copy aborts exactly as glibc makes it abort.

use std::process::Command;

use ipc_offload_tests::*;

fn program() -> std::path::PathBuf {
    c_program("fortify", &["-O2", "-D_FORTIFY_SOURCE=2"])
}

#[test]
fn the_program_really_calls_the_chk_functions() {
    let out = Command::new("nm").arg("-D").arg(program()).output().expect("nm (binutils) runs");
    let symbols = String::from_utf8_lossy(&out.stdout);
    for f in ["__memcpy_chk", "__memmove_chk", "__mempcpy_chk"] {
        assert!(symbols.contains(f), "{f} is not imported; the test would prove nothing:\n{symbols}");
    }
}

#[test]
fn large_fortified_copies_are_offloaded_and_exact() {
    let dir = scratch("fortify");
    let stats = dir.join("stats.json");
    let policy = "[memcpy]\nengine = \"async-cpu\"\nmin_bytes = \"1MiB\"\nworkers = 1\n";
    // Each run makes three fortified calls: memcpy of N, memmove of N - 1
    // and mempcpy of N - 5 bytes; those of 1 MiB or more are counted.
    for (n, counted) in [("8388608", 3), ("1048581", 3), ("1048576", 1), ("1048575", 0), ("3000001", 3)] {
        let out = Preload::new().policy(&dir, policy).stats(&stats).run(program(), &["ok", n]).success();
        assert_eq!(out.stdout, format!("fortified copies of {n} bytes ok\n"));
        assert_eq!(counter(&read_stats(&stats), "memcpy", "calls"), counted, "N = {n}");
    }
    // The last run: three fortified calls of ~3 MB. The copy and the
    // mempcpy go through the engine; the memmove by one byte overlaps too
    // closely to split and goes to libc's memmove, which the stats say.
    let s = read_stats(&stats);
    assert_eq!(counter(&s, "memcpy", "calls"), 3, "{s}");
    assert_eq!(engine_bytes(&s, "memcpy", "async-cpu"), 3_000_001 + 2_999_996, "{s}");
    assert_eq!(fallbacks(&s, "memcpy", "overlap-close"), 1, "{s}");
}

fn overflow(mode: &str, n: &str) {
    let plain = run_plain(program(), &[mode, n]);
    let dir = scratch("overflow");
    let policy = "[memcpy]\nengine = \"async-cpu\"\nmin_bytes = \"64KiB\"\n";
    let preloaded = Preload::new().policy(&dir, policy).run(program(), &[mode, n]);
    assert_eq!(plain.signal(), Some(libc::SIGABRT), "{plain:?}");
    assert_eq!(preloaded.signal(), Some(libc::SIGABRT), "{preloaded:?}");
    assert_eq!(preloaded.stdout, "", "the overflowing copy returned");
    assert_eq!(preloaded.stderr, plain.stderr);
    assert_eq!(preloaded.stderr, "*** buffer overflow detected ***: terminated\n");
}

#[test]
fn overflowing_memcpy_aborts_like_glibc_above_the_threshold() {
    overflow("overflow", "9000000");
}

#[test]
fn overflowing_memcpy_aborts_like_glibc_below_the_threshold() {
    // 8 MiB + 1 into an 8 MiB object with a 16 MiB threshold: the fast path.
    let plain = run_plain(program(), &["overflow", "8388609"]);
    let dir = scratch("overflow-small");
    let out = Preload::new().policy(&dir, "[memcpy]\nmin_bytes = \"16MiB\"\n").run(program(), &["overflow", "8388609"]);
    assert_eq!(out.signal(), Some(libc::SIGABRT));
    assert_eq!(out.stderr, plain.stderr);
}

#[test]
fn overflowing_memmove_aborts_like_glibc() {
    overflow("moveover", "8388609");
}

#[test]
fn overflowing_mempcpy_aborts_like_glibc() {
    overflow("pcpyover", "8388609");
}
