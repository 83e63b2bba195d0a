//! `import_allowlist`: a new import outside the allow-list (`IMPORT_ALLOWED`; defaults: the
//! standard library and the AWS SDKs). `new_dependency`: a package manifest
//! (`package.json`, `requirements*.txt`, `Cargo.toml`) gains a dependency.

use std::collections::BTreeSet;

use selfbuild_core::change::RiskLevel;

use super::{Ctx, Out};
use crate::facts::{Facts, Val};
use crate::finding::Rule;
use crate::language::Language;
use crate::source::Loc;

/// The package an import names, or none for the file's own modules.
fn package(language: Language, module: &str) -> Option<String> {
    let m = module.trim();
    if m.is_empty() {
        return None;
    }
    match language {
        Language::Python => {
            (!m.starts_with('.')).then(|| m.split('.').next().unwrap_or(m).to_owned())
        }
        Language::Rust => Some(m.split(['.', ':']).next().unwrap_or(m).to_owned()),
        _ => {
            if m.starts_with('.') || m.starts_with('/') {
                return None;
            }
            if m.starts_with("node:") {
                return Some(m.to_owned());
            }
            let mut parts = m.split('/');
            let first = parts.next().unwrap_or(m);
            Some(if first.starts_with('@') {
                format!("{first}/{}", parts.next().unwrap_or(""))
            } else {
                first.to_owned()
            })
        }
    }
}

fn imports_of(facts: &Facts, language: Language) -> Vec<(String, Loc)> {
    let mut out: Vec<(String, Loc)> = facts
        .imports
        .iter()
        .filter_map(|i| package(language, &i.module).map(|p| (p, i.loc)))
        .collect();
    if language.is_js_family() {
        for c in &facts.calls {
            if matches!(c.callee.as_str(), "require" | "import")
                && let Some(Val::Str(m)) = c.args.first()
                && let Some(p) = package(language, m)
            {
                out.push((p, c.loc));
            }
        }
    }
    out
}

pub(super) fn check(ctx: &Ctx<'_, '_>, out: &mut Out<'_>) {
    manifests(ctx, out);
    let Some(allowed) = ctx.settings.imports_allowed(ctx.language) else {
        return;
    };
    let before: BTreeSet<String> = ctx
        .old_facts
        .map(|o| {
            imports_of(o, ctx.language)
                .into_iter()
                .map(|(p, _)| p)
                .collect()
        })
        .unwrap_or_default();
    let mut seen = BTreeSet::new();
    for (pkg, loc) in imports_of(ctx.facts, ctx.language) {
        if !ctx.changed(loc) || before.contains(&pkg) || !seen.insert(pkg.clone()) {
            continue;
        }
        let bare = pkg.strip_prefix("node:").unwrap_or(&pkg);
        if allowed.matching(&pkg).is_some() || allowed.matching(bare).is_some() {
            continue;
        }
        out.add(
            Rule::ImportAllowlist,
            RiskLevel::Medium,
            loc,
            format!(
                "new import of {pkg}, which is not on the {} allow-list (IMPORT_ALLOWED)",
                ctx.language.as_str()
            ),
        );
    }
}

/// Dependency names a manifest declares, with the row of each.
fn declared(path: &str, text: &str) -> Vec<(String, usize)> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let mut out = Vec::new();
    if name == "package.json" {
        let Ok(serde_json::Value::Object(root)) = serde_json::from_str::<serde_json::Value>(text)
        else {
            return out;
        };
        for section in [
            "dependencies",
            "devDependencies",
            "peerDependencies",
            "optionalDependencies",
        ] {
            if let Some(serde_json::Value::Object(deps)) = root.get(section) {
                for dep in deps.keys() {
                    let needle = format!("\"{dep}\"");
                    let row = text.lines().position(|l| l.contains(&needle)).unwrap_or(0);
                    out.push((dep.clone(), row));
                }
            }
        }
    } else if name.starts_with("requirements") && name.ends_with(".txt") {
        for (row, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() || line.starts_with('-') {
                continue;
            }
            let dep = line
                .split(|c: char| "=<>!~[; @".contains(c))
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
                .replace('_', "-");
            if !dep.is_empty() {
                out.push((dep, row));
            }
        }
    } else if name == "Cargo.toml" {
        let mut in_deps = false;
        for (row, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.starts_with('[') {
                in_deps = t.trim_matches(['[', ']']).ends_with("dependencies");
                continue;
            }
            if in_deps && let Some((dep, _)) = t.split_once('=') {
                let dep = dep.trim().trim_matches('"');
                if !dep.is_empty() && !dep.starts_with('#') {
                    out.push((dep.split('.').next().unwrap_or(dep).to_owned(), row));
                }
            }
        }
    }
    out
}

fn manifests(ctx: &Ctx<'_, '_>, out: &mut Out<'_>) {
    let now = declared(ctx.path, ctx.new.text);
    if now.is_empty() {
        return;
    }
    let before: BTreeSet<String> = ctx
        .old
        .map(|o| {
            declared(ctx.path, o.text)
                .into_iter()
                .map(|(d, _)| d)
                .collect()
        })
        .unwrap_or_default();
    for (dep, row) in now {
        if before.contains(&dep) {
            continue;
        }
        out.new_dependency = true;
        out.add(
            Rule::NewDependency,
            RiskLevel::Medium,
            Loc {
                row,
                col: 1,
                end_row: row,
            },
            format!("{} gains the dependency {dep}", ctx.path),
        );
    }
}
