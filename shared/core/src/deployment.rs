//! Deployment state: what a function runs now, and a canary in flight.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::change::LambdaSettings;
use crate::ids::{ComponentId, ImprovementId};

/// The alias traffic goes through.
pub const LIVE_ALIAS: &str = "live";

/// A function as deployed: its settings and where its alias points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionState {
    /// The function.
    pub function: ComponentId,
    /// The configuration of the stable version. Where reserved concurrency belongs to the
    /// function rather than to a version (Lambda), `reserved_concurrency` is the function's:
    /// during a canary that is the canary's; the embedded fleet keeps one per version and
    /// reports the stable version's.
    pub settings: LambdaSettings,
    /// The alias's name.
    pub alias: String,
    /// The version the alias points at.
    pub stable_version: String,
    /// An additional version and its traffic weight (0–1), if the alias splits traffic.
    pub canary: Option<(String, f64)>,
    /// The stable version's package hash (Lambda's `CodeSha256`), when the platform has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_sha256: Option<String>,
}

/// The code a canary version runs when it ships a patch: hashes before and after, and the
/// files changed, so the drift from the source repository can be found and merged back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeVersion {
    /// The package hash the patch was applied to.
    pub base_code_sha256: String,
    /// The new version's package hash.
    pub code_sha256: String,
    /// The package paths the patch changed, created or deleted.
    pub files: Vec<String>,
}

/// A canary in flight: enough to monitor, promote or restore exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryDeployment {
    /// The improvement being shipped; deploys are idempotent per improvement.
    pub improvement_id: ImprovementId,
    /// What the function was before (restored by rollback).
    pub baseline: FunctionState,
    /// The settings of the new version.
    pub settings: LambdaSettings,
    /// The code patch the new version carries; none for a configuration change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeVersion>,
    /// The new version.
    pub canary_version: String,
    /// Its share of traffic, 0–1.
    pub weight: f64,
    /// When the alias started routing to it.
    #[serde(with = "time::serde::rfc3339")]
    pub deployed_at: OffsetDateTime,
}
