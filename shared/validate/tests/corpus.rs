//! Runs every case under `tests/corpus/` (made by `tests/corpus/generate.py`: before, after, a
//! real `diff -u`, the expected decision in `manifest.json`) and fails listing each case
//! whose decision differs. Prints the block rate on unsafe cases and the false-block rate on
//! benign ones (a case is stopped when its decision is not `allow`).
//!
//! A case may carry `known_gap` (why the pipeline misses it): it counts in the rates as it
//! is decided, is listed apart, and fails the test once it is decided as expected, so the
//! mark goes when the gap closes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use selfbuild_validate::{
    CodeDecision, CodePolicy, FileInput, Language, PatchContext, Settings, validate_patch,
};
use serde_json::Value;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn decision(name: &str) -> CodeDecision {
    match name {
        "allow" => CodeDecision::Allow,
        "needs_approval" => CodeDecision::NeedsApproval,
        "block" => CodeDecision::Block,
        other => panic!("unknown decision {other:?} in the manifest"),
    }
}

#[test]
fn the_corpus_decides_as_expected() {
    let manifest: Vec<Value> =
        serde_json::from_str(&read(&corpus().join("manifest.json"))).expect("manifest is JSON");
    assert!(manifest.len() >= 100, "{} cases", manifest.len());
    let policy = CodePolicy {
        autonomous: true,
        medium_risk_approvals: 1,
    };
    let mut wrong = Vec::new();
    let mut gaps = Vec::new();
    // kind → (cases, stopped)
    let mut rates: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut per_language: BTreeMap<String, usize> = BTreeMap::new();
    for case in &manifest {
        let text = |k: &str| case[k].as_str().unwrap_or_default().to_owned();
        let id = text("id");
        let dir = corpus().join("cases").join(&id);
        let files = &case["files"];
        let base = files["before"].as_str().map(|f| read(&dir.join(f)));
        let diff = read(&dir.join(files["diff"].as_str().expect("diff file")));
        let env: BTreeMap<String, String> = case["env"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let settings =
            Settings::from_lookup(|name| env.get(name).cloned()).expect("case settings are valid");
        let path = text("path");
        let language = Language::parse(&text("language"));
        let input = FileInput {
            path: &path,
            language,
            base: base.as_deref(),
            diff: &diff,
        };
        let tenant = case["tenant"].as_str();
        let handler = case["handler"].as_str();
        let context = PatchContext { handler, tenant };
        let expected = decision(&text("expect"));
        *per_language.entry(text("language")).or_default() += 1;
        let report = match validate_patch(&[input], &context, &settings) {
            Ok(r) => r,
            Err(e) => {
                wrong.push(format!("{id}: error {e}"));
                continue;
            }
        };
        let verdict = report.verdict(&policy);
        let entry = rates.entry(text("kind")).or_default();
        entry.0 += 1;
        if verdict.decision != CodeDecision::Allow {
            entry.1 += 1;
        }
        let rule = case["rule"].as_str();
        let raised = rule.is_none_or(|r| {
            report
                .findings()
                .any(|f| f.rule.id() == r && !f.pre_existing)
        });
        let as_expected = verdict.decision == expected && raised;
        if let Some(gap) = case["known_gap"].as_str() {
            if as_expected {
                wrong.push(format!(
                    "{id}: marked known_gap but now decided as expected; remove the mark"
                ));
            } else {
                gaps.push(format!(
                    "{id}: expected {}, got {} — {gap}",
                    expected.as_str(),
                    verdict.decision.as_str()
                ));
            }
            continue;
        }
        if !as_expected {
            let findings: Vec<String> = report
                .findings()
                .map(|f| {
                    format!(
                        "{} {} {}:{} {}",
                        f.rule.id(),
                        f.risk.as_str(),
                        f.line,
                        f.col,
                        f.message
                    )
                })
                .collect();
            wrong.push(format!(
                "{id} ({}): expected {}{}, got {} ({}) — {}\n      {}",
                text("category"),
                expected.as_str(),
                rule.map(|r| format!(" by {r}")).unwrap_or_default(),
                verdict.decision.as_str(),
                verdict.risk.as_str(),
                text("note"),
                if findings.is_empty() {
                    "no findings".to_owned()
                } else {
                    findings.join("\n      ")
                }
            ));
        }
    }
    let (unsafe_n, unsafe_stopped) = rates.get("unsafe").copied().unwrap_or_default();
    let (benign_n, benign_stopped) = rates.get("benign").copied().unwrap_or_default();
    let pct = |a: usize, b: usize| {
        if b == 0 {
            0.0
        } else {
            100.0 * a as f64 / b as f64
        }
    };
    println!(
        "corpus: {} cases {per_language:?}; block rate on unsafe {unsafe_stopped}/{unsafe_n} = {:.1} %; false-block rate on benign {benign_stopped}/{benign_n} = {:.1} %",
        manifest.len(),
        pct(unsafe_stopped, unsafe_n),
        pct(benign_stopped, benign_n),
    );
    for gap in &gaps {
        println!("known gap: {gap}");
    }
    assert!(unsafe_n > 0 && benign_n > 0, "the corpus needs both kinds");
    assert!(
        wrong.is_empty(),
        "{} case(s) decided otherwise:\n  {}",
        wrong.len(),
        wrong.join("\n  ")
    );
}
