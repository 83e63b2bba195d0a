//! The MCP server handler: `initialize`/`server/discover` info, `tools/list`, and `tools/call`
//! with the per-key rate limit, dispatch and the access log.

use std::borrow::Cow;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListToolsResult,
    PaginatedRequestParams, ProtocolVersion, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use selfbuild_core::apikeys::ApiKey;
use selfbuild_core::records::ToolCallEvent;
use selfbuild_core::text::Excerpt;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tracing::info;

use crate::McpDeps;
use crate::guard::Caller;
use crate::rate_limit::{RateLimiter, Refused};
use crate::tools::{DEFINITIONS, StatusCache, ToolContext, ToolError, ToolName};

/// The protocol revisions served: the three with `initialize` and the stateless 2026 form.
const PROTOCOL_VERSIONS: &[ProtocolVersion] = &[
    ProtocolVersion::V_2025_03_26,
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
    ProtocolVersion::V_2026_07_28,
];

/// One handler per request (the transport is stateless); cloning shares the ports.
#[derive(Clone)]
pub struct SelfbuildMcp {
    deps: Arc<McpDeps>,
    limiter: RateLimiter,
    status: Arc<StatusCache>,
    /// Who calls over a transport without HTTP (stdio): the one local caller.
    local_caller: Option<ApiKey>,
}

impl SelfbuildMcp {
    /// A handler over `deps`, limited by `limiter`.
    pub fn new(deps: Arc<McpDeps>, limiter: RateLimiter) -> Self {
        Self {
            deps,
            limiter,
            status: Arc::new(StatusCache::default()),
            local_caller: None,
        }
    }

    /// The handler of a transport without HTTP (stdio), where every request is `caller`'s.
    #[must_use]
    pub fn for_local_caller(mut self, caller: ApiKey) -> Self {
        self.local_caller = Some(caller);
        self
    }

    /// The request's caller: the key the HTTP guard authenticated, else the local caller.
    fn caller(&self, context: &RequestContext<RoleServer>) -> Result<ApiKey, ErrorData> {
        context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Caller>())
            .map(|c| c.0.clone())
            .or_else(|| self.local_caller.clone())
            .ok_or_else(|| {
                ErrorData::internal_error("request reached the handler unauthenticated", None)
            })
    }

    /// Counts the call against the key's fixed one-minute window (in memory: see
    /// [`crate::rate_limit`]).
    async fn check_rate(&self, key: &ApiKey, now: OffsetDateTime) -> Result<(), ToolError> {
        match self.limiter.admit(&key.id, now).await? {
            Ok(()) => Ok(()),
            Err(Refused { count, retry_after }) => Err(ToolError::RateLimited(format!(
                "API key {:?} made {count} calls this minute, over its limit of {} per minute; retry after {retry_after} s",
                key.id, self.deps.settings.rate_limit_per_minute
            ))),
        }
    }

    async fn run_tool(
        &self,
        key: &ApiKey,
        tool: ToolName,
        arguments: Value,
        now: OffsetDateTime,
    ) -> Result<Value, ToolError> {
        self.check_rate(key, now).await?;
        let ctx = ToolContext {
            deps: &self.deps,
            key,
            now,
            status_cache: &self.status,
        };
        let result = tool.call(&ctx, arguments).await;
        if result.is_ok() && !tool.spec().read_only {
            // What the status shows may have changed: the next status call reads it again.
            self.status.invalidate();
        }
        result
    }
}

/// Hands one `tools/call` to the access log; the call never waits for its entry to be
/// stored, and a failed write is the sink's to report, never the caller's problem (the
/// answer is already decided).
pub(crate) fn log_tool_call(
    deps: &McpDeps,
    key: &ApiKey,
    tool: String,
    outcome: &str,
    detail: String,
    at: OffsetDateTime,
) {
    // The tool name is the caller's text when no tool has it.
    info!(key = ?key.id, tool = %Excerpt(&tool), outcome, "tool called");
    deps.access_log.record(ToolCallEvent {
        at,
        key_id: key.id.clone(),
        tenant_id: key.tenant.tenant().cloned(),
        tool,
        outcome: outcome.to_owned(),
        detail,
    });
}

impl ServerHandler for SelfbuildMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("selfbuild", env!("CARGO_PKG_VERSION"))
                    .with_title("selfbuild improvement loop"),
            )
            .with_instructions(
                "selfbuild watches AWS Lambda services, proposes fixes with an LLM, validates \
them, ships them as canaries and rolls them back when they hurt. Start with \
get_system_status or query_telemetry_insights; trigger_improvement_cycle starts a cycle; \
changes that need a human wait in list_improvements(status=awaiting_approval).",
            )
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(PROTOCOL_VERSIONS)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        // The definitions are built once; building one means generating its schema.
        DEFINITIONS.iter().find(|t| t.name == name).cloned()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(DEFINITIONS.clone()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let key = self.caller(&context)?;
        self.call_as(&key, request).await
    }
}

impl SelfbuildMcp {
    /// `tools/call` as `key`: the rate limit, the tool and the access log (rmcp's dispatch
    /// and [`crate::direct`] both come here).
    pub(crate) async fn call_as(
        &self,
        key: &ApiKey,
        request: CallToolRequestParams,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        let now = self.deps.clock.now();
        let Some(tool) = ToolName::parse(&name) else {
            let message = format!("unknown tool {name:?}; tools/list names the tools");
            log_tool_call(&self.deps, key, name, "error", message.clone(), now);
            // JSON-RPC invalid params, as MCP specifies for unknown tools.
            return Err(ErrorData::invalid_params(message, None));
        };
        let arguments = request.arguments.map_or(Value::Null, Value::Object);
        let outcome = self.run_tool(key, tool, arguments, now).await;
        let (result, outcome_name, detail) = match outcome {
            Ok(value) => (CallToolResult::structured(value), "ok", String::new()),
            Err(e) => {
                let kind = match &e {
                    ToolError::RateLimited(_) => "rate_limited",
                    ToolError::Forbidden(_) => "denied",
                    _ => "error",
                };
                let body = json!({"error": e.kind(), "message": e.to_string()});
                (CallToolResult::structured_error(body), kind, e.to_string())
            }
        };
        log_tool_call(&self.deps, key, name, outcome_name, detail, now);
        Ok(CallToolResponse::Complete(result))
    }
}
