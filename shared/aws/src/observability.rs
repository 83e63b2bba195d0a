//! Logs and metrics as Lambda's advanced logging controls and Powertools users expect them:
//! the level from `AWS_LAMBDA_LOG_LEVEL` (the template's `ApplicationLogLevel`), JSON lines
//! when `AWS_LAMBDA_LOG_FORMAT` is `JSON`, EMF metrics with a `service` dimension, and one
//! `ColdStart` metric per execution environment.

use std::io::Stdout;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use lambda_runtime::tracing::subscriber::EnvFilter;
use lambda_runtime::tracing::subscriber::filter::LevelFilter;
use selfbuild_core::Config;
use selfbuild_core::emf::EmfWriter;
use selfbuild_core::ports::{Clock, MetricRecord, MetricSink, Unit};

/// Libraries whose per-request INFO lines would repeat the access log: shown from DEBUG on.
const CHATTY_AT_INFO: [&str; 1] = ["rmcp"];

/// Installs the process's log subscriber: level from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`,
/// else INFO (`RUST_LOG` directives still apply); JSON when `AWS_LAMBDA_LOG_FORMAT=JSON`.
pub fn init_logging() {
    let rust_log = std::env::var("RUST_LOG").unwrap_or_default();
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").unwrap_or_else(|_| rust_log.clone());
    let filter = log_filter(&level, &rust_log);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = lambda_runtime::tracing::subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The filter for `level` (a level name; anything else is INFO) plus `rust_log`'s directives;
/// below DEBUG the chatty libraries are held to WARN unless `rust_log` names them.
fn log_filter(level: &str, rust_log: &str) -> EnvFilter {
    // tracing reads "" as ERROR; an unset level is INFO here, as on Lambda.
    let level = Some(level.trim())
        .filter(|l| !l.is_empty())
        .and_then(|l| LevelFilter::from_str(l).ok())
        .unwrap_or(LevelFilter::INFO);
    let mut filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .parse_lossy(rust_log);
    if level < LevelFilter::DEBUG {
        for target in CHATTY_AT_INFO.iter().filter(|t| !rust_log.contains(*t)) {
            if let Ok(directive) = format!("{target}=warn").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    filter
}

/// The EMF writer on stdout for `config`: its namespace, each metric also under `service`.
pub fn metrics(config: &Config) -> EmfWriter<Stdout> {
    EmfWriter::new(config.metrics_namespace.clone(), std::io::stdout())
        .with_service(config.service_name.clone())
}

/// Emits `ColdStart` (Count 1, dimension `function_name`) on the first invocation of this
/// execution environment, as Powertools does; later invocations emit nothing.
#[derive(Debug)]
pub struct ColdStart {
    first: AtomicBool,
    function_name: String,
}

impl ColdStart {
    /// For the function Lambda names in `AWS_LAMBDA_FUNCTION_NAME` (`unknown` outside Lambda).
    pub fn from_env() -> Self {
        Self::new(std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "unknown".into()))
    }

    /// For `function_name`.
    pub fn new(function_name: impl Into<String>) -> Self {
        Self {
            first: AtomicBool::new(true),
            function_name: function_name.into(),
        }
    }

    /// Records `ColdStart` into `metrics` if this is the first invocation.
    pub fn invoked(&self, metrics: &dyn MetricSink, clock: &dyn Clock) {
        if self.first.swap(false, Ordering::Relaxed) {
            metrics.record(MetricRecord {
                name: "ColdStart",
                unit: Unit::Count,
                value: 1.0,
                dimensions: vec![("function_name", self.function_name.clone())],
                timestamp: clock.now(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use selfbuild_core::clock::SystemClock;

    use super::*;

    #[derive(Default)]
    struct Recorded(Mutex<Vec<MetricRecord>>);

    impl MetricSink for Recorded {
        fn record(&self, metric: MetricRecord) {
            self.0.lock().unwrap().push(metric);
        }
    }

    #[test]
    fn cold_start_is_counted_once_per_environment() {
        let cold = ColdStart::new("selfbuild-deploy");
        let sink = Recorded::default();
        for _ in 0..3 {
            cold.invoked(&sink, &SystemClock);
        }
        let recorded = sink.0.into_inner().unwrap();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].name, "ColdStart");
        assert_eq!(
            recorded[0].dimensions,
            [("function_name", "selfbuild-deploy".to_owned())]
        );
    }

    #[test]
    fn the_level_comes_from_the_setting_and_rmcp_speaks_from_debug_on() {
        let hint = |level, rust_log| log_filter(level, rust_log).max_level_hint();
        assert_eq!(hint("loud", ""), Some(LevelFilter::INFO));
        assert_eq!(hint("", ""), Some(LevelFilter::INFO));
        assert_eq!(hint("DEBUG", ""), Some(LevelFilter::DEBUG));
        assert_eq!(hint("warn", ""), Some(LevelFilter::WARN));
        assert!(log_filter("INFO", "").to_string().contains("rmcp=warn"));
        assert!(!log_filter("DEBUG", "").to_string().contains("rmcp=warn"));
        assert!(
            !log_filter("INFO", "rmcp=info")
                .to_string()
                .contains("rmcp=warn")
        );
    }
}
