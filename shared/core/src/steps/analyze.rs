//! `analyze` (R4–R6): the cycle's telemetry read into ranked opportunities.

use serde_json::Value;

use super::{StepDeps, StepError, parse_payload, to_value};
use crate::analyze::{AnalysisReport, analyze};
use crate::config::Config;
use crate::cycle::CycleRequest;

/// Runs the `analyze` function on `payload`.
pub(super) async fn run(
    deps: StepDeps<'_>,
    _config: &Config,
    payload: &Value,
) -> Result<Value, StepError> {
    let request: CycleRequest = parse_payload(payload)?;
    let report: AnalysisReport = analyze(deps.telemetry, deps.deployer, &request).await?;
    to_value(&report)
}
