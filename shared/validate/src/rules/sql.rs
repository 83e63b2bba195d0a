//! `sql_injection`: SQL built from strings (f-strings, `%`, `.format`, concatenation,
//! template literals, `format!`) reaches an execute/query call. Bound parameters are fine.

use selfbuild_core::change::RiskLevel;

use super::{Ctx, Out};
use crate::facts::{Call, Val};
use crate::finding::Rule;

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

pub(super) fn check(ctx: &Ctx<'_, '_>, out: &mut Out<'_>) {
    for call in &ctx.facts.calls {
        if !call.method_in(&SINK_METHODS) {
            continue;
        }
        let Some(query) = query_value(call) else {
            continue;
        };
        if query.is_built() && sql_like(query) {
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
