//! Errors at the ports, and the stable error type names that Step Functions and
//! EventBridge act on.

/// An error with a stable machine-readable name (the Lambda `errorType`).
pub trait StableError: std::error::Error {
    /// The name Retry/Catch blocks match on, e.g. `Retryable` or `InvalidEvent`.
    fn error_type(&self) -> ErrorType;
}

/// The error types selfbuild's functions fail with: what the state machine's Retry and Catch
/// and EventBridge's retries match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// A dependency was unreachable or throttled; trying again may work.
    Retryable,
    /// A dependency refused the request; trying again will not help.
    DependencyFailed,
    /// The store's storage failed for good.
    StoreFault,
    /// A stored record could not be read back.
    StoreCorrupt,
    /// A step's input lacks what it needs.
    InvalidInput,
    /// An event intake cannot read.
    InvalidEvent,
    /// Lambda refused a deploy.
    DeployRejected,
    /// Automatic rollback is turned off.
    RollbackDisabled,
    /// The halt switch is on.
    Halted,
    /// The LLM budget is spent.
    BudgetExceeded,
    /// The model's proposal could not be used.
    InvalidProposal,
    /// The model proposed nothing.
    NoProposal,
    /// No approval is pending for the improvement.
    NotPending,
    /// The configuration is invalid.
    ConfigError,
    /// No record has this id.
    NotFound,
    /// The approval window closed unanswered: the change was not deployed.
    ApprovalClosed,
}

impl ErrorType {
    /// Every error type.
    pub const ALL: [Self; 16] = [
        Self::Retryable,
        Self::DependencyFailed,
        Self::StoreFault,
        Self::StoreCorrupt,
        Self::InvalidInput,
        Self::InvalidEvent,
        Self::DeployRejected,
        Self::RollbackDisabled,
        Self::Halted,
        Self::BudgetExceeded,
        Self::InvalidProposal,
        Self::NoProposal,
        Self::NotPending,
        Self::ConfigError,
        Self::NotFound,
        Self::ApprovalClosed,
    ];

    /// The name, as Lambda's `errorType` carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retryable => "Retryable",
            Self::DependencyFailed => "DependencyFailed",
            Self::StoreFault => "StoreFault",
            Self::StoreCorrupt => "StoreCorrupt",
            Self::InvalidInput => "InvalidInput",
            Self::InvalidEvent => "InvalidEvent",
            Self::DeployRejected => "DeployRejected",
            Self::RollbackDisabled => "RollbackDisabled",
            Self::Halted => "Halted",
            Self::BudgetExceeded => "BudgetExceeded",
            Self::InvalidProposal => "InvalidProposal",
            Self::NoProposal => "NoProposal",
            Self::NotPending => "NotPending",
            Self::ConfigError => "ConfigError",
            Self::NotFound => "NotFound",
            Self::ApprovalClosed => "ApprovalClosed",
        }
    }

    /// The error type with this name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl std::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorType {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A Store adapter failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or was throttled; trying again may work.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store refused the request (missing table, no permission, invalid request);
    /// retrying will not help.
    #[error("store rejected the request: {0}")]
    Rejected(String),
    /// The store's storage failed in a way retrying will not mend (a read-only, full, corrupt,
    /// truncated, deleted or replaced database file); names the file and the fault.
    #[error("store fault: {0}")]
    Fault(String),
    /// A stored record could not be read back; names the record and the problem.
    #[error("stored record {record} is corrupt: {problem}")]
    Corrupt {
        /// Which record.
        record: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// An Orchestrator adapter failed.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    /// The orchestrator could not be reached or was throttled; trying again may work.
    #[error("orchestrator unavailable: {0}")]
    Unavailable(String),
    /// The orchestrator refused the request (missing state machine, bad input, no permission).
    #[error("orchestrator rejected the request: {0}")]
    Rejected(String),
}

/// A Telemetry adapter failed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The telemetry source could not be reached or was throttled; trying again may work.
    #[error("telemetry unavailable: {0}")]
    Unavailable(String),
    /// The telemetry source answered with something that cannot be used.
    #[error("telemetry answer is invalid: {0}")]
    Invalid(String),
}

/// The dead-letter queue (or the re-send to intake) failed.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The queue or intake could not be reached or was throttled; trying again may work.
    #[error("dead-letter queue unavailable: {0}")]
    Unavailable(String),
    /// The queue or intake refused the request (missing queue, no permission).
    #[error("dead-letter queue rejected the request: {0}")]
    Rejected(String),
}

impl StableError for StoreError {
    fn error_type(&self) -> ErrorType {
        match self {
            Self::Unavailable(_) => ErrorType::Retryable,
            Self::Rejected(_) => ErrorType::DependencyFailed,
            Self::Fault(_) => ErrorType::StoreFault,
            Self::Corrupt { .. } => ErrorType::StoreCorrupt,
        }
    }
}

impl StableError for OrchestratorError {
    fn error_type(&self) -> ErrorType {
        match self {
            Self::Unavailable(_) => ErrorType::Retryable,
            Self::Rejected(_) => ErrorType::DependencyFailed,
        }
    }
}

impl StableError for TelemetryError {
    fn error_type(&self) -> ErrorType {
        match self {
            Self::Unavailable(_) => ErrorType::Retryable,
            Self::Invalid(_) => ErrorType::DependencyFailed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `ErrorEquals` name in `value`.
    fn error_equals(value: &serde_json::Value, names: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    if key == "ErrorEquals" {
                        let list = v.as_array().into_iter().flatten();
                        names.extend(list.filter_map(|n| n.as_str().map(str::to_owned)));
                    } else {
                        error_equals(v, names);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| error_equals(v, names)),
            _ => {}
        }
    }

    #[test]
    fn the_state_machine_matches_only_error_types_the_functions_raise() {
        let asl: serde_json::Value = serde_json::from_str(include_str!(
            "../../../statemachine/improvement-cycle.asl.json"
        ))
        .unwrap();
        let mut names = Vec::new();
        error_equals(&asl, &mut names);
        let ours: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| !n.starts_with("States.") && !n.starts_with("Lambda."))
            .collect();
        for name in &ours {
            assert!(
                ErrorType::parse(name).is_some(),
                "the state machine matches {name}, which no function raises"
            );
        }
        // What it must handle: transient failures are retried, a halt ends the item.
        assert!(
            ours.contains(&"Retryable") && ours.contains(&"Halted"),
            "{ours:?}"
        );
    }

    #[test]
    fn error_types_round_trip_by_name() {
        for t in ErrorType::ALL {
            assert_eq!(ErrorType::parse(t.as_str()), Some(t));
        }
        assert_eq!(ErrorType::parse("retryable"), None);
    }
}
