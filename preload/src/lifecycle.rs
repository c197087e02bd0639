//! The constructor and destructor, as `.init_array` / `.fini_array` entries.
//! glibc calls `.init_array` functions with `(argc, argv, envp)`, which gives
//! the constructor argv\[0\] for `[process."GLOB"]` matching before `main`.

use core::ffi::{CStr, c_char, c_int};

use ipc_offload_runtime::init::{finish, start};

type InitFn = extern "C" fn(c_int, *const *const c_char, *const *const c_char);

#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: InitFn = constructor;

#[used]
#[unsafe(link_section = ".fini_array")]
static DESTRUCTOR: extern "C" fn() = destructor;

extern "C" fn constructor(argc: c_int, argv: *const *const c_char, _envp: *const *const c_char) {
    let argv0 = if argc > 0 && !argv.is_null() {
        // SAFETY: glibc passes the program's argv: `argc` pointers to
        // NUL-terminated strings that live as long as the process.
        unsafe {
            let first = *argv;
            (!first.is_null()).then(|| CStr::from_ptr(first).to_bytes())
        }
    } else {
        None
    };
    start(argv0);
}

extern "C" fn destructor() {
    finish();
}
