//! Progress lines on stderr: which part, which run, and a rough estimate
//! of the time left (from the pace so far, in units of planned work).

use std::time::Instant;

use super::clock;

/// The suite's progress: `total` units of work planned, `done` so far.
#[derive(Debug)]
pub struct Progress {
    start: Instant,
    total: f64,
    done: f64,
    part: String,
    part_index: usize,
    parts: usize,
}

impl Progress {
    pub fn new(total: f64, parts: usize) -> Progress {
        Progress { start: Instant::now(), total: total.max(1.0), done: 0.0, part: String::new(), part_index: 0, parts }
    }

    /// A part begins.
    pub fn part(&mut self, name: &str) {
        self.part = name.to_owned();
        self.part_index += 1;
        eprintln!("bench-suite: == {name} ({}/{})", self.part_index, self.parts);
    }

    /// `units` of work are done; `what` they measured.
    pub fn step(&mut self, units: f64, what: &str) {
        self.done = (self.done + units).min(self.total);
        eprintln!("bench-suite: {}", self.line(self.start.elapsed().as_secs_f64(), what));
    }

    /// A line without the work counted (a note, a wait).
    pub fn say(&self, what: &str) {
        eprintln!("bench-suite: [{}] {what}", self.part);
    }

    /// "[stream 3/8, 42%, 0:31 elapsed, ~0:43 left] what".
    fn line(&self, elapsed: f64, what: &str) -> String {
        let share = self.done / self.total;
        let left = if share > 0.0 { elapsed / share - elapsed } else { f64::NAN };
        let eta = if left.is_finite() { format!(", ~{} left", clock(left)) } else { String::new() };
        format!(
            "[{} {}/{}, {:.0}%, {} elapsed{eta}] {what}",
            self.part,
            self.part_index,
            self.parts,
            share * 100.0,
            clock(elapsed)
        )
    }

    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_where_and_how_long() {
        let mut p = Progress::new(10.0, 8);
        p.part = "stream".into();
        p.part_index = 3;
        assert_eq!(p.line(5.0, "x"), "[stream 3/8, 0%, 0:05 elapsed] x");
        p.done = 2.5;
        assert_eq!(p.line(30.0, "unix 1 MiB"), "[stream 3/8, 25%, 0:30 elapsed, ~1:30 left] unix 1 MiB");
        p.done = 10.0;
        assert_eq!(p.line(60.0, "done"), "[stream 3/8, 100%, 1:00 elapsed, ~0:00 left] done");
    }
}
