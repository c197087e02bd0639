//! The process's DSA counters (the `dsa` object of the stats): every
//! operation's [`Report`] added up.

use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::Relaxed;

use crate::options::Report;

/// Descriptors submitted by every copy of the process, and what became of
/// them: the `dsa` object of the stats.
#[derive(Debug)]
pub struct Counters {
    /// Descriptors submitted.
    pub submitted: AtomicU64,
    /// Completion records read.
    pub completed: AtomicU64,
    /// Page faults reported.
    pub page_faults: AtomicU64,
    /// Refused submissions retried.
    pub retries: AtomicU64,
    /// Refusals beyond the retries after which the next queue was tried.
    pub queue_switches: AtomicU64,
    /// Copies of which the CPU finished a part (errors, faults with
    /// `on_fault = "cpu"`, refusals).
    pub cpu_fallbacks: AtomicU64,
}

impl Counters {
    /// All zero.
    pub const fn new() -> Counters {
        Counters {
            submitted: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            page_faults: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            queue_switches: AtomicU64::new(0),
            cpu_fallbacks: AtomicU64::new(0),
        }
    }

    /// Back to zero (a fork child counts its own).
    pub fn reset(&self) {
        for c in [
            &self.submitted,
            &self.completed,
            &self.page_faults,
            &self.retries,
            &self.queue_switches,
            &self.cpu_fallbacks,
        ] {
            c.store(0, Relaxed);
        }
    }

    /// Adds one copy's report.
    pub fn add(&self, r: &Report) {
        self.submitted.fetch_add(u64::from(r.descriptors), Relaxed);
        self.completed.fetch_add(u64::from(r.completed), Relaxed);
        self.page_faults.fetch_add(u64::from(r.faults), Relaxed);
        self.retries.fetch_add(u64::from(r.retries), Relaxed);
        self.queue_switches.fetch_add(u64::from(r.queue_switches), Relaxed);
        self.cpu_fallbacks.fetch_add(u64::from(r.cpu_bytes > 0), Relaxed);
    }
}

impl Default for Counters {
    fn default() -> Self {
        Self::new()
    }
}

/// The process's DSA counters.
pub static COUNTERS: Counters = Counters::new();
