//! Groups error log lines into templates (a small, deterministic Drain-style miner) and
//! samples log lines evenly across components and hours.
//!
//! Mining works in three steps:
//!
//! 1. **Mask.** A message's headline (its first non-blank line; for a Python traceback, its
//!    last line, which names the exception) is split on whitespace, and variable tokens become
//!    [`WILDCARD`]: numbers, hex, UUIDs, IP addresses with optional port, ISO timestamps,
//!    paths with digits, identifiers with three or more digits, numbers with a unit (`10ms`),
//!    e-mail addresses, quoted strings longer than [`QUOTED_LITERAL_MAX`] characters (keeping
//!    a leading upper-case verb: `"GET <*>"`) and the values of `key=value` tokens
//!    (`key=<*>`, also for a quoted value with spaces). Punctuation around a token is kept:
//!    `(6725)` becomes `(<*>)`.
//! 2. **Group.** Masked lines with the same token count and the same first
//!    [`ROUTING_TOKENS`] tokens form a group; a leading token holding a digit matches any.
//! 3. **Merge.** Within a group, a line joins the template it is most similar to when the
//!    share of positions holding the same token is at least [`MinerConfig::similarity`]; the
//!    positions where they differ become [`WILDCARD`]. Otherwise it starts a new template.
//!
//! Distinct masked lines are merged in a canonical order (most frequent first, then by
//! text), so the same multiset of lines always gives the same templates, whatever the input
//! order.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv6Addr, SocketAddrV6};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The token that stands for a variable part of a template.
pub const WILDCARD: &str = "<*>";

/// How many leading tokens (besides the token count) decide a line's group, as in Drain's
/// default tree depth of 4.
pub const ROUTING_TOKENS: usize = 2;

/// Quoted strings with more characters than this between the quotes are masked.
pub const QUOTED_LITERAL_MAX: usize = 16;

/// One log line to mine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When it was logged.
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// The message; may span several lines (a stack trace).
    pub message: String,
    /// The component that logged it, if known.
    pub component: Option<String>,
}

/// Settings of [`mine_templates`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MinerConfig {
    /// Least share of equal token positions for a line to join a template, in `0..=1`
    /// (clamped; NaN means the default, 0.5).
    pub similarity: f64,
    /// Most raw sample messages kept per template (default 3).
    pub max_samples: usize,
    /// Most templates returned, the most frequent first (default 100).
    pub max_templates: usize,
}

impl MinerConfig {
    /// The default similarity threshold.
    pub const DEFAULT_SIMILARITY: f64 = 0.5;

    /// The similarity threshold, made safe: NaN gives the default, others clamp to `0..=1`.
    fn threshold(&self) -> f64 {
        if self.similarity.is_nan() {
            Self::DEFAULT_SIMILARITY
        } else {
            self.similarity.clamp(0.0, 1.0)
        }
    }
}

impl Default for MinerConfig {
    fn default() -> Self {
        Self {
            similarity: Self::DEFAULT_SIMILARITY,
            max_samples: 3,
            max_templates: 100,
        }
    }
}

/// A group of log lines sharing one template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogTemplate {
    /// The template, variable parts as [`WILDCARD`], tokens joined by single spaces.
    pub template: String,
    /// How many lines it matched.
    pub count: u64,
    /// The earliest matching line's timestamp.
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    /// The latest matching line's timestamp.
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    /// Up to `max_samples` distinct raw messages, the earliest first; multi-line messages whole.
    pub samples: Vec<String>,
    /// The components that logged it, sorted, without duplicates.
    pub components: Vec<String>,
}

/// Mines templates from `lines`, sorted by count (descending), then template text.
///
/// Lines whose message is blank are skipped. At most `config.max_templates` templates are
/// returned (the most frequent); the same multiset of lines gives the same result in any order.
pub fn mine_templates(lines: &[LogLine], config: &MinerConfig) -> Vec<LogTemplate> {
    if config.max_templates == 0 {
        return Vec::new();
    }
    let threshold = config.threshold();

    // 1. Mask, and fold identical masked lines together.
    let mut distinct: BTreeMap<Vec<String>, Stats<'_>> = BTreeMap::new();
    for line in lines {
        let tokens = tokenize(&line.message);
        if tokens.is_empty() {
            continue;
        }
        match distinct.get_mut(&tokens) {
            Some(stats) => stats.add(line, config.max_samples),
            None => {
                distinct.insert(tokens, Stats::new(line, config.max_samples));
            }
        }
    }

    // 2. A canonical order: the most frequent first, then by tokens.
    let mut ordered: Vec<(Vec<String>, Stats<'_>)> = distinct.into_iter().collect();
    ordered.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(&b.0)));

    // 3. Merge into templates within each (token count, leading tokens) group.
    let mut clusters: Vec<(Vec<String>, Stats<'_>)> = Vec::new();
    let mut groups: BTreeMap<(usize, Vec<String>), Vec<usize>> = BTreeMap::new();
    for (tokens, stats) in ordered {
        let key = (tokens.len(), route_key(&tokens));
        let members = groups.entry(key).or_default();
        let best = members
            .iter()
            .map(|&i| (i, similarity(&clusters[i].0, &tokens)))
            .fold(None::<(usize, f64)>, |best, (i, sim)| match best {
                Some((_, best_sim)) if best_sim >= sim => best,
                _ => Some((i, sim)),
            });
        match best {
            Some((i, sim)) if sim >= threshold => {
                let (template, cluster_stats) = &mut clusters[i];
                generalise(template, &tokens);
                cluster_stats.merge(stats, config.max_samples);
            }
            _ => {
                members.push(clusters.len());
                clusters.push((tokens, stats));
            }
        }
    }

    // 4. Templates that generalised to the same text are one template.
    let mut merged: BTreeMap<String, Stats<'_>> = BTreeMap::new();
    for (tokens, stats) in clusters {
        let text = tokens.join(" ");
        match merged.get_mut(&text) {
            Some(existing) => existing.merge(stats, config.max_samples),
            None => {
                merged.insert(text, stats);
            }
        }
    }

    let mut templates: Vec<LogTemplate> = merged
        .into_iter()
        .map(|(template, stats)| stats.into_template(template))
        .collect();
    templates.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.template.cmp(&b.template))
    });
    templates.truncate(config.max_templates);
    templates
}

/// A sample of at most `capacity` lines, spread over components and hours.
///
/// With no more lines than `capacity`, all of them. Otherwise lines are grouped into strata by
/// (component, UTC hour); each non-empty stratum gets one line while capacity allows (the
/// largest strata first when there are more strata than capacity), and the rest of the capacity
/// is shared in proportion to stratum size (largest remainder). Within a stratum, lines ordered
/// by (timestamp, message) are taken at even spacing. No randomness: the same lines give the
/// same sample. The result keeps the input order.
pub fn stratified_sample(lines: &[LogLine], capacity: usize) -> Vec<&LogLine> {
    if lines.len() <= capacity {
        return lines.iter().collect();
    }
    if capacity == 0 {
        return Vec::new();
    }

    let mut by_stratum: BTreeMap<(Option<&str>, i64), Vec<usize>> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let hour = line.timestamp.unix_timestamp().div_euclid(3600);
        by_stratum
            .entry((line.component.as_deref(), hour))
            .or_default()
            .push(i);
    }
    let mut strata: Vec<Vec<usize>> = by_stratum.into_values().collect();
    for stratum in &mut strata {
        stratum.sort_by(|&a, &b| {
            let (la, lb) = (&lines[a], &lines[b]);
            la.timestamp
                .cmp(&lb.timestamp)
                .then_with(|| la.message.cmp(&lb.message))
                .then(a.cmp(&b))
        });
    }

    let sizes: Vec<usize> = strata.iter().map(Vec::len).collect();
    let quotas = allocate(&sizes, capacity);
    let mut chosen: Vec<usize> = strata
        .iter()
        .zip(quotas)
        .flat_map(|(stratum, quota)| {
            evenly_spaced(stratum.len(), quota).map(move |position| stratum[position])
        })
        .collect();
    chosen.sort_unstable();
    chosen.into_iter().map(|i| &lines[i]).collect()
}

/// How many lines to take from strata of `sizes`, given `capacity < Σ sizes`.
fn allocate(sizes: &[usize], capacity: usize) -> Vec<usize> {
    let mut quotas = vec![0; sizes.len()];
    if capacity < sizes.len() {
        // Not even one each: the largest strata (earlier on ties) get one.
        let mut order: Vec<usize> = (0..sizes.len()).collect();
        order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(a.cmp(&b)));
        for &i in order.iter().take(capacity) {
            quotas[i] = 1;
        }
        return quotas;
    }

    // One each, then the rest in proportion to the lines not yet taken.
    let rest = (capacity - sizes.len()) as u128;
    let untaken: u128 = sizes.iter().map(|&s| s.saturating_sub(1) as u128).sum();
    if untaken == 0 {
        return sizes.iter().map(|&s| s.min(1)).collect();
    }
    let mut remainders: Vec<(u128, usize)> = Vec::with_capacity(sizes.len());
    let mut given: u128 = 0;
    for (i, &size) in sizes.iter().enumerate() {
        let share = rest * size.saturating_sub(1) as u128;
        let whole = share / untaken;
        given += whole;
        // `whole ≤ size − 1`, because `rest < untaken` when capacity < Σ sizes.
        quotas[i] = (1 + whole).min(size as u128) as usize;
        remainders.push((share % untaken, i));
    }
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let leftover = rest.saturating_sub(given);
    for &(remainder, i) in remainders
        .iter()
        .take(usize::try_from(leftover).unwrap_or(0))
    {
        if remainder > 0 && quotas[i] < sizes[i] {
            quotas[i] += 1;
        }
    }
    quotas
}

/// `k` distinct positions in `0..n`, evenly spread (the centres of `k` equal slices).
fn evenly_spaced(n: usize, k: usize) -> impl Iterator<Item = usize> {
    let k = k.min(n);
    (0..k).map(move |i| {
        // (2i + 1)·n / 2k < n; u128 keeps the product from overflowing.
        let position = (2 * i as u128 + 1) * n as u128 / (2 * k as u128);
        position as usize
    })
}

/// What a group of lines has in common besides its template.
struct Stats<'a> {
    count: u64,
    first_seen: OffsetDateTime,
    last_seen: OffsetDateTime,
    samples: Samples<'a>,
    components: BTreeSet<&'a str>,
}

impl<'a> Stats<'a> {
    fn new(line: &'a LogLine, max_samples: usize) -> Self {
        let mut stats = Self {
            count: 0,
            first_seen: line.timestamp,
            last_seen: line.timestamp,
            samples: Samples::default(),
            components: BTreeSet::new(),
        };
        stats.add(line, max_samples);
        stats
    }

    fn add(&mut self, line: &'a LogLine, max_samples: usize) {
        self.count = self.count.saturating_add(1);
        self.first_seen = self.first_seen.min(line.timestamp);
        self.last_seen = self.last_seen.max(line.timestamp);
        self.samples
            .offer(line.timestamp, &line.message, max_samples);
        if let Some(component) = &line.component {
            self.components.insert(component);
        }
    }

    fn merge(&mut self, other: Self, max_samples: usize) {
        self.count = self.count.saturating_add(other.count);
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        for (timestamp, message) in other.samples.by_time {
            self.samples.offer(timestamp, message, max_samples);
        }
        self.components.extend(other.components);
    }

    fn into_template(self, template: String) -> LogTemplate {
        LogTemplate {
            template,
            count: self.count,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            samples: self
                .samples
                .by_time
                .into_iter()
                .map(|(_, message)| message.to_owned())
                .collect(),
            components: self.components.into_iter().map(str::to_owned).collect(),
        }
    }
}

/// The earliest distinct messages seen, by (timestamp, message).
#[derive(Default)]
struct Samples<'a> {
    by_time: BTreeSet<(OffsetDateTime, &'a str)>,
    by_message: BTreeMap<&'a str, OffsetDateTime>,
}

impl<'a> Samples<'a> {
    fn offer(&mut self, timestamp: OffsetDateTime, message: &'a str, max: usize) {
        if let Some(seen) = self.by_message.get_mut(message) {
            if timestamp < *seen {
                self.by_time.remove(&(*seen, message));
                self.by_time.insert((timestamp, message));
                *seen = timestamp;
            }
            return;
        }
        if self.by_time.len() >= max {
            match self.by_time.last() {
                Some(&last) if (timestamp, message) < last => {
                    self.by_time.remove(&last);
                    self.by_message.remove(last.1);
                }
                _ => return,
            }
        }
        self.by_time.insert((timestamp, message));
        self.by_message.insert(message, timestamp);
    }
}

/// The group a masked line belongs to besides its length: its first [`ROUTING_TOKENS`]
/// tokens, each replaced by [`WILDCARD`] when it is variable or holds a digit.
fn route_key(tokens: &[String]) -> Vec<String> {
    tokens
        .iter()
        .take(ROUTING_TOKENS)
        .map(|t| {
            if t.contains(WILDCARD) || t.bytes().any(|b| b.is_ascii_digit()) {
                WILDCARD.to_owned()
            } else {
                t.clone()
            }
        })
        .collect()
}

/// The share of positions where `template` and `tokens` hold the same token (1 when empty).
fn similarity(template: &[String], tokens: &[String]) -> f64 {
    if template.is_empty() {
        return 1.0;
    }
    let same = template.iter().zip(tokens).filter(|(a, b)| a == b).count();
    same as f64 / template.len() as f64
}

/// Replaces the positions where `template` and `tokens` differ with [`WILDCARD`].
fn generalise(template: &mut [String], tokens: &[String]) {
    for (slot, token) in template.iter_mut().zip(tokens) {
        if slot != token && slot != WILDCARD {
            *slot = WILDCARD.to_owned();
        }
    }
}

/// The masked tokens of a message's headline.
fn tokenize(message: &str) -> Vec<String> {
    let quoted = mask_quoted(headline(message));
    quoted.split_whitespace().map(mask_token).collect()
}

/// The line of `message` that names it: the first non-blank one, except for a Python
/// traceback, whose last non-blank line (the exception) is used.
fn headline(message: &str) -> &str {
    let mut lines = message.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("");
    if first.starts_with("Traceback (most recent call last)") {
        return lines.next_back().unwrap_or(first);
    }
    first
}

/// `line` with quoted strings longer than [`QUOTED_LITERAL_MAX`] characters, and quoted
/// values (`key="…"`) holding whitespace, masked as `"<*>"` (or `"VERB <*>"`).
///
/// A quote opens only at the start of a word (after whitespace or one of `=([{:,`) and closes
/// only before whitespace, the end, or one of `,;:)]}.!?`, so apostrophes in words are left
/// alone.
fn mask_quoted(line: &str) -> Cow<'_, str> {
    if !line.contains(['"', '\'']) {
        return Cow::Borrowed(line);
    }
    let bytes = line.as_bytes();
    let opens = |b: u8| b.is_ascii_whitespace() || b"=([{:,".contains(&b);
    let closes = |b: u8| b.is_ascii_whitespace() || b",;:)]}.!?".contains(&b);
    let mut out = String::with_capacity(line.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let quote = bytes[i];
        let at_word_start = i == 0 || opens(bytes[i - 1]);
        if (quote == b'"' || quote == b'\'') && at_word_start {
            let close = bytes[i + 1..]
                .iter()
                .position(|&b| b == quote)
                .map(|offset| i + 1 + offset);
            if let Some(close) = close
                && bytes.get(close + 1).is_none_or(|&b| closes(b))
            {
                // Quotes are ASCII, so both ends are char boundaries.
                let inner = &line[i + 1..close];
                let is_value = i > 0 && bytes[i - 1] == b'=';
                let spaced = inner.contains(char::is_whitespace);
                if inner.chars().count() > QUOTED_LITERAL_MAX || (is_value && spaced) {
                    out.push_str(&line[copied..i]);
                    out.push(char::from(quote));
                    if let Some(verb) = leading_verb(inner) {
                        out.push_str(verb);
                        out.push(' ');
                    }
                    out.push_str(WILDCARD);
                    out.push(char::from(quote));
                    copied = close + 1;
                }
                i = close + 1;
                continue;
            }
        }
        i += 1;
    }
    if copied == 0 {
        return Cow::Borrowed(line);
    }
    out.push_str(&line[copied..]);
    Cow::Owned(out)
}

/// The first word of a quoted string when it is an upper-case verb followed by more words:
/// an HTTP method (`GET /path HTTP/1.1`) or an SQL statement (`SELECT … FROM …`).
fn leading_verb(quoted: &str) -> Option<&str> {
    let (word, rest) = quoted.split_once(char::is_whitespace)?;
    let is_verb = (2..=10).contains(&word.len()) && word.bytes().all(|b| b.is_ascii_uppercase());
    (is_verb && !rest.trim().is_empty()).then_some(word)
}

/// Characters stripped from the start of a token before it is classified, and kept.
const OPENING: &[char] = &['(', '[', '{', '<', '"', '\''];
/// Characters stripped from the end of a token before it is classified, and kept.
const CLOSING: &[char] = &[')', ']', '}', '>', ',', ';', ':', '.', '"', '\'', '!', '?'];

/// One token, masked if variable.
fn mask_token(token: &str) -> String {
    if token.contains(WILDCARD) {
        // Already masked by `mask_quoted`.
        return token.to_owned();
    }
    let (whole, whole_suffix) = split_closing(token);
    if is_ipv6(whole) {
        // `[2001:db8::1]:8443` starts with a bracket that belongs to it.
        return format!("{WILDCARD}{whole_suffix}");
    }
    let (prefix, rest) = split_opening(token);
    if let Some((key, value)) = assignment(rest) {
        let (value_prefix, value_rest) = split_opening(value);
        let (value_core, value_suffix) = split_closing(value_rest);
        if value_core.is_empty() {
            // `pci_stats=[]`, `name=""`: an empty value is structure, not data.
            return token.to_owned();
        }
        return format!("{prefix}{key}={value_prefix}{WILDCARD}{value_suffix}");
    }
    let (core, suffix) = split_closing(rest);
    if !core.is_empty() && is_variable(core) {
        format!("{prefix}{WILDCARD}{suffix}")
    } else {
        token.to_owned()
    }
}

/// `token` split into its leading [`OPENING`] punctuation and the rest.
fn split_opening(token: &str) -> (&str, &str) {
    let rest = token.trim_start_matches(OPENING);
    token.split_at(token.len() - rest.len())
}

/// `token` split into the part before its trailing [`CLOSING`] punctuation, and that
/// punctuation.
fn split_closing(token: &str) -> (&str, &str) {
    let core = token.trim_end_matches(CLOSING);
    token.split_at(core.len())
}

/// A `key=value` token's key and value, for an identifier-like key and a non-empty value.
fn assignment(token: &str) -> Option<(&str, &str)> {
    let (key, value) = token.split_once('=')?;
    let key_ok = key
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']'));
    (key_ok && !value.is_empty() && !value.starts_with('=')).then_some((key, value))
}

/// Whether a token (without surrounding punctuation) is a variable part of a message.
fn is_variable(core: &str) -> bool {
    let digits = core.bytes().filter(u8::is_ascii_digit).count();
    if digits == 0 {
        return is_hex_literal(core) || is_ipv6(core) || is_email(core);
    }
    let letters = core.chars().filter(|c| c.is_alphabetic()).count();
    letters == 0 // numbers, IPv4 (with port), dates, times, sizes with separators
        || digits >= 3 // identifiers: blk_-1608…, job_2012…_0001, i-0abc123
        || is_number_with_unit(core)
        || core.contains(['/', '\\']) // paths with digits
        || is_hex_literal(core)
        || is_uuid(core)
        || is_ipv6(core)
        || is_iso_timestamp(core)
        || is_email(core)
}

/// `0x1f`, or a run of 8+ hex digits with at least one decimal digit.
fn is_hex_literal(core: &str) -> bool {
    if let Some(hex) = core.strip_prefix("0x").or_else(|| core.strip_prefix("0X")) {
        return !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    core.len() >= 8
        && core.bytes().all(|b| b.is_ascii_hexdigit())
        && core.bytes().any(|b| b.is_ascii_digit())
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(core: &str) -> bool {
    core.len() == 36
        && core.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// An IPv6 address, optionally `[addr]:port`, holding at least one hex digit.
fn is_ipv6(core: &str) -> bool {
    core.contains(':')
        && core.bytes().any(|b| b.is_ascii_hexdigit())
        && (core.parse::<Ipv6Addr>().is_ok() || core.parse::<SocketAddrV6>().is_ok())
}

/// Starts with an ISO date, `YYYY-MM-DD`.
fn is_iso_timestamp(core: &str) -> bool {
    let b = core.as_bytes();
    b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// `local@domain.tld`.
fn is_email(core: &str) -> bool {
    let Some((local, domain)) = core.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && domain.split('.').all(|part| !part.is_empty())
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-'))
}

/// A number followed by a short unit: `10ms`, `1.5GB`, `3rd`.
fn is_number_with_unit(core: &str) -> bool {
    let unsigned = core.strip_prefix(['+', '-']).unwrap_or(core);
    let unit_start = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(unsigned.len());
    let (number, unit) = unsigned.split_at(unit_start);
    number.starts_with(|c: char| c.is_ascii_digit())
        && unit.len() <= 4
        && unit.chars().all(|c| c.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2024-05-01 10:00 UTC);

    fn line(offset_secs: i64, message: &str, component: Option<&str>) -> LogLine {
        LogLine {
            timestamp: T0 + Duration::seconds(offset_secs),
            message: message.to_owned(),
            component: component.map(str::to_owned),
        }
    }

    fn lines(messages: &[&str]) -> Vec<LogLine> {
        messages
            .iter()
            .enumerate()
            .map(|(i, m)| line(i as i64, m, None))
            .collect()
    }

    fn mine(lines: &[LogLine]) -> Vec<LogTemplate> {
        mine_templates(lines, &MinerConfig::default())
    }

    fn summary(templates: &[LogTemplate]) -> Vec<(String, u64)> {
        templates
            .iter()
            .map(|t| (t.template.clone(), t.count))
            .collect()
    }

    fn masked(message: &str) -> String {
        tokenize(message).join(" ")
    }

    // Real lines from LogHub-2k (https://github.com/logpai/loghub).
    const HDFS: &[&str] = &[
        "Receiving block blk_5792489080791696128 src: /10.251.30.6:33145 dest: /10.251.30.6:50010",
        "PacketResponder 1 for block blk_38865049064139660 terminating",
        "Receiving block blk_1724757848743533110 src: /10.251.111.130:49851 dest: /10.251.111.130:50010",
        "BLOCK* NameSystem.addStoredBlock: blockMap updated: 10.251.73.220:50010 is added to blk_7128370237687728475 size 67108864",
        "Receiving block blk_-5623176793330377570 src: /10.251.75.228:53725 dest: /10.251.75.228:50010",
        "PacketResponder 0 for block blk_-6952295868487656571 terminating",
        "Deleting block blk_1781953582842324563 file /mnt/hadoop/dfs/data/current/subdir5/blk_1781953582842324563",
        "Receiving block blk_-1608999687919862906 src: /10.250.19.102:54106 dest: /10.250.19.102:50010",
        "PacketResponder 2 for block blk_8229193803249955061 terminating",
        "Deleting block blk_8483848473254499625 file /mnt/hadoop/dfs/data/current/subdir51/blk_8483848473254499625",
        "Receiving block blk_-28342503914935090 src: /10.251.123.132:57542 dest: /10.251.123.132:50010",
    ];

    const APACHE: &[&str] = &[
        "jk2_init() Found child 6725 in scoreboard slot 10",
        "workerEnv.init() ok /etc/httpd/conf/workers2.properties",
        "jk2_init() Found child 6726 in scoreboard slot 8",
        "mod_jk child workerEnv in error state 6",
        "[client 222.166.160.184] Directory index forbidden by rule: /var/www/html/",
        "jk2_init() Found child 6728 in scoreboard slot 6",
        "mod_jk child workerEnv in error state 7",
        "[client 63.13.186.196] Directory index forbidden by rule: /var/www/html/",
        "workerEnv.init() ok /etc/httpd/conf/workers2.properties",
    ];

    const OPENSTACK: &[&str] = &[
        r#"10.11.10.1 "GET /v2/54fadb412c4e40cdbaed9335e4c35a9e/servers/detail HTTP/1.1" status: 200 len: 1893 time: 0.2477829"#,
        r#"10.11.10.1 "POST /v2/e9746973ac574c6b8a9e8857f56a7608/os-server-external-events HTTP/1.1" status: 200 len: 380 time: 0.0913219"#,
        r#"10.11.10.1 "GET /v2/54fadb412c4e40cdbaed9335e4c35a9e/servers/detail HTTP/1.1" status: 200 len: 1893 time: 0.2577181"#,
        r#"10.11.10.1 "POST /v2/e9746973ac574c6b8a9e8857f56a7608/os-server-external-events HTTP/1.1" status: 404 len: 296 time: 0.0793190"#,
        "[instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] VM Paused (Lifecycle Event)",
        "[instance: 96abccce-8d1f-4e07-b6d1-4b2ab87e23b4] VM Paused (Lifecycle Event)",
        "[instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] VM Resumed (Lifecycle Event)",
        "Final resource view: name=cp-1.slowvm1.tcloud-pg0.utah.cloudlab.us phys_ram=64172MB used_ram=2560MB phys_disk=15GB used_disk=20GB total_vcpus=16 used_vcpus=1 pci_stats=[]",
    ];

    #[test]
    fn hdfs_receiving_lines_collapse_into_one_template() {
        let receiving: Vec<&str> = HDFS
            .iter()
            .copied()
            .filter(|m| m.starts_with("Receiving"))
            .collect();
        let templates = mine(&lines(&receiving));
        assert_eq!(
            summary(&templates),
            [("Receiving block <*> src: <*> dest: <*>".to_owned(), 5)]
        );
    }

    #[test]
    fn hdfs_sample_gives_one_template_per_event() {
        let templates = mine(&lines(HDFS));
        assert_eq!(
            summary(&templates),
            [
                ("Receiving block <*> src: <*> dest: <*>".to_owned(), 5),
                ("PacketResponder <*> for block <*> terminating".to_owned(), 3),
                ("Deleting block <*> file <*>".to_owned(), 2),
                (
                    "BLOCK* NameSystem.addStoredBlock: blockMap updated: <*> is added to <*> size <*>"
                        .to_owned(),
                    1
                ),
            ]
        );
    }

    #[test]
    fn apache_sample_matches_the_ground_truth_templates() {
        let templates = mine(&lines(APACHE));
        assert_eq!(
            summary(&templates),
            [
                (
                    "jk2_init() Found child <*> in scoreboard slot <*>".to_owned(),
                    3
                ),
                (
                    "[client <*>] Directory index forbidden by rule: /var/www/html/".to_owned(),
                    2
                ),
                ("mod_jk child workerEnv in error state <*>".to_owned(), 2),
                ("workerEnv.init() ok <*>".to_owned(), 2),
            ]
        );
    }

    #[test]
    fn openstack_requests_split_by_method_and_lifecycle_events_merge() {
        let templates = mine(&lines(OPENSTACK));
        assert_eq!(
            summary(&templates),
            [
                ("[instance: <*>] VM <*> (Lifecycle Event)".to_owned(), 3),
                (
                    r#"<*> "GET <*>" status: <*> len: <*> time: <*>"#.to_owned(),
                    2
                ),
                (
                    r#"<*> "POST <*>" status: <*> len: <*> time: <*>"#.to_owned(),
                    2
                ),
                (
                    "Final resource view: name=<*> phys_ram=<*> used_ram=<*> phys_disk=<*> \
                     used_disk=<*> total_vcpus=<*> used_vcpus=<*> pci_stats=[]"
                        .to_owned(),
                    1
                ),
            ]
        );
    }

    #[test]
    fn a_stricter_threshold_keeps_near_templates_apart() {
        let config = MinerConfig {
            similarity: 0.9,
            ..MinerConfig::default()
        };
        let templates = mine_templates(&lines(&OPENSTACK[4..7]), &config);
        assert_eq!(
            summary(&templates),
            [
                ("[instance: <*>] VM Paused (Lifecycle Event)".to_owned(), 2),
                ("[instance: <*>] VM Resumed (Lifecycle Event)".to_owned(), 1),
            ]
        );
    }

    #[test]
    fn dissimilar_lines_with_the_same_start_stay_apart() {
        let templates = mine(&lines(&[
            "Task worker crashed unexpectedly during shutdown",
            "Task worker started normally after upgrade",
        ]));
        assert_eq!(templates.len(), 2);
    }

    #[test]
    fn differing_words_become_wildcards_at_the_threshold() {
        let templates = mine(&lines(&[
            "Failed to refresh token for user alice",
            "Failed to refresh token for user bob",
            "Failed to refresh token for user carol",
        ]));
        assert_eq!(
            summary(&templates),
            [("Failed to refresh token for user <*>".to_owned(), 3)]
        );
    }

    #[test]
    fn different_lengths_or_first_words_never_merge() {
        let templates = mine(&lines(&[
            "Connection refused",
            "Connection reset",
            "Connection reset by peer",
        ]));
        assert_eq!(templates.len(), 3);
    }

    #[test]
    fn templates_carry_counts_times_samples_and_components() {
        let input = vec![
            line(
                30,
                "Receiving block blk_3 src: /10.0.0.3:1 dest: /10.0.0.9:50010",
                Some("datanode-b"),
            ),
            line(
                10,
                "Receiving block blk_1 src: /10.0.0.1:1 dest: /10.0.0.9:50010",
                Some("datanode-a"),
            ),
            line(
                50,
                "Receiving block blk_5 src: /10.0.0.5:1 dest: /10.0.0.9:50010",
                None,
            ),
            line(
                20,
                "Receiving block blk_2 src: /10.0.0.2:1 dest: /10.0.0.9:50010",
                Some("datanode-a"),
            ),
            // A repeat of the earliest message: kept once among the samples.
            line(
                40,
                "Receiving block blk_1 src: /10.0.0.1:1 dest: /10.0.0.9:50010",
                Some("datanode-b"),
            ),
        ];
        let templates = mine(&input);
        assert_eq!(templates.len(), 1);
        let t = &templates[0];
        assert_eq!(t.template, "Receiving block <*> src: <*> dest: <*>");
        assert_eq!(t.count, 5);
        assert_eq!(t.first_seen, T0 + Duration::seconds(10));
        assert_eq!(t.last_seen, T0 + Duration::seconds(50));
        assert_eq!(
            t.samples,
            [
                "Receiving block blk_1 src: /10.0.0.1:1 dest: /10.0.0.9:50010",
                "Receiving block blk_2 src: /10.0.0.2:1 dest: /10.0.0.9:50010",
                "Receiving block blk_3 src: /10.0.0.3:1 dest: /10.0.0.9:50010",
            ]
        );
        assert_eq!(t.components, ["datanode-a", "datanode-b"]);
    }

    #[test]
    fn a_stack_trace_is_mined_by_its_headline_and_sampled_whole() {
        let trace_1 = "java.lang.IllegalStateException: Connection pool shut down\n\
                       \tat org.apache.http.util.Asserts.check(Asserts.java:34)\n\
                       \tat com.example.orders.Client.call(Client.java:118)";
        let trace_2 = "java.lang.IllegalStateException: Connection pool shut down\n\
                       \tat org.apache.http.util.Asserts.check(Asserts.java:34)\n\
                       \tat com.example.orders.Client.retry(Client.java:141)";
        let templates = mine(&lines(&[trace_1, trace_2]));
        assert_eq!(
            summary(&templates),
            [(
                "java.lang.IllegalStateException: Connection pool shut down".to_owned(),
                2
            )]
        );
        assert_eq!(templates[0].samples, [trace_1, trace_2]);
    }

    #[test]
    fn a_python_traceback_is_named_by_its_exception() {
        let trace = "Traceback (most recent call last):\n  \
                     File \"/var/task/app.py\", line 42, in handler\n    \
                     return table.get_item(Key=key)\n\
                     KeyError: 'order_id'\n";
        assert_eq!(masked(trace), "KeyError: 'order_id'");
    }

    #[test]
    fn masks_variable_tokens() {
        let cases = [
            ("took 250 ms", "took <*> ms"),
            ("took 10ms, retry 3rd", "took <*>, retry <*>"),
            ("size 1.5GB free -3", "size <*> free <*>"),
            ("addr 0x7ffd5a2b and deadbeef01", "addr <*> and <*>"),
            ("word cafe facade stays", "word cafe facade stays"),
            (
                "request 550e8400-e29b-41d4-a716-446655440000 done",
                "request <*> done",
            ),
            ("from 10.0.12.7:8080 and 10.0.12.7", "from <*> and <*>"),
            ("peer fe80::1ff:fe23:4567:890a ok", "peer <*> ok"),
            ("peer [2001:db8::1]:8443 ok", "peer <*> ok"),
            (
                "peer ::1 and std::vector and ::",
                "peer <*> and std::vector and ::",
            ),
            ("at 2024-05-01T10:00:00.123Z retry", "at <*> retry"),
            ("at 2024-05-01 10:00:00,123 retry", "at <*> <*> retry"),
            ("open /var/log/app-2024.log failed", "open <*> failed"),
            (
                "serve /var/www/html/ forbidden",
                "serve /var/www/html/ forbidden",
            ),
            ("mail to bob@example.com bounced", "mail to <*> bounced"),
            ("mail to <bob@example.com> bounced", "mail to <<*>> bounced"),
            ("job job_201205011234_0001 failed", "job <*> failed"),
            ("instance i-0abc123def45 stopped", "instance <*> stopped"),
            ("child (6725) exited.", "child (<*>) exited."),
            ("slot 10, state 6.", "slot <*>, state <*>."),
        ];
        for (input, expected) in cases {
            assert_eq!(masked(input), expected, "input: {input}");
        }
    }

    #[test]
    fn masks_assignment_values() {
        let cases = [
            ("status=503 user=alice", "status=<*> user=<*>"),
            ("(user=alice), retry", "(user=<*>), retry"),
            (r#"tag="WindowManager" ws=null"#, r#"tag="<*>" ws=<*>"#),
            (r#"tag="View Lock" name=x"#, r#"tag="<*>" name=<*>"#),
            ("id[0]=0 flags=0x0,", "id[0]=<*> flags=<*>,"),
            (
                "pci_stats=[] key= == a==b =x",
                "pci_stats=[] key= == a==b =x",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(masked(input), expected, "input: {input}");
        }
    }

    #[test]
    fn masks_long_quoted_strings_only() {
        let cases = [
            (r#"method "GET" not allowed"#, r#"method "GET" not allowed"#),
            (
                r#"invalid input "the quick brown fox jumps over", rejected"#,
                r#"invalid input "<*>", rejected"#,
            ),
            (
                r#"request "GET /v2/54fadb/servers/detail HTTP/1.1" done"#,
                r#"request "GET <*>" done"#,
            ),
            (
                "query 'SELECT id FROM orders WHERE tenant = 7' slow",
                "query 'SELECT <*>' slow",
            ),
            (
                "don't touch the user's apostrophes",
                "don't touch the user's apostrophes",
            ),
            (
                r#"unbalanced "quote here and there"#,
                r#"unbalanced "quote here and there"#,
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(masked(input), expected, "input: {input}");
        }
    }

    #[test]
    fn odd_input_does_not_panic() {
        let long_token = "x".repeat(100_000);
        let many_tokens = "a ".repeat(10_000);
        let odd = [
            "",
            "   \n\t  ",
            "\"",
            "'",
            "\"\"",
            "=",
            "<*> <*>",
            "日本語 ログ 12:00 エラー \"引用された長い文字列です、とても長い\"",
            "\u{0} \u{7f} \u{feff}",
            long_token.as_str(),
            many_tokens.as_str(),
            "(((((",
            "key=\"",
            "\"'\"'\"'",
        ];
        let templates = mine(&lines(&odd));
        // The two blank messages are skipped; every other line is counted once.
        let total: u64 = templates.iter().map(|t| t.count).sum();
        assert_eq!(total, (odd.len() - 2) as u64);
    }

    #[test]
    fn empty_and_blank_input_give_no_templates() {
        assert!(mine(&[]).is_empty());
        assert!(mine(&lines(&["", "  ", "\n\n"])).is_empty());
    }

    #[test]
    fn output_is_sorted_by_count_then_template() {
        let templates = mine(&lines(&[
            "zeta failed",
            "alpha failed",
            "zeta failed",
            "beta failed",
            "alpha failed",
            "zeta failed",
        ]));
        assert_eq!(
            summary(&templates),
            [
                ("zeta failed".to_owned(), 3),
                ("alpha failed".to_owned(), 2),
                ("beta failed".to_owned(), 1),
            ]
        );
    }

    #[test]
    fn max_templates_keeps_the_most_frequent() {
        let input = lines(&["a one", "a one", "b two", "c three", "c three", "c three"]);
        let config = MinerConfig {
            max_templates: 2,
            ..MinerConfig::default()
        };
        let templates = mine_templates(&input, &config);
        assert_eq!(
            summary(&templates),
            [("c three".to_owned(), 3), ("a one".to_owned(), 2)]
        );
        let none = MinerConfig {
            max_templates: 0,
            ..MinerConfig::default()
        };
        assert!(mine_templates(&input, &none).is_empty());
    }

    #[test]
    fn max_samples_limits_samples() {
        let input = lines(&HDFS[..3]);
        let none = MinerConfig {
            max_samples: 0,
            ..MinerConfig::default()
        };
        assert!(
            mine_templates(&input, &none)
                .iter()
                .all(|t| t.samples.is_empty())
        );
        let one = MinerConfig {
            max_samples: 1,
            ..MinerConfig::default()
        };
        let templates = mine_templates(&input, &one);
        let receiving = templates
            .iter()
            .find(|t| t.template.starts_with("Receiving"))
            .unwrap();
        assert_eq!(receiving.samples, [HDFS[0]]);
    }

    #[test]
    fn similarity_is_made_safe() {
        let input = lines(&[
            "Task worker crashed unexpectedly during shutdown",
            "Task worker started normally after upgrade",
        ]);
        let with = |similarity: f64| {
            let config = MinerConfig {
                similarity,
                ..MinerConfig::default()
            };
            mine_templates(&input, &config).len()
        };
        assert_eq!(with(f64::NAN), 2, "NaN means the default");
        assert_eq!(with(0.0), 1, "zero merges a whole group");
        assert_eq!(with(-5.0), 1, "clamped to zero");
        assert_eq!(with(f64::INFINITY), 2, "clamped to one");
    }

    #[test]
    fn templates_round_trip_through_json() {
        let templates = mine(&lines(APACHE));
        let json = serde_json::to_string(&templates).unwrap();
        assert!(json.contains("\"first_seen\":\"2024-05-01T10:00:00Z\""));
        let back: Vec<LogTemplate> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, templates);
        let line_json = serde_json::to_string(&line(0, "x", Some("svc"))).unwrap();
        let back: LogLine = serde_json::from_str(&line_json).unwrap();
        assert_eq!(back, line(0, "x", Some("svc")));
    }

    // --- stratified_sample ---

    fn messages(sample: &[&LogLine]) -> Vec<String> {
        sample.iter().map(|l| l.message.clone()).collect()
    }

    #[test]
    fn a_small_input_is_returned_whole() {
        let input = lines(&["a", "b", "c"]);
        assert_eq!(stratified_sample(&input, 3).len(), 3);
        assert_eq!(stratified_sample(&input, 10).len(), 3);
        assert!(stratified_sample(&[], 5).is_empty());
    }

    #[test]
    fn zero_capacity_gives_nothing() {
        let input = lines(&["a", "b"]);
        assert!(stratified_sample(&input, 0).is_empty());
    }

    #[test]
    fn every_component_and_hour_is_represented() {
        // GIVEN 90 lines of "api" in hour 0, 9 of "worker" in hour 1 and 1 of "cron" in hour 2
        let mut input = Vec::new();
        for i in 0..90 {
            input.push(line(i, &format!("api {i}"), Some("api")));
        }
        for i in 0..9 {
            input.push(line(3600 + i, &format!("worker {i}"), Some("worker")));
        }
        input.push(line(7200, "cron 0", Some("cron")));
        // WHEN sampling 10
        let sample = stratified_sample(&input, 10);
        // THEN each stratum is present, in proportion, and the input order is kept
        assert_eq!(sample.len(), 10);
        let count = |c: &str| {
            sample
                .iter()
                .filter(|l| l.component.as_deref() == Some(c))
                .count()
        };
        assert_eq!(count("cron"), 1);
        assert!(count("worker") >= 1);
        assert!(count("api") >= 7, "api got {}", count("api"));
        assert!(sample.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    }

    #[test]
    fn hours_within_one_component_are_separate_strata() {
        let mut input: Vec<LogLine> = (0..50).map(|i| line(i, "busy hour", Some("api"))).collect();
        input.push(line(5 * 3600, "quiet hour", Some("api")));
        let sample = stratified_sample(&input, 5);
        assert_eq!(sample.len(), 5);
        assert!(messages(&sample).contains(&"quiet hour".to_owned()));
    }

    #[test]
    fn lines_are_taken_evenly_within_a_stratum() {
        let input: Vec<LogLine> = (0..100).map(|i| line(i, &format!("m{i}"), None)).collect();
        let sample = stratified_sample(&input, 4);
        assert_eq!(messages(&sample), ["m12", "m37", "m62", "m87"]);
    }

    #[test]
    fn with_more_strata_than_capacity_the_largest_win() {
        let mut input = Vec::new();
        for (component, n) in [("a", 2), ("b", 5), ("c", 1), ("d", 3)] {
            for i in 0..n {
                input.push(line(i, component, Some(component)));
            }
        }
        let sample = stratified_sample(&input, 2);
        let mut picked = messages(&sample);
        picked.sort();
        assert_eq!(picked, ["b", "d"]);
    }

    #[test]
    fn allocation_is_proportional_and_exact() {
        assert_eq!(allocate(&[80, 15, 5], 20), [15, 3, 2]);
        assert_eq!(allocate(&[10, 10], 5), [3, 2]);
        assert_eq!(allocate(&[1, 1, 1, 100], 4), [1, 1, 1, 1]);
        assert_eq!(allocate(&[3, 1, 3], 1), [1, 0, 0]);
        let sizes = [7, 1, 13, 2, 400, 9];
        for capacity in 0..sizes.iter().sum::<usize>() {
            let quotas = allocate(&sizes, capacity);
            assert_eq!(
                quotas.iter().sum::<usize>(),
                capacity,
                "capacity {capacity}"
            );
            assert!(quotas.iter().zip(&sizes).all(|(q, s)| q <= s));
            if capacity >= sizes.len() {
                assert!(quotas.iter().all(|&q| q >= 1));
            }
        }
    }

    #[test]
    fn even_spacing_covers_the_range() {
        assert_eq!(evenly_spaced(10, 1).collect::<Vec<_>>(), [5]);
        assert_eq!(
            evenly_spaced(10, 10).collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
        assert_eq!(evenly_spaced(3, 5).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(evenly_spaced(0, 0).count(), 0);
        let huge: Vec<usize> = evenly_spaced(usize::MAX, 3).collect();
        assert!(huge.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn extreme_timestamps_do_not_panic() {
        let input = vec![
            LogLine {
                timestamp: OffsetDateTime::new_utc(time::Date::MIN, time::Time::MIDNIGHT),
                message: "old".into(),
                component: None,
            },
            LogLine {
                timestamp: OffsetDateTime::new_utc(time::Date::MAX, time::Time::MIDNIGHT),
                message: "new".into(),
                component: None,
            },
            line(0, "now", None),
        ];
        assert_eq!(stratified_sample(&input, 2).len(), 2);
        let templates = mine(&input);
        assert_eq!(templates.len(), 3);
    }

    // --- properties ---

    use proptest::prelude::*;
    use proptest::test_runner::{Config as ProptestConfig, RngSeed};

    /// A fixed seed: the same cases on every run and machine.
    fn config(cases: u32) -> ProptestConfig {
        ProptestConfig {
            cases,
            rng_seed: RngSeed::Fixed(0x5e1f_b01d),
            ..ProptestConfig::default()
        }
    }

    /// Lines from the LogHub samples and from templates with variable words, numbers and
    /// ids, over two hours and three components (one none), often with equal timestamps.
    fn log_lines(max: usize) -> impl Strategy<Value = Vec<LogLine>> {
        let fixed: Vec<&'static str> = HDFS
            .iter()
            .chain(APACHE)
            .chain(OPENSTACK)
            .copied()
            .collect();
        let message = prop_oneof![
            proptest::sample::select(fixed).prop_map(str::to_owned),
            (
                proptest::sample::select(vec!["user", "tenant", "order"]),
                proptest::sample::select(vec!["alice", "bob", "acme", "7", "blk_123"]),
            )
                .prop_map(|(what, who)| format!("Failed to refresh token for {what} {who}")),
            (0_u32..5000).prop_map(|n| format!("Task timed out after {n}.00 seconds")),
            proptest::sample::select(vec!["a", "b", "a b", "  ", "x y z"]).prop_map(str::to_owned),
        ];
        let line = (
            0_i64..7200,
            message,
            proptest::sample::select(vec![None, Some("api"), Some("worker")]),
        )
            .prop_map(|(offset, message, component)| line(offset / 600 * 600, &message, component));
        proptest::collection::vec(line, 0..max)
    }

    /// `lines` and a permutation of them.
    fn permuted(max: usize) -> impl Strategy<Value = (Vec<LogLine>, Vec<LogLine>)> {
        log_lines(max).prop_flat_map(|lines| (Just(lines.clone()), Just(lines).prop_shuffle()))
    }

    proptest! {
        #![proptest_config(config(64))]

        /// The same multiset of lines gives the same templates, whatever the input order.
        #[test]
        fn the_templates_do_not_depend_on_input_order(
            (lines, shuffled) in permuted(60),
            similarity in proptest::sample::select(vec![0.0, 0.4, 0.5, 0.75, 1.0]),
            max_samples in 0_usize..4,
            max_templates in 1_usize..20,
        ) {
            let config = MinerConfig { similarity, max_samples, max_templates };
            prop_assert_eq!(mine_templates(&shuffled, &config), mine_templates(&lines, &config));
        }

        /// Templates account for every non-blank line at most once, and say so consistently.
        #[test]
        fn templates_count_each_line_once(lines in log_lines(60)) {
            let config = MinerConfig { max_templates: usize::MAX, ..MinerConfig::default() };
            let templates = mine_templates(&lines, &config);
            let non_blank = lines.iter().filter(|l| !l.message.trim().is_empty()).count() as u64;
            prop_assert_eq!(templates.iter().map(|t| t.count).sum::<u64>(), non_blank);
            for t in &templates {
                prop_assert!(t.count >= 1 && t.first_seen <= t.last_seen);
                prop_assert!(t.samples.len() <= 3);
                prop_assert!(t.components.windows(2).all(|w| w[0] < w[1]));
            }
            prop_assert!(templates.windows(2).all(|w| w[0].count >= w[1].count));
        }

        /// The same lines give the same sample, whatever the input order, of exactly
        /// min(capacity, lines) lines.
        #[test]
        fn the_sample_does_not_depend_on_input_order(
            (lines, shuffled) in permuted(80),
            capacity in 0_usize..40,
        ) {
            let key = |sample: Vec<&LogLine>| {
                let mut keys: Vec<(OffsetDateTime, String, Option<String>)> = sample
                    .into_iter()
                    .map(|l| (l.timestamp, l.message.clone(), l.component.clone()))
                    .collect();
                keys.sort();
                keys
            };
            let sample = stratified_sample(&lines, capacity);
            prop_assert_eq!(sample.len(), capacity.min(lines.len()));
            prop_assert_eq!(key(stratified_sample(&shuffled, capacity)), key(sample));
        }

        /// Quotas add up to the capacity, never exceed a stratum, and give every stratum one
        /// line when the capacity allows.
        #[test]
        fn allocation_fills_the_capacity_within_each_stratum(
            sizes in proptest::collection::vec(1_usize..500, 1..12),
            fraction in 0.0_f64..1.0,
        ) {
            let total: usize = sizes.iter().sum();
            let capacity = ((total as f64) * fraction) as usize;
            let quotas = allocate(&sizes, capacity);
            prop_assert_eq!(quotas.iter().sum::<usize>(), capacity);
            prop_assert!(quotas.iter().zip(&sizes).all(|(q, s)| q <= s));
            if capacity >= sizes.len() {
                prop_assert!(quotas.iter().all(|&q| q >= 1));
            }
        }
    }
}
