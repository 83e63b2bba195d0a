//! Tokens of a log message, with variable parts masked as [`WILDCARD`].
//!
//! Only generic rules, the same for every log source:
//!
//! - A message is split on whitespace.
//! - A token that is a path or URL (`/a/b…`, `./a/b`, `~/a/b`, `C:\…`, `http://…`), a
//!   UUID, or longer than [`MAX_TOKEN_BYTES`] is a wildcard.
//! - Inside a token, each run of ASCII letters and digits (a *word*) is masked when it is a
//!   number-like word: it starts with a digit or at least half its characters are digits
//!   (`42`, `0x1f`, `R02`, `a64f992`, but not `ssh2`, `SOCKS5`, `IPV6`), a hex run of 8+
//!   characters (`ffffffff`), or `true`, `false` or `null`. A minus sign before a number
//!   goes with it, and masked words joined by `.`, `:`, `,`, `-`, `/` or `_` are one
//!   wildcard: `10.0.0.1:80`, `2005-06-03`, `blk_-123` become `<*>`, `<*>`, `blk_<*>`.
//! - A token left with nothing but wildcards and punctuation (`(42)`, `[10.0.0.1]`,
//!   `<1`) is a wildcard.
//! - A day or month name (`Fri`, `Jul`) next to a masked token is part of a timestamp
//!   and masked with it.
//! - Consecutive wildcards are one wildcard; so is a unit after a number (`850 bytes`,
//!   `(1.16 KB)`, `<1 sec`), and a repeated masked token (`blk_<*> blk_<*> blk_<*>`) is
//!   kept once. This lets one event with variable-length values keep one token count.

use super::WILDCARD;

/// The most tokens of a message the miner looks at; the rest of a longer one is a wildcard.
pub const MAX_TOKENS: usize = 128;

/// A longer token (a blob, a long identifier) is a wildcard, which bounds a template's size.
pub const MAX_TOKEN_BYTES: usize = 128;

/// Punctuation around a token's core, ignored when deciding whether it is a path.
const EDGE: &[u8] = b"()[]{}<>\"',;.!?";
/// Punctuation ignored around a unit word.
const UNIT_EDGE: &[u8] = b"()[]{},;:.\"'";

/// `s` without the ASCII bytes of `set` at either end.
fn trim_set<'a>(s: &'a str, set: &[u8]) -> &'a str {
    let b = s.as_bytes();
    let start = b.iter().position(|c| !set.contains(c)).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !set.contains(c))
        .map_or(start, |e| e + 1);
    // The set is ASCII, so both ends are char boundaries.
    &s[start..end.max(start)]
}

/// Units of size and time that belong to the number before them.
const UNITS: &[&str] = &[
    "b", "kb", "mb", "gb", "tb", "kib", "mib", "gib", "bytes", "byte", "ms", "us", "ns", "s",
    "sec", "secs", "seconds", "second", "msec", "millis", "min", "mins", "minutes",
];

/// A reusable tokenizer: the masked tokens of the last message it was given.
#[derive(Debug, Default, Clone)]
pub struct Tokens {
    /// The masked tokens, each followed by one space.
    text: String,
    /// Scratch: each raw token masked on its own.
    scratch: String,
    /// Each token's range in `text`.
    spans: Vec<(u32, u32)>,
    /// Scratch: per raw token, its masked text range, whether it is a wildcard, and whether
    /// it is a day or month name.
    raw: Vec<RawToken>,
}

#[derive(Debug, Clone, Copy)]
struct RawToken {
    start: u32,
    end: u32,
    wild: bool,
    calendar: bool,
}

impl Tokens {
    /// Masks `message` (one line; see the module docs) into this buffer.
    pub fn mask(&mut self, message: &str) {
        self.text.clear();
        self.spans.clear();
        self.raw.clear();
        self.scratch.clear();
        // 1. Each raw token masked on its own, into `scratch` (the ASCII split is the same
        // split, only faster).
        if message.is_ascii() {
            self.mask_raw(message.split_ascii_whitespace());
        } else {
            self.mask_raw(message.split_whitespace());
        }
        // 2. Day and month names next to a masked token are part of a timestamp.
        for i in 0..self.raw.len() {
            if !self.raw[i].calendar {
                continue;
            }
            let next = self.raw.get(i + 1);
            let before_masked = next.is_some_and(|n| n.wild || n.calendar);
            let after_masked = i > 0 && self.raw[i - 1].wild;
            if before_masked || after_masked {
                self.raw[i].wild = true;
            }
        }
        // 3. Collapse wildcard runs, units and repeats into the output.
        let scratch = &self.scratch;
        let out = &mut self.text;
        let mut previous: Option<(u32, u32)> = None;
        for t in &self.raw {
            let text = if t.wild {
                WILDCARD
            } else {
                &scratch[t.start as usize..t.end as usize]
            };
            if let Some((s, e)) = previous {
                let prev = &out[s as usize..e as usize];
                if prev == WILDCARD && (t.wild || is_unit(text)) {
                    continue;
                }
                if prev == text && text.contains(WILDCARD) {
                    continue;
                }
            }
            let start = out.len() as u32;
            out.push_str(text);
            let end = out.len() as u32;
            out.push(' ');
            self.spans.push((start, end));
            previous = Some((start, end));
        }
    }

    /// Masks each raw token into `scratch`, recording it in `raw`.
    fn mask_raw<'a>(&mut self, tokens: impl Iterator<Item = &'a str>) {
        let scratch = &mut self.scratch;
        for (i, token) in tokens.enumerate() {
            let start = scratch.len() as u32;
            let (wild, calendar) = if i >= MAX_TOKENS {
                scratch.push_str(WILDCARD);
                (true, false)
            } else {
                let wild = mask_token(token, scratch);
                (wild, !wild && is_calendar(token))
            };
            self.raw.push(RawToken {
                start,
                end: scratch.len() as u32,
                wild,
                calendar,
            });
            if i >= MAX_TOKENS {
                break;
            }
        }
    }

    /// How many tokens.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are none (a blank message).
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Token `i`.
    pub fn get(&self, i: usize) -> &str {
        let (s, e) = self.spans[i];
        &self.text[s as usize..e as usize]
    }

    /// The tokens in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.spans
            .iter()
            .map(|&(s, e)| &self.text[s as usize..e as usize])
    }

    /// The tokens joined by single spaces (the signature the miner caches).
    pub fn joined(&self) -> &str {
        self.text.strip_suffix(' ').unwrap_or(&self.text)
    }
}

/// The masked tokens of `message`, as owned strings.
pub fn tokenize(message: &str) -> Vec<String> {
    let mut tokens = Tokens::default();
    tokens.mask(message);
    tokens.iter().map(str::to_owned).collect()
}

/// Writes `token` masked into `out`; true when the whole token is a wildcard.
///
/// Constant text is copied in runs, only up to each masked word.
fn mask_token(token: &str, out: &mut String) -> bool {
    let core = trim_set(token, EDGE);
    if token.len() > MAX_TOKEN_BYTES || is_path(core) || is_uuid(core) {
        out.push_str(WILDCARD);
        return true;
    }
    let start = out.len();
    let bytes = token.as_bytes();
    let mut has_wild = false;
    let mut has_alnum = false;
    // Bytes of `token` before `copied` are in `out` (or dropped).
    let mut copied = 0;
    // Where the last masked word ended.
    let mut wild_end: Option<usize> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !b.is_ascii_alphanumeric() {
            if !b.is_ascii() {
                let c = token[i..].chars().next().unwrap_or(' ');
                has_alnum |= c.is_alphanumeric();
                i += c.len_utf8();
            } else {
                i += 1;
            }
            continue;
        }
        let mut j = i;
        let mut digits = 0;
        while j < bytes.len() && bytes[j].is_ascii_alphanumeric() {
            digits += usize::from(bytes[j].is_ascii_digit());
            j += 1;
        }
        if !is_variable_word(&token[i..j], digits) {
            has_alnum = true;
            i = j;
            continue;
        }
        has_wild = true;
        // Masked words joined by one of `.:,-/_` are one wildcard.
        let joins = wild_end == Some(copied)
            && i == copied + 1
            && matches!(bytes[copied], b'.' | b':' | b',' | b'-' | b'/' | b'_');
        if !joins {
            // A sign before a number goes with it: `-` at the start or after punctuation
            // (not after a masked word, whose `>` it would follow).
            let signed = i > copied
                && bytes[i - 1] == b'-'
                && (i == 1
                    || (!bytes[i - 2].is_ascii_alphanumeric()
                        && bytes[i - 2] != b'>'
                        && wild_end != Some(i - 1)));
            out.push_str(&token[copied..if signed { i - 1 } else { i }]);
            out.push_str(WILDCARD);
        }
        copied = j;
        wild_end = Some(j);
        i = j;
    }
    if has_wild && !has_alnum {
        out.truncate(start);
        out.push_str(WILDCARD);
        return true;
    }
    out.push_str(&token[copied..]);
    false
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(core: &str) -> bool {
    core.len() == 36
        && core.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Whether a run of ASCII letters and digits (`digits` of them digits) is a variable:
/// number-like, a long hex run, or a boolean or null literal.
fn is_variable_word(word: &str, digits: usize) -> bool {
    let b = word.as_bytes();
    if digits > 0 {
        return b[0].is_ascii_digit() || digits * 2 >= b.len();
    }
    match b.len() {
        0..=3 | 6 | 7 => false,
        4 => word.eq_ignore_ascii_case("true") || word.eq_ignore_ascii_case("null"),
        5 => word.eq_ignore_ascii_case("false"),
        _ => b.iter().all(u8::is_ascii_hexdigit),
    }
}

/// A path or URL: `http(s)://…`, `file://…`, `/a/b`, `./a/b`, `~/a/b`, `C:\…`.
fn is_path(core: &str) -> bool {
    let b = core.as_bytes();
    if b.len() < 3 {
        return false;
    }
    let rooted = b[0] == b'/' || core.starts_with("./") || core.starts_with("~/");
    if rooted && b.iter().filter(|&&c| c == b'/').count() >= 2 {
        return true;
    }
    if (b[0] == b'h' || b[0] == b'f')
        && (core.starts_with("http://")
            || core.starts_with("https://")
            || core.starts_with("file://"))
    {
        return true;
    }
    b.len() > 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\'
}

/// A unit of size or time, ignoring surrounding brackets and punctuation.
fn is_unit(token: &str) -> bool {
    if token.len() > 9 {
        return false;
    }
    let core = trim_set(token, UNIT_EDGE);
    !core.is_empty() && UNITS.iter().any(|u| core.eq_ignore_ascii_case(u))
}

/// A day or month name, ignoring a trailing `,` or `.`.
fn is_calendar(token: &str) -> bool {
    let core = token.trim_end_matches([',', '.']).as_bytes();
    if !(3..=9).contains(&core.len()) {
        return false;
    }
    let names: &[&str] = match [
        core[0].to_ascii_lowercase(),
        core[1].to_ascii_lowercase(),
        core[2].to_ascii_lowercase(),
    ] {
        [b'm', b'o', b'n'] => &["mon", "monday"],
        [b't', b'u', b'e'] => &["tue", "tuesday"],
        [b'w', b'e', b'd'] => &["wed", "wednesday"],
        [b't', b'h', b'u'] => &["thu", "thursday"],
        [b'f', b'r', b'i'] => &["fri", "friday"],
        [b's', b'a', b't'] => &["sat", "saturday"],
        [b's', b'u', b'n'] => &["sun", "sunday"],
        [b'j', b'a', b'n'] => &["jan", "january"],
        [b'f', b'e', b'b'] => &["feb", "february"],
        [b'm', b'a', b'r'] => &["mar", "march"],
        [b'a', b'p', b'r'] => &["apr", "april"],
        [b'm', b'a', b'y'] => &["may"],
        [b'j', b'u', b'n'] => &["jun", "june"],
        [b'j', b'u', b'l'] => &["jul", "july"],
        [b'a', b'u', b'g'] => &["aug", "august"],
        [b's', b'e', b'p'] => &["sep", "sept", "september"],
        [b'o', b'c', b't'] => &["oct", "october"],
        [b'n', b'o', b'v'] => &["nov", "november"],
        [b'd', b'e', b'c'] => &["dec", "december"],
        _ => return false,
    };
    names
        .iter()
        .any(|n| n.as_bytes().eq_ignore_ascii_case(core))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(message: &str) -> String {
        let mut t = Tokens::default();
        t.mask(message);
        t.joined().to_owned()
    }

    #[test]
    fn masks_number_like_words_and_keeps_names_with_digits() {
        let cases = [
            ("took 250 ms", "took <*>"),
            ("core.42 failed", "core.<*> failed"),
            (
                "blk_-1608999687919862906 and blk_38865",
                "blk_<*> and blk_<*>",
            ),
            ("from 10.0.12.7:8080 to [10.0.0.1]", "from <*> to <*>"),
            ("at 2005-06-03-15.42.50.675872 ok", "at <*> ok"),
            (
                "open through SOCKS5 and ssh2 on IPV6",
                "open through SOCKS5 and ssh2 on IPV6",
            ),
            ("node R02-M1-N0-C:J12-U11 up", "node <*>-C:<*> up"),
            ("lock a64f992 mask=ffffffff", "lock <*> mask=<*>"),
            (
                "overlap:false isOverlap:TRUE ws=null",
                "overlap:<*> isOverlap:<*> ws=<*>",
            ),
            ("child (6725) exited.", "child <*> exited."),
            ("onExtend:1514038530000 14 0 4", "onExtend:<*> <*>"),
            (
                "id 550e8400-e29b-41d4-a716-446655440000 done",
                "id <*> done",
            ),
            ("jk2_init() Found child", "jk2_init() Found child"),
        ];
        for (input, expected) in cases {
            assert_eq!(masked(input), expected, "input: {input}");
        }
    }

    #[test]
    fn paths_urls_and_timestamps_are_one_wildcard() {
        let cases = [
            (
                "Deleting file /mnt/data/current/subdir5/blk_1",
                "Deleting file <*>",
            ),
            ("GET \"/v2/servers/detail\" done", "GET <*> done"),
            ("fetch https://example.com/a?b=1 failed", "fetch <*> failed"),
            ("open C:\\Windows\\System32 failed", "open <*> failed"),
            ("rule: /var/www/html/", "rule: <*>"),
            ("one /slash only", "one /slash only"),
            (
                "connection from 1.2.3.4 () at Sun Jul  3 10:05:25 2005",
                "connection from <*> () at <*>",
            ),
            ("Mon Dec 05 was a Monday", "<*> was a Monday"),
            ("may we? yes we may", "may we? yes we may"),
        ];
        for (input, expected) in cases {
            assert_eq!(masked(input), expected, "input: {input}");
        }
    }

    #[test]
    fn variable_length_values_keep_one_token_count() {
        assert_eq!(
            masked("x:80 close, 1190 bytes (1.16 KB) sent, 850 bytes received, lifetime <1 sec"),
            "x:<*> close, <*> sent, <*> received, lifetime <*>"
        );
        assert_eq!(
            masked("x:80 close, 0 bytes sent, 10547 bytes (10.2 KB) received, lifetime 00:02"),
            "x:<*> close, <*> sent, <*> received, lifetime <*>"
        );
        assert_eq!(
            masked("ask 10.0.0.1:50010 to delete blk_-1 blk_2 blk_3"),
            "ask <*> to delete blk_<*>"
        );
    }

    #[test]
    fn a_minus_is_a_sign_only_where_a_number_starts() {
        assert_eq!(masked("offset -3 and x-3y"), "offset <*> and x-<*>");
        assert_eq!(masked("range 4-5"), "range <*>");
    }

    #[test]
    fn a_very_long_token_is_a_wildcard() {
        let blob = "QUJD".repeat(100);
        assert_eq!(
            masked(&format!("payload {blob} rejected")),
            "payload <*> rejected"
        );
        let name = "x".repeat(MAX_TOKEN_BYTES);
        assert_eq!(masked(&format!("{name} ok")), format!("{name} ok"));
    }

    #[test]
    fn long_messages_end_in_one_wildcard() {
        let long: String = (0..500)
            .map(|i| format!("w{} ", "x".repeat(i % 7)))
            .collect();
        let mut t = Tokens::default();
        t.mask(&long);
        assert_eq!(t.len(), MAX_TOKENS + 1);
        assert_eq!(t.get(MAX_TOKENS), WILDCARD);
    }

    #[test]
    fn odd_text_does_not_panic() {
        for odd in [
            "",
            "   ",
            "日本語 ログ 12:00 エラー",
            "\u{0} \u{7f} \u{feff}",
            "- -- -1- 1-",
            "<*> <*>",
            "((((",
            "é1 1é ß22",
        ] {
            let mut t = Tokens::default();
            t.mask(odd);
            assert!(t.iter().all(|tok| !tok.is_empty()), "{odd:?}");
        }
    }
}
