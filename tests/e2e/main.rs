//! End to end on real tools: alarm events go into the real `alarm-intake` binary, which
//! starts executions of the real state machine definition on moto's Step Functions engine;
//! their Lambda tasks reach the real step binaries under `cargo lambda watch` through the
//! router; the binaries use DynamoDB, CloudWatch, Logs, Lambda, Secrets Manager and
//! EventBridge on moto, Bedrock on a recorded listener (one recording per cycle, picked by
//! the component the request names) and deployment packages on a local stand-in for the
//! `Code.Location` host (`CODE_PACKAGE_ENDPOINT_URL`). At the end: each execution, its audit
//! trail and improvement record in DynamoDB, the alias and version 2 on moto's Lambda, and
//! (for the config cycle) the `mcp` function answering through cargo-lambda's function URL
//! emulation.
//!
//! Not part of `cargo test --workspace` (the target has `test = false`): `scripts/e2e` builds
//! the function binaries and runs `cargo test -p selfbuild-tests --test e2e`. It needs
//! `moto_server` (moto[server] 5.2.6) and cargo-lambda 1.9.2, and fails naming the install
//! command when either is missing.
//!
//! Two cycles run at once, both acme's (a tenant, so a LOW-risk change deploys itself), each
//! a [`Case`] started by its own alarm on its own [`Stack`] (moto, router, watches), so the
//! cases share nothing but Bedrock's recorded listener (moto before 5.2.6 could also start only
//! one execution per process).
//!
//! - **config**: `orders-api` (provided.al2023, 128 MB, 3 s, version 1 behind `live`) served
//!   1,000 invocations a minute with 50 errors, all "Task timed out", for the last 8 minutes.
//!   Bedrock answers with the recorded `propose_change` (timeout 10 s, memory 512 MB).
//! - **code**: `billing-api` (python3.12, `app.handler` in a zip holding `app.py`) has the same
//!   rates, its errors a `KeyError: 'customer_id'` raised in `app.py` line 6, logged as the
//!   Python runtime writes an uncaught error (one event, the traceback's lines joined with
//!   `\r`). Bedrock answers with a recorded `code_patch` (`order.get("customer_id")`); the
//!   validate binary reads `app.py` from the package and checks the patch, the deploy binary
//!   patches the zip and publishes it as version 2 (`UpdateFunctionCode`, `PublishVersion`).
//!
//! Once a canary (version 2) is routed, the test publishes its per-version metrics in three
//! one-minute buckets, equally healthy for both versions, so the monitor finds it healthy when
//! its window ends and the canary is promoted. moto cannot compute `p99` (it answers 500 when
//! Duration data matches), so no Duration metric is published and p99 stays empty.
//!
//! What moto 5.2.6 cannot show here, and the test works around in its set-up only: it keeps no
//! package a client can download (`Code.Location` names an S3 host that does not exist), so
//! [`MotoPackages`] serves the zips the test hands it, by the `CodeSha256` moto reports for
//! the requested location; the patched zip is computed with the deploy step's own
//! `patch_package` and served only because its hash is the one moto reports for version 2.
//! moto ignores `RevisionId` on `UpdateFunctionCode` and `CodeSha256` on `PublishVersion`, and
//! gives every version the location of the latest upload (one code record for all): the
//! deployer's refusals of code changed under it are not exercised here;
//! `selfbuild_aws::lambda_deployer`'s unit tests check them with a mocked client.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{AliasRoutingConfiguration, FunctionCode, Runtime};
use selfbuild_aws::dynamo::DynamoStore;
use selfbuild_aws::lambda_code::files_in_package;
use selfbuild_aws::lambda_code::rewrite::patch_package;
use selfbuild_core::apikeys::key_digest_hex;
use selfbuild_core::change::{Change, Proposal, RiskLevel};
use selfbuild_core::deployment::CodeVersion;
use selfbuild_core::generate::parse_proposal;
use selfbuild_core::ids::{CycleId, ImprovementId};
use selfbuild_core::ports::{AuditLog, ImprovementStore};
use selfbuild_core::records::ImprovementStatus;
use selfbuild_core::steps::StepFunction;
use selfbuild_local::cycle::{DEFINITION, substitutions};
use selfbuild_tests::cargo_lambda::{CargoLambdaWatch, require_cargo_lambda, workspace_root};
use selfbuild_tests::events::load;
use selfbuild_tests::lambda_fixture::{create_role, stored_zip};
use selfbuild_tests::lambda_router::{InvokeFn, InvokeResult, LambdaRouter, forward_invocations};
use selfbuild_tests::moto::MotoServer;
use selfbuild_tests::package_host::{MotoPackages, location_path};
use selfbuild_tests::recorded::{RecordedServer, Route};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const ARN_PREFIX: &str = "arn:aws:lambda:us-east-1:123456789012:function:";
const TENANT: &str = "acme";
const TABLE: &str = "selfbuild-e2e";
const STATE_MACHINE: &str = "selfbuild-e2e-improvement-cycle";
const KEYS_SECRET: &str = "selfbuild-e2e/api-keys";
const API_KEY: &str = "e2e-key-not-secret";
const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
/// Long enough for three one-minute buckets of canary metrics (the monitor's minimum sample).
const MONITOR_WINDOW_SECONDS: i64 = 150;
/// The longest an execution may run.
const EXECUTION_DEADLINE: Duration = Duration::from_secs(300);
/// The longest an MCP request may take.
const MCP_DEADLINE: Duration = Duration::from_secs(60);

/// billing-api's handler as deployed: line 6 raises `KeyError` on an order without a customer.
const BILLING_APP_PY: &str = r#"import json


def handler(event, context):
    order = json.loads(event["body"])
    customer = order["customer_id"]
    total = sum(line["qty"] * line["unit_price"] for line in order["lines"])
    return {
        "statusCode": 200,
        "body": json.dumps({"customer": customer, "total": total}),
    }
"#;

/// What a cycle changes, as the run checks it on version 2.
enum Fix {
    /// A `lambda_config` change: version 2 has these settings.
    Config {
        memory_mb: i32,
        timeout_seconds: i32,
    },
    /// A `code_patch`: version 2's package has `file` with `line` in it, the settings unchanged.
    Code {
        file: &'static str,
        line: &'static str,
    },
}

/// One improvement cycle of the run: its target on moto's Lambda, its incident and alarm, the
/// recorded Bedrock answer, and the outcome it must end in.
struct Case {
    /// `config` or `code`, for messages.
    name: &'static str,
    /// The function (the component).
    target: &'static str,
    runtime: Runtime,
    handler: &'static str,
    /// The one file of its zip: name and contents.
    file: (&'static str, &'static str),
    memory_mb: i32,
    timeout_seconds: i32,
    /// One failed invocation's log event at `when`, as Lambda writes it.
    error_log: fn(OffsetDateTime, &str) -> String,
    /// The recorded Converse answer (under `shared/aws/tests/recorded/`).
    recording: &'static str,
    /// The opportunity analysis must rank first, validation's risk, and the record's change.
    opportunity: &'static str,
    risk: RiskLevel,
    change: &'static str,
    fix: Fix,
}

impl Case {
    /// orders-api times out: more time and memory fix it.
    fn config() -> Self {
        Self {
            name: "config",
            target: "orders-api",
            runtime: Runtime::Providedal2023,
            handler: "bootstrap",
            file: ("bootstrap", "#!/bin/sh\necho '{}'\n"),
            memory_mb: 128,
            timeout_seconds: 3,
            error_log: |when, id| {
                format!("{} {id} Task timed out after 3.00 seconds", rfc3339(when))
            },
            recording: "bedrock-converse-tool-use.json",
            opportunity: "orders-api:timeouts",
            risk: RiskLevel::Low,
            change: "orders-api: timeout 3→10 s, memory 128→512 MB",
            fix: Fix::Config {
                memory_mb: 512,
                timeout_seconds: 10,
            },
        }
    }

    /// billing-api raises `KeyError: 'customer_id'`: a one-line code patch fixes it.
    fn code() -> Self {
        Self {
            name: "code",
            target: "billing-api",
            runtime: Runtime::Python312,
            handler: "app.handler",
            file: ("app.py", BILLING_APP_PY),
            memory_mb: 256,
            timeout_seconds: 6,
            // The Python runtime's record of an uncaught error: one event, lines joined by `\r`.
            error_log: |_, _| {
                [
                    "[ERROR] KeyError: 'customer_id'",
                    "Traceback (most recent call last):",
                    "  File \"/var/task/app.py\", line 6, in handler",
                    "    customer = order[\"customer_id\"]",
                ]
                .join("\r")
            },
            recording: "bedrock-converse-code-patch.json",
            opportunity: "billing-api:error_burst",
            risk: RiskLevel::Low,
            change: "billing-api: patch app.py",
            fix: Fix::Code {
                file: "app.py",
                line: "    customer = order.get(\"customer_id\")\n",
            },
        }
    }

    fn recording_path(&self) -> PathBuf {
        workspace_root()
            .join("shared/aws/tests/recorded")
            .join(self.recording)
    }

    /// The proposal the recording answers with.
    fn recorded_proposal(&self) -> Proposal {
        let text = std::fs::read_to_string(self.recording_path()).unwrap();
        let recorded: Value = serde_json::from_str(&text).unwrap();
        let input = recorded["body"]["output"]["message"]["content"][0]["toolUse"]["input"].clone();
        parse_proposal("recorded", input).unwrap()
    }

    /// The deployed package.
    fn zip(&self) -> Vec<u8> {
        stored_zip(self.file.0, self.file.1.as_bytes())
    }

    /// The target on moto's Lambda, version 1 behind the alias `live`.
    async fn create_target(&self, moto: &MotoServer, lambda: &aws_sdk_lambda::Client) {
        let role = create_role(moto, &format!("{}-role", self.target)).await;
        lambda
            .create_function()
            .function_name(self.target)
            .runtime(self.runtime.clone())
            .handler(self.handler)
            .role(role)
            .code(
                FunctionCode::builder()
                    .zip_file(Blob::new(self.zip()))
                    .build(),
            )
            .memory_size(self.memory_mb)
            .timeout(self.timeout_seconds)
            .send()
            .await
            .unwrap();
        let version = lambda
            .publish_version()
            .function_name(self.target)
            .send()
            .await
            .unwrap();
        lambda
            .create_alias()
            .function_name(self.target)
            .name("live")
            .function_version(version.version().unwrap())
            .send()
            .await
            .unwrap();
    }

    /// The last 8 minutes of the target: 1,000 invocations and 50 errors a minute, and three
    /// failed invocations' log events a minute.
    async fn publish_incident(&self, sdk: &aws_config::SdkConfig, now: OffsetDateTime) {
        let cloudwatch = aws_sdk_cloudwatch::Client::new(sdk);
        let logs = aws_sdk_cloudwatchlogs::Client::new(sdk);
        let function = [("FunctionName", self.target)];
        let group = format!("/aws/lambda/{}", self.target);
        let stream = "2026/11/22/[1]e2e";
        logs.create_log_group()
            .log_group_name(&group)
            .send()
            .await
            .unwrap();
        logs.create_log_stream()
            .log_group_name(&group)
            .log_stream_name(stream)
            .send()
            .await
            .unwrap();
        let mut lines = Vec::new();
        for minute in (1..=8).rev() {
            let at = now - time::Duration::minutes(minute);
            put_metric(&cloudwatch, "Invocations", &function, at, 1000.0).await;
            put_metric(&cloudwatch, "Errors", &function, at, 50.0).await;
            for second in [5, 25, 45] {
                let when = at + time::Duration::seconds(second);
                lines.push(
                    InputLogEvent::builder()
                        .timestamp(i64::try_from(when.unix_timestamp_nanos() / 1_000_000).unwrap())
                        .message((self.error_log)(when, &format!("e2e-{minute}-{second}")))
                        .build()
                        .unwrap(),
                );
            }
        }
        logs.put_log_events()
            .log_group_name(&group)
            .log_stream_name(stream)
            .set_log_events(Some(lines))
            .send()
            .await
            .unwrap();
    }

    /// `events/alarm-tenant-metric.json` (acme's orders-api) as of `at`, about this target.
    fn alarm_event(&self, at: OffsetDateTime) -> Value {
        let mut event = load("alarm-tenant-metric.json");
        let alarm = format!("{TENANT}/{}/HighErrorRate", self.target);
        event["time"] = json!(rfc3339(at.replace_nanosecond(0).unwrap()));
        event["resources"] = json!([format!(
            "arn:aws:cloudwatch:us-east-1:123456789012:alarm:{alarm}"
        )]);
        event["detail"]["alarmName"] = json!(alarm);
        event["detail"]["state"]["timestamp"] = json!(rfc3339(at));
        let metric = &mut event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"];
        metric["dimensions"]["FunctionName"] = json!(self.target);
        event
    }
}

/// A cycle intake started.
struct Started {
    cycle_id: String,
    execution: String,
    at: Instant,
}

/// A cycle's execution once it stopped running.
struct Finished {
    status: String,
    output: Value,
    entered: Vec<String>,
    took: Duration,
}

/// One invocation the router sent on.
struct Call {
    function: String,
    payload: Value,
    result: InvokeResult,
    took: Duration,
}

/// Keeps every invocation (for the failure report and `SELFBUILD_E2E_CAPTURE`).
fn recording(inner: InvokeFn, calls: Arc<Mutex<Vec<Call>>>) -> InvokeFn {
    Arc::new(move |function, payload| {
        let (inner, calls) = (Arc::clone(&inner), Arc::clone(&calls));
        Box::pin(async move {
            let started = Instant::now();
            let result = inner(function.clone(), payload.clone()).await;
            calls.lock().unwrap().push(Call {
                function,
                payload,
                result: result.clone(),
                took: started.elapsed(),
            });
            result
        })
    })
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

fn smithy_time(at: OffsetDateTime) -> DateTime {
    DateTime::from_millis(i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap())
}

/// Everything the test started, for the failure report.
struct World {
    watches: Vec<CargoLambdaWatch>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl World {
    fn watch(&self, package: &str) -> &CargoLambdaWatch {
        self.watches.iter().find(|w| w.package == package).unwrap()
    }

    /// The invocations so far and every watch's log tail.
    fn report(&self) -> String {
        let mut text = String::from("invocations through the router:\n");
        for c in self.calls.lock().unwrap().iter() {
            let outcome = match &c.result {
                Ok(_) => "ok".to_owned(),
                Err((t, m)) => format!("{t}: {m}"),
            };
            let action = c.payload["action"].as_str().unwrap_or("-");
            text.push_str(&format!(
                "  {} ({action}) {:?}: {outcome}\n",
                c.function, c.took
            ));
        }
        for w in &self.watches {
            text.push_str(&format!(
                "\n--- cargo lambda watch -p {} ---\n{}\n",
                w.package,
                w.log_tail(25)
            ));
        }
        text
    }
}

/// One case's own moto (the cases share no state; moto 5.2.1 also ran only one execution per
/// process: a second one deep-copied the backend, running execution and its lock included, and
/// failed), with the router, the real binaries, the table, the target and the state machine; Bedrock is shared.
struct Stack {
    sdk: aws_config::SdkConfig,
    lambda: aws_sdk_lambda::Client,
    sfn: aws_sdk_sfn::Client,
    store: DynamoStore,
    state_machine: String,
    packages: MotoPackages,
    world: World,
    serving: tokio::task::JoinHandle<()>,
    /// Kept running until the stack is dropped.
    _moto: MotoServer,
}

impl Stack {
    /// Everything `case` needs, its functions started and warm.
    async fn start(case: &Case, bedrock_url: &str) -> Self {
        // moto, with its Step Functions engine calling Lambda through the router.
        let router = LambdaRouter::bind().await;
        let router_port = router.port;
        let moto = MotoServer::start_with_env(&[("MOTO_PORT", router_port.to_string())]);
        moto.control(
            "/moto-api/config",
            r#"{"stepfunctions":{"execute_state_machine":true}}"#,
        );
        let sdk = moto.sdk_config().await;
        let store = DynamoStore::new(&sdk, TABLE);
        store.create_table().await.unwrap();
        let lambda = aws_sdk_lambda::Client::new(&sdk);
        let sfn = aws_sdk_sfn::Client::new(&sdk);
        case.create_target(&moto, &lambda).await;
        case.publish_incident(&sdk, OffsetDateTime::now_utc()).await;
        let packages = MotoPackages::start(lambda.clone()).await;
        packages.add(case.zip());
        // The package a code patch ships is servable once moto reports its hash (and the
        // recorded patch must apply to the zip: checked here first).
        if let Change::CodePatch { files, .. } = &case.recorded_proposal().change {
            packages.add(patch_package(&case.zip(), files).unwrap().zip);
        }
        aws_sdk_secretsmanager::Client::new(&sdk)
            .create_secret()
            .name(KEYS_SECRET)
            .secret_string(
                json!({"keys": [{"id": "e2e", "sha256": key_digest_hex(API_KEY), "tenant": "*",
                                 "scopes": ["read"]}]})
                .to_string(),
            )
            .send()
            .await
            .unwrap();
        let definition = substitutions(ARN_PREFIX)
            .into_iter()
            .fold(DEFINITION.to_owned(), |text, (key, arn)| {
                text.replace(&format!("${{{key}}}"), &arn)
            });
        let state_machine = sfn
            .create_state_machine()
            .name(STATE_MACHINE)
            .role_arn("arn:aws:iam::123456789012:role/selfbuild-state-machine")
            .definition(definition)
            .send()
            .await
            .unwrap()
            .state_machine_arn;

        // The real binaries, one `cargo lambda watch` each, configured like the template does.
        let env: Vec<(String, String)> = [
            ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
            ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", bedrock_url),
            ("CODE_PACKAGE_ENDPOINT_URL", packages.url.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("TABLE_NAME", TABLE),
            ("STATE_MACHINE_ARN", state_machine.as_str()),
            ("EVENT_BUS_NAME", "default"),
            ("BEDROCK_MODEL_ID", MODEL),
            ("ENABLE_AUTONOMOUS_IMPROVEMENTS", "true"),
            ("EMERGENCY_WINDOW_MINUTES", "10"),
            (
                "MONITOR_WINDOW_SECONDS",
                &MONITOR_WINDOW_SECONDS.to_string(),
            ),
            ("MONITOR_INTERVAL_SECONDS", "10"),
            ("LOW_TRAFFIC_INVOCATIONS_PER_MINUTE", "1000000"),
            ("API_KEYS_SECRET_ID", KEYS_SECRET),
            ("RUST_LOG", "info"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let functions: Vec<&str> = ["alarm-intake", "mcp"]
            .into_iter()
            .chain(StepFunction::ALL.iter().map(|f| f.name()))
            .collect();
        let world = World {
            watches: functions
                .iter()
                .map(|p| CargoLambdaWatch::start(p, &env))
                .collect(),
            calls: Arc::new(Mutex::new(Vec::new())),
        };
        let targets: BTreeMap<String, std::net::SocketAddr> = world
            .watches
            .iter()
            .map(|w| (w.package.clone(), w.addr))
            .collect();
        let upstream = moto.endpoint.trim_start_matches("http://").parse().unwrap();
        let serving = router.serve(
            upstream,
            recording(forward_invocations(targets), Arc::clone(&world.calls)),
        );

        // Every function starts (a build if the binary is stale) and its errors come back the
        // way Lambda reports them: through the router, as the SDK (and moto's engine) read them.
        let router_sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(format!("http://127.0.0.1:{router_port}"))
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(
                    aws_credential_types::Credentials::new("testing", "testing", None, None, "e2e"),
                ),
            )
            .build();
        let via_router = aws_sdk_lambda::Client::new(&router_sdk);
        for function in functions.iter().filter(|p| **p != "mcp") {
            let answer = via_router
                .invoke()
                .function_name(format!("{ARN_PREFIX}{function}"))
                .payload(Blob::new("{}"))
                .send()
                .await
                .unwrap_or_else(|e| panic!("invoking {function}: {e:?}\n{}", world.report()));
            let payload: Value =
                serde_json::from_slice(answer.payload().unwrap().as_ref()).unwrap();
            let expected = if *function == "alarm-intake" {
                "InvalidEvent"
            } else {
                "InvalidInput"
            };
            assert_eq!(
                (answer.function_error(), payload["errorType"].as_str()),
                (Some("Unhandled"), Some(expected)),
                "{function} on an empty payload: {payload}\n{}",
                world.report()
            );
        }
        Self {
            sdk,
            lambda,
            sfn,
            store,
            state_machine,
            packages,
            world,
            serving,
            _moto: moto,
        }
    }

    /// The case's alarm, as of now, into alarm-intake with `cargo lambda invoke`.
    fn alarm(&self, case: &Case, dir: &std::path::Path) -> Started {
        let event_file = dir.join(format!("alarm-{}.json", case.name));
        std::fs::write(
            &event_file,
            case.alarm_event(OffsetDateTime::now_utc()).to_string(),
        )
        .unwrap();
        let at = Instant::now();
        let output = self.world.watch("alarm-intake").invoke_cli(&event_file);
        assert!(
            output.status.success(),
            "cargo lambda invoke alarm-intake ({}) failed: {}\n{}",
            case.name,
            String::from_utf8_lossy(&output.stderr),
            self.world.report()
        );
        let intake: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("intake printed no JSON ({e}): {output:?}"));
        assert_eq!(
            (intake["decision"].as_str(), intake["mode"].as_str()),
            (Some("started"), Some("emergency")),
            "{}: {intake:#}",
            case.name
        );
        assert_eq!(intake["tenant_id"], TENANT, "{intake:#}");
        let cycle_id = intake["cycle_id"].as_str().unwrap().to_owned();
        let execution = format!(
            "{}:{cycle_id}",
            self.state_machine.replace(":stateMachine:", ":execution:")
        );
        Started {
            cycle_id,
            execution,
            at,
        }
    }

    /// Waits for the execution to stop; once the case's canary is routed, publishes its
    /// minutes.
    async fn drive(&self, case: &Case, started: &Started) -> Finished {
        let execution = &started.execution;
        let deadline = started.at + EXECUTION_DEADLINE;
        let mut canary_fed = false;
        let (status, output) = loop {
            let described = self
                .sfn
                .describe_execution()
                .execution_arn(execution)
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "DescribeExecution {execution}: {e:?}\n{}",
                        self.world.report()
                    )
                });
            if described.status.as_str() != "RUNNING" {
                break (described.status.as_str().to_owned(), described.output);
            }
            if !canary_fed && let Some(canary) = routed_canary(&self.lambda, case.target).await {
                publish_version_minutes(&self.sdk, case.target, &canary, OffsetDateTime::now_utc())
                    .await;
                canary_fed = true;
            }
            assert!(
                Instant::now() < deadline,
                "the {} cycle's execution still runs after {EXECUTION_DEADLINE:?}\n{}",
                case.name,
                self.world.report()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let took = started.at.elapsed();
        let history = self
            .sfn
            .get_execution_history()
            .execution_arn(execution)
            .max_results(1000)
            .send()
            .await
            .unwrap();
        let entered = history
            .events()
            .iter()
            .filter_map(|e| e.state_entered_event_details().map(|d| d.name().to_owned()))
            .collect();
        let output = output
            .as_deref()
            .map(|o| serde_json::from_str(o).unwrap())
            .unwrap_or(Value::Null);
        Finished {
            status,
            output,
            entered,
            took,
        }
    }

    /// What every case must end in: the execution, its audit trail and record, the alias, the
    /// one Bedrock request answered with its recording; then the case's own [`Fix`]. The
    /// audit trail's actions.
    async fn check(
        &self,
        case: &Case,
        bedrock: &RecordedServer,
        started: &Started,
        finished: &Finished,
    ) -> Vec<String> {
        let Finished {
            status,
            output,
            entered,
            ..
        } = finished;
        let report = || self.world.report();
        assert_eq!(
            status,
            "SUCCEEDED",
            "{}: output {output:#}\nstates {entered:?}\n{}",
            case.name,
            report()
        );
        let summary = &output["summary"]["improvements"][0];
        assert_eq!(
            (
                summary["opportunity"].as_str(),
                summary["decision"].as_str(),
                summary["outcome"].as_str()
            ),
            (
                Some(case.opportunity),
                Some("auto_deploy"),
                Some("promoted")
            ),
            "{}: {output:#}\nstates {entered:?}\n{}",
            case.name,
            report()
        );
        for state in [
            "AnalyzeTelemetry",
            "GenerateChange",
            "ValidateChange",
            "DeployCanary",
            "WaitMonitorInterval",
            "MonitorCanary",
            "PromoteCanary",
            "WriteCycleSummary",
        ] {
            assert!(
                entered.iter().any(|s| s == state),
                "{}: {state} not in {entered:?}",
                case.name
            );
        }
        assert!(
            !entered.iter().any(|s| s == "RollbackChange"),
            "{}: {entered:?}",
            case.name
        );

        // The audit trail and the improvement record, in DynamoDB.
        let cycle = CycleId::parse(&started.cycle_id).unwrap();
        let actions: Vec<String> = self
            .store
            .cycle_events(&cycle)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action.as_str().to_owned())
            .collect();
        let position = |action: &str| {
            actions.iter().position(|a| a == action).unwrap_or_else(|| {
                panic!(
                    "{}: no `{action}` in the audit trail {actions:?}",
                    case.name
                )
            })
        };
        assert!(
            position("validated") < position("deployed")
                && position("deployed") < position("promoted"),
            "{}: {actions:?}",
            case.name
        );
        assert!(!actions.iter().any(|a| a == "rolled_back"), "{actions:?}");
        let record = self
            .store
            .get_improvement(&improvement_of(started))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no improvement record {}", improvement_of(started)));
        assert_eq!(record.status, ImprovementStatus::Promoted, "{}", case.name);
        assert_eq!(record.risk, Some(case.risk), "{}", case.name);
        assert_eq!(record.change.as_deref(), Some(case.change));

        // The alias on moto's Lambda: all traffic on version 2.
        let alias = self
            .lambda
            .get_alias()
            .function_name(case.target)
            .name("live")
            .send()
            .await
            .unwrap();
        assert_eq!(alias.function_version(), Some("2"), "{}", case.name);
        assert!(
            alias
                .routing_config()
                .and_then(AliasRoutingConfiguration::additional_version_weights)
                .is_none_or(|w| w.is_empty()),
            "{alias:?}"
        );
        let version = |qualifier: &'static str| {
            self.lambda
                .get_function_configuration()
                .function_name(case.target)
                .qualifier(qualifier)
                .send()
        };
        let (stable, canary) = (version("1").await.unwrap(), version("2").await.unwrap());

        // Bedrock was asked once about this target, for the configured model, and answered
        // with this case's recording.
        let asked: Vec<_> = bedrock
            .answered()
            .into_iter()
            .filter(|a| String::from_utf8_lossy(&a.request.body).contains(case.target))
            .collect();
        assert_eq!(asked.len(), 1, "{}: {asked:?}", case.name);
        assert_eq!(
            asked[0].file.as_deref(),
            Some(case.recording_path().as_path())
        );
        let path = &asked[0].request.path;
        assert!(path.contains("/converse"), "{path}");
        assert!(path.contains("claude-3-5-sonnet"), "{path}");

        match &case.fix {
            Fix::Config {
                memory_mb,
                timeout_seconds,
            } => {
                assert_eq!(
                    (canary.memory_size(), canary.timeout()),
                    (Some(*memory_mb), Some(*timeout_seconds))
                );
            }
            Fix::Code { file, line } => {
                // Shipped as code: the record keeps both hashes, drift is on the trail.
                assert!(
                    position("deployed") < position("source_drifted"),
                    "{actions:?}"
                );
                let proposal = case.recorded_proposal();
                let Change::CodePatch { files, .. } = &proposal.change else {
                    panic!("{} records no code patch", case.recording);
                };
                let patched = patch_package(&case.zip(), files).unwrap();
                let deployment = record
                    .item
                    .deploy
                    .as_ref()
                    .and_then(|d| d.deployment.as_ref())
                    .unwrap_or_else(|| panic!("no deployment in the record: {:?}", record.item));
                assert_eq!(
                    deployment.code,
                    Some(CodeVersion {
                        base_code_sha256: stable.code_sha256().unwrap().to_owned(),
                        code_sha256: patched.code_sha256.clone(),
                        files: vec![(*file).to_owned()],
                    })
                );
                // Version 2 runs the new package with version 1's settings.
                assert_ne!(canary.code_sha256(), stable.code_sha256());
                assert_eq!(canary.code_sha256(), Some(patched.code_sha256.as_str()));
                assert_eq!(
                    (canary.memory_size(), canary.timeout(), canary.handler()),
                    (stable.memory_size(), stable.timeout(), stable.handler())
                );
                // Its package, fetched as the functions fetch it, has the fixed line.
                let got = self
                    .lambda
                    .get_function()
                    .function_name(case.target)
                    .qualifier("2")
                    .send()
                    .await
                    .unwrap();
                let location = got.code().and_then(|c| c.location()).unwrap();
                let host = self
                    .packages
                    .url
                    .trim_start_matches("http://")
                    .parse()
                    .unwrap();
                let zip =
                    selfbuild_tests::http::send(host, "GET", location_path(location), &[], b"")
                        .await
                        .unwrap();
                assert_eq!(zip.status, 200, "{}", zip.text());
                let text = files_in_package(&zip.body, &[file]).unwrap()[*file]
                    .clone()
                    .unwrap();
                assert!(text.contains(line), "{file} of version 2:\n{text}");
                assert!(!text.contains(case.file.1), "{text}");
            }
        }
        actions
    }

    /// The mcp function, through cargo-lambda's function URL emulation, sees the same record.
    async fn check_mcp(&self, started: &Started) {
        let mcp = self.world.watch("mcp").addr;
        let listed = mcp_post(
            mcp,
            true,
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .await;
        assert_eq!(
            listed.status,
            200,
            "{}\n{}",
            listed.text(),
            self.world.report()
        );
        let listed: Value = serde_json::from_slice(&listed.body).unwrap();
        let tools: Vec<&str> = listed["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert!(tools.contains(&"get_improvement"), "{tools:?}");
        let got = mcp_post(
            mcp,
            true,
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                   "params": {"name": "get_improvement",
                              "arguments": {"id": improvement_of(started)}}}),
        )
        .await;
        assert_eq!(got.status, 200, "{}", got.text());
        let got: Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(
            got["result"]["structuredContent"]["improvement"]["status"], "promoted",
            "{got:#}"
        );
        let anonymous = mcp_post(
            mcp,
            false,
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}),
        )
        .await;
        assert_eq!(anonymous.status, 401, "{}", anonymous.text());
    }
}

/// The improvement of a cycle's first (only) opportunity.
fn improvement_of(started: &Started) -> ImprovementId {
    selfbuild_tests::improvement_id(&format!("{}-1", started.cycle_id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_run_a_config_and_a_code_cycle_through_the_real_binaries_on_moto() {
    let began = Instant::now();
    require_cargo_lambda();
    let cases = [Case::config(), Case::code()];
    // Each generate request names its component: that picks the case's recording.
    let bedrock = RecordedServer::start_routes(
        cases
            .iter()
            .map(|c| Route::body_contains(c.target, &c.recording_path()))
            .collect(),
    )
    .await;
    let [config, code] = &cases;
    let (config_stack, code_stack) = tokio::join!(
        Stack::start(config, &bedrock.url),
        Stack::start(code, &bedrock.url)
    );
    let warmed = began.elapsed();

    // Both alarms in, then both executions watched at once.
    let dir = tempfile::tempdir().unwrap();
    let runs = [
        (
            config,
            &config_stack,
            config_stack.alarm(config, dir.path()),
        ),
        (code, &code_stack, code_stack.alarm(code, dir.path())),
    ];
    let (config_finished, code_finished) = tokio::join!(
        runs[0].1.drive(config, &runs[0].2),
        runs[1].1.drive(code, &runs[1].2)
    );
    let mut lines = Vec::new();
    for ((case, stack, started), finished) in runs.iter().zip([&config_finished, &code_finished]) {
        let actions = stack.check(case, &bedrock, started, finished).await;
        // On one stack, as before: in one of three runs with it on both, `get_improvement` on
        // the code stack got no answer through cargo-lambda's function URL emulation (HTTP 500
        // after its timeout, though the function logged the call `ok`); not yet understood.
        if matches!(case.fix, Fix::Config { .. }) {
            stack.check_mcp(started).await;
        }
        let checks = finished
            .entered
            .iter()
            .filter(|s| *s == "MonitorCanary")
            .count();
        lines.push(format!(
            "e2e: cycle {} ({}: {}) promoted after {checks} monitor checks ({} states) in \
             {:.1?}; audit {actions:?}",
            started.cycle_id,
            case.name,
            case.change,
            finished.entered.len(),
            finished.took
        ));
        capture(case, &stack.world);
        stack.serving.abort();
    }
    let asked = bedrock.requests();
    assert_eq!(asked.len(), cases.len(), "{asked:?}");
    assert!(
        !code_stack.packages.requested().is_empty(),
        "no package was fetched from CODE_PACKAGE_ENDPOINT_URL"
    );
    for line in lines {
        eprintln!("{line}");
    }
    eprintln!(
        "e2e: set-up and warm-up {warmed:.1?} (two stacks at once), total {:.1?}",
        began.elapsed()
    );
}

/// One MCP request through cargo-lambda's function URL emulation, with or without the key.
async fn mcp_post(
    addr: std::net::SocketAddr,
    with_key: bool,
    body: Value,
) -> selfbuild_tests::http::Response {
    let bearer = format!("Bearer {API_KEY}");
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    if with_key {
        headers.push(("Authorization", bearer.as_str()));
    }
    let text = body.to_string();
    let sent = selfbuild_tests::http::send(
        addr,
        "POST",
        "/lambda-url/mcp/mcp",
        &headers,
        text.as_bytes(),
    );
    // cargo-lambda answers 500 only when its own function timeout ends: fail sooner.
    tokio::time::timeout(MCP_DEADLINE, sent)
        .await
        .unwrap_or_else(|_| panic!("no MCP answer within {MCP_DEADLINE:?} to {body}"))
        .unwrap()
}

async fn put_metric(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    name: &str,
    dimensions: &[(&str, &str)],
    at: OffsetDateTime,
    value: f64,
) {
    let mut datum = MetricDatum::builder()
        .metric_name(name)
        .value(value)
        .timestamp(smithy_time(at));
    for (k, v) in dimensions {
        datum = datum.dimensions(Dimension::builder().name(*k).value(*v).build());
    }
    cloudwatch
        .put_metric_data()
        .namespace("AWS/Lambda")
        .metric_data(datum.build())
        .send()
        .await
        .unwrap();
}

/// The canary version the alias routes to, once the deploy step has routed it.
async fn routed_canary(lambda: &aws_sdk_lambda::Client, target: &str) -> Option<String> {
    let alias = lambda
        .get_alias()
        .function_name(target)
        .name("live")
        .send()
        .await
        .ok()?;
    alias
        .routing_config()
        .and_then(AliasRoutingConfiguration::additional_version_weights)
        .and_then(|w| w.keys().next().cloned())
}

/// Per-version minutes behind `live` from `from` on: three one-minute buckets for the stable
/// version 1 and the canary, 100 invocations and 1 error each (published ahead; moto shows a
/// point once its time has come).
async fn publish_version_minutes(
    sdk: &aws_config::SdkConfig,
    target: &str,
    canary: &str,
    from: OffsetDateTime,
) {
    let cloudwatch = aws_sdk_cloudwatch::Client::new(sdk);
    let resource = format!("{target}:live");
    for version in ["1", canary] {
        let dims = [
            ("FunctionName", target),
            ("Resource", resource.as_str()),
            ("ExecutedVersion", version),
        ];
        for minute in 0..3 {
            let at = from + time::Duration::seconds(1 + 60 * minute);
            put_metric(&cloudwatch, "Invocations", &dims, at, 100.0).await;
            put_metric(&cloudwatch, "Errors", &dims, at, 1.0).await;
        }
    }
}

/// With `SELFBUILD_E2E_CAPTURE=<dir>`, writes each step's payload of the case as the state
/// machine sent it (`<dir>/<case>/<n>-<function>[-<action>].json`): the source of
/// `events/steps/`.
fn capture(case: &Case, world: &World) {
    let Ok(dir) = std::env::var("SELFBUILD_E2E_CAPTURE") else {
        return;
    };
    let dir = std::path::Path::new(&dir).join(case.name);
    std::fs::create_dir_all(&dir).unwrap();
    for (n, call) in world.calls.lock().unwrap().iter().enumerate() {
        let action = call.payload["action"]
            .as_str()
            .map(|a| format!("-{a}"))
            .unwrap_or_default();
        let path = dir.join(format!("{n:02}-{}{action}.json", call.function));
        std::fs::write(path, serde_json::to_string_pretty(&call.payload).unwrap()).unwrap();
    }
}
