//! Lambda error reports: a stable `errorType` for Step Functions `Retry`/`Catch` to match on.

use lambda_runtime::Diagnostic;
use selfbuild_core::error::StableError;

/// The Lambda error report for `error`: its stable type name and its message.
pub fn diagnostic(error: &dyn StableError) -> Diagnostic {
    Diagnostic {
        error_type: error.error_type().as_str().to_owned(),
        error_message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfbuild_core::error::ErrorType;

    #[derive(Debug)]
    struct Throttled;

    impl std::fmt::Display for Throttled {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("store unavailable: throttled")
        }
    }

    impl std::error::Error for Throttled {}

    impl StableError for Throttled {
        fn error_type(&self) -> ErrorType {
            ErrorType::Retryable
        }
    }

    #[test]
    fn the_report_carries_the_stable_type_and_the_message() {
        let d = diagnostic(&Throttled);
        assert_eq!(d.error_type, "Retryable");
        assert_eq!(d.error_message, "store unavailable: throttled");
    }
}
