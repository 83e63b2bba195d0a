//! Metrics as CloudWatch Embedded Metric Format lines (R19).

use std::io::Write;
use std::sync::Mutex;

use serde_json::{Map, Value, json};

use crate::ports::{MetricRecord, MetricSink};

/// The EMF JSON line for `metric` in `namespace`.
pub fn emf_line(namespace: &str, metric: &MetricRecord) -> String {
    emf_line_for_service(namespace, None, metric)
}

/// The EMF JSON line for `metric` in `namespace`, published twice when `service` is given:
/// with the metric's own dimensions (what the template's alarms and dashboard read) and with
/// a `service` dimension added (what Powertools users filter on).
pub fn emf_line_for_service(
    namespace: &str,
    service: Option<&str>,
    metric: &MetricRecord,
) -> String {
    let mut root = Map::new();
    let dimension_names: Vec<&str> = metric.dimensions.iter().map(|(n, _)| *n).collect();
    let mut dimension_sets = vec![dimension_names.clone()];
    if service.is_some() && !dimension_names.contains(&SERVICE_DIMENSION) {
        let mut with_service = dimension_names;
        with_service.push(SERVICE_DIMENSION);
        dimension_sets.push(with_service);
    }
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": metric.timestamp.unix_timestamp_nanos() / 1_000_000,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": dimension_sets,
                "Metrics": [{"Name": metric.name, "Unit": metric.unit.as_str()}],
            }],
        }),
    );
    if let Some(service) = service {
        root.insert(SERVICE_DIMENSION.into(), Value::String(service.to_owned()));
    }
    for (name, value) in &metric.dimensions {
        root.insert((*name).into(), Value::String(value.clone()));
    }
    root.insert(metric.name.into(), json!(metric.value));
    Value::Object(root).to_string()
}

/// The dimension that names the service (`POWERTOOLS_SERVICE_NAME`), as Powertools does.
pub const SERVICE_DIMENSION: &str = "service";

/// EMF lines in the debug log, for processes whose stdout is not CloudWatch's (the CLI).
#[derive(Debug, Clone)]
pub struct TracingSink {
    /// The EMF namespace.
    pub namespace: String,
}

impl MetricSink for TracingSink {
    fn record(&self, metric: MetricRecord) {
        tracing::debug!(emf = %emf_line(&self.namespace, &metric), "metric");
    }
}

/// Writes each metric as one EMF line (stdout on Lambda, where CloudWatch picks it up).
pub struct EmfWriter<W> {
    namespace: String,
    service: Option<String>,
    out: Mutex<W>,
}

impl<W: Write + Send> EmfWriter<W> {
    /// A writer for `namespace` onto `out`.
    pub fn new(namespace: impl Into<String>, out: W) -> Self {
        Self {
            namespace: namespace.into(),
            service: None,
            out: Mutex::new(out),
        }
    }

    /// The same writer, publishing each metric also with a `service` dimension.
    #[must_use]
    pub fn with_service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }
}

impl<W: Write + Send> MetricSink for EmfWriter<W> {
    fn record(&self, metric: MetricRecord) {
        let line = emf_line_for_service(&self.namespace, self.service.as_deref(), &metric);
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A lost metric line must not fail the invocation.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Unit;
    use time::macros::datetime;

    #[test]
    fn emf_lines_follow_the_specification() {
        let line = emf_line(
            "Selfbuild",
            &MetricRecord {
                name: "IntakeLatency",
                unit: Unit::Milliseconds,
                value: 250.0,
                dimensions: vec![
                    ("Function", "alarm-intake".into()),
                    ("Decision", "started".into()),
                ],
                timestamp: datetime!(2026-11-22 05:00:00 UTC),
            },
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 1_795_323_600_000_i64);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Selfbuild");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][1],
            "Decision"
        );
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Milliseconds"
        );
        assert_eq!(v["Decision"], "started");
        assert_eq!(v["IntakeLatency"], 250.0);
    }

    #[test]
    fn the_writer_emits_one_line_per_metric() {
        let writer = EmfWriter::new("Selfbuild", Vec::new());
        for _ in 0..2 {
            writer.record(MetricRecord {
                name: "CyclesStarted",
                unit: Unit::Count,
                value: 1.0,
                dimensions: vec![],
                timestamp: datetime!(2026-11-22 05:00:00 UTC),
            });
        }
        let out = writer.out.into_inner().unwrap();
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 2);
    }

    #[test]
    fn a_service_adds_a_second_dimension_set_and_keeps_the_first() {
        let writer = EmfWriter::new("Selfbuild", Vec::new()).with_service("selfbuild");
        writer.record(MetricRecord {
            name: "ImprovementsDeployed",
            unit: Unit::Count,
            value: 1.0,
            dimensions: vec![("Function", "deploy".into())],
            timestamp: datetime!(2026-11-22 05:00:00 UTC),
        });
        let out = String::from_utf8(writer.out.into_inner().unwrap()).unwrap();
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function"], ["Function", "service"]])
        );
        assert_eq!(v["service"], "selfbuild");
        assert_eq!(v["Function"], "deploy");
    }
}
