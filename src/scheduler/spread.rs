//! Report spreading: when each instance's reports are due.
//!
//! A fleet deployed or restarted by one rollout starts in the same minute everywhere; with
//! ticks at `start + first_report_in + k × interval` every instance would report in the same
//! second, every interval, forever. Instead each instance gets a phase `p` in `[0, 1)` derived
//! from its ids, and:
//!
//! - the first report is due at `first_report_in + p × min(first_report_in, interval) / 2`
//!   after start: never earlier than configured, and at most half of `first_report_in` later
//!   (5 to 7.5 minutes with the defaults), so the first report still confirms quickly that
//!   telemetry works;
//! - the later reports are due on the lattice `start + first_report_in + p × interval +
//!   k × interval`, from its first point at least half an interval after the first report. The
//!   ticks stay anchored to the start (a late tick never shifts the next), windows stay
//!   contiguous (each snapshot starts the next window), and instances with different ids spread
//!   over the whole interval. The second window is between half and one and a half intervals
//!   long; every later one is exactly one interval.
//!
//! The phase is a stable function of the ids, the same in every version and on every platform
//! (so a test, or an operator, can predict it): FNV-1a (64 bit) over the bytes
//! `electric-telemetry/phase/v1`, the cluster UUID's 16 bytes and the instance id's UTF-8
//! bytes, finished with splitmix64's mixer; `p` is the top 53 bits divided by 2^53. It uses no
//! randomly keyed hasher: Rust's `HashMap` keys differ per process.
//!
//! Without spreading (`spread_reports(false)`), the first report is due at `first_report_in`
//! and the later ones every `interval` after it, as before.

use std::time::Duration;

use uuid::Uuid;

/// When reports are due, as offsets from the scheduler's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticks {
    /// The first report, when it is not the lattice's first point.
    pub first: Option<Duration>,
    /// The first point of the anchored lattice of reports, one every interval from it.
    pub steady: Duration,
}

/// The phase in `[0, 1)` of the instance with these ids (see the module docs).
pub(crate) fn phase(cluster_uuid: Uuid, instance_id: &str) -> f64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let bytes = b"electric-telemetry/phase/v1"
        .iter()
        .chain(cluster_uuid.as_bytes())
        .chain(instance_id.as_bytes());
    let mut h = bytes.fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    // splitmix64's finaliser: FNV's low bits mix poorly, the top 53 are used.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The ticks for `first_report_in` and `interval`, spread by `phase` when it is `Some`.
pub(crate) fn ticks(first_report_in: Duration, interval: Duration, phase: Option<f64>) -> Ticks {
    let Some(p) = phase else {
        return Ticks {
            first: None,
            steady: first_report_in,
        };
    };
    let first = first_report_in + first_report_in.min(interval).mul_f64(p / 2.0);
    let mut steady = first_report_in + interval.mul_f64(p);
    // At least half an interval after the first report: at most one step of the lattice.
    if steady < first + interval / 2 {
        steady += interval;
    }
    Ticks {
        first: Some(first),
        steady,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn the_phase_is_stable_and_differs_between_instances() {
        let cluster = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        let p = phase(cluster, "instance-1");
        assert_eq!(p, phase(cluster, "instance-1"), "deterministic");
        assert!((0.0..1.0).contains(&p));
        let phases: Vec<f64> = (0..100)
            .map(|i| phase(cluster, &format!("instance-{i}")))
            .collect();
        assert!(phases.iter().all(|p| (0.0..1.0).contains(p)));
        // Spread over the unit interval: every tenth of it holds some of 100 instances.
        for decile in 0..10 {
            let lo = decile as f64 / 10.0;
            assert!(
                phases.iter().any(|p| (lo..lo + 0.1).contains(p)),
                "{decile}"
            );
        }
        assert_ne!(
            p,
            phase(Uuid::nil(), "instance-1"),
            "the cluster counts too"
        );
    }

    #[test]
    fn ticks_stay_within_their_documented_bounds() {
        for (first_in, interval) in [
            (5 * 60, 4 * 3600),
            (0, 4 * 3600),
            (3, 8),
            (3600, 60),
            (300, 12),
        ] {
            let (d, i) = (Duration::from_secs(first_in), Duration::from_secs(interval));
            for n in 0..=100 {
                let p = n as f64 / 100.0 * 0.999_999;
                let t = ticks(d, i, Some(p));
                let first = t.first.unwrap();
                assert!(first >= d && first <= d + d.min(i) / 2, "{t:?}");
                assert!(t.steady >= first + i / 2, "{t:?}");
                assert!(t.steady < first + i + i / 2, "{t:?}");
                // On the instance's lattice: first_report_in + p × interval + k × interval.
                let on = (t.steady - d).as_secs_f64() - i.as_secs_f64() * p;
                let k = on / i.as_secs_f64();
                assert!((k - k.round()).abs() < 1e-6, "{t:?} {k}");
            }
        }
    }

    #[test]
    fn without_spreading_the_ticks_are_as_configured() {
        let t = ticks(Duration::from_secs(300), 4 * HOUR, None);
        assert_eq!(t.first, None);
        assert_eq!(t.steady, Duration::from_secs(300));
    }
}
