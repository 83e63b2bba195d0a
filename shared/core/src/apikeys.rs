//! API keys of the MCP endpoint (R17): stored as SHA-256 digests with a tenant and scopes,
//! checked in constant time.

use std::fmt;

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ids::TenantId;
use crate::records::TenantScope;

/// A permission a key may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read status, telemetry insights, improvements and agents.
    Read,
    /// Start cycles, request components, register agents.
    Trigger,
    /// Approve, reject and roll back improvements; re-enable disabled components.
    Approve,
    /// The halt switch; implies every other scope.
    Admin,
}

impl Scope {
    /// The scope's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Trigger => "trigger",
            Self::Approve => "approve",
            Self::Admin => "admin",
        }
    }
}

/// One key as the key list stores it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Names the key in logs and audit events; never secret.
    pub id: String,
    /// SHA-256 of the key.
    pub digest: [u8; 32],
    /// Whose records the key sees.
    pub tenant: TenantScope,
    /// What it may do.
    pub scopes: Vec<Scope>,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl ApiKey {
    /// Whether the key holds `scope` (admin holds every scope).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes
            .iter()
            .any(|s| *s == scope || *s == Scope::Admin)
    }
}

/// The key list is unusable; names the entry and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("API key list: {0}")]
pub struct KeyListError(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    id: String,
    sha256: String,
    tenant: String,
    scopes: Vec<Scope>,
}

/// The keys the endpoint accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<ApiKey>,
}

impl KeySet {
    /// Parses a JSON list of `{id, sha256, tenant: "<id>"|"*", scopes: [...]}`, or an object
    /// holding that list under `keys` (other fields, such as a generated placeholder, ignored).
    pub fn parse(value: &Value) -> Result<Self, KeyListError> {
        let list = match value {
            Value::Array(_) => value,
            Value::Object(map) => map.get("keys").ok_or_else(|| {
                KeyListError("expected a JSON list of keys, or an object with a `keys` list".into())
            })?,
            _ => {
                return Err(KeyListError(
                    "expected a JSON list of keys, or an object with a `keys` list".into(),
                ));
            }
        };
        let stored: Vec<StoredKey> = serde_path_to_error::deserialize(list)
            .map_err(|e| KeyListError(format!("{}: {}", e.path(), e.inner())))?;
        let mut keys: Vec<ApiKey> = Vec::with_capacity(stored.len());
        for (n, key) in stored.into_iter().enumerate() {
            let at = |problem: String| KeyListError(format!("key {n} ({:?}): {problem}", key.id));
            if key.id.trim().is_empty() {
                return Err(at("id must not be empty".into()));
            }
            if keys.iter().any(|k| k.id == key.id) {
                return Err(at("id is used twice".into()));
            }
            let digest = parse_digest(&key.sha256).ok_or_else(|| {
                at("sha256 must be 64 hex digits (the SHA-256 of the key, not the key)".into())
            })?;
            let tenant = if key.tenant == "*" {
                TenantScope::All
            } else {
                TenantScope::Only(
                    TenantId::parse(&key.tenant).map_err(|e| at(format!("tenant: {e}")))?,
                )
            };
            if key.scopes.is_empty() {
                return Err(at("scopes must list at least one scope".into()));
            }
            keys.push(ApiKey {
                id: key.id.clone(),
                digest,
                tenant,
                scopes: key.scopes,
            });
        }
        Ok(Self { keys })
    }

    /// Parses the key list from JSON text.
    pub fn parse_str(text: &str) -> Result<Self, KeyListError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| KeyListError(format!("not JSON: {e}")))?;
        Self::parse(&value)
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key whose digest matches `presented`. Every stored digest is compared, each in
    /// constant time, so the answer's timing says nothing about which key (if any) matched.
    pub fn authenticate(&self, presented: &str) -> Option<&ApiKey> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.digest.ct_eq(&digest)) {
                found = Some(key);
            }
        }
        found
    }
}

/// The SHA-256 of `key` as 64 lowercase hex digits, as the key list stores it.
pub fn key_digest_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(id: &str, key: &str, tenant: &str, scopes: &[&str]) -> Value {
        json!({"id": id, "sha256": key_digest_hex(key), "tenant": tenant, "scopes": scopes})
    }

    #[test]
    fn authenticates_by_digest_and_carries_tenant_and_scopes() {
        let keys = KeySet::parse(&json!([
            entry("ops", "k-ops", "*", &["admin"]),
            entry("acme-ro", "k-acme", "acme", &["read"]),
        ]))
        .expect("valid list");
        let ops = keys.authenticate("k-ops").expect("known key");
        assert_eq!(ops.id, "ops");
        assert!(ops.allows(Scope::Approve), "admin implies approve");
        let acme = keys.authenticate("k-acme").expect("known key");
        assert_eq!(acme.tenant.tenant().map(TenantId::as_str), Some("acme"));
        assert!(acme.allows(Scope::Read) && !acme.allows(Scope::Trigger));
        assert!(keys.authenticate("k-other").is_none());
        assert!(keys.authenticate("").is_none());
    }

    #[test]
    fn object_form_with_keys_list_is_accepted() {
        let keys =
            KeySet::parse(&json!({"keys": [entry("a", "x", "*", &["read"])], "placeholder": "zz"}))
                .expect("valid");
        assert_eq!(keys.len(), 1);
    }

    #[test]
    fn bad_entries_are_named() {
        let short = json!([{"id": "a", "sha256": "abc", "tenant": "*", "scopes": ["read"]}]);
        let e = KeySet::parse(&short).expect_err("short digest");
        assert!(
            e.0.contains("key 0 (\"a\")") && e.0.contains("64 hex"),
            "{e}"
        );

        let scope =
            json!([{"id": "a", "sha256": key_digest_hex("x"), "tenant": "*", "scopes": ["root"]}]);
        let e = KeySet::parse(&scope).expect_err("unknown scope");
        assert!(e.0.contains("[0].scopes[0]"), "{e}");

        let plain = json!([{"id": "a", "key": "secret", "tenant": "*", "scopes": ["read"]}]);
        assert!(KeySet::parse(&plain).is_err(), "plain keys are refused");

        let twice = json!([
            entry("a", "x", "*", &["read"]),
            entry("a", "y", "*", &["read"])
        ]);
        assert!(KeySet::parse(&twice).expect_err("dup").0.contains("twice"));

        let tenant = json!([entry("a", "x", "bad tenant!", &["read"])]);
        assert!(
            KeySet::parse(&tenant)
                .expect_err("tenant")
                .0
                .contains("tenant")
        );

        assert!(KeySet::parse_str("not json").is_err());
        assert!(KeySet::parse(&json!("x")).is_err());
    }
}
