//! Cache placement: whether a copy's destination writes go into the cache
//! (ordinary stores; DSA's cache-control flag) or around it (non-temporal
//! stores; no flag), from the class's `cache` key and where the bytes go
//! next. One pure function, used by the runtime for every class and by the
//! cache benchmark, so that what is measured is what runs.
//!
//! `auto` injects what a reader will want soon and bypasses what could not
//! stay in the cache anyway:
//! - a chunk a writer puts in an IPC ring slot is read by the peer at once:
//!   inject (slots are at most 16 MiB, below the caches of the machines
//!   this targets);
//! - a reader's copy out of the ring into a read call's buffers, a private
//!   copy, a copy into a shared region: inject below `limit` (the
//!   last-level cache's size), bypass at or above it: a copy that large
//!   evicts its own first bytes before anyone reads them, and skipping the
//!   read-for-ownership saves a third of the memory traffic.

use ipc_offload_policy::Cache;

/// Where a copy's bytes go next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// Into an IPC ring slot, for the peer to copy out at once.
    RingChunk,
    /// Into the buffers of a read call of `total` bytes (decided once per
    /// call, for all of its chunks).
    Read { total: u64 },
    /// A copy in the process's own memory (or into a shared region) of
    /// this many bytes.
    Copy,
}

/// The `cache_below` of [`crate::kinds::CopyOptions`] for copies to `dest` under
/// `cache`, with `limit` the last-level cache's size (`u64::MAX` when
/// unknown): copies shorter than the result go into the cache.
pub fn cache_below(cache: Cache, dest: Dest, limit: u64) -> usize {
    const INJECT: usize = usize::MAX;
    const BYPASS: usize = 0;
    match (cache, dest) {
        (Cache::Inject, _) => INJECT,
        (Cache::Bypass, _) => BYPASS,
        (Cache::Auto, Dest::RingChunk) => INJECT,
        (Cache::Auto, Dest::Read { total }) if total >= limit => BYPASS,
        (Cache::Auto, Dest::Read { .. }) => INJECT,
        (Cache::Auto, Dest::Copy) => usize::try_from(limit).unwrap_or(INJECT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LLC: u64 = 32 << 20;

    #[test]
    fn inject_and_bypass_are_absolute() {
        for dest in [Dest::RingChunk, Dest::Read { total: 1 << 30 }, Dest::Copy] {
            assert_eq!(cache_below(Cache::Inject, dest, LLC), usize::MAX);
            assert_eq!(cache_below(Cache::Bypass, dest, LLC), 0);
        }
    }

    #[test]
    fn auto_injects_ring_chunks_and_small_copies_and_bypasses_large_ones() {
        assert_eq!(cache_below(Cache::Auto, Dest::RingChunk, LLC), usize::MAX);
        assert_eq!(cache_below(Cache::Auto, Dest::Read { total: LLC - 1 }, LLC), usize::MAX);
        assert_eq!(cache_below(Cache::Auto, Dest::Read { total: LLC }, LLC), 0);
        assert_eq!(cache_below(Cache::Auto, Dest::Copy, LLC), LLC as usize);
        assert_eq!(cache_below(Cache::Auto, Dest::Copy, u64::MAX), usize::MAX, "cache size unknown: inject");
    }
}
