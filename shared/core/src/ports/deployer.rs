//! The deployer: reads and changes deployed functions (Lambda versions and weighted aliases
//! on AWS, the simulated fleet offline).

use async_trait::async_trait;

use crate::change::DeploySpec;
use crate::deployment::{CanaryDeployment, FunctionState};
use crate::ids::{ComponentId, ImprovementId};

/// Why a deployer call failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// Lambda was unavailable or throttled, or a resource was mid-update; trying again may work.
    #[error("deployer unavailable: {0}")]
    Unavailable(String),
    /// The function does not exist or cannot be changed like this.
    #[error("deployer rejected the request: {0}")]
    Rejected(String),
}

impl DeployError {
    /// The same error, saying what the failed call left behind.
    #[must_use]
    pub fn leaving(self, left: &str) -> Self {
        match self {
            Self::Unavailable(m) => Self::Unavailable(format!("{m}; left: {left}")),
            Self::Rejected(m) => Self::Rejected(format!("{m}; left: {left}")),
        }
    }
}

/// Reads and changes deployed functions.
#[async_trait]
pub trait Deployer: Send + Sync {
    /// The function's current settings and alias routing. While a canary runs, the settings
    /// are the stable version's, except reserved concurrency where the platform keeps one per
    /// function (Lambda: the canary's from its deploy on); see [`FunctionState::settings`].
    async fn function_state(&self, function: &ComponentId) -> Result<FunctionState, DeployError>;

    /// Publishes `spec` (settings, or a code patch onto the code it was judged against) as a
    /// new version and routes `weight` of the alias to it.
    /// Idempotent per `improvement_id`: a retry after any partial step ends in the same state,
    /// and a retry after it was routed (promoted or rolled back since) changes nothing and
    /// returns the same deployment. Refused: other settings or weight for the same
    /// improvement, a second canary while one is routed, a retry once a later
    /// improvement's version was published for the function, and a patch whose base is not
    /// the live code (it changed since validation) or that does not apply to it.
    async fn deploy_canary(
        &self,
        improvement_id: &ImprovementId,
        function: &ComponentId,
        spec: &DeploySpec,
        weight: f64,
    ) -> Result<CanaryDeployment, DeployError>;

    /// Routes all traffic to the canary version. Idempotent; refused once rolled back.
    async fn promote(&self, deployment: &CanaryDeployment) -> Result<(), DeployError>;

    /// Restores the baseline's exact routing and configuration, also after a promotion.
    /// Idempotent; refused once a later improvement was deployed to the function.
    async fn rollback(&self, deployment: &CanaryDeployment) -> Result<(), DeployError>;

    /// Undoes whatever a deploy of `improvement_id` that failed part-way left on `function`
    /// (its settings on `$LATEST`, a published version, the reservation, the routing), back
    /// to the version the deploy was cut against; the state restored, none when the deploy
    /// left nothing. Idempotent; never touches another improvement's deploy.
    async fn undo_deploy(
        &self,
        improvement_id: &ImprovementId,
        function: &ComponentId,
    ) -> Result<Option<FunctionState>, DeployError>;
}
