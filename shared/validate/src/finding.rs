//! Findings: a rule, a risk, where (`path:line:col` in the new file), and one line saying
//! what is wrong.

use selfbuild_core::change::RiskLevel;
use selfbuild_core::code_policy::{FindingSummary, rule_blocks};
use serde::{Serialize, Serializer};

/// Every rule the pipeline runs; the id is stable (docs/validation.md lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// A hunk does not apply to the file as it is.
    PatchApplies,
    /// The new file does not parse.
    Syntax,
    /// Code or a shell command built from data is run.
    CodeExecution,
    /// A constant command goes through a shell.
    ShellCommand,
    /// Recursive deletes, DROP/TRUNCATE, unbounded DELETE/UPDATE, deleting buckets/tables.
    DestructiveOperation,
    /// SQL built from strings reaches an execute/query call.
    SqlInjection,
    /// pickle/marshal/unsafe YAML loads, node-serialize, merges of request data.
    UnsafeDeserialization,
    /// Certificate verification turned off.
    TlsVerification,
    /// An outbound call to a host off the allow-list or to an IP literal.
    EgressHost,
    /// The environment, credentials or whole events sent out.
    Exfiltration,
    /// A credential in the text.
    Secret,
    /// The path is protected.
    ProtectedPath,
    /// The configured or conventional handler is gone or its signature is incompatible.
    HandlerSignature,
    /// An export or public function of the old file is gone.
    RemovedExport,
    /// A kept function takes a different number of parameters.
    SignatureChanged,
    /// A Rust `unsafe` block, function or impl was added.
    UnsafeCode,
    /// Another tenant's id, a dropped tenant condition, or a Query turned into a Scan.
    TenantIsolation,
    /// A new import outside the allow-list.
    ImportAllowlist,
    /// A package manifest gains a dependency.
    NewDependency,
}

impl Rule {
    /// Every rule, in documentation order.
    pub const ALL: [Rule; 19] = [
        Rule::PatchApplies,
        Rule::Syntax,
        Rule::CodeExecution,
        Rule::ShellCommand,
        Rule::DestructiveOperation,
        Rule::SqlInjection,
        Rule::UnsafeDeserialization,
        Rule::TlsVerification,
        Rule::EgressHost,
        Rule::Exfiltration,
        Rule::Secret,
        Rule::ProtectedPath,
        Rule::HandlerSignature,
        Rule::RemovedExport,
        Rule::SignatureChanged,
        Rule::UnsafeCode,
        Rule::TenantIsolation,
        Rule::ImportAllowlist,
        Rule::NewDependency,
    ];

    /// The stable id, e.g. `sql_injection`.
    pub fn id(self) -> &'static str {
        match self {
            Self::PatchApplies => "patch_applies",
            Self::Syntax => "syntax",
            Self::CodeExecution => "code_execution",
            Self::ShellCommand => "shell_command",
            Self::DestructiveOperation => "destructive_operation",
            Self::SqlInjection => "sql_injection",
            Self::UnsafeDeserialization => "unsafe_deserialization",
            Self::TlsVerification => "tls_verification",
            Self::EgressHost => "egress_host",
            Self::Exfiltration => "exfiltration",
            Self::Secret => "secret",
            Self::ProtectedPath => "protected_path",
            Self::HandlerSignature => "handler_signature",
            Self::RemovedExport => "removed_export",
            Self::SignatureChanged => "signature_changed",
            Self::UnsafeCode => "unsafe_code",
            Self::TenantIsolation => "tenant_isolation",
            Self::ImportAllowlist => "import_allowlist",
            Self::NewDependency => "new_dependency",
        }
    }

    /// The risk a finding of this rule has unless the rule says otherwise.
    pub fn default_risk(self) -> RiskLevel {
        match self {
            Self::PatchApplies
            | Self::Syntax
            | Self::CodeExecution
            | Self::SqlInjection
            | Self::UnsafeDeserialization
            | Self::Exfiltration
            | Self::Secret
            | Self::ProtectedPath
            | Self::HandlerSignature
            | Self::TenantIsolation => RiskLevel::Critical,
            Self::DestructiveOperation
            | Self::TlsVerification
            | Self::EgressHost
            | Self::RemovedExport
            | Self::SignatureChanged
            | Self::UnsafeCode => RiskLevel::High,
            Self::ShellCommand | Self::ImportAllowlist | Self::NewDependency => RiskLevel::Medium,
        }
    }

    /// Whether a finding of this rule on what the patch changes blocks it (core's policy).
    pub fn blocks(self) -> bool {
        rule_blocks(self.id())
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

/// One problem, located in the new file (1-based line and column, in characters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule.
    pub rule: Rule,
    /// How bad it is.
    pub risk: RiskLevel,
    /// The file's repository path.
    pub path: String,
    /// 1-based line in the new file (for a removal: where it was).
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong, in one line.
    pub message: String,
    /// Already in the file before the patch: reported at LOW, never blocking.
    #[serde(skip)]
    pub pre_existing: bool,
}

impl Finding {
    /// What core's policy needs of this finding.
    pub fn summary(&self) -> FindingSummary {
        FindingSummary {
            rule: self.rule.id().to_owned(),
            risk: self.risk,
            blocking: !self.pre_existing && self.rule.blocks(),
        }
    }

    /// `path:line:col`.
    pub fn location(&self) -> String {
        format!("{}:{}:{}", self.path, self.line, self.col)
    }
}

impl From<&Finding> for FindingSummary {
    fn from(f: &Finding) -> Self {
        f.summary()
    }
}
