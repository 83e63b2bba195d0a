//! Registered agents as peers (seed R10): their low-traffic windows, who owns a component,
//! who depends on whom, the deployment window they grant and the notice they are sent;
//! [`metrics`]: their own telemetry, as analysis reads it.

pub mod metrics;

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::ids::TenantId;
use crate::records::AgentRecord;

/// The tool asked for a deployment window when an agent names none.
pub const DEFAULT_WINDOW_TOOL: &str = "request_deployment_window";
/// The tool a dependency change is announced with when an agent names none.
pub const DEFAULT_NOTIFY_TOOL: &str = "notify_dependency_changed";
/// The most low-traffic windows one agent may declare.
pub const MAX_WINDOWS: usize = 24;
/// The longest wait an agent's answer may impose on a deploy (a day).
pub const MAX_WINDOW_WAIT_SECONDS: u32 = 86_400;
/// The shortest wait: an agent cannot make the state machine spin.
pub const MIN_WINDOW_WAIT_SECONDS: u32 = 60;

const MINUTES_PER_DAY: u16 = 24 * 60;

/// A daily UTC time range, written `HH:MM-HH:MM`; it may wrap past midnight (`22:00-02:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LowTrafficWindow {
    /// Minutes after midnight UTC, inclusive.
    start: u16,
    /// Minutes after midnight UTC, exclusive.
    end: u16,
}

impl LowTrafficWindow {
    /// Parses `HH:MM-HH:MM` (UTC, 00:00–23:59, start ≠ end).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (start, end) = text
            .split_once('-')
            .ok_or_else(|| format!("{text:?} is not HH:MM-HH:MM (UTC), e.g. 01:00-05:30"))?;
        let minutes = |part: &str| -> Result<u16, String> {
            let (h, m) = part
                .trim()
                .split_once(':')
                .filter(|(h, m)| h.len() == 2 && m.len() == 2)
                .ok_or_else(|| format!("{text:?}: {part:?} is not HH:MM"))?;
            let h: u16 = h
                .parse()
                .map_err(|_| format!("{text:?}: hour {h:?} is not a number"))?;
            let m: u16 = m
                .parse()
                .map_err(|_| format!("{text:?}: minute {m:?} is not a number"))?;
            if h > 23 || m > 59 {
                return Err(format!(
                    "{text:?}: {part:?} is not a time of day (00:00–23:59)"
                ));
            }
            Ok(h * 60 + m)
        };
        let window = Self {
            start: minutes(start)?,
            end: minutes(end)?,
        };
        if window.start == window.end {
            return Err(format!("{text:?}: start and end are the same time"));
        }
        Ok(window)
    }

    /// Whether `at` (UTC) falls inside.
    pub fn contains(&self, at: OffsetDateTime) -> bool {
        let now = minute_of_day(at);
        if self.start < self.end {
            (self.start..self.end).contains(&now)
        } else {
            now >= self.start || now < self.end
        }
    }

    /// Minutes from `at` until the window next opens (0 inside it).
    fn minutes_until_open(&self, at: OffsetDateTime) -> u16 {
        if self.contains(at) {
            return 0;
        }
        (self.start + MINUTES_PER_DAY - minute_of_day(at)) % MINUTES_PER_DAY
    }
}

fn minute_of_day(at: OffsetDateTime) -> u16 {
    let at = at.to_offset(time::UtcOffset::UTC);
    u16::from(at.hour()) * 60 + u16::from(at.minute())
}

impl TryFrom<String> for LowTrafficWindow {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl From<LowTrafficWindow> for String {
    fn from(w: LowTrafficWindow) -> Self {
        w.to_string()
    }
}

impl fmt::Display for LowTrafficWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// When the next of `windows` opens after `at`: `None` when `at` is inside one (or there
/// are none), else the start of the nearest (whole minutes, seconds dropped).
pub fn next_window_open(
    windows: &[LowTrafficWindow],
    at: OffsetDateTime,
) -> Option<OffsetDateTime> {
    let wait = windows.iter().map(|w| w.minutes_until_open(at)).min()?;
    if wait == 0 {
        return None;
    }
    let start_of_minute = at.replace_nanosecond(0).ok()?.replace_second(0).ok()?;
    Some(start_of_minute + Duration::minutes(i64::from(wait)))
}

/// The agent that owns `component` among `agents` of `tenant` (a tenant's own agent first,
/// then a fleet-wide one).
pub fn owner_of<'a>(
    agents: &'a [AgentRecord],
    tenant: Option<&TenantId>,
    component: &str,
) -> Option<&'a AgentRecord> {
    let owns = |a: &&AgentRecord| a.components.iter().any(|c| c == component);
    agents
        .iter()
        .filter(owns)
        .find(|a| a.tenant_id.as_ref() == tenant)
        .or_else(|| agents.iter().filter(owns).find(|a| a.tenant_id.is_none()))
}

/// The agents with an MCP URL that declare a dependency on `changed`, by name, excluding
/// `changed` itself (the seed: dependent agents hear of a change).
pub fn dependents_of<'a>(agents: &'a [AgentRecord], changed: &AgentRecord) -> Vec<&'a AgentRecord> {
    agents
        .iter()
        .filter(|a| a.name != changed.name || a.tenant_id != changed.tenant_id)
        .filter(|a| a.mcp_url.is_some())
        .filter(|a| a.depends_on.iter().any(|d| d == &changed.name))
        .filter(|a| a.tenant_id.is_none() || a.tenant_id == changed.tenant_id)
        .collect()
}

/// What an agent answered when asked for a deployment window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowAnswer {
    /// Deploy now.
    pub deploy_now: bool,
    /// When not now: how long to wait (clamped to 60 s – 1 day; none: `DEPLOY_DEFER_SECONDS`).
    #[serde(default)]
    pub retry_after_seconds: Option<u32>,
    /// Why, in the agent's words.
    #[serde(default)]
    pub reason: Option<String>,
}

/// What selfbuild asks the owner before a deploy (the window tool's arguments).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowRequest {
    /// The agent asked.
    pub agent: String,
    /// The function about to change.
    pub component: String,
    /// The improvement.
    pub improvement_id: String,
    /// Its tenant.
    pub tenant_id: Option<String>,
    /// The canary's share of traffic.
    pub canary_weight: f64,
}

/// What happened to the changed agent's component (the notice's `event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeEvent {
    /// A canary now takes part of the traffic.
    Deployed,
    /// The canary took all traffic.
    Promoted,
    /// The previous version was restored.
    RolledBack,
}

impl ChangeEvent {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployed => "deployed",
            Self::Promoted => "promoted",
            Self::RolledBack => "rolled_back",
        }
    }
}

/// The notification tool's arguments: what changed, sent to each dependent agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeNotice {
    /// Deployed, promoted or rolled back.
    pub event: ChangeEvent,
    /// The agent whose component changed.
    pub changed_agent: String,
    /// The function that changed.
    pub component: String,
    /// The improvement.
    pub improvement_id: String,
    /// Its tenant.
    pub tenant_id: Option<String>,
    /// In words.
    pub detail: String,
    /// When (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// How one agent is reached: its MCP endpoint and where its key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTarget {
    /// The agent's name.
    pub name: String,
    /// Its MCP endpoint (Streamable HTTP).
    pub mcp_url: String,
    /// The secret holding the bearer key, if it wants one.
    pub key_secret_id: Option<String>,
}

impl PeerTarget {
    /// How `agent` is reached, when it has an MCP URL.
    pub fn of(agent: &AgentRecord) -> Option<Self> {
        Some(Self {
            name: agent.name.clone(),
            mcp_url: agent.mcp_url.clone()?,
            key_secret_id: agent.key_secret_id.clone(),
        })
    }
}

/// What the component's owner decided about a deploy, before selfbuild's own detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerWindow {
    /// No owner decision: selfbuild's own low-traffic detection decides; the note (if any)
    /// says why the owner did not (no owner, no answer, inside a declared window).
    Own(Option<String>),
    /// The owner said deploy now.
    Now(String),
    /// Not now: wait until then.
    Later {
        /// When to look again.
        wait_until: OffsetDateTime,
        /// Why.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn windows_parse_and_print_and_say_what_is_wrong() {
        let w = LowTrafficWindow::parse("22:30-02:00").unwrap();
        assert_eq!(w.to_string(), "22:30-02:00");
        for (bad, says) in [
            ("22:30", "not HH:MM-HH:MM"),
            ("24:00-01:00", "not a time of day"),
            ("01:60-02:00", "not a time of day"),
            ("1:00-02:00", "is not HH:MM"),
            ("aa:00-02:00", "hour \"aa\""),
            ("03:00-03:00", "same time"),
        ] {
            let e = LowTrafficWindow::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_window_wrapping_midnight_contains_both_sides_and_the_next_opening_is_found() {
        let w = [LowTrafficWindow::parse("22:00-02:00").unwrap()];
        assert_eq!(next_window_open(&w, datetime!(2026-01-01 23:10 UTC)), None);
        assert_eq!(
            next_window_open(&w, datetime!(2026-01-01 01:59:30 UTC)),
            None
        );
        assert_eq!(
            next_window_open(&w, datetime!(2026-01-01 02:00:10 UTC)),
            Some(datetime!(2026-01-01 22:00 UTC))
        );
        let two = [
            LowTrafficWindow::parse("03:00-04:00").unwrap(),
            LowTrafficWindow::parse("12:00-13:00").unwrap(),
        ];
        assert_eq!(
            next_window_open(&two, datetime!(2026-01-01 05:00 UTC)),
            Some(datetime!(2026-01-01 12:00 UTC))
        );
        assert_eq!(
            next_window_open(&two, datetime!(2026-01-01 14:00 UTC)),
            Some(datetime!(2026-01-02 03:00 UTC))
        );
        assert_eq!(next_window_open(&[], datetime!(2026-01-01 14:00 UTC)), None);
    }
}
