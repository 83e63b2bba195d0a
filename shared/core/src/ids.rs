//! Identifier newtypes, checked once at the edge and trusted inside.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::idsource::IdSource;

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
    /// read, then 8 hex digits from `ids` that nobody can derive from them; at most 71 chars.
    ///
    /// Ids name records across tenants, so they must not be guessable from what they show. A
    /// retried start stays idempotent because the claim stores the cycle input, id included.
    pub fn for_claim(key: &DedupKey, claimed_at: OffsetDateTime, ids: &dyn IdSource) -> Self {
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
            ids.suffix()
        ))
    }

    /// The cycle id as text.
    pub fn as_str(&self) -> &str {
        &self.0
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

string_newtype_impls!(TenantId, ComponentId, CycleId);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idsource::{OsRandom, SeededIds};
    use time::macros::datetime;

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
        let id = CycleId::for_claim(&key, at, &OsRandom);
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
        let again = CycleId::for_claim(&key, datetime!(2026-11-22 05:00:00.900 UTC), &OsRandom);
        assert_ne!(id, again);
        assert!(again.as_str().starts_with(readable));
        // A replayed run gives the same ids.
        let replay = |seed| CycleId::for_claim(&key, at, &SeededIds::new(seed, "timeouts"));
        assert_eq!(replay(1), replay(1));
        assert_ne!(replay(1), replay(2));
    }
}
