//! Progress on stderr for runs longer than a second: a line when a run has
//! been going for a second, and one when it ends. Short runs print nothing.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a run goes before it is shown.
const SHOW_AFTER: Duration = Duration::from_secs(1);

enum Event {
    Started(String),
    Ended(String),
}

/// The thread that prints.
#[derive(Debug)]
pub struct Progress {
    events: Option<Sender<Event>>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    pub fn new() -> Progress {
        let (events, rx) = mpsc::channel();
        // Without the thread (it could not start) there is no progress.
        let thread = std::thread::Builder::new().name("ab-progress".into()).spawn(move || show(&rx)).ok();
        Progress { events: Some(events), thread }
    }

    /// A run labelled `label` starts.
    pub fn started(&self, label: String) {
        if let Some(events) = &self.events {
            let _ = events.send(Event::Started(label));
        }
    }

    /// The run ended; `outcome` says how (wall time, exit status).
    pub fn ended(&self, outcome: String) {
        if let Some(events) = &self.events {
            let _ = events.send(Event::Ended(outcome));
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.events = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn show(rx: &Receiver<Event>) {
    // The run going on: its label, when it started, whether it was shown.
    let mut current: Option<(String, Instant, bool)> = None;
    loop {
        let event = match &mut current {
            Some((label, since, shown @ false)) => match rx.recv_timeout(SHOW_AFTER.saturating_sub(since.elapsed())) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => {
                    eprintln!("ab: {label}: running...");
                    *shown = true;
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            },
            _ => match rx.recv() {
                Ok(event) => event,
                Err(_) => return,
            },
        };
        match event {
            Event::Started(label) => current = Some((label, Instant::now(), false)),
            Event::Ended(outcome) => {
                if let Some((label, since, shown)) = current.take() {
                    if shown || since.elapsed() >= SHOW_AFTER {
                        eprintln!("ab: {label}: {outcome}");
                    }
                }
            }
        }
    }
}
