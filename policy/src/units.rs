//! Byte sizes ("256KiB") and durations ("500ms") as written in policy files.

use std::time::Duration;

/// Binary suffixes accepted after a size, with their multipliers.
const SIZE_SUFFIXES: &[(&str, u64)] =
    &[("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("B", 1)];

/// Parses `"<digits>[ ]<suffix>"` where suffix is B, KiB, MiB, GiB or TiB (or
/// none). Decimal suffixes (KB, MB) are refused: they are ambiguous.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, rest) = text.split_at(digits_end);
    if digits.is_empty() {
        return None;
    }
    let number: u64 = digits.parse().ok()?;
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Some(number);
    }
    let multiplier = SIZE_SUFFIXES.iter().find(|(suffix, _)| *suffix == rest)?.1;
    number.checked_mul(multiplier)
}

/// Formats a byte count the way policy files write it: the largest binary
/// suffix that divides it exactly ("1MiB", "1536KiB", "100B").
pub fn format_size(bytes: u64) -> String {
    SIZE_SUFFIXES
        .iter()
        .find(|(_, m)| bytes != 0 && bytes % m == 0)
        .map(|(suffix, m)| format!("{}{}", bytes / m, suffix))
        .unwrap_or_else(|| format!("{bytes}B"))
}

/// Parses `"<number><unit>"` with unit ms or s (fractions allowed: "1.5s").
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else {
        return None;
    };
    let value: f64 = number.trim_end().parse().ok()?;
    seconds(value * scale)
}

/// A duration from a number of seconds; `None` when negative, NaN or absurd.
pub fn seconds(value: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_and_without_suffixes() {
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("256KiB"), Some(256 << 10));
        assert_eq!(parse_size("1 MiB"), Some(1 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("2TiB"), Some(2 << 40));
        assert_eq!(parse_size("17B"), Some(17));
    }

    #[test]
    fn sizes_that_are_refused() {
        for bad in ["", "KiB", "1KB", "1MB", "1 kib", "-1", "1.5MiB", "12XB", "99999999999TiB"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sizes_format_back_to_what_parses() {
        for bytes in [0, 1, 100, 1024, 1536 << 10, 1 << 20, 256 << 10, 3 << 30] {
            assert_eq!(parse_size(&format_size(bytes)), Some(bytes));
        }
        assert_eq!(format_size(1 << 20), "1MiB");
        assert_eq!(format_size(1536 << 10), "1536KiB");
        assert_eq!(format_size(100), "100B");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        for bad in ["", "1", "s", "-1s", "1m", "fast"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }
}
