//! The shipped miner on a sample of Loghub-2k (`shared/core/tests/data/loghub-2k-sample`):
//! grouping accuracy must stay above a floor the miner before issue 16 did not reach.

use super::{MinerState, TemplateMiner, grouping_accuracy};

/// Where the samples are, relative to this file.
macro_rules! sample {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!("../../tests/data/loghub-2k-sample/", $name, ".tsv")),
        )
    };
}

/// (set, sample as `EventId<TAB>Content` lines under a header).
const SETS: &[(&str, &str)] = &[
    sample!("Android"),
    sample!("Apache"),
    sample!("BGL"),
    sample!("HDFS"),
    sample!("HealthApp"),
    sample!("Linux"),
    sample!("OpenStack"),
    sample!("Spark"),
];

/// GA floors per set, in the order of [`SETS`]: a little under what the miner scores on
/// the sample (Android 0.950, Apache 1, BGL 0.985, HDFS 1, HealthApp 1, Linux 0.878,
/// OpenStack 0.943, Spark 1) and, but for Apache and HDFS, above the miner it replaced
/// (0.878, 1, 0.978, 0.995, 0.985, 0.808, 0.800, 0.923).
const FLOORS: [f64; 8] = [0.93, 1.0, 0.98, 0.99, 0.99, 0.86, 0.92, 0.99];

/// The floor on the mean over the eight sets (the replaced miner: 0.921).
const MEAN_FLOOR: f64 = 0.95;

fn parse(sample: &str) -> (Vec<&str>, Vec<&str>) {
    sample
        .lines()
        .skip(1)
        .map(|l| {
            let (event, content) = l.split_once('\t').expect("EventId<TAB>Content");
            (content, event)
        })
        .unzip()
}

/// Each message's final template id; with `resume_every`, the miner is saved (as JSON)
/// and restored after every that many messages, as a Lambda resuming it from the store.
fn mine(messages: &[&str], resume_every: Option<usize>) -> Vec<Option<super::TemplateId>> {
    let mut miner = TemplateMiner::default();
    let mut ids = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        if let Some(every) = resume_every
            && i > 0
            && i % every == 0
        {
            let json = serde_json::to_string(&miner.state()).expect("serialises");
            let state: MinerState = serde_json::from_str(&json).expect("deserialises");
            miner = TemplateMiner::from_state(state).expect("a state it saved");
        }
        ids.push(miner.observe(m));
    }
    ids.iter()
        .map(|id| id.map(|id| miner.resolve(id)))
        .collect()
}

#[test]
fn the_miner_groups_the_loghub_sample_above_its_floors() {
    check_floors(None);
}

#[test]
fn a_miner_resumed_from_its_saved_state_every_50_lines_stays_above_the_floors() {
    check_floors(Some(50));
}

fn check_floors(resume_every: Option<usize>) {
    let mut report = Vec::new();
    let mut sum = 0.0;
    let mut below = Vec::new();
    for (&(name, sample), &floor) in SETS.iter().zip(&FLOORS) {
        let (messages, truth) = parse(sample);
        assert_eq!(messages.len(), 400, "{name}");
        let predicted = mine(&messages, resume_every);
        let ga = grouping_accuracy(&predicted, &truth).expect("same length");
        report.push(format!("{name} {ga:.4}"));
        sum += ga;
        if ga < floor {
            below.push(format!("{name}: {ga:.4} < {floor}"));
        }
    }
    let mean = sum / SETS.len() as f64;
    assert!(
        below.is_empty(),
        "below the floor: {below:?} (all: {report:?})"
    );
    assert!(
        mean >= MEAN_FLOOR,
        "mean {mean:.4} < {MEAN_FLOOR} ({report:?})"
    );
}
