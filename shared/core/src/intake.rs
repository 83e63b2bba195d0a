//! alarm-intake (R1–R4): turns alarm state changes, the daily schedule and the poll
//! schedule into started, duplicate, ignored or halted cycles.

use serde::Serialize;
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use tracing::{info, instrument, warn};

use crate::alarm::{AlarmSignal, AlarmState};
use crate::clock::rfc3339;
use crate::config::Config;
use crate::cycle::{
    CycleMode, CycleRecord, CycleRequest, CycleStatus, SeenBy, TimeWindow, Trigger,
};
use crate::error::{ErrorType, OrchestratorError, StableError, StoreError, TelemetryError};
use crate::event::{EARLIEST_TIME, EventError, EventJson, IntakeEvent, parse_event};
use crate::ids::{ComponentId, CycleId, DedupKey, TenantId};
use crate::logstream::{self, LogSignalKind, LogsDelivery, MessageType, Mined, StreamState};
use crate::ports::{
    AlarmSource, ClaimOutcome, Clock, CycleStore, DedupClaim, DedupStore, HaltSwitch, HealthStore,
    IdSource, MetricRecord, MetricSink, MinerStateStore, Orchestrator, Unit,
};
use crate::text::{Escaped, Excerpt};

/// How long a won claim may stay unstarted before a duplicate starts its cycle itself
/// (the winner crashed between claiming and starting).
pub const STALE_CLAIM_AFTER: Duration = Duration::seconds(60);

/// How long after its window a claim record is kept before TTL may delete it.
pub const CLAIM_RETENTION: Duration = Duration::days(1);

/// What intake decided for one alarm or schedule tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// A cycle was started.
    Started,
    /// A cycle for the same (tenant, component) already runs in this window.
    Duplicate,
    /// Nothing to do (OK / INSUFFICIENT_DATA, or an alarm the poller need not act on).
    Ignored,
    /// The halt switch is on.
    Halted,
    /// `ENABLE_SELF_BUILDING` is off: acknowledged, nothing started.
    Disabled,
    /// The health pass disabled every component the cycle would cover: nothing started.
    ComponentDisabled,
}

impl Decision {
    /// The decision's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
            Self::Halted => "halted",
            Self::Disabled => "disabled",
            Self::ComponentDisabled => "component_disabled",
        }
    }
}

/// The handler's answer for one alarm or schedule tick.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntakeOutcome {
    /// What was decided.
    pub decision: Decision,
    /// Emergency or routine.
    pub mode: CycleMode,
    /// The tenant, or null for system-wide.
    pub tenant_id: Option<TenantId>,
    /// The component, or null for the whole fleet.
    pub component: Option<ComponentId>,
    /// The `tenant#component` scope of dedup.
    pub dedup_key: String,
    /// The cycle started, or the one that suppressed this event; null when none.
    pub cycle_id: Option<CycleId>,
    /// Events the holding claim has suppressed, this one included (0 when started).
    pub suppressed_count: u64,
    /// Why, in words.
    pub reason: String,
    /// The alarm this is about, or null for a schedule tick.
    pub alarm_name: Option<String>,
}

/// One outcome for an event, a list for a poll.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum IntakeResponse {
    /// For an alarm state change or the daily schedule.
    One(IntakeOutcome),
    /// For a poll: one per alarm found in ALARM.
    Many(Vec<IntakeOutcome>),
}

/// Why intake could not decide; `error_type` is what Step Functions and EventBridge see.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The event is malformed or not one intake handles; never retried.
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// A stored cycle input cannot be read back (or a request cannot be stored).
    #[error("{0}")]
    CorruptInput(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The orchestrator failed.
    #[error(transparent)]
    Orchestrator(#[from] OrchestratorError),
    /// Telemetry failed (a poll reads the alarms).
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// What intake was doing when `source` failed.
    #[error("{context}: {source}")]
    During {
        /// What intake was doing.
        context: String,
        /// The failure.
        #[source]
        source: Box<IntakeError>,
    },
}

impl IntakeError {
    /// This error with what intake was doing when it happened.
    pub fn during(self, context: impl Into<String>) -> Self {
        Self::During {
            context: context.into(),
            source: Box::new(self),
        }
    }
}

impl StableError for IntakeError {
    fn error_type(&self) -> ErrorType {
        match self {
            Self::InvalidEvent(_) => ErrorType::InvalidEvent,
            Self::CorruptInput(_) => ErrorType::StoreCorrupt,
            Self::Store(e) => e.error_type(),
            Self::Orchestrator(e) => e.error_type(),
            Self::Telemetry(e) => e.error_type(),
            Self::During { source, .. } => source.error_type(),
        }
    }
}

/// The ports intake uses.
#[derive(Clone, Copy)]
pub struct IntakeDeps<'a> {
    /// Dedup claims.
    pub claims: &'a dyn DedupStore,
    /// The halt switch.
    pub halt: &'a dyn HaltSwitch,
    /// Starts cycles.
    pub orchestrator: &'a dyn Orchestrator,
    /// Cycle records, written when a cycle starts (status and listings read them).
    pub cycles: &'a dyn CycleStore,
    /// The time.
    pub clock: &'a dyn Clock,
    /// The random part of new cycle ids.
    pub ids: &'a dyn IdSource,
    /// Where intake latency goes.
    pub metrics: &'a dyn MetricSink,
    /// The heal ledgers: a disabled component gets no cycle.
    pub health: &'a dyn HealthStore,
}

impl From<EventError> for IntakeError {
    fn from(e: EventError) -> Self {
        Self::InvalidEvent(e.0)
    }
}

/// Handles an event as delivered (the Lambda payload): refuses repeated keys, then
/// [`handle_event`].
pub async fn handle_delivered(
    deps: IntakeDeps<'_>,
    alarms: &dyn AlarmSource,
    config: &Config,
    event: EventJson,
) -> Result<IntakeResponse, IntakeError> {
    handle_event(deps, alarms, config, &event.into_value()?).await
}

/// How many load-mine-save rounds a delivery tries when other deliveries of the same
/// function save first.
pub const MINER_SAVE_ROUNDS: u32 = 4;

/// Handles a Lambda payload: a CloudWatch Logs subscription delivery ([`handle_logs`]) when
/// it has an `awslogs` member, else an EventBridge event ([`handle_event`]).
pub async fn handle_delivery(
    deps: IntakeDeps<'_>,
    miners: &dyn MinerStateStore,
    alarms: &dyn AlarmSource,
    config: &Config,
    event: EventJson,
) -> Result<IntakeResponse, IntakeError> {
    let event = event.into_value()?;
    if logstream::is_delivery(&event) {
        return handle_logs(deps, miners, config, &event)
            .await
            .map(IntakeResponse::One);
    }
    handle_event(deps, alarms, config, &event).await
}

/// Handles a CloudWatch Logs subscription delivery (R3 real time): mines its error lines
/// into the function's saved miner state, and starts an emergency cycle, through the same
/// dedup claim as alarms, when a template is new or its rate jumped
/// ([`crate::logstream`]). Ignored while `ENABLE_CLOUDWATCH_STREAMING` is off, and for
/// control messages.
#[instrument(skip_all, fields(event = "logs_delivery", log_group = tracing::field::Empty))]
pub async fn handle_logs(
    deps: IntakeDeps<'_>,
    miners: &dyn MinerStateStore,
    config: &Config,
    event: &Value,
) -> Result<IntakeOutcome, IntakeError> {
    let now = deps.clock.now();
    let intake = Intake { deps, config };
    let fleet = DedupKey::new(None, None);
    if !config.cloudwatch_streaming {
        info!(
            "CloudWatch Logs delivery acknowledged and ignored: ENABLE_CLOUDWATCH_STREAMING is off"
        );
        let reason = "ENABLE_CLOUDWATCH_STREAMING is off; the delivery is ignored".to_owned();
        return Ok(ignored_logs(&fleet, reason));
    }
    let delivery = logstream::decode_delivery(event)?;
    if delivery.message_type == MessageType::Control {
        info!("CloudWatch Logs control message acknowledged");
        return Ok(ignored_logs(&fleet, "a control message".to_owned()));
    }
    tracing::Span::current().record(
        "log_group",
        tracing::field::display(Excerpt(&delivery.log_group)),
    );
    let component = component_of(&delivery.log_group, &config.log_group_prefix)?;
    let key = DedupKey::new(None, Some(component));
    let scope = key.as_str().to_owned();
    let mut acted: Option<IntakeOutcome> = None;
    for _ in 0..MINER_SAVE_ROUNDS {
        let saved = miners.load_miner_state(&scope).await?;
        let version = saved.as_ref().map_or(0, |s| s.version);
        let state = saved.and_then(|s| match serde_json::from_str::<StreamState>(&s.body) {
            Ok(state) => Some(state),
            Err(e) => {
                // The state is history, not a record: starting afresh costs at most
                // templates reported new again, which dedup absorbs.
                warn!(scope = %scope, error = %Escaped(&e), "unreadable miner state; starting afresh");
                None
            }
        });
        let (state, mined) = match logstream::mine_delivery(state.clone(), &delivery) {
            Ok(done) => done,
            Err(problem) => {
                warn!(scope = %scope, problem = %Escaped(&problem), "unusable miner state; starting afresh");
                logstream::mine_delivery(None, &delivery).map_err(IntakeError::CorruptInput)?
            }
        };
        if mined.error_lines == 0 {
            let reason = format!(
                "no error lines in {} log event(s) of {}",
                delivery.log_events.len(),
                Excerpt(&delivery.log_group)
            );
            return Ok(ignored_logs(&key, reason));
        }
        // A retry after a lost save mines again but acts once.
        if acted.is_none() && !mined.signals.is_empty() {
            acted = Some(intake.start_for_logs(&key, &delivery, &mined, now).await?);
        }
        let body = serde_json::to_string(&state)
            .map_err(|e| IntakeError::CorruptInput(format!("miner state {scope}: {e}")))?;
        if miners.save_miner_state(&scope, &body, version).await? {
            let outcome = acted.unwrap_or_else(|| {
                let reason = format!(
                    "{} error line(s); no template new or jumping",
                    mined.error_lines
                );
                ignored_logs(&key, reason)
            });
            info!(scope = %scope, error_lines = mined.error_lines, signals = mined.signals.len(), "delivery mined");
            return Ok(outcome);
        }
    }
    Err(IntakeError::Store(StoreError::Unavailable(format!(
        "miner state {scope}: other deliveries saved first {MINER_SAVE_ROUNDS} times"
    ))))
}

/// The function a log group belongs to: the name after `prefix`, else its last segment.
fn component_of(log_group: &str, prefix: &str) -> Result<ComponentId, IntakeError> {
    let name = log_group
        .strip_prefix(prefix)
        .unwrap_or_else(|| log_group.rsplit('/').next().unwrap_or(log_group));
    ComponentId::parse(name).map_err(|e| {
        IntakeError::InvalidEvent(format!("awslogs: log group {}: {e}", Excerpt(log_group)))
    })
}

fn ignored_logs(key: &DedupKey, reason: String) -> IntakeOutcome {
    IntakeOutcome {
        decision: Decision::Ignored,
        mode: CycleMode::Emergency,
        tenant_id: key.tenant.clone(),
        component: key.component.clone(),
        dedup_key: key.as_str().to_owned(),
        cycle_id: None,
        suppressed_count: 0,
        reason,
        alarm_name: None,
    }
}

/// Unix milliseconds as a time, kept between [`EARLIEST_TIME`] and `now`.
fn log_time(ms: i64, now: OffsetDateTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(now)
        .clamp(EARLIEST_TIME, now.max(EARLIEST_TIME))
}

/// Handles one EventBridge event: an alarm state change, the daily tick or a poll tick (which
/// reads the alarms in ALARM from `alarms`).
// The event's kind is recorded once parsed: raw fields are untrusted and unbounded.
#[instrument(skip_all, fields(event = tracing::field::Empty))]
pub async fn handle_event(
    deps: IntakeDeps<'_>,
    alarms: &dyn AlarmSource,
    config: &Config,
    event: &Value,
) -> Result<IntakeResponse, IntakeError> {
    let event = parse_event(event)?;
    tracing::Span::current().record("event", event.kind());
    let intake = Intake { deps, config };
    match event {
        IntakeEvent::AlarmStateChange { alarm, time } => intake
            .handle_alarm(&alarm, SeenBy::Event, time)
            .await
            .map(IntakeResponse::One),
        IntakeEvent::Routine { rule, time } => intake
            .handle_routine(rule, time)
            .await
            .map(IntakeResponse::One),
        IntakeEvent::Poll { time, .. } => intake
            .handle_poll(alarms, time)
            .await
            .map(IntakeResponse::Many),
    }
}

/// A cycle asked for by an agent or a person rather than an alarm or the schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct ManualCycle {
    /// The tenant, or none for system-wide.
    pub tenant_id: Option<TenantId>,
    /// The components to analyse; empty means all of the tenant's.
    pub components: Vec<ComponentId>,
    /// Emergency or routine.
    pub mode: CycleMode,
    /// Hours of telemetry to analyse, ending now.
    pub analysis_window_hours: u32,
    /// The most opportunities to act on.
    pub max_improvements: u32,
    /// Propose and validate, never deploy.
    pub dry_run: bool,
    /// Who asked (`key:<api key id>`).
    pub requested_by: String,
}

/// Starts a manually requested cycle through the same halt check and dedup claim as alarms:
/// the key is `tenant#component` for one component, `tenant#*` otherwise.
#[instrument(skip_all, fields(requested_by = %manual.requested_by))]
pub async fn request_cycle(
    deps: IntakeDeps<'_>,
    config: &Config,
    manual: ManualCycle,
) -> Result<IntakeOutcome, IntakeError> {
    let intake = Intake { deps, config };
    let now = deps.clock.now();
    let component = match manual.components.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    };
    let key = DedupKey::new(manual.tenant_id.clone(), component);
    if let Some((decision, halted)) = intake.stopped().await? {
        let result = IntakeOutcome {
            decision,
            mode: manual.mode,
            tenant_id: key.tenant.clone(),
            component: key.component.clone(),
            dedup_key: key.as_str().to_owned(),
            cycle_id: None,
            suppressed_count: 0,
            reason: halted,
            alarm_name: None,
        };
        return Ok(intake.finish(result, now, now));
    }
    let window = TimeWindow {
        start: now - Duration::hours(i64::from(manual.analysis_window_hours)),
        end: now,
    };
    let why = format!(
        "{} cycle requested by {}, last {} h{}",
        manual.mode.as_str(),
        manual.requested_by,
        manual.analysis_window_hours,
        if manual.dry_run { ", dry run" } else { "" }
    );
    let shape = CycleShape {
        components: manual.components,
        max_improvements: manual.max_improvements,
        dry_run: manual.dry_run,
    };
    let trigger = Trigger::Manual {
        requested_by: manual.requested_by,
    };
    let result = intake
        .start_or_dedup(key, manual.mode, window, trigger, shape, now, why)
        .await?;
    Ok(intake.finish(result, now, now))
}

/// What a started cycle covers.
struct CycleShape {
    components: Vec<ComponentId>,
    max_improvements: u32,
    dry_run: bool,
}

struct Intake<'a> {
    deps: IntakeDeps<'a>,
    config: &'a Config,
}

impl Intake<'_> {
    async fn handle_alarm(
        &self,
        alarm: &AlarmSignal,
        seen_by: SeenBy,
        event_time: OffsetDateTime,
    ) -> Result<IntakeOutcome, IntakeError> {
        let now = self.deps.clock.now();
        let patterns = &self.config.critical_alarm_patterns;
        let scope = alarm.scope(patterns).map_err(|e| {
            IntakeError::InvalidEvent(format!("alarm {}: {e}", Excerpt(&alarm.name)))
        })?;
        let mode = if alarm.is_critical(patterns) {
            CycleMode::Emergency
        } else {
            CycleMode::Routine
        };
        let key = DedupKey::new(scope.tenant.clone(), scope.component.clone());
        let outcome = |decision, reason: String| IntakeOutcome {
            decision,
            mode,
            tenant_id: scope.tenant.clone(),
            component: scope.component.clone(),
            dedup_key: key.as_str().to_owned(),
            cycle_id: None,
            suppressed_count: 0,
            reason,
            alarm_name: Some(alarm.name.clone()),
        };

        if alarm.state != AlarmState::Alarm {
            let result = outcome(
                Decision::Ignored,
                format!(
                    "alarm is {}; only ALARM starts a cycle",
                    alarm.state.as_str()
                ),
            );
            return Ok(self.finish(result, event_time, now));
        }
        let lookback = Duration::try_from(self.config.poll_lookback).unwrap_or(Duration::MAX);
        if let (SeenBy::Poll, Some(changed)) = (seen_by, alarm.state_changed_at)
            && changed < now - lookback
        {
            let result = outcome(
                Decision::Ignored,
                format!(
                    "in ALARM since {}, before the poll lookback of {} s; the event path or an earlier poll acted on it",
                    rfc3339(changed),
                    self.config.poll_lookback.as_secs()
                ),
            );
            return Ok(self.finish(result, event_time, now));
        }
        if let Some((decision, halted)) = self.stopped().await? {
            return Ok(self.finish(outcome(decision, halted), event_time, now));
        }

        let window = match mode {
            CycleMode::Emergency => {
                let anchor = alarm.state_changed_at.unwrap_or(event_time).min(now);
                TimeWindow {
                    start: anchor - minutes(self.config.emergency_window_minutes),
                    end: now,
                }
            }
            CycleMode::Routine => self.routine_window(now),
        };
        let trigger = Trigger::Alarm {
            name: alarm.name.clone(),
            arn: alarm.arn.clone(),
            alarm_kind: alarm.kind,
            reason: alarm.reason.clone(),
            seen_by,
        };
        let why = format!(
            "{}: {} alarm {} is in ALARM; component from {}",
            mode.as_str(),
            alarm.kind.as_str(),
            alarm.name,
            scope.component_source
        );
        let shape = self.default_shape(&key);
        let result = self
            .start_or_dedup(key, mode, window, trigger, shape, now, why)
            .await?;
        let result = IntakeOutcome {
            alarm_name: Some(alarm.name.clone()),
            ..result
        };
        Ok(self.finish(result, event_time, now))
    }

    async fn handle_routine(
        &self,
        rule: Option<String>,
        event_time: OffsetDateTime,
    ) -> Result<IntakeOutcome, IntakeError> {
        let now = self.deps.clock.now();
        let key = DedupKey::new(None, None);
        if let Some((decision, halted)) = self.stopped().await? {
            let result = IntakeOutcome {
                decision,
                mode: CycleMode::Routine,
                tenant_id: None,
                component: None,
                dedup_key: key.as_str().to_owned(),
                cycle_id: None,
                suppressed_count: 0,
                reason: halted,
                alarm_name: None,
            };
            return Ok(self.finish(result, event_time, now));
        }
        let why = format!(
            "scheduled routine cycle over the fleet, last {} h",
            self.config.routine_window_hours
        );
        let window = self.routine_window(now);
        let trigger = Trigger::Schedule { rule };
        let shape = self.default_shape(&key);
        let result = self
            .start_or_dedup(key, CycleMode::Routine, window, trigger, shape, now, why)
            .await?;
        Ok(self.finish(result, event_time, now))
    }

    async fn handle_poll(
        &self,
        source: &dyn AlarmSource,
        poll_time: OffsetDateTime,
    ) -> Result<Vec<IntakeOutcome>, IntakeError> {
        let alarms = source.alarms_in_alarm().await?;
        let mut outcomes = Vec::with_capacity(alarms.len());
        let mut failures = Vec::new();
        for alarm in &alarms {
            let seen = alarm.state_changed_at.unwrap_or(poll_time);
            match self.handle_alarm(alarm, SeenBy::Poll, seen).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(IntakeError::InvalidEvent(problem)) => {
                    // One unusable alarm must not stop the others.
                    warn!(alarm = ?alarm.name, ?problem, "poll skipped an alarm");
                    outcomes.push(IntakeOutcome {
                        decision: Decision::Ignored,
                        mode: CycleMode::Routine,
                        tenant_id: None,
                        component: None,
                        dedup_key: String::new(),
                        cycle_id: None,
                        suppressed_count: 0,
                        reason: problem,
                        alarm_name: Some(alarm.name.clone()),
                    });
                }
                Err(e) => failures.push((alarm.name.clone(), e)),
            }
        }
        // Every alarm was tried; a retry re-polls, and dedup keeps the ones done here done.
        if !failures.is_empty() {
            let names: Vec<String> = failures.iter().map(|(n, _)| n.clone()).collect();
            let context = format!(
                "{} of {} alarms failed ({})",
                failures.len(),
                alarms.len(),
                names.join(", ")
            );
            let (_, first) = failures.swap_remove(0);
            return Err(first.during(context));
        }
        Ok(outcomes)
    }

    fn routine_window(&self, now: OffsetDateTime) -> TimeWindow {
        TimeWindow {
            start: now - Duration::hours(i64::from(self.config.routine_window_hours)),
            end: now,
        }
    }

    /// Why intake starts nothing now: the master switch is off, or the halt switch on.
    async fn stopped(&self) -> Result<Option<(Decision, String)>, IntakeError> {
        if !self.config.self_building {
            return Ok(Some((
                Decision::Disabled,
                "ENABLE_SELF_BUILDING is off: the event is acknowledged and no cycle starts"
                    .to_owned(),
            )));
        }
        Ok(self.deps.halt.halt_state().await?.map(|h| {
            (
                Decision::Halted,
                format!(
                    "halt switch is on since {} by {}: {}",
                    rfc3339(h.since),
                    h.actor,
                    h.reason
                ),
            )
        }))
    }

    /// Starts (or dedups) the emergency cycle a delivery's new or jumping templates ask for.
    async fn start_for_logs(
        &self,
        key: &DedupKey,
        delivery: &LogsDelivery,
        mined: &Mined,
        now: OffsetDateTime,
    ) -> Result<IntakeOutcome, IntakeError> {
        let first = &mined.signals[0];
        let earliest = mined
            .signals
            .iter()
            .map(|s| s.first_ms)
            .min()
            .unwrap_or(first.first_ms);
        let event_time = log_time(earliest, now);
        let signal = match first.kind {
            LogSignalKind::New => "new",
            LogSignalKind::RateJump => "jumping",
        };
        let why = format!(
            "emergency: {} error template(s) new or jumping in {}, first {signal}: {} ({} line(s) this window)",
            mined.signals.len(),
            Excerpt(&delivery.log_group),
            Excerpt(&first.template),
            first.count
        );
        if let Some((decision, halted)) = self.stopped().await? {
            let mut outcome = ignored_logs(key, halted);
            outcome.decision = decision;
            return Ok(self.finish(outcome, event_time, now));
        }
        let window = TimeWindow {
            start: event_time - minutes(self.config.emergency_window_minutes),
            end: now,
        };
        let trigger = Trigger::LogTemplate {
            log_group: delivery.log_group.clone(),
            signal: first.kind,
            template: first.template.clone(),
            count: first.count,
        };
        let shape = self.default_shape(key);
        let result = self
            .start_or_dedup(
                key.clone(),
                CycleMode::Emergency,
                window,
                trigger,
                shape,
                now,
                why,
            )
            .await?;
        Ok(self.finish(result, event_time, now))
    }

    /// The shape of a cycle started for `key` by an alarm or the schedule.
    fn default_shape(&self, key: &DedupKey) -> CycleShape {
        CycleShape {
            components: key.component.iter().cloned().collect(),
            max_improvements: self.config.max_improvements,
            dry_run: false,
        }
    }

    /// Claims the key with one conditional write; the winner starts the cycle.
    #[allow(clippy::too_many_arguments)]
    async fn start_or_dedup(
        &self,
        key: DedupKey,
        mode: CycleMode,
        analysis_window: TimeWindow,
        trigger: Trigger,
        shape: CycleShape,
        now: OffsetDateTime,
        why: String,
    ) -> Result<IntakeOutcome, IntakeError> {
        let cycle_id = CycleId::for_claim(&key, now, self.deps.ids.suffix());
        let request = CycleRequest {
            cycle_id: cycle_id.clone(),
            mode,
            tenant_id: key.tenant.clone(),
            components: shape.components,
            analysis_window,
            max_improvements: shape.max_improvements,
            max_concurrency: self.config.max_concurrent_improvements,
            dry_run: shape.dry_run,
            trigger,
            dedup_key: key.as_str().to_owned(),
            requested_at: now,
        };
        let window = Duration::try_from(self.config.dedup_window).unwrap_or(Duration::MAX);
        let window_end = now + window;
        let claim = DedupClaim {
            key: key.clone(),
            cycle_id: cycle_id.clone(),
            claimed_at: now,
            window_end,
            expires_at: window_end + CLAIM_RETENTION,
            cycle_input: serde_json::to_string(&request)
                .map_err(|e| IntakeError::CorruptInput(format!("cycle input: {e}")))?,
        };
        if let Some(skipped) = self.all_disabled(&request).await {
            return Ok(IntakeOutcome {
                decision: Decision::ComponentDisabled,
                mode,
                tenant_id: key.tenant.clone(),
                component: key.component.clone(),
                dedup_key: key.as_str().to_owned(),
                cycle_id: None,
                suppressed_count: 0,
                reason: skipped,
                alarm_name: None,
            });
        }
        let mut outcome = IntakeOutcome {
            decision: Decision::Started,
            mode,
            tenant_id: key.tenant.clone(),
            component: key.component.clone(),
            dedup_key: key.as_str().to_owned(),
            cycle_id: Some(cycle_id.clone()),
            suppressed_count: 0,
            reason: why,
            alarm_name: None,
        };
        match self.deps.claims.claim(&claim).await? {
            ClaimOutcome::Won => {
                self.start(&key, &request).await?;
                info!(cycle = %cycle_id, dedup_key = %key, mode = mode.as_str(), "cycle started");
            }
            ClaimOutcome::Held(held) => {
                outcome.cycle_id = Some(held.cycle_id.clone());
                outcome.suppressed_count = held.suppressed_count;
                outcome.mode = mode;
                if !held.started && held.claimed_at + STALE_CLAIM_AFTER <= now {
                    let stored: CycleRequest =
                        serde_json::from_str(&held.cycle_input).map_err(|e| {
                            IntakeError::CorruptInput(format!(
                                "claim {key}: stored cycle input is unreadable: {e}"
                            ))
                        })?;
                    self.start(&key, &stored).await?;
                    outcome.reason = format!(
                        "cycle {} was claimed at {} but never started; started it now",
                        held.cycle_id,
                        rfc3339(held.claimed_at)
                    );
                    warn!(cycle = %held.cycle_id, dedup_key = %key, "started a stale claim's cycle");
                } else {
                    outcome.decision = Decision::Duplicate;
                    outcome.reason = format!(
                        "cycle {} holds {key} until {}; {} event(s) suppressed",
                        held.cycle_id,
                        rfc3339(held.window_end),
                        held.suppressed_count
                    );
                }
            }
        }
        Ok(outcome)
    }

    /// Why `request` would have nothing to work on: every component it covers (or, for a
    /// fleet-wide cycle, fleet-wide cycles) disabled by the health pass. Unreadable ledgers
    /// start the cycle anyway: the analyze step checks them again.
    async fn all_disabled(&self, request: &CycleRequest) -> Option<String> {
        let ledgers = match self.deps.health.component_health().await {
            Ok(ledgers) => ledgers,
            Err(e) => {
                warn!(error = %Escaped(&e), "heal ledgers unreadable: the analyze step checks them");
                return None;
            }
        };
        let scope = crate::health::skip::cycle_scope(request, &ledgers);
        if !scope.nothing_left {
            return None;
        }
        let reasons: Vec<&str> = scope.skipped.iter().map(|s| s.reason.as_str()).collect();
        Some(reasons.join("; "))
    }

    /// Starts the cycle and marks its claim. A refused start releases the claim so a retry can
    /// win; a start that failed in passing (throttled, no answer) may have happened, so the
    /// claim is kept and a retry once it is stale starts the same cycle, idempotently.
    async fn start(&self, key: &DedupKey, request: &CycleRequest) -> Result<(), IntakeError> {
        let handle = match self.deps.orchestrator.start_cycle(request).await {
            Ok(handle) => handle,
            Err(e @ OrchestratorError::Unavailable(_)) => {
                warn!(cycle = %request.cycle_id, dedup_key = %key, error = %Escaped(&e), "the start may have happened: claim kept for a retry once it is stale");
                return Err(e.into());
            }
            Err(e) => {
                match self.deps.claims.release(key, &request.cycle_id).await {
                    Ok(_) => {}
                    Err(release) => {
                        warn!(dedup_key = %key, error = %Escaped(&release), "could not release the claim; a later event will start it once it is stale");
                    }
                }
                return Err(e.into());
            }
        };
        let record = CycleRecord {
            request: request.clone(),
            status: CycleStatus::Running,
            execution_ref: handle.execution_ref.clone(),
            started_at: self.deps.clock.now(),
        };
        // Idempotent (false when the orchestrator or an earlier start wrote it). A record that
        // could not be written fails the event, never "started": the cycle may run, but a
        // store that cannot take its record is the operator's to see (a retry of the event
        // finds the claim and, once it is stale, starts the same cycle again, idempotently).
        let unrecorded = |what: &str, e: StoreError| {
            IntakeError::from(e).during(format!(
                "cycle {} was started ({}) but {what}",
                request.cycle_id, handle.execution_ref
            ))
        };
        self.deps
            .cycles
            .create_cycle(&record)
            .await
            .map_err(|e| unrecorded("its record could not be written", e))?;
        self.deps
            .claims
            .mark_started(key, &request.cycle_id, &handle.execution_ref)
            .await
            .map_err(|e| unrecorded("its claim could not be marked started", e))?;
        Ok(())
    }

    fn finish(
        &self,
        outcome: IntakeOutcome,
        event_time: OffsetDateTime,
        now: OffsetDateTime,
    ) -> IntakeOutcome {
        let latency_ms = (now - event_time).whole_milliseconds().max(0) as f64;
        self.deps.metrics.record(MetricRecord {
            name: "IntakeLatency",
            unit: Unit::Milliseconds,
            value: latency_ms,
            dimensions: vec![
                ("Decision", outcome.decision.as_str().to_owned()),
                ("Mode", outcome.mode.as_str().to_owned()),
            ],
            timestamp: now,
        });
        info!(
            decision = outcome.decision.as_str(),
            mode = outcome.mode.as_str(),
            dedup_key = %outcome.dedup_key,
            latency_ms,
            "intake decided"
        );
        outcome
    }
}

fn minutes(m: u32) -> Duration {
    Duration::minutes(i64::from(m))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use serde_json::json;
    use time::macros::datetime;

    use super::*;
    use crate::alarm::{AlarmKind, MetricRef};
    use crate::clock::FixedClock;
    use crate::idsource::SeededIds;
    use crate::ports::{CycleHandle, HaltState, HeldClaim};

    /// In-memory claims with the same conditional semantics as the real stores.
    #[derive(Default)]
    struct MemoryStore {
        claims: Mutex<HashMap<String, HeldClaim>>,
        halt: Mutex<Option<HaltState>>,
        cycles: Mutex<HashMap<CycleId, CycleRecord>>,
        /// Makes `mark_started` fail with this.
        mark_fails: Mutex<Option<fn() -> StoreError>>,
    }

    #[async_trait]
    impl CycleStore for MemoryStore {
        async fn create_cycle(&self, cycle: &CycleRecord) -> Result<bool, StoreError> {
            let mut cycles = self.cycles.lock().unwrap();
            if cycles.contains_key(&cycle.request.cycle_id) {
                return Ok(false);
            }
            cycles.insert(cycle.request.cycle_id.clone(), cycle.clone());
            Ok(true)
        }
        async fn get_cycle(&self, id: &CycleId) -> Result<Option<CycleRecord>, StoreError> {
            Ok(self.cycles.lock().unwrap().get(id).cloned())
        }
        async fn finish_cycle(
            &self,
            id: &CycleId,
            status: CycleStatus,
            _: OffsetDateTime,
        ) -> Result<bool, StoreError> {
            let mut cycles = self.cycles.lock().unwrap();
            let Some(cycle) = cycles.get_mut(id) else {
                return Ok(false);
            };
            cycle.status = status;
            Ok(true)
        }
        async fn running_cycles(
            &self,
            _: &crate::records::TenantScope,
            _: usize,
        ) -> Result<Vec<CycleRecord>, StoreError> {
            Ok(Vec::new())
        }
    }

    #[async_trait]
    impl DedupStore for MemoryStore {
        async fn claim(&self, claim: &DedupClaim) -> Result<ClaimOutcome, StoreError> {
            let mut claims = self.claims.lock().unwrap();
            match claims.get_mut(claim.key.as_str()) {
                Some(held) if held.window_end >= claim.claimed_at => {
                    held.suppressed_count += 1;
                    Ok(ClaimOutcome::Held(held.clone()))
                }
                _ => {
                    claims.insert(
                        claim.key.as_str().to_owned(),
                        HeldClaim {
                            cycle_id: claim.cycle_id.clone(),
                            claimed_at: claim.claimed_at,
                            window_end: claim.window_end,
                            suppressed_count: 0,
                            started: false,
                            cycle_input: claim.cycle_input.clone(),
                        },
                    );
                    Ok(ClaimOutcome::Won)
                }
            }
        }
        async fn mark_started(
            &self,
            key: &DedupKey,
            _: &CycleId,
            _: &str,
        ) -> Result<(), StoreError> {
            if let Some(fail) = *self.mark_fails.lock().unwrap() {
                return Err(fail());
            }
            if let Some(held) = self.claims.lock().unwrap().get_mut(key.as_str()) {
                held.started = true;
            }
            Ok(())
        }
        async fn release(&self, key: &DedupKey, id: &CycleId) -> Result<bool, StoreError> {
            let mut claims = self.claims.lock().unwrap();
            let holds = claims.get(key.as_str()).is_some_and(|h| &h.cycle_id == id);
            if holds {
                claims.remove(key.as_str());
            }
            Ok(holds)
        }
    }

    #[async_trait]
    impl HaltSwitch for MemoryStore {
        async fn halt_state(&self) -> Result<Option<HaltState>, StoreError> {
            Ok(self.halt.lock().unwrap().clone())
        }
        async fn set_halt(&self, halt: &HaltState) -> Result<(), StoreError> {
            *self.halt.lock().unwrap() = Some(halt.clone());
            Ok(())
        }
        async fn clear_halt(&self) -> Result<bool, StoreError> {
            Ok(self.halt.lock().unwrap().take().is_some())
        }
    }

    #[derive(Default)]
    struct Recorder {
        started: Mutex<Vec<CycleRequest>>,
        fail_with: Mutex<Option<fn() -> OrchestratorError>>,
        alarms: Vec<AlarmSignal>,
        metrics: Mutex<Vec<MetricRecord>>,
    }

    #[async_trait]
    impl Orchestrator for Recorder {
        async fn start_cycle(
            &self,
            request: &CycleRequest,
        ) -> Result<CycleHandle, OrchestratorError> {
            if let Some(fail) = *self.fail_with.lock().unwrap() {
                return Err(fail());
            }
            self.started.lock().unwrap().push(request.clone());
            Ok(CycleHandle {
                execution_ref: format!("local:{}", request.cycle_id),
                already_started: false,
            })
        }
    }

    #[async_trait]
    impl AlarmSource for Recorder {
        async fn alarms_in_alarm(&self) -> Result<Vec<AlarmSignal>, TelemetryError> {
            Ok(self.alarms.clone())
        }
    }

    impl MetricSink for Recorder {
        fn record(&self, metric: MetricRecord) {
            self.metrics.lock().unwrap().push(metric);
        }
    }

    struct World {
        store: MemoryStore,
        recorder: Recorder,
        health: crate::testing::MemoryRecords,
        clock: FixedClock,
        ids: SeededIds,
        config: Config,
    }

    impl World {
        fn at(now: OffsetDateTime) -> Self {
            Self {
                store: MemoryStore::default(),
                recorder: Recorder::default(),
                health: crate::testing::MemoryRecords::default(),
                clock: FixedClock(now),
                ids: SeededIds::new(0, "intake tests"),
                config: Config::default(),
            }
        }

        async fn handle(&self, event: &Value) -> Result<IntakeResponse, IntakeError> {
            let deps = IntakeDeps {
                claims: &self.store,
                halt: &self.store,
                health: &self.health,
                orchestrator: &self.recorder,
                cycles: &self.store,
                clock: &self.clock,
                ids: &self.ids,
                metrics: &self.recorder,
            };
            handle_event(deps, &self.recorder, &self.config, event).await
        }

        async fn manual(&self, manual: ManualCycle) -> Result<IntakeOutcome, IntakeError> {
            let deps = IntakeDeps {
                claims: &self.store,
                halt: &self.store,
                health: &self.health,
                orchestrator: &self.recorder,
                cycles: &self.store,
                clock: &self.clock,
                ids: &self.ids,
                metrics: &self.recorder,
            };
            request_cycle(deps, &self.config, manual).await
        }

        async fn one(&self, event: &Value) -> IntakeOutcome {
            match self.handle(event).await.unwrap() {
                IntakeResponse::One(o) => o,
                IntakeResponse::Many(m) => panic!("expected one outcome, got {m:?}"),
            }
        }
    }

    fn event(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    const NOW: OffsetDateTime = datetime!(2026-11-22 05:00:01 UTC);

    #[tokio::test]
    async fn a_critical_alarm_starts_an_emergency_cycle_scoped_to_its_component() {
        let world = World::at(NOW);
        let out = world
            .one(&event(include_str!("../../../events/alarm-metric.json")))
            .await;
        assert_eq!(out.decision, Decision::Started);
        assert_eq!(out.mode, CycleMode::Emergency);
        assert_eq!(out.component.as_ref().unwrap().as_str(), "orders-api");
        assert_eq!(out.tenant_id, None);
        assert_eq!(out.dedup_key, "*#orders-api");
        let started = world.recorder.started.lock().unwrap();
        assert_eq!(started.len(), 1);
        assert_eq!(Some(&started[0].cycle_id), out.cycle_id.as_ref());
        assert_eq!(started[0].analysis_window.end, NOW);
        assert_eq!(
            started[0].analysis_window.start,
            datetime!(2026-11-22 04:00:00.124 UTC)
        );
        let metrics = world.recorder.metrics.lock().unwrap();
        assert_eq!(metrics[0].name, "IntakeLatency");
        assert_eq!(metrics[0].value, 1000.0);
    }

    #[tokio::test]
    async fn a_non_critical_alarm_starts_a_routine_cycle_for_its_tenant() {
        let world = World::at(NOW);
        let mut e = event(include_str!("../../../events/alarm-anomaly-detection.json"));
        e["detail"]["alarmName"] = json!("search-duration");
        let out = world.one(&e).await;
        assert_eq!(out.decision, Decision::Started);
        assert_eq!(out.mode, CycleMode::Routine);
        assert_eq!(out.tenant_id.unwrap().as_str(), "acme");
        assert_eq!(out.component.unwrap().as_str(), "search");
        let started = world.recorder.started.lock().unwrap();
        assert_eq!(started[0].analysis_window.start, NOW - Duration::hours(24));
    }

    #[tokio::test]
    async fn configured_patterns_make_alarms_critical() {
        let mut world = World::at(NOW);
        world.config = Config::from_lookup(|k| {
            (k == "CRITICAL_ALARM_PATTERNS").then(|| "*error-ratio".to_owned())
        })
        .unwrap();
        let out = world
            .one(&event(include_str!(
                "../../../events/alarm-metric-math.json"
            )))
            .await;
        assert_eq!(out.mode, CycleMode::Emergency);
        assert_eq!(out.component.unwrap().as_str(), "checkout");
    }

    #[tokio::test]
    async fn ok_and_insufficient_data_are_acknowledged_and_ignored() {
        let world = World::at(NOW);
        for text in [
            include_str!("../../../events/alarm-ok.json"),
            include_str!("../../../events/alarm-insufficient-data.json"),
        ] {
            let out = world.one(&event(text)).await;
            assert_eq!(out.decision, Decision::Ignored);
            assert_eq!(out.cycle_id, None);
            assert!(out.reason.contains("only ALARM"), "{}", out.reason);
        }
        assert!(world.recorder.started.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_second_alarm_in_the_window_is_a_counted_duplicate() {
        let world = World::at(NOW);
        let e = event(include_str!("../../../events/alarm-metric.json"));
        let first = world.one(&e).await;
        let second = world.one(&e).await;
        let third = world.one(&e).await;
        assert_eq!(second.decision, Decision::Duplicate);
        assert_eq!(second.cycle_id, first.cycle_id);
        assert_eq!(second.suppressed_count, 1);
        assert_eq!(third.suppressed_count, 2);
        assert_eq!(world.recorder.started.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn after_the_window_a_new_cycle_starts() {
        let mut world = World::at(NOW);
        let e = event(include_str!("../../../events/alarm-metric.json"));
        let first = world.one(&e).await;
        world.clock = FixedClock(NOW + Duration::seconds(301));
        let later = world.one(&e).await;
        assert_eq!(later.decision, Decision::Started);
        assert_ne!(later.cycle_id, first.cycle_id);
    }

    #[tokio::test]
    async fn the_halt_switch_refuses_new_cycles() {
        let world = World::at(NOW);
        world
            .store
            .set_halt(&HaltState {
                reason: "bad deploys".into(),
                actor: "ops".into(),
                since: NOW,
            })
            .await
            .unwrap();
        let out = world
            .one(&event(include_str!("../../../events/alarm-metric.json")))
            .await;
        assert_eq!(out.decision, Decision::Halted);
        assert!(out.reason.contains("bad deploys"));
        let out = world
            .one(&event(include_str!("../../../events/scheduled-24h.json")))
            .await;
        assert_eq!(out.decision, Decision::Halted);
        assert!(world.recorder.started.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_disabled_component_gets_no_cycle_and_no_claim() {
        let world = World::at(NOW);
        let alarm = event(include_str!("../../../events/alarm-metric.json"));
        let component = world
            .one(&alarm)
            .await
            .component
            .expect("a component alarm");
        let ledger = |name: &str| crate::health::ComponentHealth {
            component: name.to_owned(),
            failed_heals: 3,
            heal_pending: false,
            disabled: Some(crate::health::Disabled {
                since: NOW,
                reason: "3 heals failed".into(),
            }),
        };
        world
            .health
            .put_component_health(&ledger(component.as_str()))
            .await
            .unwrap();
        let later = World {
            clock: FixedClock(NOW + Duration::seconds(301)),
            ..world
        };
        let out = later.one(&alarm).await;
        assert_eq!(out.decision, Decision::ComponentDisabled);
        assert_eq!(out.cycle_id, None);
        assert!(out.reason.contains("enable-component"), "{}", out.reason);
        assert_eq!(later.recorder.started.lock().unwrap().len(), 1);
        // A fleet-wide tick still runs: only the named component is disabled.
        let tick = later
            .one(&event(include_str!("../../../events/scheduled-24h.json")))
            .await;
        assert_eq!(tick.decision, Decision::Started);
        // Disabling fleet-wide cycles stops the tick too.
        later
            .health
            .put_component_health(&ledger(crate::health::FLEET))
            .await
            .unwrap();
        let manual = later
            .manual(ManualCycle {
                tenant_id: None,
                components: Vec::new(),
                mode: CycleMode::Routine,
                analysis_window_hours: 24,
                max_improvements: 1,
                dry_run: false,
                requested_by: "key:ops".into(),
            })
            .await
            .unwrap();
        assert_eq!(manual.decision, Decision::ComponentDisabled);
        assert_eq!(later.recorder.started.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn with_self_building_off_intake_acknowledges_and_starts_nothing() {
        let mut world = World::at(NOW);
        world.config =
            Config::from_lookup(|k| (k == "ENABLE_SELF_BUILDING").then(|| "false".into())).unwrap();
        for text in [
            include_str!("../../../events/alarm-metric.json"),
            include_str!("../../../events/scheduled-24h.json"),
        ] {
            let out = world.one(&event(text)).await;
            assert_eq!(out.decision, Decision::Disabled);
            assert_eq!(out.decision.as_str(), "disabled");
            assert!(
                out.reason.contains("ENABLE_SELF_BUILDING"),
                "{}",
                out.reason
            );
            assert_eq!(out.cycle_id, None);
        }
        assert!(world.recorder.started.lock().unwrap().is_empty());
        // Nothing was claimed either: turned back on, the same alarm starts its cycle.
        world.config = Config::default();
        let out = world
            .one(&event(include_str!("../../../events/alarm-metric.json")))
            .await;
        assert_eq!(out.decision, Decision::Started);
    }

    #[tokio::test]
    async fn the_daily_schedule_starts_a_fleet_wide_routine_cycle() {
        let world = World::at(NOW);
        let out = world
            .one(&event(include_str!("../../../events/scheduled-24h.json")))
            .await;
        assert_eq!(out.decision, Decision::Started);
        assert_eq!(out.mode, CycleMode::Routine);
        assert_eq!(out.component, None);
        assert_eq!(out.dedup_key, "*#*");
        let started = world.recorder.started.lock().unwrap();
        assert!(started[0].components.is_empty());
        assert!(
            matches!(&started[0].trigger, Trigger::Schedule { rule: Some(r) } if r.contains("DailyCycleRule"))
        );
    }

    fn polled(name: &str, function: &str, changed: OffsetDateTime) -> AlarmSignal {
        AlarmSignal {
            name: name.into(),
            arn: None,
            kind: AlarmKind::Metric,
            state: AlarmState::Alarm,
            reason: None,
            state_changed_at: Some(changed),
            metrics: vec![MetricRef {
                namespace: Some("AWS/Lambda".into()),
                name: Some("Errors".into()),
                dimensions: vec![("FunctionName".into(), function.into())],
            }],
            alarm_rule: None,
        }
    }

    #[tokio::test]
    async fn a_poll_handles_each_recent_alarm_and_skips_old_ones() {
        let mut world = World::at(NOW);
        world.recorder.alarms = vec![
            polled("a-HighLatency", "a", NOW - Duration::minutes(2)),
            polled("b-errors", "b", NOW - Duration::minutes(3)),
            polled("b-throttles", "b", NOW - Duration::minutes(3)),
            polled("c-errors", "c", NOW - Duration::hours(5)),
            polled("d-errors", "bad\u{0}name", NOW),
        ];
        let IntakeResponse::Many(outs) = world
            .handle(&event(include_str!("../../../events/scheduled-poll.json")))
            .await
            .unwrap()
        else {
            panic!("a poll answers with a list");
        };
        let decisions: Vec<Decision> = outs.iter().map(|o| o.decision).collect();
        assert_eq!(
            decisions,
            [
                Decision::Started,
                Decision::Started,
                Decision::Duplicate,
                Decision::Ignored,
                Decision::Ignored
            ]
        );
        assert_eq!(outs[0].mode, CycleMode::Emergency);
        assert!(outs[4].reason.contains("component"), "{}", outs[4].reason);
        assert_eq!(world.recorder.started.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_refused_start_releases_the_claim_so_a_retry_can_win() {
        let world = World::at(NOW);
        *world.recorder.fail_with.lock().unwrap() =
            Some(|| OrchestratorError::Rejected("no such state machine".into()));
        let e = event(include_str!("../../../events/alarm-metric.json"));
        let err = world.handle(&e).await.unwrap_err();
        assert_eq!(err.error_type(), "DependencyFailed");
        *world.recorder.fail_with.lock().unwrap() = None;
        let out = world.one(&e).await;
        assert_eq!(out.decision, Decision::Started);
    }

    #[tokio::test]
    async fn a_start_that_may_have_happened_keeps_the_claim_for_the_same_cycle() {
        // GIVEN a start whose answer never came (it may have started the execution)
        let mut world = World::at(NOW);
        *world.recorder.fail_with.lock().unwrap() =
            Some(|| OrchestratorError::Unavailable("no answer".into()));
        let e = event(include_str!("../../../events/alarm-metric.json"));
        let err = world.handle(&e).await.unwrap_err();
        assert_eq!(err.error_type(), "Retryable");
        *world.recorder.fail_with.lock().unwrap() = None;
        // WHEN the event comes again at once THEN the claim still holds it
        let again = world.one(&e).await;
        assert_eq!(again.decision, Decision::Duplicate);
        let claimed = again.cycle_id.unwrap();
        // WHEN Lambda delivers it again a minute later THEN the claimed cycle starts, under
        // the same id (a second start of one execution name is idempotent)
        world.clock = FixedClock(NOW + STALE_CLAIM_AFTER);
        let out = world.one(&e).await;
        assert_eq!(out.decision, Decision::Started);
        assert_eq!(out.cycle_id.as_ref(), Some(&claimed));
        let started = world.recorder.started.lock().unwrap();
        assert_eq!(started.len(), 1);
        assert_eq!(started[0].cycle_id, claimed);
    }

    #[tokio::test]
    async fn a_start_whose_claim_cannot_be_marked_fails_with_the_store_fault() {
        // GIVEN a store that takes the claim but not the mark (its disk just filled up)
        let world = World::at(NOW);
        *world.store.mark_fails.lock().unwrap() =
            Some(|| StoreError::Fault("db: database or disk is full".into()));
        // WHEN an alarm starts a cycle
        let err = world
            .handle(&event(include_str!("../../../events/alarm-metric.json")))
            .await
            .unwrap_err();
        // THEN intake fails, not retried, naming the cycle and the fault
        assert_eq!(err.error_type(), "StoreFault");
        let message = err.to_string();
        assert!(message.contains("was started"), "{message}");
        assert!(message.contains("disk is full"), "{message}");
        // AND a passing fault stays retryable
        *world.store.mark_fails.lock().unwrap() =
            Some(|| StoreError::Unavailable("throttled".into()));
        world.store.claims.lock().unwrap().clear();
        let err = world
            .handle(&event(include_str!("../../../events/alarm-metric.json")))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "Retryable");
    }

    #[tokio::test]
    async fn a_stale_unstarted_claim_is_started_by_the_next_event() {
        let mut world = World::at(NOW);
        let e = event(include_str!("../../../events/alarm-metric.json"));
        // GIVEN a claim whose winner died before starting the cycle
        let key = DedupKey::new(None, Some(ComponentId::parse("orders-api").unwrap()));
        let request_id = world.one(&e).await.cycle_id.unwrap();
        world
            .store
            .claims
            .lock()
            .unwrap()
            .get_mut(key.as_str())
            .unwrap()
            .started = false;
        world.recorder.started.lock().unwrap().clear();
        // WHEN the same alarm arrives more than a minute later
        world.clock = FixedClock(NOW + Duration::seconds(90));
        let out = world.one(&e).await;
        // THEN the stored cycle is started under its original id
        assert_eq!(out.decision, Decision::Started);
        assert_eq!(out.cycle_id.as_ref(), Some(&request_id));
        let started = world.recorder.started.lock().unwrap();
        assert_eq!(started[0].cycle_id, request_id);
    }

    #[tokio::test]
    async fn malformed_events_are_invalid_and_name_the_field() {
        let world = World::at(NOW);
        let err = world
            .handle(&json!({"detail-type": "CloudWatch Alarm State Change"}))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "InvalidEvent");
        assert!(err.to_string().contains("source"), "{err}");
        let mut e = event(include_str!("../../../events/alarm-metric.json"));
        e["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"]["TenantId"] =
            json!("no spaces allowed");
        let err = world.handle(&e).await.unwrap_err();
        assert_eq!(err.error_type(), "InvalidEvent");
        assert!(err.to_string().contains("tenant_id"), "{err}");
    }

    fn manual(tenant: &str, components: &[&str]) -> ManualCycle {
        ManualCycle {
            tenant_id: Some(TenantId::parse(tenant).unwrap()),
            components: components
                .iter()
                .map(|c| ComponentId::parse(c).unwrap())
                .collect(),
            mode: CycleMode::Routine,
            analysis_window_hours: 6,
            max_improvements: 2,
            dry_run: true,
            requested_by: "key:agent-1".into(),
        }
    }

    #[tokio::test]
    async fn a_manual_cycle_is_shaped_by_its_request_and_deduplicated() {
        let now = datetime!(2026-11-22 05:00:00 UTC);
        let world = World::at(now);
        let first = world.manual(manual("acme", &["orders-api"])).await.unwrap();
        assert_eq!(first.decision, Decision::Started);
        assert_eq!(first.dedup_key, "acme#orders-api");
        let id = first.cycle_id.clone().unwrap();
        let record = world.store.get_cycle(&id).await.unwrap().expect("recorded");
        assert_eq!(record.status, CycleStatus::Running);
        assert_eq!(record.execution_ref, format!("local:{id}"));
        let started = world.recorder.started.lock().unwrap().clone();
        let request = &started[0];
        assert_eq!(request.analysis_window.start, now - Duration::hours(6));
        assert_eq!((request.max_improvements, request.dry_run), (2, true));
        assert_eq!(
            request.trigger,
            Trigger::Manual {
                requested_by: "key:agent-1".into()
            }
        );
        let again = world.manual(manual("acme", &["orders-api"])).await.unwrap();
        assert_eq!(again.decision, Decision::Duplicate);
        assert_eq!(again.cycle_id, first.cycle_id);

        // Several components share the tenant-wide key; each is analysed.
        let many = world
            .manual(manual("acme", &["orders-api", "billing"]))
            .await
            .unwrap();
        assert_eq!(many.dedup_key, "acme#*");
        let started = world.recorder.started.lock().unwrap().clone();
        assert_eq!(started.last().unwrap().components.len(), 2);
    }

    #[tokio::test]
    async fn a_manual_cycle_respects_the_halt_switch() {
        let world = World::at(datetime!(2026-11-22 05:00:00 UTC));
        world
            .store
            .set_halt(&HaltState {
                reason: "incident".into(),
                actor: "ops".into(),
                since: datetime!(2026-11-22 04:00:00 UTC),
            })
            .await
            .unwrap();
        let outcome = world.manual(manual("acme", &[])).await.unwrap();
        assert_eq!(outcome.decision, Decision::Halted);
        assert!(outcome.reason.contains("incident"));
        assert!(world.recorder.started.lock().unwrap().is_empty());
    }
}
