use super::*;

/// The tests that use the process's index, log and lock run one at a time
/// (one of them marks the index stale and resets the lock as a fork would).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn page_mapping(flags: i32, fd: i32, len: usize) -> usize {
    let p = unsafe_mmap(len, flags, fd);
    assert_ne!(p, libc::MAP_FAILED as usize);
    p
}

fn unsafe_mmap(len: usize, flags: i32, fd: i32) -> usize {
    let prot = (libc::PROT_READ | libc::PROT_WRITE) as usize;
    // SAFETY: a fresh mapping chosen by the kernel, unmapped by the test.
    unsafe { ipc_offload_sys::syscall6(libc::SYS_mmap, [0, len, prot, flags as usize, fd as usize, 0]) }
        .map_or(libc::MAP_FAILED as usize, |p| p)
}

#[test]
fn what_counts_as_shared_memory() {
    let anon_shared = map_kind(libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1);
    assert_eq!(anon_shared, MapKind { shared: true, page: 4096 });
    assert!(!map_kind(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1).shared);
    let huge = map_kind(libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB, -1);
    assert_eq!(huge, MapKind { shared: true, page: 2 << 20 });
    let huge_1g = map_kind(libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB | (30 << 26), -1);
    assert_eq!(huge_1g.page, 1 << 30);

    let memfd = ipc_offload_sys::mem::sealed_memfd(c"ipc-offload-kind", 1 << 20).unwrap();
    assert!(map_kind(libc::MAP_SHARED, memfd.raw()).shared, "a memfd is shared memory");
    assert!(map_kind(libc::MAP_SHARED_VALIDATE, memfd.raw()).shared);
    assert!(!map_kind(libc::MAP_PRIVATE, memfd.raw()).shared, "a private mapping is copy-on-write");
    let p = page_mapping(libc::MAP_SHARED, memfd.raw(), 1 << 20);
    // SAFETY: unmapping the test's mapping.
    unsafe { ipc_offload_sys::syscall6(libc::SYS_munmap, [p, 1 << 20, 0, 0, 0, 0]) }.unwrap();

    if let Ok(f) = std::fs::File::create(format!("/dev/shm/ipc-offload-kind-{}", std::process::id())) {
        use std::os::fd::AsRawFd;
        assert!(map_kind(libc::MAP_SHARED, f.as_raw_fd()).shared, "a /dev/shm file is shared memory");
        let _ = std::fs::remove_file(format!("/dev/shm/ipc-offload-kind-{}", std::process::id()));
    }
    // A file on disk (the crate's own manifest) is page cache, not shm,
    // unless the tree itself lives on a tmpfs.
    let manifest = std::fs::File::open(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    use std::os::fd::AsRawFd;
    let on_tmpfs = ipc_offload_sys::mem::fstatfs(manifest.as_raw_fd()).unwrap().kind == TMPFS_MAGIC;
    assert_eq!(map_kind(libc::MAP_SHARED, manifest.as_raw_fd()).shared, on_tmpfs);
    // A device (/dev/zero on devtmpfs, a tmpfs) is not a regular file.
    let zero = std::fs::File::open("/dev/zero").unwrap();
    assert!(!map_kind(libc::MAP_SHARED, zero.as_raw_fd()).shared);
    assert!(!map_kind(libc::MAP_SHARED, -1).shared, "a bad fd is not shared memory");
}

#[test]
fn spans_round_up_to_the_page() {
    assert_eq!(span(0x1000, 1, 4096), (0x1000, 0x2000));
    assert_eq!(span(0x1000, 4096, 4096), (0x1000, 0x2000));
    assert_eq!(span(0x20_0000, 3 << 20, 2 << 20), (0x20_0000, 0x60_0000));
    assert_eq!(span(usize::MAX - 4095, usize::MAX, 4096), (usize::MAX - 4095, usize::MAX));
}

/// The process-wide index, writer and classification, in one test (they
/// share statics).
#[test]
fn writers_classify_and_pending_removals_apply() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    enable(Some(1 << 16), Some(1 << 20));
    assert!(tracking());
    let (a, b) = (0x7000_0000_0000usize, 0x7000_1000_0000usize);
    {
        let w = Writer::begin().unwrap();
        assert!(w.shared(Ticket::take(), (a, a + (8 << 20)), &[]));
        assert_eq!(INDEX.range_at(a + 5), Ok(Some((a, a + (8 << 20)))));
        // A signal handler on this thread: it cannot take the lock.
        assert_eq!(Writer::begin().unwrap_err(), WriteError::Nested);
        nested_removal(a + (4 << 20), a + (8 << 20));
        // Still there until the writer leaves.
        assert_eq!(INDEX.meets(a + (5 << 20), 1), Some(true));
    }
    assert_eq!(INDEX.meets(a + (4 << 20), 4 << 20), Some(false), "the pending removal was applied");
    assert_eq!(copy_class(a, b, 1 << 16), Some(Class::Shm), "destination in shm");
    assert_eq!(copy_class(b, a + 100, 1 << 16), Some(Class::Shm), "source in shm");
    assert_eq!(copy_class(b, b + (1 << 20), 1 << 16), None, "below memcpy's threshold, not shm");
    assert_eq!(copy_class(b, b + (2 << 20), 1 << 20), Some(Class::Memcpy));
    assert_eq!(copy_class(a, b, 1 << 15), None, "below both thresholds");
    assert_eq!(copy_class(a + (4 << 20), b, 1 << 16), None, "the removed part is not shm");
    // A straddling copy counts.
    assert_eq!(copy_class(a - 100, b, 1 << 16), Some(Class::Shm));

    // A stale index reads as empty, and the next writer clears it.
    STALE.store(true, Release);
    assert_eq!(copy_class(a, b, 1 << 20), Some(Class::Memcpy));
    assert!(snapshot().unknown_lookups > 0);
    drop(Writer::begin().unwrap());
    assert!(INDEX.is_empty());
    assert!(!STALE.load(Relaxed));

    // More pending removals than slots: stale.
    {
        let w = Writer::begin().unwrap();
        w.shared(Ticket::take(), (a, a + 4096), &[]);
        for i in 0..17 {
            nested_removal(b + i * 4096, b + i * 4096 + 1);
        }
        assert!(STALE.load(Relaxed));
    }
    assert!(!PENDING.any_ready());
    let s = snapshot();
    assert!(s.nested >= 1 && s.shared_maps >= 2 && s.capacity == CAPACITY, "{s:?}");
    // A fork child whose parent held the lock: stale.
    {
        let _w = Writer::begin().unwrap();
        after_fork();
        assert!(STALE.load(Relaxed));
        assert_eq!(snapshot().shared_maps, 0);
    }
    drop(Writer::begin().unwrap());
    assert!(!STALE.load(Relaxed));
}

/// An insert whose range another thread unmapped (and the kernel may have
/// handed on) after its system call is dropped, never applied late.
#[test]
fn inserts_raced_by_removals_are_dropped() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let base = 0x6000_0000_0000usize;
    let raced = || snapshot().raced;
    let before = raced();
    // Thread A's mmap returned `base`; thread B unmapped it before A's
    // insert (B's removal reached the log first).
    let ticket = Ticket::take();
    Writer::begin().unwrap().not_shared(base, base + 4096);
    let w = Writer::begin().unwrap();
    assert!(!w.shared(ticket, (base, base + 8192), &[]), "the insert must be dropped");
    assert_eq!(INDEX.meets(base, 8192), Some(false));
    // A removal elsewhere does not matter, unless it meets `also` (mremap's old range).
    let ticket = Ticket::take();
    w.not_shared(base + (1 << 30), base + (1 << 30) + 4096);
    assert!(w.unchanged_since(ticket, &[(base, base + 8192)]));
    assert!(!w.unchanged_since(ticket, &[(base + (1 << 30), base + (1 << 30) + 1)]));
    assert!(w.shared(ticket, (base, base + 8192), &[]));
    assert!(!w.shared(
        ticket,
        (base + (2 << 30), base + (2 << 30) + 4096),
        &[(base + (1 << 30), base + (1 << 30) + 8192)]
    ));
    // More removals than the log holds: dropped whatever they were.
    let ticket = Ticket::take();
    for i in 0..=LOG {
        w.not_shared(base + (3 << 30) + i * 8192, base + (3 << 30) + i * 8192 + 4096);
    }
    assert!(!w.shared(ticket, (base + (4 << 30), base + (4 << 30) + 4096), &[]));
    assert!(raced() >= before + 3, "{:?}", snapshot());
    w.not_shared(base, base + 8192);
}
