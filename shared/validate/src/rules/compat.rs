//! Integration compatibility. `handler_signature`: the configured handler (or a
//! conventional entry point: `handler`, `lambda_handler`, `main`) is gone or no longer takes
//! what Lambda passes. `removed_export`: an export or public function of the old file is
//! gone. `signature_changed`: a kept one no longer accepts the calls the old one did.
//! `unsafe_code`: a Rust `unsafe` block, function or impl was added.

use std::collections::BTreeSet;

use selfbuild_core::change::RiskLevel;

use super::{Ctx, Out};
use crate::facts::{Facts, Function};
use crate::finding::Rule;
use crate::language::Language;

/// Entry points that count as handlers when none is configured.
const CONVENTIONAL: [&str; 3] = ["handler", "lambda_handler", "main"];

/// The handler's function name when it lives in the file at `path`.
fn configured_handler(handler: &str, path: &str, language: Language) -> Option<String> {
    let handler = handler.trim();
    if handler == "bootstrap" || handler.ends_with("/bootstrap") {
        return (language == Language::Rust
            && (path.ends_with("main.rs") || path.contains("/bin/")))
        .then(|| "main".to_owned());
    }
    let (module, function) = handler.rsplit_once('.')?;
    let module = if module.contains('/') {
        module.to_owned()
    } else {
        module.replace('.', "/")
    };
    let stem = path.rsplit_once('.').map_or(path, |(s, _)| s);
    let matches = stem == module
        || stem.ends_with(&format!("/{module}"))
        || module.ends_with(&format!("/{stem}"));
    matches.then(|| function.to_owned())
}

/// Why a handler function cannot take Lambda's arguments, if it cannot.
fn incompatible(language: Language, f: &Function) -> Option<String> {
    match language {
        Language::Python => {
            if f.required() > 2 {
                Some(format!(
                    "{} now requires {} arguments; Lambda passes (event, context)",
                    f.name,
                    f.required()
                ))
            } else if f.max_positional() < 2 {
                Some(format!(
                    "{} takes {} positional argument(s); Lambda passes (event, context)",
                    f.name,
                    f.max_positional()
                ))
            } else {
                None
            }
        }
        l if l.is_js_family() => (f.required() > 3).then(|| {
            format!(
                "{} requires {} arguments; Lambda passes (event, context, callback)",
                f.name,
                f.required()
            )
        }),
        Language::Rust if f.name == "main" => {
            (!f.params.is_empty()).then(|| "fn main takes no parameters".to_owned())
        }
        _ => None,
    }
}

fn handler_exists(facts: &Facts, language: Language, name: &str) -> bool {
    if language.is_js_family() {
        return facts.exports(name)
            || facts
                .function(name)
                .is_some_and(|f| f.top_level && f.exported);
    }
    facts
        .functions
        .iter()
        .any(|f| f.top_level && f.name == name)
        || facts
            .named
            .iter()
            .any(|n| !n.compared && n.name == name && n.loc.col == 1)
}

fn public_names(facts: &Facts, language: Language) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = facts
        .functions
        .iter()
        .filter(|f| f.exported && f.top_level && !f.name.is_empty())
        .map(|f| f.name.clone())
        .collect();
    if language != Language::Python {
        names.extend(facts.exported_names.iter().map(|(n, _)| n.clone()));
    }
    names
}

pub(super) fn check(ctx: &Ctx<'_, '_>, out: &mut Out<'_>) {
    let language = ctx.language;
    if language == Language::Rust {
        for loc in &ctx.facts.unsafe_blocks {
            if ctx.changed(*loc) {
                out.add(
                    Rule::UnsafeCode,
                    RiskLevel::High,
                    *loc,
                    "adds `unsafe` code: memory safety now rests on a review",
                );
            }
        }
    }
    let configured = ctx
        .handler
        .and_then(|h| configured_handler(h, ctx.path, language));
    let mut handlers: Vec<String> = configured.iter().cloned().collect();
    if ctx.handler.is_none()
        && let Some(old) = ctx.old_facts
    {
        handlers.extend(
            CONVENTIONAL
                .iter()
                .filter(|n| handler_exists(old, language, n))
                .map(|n| (*n).to_owned()),
        );
    }
    for name in &handlers {
        let new_fn = ctx
            .facts
            .functions
            .iter()
            .find(|f| f.top_level && f.name == *name);
        if let Some(f) = new_fn
            && (ctx.added.range(f.rows.0..=f.rows.1).next().is_some()
                || ctx.removal_rows.range(f.rows.0..=f.rows.1).next().is_some())
        {
            out.handler_changed = true;
        }
        if !handler_exists(ctx.facts, language, name) {
            let was = ctx
                .old_facts
                .and_then(|o| o.function(name))
                .map_or((0, 0), |f| f.rows);
            out.handler_changed = true;
            out.add(
                Rule::HandlerSignature,
                RiskLevel::Critical,
                ctx.removal_loc(was.0, was.1),
                format!(
                    "the handler {name} is no longer defined (or exported) in {}",
                    ctx.path
                ),
            );
            continue;
        }
        if let Some(f) = new_fn
            && let Some(problem) = incompatible(language, f)
        {
            let old_ok = ctx
                .old_facts
                .and_then(|o| o.functions.iter().find(|g| g.top_level && g.name == *name))
                .is_some_and(|g| incompatible(language, g).is_none());
            if old_ok || ctx.old_facts.is_none() {
                out.add(Rule::HandlerSignature, RiskLevel::Critical, f.loc, problem);
            }
        }
    }
    let Some(old) = ctx.old_facts else {
        return;
    };
    let before = public_names(old, language);
    let after = public_names(ctx.facts, language);
    for name in before.difference(&after) {
        if handlers.contains(name) {
            continue;
        }
        // A Python function kept under the same name but made private is still a removal.
        let was = old.function(name).map_or((0, 0), |f| f.rows);
        out.add(
            Rule::RemovedExport,
            RiskLevel::High,
            ctx.removal_loc(was.0, was.1),
            format!(
                "{name} was exported by {} and is gone; callers elsewhere break",
                ctx.path
            ),
        );
    }
    for f in ctx
        .facts
        .functions
        .iter()
        .filter(|f| f.exported && f.top_level)
    {
        let Some(g) = old
            .functions
            .iter()
            .find(|g| g.exported && g.top_level && g.name == f.name)
        else {
            continue;
        };
        let compatible = if language == Language::Rust {
            f.params.len() == g.params.len()
        } else {
            f.required() <= g.required() && f.max_positional() >= g.max_positional()
        };
        if !compatible {
            out.add(
                Rule::SignatureChanged,
                RiskLevel::High,
                f.loc,
                format!(
                    "{} took {} parameter(s) ({} required) and now takes {} ({} required); existing callers break",
                    f.name,
                    g.params.len(),
                    g.required(),
                    f.params.len(),
                    f.required()
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_name_their_file() {
        let py = Language::Python;
        assert_eq!(
            configured_handler("orders.handler", "orders.py", py).as_deref(),
            Some("handler")
        );
        assert_eq!(
            configured_handler(
                "src/handlers/orders.lambda_handler",
                "src/handlers/orders.py",
                py
            )
            .as_deref(),
            Some("lambda_handler")
        );
        assert_eq!(
            configured_handler("app.orders.handler", "src/app/orders.py", py).as_deref(),
            Some("handler")
        );
        assert_eq!(configured_handler("orders.handler", "billing.py", py), None);
        assert_eq!(
            configured_handler("bootstrap", "src/main.rs", Language::Rust).as_deref(),
            Some("main")
        );
        assert_eq!(
            configured_handler("bootstrap", "src/lib.rs", Language::Rust),
            None
        );
    }
}
