//! The policy a table calls for, as TOML text: a pure function, so that the
//! tests can feed it any table.

use ipc_offload_policy::{Engine, format_size};

use super::table::{MARGIN, Table};

/// The policy file for `table`: a comment header with the whole table, then
/// per measured class its `engine` and, where one wins, `min_bytes`. Keys
/// and classes it does not set keep their built-in values.
pub fn policy(table: &Table) -> String {
    let mut out = String::from(
        "# ipc-offload policy written by `scripts/ipc-offload calibrate` from what it\n\
         # measured on this machine. An engine wins at a size when it is at least\n",
    );
    out.push_str(&format!(
        "# {:.0}% faster than libc (memory classes) or the kernel (unix, pipe) in the\n",
        MARGIN * 100.0
    ));
    out.push_str(
        "# median of rounds that ran both one after the other; min_bytes is the\n\
         # smallest measured size from which it wins at every larger size; \"off\"\n\
         # where no engine wins. Check it with `scripts/ipc-offload check FILE`.\n#\n",
    );
    for line in table.render().lines() {
        out.push_str(if line.is_empty() { "#" } else { "# " });
        out.push_str(line);
        out.push('\n');
    }
    let choices = table.choices();
    for choice in &choices {
        out.push_str(&format!("\n# {}\n[{}]\nengine = \"{}\"\n", choice.reason, choice.class, choice.engine));
        if let Some(min) = choice.min_bytes {
            out.push_str(&format!("min_bytes = \"{}\"\n", format_size(min)));
        }
    }
    if table.dsa_model && choices.iter().any(|c| matches!(c.engine, Engine::Dsa | Engine::Hybrid)) {
        out.push_str(
            "\n# The dsa engine as measured: the device model, a thread of the process\n\
             # that executes the descriptors (for tests; its figures say nothing of hardware).\n\
             [dsa]\ndevice = \"model\"\n",
        );
    }
    out
}
