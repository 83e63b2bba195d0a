//! Changes: what generate proposes, validate judges and deploy ships; each kind in its own
//! file with its rules and how it applies.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::ComponentId;

pub mod code_patch;
mod lambda_config;

pub use code_patch::{CodeBase, CodeRelease, FilePatch};
pub use lambda_config::{LambdaConfigChange, LambdaSettings};

/// What a proposal changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    /// Configuration of a Lambda function.
    LambdaConfig {
        /// The function.
        #[schemars(with = "String")]
        function: ComponentId,
        /// What to set.
        config: LambdaConfigChange,
    },
    /// A source change: a unified diff per file.
    CodePatch {
        /// The component whose code changes.
        #[schemars(with = "String")]
        component: ComponentId,
        /// The files, each with its diff.
        #[schemars(length(min = 1))]
        files: Vec<FilePatch>,
        /// The target's configured handler (`orders.handler`,
        /// `src/handlers/orders.lambda_handler`, `bootstrap`), when the proposer knows it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        handler: Option<String>,
    },
}

impl Change {
    /// The component the change targets.
    pub fn target(&self) -> &ComponentId {
        match self {
            Self::LambdaConfig { function, .. } => function,
            Self::CodePatch { component, .. } => component,
        }
    }

    /// `lambda_config` or `code_patch`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::LambdaConfig { .. } => "lambda_config",
            Self::CodePatch { .. } => "code_patch",
        }
    }

    /// A short human description, e.g. `orders-api: timeout 3→10 s, memory 128→512 MB`.
    pub fn describe(&self, before: Option<&LambdaSettings>) -> String {
        match self {
            Self::LambdaConfig { function, config } => {
                let mut parts = Vec::new();
                let was = |f: fn(&LambdaSettings) -> String| before.map(f).unwrap_or_default();
                if let Some(t) = config.timeout_seconds {
                    parts.push(format!(
                        "timeout {}→{t} s",
                        was(|b| b.timeout_seconds.to_string())
                    ));
                }
                if let Some(m) = config.memory_mb {
                    parts.push(format!(
                        "memory {}→{m} MB",
                        was(|b| b.memory_mb.to_string())
                    ));
                }
                if let Some(c) = config.reserved_concurrency {
                    parts.push(format!(
                        "reserved concurrency {}→{c}",
                        was(|b| b
                            .reserved_concurrency
                            .map_or_else(|| "none".into(), |c| c.to_string()))
                    ));
                }
                if !config.environment.is_empty() {
                    let keys: Vec<&str> = config.environment.keys().map(String::as_str).collect();
                    parts.push(format!("env {}", keys.join(",")));
                }
                format!("{function}: {}", parts.join(", "))
            }
            Self::CodePatch {
                component, files, ..
            } => {
                const SHOWN: usize = 3;
                let paths: Vec<&str> = files.iter().take(SHOWN).map(|f| f.path.as_str()).collect();
                let more = files.len().saturating_sub(SHOWN);
                let more = if more > 0 {
                    format!(" (+{more} more)")
                } else {
                    String::new()
                };
                format!("{component}: patch {}{more}", paths.join(", "))
            }
        }
    }
}

/// What a deploy ships as the canary version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeploySpec {
    /// These settings on the function's current code.
    Config(LambdaSettings),
    /// A patch onto the function's code, with these (unchanged) settings.
    Code {
        /// The settings the new version keeps.
        settings: LambdaSettings,
        /// The patch and the code it was judged against.
        release: CodeRelease,
    },
}

impl DeploySpec {
    /// The settings of the new version.
    pub fn settings(&self) -> &LambdaSettings {
        match self {
            Self::Config(settings) | Self::Code { settings, .. } => settings,
        }
    }

    /// The code patch, when this deploy ships one.
    pub fn release(&self) -> Option<&CodeRelease> {
        match self {
            Self::Config(_) => None,
            Self::Code { release, .. } => Some(release),
        }
    }
}

/// Risk, lowest to highest.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RiskLevel {
    /// No plausible harm.
    Safe,
    /// Easily reversed, small blast radius.
    Low,
    /// Could hurt a component; reversible.
    Medium,
    /// Could hurt a component badly or several components.
    High,
    /// Could take a service down or leak data.
    Critical,
}

impl RiskLevel {
    /// `SAFE` … `CRITICAL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Safe => "SAFE",
            Self::Low => "LOW",
            Self::Medium => "MEDIUM",
            Self::High => "HIGH",
            Self::Critical => "CRITICAL",
        }
    }
}

/// What the LLM (or planner) proposes for one opportunity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
// The tool schema asks for nothing else; the parser tolerates extra members.
#[schemars(deny_unknown_fields)]
pub struct Proposal {
    /// The change.
    pub change: Change,
    /// Why this change fixes the opportunity.
    pub rationale: String,
    /// Expected improvement of the opportunity's metric, 0–1 (0.3 = 30 % better).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub expected_gain: f64,
    /// The risk the proposer claims.
    pub claimed_risk: RiskLevel,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_config_change_round_trips_as_tagged_json() {
        let change: Change = serde_json::from_value(json!({
            "type": "lambda_config", "function": "orders-api",
            "config": {"timeout_seconds": 10, "memory_mb": 512}
        }))
        .unwrap();
        let Change::LambdaConfig { config, .. } = &change else {
            panic!("expected lambda_config");
        };
        assert_eq!(config.timeout_seconds, Some(10));
        let back = serde_json::to_value(&change).unwrap();
        assert_eq!(back["type"], "lambda_config");
        assert!(back["config"].get("environment").is_none());
    }

    #[test]
    fn unknown_config_fields_are_refused() {
        let err = serde_json::from_value::<Change>(json!({
            "type": "lambda_config", "function": "f", "config": {"memory": 512}
        }))
        .unwrap_err();
        assert!(err.to_string().contains("memory"), "{err}");
        let err = serde_json::from_value::<Change>(json!({
            "type": "lambda_config", "function": "f", "config": {}, "extra": 1
        }))
        .unwrap_err();
        assert!(err.to_string().contains("extra"), "{err}");
    }

    #[test]
    fn apply_merges_over_the_current_settings() {
        let current = LambdaSettings {
            memory_mb: 128,
            timeout_seconds: 3,
            reserved_concurrency: None,
            environment: [("A".to_owned(), "1".to_owned())].into(),
        };
        let change = LambdaConfigChange {
            timeout_seconds: Some(10),
            environment: [("B".to_owned(), "2".to_owned())].into(),
            ..Default::default()
        };
        let next = change.apply(&current);
        assert_eq!(next.memory_mb, 128);
        assert_eq!(next.timeout_seconds, 10);
        assert_eq!(next.environment.len(), 2);
    }

    #[test]
    fn risk_levels_order() {
        assert!(RiskLevel::Safe < RiskLevel::Low);
        assert!(RiskLevel::High < RiskLevel::Critical);
    }
}
