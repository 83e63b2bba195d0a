//! The AlarmSource port over CloudWatch `DescribeAlarms`: every metric and composite alarm in ALARM.

use async_trait::async_trait;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsError;
use aws_sdk_cloudwatch::types::{AlarmType, CompositeAlarm, Dimension, MetricAlarm, StateValue};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::DateTime;
use aws_smithy_types::error::display::DisplayErrorContext;
use selfbuild_core::alarm::{AlarmKind, AlarmSignal, AlarmState, MetricRef};
use selfbuild_core::error::TelemetryError;
use selfbuild_core::ports::AlarmSource;
use selfbuild_core::text::Escaped;
use time::OffsetDateTime;
use tracing::{debug, warn};

use crate::sdk_error::{ErrorChain, is_transient};

/// The most alarms one `DescribeAlarms` page may return.
const PAGE_SIZE: i32 = 100;

/// Lists the alarms in ALARM with CloudWatch `DescribeAlarms`.
#[derive(Debug, Clone)]
pub struct CloudWatchAlarms {
    client: Client,
}

impl CloudWatchAlarms {
    /// An alarm source with a client built from `config`.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self::from_client(Client::new(config))
    }

    /// An alarm source using an existing client.
    pub fn from_client(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl AlarmSource for CloudWatchAlarms {
    async fn alarms_in_alarm(&self) -> Result<Vec<AlarmSignal>, TelemetryError> {
        let mut pages = self
            .client
            .describe_alarms()
            .state_value(StateValue::Alarm)
            .alarm_types(AlarmType::MetricAlarm)
            .alarm_types(AlarmType::CompositeAlarm)
            .max_records(PAGE_SIZE)
            .into_paginator()
            .send();
        let mut signals = Vec::new();
        let mut page_count = 0_u32;
        while let Some(page) = pages.try_next().await.map_err(|e| describe_error(&e))? {
            page_count += 1;
            let metric = page.metric_alarms().iter().map(metric_alarm_signal);
            let composite = page.composite_alarms().iter().map(composite_alarm_signal);
            for signal in metric.chain(composite) {
                match signal {
                    Ok(signal) => signals.push(signal),
                    Err(problem) => {
                        warn!(problem = %Escaped(&problem), "skipping an alarm DescribeAlarms described unusably");
                    }
                }
            }
        }
        debug!(
            alarms = signals.len(),
            pages = page_count,
            "alarms in ALARM listed"
        );
        Ok(signals)
    }
}

/// `Unavailable` for throttling and transient failures, `Invalid` for the rest.
fn describe_error(err: &SdkError<DescribeAlarmsError, HttpResponse>) -> TelemetryError {
    let message = format!("DescribeAlarms: {}", ErrorChain(err));
    if is_transient(err) {
        debug!(error = %DisplayErrorContext(err), "DescribeAlarms failed");
        TelemetryError::Unavailable(message)
    } else {
        warn!(error = %DisplayErrorContext(err), "DescribeAlarms was refused");
        TelemetryError::Invalid(message)
    }
}

/// A `DescribeAlarms` metric alarm as intake sees it; Err names what makes it unusable.
///
/// Kind: anomaly detection when a query expression uses `ANOMALY_DETECTION_BAND` or
/// `ThresholdMetricId` is set, metric math when a query has an expression, else metric.
/// Metrics: the top-level metric if it has one, else every query's `MetricStat` metric.
pub fn metric_alarm_signal(alarm: &MetricAlarm) -> Result<AlarmSignal, String> {
    let name = alarm_name(alarm.alarm_name())?;
    let expressions: Vec<&str> = alarm
        .metrics()
        .iter()
        .filter_map(|q| q.expression())
        .collect();
    let kind = AlarmKind::for_metric_alarm(&expressions, alarm.threshold_metric_id().is_some());
    let metrics = if alarm.metric_name().is_some() || alarm.namespace().is_some() {
        vec![MetricRef {
            namespace: alarm.namespace().map(str::to_owned),
            name: alarm.metric_name().map(str::to_owned),
            dimensions: dimensions(alarm.dimensions()),
        }]
    } else {
        alarm
            .metrics()
            .iter()
            .filter_map(|q| q.metric_stat().and_then(|s| s.metric()))
            .map(|m| MetricRef {
                namespace: m.namespace().map(str::to_owned),
                name: m.metric_name().map(str::to_owned),
                dimensions: dimensions(m.dimensions()),
            })
            .collect()
    };
    Ok(AlarmSignal {
        state: alarm_state(&name, alarm.state_value())?,
        state_changed_at: changed_at(
            &name,
            alarm.state_transitioned_timestamp(),
            alarm.state_updated_timestamp(),
        )?,
        reason: alarm.state_reason().map(str::to_owned),
        arn: alarm.alarm_arn().map(str::to_owned),
        name,
        kind,
        metrics,
        alarm_rule: None,
    })
}

/// A `DescribeAlarms` composite alarm as intake sees it; Err names what makes it unusable.
pub fn composite_alarm_signal(alarm: &CompositeAlarm) -> Result<AlarmSignal, String> {
    let name = alarm_name(alarm.alarm_name())?;
    Ok(AlarmSignal {
        state: alarm_state(&name, alarm.state_value())?,
        state_changed_at: changed_at(
            &name,
            alarm.state_transitioned_timestamp(),
            alarm.state_updated_timestamp(),
        )?,
        reason: alarm.state_reason().map(str::to_owned),
        arn: alarm.alarm_arn().map(str::to_owned),
        name,
        kind: AlarmKind::Composite,
        metrics: Vec::new(),
        alarm_rule: alarm.alarm_rule().map(str::to_owned),
    })
}

fn alarm_name(name: Option<&str>) -> Result<String, String> {
    name.filter(|n| !n.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| "an alarm has no AlarmName".to_owned())
}

fn alarm_state(name: &str, value: Option<&StateValue>) -> Result<AlarmState, String> {
    match value {
        Some(StateValue::Alarm) => Ok(AlarmState::Alarm),
        Some(StateValue::Ok) => Ok(AlarmState::Ok),
        Some(StateValue::InsufficientData) => Ok(AlarmState::InsufficientData),
        Some(other) => Err(format!(
            "alarm {name}: unknown StateValue {}",
            other.as_str()
        )),
        None => Err(format!("alarm {name}: no StateValue")),
    }
}

/// When the alarm entered its state: `StateTransitionedTimestamp`, else `StateUpdatedTimestamp`.
fn changed_at(
    name: &str,
    transitioned: Option<&DateTime>,
    updated: Option<&DateTime>,
) -> Result<Option<OffsetDateTime>, String> {
    transitioned
        .or(updated)
        .map(|t| {
            OffsetDateTime::from_unix_timestamp_nanos(t.as_nanos())
                .map_err(|e| format!("alarm {name}: state timestamp {t} is out of range: {e}"))
        })
        .transpose()
}

/// Dimensions as (name, value) in the order given; ones without a name or value are dropped.
fn dimensions(dimensions: &[Dimension]) -> Vec<(String, String)> {
    dimensions
        .iter()
        .filter_map(|d| Some((d.name()?.to_owned(), d.value()?.to_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdk_error::test_support::service_error;
    use aws_sdk_cloudwatch::types::{Metric, MetricDataQuery, MetricStat};
    use aws_smithy_types::error::ErrorMetadata;
    use time::macros::datetime;

    fn dimension(name: &str, value: &str) -> Dimension {
        Dimension::builder().name(name).value(value).build()
    }

    fn query(
        id: &str,
        metric: Option<(&str, &[(&str, &str)])>,
        expression: Option<&str>,
    ) -> MetricDataQuery {
        let mut q = MetricDataQuery::builder()
            .id(id)
            .set_expression(expression.map(Into::into));
        if let Some((name, dims)) = metric {
            let mut m = Metric::builder().namespace("AWS/Lambda").metric_name(name);
            for (k, v) in dims {
                m = m.dimensions(dimension(k, v));
            }
            q = q.metric_stat(
                MetricStat::builder()
                    .metric(m.build())
                    .period(60)
                    .stat("Sum")
                    .build(),
            );
        }
        q.build()
    }

    #[test]
    fn a_single_metric_alarm() {
        // GIVEN a static-threshold alarm on one metric
        let alarm = MetricAlarm::builder()
            .alarm_name("orders-api-HighErrorRate")
            .alarm_arn("arn:aws:cloudwatch:us-east-1:123456789012:alarm:orders-api-HighErrorRate")
            .state_value(StateValue::Alarm)
            .state_reason("Threshold Crossed")
            .state_updated_timestamp(DateTime::from_secs(1_795_323_700))
            .state_transitioned_timestamp(DateTime::from_millis(1_795_323_600_250))
            .namespace("AWS/Lambda")
            .metric_name("Errors")
            .dimensions(dimension("TenantId", "acme"))
            .dimensions(dimension("FunctionName", "orders-api"))
            .build();
        // WHEN converted
        let s = metric_alarm_signal(&alarm).unwrap();
        // THEN everything intake needs is there, dimensions in order
        assert_eq!(s.name, "orders-api-HighErrorRate");
        assert_eq!(s.kind, AlarmKind::Metric);
        assert_eq!(s.state, AlarmState::Alarm);
        assert_eq!(s.reason.as_deref(), Some("Threshold Crossed"));
        assert_eq!(
            s.state_changed_at,
            Some(datetime!(2026-11-22 05:00:00.250 UTC))
        );
        assert!(s.arn.unwrap().ends_with(":alarm:orders-api-HighErrorRate"));
        assert_eq!(
            s.metrics,
            [MetricRef {
                namespace: Some("AWS/Lambda".into()),
                name: Some("Errors".into()),
                dimensions: vec![
                    ("TenantId".into(), "acme".into()),
                    ("FunctionName".into(), "orders-api".into())
                ],
            }]
        );
        assert_eq!(s.alarm_rule, None);
    }

    #[test]
    fn state_updated_is_the_fallback_timestamp() {
        let alarm = MetricAlarm::builder()
            .alarm_name("a")
            .state_value(StateValue::Alarm)
            .state_updated_timestamp(DateTime::from_secs(1_795_323_700))
            .metric_name("Errors")
            .build();
        let s = metric_alarm_signal(&alarm).unwrap();
        assert_eq!(s.state_changed_at, Some(datetime!(2026-11-22 05:01:40 UTC)));
    }

    #[test]
    fn a_metric_math_alarm_lists_the_metrics_of_its_queries() {
        let alarm = MetricAlarm::builder()
            .alarm_name("checkout-error-ratio")
            .state_value(StateValue::Alarm)
            .metrics(query(
                "e",
                Some(("Errors", &[("FunctionName", "checkout")])),
                None,
            ))
            .metrics(query(
                "i",
                Some((
                    "Invocations",
                    &[("FunctionName", "checkout"), ("tenant_id", "t1")],
                )),
                None,
            ))
            .metrics(query("ratio", None, Some("e / i")))
            .build();
        let s = metric_alarm_signal(&alarm).unwrap();
        assert_eq!(s.kind, AlarmKind::MetricMath);
        assert_eq!(s.metrics.len(), 2);
        assert_eq!(s.metrics[0].name.as_deref(), Some("Errors"));
        assert_eq!(
            s.metrics[1].dimensions,
            [
                ("FunctionName".to_owned(), "checkout".to_owned()),
                ("tenant_id".to_owned(), "t1".to_owned())
            ]
        );
        assert_eq!(s.state_changed_at, None);
    }

    #[test]
    fn anomaly_detection_alarms() {
        let band = MetricAlarm::builder()
            .alarm_name("latency-band")
            .state_value(StateValue::Alarm)
            .metrics(query("m1", Some(("Duration", &[])), None))
            .metrics(query("ad1", None, Some("anomaly_detection_band(m1, 2)")))
            .threshold_metric_id("ad1")
            .build();
        assert_eq!(
            metric_alarm_signal(&band).unwrap().kind,
            AlarmKind::AnomalyDetection
        );

        let by_threshold_only = MetricAlarm::builder()
            .alarm_name("x")
            .state_value(StateValue::Alarm)
            .metrics(query("m1", Some(("Duration", &[])), None))
            .threshold_metric_id("ad1")
            .build();
        assert_eq!(
            metric_alarm_signal(&by_threshold_only).unwrap().kind,
            AlarmKind::AnomalyDetection
        );
    }

    #[test]
    fn a_composite_alarm_has_a_rule_and_no_metrics() {
        let alarm = CompositeAlarm::builder()
            .alarm_name("checkout-aggregate")
            .alarm_arn("arn:aws:cloudwatch:us-east-1:123456789012:alarm:checkout-aggregate")
            .alarm_rule("ALARM(\"checkout-HighErrorRate\") OR ALARM(cpu)")
            .state_value(StateValue::Alarm)
            .state_reason("arn:... transitioned to ALARM")
            .state_transitioned_timestamp(DateTime::from_secs(1_795_323_600))
            .build();
        let s = composite_alarm_signal(&alarm).unwrap();
        assert_eq!(s.kind, AlarmKind::Composite);
        assert!(s.metrics.is_empty());
        assert_eq!(
            s.alarm_rule.as_deref(),
            Some("ALARM(\"checkout-HighErrorRate\") OR ALARM(cpu)")
        );
        assert_eq!(s.state_changed_at, Some(datetime!(2026-11-22 05:00:00 UTC)));
    }

    #[test]
    fn an_alarm_without_name_or_state_is_unusable() {
        let nameless = MetricAlarm::builder()
            .state_value(StateValue::Alarm)
            .build();
        assert!(metric_alarm_signal(&nameless).is_err());
        let stateless = CompositeAlarm::builder().alarm_name("c").build();
        assert!(
            composite_alarm_signal(&stateless)
                .unwrap_err()
                .contains("alarm c")
        );
    }

    #[tokio::test]
    async fn every_page_is_read_and_both_alarm_types_asked_for() {
        use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput;
        use aws_smithy_mocks::{RuleMode, mock, mock_client};

        // GIVEN two pages: metric alarms then, after a NextToken, a composite alarm
        let first = mock!(Client::describe_alarms)
            .match_requests(|r| {
                r.next_token().is_none()
                    && r.state_value() == Some(&StateValue::Alarm)
                    && r.alarm_types() == [AlarmType::MetricAlarm, AlarmType::CompositeAlarm]
            })
            .then_output(|| {
                DescribeAlarmsOutput::builder()
                    .metric_alarms(
                        MetricAlarm::builder()
                            .alarm_name("a")
                            .state_value(StateValue::Alarm)
                            .metric_name("Errors")
                            .build(),
                    )
                    .metric_alarms(
                        MetricAlarm::builder()
                            .state_value(StateValue::Alarm)
                            .build(),
                    )
                    .next_token("page-2")
                    .build()
            });
        let second = mock!(Client::describe_alarms)
            .match_requests(|r| r.next_token() == Some("page-2"))
            .then_output(|| {
                DescribeAlarmsOutput::builder()
                    .composite_alarms(
                        CompositeAlarm::builder()
                            .alarm_name("c")
                            .alarm_rule("ALARM(a)")
                            .state_value(StateValue::Alarm)
                            .build(),
                    )
                    .build()
            });
        let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&first, &second]);

        // WHEN listed
        let alarms = CloudWatchAlarms::from_client(client)
            .alarms_in_alarm()
            .await
            .unwrap();

        // THEN both pages were read once, and the nameless alarm skipped
        let names: Vec<&str> = alarms.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(alarms[1].kind, AlarmKind::Composite);
        assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
    }

    #[test]
    fn throttling_is_unavailable_and_other_errors_invalid() {
        let error =
            |code: &str| DescribeAlarmsError::generic(ErrorMetadata::builder().code(code).build());
        assert!(matches!(
            describe_error(&service_error(error("Throttling"), 400)),
            TelemetryError::Unavailable(_)
        ));
        assert!(matches!(
            describe_error(&service_error(error("InternalFailure"), 500)),
            TelemetryError::Unavailable(_)
        ));
        assert!(matches!(
            describe_error(&service_error(error("AccessDenied"), 403)),
            TelemetryError::Invalid(_)
        ));
    }
}
