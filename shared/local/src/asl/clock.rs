//! The execution's clock: a time of day that moves exactly as tokio's clock moves.
//!
//! On a runtime whose time is paused (`Builder::start_paused`), tokio's clock stands still
//! while any task can run and jumps to the next timer when every task waits, so Waits,
//! retry intervals and timeouts take no real time and an execution gives the same
//! timeline on any machine under any load (event-driven virtual time; `crate::cycle` runs
//! cycles that way). On an ordinary runtime the clock runs at real time.

use std::time::Duration;

use selfbuild_core::ports::Clock;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// The longest sleep the interpreter asks tokio for (about 100 years).
const MAX_SECONDS: f64 = 3.2e9;

/// A time of day on tokio's clock: `start` when made, then moving as tokio's `Instant` does.
///
/// Read it inside the runtime that runs the execution: tokio's clock belongs to the
/// runtime, and outside one it is the machine's monotonic clock.
#[derive(Debug, Clone)]
pub struct VirtualClock {
    start: OffsetDateTime,
    origin: tokio::time::Instant,
}

impl VirtualClock {
    /// A clock reading `start` now.
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            start,
            origin: tokio::time::Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> OffsetDateTime {
        let elapsed = self.origin.elapsed();
        time::Duration::try_from(elapsed)
            .ok()
            .and_then(|d| self.start.checked_add(d))
            .unwrap_or(self.start)
    }

    /// Sleeps for `seconds` of this clock's time (not at all when not positive).
    pub(crate) async fn sleep(&self, seconds: f64) {
        let duration = duration(seconds);
        if !duration.is_zero() {
            tokio::time::sleep(duration).await;
        }
    }

    /// Seconds from now until `at` (negative when `at` has passed).
    pub(crate) fn seconds_until(&self, at: OffsetDateTime) -> f64 {
        (at - self.now()).as_seconds_f64()
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> OffsetDateTime {
        VirtualClock::now(self)
    }
}

/// `seconds` as a tokio duration: negative or NaN is zero, and it is capped at about 100
/// years.
pub(crate) fn duration(seconds: f64) -> Duration {
    let seconds = if seconds.is_nan() { 0.0 } else { seconds };
    Duration::try_from_secs_f64(seconds.clamp(0.0, MAX_SECONDS)).unwrap_or(Duration::ZERO)
}

/// Formats a timestamp as Step Functions does: UTC, milliseconds, `Z`
/// (`2024-05-01T12:00:00.000Z`).
pub(crate) fn format_timestamp(t: OffsetDateTime) -> String {
    let utc = t.to_offset(UtcOffset::UTC);
    utc.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .or_else(|_| utc.format(&Rfc3339))
    .unwrap_or_default()
}

/// Parses an ASL timestamp: RFC 3339 with an uppercase `T` and, for UTC, an uppercase `Z`.
pub(crate) fn parse_timestamp(text: &str) -> Option<OffsetDateTime> {
    if text.contains(['t', 'z']) {
        return None;
    }
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn timestamps_round_trip_in_the_step_functions_format() {
        let t = parse_timestamp("2024-05-01T12:00:00.5+02:00").unwrap();
        assert_eq!(format_timestamp(t), "2024-05-01T10:00:00.500Z");
        assert!(parse_timestamp("2024-05-01t12:00:00Z").is_none());
        assert!(parse_timestamp("2024-05-01T12:00:00z").is_none());
        assert!(parse_timestamp("yesterday").is_none());
    }

    #[test]
    fn durations_are_clamped() {
        assert_eq!(duration(3600.0), Duration::from_secs(3600));
        assert_eq!(duration(-5.0), Duration::ZERO);
        assert_eq!(duration(f64::NAN), Duration::ZERO);
        assert_eq!(
            duration(f64::INFINITY),
            Duration::from_secs_f64(MAX_SECONDS)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn on_paused_time_the_clock_moves_only_with_timers() {
        let clock = VirtualClock::new(datetime!(2024-05-01 12:00 UTC));
        assert_eq!(clock.now(), datetime!(2024-05-01 12:00 UTC));
        clock.sleep(3600.0).await;
        assert_eq!(clock.now(), datetime!(2024-05-01 13:00 UTC));
        assert_eq!(
            clock.seconds_until(datetime!(2024-05-01 12:00 UTC)),
            -3600.0
        );
    }
}
