//! The queues one operation submits to, as one target: a refused
//! submission is retried [`RETRIES`] times on the queue, then tried on the
//! device's next queue the same way (shared queues: a process may have
//! several open), and only when every queue refused does the piece go to
//! the CPU. A dedicated queue never refuses (the in-flight count keeps it
//! from overflowing), so with one dedicated queue this is just that queue.

use std::time::{Duration, Instant};

use crate::abi::Descriptor;
use crate::options::Report;
use crate::work_queue::{Queue, Refused};

/// Times a refused submission (shared queue full) is retried on one queue
/// before the next queue is tried.
pub const RETRIES: u32 = 64;

/// The queues of one operation and the one it submits to now.
#[derive(Debug)]
pub struct Queues<'a> {
    all: &'a [Queue],
    at: usize,
}

impl<'a> Queues<'a> {
    /// `all` (at least one), starting at the first that is not broken.
    pub fn new(all: &'a [Queue]) -> Queues<'a> {
        assert!(!all.is_empty(), "an operation needs a queue");
        let at = all.iter().position(|q| !q.is_broken()).unwrap_or(0);
        Queues { all, at }
    }

    /// Whether every queue's device stopped answering.
    pub fn is_broken(&self) -> bool {
        self.all.iter().all(Queue::is_broken)
    }

    /// The largest descriptor every queue takes.
    pub fn max_transfer(&self) -> usize {
        self.all.iter().map(|q| q.max_transfer as usize).min().unwrap_or(1)
    }

    /// Whether every queue's device honours the cache-control flag.
    pub fn cache_control(&self) -> bool {
        self.all.iter().all(|q| q.cache_control)
    }

    /// Queue number `q`.
    pub fn get(&self, q: u8) -> &'a Queue {
        &self.all[usize::from(q)]
    }

    /// Takes an entry of the current queue (see [`Queue::reserve`]).
    pub fn reserve(&self) -> bool {
        self.all[self.at].reserve()
    }

    /// Waits for an entry of the current queue that other threads keep
    /// full (see [`wait_for_entry`]).
    pub fn wait_for_entry(&self) -> bool {
        wait_for_entry(&self.all[self.at])
    }

    /// Submits `desc`, for which the caller holds an entry of the current
    /// queue: retried there, then on each other queue that is not broken
    /// and has an entry free. `Ok(q)`: queue `q` holds the descriptor and
    /// its entry (give it back with `get(q).release()`), and stays the
    /// current queue. `Err`: no entry is held any more (the caller copies
    /// the piece on the CPU).
    pub fn submit(&mut self, desc: &Descriptor, report: &mut Report) -> Result<u8, Refused> {
        let first = self.at;
        loop {
            let queue = &self.all[self.at];
            let refused = match submit_retried(queue, desc, report) {
                Ok(()) => return Ok(self.at as u8),
                Err(why) => why,
            };
            queue.release();
            // The next queue that can take it, once around.
            loop {
                self.at = (self.at + 1) % self.all.len();
                if self.at == first {
                    return Err(refused);
                }
                let next = &self.all[self.at];
                if !next.is_broken() && next.reserve() {
                    report.queue_switches += 1;
                    break;
                }
            }
        }
    }
}

/// Submits to one queue, retrying a refusal up to [`RETRIES`] times.
fn submit_retried(queue: &Queue, desc: &Descriptor, report: &mut Report) -> Result<(), Refused> {
    for _ in 0..RETRIES {
        // SAFETY: the descriptor names the caller's buffers and a completion
        // record that outlives its wait (an operation returns only after
        // every record it submitted was written, or leaves the records to
        // a device that stopped).
        match unsafe { queue.submit(desc) } {
            Err(Refused::Retry) => {
                report.retries += 1;
                core::hint::spin_loop();
            }
            other => return other,
        }
    }
    Err(Refused::Retry)
}

/// Waits, yielding, for an entry of a queue that other threads keep full;
/// false after a second (the caller copies on the CPU).
fn wait_for_entry(queue: &Queue) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        ipc_offload_sys::sched_yield();
        if queue.reserve() {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{CompletionRecord, flag, status};
    use crate::model::{Mode, Model, ModelConfig};
    use crate::work_queue::Portal;
    use ipc_offload_policy::Wait;

    fn shared_model() -> std::sync::Arc<Model> {
        Model::start(ModelConfig { mode: Mode::Shared, size: 4, ..ModelConfig::default() }).unwrap()
    }

    #[test]
    fn a_queue_that_keeps_refusing_hands_over_to_the_next() {
        let (a, b) = (shared_model(), shared_model());
        let queues = [
            Queue::new(Portal::ModelShared(std::sync::Arc::as_ptr(&a)), 4, 1 << 20, false),
            Queue::new(Portal::ModelShared(std::sync::Arc::as_ptr(&b)), 4, 1 << 20, false),
        ];
        a.inject_retries(RETRIES);
        let mut target = Queues::new(&queues);
        let record = CompletionRecord::default();
        let desc = Descriptor::noop(flag::CRAV | flag::RCR, &record);
        let mut report = Report::default();
        assert!(target.reserve());
        assert_eq!(target.submit(&desc, &mut report), Ok(1), "the second queue took it");
        assert_eq!((report.retries, report.queue_switches), (RETRIES, 1));
        assert_eq!((queues[0].in_flight(), queues[1].in_flight()), (0, 1), "the first queue's entry was given back");
        assert_eq!(crate::inflight::wait_for(&record, Wait::SpinThenSleep), Some(status::SUCCESS));
        queues[1].release();
        // Both refuse: no entry is held, the caller copies on the CPU.
        a.inject_retries(RETRIES);
        b.inject_retries(RETRIES);
        let mut target = Queues::new(&queues);
        assert!(target.reserve());
        assert_eq!(target.submit(&desc, &mut Report::default()), Err(Refused::Retry));
        assert_eq!((queues[0].in_flight(), queues[1].in_flight()), (0, 0));
    }

    #[test]
    fn broken_queues_are_skipped() {
        let a = shared_model();
        let queues = [
            Queue::new(Portal::Write(-1), 4, 1 << 20, false),
            Queue::new(Portal::ModelShared(std::sync::Arc::as_ptr(&a)), 4, 1 << 20, false),
        ];
        queues[0].mark_broken();
        let target = Queues::new(&queues);
        assert!(!target.is_broken());
        assert!(target.reserve());
        assert_eq!(queues[1].in_flight(), 1, "started on the queue that works");
        queues[1].release();
        queues[1].mark_broken();
        assert!(Queues::new(&queues).is_broken());
    }
}
