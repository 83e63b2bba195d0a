//! A seeded sweep: 20 seeds × (deploy a canary → promote or roll back), with a fifth of all
//! Lambda calls throttled, failed with a 500, dropped, or taking effect with their answer
//! lost. The item follows the state machine's paths (Retry, then Catch); whatever happened,
//! the function ends exactly stable or exactly the canary promoted, never a mix, with at
//! most one version published, and the audit's last word says which.

use selfbuild_tests::fault_proxy::{Fault, Lost, Rule};
use selfbuild_tests::moto::MotoServer;
use serde_json::json;

use super::world::{Observed, Path, World, actions, canary_settings, stable_settings};

const SEEDS: u64 = 20;
const SHARE: f64 = 0.2;

/// Deploy, then promote (`promote`) or roll back, through the state machine's paths; the
/// state the item ended in, the canary version, and how many step calls were retries.
async fn run_item(w: &World, cycle: &str, promote: bool) -> (String, Option<String>, u64) {
    let item = json!(w.item(cycle, &canary_settings(Some(11))));
    let mut retries = 0;
    let mut count = |path: &Path| {
        retries += path.tasks.iter().map(|(_, r)| r.attempts - 1).sum::<u64>();
    };
    let deployed = w.path("DeployCanary", &item).await;
    count(&deployed);
    if deployed.reached != "IsDeployed" {
        return (deployed.reached, None, retries);
    }
    assert_eq!(deployed.input["deploy"]["status"], "deployed");
    let canary = deployed.input["deploy"]["deployment"]["canary_version"]
        .as_str()
        .map(str::to_owned);
    let end = if promote {
        // Promoted, or caught to RollbackChange and on from there.
        w.path("PromoteCanary", &deployed.input).await
    } else {
        w.path("RollbackChange", &deployed.input).await
    };
    count(&end);
    (end.reached, canary, retries)
}

fn promoted(seen: &Observed, canary: &str) -> bool {
    let next = canary_settings(Some(11));
    seen.version == canary
        && seen.weights.is_empty()
        && seen.settings == next
        && seen.latest == next
}

/// What one seed's run came to.
struct SeedEnd {
    end: String,
    faulted: usize,
    retries: u64,
}

/// One seed: a function of its own, faults on a share of its Lambda calls, one item.
async fn run_seed(seed: u64) -> SeedEnd {
    let stable = stable_settings(None);
    let w = World::new(&format!("sweep-{seed}"), &stable, seed).await;
    w.proxy.add(Rule::service("lambda").share(SHARE).faults(&[
        Fault::Throttle,
        Fault::ServerError,
        Fault::Drop,
        Fault::Lost(Lost::ServerError),
        Fault::Lost(Lost::Drop),
    ]));
    let promote = seed.is_multiple_of(2);
    let cycle = format!("c-sweep-{seed}");
    let (end, canary, retries) = run_item(&w, &cycle, promote).await;
    let log = w.proxy.log();
    let faulted = w.proxy.calls().iter().filter(|c| c.fault.is_some()).count();
    w.proxy.clear();

    let seen = w.observed().await;
    let published = seen.versions.len() - 2;
    assert!(published <= 1, "seed {seed}: {:?}\n{log}", seen.versions);
    let ok = match (end.as_str(), canary.as_deref()) {
        ("IsPromoted", Some(canary)) => promoted(&seen, canary),
        ("RolledBack" | "DeployFailed", _) => seen.is_stable(&stable),
        _ => false,
    };
    assert!(ok, "seed {seed} ended in {end} as {seen:?}\n{log}");
    let events = w.audit(&cycle).await;
    let trail = actions(&events);
    let last = match end.as_str() {
        "IsPromoted" => "promoted",
        "RolledBack" => "rolled_back",
        _ => "deploy_failed",
    };
    assert_eq!(trail.last(), Some(&last), "seed {seed}: {trail:?}");
    SeedEnd {
        end,
        faulted,
        retries,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_faults_on_every_lambda_call_end_stable_or_promoted_never_a_mix() {
    // One moto for every seed (a shared server stops when its last user drops it). The seeds
    // run side by side, each on its own function, table and proxy: within a seed the calls
    // are sequential, so its faults are the same on every run.
    let _moto = MotoServer::shared();
    let mut seeds = tokio::task::JoinSet::new();
    for seed in 0..SEEDS {
        seeds.spawn(run_seed(seed));
    }
    let mut ends = Vec::new();
    while let Some(done) = seeds.join_next().await {
        ends.push(done.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())));
    }
    // The sweep did fault, made the state machine retry steps, and reached both ends.
    let faulted: usize = ends.iter().map(|e| e.faulted).sum();
    let retried: u64 = ends.iter().map(|e| e.retries).sum();
    assert!(faulted >= 50, "{faulted} faults");
    assert!(retried > 0, "no step was retried in {SEEDS} seeds");
    let reached: Vec<&str> = ends.iter().map(|e| e.end.as_str()).collect();
    eprintln!("sweep: {faulted} faults, {retried} step retries, ends {reached:?}");
    assert!(
        reached.contains(&"IsPromoted") && reached.contains(&"RolledBack"),
        "{reached:?}"
    );
}
