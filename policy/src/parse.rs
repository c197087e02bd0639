//! From TOML text to a [`Policy`], reporting every problem with its position.
//!
//! The walker reads the spanned document of the `toml` crate rather than
//! deserialising with serde: it can then report all errors of a file at once,
//! name the section each one is in, and read `strict` even from a file whose
//! other keys are wrong.

use std::path::Path;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::{Diagnostic, ErrorKind, Rejected};
use crate::model::{
    Addresses, CHUNK_BYTES, Cache, Class, ClassSettings, CpuShare, DEPTH, DsaDevice, DsaSettings, Engine, Mode,
    OnFault, Settings, Wait, Workers,
};
use crate::rules::{Override, Policy};
use crate::units::{parse_duration, parse_size, seconds};

/// Keys of the top level of a policy file (besides sections).
const TOP_KEYS: &[&str] = &[
    "strict",
    "stats_interval",
    "defaults",
    "memcpy",
    "unix",
    "pipe",
    "memset",
    "memcmp",
    "shm",
    "tcp",
    "dsa",
    "process",
];
/// Keys a `[process."GLOB"]` override may hold.
const LAYER_KEYS: &[&str] = &["defaults", "memcpy", "unix", "pipe", "memset", "memcmp", "shm", "tcp"];
/// Keys of `[dsa]`.
const DSA_KEYS: &[&str] = &["device", "on_fault", "sysfs", "model_fault_every", "model_slowdown", "model_shared"];
/// Keys of `[defaults]`.
const DEFAULTS_KEYS: &[&str] = &["mode"];
/// Keys of the `[memcpy]`, `[memset]`, `[memcmp]` and `[shm]` sections.
const COPY_KEYS: &[&str] = &["engine", "min_bytes", "workers", "wait", "cache", "cpu_share", "chunk_bytes", "depth"];
/// Keys of the `[pipe]` section.
const IPC_KEYS: &[&str] = &[
    "engine",
    "min_bytes",
    "workers",
    "wait",
    "ring_bytes",
    "handshake_after",
    "cache",
    "cpu_share",
    "chunk_bytes",
    "depth",
];

/// Keys of the `[unix]` section: the IPC keys and `write_behind`.
const UNIX_KEYS: &[&str] = &[
    "engine",
    "min_bytes",
    "workers",
    "wait",
    "ring_bytes",
    "handshake_after",
    "cache",
    "cpu_share",
    "chunk_bytes",
    "depth",
    "write_behind",
];

/// Keys of the `[tcp]` section: the `[unix]` keys and `addresses`.
const TCP_KEYS: &[&str] = &[
    "engine",
    "min_bytes",
    "workers",
    "wait",
    "ring_bytes",
    "handshake_after",
    "cache",
    "cpu_share",
    "chunk_bytes",
    "depth",
    "write_behind",
    "addresses",
];

/// Shortest and longest accepted `stats_interval`.
const STATS_INTERVAL_RANGE: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(86_400));

/// Parses policy text. `file` is used only in diagnostics.
pub fn parse(text: &str, file: &str) -> Result<Policy, Rejected> {
    let document = match DeTable::parse(text) {
        Ok(document) => document,
        Err(error) => {
            let kind = ErrorKind::Syntax { message: error.message().trim().to_owned() };
            let diagnostic = match error.span() {
                Some(span) => Diagnostic::at(file, text, span.start, kind),
                None => Diagnostic { file: file.to_owned(), position: None, kind },
            };
            return Err(Rejected { diagnostics: vec![diagnostic], strict: false });
        }
    };
    let mut walker = Walker { file, text, errors: Vec::new() };
    let policy = walker.top(document.get_ref());
    if walker.errors.is_empty() {
        Ok(policy)
    } else {
        let mut diagnostics = walker.errors;
        diagnostics.sort_by_key(|d| d.position);
        Err(Rejected { diagnostics, strict: policy.strict })
    }
}

/// Entries of a table in file order (the map itself is sorted by key).
fn in_file_order<'t, 'i>(
    table: &'t DeTable<'i>,
) -> Vec<(&'t Spanned<toml::de::DeString<'i>>, &'t Spanned<DeValue<'i>>)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

/// The TOML type of a value, for messages.
fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// A value as it appears in a message: strings quoted, numbers as written.
fn shown(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("\"{s}\""),
        DeValue::Integer(i) => i.to_string(),
        DeValue::Float(x) => x.as_str().to_owned(),
        DeValue::Boolean(b) => b.to_string(),
        other => type_name(other).to_owned(),
    }
}

/// A TOML integer as i128 (wide enough for every TOML integer).
fn integer(value: &DeValue<'_>) -> Option<i128> {
    let DeValue::Integer(i) = value else { return None };
    i128::from_str_radix(i.as_str(), i.radix()).ok()
}

/// `one of: a, b, c`.
fn one_of(names: &[&str]) -> String {
    format!("one of: {}", names.join(", "))
}

struct Walker<'a> {
    file: &'a str,
    text: &'a str,
    errors: Vec<Diagnostic>,
}

impl Walker<'_> {
    fn error(&mut self, offset: usize, kind: ErrorKind) {
        self.errors.push(Diagnostic::at(self.file, self.text, offset, kind));
    }

    fn unknown_key(&mut self, key: &Spanned<toml::de::DeString<'_>>, section: &str, expected: &'static [&'static str]) {
        let kind = ErrorKind::UnknownKey { key: key.get_ref().to_string(), section: section.to_owned(), expected };
        self.error(key.span().start, kind);
    }

    fn wrong_type(&mut self, key: &str, section: &str, value: &Spanned<DeValue<'_>>, expected: &'static str) {
        let kind = ErrorKind::WrongType {
            key: key.to_owned(),
            section: section.to_owned(),
            expected,
            found: type_name(value.get_ref()),
        };
        self.error(value.span().start, kind);
    }

    fn bad_value(&mut self, key: &str, section: &str, value: &Spanned<DeValue<'_>>, expected: String) {
        let kind = ErrorKind::BadValue {
            key: key.to_owned(),
            section: section.to_owned(),
            value: shown(value.get_ref()),
            expected,
        };
        self.error(value.span().start, kind);
    }

    /// A table value, or a type error and `None`.
    fn table<'t, 'i>(&mut self, key: &str, section: &str, value: &'t Spanned<DeValue<'i>>) -> Option<&'t DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(table) => Some(table),
            _ => {
                self.wrong_type(key, section, value, "a table");
                None
            }
        }
    }

    /// A string naming one of `T::NAMES`, or an error and `None`.
    fn named<T: Copy>(
        &mut self,
        key: &str,
        section: &str,
        value: &Spanned<DeValue<'_>>,
        names: &[&str],
        from_name: fn(&str) -> Option<T>,
    ) -> Option<T> {
        match value.get_ref() {
            DeValue::String(s) => {
                let parsed = from_name(s);
                if parsed.is_none() {
                    self.bad_value(key, section, value, one_of(names));
                }
                parsed
            }
            _ => {
                self.wrong_type(key, section, value, "a string");
                None
            }
        }
    }

    fn top(&mut self, document: &DeTable<'_>) -> Policy {
        let mut policy = Policy::builtin();
        // `strict` first, so that a rejected file still says whether it is strict.
        if let Some(value) = document.get("strict") {
            match value.get_ref() {
                DeValue::Boolean(b) => policy.strict = *b,
                _ => self.wrong_type("strict", "", value, "a boolean (true or false)"),
            }
        }
        for (key, value) in in_file_order(document) {
            match key.get_ref().as_ref() {
                "strict" => {}
                "stats_interval" => {
                    if let Some(interval) = self.stats_interval(value) {
                        policy.stats_interval = interval;
                    }
                }
                "process" => {
                    if let Some(table) = self.table("process", "", value) {
                        self.overrides(table, &mut policy.overrides);
                    }
                }
                "dsa" => {
                    if let Some(table) = self.table("dsa", "", value) {
                        self.dsa(table, &mut policy.dsa);
                    }
                }
                _ => {
                    if !self.layer_entry(key, value, "", &mut policy.base) {
                        self.unknown_key(key, "", TOP_KEYS);
                    }
                }
            }
        }
        policy
    }

    /// Handles `defaults`/`memcpy`/`unix`/`pipe` in a layer; false for any other key.
    fn layer_entry(
        &mut self,
        key: &Spanned<toml::de::DeString<'_>>,
        value: &Spanned<DeValue<'_>>,
        prefix: &str,
        settings: &mut Settings,
    ) -> bool {
        let name = key.get_ref().as_ref();
        let section = if prefix.is_empty() { name.to_owned() } else { format!("{prefix}.{name}") };
        if name == "defaults" {
            if let Some(table) = self.table(name, prefix, value) {
                self.defaults(table, &section, settings);
            }
            return true;
        }
        let Some(class) = Class::from_name(name) else {
            return false;
        };
        if let Some(table) = self.table(name, prefix, value) {
            self.class_section(table, &section, class, settings.class_mut(class));
        }
        true
    }

    fn dsa(&mut self, table: &DeTable<'_>, out: &mut DsaSettings) {
        for (key, value) in in_file_order(table) {
            match key.get_ref().as_ref() {
                "device" => {
                    if let Some(d) = self.named("device", "dsa", value, DsaDevice::NAMES, DsaDevice::from_name) {
                        out.device = d;
                    }
                }
                "on_fault" => {
                    if let Some(f) = self.named("on_fault", "dsa", value, OnFault::NAMES, OnFault::from_name) {
                        out.on_fault = f;
                    }
                }
                "sysfs" => match value.get_ref() {
                    DeValue::String(s) if s.starts_with('/') => out.sysfs = s.to_string(),
                    DeValue::String(_) => self.bad_value("sysfs", "dsa", value, "an absolute path".to_owned()),
                    _ => self.wrong_type("sysfs", "dsa", value, "a string"),
                },
                "model_shared" => match value.get_ref() {
                    DeValue::Boolean(b) => out.model_shared = *b,
                    _ => self.wrong_type("model_shared", "dsa", value, "a boolean (true or false)"),
                },
                "model_slowdown" => match integer(value.get_ref()).and_then(|n| u32::try_from(n).ok()) {
                    Some(n) if (1..=1000).contains(&n) => out.model_slowdown = n,
                    _ if matches!(value.get_ref(), DeValue::Integer(_)) => {
                        self.bad_value("model_slowdown", "dsa", value, "an integer from 1 to 1000".to_owned())
                    }
                    _ => self.wrong_type("model_slowdown", "dsa", value, "an integer"),
                },
                "model_fault_every" => match integer(value.get_ref()).and_then(|n| u32::try_from(n).ok()) {
                    Some(n) => out.model_fault_every = n,
                    None if matches!(value.get_ref(), DeValue::Integer(_)) => {
                        self.bad_value("model_fault_every", "dsa", value, "an integer from 0 to 4294967295".to_owned())
                    }
                    None => self.wrong_type("model_fault_every", "dsa", value, "an integer"),
                },
                _ => self.unknown_key(key, "dsa", DSA_KEYS),
            }
        }
    }

    fn defaults(&mut self, table: &DeTable<'_>, section: &str, settings: &mut Settings) {
        for (key, value) in in_file_order(table) {
            match key.get_ref().as_ref() {
                "mode" => {
                    settings.mode = self.named("mode", section, value, Mode::NAMES, Mode::from_name).or(settings.mode)
                }
                _ => self.unknown_key(key, section, DEFAULTS_KEYS),
            }
        }
    }

    fn class_section(&mut self, table: &DeTable<'_>, section: &str, class: Class, out: &mut ClassSettings) {
        let keys = match class {
            Class::Tcp => TCP_KEYS,
            Class::Unix => UNIX_KEYS,
            _ if class.is_ipc() => IPC_KEYS,
            _ => COPY_KEYS,
        };
        for (key, value) in in_file_order(table) {
            match key.get_ref().as_ref() {
                "engine" => {
                    out.engine = self.named("engine", section, value, Engine::NAMES, Engine::from_name).or(out.engine)
                }
                "wait" => out.wait = self.named("wait", section, value, Wait::NAMES, Wait::from_name).or(out.wait),
                "cache" => {
                    out.cache = self.named("cache", section, value, Cache::NAMES, Cache::from_name).or(out.cache)
                }
                "cpu_share" => out.cpu_share = self.cpu_share(section, value).or(out.cpu_share),
                "min_bytes" => out.min_bytes = self.size("min_bytes", section, value).or(out.min_bytes),
                "workers" => out.workers = self.workers(section, value).or(out.workers),
                "chunk_bytes" => out.chunk_bytes = self.chunk_bytes(section, value).or(out.chunk_bytes),
                "depth" => out.depth = self.depth(section, value).or(out.depth),
                "ring_bytes" if class.is_ipc() => {
                    out.ring_bytes = self.size("ring_bytes", section, value).or(out.ring_bytes)
                }
                "handshake_after" if class.is_ipc() => {
                    out.handshake_after = self.size("handshake_after", section, value).or(out.handshake_after)
                }
                "write_behind" if matches!(class, Class::Unix | Class::Tcp) => match value.get_ref() {
                    DeValue::Boolean(b) => out.write_behind = Some(*b),
                    _ => self.wrong_type("write_behind", section, value, "a boolean (true or false)"),
                },
                "addresses" if class == Class::Tcp => {
                    let named = self.named("addresses", section, value, Addresses::NAMES, Addresses::from_name);
                    out.addresses = named.or(out.addresses)
                }
                _ => self.unknown_key(key, section, keys),
            }
        }
    }

    /// A byte count: an integer or a size string.
    fn size(&mut self, key: &str, section: &str, value: &Spanned<DeValue<'_>>) -> Option<u64> {
        const EXPECTED: &str = "a non-negative integer or a size such as \"256KiB\", \"1MiB\", \"1GiB\"";
        let parsed = match value.get_ref() {
            DeValue::Integer(_) => integer(value.get_ref()).and_then(|n| u64::try_from(n).ok()),
            DeValue::String(s) => parse_size(s),
            _ => {
                self.wrong_type(key, section, value, "an integer or a size string");
                return None;
            }
        };
        if parsed.is_none() {
            self.bad_value(key, section, value, EXPECTED.to_owned());
        }
        parsed
    }

    /// `chunk_bytes`: a size, a multiple of 4 KiB in [`CHUNK_BYTES`].
    fn chunk_bytes(&mut self, section: &str, value: &Spanned<DeValue<'_>>) -> Option<u64> {
        let n = self.size("chunk_bytes", section, value)?;
        if CHUNK_BYTES.contains(&n) && n % 4096 == 0 {
            return Some(n);
        }
        self.bad_value("chunk_bytes", section, value, "a multiple of 4KiB from \"4KiB\" to \"64MiB\"".to_owned());
        None
    }

    /// `depth`: an integer in [`DEPTH`].
    fn depth(&mut self, section: &str, value: &Spanned<DeValue<'_>>) -> Option<u32> {
        let DeValue::Integer(_) = value.get_ref() else {
            self.wrong_type("depth", section, value, "an integer");
            return None;
        };
        let n = integer(value.get_ref()).and_then(|n| u32::try_from(n).ok()).filter(|n| DEPTH.contains(n));
        if n.is_none() {
            self.bad_value("depth", section, value, "an integer from 1 to 64".to_owned());
        }
        n
    }

    /// `cpu_share`: a number from 0 to 1, or "auto".
    fn cpu_share(&mut self, section: &str, value: &Spanned<DeValue<'_>>) -> Option<CpuShare> {
        let number = match value.get_ref() {
            DeValue::String(s) if s.as_ref() == "auto" => return Some(CpuShare::Auto),
            DeValue::Float(x) => x.as_str().parse::<f64>().ok(),
            DeValue::Integer(_) => integer(value.get_ref()).map(|n| n as f64),
            DeValue::String(_) => None,
            _ => {
                self.wrong_type("cpu_share", section, value, "a number from 0 to 1 or \"auto\"");
                return None;
            }
        };
        let parsed =
            number.filter(|x| (0.0..=1.0).contains(x)).map(|x| CpuShare::Permille((x * 1000.0).round() as u16));
        if parsed.is_none() {
            self.bad_value("cpu_share", section, value, "a number from 0 to 1, or \"auto\"".to_owned());
        }
        parsed
    }

    fn workers(&mut self, section: &str, value: &Spanned<DeValue<'_>>) -> Option<Workers> {
        let expected = || format!("\"auto\" or an integer from 0 to {}", Workers::MAX);
        let parsed = match value.get_ref() {
            DeValue::String(s) if s.as_ref() == "auto" => Some(Workers::Auto),
            DeValue::String(_) => None,
            DeValue::Integer(_) => integer(value.get_ref())
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n <= Workers::MAX)
                .map(Workers::Count),
            _ => {
                self.wrong_type("workers", section, value, "an integer or \"auto\"");
                return None;
            }
        };
        if parsed.is_none() {
            self.bad_value("workers", section, value, expected());
        }
        parsed
    }

    fn stats_interval(&mut self, value: &Spanned<DeValue<'_>>) -> Option<Duration> {
        let parsed = match value.get_ref() {
            DeValue::Integer(_) => integer(value.get_ref()).and_then(|n| seconds(n as f64)),
            DeValue::Float(x) => x.as_str().parse::<f64>().ok().and_then(seconds),
            DeValue::String(s) => parse_duration(s),
            _ => {
                self.wrong_type("stats_interval", "", value, "a number of seconds or a string such as \"500ms\"");
                return None;
            }
        };
        let (low, high) = STATS_INTERVAL_RANGE;
        let parsed = parsed.filter(|d| (low..=high).contains(d));
        if parsed.is_none() {
            let expected = "a duration from 10ms to 1 day: seconds (1, 0.5) or a string (\"500ms\", \"2s\")";
            self.bad_value("stats_interval", "", value, expected.to_owned());
        }
        parsed
    }

    fn overrides(&mut self, table: &DeTable<'_>, out: &mut Vec<Override>) {
        for (key, value) in in_file_order(table) {
            let glob_text = key.get_ref().to_string();
            let section = format!("process.\"{glob_text}\"");
            let pattern = match glob::Pattern::new(&glob_text) {
                Ok(pattern) => Some(pattern),
                Err(e) => {
                    let kind = ErrorKind::BadPattern { pattern: glob_text.clone(), reason: e.msg.to_owned() };
                    self.error(key.span().start, kind);
                    None
                }
            };
            let Some(layer) = self.table(&section, "", value) else {
                continue;
            };
            let mut settings = Settings::default();
            for (inner_key, inner_value) in in_file_order(layer) {
                if !self.layer_entry(inner_key, inner_value, &section, &mut settings) {
                    self.unknown_key(inner_key, &section, LAYER_KEYS);
                }
            }
            if let Some(pattern) = pattern {
                out.push(Override { pattern, settings });
            }
        }
    }
}

impl Policy {
    /// Reads and parses the policy file at `path`.
    pub fn load(path: &Path) -> Result<Policy, Rejected> {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => parse(&text, &file),
            Err(e) => Err(Rejected {
                diagnostics: vec![Diagnostic {
                    file,
                    position: None,
                    kind: ErrorKind::Unreadable { reason: e.to_string() },
                }],
                strict: false,
            }),
        }
    }
}
