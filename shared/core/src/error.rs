//! Errors at the ports, and the stable error type names that Step Functions and
//! EventBridge act on.

/// An error with a stable machine-readable name (the Lambda `errorType`).
pub trait StableError: std::error::Error {
    /// The name Retry/Catch blocks match on, e.g. `Retryable` or `InvalidEvent`.
    fn error_type(&self) -> &'static str;
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

impl StableError for StoreError {
    fn error_type(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "Retryable",
            Self::Rejected(_) => "DependencyFailed",
            Self::Fault(_) => "StoreFault",
            Self::Corrupt { .. } => "StoreCorrupt",
        }
    }
}

impl StableError for OrchestratorError {
    fn error_type(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "Retryable",
            Self::Rejected(_) => "DependencyFailed",
        }
    }
}

impl StableError for TelemetryError {
    fn error_type(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "Retryable",
            Self::Invalid(_) => "DependencyFailed",
        }
    }
}
