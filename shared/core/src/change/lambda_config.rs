//! `lambda_config`: a Lambda function's settings and a change to them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Lambda function's tunable configuration (what a `lambda_config` change sets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LambdaSettings {
    /// Memory in MB (128–10240).
    pub memory_mb: u32,
    /// Timeout in seconds (1–900).
    pub timeout_seconds: u32,
    /// Reserved concurrency; none means unreserved.
    pub reserved_concurrency: Option<u32>,
    /// Environment variables.
    pub environment: BTreeMap<String, String>,
}

/// A configuration change to one Lambda function; absent fields stay as they are.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LambdaConfigChange {
    /// New memory size in MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 128, max = 10240))]
    pub memory_mb: Option<u32>,
    /// New timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 900))]
    pub timeout_seconds: Option<u32>,
    /// New reserved concurrency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_concurrency: Option<u32>,
    /// Environment variables to set (merged over the current ones).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
}

impl LambdaConfigChange {
    /// The settings after applying this change to `current`.
    pub fn apply(&self, current: &LambdaSettings) -> LambdaSettings {
        let mut next = current.clone();
        if let Some(m) = self.memory_mb {
            next.memory_mb = m;
        }
        if let Some(t) = self.timeout_seconds {
            next.timeout_seconds = t;
        }
        if let Some(c) = self.reserved_concurrency {
            next.reserved_concurrency = Some(c);
        }
        next.environment
            .extend(self.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
        next
    }

    /// True when the change sets nothing.
    pub fn is_empty(&self) -> bool {
        self.memory_mb.is_none()
            && self.timeout_seconds.is_none()
            && self.reserved_concurrency.is_none()
            && self.environment.is_empty()
    }
}
