//! Identifier newtypes, checked once at the edge and trusted inside.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {value:?} is invalid: {problem}")]
pub struct IdError {
    /// Which identifier was being parsed (`tenant_id`, `component`, …).
    pub kind: &'static str,
    /// The rejected input, truncated for display.
    pub value: String,
    /// What rule it broke.
    pub problem: &'static str,
}

impl IdError {
    fn new(kind: &'static str, value: &str, problem: &'static str) -> Self {
        let value = value.chars().take(80).collect();
        Self {
            kind,
            value,
            problem,
        }
    }
}

/// A tenant: 1–64 characters of `[A-Za-z0-9._-]`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    /// Parses a tenant id.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if value.is_empty() || value.len() > 64 {
            return Err(IdError::new("tenant_id", value, "must be 1-64 characters"));
        }
        if !value.chars().all(ok_char) {
            return Err(IdError::new(
                "tenant_id",
                value,
                "may only contain letters, digits, '.', '_' and '-'",
            ));
        }
        if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(IdError::new(
                "tenant_id",
                value,
                "must start with a letter or digit",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// The tenant id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A component of the fleet (a Lambda function, a service, a table …): 1–256 printable characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ComponentId(String);

impl ComponentId {
    /// Parses a component id; surrounding whitespace is not allowed.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        if value.is_empty() || value.chars().count() > 256 {
            return Err(IdError::new("component", value, "must be 1-256 characters"));
        }
        if value.chars().any(char::is_control) {
            return Err(IdError::new(
                "component",
                value,
                "must not contain control characters",
            ));
        }
        if value.trim() != value {
            return Err(IdError::new(
                "component",
                value,
                "must not start or end with whitespace",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// The component id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An improvement cycle; also the Step Functions execution name, so `[A-Za-z0-9_-]{1,80}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CycleId(String);

impl CycleId {
    /// Parses a cycle id.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        if value.is_empty() || value.len() > 80 {
            return Err(IdError::new("cycle_id", value, "must be 1-80 characters"));
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        {
            return Err(IdError::new(
                "cycle_id",
                value,
                "may only contain letters, digits, '_' and '-'",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// The id of a new cycle claiming `key` at `claimed_at`: tenant, component and second to
    /// read, then `suffix` as 8 hex digits, drawn from an
    /// [`IdSource`](crate::ports::IdSource) so nobody can derive it from them; at most 71 chars.
    ///
    /// Ids name records across tenants, so they must not be guessable from what they show. A
    /// retried start stays idempotent because the claim stores the cycle input, id included.
    pub fn for_claim(key: &DedupKey, claimed_at: OffsetDateTime, suffix: u32) -> Self {
        let stamp = OffsetDateTime::from_unix_timestamp(claimed_at.unix_timestamp())
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .unwrap_or_default();
        let tenant = key.tenant.as_ref().map_or("system", TenantId::as_str);
        let component = key.component.as_ref().map_or("fleet", ComponentId::as_str);
        Self(format!(
            "{}-{}-{stamp}-{:08x}",
            slug(tenant, 20),
            slug(component, 24),
            suffix
        ))
    }

    /// The cycle id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An improvement: `<cycle>-<rank>`, the rank of its opportunity in the cycle; stable across
/// retries of any step.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImprovementId(String);

impl ImprovementId {
    /// The improvement of the opportunity ranked `rank` in `cycle`.
    pub fn new(cycle: &CycleId, rank: u32) -> Self {
        Self(format!("{cycle}-{rank}"))
    }

    /// Parses an improvement id: a cycle id, `-`, and a rank.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        let bad = |problem| IdError::new("improvement_id", value, problem);
        let (cycle, rank) = value
            .rsplit_once('-')
            .ok_or_else(|| bad("must be <cycle id>-<rank>"))?;
        if rank.is_empty()
            || !rank.bytes().all(|b| b.is_ascii_digit())
            || rank.parse::<u32>().is_err()
        {
            return Err(bad("must end in -<rank>, a whole number"));
        }
        CycleId::parse(cycle).map_err(|e| bad(e.problem))?;
        Ok(Self(value.to_owned()))
    }

    /// The cycle it belongs to.
    pub fn cycle_id(&self) -> CycleId {
        let cycle = self.0.rsplit_once('-').map_or(self.0.as_str(), |(c, _)| c);
        CycleId(cycle.to_owned())
    }

    /// The improvement id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for ImprovementId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ImprovementId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Keeps `[A-Za-z0-9_-]`, replaces the rest with `-`, and truncates to `max` characters.
fn slug(text: &str, max: usize) -> String {
    let slug: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(max)
        .collect();
    if slug.is_empty() { "x".into() } else { slug }
}

/// The scope that dedup works on: at most one cycle per (tenant, component) per window.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupKey {
    /// The tenant, or none for system-wide.
    pub tenant: Option<TenantId>,
    /// The component, or none for the whole fleet.
    pub component: Option<ComponentId>,
    text: String,
}

impl DedupKey {
    /// The key for a tenant and component (either may be absent).
    pub fn new(tenant: Option<TenantId>, component: Option<ComponentId>) -> Self {
        let tenant_part = tenant.as_ref().map_or("*", TenantId::as_str);
        let component_part = component
            .as_ref()
            .map_or_else(|| "*".to_owned(), |c| escape_component(c.as_str()));
        let text = format!("{tenant_part}#{component_part}");
        Self {
            tenant,
            component,
            text,
        }
    }

    /// `tenant#component`, `*` for an absent part; `#`, `*` and `%` in components are escaped.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn escape_component(component: &str) -> String {
    let mut out = String::with_capacity(component.len());
    for c in component.chars() {
        match c {
            '%' => out.push_str("%25"),
            '#' => out.push_str("%23"),
            '*' => out.push_str("%2A"),
            _ => out.push(c),
        }
    }
    out
}

macro_rules! string_newtype_impls {
    ($($ty:ident),*) => {$(
        impl TryFrom<String> for $ty {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(&value)
            }
        }
        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.0
            }
        }
        impl std::str::FromStr for $ty {
            type Err = IdError;
            fn from_str(value: &str) -> Result<Self, IdError> {
                Self::parse(value)
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}

string_newtype_impls!(TenantId, ComponentId, CycleId, ImprovementId);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idsource::{OsRandom, SeededIds};
    use crate::ports::IdSource;
    use time::macros::datetime;

    #[test]
    fn improvement_ids_are_a_cycle_id_and_a_rank() {
        let cycle = CycleId::parse("acme-orders-20261122T050000Z-0a0b0c0d").unwrap();
        let id = ImprovementId::new(&cycle, 3);
        assert_eq!(id, "acme-orders-20261122T050000Z-0a0b0c0d-3");
        assert_eq!(ImprovementId::parse(id.as_str()), Ok(id.clone()));
        assert_eq!(id.cycle_id(), cycle);
        let longest = format!("{}-4294967295", "c".repeat(80));
        assert!(ImprovementId::parse(&longest).is_ok());
        for (bad, problem) in [
            ("", "<cycle id>-<rank>"),
            ("c1", "<cycle id>-<rank>"),
            ("c1-", "whole number"),
            ("c1-x", "whole number"),
            ("c1-+1", "whole number"),
            ("c1-4294967296", "whole number"),
            ("-1", "1-80 characters"),
            ("c#1-1", "letters, digits"),
            (&format!("{}-1", "c".repeat(81)), "1-80 characters"),
        ] {
            let err = ImprovementId::parse(bad).unwrap_err();
            assert_eq!(err.kind, "improvement_id");
            assert!(err.problem.contains(problem), "{bad:?}: {err}");
        }
        let json = serde_json::to_value(&id).unwrap();
        assert_eq!(json, id.as_str());
        assert!(serde_json::from_value::<ImprovementId>(serde_json::json!("nope")).is_err());
    }

    #[test]
    fn tenant_ids_are_checked() {
        assert!(TenantId::parse("acme-1.eu_west").is_ok());
        assert!(TenantId::parse("").is_err());
        assert!(TenantId::parse("_hidden").is_err());
        assert!(TenantId::parse("a#b").is_err());
        assert!(TenantId::parse(&"a".repeat(65)).is_err());
        let err = TenantId::parse("a b").unwrap_err();
        assert_eq!(err.kind, "tenant_id");
    }

    #[test]
    fn component_ids_allow_arns_but_not_control_characters() {
        assert!(ComponentId::parse("arn:aws:lambda:us-east-1:1:function:orders").is_ok());
        assert!(ComponentId::parse("line\nbreak").is_err());
        assert!(ComponentId::parse(" padded").is_err());
    }

    #[test]
    fn dedup_keys_escape_separators_so_distinct_scopes_never_collide() {
        let a = DedupKey::new(None, Some(ComponentId::parse("x#y").unwrap()));
        let b = DedupKey::new(None, Some(ComponentId::parse("x%23y").unwrap()));
        let fleet = DedupKey::new(None, None);
        let star = DedupKey::new(None, Some(ComponentId::parse("*").unwrap()));
        assert_ne!(a.as_str(), b.as_str());
        assert_ne!(fleet.as_str(), star.as_str());
        assert_eq!(fleet.as_str(), "*#*");
    }

    #[test]
    fn cycle_ids_are_readable_valid_execution_names_with_a_random_end() {
        let key = DedupKey::new(
            Some(TenantId::parse(&"t".repeat(64)).unwrap()),
            Some(
                ComponentId::parse(
                    "arn:aws:lambda:us-east-1:123456789012:function:a-very-long-function-name",
                )
                .unwrap(),
            ),
        );
        let at = datetime!(2026-11-22 05:00:00.250 UTC);
        let id = CycleId::for_claim(&key, at, OsRandom.suffix());
        assert!(CycleId::parse(id.as_str()).is_ok(), "{id}");
        assert_eq!(id.as_str().len(), 71, "{id}");
        let (readable, random) = id.as_str().rsplit_once('-').unwrap();
        assert_eq!(
            readable,
            format!(
                "{}-arn-aws-lambda-us-east-1-20261122T050000Z",
                "t".repeat(20)
            )
        );
        assert!(random.len() == 8 && random.chars().all(|c| c.is_ascii_hexdigit()));
        // The same key and second, claimed again: only the random part differs.
        let again = CycleId::for_claim(
            &key,
            datetime!(2026-11-22 05:00:00.900 UTC),
            OsRandom.suffix(),
        );
        assert_ne!(id, again);
        assert!(again.as_str().starts_with(readable));
        // A replayed run gives the same ids.
        let replay = |seed| CycleId::for_claim(&key, at, SeededIds::new(seed, "timeouts").suffix());
        assert_eq!(replay(1), replay(1));
        assert_ne!(replay(1), replay(2));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use proptest::test_runner::{Config as ProptestConfig, RngSeed};

        /// A fixed seed: the same cases on every run and machine.
        fn config(cases: u32) -> ProptestConfig {
            ProptestConfig {
                cases,
                rng_seed: RngSeed::Fixed(0x5e1f_b01d),
                ..ProptestConfig::default()
            }
        }

        /// Any text: ASCII-heavy, with the separators and escapes ids care about, controls,
        /// spaces, multi-byte characters, and lengths around every limit.
        fn text() -> impl Strategy<Value = String> {
            let char = prop_oneof![
                4 => proptest::char::range('a', 'z'),
                2 => proptest::char::range('0', '9'),
                2 => proptest::sample::select(vec!['.', '_', '-', '#', '*', '%', ':', '/', ' ']),
                1 => proptest::sample::select(vec!['\n', '\t', '\u{7f}', '\u{a0}', 'é', '漢', '🦀']),
                1 => any::<char>(),
            ];
            prop_oneof![
                proptest::collection::vec(char.clone(), 0..12),
                proptest::collection::vec(char, 60..300),
            ]
            .prop_map(|chars| chars.into_iter().collect())
        }

        /// The rule of each id, written apart from its parser.
        fn tenant_ok(s: &str) -> bool {
            (1..=64).contains(&s.len())
                && s.starts_with(|c: char| c.is_ascii_alphanumeric())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
        }
        fn component_ok(s: &str) -> bool {
            (1..=256).contains(&s.chars().count())
                && !s.chars().any(char::is_control)
                && !s.starts_with(char::is_whitespace)
                && !s.ends_with(char::is_whitespace)
        }
        fn cycle_ok(s: &str) -> bool {
            (1..=80).contains(&s.len())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        }

        /// Undoes [`DedupKey::as_str`]: `tenant#component`, `*` absent, the component unescaped.
        fn decode(key: &str) -> (Option<String>, Option<String>) {
            let (tenant, component) = key.split_once('#').expect("a separator");
            let part = |p: &str| (p != "*").then(|| p.to_owned());
            let component = part(component).map(|c| {
                c.replace("%2A", "*")
                    .replace("%23", "#")
                    .replace("%25", "%")
            });
            (part(tenant), component)
        }

        proptest! {
            #![proptest_config(config(256))]

            /// Any text parses or is an error (never a panic), exactly as each id's rule
            /// says; what parses displays, serializes and parses back to itself.
            #[test]
            fn ids_parse_exactly_their_rule_and_round_trip(s in text()) {
                match TenantId::parse(&s) {
                    Ok(id) => {
                        prop_assert!(tenant_ok(&s));
                        prop_assert_eq!(id.to_string(), s.clone());
                        prop_assert_eq!(TenantId::parse(&id.to_string()), Ok(id.clone()));
                        let json = serde_json::to_string(&id).unwrap();
                        prop_assert_eq!(serde_json::from_str::<TenantId>(&json).unwrap(), id);
                    }
                    Err(e) => {
                        prop_assert!(!tenant_ok(&s));
                        prop_assert_eq!(e.kind, "tenant_id");
                        prop_assert!(serde_json::from_value::<TenantId>(serde_json::json!(s)).is_err());
                    }
                }
                match ComponentId::parse(&s) {
                    Ok(id) => {
                        prop_assert!(component_ok(&s));
                        prop_assert_eq!(id.as_str(), s.as_str());
                        prop_assert_eq!(id.to_string().parse::<ComponentId>(), Ok(id.clone()));
                        let json = serde_json::to_string(&id).unwrap();
                        prop_assert_eq!(serde_json::from_str::<ComponentId>(&json).unwrap(), id);
                    }
                    Err(e) => {
                        prop_assert!(!component_ok(&s));
                        prop_assert!(e.value.chars().count() <= 80);
                    }
                }
                match CycleId::parse(&s) {
                    Ok(id) => {
                        prop_assert!(cycle_ok(&s));
                        prop_assert_eq!(CycleId::parse(&id.to_string()), Ok(id.clone()));
                        let json = serde_json::to_string(&id).unwrap();
                        prop_assert_eq!(serde_json::from_str::<CycleId>(&json).unwrap(), id);
                    }
                    Err(_) => prop_assert!(!cycle_ok(&s)),
                }
            }

            /// A claim's cycle id is a valid execution name for any tenant, component and
            /// instant, and its readable part depends on nothing else.
            #[test]
            fn cycle_ids_for_any_claim_are_valid(
                tenant in proptest::option::of("[A-Za-z0-9][A-Za-z0-9._-]{0,63}"),
                component in proptest::option::of(text()),
                seconds in -377_705_116_800_i64..253_402_300_799,
                nanos in 0_u32..1_000_000_000,
                suffix in any::<u32>(),
            ) {
                let key = DedupKey::new(
                    tenant.map(|t| TenantId::parse(&t).unwrap()),
                    component.and_then(|c| ComponentId::parse(&c).ok()),
                );
                let at = OffsetDateTime::from_unix_timestamp(seconds).unwrap()
                    + time::Duration::nanoseconds(i64::from(nanos));
                let id = CycleId::for_claim(&key, at, suffix);
                prop_assert!(cycle_ok(id.as_str()), "{id}");
                prop_assert_eq!(CycleId::parse(id.as_str()), Ok(id.clone()));
                let end = format!("-{suffix:08x}");
                prop_assert!(id.as_str().ends_with(&end));
                let at_second_start = OffsetDateTime::from_unix_timestamp(seconds).unwrap();
                prop_assert_eq!(CycleId::for_claim(&key, at_second_start, suffix), id);
            }
        }

        proptest! {
            #![proptest_config(config(512))]

            /// Dedup keys decode to the scope they were made of, so distinct scopes never
            /// share a key (components drawn from the characters the encoding escapes).
            #[test]
            fn dedup_keys_round_trip_and_never_collide(
                a in (proptest::option::of("[ab]{1,2}"), proptest::option::of("[a#*%23A]{1,4}")),
                b in (proptest::option::of("[ab]{1,2}"), proptest::option::of("[a#*%23A]{1,4}")),
            ) {
                let key = |(t, c): &(Option<String>, Option<String>)| DedupKey::new(
                    t.as_deref().map(|t| TenantId::parse(t).unwrap()),
                    c.as_deref().map(|c| ComponentId::parse(c).unwrap()),
                );
                let (ka, kb) = (key(&a), key(&b));
                prop_assert_eq!(decode(ka.as_str()), a.clone());
                prop_assert_eq!(ka.to_string(), ka.as_str());
                prop_assert_eq!(ka.as_str() == kb.as_str(), a == b);
            }
        }
    }
}
