//! Providers in order, each behind retries and a circuit breaker.
//!
//! A request goes to the first provider whose circuit lets it through. `Unavailable` is retried
//! (at most [`RetryPolicy::max_attempts`] attempts, deterministic exponential delays) while the
//! circuit stays closed; every failed attempt counts towards opening it. What happens next:
//!
//! | the provider's last answer | next step |
//! | --- | --- |
//! | a proposal (a tool input) | returned, with the provider that answered |
//! | `BudgetExceeded` | stop: the budget is the request's, another provider would not lift it |
//! | `Unavailable` (retries spent, or circuit open) | the next provider |
//! | `InvalidAnswer` | the next provider: another model may answer within the schema |
//! | `NoProposal` (refused: access, model id, validation) | the next provider |
//!
//! When every provider failed the error is `Unavailable` if any provider was (trying later may
//! work), else `InvalidAnswer` if any answered badly, else `NoProposal`; its message lists each.
//!
//! A circuit opens after [`BreakerPolicy::failure_threshold`] consecutive `Unavailable`
//! attempts and stays open for [`BreakerPolicy::cool_down`]; then it is half-open: one trial
//! call, which closes it on any answer from the provider (a proposal, `InvalidAnswer`,
//! `NoProposal`: it is reachable) and opens it again on `Unavailable`. Time comes from a
//! [`Timer`], so tests move it by hand ([`ManualTimer`]) instead of sleeping.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use selfbuild_core::ports::{Llm, LlmAnswer, LlmError, LlmRequest, ToolAnswer, ToolRequest};
use selfbuild_core::records::ProviderHealth;
use selfbuild_core::text::Escaped;
use tracing::{info, warn};

/// Monotonic time for retries and breakers: now, and waiting.
#[async_trait]
pub trait Timer: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
    /// Waits `duration`.
    async fn sleep(&self, duration: Duration);
}

/// The process's monotonic clock: `Instant::now` and `tokio::time::sleep`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioTimer;

#[async_trait]
impl Timer for TokioTimer {
    fn now(&self) -> Instant {
        Instant::now()
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// A timer that moves only when told to or when slept on (a sleep returns at once, moving the
/// clock by its duration); it remembers the sleeps.
#[derive(Debug)]
pub struct ManualTimer {
    start: Instant,
    state: Mutex<ManualState>,
}

#[derive(Debug, Default)]
struct ManualState {
    elapsed: Duration,
    slept: Vec<Duration>,
}

impl ManualTimer {
    /// A clock at the current instant.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            state: Mutex::default(),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        lock(&self.state).elapsed += by;
    }

    /// The sleeps so far, in order.
    pub fn slept(&self) -> Vec<Duration> {
        lock(&self.state).slept.clone()
    }
}

impl Default for ManualTimer {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Timer for ManualTimer {
    fn now(&self) -> Instant {
        self.start + lock(&self.state).elapsed
    }

    async fn sleep(&self, duration: Duration) {
        let mut state = lock(&self.state);
        state.elapsed += duration;
        state.slept.push(duration);
    }
}

/// How `Unavailable` is retried on one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (default 3).
    pub max_attempts: u32,
    /// The wait after the first failed attempt (default 200 ms); each later wait doubles.
    pub base_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(200),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based): base × 2^(attempt−1); no jitter, so
    /// runs are reproducible (one Lambda per improvement calls, not a crowd of clients).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        self.base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
    }
}

/// When a provider's circuit opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive `Unavailable` attempts that open the circuit (default 3).
    pub failure_threshold: u32,
    /// How long an open circuit refuses calls before a trial (default 60 s).
    pub cool_down: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            cool_down: Duration::from_secs(60),
        }
    }
}

/// A provider's circuit, as a status report shows it.
pub use selfbuild_core::records::CircuitState as BreakerState;

/// One provider's circuit.
#[derive(Debug)]
struct Breaker {
    consecutive_failures: u32,
    state: Circuit,
}

#[derive(Debug, Clone, Copy)]
enum Circuit {
    Closed,
    Open {
        since: Instant,
    },
    /// A trial call started at `trial_started`; a trial that never reported (its caller was
    /// cancelled) is given up after a cool-down, so the circuit cannot stay stuck.
    HalfOpen {
        opened: Instant,
        trial_started: Instant,
    },
}

/// What the breaker lets a caller do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Permit {
    Call,
    Trial,
    Refused,
}

/// What a call told the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The provider answered (a proposal, or an answer that is not one).
    Reached,
    /// The provider was unavailable.
    Failed,
    /// Nothing learnt (budget refused before or after the call).
    Neutral,
}

impl Breaker {
    fn new() -> Self {
        Self {
            consecutive_failures: 0,
            state: Circuit::Closed,
        }
    }

    fn acquire(&mut self, now: Instant, policy: &BreakerPolicy) -> Permit {
        match self.state {
            Circuit::Closed => Permit::Call,
            Circuit::Open { since } if now >= since + policy.cool_down => {
                self.state = Circuit::HalfOpen {
                    opened: since,
                    trial_started: now,
                };
                Permit::Trial
            }
            Circuit::HalfOpen {
                opened,
                trial_started,
            } if now >= trial_started + policy.cool_down => {
                self.state = Circuit::HalfOpen {
                    opened,
                    trial_started: now,
                };
                Permit::Trial
            }
            Circuit::Open { .. } | Circuit::HalfOpen { .. } => Permit::Refused,
        }
    }

    /// Records an outcome; true when the circuit is now open.
    fn record(&mut self, outcome: Outcome, now: Instant, policy: &BreakerPolicy) -> bool {
        match outcome {
            Outcome::Reached => {
                self.consecutive_failures = 0;
                self.state = Circuit::Closed;
            }
            Outcome::Failed => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                let trial_failed = matches!(self.state, Circuit::HalfOpen { .. });
                if trial_failed || self.consecutive_failures >= policy.failure_threshold {
                    self.state = Circuit::Open { since: now };
                }
            }
            Outcome::Neutral => {
                if let Circuit::HalfOpen { opened, .. } = self.state {
                    self.state = Circuit::Open { since: opened };
                }
            }
        }
        matches!(self.state, Circuit::Open { .. })
    }

    fn report(&self, now: Instant, policy: &BreakerPolicy) -> BreakerState {
        match self.state {
            Circuit::Closed => BreakerState::Closed,
            Circuit::Open { since } if now < since + policy.cool_down => BreakerState::Open,
            Circuit::Open { .. } | Circuit::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

struct Provider {
    name: String,
    llm: Arc<dyn Llm>,
    breaker: Mutex<Breaker>,
}

/// Providers in order (primary first), each with retries and a circuit breaker.
pub struct ResilientLlm {
    providers: Vec<Provider>,
    retry: RetryPolicy,
    breaker: BreakerPolicy,
    timer: Arc<dyn Timer>,
}

impl std::fmt::Debug for ResilientLlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.providers.iter().map(|p| p.name.as_str()).collect();
        f.debug_struct("ResilientLlm")
            .field("providers", &names)
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl ResilientLlm {
    /// The primary provider, registered as `name` (e.g. [`BedrockLlm::provider_name`](super::BedrockLlm::provider_name)),
    /// with the default retry and breaker policies and the process timer.
    pub fn new(name: impl Into<String>, primary: Arc<dyn Llm>) -> Self {
        Self {
            providers: vec![Provider::new(name.into(), primary)],
            retry: RetryPolicy::default(),
            breaker: BreakerPolicy::default(),
            timer: Arc::new(TokioTimer),
        }
    }

    /// Adds a fallback, tried after the providers before it.
    pub fn with_fallback(mut self, name: impl Into<String>, llm: Arc<dyn Llm>) -> Self {
        self.providers.push(Provider::new(name.into(), llm));
        self
    }

    /// Another timer (tests: [`ManualTimer`]).
    pub fn with_timer(mut self, timer: Arc<dyn Timer>) -> Self {
        self.timer = timer;
        self
    }

    /// Each provider's name and circuit, in order.
    pub fn breaker_states(&self) -> Vec<(String, BreakerState)> {
        let now = self.timer.now();
        self.providers
            .iter()
            .map(|p| (p.name.clone(), lock(&p.breaker).report(now, &self.breaker)))
            .collect()
    }

    /// One provider with retries: its last result, or `Unavailable` when its circuit refused.
    async fn call<R: Attempt>(
        &self,
        provider: &Provider,
        request: &R,
    ) -> Result<R::Answer, LlmError> {
        let mut attempt = 1;
        loop {
            let permit = lock(&provider.breaker).acquire(self.timer.now(), &self.breaker);
            if permit == Permit::Refused {
                return Err(LlmError::Unavailable(format!(
                    "{}: circuit open, not called",
                    provider.name
                )));
            }
            let result = request.attempt(provider.llm.as_ref()).await;
            let outcome = match &result {
                Ok(_) | Err(LlmError::InvalidAnswer(_) | LlmError::NoProposal(_)) => {
                    Outcome::Reached
                }
                Err(LlmError::Unavailable(_)) => Outcome::Failed,
                Err(LlmError::BudgetExceeded(_)) => Outcome::Neutral,
            };
            let open = lock(&provider.breaker).record(outcome, self.timer.now(), &self.breaker);
            match result {
                Err(LlmError::Unavailable(message)) => {
                    if open {
                        warn!(provider = %provider.name, attempt, error = %Escaped(&message), "circuit open");
                        return Err(LlmError::Unavailable(format!(
                            "{message} (circuit now open)"
                        )));
                    }
                    if attempt >= self.retry.max_attempts || permit == Permit::Trial {
                        return Err(LlmError::Unavailable(message));
                    }
                    let delay = self.retry.delay_after(attempt);
                    info!(provider = %provider.name, attempt, delay_ms = delay.as_millis() as u64, error = %Escaped(&message), "unavailable; retrying");
                    self.timer.sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Each provider in turn until one answers: see the module's table.
    async fn first_answer<R: Attempt>(&self, request: &R) -> Result<R::Answer, LlmError> {
        let mut failures = Vec::new();
        for provider in &self.providers {
            match self.call(provider, request).await {
                Ok(answer) => return Ok(answer),
                Err(e @ LlmError::BudgetExceeded(_)) => return Err(e),
                Err(e) => {
                    warn!(provider = %provider.name, error = %Escaped(&e), "provider gave no answer; trying the next");
                    failures.push(e);
                }
            }
        }
        Err(combine(failures))
    }
}

/// What an `async_trait` method returns.
type Pending<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, LlmError>> + Send + 'a>>;

/// A request that one provider is asked: a proposal or a forced tool call.
trait Attempt: Sync {
    /// What a provider answers.
    type Answer: Send;
    /// Asks `llm` once.
    fn attempt<'a>(&'a self, llm: &'a dyn Llm) -> Pending<'a, Self::Answer>;
}

impl Attempt for LlmRequest {
    type Answer = LlmAnswer;
    fn attempt<'a>(&'a self, llm: &'a dyn Llm) -> Pending<'a, Self::Answer> {
        llm.propose(self)
    }
}

impl Attempt for ToolRequest {
    type Answer = ToolAnswer;
    fn attempt<'a>(&'a self, llm: &'a dyn Llm) -> Pending<'a, Self::Answer> {
        llm.call_tool(self)
    }
}

impl Provider {
    fn new(name: String, llm: Arc<dyn Llm>) -> Self {
        Self {
            name,
            llm,
            breaker: Mutex::new(Breaker::new()),
        }
    }
}

#[async_trait]
impl Llm for ResilientLlm {
    fn provider_health(&self) -> Vec<ProviderHealth> {
        self.breaker_states()
            .into_iter()
            .map(|(provider, state)| ProviderHealth { provider, state })
            .collect()
    }

    async fn propose(&self, request: &LlmRequest) -> Result<LlmAnswer, LlmError> {
        self.first_answer(request).await
    }

    async fn call_tool(&self, request: &ToolRequest) -> Result<ToolAnswer, LlmError> {
        self.first_answer(request).await
    }
}

/// Every provider's failure as one error: the most hopeful kind, all the messages.
fn combine(failures: Vec<LlmError>) -> LlmError {
    let rank = |e: &LlmError| match e {
        LlmError::Unavailable(_) => 0,
        LlmError::InvalidAnswer(_) => 1,
        LlmError::NoProposal(_) | LlmError::BudgetExceeded(_) => 2,
    };
    let kind = failures.iter().map(rank).min().unwrap_or(2);
    let message = failures
        .iter()
        .map(|e| match e {
            LlmError::Unavailable(m)
            | LlmError::InvalidAnswer(m)
            | LlmError::NoProposal(m)
            | LlmError::BudgetExceeded(m) => m.as_str(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    match kind {
        0 => LlmError::Unavailable(message),
        1 => LlmError::InvalidAnswer(message),
        _ => LlmError::NoProposal(message),
    }
}

/// The guarded value, also after a panic elsewhere (the state stays consistent: each update is
/// one assignment).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::tests::sample_item;
    use selfbuild_core::change::{Change, LambdaConfigChange, Proposal, RiskLevel};
    use selfbuild_core::generate::build_request;
    use selfbuild_core::ids::ComponentId;
    use selfbuild_core::improvement::LlmUsage;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Answers from a script (the last answer repeats) and counts its calls.
    struct Scripted {
        name: &'static str,
        script: Mutex<VecDeque<Result<(), LlmError>>>,
        calls: AtomicUsize,
    }

    impl Scripted {
        fn new(name: &'static str, script: Vec<Result<(), LlmError>>) -> Arc<Self> {
            Arc::new(Self {
                name,
                script: Mutex::new(script.into()),
                calls: AtomicUsize::new(0),
            })
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    fn clone_error(e: &LlmError) -> LlmError {
        match e {
            LlmError::Unavailable(m) => LlmError::Unavailable(m.clone()),
            LlmError::BudgetExceeded(m) => LlmError::BudgetExceeded(m.clone()),
            LlmError::InvalidAnswer(m) => LlmError::InvalidAnswer(m.clone()),
            LlmError::NoProposal(m) => LlmError::NoProposal(m.clone()),
        }
    }

    #[async_trait]
    impl Llm for Scripted {
        async fn propose(&self, _request: &LlmRequest) -> Result<LlmAnswer, LlmError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let next = {
                let mut script = lock(&self.script);
                if script.len() > 1 {
                    script.pop_front()
                } else {
                    script
                        .front()
                        .map(|r| r.as_ref().map(|_| ()).map_err(clone_error))
                }
            };
            match next.unwrap_or(Ok(())) {
                Ok(()) => Ok(LlmAnswer {
                    proposal: Proposal {
                        change: Change::LambdaConfig {
                            function: ComponentId::parse("orders-api")
                                .unwrap_or_else(|e| panic!("{e}")),
                            config: LambdaConfigChange {
                                timeout_seconds: Some(10),
                                ..Default::default()
                            },
                        },
                        rationale: "r".into(),
                        expected_gain: 0.5,
                        claimed_risk: RiskLevel::Low,
                    },
                    usage: LlmUsage::default(),
                    provider: self.name.into(),
                }),
                Err(e) => Err(e),
            }
        }
    }

    /// Answers tool calls from the same script as proposals.
    struct ToolScripted(Arc<Scripted>);

    #[async_trait]
    impl Llm for ToolScripted {
        async fn propose(&self, _: &LlmRequest) -> Result<LlmAnswer, LlmError> {
            Err(LlmError::NoProposal("tool calls only".into()))
        }

        async fn call_tool(&self, _: &ToolRequest) -> Result<ToolAnswer, LlmError> {
            // The script decides the outcome; an Ok becomes a tool input.
            match self.0.propose(&request()).await {
                Ok(answer) => Ok(ToolAnswer {
                    input: serde_json::json!({"from": answer.provider}),
                    usage: answer.usage,
                    provider: answer.provider,
                    truncated: false,
                }),
                Err(e) => Err(e),
            }
        }
    }

    #[tokio::test]
    async fn tool_calls_share_the_retries_breakers_and_fallback_of_proposals() {
        let clock = Arc::new(ManualTimer::new());
        let primary = Scripted::new("primary", (0..3).map(|_| unavailable()).collect());
        let fallback = Scripted::new("fallback", vec![Ok(())]);
        let llm = ResilientLlm::new("primary", Arc::new(ToolScripted(primary.clone())))
            .with_fallback("fallback", Arc::new(ToolScripted(fallback.clone())))
            .with_timer(clock.clone());
        let tool = request().tool_request();
        let answer = llm.call_tool(&tool).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(answer.input, serde_json::json!({"from": "fallback"}));
        assert_eq!(primary.calls(), 3);
        // The primary's circuit is open for proposals too.
        assert_eq!(llm.breaker_states()[0].1, BreakerState::Open);
    }

    fn unavailable() -> Result<(), LlmError> {
        Err(LlmError::Unavailable("throttled".into()))
    }

    fn request() -> LlmRequest {
        build_request(&sample_item(), 1.0)
    }

    fn resilient(providers: &[&Arc<Scripted>], clock: &Arc<ManualTimer>) -> ResilientLlm {
        let mut llm = ResilientLlm::new(providers[0].name, providers[0].clone() as Arc<dyn Llm>)
            .with_timer(clock.clone());
        for p in &providers[1..] {
            llm = llm.with_fallback(p.name, (*p).clone() as Arc<dyn Llm>);
        }
        llm
    }

    #[tokio::test]
    async fn unavailable_is_retried_with_doubling_delays() {
        let clock = Arc::new(ManualTimer::new());
        let primary = Scripted::new("primary", vec![unavailable(), unavailable(), Ok(())]);
        let llm = resilient(&[&primary], &clock);
        let answer = llm
            .propose(&request())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(answer.provider, "primary");
        assert_eq!(primary.calls(), 3);
        assert_eq!(
            clock.slept(),
            [Duration::from_millis(200), Duration::from_millis(400)]
        );
        assert_eq!(
            llm.breaker_states(),
            [("primary".to_owned(), BreakerState::Closed)]
        );
    }

    #[tokio::test]
    async fn invalid_answers_are_not_retried_and_fall_through() {
        let clock = Arc::new(ManualTimer::new());
        let primary = Scripted::new("primary", vec![Err(LlmError::InvalidAnswer("x".into()))]);
        let fallback = Scripted::new("fallback", vec![Ok(())]);
        let llm = resilient(&[&primary, &fallback], &clock);
        let answer = llm
            .propose(&request())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(answer.provider, "fallback");
        assert_eq!(primary.calls(), 1);
        assert!(clock.slept().is_empty());
    }

    #[tokio::test]
    async fn budget_exceeded_stops_without_the_fallback() {
        let clock = Arc::new(ManualTimer::new());
        let primary = Scripted::new("primary", vec![Err(LlmError::BudgetExceeded("x".into()))]);
        let fallback = Scripted::new("fallback", vec![Ok(())]);
        let llm = resilient(&[&primary, &fallback], &clock);
        let err = llm.propose(&request()).await.expect_err("budget exceeded");
        assert!(matches!(err, LlmError::BudgetExceeded(_)), "{err}");
        assert_eq!((primary.calls(), fallback.calls()), (1, 0));
    }

    #[tokio::test]
    async fn the_circuit_opens_cools_down_and_closes_after_a_good_trial() {
        let clock = Arc::new(ManualTimer::new());
        let primary = Scripted::new(
            "primary",
            (0..4).map(|_| unavailable()).chain([Ok(())]).collect(),
        );
        let fallback = Scripted::new("fallback", vec![Ok(())]);
        let llm = resilient(&[&primary, &fallback], &clock);

        // Three failed attempts open the circuit; the fallback answers.
        let answer = llm
            .propose(&request())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(answer.provider, "fallback");
        assert_eq!(primary.calls(), 3);
        assert_eq!(llm.breaker_states()[0].1, BreakerState::Open);

        // While open, the primary is not called.
        llm.propose(&request())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(primary.calls(), 3);

        // After the cool-down one trial; it fails, so the circuit opens again, no retry.
        clock.advance(Duration::from_secs(60));
        assert_eq!(llm.breaker_states()[0].1, BreakerState::HalfOpen);
        llm.propose(&request())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(primary.calls(), 4);
        assert_eq!(llm.breaker_states()[0].1, BreakerState::Open);

        // The next trial succeeds and closes it.
        clock.advance(Duration::from_secs(60));
        let answer = llm
            .propose(&request())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(answer.provider, "primary");
        assert_eq!(primary.calls(), 5);
        assert_eq!(llm.breaker_states()[0].1, BreakerState::Closed);
    }

    #[tokio::test]
    async fn when_all_fail_the_most_hopeful_error_is_returned_with_every_message() {
        let clock = Arc::new(ManualTimer::new());
        let primary = Scripted::new("primary", vec![Err(LlmError::NoProposal("denied".into()))]);
        let fallback = Scripted::new("fallback", vec![unavailable()]);
        let llm = resilient(&[&primary, &fallback], &clock);
        let err = llm.propose(&request()).await.expect_err("all fail");
        let LlmError::Unavailable(message) = err else {
            panic!("expected Unavailable, got {err}");
        };
        assert!(
            message.contains("denied") && message.contains("throttled"),
            "{message}"
        );
    }

    #[test]
    fn a_trial_that_never_reported_is_given_up_after_a_cool_down() {
        let policy = BreakerPolicy::default();
        let t0 = Instant::now();
        let mut breaker = Breaker::new();
        for _ in 0..3 {
            breaker.record(Outcome::Failed, t0, &policy);
        }
        assert_eq!(breaker.acquire(t0, &policy), Permit::Refused);
        let t1 = t0 + policy.cool_down;
        assert_eq!(breaker.acquire(t1, &policy), Permit::Trial);
        assert_eq!(breaker.acquire(t1, &policy), Permit::Refused);
        assert_eq!(
            breaker.acquire(t1 + policy.cool_down, &policy),
            Permit::Trial
        );
        // A budget refusal teaches nothing: the circuit goes back to open, trial allowed again.
        breaker.record(Outcome::Neutral, t1 + policy.cool_down, &policy);
        assert_eq!(
            breaker.report(t1 + policy.cool_down, &policy),
            BreakerState::HalfOpen
        );
    }

    #[test]
    fn delays_double_from_the_base() {
        let retry = RetryPolicy::default();
        let delays: Vec<u128> = (1..=4).map(|a| retry.delay_after(a).as_millis()).collect();
        assert_eq!(delays, [200, 400, 800, 1600]);
    }
}
