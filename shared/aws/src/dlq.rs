//! The DeadLetters port over SQS: the depth of intake's dead-letter queue, and each message
//! re-sent once to alarm-intake as an asynchronous Lambda invocation of the original event
//! (the rule is `selfbuild_core::health::dlq`).
//!
//! Why an invocation and not `PutEvents`: the events are `aws.cloudwatch` alarm changes and
//! `aws.events` schedule ticks, and EventBridge refuses `PutEvents` entries whose source
//! begins with `aws.`; the rule's target is intake anyway, and an `Event` invocation gets
//! Lambda's own retries and the same on-failure destination (this queue) as the rule's
//! deliveries.
//!
//! Calls per round: `ReceiveMessage` (10 at a time, each hidden for 60 s so one round never
//! sees a message twice) until `limit` messages or an empty answer, then per message one
//! `Invoke` and, once it was accepted, one `DeleteMessage`.

use async_trait::async_trait;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::retry::ProvideErrorKind;
use selfbuild_core::error::DeadLetterError;
use selfbuild_core::health::dlq::{Letter, Resent, marked, read_letter};
use selfbuild_core::ports::DeadLetters;
use selfbuild_core::text::Excerpt;
use tracing::{debug, info, warn};

use crate::sdk_error::{ErrorChain, is_transient};

/// The most messages one `ReceiveMessage` returns.
const RECEIVE_BATCH: i32 = 10;
/// How long a received message stays hidden from other receivers.
const VISIBILITY_SECONDS: i32 = 60;

/// Intake's dead-letter queue, re-sent to the intake function.
#[derive(Debug, Clone)]
pub struct SqsDeadLetters {
    sqs: aws_sdk_sqs::Client,
    lambda: aws_sdk_lambda::Client,
    queue_url: String,
    intake_function: Option<String>,
}

impl SqsDeadLetters {
    /// The queue at `queue_url`, re-sent to `intake_function` (none: only its depth is read,
    /// and a re-send is refused).
    pub fn new(
        config: &aws_config::SdkConfig,
        queue_url: impl Into<String>,
        intake_function: Option<String>,
    ) -> Self {
        Self::from_clients(
            aws_sdk_sqs::Client::new(config),
            aws_sdk_lambda::Client::new(config),
            queue_url,
            intake_function,
        )
    }

    /// As [`SqsDeadLetters::new`] with existing clients.
    pub fn from_clients(
        sqs: aws_sdk_sqs::Client,
        lambda: aws_sdk_lambda::Client,
        queue_url: impl Into<String>,
        intake_function: Option<String>,
    ) -> Self {
        Self {
            sqs,
            lambda,
            queue_url: queue_url.into(),
            intake_function,
        }
    }
}

#[async_trait]
impl DeadLetters for SqsDeadLetters {
    async fn depth(&self) -> Result<u64, DeadLetterError> {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| failure("GetQueueAttributes", &self.queue_url, &e))?;
        let raw = out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .ok_or_else(|| {
                DeadLetterError::Rejected(format!(
                    "GetQueueAttributes on {}: no ApproximateNumberOfMessages",
                    self.queue_url
                ))
            })?;
        raw.parse().map_err(|_| {
            DeadLetterError::Rejected(format!(
                "GetQueueAttributes on {}: ApproximateNumberOfMessages {} is not a count",
                self.queue_url,
                Excerpt(raw)
            ))
        })
    }

    async fn resend(&self, limit: usize) -> Result<Resent, DeadLetterError> {
        let function = self.intake_function.as_deref().ok_or_else(|| {
            DeadLetterError::Rejected(
                "no intake function to re-send to (INTAKE_FUNCTION_NAME is not set)".to_owned(),
            )
        })?;
        let mut round = Resent::default();
        let mut seen = 0_usize;
        while seen < limit {
            let batch = i32::try_from(limit - seen)
                .unwrap_or(RECEIVE_BATCH)
                .min(RECEIVE_BATCH);
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(batch)
                .visibility_timeout(VISIBILITY_SECONDS)
                .wait_time_seconds(0)
                .send()
                .await
                .map_err(|e| failure("ReceiveMessage", &self.queue_url, &e))?;
            let messages = out.messages();
            if messages.is_empty() {
                break;
            }
            seen += messages.len();
            for message in messages {
                let id = message.message_id().unwrap_or_default();
                let event = match read_letter(message.body().unwrap_or_default()) {
                    Letter::Event(event) => event,
                    Letter::AlreadyResent => {
                        warn!(
                            message = id,
                            "dead letter was re-sent once already; left for an operator"
                        );
                        round.already_resent += 1;
                        continue;
                    }
                    Letter::Unreadable(problem) => {
                        warn!(message = id, problem = %Excerpt(&problem), "dead letter is no event; left for an operator");
                        round.unreadable += 1;
                        round
                            .problem
                            .get_or_insert(format!("message {id}: {problem}"));
                        continue;
                    }
                };
                let payload = marked(event, id).to_string();
                let invoked = self
                    .lambda
                    .invoke()
                    .function_name(function)
                    .invocation_type(InvocationType::Event)
                    .payload(Blob::new(payload))
                    .send()
                    .await;
                if let Err(e) = invoked {
                    let e = failure("Invoke", function, &e);
                    warn!(message = id, error = %e, "dead letter not re-sent");
                    round.failed += 1;
                    round.problem.get_or_insert(e.to_string());
                    continue;
                }
                let deleted = match message.receipt_handle() {
                    Some(handle) => self
                        .sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| failure("DeleteMessage", &self.queue_url, &e)),
                    None => Err(DeadLetterError::Rejected(format!(
                        "message {id} has no receipt handle"
                    ))),
                };
                match deleted {
                    Ok(()) => round.resent += 1,
                    Err(e) => {
                        warn!(message = id, error = %e, "dead letter re-sent but not deleted");
                        round.not_deleted += 1;
                        round.problem.get_or_insert(e.to_string());
                    }
                }
            }
        }
        info!(
            resent = round.resent,
            left = round.already_resent + round.unreadable + round.failed,
            "dead letters re-sent"
        );
        Ok(round)
    }
}

/// `Unavailable` for throttling and transient failures; `Rejected` for the rest.
fn failure<E>(operation: &str, target: &str, err: &SdkError<E, HttpResponse>) -> DeadLetterError
where
    E: ProvideErrorKind + std::error::Error + Send + Sync + 'static,
{
    let message = format!("{operation} on {target}: {}", ErrorChain(err));
    if is_transient(err) {
        debug!(operation, error = %DisplayErrorContext(err), "dead-letter call failed");
        DeadLetterError::Unavailable(message)
    } else {
        warn!(operation, error = %DisplayErrorContext(err), "dead-letter call refused");
        DeadLetterError::Rejected(message)
    }
}
