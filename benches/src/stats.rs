//! The statistics every comparison reports: medians, and speedups of runs
//! paired back to back, oriented so that above 1 means the library did
//! better.

use serde_json::{Value, json};

/// Which way a figure is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

impl Better {
    pub fn name(self) -> &'static str {
        match self {
            Better::Higher => "higher",
            Better::Lower => "lower",
        }
    }

    /// How much better `value` is than `baseline`: `value / baseline` for
    /// Higher figures (throughput), `baseline / value` for Lower ones (time,
    /// CPU); above 1 means better. NaN when the divisor is not positive.
    pub fn speedup(self, baseline: f64, value: f64) -> f64 {
        let (num, den) = match self {
            Better::Higher => (value, baseline),
            Better::Lower => (baseline, value),
        };
        if den > 0.0 { num / den } else { f64::NAN }
    }
}

/// The median of `v` (the mean of the two middle values of an even count);
/// NaN when empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|x, y| x.total_cmp(y));
    let mid = v.len() / 2;
    if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 }
}

/// Median, least and greatest of some figures (NaNs left out).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(v: &[f64]) -> Spread {
        let v: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return Spread { median: f64::NAN, min: f64::NAN, max: f64::NAN };
        }
        Spread {
            median: median(v.clone()),
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }

    /// `{"median": .., "min": .., "max": ..}` (null for NaN).
    pub fn to_json(self) -> Value {
        json!({ "median": num(self.median), "min": num(self.min), "max": num(self.max) })
    }
}

/// The speedup of each pair `(baseline[i], value[i])` (see [`Better::speedup`]).
pub fn paired_speedups(better: Better, baseline: &[f64], value: &[f64]) -> Vec<f64> {
    baseline.iter().zip(value).map(|(b, v)| better.speedup(*b, *v)).collect()
}

/// A JSON number, or null for NaN and infinities (JSON has neither).
pub fn num(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

/// Three or four significant digits.
pub fn figure(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    match x.abs() {
        a if a >= 100.0 => format!("{x:.0}"),
        a if a >= 10.0 => format!("{x:.1}"),
        a if a >= 1.0 => format!("{x:.2}"),
        _ => format!("{x:.3}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn speedups_point_the_same_way_for_both_kinds() {
        // Throughput: 10 GB/s against the kernel's 5 is 2x.
        assert_eq!(Better::Higher.speedup(5.0, 10.0), 2.0);
        // Time: 1 s against the kernel's 3 s is 3x.
        assert_eq!(Better::Lower.speedup(3.0, 1.0), 3.0);
        assert!(Better::Lower.speedup(3.0, 0.0).is_nan());
        assert!(Better::Higher.speedup(0.0, 1.0).is_nan());
    }

    #[test]
    fn pairs_are_taken_in_order() {
        assert_eq!(paired_speedups(Better::Higher, &[1.0, 2.0, 4.0], &[2.0, 2.0, 2.0]), vec![2.0, 1.0, 0.5]);
        assert_eq!(paired_speedups(Better::Lower, &[1.0, 2.0], &[2.0, 1.0, 9.0]), vec![0.5, 2.0]);
    }

    #[test]
    fn spread_skips_nan() {
        let s = Spread::of(&[3.0, f64::NAN, 1.0, 2.0]);
        assert_eq!(s, Spread { median: 2.0, min: 1.0, max: 3.0 });
        assert!(Spread::of(&[]).median.is_nan());
        assert_eq!(Spread::of(&[f64::NAN]).to_json(), json!({ "median": null, "min": null, "max": null }));
    }

    #[test]
    fn figures() {
        assert_eq!(figure(123.456), "123");
        assert_eq!(figure(12.345), "12.3");
        assert_eq!(figure(1.2345), "1.23");
        assert_eq!(figure(0.12345), "0.123");
        assert_eq!(figure(f64::NAN), "-");
    }
}
