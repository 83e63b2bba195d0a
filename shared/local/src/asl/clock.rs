//! The execution's virtual clock: start time + real elapsed time × time scale, so waits,
//! retry intervals and timeouts can run faster than real time while timestamps stay
//! consistent with them.

use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// The longest real sleep the interpreter asks tokio for (about 100 years).
const MAX_REAL_SECONDS: f64 = 3.2e9;

/// Virtual time for one execution.
#[derive(Debug, Clone)]
pub(crate) struct VirtualClock {
    start: OffsetDateTime,
    started: tokio::time::Instant,
    scale: f64,
}

impl VirtualClock {
    /// A clock reading `start` now and running `scale` times faster than real time.
    /// `scale` must be positive and finite (checked by the caller).
    pub(crate) fn new(start: OffsetDateTime, scale: f64) -> Self {
        Self {
            start,
            started: tokio::time::Instant::now(),
            scale,
        }
    }

    /// The current virtual time.
    pub(crate) fn now(&self) -> OffsetDateTime {
        add_seconds(
            self.start,
            self.started.elapsed().as_secs_f64() * self.scale,
        )
    }

    /// The real duration of `virtual_seconds` of virtual time.
    pub(crate) fn real(&self, virtual_seconds: f64) -> Duration {
        let real = (virtual_seconds / self.scale).clamp(0.0, MAX_REAL_SECONDS);
        Duration::try_from_secs_f64(real).unwrap_or(Duration::ZERO)
    }

    /// Sleeps for `virtual_seconds` of virtual time.
    pub(crate) async fn sleep(&self, virtual_seconds: f64) {
        let real = self.real(virtual_seconds);
        if !real.is_zero() {
            tokio::time::sleep(real).await;
        }
    }

    /// Virtual seconds from now until `at` (negative when `at` has passed).
    pub(crate) fn seconds_until(&self, at: OffsetDateTime) -> f64 {
        (at - self.now()).as_seconds_f64()
    }
}

/// `t` + `seconds`, saturating instead of overflowing.
fn add_seconds(t: OffsetDateTime, seconds: f64) -> OffsetDateTime {
    // `as` saturates, and NaN becomes 0.
    let nanos = (seconds * 1e9).clamp(-9.0e18, 9.0e18) as i64;
    t.checked_add(time::Duration::nanoseconds(nanos))
        .unwrap_or(t)
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

    #[tokio::test]
    async fn virtual_time_runs_scaled() {
        let clock = VirtualClock::new(datetime!(2024-05-01 12:00 UTC), 3600.0);
        assert_eq!(clock.real(3600.0), Duration::from_secs(1));
        assert_eq!(clock.real(-5.0), Duration::ZERO);
        assert_eq!(
            clock.real(f64::INFINITY),
            Duration::from_secs_f64(MAX_REAL_SECONDS)
        );
        assert!(clock.now() >= datetime!(2024-05-01 12:00 UTC));
        assert!(clock.seconds_until(datetime!(2024-05-01 11:00 UTC)) < 0.0);
    }
}
