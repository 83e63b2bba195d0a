//! Integration tests, one module per area; AWS adapters run against a local moto server.

// Test helpers fail the test by unwrapping, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod agent_telemetry;
mod alarm_source_contract;
mod alarms;
mod asl_moto;
mod demo;
mod deployer_contract;
mod faults;
mod halt;
mod health_aws;
mod intake;
mod intake_strict;
mod lambda_code;
mod lambda_code_deployer;
mod lambda_deployer;
mod mcp_lambda;
mod notifier;
mod orchestrator;
mod orchestrator_contract;
mod peers;
mod secrets;
mod step_events;
mod store_contract;
mod telemetry;
mod telemetry_contract;
mod template;
