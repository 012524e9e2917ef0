//! The times a report carries: windows measured on the monotonic clock, wall-clock fields that
//! never go backwards, and a wall-clock step made visible in the log.
//!
//! What a receiver may rely on:
//! - `last_reported` of a report is the `timestamp` of the one before it (windows are
//!   contiguous), and `timestamp` is never before `last_reported`.
//! - `timestamp − last_reported` is the window's true length, measured on the monotonic clock:
//!   a wall-clock step (an operator's `date -s`, an NTP step, a VM restored from a snapshot)
//!   neither makes it negative nor stretches it by the step.
//!
//! So the first window begins at the wall-clock time telemetry started, and each `timestamp`
//! is `last_reported` plus the window's monotonic length: report times follow a clock that
//! never steps. While the host's clock is not stepped, that is the wall clock (to within the
//! slew NTP applies to both). After a step they differ by the step, until the next start, and
//! the step is visible: the report that spans it logs one warning saying by how much the wall
//! clock moved against the monotonic clock and how far report times now are from it. A host
//! suspended (not just frozen) shows the same way, since the monotonic clock stops with it.
//!
//! The readings are passed in rather than taken here, so tests step a clock without touching
//! the system's.

use std::time::{Duration, Instant, SystemTime};

/// A move of the wall clock against the monotonic one smaller than this is not called a step:
/// leap seconds, and timer and scheduling noise between the two readings.
const STEP_TOLERANCE: Duration = Duration::from_secs(2);

/// Telemetry's own wall-clock track for report windows.
#[derive(Debug, Clone)]
pub(crate) struct ReportClock {
    /// When the current window began, on the track.
    began: SystemTime,
    /// The monotonic reading at that moment.
    began_mono: Instant,
    /// Wall clock minus track at the last reading, in nanoseconds.
    offset: i128,
}

impl ReportClock {
    /// A track that starts at the wall clock's `wall`, read at monotonic `mono`.
    pub(crate) fn start(wall: SystemTime, mono: Instant) -> Self {
        Self {
            began: wall,
            began_mono: mono,
            offset: 0,
        }
    }

    /// When the current window began.
    pub(crate) fn began(&self) -> SystemTime {
        self.began
    }

    /// When the current window would end if it ended at monotonic `mono`; nothing changes.
    pub(crate) fn peek(&self, mono: Instant) -> SystemTime {
        let elapsed = mono.saturating_duration_since(self.began_mono);
        self.began.checked_add(elapsed).unwrap_or(self.began)
    }

    /// Ends the current window at monotonic `mono` (the wall clock reads `wall`) and begins the
    /// next one there. Returns the end, and the wall clock's step against the monotonic clock
    /// since the last reading, in nanoseconds (negative: backwards), if there was one.
    pub(crate) fn next_window(
        &mut self,
        wall: SystemTime,
        mono: Instant,
    ) -> (SystemTime, Option<i128>) {
        let end = self.peek(mono);
        self.began = end;
        self.began_mono = self.began_mono.max(mono);
        let offset = signed_nanos(wall, end);
        let moved = offset - self.offset;
        self.offset = offset;
        let step = (moved.unsigned_abs() > STEP_TOLERANCE.as_nanos()).then_some(moved);
        (end, step)
    }

    /// [`next_window`](Self::next_window) that also logs a step, once, as a warning.
    pub(crate) fn next_window_logged(&mut self, wall: SystemTime, mono: Instant) -> SystemTime {
        let (end, step) = self.next_window(wall, mono);
        if let Some(step) = step {
            tracing::warn!(
                wall_clock_step = %signed(step),
                wall_clock_minus_report_time = %signed(self.offset),
                "the host's wall clock stepped against its monotonic clock since the last \
                 telemetry report (or the host was suspended); report windows keep their true \
                 length: timestamps go on from last_reported by monotonic time, and differ \
                 from the wall clock by wall_clock_minus_report_time until the next start"
            );
        }
        end
    }
}

/// `a − b` in nanoseconds, signed.
fn signed_nanos(a: SystemTime, b: SystemTime) -> i128 {
    match a.duration_since(b) {
        Ok(ahead) => ahead.as_nanos() as i128,
        Err(behind) => -(behind.duration().as_nanos() as i128),
    }
}

/// Nanoseconds as `+1h 2m 3s` / `-1day 3s`, to the second.
fn signed(nanos: i128) -> String {
    let secs = u64::try_from(nanos.unsigned_abs() / 1_000_000_000).unwrap_or(u64::MAX);
    let sign = if nanos < 0 { "-" } else { "+" };
    format!(
        "{sign}{}",
        humantime::format_duration(Duration::from_secs(secs))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    /// A wall clock and a monotonic clock the test moves by hand.
    struct Clocks {
        wall: SystemTime,
        mono: Instant,
    }

    impl Clocks {
        fn new() -> Self {
            Self {
                wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000),
                mono: Instant::now(),
            }
        }
        /// Time passes: both clocks move.
        fn pass(&mut self, d: Duration) {
            self.wall += d;
            self.mono += d;
        }
    }

    fn secs(a: SystemTime, b: SystemTime) -> f64 {
        signed_nanos(a, b) as f64 / 1e9
    }

    #[test]
    fn without_a_step_report_times_are_the_wall_clock() {
        let mut c = Clocks::new();
        let mut track = ReportClock::start(c.wall, c.mono);
        let first = track.began();
        c.pass(4 * HOUR);
        let (end, step) = track.next_window(c.wall, c.mono);
        assert_eq!((end, step), (c.wall, None));
        assert_eq!(secs(end, first), 4.0 * 3600.0);
        assert_eq!(
            track.began(),
            end,
            "the next window begins where this one ended"
        );
        // NTP-sized disagreement (a leap second) is not a step.
        c.pass(4 * HOUR);
        c.wall += Duration::from_secs(1);
        assert_eq!(track.next_window(c.wall, c.mono).1, None);
    }

    #[test]
    fn a_step_backwards_never_makes_a_window_negative() {
        let mut c = Clocks::new();
        let mut track = ReportClock::start(c.wall, c.mono);
        c.pass(HOUR);
        // The host's clock is set back a day (less 2 s), as reproduced in the issue.
        c.wall -= Duration::from_secs(86_398);
        c.pass(HOUR);
        let last_reported = track.began();
        let (timestamp, step) = track.next_window(c.wall, c.mono);
        assert!(timestamp >= last_reported);
        assert_eq!(
            secs(timestamp, last_reported),
            2.0 * 3600.0,
            "the true window"
        );
        assert_eq!(
            step.map(|n| n / 1_000_000_000),
            Some(-86_398),
            "the step is seen"
        );
        // And the next window goes on from there, without a second warning.
        c.pass(4 * HOUR);
        let (next, step) = track.next_window(c.wall, c.mono);
        assert_eq!(secs(next, timestamp), 4.0 * 3600.0);
        assert_eq!(step, None, "one step, one warning");
    }

    #[test]
    fn a_step_forward_does_not_stretch_the_window() {
        let mut c = Clocks::new();
        let mut track = ReportClock::start(c.wall, c.mono);
        c.pass(2 * HOUR);
        c.wall += Duration::from_secs(30 * 86_400);
        c.pass(2 * HOUR);
        let last_reported = track.began();
        let (timestamp, step) = track.next_window(c.wall, c.mono);
        assert_eq!(secs(timestamp, last_reported), 4.0 * 3600.0, "not a month");
        assert_eq!(step.map(|n| n / 1_000_000_000), Some(30 * 86_400));
        assert_eq!(signed(step.unwrap()), "+30days");
        assert_eq!(signed(-86_398_000_000_000), "-23h 59m 58s");
    }

    /// Everything logged while `f` runs, as text.
    fn logged(f: impl FnOnce()) -> String {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned();
        text
    }

    #[test]
    fn a_step_is_one_warning_saying_by_how_much() {
        let mut c = Clocks::new();
        let mut track = ReportClock::start(c.wall, c.mono);
        c.pass(HOUR);
        let quiet = logged(|| {
            track.next_window_logged(c.wall, c.mono);
        });
        assert_eq!(quiet, "", "no step, no line");
        c.wall -= Duration::from_secs(86_398);
        c.pass(HOUR);
        let text = logged(|| {
            track.next_window_logged(c.wall, c.mono);
        });
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(" WARN "), "{text}");
        assert!(text.contains("wall_clock_step=-23h 59m 58s"), "{text}");
        assert!(
            text.contains("wall_clock_minus_report_time=-23h 59m 58s"),
            "{text}"
        );
        c.pass(HOUR);
        let after = logged(|| {
            track.next_window_logged(c.wall, c.mono);
        });
        assert_eq!(after, "", "the same offset later is no new step");
    }

    #[test]
    fn a_preview_changes_nothing_and_a_stale_reading_never_goes_back() {
        let mut c = Clocks::new();
        let mut track = ReportClock::start(c.wall, c.mono);
        let early = c.mono;
        c.pass(HOUR);
        assert_eq!(track.peek(c.mono), c.wall);
        assert_eq!(
            track.peek(early),
            track.began(),
            "an older reading: no negative window"
        );
        let (end, _) = track.next_window(c.wall, c.mono);
        let (again, _) = track.next_window(c.wall, early);
        assert_eq!(
            again, end,
            "a reading older than the window's start gives an empty window"
        );
    }
}
