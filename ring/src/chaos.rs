//! Schedule perturbation points (docs/reliability/concurrency.md): an
//! empty inline function in the library; in this crate's unit tests, the
//! `ipc-offload-chaos` crate's active points.

#[cfg(test)]
pub(crate) use ipc_offload_chaos::{Enabled, join, point, within};

/// A perturbation point: nothing outside this crate's tests.
#[cfg(not(test))]
#[inline(always)]
pub(crate) fn point() {}
