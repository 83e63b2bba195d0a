//! A target's code: the deployed files a patch is made against (Lambda's deployment package
//! on AWS, the scenario's files offline), and the checker that parses and judges a patch
//! (`selfbuild-validate`, linked only where patches are validated).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::change::{CodeBase, FilePatch};
use crate::code_policy::{FindingSummary, PatchScope};
use crate::ids::ComponentId;

/// Why the deployed code could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CodeSourceError {
    /// The platform was unavailable or throttled; trying again may work.
    #[error("code source unavailable: {0}")]
    Unavailable(String),
    /// The component has no code that can be read (not a function, an image package, a
    /// package too large to read, …).
    #[error("code source rejected the request: {0}")]
    Rejected(String),
}

impl crate::error::StableError for CodeSourceError {
    fn error_type(&self) -> crate::error::ErrorType {
        match self {
            Self::Unavailable(_) => crate::error::ErrorType::Retryable,
            Self::Rejected(_) => crate::error::ErrorType::DependencyFailed,
        }
    }
}

/// The files of a component's deployed code that a patch touches.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeployedFiles {
    /// The configured handler (`orders.handler`, `bootstrap`), when the platform has one.
    pub handler: Option<String>,
    /// Each requested path: its text, or none when the deployed code has no such file.
    pub files: BTreeMap<String, Option<String>>,
    /// The package's hash and runtime: what delivery ships onto.
    #[serde(default)]
    pub base: CodeBase,
}

/// Reads a component's deployed code.
#[async_trait]
pub trait CodeSource: Send + Sync {
    /// The files at `paths` in `component`'s deployed code, and its handler.
    async fn deployed_files(
        &self,
        component: &ComponentId,
        paths: &[&str],
    ) -> Result<DeployedFiles, CodeSourceError>;
}

/// A patch to check, with the deployed text of each file it touches.
#[derive(Debug, Clone, Copy)]
pub struct PatchUnderReview<'a> {
    /// The files and their diffs.
    pub files: &'a [FilePatch],
    /// Each file's deployed text; none (or absent) for a file the patch creates.
    pub bases: &'a BTreeMap<String, Option<String>>,
    /// The target's configured handler, when known.
    pub handler: Option<&'a str>,
    /// The tenant the patch is scoped to.
    pub tenant: Option<&'a str>,
}

/// One problem a checker found, located in the patched file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeFinding {
    /// What the policy reads: rule, risk, whether it blocks.
    #[serde(flatten)]
    pub summary: FindingSummary,
    /// The file.
    pub path: String,
    /// 1-based line in the new file (in the old one for a hunk that does not apply).
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong, in one line.
    pub message: String,
}

/// What a checker found in a patch.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CodeCheck {
    /// Every finding, file by file.
    pub findings: Vec<CodeFinding>,
    /// How far the patch reaches.
    pub scope: PatchScope,
    /// The deployed code the patch was checked against (set by the caller that read it).
    #[serde(default)]
    pub base: CodeBase,
}

/// Why a patch could not be checked at all (as opposed to a finding in a patch that could).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The patch itself is unreadable: a malformed diff, a file too large, no file.
    #[error("{0}")]
    Malformed(String),
    /// This process has no checker.
    #[error("{0}")]
    Unavailable(String),
}

/// Parses and checks code patches.
pub trait CodeChecker: Send + Sync {
    /// Checks `patch`.
    fn check(&self, patch: &PatchUnderReview<'_>) -> Result<CodeCheck, CheckError>;

    /// Whether this process can check at all (generate skips its repair round when not).
    fn is_available(&self) -> bool {
        true
    }
}

/// The checker of a function that never validates code: every check is unavailable.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCodeChecker;

impl CodeChecker for NoCodeChecker {
    fn check(&self, _: &PatchUnderReview<'_>) -> Result<CodeCheck, CheckError> {
        Err(CheckError::Unavailable(
            "this function has no code checker; code patches are validated by the validate function".into(),
        ))
    }

    fn is_available(&self) -> bool {
        false
    }
}

/// The code source of a process that never reads code: every read is rejected.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCodeSource;

#[async_trait]
impl CodeSource for NoCodeSource {
    async fn deployed_files(
        &self,
        component: &ComponentId,
        _: &[&str],
    ) -> Result<DeployedFiles, CodeSourceError> {
        Err(CodeSourceError::Rejected(format!(
            "no code source here to read {component}'s code"
        )))
    }
}
