//! ipc-offload policy files: parse, validate, match a process, resolve a rule.
//!
//! A policy is TOML (docs/guide/policy.md is the reference):
//!
//! ```toml
//! strict = false
//! [defaults]
//! mode = "throughput"
//! [memcpy]
//! engine = "auto"
//! min_bytes = "1MiB"
//! [process."redis-server"]
//! unix.min_bytes = "64KiB"
//! ```
//!
//! [`parse`] turns text into a [`Policy`] or a [`Rejected`] listing every
//! problem as `FILE:LINE:COL: message`; [`Policy::resolve`] applies the
//! `[process."GLOB"]` overrides that match a process and yields one [`Rule`]
//! per operation class. Nothing here is unsafe or touches the process: the
//! runtime and the `check` command share this code, so they agree.

mod error;
mod model;
mod parse;
mod rules;
mod units;

pub use error::{Diagnostic, ErrorKind, Rejected, line_col};
pub use model::{
    Addresses, Cache, Class, ClassSettings, CpuShare, DsaDevice, DsaSettings, Engine, Mode, OnFault, Settings, Wait,
    Workers,
};
pub use parse::parse;
pub use rules::{BUILTIN_POLICY, Override, Policy, Resolved, Rule};
pub use units::{format_size, parse_duration, parse_size};

#[cfg(test)]
mod tests;
