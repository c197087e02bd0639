//! What the benchmark binaries share: the description of the machine a
//! result was measured on, the statistics every comparison reports, the
//! runs of IPC workloads and the memcpy timing loops (`ipc-bench`,
//! `memcpy-bench` and `bench-suite` are drivers of these), the suite's
//! results, and the charts.

pub mod chart;
pub mod ipc;
pub mod machine;
pub mod memcpy;
pub mod stats;
pub mod suite;

pub use stats::median;

/// "64 MiB", "4 KiB", "64 B".
pub fn size_label(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_labels() {
        assert_eq!(size_label(64), "64 B");
        assert_eq!(size_label(4096), "4 KiB");
        assert_eq!(size_label(64 << 20), "64 MiB");
        assert_eq!(size_label(4 << 30), "4 GiB");
    }
}
