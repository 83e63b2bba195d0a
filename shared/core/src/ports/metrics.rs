//! The metric sink: metric values as they are observed (EMF lines on Lambda).

use time::OffsetDateTime;

/// A metric's unit, as CloudWatch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// `Milliseconds`.
    Milliseconds,
    /// `Count`.
    Count,
    /// `None` (dollars, for example).
    None,
}

impl Unit {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Milliseconds => "Milliseconds",
            Self::Count => "Count",
            Self::None => "None",
        }
    }
}

/// One metric value with its dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRecord {
    /// The metric's name, e.g. `IntakeLatency`.
    pub name: &'static str,
    /// Its unit.
    pub unit: Unit,
    /// Its value.
    pub value: f64,
    /// Dimensions as (name, value); one dimension set.
    pub dimensions: Vec<(&'static str, String)>,
    /// When it was observed.
    pub timestamp: OffsetDateTime,
}

/// Receives metrics.
pub trait MetricSink: Send + Sync {
    /// Records one metric value.
    fn record(&self, metric: MetricRecord);
}
