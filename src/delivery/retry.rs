//! The retry policy, as a plain value: how long to wait after a failed attempt, and what an
//! HTTP status means for the report.
//!
//! - Full jitter: a random wait up to a ceiling that starts at `initial` and doubles per
//!   failure up to `max` (itself never more than one report interval).
//! - `Retry-After` is a floor on that wait, not a replacement: `Retry-After: 0`, or a date the
//!   server's clock puts in the past, must not turn a fleet of reporters into a retry storm.
//! - 2xx is delivered; 408, 429, 5xx and redirects are worth another try (a redirect is never
//!   followed, but it is no verdict on the payload either: fixing the URL delivers the report);
//!   any other status is a refusal, which the sender treats as curable: the report is kept
//!   and tried again a report interval later (see `sender`).

use std::time::Duration;

/// What one HTTP status means for the report that was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Delivered,
    Retry,
    Refused,
}

/// What an answer's status means.
pub(crate) fn classify(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 429 | 500..=599 | 300..=399 => Verdict::Retry,
        _ => Verdict::Refused,
    }
}

/// Backoff ceilings: the first retry's, and the largest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// The wait after `failures` failed attempts in a row (at least 1), given the endpoint's
    /// `Retry-After` if it sent one, and `random` drawn uniformly from [0, 1).
    pub(crate) fn wait(
        &self,
        failures: u32,
        retry_after: Option<Duration>,
        random: f64,
    ) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        let ceiling = self.initial.saturating_mul(1 << doublings).min(self.max);
        let jittered = ceiling.mul_f64(random.clamp(0.0, 1.0));
        let wait = retry_after.map_or(jittered, |asked| asked.max(jittered));
        wait.min(self.max)
    }

    /// [`wait`](Self::wait) with a fresh random draw.
    pub(crate) fn next_wait(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        self.wait(failures, retry_after, fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };

    #[test]
    fn the_ceiling_doubles_per_failure_up_to_the_cap() {
        for failures in 1..=40u32 {
            let ceiling =
                Duration::from_secs(1 << (failures - 1).min(6)).min(Duration::from_secs(60));
            assert_eq!(POLICY.wait(failures, None, 1.0), ceiling, "{failures}");
            assert_eq!(POLICY.wait(failures, None, 0.0), Duration::ZERO);
            for _ in 0..50 {
                assert!(POLICY.next_wait(failures, None) <= ceiling);
            }
        }
    }

    #[test]
    fn retry_after_is_a_floor_within_the_cap() {
        let secs = Duration::from_secs;
        assert_eq!(
            POLICY.wait(3, Some(secs(30)), 0.5),
            secs(30),
            "longer than the backoff"
        );
        assert_eq!(
            POLICY.wait(3, Some(secs(3)), 0.0),
            secs(3),
            "at least what was asked"
        );
        assert_eq!(
            POLICY.wait(3, Some(secs(3)), 1.0),
            secs(4),
            "or the backoff, if longer"
        );
        assert_eq!(
            POLICY.wait(3, Some(secs(86_400)), 0.5),
            secs(60),
            "within the cap"
        );
        // Retry-After: 0 is no licence to hammer: the jittered backoff still applies.
        assert_eq!(POLICY.wait(7, Some(Duration::ZERO), 0.5), secs(30));
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(200), Verdict::Delivered);
        assert_eq!(classify(204), Verdict::Delivered);
        for retry in [301, 302, 307, 408, 429, 500, 502, 503, 599] {
            assert_eq!(classify(retry), Verdict::Retry, "{retry}");
        }
        for refused in [400, 401, 403, 404, 405, 413, 415, 422] {
            assert_eq!(classify(refused), Verdict::Refused, "{refused}");
        }
    }
}
