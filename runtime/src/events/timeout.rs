//! The wait calls' timeouts (milliseconds for epoll_wait and poll, a
//! timespec for epoll_pwait2, ppoll and pselect) as durations and back,
//! and their deadlines. A wait that the library splits in several kernel
//! waits passes each the time left, rounded up: it never ends before the
//! program's time.

use core::ffi::c_int;
use core::time::Duration;
use std::time::Instant;

/// When a wait of `timeout` (None: no limit) started now ends.
pub fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

/// What is left of a wait until `deadline`.
pub fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// A timeout in milliseconds as a duration (negative: none).
pub fn from_ms(ms: c_int) -> Option<Duration> {
    (ms >= 0).then(|| Duration::from_millis(ms as u64))
}

/// A duration as a timeout in milliseconds, rounded up; -1 for none.
pub fn to_ms(d: Option<Duration>) -> c_int {
    d.map_or(-1, |d| d.as_nanos().div_ceil(1_000_000).min(c_int::MAX as u128) as c_int)
}

/// A timespec timeout as a duration (null: none).
///
/// # Safety
/// `ts` null or valid.
pub unsafe fn from_timespec(ts: *const libc::timespec) -> Option<Duration> {
    if ts.is_null() {
        return None;
    }
    // SAFETY: the caller's timespec, valid per contract.
    let ts = unsafe { *ts };
    Some(Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32))
}

/// A duration as a timespec.
pub fn to_timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_convert_both_ways_rounding_up() {
        assert_eq!(from_ms(-1), None);
        assert_eq!(from_ms(0), Some(Duration::ZERO));
        assert_eq!(from_ms(1500), Some(Duration::from_millis(1500)));
        assert_eq!(to_ms(None), -1);
        assert_eq!(to_ms(Some(Duration::ZERO)), 0);
        assert_eq!(to_ms(Some(Duration::from_micros(1))), 1, "never early");
        assert_eq!(to_ms(Some(Duration::from_millis(250))), 250);
        assert_eq!(to_ms(Some(Duration::from_secs(u64::MAX / 4))), c_int::MAX);
        let ts = libc::timespec { tv_sec: 2, tv_nsec: 5 };
        // SAFETY: a local timespec.
        assert_eq!(unsafe { from_timespec(&ts) }, Some(Duration::new(2, 5)));
        // SAFETY: null means no limit.
        assert_eq!(unsafe { from_timespec(core::ptr::null()) }, None);
        let back = to_timespec(Duration::new(3, 7));
        assert_eq!((back.tv_sec, back.tv_nsec), (3, 7));
    }
}
