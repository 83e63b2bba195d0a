//! What the rules are configured with: protected paths, egress and import allow-lists, the
//! known tenants. Read from the environment through core's [`Env`] parser.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use selfbuild_core::config::{ConfigError, Env};

use crate::language::Language;

/// Paths no patch edits without two approvals (`PROTECTED_PATHS` adds to these): selfbuild's
/// own source, and in any repository security, auth, IAM, infrastructure and CI files.
pub const DEFAULT_PROTECTED_PATHS: [&str; 12] = [
    "shared/**",
    "statemachine/**",
    "security/**",
    "**/auth/**",
    "infra/**",
    "**/iam/**",
    ".github/**",
    "**/*.tf",
    "**/template.y*ml",
    "**/serverless.y*ml",
    "**/cdk.json",
    "**/security/**",
];

/// Hosts always reachable: AWS service endpoints.
pub const AWS_ENDPOINT_HOSTS: [&str; 4] = [
    "*.amazonaws.com",
    "*.amazonaws.com.cn",
    "*.api.aws",
    "*.on.aws",
];

/// Modules every Python file may import beside the standard library: the AWS SDK and
/// Powertools.
pub const PYTHON_ALLOWED: [&str; 5] = [
    "boto3",
    "botocore",
    "aws_lambda_powertools",
    "aws_xray_sdk",
    "awslambdaric",
];
/// Packages every JavaScript/TypeScript file may import beside Node's built-ins.
pub const JS_ALLOWED: [&str; 5] = [
    "@aws-sdk/*",
    "@smithy/*",
    "aws-sdk",
    "@aws-lambda-powertools/*",
    "aws-lambda",
];
/// Crates every Rust file may use beside `std`, `core`, `alloc` and the crate's own paths.
pub const RUST_ALLOWED: [&str; 9] = [
    "aws_sdk_*",
    "aws_config",
    "aws_smithy_*",
    "aws_types",
    "aws_lambda_events",
    "lambda_runtime",
    "lambda_http",
    "tokio",
    "tracing",
];

const PYTHON_STDLIB: &str = include_str!("python_stdlib.txt");
const NODE_BUILTINS: &str = include_str!("node_builtins.txt");

/// A list of globs with the texts they came from.
#[derive(Debug, Clone)]
pub struct Globs {
    set: GlobSet,
    patterns: Vec<String>,
}

impl Globs {
    /// Globs from patterns; `literal_separator`: `*` does not cross `/` (paths), else it
    /// matches anything (hosts, module names).
    pub fn new<S: AsRef<str>>(patterns: &[S], literal_separator: bool) -> Result<Self, String> {
        let mut builder = GlobSetBuilder::new();
        let mut kept = Vec::new();
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let glob: Glob = GlobBuilder::new(p)
                .literal_separator(literal_separator)
                .case_insensitive(!literal_separator)
                .build()
                .map_err(|e| format!("pattern {p:?}: {e}"))?;
            builder.add(glob);
            kept.push(p.to_owned());
        }
        let set = builder
            .build()
            .map_err(|e| format!("patterns {kept:?}: {e}"))?;
        Ok(Self {
            set,
            patterns: kept,
        })
    }

    /// The first pattern that matches `text`.
    pub fn matching(&self, text: &str) -> Option<&str> {
        self.set
            .matches(text)
            .first()
            .map(|&i| self.patterns[i].as_str())
    }

    /// The patterns, as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

/// Everything the rules are configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Paths whose edit is CRITICAL (defaults plus `PROTECTED_PATHS`).
    pub protected_paths: Globs,
    /// Hosts outbound calls may reach (AWS endpoints plus `EGRESS_ALLOWED_HOSTS`).
    pub egress_allowed_hosts: Globs,
    /// Python modules allowed beside the standard library.
    pub python_allowed: Globs,
    /// JavaScript/TypeScript packages allowed beside Node's built-ins.
    pub js_allowed: Globs,
    /// Rust crates allowed beside std.
    pub rust_allowed: Globs,
    /// Tenant ids known to the registry and the target (`KNOWN_TENANTS`).
    pub known_tenants: Vec<String>,
}

fn invalid(name: &'static str, value: String, problem: String) -> ConfigError {
    ConfigError::Invalid {
        name,
        value,
        problem,
    }
}

impl Settings {
    /// The defaults, nothing from the environment.
    pub fn defaults() -> Self {
        Self::from_lookup(|_| None).unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }

    /// Reads `PROTECTED_PATHS`, `EGRESS_ALLOWED_HOSTS`, `IMPORT_ALLOWED` and `KNOWN_TENANTS`
    /// from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup`; each list adds to the defaults.
    ///
    /// `IMPORT_ALLOWED` entries are `language:glob` (`python:requests`, `javascript:axios`,
    /// `rust:serde*`); an entry without a language applies to every language.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(&lookup);
        let list = |name: &'static str| env.list(name).unwrap_or_default();
        let raw = |name: &'static str| lookup(name).unwrap_or_default();

        let protected: Vec<String> = DEFAULT_PROTECTED_PATHS
            .iter()
            .map(|s| (*s).to_owned())
            .chain(list("PROTECTED_PATHS"))
            .collect();
        let protected_paths = Globs::new(&protected, true)
            .map_err(|p| invalid("PROTECTED_PATHS", raw("PROTECTED_PATHS"), p))?;

        let hosts: Vec<String> = AWS_ENDPOINT_HOSTS
            .iter()
            .map(|s| (*s).to_owned())
            .chain(list("EGRESS_ALLOWED_HOSTS"))
            .collect();
        let egress_allowed_hosts = Globs::new(&hosts, false)
            .map_err(|p| invalid("EGRESS_ALLOWED_HOSTS", raw("EGRESS_ALLOWED_HOSTS"), p))?;

        let mut python: Vec<String> = PYTHON_ALLOWED.iter().map(|s| (*s).to_owned()).collect();
        python.extend(PYTHON_STDLIB.lines().map(str::to_owned));
        let mut js: Vec<String> = JS_ALLOWED.iter().map(|s| (*s).to_owned()).collect();
        js.extend(NODE_BUILTINS.lines().map(str::to_owned));
        js.push("node:*".to_owned());
        let mut rust: Vec<String> = RUST_ALLOWED.iter().map(|s| (*s).to_owned()).collect();
        for entry in list("IMPORT_ALLOWED") {
            let (language, glob) = match entry.split_once(':') {
                Some((l, g)) if !l.contains('@') && !l.contains('/') => {
                    let language = Language::parse(l).ok_or_else(|| {
                        invalid(
                            "IMPORT_ALLOWED",
                            raw("IMPORT_ALLOWED"),
                            format!("{l:?} in {entry:?} is not a language (python, javascript, typescript, rust)"),
                        )
                    })?;
                    (Some(language), g.trim().to_owned())
                }
                _ => (None, entry.clone()),
            };
            match language {
                Some(Language::Python) => python.push(glob),
                Some(l) if l.is_js_family() => js.push(glob),
                Some(Language::Rust) => rust.push(glob),
                Some(_) => {}
                None => {
                    python.push(glob.clone());
                    js.push(glob.clone());
                    rust.push(glob);
                }
            }
        }
        let globs = |items: &[String]| {
            Globs::new(items, false)
                .map_err(|p| invalid("IMPORT_ALLOWED", raw("IMPORT_ALLOWED"), p))
        };
        Ok(Self {
            protected_paths,
            egress_allowed_hosts,
            python_allowed: globs(&python)?,
            js_allowed: globs(&js)?,
            rust_allowed: globs(&rust)?,
            known_tenants: list("KNOWN_TENANTS"),
        })
    }

    /// The import allow-list of `language`, if it has one.
    pub(crate) fn imports_allowed(&self, language: Language) -> Option<&Globs> {
        match language {
            Language::Python => Some(&self.python_allowed),
            Language::Rust => Some(&self.rust_allowed),
            l if l.is_js_family() => Some(&self.js_allowed),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn protected_defaults_cover_selfbuild_and_infrastructure() {
        let s = Settings::defaults();
        for path in [
            "shared/core/src/validate.rs",
            "statemachine/improvement-cycle.asl.json",
            "infra/template.yaml",
            "src/auth/tokens.py",
            "modules/vpc/main.tf",
            "main.tf",
            "template.yml",
            "services/orders/serverless.yaml",
            ".github/workflows/ci.yml",
            "cdk.json",
            "lib/iam/policy.ts",
        ] {
            assert!(s.protected_paths.matching(path).is_some(), "{path}");
        }
        for path in ["src/handlers/orders.py", "authors.md", "src/author/x.py"] {
            assert_eq!(s.protected_paths.matching(path), None, "{path}");
        }
    }

    #[test]
    fn lists_add_to_the_defaults() {
        let s = with(&[
            ("PROTECTED_PATHS", "src/billing/**"),
            (
                "EGRESS_ALLOWED_HOSTS",
                "api.stripe.com, *.internal.example.com",
            ),
            (
                "IMPORT_ALLOWED",
                "python:requests,javascript:axios,rust:serde*,pydantic",
            ),
            ("KNOWN_TENANTS", "acme, globex"),
        ])
        .unwrap();
        assert!(
            s.protected_paths
                .matching("src/billing/charge.py")
                .is_some()
        );
        assert!(s.protected_paths.matching("shared/x").is_some());
        assert!(s.egress_allowed_hosts.matching("api.stripe.com").is_some());
        assert!(
            s.egress_allowed_hosts
                .matching("a.b.internal.example.com")
                .is_some()
        );
        assert!(
            s.egress_allowed_hosts
                .matching("dynamodb.us-east-1.amazonaws.com")
                .is_some()
        );
        assert!(
            s.egress_allowed_hosts
                .matching("evil.example.net")
                .is_none()
        );
        assert!(s.python_allowed.matching("requests").is_some());
        assert!(s.python_allowed.matching("pydantic").is_some());
        assert!(s.python_allowed.matching("json").is_some());
        assert!(s.js_allowed.matching("axios").is_some());
        assert!(s.js_allowed.matching("@aws-sdk/client-s3").is_some());
        assert!(s.js_allowed.matching("left-pad").is_none());
        assert!(s.rust_allowed.matching("serde_json").is_some());
        assert_eq!(s.known_tenants, ["acme", "globex"]);
    }

    #[test]
    fn a_bad_entry_names_its_variable() {
        let e = with(&[("IMPORT_ALLOWED", "cobol:x")]).unwrap_err();
        assert!(e.to_string().contains("IMPORT_ALLOWED"), "{e}");
        let e = with(&[("PROTECTED_PATHS", "src/[")]).unwrap_err();
        assert!(e.to_string().contains("PROTECTED_PATHS"), "{e}");
    }
}
