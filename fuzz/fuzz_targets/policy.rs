//! The policy parser (policy::parse), fed any text a user could put in
//! IPC_OFFLOAD_POLICY: it must never panic, a rejection must format (its
//! diagnostics point into the text by line and column), and an accepted
//! policy must resolve for any process name.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match ipc_offload_policy::parse(text, "fuzz.toml") {
        Ok(policy) => {
            let _ = policy.resolve(&["python3", "redis-server"]);
            let _ = policy.resolve(&[]);
        }
        Err(rejected) => {
            assert!(!rejected.diagnostics.is_empty());
            let _ = rejected.to_string();
        }
    }
});
