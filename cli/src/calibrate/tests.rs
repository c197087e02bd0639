//! The calibration with a fake timer: thresholds follow the crossover it
//! fakes; the written policy parses back through the policy crate and passes
//! `check`.

use super::measure::{MeasureError, Timer};
use super::table::Contender;
use super::table::{ClassTable, median};
use super::*;

use ipc_offload_policy::parse;

/// 1 GB/s for the baseline; an engine twice as fast from its crossover on and
/// twice as slow below it; with `outliers`, the second run of each engine is
/// 100 times slower. Records the runs asked for.
struct FakeTimer {
    crossover: Vec<(Engine, u64)>,
    calls: Vec<(Class, Contender)>,
    outliers: bool,
}

impl FakeTimer {
    fn new(crossover: &[(Engine, u64)]) -> FakeTimer {
        FakeTimer { crossover: crossover.to_vec(), calls: Vec::new(), outliers: false }
    }
}

impl Timer for FakeTimer {
    fn time(&mut self, class: Class, contender: Contender, sizes: &[u64]) -> Result<Vec<Duration>, MeasureError> {
        let runs = self.calls.iter().filter(|c| **c == (class, contender)).count();
        let outlier = self.outliers && runs == 1 && contender != Contender::Baseline;
        self.calls.push((class, contender));
        Ok(sizes
            .iter()
            .map(|&size| {
                let ns = match contender {
                    Contender::Baseline => size,
                    Contender::Engine(e) => {
                        let from = self.crossover.iter().find(|(x, _)| *x == e).map_or(u64::MAX, |(_, c)| *c);
                        if size >= from { size / 2 } else { size * 2 }
                    }
                };
                Duration::from_nanos(if outlier { ns * 100 } else { ns })
            })
            .collect())
    }
}

fn class_plan(class: Class, engines: &[Engine]) -> ClassPlan {
    let to = if class.is_ipc() { 16 << 20 } else { 64 << 20 };
    ClassPlan { class, sizes: sizes(64 << 10, to, 2), engines: engines.to_vec(), skipped: Vec::new() }
}

fn test_plan() -> Plan {
    Plan {
        classes: vec![
            class_plan(Class::Memcpy, &[Engine::AsyncCpu]),
            class_plan(Class::Unix, &[Engine::Cpu]),
            class_plan(Class::Pipe, &[Engine::Cpu]),
            ClassPlan { skipped: vec![(Engine::Dsa, "no DSA device".into())], ..class_plan(Class::Memset, &[]) },
        ],
        rounds: 3,
        cpus: 2,
        dsa_model: false,
    }
}

/// Calibrates with `timer` and parses the written policy back.
fn calibrate(plan: &Plan, timer: &mut FakeTimer) -> (String, Policy) {
    let table = measure::run(plan, timer, &mut |_| {}).unwrap();
    let text = write::policy(&table);
    let policy = parse(&text, "calibrated.toml").unwrap_or_else(|r| panic!("{r}\n{text}"));
    (text, policy)
}

fn rule(policy: &Policy, class: Class) -> (Engine, u64) {
    let r = policy.resolve(&[]).rule(class);
    (r.engine, r.min_bytes)
}

#[test]
fn thresholds_follow_the_fake_crossover() {
    for crossover in [64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20] {
        let mut timer = FakeTimer::new(&[(Engine::AsyncCpu, crossover), (Engine::Cpu, crossover / 2)]);
        let (text, policy) = calibrate(&test_plan(), &mut timer);
        assert_eq!(rule(&policy, Class::Memcpy), (Engine::AsyncCpu, crossover), "{text}");
        // Half the crossover is still a measured size (or below the smallest).
        let ipc = (crossover / 2).max(64 << 10);
        assert_eq!(rule(&policy, Class::Unix), (Engine::Cpu, ipc), "{text}");
        assert_eq!(rule(&policy, Class::Pipe), (Engine::Cpu, ipc), "{text}");
        assert_eq!(rule(&policy, Class::Memset).0, Engine::Off, "{text}");
    }
}

#[test]
fn an_engine_that_never_wins_is_off() {
    // async-cpu wins from 128 MiB, beyond the largest size; the IPC engine
    // never.
    let mut timer = FakeTimer::new(&[(Engine::AsyncCpu, 128 << 20)]);
    let (text, policy) = calibrate(&test_plan(), &mut timer);
    assert_eq!(rule(&policy, Class::Memcpy).0, Engine::Off, "{text}");
    assert_eq!(rule(&policy, Class::Unix).0, Engine::Off, "{text}");
    assert!(!text.contains("\nmin_bytes ="), "{text}");
    assert!(text.contains("#   async-cpu never wins\n"), "{text}");
    assert!(text.contains("# no engine beats libc by 5% up to 64MiB\n[memcpy]\nengine = \"off\"\n"), "{text}");
    assert!(text.contains("# no engine beats kernel by 5% up to 16MiB\n[unix]\n"), "{text}");
}

#[test]
fn runs_alternate_and_medians_ignore_an_outlier_run() {
    let mut timer = FakeTimer::new(&[(Engine::AsyncCpu, 1 << 20), (Engine::Cpu, 1 << 20)]);
    // One run of three of each engine is 100 times slower.
    timer.outliers = true;
    let (text, policy) = calibrate(&test_plan(), &mut timer);
    assert_eq!(rule(&policy, Class::Memcpy), (Engine::AsyncCpu, 1 << 20), "{text}");
    assert_eq!(rule(&policy, Class::Pipe), (Engine::Cpu, 1 << 20), "{text}");
    let memcpy: Vec<Contender> = timer.calls.iter().filter(|(c, _)| *c == Class::Memcpy).map(|(_, x)| *x).collect();
    use Contender::{Baseline as B, Engine as E};
    let a = E(Engine::AsyncCpu);
    assert_eq!(memcpy, [B, a, a, B, B, a]);
    // memset has no engine: never run.
    assert!(timer.calls.iter().all(|(c, _)| *c != Class::Memset));
}

fn table_of(sizes: Vec<u64>, base: &[u64], engines: &[(Engine, &[u64])]) -> ClassTable {
    let names: Vec<Engine> = engines.iter().map(|(e, _)| *e).collect();
    let mut t = ClassTable::new(Class::Memcpy, sizes, &names, Vec::new());
    let ns = |v: &[u64]| v.iter().map(|n| Duration::from_nanos(*n)).collect::<Vec<_>>();
    t.record(Contender::Baseline, &ns(base));
    for (e, times) in engines {
        t.record(Contender::Engine(*e), &ns(times));
    }
    t
}

#[test]
fn crossover_is_where_the_engine_wins_at_every_larger_size() {
    let sizes = vec![1, 2, 3, 4, 5];
    let base: &[u64] = &[100, 100, 100, 100, 100];
    // Wins at 1, loses at 3, wins from 4 on.
    let t = table_of(sizes.clone(), base, &[(Engine::AsyncCpu, &[50, 90, 99, 90, 80])]);
    assert_eq!(t.crossover(&t.engines[0].1), Some(4));
    // 4% faster is within the margin: not a win.
    let t = table_of(sizes.clone(), base, &[(Engine::AsyncCpu, &[50, 50, 50, 50, 96])]);
    assert_eq!(t.crossover(&t.engines[0].1), None);
    assert_eq!(t.choice().engine, Engine::Off);
    let t = table_of(sizes, base, &[(Engine::AsyncCpu, &[95, 95, 95, 95, 95])]);
    assert_eq!(t.crossover(&t.engines[0].1), Some(1));
    assert!(t.choice().reason.contains("from the smallest size measured"), "{:?}", t.choice());
}

#[test]
fn the_fastest_winner_at_the_largest_size_is_chosen() {
    let sizes = vec![1 << 20, 2 << 20, 4 << 20];
    let base: &[u64] = &[100, 100, 100];
    let t = table_of(
        sizes,
        base,
        &[(Engine::AsyncCpu, &[80, 70, 60]), (Engine::Dsa, &[120, 60, 30]), (Engine::Hybrid, &[200, 200, 20])],
    );
    // hybrid is fastest at 4 MiB but wins only there; dsa wins from 2 MiB
    // and is slower than hybrid: hybrid, from 4 MiB.
    let c = t.choice();
    assert_eq!((c.engine, c.min_bytes), (Engine::Hybrid, Some(4 << 20)), "{c:?}");
    let rendered = t.render();
    assert!(
        rendered.contains("async-cpu wins from 1MiB\n  dsa wins from 2MiB\n  hybrid wins from 4MiB\n"),
        "{rendered}"
    );
    assert!(rendered.contains("chosen: engine = \"hybrid\", min_bytes = \"4MiB\""), "{rendered}");
}

#[test]
fn medians_of_odd_and_even_counts() {
    let d = Duration::from_nanos;
    assert_eq!(median(&[d(3), d(1), d(2)]), d(2));
    assert_eq!(median(&[d(4), d(1), d(3), d(2)]), d(2));
    assert_eq!(median(&[]), Duration::ZERO);
}

#[test]
fn a_timer_with_the_wrong_number_of_times_is_an_error() {
    struct Short;
    impl Timer for Short {
        fn time(&mut self, _: Class, _: Contender, sizes: &[u64]) -> Result<Vec<Duration>, MeasureError> {
            Ok(vec![Duration::from_nanos(1); sizes.len() - 1])
        }
    }
    let e = measure::run(&test_plan(), &mut Short, &mut |_| {}).unwrap_err();
    assert_eq!(e.to_string(), "[memcpy] libc: 10 times for 11 sizes");
}

/// A fresh directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("ipc-offload-calibrate-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_written_policy_passes_check_and_carries_the_table() {
    let dir = Dir::new("check");
    let mut timer = FakeTimer::new(&[(Engine::AsyncCpu, 512 << 10), (Engine::Cpu, 2 << 20)]);
    let (text, _) = calibrate(&test_plan(), &mut timer);
    let file = dir.0.join("calibrated.toml");
    std::fs::write(&file, &text).unwrap();
    assert_eq!(crate::check::main(&[file.display().to_string()]), ExitCode::SUCCESS);
    // The table, as comments: every size of every measured class.
    assert!(text.contains("# [memcpy] GB/s, median of 3 runs"), "{text}");
    assert!(text.contains("#   64MiB   1.00  2.00       2.00x *\n"), "{text}");
    assert!(text.contains("#   256KiB  1.00    0.50  0.50x\n"), "{text}");
    assert!(text.contains("#   chosen: engine = \"async-cpu\", min_bytes = \"512KiB\""), "{text}");
    assert!(
        text.contains(
            "# [memset] not measured: no engine to compare with libc here\n#   dsa not measured: no DSA device\n"
        ),
        "{text}"
    );
    assert!(text.contains("\n[memcpy]\nengine = \"async-cpu\"\nmin_bytes = \"512KiB\"\n"), "{text}");
    assert!(text.contains("\n[pipe]\nengine = \"cpu\"\nmin_bytes = \"2MiB\"\n"), "{text}");
    // Every line before the first section is a comment.
    let head = &text[..text.find("\n[").unwrap()];
    assert!(head.lines().all(|l| l.is_empty() || l.starts_with('#')), "{text}");
}

#[test]
fn a_dsa_engine_measured_on_the_model_keeps_the_model() {
    let plan = Plan {
        classes: vec![
            class_plan(Class::Memcpy, &[Engine::AsyncCpu, Engine::Dsa]),
            class_plan(Class::Memset, &[Engine::Dsa]),
        ],
        dsa_model: true,
        ..test_plan()
    };
    let mut timer = FakeTimer::new(&[(Engine::AsyncCpu, 128 << 20), (Engine::Dsa, 2 << 20)]);
    let (text, policy) = calibrate(&plan, &mut timer);
    assert_eq!(rule(&policy, Class::Memcpy), (Engine::Dsa, 2 << 20), "{text}");
    assert_eq!(rule(&policy, Class::Memset), (Engine::Dsa, 2 << 20), "{text}");
    assert_eq!(policy.dsa.device, ipc_offload_policy::DsaDevice::Model, "{text}");
    assert!(
        text.contains(
            "# calibration on 2 CPU(s), 3 alternating runs per contender; dsa and hybrid on the DSA device model\n"
        ),
        "{text}"
    );
    // Without a dsa choice, the device stays built-in.
    let mut timer = FakeTimer::new(&[(Engine::AsyncCpu, 1 << 20)]);
    let (text, policy) = calibrate(&plan, &mut timer);
    assert_eq!(policy.dsa.device, ipc_offload_policy::DsaDevice::Auto, "{text}");
    assert!(!text.contains("[dsa]"), "{text}");
    let run = parse(&process::child_policy(Class::Memcmp, Engine::Dsa, 4096, true), "run.toml").unwrap();
    assert_eq!(run.dsa.device, ipc_offload_policy::DsaDevice::Model);
}

#[test]
fn the_policy_of_a_run_gives_the_class_its_engine() {
    let text = process::child_policy(Class::Pipe, Engine::Cpu, 65536, false);
    let policy = parse(&text, "run.toml").unwrap();
    assert!(policy.strict);
    assert_eq!(rule(&policy, Class::Pipe), (Engine::Cpu, 65536));
    assert_eq!(rule(&policy, Class::Memcpy), (Engine::Auto, 1 << 20));
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn bad_arguments_are_usage_errors() {
    let usage = |list: &[&str]| match parse_args(&args(list)) {
        Err(e @ CalibrateError::Usage(_)) => {
            assert_eq!(e.exit_code(), 2);
            e.to_string().lines().next().unwrap().to_owned()
        }
        other => panic!("{list:?}: {other:?}"),
    };
    assert_eq!(usage(&["--bogus"]), "unknown argument --bogus");
    assert_eq!(usage(&["--out"]), "--out needs a file");
    assert_eq!(
        usage(&["--out", "/nonexistent-dir/x.toml"]),
        "--out /nonexistent-dir/x.toml: /nonexistent-dir is not a directory"
    );
    assert_eq!(usage(&["--out", "/"]), "--out /: not a file");
    assert_eq!(parse_args(&args(&["--help"])).unwrap(), None);
    let o = parse_args(&args(&["--quick", "--out", "x.toml"])).unwrap().unwrap();
    assert_eq!(o, Options { out: Some(PathBuf::from("x.toml")), quick: true, dsa_model: false });
    assert!(parse_args(&args(&["--dsa-model"])).unwrap().unwrap().dsa_model);
}

#[test]
fn engines_are_measured_where_the_runtime_would_run_them() {
    let machine = |cpus, dsa| Machine { cpus, llc: None, dsa };
    let plan = measure_plan(false, machine(2, false), "no DSA device: /sys/bus/dsa/devices does not exist");
    let engines = |plan: &Plan, class| plan.classes.iter().find(|c| c.class == class).unwrap().engines.clone();
    assert_eq!(engines(&plan, Class::Memcpy), [Engine::AsyncCpu]);
    // Two CPUs: the ends of a socket take both, no worker is left.
    assert_eq!(engines(&plan, Class::Unix), [Engine::Cpu]);
    assert_eq!(engines(&plan, Class::Memset), []);
    let unix = &plan.classes[1];
    assert_eq!(unix.skipped[0], (Engine::AsyncCpu, "no copy worker for [unix] on 2 CPU(s)".to_owned()));
    assert_eq!(unix.skipped[1].1, "no DSA device: /sys/bus/dsa/devices does not exist");
    assert_eq!(plan.classes[0].sizes.len(), 11);
    assert_eq!(unix.sizes, sizes(64 << 10, 16 << 20, 2));
    assert_eq!(plan.rounds, 15);

    let plan = measure_plan(true, machine(8, true), "");
    assert_eq!(engines(&plan, Class::Memcpy), [Engine::AsyncCpu, Engine::Dsa, Engine::Hybrid]);
    assert_eq!(engines(&plan, Class::Pipe), [Engine::Cpu, Engine::AsyncCpu, Engine::Dsa, Engine::Hybrid]);
    assert_eq!(engines(&plan, Class::Memcmp), [Engine::Dsa]);
    assert_eq!(plan.classes[1].sizes, sizes(64 << 10, 16 << 20, 2));
    assert_eq!(plan.rounds, 9);
}

#[test]
fn the_library_is_ipc_offload_lib_or_next_to_the_tool() {
    // The variable is not set in unit tests (they do not run under the
    // wrapper); when it is, it wins.
    if std::env::var_os("IPC_OFFLOAD_LIB").is_none() {
        assert_eq!(
            library(Path::new("/x/target/release/ipc-offload-tool")),
            Path::new("/x/target/release/libipc_offload.so")
        );
    }
}

#[test]
fn child_schedules_and_sizes() {
    assert_eq!(child::parse_sizes("65536,131072").unwrap(), [65536, 131072]);
    assert!(child::parse_sizes("65536,0").is_err());
    assert!(child::parse_sizes("64KiB").is_err());
    assert_eq!(child::format_sizes(&[1, 2]), "1,2");
    let s = child::schedule(&[64 << 10, 16 << 20], 32 << 20);
    assert_eq!((s[0].warm, s[0].count), (128, 512));
    assert_eq!((s[1].warm, s[1].count), (2, 4));
}
