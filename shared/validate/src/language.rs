//! Languages the pipeline parses, told from a path's extension or named.

use serde::{Deserialize, Serialize};

/// A file's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Python 3 (`.py`).
    Python,
    /// JavaScript, with JSX (`.js`, `.mjs`, `.cjs`, `.jsx`).
    JavaScript,
    /// TypeScript (`.ts`, `.mts`, `.cts`).
    TypeScript,
    /// TypeScript with JSX (`.tsx`).
    Tsx,
    /// Rust (`.rs`).
    Rust,
    /// JSON (`.json`).
    Json,
    /// YAML (`.yaml`, `.yml`).
    Yaml,
    /// Anything else: only the text rules (secrets, protected paths) apply.
    Text,
}

impl Language {
    /// The language of `path` from its extension; [`Language::Text`] when unknown.
    pub fn from_path(path: &str) -> Self {
        let name = path.rsplit('/').next().unwrap_or(path);
        let ext = name
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "py" | "pyw" => Self::Python,
            "js" | "mjs" | "cjs" | "jsx" => Self::JavaScript,
            "ts" | "mts" | "cts" => Self::TypeScript,
            "tsx" => Self::Tsx,
            "rs" => Self::Rust,
            "json" => Self::Json,
            "yaml" | "yml" => Self::Yaml,
            _ => Self::Text,
        }
    }

    /// A language by name (`python`, `javascript`/`js`, `typescript`/`ts`, `tsx`, `rust`,
    /// `json`, `yaml`, `text`).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "python" | "py" => Self::Python,
            "javascript" | "js" | "node" => Self::JavaScript,
            "typescript" | "ts" => Self::TypeScript,
            "tsx" => Self::Tsx,
            "rust" | "rs" => Self::Rust,
            "json" => Self::Json,
            "yaml" | "yml" => Self::Yaml,
            "text" => Self::Text,
            _ => return None,
        })
    }

    /// The language's name as [`Language::parse`] reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Python => "python",
            Self::JavaScript => "javascript",
            Self::TypeScript => "typescript",
            Self::Tsx => "tsx",
            Self::Rust => "rust",
            Self::Json => "json",
            Self::Yaml => "yaml",
            Self::Text => "text",
        }
    }

    /// The family whose rules apply: TSX and TypeScript share JavaScript's.
    pub(crate) fn is_js_family(self) -> bool {
        matches!(self, Self::JavaScript | Self::TypeScript | Self::Tsx)
    }

    /// The tree-sitter grammar, for the languages parsed with one.
    pub(crate) fn grammar(self) -> Option<tree_sitter::Language> {
        Some(match self {
            Self::Python => tree_sitter_python::LANGUAGE.into(),
            Self::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
            Self::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
            Self::Tsx => tree_sitter_typescript::LANGUAGE_TSX.into(),
            Self::Rust => tree_sitter_rust::LANGUAGE.into(),
            Self::Json | Self::Yaml | Self::Text => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_name_the_language() {
        assert_eq!(
            Language::from_path("src/handlers/orders.py"),
            Language::Python
        );
        assert_eq!(Language::from_path("index.MJS"), Language::JavaScript);
        assert_eq!(Language::from_path("a/b.tsx"), Language::Tsx);
        assert_eq!(Language::from_path("src/main.rs"), Language::Rust);
        assert_eq!(Language::from_path("template.yml"), Language::Yaml);
        assert_eq!(Language::from_path("Makefile"), Language::Text);
        assert_eq!(Language::from_path("dir.py/README"), Language::Text);
    }

    #[test]
    fn names_parse_back() {
        for l in [
            Language::Python,
            Language::JavaScript,
            Language::TypeScript,
            Language::Tsx,
            Language::Rust,
            Language::Json,
            Language::Yaml,
            Language::Text,
        ] {
            assert_eq!(Language::parse(l.as_str()), Some(l));
        }
        assert_eq!(Language::parse("cobol"), None);
    }
}
