//! The Llm port over an OpenAI-compatible `POST {base_url}/chat/completions` endpoint, with the
//! request's function forced through `tool_choice`.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{debug, info, instrument, warn};

use super::{ModelPrice, TokenLimits, charge, plan_budget, truncate};
use selfbuild_core::ports::{Llm, LlmError, ToolAnswer, ToolRequest};

/// Where and how to reach an OpenAI-compatible endpoint.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// The API root, e.g. `https://api.openai.com/v1`; `/chat/completions` is appended.
    pub base_url: String,
    /// The bearer token.
    pub api_key: String,
    /// The model, e.g. `gpt-4.1`.
    pub model: String,
    /// What the model costs.
    pub price: ModelPrice,
}

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("model", &self.model)
            .field("price", &self.price)
            .finish()
    }
}

/// Asks an OpenAI-compatible chat-completions endpoint for one forced function call.
#[derive(Debug, Clone)]
pub struct OpenAiCompatibleLlm {
    http: reqwest::Client,
    config: OpenAiConfig,
    limits: TokenLimits,
}

impl OpenAiCompatibleLlm {
    /// How long one call may take, answer included (default).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
    /// How long connecting may take.
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    /// An adapter for `config`, timing out after [`Self::DEFAULT_TIMEOUT`]; fails only when the
    /// HTTP client cannot be set up (no TLS roots).
    pub fn new(config: OpenAiConfig) -> Result<Self, reqwest::Error> {
        Self::with_timeout(config, Self::DEFAULT_TIMEOUT)
    }

    /// An adapter for `config` whose calls time out after `timeout`.
    pub fn with_timeout(config: OpenAiConfig, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Self::CONNECT_TIMEOUT.min(timeout))
            .build()?;
        Ok(Self {
            http,
            config,
            limits: TokenLimits::default(),
        })
    }

    /// The same adapter with other bounds on `max_tokens`.
    pub fn with_token_limits(mut self, limits: TokenLimits) -> Self {
        self.limits = limits;
        self
    }

    /// `openai:<model>`: what [`LlmAnswer::provider`] says and the name to register it under.
    pub fn provider_name(&self) -> String {
        format!("openai:{}", self.config.model)
    }

    fn url(&self) -> String {
        format!(
            "{}/chat/completions",
            self.config.base_url.trim_end_matches('/')
        )
    }
}

#[async_trait]
impl Llm for OpenAiCompatibleLlm {
    #[instrument(skip_all, fields(model = %self.config.model))]
    async fn call_tool(&self, request: &ToolRequest) -> Result<ToolAnswer, LlmError> {
        let provider = self.provider_name();
        let tool_name = request.tool.name.as_str();
        let plan = plan_budget(&provider, request, self.config.price, self.limits)?;
        // `max_tokens`, not `max_completion_tokens`: every compatible server knows the former.
        let body = json!({
            "model": self.config.model,
            "messages": [
                {"role": "system", "content": request.system},
                {"role": "user", "content": request.prompt},
            ],
            "tools": [{
                "type": "function",
                "function": {
                    "name": tool_name,
                    "description": request.tool.description,
                    "parameters": request.tool.input_schema,
                },
            }],
            "tool_choice": {"type": "function", "function": {"name": tool_name}},
            "max_tokens": plan.max_tokens,
        });
        debug!(
            input_tokens = plan.input_tokens,
            max_tokens = plan.max_tokens,
            estimated_usd = plan.estimated_usd,
            "calling chat/completions"
        );
        let response = self
            .http
            .post(self.url())
            .bearer_auth(&self.config.api_key)
            .json(&body)
            .send()
            .await
            .map_err(|e| transport_error(&provider, &e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| transport_error(&provider, &e))?;
        if !status.is_success() {
            return Err(status_error(&provider, status, &text));
        }
        let completion: Completion =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(&text))
                .map_err(|e| {
                    LlmError::InvalidAnswer(format!(
                        "{provider}: the response is not a chat completion (at `{}`: {})",
                        e.path(),
                        e.inner()
                    ))
                })?;
        // No usage reported: charge the most the call could have cost.
        let (input_tokens, output_tokens) = completion
            .usage
            .as_ref()
            .map_or((plan.input_tokens, u64::from(plan.max_tokens)), |u| {
                (u.prompt_tokens, u.completion_tokens)
            });
        let usage = charge(
            &provider,
            request,
            self.config.price,
            input_tokens,
            output_tokens,
        )?;
        let (input, truncated) = tool_input(&provider, tool_name, completion)?;
        info!(
            provider = %provider,
            tool = tool_name,
            subject = %request.subject,
            input_tokens,
            output_tokens,
            cost_usd = usage.cost_usd,
            "the OpenAI-compatible endpoint answered"
        );
        Ok(ToolAnswer {
            input,
            usage,
            provider,
            truncated,
        })
    }
}

/// The parts of a chat completion that matter here.
#[derive(Debug, Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: ChoiceMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCall>,
}

#[derive(Debug, Deserialize)]
struct ToolCall {
    function: FunctionCall,
}

#[derive(Debug, Deserialize)]
struct FunctionCall {
    name: String,
    /// A JSON text by the API's definition; some compatible servers send the object itself.
    arguments: Value,
}

#[derive(Debug, Deserialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
}

/// `choices[0].message.tool_calls[0].function.arguments`, parsed, and whether the answer was
/// cut off at `max_tokens`.
fn tool_input(
    provider: &str,
    tool_name: &str,
    completion: Completion,
) -> Result<(Value, bool), LlmError> {
    let invalid = |what: String| LlmError::InvalidAnswer(format!("{provider}: {what}"));
    let Some(choice) = completion.choices.into_iter().next() else {
        return Err(invalid("the response has no choices".into()));
    };
    let finish = choice.finish_reason.unwrap_or_default();
    let Some(call) = choice.message.tool_calls.into_iter().next() else {
        let said = choice
            .message
            .content
            .map(|c| format!(": {:?}", truncate(&c, 200)))
            .unwrap_or_default();
        return Err(invalid(format!(
            "no {tool_name} tool call in the answer (finish reason {finish:?}){said}"
        )));
    };
    if call.function.name != tool_name {
        return Err(invalid(format!(
            "the answer called tool `{}`, not {tool_name}",
            call.function.name
        )));
    }
    let truncated = finish == "length";
    match call.function.arguments {
        Value::String(text) => serde_json::from_str(&text)
            .map(|input| (input, truncated))
            .map_err(|e| {
                let cut = if truncated {
                    " (the answer was cut off at max_tokens)"
                } else {
                    ""
                };
                invalid(format!("the {tool_name} arguments are not JSON: {e}{cut}"))
            }),
        other => Ok((other, truncated)),
    }
}

/// A failed exchange: timeouts and connection failures are `Unavailable`; anything else
/// (a body that cannot be read, a redirect loop) too, as nothing says the request is at fault.
fn transport_error(provider: &str, err: &reqwest::Error) -> LlmError {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    debug!(provider, error = %err, "chat/completions {what}");
    LlmError::Unavailable(format!(
        "{provider}: chat/completions {what}: {}",
        error_chain(err)
    ))
}

/// 408, 429 and 5xx are `Unavailable`; any other status is `NoProposal` with the status and
/// the body's `error.message` (or the start of the body).
fn status_error(provider: &str, status: StatusCode, body: &str) -> LlmError {
    let detail = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("message"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| truncate(body.trim(), 200));
    let message = format!("{provider}: chat/completions answered {status}: {detail}");
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        debug!(provider, %status, "chat/completions unavailable");
        LlmError::Unavailable(message)
    } else {
        warn!(provider, %status, "chat/completions refused the request");
        LlmError::NoProposal(message)
    }
}

/// An error and its sources, `: `-separated.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        text.push_str(": ");
        text.push_str(&e.to_string());
        next = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_server_errors_are_unavailable_other_statuses_no_proposal() {
        let body = r#"{"error":{"message":"Rate limit reached","type":"requests"}}"#;
        let err = status_error("p", StatusCode::TOO_MANY_REQUESTS, body);
        assert!(matches!(&err, LlmError::Unavailable(m) if m.contains("Rate limit reached")));
        assert!(matches!(
            status_error("p", StatusCode::BAD_GATEWAY, "<html>bad gateway</html>"),
            LlmError::Unavailable(_)
        ));
        let err = status_error(
            "p",
            StatusCode::UNAUTHORIZED,
            r#"{"error":{"message":"Incorrect API key provided"}}"#,
        );
        assert!(
            matches!(&err, LlmError::NoProposal(m) if m.contains("401") && m.contains("Incorrect API key")),
            "{err}"
        );
    }

    #[test]
    fn arguments_may_be_a_json_text_or_an_object() {
        let completion = |arguments: Value| Completion {
            choices: vec![Choice {
                message: ChoiceMessage {
                    content: None,
                    tool_calls: vec![ToolCall {
                        function: FunctionCall {
                            name: "propose_change".into(),
                            arguments,
                        },
                    }],
                },
                finish_reason: Some("stop".into()),
            }],
            usage: None,
        };
        let input = |arguments| tool_input("p", "propose_change", completion(arguments));
        let text = input(json!("{\"a\":1}")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text, (json!({"a": 1}), false));
        let object = input(json!({"a": 1})).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(object, (json!({"a": 1}), false));
        assert!(matches!(
            input(json!("{\"a\":")),
            Err(LlmError::InvalidAnswer(_))
        ));
        let other = tool_input("p", "draft_component", completion(json!({"a": 1})));
        assert!(
            matches!(&other, Err(LlmError::InvalidAnswer(m)) if m.contains("not draft_component")),
            "{other:?}"
        );
    }

    #[test]
    fn the_key_is_not_in_debug_output() {
        let config = OpenAiConfig {
            base_url: "http://x".into(),
            api_key: "sk-secret".into(),
            model: "m".into(),
            price: ModelPrice::new(1.0, 1.0),
        };
        assert!(!format!("{config:?}").contains("sk-secret"));
    }
}
