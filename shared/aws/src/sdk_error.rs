//! Classifying AWS SDK errors as transient (retry later) or not, the same way for every service.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::retry::ProvideErrorKind;

/// Error codes AWS services use for throttling and transient failures (the SDK's retry
/// classifier lists the same, plus `ServiceUnavailable`). Codes, not message text: they are
/// how errors the service model leaves unmodeled are told apart (CloudWatch's `Throttling`,
/// Step Functions' `ThrottlingException`, …).
const TRANSIENT_CODES: [&str; 17] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "RequestTimeout",
    "RequestTimeoutException",
    "ServiceUnavailable",
];

/// True when trying again later may succeed: no response, a timeout, an unreadable
/// response, a 5xx or 429, a throttling error code, or an error the model marks retryable.
pub(crate) fn is_transient<E: ProvideErrorKind>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(context) => {
            let status = context.raw().status();
            let service = context.err();
            status.is_server_error()
                || status.as_u16() == 429
                || service.retryable_error_kind().is_some()
                || service
                    .code()
                    .is_some_and(|code| TRANSIENT_CODES.contains(&code))
        }
        _ => false,
    }
}

/// Displays an error and its sources, `: `-separated: what `DisplayErrorContext` prints
/// without its trailing debug dump (raw headers and body), so it fits an error message.
pub(crate) struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut next = Some(self.0);
        let mut first = true;
        while let Some(err) = next {
            if !first {
                f.write_str(": ")?;
            }
            write!(f, "{err}")?;
            first = false;
            next = err.source();
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Building SDK errors the way the SDK would hand them back.

    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::client::result::SdkError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    /// A service error with this HTTP status.
    pub(crate) fn service_error<E>(err: E, status: u16) -> SdkError<E, HttpResponse> {
        let status = StatusCode::try_from(status).expect("a valid HTTP status");
        SdkError::service_error(err, HttpResponse::new(status, SdkBody::empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::service_error;
    use super::*;
    use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;
    use aws_smithy_types::error::display::DisplayErrorContext;

    fn unmodeled(code: &str) -> DescribeAlarmsError {
        DescribeAlarmsError::generic(ErrorMetadata::builder().code(code).message("m").build())
    }

    #[test]
    fn throttling_and_server_errors_are_transient() {
        assert!(is_transient(&service_error(unmodeled("Throttling"), 400)));
        assert!(is_transient(&service_error(
            unmodeled("InternalFailure"),
            500
        )));
        assert!(is_transient(&service_error(unmodeled("Anything"), 429)));
        assert!(is_transient(
            &SdkError::<DescribeAlarmsError, _>::timeout_error("slow")
        ));
    }

    #[test]
    fn the_chain_names_code_and_message_without_the_raw_response() {
        let raw = HttpResponse::new(
            StatusCode::try_from(400).expect("a valid HTTP status"),
            SdkBody::from("raw-body-text"),
        );
        let err = SdkError::service_error(unmodeled("Throttling"), raw);
        let text = ErrorChain(&err).to_string();
        assert!(text.starts_with("service error: "), "{text}");
        assert!(text.contains("Throttling"), "{text}");
        assert!(!text.contains("raw-body-text"), "{text}");
        assert!(
            DisplayErrorContext(&err)
                .to_string()
                .contains("raw-body-text")
        );
    }

    #[test]
    fn client_errors_are_not_transient() {
        assert!(!is_transient(&service_error(
            unmodeled("AccessDenied"),
            403
        )));
        assert!(!is_transient(&service_error(
            unmodeled("ValidationError"),
            400
        )));
        assert!(!is_transient(
            &SdkError::<DescribeAlarmsError, HttpResponse>::construction_failure("bad input")
        ));
    }
}
