//! `sql_injection`: SQL built from strings (f-strings, `%`, `.format`, concatenation,
//! template literals, `format!`) reaches an execute/query call. Bound parameters are fine.
//!
//! Within a file, the SQL may be built by a helper: a function of the file that returns a
//! string built from its parameters, called with data, its result passed to the sink
//! (`cur.execute(region_query(region))`). A helper returning a constant query, or building
//! it only from values that are not its parameters (a table name looked up in a fixed
//! allow-list), is fine.

use selfbuild_core::change::RiskLevel;

use super::{Ctx, Out};
use crate::facts::{Call, Facts, Function, Val};
use crate::finding::Rule;
use crate::source::Loc;

const SINK_METHODS: [&str; 20] = [
    "execute",
    "executemany",
    "executescript",
    "exec_driver_sql",
    "query",
    "raw",
    "mogrify",
    "text",
    "execute_statement",
    "executeStatement",
    "start_query_execution",
    "batch_execute",
    "query_as",
    "query_scalar",
    "$queryRawUnsafe",
    "$executeRawUnsafe",
    "queryRawUnsafe",
    "executeRawUnsafe",
    "ExecuteStatementCommand",
    "StartQueryExecutionCommand",
];

const SQL_KEYS: [&str; 8] = [
    "sql",
    "query",
    "statement",
    "Statement",
    "QueryString",
    "Sql",
    "text",
    "queryString",
];

const SQL_WORDS: [&str; 12] = [
    "SELECT", "INSERT", "UPDATE", "DELETE", "FROM", "WHERE", "INTO", "VALUES", "SET", "DROP",
    "JOIN", "UPSERT",
];

fn sql_like(v: &Val) -> bool {
    let text = v.fragments().join(" ");
    let words: Vec<String> = text
        .split(|c: char| !c.is_ascii_alphabetic())
        .map(str::to_ascii_uppercase)
        .collect();
    words
        .iter()
        .filter(|w| SQL_WORDS.contains(&w.as_str()))
        .count()
        >= 2
        || words
            .first()
            .is_some_and(|w| SQL_WORDS.contains(&w.as_str()))
}

fn query_value(call: &Call) -> Option<&Val> {
    if let Some(v) = SQL_KEYS.iter().find_map(|k| call.kwarg(k)) {
        return Some(v);
    }
    let first = call.args.first()?;
    if let Val::Map(_) = first {
        return SQL_KEYS.iter().find_map(|k| first.get(k));
    }
    Some(first)
}

/// The function of this file a call's callee names: `f`, or a method `Type.f` called through
/// `self.f`, `this.f` or `Self::f`.
fn local_function<'f>(facts: &'f Facts, callee: &str) -> Option<(&'f Function, usize)> {
    if let Some(f) = facts.function(callee) {
        return Some((f, 0));
    }
    let method = ["self.", "this.", "Self."]
        .iter()
        .find_map(|p| callee.strip_prefix(p))
        .filter(|m| !m.contains('.'))?;
    let f = facts
        .functions
        .iter()
        .find(|f| f.name.rsplit_once('.').is_some_and(|(_, m)| m == method))?;
    // Rust methods list `self` among their parameters; the call's arguments come after it.
    let skip =
        usize::from(f.params.first().is_some_and(|p| {
            matches!(p.name.as_str(), "self" | "&self" | "&mut self" | "mut self")
        }));
    Some((f, skip))
}

/// Whether a value is read from one of the parameters `names` (the parameter, a field or
/// element of it, a method called on it), directly or as part of a built string. A call
/// that merely takes the parameter as an argument (a lookup in an allow-list) is not.
fn reads_param(v: &Val, names: &[&str]) -> bool {
    let of = |path: &str| {
        names.iter().any(|name| {
            path.strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
    };
    match v {
        Val::Ref(p) => of(p),
        Val::Call { callee, .. } => callee.contains('.') && of(callee),
        Val::Built(_, parts) => parts.iter().any(|p| reads_param(p, names)),
        _ => false,
    }
}

/// A helper's returned SQL built from a parameter the call passes data to: where it returns
/// it.
fn helper_sql(facts: &Facts, value: &Val) -> Option<Loc> {
    let Val::Call { callee, args } = value else {
        return None;
    };
    let (f, skip) = local_function(facts, callee)?;
    let tainted: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|(_, a)| !a.is_constant())
        .filter_map(|(i, _)| f.param_name(i + skip))
        .collect();
    if tainted.is_empty() {
        return None;
    }
    f.returns.iter().find_map(|(returned, loc)| {
        (returned.is_built() && reads_param(returned, &tainted) && sql_like(returned))
            .then_some(*loc)
    })
}

pub(super) fn check(ctx: &Ctx<'_, '_>, out: &mut Out<'_>) {
    for call in &ctx.facts.calls {
        if !call.method_in(&SINK_METHODS) {
            continue;
        }
        let Some(query) = query_value(call) else {
            continue;
        };
        if let Some(returned) = helper_sql(ctx.facts, query) {
            out.report(
                ctx.call_changed(call) || ctx.changed(returned),
                Rule::SqlInjection,
                RiskLevel::Critical,
                call.loc,
                format!(
                    "{}() runs SQL that a helper builds from strings with data in it; pass the values as bound parameters",
                    call.method
                ),
            );
        } else if query.is_built() && sql_like(query) {
            out.report(
                ctx.call_changed(call),
                Rule::SqlInjection,
                RiskLevel::Critical,
                call.loc,
                format!(
                    "{}() runs SQL built from strings with data in it; pass the values as bound parameters",
                    call.method
                ),
            );
        }
    }
}
