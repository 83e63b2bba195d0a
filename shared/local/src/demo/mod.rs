//! `selfbuild demo`: every scenario in `events/scenarios/` as a full cycle on the embedded
//! adapters, with progress per state and a summary table; passes only if each scenario ends
//! as its file expects. Cycles run on event-driven virtual time (`crate::cycle`), so a
//! scenario prints the same progress and ends the same way on every run.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use selfbuild_core::Config;
use selfbuild_core::change::Change;
use selfbuild_core::change::RiskLevel;
use selfbuild_core::change::code_patch::diff_size;
use selfbuild_core::cycle::{CycleMode, CycleRequest, TimeWindow, Trigger};
use selfbuild_core::ids::{CycleId, DedupKey};
use selfbuild_core::idsource::SeededIds;
use selfbuild_core::improvement::Finding;
use selfbuild_core::ports::{IdSource, ImprovementStore};
use selfbuild_core::records::ImprovementRecord;
use selfbuild_core::steps::ItemOutcome;
use selfbuild_core::text::Excerpt;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cycle::{Approvers, FleetRun, run_cycle_on_fleet};
use crate::fleet::{FunctionOutcome, Scenario};
use crate::store::SqliteStore;

mod tables;

pub use tables::{safety_table, summary_table};

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
    /// A code patch's files with the lines each adds and removes (`orders.py +4/-1`); `-`
    /// for a configuration change.
    pub files: String,
    /// What validation found (SAFE notes left out), e.g. `2× secret CRITICAL blocking`.
    pub findings: Vec<String>,
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
    /// Whether every expectation held.
    pub passed: bool,
    /// The seed the fleet ran with.
    pub seed: u64,
    /// The scenario's safety group (`must_roll_back`, …), if it names one.
    pub group: Option<SafetyGroup>,
    /// The expectations that did not hold, in words.
    pub failures: Vec<String>,
    /// The HTML report of each of the run's improvements (`selfbuild report`), relative to
    /// [`DemoOptions::data_dir`], so a row reads the same wherever the demo runs.
    pub reports: Vec<PathBuf>,
}

/// What a scenario asserts about safety, for the sweep's table.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum SafetyGroup {
    /// A degrading canary: stable must be restored, within the exposure bound.
    MustRollBack,
    /// An unsafe, protected or refused change: nothing may be deployed.
    MustNotDeploy,
    /// A clear improvement: it must be promoted.
    MustPromote,
    /// A healthy fleet or a no-op change: nothing may be rolled back.
    NoChange,
}

impl SafetyGroup {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MustRollBack => "must_roll_back",
            Self::MustNotDeploy => "must_not_deploy",
            Self::MustPromote => "must_promote",
            Self::NoChange => "no_change",
        }
    }
}

/// A scenario's `expect` section.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// The acceptable outcomes of the first improvement: one or a list. `not_deployed`
    /// stands for any outcome that never routed traffic to a new version.
    #[serde(deserialize_with = "one_or_many")]
    pub outcome: Vec<String>,
    /// `required` (the change waited for an approval) or `none` (it deployed on its own).
    #[serde(default)]
    pub approval: Option<String>,
    /// The safety group, for the sweep's table.
    #[serde(default)]
    pub group: Option<SafetyGroup>,
    /// Exposure bound: a canary serves at most this many minutes.
    #[serde(default)]
    pub canary_minutes_at_most: Option<i64>,
    /// Exposure bound: a canary fails at most this many requests.
    #[serde(default)]
    pub failed_canary_requests_at_most: Option<f64>,
    /// Functions other than the improvement's keep their settings and routing (default).
    #[serde(default = "yes")]
    pub others_untouched: bool,
}

fn yes() -> bool {
    true
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match serde::Deserialize::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

impl Expectation {
    /// The `expect` section of `scenario`; an error names the field.
    pub fn of(scenario: &Scenario) -> Result<Self, String> {
        let expectation: Self = serde_path_to_error::deserialize(&scenario.expect)
            .map_err(|e| format!("{}: expect.{}: {}", scenario.name, e.path(), e.inner()))?;
        if expectation.outcome.is_empty() {
            return Err(format!(
                "{}: expect.outcome: must not be empty",
                scenario.name
            ));
        }
        if let Some(unknown) = expectation
            .outcome
            .iter()
            .find(|o| *o != "not_deployed" && ItemOutcome::parse(o).is_none())
        {
            return Err(format!(
                "{}: expect.outcome: {} is no outcome (not_deployed, {})",
                scenario.name,
                Excerpt(unknown),
                ItemOutcome::KNOWN.map(ItemOutcome::as_str).join(", ")
            ));
        }
        Ok(expectation)
    }
}

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where each scenario's store goes (`<dir>/<scenario>/`, `<dir>/<scenario>-s<seed>/`
    /// with a seed offset).
    pub data_dir: PathBuf,
    /// Added to each scenario's seed: the sweep runs offsets 0, 1, 2, …
    pub seed_offset: u64,
}

/// The scenario files in `dir`, sorted: on disk, or the bundled ones of that folder when it
/// is not on disk (`events/scenarios` from another directory).
pub fn scenario_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    if !dir.exists()
        && let Some(files) = crate::bundled::dir(dir)
    {
        return Ok(files);
    }
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
    let mut scenario = Scenario::load(path).map_err(|e| e.to_string())?;
    let expectation = Expectation::of(&scenario)?;
    let dir = match options.seed_offset {
        0 => options.data_dir.join(&scenario.name),
        _ => {
            scenario.seed = scenario.seed.wrapping_add(options.seed_offset);
            options
                .data_dir
                .join(format!("{}-s{}", scenario.name, scenario.seed))
        }
    };
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let approvers = Approvers::for_scenario(&scenario)?;
    let store = SqliteStore::open(&dir).map_err(|e| e.to_string())?;
    let config = scenario_config(&scenario)?;
    let request = scenario_request(&scenario, &config);
    let run = run_cycle_on_fleet(&scenario, &request, &store, &config, progress, approvers).await?;
    let mut row = result_row(&scenario, &expectation, &run, request.requested_at);
    row.reports = write_reports(&run, &store, &dir, config.degradation_threshold)
        .await?
        .into_iter()
        .map(|p| {
            p.strip_prefix(&options.data_dir)
                .map_or(p.clone(), Path::to_path_buf)
        })
        .collect();
    if let Some(record) = first_record(&run, &store).await? {
        row.files = patch_files(&record);
        row.findings = finding_summary(
            record
                .item
                .validation
                .as_ref()
                .map_or(&[][..], |v| &v.findings),
        );
    }
    Ok(row)
}

/// Writes the report of each of the run's stored improvements to
/// `<dir>/reports/<improvement-id>.html`, where `selfbuild report` puts it by default.
async fn write_reports(
    run: &FleetRun,
    store: &SqliteStore,
    dir: &Path,
    degradation_threshold: f64,
) -> Result<Vec<PathBuf>, String> {
    let ids = run
        .output
        .pointer("/summary/improvements")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|i| i.get("improvement_id").and_then(Value::as_str))
        .filter_map(|id| id.parse::<selfbuild_core::ids::ImprovementId>().ok());
    let mut written = Vec::new();
    for id in ids {
        let out = dir.join("reports").join(format!("{id}.html"));
        let looks = crate::report::write_report(store, &id, &out, degradation_threshold)
            .await
            .map_err(|e| format!("report of {id}: {e}"))?;
        if looks.is_some() {
            written.push(out);
        }
    }
    Ok(written)
}

/// The stored record of the run's first improvement, if it has one.
async fn first_record(
    run: &FleetRun,
    store: &SqliteStore,
) -> Result<Option<ImprovementRecord>, String> {
    let Some(id) = run
        .output
        .pointer("/summary/improvements/0/improvement_id")
        .and_then(Value::as_str)
        .and_then(|id| id.parse().ok())
    else {
        return Ok(None);
    };
    store.get_improvement(&id).await.map_err(|e| e.to_string())
}

/// A code patch's files, each with the lines it adds and removes; `-` for other changes.
fn patch_files(record: &ImprovementRecord) -> String {
    let change = record.item.generated.as_ref().map(|g| &g.proposal.change);
    let Some(Change::CodePatch { files, .. }) = change else {
        return "-".to_owned();
    };
    files
        .iter()
        .map(|f| {
            let (added, removed) = diff_size(&f.diff);
            format!("{} +{added}/-{removed}", f.path)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The findings by rule, risk and whether they block, most severe first, with a count
/// when a rule fired more than once; SAFE notes (an honest claimed risk) left out.
fn finding_summary(findings: &[Finding]) -> Vec<String> {
    let mut counted: Vec<((RiskLevel, bool, &str), usize)> = Vec::new();
    for f in findings.iter().filter(|f| f.risk > RiskLevel::Safe) {
        let key = (f.risk, f.blocking, f.rule.as_str());
        match counted.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => counted.push((key, 1)),
        }
    }
    counted.sort_by(|((ra, ba, _), _), ((rb, bb, _), _)| rb.cmp(ra).then(bb.cmp(ba)));
    counted
        .into_iter()
        .map(|((risk, blocking, rule), n)| {
            let count = if n > 1 {
                format!("{n}× ")
            } else {
                String::new()
            };
            let blocks = if blocking { " blocking" } else { "" };
            format!("{count}{rule} {}{blocks}", risk.as_str())
        })
        .collect()
}

/// The configuration cycles run with offline: the environment's, with autonomy on.
pub fn demo_config() -> Result<Config, String> {
    config_over_env(&BTreeMap::new())
}

/// The configuration of one scenario's cycle: its `config` section over [`demo_config`].
pub fn scenario_config(scenario: &Scenario) -> Result<Config, String> {
    config_over_env(&scenario.config_values())
        .map_err(|e| format!("{}: config: {e}", scenario.name))
}

/// The code-validation settings of one scenario's cycle (`PROTECTED_PATHS`,
/// `EGRESS_ALLOWED_HOSTS`, `IMPORT_ALLOWED_*`, …): its `config` section over the environment.
pub fn scenario_code_settings(scenario: &Scenario) -> Result<selfbuild_validate::Settings, String> {
    let overrides = scenario.config_values();
    selfbuild_validate::Settings::from_lookup(|name| {
        overrides
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    })
    .map_err(|e| format!("{}: config: {e}", scenario.name))
}

fn config_over_env(overrides: &BTreeMap<String, String>) -> Result<Config, String> {
    let mut config = Config::from_lookup(|name| {
        overrides
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    })
    .map_err(|e| e.to_string())?;
    // The demo shows the autonomous loop (on AWS it is off until you turn it on), unless the
    // scenario itself says otherwise.
    if !overrides.contains_key("ENABLE_AUTONOMOUS_IMPROVEMENTS") {
        config.autonomous_improvements = true;
    }
    Ok(config)
}

/// The ids of a scenario's cycles: derived from its seed and name, so a replay writes the
/// same records (on AWS and in `serve` they are random).
pub fn scenario_ids(scenario: &Scenario) -> SeededIds {
    SeededIds::new(scenario.seed, &scenario.name)
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
        cycle_id: CycleId::for_claim(&key, scenario.now, scenario_ids(scenario).suffix()),
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

fn result_row(
    scenario: &Scenario,
    expectation: &Expectation,
    run: &FleetRun,
    started: OffsetDateTime,
) -> ScenarioResult {
    let output = &run.output;
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
    let target = first
        .get("opportunity")
        .and_then(Value::as_str)
        .and_then(|o| o.split(':').next())
        .map(str::to_owned);
    let failures = check(
        expectation,
        &outcome,
        &decision,
        target.as_deref(),
        &run.functions,
    );
    let outcomes = expectation.outcome.join("|");
    ScenarioResult {
        scenario: scenario.name.clone(),
        cycle_id: text(output.get("cycle_id")),
        opportunity: text(first.get("opportunity")),
        change: text(first.get("change")),
        files: "-".to_owned(),
        findings: Vec::new(),
        risk: text(first.get("risk")),
        decision,
        passed: failures.is_empty(),
        expected: match expectation.approval.as_deref() {
            Some(a) => format!("{outcomes} (approval {a})"),
            None => outcomes,
        },
        outcome,
        virtual_seconds: (finished - started).whole_seconds(),
        seed: scenario.seed,
        group: expectation.group,
        failures,
        reports: Vec::new(),
    }
}

/// The expectations that did not hold for a run whose first improvement ended in `outcome`
/// on function `target`.
fn check(
    expectation: &Expectation,
    outcome: &str,
    decision: &str,
    target: Option<&str>,
    functions: &[FunctionOutcome],
) -> Vec<String> {
    let mut failures = Vec::new();
    let deployed = functions.iter().any(|f| !f.canaries.is_empty());
    let outcome_ok = expectation
        .outcome
        .iter()
        .any(|o| o == outcome || (o == "not_deployed" && !deployed));
    if !outcome_ok {
        failures.push(format!(
            "outcome {outcome}, expected {}",
            expectation.outcome.join(" or ")
        ));
    }
    match expectation.approval.as_deref() {
        Some("required") if decision != "needs_approval" => {
            failures.push(format!("decision {decision}, expected needs_approval"));
        }
        Some("none") if decision != "auto_deploy" => {
            failures.push(format!("decision {decision}, expected auto_deploy"));
        }
        _ => {}
    }
    for f in functions {
        let is_target = target == Some(f.function.as_str());
        let untouched = f.routing_changes == 0;
        if !is_target && expectation.others_untouched && !untouched {
            failures.push(format!(
                "{}: changed, though the change was not for it",
                f.function
            ));
        }
        let promoted = f.canaries.iter().any(|c| c.promoted);
        let restored = f.end_state.settings == f.initial_settings
            && f.end_state.canary.is_none()
            && f.end_state.stable_version == "1";
        // Anything that was not promoted must be back exactly where it started.
        if !promoted && !restored {
            failures.push(format!(
                "{}: not restored exactly (stable {}, canary {:?})",
                f.function, f.end_state.stable_version, f.end_state.canary
            ));
        }
        for c in &f.canaries {
            let minutes = (c.ended_at - c.deployed_at).whole_minutes();
            if let Some(most) = expectation.canary_minutes_at_most
                && !c.promoted
                && minutes > most
            {
                failures.push(format!(
                    "{} version {}: served {minutes} min as a canary, at most {most} expected",
                    f.function, c.version
                ));
            }
            if let Some(most) = expectation.failed_canary_requests_at_most
                && c.errors > most
            {
                failures.push(format!(
                    "{} version {}: {:.0} failed canary requests, at most {most} expected",
                    f.function, c.version, c.errors
                ));
            }
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use selfbuild_core::change::LambdaSettings;
    use selfbuild_core::deployment::FunctionState;
    use selfbuild_core::ids::ComponentId;
    use time::macros::datetime;

    use super::*;
    use crate::fleet::CanaryExposure;

    fn settings(memory_mb: u32) -> LambdaSettings {
        LambdaSettings {
            memory_mb,
            timeout_seconds: 8,
            reserved_concurrency: None,
            environment: Default::default(),
        }
    }

    fn function(
        name: &str,
        stable: &str,
        memory_mb: u32,
        canaries: &[(i64, bool, f64)],
    ) -> FunctionOutcome {
        let deployed = datetime!(2026-11-22 05:00 UTC);
        FunctionOutcome {
            function: ComponentId::parse(name).unwrap(),
            initial_settings: settings(1024),
            end_state: FunctionState {
                code_sha256: None,
                function: ComponentId::parse(name).unwrap(),
                settings: settings(memory_mb),
                alias: "live".into(),
                stable_version: stable.into(),
                canary: None,
            },
            routing_changes: canaries.len() * 2,
            canaries: canaries
                .iter()
                .map(|&(minutes, promoted, errors)| CanaryExposure {
                    version: "2".into(),
                    deployed_at: deployed,
                    ended_at: deployed + time::Duration::minutes(minutes),
                    promoted,
                    invocations: 100.0,
                    errors,
                })
                .collect(),
        }
    }

    fn expectation(json: serde_json::Value) -> Expectation {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_rollback_within_its_bounds_passes_and_each_broken_bound_is_named() {
        let e = expectation(serde_json::json!({
            "outcome": ["rolled_back", "inconclusive"],
            "canary_minutes_at_most": 10,
            "failed_canary_requests_at_most": 30,
        }));
        let fine = [function("r", "1", 1024, &[(5, false, 12.0)])];
        assert!(check(&e, "rolled_back", "auto_deploy", Some("r"), &fine).is_empty());
        assert!(check(&e, "inconclusive", "auto_deploy", Some("r"), &fine).is_empty());
        let slow = [function("r", "1", 1024, &[(25, false, 40.0)])];
        let failures = check(&e, "promoted", "auto_deploy", Some("r"), &slow);
        assert_eq!(failures.len(), 3, "{failures:?}");
        assert!(failures[0].contains("outcome promoted"));
        assert!(failures[1].contains("25 min"));
        assert!(failures[2].contains("40 failed"));
    }

    #[test]
    fn not_deployed_means_no_version_ever_took_traffic_and_nothing_changed() {
        let e = expectation(serde_json::json!({"outcome": "not_deployed"}));
        let untouched = [function("r", "1", 1024, &[]), function("o", "1", 1024, &[])];
        assert!(check(&e, "rejected", "rejected", Some("r"), &untouched).is_empty());
        let deployed = [function("r", "1", 1024, &[(60, false, 0.0)])];
        assert!(!check(&e, "inconclusive", "auto_deploy", Some("r"), &deployed).is_empty());
    }

    #[test]
    fn other_functions_must_stay_untouched_and_a_rollback_must_restore_exactly() {
        let e = expectation(serde_json::json!({"outcome": "rolled_back"}));
        // The target kept the canary's memory after its "rollback"; another function moved.
        let functions = [
            function("r", "1", 512, &[(5, false, 0.0)]),
            function("o", "2", 1024, &[(5, true, 0.0)]),
        ];
        let failures = check(&e, "rolled_back", "auto_deploy", Some("r"), &functions);
        assert!(
            failures
                .iter()
                .any(|f| f.starts_with("r: not restored exactly")),
            "{failures:?}"
        );
        assert!(
            failures.iter().any(|f| f.starts_with("o: changed")),
            "{failures:?}"
        );
    }

    /// The scenarios whose functions run real code, each as a whole cycle on the seeds the
    /// safety sweep uses: each ends as its file expects (the patched canary of the Python fix
    /// fails no request; the Node fix's canary is rolled back within its bounds; the leaking
    /// patch and the Rust patch never reach the fleet), and the row shows the patch's files
    /// and findings.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_scenarios_with_code_end_as_expected_on_five_seeds() {
        let dir = tempfile::tempdir().unwrap();
        let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/scenarios");
        let cases = [
            ("code-fix-python-promoted", "promoted", "orders.py +4/-1"),
            (
                "code-fix-node-rolled-back",
                "rolled_back",
                "src/cart.mjs +4/-2",
            ),
            ("code-fix-leaks-key-blocked", "rejected", "signer.py +18/-1"),
            (
                "code-fix-compiled-held-for-review",
                "held_for_review",
                "src/main.rs +6/-1",
            ),
        ];
        for (name, outcome, files) in cases {
            let mut seeds = BTreeMap::new();
            for seed_offset in 0..5 {
                let options = DemoOptions {
                    data_dir: dir.path().to_path_buf(),
                    seed_offset,
                };
                let file = scenarios.join(format!("{name}.json"));
                let row = run_scenario(&file, &options, Box::new(std::io::sink()))
                    .await
                    .unwrap();
                assert!(row.passed, "{name} seed {}: {:?}", row.seed, row.failures);
                assert_eq!((row.outcome.as_str(), row.files.as_str()), (outcome, files));
                seeds.insert(row.seed, row.findings);
            }
            assert_eq!(seeds.len(), 5, "{name}: five different seeds");
            let findings: Vec<String> = seeds.into_values().flatten().collect();
            if name == "code-fix-leaks-key-blocked" {
                for rule in ["secret CRITICAL blocking", "tls_verification HIGH"] {
                    assert!(findings.iter().any(|f| f.contains(rule)), "{findings:?}");
                }
            }
        }
    }

    #[test]
    fn findings_are_counted_by_rule_most_severe_first_without_safe_notes() {
        let finding = |rule: &str, risk: RiskLevel, blocking: bool| Finding {
            rule: rule.into(),
            risk,
            message: String::new(),
            location: None,
            blocking,
        };
        let findings = [
            finding("tls_verification", RiskLevel::High, false),
            finding("claimed_risk", RiskLevel::Safe, false),
            finding("secret", RiskLevel::Critical, true),
            finding("secret", RiskLevel::Critical, true),
            finding("import_allowlist", RiskLevel::Medium, false),
        ];
        assert_eq!(
            finding_summary(&findings),
            [
                "2× secret CRITICAL blocking",
                "tls_verification HIGH",
                "import_allowlist MEDIUM"
            ]
        );
        assert!(finding_summary(&findings[1..2]).is_empty());
    }

    #[test]
    fn an_expect_section_with_an_unknown_field_is_refused_naming_it() {
        let scenario = Scenario::parse(
            include_str!("../../../../events/scenarios/timeouts.json")
                .replace(
                    r#""expect": {"outcome": "promoted"}"#,
                    r#""expect": {"outcome": "promoted", "rolback_within": 5}"#,
                )
                .as_str(),
            "t.json",
        )
        .unwrap();
        let err = Expectation::of(&scenario).unwrap_err();
        assert!(
            err.contains("expect.") && err.contains("rolback_within"),
            "{err}"
        );
    }

    #[test]
    fn an_expected_outcome_that_does_not_exist_is_refused_naming_it() {
        let scenario = Scenario::parse(
            include_str!("../../../../events/scenarios/timeouts.json")
                .replace(
                    r#""expect": {"outcome": "promoted"}"#,
                    r#""expect": {"outcome": ["promoted", "rollbacked"]}"#,
                )
                .as_str(),
            "t.json",
        )
        .unwrap();
        let err = Expectation::of(&scenario).unwrap_err();
        assert!(err.contains("\"rollbacked\" is no outcome"), "{err}");
    }

    #[test]
    fn a_scenario_config_overrides_the_environment_and_can_turn_autonomy_off() {
        let mut scenario = Scenario::parse(
            include_str!("../../../../events/scenarios/timeouts.json"),
            "t.json",
        )
        .unwrap();
        assert!(scenario_config(&scenario).unwrap().autonomous_improvements);
        scenario
            .config
            .insert("CANARY_WEIGHT".into(), serde_json::json!(0.25));
        scenario.config.insert(
            "ENABLE_AUTONOMOUS_IMPROVEMENTS".into(),
            serde_json::json!(false),
        );
        let config = scenario_config(&scenario).unwrap();
        assert_eq!(config.canary_weight, 0.25);
        assert!(!config.autonomous_improvements);
        scenario
            .config
            .insert("CANARY_WEIGHT".into(), serde_json::json!(7));
        let err = scenario_config(&scenario).unwrap_err();
        assert!(err.contains("CANARY_WEIGHT"), "{err}");
    }
}
