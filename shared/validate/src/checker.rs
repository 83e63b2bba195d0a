//! The pipeline as core's [`CodeChecker`] port: what the validate step runs on a
//! `code_patch` proposal.

use selfbuild_core::ports::{CheckError, CodeCheck, CodeChecker, CodeFinding, PatchUnderReview};

use crate::language::Language;
use crate::pipeline::{FileInput, PatchContext, validate_patch};
use crate::settings::Settings;

/// Checks code patches with the pipeline under fixed settings.
#[derive(Debug, Clone)]
pub struct PipelineChecker {
    settings: Settings,
}

impl PipelineChecker {
    /// A checker with `settings` (protected paths, allow-lists, known tenants).
    pub fn new(settings: Settings) -> Self {
        Self { settings }
    }
}

/// A file's language: the named one (TypeScript stays TSX for a `.tsx` path), else from the
/// extension; an unknown name is an error naming it.
pub fn language_of(path: &str, named: Option<&str>) -> Result<Language, String> {
    let Some(name) = named else {
        return Ok(Language::from_path(path));
    };
    match Language::parse(name) {
        Some(Language::TypeScript) if Language::from_path(path) == Language::Tsx => {
            Ok(Language::Tsx)
        }
        Some(language) => Ok(language),
        None => Err(format!(
            "{path}: unknown language {name:?} (python, javascript, typescript, tsx, rust, json, yaml, text)"
        )),
    }
}

impl CodeChecker for PipelineChecker {
    fn check(&self, patch: &PatchUnderReview<'_>) -> Result<CodeCheck, CheckError> {
        let inputs = patch
            .files
            .iter()
            .map(|f| {
                Ok(FileInput {
                    path: &f.path,
                    language: Some(language_of(&f.path, f.language.as_deref())?),
                    base: patch.bases.get(&f.path).and_then(Option::as_deref),
                    diff: &f.diff,
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(CheckError::Malformed)?;
        let context = PatchContext {
            handler: patch.handler,
            tenant: patch.tenant,
        };
        let report = validate_patch(&inputs, &context, &self.settings)
            .map_err(|e| CheckError::Malformed(e.to_string()))?;
        Ok(CodeCheck {
            base: Default::default(),
            findings: report
                .findings()
                .map(|f| CodeFinding {
                    summary: f.summary(),
                    path: f.path.clone(),
                    line: f.line,
                    col: f.col,
                    message: if f.pre_existing {
                        format!("{} (already in the file before the patch)", f.message)
                    } else {
                        f.message.clone()
                    },
                })
                .collect(),
            scope: report.scope(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use selfbuild_core::change::FilePatch;

    use super::*;

    fn review<'a>(
        files: &'a [FilePatch],
        bases: &'a BTreeMap<String, Option<String>>,
    ) -> PatchUnderReview<'a> {
        PatchUnderReview {
            files,
            bases,
            handler: Some("app.handler"),
            tenant: Some("acme"),
        }
    }

    #[test]
    fn checks_each_file_against_its_deployed_text() {
        let base = "def handler(event, context):\n    return 1\n";
        let diff = "--- a/app.py\n+++ b/app.py\n@@ -1,2 +1,2 @@\n def handler(event, context):\n-    return 1\n+    return eval(event['q'])\n";
        let files = [FilePatch {
            path: "app.py".into(),
            language: None,
            diff: diff.into(),
        }];
        let bases = [("app.py".to_owned(), Some(base.to_owned()))].into();
        let check = PipelineChecker::new(Settings::defaults())
            .check(&review(&files, &bases))
            .expect("checked");
        let f = check
            .findings
            .iter()
            .find(|f| f.summary.rule == "code_execution")
            .expect("eval found");
        assert!(f.summary.blocking);
        assert_eq!((f.path.as_str(), f.line), ("app.py", 2));
        assert_eq!(check.scope.files, 1);
    }

    #[test]
    fn a_diff_against_another_version_is_a_finding_and_a_bad_name_an_error() {
        let files = [FilePatch {
            path: "app.py".into(),
            language: None,
            diff: "--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n".into(),
        }];
        let bases = [("app.py".to_owned(), Some("y = 1\n".to_owned()))].into();
        let checker = PipelineChecker::new(Settings::defaults());
        let check = checker.check(&review(&files, &bases)).expect("checked");
        assert_eq!(check.findings[0].summary.rule, "patch_applies");
        assert!(check.findings[0].summary.blocking);

        let files = [FilePatch {
            language: Some("cobol".into()),
            ..files[0].clone()
        }];
        let Err(CheckError::Malformed(m)) = checker.check(&review(&files, &bases)) else {
            panic!("expected an error");
        };
        assert!(m.contains("cobol"), "{m}");
        let files = [FilePatch {
            path: "app.py".into(),
            language: None,
            diff: "not a diff".into(),
        }];
        assert!(matches!(
            checker.check(&review(&files, &bases)),
            Err(CheckError::Malformed(_))
        ));
    }

    #[test]
    fn typescript_named_for_a_tsx_path_stays_tsx() {
        assert_eq!(language_of("a.tsx", Some("typescript")), Ok(Language::Tsx));
        assert_eq!(language_of("a.ts", Some("ts")), Ok(Language::TypeScript));
        assert_eq!(language_of("README.md", None), Ok(Language::Text));
    }
}
