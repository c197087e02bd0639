//! Schedule perturbation points for the concurrency checks of the ring and
//! the worker pool (docs/reliability/concurrency.md).
//!
//! The production code calls `chaos::point()` between the steps of every
//! hand-over (claim words, slot words, the mailbox, counts). In the
//! library that is an empty inline function of the calling crate's own
//! `chaos` module: nothing is compiled in. In that crate's unit tests the
//! module re-exports this crate (a dev-dependency only), and while a test
//! holds [`Enabled`], every point on a
//! thread that joined the run ([`join`]: the test's threads, and the
//! workers of a pool made with `perturbed` set) does one of: nothing, spin a
//! random while, `sched_yield`, or sleep a few microseconds, chosen by a
//! per-thread xorshift generator seeded from one run seed. That forces
//! interleavings a quiet run almost never shows (a preemption between the
//! two compare-and-swaps of a claim, a worker stalled between reading a job
//! and claiming a part), while the test checks its invariants on every
//! round. The seed is printed; `IPC_OFFLOAD_CHAOS_SEED=N` replays a run's
//! choices (the interleaving itself also depends on the machine).
//!
//! Why not loom: the ring's words live in a shared memory mapping (atomics
//! cast from offsets of a memfd both processes map, futexes on them), and
//! the pool is a `static` built by a `const fn` whose workers are raw
//! threads sleeping in futexes; loom needs its own atomic types, owned by
//! the model, and its own threads. Swapping them in would test a copy of
//! the code, not the code.

use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::cell::Cell;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The run seed while a test holds [`Enabled`]; 0 when off.
static SEED: AtomicU64 = AtomicU64::new(0);
/// Threads that drew a generator, to spread their seeds.
static THREADS: AtomicU64 = AtomicU64::new(0);
/// One perturbed test at a time.
static ONE: Mutex<()> = Mutex::new(());

thread_local! {
    /// This thread's generator, and the run seed it was drawn for.
    static RNG: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    /// Whether this thread takes part (other tests' threads do not).
    static JOINED: Cell<bool> = const { Cell::new(false) };
}

/// The calling thread takes part in perturbed runs from now on.
pub fn join() {
    JOINED.with(|j| j.set(true));
}

/// Perturbation is on while this lives.
#[derive(Debug)]
pub struct Enabled {
    _one: MutexGuard<'static, ()>,
    /// The run seed (printed, for a replay).
    pub seed: u64,
}

impl Enabled {
    /// Turns the points on for the calling test.
    pub fn new(test: &str) -> Enabled {
        let one = ONE.lock().unwrap_or_else(|e| e.into_inner());
        let seed = std::env::var("IPC_OFFLOAD_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            t.as_nanos() as u64 | 1
        });
        eprintln!("{test}: chaos seed {seed} (IPC_OFFLOAD_CHAOS_SEED={seed} replays its choices)");
        SEED.store(seed, SeqCst);
        Enabled { _one: one, seed }
    }
}

impl Drop for Enabled {
    fn drop(&mut self) {
        SEED.store(0, SeqCst);
    }
}

fn next() -> Option<u64> {
    let seed = SEED.load(Relaxed);
    if seed == 0 || !JOINED.with(Cell::get) {
        return None;
    }
    RNG.with(|cell| {
        let (mut x, drawn_for) = cell.get();
        if drawn_for != seed || x == 0 {
            let n = THREADS.fetch_add(1, Relaxed);
            x = seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        cell.set((x, seed));
        Some(x)
    })
}

/// Runs `body` on a thread of its own and fails the test if it has not
/// finished within `limit` (a lost wake-up or a count that overshoots
/// shows as a hang); a panic in it fails the test too.
pub fn within(limit: Duration, body: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    let runner = std::thread::spawn(move || {
        join();
        body();
        let _ = tx.send(());
    });
    match rx.recv_timeout(limit) {
        Ok(()) => runner.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(runner.join().expect_err("ended without finishing"))
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("watchdog: still running after {limit:?}"),
    }
}

/// A perturbation point.
pub fn point() {
    let Some(r) = next() else { return };
    match r % 32 {
        0..=17 => {}
        18..=25 => {
            for _ in 0..(r >> 8) % 512 {
                core::hint::spin_loop();
            }
        }
        26..=30 => ipc_offload_sys::sched_yield(),
        _ => std::thread::sleep(Duration::from_micros((r >> 8) % 40)),
    }
}
