//! Disabled components in cycles: a component the health pass disabled is not changed until
//! an operator re-enables it. The analyze step asks [`cycle_scope`] what its cycle may work
//! on and audits every component it leaves out with [`SkippedComponent::reason`].

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{ComponentHealth, FLEET};
use crate::cycle::CycleRequest;
use crate::ids::ComponentId;

/// A disabled component a cycle left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedComponent {
    /// Its name ([`FLEET`] when fleet-wide cycles are disabled).
    pub component: String,
    /// Disabled since.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// Why the health pass disabled it.
    pub why: String,
    /// In words: which, since when, why, and how to re-enable.
    pub reason: String,
}

impl SkippedComponent {
    /// The skip of a disabled ledger; none when it is not disabled.
    pub fn of(ledger: &ComponentHealth) -> Option<Self> {
        let disabled = ledger.disabled.as_ref()?;
        let name = &ledger.component;
        let since = super::rfc3339(disabled.since);
        let reason = format!(
            "{name} is disabled since {since} ({}): selfbuild makes no change to it until an \
             operator re-enables it with `selfbuild enable-component {name}` or the MCP tool \
             `enable_component`",
            disabled.reason
        );
        Some(Self {
            component: name.clone(),
            since: disabled.since,
            why: disabled.reason.clone(),
            reason,
        })
    }
}

/// What a cycle may work on, given the heal ledgers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleScope {
    /// Nothing is left to analyse: every component in scope is disabled (or, for a
    /// fleet-wide cycle, fleet-wide cycles are).
    pub nothing_left: bool,
    /// The request's components that stay in scope (empty for a fleet-wide cycle).
    pub components: Vec<ComponentId>,
    /// Components the analysis must leave out (a fleet-wide cycle's disabled ones).
    pub excluded: BTreeSet<ComponentId>,
    /// Every disabled component, of those the request names or all for a fleet-wide
    /// cycle; the caller reports the ones that were in its scope.
    pub skipped: Vec<SkippedComponent>,
}

/// Which of `request`'s components stay in scope: a component-scoped cycle drops its
/// disabled components (and has nothing left when all are); a fleet-wide cycle has nothing
/// left when [`FLEET`] itself is disabled, else it excludes every disabled component.
pub fn cycle_scope(request: &CycleRequest, ledgers: &[ComponentHealth]) -> CycleScope {
    let disabled: Vec<SkippedComponent> = ledgers.iter().filter_map(SkippedComponent::of).collect();
    let is_disabled = |name: &str| disabled.iter().any(|d| d.component == name);
    if request.components.is_empty() {
        if let Some(fleet) = disabled.iter().find(|d| d.component == FLEET) {
            return CycleScope {
                nothing_left: true,
                components: Vec::new(),
                excluded: BTreeSet::new(),
                skipped: vec![fleet.clone()],
            };
        }
        // A name that is no component id (only `*`) cannot match an opportunity anyway.
        let excluded = disabled
            .iter()
            .filter_map(|d| ComponentId::parse(&d.component).ok())
            .collect();
        return CycleScope {
            nothing_left: false,
            components: Vec::new(),
            excluded,
            skipped: disabled,
        };
    }
    let (kept, dropped): (Vec<ComponentId>, Vec<ComponentId>) = request
        .components
        .iter()
        .cloned()
        .partition(|c| !is_disabled(c.as_str()));
    let skipped = disabled
        .into_iter()
        .filter(|d| dropped.iter().any(|c| c.as_str() == d.component))
        .collect();
    CycleScope {
        nothing_left: kept.is_empty(),
        components: kept,
        excluded: BTreeSet::new(),
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cycle::{CycleMode, TimeWindow, Trigger};
    use crate::health::Disabled;
    use crate::ids::CycleId;
    use time::macros::datetime;

    const SINCE: OffsetDateTime = datetime!(2026-12-05 12:15 UTC);

    fn request(components: &[&str]) -> CycleRequest {
        CycleRequest {
            cycle_id: CycleId::parse("c1").unwrap(),
            mode: CycleMode::Routine,
            tenant_id: None,
            components: components
                .iter()
                .map(|c| ComponentId::parse(c).unwrap())
                .collect(),
            analysis_window: TimeWindow {
                start: SINCE,
                end: SINCE,
            },
            max_improvements: 3,
            max_concurrency: 1,
            dry_run: false,
            trigger: Trigger::Schedule { rule: None },
            dedup_key: "*#*".into(),
            requested_at: SINCE,
        }
    }

    fn disabled(name: &str) -> ComponentHealth {
        ComponentHealth {
            component: name.into(),
            failed_heals: 3,
            heal_pending: false,
            disabled: Some(Disabled {
                reason: "3 failed heals (limit 3)".into(),
                since: SINCE,
            }),
        }
    }

    #[test]
    fn a_cycle_on_a_disabled_component_has_nothing_left_and_says_why_and_how_to_reenable() {
        let ledgers = [disabled("orders"), ComponentHealth::fresh("billing")];
        let scope = cycle_scope(&request(&["orders"]), &ledgers);
        assert!(scope.nothing_left);
        assert_eq!(scope.skipped.len(), 1);
        let reason = &scope.skipped[0].reason;
        for part in [
            "orders is disabled",
            "2026-12-05T12:15:00Z",
            "3 failed heals",
            "selfbuild enable-component orders",
            "enable_component",
        ] {
            assert!(reason.contains(part), "{part:?} not in {reason:?}");
        }
    }

    #[test]
    fn only_the_disabled_components_of_a_request_are_dropped() {
        let ledgers = [disabled("orders"), disabled("payments")];
        let scope = cycle_scope(&request(&["orders", "billing"]), &ledgers);
        assert!(!scope.nothing_left);
        assert_eq!(scope.components, [ComponentId::parse("billing").unwrap()]);
        let names: Vec<&str> = scope.skipped.iter().map(|s| s.component.as_str()).collect();
        assert_eq!(names, ["orders"], "payments was not in scope");
        // Not disabled (a pending heal only): nothing dropped.
        let mut pending = ComponentHealth::fresh("orders");
        pending.heal_pending = true;
        let scope = cycle_scope(&request(&["orders"]), &[pending]);
        assert!(!scope.nothing_left && scope.skipped.is_empty());
    }

    #[test]
    fn a_fleet_wide_cycle_excludes_the_disabled_ones_or_ends_when_the_fleet_is_disabled() {
        let scope = cycle_scope(&request(&[]), &[disabled("orders"), disabled("billing")]);
        assert!(!scope.nothing_left);
        let excluded: Vec<&str> = scope.excluded.iter().map(ComponentId::as_str).collect();
        assert_eq!(excluded, ["billing", "orders"]);
        assert_eq!(scope.skipped.len(), 2);

        let scope = cycle_scope(&request(&[]), &[disabled(FLEET), disabled("orders")]);
        assert!(scope.nothing_left);
        assert_eq!(scope.skipped[0].component, FLEET);
        // A component cycle is not held back by disabled fleet-wide cycles.
        assert!(!cycle_scope(&request(&["orders"]), &[disabled(FLEET)]).nothing_left);
    }
}
