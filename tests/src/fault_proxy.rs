//! A fault-injecting HTTP proxy in front of a [`MotoServer`]: the AWS SDK talks to the proxy,
//! which names each call's operation from the wire, applies the first [`Rule`] that fires
//! (a throttle or a 500 in the service's own error shape, a delay, a dropped connection, or
//! the call forwarded to moto and *then* failed), forwards the rest, and logs every call.
//!
//! Operations are read as the SDK sends them: the `X-Amz-Target` header for the JSON
//! protocols (DynamoDB, Step Functions, Logs, Secrets Manager, EventBridge), `Action=` in the
//! form body for the Query protocol (CloudWatch), the method and path for Lambda's REST-JSON
//! (`POST /2015-03-31/functions/{name}/versions` is `PublishVersion`, …). The service comes
//! from the SigV4 credential scope.
//!
//! Decisions are deterministic: a rule fires on the n-th call of an operation (counted by
//! the proxy, SDK retries included), or on a share `p` of calls decided by a hash of the seed,
//! the rule, the operation and n, never by a clock or a global random source. Sequential
//! callers therefore see the same faults on every run.
//!
//! Every answer carries `Connection: close`, so the SDK never reuses a connection the proxy
//! is about to close, and every attempt the SDK makes reaches the log.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::http::{Request, Response, header, parse_response};
use crate::moto::MotoServer;

/// What the proxy does to a call instead of forwarding it untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The service's throttling error, not forwarded: DynamoDB
    /// `ProvisionedThroughputExceededException` (400), Lambda `TooManyRequestsException`
    /// (429, `Retry-After`), CloudWatch `Throttling` (400), the others `ThrottlingException` (400).
    Throttle,
    /// DynamoDB's other throttling error, `ThrottlingException` (400), not forwarded; on the
    /// other services the same as [`Fault::Throttle`].
    ThrottleAlt,
    /// The service's internal error (500: DynamoDB `InternalServerError`, Lambda
    /// `ServiceException`, the others `InternalFailure`), not forwarded.
    ServerError,
    /// The connection closes without an answer; not forwarded.
    Drop,
    /// This error code with this status in the service's error shape, not forwarded: what a
    /// service answers that the other faults do not cover, e.g. Lambda's
    /// `PreconditionFailedException` (412) to an update whose `RevisionId` is stale.
    Error(u16, &'static str),
    /// Waits this long, then forwards.
    Delay(Duration),
    /// Forwarded to moto, so the call takes effect, but the client gets this instead of
    /// moto's answer: the retry sees the effect of the attempt it believes failed.
    Lost(Lost),
}

/// What the client gets after a call that reached moto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// The service's throttling error.
    Throttle,
    /// The service's 500.
    ServerError,
    /// No answer: the connection closes.
    Drop,
}

/// Which calls of the matched operations a rule fires on.
#[derive(Debug, Clone, PartialEq)]
pub enum Which {
    /// Every call.
    Every,
    /// The n-th calls (1-based) of each matched operation, SDK retries counted.
    Nth(BTreeSet<usize>),
    /// A share of calls in [0, 1], chosen by the seed.
    Share(f64),
}

/// One fault rule: which operations, which of their calls, and what to do.
#[derive(Debug, Clone)]
pub struct Rule {
    service: Option<String>,
    operations: BTreeSet<String>,
    which: Which,
    faults: Vec<Fault>,
}

impl Rule {
    /// A rule on one operation (e.g. `UpdateAlias`), on every call, with no fault yet.
    pub fn on(operation: &str) -> Self {
        Self::on_any(&[operation])
    }

    /// A rule on any of these operations.
    pub fn on_any(operations: &[&str]) -> Self {
        Self {
            service: None,
            operations: operations.iter().map(|o| (*o).to_owned()).collect(),
            which: Which::Every,
            faults: Vec::new(),
        }
    }

    /// A rule on every operation of a service, by its signing name (`lambda`, `dynamodb`, …).
    pub fn service(service: &str) -> Self {
        Self {
            service: Some(service.to_owned()),
            operations: BTreeSet::new(),
            which: Which::Every,
            faults: Vec::new(),
        }
    }

    /// Fires on the n-th calls (1-based) of each matched operation.
    #[must_use]
    pub fn nth(mut self, calls: &[usize]) -> Self {
        self.which = Which::Nth(calls.iter().copied().collect());
        self
    }

    /// Fires on a share `p` of calls, chosen by the proxy's seed.
    #[must_use]
    pub fn share(mut self, p: f64) -> Self {
        self.which = Which::Share(p);
        self
    }

    /// Applies `fault` when it fires.
    #[must_use]
    pub fn fault(mut self, fault: Fault) -> Self {
        self.faults = vec![fault];
        self
    }

    /// Applies one of `faults` when it fires, chosen by the seed.
    #[must_use]
    pub fn faults(mut self, faults: &[Fault]) -> Self {
        self.faults = faults.to_vec();
        self
    }

    fn matches(&self, service: &str, operation: &str) -> bool {
        self.service.as_deref().is_none_or(|s| s == service)
            && (self.operations.is_empty() || self.operations.contains(operation))
    }
}

/// One call as the proxy saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The SigV4 signing name: `lambda`, `dynamodb`, `states`, `monitoring`, `logs`, …
    pub service: String,
    /// The operation, e.g. `PublishVersion`; `Unknown <METHOD> <path>` when not recognised.
    pub operation: String,
    /// Which call of this operation it was (1-based, SDK retries counted).
    pub n: usize,
    /// The fault applied; none when forwarded untouched.
    pub fault: Option<Fault>,
    /// Moto's status when the call was forwarded.
    pub upstream_status: Option<u16>,
    /// The status the client got; none when the connection was dropped.
    pub status: Option<u16>,
}

impl Call {
    /// True when the call reached moto (it may have taken effect).
    pub fn forwarded(&self) -> bool {
        self.upstream_status.is_some()
    }
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    seen: BTreeMap<String, usize>,
    calls: Vec<Call>,
}

struct Shared {
    upstream: SocketAddr,
    seed: u64,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts the call and picks the fault of the first rule that fires.
    fn decide(&self, service: &str, operation: &str) -> (usize, Option<Fault>) {
        let mut state = self.lock();
        let n = {
            let seen = state.seen.entry(operation.to_owned()).or_default();
            *seen += 1;
            *seen
        };
        let fault = state.rules.iter().enumerate().find_map(|(index, rule)| {
            if !rule.matches(service, operation) || rule.faults.is_empty() {
                return None;
            }
            let draw = mix(&[self.seed, index as u64, hash_str(operation), n as u64]);
            let fires = match &rule.which {
                Which::Every => true,
                Which::Nth(calls) => calls.contains(&n),
                Which::Share(p) => unit(draw) < *p,
            };
            let pick = usize::try_from(mix(&[draw, 1]) % rule.faults.len() as u64).unwrap_or(0);
            fires.then(|| rule.faults[pick])
        });
        (n, fault)
    }
}

/// A running proxy; stops serving when dropped.
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `moto`, deciding shares by `seed`.
    pub async fn start(moto: &MotoServer, seed: u64) -> Self {
        let upstream: SocketAddr = moto
            .endpoint
            .trim_start_matches("http://")
            .parse()
            .expect("moto's endpoint is http://<ip>:<port>");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy");
        let addr = listener.local_addr().expect("fault proxy address");
        let shared = Arc::new(Shared {
            upstream,
            seed,
            state: Mutex::new(State::default()),
        });
        let serving = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = Arc::clone(&serving);
                tokio::spawn(async move {
                    let _ = serve(stream, &shared).await;
                });
            }
        });
        Self {
            endpoint: format!("http://{addr}"),
            shared,
            task,
        }
    }

    /// Adds a rule after the existing ones (the first that fires wins).
    pub fn add(&self, rule: Rule) {
        self.shared.lock().rules.push(rule);
    }

    /// Removes every rule: from now on calls are forwarded untouched.
    pub fn clear(&self) {
        self.shared.lock().rules.clear();
    }

    /// Every call so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// The calls of one operation.
    pub fn calls_of(&self, operation: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.operation == operation)
            .collect()
    }

    /// How many calls of `operation` the proxy has seen (what [`Rule::nth`] counts).
    pub fn seen(&self, operation: &str) -> usize {
        self.shared.lock().seen.get(operation).copied().unwrap_or(0)
    }

    /// Forgets the calls logged so far (counts per operation go on).
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.shared.lock().calls)
    }

    /// The call log as one line per call, for assertion messages.
    pub fn log(&self) -> String {
        describe(&self.calls())
    }

    /// SDK configuration pointing every service at the proxy, with dummy credentials and the
    /// standard retry mode (3 attempts) on millisecond backoff, so retries cost no real time.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(1))
                    .with_max_backoff(Duration::from_millis(10)),
            )
            .load()
            .await
    }

    /// A retry partition of this proxy's own: the SDK's retry quota (a token bucket, by
    /// default shared process-wide per service) then depends on this test's calls only.
    fn partition(&self, service: &str) -> aws_sdk_lambda::config::retry::RetryPartition {
        aws_sdk_lambda::config::retry::RetryPartition::custom(format!(
            "fault-proxy-{service}-{}",
            self.endpoint
        ))
        .token_bucket(aws_sdk_lambda::config::retry::TokenBucket::default())
        .build()
    }

    /// A Lambda client through the proxy.
    pub async fn lambda(&self) -> aws_sdk_lambda::Client {
        let config = aws_sdk_lambda::config::Builder::from(&self.sdk_config().await)
            .retry_partition(self.partition("lambda"))
            .build();
        aws_sdk_lambda::Client::from_conf(config)
    }

    /// A DynamoDB client through the proxy.
    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::config::Builder::from(&self.sdk_config().await)
            .retry_partition(self.partition("dynamodb"))
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// A Step Functions client through the proxy.
    pub async fn sfn(&self) -> aws_sdk_sfn::Client {
        let config = aws_sdk_sfn::config::Builder::from(&self.sdk_config().await)
            .retry_partition(self.partition("states"))
            .build();
        aws_sdk_sfn::Client::from_conf(config)
    }

    /// CloudWatch and CloudWatch Logs clients through the proxy.
    pub async fn cloudwatch(&self) -> (aws_sdk_cloudwatch::Client, aws_sdk_cloudwatchlogs::Client) {
        let sdk = self.sdk_config().await;
        let metrics = aws_sdk_cloudwatch::config::Builder::from(&sdk)
            .retry_partition(self.partition("monitoring"))
            .build();
        let logs = aws_sdk_cloudwatchlogs::config::Builder::from(&sdk)
            .retry_partition(self.partition("logs"))
            .build();
        (
            aws_sdk_cloudwatch::Client::from_conf(metrics),
            aws_sdk_cloudwatchlogs::Client::from_conf(logs),
        )
    }
}

/// One line per call: `n. service Operation#n fault → status`.
pub fn describe(calls: &[Call]) -> String {
    let mut out = String::new();
    for (i, c) in calls.iter().enumerate() {
        let fault = c.fault.map_or_else(|| "-".to_owned(), |f| format!("{f:?}"));
        let upstream = c
            .upstream_status
            .map_or_else(|| "not forwarded".to_owned(), |s| format!("moto {s}"));
        let status = c
            .status
            .map_or_else(|| "dropped".to_owned(), |s| s.to_string());
        let _ = writeln!(
            out,
            "{:>4}. {} {}#{} {fault} ({upstream}) -> {status}",
            i + 1,
            c.service,
            c.operation,
            c.n
        );
    }
    out
}

async fn serve(mut client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let Some(request) = crate::http::read_request(&mut client).await? else {
        return Ok(());
    };
    let service = service_of(&request);
    let operation = operation_of(&request);
    let (n, fault) = shared.decide(&service, &operation);
    let mut call = Call {
        service: service.clone(),
        operation,
        n,
        fault,
        upstream_status: None,
        status: None,
    };
    let answer = match fault {
        None => Some(forward(shared.upstream, &request, &mut call).await?),
        Some(Fault::Delay(pause)) => {
            tokio::time::sleep(pause).await;
            Some(forward(shared.upstream, &request, &mut call).await?)
        }
        Some(Fault::Throttle) => Some(throttle(&service, &request, false)),
        Some(Fault::ThrottleAlt) => Some(throttle(&service, &request, true)),
        Some(Fault::ServerError) => Some(server_error(&service, &request)),
        Some(Fault::Error(status, code)) => Some(error(&service, &request, status, code)),
        Some(Fault::Drop) => None,
        Some(Fault::Lost(lost)) => {
            forward(shared.upstream, &request, &mut call).await?;
            match lost {
                Lost::Throttle => Some(throttle(&service, &request, false)),
                Lost::ServerError => Some(server_error(&service, &request)),
                Lost::Drop => None,
            }
        }
    };
    call.status = answer.as_ref().map(|r| r.status);
    shared.lock().calls.push(call);
    if let Some(response) = answer {
        client.write_all(&serialize(&response)).await?;
    }
    client.shutdown().await
}

/// Sends the request to moto (asking it to close) and reads its whole answer.
async fn forward(
    upstream: SocketAddr,
    request: &Request,
    call: &mut Call,
) -> std::io::Result<Response> {
    let mut head: String = request
        .head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty())
        .map(|l| format!("{l}\r\n"))
        .collect();
    head.push_str("Connection: close\r\n\r\n");
    let mut moto = TcpStream::connect(upstream).await?;
    moto.write_all(head.as_bytes()).await?;
    moto.write_all(&request.body).await?;
    let mut raw = Vec::new();
    moto.read_to_end(&mut raw).await?;
    let response = parse_response(&raw)?;
    call.upstream_status = Some(response.status);
    Ok(response)
}

/// The response as bytes: its own `Content-Length`, no transfer coding, `Connection: close`.
fn serialize(response: &Response) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        if matches!(
            name.as_str(),
            "connection" | "content-length" | "transfer-encoding" | "keep-alive"
        ) {
            continue;
        }
        let _ = write!(head, "{name}: {value}\r\n");
    }
    let _ = write!(
        head,
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        response.body.len()
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&response.body);
    bytes
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        409 => "Conflict",
        412 => "Precondition Failed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

/// The SigV4 signing name from `Authorization: … Credential=<key>/<date>/<region>/<service>/…`.
fn service_of(request: &Request) -> String {
    header(&request.head, "authorization")
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|scope| scope.split('/').nth(3))
        .unwrap_or("unknown")
        .to_owned()
}

/// The operation: `X-Amz-Target`, the path of Smithy RPC v2 CBOR, `Action=` in a form body,
/// or Lambda's method and path.
fn operation_of(request: &Request) -> String {
    if let Some(target) = header(&request.head, "x-amz-target") {
        return target.rsplit('.').next().unwrap_or(target).to_owned();
    }
    if protocol_is_cbor(request) {
        // `/service/GraniteServiceVersion20100801/operation/GetMetricData`
        let path = request.path.split('?').next().unwrap_or_default();
        if let Some((_, op)) = path.rsplit_once("/operation/") {
            return op.to_owned();
        }
    }
    let form = header(&request.head, "content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if form {
        let body = String::from_utf8_lossy(&request.body);
        if let Some(action) = body
            .split('&')
            .find_map(|pair| pair.strip_prefix("Action="))
        {
            return action.to_owned();
        }
    }
    let path = request.path.split('?').next().unwrap_or_default();
    lambda_operation(&request.method, path).map_or_else(
        || format!("Unknown {} {path}", request.method),
        str::to_owned,
    )
}

/// Lambda's REST-JSON operations by method and path.
fn lambda_operation(method: &str, path: &str) -> Option<&'static str> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let op = match (method, parts.as_slice()) {
        ("POST", ["2015-03-31", "functions"]) => "CreateFunction",
        ("GET", ["2015-03-31", "functions"]) => "ListFunctions",
        ("GET", ["2015-03-31", "functions", _]) => "GetFunction",
        ("DELETE", ["2015-03-31", "functions", _]) => "DeleteFunction",
        ("GET", ["2015-03-31", "functions", _, "configuration"]) => "GetFunctionConfiguration",
        ("PUT", ["2015-03-31", "functions", _, "configuration"]) => "UpdateFunctionConfiguration",
        ("PUT", ["2015-03-31", "functions", _, "code"]) => "UpdateFunctionCode",
        ("POST", ["2015-03-31", "functions", _, "versions"]) => "PublishVersion",
        ("GET", ["2015-03-31", "functions", _, "versions"]) => "ListVersionsByFunction",
        ("POST", ["2015-03-31", "functions", _, "aliases"]) => "CreateAlias",
        ("GET", ["2015-03-31", "functions", _, "aliases"]) => "ListAliases",
        ("GET", ["2015-03-31", "functions", _, "aliases", _]) => "GetAlias",
        ("PUT", ["2015-03-31", "functions", _, "aliases", _]) => "UpdateAlias",
        ("DELETE", ["2015-03-31", "functions", _, "aliases", _]) => "DeleteAlias",
        ("POST", ["2015-03-31", "functions", _, "invocations"]) => "Invoke",
        ("PUT", ["2017-10-31", "functions", _, "concurrency"]) => "PutFunctionConcurrency",
        ("DELETE", ["2017-10-31", "functions", _, "concurrency"]) => "DeleteFunctionConcurrency",
        ("GET", ["2019-09-30", "functions", _, "concurrency"]) => "GetFunctionConcurrency",
        _ => return None,
    };
    Some(op)
}

/// The error a JSON-protocol service writes: `__type` and `message`, status `status`.
fn json_error(request: &Request, status: u16, code: &str, message: &str) -> Response {
    let content_type = header(&request.head, "content-type")
        .unwrap_or("application/x-amz-json-1.0")
        .to_owned();
    Response {
        status,
        headers: vec![
            ("content-type".into(), content_type),
            ("x-amzn-requestid".into(), "fault-proxy".into()),
        ],
        body: serde_json::json!({"__type": code, "message": message})
            .to_string()
            .into_bytes(),
    }
}

/// The error Smithy RPC v2 CBOR writes (CloudWatch from aws-sdk-cloudwatch 1.100 on): a CBOR
/// map with `__type` and `message`.
fn cbor_error(status: u16, code: &str, message: &str) -> Response {
    let mut body = vec![0xA2];
    for text in ["__type", code, "message", message] {
        cbor_text(&mut body, text);
    }
    Response {
        status,
        headers: vec![
            ("content-type".into(), "application/cbor".into()),
            ("smithy-protocol".into(), "rpc-v2-cbor".into()),
            ("x-amzn-requestid".into(), "fault-proxy".into()),
        ],
        body,
    }
}

/// Appends `text` as a CBOR text string (major type 3).
fn cbor_text(out: &mut Vec<u8>, text: &str) {
    let len = text.len();
    match u8::try_from(len) {
        Ok(short) if short < 24 => out.push(0x60 | short),
        Ok(byte) => out.extend([0x78, byte]),
        Err(_) => {
            let long = u32::try_from(len).unwrap_or(u32::MAX);
            out.push(0x7A);
            out.extend(long.to_be_bytes());
        }
    }
    out.extend(text.as_bytes());
}

/// The error the Query protocol writes (CloudWatch): an XML `ErrorResponse`.
fn query_error(status: u16, code: &str, message: &str) -> Response {
    let kind = if status >= 500 { "Receiver" } else { "Sender" };
    Response {
        status,
        headers: vec![
            ("content-type".into(), "text/xml".into()),
            ("x-amzn-requestid".into(), "fault-proxy".into()),
        ],
        body: format!(
            "<ErrorResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\"><Error>\
             <Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>\
             <RequestId>fault-proxy</RequestId></ErrorResponse>"
        )
        .into_bytes(),
    }
}

/// The error Lambda's REST-JSON writes: the code in `x-amzn-ErrorType`, the body's `Type`.
fn lambda_error(status: u16, code: &str, body: serde_json::Value, retry_after: bool) -> Response {
    let mut headers = vec![
        ("content-type".into(), "application/json".into()),
        ("x-amzn-requestid".into(), "fault-proxy".into()),
        ("x-amzn-errortype".into(), code.to_owned()),
    ];
    if retry_after {
        headers.push(("retry-after".into(), "1".into()));
    }
    Response {
        status,
        headers,
        body: body.to_string().into_bytes(),
    }
}

fn protocol_is_cbor(request: &Request) -> bool {
    header(&request.head, "smithy-protocol").is_some_and(|p| p.eq_ignore_ascii_case("rpc-v2-cbor"))
}

fn protocol_is_query(request: &Request) -> bool {
    header(&request.head, "x-amz-target").is_none()
        && header(&request.head, "content-type")
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"))
}

/// `code` with `status` in the service's error shape.
fn error(service: &str, request: &Request, status: u16, code: &str) -> Response {
    let message = format!("fault proxy: {code}");
    match service {
        "lambda" => {
            let kind = if status >= 500 { "Service" } else { "User" };
            lambda_error(
                status,
                code,
                serde_json::json!({"Type": kind, "message": message}),
                false,
            )
        }
        _ if protocol_is_cbor(request) => cbor_error(status, code, &message),
        _ if protocol_is_query(request) => query_error(status, code, &message),
        _ => json_error(request, status, code, &message),
    }
}

fn throttle(service: &str, request: &Request, alt: bool) -> Response {
    match service {
        "lambda" => lambda_error(
            429,
            "TooManyRequestsException",
            serde_json::json!({
                "Type": "User",
                "message": "Rate exceeded",
                "Reason": "CallerRateLimitExceeded",
                "retryAfterSeconds": "1",
            }),
            true,
        ),
        "dynamodb" if alt => json_error(
            request,
            400,
            "com.amazon.coral.availability#ThrottlingException",
            "Rate of requests exceeds the allowed throughput.",
        ),
        "dynamodb" => json_error(
            request,
            400,
            "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded.",
        ),
        _ if protocol_is_cbor(request) => cbor_error(400, "Throttling", "Rate exceeded"),
        _ if protocol_is_query(request) => query_error(400, "Throttling", "Rate exceeded"),
        _ => json_error(request, 400, "ThrottlingException", "Rate exceeded"),
    }
}

fn server_error(service: &str, request: &Request) -> Response {
    match service {
        "lambda" => lambda_error(
            500,
            "ServiceException",
            serde_json::json!({"Type": "Service", "Message": "fault proxy: internal error"}),
            false,
        ),
        "dynamodb" => json_error(
            request,
            500,
            "com.amazonaws.dynamodb.v20120810#InternalServerError",
            "Internal server error",
        ),
        _ if protocol_is_cbor(request) => {
            cbor_error(500, "InternalFailure", "fault proxy: internal error")
        }
        _ if protocol_is_query(request) => {
            query_error(500, "InternalFailure", "fault proxy: internal error")
        }
        _ => json_error(
            request,
            500,
            "InternalFailure",
            "fault proxy: internal error",
        ),
    }
}

/// SplitMix64 over the words: a stable hash for the seeded decisions.
fn mix(words: &[u64]) -> u64 {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    for word in words {
        state ^= *word;
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        state = z ^ (z >> 31);
    }
    state
}

fn hash_str(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// A draw in [0, 1).
fn unit(draw: u64) -> f64 {
    (draw >> 11) as f64 / (1_u64 << 53) as f64
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn request(raw: &str) -> Request {
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let mut words = head.lines().next().unwrap().split_whitespace();
        Request {
            method: words.next().unwrap().to_owned(),
            path: words.next().unwrap().to_owned(),
            head: format!("{head}\r\n\r\n"),
            body: body.as_bytes().to_vec(),
        }
    }

    const AUTH: &str = "Authorization: AWS4-HMAC-SHA256 Credential=testing/20261122/us-east-1";

    #[test]
    fn operations_are_read_from_the_target_the_form_or_lambdas_paths() {
        let ddb = request(&format!(
            "POST / HTTP/1.1\r\n{AUTH}/dynamodb/aws4_request, SignedHeaders=host\r\n\
             X-Amz-Target: DynamoDB_20120810.PutItem\r\n\r\n{{}}"
        ));
        assert_eq!(
            (service_of(&ddb), operation_of(&ddb)),
            ("dynamodb".into(), "PutItem".into())
        );
        let cw = request(&format!(
            "POST / HTTP/1.1\r\n{AUTH}/monitoring/aws4_request\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n\r\nAction=GetMetricData&Version=2010-08-01"
        ));
        assert_eq!(
            (service_of(&cw), operation_of(&cw)),
            ("monitoring".into(), "GetMetricData".into())
        );
        let cbor = request(&format!(
            "POST /service/GraniteServiceVersion20100801/operation/GetMetricData HTTP/1.1\r\n\
             {AUTH}/monitoring/aws4_request\r\nsmithy-protocol: rpc-v2-cbor\r\n\
             Content-Type: application/cbor\r\n\r\n"
        ));
        assert_eq!(
            (service_of(&cbor), operation_of(&cbor)),
            ("monitoring".into(), "GetMetricData".into())
        );
        for (method, path, op) in [
            ("POST", "/2015-03-31/functions/f/versions", "PublishVersion"),
            ("PUT", "/2015-03-31/functions/f/aliases/live", "UpdateAlias"),
            (
                "GET",
                "/2015-03-31/functions/f/configuration?Qualifier=2",
                "GetFunctionConfiguration",
            ),
            (
                "PUT",
                "/2015-03-31/functions/f/configuration",
                "UpdateFunctionConfiguration",
            ),
            (
                "PUT",
                "/2017-10-31/functions/f/concurrency",
                "PutFunctionConcurrency",
            ),
            (
                "DELETE",
                "/2017-10-31/functions/f/concurrency",
                "DeleteFunctionConcurrency",
            ),
            (
                "GET",
                "/2019-09-30/functions/f/concurrency",
                "GetFunctionConcurrency",
            ),
            (
                "GET",
                "/2015-03-31/functions/f/versions?MaxItems=50",
                "ListVersionsByFunction",
            ),
        ] {
            let r = request(&format!(
                "{method} {path} HTTP/1.1\r\n{AUTH}/lambda/aws4_request\r\n\r\n"
            ));
            assert_eq!(
                (service_of(&r), operation_of(&r)),
                ("lambda".into(), op.into()),
                "{method} {path}"
            );
        }
        let odd = request("PATCH /x HTTP/1.1\r\n\r\n");
        assert_eq!(
            (service_of(&odd), operation_of(&odd)),
            ("unknown".into(), "Unknown PATCH /x".into())
        );
    }

    #[test]
    fn shares_are_decided_by_the_seed_alone() {
        let decide = |seed: u64| {
            let shared = Shared {
                upstream: "127.0.0.1:1".parse().unwrap(),
                seed,
                state: Mutex::new(State::default()),
            };
            shared.lock().rules.push(
                Rule::service("lambda")
                    .share(0.3)
                    .faults(&[Fault::Throttle, Fault::ServerError]),
            );
            (0..1000)
                .map(|_| shared.decide("lambda", "GetAlias").1)
                .collect::<Vec<_>>()
        };
        let (a, b, c) = (decide(7), decide(7), decide(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let fired = a.iter().filter(|f| f.is_some()).count();
        assert!((250..350).contains(&fired), "{fired} of 1000 at p = 0.3");
        assert!(a.contains(&Some(Fault::Throttle)) && a.contains(&Some(Fault::ServerError)));
    }

    #[test]
    fn nth_counts_each_operation_apart() {
        let shared = Shared {
            upstream: "127.0.0.1:1".parse().unwrap(),
            seed: 1,
            state: Mutex::new(State::default()),
        };
        shared
            .lock()
            .rules
            .push(Rule::on("UpdateAlias").nth(&[2]).fault(Fault::Drop));
        assert_eq!(shared.decide("lambda", "UpdateAlias"), (1, None));
        assert_eq!(shared.decide("lambda", "GetAlias"), (1, None));
        assert_eq!(
            shared.decide("lambda", "UpdateAlias"),
            (2, Some(Fault::Drop))
        );
        assert_eq!(shared.decide("lambda", "UpdateAlias"), (3, None));
    }
}
