//! The dead-letter queue of intake's events (SQS on AWS; none offline).

use async_trait::async_trait;

use crate::error::DeadLetterError;
use crate::health::dlq::Resent;

/// Events intake could not take, parked for the health pass to re-send once.
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// How many messages wait (approximately, as the queue counts them).
    async fn depth(&self) -> Result<u64, DeadLetterError>;
    /// Re-sends up to `limit` waiting messages to intake, each at most once
    /// ([`crate::health::dlq`] says which and how), deleting a message only after its
    /// re-send was accepted.
    async fn resend(&self, limit: usize) -> Result<Resent, DeadLetterError>;
}
