//! `_exit` and `_Exit`: the last stats write of processes that end without
//! running exit handlers (Python's os._exit, vfork children, daemons).
//! `exit` itself needs no hook: it runs the library destructor.

use core::ffi::c_int;

use ipc_offload_runtime::init::finish;
use ipc_offload_sys::real;

/// _exit(2).
#[unsafe(no_mangle)]
pub extern "C" fn _exit(status: c_int) -> ! {
    finish();
    real::exit(status)
}

/// _Exit(2) (the C99 spelling of `_exit`).
#[unsafe(no_mangle)]
pub extern "C" fn _Exit(status: c_int) -> ! {
    finish();
    real::exit(status)
}
