//! Groups error log lines into templates (a small, deterministic Drain-style miner) and
//! samples log lines evenly across components and hours.
//!
//! Mining works in three steps:
//!
//! 1. **Mask.** A message's headline (its first non-blank line; for a Python traceback, its
//!    last line, which names the exception) is split on whitespace, and variable tokens become
//!    [`WILDCARD`]: numbers, hex, UUIDs, IP addresses with optional port, ISO timestamps,
//!    paths with digits, identifiers with three or more digits, e-mail addresses, quoted
//!    strings longer than [`QUOTED_LITERAL_MAX`] characters and the values of `key=value`
//!    tokens (`key=<*>`). Punctuation around a token is kept: `(6725)` becomes `(<*>)`.
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

    // 3. Merge into templates within each (token count, first token) group.
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
        return lines.last().unwrap_or(first);
    }
    first
}

/// `line` with quoted strings longer than [`QUOTED_LITERAL_MAX`] characters masked.
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
            if let Some(close) = close {
                if bytes.get(close + 1).is_none_or(|&b| closes(b)) {
                    // Quotes are ASCII, so both ends are char boundaries.
                    let inner = &line[i + 1..close];
                    if inner.chars().count() > QUOTED_LITERAL_MAX {
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
const OPENING: &[char] = &['(', '[', '{', '"', '\''];
/// Characters stripped from the end of a token before it is classified, and kept.
const CLOSING: &[char] = &[')', ']', '}', ',', ';', ':', '.', '"', '\'', '!', '?'];

/// One token, masked if variable.
fn mask_token(token: &str) -> String {
    let rest = token.trim_start_matches(OPENING);
    let core = rest.trim_end_matches(CLOSING);
    if core.is_empty() {
        return token.to_owned();
    }
    let prefix = &token[..token.len() - rest.len()];
    let suffix = &rest[core.len()..];
    if let Some(key) = assignment_key(core) {
        let suffix: String = suffix
            .chars()
            .filter(|c| !matches!(c, '"' | '\''))
            .collect();
        return format!("{prefix}{key}={WILDCARD}{suffix}");
    }
    if is_variable(core) {
        format!("{prefix}{WILDCARD}{suffix}")
    } else {
        token.to_owned()
    }
}

/// The key of a `key=value` token with an identifier-like key and a non-empty value.
fn assignment_key(core: &str) -> Option<&str> {
    let (key, value) = core.split_once('=')?;
    let key_ok = key
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
    (key_ok && !value.is_empty() && !value.starts_with('=')).then_some(key)
}

/// Whether a token (without surrounding punctuation) is a variable part of a message.
fn is_variable(core: &str) -> bool {
    if core.contains(WILDCARD) {
        return true;
    }
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
mod scratch_eval {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn scratch_loghub() {
        for name in [
            "HDFS",
            "Apache",
            "Spark",
            "BGL",
            "Linux",
            "Android",
            "OpenStack",
            "HealthApp",
        ] {
            let text = std::fs::read_to_string(format!("/tmp/loghub/{name}.tsv")).unwrap();
            let mut lines = Vec::new();
            let mut truth = Vec::new();
            for (i, row) in text.lines().enumerate() {
                let (content, id) = row.rsplit_once('\t').unwrap();
                lines.push(LogLine {
                    timestamp: OffsetDateTime::UNIX_EPOCH,
                    message: content.to_owned(),
                    component: Some(i.to_string()),
                });
                truth.push(id.to_owned());
            }
            let config = MinerConfig {
                max_templates: usize::MAX,
                similarity: std::env::var("SIM")
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0.5),
                ..MinerConfig::default()
            };
            let templates = mine_templates(&lines, &config);
            let mut permuted = lines.clone();
            permuted.reverse();
            permuted.rotate_left(777);
            assert_eq!(
                mine_templates(&permuted, &config),
                templates,
                "{name} order"
            );
            let big: Vec<LogLine> = (0..50).flat_map(|_| lines.iter().cloned()).collect();
            let t0 = std::time::Instant::now();
            let big_t = mine_templates(&big, &config);
            println!(
                "{name} 100k lines: {:?}, {} templates",
                t0.elapsed(),
                big_t.len()
            );
            let sample = stratified_sample(&big, 500);
            assert_eq!(sample.len(), 500);
            let mut predicted = vec![usize::MAX; lines.len()];
            for (t, tpl) in templates.iter().enumerate() {
                for c in &tpl.components {
                    predicted[c.parse::<usize>().unwrap()] = t;
                }
            }
            let mut truth_groups: HashMap<&str, BTreeSet<usize>> = HashMap::new();
            let mut pred_groups: HashMap<usize, BTreeSet<usize>> = HashMap::new();
            for i in 0..lines.len() {
                truth_groups.entry(&truth[i]).or_default().insert(i);
                pred_groups.entry(predicted[i]).or_default().insert(i);
            }
            let correct = (0..lines.len())
                .filter(|&i| truth_groups[truth[i].as_str()] == pred_groups[&predicted[i]])
                .count();
            println!(
                "{name}: templates {} truth {} GA {:.3}",
                templates.len(),
                truth_groups.len(),
                correct as f64 / lines.len() as f64
            );
            if std::env::var("SHOW").as_deref() == Ok(name) {
                for t in &templates {
                    println!("  {:5} {}", t.count, t.template);
                }
            }
        }
    }
}
