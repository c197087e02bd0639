//! How many CPUs this process may really use: its affinity mask, capped by
//! the CPU quota of its cgroup (v2 `cpu.max`, or v1 `cpu.cfs_quota_us`) and
//! of every ancestor cgroup. A container limited to 2 CPUs on a 64-core host
//! gets 2, which is what the worker count must follow.

use std::path::{Path, PathBuf};

/// What limits the CPUs of this process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuBudget {
    /// CPUs in the affinity mask.
    pub affinity: u32,
    /// The tightest cgroup quota, in CPUs (2.5 = 250 ms per 100 ms), if any.
    pub quota: Option<f64>,
}

impl CpuBudget {
    /// CPUs available: the affinity count, capped by the rounded-up quota; at least 1.
    pub fn available(&self) -> u32 {
        let by_quota = self.quota.map_or(u32::MAX, |q| q.ceil().clamp(1.0, u32::MAX as f64) as u32);
        self.affinity.min(by_quota).max(1)
    }
}

/// Size of the largest (last-level) data or unified cache of CPU 0, from
/// sysfs under `cpu_root` (normally /sys/devices/system/cpu). CPUID is not
/// used: virtual machines often report their host's cache there.
pub fn last_level_cache(cpu_root: &Path) -> Option<u64> {
    let dir = cpu_root.join("cpu0/cache");
    let mut best: Option<(u32, u64)> = None;
    for entry in std::fs::read_dir(dir).ok()?.filter_map(Result::ok) {
        let read = |name: &str| std::fs::read_to_string(entry.path().join(name)).ok().map(|s| s.trim().to_owned());
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size")) else {
            continue;
        };
        if kind == "Instruction" {
            continue;
        }
        let Ok(level) = level.parse::<u32>() else { continue };
        let Some(bytes) = parse_cache_size(&size) else { continue };
        if best.is_none_or(|(l, _)| level > l) {
            best = Some((level, bytes));
        }
    }
    best.map(|(_, bytes)| bytes)
}

/// "32768K", "1M", "512": sysfs cache sizes.
fn parse_cache_size(text: &str) -> Option<u64> {
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = digits.parse().ok()?;
    match unit {
        "" => Some(n),
        "K" => Some(n << 10),
        "M" => Some(n << 20),
        "G" => Some(n << 30),
        _ => None,
    }
}

/// The budget of the calling process, read from `/proc` and `/sys/fs/cgroup`.
pub fn current() -> CpuBudget {
    let affinity = crate::thread::affinity_cpu_count().unwrap_or(1);
    let cgroup_list = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    CpuBudget { affinity, quota: quota(Path::new("/sys/fs/cgroup"), &cgroup_list) }
}

/// The tightest quota over the process's cgroup and its ancestors, given the
/// cgroup filesystem root and the text of /proc/self/cgroup.
pub fn quota(cgroup_root: &Path, proc_self_cgroup: &str) -> Option<f64> {
    let mut tightest: Option<f64> = None;
    let mut consider = |q: Option<f64>| {
        if let Some(q) = q {
            tightest = Some(tightest.map_or(q, |t| t.min(q)));
        }
    };
    for line in proc_self_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let relative = path.trim_start_matches('/');
        if controllers.is_empty() {
            // cgroup v2: one unified hierarchy.
            for dir in ancestors(cgroup_root, relative) {
                consider(read_v2(&dir.join("cpu.max")));
            }
        } else if controllers.split(',').any(|c| c == "cpu") {
            // cgroup v1: the cpu controller's own hierarchy.
            let mount = cgroup_root.join(controllers);
            let mount = if mount.exists() { mount } else { cgroup_root.join("cpu") };
            for dir in ancestors(&mount, relative) {
                consider(read_v1(&dir));
            }
        }
    }
    tightest
}

/// `root/a/b/c`, `root/a/b`, `root/a`, `root`: the cgroup and its ancestors.
fn ancestors(root: &Path, relative: &str) -> Vec<PathBuf> {
    let mut dirs = vec![root.to_path_buf()];
    let mut dir = root.to_path_buf();
    for part in relative.split('/').filter(|p| !p.is_empty() && *p != "..") {
        dir.push(part);
        dirs.push(dir.clone());
    }
    dirs.reverse();
    dirs
}

/// cgroup v2 `cpu.max`: "QUOTA PERIOD" or "max PERIOD".
fn read_v2(file: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut fields = text.split_whitespace();
    let quota: f64 = fields.next()?.parse().ok()?; // "max" fails to parse: no quota
    let period: f64 = fields.next()?.parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// cgroup v1 `cpu.cfs_quota_us` (-1: none) over `cpu.cfs_period_us`.
fn read_v1(dir: &Path) -> Option<f64> {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok()?.trim().parse::<f64>().ok();
    let quota = read("cpu.cfs_quota_us")?;
    let period = read("cpu.cfs_period_us")?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(files: &[(&str, &str)]) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("ipc-offload-cpus-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (path, text) in files {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }
        root
    }

    #[test]
    fn no_quota_means_the_affinity_mask() {
        let root = fixture(&[("cpu.max", "max 100000\n"), ("a/cpu.max", "max 100000\n")]);
        assert_eq!(quota(&root, "0::/a\n"), None);
        assert_eq!(CpuBudget { affinity: 8, quota: None }.available(), 8);
    }

    #[test]
    fn v2_quota_of_an_ancestor_applies() {
        let root = fixture(&[
            ("svc/cpu.max", "250000 100000\n"),
            ("svc/job/cpu.max", "max 100000\n"),
            ("svc/job/task/cpu.max", "800000 100000\n"),
        ]);
        assert_eq!(quota(&root, "0::/svc/job/task\n"), Some(2.5));
        assert_eq!(CpuBudget { affinity: 16, quota: Some(2.5) }.available(), 3);
        assert_eq!(CpuBudget { affinity: 2, quota: Some(2.5) }.available(), 2);
        assert_eq!(CpuBudget { affinity: 4, quota: Some(0.2) }.available(), 1);
    }

    #[test]
    fn v1_quota() {
        let root = fixture(&[
            ("cpu,cpuacct/docker/x/cpu.cfs_quota_us", "150000\n"),
            ("cpu,cpuacct/docker/x/cpu.cfs_period_us", "100000\n"),
            ("cpu,cpuacct/cpu.cfs_quota_us", "-1\n"),
            ("cpu,cpuacct/cpu.cfs_period_us", "100000\n"),
            ("memory/x", ""),
        ]);
        let list = "12:memory:/docker/x\n4:cpu,cpuacct:/docker/x\n";
        assert_eq!(quota(&root, list), Some(1.5));
    }

    #[test]
    fn unreadable_or_garbled_files_mean_no_quota() {
        let root = fixture(&[("cpu.max", "garbage\n")]);
        assert_eq!(quota(&root, "0::/\n"), None);
        assert_eq!(quota(&root, "nonsense"), None);
        assert_eq!(quota(Path::new("/nonexistent"), "0::/a/b\n"), None);
    }

    #[test]
    fn last_level_cache_from_sysfs() {
        let root = fixture(&[
            ("cpu0/cache/index0/level", "1\n"),
            ("cpu0/cache/index0/type", "Data\n"),
            ("cpu0/cache/index0/size", "48K\n"),
            ("cpu0/cache/index1/level", "1\n"),
            ("cpu0/cache/index1/type", "Instruction\n"),
            ("cpu0/cache/index1/size", "32K\n"),
            ("cpu0/cache/index2/level", "2\n"),
            ("cpu0/cache/index2/type", "Unified\n"),
            ("cpu0/cache/index2/size", "1024K\n"),
            ("cpu0/cache/index3/level", "3\n"),
            ("cpu0/cache/index3/type", "Unified\n"),
            ("cpu0/cache/index3/size", "32768K\n"),
        ]);
        assert_eq!(last_level_cache(&root), Some(32 << 20));
        assert_eq!(last_level_cache(Path::new("/nonexistent")), None);
        assert_eq!(parse_cache_size("2M"), Some(2 << 20));
        assert_eq!(parse_cache_size("lots"), None);
    }

    #[test]
    fn this_process_has_a_budget() {
        let b = current();
        assert!(b.affinity >= 1 && b.available() >= 1);
    }
}
