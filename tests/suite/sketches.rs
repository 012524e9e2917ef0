//! Property tests of the bounded summary and distinct-count structures against exact oracles:
//! exact below their thresholds, within the documented error above, merge equal to recording
//! everything in one, reset to empty, and adversarial inputs (all equal, all distinct, extremes).

use std::collections::{BTreeMap, HashSet};

use electric_telemetry::internals::{AnonymousId, DistinctCount, Summary, EXACT_IDS, EXACT_VALUES};
use electric_telemetry::SummaryStats;
use proptest::prelude::*;

/// Samples that mix every hard case: tiny values (exact buckets), bucket edges, extremes and
/// wide random values, sometimes few distinct values and sometimes thousands.
fn samples() -> impl Strategy<Value = Vec<u64>> {
    let value = prop_oneof![
        4 => 0u64..200,
        2 => (7u32..64).prop_map(|e| 1u64 << e),
        2 => (7u32..64).prop_map(|e| (1u64 << e) - 1),
        1 => Just(0u64),
        1 => Just(u64::MAX),
        4 => any::<u64>(),
        2 => 1_000u64..2_000_000,
    ];
    prop_oneof![
        proptest::collection::vec(value.clone(), 0..300),
        proptest::collection::vec(value, 900..2_000),
    ]
}

struct Oracle {
    sorted: Vec<u64>,
}

impl Oracle {
    fn new(values: &[u64]) -> Self {
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        Self { sorted }
    }

    fn distinct(&self) -> usize {
        self.sorted.iter().collect::<HashSet<_>>().len()
    }

    /// The median doubled, so that it stays an integer.
    fn median_doubled(&self) -> u128 {
        let n = self.sorted.len();
        if n % 2 == 1 {
            2 * u128::from(self.sorted[n / 2])
        } else {
            u128::from(self.sorted[n / 2 - 1]) + u128::from(self.sorted[n / 2])
        }
    }

    fn counts(&self) -> BTreeMap<u64, usize> {
        let mut counts = BTreeMap::new();
        for &v in &self.sorted {
            *counts.entry(v).or_insert(0) += 1;
        }
        counts
    }

    /// The most frequent value, the smallest on a tie.
    fn mode(&self) -> (u64, usize) {
        self.counts().into_iter().fold(
            (0, 0),
            |best, (v, n)| if n > best.1 { (v, n) } else { best },
        )
    }

    fn mean(&self) -> f64 {
        self.sorted.iter().map(|&v| v as f64).sum::<f64>() / self.sorted.len() as f64
    }
}

fn summary_of(values: &[u64]) -> Summary {
    let mut s = Summary::new();
    values.iter().for_each(|&v| s.record(v));
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn summary_is_exact_below_the_threshold_and_within_its_bound_above(values in samples()) {
        let s = summary_of(&values);
        let stats = s.stats();
        if values.is_empty() {
            prop_assert_eq!(stats, SummaryStats::default());
            return Ok(());
        }
        let oracle = Oracle::new(&values);
        prop_assert_eq!(s.len(), values.len() as u64);
        prop_assert_eq!((stats.min, stats.max), (oracle.sorted[0], *oracle.sorted.last().unwrap()));
        let mean = oracle.mean();
        prop_assert!((stats.mean - mean).abs() <= mean * 1e-9, "{} vs {}", stats.mean, mean);
        let true_median = oracle.median_doubled() as f64 / 2.0;
        if oracle.distinct() <= EXACT_VALUES {
            prop_assert!(s.is_exact());
            prop_assert_eq!(stats.median.as_f64(), true_median);
            prop_assert_eq!(stats.mode, Some(oracle.mode().0));
        } else {
            prop_assert!(!s.is_exact());
            let error = (stats.median.as_f64() - true_median).abs();
            prop_assert!(error <= true_median / 128.0, "median {} vs {}", stats.median.as_f64(), true_median);
            // The mode's bucket holds at least as many samples as the most frequent value.
            let mode = stats.mode.unwrap();
            prop_assert!((stats.min..=stats.max).contains(&mode));
            let in_bucket = oracle.sorted.iter().filter(|v| Summary::bucket_range(mode).contains(v)).count();
            prop_assert!(in_bucket >= oracle.mode().1, "{} < {}", in_bucket, oracle.mode().1);
        }
    }

    #[test]
    fn summary_merge_equals_recording_everything_in_one(a in samples(), b in samples()) {
        let mut merged = summary_of(&a);
        merged.merge(&summary_of(&b));
        let all: Vec<u64> = a.iter().chain(&b).copied().collect();
        let one = summary_of(&all);
        prop_assert_eq!(merged.stats(), one.stats());
        prop_assert_eq!(merged.is_exact(), one.is_exact());
        merged.reset();
        prop_assert_eq!(merged, Summary::new());
    }

    #[test]
    fn summary_of_one_repeated_value_is_that_value_whatever_the_count(
        value in any::<u64>(), times in 1u64..u64::MAX, repeats in 1usize..4
    ) {
        let mut s = Summary::new();
        (0..repeats).for_each(|_| s.record_n(value, times));
        let stats = s.stats();
        prop_assert!(s.is_exact());
        prop_assert_eq!((stats.min, stats.max, stats.mode), (value, value, Some(value)));
        prop_assert_eq!(stats.median.as_u64(), Some(value));
    }

    #[test]
    fn distinct_count_is_exact_below_the_threshold_and_close_above(
        raw in proptest::collection::vec(0u32..5_000, 0..3_000), copies in 1usize..3
    ) {
        let mut d = DistinctCount::new();
        for _ in 0..copies {
            raw.iter().for_each(|r| d.insert(AnonymousId::new(&format!("id-{r}"))));
        }
        let truth = raw.iter().collect::<HashSet<_>>().len() as u64;
        if truth <= EXACT_IDS as u64 {
            prop_assert!(d.is_exact());
            prop_assert_eq!(d.count(), truth);
        } else {
            prop_assert!(!d.is_exact());
            prop_assert!(d.count() > EXACT_IDS as u64, "never below what was counted exactly");
            // 0.81 % standard error: 5 % is over six of them.
            let error = (d.count() as f64 - truth as f64).abs() / truth as f64;
            prop_assert!(error < 0.05, "{} vs {}", d.count(), truth);
        }
    }

    #[test]
    fn distinct_merge_equals_inserting_both_streams_into_one(
        a in proptest::collection::vec(0u32..4_000, 0..2_500),
        b in proptest::collection::vec(0u32..4_000, 0..2_500),
    ) {
        let id = |r: &u32| AnonymousId::new(&format!("id-{r}"));
        let (mut left, mut right, mut one) = (DistinctCount::new(), DistinctCount::new(), DistinctCount::new());
        a.iter().for_each(|r| { left.insert(id(r)); one.insert(id(r)); });
        b.iter().for_each(|r| { right.insert(id(r)); one.insert(id(r)); });
        left.merge(&right);
        prop_assert_eq!(left.count(), one.count());
        prop_assert_eq!(&left, &one);
        left.reset();
        prop_assert_eq!(left.count(), 0);
    }
}

#[test]
fn a_distinct_count_of_one_id_seen_many_times_is_one() {
    let mut d = DistinctCount::new();
    (0..100_000).for_each(|_| d.insert(AnonymousId::new("the-same-client")));
    assert_eq!(d.count(), 1);
}

#[test]
fn a_summary_of_all_distinct_values_stays_in_its_buckets() {
    let mut s = Summary::new();
    let values: Vec<u64> = (0..200_000u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect();
    values.iter().for_each(|&v| s.record(v));
    let oracle = Oracle::new(&values);
    let stats = s.stats();
    let truth = oracle.median_doubled() as f64 / 2.0;
    assert!((stats.median.as_f64() - truth).abs() <= truth / 128.0);
    assert_eq!(
        (stats.min, stats.max),
        (oracle.sorted[0], *oracle.sorted.last().unwrap())
    );
}
