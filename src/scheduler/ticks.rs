//! When the next report is due: report k at `anchor + k × interval`, and never one already
//! past.
//!
//! A timer that fires every missed tick (actix's `run_interval_at`, tokio's default interval)
//! turns a frozen process (SIGSTOP, a paused container, a VM migration) into a burst of
//! reports with empty windows when it wakes, which also pushes real pending reports toward
//! the outbox's bound. The scheduler instead asks [`next_due`] after each report: the first
//! tick still ahead. So missed ticks collapse into the one report that runs late, and the
//! phase stays anchored: a stall never shifts later reports.

use std::time::Duration;

use tokio::time::Instant;

/// The first `anchor + k × interval` (k ≥ 0) after `now`: `anchor` itself while it is still
/// ahead. `interval` must not be zero (configuration guarantees at least 1 s).
pub(crate) fn next_due(anchor: Instant, interval: Duration, now: Instant) -> Instant {
    if now < anchor {
        return anchor;
    }
    let period = interval.as_nanos().max(1);
    let ticks = (now - anchor).as_nanos() / period + 1;
    u64::try_from(ticks * period)
        .ok()
        .and_then(|nanos| anchor.checked_add(Duration::from_nanos(nanos)))
        // Centuries out: no real schedule gets here; one interval from now is a safe answer.
        .unwrap_or(now + interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_tick_is_the_first_one_ahead_on_the_anchored_phase() {
        let anchor = Instant::now();
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let next = |after: Duration| next_due(anchor, s(30), anchor + after) - anchor;
        assert_eq!(next_due(anchor + s(5), s(30), anchor), anchor + s(5));
        assert_eq!(next(Duration::ZERO), s(30), "on time: the following tick");
        assert_eq!(next(ms(1)), s(30));
        assert_eq!(next(s(29)), s(30));
        assert_eq!(next(s(30)), s(60));
        // Frozen through five ticks: one report now, then the phase goes on.
        assert_eq!(next(s(151)), s(180));
        assert_eq!(next(s(86_400 * 365)), s(86_400 * 365 + 30));
    }
}
