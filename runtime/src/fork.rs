//! What happens at fork: the atfork child handler, which makes the child
//! of fork(2) the owner of the library's state ([`process`]) and resets
//! what stayed with the parent or with its other threads: the copy
//! workers, the DSA queues, the counters, the shared-memory index's lock,
//! the stats writer, the IPC channels and fds, and the event loops' twins.
//! It sits above every module it resets; none of them calls it.

use ipc_offload_engine::pool::POOL;
use ipc_offload_engine::stats;
use ipc_offload_sys as sys;

use crate::process;

/// Installs the fork handler (once, from the constructor).
pub fn install_handler() -> Result<(), sys::Errno> {
    sys::thread::at_fork_child(after_fork_in_child)?;
    sys::thread::at_fork_prepare(before_fork)
}

/// Runs in the parent before fork(2): offers left open by writes end, so
/// that the child's first write on a shared socket comes after their bytes
/// for every reader (`crate::ipc::behind`).
unsafe extern "C" fn before_fork() {
    if !process::is_owner() || !crate::ipc::behind::USED.load(core::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let _errno = sys::ErrnoGuard::save();
    let _ = std::panic::catch_unwind(crate::ipc::behind::before_fork);
}

/// Runs in the child of fork(2): async-signal-safe work only.
unsafe extern "C" fn after_fork_in_child() {
    if process::owner_pid() == 0 {
        return;
    }
    process::claim();
    POOL.reset_after_fork();
    // The queues' portals and PASID (or the model's thread) stayed with the
    // parent: the child opens its own at its first dsa copy.
    ipc_offload_dsa::open::forget_after_fork();
    stats::reset_all();
    ipc_offload_regions::after_fork();
    crate::stats_file::after_fork();
    // SAFETY: this is the fork child handler: one thread.
    unsafe { crate::ipc::after_fork() };
}
