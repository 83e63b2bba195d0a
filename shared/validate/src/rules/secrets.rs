//! `secret`: credentials in the new text, anywhere (code, comments, config): AWS key ids and
//! secret keys, GitHub, Slack, OpenAI, Anthropic, Stripe and Google keys, PEM private keys,
//! passwords in connection strings, `Authorization` headers, and secret-named values.
//! Token shapes are matched on the text (a key is a key wherever it is); each candidate must
//! look random (Shannon entropy) and not be a placeholder or AWS's documented example.

use std::sync::LazyLock;

use regex::Regex;
use selfbuild_core::change::RiskLevel;

use super::{Ctx, Out, excerpt};
use crate::finding::Rule;
use crate::source::Loc;

struct Pattern {
    what: &'static str,
    /// Lowercase texts one of which a line must contain for the regex to run.
    needles: &'static [&'static str],
    regex: Regex,
    /// The capture group holding the secret.
    group: usize,
    /// The least entropy (bits per character) the secret must have.
    entropy: f64,
}

fn pattern(
    what: &'static str,
    needles: &'static [&'static str],
    re: &str,
    group: usize,
    entropy: f64,
) -> Option<Pattern> {
    Regex::new(re).ok().map(|regex| Pattern {
        what,
        needles,
        regex,
        group,
        entropy,
    })
}

static PATTERNS: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    [
        pattern("AWS access key id", &["akia", "asia", "abia", "acca"], r"\b((?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16})\b", 1, 3.0),
        pattern("GitHub token", &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"], r"\b(gh[pousr]_[A-Za-z0-9]{36,255})\b", 1, 3.5),
        pattern("GitHub token", &["github_pat_"], r"\b(github_pat_[A-Za-z0-9_]{60,255})\b", 1, 3.5),
        pattern("Slack token", &["xox"], r"\b(xox[baprs]-[0-9A-Za-z-]{10,})", 1, 3.0),
        pattern(
            "Slack webhook",
            &["hooks.slack.com"],
            r"(https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]{16,})",
            1,
            3.0,
        ),
        pattern("Anthropic key", &["sk-ant-"], r"\b(sk-ant-[A-Za-z0-9_-]{20,})", 1, 3.5),
        pattern("OpenAI key", &["sk-"], r"\b(sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,})", 1, 3.5),
        pattern("Stripe key", &["_live_"], r"\b((?:sk|rk)_live_[0-9A-Za-z]{20,})", 1, 3.3),
        pattern("Google API key", &["aiza"], r"\b(AIza[0-9A-Za-z_-]{35})\b", 1, 3.5),
        pattern(
            "private key",
            &["private key-----"],
            r"(-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----)",
            1,
            0.0,
        ),
        pattern(
            "password in a connection string",
            &["://"],
            r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@'\x22]+:([^\s@/'\x22]+)@[^\s/'\x22]+",
            1,
            2.5,
        ),
        pattern(
            "Authorization header",
            &["bearer", "basic", "token"],
            r"(?i)\b(?:bearer|basic|token)\s+([A-Za-z0-9._~+/=-]{20,})",
            1,
            3.5,
        ),
        pattern(
            "AWS secret access key",
            &["secret", "aws"],
            r"(?i)(?:aws.{0,20}(?:secret|sk)|secret.?access.?key).{0,25}?\b([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)",
            1,
            4.0,
        ),
        pattern(
            "secret-named value",
            &["pass", "secret", "key", "token"],
            r#"(?i)\b[a-z0-9_.-]*(?:password|passwd|secret|api_?key|apikey|auth_?token|access_?token|private_?key|client_?secret)[a-z0-9_]*\b\s*["']?\s*[:=]+\s*[rbf]?["']([^"'\s]{12,})["']"#,
            1,
            3.5,
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
});

/// Every pattern's needles in one case-insensitive search: most lines have none, and one
/// scan tells.
static ANY_NEEDLE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let mut needles: Vec<String> = PATTERNS
        .iter()
        .flat_map(|p| p.needles.iter().map(|n| regex::escape(n)))
        .collect();
    needles.sort();
    needles.dedup();
    Regex::new(&format!("(?i){}", needles.join("|"))).ok()
});

/// Bits of Shannon entropy per character.
pub(crate) fn entropy(text: &str) -> f64 {
    let mut counts = [0usize; 256];
    let mut n = 0usize;
    for b in text.bytes() {
        counts[usize::from(b)] += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n as f64;
            -p * p.log2()
        })
        .sum()
}

/// Placeholders, examples and references to where a secret really is.
pub(crate) fn placeholder(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    const WORDS: [&str; 16] = [
        "example",
        "xxxx",
        "your",
        "placeholder",
        "changeme",
        "change_me",
        "dummy",
        "fake",
        "redacted",
        "****",
        "sample",
        "<",
        "${",
        "{{",
        "...",
        "todo",
    ];
    if WORDS.iter().any(|w| lower.contains(w)) {
        return true;
    }
    let first = lower.chars().next().unwrap_or(' ');
    lower.chars().all(|c| c == first)
        // An environment variable's name, not its value.
        || text.chars().all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit()) && text.contains('_')
}

pub(super) fn check(ctx: &Ctx<'_, '_>, out: &mut Out<'_>) {
    let src = ctx.new;
    for row in 0..src.line_count() {
        let line = src.line(row);
        if line.len() < 12 {
            continue;
        }
        if ANY_NEEDLE.as_ref().is_some_and(|r| !r.is_match(line)) {
            continue;
        }
        let lower = line.to_ascii_lowercase();
        for p in PATTERNS.iter() {
            if !p.needles.iter().any(|n| lower.contains(n)) {
                continue;
            }
            for caps in p.regex.captures_iter(line) {
                let Some(m) = caps.get(p.group) else { continue };
                let secret = m.as_str();
                if placeholder(secret) || entropy(secret) < p.entropy {
                    continue;
                }
                // The AWS secret key pattern must not re-match a key id or a hex digest.
                if p.what == "AWS secret access key"
                    && (secret.chars().all(|c| c.is_ascii_hexdigit())
                        || !secret.chars().any(|c| c.is_ascii_lowercase())
                        || !secret.chars().any(|c| c.is_ascii_uppercase()))
                {
                    continue;
                }
                let col = line[..m.start()].chars().count() + 1;
                let loc = Loc {
                    row,
                    col,
                    end_row: row,
                };
                let shown = format!("{}…", excerpt(secret, 4));
                let changed = ctx.changed(loc);
                let message = if changed {
                    format!(
                        "{} ({shown}) in the new text; keep it in Secrets Manager",
                        p.what
                    )
                } else {
                    format!(
                        "{} ({shown}) already in the file: shipping the patch ships it again; move it to Secrets Manager",
                        p.what
                    )
                };
                // A secret anywhere in the new text blocks, changed line or not.
                out.at(
                    Rule::Secret,
                    RiskLevel::Critical,
                    row + 1,
                    col,
                    message,
                    false,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        // A pattern that fails to compile is dropped by `pattern`: count them.
        assert_eq!(PATTERNS.len(), 14);
        assert!(ANY_NEEDLE.is_some());
    }

    #[test]
    fn entropy_tells_random_from_words() {
        assert!(entropy("wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ3kW9vT1a") > 4.0);
        assert!(entropy("passwordpassword") < 3.0);
        assert_eq!(entropy(""), 0.0);
    }

    #[test]
    fn placeholders_and_examples_are_not_secrets() {
        for p in [
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "your-api-key-here",
            "xxxxxxxxxxxxxxxxxxxx",
            "${DB_PASSWORD}",
            "DATABASE_PASSWORD",
        ] {
            assert!(placeholder(p), "{p}");
        }
        assert!(!placeholder("hK9#mQ2$vL8@pR4!"));
    }
}
