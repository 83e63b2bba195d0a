//! The Llm port over Bedrock's Converse API, with the request's tool forced.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::operation::converse::{ConverseError, ConverseOutput};
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message, SpecificToolChoice,
    StopReason, SystemContentBlock, Tool, ToolChoice, ToolConfiguration, ToolInputSchema,
    ToolSpecification,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::{Document, Number};
use serde_json::Value;
use tracing::{debug, info, instrument, warn};

use super::{ModelPrice, TokenLimits, charge, plan_budget};
use crate::sdk_error::{ErrorChain, is_transient};
use selfbuild_core::ports::{Llm, LlmError, ToolAnswer, ToolRequest};

/// Asks a Bedrock model for one forced tool call through Converse.
#[derive(Debug, Clone)]
pub struct BedrockLlm {
    client: Client,
    model: String,
    price: ModelPrice,
    limits: TokenLimits,
}

impl BedrockLlm {
    /// An adapter for `model` (a model id, inference profile id or ARN), with a client built from
    /// `config` and the list price of [`ModelPrice::for_model`] (or [`ModelPrice::UNKNOWN`]).
    ///
    /// The client does not retry: [`ResilientLlm`](super::ResilientLlm) retries, and an SDK that
    /// retried too would multiply the attempts (and the wait) behind one failure.
    pub fn new(config: &aws_config::SdkConfig, model: impl Into<String>) -> Self {
        let client_config = aws_sdk_bedrockruntime::config::Builder::from(config)
            .retry_config(RetryConfig::disabled())
            .build();
        Self::from_client(Client::from_conf(client_config), model)
    }

    /// An adapter for `model` using an existing client (whose retry settings are kept).
    pub fn from_client(client: Client, model: impl Into<String>) -> Self {
        let model = model.into();
        let price = ModelPrice::for_model(&model).unwrap_or(ModelPrice::UNKNOWN);
        Self {
            client,
            model,
            price,
            limits: TokenLimits::default(),
        }
    }

    /// The same adapter with another price (e.g. [`ModelPrice::from_env`]).
    pub fn with_price(mut self, price: ModelPrice) -> Self {
        self.price = price;
        self
    }

    /// The same adapter with other bounds on `maxTokens`.
    pub fn with_token_limits(mut self, limits: TokenLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The model id.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The price the budget is computed with.
    pub fn price(&self) -> ModelPrice {
        self.price
    }

    /// `bedrock:<model>`: what [`LlmAnswer::provider`] says and the name to register it under.
    pub fn provider_name(&self) -> String {
        format!("bedrock:{}", self.model)
    }
}

#[async_trait]
impl Llm for BedrockLlm {
    #[instrument(skip_all, fields(model = %self.model))]
    async fn call_tool(&self, request: &ToolRequest) -> Result<ToolAnswer, LlmError> {
        let provider = self.provider_name();
        let tool_name = request.tool.name.as_str();
        let plan = plan_budget(&provider, request, self.price, self.limits)?;
        debug!(
            input_tokens = plan.input_tokens,
            max_tokens = plan.max_tokens,
            estimated_usd = plan.estimated_usd,
            "calling Converse"
        );
        let tool = ToolSpecification::builder()
            .name(tool_name)
            .description(&request.tool.description)
            .input_schema(ToolInputSchema::Json(to_document(
                &request.tool.input_schema,
            )))
            .build()
            .map_err(|e| LlmError::NoProposal(format!("{provider}: tool specification: {e}")))?;
        let tool_config = ToolConfiguration::builder()
            .tools(Tool::ToolSpec(tool))
            .tool_choice(ToolChoice::Tool(
                SpecificToolChoice::builder()
                    .name(tool_name)
                    .build()
                    .map_err(|e| LlmError::NoProposal(format!("{provider}: tool choice: {e}")))?,
            ))
            .build()
            .map_err(|e| LlmError::NoProposal(format!("{provider}: tool configuration: {e}")))?;
        let message = Message::builder()
            .role(ConversationRole::User)
            .content(ContentBlock::Text(request.prompt.clone()))
            .build()
            .map_err(|e| LlmError::NoProposal(format!("{provider}: message: {e}")))?;
        let max_tokens = i32::try_from(plan.max_tokens).unwrap_or(i32::MAX);
        // Converse refuses a blank text block, so a blank system prompt is left out.
        let system = (!request.system.trim().is_empty())
            .then(|| vec![SystemContentBlock::Text(request.system.clone())]);
        let sent = self
            .client
            .converse()
            .model_id(&self.model)
            .set_system(system)
            .messages(message)
            .tool_config(tool_config)
            .inference_config(
                InferenceConfiguration::builder()
                    .max_tokens(max_tokens)
                    .build(),
            )
            .send()
            .await;
        let output = sent.map_err(|e| converse_error(&provider, &e))?;
        let answer = answer(&provider, self.price, request, output)?;
        info!(
            provider = %answer.provider,
            tool = tool_name,
            subject = %request.subject,
            input_tokens = answer.usage.input_tokens,
            output_tokens = answer.usage.output_tokens,
            cost_usd = answer.usage.cost_usd,
            "Bedrock answered"
        );
        Ok(answer)
    }
}

/// The tool input and usage of a Converse output.
fn answer(
    provider: &str,
    price: ModelPrice,
    request: &ToolRequest,
    output: ConverseOutput,
) -> Result<ToolAnswer, LlmError> {
    let tool_name = request.tool.name.as_str();
    let (input_tokens, output_tokens) = output.usage().map_or((0, 0), |u| {
        (
            u64::try_from(u.input_tokens()).unwrap_or(0),
            u64::try_from(u.output_tokens()).unwrap_or(0),
        )
    });
    // Charged first: an answer over budget is refused whatever it says.
    let usage = charge(provider, request, price, input_tokens, output_tokens)?;
    let stop = output.stop_reason().clone();
    let tool_use = match output.output {
        Some(aws_sdk_bedrockruntime::types::ConverseOutput::Message(message)) => {
            message.content.into_iter().find_map(|block| match block {
                ContentBlock::ToolUse(tool_use) => Some(tool_use),
                _ => None,
            })
        }
        _ => None,
    };
    let Some(tool_use) = tool_use else {
        return Err(match stop {
            StopReason::ContentFiltered | StopReason::GuardrailIntervened => LlmError::NoProposal(
                format!("{provider}: the answer was filtered ({})", stop.as_str()),
            ),
            _ => LlmError::InvalidAnswer(format!(
                "{provider}: no {tool_name} tool call in the answer (stop reason {})",
                stop.as_str()
            )),
        });
    };
    if tool_use.name != tool_name {
        return Err(LlmError::InvalidAnswer(format!(
            "{provider}: the answer called tool `{}`, not {tool_name}",
            tool_use.name
        )));
    }
    Ok(ToolAnswer {
        input: to_json(&tool_use.input),
        usage,
        provider: provider.to_owned(),
        truncated: stop == StopReason::MaxTokens,
    })
}

/// `Unavailable` when trying later may work, `NoProposal` when this request cannot work here.
///
/// - Throttling, service unavailable, model not ready, internal error, model timeout, and a
///   model error (424: the model failed while processing; it is not the request's fault) are
///   `Unavailable`, as are timeouts, dispatch failures and any unmodeled 5xx or throttling code.
/// - Validation (the request is malformed for this model: schema, `maxTokens`, prompt length),
///   access denied (model access not granted to this account or role) and resource not found
///   (wrong model id or region) are `NoProposal`: the same request will fail the same way, but
///   another provider may answer it, so [`ResilientLlm`](super::ResilientLlm) goes on to the next.
///   They are not `InvalidAnswer`: no answer came back; the request or the setup is at fault.
fn converse_error(provider: &str, err: &SdkError<ConverseError, HttpResponse>) -> LlmError {
    let message = format!("{provider}: Converse: {}", ErrorChain(err));
    let unavailable = match err.as_service_error() {
        Some(
            ConverseError::ThrottlingException(_)
            | ConverseError::ServiceUnavailableException(_)
            | ConverseError::ModelNotReadyException(_)
            | ConverseError::InternalServerException(_)
            | ConverseError::ModelTimeoutException(_)
            | ConverseError::ModelErrorException(_),
        ) => true,
        Some(
            ConverseError::ValidationException(_)
            | ConverseError::AccessDeniedException(_)
            | ConverseError::ResourceNotFoundException(_),
        ) => false,
        _ => is_transient(err),
    };
    if unavailable {
        debug!(provider, error = %DisplayErrorContext(err), "Converse failed; may work later");
        LlmError::Unavailable(message)
    } else {
        warn!(provider, error = %DisplayErrorContext(err), "Converse refused the request");
        LlmError::NoProposal(message)
    }
}

/// A JSON value as a smithy document (what `inputSchema.json` carries).
pub(crate) fn to_document(value: &Value) -> Document {
    match value {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => Document::Number(if let Some(u) = n.as_u64() {
            Number::PosInt(u)
        } else if let Some(i) = n.as_i64() {
            Number::NegInt(i)
        } else {
            Number::Float(n.as_f64().unwrap_or(f64::NAN))
        }),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(items) => Document::Array(items.iter().map(to_document).collect()),
        Value::Object(map) => Document::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), to_document(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

/// A smithy document as a JSON value (what `toolUse.input` carries); a non-finite float,
/// which JSON cannot hold, becomes `null`.
pub(crate) fn to_json(document: &Document) -> Value {
    match document {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => Value::from(*u),
        Document::Number(Number::NegInt(i)) => Value::from(*i),
        Document::Number(Number::Float(f)) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        Document::String(s) => Value::String(s.clone()),
        Document::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Document::Object(map) => {
            // Sorted, so the same document always gives the same JSON text.
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), to_json(v)))
                    .collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdk_error::test_support::service_error;
    use aws_sdk_bedrockruntime::types::error::{
        AccessDeniedException, ModelErrorException, ThrottlingException, ValidationException,
    };
    use aws_smithy_types::error::ErrorMetadata;
    use selfbuild_core::generate::proposal_schema;
    use serde_json::json;

    #[test]
    fn the_schema_survives_the_round_trip_through_a_document() {
        let schema = proposal_schema();
        assert_eq!(to_json(&to_document(&schema)), schema);
        let numbers = json!([0, 7, -3, 0.25, 1e300]);
        assert_eq!(to_json(&to_document(&numbers)), numbers);
    }

    #[test]
    fn errors_are_classified_by_modeled_variant() {
        let unavailable = |e: ConverseError, status| {
            matches!(
                converse_error("p", &service_error(e, status)),
                LlmError::Unavailable(_)
            )
        };
        assert!(unavailable(
            ConverseError::ThrottlingException(ThrottlingException::builder().build()),
            429
        ));
        assert!(unavailable(
            ConverseError::ModelErrorException(ModelErrorException::builder().build()),
            424
        ));
        assert!(!unavailable(
            ConverseError::ValidationException(
                ValidationException::builder()
                    .message("maxTokens too large")
                    .build()
            ),
            400
        ));
        assert!(!unavailable(
            ConverseError::AccessDeniedException(AccessDeniedException::builder().build()),
            403
        ));
        assert!(unavailable(
            ConverseError::generic(
                ErrorMetadata::builder()
                    .code("ServiceQuotaExceeded")
                    .build()
            ),
            503
        ));
        assert!(!unavailable(
            ConverseError::generic(ErrorMetadata::builder().code("Unknown").build()),
            400
        ));
    }
}
