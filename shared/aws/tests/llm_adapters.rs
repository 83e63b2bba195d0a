//! The LLM adapters against a local listener serving recorded provider responses: what they
//! send, how they read answers, and how failures are classified, retried and routed.

#[path = "llm/bedrock.rs"]
mod bedrock;
#[path = "llm/openai.rs"]
mod openai;
#[path = "llm/resilient.rs"]
mod resilient;
#[path = "llm/support.rs"]
mod support;
