//! Error rows and the successes' latency from CloudWatch Logs Insights: the queries, the log
//! groups they search, polling with a deadline, and the rows they return.

use super::*;

impl CloudWatchTelemetry {
    /// The existing log groups of `components` (every group under the prefix when none are
    /// named), in name order.
    pub(super) async fn log_groups(
        &self,
        components: &[ComponentId],
    ) -> Result<Vec<String>, TelemetryError> {
        let prefix = &self.settings.log_group_prefix;
        let wanted: Vec<String> = components
            .iter()
            .map(|c| format!("{prefix}{}", c.as_str()))
            .filter(|name| {
                let ok = is_log_group_name(name);
                if !ok {
                    debug!(group = %name, "no log group can have this name; skipped");
                }
                ok
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !components.is_empty() && wanted.len() <= NAMED_LOOKUP_MAX {
            let mut found = Vec::new();
            for name in wanted {
                // Groups are listed in name order, so the group named exactly `name` (a prefix
                // of every other match) is the first if it exists.
                let page = self
                    .logs
                    .describe_log_groups()
                    .log_group_name_prefix(&name)
                    .limit(1)
                    .send()
                    .await
                    .map_err(|e| sdk_failure("DescribeLogGroups", &e))?;
                if page.log_groups().first().and_then(|g| g.log_group_name()) == Some(name.as_str())
                {
                    found.push(name);
                } else {
                    debug!(group = %name, "log group does not exist; skipped");
                }
            }
            return Ok(found);
        }
        let mut pages = self
            .logs
            .describe_log_groups()
            .log_group_name_prefix(prefix)
            .limit(LOG_GROUP_PAGE_SIZE)
            .into_paginator()
            .send();
        let mut all = BTreeSet::new();
        while let Some(page) = pages
            .try_next()
            .await
            .map_err(|e| sdk_failure("DescribeLogGroups", &e))?
        {
            all.extend(
                page.log_groups()
                    .iter()
                    .filter_map(|g| g.log_group_name())
                    .map(str::to_owned),
            );
        }
        if components.is_empty() {
            Ok(all.into_iter().collect())
        } else {
            Ok(wanted.into_iter().filter(|n| all.contains(n)).collect())
        }
    }

    /// Runs one Logs Insights query to completion (or `deadline`) and returns its rows.
    pub(super) async fn run_query(
        &self,
        groups: &[String],
        query_string: &str,
        (start, end): (i64, i64),
        limit: usize,
        deadline: Instant,
    ) -> Result<Vec<Vec<ResultField>>, TelemetryError> {
        let started = self
            .logs
            .start_query()
            .set_log_group_names(Some(groups.to_vec()))
            .start_time(start)
            .end_time(end)
            .query_string(query_string)
            .send()
            .await
            .map_err(|e| sdk_failure("StartQuery", &e))?;
        let query_id = started
            .query_id()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| TelemetryError::Invalid("StartQuery: no queryId in the answer".into()))?
            .to_owned();
        debug!(query = %query_id, groups = groups.len(), "Logs Insights query started");
        loop {
            let answer = self
                .logs
                .get_query_results()
                .query_id(&query_id)
                .send()
                .await
                .map_err(|e| sdk_failure("GetQueryResults", &e))?;
            match answer.status() {
                Some(QueryStatus::Complete) => {
                    let mut rows = answer.results().to_vec();
                    let mut next = answer.next_token().map(str::to_owned);
                    while let Some(token) = next.take().filter(|_| rows.len() < limit) {
                        let page = self
                            .logs
                            .get_query_results()
                            .query_id(&query_id)
                            .next_token(token)
                            .send()
                            .await
                            .map_err(|e| sdk_failure("GetQueryResults", &e))?;
                        rows.extend_from_slice(page.results());
                        next = page.next_token().map(str::to_owned);
                    }
                    return Ok(rows);
                }
                Some(QueryStatus::Failed) => {
                    return Err(TelemetryError::Invalid(format!(
                        "GetQueryResults: Logs Insights query {query_id} failed"
                    )));
                }
                Some(status @ (QueryStatus::Cancelled | QueryStatus::Timeout)) => {
                    return Err(TelemetryError::Unavailable(format!(
                        "GetQueryResults: Logs Insights query {query_id} ended {}",
                        status.as_str()
                    )));
                }
                // Scheduled, Running, Unknown, or a status added later: not finished yet.
                _ => {}
            }
            let now = Instant::now();
            if now >= deadline {
                self.stop_query(&query_id).await;
                return Err(TelemetryError::Unavailable(format!(
                    "GetQueryResults: Logs Insights query {query_id} did not finish within {:?}",
                    self.settings.query_timeout
                )));
            }
            tokio::time::sleep(self.settings.query_poll_interval.min(deadline - now)).await;
        }
    }

    /// Each version's successful invocations from the function's `platform.report` records
    /// ([`success_query`]); versions without any are left out. Needs the JSON log format:
    /// text-format `REPORT` lines do not say whether the invocation succeeded.
    pub(super) async fn success_durations(
        &self,
        function: &ComponentId,
        versions: &[String],
        window: &TimeWindow,
        levels: &[f64],
    ) -> Result<HashMap<String, SuccessDurations>, TelemetryError> {
        let groups = self.log_groups(std::slice::from_ref(function)).await?;
        let Some(query_string) = success_query(versions, levels) else {
            return Ok(HashMap::new());
        };
        if groups.is_empty() || window.start >= window.end {
            return Ok(HashMap::new());
        }
        let deadline = Instant::now() + self.settings.query_timeout.min(SUCCESS_QUERY_TIMEOUT);
        let rows = self
            .run_query(
                &groups,
                &query_string,
                query_range(window),
                versions.len(),
                deadline,
            )
            .await?;
        let mut found = HashMap::new();
        for fields in rows {
            match success_row(&fields, levels.len()) {
                Ok(Some((version, durations))) if versions.contains(&version) => {
                    found.insert(version, durations);
                }
                Ok(_) => {}
                Err(problem) => {
                    warn!(problem = %Escaped(&problem), "skipping a Logs Insights row");
                }
            }
        }
        Ok(found)
    }

    /// Stops a query given up on, so it stops counting against the concurrency quota.
    pub(super) async fn stop_query(&self, query_id: &str) {
        if let Err(e) = self.logs.stop_query().query_id(query_id).send().await {
            debug!(query = %query_id, error = %DisplayErrorContext(&e), "StopQuery failed");
        }
    }
}

/// The Logs Insights query for error lines, newest first, at most `limit` (capped at
/// [`MAX_INSIGHTS_LIMIT`]). With a tenant, only lines whose `tenant_id` field is the tenant or
/// whose message mentions it; that filter comes before `sort` and `limit`, so `limit` counts
/// the tenant's lines only.
pub fn error_query(tenant: Option<&TenantId>, limit: usize) -> String {
    // `status.{0,3}timeout`: a report's `Status: timeout` (text) or `"status":"timeout"`
    // (JSON log format, which has no `Task timed out` line).
    let mut query = String::from(
        "fields @timestamp, @message, @logStream, @log \
         | filter @message like /(?i)(error|exception|timed out|status.{0,3}timeout|signal: killed|outofmemory)/",
    );
    if let Some(tenant) = tenant {
        let value = insights_string(tenant.as_str());
        query.push_str(&format!(
            " | filter tenant_id = {value} or @message like {value}"
        ));
    }
    query.push_str(&format!(
        " | sort @timestamp desc | limit {}",
        limit.clamp(1, MAX_INSIGHTS_LIMIT)
    ));
    query
}

/// The Logs Insights query for Lambda's `REPORT` lines, text (`REPORT RequestId: …`) or JSON
/// (`"type":"platform.report"`), newest first, at most `limit` (capped at
/// [`MAX_INSIGHTS_LIMIT`]), with the log stream that names each one's version.
pub fn report_query(limit: usize) -> String {
    format!(
        "fields @timestamp, @message, @logStream, @log \
         | filter @message like /^REPORT RequestId:|\"type\":\\s*\"platform\\.report\"/ \
         | sort @timestamp desc | limit {}",
        limit.clamp(1, MAX_INSIGHTS_LIMIT)
    )
}

/// The Logs Insights query for the successful invocations of `versions`: the JSON log
/// format's `platform.report` records with `record.status = "success"`, the version taken
/// from the log stream name (`2026/11/22/[3]…`), by version the count and the duration at
/// p50, p90, p99 (`q0`–`q2`) and at each of `levels` (`l0`…). None when no version is a
/// published version number or `$LATEST`.
pub fn success_query(versions: &[String], levels: &[f64]) -> Option<String> {
    let names: Vec<String> = versions
        .iter()
        .filter(|v| v.as_str() == "$LATEST" || version_number_like(v))
        .map(|v| insights_string(v))
        .collect();
    if names.is_empty() {
        return None;
    }
    let duration = "record.metrics.durationMs";
    let mut stats = vec!["count(*) as requests".to_owned()];
    for (k, percent) in [50.0, 90.0, 99.0].iter().enumerate() {
        stats.push(format!("pct({duration}, {percent}) as q{k}"));
    }
    for (k, level) in levels.iter().enumerate() {
        let percent = (level.clamp(0.0, 1.0) * 100.0 * 1e4).round() / 1e4;
        stats.push(format!("pct({duration}, {percent}) as l{k}"));
    }
    Some(format!(
        "filter type = \"platform.report\" and record.status = \"success\" \
         | parse @logStream /\\[(?<version>[^\\]]+)\\]/ \
         | filter version in [{}] \
         | stats {} by version",
        names.join(", "),
        stats.join(", ")
    ))
}

/// True for a published version number (`1`…`18446744073709551615`).
fn version_number_like(version: &str) -> bool {
    !version.is_empty() && version.len() <= 20 && version.bytes().all(|b| b.is_ascii_digit())
}

/// One row of [`success_query`]: the version and its successes; none when it counted none.
fn success_row(
    fields: &[ResultField],
    levels: usize,
) -> Result<Option<(String, SuccessDurations)>, String> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|f| f.field() == Some(name))
            .and_then(|f| f.value())
    };
    let number = |name: &str| -> Result<f64, String> {
        let text = field(name).ok_or_else(|| format!("no `{name}` in the row"))?;
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("`{name}` is not a duration or count: {}", Excerpt(text)))
    };
    let version = field("version")
        .ok_or("no `version` in the row")?
        .to_owned();
    let requests = number("requests")?;
    if requests <= 0.0 {
        return Ok(None);
    }
    let duration_ms = Quantiles {
        p50: number("q0")?,
        p90: number("q1")?,
        p99: number("q2")?,
    };
    let percentiles = (0..levels)
        .map(|k| number(&format!("l{k}")))
        .collect::<Result<Vec<f64>, String>>()?;
    Ok(Some((
        version,
        SuccessDurations {
            requests,
            duration_ms,
            percentiles,
        },
    )))
}

/// `value` as a double-quoted Logs Insights string literal.
pub(super) fn insights_string(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// `StartQuery`'s `startTime` and `endTime` in epoch seconds. Both are inclusive, so the
/// range covers the window's start second to the second after its end; rows outside the
/// window are dropped afterwards.
pub(super) fn query_range(window: &TimeWindow) -> (i64, i64) {
    let start = window.start.unix_timestamp();
    let end = window.end.unix_timestamp();
    let end = if window.end.nanosecond() == 0 {
        end
    } else {
        end + 1
    };
    (start, end)
}

/// True if `name` could name a log group: 1–512 of `[A-Za-z0-9._/#-]`.
pub(super) fn is_log_group_name(name: &str) -> bool {
    (1..=512).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | '#'))
}

/// A Logs Insights `@timestamp`: `2026-11-22 05:00:00.123`, UTC. moto answers epoch
/// milliseconds (`1795323600123`) instead; those are read too.
pub fn parse_insights_timestamp(value: &str) -> Option<OffsetDateTime> {
    let format = format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    if let Ok(t) = PrimitiveDateTime::parse(value, format) {
        return Some(t.assume_utc());
    }
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let millis: i128 = value.parse().ok()?;
        return OffsetDateTime::from_unix_timestamp_nanos(millis * 1_000_000).ok();
    }
    None
}

/// The component whose log group `@log` names. `@log` is `<account>:<group>` on AWS and
/// `<group>` on moto; either way the group is what follows the last `:` (group names have none).
fn component_of_log(log: &str, prefix: &str) -> Result<ComponentId, String> {
    let group = log.rsplit_once(':').map_or(log, |(_, group)| group);
    let name = group
        .strip_prefix(prefix)
        .ok_or_else(|| format!("log group {group:?} is not under {prefix:?}"))?;
    ComponentId::parse(name).map_err(|e| e.to_string())
}

/// One Logs Insights row as a log row. `only_group` is the group when the query searched
/// one, used if the row has no `@log`.
pub(super) fn log_row(
    fields: &[ResultField],
    prefix: &str,
    only_group: Option<&str>,
) -> Result<LogRow, String> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|f| f.field() == Some(name))
            .and_then(ResultField::value)
    };
    let raw_time = field("@timestamp").ok_or("a row has no @timestamp")?;
    let timestamp = parse_insights_timestamp(raw_time)
        .ok_or_else(|| format!("@timestamp {raw_time:?} is not a Logs Insights timestamp"))?;
    let log = field("@log")
        .or(only_group)
        .ok_or("a row has no @log, and the query searched several groups")?;
    let message = field("@message").ok_or("a row has no @message")?;
    Ok(LogRow {
        timestamp,
        component: component_of_log(log, prefix)?,
        message: message.trim_end_matches(['\n', '\r']).to_owned(),
        log_stream: field("@logStream").map(str::to_owned),
    })
}
