//! Summaries of a window's samples, sent as `{min, max, mean, median, mode}`.
//!
//! Electric's reporter took its median from unsorted samples, divided by the whole length on
//! even counts and crashed on empty windows. [`Summary`] keeps one count per distinct value in
//! a sorted map, so every statistic is exact, an empty summary is well defined, and memory grows
//! with the number of *distinct* values rather than the number of samples.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

/// The samples of one window, summarised on demand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// value → how many times it was sampled.
    counts: BTreeMap<u64, u64>,
    len: u64,
    sum: u128,
}

impl Summary {
    /// An empty summary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample.
    pub fn record(&mut self, value: u64) {
        self.record_n(value, 1);
    }

    /// Adds `times` samples of the same value. Counts saturate rather than overflow.
    pub fn record_n(&mut self, value: u64, times: u64) {
        if times == 0 {
            return;
        }
        let count = self.counts.entry(value).or_insert(0);
        *count = count.saturating_add(times);
        self.len = self.len.saturating_add(times);
        self.sum = self
            .sum
            .saturating_add(u128::from(value) * u128::from(times));
    }

    /// How many samples were recorded.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no sample was recorded.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The statistics of the samples so far. An empty summary gives min, max and median 0,
    /// mean 0.0 and no mode.
    pub fn stats(&self) -> SummaryStats {
        let (Some((&min, _)), Some((&max, _))) =
            (self.counts.first_key_value(), self.counts.last_key_value())
        else {
            return SummaryStats::default();
        };
        SummaryStats {
            min,
            max,
            mean: self.sum as f64 / self.len as f64,
            median: self.median(),
            // Ascending iteration with a strict comparison keeps the smallest value on a tie.
            mode: self
                .counts
                .iter()
                .fold(None::<(u64, u64)>, |best, (&value, &count)| match best {
                    Some((_, best_count)) if best_count >= count => best,
                    _ => Some((value, count)),
                })
                .map(|(value, _)| value),
        }
    }

    /// The value at 0-based `rank` in sorted order; `rank < len` is the caller's to ensure.
    fn value_at(&self, rank: u64) -> u64 {
        let mut seen = 0u64;
        for (&value, &count) in &self.counts {
            seen = seen.saturating_add(count);
            if rank < seen {
                return value;
            }
        }
        // Only reachable when `len` saturated; the largest value is then the honest answer.
        self.counts.last_key_value().map_or(0, |(&v, _)| v)
    }

    fn median(&self) -> Median {
        let len = self.len;
        if !len.is_multiple_of(2) {
            Median::of_value(self.value_at(len / 2))
        } else {
            let low = u128::from(self.value_at(len / 2 - 1));
            let high = u128::from(self.value_at(len / 2));
            Median {
                doubled: low + high,
            }
        }
    }
}

/// The statistics of a [`Summary`], in the report's wire shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryStats {
    /// The smallest sample, or 0 without samples.
    pub min: u64,
    /// The largest sample, or 0 without samples.
    pub max: u64,
    /// The arithmetic mean, or 0.0 without samples.
    pub mean: f64,
    /// The true median: the middle sample, or the mean of the two middle samples for an even
    /// count; 0 without samples.
    pub median: Median,
    /// The most frequent sample (the smallest one on a tie), or `null` without samples.
    pub mode: Option<u64>,
}

/// A median of integer samples, kept exact: it is either an integer or an integer plus one
/// half. Serialised as a JSON integer when whole, else as a float (e.g. `2.5`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Median {
    doubled: u128,
}

impl Median {
    /// The median of a single value.
    pub fn of_value(value: u64) -> Self {
        Self {
            doubled: u128::from(value) * 2,
        }
    }

    /// The median as a float (exact up to 2^53).
    pub fn as_f64(self) -> f64 {
        self.doubled as f64 / 2.0
    }

    /// The median as an integer, if it is whole.
    pub fn as_u64(self) -> Option<u64> {
        self.doubled
            .is_multiple_of(2)
            .then_some((self.doubled / 2) as u64)
    }
}

impl Serialize for Median {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.as_u64() {
            Some(whole) => serializer.serialize_u64(whole),
            None => serializer.serialize_f64(self.as_f64()),
        }
    }
}

impl<'de> Deserialize<'de> for Median {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MedianVisitor;
        impl Visitor<'_> for MedianVisitor {
            type Value = Median;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative number that is whole or ends in .5")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Median, E> {
                Ok(Median::of_value(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Median, E> {
                u64::try_from(v)
                    .map(Median::of_value)
                    .map_err(|_| E::custom("a median is never negative"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Median, E> {
                let doubled = v * 2.0;
                if v.is_finite() && v >= 0.0 && doubled.fract() == 0.0 {
                    Ok(Median {
                        doubled: doubled as u128,
                    })
                } else {
                    Err(E::custom(format!(
                        "{v} is not a median of integer samples (whole or .5 expected)"
                    )))
                }
            }
        }
        deserializer.deserialize_any(MedianVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(values: &[u64]) -> SummaryStats {
        let mut s = Summary::new();
        values.iter().for_each(|&v| s.record(v));
        s.stats()
    }

    #[test]
    fn empty_summary_is_zero_with_null_mode() {
        let stats = of(&[]);
        assert_eq!(stats, SummaryStats::default());
        let json = serde_json::to_value(stats).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"min": 0, "max": 0, "mean": 0.0, "median": 0, "mode": null})
        );
    }

    #[test]
    fn one_sample_is_every_statistic() {
        let stats = of(&[64_262_224]);
        assert_eq!(
            (stats.min, stats.max, stats.mean, stats.mode),
            (64_262_224, 64_262_224, 64_262_224.0, Some(64_262_224))
        );
        assert_eq!(stats.median.as_u64(), Some(64_262_224));
    }

    #[test]
    fn odd_count_median_is_the_middle_of_the_sorted_samples() {
        // Unsorted on purpose: Electric took the middle of the unsorted list.
        let stats = of(&[9, 1, 5, 3, 7]);
        assert_eq!(stats.median.as_u64(), Some(5));
        assert_eq!(stats.mean, 5.0);
        assert_eq!((stats.min, stats.max), (1, 9));
    }

    #[test]
    fn even_count_median_is_the_mean_of_the_two_middle_samples() {
        let stats = of(&[4, 1, 3, 2]);
        assert_eq!(stats.median.as_f64(), 2.5);
        assert_eq!(
            serde_json::to_value(stats.median).unwrap(),
            serde_json::json!(2.5)
        );
        let stats = of(&[10, 2, 4, 8]);
        assert_eq!(stats.median.as_u64(), Some(6));
    }

    #[test]
    fn mode_is_the_most_frequent_and_the_smallest_on_a_tie() {
        assert_eq!(of(&[3, 1, 3, 2, 2]).mode, Some(2));
        assert_eq!(of(&[5, 5, 5, 1]).mode, Some(5));
        assert_eq!(of(&[7, 6, 8]).mode, Some(6));
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let stats = of(&[u64::MAX, u64::MAX, u64::MAX - 1, u64::MAX]);
        assert_eq!(stats.max, u64::MAX);
        assert_eq!(stats.min, u64::MAX - 1);
        assert_eq!(stats.median.as_u64(), Some(u64::MAX));
        assert!(stats.mean > 1.8e19);
        let mut s = Summary::new();
        s.record_n(u64::MAX, u64::MAX);
        s.record_n(u64::MAX, u64::MAX);
        assert_eq!(s.len(), u64::MAX);
        assert_eq!(s.stats().max, u64::MAX);
    }

    #[test]
    fn median_round_trips_through_json() {
        for stats in [of(&[1, 2]), of(&[1, 2, 3]), of(&[])] {
            let text = serde_json::to_string(&stats).unwrap();
            let back: SummaryStats = serde_json::from_str(&text).unwrap();
            assert_eq!(back, stats);
        }
        assert!(serde_json::from_str::<Median>("2.25").is_err());
        assert!(serde_json::from_str::<Median>("-1").is_err());
    }
}
