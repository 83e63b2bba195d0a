//! The template miner's benchmark: grouping accuracy and mining speed on Loghub-style CSVs.
//!
//! `cargo run --release -p selfbuild-core --example logmine-bench -- DIR [--repeat N]
//! [--resume-every N] [--ids IDS_DIR]` reads every `*.csv` in DIR (a `Content` column to
//! mine, an `EventId` column of truth), mines each set with a fresh [`TemplateMiner`] of the
//! shipped configuration, and prints one JSON object per set and one for the mean: grouping
//! accuracy (ids as resolved at the end), templates, true events, the size of the saved
//! state as JSON, and lines per second of
//! mining alone (messages already in memory; the best of N runs of the whole set, each with
//! a fresh miner).
//!
//! `--resume-every N` also reports the accuracy when the miner is saved (JSON) and restored
//! after every N lines, as a Lambda resuming it from the store would. `--ids IDS_DIR`
//! instead scores another tool: `IDS_DIR/<set>.ids` holds its group id of each line, one
//! per line, and only the accuracy is printed (the same [`grouping_accuracy`]).

use std::path::PathBuf;
use std::time::Instant;

use selfbuild_core::logmine::{MinerState, TemplateId, TemplateMiner, grouping_accuracy};

/// Each message's final template id; with `resume_every`, saved and restored as JSON every
/// that many messages.
fn mine(
    messages: &[String],
    resume_every: Option<usize>,
) -> (Vec<Option<TemplateId>>, TemplateMiner) {
    let mut miner = TemplateMiner::default();
    let mut ids = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        if let Some(every) = resume_every
            && i > 0
            && i % every == 0
        {
            let json = serde_json::to_string(&miner.state()).expect("serialises");
            let state: MinerState = serde_json::from_str(&json).expect("deserialises");
            miner = TemplateMiner::from_state(state).expect("its own state");
        }
        ids.push(miner.observe(m));
    }
    let resolved = ids
        .iter()
        .map(|id| id.map(|id| miner.resolve(id)))
        .collect();
    (resolved, miner)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut dir: Option<PathBuf> = None;
    let mut repeat: u32 = 20;
    let mut resume_every: Option<usize> = None;
    let mut other_ids: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--repeat" => repeat = args.next().ok_or("--repeat needs a number")?.parse()?,
            "--resume-every" => {
                resume_every = Some(
                    args.next()
                        .ok_or("--resume-every needs a number")?
                        .parse()?,
                )
            }
            "--ids" => other_ids = Some(args.next().ok_or("--ids needs a folder")?.into()),
            _ => dir = Some(PathBuf::from(arg)),
        }
    }
    let dir = dir.ok_or("usage: logmine-bench DIR [--repeat N]")?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    let (mut ga_sum, mut lines_total, mut seconds_total) = (0.0, 0_u64, 0.0);
    for file in &files {
        let mut reader = csv::Reader::from_path(file)?;
        let headers = reader.headers()?.clone();
        let column = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or(format!("{}: no {name} column", file.display()))
        };
        let (content, event) = (column("Content")?, column("EventId")?);
        let mut messages = Vec::new();
        let mut truth = Vec::new();
        for record in reader.records() {
            let record = record?;
            messages.push(record.get(content).unwrap_or("").to_owned());
            truth.push(record.get(event).unwrap_or("").to_owned());
        }
        let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
        let events = truth.iter().collect::<std::collections::HashSet<_>>().len();
        if let Some(folder) = &other_ids {
            let path = folder.join(format!("{name}.ids"));
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let predicted: Vec<&str> = text.lines().collect();
            let ga = grouping_accuracy(&predicted, &truth)
                .ok_or(format!("{}: not one id per line", path.display()))?;
            println!(
                "{}",
                serde_json::json!({"set": name, "lines": truth.len(), "events": events, "ga": (ga * 1e4).round() / 1e4})
            );
            ga_sum += ga;
            continue;
        }
        // Accuracy: one run, ids resolved at the end (merges apply to earlier lines).
        let (predicted, miner) = mine(&messages, None);
        let templates = miner.len();
        let state_bytes = serde_json::to_string(&miner.state())?.len();
        let ga = grouping_accuracy(&predicted, &truth).unwrap_or(0.0);
        let resumed = resume_every.map(|every| {
            let (predicted, _) = mine(&messages, Some(every));
            let ga = grouping_accuracy(&predicted, &truth).unwrap_or(0.0);
            (ga * 1e4).round() / 1e4
        });
        // Speed: the best of `repeat` runs, each a fresh miner over the whole set.
        let mut best = f64::INFINITY;
        for _ in 0..repeat.max(1) {
            let started = Instant::now();
            let mut miner = TemplateMiner::default();
            let mut checksum = 0_u64;
            for m in &messages {
                checksum = checksum.wrapping_add(miner.observe(m).map_or(0, |id| id.get()));
            }
            std::hint::black_box(checksum);
            best = best.min(started.elapsed().as_secs_f64());
        }
        let lines = messages.len() as u64;
        println!(
            "{}",
            serde_json::json!({
                "set": name,
                "lines": lines,
                "events": events,
                "ga": (ga * 1e4).round() / 1e4,
                "ga_resumed": resumed,
                "templates": templates,
                "state_json_bytes": state_bytes,
                "lines_per_second": (lines as f64 / best).round(),
            })
        );
        ga_sum += ga;
        lines_total += lines;
        seconds_total += best;
    }
    if other_ids.is_some() && !files.is_empty() {
        let mean = ga_sum / files.len() as f64;
        println!(
            "{}",
            serde_json::json!({"set": "mean", "ga": (mean * 1e4).round() / 1e4})
        );
        return Ok(());
    }
    if !files.is_empty() {
        println!(
            "{}",
            serde_json::json!({
                "set": "mean",
                "lines": lines_total,
                "ga": (ga_sum / files.len() as f64 * 1e4).round() / 1e4,
                "lines_per_second": (lines_total as f64 / seconds_total).round(),
            })
        );
    }
    Ok(())
}
