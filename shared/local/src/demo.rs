//! `selfbuild demo`: every scenario in `events/scenarios/` as a full cycle on the embedded
//! adapters, with progress per state and a summary table; passes only if each scenario ends
//! as its file expects. Cycles run on event-driven virtual time (`crate::cycle`), so a
//! scenario prints the same progress and ends the same way on every run.

use std::io::Write;
use std::path::{Path, PathBuf};

use selfbuild_core::Config;
use selfbuild_core::cycle::{CycleMode, CycleRequest, TimeWindow, Trigger};
use selfbuild_core::ids::{CycleId, DedupKey};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cycle::{Approvers, run_cycle};
use crate::fleet::Scenario;
use crate::store::SqliteStore;

/// One scenario's result, a row of the summary table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScenarioResult {
    /// The scenario's name.
    pub scenario: String,
    /// The cycle that ran.
    pub cycle_id: String,
    /// The top opportunity, `<component>:<kind>`.
    pub opportunity: String,
    /// The change, in words.
    pub change: String,
    /// The risk validation found.
    pub risk: String,
    /// auto_deploy, needs_approval or rejected.
    pub decision: String,
    /// promoted, rolled_back, …
    pub outcome: String,
    /// Virtual seconds from the cycle's start to its summary.
    pub virtual_seconds: i64,
    /// What the scenario file expects, and whether it happened.
    pub expected: String,
    /// Whether the outcome matched.
    pub passed: bool,
}

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where each scenario's store goes (`<dir>/<scenario>/`).
    pub data_dir: PathBuf,
}

/// The scenario files in `dir`, sorted.
pub fn scenario_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{}: no scenario files (*.json)", dir.display()));
    }
    Ok(files)
}

/// Runs one scenario as a cycle and checks it against its expectation.
pub async fn run_scenario(
    path: &Path,
    options: &DemoOptions,
    progress: Box<dyn Write + Send>,
) -> Result<ScenarioResult, String> {
    let scenario = Scenario::load(path).map_err(|e| e.to_string())?;
    let dir = options.data_dir.join(&scenario.name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let approvers = Approvers::for_scenario(&scenario)?;
    let store = SqliteStore::open(&dir).map_err(|e| e.to_string())?;
    let config = demo_config()?;
    let request = scenario_request(&scenario, &config);
    let output = run_cycle(&scenario, &request, &store, &config, progress, approvers).await?;
    Ok(result_row(&scenario, &output, request.requested_at))
}

/// The configuration cycles run with offline: the environment's, with autonomy on.
pub fn demo_config() -> Result<Config, String> {
    let mut config = Config::from_env().map_err(|e| e.to_string())?;
    // The demo shows the autonomous loop; on AWS it is off until you turn it on.
    config.autonomous_improvements = true;
    Ok(config)
}

/// A routine cycle over every function of the scenario, as the daily schedule would start it.
pub fn scenario_request(scenario: &Scenario, config: &Config) -> CycleRequest {
    let tenants: Vec<_> = scenario
        .functions
        .iter()
        .map(|f| f.tenant.clone())
        .collect();
    let tenant = tenants
        .first()
        .cloned()
        .flatten()
        .filter(|t| tenants.iter().all(|x| x.as_ref() == Some(t)));
    let components: Vec<_> = scenario.functions.iter().map(|f| f.name.clone()).collect();
    let key = DedupKey::new(tenant.clone(), components.first().cloned());
    CycleRequest {
        cycle_id: CycleId::for_claim(&key, scenario.now),
        mode: CycleMode::Routine,
        tenant_id: tenant,
        components,
        analysis_window: TimeWindow {
            start: scenario.now - time::Duration::hours(i64::from(config.routine_window_hours)),
            end: scenario.now,
        },
        max_improvements: config.max_improvements,
        max_concurrency: config.max_concurrent_improvements,
        dry_run: false,
        trigger: Trigger::Schedule {
            rule: Some("selfbuild demo".into()),
        },
        dedup_key: key.as_str().to_owned(),
        requested_at: scenario.now,
    }
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_owned(),
        Some(other) => other.to_string(),
    }
}

fn result_row(scenario: &Scenario, output: &Value, started: OffsetDateTime) -> ScenarioResult {
    let finished = output
        .pointer("/summary/finished_at")
        .and_then(Value::as_str)
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .unwrap_or(started);
    let first = output
        .pointer("/summary/improvements/0")
        .cloned()
        .unwrap_or(Value::Null);
    let outcome = text(first.get("outcome"));
    let decision = text(first.get("decision"));
    let expected_outcome = text(scenario.expect.get("outcome"));
    let expected_approval = scenario.expect.get("approval").and_then(Value::as_str);
    let approval_ok = match expected_approval {
        Some("required") => decision == "needs_approval",
        Some("none") => decision == "auto_deploy",
        _ => true,
    };
    ScenarioResult {
        scenario: scenario.name.clone(),
        cycle_id: text(output.get("cycle_id")),
        opportunity: text(first.get("opportunity")),
        change: text(first.get("change")),
        risk: text(first.get("risk")),
        decision,
        passed: outcome == expected_outcome && approval_ok,
        expected: match expected_approval {
            Some(a) => format!("{expected_outcome} (approval {a})"),
            None => expected_outcome,
        },
        outcome,
        virtual_seconds: (finished - started).whole_seconds(),
    }
}

/// Renders the summary table.
pub fn summary_table(rows: &[ScenarioResult]) -> String {
    let header = [
        "scenario",
        "opportunity",
        "change",
        "risk",
        "decision",
        "outcome",
        "virtual time",
        "expected",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.scenario.clone(),
                r.opportunity.clone(),
                r.change.clone(),
                r.risk.clone(),
                r.decision.clone(),
                r.outcome.clone(),
                format!(
                    "{:02}:{:02}:{:02}",
                    r.virtual_seconds / 3600,
                    r.virtual_seconds / 60 % 60,
                    r.virtual_seconds % 60
                ),
                format!("{} {}", if r.passed { "✔" } else { "✘" }, r.expected),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<String>| {
        values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    out.push('\n');
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    for c in cells {
        out.push('\n');
        out.push_str(&line(c));
    }
    out
}
