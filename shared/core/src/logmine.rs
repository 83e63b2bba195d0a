//! Groups log lines into templates and samples log lines evenly across components and hours.
//!
//! - [`mask`]: a message's tokens with variable parts masked (generic rules only).
//! - [`miner`]: the streaming, incremental [`TemplateMiner`]: one line in, a template id
//!   out; bounded memory; a compact serialisable state.
//! - [`accuracy`]: grouping accuracy, the standard measure of a log parser.
//!
//! [`mine_templates`] is the batch form the analyze step uses: it masks every line's
//! headline (its first non-blank line; for a Python traceback, its last line, which names
//! the exception), folds identical signatures, and feeds them to a [`TemplateMiner`] in a
//! canonical order (most frequent first, then by text), so the same multiset of lines gives
//! the same templates in any input order. How the miner groups, and how well: see
//! `docs/logmine.md`.

pub mod accuracy;
#[cfg(test)]
mod loghub_tests;
pub mod mask;
pub mod miner;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use accuracy::grouping_accuracy;
pub use miner::{MinerState, StateError, StreamConfig, TemplateId, TemplateMiner};

/// The token that stands for a variable part of a template.
pub const WILDCARD: &str = "<*>";

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

/// Settings of [`mine_templates`]. How lines are grouped is not a setting: one
/// configuration ([`StreamConfig::default`]) serves every log source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinerConfig {
    /// Most raw sample messages kept per template (default 3).
    pub max_samples: usize,
    /// Most templates returned, the most frequent first (default 100).
    pub max_templates: usize,
}

impl Default for MinerConfig {
    fn default() -> Self {
        Self {
            max_samples: 3,
            max_templates: 100,
        }
    }
}

/// A group of log lines sharing one template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// When the lines mined were a sample ([`mine_sample`]): the sampled lines behind the
    /// rescaled `count`; none when every line was mined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<TemplateSample>,
}

/// The sample behind a rescaled template count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TemplateSample {
    /// Sampled lines with the template.
    pub lines: u64,
    /// lines ÷ count: the sampling fraction behind the count.
    pub fraction: f64,
}

/// Mines templates from `lines`, sorted by count (descending), then template text.
///
/// Lines whose message is blank are skipped. At most `config.max_templates` templates are
/// returned (the most frequent); the same multiset of lines gives the same result in any order.
pub fn mine_templates(lines: &[LogLine], config: &MinerConfig) -> Vec<LogTemplate> {
    mine(lines, None, config)
}

/// Mines a sample: line `i` stands for `weights[i]` lines (its stratum's lines ÷ those
/// sampled, see [`stratified_weights`]). Each template's `count` is its lines' weights
/// summed and rounded, with [`LogTemplate::sample`] saying how many sampled lines are behind
/// it; the order and the cap are on those rescaled counts. A missing, non-finite or
/// non-positive weight counts as 1.
pub fn mine_sample(lines: &[LogLine], weights: &[f64], config: &MinerConfig) -> Vec<LogTemplate> {
    mine(lines, Some(weights), config)
}

fn mine(lines: &[LogLine], weights: Option<&[f64]>, config: &MinerConfig) -> Vec<LogTemplate> {
    if config.max_templates == 0 {
        return Vec::new();
    }
    let weight_of = |i: usize| {
        weights
            .and_then(|w| w.get(i))
            .copied()
            .filter(|w| w.is_finite() && *w > 0.0)
            .unwrap_or(1.0)
    };

    // 1. Mask, and fold identical signatures together.
    let mut tokens = mask::Tokens::default();
    let mut distinct: BTreeMap<String, Stats<'_>> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        tokens.mask(headline(&line.message));
        if tokens.is_empty() {
            continue;
        }
        match distinct.get_mut(tokens.joined()) {
            Some(stats) => stats.add(line, weight_of(i), config.max_samples),
            None => {
                distinct.insert(
                    tokens.joined().to_owned(),
                    Stats::new(line, weight_of(i), config.max_samples),
                );
            }
        }
    }

    // 2. A canonical order: the most frequent first, then by signature.
    let mut ordered: Vec<(String, Stats<'_>)> = distinct.into_iter().collect();
    ordered.sort_by(|a, b| {
        b.1.weight
            .total_cmp(&a.1.weight)
            .then_with(|| a.0.cmp(&b.0))
    });

    // 3. Mine the signatures; no eviction, so every line keeps its template.
    let mut miner = TemplateMiner::new(StreamConfig {
        max_templates: ordered.len().max(1),
        max_cached_signatures: 0,
        ..StreamConfig::default()
    });
    let ids: Vec<TemplateId> = ordered
        .iter()
        .map(|(signature, stats)| miner.observe_masked(signature, stats.weighted_count()))
        .collect();

    // 4. Stats per final template.
    let mut merged: BTreeMap<TemplateId, Stats<'_>> = BTreeMap::new();
    for (id, (_, stats)) in ids.into_iter().zip(ordered) {
        match merged.entry(miner.resolve(id)) {
            std::collections::btree_map::Entry::Occupied(mut e) => {
                e.get_mut().merge(stats, config.max_samples);
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(stats);
            }
        }
    }
    let mut templates: Vec<LogTemplate> = merged
        .into_iter()
        .filter_map(|(id, stats)| Some(stats.into_template(miner.template(id)?, weights.is_some())))
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
/// (component, UTC hour) and taken as [`stratified_weights`] does. The result keeps the input
/// order.
pub fn stratified_sample(lines: &[LogLine], capacity: usize) -> Vec<&LogLine> {
    stratified_weights(lines, capacity, |i| {
        let line = &lines[i];
        (
            line.component.as_deref(),
            line.timestamp.unix_timestamp().div_euclid(3600),
        )
    })
    .into_iter()
    .map(|(i, _)| &lines[i])
    .collect()
}

/// A sample of at most `capacity` of `lines`, stratified by `stratum` (of a line's index):
/// the chosen lines' indices in input order, each with its weight (its stratum's lines ÷ lines taken from it),
/// so weighted counts estimate counts over all lines.
///
/// With no more lines than `capacity`, all of them at weight 1. Otherwise each non-empty
/// stratum gets one line while capacity allows (the largest strata first when there are more
/// strata than capacity), and the rest of the capacity is shared in proportion to stratum
/// size (largest remainder). Within a stratum, lines ordered by (timestamp, message) are
/// taken at even spacing. No randomness: the same lines give the same sample.
pub fn stratified_weights<K: Ord>(
    lines: &[LogLine],
    capacity: usize,
    stratum: impl Fn(usize) -> K,
) -> Vec<(usize, f64)> {
    if lines.len() <= capacity {
        return (0..lines.len()).map(|i| (i, 1.0)).collect();
    }
    if capacity == 0 {
        return Vec::new();
    }

    let mut by_stratum: BTreeMap<K, Vec<usize>> = BTreeMap::new();
    for i in 0..lines.len() {
        by_stratum.entry(stratum(i)).or_default().push(i);
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
    let mut chosen: Vec<(usize, f64)> = strata
        .iter()
        .zip(quotas)
        .filter(|(_, quota)| *quota > 0)
        .flat_map(|(stratum, quota)| {
            let weight = stratum.len() as f64 / quota as f64;
            evenly_spaced(stratum.len(), quota).map(move |position| (stratum[position], weight))
        })
        .collect();
    chosen.sort_unstable_by_key(|(i, _)| *i);
    chosen
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
    /// The lines' weights summed (the count when every line weighs 1).
    weight: f64,
    first_seen: OffsetDateTime,
    last_seen: OffsetDateTime,
    samples: Samples<'a>,
    components: BTreeSet<&'a str>,
}

impl<'a> Stats<'a> {
    fn new(line: &'a LogLine, weight: f64, max_samples: usize) -> Self {
        let mut stats = Self {
            count: 0,
            weight: 0.0,
            first_seen: line.timestamp,
            last_seen: line.timestamp,
            samples: Samples::default(),
            components: BTreeSet::new(),
        };
        stats.add(line, weight, max_samples);
        stats
    }

    fn add(&mut self, line: &'a LogLine, weight: f64, max_samples: usize) {
        self.count = self.count.saturating_add(1);
        self.weight += weight;
        self.first_seen = self.first_seen.min(line.timestamp);
        self.last_seen = self.last_seen.max(line.timestamp);
        self.samples
            .offer(line.timestamp, &line.message, max_samples);
        if let Some(component) = &line.component {
            self.components.insert(component);
        }
    }

    /// The weight as a whole count (at least 1).
    fn weighted_count(&self) -> u64 {
        (self.weight.round() as u64).max(1)
    }

    fn merge(&mut self, other: Self, max_samples: usize) {
        self.count = self.count.saturating_add(other.count);
        self.weight += other.weight;
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        for (timestamp, message) in other.samples.by_time {
            self.samples.offer(timestamp, message, max_samples);
        }
        self.components.extend(other.components);
    }

    fn into_template(self, template: String, sampled: bool) -> LogTemplate {
        let count = if sampled {
            self.weighted_count()
        } else {
            self.count
        };
        LogTemplate {
            template,
            count,
            sample: sampled.then(|| TemplateSample {
                lines: self.count,
                fraction: self.count as f64 / count as f64,
            }),
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

/// The line of `message` that names it: the first non-blank one, except for a Python
/// traceback, whose last non-blank line (the exception) is used.
pub fn headline(message: &str) -> &str {
    let mut lines = message.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("");
    if first.starts_with("Traceback (most recent call last)") {
        return lines.next_back().unwrap_or(first);
    }
    first
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
        mask::tokenize(headline(message)).join(" ")
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
            [("Receiving block blk_<*> src: <*> dest: <*>".to_owned(), 5)]
        );
    }

    #[test]
    fn hdfs_sample_gives_one_template_per_event() {
        let templates = mine(&lines(HDFS));
        assert_eq!(
            summary(&templates),
            [
                ("Receiving block blk_<*> src: <*> dest: <*>".to_owned(), 5),
                ("PacketResponder <*> for block blk_<*> terminating".to_owned(), 3),
                ("Deleting block blk_<*> file <*>".to_owned(), 2),
                (
                    "BLOCK* NameSystem.addStoredBlock: blockMap updated: <*> is added to blk_<*> size <*>"
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
                    "[client <*> Directory index forbidden by rule: <*>".to_owned(),
                    2
                ),
                ("mod_jk child workerEnv in error state <*>".to_owned(), 2),
                ("workerEnv.init() ok <*>".to_owned(), 2),
            ]
        );
    }

    #[test]
    fn openstack_requests_and_lifecycle_events_split_by_their_verb() {
        // Loghub's truth: GET and POST requests are different events, and so are
        // "VM Paused" and "VM Resumed": two or three values of a word are not evidence
        // of a variable.
        let templates = mine(&lines(OPENSTACK));
        assert_eq!(
            summary(&templates),
            [
                (
                    r#"<*> "GET <*> HTTP/<*>" status: <*> len: <*> time: <*>"#.to_owned(),
                    2
                ),
                (
                    r#"<*> "POST <*> HTTP/<*>" status: <*> len: <*> time: <*>"#.to_owned(),
                    2
                ),
                ("[instance: <*> VM Paused (Lifecycle Event)".to_owned(), 2),
                (
                    "Final resource view: name=cp-<*>.slowvm1.tcloud-pg0.utah.cloudlab.us \
                     phys_ram=<*> used_ram=<*> phys_disk=<*> used_disk=<*> total_vcpus=<*> \
                     used_vcpus=<*> pci_stats=[]"
                        .to_owned(),
                    1
                ),
                ("[instance: <*> VM Resumed (Lifecycle Event)".to_owned(), 1),
            ]
        );
    }

    #[test]
    fn a_word_becomes_a_variable_once_enough_values_are_seen() {
        let users = ["alice", "bob", "carol", "dave"];
        let messages: Vec<String> = users
            .iter()
            .map(|u| format!("session closed for user {u}"))
            .collect();
        let messages: Vec<&str> = messages.iter().map(String::as_str).collect();
        // Three users: three events, as far as the evidence goes.
        assert_eq!(mine(&lines(&messages[..3])).len(), 3);
        // The fourth makes the position a variable.
        assert_eq!(
            summary(&mine(&lines(&messages))),
            [("session closed for user <*>".to_owned(), 4)]
        );
    }

    #[test]
    fn short_messages_do_not_merge_on_a_shared_word() {
        let templates = mine(&lines(&[
            "cupsd startup succeeded",
            "cupsd shutdown succeeded",
            "syslogd startup succeeded",
            "klogd startup succeeded",
            "portmap startup succeeded",
            "running",
            "normal",
            "warning",
        ]));
        assert_eq!(templates.len(), 8, "{:?}", summary(&templates));
    }

    #[test]
    fn masked_values_of_different_keys_do_not_join() {
        let templates = mine(&lines(&[
            "stopWifiDisplayScanLocked record.mWifiDisplayScanRequested=false",
            "stopWifiDisplayScanLocked mWifiDisplayScanRequestCount=0",
            "stopWifiDisplayScanLocked mWifiDisplayScanRequestCount=1",
        ]));
        assert_eq!(
            summary(&templates),
            [
                (
                    "stopWifiDisplayScanLocked mWifiDisplayScanRequestCount=<*>".to_owned(),
                    2
                ),
                (
                    "stopWifiDisplayScanLocked record.mWifiDisplayScanRequested=<*>".to_owned(),
                    1
                ),
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
    fn different_lengths_never_merge() {
        let templates = mine(&lines(&[
            "Connection refused",
            "Connection reset",
            "Connection reset by peer",
        ]));
        assert_eq!(templates.len(), 3);
    }

    #[test]
    fn a_masked_value_generalises_a_template_in_a_leading_position() {
        let templates = mine(&lines(&[
            "proxy.example.com:5070 open through proxy proxy.example.com:5070 HTTPS",
            "10.0.0.1:80 open through proxy proxy.example.com:5070 HTTPS",
            "get.example.org:443 open through proxy proxy.example.com:5070 HTTPS",
        ]));
        assert_eq!(
            summary(&templates),
            [(
                "<*> open through proxy proxy.example.com:<*> HTTPS".to_owned(),
                3
            )]
        );
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
        assert_eq!(t.template, "Receiving block blk_<*> src: <*> dest: <*>");
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
            max_samples in 0_usize..4,
            max_templates in 1_usize..20,
        ) {
            let config = MinerConfig { max_samples, max_templates };
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
