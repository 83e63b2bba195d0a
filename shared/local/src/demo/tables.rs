//! The demo's tables: one row per run, and the pass rate per safety group.

use std::collections::{BTreeMap, BTreeSet};

use super::{SafetyGroup, ScenarioResult};

/// Renders the pass rate per safety group: scenarios, runs, runs as expected.
pub fn safety_table(rows: &[ScenarioResult]) -> String {
    /// Scenarios, runs and runs as expected of one group.
    #[derive(Default)]
    struct Tally<'r> {
        scenarios: BTreeSet<&'r str>,
        runs: usize,
        passed: usize,
    }
    let mut groups: BTreeMap<Option<SafetyGroup>, Tally<'_>> = BTreeMap::new();
    for row in rows {
        let tally = groups.entry(row.group).or_default();
        tally.scenarios.insert(&row.scenario);
        tally.runs += 1;
        tally.passed += usize::from(row.passed);
    }
    let mut out = String::from(
        "| group | scenarios | runs | as expected | rate |\n|---|---:|---:|---:|---:|",
    );
    for (group, tally) in &groups {
        out.push_str(&format!(
            "\n| {} | {} | {} | {} | {:.0} % |",
            group.map_or("(none)", SafetyGroup::as_str),
            tally.scenarios.len(),
            tally.runs,
            tally.passed,
            tally.passed as f64 * 100.0 / tally.runs.max(1) as f64
        ));
    }
    out
}

/// Renders the summary table.
pub fn summary_table(rows: &[ScenarioResult]) -> String {
    let header = [
        "scenario",
        "opportunity",
        "change",
        "files",
        "risk",
        "decision",
        "outcome",
        "virtual time",
        "expected",
        "findings",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.scenario.clone(),
                r.opportunity.clone(),
                r.change.clone(),
                r.files.clone(),
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
                match r.findings.as_slice() {
                    [] => "-".to_owned(),
                    findings => findings.join(", "),
                },
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
