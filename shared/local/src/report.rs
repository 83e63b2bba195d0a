//! `selfbuild report`: one improvement as a self-contained HTML page (inline SVG and CSS, no
//! script, nothing fetched): canary vs stable on each judged metric at every look with the
//! degradation threshold and each look's verdict, the rule that fired, the change with its
//! findings, and the audit timeline. Every string from the records (diffs, log lines, the
//! model's text) is escaped.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use selfbuild_core::audit::{AuditAction, AuditEvent};
use selfbuild_core::change::{Change, LambdaSettings};
use selfbuild_core::improvement::{MonitorReport, QuantileIntervals, Verdict};
use selfbuild_core::records::ImprovementRecord;
use selfbuild_core::telemetry::Quantiles;
use serde_json::Value;
use time::OffsetDateTime;

use crate::output::utc;
use crate::store::SqliteStore;

/// Why a report was not written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] selfbuild_core::error::StoreError),
    /// The page could not be written.
    #[error("{path}: {source}")]
    Write {
        /// Where it was to go.
        path: String,
        /// Why not.
        source: std::io::Error,
    },
}

/// Writes the page of improvement `id` in `store` to `out` (creating its folder); the number
/// of looks it charts, or none when the store has no such improvement.
pub async fn write_report(
    store: &SqliteStore,
    id: &selfbuild_core::ids::ImprovementId,
    out: &std::path::Path,
    degradation_threshold: f64,
) -> Result<Option<usize>, ReportError> {
    use selfbuild_core::ports::{AuditLog, ImprovementStore};
    let Some(record) = store.get_improvement(id).await? else {
        return Ok(None);
    };
    let events: Vec<AuditEvent> = store
        .cycle_events(&record.cycle_id)
        .await?
        .into_iter()
        .filter(|e| e.improvement_id.as_ref() == Some(id))
        .collect();
    let input = ReportInput {
        record: &record,
        events: &events,
        degradation_threshold,
    };
    let page = render(&input);
    let write_error = |source| ReportError::Write {
        path: out.display().to_string(),
        source,
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write_error)?;
    }
    std::fs::write(out, page).map_err(write_error)?;
    Ok(Some(looks(&record, &events).len()))
}

/// The stable version's colour in the charts, used nowhere else on the page (the browser test
/// counts its pixels).
pub const STABLE_RGB: [u8; 3] = [0x00, 0x5a, 0xc8];
/// The canary's colour in the charts, used nowhere else on the page.
pub const CANARY_RGB: [u8; 3] = [0xe6, 0x5a, 0x00];
/// The degradation threshold's dashed line.
const THRESHOLD: &str = "#b0006a";
/// The α budget's line.
const ALPHA: &str = "#5b5b5b";

/// What a report is drawn from.
#[derive(Debug, Clone, Copy)]
pub struct ReportInput<'a> {
    /// The improvement's latest state.
    pub record: &'a ImprovementRecord,
    /// Its audit events in time order (other improvements' events are left out).
    pub events: &'a [AuditEvent],
    /// `DEGRADATION_THRESHOLD`: the canary is judged against (1 + this) × stable's rate.
    pub degradation_threshold: f64,
}

/// The looks at the canary that judged metrics, oldest first: each `canary_checked` event's
/// report and the record's latest one. Of looks made after the same earlier look (a retried
/// invocation looks again) only the last counts, as the state machine kept only its result.
pub fn looks(record: &ImprovementRecord, events: &[AuditEvent]) -> Vec<MonitorReport> {
    let mut kept: BTreeMap<Option<String>, MonitorReport> = BTreeMap::new();
    for event in events.iter().filter(|e| {
        e.action == AuditAction::CanaryChecked
            && e.improvement_id.as_ref() == Some(&record.improvement_id)
    }) {
        let Some(report) = event
            .after
            .clone()
            .and_then(|v| serde_json::from_value::<MonitorReport>(v).ok())
        else {
            continue;
        };
        let previous = event
            .before
            .as_ref()
            .and_then(|b| b.get("checked_at"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        match kept.get(&previous) {
            Some(other) if other.checked_at >= report.checked_at => {}
            _ => {
                kept.insert(previous, report);
            }
        }
    }
    let mut looks: Vec<MonitorReport> = kept.into_values().collect();
    if let Some(last) = &record.item.monitor
        && !looks.iter().any(|l| l.checked_at == last.checked_at)
    {
        looks.push(last.clone());
    }
    looks.retain(|l| !l.metrics.is_empty());
    looks.sort_by_key(|l| l.checked_at);
    looks.dedup_by_key(|l| l.checked_at);
    looks
}

/// The report page of `input`: deterministic (no clock is read), one self-contained HTML
/// document.
pub fn render(input: &ReportInput<'_>) -> String {
    let record = input.record;
    let looks = looks(record, input.events);
    let mut page = String::with_capacity(64 * 1024);
    let id = esc(record.improvement_id.as_str());
    let _ = writeln!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>selfbuild report {id}</title><style>{STYLE}</style></head><body>\n\
         <h1>Improvement <code>{id}</code></h1>"
    );
    summary(&mut page, record);
    decision(&mut page, input, &looks);
    if !looks.is_empty() {
        charts(&mut page, input, &looks);
        look_table(&mut page, &looks, deployed_at(record));
    }
    change(&mut page, record);
    validation(&mut page, record);
    timeline(&mut page, input.events, &record.improvement_id);
    page.push_str("</body></html>\n");
    page
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;\
margin:24px auto;max-width:1000px;color:#1d1d1d;background:#fff;line-height:1.4}\
h1{font-size:22px;margin:0 0 8px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}\
h3{font-size:15px;margin:16px 0 4px}code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}\
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:3px 6px;\
border-bottom:1px solid #eee;vertical-align:top}th{background:#f4f4f4}\
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:0}dt{color:#666}dd{margin:0}\
.badge{display:inline-block;padding:1px 8px;border-radius:9px;background:#eee;font-weight:600}\
.promoted{background:#d7f0dd}.rolled_back,.rejected,.rollback_failed,.deploy_failed{background:#f6d8d8}\
.note{background:#fff7d6;border:1px solid #e8d58a;padding:8px 12px;border-radius:4px}\
.rule{background:#f3f3f3;padding:8px 12px;border-radius:4px}\
pre.diff{background:#fafafa;border:1px solid #e3e3e3;padding:6px;overflow-x:auto;white-space:pre}\
pre.diff .add{background:#e3f6e3;color:#14521f}pre.diff .del{background:#fbe3e3;color:#7d1414}\
pre.diff .hunk{color:#5a3f99}pre.diff span{display:block}\
.changed td{background:#fff7d6}svg{display:block;margin:4px 0 2px}\
.caption{font-size:12.5px;color:#444;margin:0 0 14px}.muted{color:#777}td.t{white-space:nowrap}";

/// `text` safe inside HTML text and attribute values; control characters other than newline
/// and tab shown as U+FFFD.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn deployed_at(record: &ImprovementRecord) -> Option<OffsetDateTime> {
    record
        .item
        .deploy
        .as_ref()
        .and_then(|d| d.deployment.as_ref())
        .map(|d| d.deployed_at)
}

fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Healthy => "healthy",
        Verdict::Degraded => "degraded",
        Verdict::Inconclusive => "inconclusive",
        Verdict::Halted => "halted",
        Verdict::Frozen => "frozen",
    }
}

fn verdict_colour(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Healthy => "#2e7d32",
        Verdict::Degraded => "#c62828",
        Verdict::Inconclusive | Verdict::Halted | Verdict::Frozen => "#777777",
    }
}

fn percent(rate: f64) -> String {
    // + 0.0 prints a negative zero as 0.
    format!("{:.2} %", rate * 100.0 + 0.0)
}

fn millis(ms: f64) -> String {
    format!("{ms:.0} ms")
}

fn summary(page: &mut String, record: &ImprovementRecord) {
    let item = &record.item;
    let status = record.status.as_str();
    let mut rows: Vec<(&str, String)> = vec![
        (
            "status",
            format!("<span class=\"badge {status}\">{status}</span>"),
        ),
        ("component", esc(&record.component)),
        (
            "opportunity",
            format!(
                "{} (rank {}, {:.0} affected requests)",
                esc(&item.opportunity.id),
                item.opportunity.rank,
                item.opportunity.affected_requests
            ),
        ),
        ("change", esc(record.change.as_deref().unwrap_or("-"))),
        ("risk", record.risk.map_or("-", |r| r.as_str()).to_owned()),
        ("cycle", esc(record.cycle_id.as_str())),
        ("updated", utc(record.updated_at)),
    ];
    if let Some(tenant) = &record.tenant_id {
        rows.push(("tenant", esc(tenant.as_str())));
    }
    if let Some(g) = &item.generated {
        rows.push(("proposed by", esc(&g.provider)));
    }
    if let Some(d) = item.deploy.as_ref().and_then(|d| d.deployment.as_ref()) {
        rows.push((
            "canary",
            format!(
                "version {} at {:.0} % of traffic from {} (stable version {})",
                esc(&d.canary_version),
                d.weight * 100.0,
                utc(d.deployed_at),
                esc(&d.baseline.stable_version)
            ),
        ));
    }
    page.push_str("<dl>");
    for (key, value) in rows {
        let _ = write!(page, "<dt>{key}</dt><dd>{value}</dd>");
    }
    page.push_str("</dl>\n");
}

/// The final verdict and the rule that fired, or why the canary never ran.
fn decision(page: &mut String, input: &ReportInput<'_>, looks: &[MonitorReport]) {
    let record = input.record;
    let item = &record.item;
    page.push_str("<h2>Decision</h2>\n");
    let last_event = input.events.iter().rfind(|e| {
        // Looks and deliveries to other agents are no decision.
        !matches!(
            e.action,
            AuditAction::CanaryChecked
                | AuditAction::AgentNotified
                | AuditAction::AgentNotificationFailed
        )
    });
    let Some(last) = looks.last() else {
        let why = item
            .deploy
            .as_ref()
            .map(|d| d.reason.clone())
            .filter(|r| !r.is_empty())
            .or_else(|| last_event.map(|e| e.detail.clone()))
            .unwrap_or_default();
        let _ = writeln!(
            page,
            "<p class=\"note\">The canary never ran: {} (status <b>{}</b>), so there is no \
             look to chart.{}</p>",
            never_ran(record),
            record.status.as_str(),
            if why.is_empty() {
                String::new()
            } else {
                format!(" {}", esc(&why))
            }
        );
        return;
    };
    let final_report = item.monitor.as_ref().unwrap_or(last);
    let _ = writeln!(
        page,
        "<p class=\"rule\">Last look {}: <b style=\"color:{}\">{}</b>: {}</p>",
        utc(final_report.checked_at),
        verdict_colour(final_report.verdict),
        verdict_name(final_report.verdict),
        esc(&final_report.reason)
    );
    if let Some(event) = last_event.filter(|e| {
        matches!(
            e.action,
            AuditAction::Promoted
                | AuditAction::RolledBack
                | AuditAction::Inconclusive
                | AuditAction::RollbackFailed
                | AuditAction::HaltedInFlight
        )
    }) {
        let _ = writeln!(
            page,
            "<p>Then <b>{}</b> by {} at {}: {}</p>",
            event.action.as_str(),
            esc(&event.actor),
            utc(event.at),
            esc(&event.detail)
        );
    }
    let _ = writeln!(
        page,
        "<p class=\"caption\">Each metric is a one-sided test that the canary's rate exceeds \
         (1 + {:.0} %) × stable's (<code>DEGRADATION_THRESHOLD</code>), at each look's share \
         of the α budget; {} look{} charted below.</p>",
        input.degradation_threshold * 100.0,
        looks.len(),
        if looks.len() == 1 { "" } else { "s" }
    );
}

/// Why an improvement without looks never reached a canary, in words.
fn never_ran(record: &ImprovementRecord) -> String {
    use selfbuild_core::improvement::{DeployStatus, ValidationDecision};
    use selfbuild_core::records::ImprovementStatus;
    let item = &record.item;
    if let Some(v) = &item.validation {
        if v.decision == ValidationDecision::Rejected {
            return "validation rejected the change".to_owned();
        }
        if v.held_for_review {
            return "the patch is held for people to review, not shipped".to_owned();
        }
    }
    if item.approval.as_ref().is_some_and(|a| !a.approved) {
        return "it was not approved".to_owned();
    }
    if let Some(d) = &item.deploy {
        return match d.status {
            DeployStatus::Deployed => "it was deployed, but no look was recorded",
            DeployStatus::Deferred => "the deploy was deferred",
            DeployStatus::Halted => "the halt switch stopped the deploy",
            DeployStatus::Skipped => "nothing was deployed",
        }
        .to_owned();
    }
    match record.status {
        ImprovementStatus::AwaitingApproval => "it waits for approval".to_owned(),
        ImprovementStatus::Halted => "the halt switch stopped it".to_owned(),
        status => format!("it went no further than {}", status.as_str()),
    }
}

/// One point of a series: the value and its interval.
#[derive(Debug, Clone, Copy)]
struct Point {
    value: f64,
    interval: Option<(f64, f64)>,
}

/// A line of a chart.
struct Series {
    name: String,
    colour: String,
    points: Vec<Option<Point>>,
    /// The threshold: dashed, no markers.
    dashed: bool,
}

/// A chart over the looks.
struct Chart<'a> {
    title: String,
    /// Each look's position on the time axis, 0–1.
    xs: &'a [f64],
    x_labels: &'a [String],
    series: Vec<Series>,
    /// Per look: the verdict shown under it.
    verdicts: &'a [Verdict],
    /// Per look: a ring around the canary's point (this metric was judged worse there).
    flagged: Vec<bool>,
    format: fn(f64) -> String,
}

fn hex(rgb: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", rgb[0], rgb[1], rgb[2])
}

/// A step of 1, 2, 2.5 or 5 × 10ⁿ near `span / 4`.
fn nice_step(span: f64) -> f64 {
    let raw = span / 4.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude)
}

fn svg(chart: &Chart<'_>) -> String {
    const W: f64 = 960.0;
    const H: f64 = 270.0;
    const LEFT: f64 = 74.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 34.0;
    const BOTTOM: f64 = 52.0;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let top_value = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().flatten())
        .flat_map(|p| [Some(p.value), p.interval.map(|i| i.1)])
        .flatten()
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let top_value = if top_value > 0.0 { top_value } else { 0.01 };
    let step = nice_step(top_value * 1.08);
    let ticks = (top_value * 1.08 / step).ceil().max(1.0);
    let y_max = step * ticks;
    let x = |i: usize| LEFT + (0.04 + 0.92 * chart.xs[i]) * pw;
    let y = |v: f64| TOP + ph - (v.clamp(0.0, y_max) / y_max) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"11\" role=\"img\">\
         <title>{}</title><rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" fill=\"#ffffff\"/>",
        esc(&chart.title)
    );
    for k in 0..=(ticks as usize) {
        let v = step * k as f64;
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e6e6e6\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{}</text>",
            LEFT + pw,
            LEFT - 6.0,
            y(v) + 4.0,
            esc(&(chart.format)(v)),
            y = y(v)
        );
    }
    let _ = write!(
        s,
        "<line x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#999\"/>\
         <line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{b:.1}\" y2=\"{b:.1}\" stroke=\"#999\"/>",
        TOP + ph,
        LEFT + pw,
        b = TOP + ph
    );
    // The legend.
    let mut lx = LEFT;
    for series in &chart.series {
        let dash = if series.dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        let _ = write!(
            s,
            "<line x1=\"{lx:.1}\" x2=\"{:.1}\" y1=\"14\" y2=\"14\" stroke=\"{}\" \
             stroke-width=\"2\"{dash}/><text x=\"{:.1}\" y=\"18\" fill=\"#333\">{}</text>",
            lx + 22.0,
            series.colour,
            lx + 27.0,
            esc(&series.name)
        );
        lx += 40.0 + 6.5 * series.name.chars().count() as f64;
    }
    // Bands and whiskers first, lines and points over them.
    for series in chart.series.iter().filter(|s| !s.dashed) {
        let band: Vec<(f64, (f64, f64))> = series
            .points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.and_then(|p| p.interval).map(|iv| (x(i), iv)))
            .collect();
        if band.len() > 1 {
            let upper = band
                .iter()
                .map(|(px, (_, hi))| format!("{px:.1},{:.1}", y(*hi)));
            let lower = band
                .iter()
                .rev()
                .map(|(px, (lo, _))| format!("{px:.1},{:.1}", y(*lo)));
            let _ = write!(
                s,
                "<polygon points=\"{}\" fill=\"{}\" fill-opacity=\"0.10\" stroke=\"none\"/>",
                upper.chain(lower).collect::<Vec<_>>().join(" "),
                series.colour
            );
        }
        for (px, (lo, hi)) in &band {
            let _ = write!(
                s,
                "<line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\" \
                 stroke-opacity=\"0.45\" stroke-width=\"2\"/>",
                y(*lo),
                y(*hi),
                series.colour
            );
        }
    }
    // The threshold first, so the versions' points stay visible on it.
    let (dashed, solid): (Vec<&Series>, Vec<&Series>) = chart.series.iter().partition(|s| s.dashed);
    for series in dashed.into_iter().chain(solid) {
        let points: Vec<String> = series
            .points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.map(|p| format!("{:.1},{:.1}", x(i), y(p.value))))
            .collect();
        let (width, dash) = if series.dashed {
            ("2", " stroke-dasharray=\"6 4\"")
        } else {
            ("3", "")
        };
        if points.len() > 1 {
            let _ = write!(
                s,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{width}\"{dash}/>",
                points.join(" "),
                series.colour
            );
        } else if series.dashed
            && let Some(Some(p)) = series.points.first()
        {
            // One look: the threshold as a short level mark.
            let _ = write!(
                s,
                "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{}\" \
                 stroke-width=\"2\"{dash}/>",
                x(0) - 30.0,
                x(0) + 30.0,
                series.colour,
                y = y(p.value)
            );
        }
        if !series.dashed {
            for (i, p) in series.points.iter().enumerate() {
                if let Some(p) = p {
                    let interval = p.interval.map_or(String::new(), |(lo, hi)| {
                        format!(" (95 %: {}–{})", (chart.format)(lo), (chart.format)(hi))
                    });
                    let _ = write!(
                        s,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{}\"><title>{}: {}{}\
                         </title></circle>",
                        x(i),
                        y(p.value),
                        series.colour,
                        esc(&series.name),
                        esc(&(chart.format)(p.value)),
                        esc(&interval)
                    );
                }
            }
        }
    }
    // This metric judged worse at a look: a red ring around the canary's point.
    if let Some(canary) = chart.series.get(1) {
        for (i, flagged) in chart.flagged.iter().enumerate() {
            if let (true, Some(Some(p))) = (*flagged, canary.points.get(i)) {
                let _ = write!(
                    s,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"9\" fill=\"none\" stroke=\"#c62828\" \
                     stroke-width=\"2\"/>",
                    x(i),
                    y(p.value)
                );
            }
        }
    }
    // The looks: time under the axis, the verdict under it.
    let every = chart.xs.len().div_ceil(12).max(1);
    for i in 0..chart.xs.len() {
        let verdict = chart
            .verdicts
            .get(i)
            .copied()
            .unwrap_or(Verdict::Inconclusive);
        let label = if i % every == 0 || i + 1 == chart.xs.len() {
            esc(chart.x_labels.get(i).map_or("", String::as_str))
        } else {
            String::new()
        };
        let _ = write!(
            s,
            "<text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{label}</text>\
             <rect x=\"{:.1}\" y=\"{:.1}\" width=\"8\" height=\"8\" fill=\"{}\">\
             <title>look {}: {}</title></rect>",
            TOP + ph + 15.0,
            x(i) - 4.0,
            TOP + ph + 24.0,
            verdict_colour(verdict),
            i + 1,
            verdict_name(verdict),
            px = x(i)
        );
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#777\">minutes since the \
         deploy · squares: each look's verdict (green healthy, red degraded, grey inconclusive)\
         </text></svg>",
        LEFT + pw,
        H - 4.0
    );
    s
}

fn charts(page: &mut String, input: &ReportInput<'_>, looks: &[MonitorReport]) {
    let start = deployed_at(input.record).unwrap_or(looks[0].checked_at);
    let end = looks[looks.len() - 1].checked_at;
    let span = (end - start).as_seconds_f64();
    let xs: Vec<f64> = looks
        .iter()
        .map(|l| {
            if span > 0.0 {
                ((l.checked_at - start).as_seconds_f64() / span).clamp(0.0, 1.0)
            } else {
                0.5
            }
        })
        .collect();
    let x_labels: Vec<String> = looks
        .iter()
        .map(|l| format!("+{:.0} min", (l.checked_at - start).as_seconds_f64() / 60.0))
        .collect();
    let verdicts: Vec<Verdict> = looks.iter().map(|l| l.verdict).collect();
    let mut names: Vec<&str> = Vec::new();
    for look in looks {
        for m in &look.metrics {
            if !names.contains(&m.metric.as_str()) {
                names.push(&m.metric);
            }
        }
    }
    page.push_str("<h2>Canary vs stable at every look</h2>\n");
    let factor = 1.0 + input.degradation_threshold;
    for name in names {
        let of = |l: &MonitorReport| l.metrics.iter().find(|m| m.metric == name).cloned();
        let per_look: Vec<_> = looks.iter().map(of).collect();
        let stable = per_look
            .iter()
            .map(|m| {
                m.as_ref().map(|m| Point {
                    value: m.baseline,
                    interval: m.baseline_interval,
                })
            })
            .collect();
        let canary = per_look
            .iter()
            .map(|m| {
                m.as_ref().map(|m| Point {
                    value: m.canary,
                    interval: m.canary_interval,
                })
            })
            .collect();
        let threshold = per_look
            .iter()
            .map(|m| {
                m.as_ref().map(|m| Point {
                    value: m.baseline * factor,
                    interval: None,
                })
            })
            .collect();
        let title = format!("{name}: canary vs stable");
        let chart = Chart {
            title: title.clone(),
            xs: &xs,
            x_labels: &x_labels,
            series: vec![
                series("stable", hex(STABLE_RGB), stable),
                series("canary", hex(CANARY_RGB), canary),
                Series {
                    name: format!(
                        "threshold (1 + {:.0} %) × stable",
                        input.degradation_threshold * 100.0
                    ),
                    colour: THRESHOLD.to_owned(),
                    points: threshold,
                    dashed: true,
                },
            ],
            verdicts: &verdicts,
            flagged: per_look
                .iter()
                .map(|m| m.as_ref().is_some_and(|m| m.degraded))
                .collect(),
            format: percent,
        };
        let _ = writeln!(page, "<h3>{}</h3>\n{}", esc(&title), svg(&chart));
        if let Some(m) = per_look.iter().rev().flatten().next() {
            let p = |v: Option<f64>| v.map_or("-".to_owned(), |p| format!("{p:.3}"));
            let _ = writeln!(
                page,
                "<p class=\"caption\">Last look: stable {} ({} of {}), canary {} ({} of {}); \
                 p(worse) {}, p(better) {}, α this look {:.4}{}. Rule: {}</p>",
                percent(m.baseline),
                m.baseline_events + 0.0,
                m.baseline_total + 0.0,
                percent(m.canary),
                m.canary_events + 0.0,
                m.canary_total + 0.0,
                p(m.p_value),
                p(m.p_better),
                m.alpha,
                if m.degraded { ", <b>worse</b>" } else { "" },
                esc(&m.rule)
            );
        }
    }
    latency_charts(page, looks, &xs, &x_labels, &verdicts);
    let alpha = Chart {
        title: "α spent up to each look".to_owned(),
        xs: &xs,
        x_labels: &x_labels,
        series: vec![Series {
            name: "α spent".to_owned(),
            colour: ALPHA.to_owned(),
            points: looks
                .iter()
                .map(|l| {
                    Some(Point {
                        value: l.alpha_spent,
                        interval: None,
                    })
                })
                .collect(),
            dashed: false,
        }],
        verdicts: &verdicts,
        flagged: Vec::new(),
        format: |v| format!("{v:.3}"),
    };
    let _ = writeln!(
        page,
        "<h3>α spent</h3>\n{}\n<p class=\"caption\">The significance budget spent up to each \
         look; each look tests its metrics at its share.</p>",
        svg(&alpha)
    );
}

fn series(name: &str, colour: String, points: Vec<Option<Point>>) -> Series {
    Series {
        name: name.to_owned(),
        colour,
        points,
        dashed: false,
    }
}

fn latency_charts(
    page: &mut String,
    looks: &[MonitorReport],
    xs: &[f64],
    x_labels: &[String],
    verdicts: &[Verdict],
) {
    type Pick = fn(&Quantiles) -> f64;
    type PickInterval = fn(&QuantileIntervals) -> (f64, f64);
    let quantiles: [(&str, Pick, PickInterval, bool); 2] = [
        ("p99", |q| q.p99, |i| i.p99, true),
        ("p50", |q| q.p50, |i| i.p50, false),
    ];
    if !looks
        .iter()
        .any(|l| l.latency.as_ref().is_some_and(|t| t.canary.is_some()))
    {
        return;
    }
    for (name, pick, pick_interval, tail) in quantiles {
        let point = |q: Option<&Quantiles>, i: Option<&QuantileIntervals>| {
            q.map(|q| Point {
                value: pick(q),
                interval: i.map(pick_interval),
            })
        };
        let stable = looks
            .iter()
            .map(|l| {
                l.latency
                    .as_ref()
                    .and_then(|t| point(t.stable.as_ref(), t.stable_intervals.as_ref()))
            })
            .collect();
        let canary = looks
            .iter()
            .map(|l| {
                l.latency
                    .as_ref()
                    .and_then(|t| point(t.canary.as_ref(), t.canary_intervals.as_ref()))
            })
            .collect();
        let threshold = looks
            .iter()
            .map(|l| {
                l.latency
                    .as_ref()
                    .and_then(|t| {
                        if tail {
                            t.threshold_ms
                        } else {
                            t.median_threshold_ms
                        }
                    })
                    .map(|value| Point {
                        value,
                        interval: None,
                    })
            })
            .collect();
        let title = format!("latency {name}: canary vs stable");
        let chart = Chart {
            title: title.clone(),
            xs,
            x_labels,
            series: vec![
                series("stable", hex(STABLE_RGB), stable),
                series("canary", hex(CANARY_RGB), canary),
                Series {
                    name: if tail {
                        "slow above (LATENCY_SLO_MS or stable's p99)".to_owned()
                    } else {
                        "stable's median".to_owned()
                    },
                    colour: THRESHOLD.to_owned(),
                    points: threshold,
                    dashed: true,
                },
            ],
            verdicts,
            flagged: Vec::new(),
            format: millis,
        };
        let _ = writeln!(
            page,
            "<h3>{}</h3>\n{}\n<p class=\"caption\">Pooled durations since the deploy, with 95 % \
             distribution-free intervals; the share of requests above the dashed line is the \
             {} judged above.</p>",
            esc(&title),
            svg(&chart),
            if tail { "slow_rate" } else { "body share" }
        );
    }
}

fn look_table(page: &mut String, looks: &[MonitorReport], deployed: Option<OffsetDateTime>) {
    page.push_str(
        "<h2>Looks</h2>\n<table><tr><th>#</th><th>at</th><th>since deploy</th>\
         <th>canary requests</th><th>stable requests</th><th>α this look</th>\
         <th>α spent</th><th>verdict</th><th>why</th></tr>\n",
    );
    for (i, look) in looks.iter().enumerate() {
        let since = deployed.map_or("-".to_owned(), |d| {
            format!("{:.0} min", (look.checked_at - d).as_seconds_f64() / 60.0)
        });
        let alpha: f64 = look.metrics.iter().map(|m| m.alpha).sum();
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td class=\"t\">{}</td><td>{since}</td><td>{:.0}</td><td>{:.0}</td>\
             <td>{alpha:.4}</td><td>{:.4}</td><td style=\"color:{}\">{}{}</td><td>{}</td></tr>",
            i + 1,
            utc(look.checked_at),
            look.canary_requests,
            look.stable_requests,
            look.alpha_spent,
            verdict_colour(look.verdict),
            verdict_name(look.verdict),
            if look.extended { " (extended)" } else { "" },
            esc(&look.reason)
        );
    }
    page.push_str("</table>\n");
}

fn settings_rows(before: &LambdaSettings, after: &LambdaSettings) -> Vec<(String, String, String)> {
    let opt = |v: Option<u32>| v.map_or("unreserved".to_owned(), |v| v.to_string());
    let mut rows = vec![
        (
            "memory_mb".to_owned(),
            before.memory_mb.to_string(),
            after.memory_mb.to_string(),
        ),
        (
            "timeout_seconds".to_owned(),
            before.timeout_seconds.to_string(),
            after.timeout_seconds.to_string(),
        ),
        (
            "reserved_concurrency".to_owned(),
            opt(before.reserved_concurrency),
            opt(after.reserved_concurrency),
        ),
    ];
    let keys: std::collections::BTreeSet<&String> = before
        .environment
        .keys()
        .chain(after.environment.keys())
        .collect();
    for key in keys {
        let get = |s: &LambdaSettings| s.environment.get(key).cloned().unwrap_or("-".to_owned());
        rows.push((format!("environment.{key}"), get(before), get(after)));
    }
    rows
}

fn change(page: &mut String, record: &ImprovementRecord) {
    let item = &record.item;
    page.push_str("<h2>The change</h2>\n");
    let Some(generated) = &item.generated else {
        page.push_str("<p class=\"muted\">No change was proposed.</p>\n");
        return;
    };
    let proposal = &generated.proposal;
    let _ = writeln!(
        page,
        "<p>{}</p>\n<p class=\"caption\">Claimed risk {}, expected gain {:.0} %.</p>",
        esc(&proposal.rationale),
        proposal.claimed_risk.as_str(),
        proposal.expected_gain * 100.0
    );
    match &proposal.change {
        Change::LambdaConfig { config, .. } => {
            let validation = item.validation.as_ref();
            let before = validation
                .and_then(|v| v.before.clone())
                .or_else(|| item.opportunity.current.clone());
            let after = validation
                .and_then(|v| v.after.clone())
                .or_else(|| before.as_ref().map(|b| config.apply(b)));
            let (Some(before), Some(after)) = (before, after) else {
                let _ = writeln!(
                    page,
                    "<pre>{}</pre>",
                    esc(&serde_json::to_string_pretty(config).unwrap_or_default())
                );
                return;
            };
            page.push_str("<table><tr><th>setting</th><th>before</th><th>after</th></tr>\n");
            for (name, was, now) in settings_rows(&before, &after) {
                let class = if was == now { "" } else { " class=\"changed\"" };
                let _ = writeln!(
                    page,
                    "<tr{class}><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                    esc(&name),
                    esc(&was),
                    esc(&now)
                );
            }
            page.push_str("</table>\n");
        }
        Change::CodePatch { files, .. } => {
            for file in files {
                let (added, removed) = selfbuild_core::change::code_patch::diff_size(&file.diff);
                let _ = write!(
                    page,
                    "<h3><code>{}</code> +{added}/-{removed}</h3>\n<pre class=\"diff\">",
                    esc(&file.path)
                );
                // A line validation found a secret on is not repeated on a page people share.
                let secrets = secret_lines(record, &file.path);
                let mut new_line: u64 = 0;
                for line in file.diff.lines() {
                    let mut text = esc(line);
                    let class = if line.starts_with("+++") || line.starts_with("---") {
                        "file"
                    } else if line.starts_with('+') {
                        if secrets.contains(&new_line) {
                            text = format!(
                                "+[line {new_line} withheld: validation found a secret in it]"
                            );
                        }
                        new_line += 1;
                        "add"
                    } else if line.starts_with('-') {
                        "del"
                    } else if line.starts_with("@@") {
                        new_line = hunk_start(line).unwrap_or(new_line);
                        "hunk"
                    } else {
                        if line.starts_with(' ') || line.is_empty() {
                            new_line += 1;
                        }
                        "ctx"
                    };
                    // An empty block would take no height.
                    if text.is_empty() {
                        text.push(' ');
                    }
                    let _ = write!(page, "<span class=\"{class}\">{text}</span>");
                }
                page.push_str("</pre>\n");
            }
        }
    }
}

/// The new file's line numbers of `path` where validation found a secret (a `secret`
/// finding at `path:line:col`).
fn secret_lines(record: &ImprovementRecord, path: &str) -> std::collections::BTreeSet<u64> {
    let findings = record
        .item
        .validation
        .as_ref()
        .map_or(&[][..], |v| v.findings.as_slice());
    findings
        .iter()
        .filter(|f| f.rule == "secret")
        .filter_map(|f| f.location.as_deref()?.strip_prefix(path)?.strip_prefix(':'))
        .filter_map(|rest| rest.split(':').next()?.parse().ok())
        .collect()
}

/// The first new-file line of a hunk header `@@ -a,b +c,d @@`.
fn hunk_start(header: &str) -> Option<u64> {
    let new = header.split_whitespace().find(|w| w.starts_with('+'))?;
    new[1..].split(',').next()?.parse().ok()
}

fn validation(page: &mut String, record: &ImprovementRecord) {
    let item = &record.item;
    page.push_str("<h2>Validation</h2>\n");
    let Some(v) = &item.validation else {
        page.push_str("<p class=\"muted\">Not validated.</p>\n");
        return;
    };
    let decision = serde_json::to_value(v.decision)
        .ok()
        .and_then(|d| d.as_str().map(str::to_owned))
        .unwrap_or_default();
    let _ = writeln!(
        page,
        "<p>Risk <b>{}</b>, decision <b>{}</b>, {} approval{} required{}.</p>",
        v.risk.as_str(),
        esc(&decision),
        v.approvals_required,
        if v.approvals_required == 1 { "" } else { "s" },
        if v.held_for_review {
            "; held for people to review"
        } else {
            ""
        }
    );
    if let Some(a) = &item.approval {
        let _ = writeln!(
            page,
            "<p>{} by {}{}</p>",
            if a.approved { "Approved" } else { "Rejected" },
            esc(&a.approvers.join(", ")),
            a.comment
                .as_deref()
                .map_or(String::new(), |c| format!(": {}", esc(c)))
        );
    }
    if v.findings.is_empty() {
        page.push_str("<p class=\"muted\">No findings.</p>\n");
        return;
    }
    page.push_str("<table><tr><th>rule</th><th>risk</th><th>where</th><th>what</th></tr>\n");
    for f in &v.findings {
        let _ = writeln!(
            page,
            "<tr><td><code>{}</code></td><td>{}{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&f.rule),
            f.risk.as_str(),
            if f.blocking { " blocking" } else { "" },
            esc(f.location.as_deref().unwrap_or("-")),
            esc(&f.message)
        );
    }
    page.push_str("</table>\n");
}

fn timeline(page: &mut String, events: &[AuditEvent], id: &selfbuild_core::ids::ImprovementId) {
    page.push_str(
        "<h2>Audit timeline</h2>\n<table><tr><th>at</th><th>actor</th><th>action</th>\
         <th>detail</th></tr>\n",
    );
    for e in events
        .iter()
        .filter(|e| e.improvement_id.as_ref() == Some(id))
    {
        let _ = writeln!(
            page,
            "<tr><td class=\"t\">{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            utc(e.at),
            esc(&e.actor),
            e.action.as_str(),
            esc(&e.detail)
        );
    }
    page.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use selfbuild_core::audit::{AuditAction, AuditEvent};
    use selfbuild_core::improvement::ImprovementItem;
    use selfbuild_core::records::ImprovementStatus;
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    /// The monitor payload's item: a configuration change deployed at 09:08:20.
    fn deployed_item() -> ImprovementItem {
        let payload: Value =
            serde_json::from_str(include_str!("../../../events/steps/monitor.json")).unwrap();
        serde_json::from_value(payload["item"].clone()).unwrap()
    }

    /// A look `minutes` after the deploy; the canary's error rate `canary`, stable's 1 %.
    fn look(minutes: i64, canary: f64, verdict: &str) -> MonitorReport {
        let metric = |name: &str, stable: f64, canary: f64| {
            json!({
                "metric": name, "baseline": stable, "canary": canary, "delta": null,
                "p_value": 0.2, "p_better": 0.7, "degraded": verdict == "degraded" && name == "error_rate",
                "baseline_events": stable * 9000.0, "baseline_total": 9000.0,
                "canary_events": canary * 1000.0, "canary_total": 1000.0,
                "baseline_interval": [stable * 0.8, stable * 1.2],
                "canary_interval": [canary * 0.7, canary * 1.3],
                "alpha": 0.001, "rule": format!("{name}: the <b>rule</b>")
            })
        };
        serde_json::from_value(json!({
            "verdict": verdict,
            "window_over": verdict != "healthy",
            "checked_at": utc(datetime!(2026-11-22 09:08:20 UTC) + time::Duration::minutes(minutes)),
            "metrics": [metric("error_rate", 0.01, canary), metric("throttle_rate", 0.0, 0.0)],
            "reason": format!("look at {minutes} min"),
            "canary_requests": 1000.0, "stable_requests": 9000.0,
            "alpha_spent": 0.002 * minutes as f64,
            "latency": {
                "stable": {"p50": 100.0, "p90": 200.0, "p99": 400.0},
                "canary": {"p50": 90.0, "p90": 180.0, "p99": 380.0},
                "threshold_ms": 400.0, "median_threshold_ms": 100.0
            }
        }))
        .unwrap()
    }

    fn event(
        item: &ImprovementItem,
        action: AuditAction,
        after: Option<&MonitorReport>,
        before: Option<&MonitorReport>,
    ) -> AuditEvent {
        let at = after.map_or(datetime!(2026-11-22 10:00 UTC), |r| r.checked_at);
        AuditEvent {
            at,
            tenant_id: item.tenant_id.clone(),
            cycle_id: item.cycle_id.clone(),
            improvement_id: Some(item.improvement_id()),
            actor: "selfbuild:monitor".into(),
            action,
            before: before.map(|b| json!({"checked_at": b.checked_at.format(&time::format_description::well_known::Rfc3339).unwrap()})),
            after: after.map(|r| serde_json::to_value(r).unwrap()),
            detail: format!("{action} <img src=x>"),
        }
    }

    /// Three looks, the second retried (two events after the first look), the last degraded.
    fn rolled_back() -> (ImprovementRecord, Vec<AuditEvent>) {
        let mut item = deployed_item();
        let looks = [
            look(5, 0.01, "healthy"),
            look(9, 0.012, "healthy"),
            look(10, 0.013, "healthy"),
            look(15, 0.05, "degraded"),
        ];
        item.monitor = Some(looks[3].clone());
        let events = vec![
            AuditEvent {
                at: datetime!(2026-11-22 09:08 UTC),
                ..event(&item, AuditAction::Validated, None, None)
            },
            event(&item, AuditAction::CanaryChecked, Some(&looks[0]), None),
            event(
                &item,
                AuditAction::CanaryChecked,
                Some(&looks[1]),
                Some(&looks[0]),
            ),
            event(
                &item,
                AuditAction::CanaryChecked,
                Some(&looks[2]),
                Some(&looks[0]),
            ),
            event(
                &item,
                AuditAction::CanaryChecked,
                Some(&looks[3]),
                Some(&looks[2]),
            ),
            event(&item, AuditAction::RolledBack, None, None),
        ];
        let record = ImprovementRecord::of_item(
            &item,
            ImprovementStatus::RolledBack,
            datetime!(2026-11-22 10:00 UTC),
        );
        (record, events)
    }

    fn page(record: &ImprovementRecord, events: &[AuditEvent]) -> String {
        render(&ReportInput {
            record,
            events,
            degradation_threshold: 0.1,
        })
    }

    #[test]
    fn a_negative_zero_prints_as_zero() {
        assert_eq!(percent(-0.0), "0.00 %");
        assert_eq!(format!("{}", -0.0_f64 + 0.0), "0");
    }

    #[test]
    fn a_retried_look_is_dropped_and_the_looks_are_in_time_order() {
        let (record, events) = rolled_back();
        let at: Vec<OffsetDateTime> = looks(&record, &events)
            .iter()
            .map(|l| l.checked_at)
            .collect();
        let deployed = datetime!(2026-11-22 09:08:20 UTC);
        assert_eq!(
            at,
            [5, 10, 15].map(|m| deployed + time::Duration::minutes(m))
        );
        // Without events (an improvement recorded before looks were audited) the latest is kept.
        assert_eq!(looks(&record, &[]).len(), 1);
    }

    #[test]
    fn every_look_is_a_point_of_each_version_with_the_threshold_and_its_verdict() {
        let (record, events) = rolled_back();
        let html = page(&record, &events);
        // Three looks × (error_rate, throttle_rate, p99, p50) for each version.
        for colour in [hex(STABLE_RGB), hex(CANARY_RGB)] {
            let points = html.matches(&format!("r=\"5\" fill=\"{colour}\"")).count();
            assert_eq!(points, 3 * 4, "{colour}");
        }
        assert!(
            html.contains("threshold (1 + 10 %) × stable"),
            "threshold legend"
        );
        assert_eq!(
            html.matches("stroke-dasharray=\"6 4\"/>").count(),
            2 * 4,
            "dashed lines and legends"
        );
        assert!(html.contains("<title>look 3: degraded</title>"));
        assert!(html.contains("<title>look 1: healthy</title>"));
        // The degraded metric's last canary point is ringed.
        assert_eq!(
            html.matches("stroke=\"#c62828\" stroke-width=\"2\"/>")
                .count(),
            1
        );
        // The rule that fired, and what followed.
        assert!(html.contains("<b style=\"color:#c62828\">degraded</b>: look at 15 min"));
        assert!(html.contains("Then <b>rolled_back</b>"));
        assert!(html.contains("error_rate: the &lt;b&gt;rule&lt;/b&gt;"));
        // The change's settings before and after, the findings, the timeline.
        assert!(html.contains(
            "<tr class=\"changed\"><td><code>memory_mb</code></td><td>128</td><td>512</td></tr>"
        ));
        assert!(html.contains("<code>memory_increase</code>"));
        assert!(html.contains("change.config.memory_mb"));
        assert_eq!(html.matches("<code>canary_checked</code>").count(), 4);
        assert!(html.contains("canary_checked &lt;img src=x&gt;"));
        // Deterministic.
        assert_eq!(html, page(&record, &events));
    }

    #[test]
    fn a_page_loads_nothing_and_a_script_in_a_diff_is_text() {
        let mut item = deployed_item();
        let mut generated = item.generated.clone().unwrap();
        generated.proposal.rationale = "fix </p><script>alert('r')</script>".into();
        generated.proposal.change = serde_json::from_value(json!({
            "type": "code_patch", "component": "orders-api",
            "files": [{"path": "app<script>.py", "diff":
                "--- a/app.py\n+++ b/app.py\n@@ -1,2 +1,2 @@\n def handler(e, c):\n-    return 1\n+    return \"<script>alert(1)</script>\" & 'x'\n"}]
        }))
        .unwrap();
        item.generated = Some(generated);
        item.validation.as_mut().unwrap().findings[0].message = "<script>bad()</script>".into();
        let record = ImprovementRecord::of_item(
            &item,
            ImprovementStatus::Deployed,
            datetime!(2026-11-22 10:00 UTC),
        );
        let html = page(&record, &[]);
        let lower = html.to_lowercase();
        for forbidden in [
            "<script", "<link", "<img", "<iframe", "src=", "href=", "url(", "@import", "https:",
        ] {
            assert!(!lower.contains(forbidden), "{forbidden} in the page");
        }
        assert!(html.contains(
            "<span class=\"add\">+    return &quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot; &amp; &#39;x&#39;</span>"
        ));
        assert!(html.contains("<span class=\"del\">-    return 1</span>"));
        assert!(html.contains("<span class=\"hunk\">@@ -1,2 +1,2 @@</span>"));
        assert!(html.contains("fix &lt;/p&gt;&lt;script&gt;"));
        assert!(html.contains("&lt;script&gt;bad()&lt;/script&gt;"));
        assert!(html.contains("app&lt;script&gt;.py"));
    }

    #[test]
    fn an_improvement_whose_canary_never_ran_says_so_without_charts() {
        let mut item = deployed_item();
        item.deploy = None;
        item.validation.as_mut().unwrap().decision =
            selfbuild_core::improvement::ValidationDecision::Rejected;
        let record = ImprovementRecord::of_item(
            &item,
            ImprovementStatus::Rejected,
            datetime!(2026-11-22 10:00 UTC),
        );
        let events = [AuditEvent {
            detail: "blocked: a secret in the diff".into(),
            ..event(&item, AuditAction::Validated, None, None)
        }];
        let html = page(&record, &events);
        assert!(html.contains(
            "The canary never ran: validation rejected the change (status <b>rejected</b>), so \
             there is no look to chart. blocked: a secret in the diff"
        ));
        assert!(!html.contains("<svg"));
        for colour in [hex(STABLE_RGB), hex(CANARY_RGB)] {
            assert!(!html.contains(&colour), "{colour}");
        }
        // What exists still shows: the change and its findings.
        assert!(html.contains("<code>timeout_increase</code>"));
    }

    #[test]
    fn the_series_colours_appear_only_in_the_charts() {
        let (record, events) = rolled_back();
        let html = page(&record, &events);
        let style = &html[..html.find("</style>").unwrap()];
        for colour in [hex(STABLE_RGB), hex(CANARY_RGB)] {
            assert!(!style.contains(&colour), "{colour}");
        }
        assert!(STYLE.find("#005ac8").is_none() && STYLE.find("#e65a00").is_none());
    }

    #[test]
    fn escaping_covers_markup_quotes_and_control_characters() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>\u{1b}[31m\n"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;\u{fffd}[31m\n"
        );
    }

    #[tokio::test]
    async fn the_cli_writes_the_page_beside_the_store_and_names_unknown_ids() {
        use selfbuild_core::ports::{AuditLog, ImprovementStore};
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let (record, events) = rolled_back();
        store.put_improvement(&record).await.unwrap();
        for event in &events {
            store.append(event).await.unwrap();
        }
        let id = record.improvement_id.as_str();
        let out = crate::inspect::report(&store, dir.path(), id, None, 0.1)
            .await
            .unwrap();
        let path = dir.path().join("reports").join(format!("{id}.html"));
        assert_eq!(out["report"], path.display().to_string());
        assert_eq!(out["looks"], 3);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            page(&record, &events)
        );

        let unknown = format!("{}-7", record.cycle_id);
        let e = crate::inspect::report(&store, dir.path(), &unknown, None, 0.1)
            .await
            .unwrap_err();
        assert_eq!((e.error_type, e.code), ("NotFound", 1));
        assert!(e.hint.unwrap().contains("selfbuild list improvements"));
        let e = crate::inspect::report(&store, dir.path(), "not an id", None, 0.1)
            .await
            .unwrap_err();
        assert_eq!((e.error_type, e.code), ("InvalidInput", 2));
    }

    #[test]
    fn a_line_with_a_secret_finding_is_withheld_from_the_diff() {
        let mut item = deployed_item();
        let mut generated = item.generated.clone().unwrap();
        generated.proposal.change = serde_json::from_value(json!({
            "type": "code_patch", "component": "orders-api",
            "files": [{"path": "app.py", "diff":
                "--- a/app.py\n+++ b/app.py\n@@ -3,2 +3,3 @@\n import os\n+KEY = \"AKIAEXAMPLEEXAMPLE12\"\n+OTHER = 1\n x = 2\n"}]
        }))
        .unwrap();
        item.generated = Some(generated);
        let validation = item.validation.as_mut().unwrap();
        validation.findings[0].rule = "secret".into();
        validation.findings[0].location = Some("app.py:4:7".into());
        let record = ImprovementRecord::of_item(
            &item,
            ImprovementStatus::Rejected,
            datetime!(2026-11-22 10:00 UTC),
        );
        let html = page(&record, &[]);
        assert!(!html.contains("AKIAEXAMPLE"), "the secret is on the page");
        assert!(html.contains(
            "<span class=\"add\">+[line 4 withheld: validation found a secret in it]</span>"
        ));
        assert!(html.contains("<span class=\"add\">+OTHER = 1</span>"));
        assert_eq!(hunk_start("@@ -1 +12,3 @@ def f():"), Some(12));
        assert_eq!(hunk_start("@@ garbage"), None);
    }

    #[test]
    fn axis_steps_are_round() {
        assert_eq!(nice_step(0.04), 0.01);
        assert_eq!(nice_step(0.09), 0.025);
        assert_eq!(nice_step(700.0), 200.0);
    }
}
