//! `selfbuild validate <proposal.json>`: a whole proposal judged as the validate step judges
//! it, a code patch against the files of a checkout.

use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use selfbuild_core::Config;
use selfbuild_core::change::{LambdaSettings, Proposal};
use selfbuild_core::cycle::CycleMode;
use selfbuild_core::ids::{ComponentId, CycleId, TenantId};
use selfbuild_core::improvement::{
    Generated, ImprovementItem, LlmUsage, Validation, ValidationDecision,
};
use selfbuild_core::opportunity::{Opportunity, OpportunityKind, Priority};
use selfbuild_core::ports::{CodeSource, CodeSourceError, DeployedFiles};
use selfbuild_core::validate::{check_code_patch, validate};
use serde_json::{Value, json};

use crate::output::{CliError, cli_error};

/// The largest file read from a checkout (twice what the validation pipeline reads).
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// A repository checkout as the deployed code: files by repository path under `root`.
#[derive(Debug, Clone)]
pub struct CheckoutCode {
    root: PathBuf,
}

impl CheckoutCode {
    /// The checkout at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The file at repository path `path`, refusing paths that leave the checkout.
    fn file(&self, path: &str) -> Result<Option<String>, CodeSourceError> {
        let relative = Path::new(path.trim_start_matches("./"));
        let inside = relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside || path.is_empty() {
            return Err(CodeSourceError::Rejected(format!(
                "{path:?} is not a path inside the repository"
            )));
        }
        let full = self.root.join(relative);
        let bytes = match std::fs::metadata(&full) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(CodeSourceError::Rejected(format!(
                    "{}: {e}",
                    full.display()
                )));
            }
            Ok(meta) if !meta.is_file() => {
                return Err(CodeSourceError::Rejected(format!(
                    "{} is not a file",
                    full.display()
                )));
            }
            Ok(meta) if meta.len() > MAX_FILE_BYTES => {
                return Err(CodeSourceError::Rejected(format!(
                    "{} is {} bytes, more than the {MAX_FILE_BYTES} read",
                    full.display(),
                    meta.len()
                )));
            }
            Ok(_) => std::fs::read(&full)
                .map_err(|e| CodeSourceError::Rejected(format!("{}: {e}", full.display())))?,
        };
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| CodeSourceError::Rejected(format!("{} is not UTF-8 text", full.display())))
    }
}

#[async_trait]
impl CodeSource for CheckoutCode {
    async fn deployed_files(
        &self,
        _: &ComponentId,
        paths: &[&str],
    ) -> Result<DeployedFiles, CodeSourceError> {
        let files = paths
            .iter()
            .map(|&p| Ok((p.to_owned(), self.file(p)?)))
            .collect::<Result<_, CodeSourceError>>()?;
        Ok(DeployedFiles {
            base: Default::default(),
            handler: None,
            files,
        })
    }
}

/// `validate`'s arguments.
#[derive(Debug, Clone, Copy)]
pub struct ProposalArgs<'a> {
    /// The proposal file (the `propose_change` tool's input).
    pub proposal: &'a Path,
    /// The checkout code patches apply to.
    pub repo: &'a Path,
    /// The tenant the change is scoped to; none: system-wide.
    pub tenant: Option<&'a str>,
    /// The function's current settings (a `lambda_config` change is judged against them).
    pub current: Option<&'a Path>,
}

fn read_json(flag: &str, path: &Path) -> Result<Value, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| cli_error("InvalidInput", format!("{flag} {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| cli_error("InvalidInput", format!("{flag} {}: {e}", path.display())))
}

/// Judges a proposal as the validate step would for an item of `args.tenant`: the decision
/// (`allow`, `needs_approval`, `block`) and the JSON to print.
pub async fn validate_proposal(
    args: &ProposalArgs<'_>,
    config: &Config,
    settings: selfbuild_validate::Settings,
) -> Result<(ValidationDecision, Value), CliError> {
    let value = read_json("proposal", args.proposal)?;
    let proposal: Proposal = serde_path_to_error::deserialize(&value).map_err(|e| {
        cli_error(
            "InvalidInput",
            format!(
                "{}: at `{}`: {}",
                args.proposal.display(),
                e.path(),
                e.inner()
            ),
        )
    })?;
    let current: Option<LambdaSettings> = match args.current {
        Some(path) => Some(
            serde_json::from_value(read_json("--current", path)?).map_err(|e| {
                cli_error("InvalidInput", format!("--current {}: {e}", path.display()))
            })?,
        ),
        None => None,
    };
    let tenant = args
        .tenant
        .map(TenantId::parse)
        .transpose()
        .map_err(|e| cli_error("InvalidInput", format!("--tenant: {e}")))?;
    let item = item_for(proposal, tenant, current);
    let code = CheckoutCode::new(args.repo);
    let checker = selfbuild_validate::PipelineChecker::new(settings);
    let check = check_code_patch(&code, &checker, &item).await?;
    let validation = validate(&item, config, check.as_ref());
    Ok((validation.decision, report(&validation)))
}

/// The Map item the validate step would see for `proposal`.
fn item_for(
    proposal: Proposal,
    tenant: Option<TenantId>,
    current: Option<LambdaSettings>,
) -> ImprovementItem {
    let component = proposal.change.target().clone();
    let cycle_id = CycleId::parse("cli").unwrap_or_else(|_| unreachable!("a valid id"));
    let improvement_id = selfbuild_core::ids::ImprovementId::new(&cycle_id, 1);
    ImprovementItem {
        cycle_id,
        tenant_id: tenant.clone(),
        mode: CycleMode::Routine,
        dry_run: true,
        opportunity: Opportunity {
            id: format!("{component}:cli"),
            rank: 1,
            component,
            tenant_id: tenant,
            kind: OpportunityKind::ErrorBurst,
            evidence: vec![],
            expected_gain: proposal.expected_gain,
            affected_requests: 0.0,
            impact_score: 0.0,
            priority: Priority::Low,
            current,
            top_errors: vec![],
            stack_traces: vec![],
            agents: vec![],
        },
        generated: Some(Generated {
            improvement_id,
            proposal,
            provider: "cli".into(),
            usage: LlmUsage::default(),
            repair_rounds: 0,
        }),
        validation: None,
        approval: None,
        deploy: None,
        monitor: None,
    }
}

/// `{"decision", "risk", "approvals_required", "findings": [{"rule", "risk", "location",
/// "message", "blocking"}]}`, with `path`/`line`/`col` for a finding located in a file.
fn report(validation: &Validation) -> Value {
    let decision = match validation.decision {
        ValidationDecision::AutoDeploy => "allow",
        ValidationDecision::NeedsApproval => "needs_approval",
        ValidationDecision::Rejected => "block",
    };
    let findings: Vec<Value> = validation
        .findings
        .iter()
        .map(|f| {
            let mut out = json!({
                "rule": f.rule,
                "risk": f.risk.as_str(),
                "location": f.location,
                "message": f.message,
                "blocking": f.blocking,
            });
            if let Some((path, line, col)) = f.location.as_deref().and_then(split_location) {
                out["path"] = json!(path);
                out["line"] = json!(line);
                out["col"] = json!(col);
            }
            out
        })
        .collect();
    json!({
        "decision": decision,
        "risk": validation.risk.as_str(),
        "approvals_required": validation.approvals_required,
        "findings": findings,
    })
}

/// `path:line:col` split; none for a location that is not one (`change.config.memory_mb`).
fn split_location(location: &str) -> Option<(&str, usize, usize)> {
    let (rest, col) = location.rsplit_once(':')?;
    let (path, line) = rest.rsplit_once(':')?;
    Some((path, line.parse().ok()?, col.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "def handler(event, context):\n    return 1\n";

    fn write_proposal(dir: &Path, added: &str) -> PathBuf {
        let diff = format!(
            "--- a/src/app.py\n+++ b/src/app.py\n@@ -1,2 +1,2 @@\n def handler(event, context):\n-    return 1\n+{added}\n"
        );
        let proposal = json!({
            "change": {"type": "code_patch", "component": "orders-api",
                "files": [{"path": "src/app.py", "diff": diff}]},
            "rationale": "r", "expected_gain": 0.3, "claimed_risk": "LOW"
        });
        let path = dir.join("proposal.json");
        std::fs::write(&path, proposal.to_string()).unwrap();
        path
    }

    fn checkout() -> tempfile::TempDir {
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(repo.path().join("src")).unwrap();
        std::fs::write(repo.path().join("src/app.py"), BASE).unwrap();
        repo
    }

    fn autonomous() -> Config {
        Config::from_lookup(|k| (k == "ENABLE_AUTONOMOUS_IMPROVEMENTS").then(|| "true".into()))
            .unwrap()
    }

    async fn run(
        proposal: &Path,
        repo: &Path,
        tenant: Option<&str>,
    ) -> (ValidationDecision, Value) {
        let args = ProposalArgs {
            proposal,
            repo,
            tenant,
            current: None,
        };
        validate_proposal(
            &args,
            &autonomous(),
            selfbuild_validate::Settings::defaults(),
        )
        .await
        .expect("validates")
    }

    #[tokio::test]
    async fn a_clean_patch_to_the_checkout_is_allowed_for_a_tenant() {
        let repo = checkout();
        let proposal = write_proposal(repo.path(), "    return 2");
        let (decision, out) = run(&proposal, repo.path(), Some("acme")).await;
        assert_eq!(decision, ValidationDecision::AutoDeploy, "{out}");
        assert_eq!(out["decision"], "allow");
        // System-wide, the same patch waits for a person, as in the validate step.
        let (decision, _) = run(&proposal, repo.path(), None).await;
        assert_eq!(decision, ValidationDecision::NeedsApproval);
    }

    #[tokio::test]
    async fn an_eval_blocks_with_its_location() {
        let repo = checkout();
        let proposal = write_proposal(repo.path(), "    return eval(event['q'])");
        let (decision, out) = run(&proposal, repo.path(), Some("acme")).await;
        assert_eq!(decision, ValidationDecision::Rejected);
        let f = &out["findings"][0];
        assert_eq!(
            (&f["rule"], &f["path"], &f["line"], &f["blocking"]),
            (
                &json!("code_execution"),
                &json!("src/app.py"),
                &json!(2),
                &json!(true)
            )
        );
    }

    #[tokio::test]
    async fn a_patch_against_another_version_or_outside_the_checkout_blocks() {
        let repo = checkout();
        std::fs::write(repo.path().join("src/app.py"), "x = 1\n").unwrap();
        let proposal = write_proposal(repo.path(), "    return 2");
        let (_, out) = run(&proposal, repo.path(), Some("acme")).await;
        assert_eq!(out["findings"][0]["rule"], "patch_applies");
        assert_eq!(out["decision"], "block");

        let code = CheckoutCode::new(repo.path());
        assert!(code.file("../etc/passwd").is_err());
        assert!(code.file("/etc/passwd").is_err());
        assert_eq!(code.file("src/missing.py").unwrap(), None);
    }

    #[tokio::test]
    async fn a_malformed_proposal_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(
            &path,
            r#"{"change": {"type": "code_patch", "component": "f", "files": [{"path": "a.py"}]},
                "rationale": "r", "expected_gain": 0.1, "claimed_risk": "LOW"}"#,
        )
        .unwrap();
        let args = ProposalArgs {
            proposal: &path,
            repo: dir.path(),
            tenant: None,
            current: None,
        };
        let e = validate_proposal(
            &args,
            &autonomous(),
            selfbuild_validate::Settings::defaults(),
        )
        .await
        .unwrap_err();
        assert!(e.message.contains("diff"), "{}", e.message);
    }

    #[test]
    fn locations_split_only_when_they_are_file_positions() {
        assert_eq!(split_location("src/a.py:3:7"), Some(("src/a.py", 3, 7)));
        assert_eq!(split_location("change.config.memory_mb"), None);
    }
}
