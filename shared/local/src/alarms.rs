//! The embedded AlarmSource: a file in the shape `aws cloudwatch describe-alarms` prints,
//! so real output can be saved and replayed offline.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use selfbuild_core::alarm::{AlarmKind, AlarmSignal, AlarmState, MetricRef};
use selfbuild_core::error::TelemetryError;
use selfbuild_core::event::parse_alarm_timestamp;
use selfbuild_core::ports::AlarmSource;
use serde::Deserialize;

/// Alarms read from a `describe-alarms` JSON file; a missing file means no alarms.
#[derive(Debug, Clone)]
pub struct FileAlarmSource {
    path: PathBuf,
}

impl FileAlarmSource {
    /// Alarms from the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file it reads.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeAlarmsOutput {
    #[serde(default)]
    metric_alarms: Vec<MetricAlarm>,
    #[serde(default)]
    composite_alarms: Vec<CompositeAlarm>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MetricAlarm {
    alarm_name: String,
    #[serde(default)]
    alarm_arn: Option<String>,
    state_value: AlarmState,
    #[serde(default)]
    state_reason: Option<String>,
    #[serde(default)]
    state_updated_timestamp: Option<String>,
    #[serde(default)]
    state_transitioned_timestamp: Option<String>,
    #[serde(default)]
    metric_name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    dimensions: Vec<Dimension>,
    #[serde(default)]
    metrics: Vec<MetricDataQuery>,
    #[serde(default)]
    threshold_metric_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CompositeAlarm {
    alarm_name: String,
    #[serde(default)]
    alarm_arn: Option<String>,
    #[serde(default)]
    alarm_rule: Option<String>,
    state_value: AlarmState,
    #[serde(default)]
    state_reason: Option<String>,
    #[serde(default)]
    state_updated_timestamp: Option<String>,
    #[serde(default)]
    state_transitioned_timestamp: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Dimension {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MetricDataQuery {
    #[serde(default)]
    metric_stat: Option<MetricStat>,
    #[serde(default)]
    expression: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MetricStat {
    metric: Metric,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Metric {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    metric_name: Option<String>,
    #[serde(default)]
    dimensions: Vec<Dimension>,
}

fn dimensions(list: Vec<Dimension>) -> Vec<(String, String)> {
    list.into_iter().map(|d| (d.name, d.value)).collect()
}

/// Parses `describe-alarms` output; `source` names the file in errors.
pub fn parse_describe_alarms(text: &str, source: &str) -> Result<Vec<AlarmSignal>, TelemetryError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let output: DescribeAlarmsOutput = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| TelemetryError::Invalid(format!("{source}: {}: {}", e.path(), e.inner())))?;
    let timestamp = |field: &str, value: Option<String>| {
        value
            .map(|t| {
                parse_alarm_timestamp(&t).ok_or_else(|| {
                    TelemetryError::Invalid(format!("{source}: {field} {t:?} is not a timestamp"))
                })
            })
            .transpose()
    };
    let mut alarms = Vec::new();
    for a in output.metric_alarms {
        let changed = match a.state_transitioned_timestamp {
            Some(t) => Some(t),
            None => a.state_updated_timestamp,
        };
        let expressions: Vec<&str> = a
            .metrics
            .iter()
            .filter_map(|m| m.expression.as_deref())
            .collect();
        let kind = AlarmKind::for_metric_alarm(&expressions, a.threshold_metric_id.is_some());
        let mut metrics = Vec::new();
        if a.metric_name.is_some() || !a.dimensions.is_empty() {
            metrics.push(MetricRef {
                namespace: a.namespace,
                name: a.metric_name,
                dimensions: dimensions(a.dimensions),
            });
        }
        metrics.extend(
            a.metrics
                .into_iter()
                .filter_map(|q| q.metric_stat)
                .map(|s| MetricRef {
                    namespace: s.metric.namespace,
                    name: s.metric.metric_name,
                    dimensions: dimensions(s.metric.dimensions),
                }),
        );
        alarms.push(AlarmSignal {
            state_changed_at: timestamp("StateTransitionedTimestamp", changed)?,
            name: a.alarm_name,
            arn: a.alarm_arn,
            kind,
            state: a.state_value,
            reason: a.state_reason,
            metrics,
            alarm_rule: None,
        });
    }
    for a in output.composite_alarms {
        let changed = match a.state_transitioned_timestamp {
            Some(t) => Some(t),
            None => a.state_updated_timestamp,
        };
        alarms.push(AlarmSignal {
            state_changed_at: timestamp("StateTransitionedTimestamp", changed)?,
            name: a.alarm_name,
            arn: a.alarm_arn,
            kind: AlarmKind::Composite,
            state: a.state_value,
            reason: a.state_reason,
            metrics: Vec::new(),
            alarm_rule: a.alarm_rule,
        });
    }
    Ok(alarms)
}

#[async_trait]
impl AlarmSource for FileAlarmSource {
    async fn alarms_in_alarm(&self) -> Result<Vec<AlarmSignal>, TelemetryError> {
        let text = match crate::bundled::read(&self.path).map(|t| t.text.into_owned()) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(TelemetryError::Unavailable(format!(
                    "{}: {e}",
                    self.path.display()
                )));
            }
        };
        let alarms = parse_describe_alarms(&text, &self.path.display().to_string())?;
        Ok(alarms
            .into_iter()
            .filter(|a| a.state == AlarmState::Alarm)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_describe_alarms_sample_parses() {
        let alarms = parse_describe_alarms(
            include_str!("../../../events/describe-alarms.json"),
            "sample",
        )
        .unwrap();
        let kinds: Vec<AlarmKind> = alarms.iter().map(|a| a.kind).collect();
        assert!(kinds.contains(&AlarmKind::Metric));
        assert!(kinds.contains(&AlarmKind::MetricMath));
        assert!(kinds.contains(&AlarmKind::Composite));
        assert!(alarms.iter().all(|a| a.state_changed_at.is_some()));
    }

    #[test]
    fn a_bad_file_names_the_field() {
        let err = parse_describe_alarms(
            r#"{"MetricAlarms":[{"AlarmName":"a","StateValue":"RED"}]}"#,
            "f.json",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("MetricAlarms[0].StateValue"),
            "{err}"
        );
    }
}
