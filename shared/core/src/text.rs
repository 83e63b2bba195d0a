//! Text from outside (events, operators, agents) made safe to echo in errors and logs.

use std::fmt::{self, Display, Write};

/// How many characters of an untrusted value an error message echoes.
pub const EXCERPT_CHARS: usize = 64;

/// An untrusted value to echo: quoted, control characters escaped, cut after
/// [`EXCERPT_CHARS`] characters with its full size noted.
#[derive(Clone, Copy)]
pub struct Excerpt<'a>(pub &'a str);

impl Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.char_indices();
        let cut = chars.nth(EXCERPT_CHARS).map(|(at, _)| at);
        let shown = &self.0[..cut.unwrap_or(self.0.len())];
        f.write_char('"')?;
        for c in shown.chars() {
            write!(f, "{}", c.escape_debug())?;
        }
        f.write_char('"')?;
        if cut.is_some() {
            write!(f, "… ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Display::fmt(self, f)
    }
}

/// Anything displayed with its control characters escaped (`\n`, `\0`, `\u{1b}`), so
/// that one log field stays on one line whatever text an error carries.
pub struct Escaped<T>(pub T);

impl<T: Display> Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(EscapeControls(f), "{}", self.0)
    }
}

struct EscapeControls<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl Write for EscapeControls<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if c.is_control() {
                write!(self.0, "{}", c.escape_debug())?;
            } else {
                self.0.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// The start of `text`, at most `max_bytes` long, cut at a character boundary.
pub fn prefix(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Whether `text` matches the whole of `pattern`, ignoring ASCII case: `*` stands for any run
/// of characters, `?` for one (alarm-name patterns, `MCP_ALLOWED_HOSTS`).
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().map(|c| c.to_ascii_lowercase()).collect();
    let text: Vec<char> = text.chars().map(|c| c.to_ascii_lowercase()).collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was and how much text it has taken: backtracking moves only there.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Why text an operator or agent supplied was refused; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct TextError {
    /// The argument or field, e.g. `reason`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

/// Checks one line of text an operator or agent supplies (a reason, a name): trimmed, it
/// must be 1 to `max_chars` characters with no control characters (no newline, tab or NUL).
pub fn single_line(field: &str, value: &str, max_chars: usize) -> Result<String, TextError> {
    let error = |problem: String| TextError {
        field: field.to_owned(),
        problem,
    };
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(error("must not be empty".into()));
    }
    if trimmed.chars().count() > max_chars {
        return Err(error(format!("longer than {max_chars} characters")));
    }
    if let Some((at, c)) = trimmed.chars().enumerate().find(|(_, c)| c.is_control()) {
        return Err(error(format!(
            "must not contain control characters (newline, tab, NUL …); found U+{:04X} at character {}",
            u32::from(c),
            at + 1
        )));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_the_whole_text_ignoring_case() {
        assert!(glob_matches("orders-*", "Orders-API"));
        assert!(glob_matches("*-api", "orders-api"));
        assert!(glob_matches("a?c", "abc"));
        assert!(
            glob_matches("a?c", "aéc"),
            "? is one character, not one byte"
        );
        assert!(glob_matches(
            "*.lambda-url.*.on.aws",
            "abc.lambda-url.us-east-1.on.aws"
        ));
        assert!(glob_matches("a*b*c", "axxbyybzzc"));
        assert!(!glob_matches("a*b*c", "axxbyyb"));
        assert!(!glob_matches("*.lambda-url.*.on.aws", "evil.example.com"));
        assert!(!glob_matches("localhost", "localhost.evil"));
        assert!(!glob_matches("orders", "orders-api"));
        assert!(glob_matches("", ""));
        assert!(!glob_matches("", "x"));
        assert!(glob_matches("**", ""));
    }

    #[test]
    fn an_excerpt_is_quoted_escaped_and_short() {
        assert_eq!(Excerpt("my.app").to_string(), r#""my.app""#);
        assert_eq!(Excerpt("a\nb\0").to_string(), r#""a\nb\0""#);
        let long = "s".repeat(10 * 1024 * 1024);
        let shown = Excerpt(&long).to_string();
        assert!(shown.len() < 100, "{shown}");
        assert!(shown.ends_with("… (10485760 bytes)"), "{shown}");
        // Cut on a character boundary.
        let wide = "é".repeat(100);
        assert_eq!(
            Excerpt(&wide)
                .to_string()
                .chars()
                .filter(|c| *c == 'é')
                .count(),
            EXCERPT_CHARS
        );
    }

    #[test]
    fn escaped_text_keeps_to_one_line() {
        let shown = Escaped("incident\nFAKE WARN line\0\u{1b}[31m é").to_string();
        assert_eq!(shown, r"incident\nFAKE WARN line\0\u{1b}[31m é");
        assert!(!shown.chars().any(char::is_control));
    }

    #[test]
    fn single_line_text() {
        assert_eq!(
            single_line("reason", "  incident 42 ", 20).unwrap(),
            "incident 42"
        );
        assert_eq!(
            single_line("reason", "  ", 20).unwrap_err().to_string(),
            "reason: must not be empty"
        );
        assert!(single_line("reason", &"x".repeat(21), 20).is_err());
        let err = single_line("reason", "incident\nERROR fake", 100).unwrap_err();
        assert_eq!(err.field, "reason");
        assert!(err.problem.contains("U+000A at character 9"), "{err}");
        assert!(single_line("reason", "a\0b", 100).is_err());
        assert!(single_line("reason", "a\tb", 100).is_err());
    }
}
