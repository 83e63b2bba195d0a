//! A new component as the LLM drafts it: files, runtime, handler and a SAM resource; the
//! request that asks for it, and the checks a draft passes before the code checker sees it.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ComponentPlan, ComponentRequest};
use crate::change::{FilePatch, RiskLevel};
use crate::code_policy::FindingSummary;
use crate::generate::{parse_tool_input, tool_input_schema};
use crate::ports::{CodeFinding, ForcedTool, LlmError, ToolRequest};
use crate::text::Excerpt;

/// The name of the tool the LLM is forced to call for a component.
pub const COMPONENT_TOOL_NAME: &str = "draft_component";

/// What the [`COMPONENT_TOOL_NAME`] tool is for, as the model reads it.
pub const COMPONENT_TOOL_DESCRIPTION: &str = "Write the complete source of ONE new AWS Lambda \
function that meets the requirements: its files, runtime, handler, an AWS::Serverless::Function \
resource for a SAM template, a short rationale and an honest risk level.";

/// Runtimes a draft may use: the ones whose code the checker reads and that ship without a build.
pub const KNOWN_RUNTIMES: [&str; 5] = [
    "python3.11",
    "python3.12",
    "python3.13",
    "nodejs20.x",
    "nodejs22.x",
];

/// The most files a draft may have.
pub const MAX_FILES: usize = 20;

/// The most bytes a draft's files may hold in all: the record, JSON-escaped with its findings,
/// must fit one DynamoDB item (400 KB).
pub const MAX_DRAFT_BYTES: usize = 128 * 1024;

/// The most characters of the request's description and context a prompt carries (each).
pub const MAX_REQUEST_CHARS: usize = 4000;

/// One file of a draft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DraftFile {
    /// Path inside the deployment package (`app.py`, `src/orders.mjs`).
    #[schemars(
        description = "The file's path inside the deployment package (`app.py`, `lib/orders.mjs`): relative, no `..`."
    )]
    pub path: String,
    /// The whole text of the file.
    #[schemars(description = "The complete text of the file.")]
    pub content: String,
}

/// A new component's code and deployment, as drafted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentDraft {
    /// Every file of the deployment package.
    #[schemars(
        description = "Every file of the deployment package, complete (no placeholders). Standard library and the runtime's AWS SDK only."
    )]
    pub files: Vec<DraftFile>,
    /// The Lambda runtime.
    #[schemars(extend("enum" = KNOWN_RUNTIMES))]
    pub runtime: String,
    /// The Lambda handler (`app.handler`: `app.py`'s `handler`).
    #[schemars(
        description = "The Lambda handler, `<file without extension>.<function>` (`app.handler` is `def handler(event, context)` in app.py; `index.handler` is `export const handler` in index.mjs)."
    )]
    pub handler: String,
    /// The YAML of one `AWS::Serverless::Function` resource.
    #[schemars(
        description = "YAML of ONE SAM resource: `<LogicalId>:` then `Type: AWS::Serverless::Function` and `Properties` with the same Handler and Runtime, MemorySize and Timeout within the specification, and least-privilege Policies (no `*` actions, no admin policies)."
    )]
    pub sam_resource: String,
    /// Why it is built this way, in a few sentences.
    pub rationale: String,
    /// How much harm it could do.
    pub claimed_risk: RiskLevel,
}

/// The JSON Schema of a draft: the input schema of the forced [`COMPONENT_TOOL_NAME`] call.
pub fn draft_schema() -> Value {
    static SCHEMA: LazyLock<Value> = LazyLock::new(tool_input_schema::<ComponentDraft>);
    SCHEMA.clone()
}

const SYSTEM_PROMPT: &str = "You write new AWS Lambda functions for a platform that runs them \
behind an operator's approval. Answer only through the draft_component tool, with ONE complete \
function:\n\
- the files of its deployment package, complete and runnable: standard library and the \
runtime's bundled AWS SDK only, no other dependencies;\n\
- a handler that exists in those files (`app.handler`: `def handler(event, context)` in app.py);\n\
- one AWS::Serverless::Function resource whose Handler and Runtime match, MemorySize and Timeout \
within the specification, and Policies granting only the listed permissions on named resources;\n\
- no credentials, tokens or keys in code or configuration (read them from Secrets Manager at \
run time), TLS verification never turned off, no eval or shell of input, input validated;\n\
- a claimed_risk that is honest.\n\
Build only what the requirements ask; never touch other components or other tenants' data.";

/// Rules the prompt lists beside the system prompt's.
const RULES: [&str; 6] = [
    "the handler must name a function defined in one of the files",
    "runtime is one of python3.11, python3.12, python3.13, nodejs20.x, nodejs22.x",
    "least privilege: only the permissions of the specification, on named resources",
    "no secrets in code, environment or template; TLS verification stays on",
    "log with structured fields; never log event payloads containing personal data",
    "at most 20 files and 128 KiB in all",
];

/// The request that asks the LLM for a draft of the accepted `plan`, within `budget_usd`.
/// The description and context are cut to [`MAX_REQUEST_CHARS`] each.
pub fn build_request(
    request: &ComponentRequest,
    plan: &ComponentPlan,
    tenant: Option<&str>,
    budget_usd: f64,
) -> ToolRequest {
    let context = request
        .context
        .as_ref()
        .map(|c| Value::Object(c.clone()).to_string());
    let prompt = json!({
        "task": "Write this new component.",
        "component_type": request.component_type.as_str(),
        "name": plan.name.as_str(),
        "description": cut(request.requirements.description.trim(), MAX_REQUEST_CHARS),
        "capabilities": plan.detail.get("capabilities"),
        "context": context.map(|c| cut(&c, MAX_REQUEST_CHARS)),
        "specification": plan.detail.get("specification"),
        "assessed_risk": plan.risk.as_str(),
        "rules": RULES,
        "tenant_id": tenant,
    });
    ToolRequest {
        system: SYSTEM_PROMPT.to_owned(),
        prompt: prompt.to_string(),
        tool: ForcedTool {
            name: COMPONENT_TOOL_NAME.to_owned(),
            description: COMPONENT_TOOL_DESCRIPTION.to_owned(),
            input_schema: draft_schema(),
        },
        subject: plan.name.as_str().to_owned(),
        budget_usd,
    }
}

/// At most `max` characters of `text`, with `…` when cut.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Parses the input of a forced [`COMPONENT_TOOL_NAME`] call; a mismatch is an
/// `InvalidAnswer` that starts with `provider` and names the field.
pub fn parse_draft(provider: &str, input: Value) -> Result<ComponentDraft, LlmError> {
    parse_tool_input(provider, COMPONENT_TOOL_NAME, "a component draft", input)
}

/// A blocking finding of rule `rule` about `path`.
fn blocking(rule: &str, path: &str, message: String) -> CodeFinding {
    CodeFinding {
        summary: FindingSummary {
            rule: rule.to_owned(),
            risk: RiskLevel::High,
            blocking: true,
        },
        path: path.to_owned(),
        line: 1,
        col: 1,
        message,
    }
}

/// The path of the SAM resource in findings.
pub const SAM_PATH: &str = "sam-resource.yaml";

/// What a draft gets wrong before its code is read: files (count, size, paths), runtime,
/// handler, and the SAM resource (YAML, type, handler and runtime, memory and timeout within
/// `plan`'s specification, no wildcard actions or admin policies). Every finding blocks.
pub fn check_draft(draft: &ComponentDraft, plan: &ComponentPlan) -> Vec<CodeFinding> {
    let mut findings = Vec::new();
    if !check_files(draft, &mut findings) {
        // Too large to read further.
        return findings;
    }
    if !KNOWN_RUNTIMES.contains(&draft.runtime.as_str()) {
        findings.push(blocking(
            "component_runtime",
            SAM_PATH,
            format!(
                "runtime {} is not one selfbuild ships ({})",
                Excerpt(&draft.runtime),
                KNOWN_RUNTIMES.join(", ")
            ),
        ));
    } else if let Err(message) = handler_defined(draft) {
        findings.push(blocking("component_handler", &draft.handler, message));
    }
    check_sam(draft, plan, &mut findings);
    findings
}

/// Checks the files; false when the draft is too large to read further.
fn check_files(draft: &ComponentDraft, findings: &mut Vec<CodeFinding>) -> bool {
    if draft.files.is_empty() || draft.files.len() > MAX_FILES {
        findings.push(blocking(
            "component_files",
            "",
            format!("{} files: a draft has 1–{MAX_FILES}", draft.files.len()),
        ));
    }
    let bytes: usize =
        draft.files.iter().map(|f| f.content.len()).sum::<usize>() + draft.sam_resource.len();
    if bytes > MAX_DRAFT_BYTES {
        findings.push(blocking(
            "component_files",
            "",
            format!("{bytes} bytes of files and SAM resource, over {MAX_DRAFT_BYTES}"),
        ));
        return false;
    }
    let mut seen = BTreeSet::new();
    for file in &draft.files {
        let path = file.path.as_str();
        let bad = path.is_empty()
            || path.starts_with('/')
            || path.contains('\\')
            || path.split('/').any(|part| part.is_empty() || part == "..")
            || path.chars().any(char::is_control);
        if bad {
            findings.push(blocking(
                "component_files",
                path,
                format!(
                    "{} is not a relative path inside the package",
                    Excerpt(path)
                ),
            ));
        } else if !seen.insert(path) {
            findings.push(blocking(
                "component_files",
                path,
                format!("{} appears twice", Excerpt(path)),
            ));
        }
    }
    true
}

/// `Ok` when the handler names a function defined in the file it points at.
fn handler_defined(draft: &ComponentDraft) -> Result<(), String> {
    let handler = draft.handler.as_str();
    let Some((module, function)) = handler.rsplit_once('.') else {
        return Err(format!(
            "handler {} is not `<file>.<function>`",
            Excerpt(handler)
        ));
    };
    let identifier = !function.is_empty()
        && function
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if module.is_empty() || !identifier {
        return Err(format!(
            "handler {} is not `<file>.<function>`",
            Excerpt(handler)
        ));
    }
    let python = draft.runtime.starts_with("python");
    let extensions: &[&str] = if python {
        &["py"]
    } else {
        &["mjs", "js", "cjs"]
    };
    let Some(file) = extensions.iter().find_map(|ext| {
        let path = format!("{module}.{ext}");
        draft.files.iter().find(|f| f.path == path)
    }) else {
        return Err(format!(
            "handler {}: no file {module}.{} in the draft",
            Excerpt(handler),
            extensions.join(" / .")
        ));
    };
    let defined = file.content.lines().any(|line| {
        let line = line.trim_start();
        if python {
            // Lambda calls the handler synchronously: `async def` would return a coroutine.
            line.starts_with(&format!("def {function}("))
        } else {
            [
                format!("export const {function} "),
                format!("export const {function}="),
                format!("export async function {function}("),
                format!("export function {function}("),
                format!("exports.{function} "),
                format!("exports.{function}="),
                format!("module.exports.{function} "),
            ]
            .iter()
            .any(|form| line.starts_with(form.as_str()))
                || (line.starts_with("export {") || line.starts_with("module.exports = {"))
                    && line.contains(function)
        }
    });
    if defined {
        Ok(())
    } else {
        Err(format!(
            "handler {}: {} defines no top-level function {function}",
            Excerpt(handler),
            file.path
        ))
    }
}

/// Managed policies a generated component never gets.
const ADMIN_POLICIES: [&str; 3] = ["AdministratorAccess", "PowerUserAccess", "IAMFullAccess"];

/// The string at `value`, if it is one.
fn text(value: Option<&serde_yaml_ng::Value>) -> Option<&str> {
    value.and_then(serde_yaml_ng::Value::as_str)
}

fn check_sam(draft: &ComponentDraft, plan: &ComponentPlan, findings: &mut Vec<CodeFinding>) {
    let mut sam = |message: String| findings.push(blocking("component_sam", SAM_PATH, message));
    let parsed: serde_yaml_ng::Value = match serde_yaml_ng::from_str(&draft.sam_resource) {
        Ok(value) => value,
        Err(e) => return sam(format!("the SAM resource is not YAML: {e}")),
    };
    // `Type` at the top, or under the one logical id.
    let resource = match parsed.get("Type") {
        Some(_) => &parsed,
        None => match parsed.as_mapping() {
            Some(map) if map.len() == 1 => map.values().next().unwrap_or(&parsed),
            _ => {
                return sam(
                    "the SAM resource is not one `<LogicalId>:` mapping with a Type".to_owned(),
                );
            }
        },
    };
    if text(resource.get("Type")) != Some("AWS::Serverless::Function") {
        return sam("the SAM resource's Type is not AWS::Serverless::Function".to_owned());
    }
    let properties = resource.get("Properties");
    let property = |name: &str| properties.and_then(|p| p.get(name));
    for (name, expected) in [
        ("Handler", draft.handler.as_str()),
        ("Runtime", draft.runtime.as_str()),
    ] {
        let found = text(property(name));
        if found != Some(expected) {
            sam(format!(
                "Properties.{name} is {}, the draft's is {}",
                found.map_or_else(|| "missing".to_owned(), |f| Excerpt(f).to_string()),
                Excerpt(expected)
            ));
        }
    }
    let specification = plan.detail.get("specification");
    for (name, limit) in [("MemorySize", "memory_mb"), ("Timeout", "timeout_seconds")] {
        let limit = specification
            .and_then(|s| s.get(limit))
            .and_then(Value::as_u64);
        let value = property(name).and_then(serde_yaml_ng::Value::as_u64);
        if let (Some(limit), Some(value)) = (limit, value)
            && value > limit
        {
            sam(format!(
                "Properties.{name} {value} is over the specification's {limit}"
            ));
        }
    }
    let mut wildcard = false;
    let mut admin = Vec::new();
    if let Some(policies) = property("Policies") {
        walk(policies, &mut |key, value| {
            if let Some(s) = value.as_str() {
                if key == Some("Action") && (s == "*" || s.ends_with(":*")) {
                    wildcard = true;
                }
                if let Some(p) = ADMIN_POLICIES.iter().find(|p| s.ends_with(*p)) {
                    admin.push(*p);
                }
            }
        });
    }
    if wildcard {
        sam("Policies grant a wildcard action (`*` or `service:*`): least privilege names each action".to_owned());
    }
    for policy in admin {
        sam(format!("Policies attach {policy}"));
    }
}

/// Calls `visit` with every scalar of `value` and the key it is under (items of a list are
/// under their list's key).
fn walk<'v>(
    value: &'v serde_yaml_ng::Value,
    visit: &mut impl FnMut(Option<&'v str>, &'v serde_yaml_ng::Value),
) {
    fn go<'v>(
        key: Option<&'v str>,
        value: &'v serde_yaml_ng::Value,
        visit: &mut impl FnMut(Option<&'v str>, &'v serde_yaml_ng::Value),
    ) {
        match value {
            serde_yaml_ng::Value::Mapping(map) => {
                for (k, v) in map {
                    go(k.as_str(), v, visit);
                }
            }
            serde_yaml_ng::Value::Sequence(items) => {
                for item in items {
                    go(key, item, visit);
                }
            }
            serde_yaml_ng::Value::Tagged(tagged) => go(key, &tagged.value, visit),
            scalar => visit(key, scalar),
        }
    }
    go(None, value, visit);
}

/// Each file of the draft, and its SAM resource, as a patch that creates it: what the code
/// checker reads. Empty files are left out (nothing to check).
pub fn as_new_files(draft: &ComponentDraft) -> Vec<FilePatch> {
    draft
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.content.as_str()))
        .chain([(SAM_PATH, draft.sam_resource.as_str())])
        .filter(|(_, content)| !content.is_empty())
        .map(|(path, content)| FilePatch {
            path: path.to_owned(),
            language: None,
            diff: creation_diff(path, content),
        })
        .collect()
}

/// A unified diff that creates `path` with `content` (a final newline added when missing).
fn creation_diff(path: &str, content: &str) -> String {
    let lines: Vec<&str> = content.lines().collect();
    let mut diff = format!(
        "--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{} @@\n",
        lines.len()
    );
    for line in lines {
        diff.push('+');
        diff.push_str(line);
        diff.push('\n');
    }
    diff
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::component::{ComponentDecision, ComponentType, Conditions, Requirements, decide};

    pub(crate) fn request(description: &str) -> ComponentRequest {
        ComponentRequest {
            component_type: ComponentType::EventConsumer,
            requirements: Requirements {
                name: "orders-summary".into(),
                description: description.into(),
                capabilities: vec!["read_dynamodb".into(), "payment_refund".into()],
            },
            context: Some(
                json!({"traffic": "50/min", "notes": "n".repeat(50_000)})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        }
    }

    pub(crate) fn plan(request: &ComponentRequest) -> ComponentPlan {
        let open = Conditions {
            enabled: true,
            halted: None,
            running_cycles: 0,
            capacity: 3,
        };
        match decide(request, &open) {
            ComponentDecision::Accepted(plan) => plan,
            ComponentDecision::Declined { reason, .. } => panic!("declined: {reason}"),
        }
    }

    /// A draft that passes every check: app.py's handler, python3.12, a matching resource.
    pub(crate) fn good_draft() -> ComponentDraft {
        ComponentDraft {
            files: vec![DraftFile {
                path: "app.py".into(),
                content: "import json\n\n\ndef handler(event, context):\n    return {\"ok\": True, \"count\": len(event.get(\"Records\", []))}\n".into(),
            }],
            runtime: "python3.12".into(),
            handler: "app.handler".into(),
            sam_resource: "OrdersSummary:\n  Type: AWS::Serverless::Function\n  Properties:\n    Handler: app.handler\n    Runtime: python3.12\n    MemorySize: 256\n    Timeout: 30\n    Policies:\n      - DynamoDBReadPolicy:\n          TableName: !Ref OrdersTable\n".into(),
            rationale: "Counts the records of each batch.".into(),
            claimed_risk: RiskLevel::Medium,
        }
    }

    fn rules(draft: &ComponentDraft) -> Vec<String> {
        let request = request("Consumes order events and writes a summary row");
        check_draft(draft, &plan(&request))
            .into_iter()
            .map(|f| format!("{}: {}", f.summary.rule, f.message))
            .collect()
    }

    #[test]
    fn the_schema_is_self_contained_and_names_the_known_runtimes() {
        let schema = draft_schema();
        let text = schema.to_string();
        assert!(!text.contains("$ref") && !text.contains("$defs"), "{text}");
        assert_eq!(schema["type"], "object");
        assert_eq!(
            schema["properties"]["runtime"]["enum"],
            json!(KNOWN_RUNTIMES)
        );
        let required = schema["required"].as_array().expect("required");
        for field in [
            "files",
            "runtime",
            "handler",
            "sam_resource",
            "claimed_risk",
        ] {
            assert!(required.contains(&json!(field)), "{field} required");
        }
        // The schema describes what parse_draft accepts.
        let input = serde_json::to_value(good_draft()).expect("json");
        assert_eq!(parse_draft("p", input).expect("parsed"), good_draft());
    }

    #[test]
    fn the_prompt_stays_within_its_budget_whatever_the_request_carries() {
        let long = "Consumes order events and writes a summary row. ".repeat(2000);
        let request = request(&long);
        let tool = build_request(&request, &plan(&request), Some("acme"), 1.0);
        let prompt: Value = serde_json::from_str(&tool.prompt).expect("prompt is JSON");
        assert_eq!(prompt["name"], "orders-summary");
        assert_eq!(prompt["specification"]["memory_mb"], 256);
        assert_eq!(prompt["tenant_id"], "acme");
        // Description and context are cut to MAX_REQUEST_CHARS each; the rest is fixed text.
        let chars = tool.prompt.chars().count();
        assert!(chars < 2 * MAX_REQUEST_CHARS + 3000, "{chars} characters");
        assert_eq!(tool.tool.name, COMPONENT_TOOL_NAME);
        assert_eq!(tool.subject, "orders-summary");
    }

    #[test]
    fn a_good_draft_has_no_findings() {
        assert_eq!(rules(&good_draft()), Vec::<String>::new());
    }

    #[test]
    fn a_handler_missing_from_the_files_blocks() {
        let mut draft = good_draft();
        draft.handler = "main.handler".into();
        draft.sam_resource = draft.sam_resource.replace("app.handler", "main.handler");
        let found = rules(&draft);
        assert!(
            found.len() == 1
                && found[0].starts_with("component_handler: ")
                && found[0].contains("no file main.py"),
            "{found:?}"
        );
        let mut draft = good_draft();
        draft.files[0].content = "def other(event, context):\n    return 1\n".into();
        let found = rules(&draft);
        assert!(
            found[0].contains("defines no top-level function handler"),
            "{found:?}"
        );
    }

    #[test]
    fn an_unknown_runtime_blocks() {
        let mut draft = good_draft();
        draft.runtime = "python2.7".into();
        draft.sam_resource = draft.sam_resource.replace("python3.12", "python2.7");
        let found = rules(&draft);
        assert!(
            found.len() == 1 && found[0].starts_with("component_runtime: runtime \"python2.7\""),
            "{found:?}"
        );
    }

    #[test]
    fn a_bad_sam_resource_blocks() {
        let with = |sam: &str| {
            let mut draft = good_draft();
            draft.sam_resource = sam.into();
            rules(&draft)
        };
        assert!(with("a: [unclosed")[0].contains("is not YAML"));
        assert!(
            with("Fn:\n  Type: AWS::Serverless::Api\n")[0]
                .contains("Type is not AWS::Serverless::Function")
        );
        let mismatch = with(
            "Fn:\n  Type: AWS::Serverless::Function\n  Properties:\n    Handler: index.handler\n    Runtime: python3.12\n",
        );
        assert!(
            mismatch.len() == 1 && mismatch[0].contains("Properties.Handler is \"index.handler\""),
            "{mismatch:?}"
        );
        let greedy = with(
            "Fn:\n  Type: AWS::Serverless::Function\n  Properties:\n    Handler: app.handler\n    Runtime: python3.12\n    MemorySize: 10240\n    Policies:\n      - Statement:\n          - Effect: Allow\n            Action: ['dynamodb:*']\n            Resource: '*'\n      - arn:aws:iam::aws:policy/AdministratorAccess\n",
        );
        assert_eq!(greedy.len(), 3, "{greedy:?}");
        assert!(greedy[0].contains("MemorySize 10240 is over the specification's 256"));
        assert!(greedy[1].contains("wildcard action"));
        assert!(greedy[2].contains("AdministratorAccess"));
    }

    #[test]
    fn paths_outside_the_package_and_duplicates_block() {
        let mut draft = good_draft();
        let file = draft.files[0].clone();
        draft.files.push(file);
        draft.files.push(DraftFile {
            path: "../etc/passwd".into(),
            content: "x".into(),
        });
        let found = rules(&draft);
        assert!(
            found.iter().any(|f| f.contains("appears twice")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|f| f.contains("not a relative path")),
            "{found:?}"
        );
    }

    #[test]
    fn new_files_are_creation_diffs_with_every_line_added() {
        let patches = as_new_files(&good_draft());
        assert_eq!(patches.len(), 2);
        assert_eq!(patches[0].path, "app.py");
        assert!(
            patches[0]
                .diff
                .starts_with("--- /dev/null\n+++ b/app.py\n@@ -0,0 +1,5 @@\n+import json\n")
        );
        assert!(crate::change::code_patch::creates_file(&patches[0].diff));
        assert_eq!(patches[1].path, SAM_PATH);
    }
}
