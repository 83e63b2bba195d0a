//! `destructive_operation`: recursive deletes of computed paths, DROP/TRUNCATE and DELETE or
//! UPDATE without WHERE, deleting buckets, tables, queues and other resources, emptying a
//! bucket, a Scan-then-delete loop.

use selfbuild_core::change::RiskLevel;

use super::{Ctx, Out, excerpt, norm};
use crate::facts::{Call, Val};
use crate::finding::Rule;
use crate::language::Language;

/// SDK operations that delete a whole resource (snake_case, camelCase, and v3 commands).
const RESOURCE_DELETES: [&str; 16] = [
    "delete_bucket",
    "delete_table",
    "delete_stream",
    "delete_queue",
    "purge_queue",
    "delete_log_group",
    "delete_function",
    "delete_db_instance",
    "delete_db_cluster",
    "delete_secret",
    "delete_topic",
    "delete_stack",
    "delete_user_pool",
    "schedule_key_deletion",
    "delete_repository",
    "delete_state_machine",
];

fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for ch in snake.chars() {
        if ch == '_' {
            upper = true;
        } else if upper {
            out.extend(ch.to_uppercase());
            upper = false;
        } else {
            out.push(ch);
        }
    }
    out
}

fn pascal(snake: &str) -> String {
    let c = camel(snake);
    let mut chars = c.chars();
    chars
        .next()
        .map(|f| f.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Each operation with its camelCase and v3 command names.
static NAMES: std::sync::LazyLock<Vec<(&'static str, String, String)>> =
    std::sync::LazyLock::new(|| {
        RESOURCE_DELETES
            .iter()
            .map(|op| (*op, camel(op), format!("{}Command", pascal(op))))
            .collect()
    });

fn resource_delete(call: &Call) -> Option<&'static str> {
    NAMES
        .iter()
        .find(|(snake, camel, command)| {
            call.method == *snake || call.method == *camel || call.is_new && call.method == *command
        })
        .map(|(snake, _, _)| *snake)
}

pub(super) fn check(ctx: &Ctx<'_, '_>, out: &mut Out<'_>) {
    for call in &ctx.facts.calls {
        let changed = ctx.call_changed(call);
        if let Some(op) = resource_delete(call) {
            out.report(
                changed,
                Rule::DestructiveOperation,
                RiskLevel::Critical,
                call.loc,
                format!("{} deletes a whole resource ({op})", call.method),
            );
            continue;
        }
        if let Some(message) = recursive_delete(ctx.language, call) {
            out.report(
                changed,
                Rule::DestructiveOperation,
                RiskLevel::High,
                call.loc,
                message,
            );
            continue;
        }
        let c = call.callee.as_str();
        if (c.contains("objects.all().delete")
            || c.contains("object_versions.all().delete")
            || c.contains("objects.filter().delete"))
            && ctx.language == Language::Python
        {
            out.report(
                changed,
                Rule::DestructiveOperation,
                RiskLevel::High,
                call.loc,
                "deletes every object of a bucket",
            );
        }
    }
    sql_literals(ctx, out);
    scan_then_delete(ctx, out);
}

fn recursive_delete(language: Language, call: &Call) -> Option<String> {
    let target_dynamic = call.args.first().is_some_and(|a| !a.is_constant());
    if !target_dynamic {
        return None;
    }
    let c = norm(&call.callee);
    let fs_like = |m: &str| {
        ["fs.", "fs.promises.", "fs/promises.", "fs-extra."]
            .iter()
            .any(|p| c.strip_prefix(p) == Some(m))
    };
    let recursive_option = call
        .args
        .iter()
        .any(|a| matches!(a.get("recursive"), Some(Val::Bool(true))));
    match language {
        Language::Python => matches!(c, "shutil.rmtree" | "os.removedirs")
            .then(|| format!("{c}() recursively deletes a computed path")),
        Language::Rust => (c.ends_with("fs.remove_dir_all") || c == "remove_dir_all")
            .then(|| "remove_dir_all() recursively deletes a computed path".to_owned()),
        _ => {
            let rm =
                (fs_like("rm") || fs_like("rmSync") || fs_like("rmdir") || fs_like("rmdirSync"))
                    && recursive_option;
            let extra = fs_like("remove")
                || fs_like("removeSync")
                || fs_like("emptyDir")
                || c == "rimraf"
                || c.starts_with("rimraf.")
                || c == "del"
                || c == "fs-extra.remove";
            (rm || extra).then(|| format!("{c}() recursively deletes a computed path"))
        }
    }
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_uppercase)
        .collect()
}

fn sql_literals(ctx: &Ctx<'_, '_>, out: &mut Out<'_>) {
    for lit in &ctx.facts.literals {
        // The first characters (a multi-byte one may be among them).
        let first: String = lit
            .text
            .trim_start()
            .chars()
            .take(8)
            .collect::<String>()
            .to_ascii_uppercase();
        if !["DROP", "TRUNCATE", "DELETE", "UPDATE"]
            .iter()
            .any(|k| first.starts_with(k))
        {
            continue;
        }
        let w = words(&lit.text);
        let Some(first) = w.first() else { continue };
        let has = |k: &str| w.iter().any(|x| x == k);
        let message = match first.as_str() {
            "DROP"
                if w.get(1).is_some_and(|k| {
                    matches!(
                        k.as_str(),
                        "TABLE" | "DATABASE" | "SCHEMA" | "INDEX" | "VIEW" | "COLLECTION"
                    )
                }) =>
            {
                Some(format!(
                    "`{}` drops a database object",
                    excerpt(lit.text.trim(), 60)
                ))
            }
            "TRUNCATE" => Some(format!(
                "`{}` empties a table",
                excerpt(lit.text.trim(), 60)
            )),
            "DELETE" if has("FROM") && !has("WHERE") => Some(format!(
                "`{}` deletes every row (no WHERE)",
                excerpt(lit.text.trim(), 60)
            )),
            "UPDATE" if has("SET") && !has("WHERE") => Some(format!(
                "`{}` updates every row (no WHERE)",
                excerpt(lit.text.trim(), 60)
            )),
            _ => None,
        };
        if let Some(message) = message {
            out.report(
                ctx.changed(lit.loc),
                Rule::DestructiveOperation,
                RiskLevel::Critical,
                lit.loc,
                message,
            );
        }
    }
}

fn is_scan(call: &Call) -> bool {
    matches!(
        call.method.as_str(),
        "scan" | "Scan" | "ScanCommand" | "paginateScan"
    ) || call.method == "get_paginator" && call.args.first().and_then(Val::as_str) == Some("scan")
}

fn is_item_delete(call: &Call) -> bool {
    matches!(
        call.method.as_str(),
        "delete_item"
            | "deleteItem"
            | "DeleteItemCommand"
            | "DeleteCommand"
            | "batch_write_item"
            | "batchWriteItem"
            | "BatchWriteItemCommand"
            | "BatchWriteCommand"
            | "delete_object"
            | "DeleteObjectCommand"
    )
}

fn scan_then_delete(ctx: &Ctx<'_, '_>, out: &mut Out<'_>) {
    let calls = &ctx.facts.calls;
    let Some(scan) = calls.iter().find(|c| is_scan(c)) else {
        return;
    };
    for del in calls.iter().filter(|c| c.in_loop && is_item_delete(c)) {
        let same_function = del.function == scan.function
            || del.function.zip(scan.function).is_some_and(|(d, s)| {
                let (fd, fs) = (&ctx.facts.functions[d], &ctx.facts.functions[s]);
                fs.rows.0 <= fd.rows.0 && fd.rows.1 <= fs.rows.1
            });
        if !same_function {
            continue;
        }
        let changed = ctx.call_changed(del) || ctx.call_changed(scan);
        out.report(
            changed,
            Rule::DestructiveOperation,
            RiskLevel::High,
            del.loc,
            format!(
                "{} in a loop over a Scan (line {}) deletes items across the whole table",
                del.method,
                scan.loc.row + 1
            ),
        );
        return;
    }
}
