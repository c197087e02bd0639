use std::path::Path;
use std::time::Duration;

use super::*;

fn reject(text: &str) -> Rejected {
    parse(text, "p.toml").expect_err("the policy should be rejected")
}

fn messages(text: &str) -> Vec<String> {
    reject(text).diagnostics.iter().map(ToString::to_string).collect()
}

#[test]
fn builtin_text_is_the_builtin_policy() {
    let parsed = parse(BUILTIN_POLICY, "builtin").unwrap();
    assert_eq!(parsed, Policy::builtin());
    // Parsing starts from the built-in values, so the comparison alone would
    // pass with keys missing from the text: check that it states every one.
    let document = toml::de::DeTable::parse(BUILTIN_POLICY).unwrap();
    let table = document.get_ref();
    for key in ["strict", "stats_interval"] {
        assert!(table.get(key).is_some(), "BUILTIN_POLICY lacks `{key}`");
    }
    let defaults = table.get("defaults").and_then(|v| v.get_ref().as_table().cloned()).unwrap();
    assert!(defaults.get("mode").is_some());
    for class in Class::ALL {
        let section = table.get(class.name()).and_then(|v| v.get_ref().as_table().cloned());
        let section = section.unwrap_or_else(|| panic!("BUILTIN_POLICY lacks [{class}]"));
        let keys: &[&str] = if class.is_ipc() {
            &["engine", "min_bytes", "workers", "ring_bytes", "handshake_after"]
        } else {
            &["engine", "min_bytes", "workers"]
        };
        for key in keys {
            assert!(section.get(*key).is_some(), "BUILTIN_POLICY lacks {class}.{key}");
        }
    }
}

#[test]
fn the_policy_guide_shows_the_builtin_policy() {
    let guide = include_str!("../../docs/guide/policy.md");
    let body = BUILTIN_POLICY.split_once('\n').unwrap().1; // without the comment line
    assert!(guide.contains(body), "docs/guide/policy.md's built-in policy differs from policy::BUILTIN_POLICY");
}

#[test]
fn builtin_resolution() {
    let r = Policy::builtin().resolve(&["anything"]);
    assert_eq!(r.mode, Mode::Throughput);
    assert_eq!(
        r.rule(Class::Memcpy),
        Rule {
            engine: Engine::Auto,
            min_bytes: 1 << 20,
            workers: Workers::Auto,
            wait: Wait::SpinThenSleep,
            ring_bytes: 64 << 20,
            handshake_after: 4 << 20,
            cache: Cache::Auto,
            cpu_share: CpuShare::Auto,
            chunk_bytes: 2 << 20,
            depth: 16,
            addresses: Addresses::Loopback,
            write_behind: false,
        }
    );
    assert_eq!(r.rule(Class::Unix).min_bytes, 256 << 10);
    assert_eq!((r.rule(Class::Unix).chunk_bytes, r.rule(Class::Unix).depth), (256 << 10, 16));
    assert_eq!(r.rule(Class::Pipe).min_bytes, 256 << 10);
    assert!(r.matched.is_empty());
}

#[test]
fn every_key_of_the_contract_is_accepted() {
    let text = r#"
strict = true
stats_interval = 0.25
[defaults]
mode = "latency"
[memcpy]
engine = "async-cpu"
min_bytes = 4096
workers = 3
wait = "yield"
cache = "bypass"
chunk_bytes = "512KiB"
depth = 8
[unix]
engine = "cpu"
min_bytes = "64KiB"
workers = "auto"
wait = "umwait"
ring_bytes = "8MiB"
[pipe]
engine = "off"
min_bytes = "1GiB"
wait = "sleep"
[tcp]
min_bytes = "1MiB"
addresses = "local"
"#;
    let p = parse(text, "p.toml").unwrap();
    assert!(p.strict);
    assert_eq!(p.stats_interval, Duration::from_millis(250));
    let r = p.resolve(&["x"]);
    assert_eq!(r.mode, Mode::Latency);
    assert_eq!(
        r.rule(Class::Memcpy),
        Rule {
            engine: Engine::AsyncCpu,
            min_bytes: 4096,
            workers: Workers::Count(3),
            wait: Wait::Yield,
            ring_bytes: 64 << 20,
            handshake_after: 4 << 20,
            cache: Cache::Bypass,
            cpu_share: CpuShare::Auto,
            chunk_bytes: 512 << 10,
            depth: 8,
            addresses: Addresses::Loopback,
            write_behind: false,
        }
    );
    assert_eq!(
        r.rule(Class::Unix),
        Rule {
            engine: Engine::Cpu,
            min_bytes: 64 << 10,
            workers: Workers::Auto,
            wait: Wait::Umwait,
            ring_bytes: 8 << 20,
            handshake_after: 4 << 20,
            cache: Cache::Auto,
            cpu_share: CpuShare::Auto,
            chunk_bytes: 256 << 10,
            depth: 16,
            addresses: Addresses::Loopback,
            write_behind: false,
        }
    );
    assert_eq!(r.rule(Class::Pipe).engine, Engine::Off);
    assert_eq!(r.rule(Class::Pipe).min_bytes, 1 << 30);
    assert_eq!((r.rule(Class::Tcp).min_bytes, r.rule(Class::Tcp).addresses), (1 << 20, Addresses::Local));
}

#[test]
fn addresses_belongs_to_tcp_and_names_loopback_or_local() {
    let builtin = Policy::builtin().resolve(&[]);
    assert_eq!(builtin.rule(Class::Tcp).addresses, Addresses::Loopback);
    assert_eq!(builtin.rule(Class::Tcp).engine, Engine::Auto);
    for (text, what) in [
        ("[unix]\naddresses = \"local\"\n", "unknown key"),
        ("[tcp]\naddresses = \"anywhere\"\n", "loopback"),
        ("[tcp]\naddresses = 1\n", "addresses"),
    ] {
        let err = parse(text, "p.toml").unwrap_err().to_string();
        assert!(err.contains(what), "{text:?}: {err}");
    }
    let over = parse("[process.\"srv\"]\ntcp = { addresses = \"local\" }\n", "p").unwrap();
    assert_eq!(over.resolve(&["srv"]).rule(Class::Tcp).addresses, Addresses::Local);
    assert_eq!(over.resolve(&["other"]).rule(Class::Tcp).addresses, Addresses::Loopback);
}

#[test]
fn write_behind_belongs_to_unix_and_tcp_is_a_boolean_and_is_off_by_default() {
    assert!(!Policy::builtin().resolve(&[]).rule(Class::Unix).write_behind);
    assert!(!Policy::builtin().resolve(&[]).rule(Class::Tcp).write_behind);
    for (text, what) in [
        ("[pipe]\nwrite_behind = true\n", "unknown key"),
        ("[memcpy]\nwrite_behind = true\n", "unknown key"),
        ("[unix]\nwrite_behind = \"yes\"\n", "a boolean"),
        ("[tcp]\nwrite_behind = 1\n", "a boolean"),
    ] {
        let err = parse(text, "p.toml").unwrap_err().to_string();
        assert!(err.contains(what), "{text:?}: {err}");
    }
    let on = parse("[unix]\nwrite_behind = true\n[process.\"cli\"]\nunix.write_behind = false\n", "p").unwrap();
    assert!(on.resolve(&["srv"]).rule(Class::Unix).write_behind);
    assert!(!on.resolve(&["cli"]).rule(Class::Unix).write_behind);
    let tcp = parse("[tcp]\nwrite_behind = true\n", "p").unwrap().resolve(&[]);
    assert!(tcp.rule(Class::Tcp).write_behind && !tcp.rule(Class::Unix).write_behind);
}

#[test]
fn mode_decides_the_chunks_and_depth_that_no_section_sets() {
    let shape = |text: &str, class| {
        let rule = parse(text, "p").unwrap().resolve(&[]).rule(class);
        (rule.chunk_bytes, rule.depth)
    };
    let mode = |m: &str| format!("[defaults]\nmode = \"{m}\"\n");
    assert_eq!(shape(&mode("latency"), Class::Unix), (256 << 10, 16));
    assert_eq!(shape(&mode("throughput"), Class::Pipe), (256 << 10, 16));
    assert_eq!(shape(&mode("efficiency"), Class::Unix), (256 << 10, 8));
    assert_eq!(shape(&mode("efficiency"), Class::Memcpy), (2 << 20, 4));
    // A section's own value wins over the mode's, and an override's over both.
    let text = format!("{}[unix]\nchunk_bytes = \"128KiB\"\n[process.\"p\"]\nunix.depth = 2\n", mode("efficiency"));
    assert_eq!(shape(&text, Class::Unix), (128 << 10, 8));
    let r = parse(&text, "p").unwrap().resolve(&["p"]).rule(Class::Unix);
    assert_eq!((r.chunk_bytes, r.depth), (128 << 10, 2));
}

#[test]
fn mode_decides_the_wait_that_no_section_names() {
    for (mode, wait) in [("latency", Wait::Spin), ("throughput", Wait::SpinThenSleep), ("efficiency", Wait::Sleep)] {
        let p = parse(&format!("[defaults]\nmode = \"{mode}\"\n"), "p").unwrap();
        assert_eq!(p.resolve(&[]).rule(Class::Memcpy).wait, wait);
    }
}

#[test]
fn overrides_apply_in_file_order_and_later_keys_win() {
    let text = r#"
[memcpy]
min_bytes = "1MiB"
[process."redis-*"]
memcpy.min_bytes = "2MiB"
unix.min_bytes = "64KiB"
[process."redis-server"]
memcpy.min_bytes = "4MiB"
[process."python*"]
defaults.mode = "efficiency"
[process."a*"]
memcpy.engine = "cpu"
"#;
    let p = parse(text, "p").unwrap();
    let r = p.resolve(&["redis-server"]);
    assert_eq!(r.rule(Class::Memcpy).min_bytes, 4 << 20);
    assert_eq!(r.rule(Class::Unix).min_bytes, 64 << 10);
    assert_eq!(r.matched, vec!["redis-*", "redis-server"]);
    let r = p.resolve(&["redis-cli"]);
    assert_eq!(r.rule(Class::Memcpy).min_bytes, 2 << 20);
    // Either name may match: argv[0] "py" but /proc/self/exe "python3.11".
    let r = p.resolve(&["py", "python3.11"]);
    assert_eq!(r.mode, Mode::Efficiency);
    assert_eq!(r.rule(Class::Memcpy).wait, Wait::Sleep);
    let r = p.resolve(&["other"]);
    assert_eq!(r.rule(Class::Memcpy).min_bytes, 1 << 20);
    assert!(r.matched.is_empty());
}

#[test]
fn override_order_is_the_file_order_not_the_key_order() {
    // "z*" comes first in the file and sorts last: "a*" must still win.
    let text = "[process.\"z*\"]\nmemcpy.min_bytes = 1\n[process.\"*\"]\nmemcpy.min_bytes = 2\n";
    assert_eq!(parse(text, "p").unwrap().resolve(&["zed"]).rule(Class::Memcpy).min_bytes, 2);
    let text = "[process.\"*\"]\nmemcpy.min_bytes = 2\n[process.\"z*\"]\nmemcpy.min_bytes = 1\n";
    assert_eq!(parse(text, "p").unwrap().resolve(&["zed"]).rule(Class::Memcpy).min_bytes, 1);
}

#[test]
fn syntax_error_has_a_position() {
    assert_eq!(messages("[memcpy\n"), vec!["p.toml:1:8: TOML syntax error: unclosed table, expected `]`"]);
    let r = reject("strict = true\nengine = = 3\n");
    assert!(!r.strict, "an unparseable file cannot ask for strictness");
    assert!(r.diagnostics[0].to_string().starts_with("p.toml:2:"), "{r}");
}

#[test]
fn unknown_keys_name_the_section_and_the_expected_keys() {
    assert_eq!(
        messages("[memcpy]\nengine = \"cpu\"\nbogus = 3\n"),
        vec![
            "p.toml:3:1: unknown key `bogus` in [memcpy] (expected one of: engine, min_bytes, workers, wait, cache, cpu_share, chunk_bytes, depth)"
        ]
    );
    assert_eq!(
        messages("[memcpy]\nring_bytes = \"1MiB\"\n"),
        vec![
            "p.toml:2:1: unknown key `ring_bytes` in [memcpy] (expected one of: engine, min_bytes, workers, wait, cache, cpu_share, chunk_bytes, depth)"
        ]
    );
    assert_eq!(
        messages("[sysv]\nengine = \"cpu\"\n"),
        vec![
            "p.toml:1:2: unknown key `sysv` at the top level (expected one of: strict, stats_interval, defaults, memcpy, unix, pipe, memset, memcmp, shm, tcp, dsa, process)"
        ]
    );
    assert_eq!(
        messages("[defaults]\nmod = \"latency\"\n"),
        vec!["p.toml:2:1: unknown key `mod` in [defaults] (expected one of: mode)"]
    );
    assert_eq!(
        messages("[process.\"x\"]\nstrict = true\n"),
        vec![
            "p.toml:2:1: unknown key `strict` in [process.\"x\"] (expected one of: defaults, memcpy, unix, pipe, memset, memcmp, shm, tcp)"
        ]
    );
    assert_eq!(
        messages("[process.\"x\"]\nunix.min_byte = 1\n"),
        vec![
            "p.toml:2:6: unknown key `min_byte` in [process.\"x\".unix] (expected one of: engine, min_bytes, workers, wait, ring_bytes, handshake_after, cache, cpu_share, chunk_bytes, depth, write_behind)"
        ]
    );
}

#[test]
fn bad_values_point_at_the_value() {
    assert_eq!(
        messages("[memcpy]\nengine = \"fast\"\n"),
        vec![
            "p.toml:2:10: bad value \"fast\" for `engine` in [memcpy] (expected one of: auto, cpu, async-cpu, dsa, hybrid, off)"
        ]
    );
    assert_eq!(
        messages("[defaults]\nmode = \"quick\"\n"),
        vec![
            "p.toml:2:8: bad value \"quick\" for `mode` in [defaults] (expected one of: latency, throughput, efficiency)"
        ]
    );
    assert_eq!(
        messages("[pipe]\nwait = \"nap\"\n"),
        vec![
            "p.toml:2:8: bad value \"nap\" for `wait` in [pipe] (expected one of: spin, sleep, spin-then-sleep, umwait, yield)"
        ]
    );
    assert_eq!(
        messages("[unix]\nmin_bytes = \"12XB\"\n"),
        vec![
            "p.toml:2:13: bad value \"12XB\" for `min_bytes` in [unix] (expected a non-negative integer or a size such as \"256KiB\", \"1MiB\", \"1GiB\")"
        ]
    );
    assert_eq!(
        messages("[unix]\nmin_bytes = -1\n"),
        vec![
            "p.toml:2:13: bad value -1 for `min_bytes` in [unix] (expected a non-negative integer or a size such as \"256KiB\", \"1MiB\", \"1GiB\")"
        ]
    );
    assert_eq!(
        messages("[memcpy]\nworkers = 1000\n"),
        vec!["p.toml:2:11: bad value 1000 for `workers` in [memcpy] (expected \"auto\" or an integer from 0 to 256)"]
    );
    assert_eq!(
        messages("[unix]\nchunk_bytes = 10000\n[memcpy]\nchunk_bytes = \"128MiB\"\ndepth = 0\n"),
        vec![
            "p.toml:2:15: bad value 10000 for `chunk_bytes` in [unix] (expected a multiple of 4KiB from \"4KiB\" to \"64MiB\")",
            "p.toml:4:15: bad value \"128MiB\" for `chunk_bytes` in [memcpy] (expected a multiple of 4KiB from \"4KiB\" to \"64MiB\")",
            "p.toml:5:9: bad value 0 for `depth` in [memcpy] (expected an integer from 1 to 64)",
        ]
    );
    assert_eq!(
        messages("[pipe]\ncache = \"l3\"\n"),
        vec!["p.toml:2:9: bad value \"l3\" for `cache` in [pipe] (expected one of: auto, inject, bypass)"]
    );
    assert_eq!(
        messages("stats_interval = \"1h\"\n"),
        vec![
            "p.toml:1:18: bad value \"1h\" for `stats_interval` at the top level (expected a duration from 10ms to 1 day: seconds (1, 0.5) or a string (\"500ms\", \"2s\"))"
        ]
    );
}

#[test]
fn wrong_types_say_what_was_expected_and_found() {
    assert_eq!(
        messages("strict = 1\n"),
        vec!["p.toml:1:10: `strict` at the top level must be a boolean (true or false), found an integer"]
    );
    assert_eq!(
        messages("[memcpy]\nengine = 3\n"),
        vec!["p.toml:2:10: `engine` in [memcpy] must be a string, found an integer"]
    );
    assert_eq!(
        messages("memcpy = 3\n"),
        vec!["p.toml:1:10: `memcpy` at the top level must be a table, found an integer"]
    );
}

#[test]
fn every_error_is_reported_in_file_order_and_strict_is_still_read() {
    let r = reject("strict = true\n[memcpy]\nengine = \"x\"\n[pipe]\nwait = \"y\"\nzzz = 1\n");
    assert!(r.strict);
    let lines: Vec<_> = r.diagnostics.iter().map(|d| d.position.unwrap().0).collect();
    assert_eq!(lines, vec![3, 5, 6]);
}

#[test]
fn bad_glob_is_reported() {
    assert_eq!(
        messages("[process.\"[a\"]\nmemcpy.engine = \"cpu\"\n"),
        vec!["p.toml:1:10: bad process pattern \"[a\": invalid range pattern"]
    );
}

#[test]
fn unreadable_file_has_no_position() {
    let r = Policy::load(Path::new("/nonexistent/ipc-offload.toml")).unwrap_err();
    assert_eq!(
        r.to_string(),
        "/nonexistent/ipc-offload.toml: cannot read policy file: No such file or directory (os error 2)"
    );
    let r = Policy::load(Path::new("/")).unwrap_err();
    assert!(r.to_string().starts_with("/: cannot read policy file: Is a directory"), "{r}");
}

#[test]
fn workers_auto_counts_cpus() {
    assert_eq!(Workers::Auto.count(1), 0);
    assert_eq!(Workers::Auto.count(2), 1);
    assert_eq!(Workers::Auto.count(64), Workers::AUTO_MAX);
    assert_eq!(Workers::Count(5).count(2), 5);
}

#[test]
fn the_dsa_section_is_read_and_checked() {
    let text = "[dsa]\ndevice = \"model\"\non_fault = \"cpu\"\nsysfs = \"/tmp/fixture\"\nmodel_fault_every = 7\n";
    let p = parse(text, "p.toml").unwrap();
    let expected = DsaSettings {
        device: DsaDevice::Model,
        on_fault: OnFault::Cpu,
        sysfs: "/tmp/fixture".into(),
        model_fault_every: 7,
        model_slowdown: 1,
        model_shared: false,
    };
    assert_eq!(p.dsa, expected);
    assert_eq!(Policy::builtin().dsa, DsaSettings::default());
    assert_eq!(
        messages("[dsa]\ndevice = \"gpu\"\nsysfs = \"rel\"\nqueues = 4\n"),
        vec![
            "p.toml:2:10: bad value \"gpu\" for `device` in [dsa] (expected one of: auto, hardware, model)",
            "p.toml:3:9: bad value \"rel\" for `sysfs` in [dsa] (expected an absolute path)",
            "p.toml:4:1: unknown key `queues` in [dsa] (expected one of: device, on_fault, sysfs, model_fault_every, model_slowdown, model_shared)",
        ]
    );
}

#[test]
fn cache_is_read_per_section_and_auto_by_default() {
    let p = parse("[memcpy]\ncache = \"bypass\"\n[process.\"x\"]\nunix.cache = \"inject\"\n", "p.toml").unwrap();
    assert_eq!(p.resolve(&["y"]).rule(Class::Memcpy).cache, Cache::Bypass);
    assert_eq!(p.resolve(&["y"]).rule(Class::Unix).cache, Cache::Auto);
    assert_eq!(p.resolve(&["x"]).rule(Class::Unix).cache, Cache::Inject);
}

#[test]
fn cpu_share_is_a_fraction_or_auto() {
    let p = parse("[memcpy]\ncpu_share = 0.25\n[unix]\ncpu_share = 1\n", "p.toml").unwrap();
    let r = p.resolve(&["x"]);
    assert_eq!(r.rule(Class::Memcpy).cpu_share, CpuShare::Permille(250));
    assert_eq!(r.rule(Class::Unix).cpu_share, CpuShare::Permille(1000));
    assert_eq!(r.rule(Class::Pipe).cpu_share, CpuShare::Auto);
    assert_eq!(
        messages("[memcpy]\ncpu_share = 1.5\n"),
        vec!["p.toml:2:13: bad value 1.5 for `cpu_share` in [memcpy] (expected a number from 0 to 1, or \"auto\")"]
    );
}

#[test]
fn shm_has_its_own_section_with_memcpys_defaults() {
    let r = Policy::builtin().resolve(&["x"]);
    assert_eq!(r.rule(Class::Shm), r.rule(Class::Memcpy), "[shm] defaults to what [memcpy] does");
    let p = parse(
        "[memcpy]\nengine = \"cpu\"\n[shm]\nengine = \"async-cpu\"\nmin_bytes = \"4MiB\"\nworkers = 3\n\
         [process.\"py*\"]\nshm.engine = \"off\"\n",
        "p.toml",
    )
    .unwrap();
    let r = p.resolve(&["x"]);
    assert_eq!((r.rule(Class::Shm).engine, r.rule(Class::Shm).min_bytes), (Engine::AsyncCpu, 4 << 20));
    assert_eq!(r.rule(Class::Shm).workers, Workers::Count(3));
    assert_eq!(r.rule(Class::Memcpy).engine, Engine::Cpu, "[memcpy] is not changed by [shm]");
    assert_eq!(p.resolve(&["python3"]).rule(Class::Shm).engine, Engine::Off);
    // [shm] does not follow [memcpy]: a key it does not set keeps the built-in value.
    let r = parse("[memcpy]\nmin_bytes = 64\n", "p.toml").unwrap().resolve(&["x"]);
    assert_eq!(r.rule(Class::Shm).min_bytes, 1 << 20);
    assert_eq!(
        messages("[shm]\nring_bytes = 5\n"),
        vec![
            "p.toml:2:1: unknown key `ring_bytes` in [shm] (expected one of: engine, min_bytes, workers, wait, cache, cpu_share, chunk_bytes, depth)"
        ]
    );
}
