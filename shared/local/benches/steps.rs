//! CPU per step invocation on the demo data, I/O excluded: telemetry is fetched from the
//! fleet model once and replayed from memory, so only the core handler is timed.
//!
//! `cargo bench -p selfbuild-local --bench steps` prints a Markdown table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use selfbuild_core::Config;
use selfbuild_core::analyze::{ERROR_ROW_LIMIT, REPORT_ROW_LIMIT, analyze};
use selfbuild_core::clock::FixedClock;
use selfbuild_core::cycle::TimeWindow;
use selfbuild_core::error::TelemetryError;
use selfbuild_core::generate::{GenerateDeps, PromptContext, generate};
use selfbuild_core::ids::ComponentId;
use selfbuild_core::improvement::ImprovementItem;
use selfbuild_core::ports::{Clock, NoCodeChecker, NoCodeSource, Telemetry};
use selfbuild_core::telemetry::{LogRow, MetricSeries, TelemetryQuery, VersionTotals};
use selfbuild_core::validate::validate;
use selfbuild_local::demo::{demo_config, scenario_request};
use selfbuild_local::fleet::{Fleet, Scenario};
use selfbuild_local::planner::RulePlanner;

/// Telemetry answered from memory.
struct Replay {
    series: Vec<MetricSeries>,
    rows: Vec<LogRow>,
    reports: Vec<LogRow>,
}

#[async_trait]
impl Telemetry for Replay {
    async fn metric_series(&self, _: &TelemetryQuery) -> Result<Vec<MetricSeries>, TelemetryError> {
        Ok(self.series.clone())
    }
    async fn version_totals(
        &self,
        _: &ComponentId,
        _: &[String],
        _: &TimeWindow,
        _: &selfbuild_core::telemetry::DurationQuery,
    ) -> Result<Vec<VersionTotals>, TelemetryError> {
        Ok(Vec::new())
    }
    async fn error_rows(
        &self,
        _: &TelemetryQuery,
        _: usize,
    ) -> Result<Vec<LogRow>, TelemetryError> {
        Ok(self.rows.clone())
    }
    async fn report_rows(
        &self,
        _: &TelemetryQuery,
        _: usize,
    ) -> Result<Vec<LogRow>, TelemetryError> {
        Ok(self.reports.clone())
    }
}

fn stats(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p = |q: f64| ms(samples[((samples.len() - 1) as f64 * q) as usize]);
    (
        p(0.5),
        p(0.99),
        ms(samples.iter().sum::<Duration>()) / samples.len() as f64,
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/scenarios");
    let config: Config = demo_config()?;
    let iterations = 200;
    println!("| scenario | step | p50 ms | p99 ms | mean ms | input |");
    println!("|---|---|---|---|---|---|");
    for file in selfbuild_local::demo::scenario_files(&root)? {
        let scenario = Scenario::load(&file)?;
        let clock: Arc<dyn Clock> = Arc::new(FixedClock(scenario.now));
        let fleet = Fleet::new(&scenario, Arc::clone(&clock))?;
        let request = scenario_request(&scenario, &config);
        let query = TelemetryQuery {
            tenant: request.tenant_id.clone(),
            components: request.components.clone(),
            window: request.analysis_window,
            period_seconds: 300,
        };
        let series = fleet.metric_series(&query).await?;
        let analysed = TelemetryQuery {
            components: series
                .iter()
                .map(|s| s.component.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            ..query.clone()
        };
        let replay = Replay {
            rows: fleet.error_rows(&query, ERROR_ROW_LIMIT).await?,
            reports: fleet.report_rows(&analysed, REPORT_ROW_LIMIT).await?,
            series,
        };
        let input = format!(
            "{} series, {} error rows, {} REPORT lines",
            replay.series.len(),
            replay.rows.len(),
            replay.reports.len()
        );

        let mut times = Vec::with_capacity(iterations);
        let mut report = None;
        for _ in 0..iterations {
            let start = Instant::now();
            report = Some(analyze(&replay, &fleet, &request).await?);
            times.push(start.elapsed());
        }
        let (p50, p99, mean) = stats(times);
        println!(
            "| {} | analyze | {p50:.3} | {p99:.3} | {mean:.3} | {input} |",
            scenario.name
        );

        let Some(opportunity) = report.and_then(|r| r.opportunities.into_iter().next()) else {
            continue;
        };
        let mut item = ImprovementItem {
            cycle_id: request.cycle_id.clone(),
            tenant_id: request.tenant_id.clone(),
            mode: request.mode,
            dry_run: false,
            opportunity,
            generated: None,
            validation: None,
            approval: None,
            deploy: None,
            monitor: None,
        };
        let mut times = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let start = Instant::now();
            let deps = GenerateDeps {
                llm: &RulePlanner,
                code: &NoCodeSource,
                checker: &NoCodeChecker,
            };
            let context = PromptContext::default();
            item.generated = Some(generate(deps, &item, &context, config.llm_budget_usd).await?);
            times.push(start.elapsed());
        }
        let (p50, p99, mean) = stats(times);
        println!(
            "| {} | generate (rule planner) | {p50:.3} | {p99:.3} | {mean:.3} | 1 opportunity |",
            scenario.name
        );

        let mut times = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let start = Instant::now();
            std::hint::black_box(validate(&item, &config, None));
            times.push(start.elapsed());
        }
        let (p50, p99, mean) = stats(times);
        println!(
            "| {} | validate | {p50:.3} | {p99:.3} | {mean:.3} | 1 proposal |",
            scenario.name
        );
    }
    Ok(())
}
