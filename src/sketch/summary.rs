//! Summaries of a window's samples, sent as `{min, max, mean, median, mode}`, in bounded
//! memory whatever the number of samples, with every statistic kept (none is a placeholder)
//! and an empty summary well defined (`0/0/0.0/0/null`). A [`Summary`] is:
//!
//! - **Exact** while the window has at most [`EXACT_VALUES`] distinct values (the usual case
//!   for clients, tables per subscription and rows of small shapes): one count per distinct
//!   value in a sorted map.
//! - **Bucketed** beyond that: a log-linear histogram of [`BUCKETS`] counts (30 KiB, whatever
//!   the number of samples). Values below 128 keep a bucket each; above, each power of two is
//!   split into 64 equal buckets, so a bucket is at most 1/64 of its lower bound wide.
//!   `min`, `max` and `mean` stay exact. The median is the midpoint of the bucket that holds the
//!   middle sample (clamped to `[min, max]`), within 1/128 (0.79 %) of the true median. The
//!   mode is the midpoint of the fullest bucket (the lowest on a tie), which is exact for
//!   values below 128 and otherwise within 0.79 % of a value in that bucket.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;

pub use electric_telemetry_report::{Median, SummaryStats};

/// The most distinct values a summary keeps exactly; one more turns it into buckets.
pub const EXACT_VALUES: usize = 1024;

/// Bits of sub-bucket per power of two: 64 buckets per octave.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// How many buckets a bucketed summary holds: 128 one-value buckets, then 64 per power of two
/// from 2^7 up to 2^64.
pub const BUCKETS: usize = (2 * SUB + (64 - SUB_BITS as u64 - 1) * SUB) as usize;

/// The bucket that holds `value`.
fn bucket_of(value: u64) -> usize {
    if value < 2 * SUB {
        return value as usize;
    }
    let shift = 63 - value.leading_zeros() - SUB_BITS;
    (u64::from(shift) * SUB + (value >> shift)) as usize
}

/// The smallest and largest value of bucket `index`.
fn bucket_bounds(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < 2 * SUB {
        return (index, index);
    }
    let shift = index / SUB - 1;
    let low = (index % SUB + SUB) << shift;
    (low, low + ((1u64 << shift) - 1))
}

/// The value a bucket stands for: its midpoint.
fn bucket_midpoint(index: usize) -> u64 {
    let (low, high) = bucket_bounds(index);
    low + (high - low) / 2
}

/// The samples of one window, summarised on demand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    len: u64,
    sum: u128,
    min: u64,
    max: u64,
    values: Values,
}

#[derive(Clone, PartialEq, Eq)]
enum Values {
    /// value → how many times it was sampled.
    Exact(BTreeMap<u64, u64>),
    /// bucket → how many samples fell in it; always `BUCKETS` long.
    Bucketed(Box<[u64]>),
}

impl Default for Values {
    fn default() -> Self {
        Values::Exact(BTreeMap::new())
    }
}

impl fmt::Debug for Values {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Values::Exact(map) => f.debug_map().entries(map).finish(),
            Values::Bucketed(buckets) => f
                .debug_map()
                .entries(
                    buckets
                        .iter()
                        .enumerate()
                        .filter(|(_, &n)| n > 0)
                        .map(|(i, n)| (bucket_bounds(i), n)),
                )
                .finish(),
        }
    }
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
        if self.len == 0 {
            (self.min, self.max) = (value, value);
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.len = self.len.saturating_add(times);
        self.sum = self
            .sum
            .saturating_add(u128::from(value) * u128::from(times));
        match &mut self.values {
            Values::Exact(map) => {
                if let Some(count) = map.get_mut(&value) {
                    *count = count.saturating_add(times);
                } else if map.len() < EXACT_VALUES {
                    map.insert(value, times);
                } else {
                    self.bucket();
                    self.record_in_bucket(value, times);
                }
            }
            Values::Bucketed(_) => self.record_in_bucket(value, times),
        }
    }

    fn record_in_bucket(&mut self, value: u64, times: u64) {
        if let Values::Bucketed(buckets) = &mut self.values {
            let count = &mut buckets[bucket_of(value)];
            *count = count.saturating_add(times);
        }
    }

    /// Turns exact counts into bucket counts (no-op if already bucketed).
    fn bucket(&mut self) {
        if let Values::Exact(map) = &self.values {
            let mut buckets = vec![0u64; BUCKETS].into_boxed_slice();
            for (&value, &count) in map {
                let bucket = &mut buckets[bucket_of(value)];
                *bucket = bucket.saturating_add(count);
            }
            self.values = Values::Bucketed(buckets);
        }
    }

    /// Adds every sample of `other` to this summary, as if each had been recorded here. Two
    /// exact summaries stay exact while their union has at most [`EXACT_VALUES`] distinct
    /// values.
    #[cfg_attr(not(feature = "unstable-internals"), allow(dead_code))] // tests and benches
    pub fn merge(&mut self, other: &Summary) {
        if other.len == 0 {
            return;
        }
        if self.len == 0 {
            *self = other.clone();
            return;
        }
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.len = self.len.saturating_add(other.len);
        self.sum = self.sum.saturating_add(other.sum);
        match (&mut self.values, &other.values) {
            (Values::Exact(mine), Values::Exact(theirs)) => {
                for (&value, &count) in theirs {
                    let mine = mine.entry(value).or_insert(0);
                    *mine = mine.saturating_add(count);
                }
                if mine.len() > EXACT_VALUES {
                    self.bucket();
                }
            }
            (_, theirs) => {
                self.bucket();
                let Values::Bucketed(buckets) = &mut self.values else {
                    unreachable!("bucket() leaves the summary bucketed")
                };
                match theirs {
                    Values::Exact(map) => {
                        for (&value, &count) in map {
                            let bucket = &mut buckets[bucket_of(value)];
                            *bucket = bucket.saturating_add(count);
                        }
                    }
                    Values::Bucketed(theirs) => {
                        for (bucket, &count) in buckets.iter_mut().zip(theirs.iter()) {
                            *bucket = bucket.saturating_add(count);
                        }
                    }
                }
            }
        }
    }

    /// Forgets every sample (and gives back the memory they used).
    #[cfg_attr(not(feature = "unstable-internals"), allow(dead_code))] // tests and benches
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// How many samples were recorded.
    #[cfg_attr(not(feature = "unstable-internals"), allow(dead_code))] // tests and benches
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no sample was recorded.
    #[cfg_attr(not(feature = "unstable-internals"), allow(dead_code))] // tests and benches
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether every statistic is exact: at most [`EXACT_VALUES`] distinct values so far.
    #[cfg_attr(not(feature = "unstable-internals"), allow(dead_code))] // tests and benches
    pub fn is_exact(&self) -> bool {
        matches!(self.values, Values::Exact(_))
    }

    /// The values that share `value`'s bucket once a summary is bucketed: `value` alone below
    /// 128, else a range at most 1/64 of its lower bound wide.
    #[cfg_attr(not(feature = "unstable-internals"), allow(dead_code))] // tests and benches
    pub fn bucket_range(value: u64) -> RangeInclusive<u64> {
        let (low, high) = bucket_bounds(bucket_of(value));
        low..=high
    }

    /// The statistics of the samples so far. An empty summary gives min, max and median 0,
    /// mean 0.0 and no mode. See the module docs of `sketch::summary` for what is exact and the error
    /// bound once bucketed.
    pub fn stats(&self) -> SummaryStats {
        if self.len == 0 {
            return SummaryStats::default();
        }
        let mut stats = SummaryStats::default();
        stats.min = self.min;
        stats.max = self.max;
        stats.mean = self.sum as f64 / self.len as f64;
        stats.median = self.median();
        stats.mode = Some(self.mode());
        stats
    }

    /// The most frequent value (exact) or the midpoint of the fullest bucket; the smallest on
    /// a tie. Ascending iteration with a strict comparison keeps the smallest.
    fn mode(&self) -> u64 {
        let fullest = |counts: &mut dyn Iterator<Item = (u64, u64)>| {
            counts
                .fold(None::<(u64, u64)>, |best, (value, count)| match best {
                    Some((_, best_count)) if best_count >= count => best,
                    _ => Some((value, count)),
                })
                .map_or(self.min, |(value, _)| value)
        };
        match &self.values {
            Values::Exact(map) => fullest(&mut map.iter().map(|(&v, &n)| (v, n))),
            Values::Bucketed(buckets) => {
                let index = fullest(&mut buckets.iter().enumerate().map(|(i, &n)| (i as u64, n)));
                self.clamp(bucket_midpoint(index as usize))
            }
        }
    }

    /// Bucket midpoints may lie outside the samples' range; the exact bounds are better.
    fn clamp(&self, value: u64) -> u64 {
        value.clamp(self.min, self.max)
    }

    /// The value at 0-based `rank` in sorted order; `rank < len` is the caller's to ensure.
    fn value_at(&self, rank: u64) -> u64 {
        let mut seen = 0u64;
        match &self.values {
            Values::Exact(map) => {
                for (&value, &count) in map {
                    seen = seen.saturating_add(count);
                    if rank < seen {
                        return value;
                    }
                }
            }
            Values::Bucketed(buckets) => {
                for (index, &count) in buckets.iter().enumerate() {
                    seen = seen.saturating_add(count);
                    if rank < seen {
                        return self.clamp(bucket_midpoint(index));
                    }
                }
            }
        }
        // Only reachable when `len` saturated; the largest value is then the honest answer.
        self.max
    }

    fn median(&self) -> Median {
        let len = self.len;
        if !len.is_multiple_of(2) {
            Median::of_value(self.value_at(len / 2))
        } else {
            Median::of_pair(self.value_at(len / 2 - 1), self.value_at(len / 2))
        }
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
    fn buckets_tile_the_whole_u64_range_in_order() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        let mut next = 0u64;
        for index in 0..BUCKETS {
            let (low, high) = bucket_bounds(index);
            assert_eq!(low, next, "bucket {index} starts where the previous ended");
            assert!(high >= low);
            assert_eq!((bucket_of(low), bucket_of(high)), (index, index));
            // At most 1/64 of the lower bound wide, so the midpoint is within 1/128.
            assert!(high - low <= low / 64, "bucket {index}: {low}..={high}");
            next = high.wrapping_add(1);
        }
        assert_eq!(next, 0, "the last bucket ends at u64::MAX");
    }

    #[test]
    fn more_distinct_values_than_the_threshold_turn_into_buckets() {
        let mut s = Summary::new();
        for v in 0..EXACT_VALUES as u64 {
            s.record(v * 1000);
        }
        assert!(s.is_exact());
        s.record(7);
        assert!(!s.is_exact());
        let stats = s.stats();
        assert_eq!(
            (stats.min, stats.max),
            (0, (EXACT_VALUES as u64 - 1) * 1000)
        );
        let true_median = 511.5 * 1000.0;
        let error = (stats.median.as_f64() - true_median).abs() / true_median;
        assert!(error <= 1.0 / 128.0, "median {:?}", stats.median);
        // Memory is the buckets', whatever the number of further samples.
        for v in 0..100_000u64 {
            s.record(v.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
        assert!(matches!(&s.values, Values::Bucketed(b) if b.len() == BUCKETS));
    }

    #[test]
    fn merge_and_reset() {
        let mut a = Summary::new();
        let mut b = Summary::new();
        [1, 2, 3].iter().for_each(|&v| a.record(v));
        [3, 4].iter().for_each(|&v| b.record(v));
        a.merge(&b);
        assert_eq!(a.stats(), of(&[1, 2, 3, 3, 4]));
        a.merge(&Summary::new());
        assert_eq!(a.len(), 5);
        let mut empty = Summary::new();
        empty.merge(&a);
        assert_eq!(empty, a);
        a.reset();
        assert_eq!(a, Summary::new());
        assert_eq!(a.stats(), SummaryStats::default());
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
