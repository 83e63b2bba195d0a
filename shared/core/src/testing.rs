//! Test doubles shared by the unit tests of several modules.

use async_trait::async_trait;

use crate::change::LambdaSettings;
use crate::deployment::{CanaryDeployment, FunctionState};
use crate::ids::ComponentId;
use crate::ports::{DeployError, Deployer};

/// A read-only Deployer: every function has `settings` (or none exists); deploys are refused.
pub(crate) struct StaticDeployer(pub Option<LambdaSettings>);

#[async_trait]
impl Deployer for StaticDeployer {
    async fn function_state(&self, function: &ComponentId) -> Result<FunctionState, DeployError> {
        let settings = self
            .0
            .clone()
            .ok_or_else(|| DeployError::Rejected(format!("{function} is not deployed")))?;
        Ok(FunctionState {
            function: function.clone(),
            settings,
            alias: "live".into(),
            stable_version: "1".into(),
            canary: None,
        })
    }
    async fn deploy_canary(
        &self,
        _: &str,
        _: &ComponentId,
        _: &LambdaSettings,
        _: f64,
    ) -> Result<CanaryDeployment, DeployError> {
        Err(DeployError::Rejected("read-only test deployer".into()))
    }
    async fn promote(&self, _: &CanaryDeployment) -> Result<(), DeployError> {
        Ok(())
    }
    async fn rollback(&self, _: &CanaryDeployment) -> Result<(), DeployError> {
        Ok(())
    }
}
