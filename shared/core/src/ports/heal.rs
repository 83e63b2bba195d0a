//! The health pass's rollback heal: a requested rollback carried out in process
//! ([`crate::canary::RollBackHere`]) or handed to the rollback function, which has the time a
//! code patch's rollback takes (`selfbuild_aws::rollback_heal`).

use async_trait::async_trait;

use crate::canary::{CanaryError, RollbackOrder};
use crate::error::StoreError;

/// Why a rollback heal was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum RollbackHealError {
    /// Nothing of selfbuild's is left to undo: no record, already rolled back, or a status
    /// that allows no rollback.
    #[error("{0}")]
    NothingToUndo(String),
    /// The rollback failed (audited `rollback_failed`).
    #[error(transparent)]
    Rollback(#[from] CanaryError),
    /// The improvement's record could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// It could not be handed over, or there is nobody to hand it to.
    #[error("{0}")]
    HandOver(String),
}

/// Rolls back a recorded improvement for the health pass.
#[async_trait]
pub trait RollbackHeal: Send + Sync {
    /// Carries out `order`, or hands it to whoever will; the text says which (a hand-over
    /// counts as done once it was accepted: the pass judges the heal at its next look).
    async fn roll_back(&self, order: &RollbackOrder) -> Result<String, RollbackHealError>;
}

/// No rollback here: every order is refused, saying why (`why`).
#[derive(Debug, Clone, Copy)]
pub struct NoRollbackHeal {
    /// Why there is none, for the heal's report.
    pub why: &'static str,
}

#[async_trait]
impl RollbackHeal for NoRollbackHeal {
    async fn roll_back(&self, order: &RollbackOrder) -> Result<String, RollbackHealError> {
        Err(RollbackHealError::HandOver(format!(
            "{} not rolled back: {}",
            order.improvement_id, self.why
        )))
    }
}
