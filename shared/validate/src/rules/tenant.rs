//! `tenant_isolation` (R9): a patch scoped to tenant T that brings in another tenant's id
//! (a known tenant, or any literal given to a tenant-named key or compared with one), drops a
//! tenant condition from a function, or turns a tenant-keyed Query into a Scan.

use selfbuild_core::change::RiskLevel;

use super::{Ctx, Out};
use crate::facts::{Facts, Val};
use crate::finding::Rule;

fn tenantish(name: &str) -> bool {
    name.to_ascii_lowercase().contains("tenant")
}

fn id_like(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A tenant id written as a key prefix: `TENANT#globex`, `tenant/globex`.
fn prefixed_tenant(text: &str) -> Option<&str> {
    let lower = text.to_ascii_lowercase();
    for p in ["tenant#", "tenant/", "tenants/", "tenant:"] {
        if lower.starts_with(p) {
            let rest = &text[p.len()..];
            let id = rest.split(['#', '/', ':']).next().unwrap_or("");
            return (id_like(id) && !id.contains('{')).then_some(id);
        }
    }
    None
}

pub(super) fn check(ctx: &Ctx<'_, '_>, out: &mut Out<'_>) {
    if let Some(tenant) = ctx.tenant {
        foreign_ids(ctx, out, tenant);
    }
    if let Some(old) = ctx.old_facts {
        dropped_conditions(ctx, out, old);
        query_to_scan(ctx, out, old);
    }
}

fn foreign_ids(ctx: &Ctx<'_, '_>, out: &mut Out<'_>, tenant: &str) {
    for named in &ctx.facts.named {
        if !tenantish(&named.name) || !ctx.changed(named.loc) {
            continue;
        }
        for v in named.value.all() {
            if let Val::Str(s) = v
                && id_like(s)
                && s != tenant
            {
                out.add(
                    Rule::TenantIsolation,
                    RiskLevel::Critical,
                    named.loc,
                    format!(
                        "{} is given tenant id {s:?} in a patch scoped to tenant {tenant:?}",
                        named.name
                    ),
                );
            }
        }
    }
    // Key("tenant_id").eq("globex"), Attr("tenant").eq(...): the receiver names the tenant.
    for call in &ctx.facts.calls {
        if !ctx.changed(call.loc) || !call.receiver.as_ref().is_some_and(mentions_tenant) {
            continue;
        }
        if let Some(id) = call
            .args
            .iter()
            .filter_map(Val::as_str)
            .find(|s| id_like(s) && *s != tenant && !tenantish(s))
        {
            out.add(
                Rule::TenantIsolation,
                RiskLevel::Critical,
                call.loc,
                format!(
                    "{}() compares a tenant key with {id:?} in a patch scoped to tenant {tenant:?}",
                    call.method
                ),
            );
        }
    }
    for lit in &ctx.facts.literals {
        if !ctx.changed(lit.loc) {
            continue;
        }
        let text = lit.text.trim();
        let other = if let Some(id) = prefixed_tenant(text) {
            (id != tenant).then_some(id)
        } else {
            ctx.settings
                .known_tenants
                .iter()
                .find(|t| t.as_str() == text && t.as_str() != tenant)
                .map(String::as_str)
        };
        if let Some(id) = other {
            out.add(
                Rule::TenantIsolation,
                RiskLevel::Critical,
                lit.loc,
                format!("tenant {id:?}'s id appears in a patch scoped to tenant {tenant:?}"),
            );
        }
    }
}

/// Methods that read or write data: a tenant reference in their arguments is a tenant
/// condition (a key, a filter, a WHERE clause).
const DATA_ACCESS: [&str; 24] = [
    "query",
    "scan",
    "get_item",
    "put_item",
    "update_item",
    "delete_item",
    "execute",
    "filter",
    "where",
    "eq",
    "Key",
    "Attr",
    "QueryCommand",
    "ScanCommand",
    "GetCommand",
    "PutCommand",
    "UpdateCommand",
    "DeleteCommand",
    "key_condition_expression",
    "filter_expression",
    "expression_attribute_values",
    "fetch_all",
    "bind",
    "find",
];

fn mentions_tenant(v: &Val) -> bool {
    v.all().iter().any(|x| match x {
        Val::Ref(p) => tenantish(p),
        Val::Str(s) => tenantish(s),
        Val::Built(f, _) => f.iter().any(|s| tenantish(s)),
        Val::Map(pairs) => pairs.iter().any(|(k, _)| tenantish(k)),
        _ => false,
    })
}

/// Tenant conditions inside a function's rows: data-access calls with a tenant reference
/// among their arguments or receiver.
fn mentions(facts: &Facts, rows: (usize, usize)) -> usize {
    facts
        .calls
        .iter()
        .filter(|c| rows.0 <= c.loc.row && c.loc.row <= rows.1)
        .filter(|c| c.method_in(&DATA_ACCESS))
        .filter(|c| c.all_args().any(mentions_tenant))
        .count()
}

fn dropped_conditions(ctx: &Ctx<'_, '_>, out: &mut Out<'_>, old: &Facts) {
    for g in old.functions.iter().filter(|g| !g.name.is_empty()) {
        if ctx
            .removed_old_rows
            .range(g.rows.0..=g.rows.1)
            .next()
            .is_none()
        {
            continue;
        }
        let Some(f) = ctx.facts.function(&g.name) else {
            continue;
        };
        let (was, now) = (mentions(old, g.rows), mentions(ctx.facts, f.rows));
        if now < was {
            out.add(
                Rule::TenantIsolation,
                RiskLevel::Critical,
                ctx.removal_loc(g.rows.0, g.rows.1),
                format!("{} loses a tenant condition ({was} tenant references before, {now} after): it may read or write other tenants' data", g.name),
            );
        }
    }
}

fn is_query(method: &str) -> bool {
    matches!(method, "query" | "QueryCommand" | "paginateQuery")
}

fn is_scan(method: &str) -> bool {
    matches!(method, "scan" | "ScanCommand" | "paginateScan")
}

fn query_to_scan(ctx: &Ctx<'_, '_>, out: &mut Out<'_>, old: &Facts) {
    for scan in ctx
        .facts
        .calls
        .iter()
        .filter(|c| is_scan(&c.method) && ctx.changed(c.loc))
    {
        let Some(fi) = scan.function else { continue };
        let name = &ctx.facts.functions[fi].name;
        let count = |facts: &Facts, pred: fn(&str) -> bool| {
            facts
                .calls
                .iter()
                .filter(|c| {
                    pred(&c.method) && c.function.is_some_and(|i| facts.functions[i].name == *name)
                })
                .count()
        };
        if count(ctx.facts, is_query) < count(old, is_query) {
            out.add(
                Rule::TenantIsolation,
                RiskLevel::Critical,
                scan.loc,
                format!(
                    "{name} replaces a keyed Query with a Scan, which reads every tenant's items"
                ),
            );
        }
    }
}
