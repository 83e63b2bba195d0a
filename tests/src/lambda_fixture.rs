//! Lambda functions on moto's control plane: the IAM role `CreateFunction` wants, and the
//! ZIP archive it takes, without an IAM SDK crate or a ZIP crate; [`MotoFunction`], a
//! function with version 1 behind the alias `live`. Used by the deployer's integration and
//! contract tests and the e2e test.

use std::sync::Arc;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{AliasRoutingConfiguration, Environment, FunctionCode, Runtime};
use selfbuild_core::change::LambdaSettings;
use selfbuild_core::deployment::LIVE_ALIAS;
use selfbuild_core::ids::ComponentId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::moto::MotoServer;

/// A function on moto, created with some settings; [`MotoFunction::new`] also publishes
/// version 1 and points the alias [`LIVE_ALIAS`] at it.
pub struct MotoFunction {
    /// Keeps the shared server up while the function is used.
    pub moto: Arc<MotoServer>,
    /// A Lambda client on that server.
    pub lambda: aws_sdk_lambda::Client,
    /// The function.
    pub function: ComponentId,
}

impl MotoFunction {
    /// Creates `name` with `initial`, without publishing anything or creating the alias.
    pub async fn unpublished(name: &str, initial: &LambdaSettings) -> Self {
        let moto = MotoServer::shared();
        let sdk = moto.sdk_config().await;
        let lambda = aws_sdk_lambda::Client::new(&sdk);
        let role = create_role(&moto, &format!("{name}-role")).await;
        lambda
            .create_function()
            .function_name(name)
            .runtime(Runtime::Providedal2023)
            .handler("bootstrap")
            .role(role)
            .code(
                FunctionCode::builder()
                    .zip_file(Blob::new(bootstrap_zip()))
                    .build(),
            )
            .memory_size(i32::try_from(initial.memory_mb).expect("a memory size"))
            .timeout(i32::try_from(initial.timeout_seconds).expect("a timeout"))
            .environment(
                Environment::builder()
                    .set_variables(Some(initial.environment.clone().into_iter().collect()))
                    .build(),
            )
            .send()
            .await
            .expect("CreateFunction on moto");
        let function = Self {
            lambda,
            function: ComponentId::parse(name).expect("a function name"),
            moto,
        };
        if initial.reserved_concurrency.is_some() {
            function.set_reserved(initial.reserved_concurrency).await;
        }
        function
    }

    /// A function created before, reached through the shared server.
    pub async fn existing(function: &ComponentId) -> Self {
        let moto = MotoServer::shared();
        let lambda = aws_sdk_lambda::Client::new(&moto.sdk_config().await);
        Self {
            moto,
            lambda,
            function: function.clone(),
        }
    }

    /// Creates `name` with `initial`, publishes version 1 and points `live` at it.
    pub async fn new(name: &str, initial: &LambdaSettings) -> Self {
        let function = Self::unpublished(name, initial).await;
        let version = function
            .lambda
            .publish_version()
            .function_name(name)
            .send()
            .await
            .expect("PublishVersion on moto");
        assert_eq!(version.version(), Some("1"));
        function.create_alias("1").await;
        function
    }

    /// Creates the alias `live` on `version`.
    pub async fn create_alias(&self, version: &str) {
        self.lambda
            .create_alias()
            .function_name(self.function.as_str())
            .name(LIVE_ALIAS)
            .function_version(version)
            .send()
            .await
            .expect("CreateAlias on moto");
    }

    /// Points `live` at `version` alone, with an empty description: the alias as it was
    /// before a deploy routed it.
    pub async fn point_alias_at(&self, version: &str) {
        self.lambda
            .update_alias()
            .function_name(self.function.as_str())
            .name(LIVE_ALIAS)
            .function_version(version)
            .routing_config(
                AliasRoutingConfiguration::builder()
                    .set_additional_version_weights(Some(Default::default()))
                    .build(),
            )
            .description("")
            .send()
            .await
            .expect("UpdateAlias on moto");
    }

    /// The alias's version and additional weights.
    pub async fn routing(&self) -> (String, Vec<(String, f64)>) {
        let alias = self
            .lambda
            .get_alias()
            .function_name(self.function.as_str())
            .name(LIVE_ALIAS)
            .send()
            .await
            .expect("GetAlias on moto");
        let mut weights: Vec<(String, f64)> = alias
            .routing_config()
            .and_then(AliasRoutingConfiguration::additional_version_weights)
            .map(|w| w.iter().map(|(v, w)| (v.clone(), *w)).collect())
            .unwrap_or_default();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        (
            alias.function_version().unwrap_or_default().to_owned(),
            weights,
        )
    }

    /// Memory, timeout and environment of a version (`$LATEST` included), as settings
    /// with the function's current reservation.
    pub async fn version_settings(&self, version: &str) -> LambdaSettings {
        let config = self
            .lambda
            .get_function_configuration()
            .function_name(self.function.as_str())
            .qualifier(version)
            .send()
            .await
            .expect("GetFunctionConfiguration on moto");
        LambdaSettings {
            memory_mb: config
                .memory_size()
                .and_then(|m| u32::try_from(m).ok())
                .expect("a memory size"),
            timeout_seconds: config
                .timeout()
                .and_then(|t| u32::try_from(t).ok())
                .expect("a timeout"),
            reserved_concurrency: self.reserved().await,
            environment: config
                .environment()
                .and_then(|e| e.variables())
                .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        }
    }

    /// Sets `$LATEST`'s memory, timeout and environment to `settings`'s, as the first step
    /// of a deploy does (the reservation is left alone).
    pub async fn update_latest(&self, settings: &LambdaSettings) {
        self.lambda
            .update_function_configuration()
            .function_name(self.function.as_str())
            .memory_size(i32::try_from(settings.memory_mb).expect("a memory size"))
            .timeout(i32::try_from(settings.timeout_seconds).expect("a timeout"))
            .environment(
                Environment::builder()
                    .set_variables(Some(settings.environment.clone().into_iter().collect()))
                    .build(),
            )
            .send()
            .await
            .expect("UpdateFunctionConfiguration on moto");
    }

    /// The function's reserved concurrency.
    pub async fn reserved(&self) -> Option<u32> {
        self.lambda
            .get_function_concurrency()
            .function_name(self.function.as_str())
            .send()
            .await
            .expect("GetFunctionConcurrency on moto")
            .reserved_concurrent_executions()
            .map(|n| u32::try_from(n).expect("a reservation"))
    }

    /// Sets (or with none, removes) the function's reserved concurrency.
    pub async fn set_reserved(&self, reserved: Option<u32>) {
        match reserved {
            Some(n) => {
                self.lambda
                    .put_function_concurrency()
                    .function_name(self.function.as_str())
                    .reserved_concurrent_executions(i32::try_from(n).expect("a reservation"))
                    .send()
                    .await
                    .expect("PutFunctionConcurrency on moto");
            }
            None => {
                self.lambda
                    .delete_function_concurrency()
                    .function_name(self.function.as_str())
                    .send()
                    .await
                    .expect("DeleteFunctionConcurrency on moto");
            }
        }
    }

    /// Every version's name, `$LATEST` first.
    pub async fn versions(&self) -> Vec<String> {
        self.lambda
            .list_versions_by_function()
            .function_name(self.function.as_str())
            .send()
            .await
            .expect("ListVersionsByFunction on moto")
            .versions()
            .iter()
            .filter_map(|v| v.version().map(str::to_owned))
            .collect()
    }
}

/// The package every [`MotoFunction`] is created with: a `bootstrap` script.
pub fn bootstrap_zip() -> Vec<u8> {
    stored_zip("bootstrap", b"#!/bin/sh\necho '{}'\n")
}

/// Creates an IAM role in moto, whose Lambda `CreateFunction` wants one that exists, and
/// returns its ARN. One query-API request by hand rather than another SDK crate; moto reads
/// the service from the credential scope and does not check the signature.
pub async fn create_role(moto: &MotoServer, name: &str) -> String {
    let policy = concat!(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","#,
        r#""Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#
    );
    let body = format!(
        "Action=CreateRole&Version=2010-05-08&RoleName={}&AssumeRolePolicyDocument={}",
        form_encode(name),
        form_encode(policy)
    );
    let host = moto.endpoint.trim_start_matches("http://");
    let request = format!(
        "POST / HTTP/1.0\r\nHost: {host}\r\n\
         Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n\
         Authorization: AWS4-HMAC-SHA256 \
         Credential=testing/20260101/us-east-1/iam/aws4_request, \
         SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(host).await.expect("connect to moto");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write to moto");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read moto's answer");
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "CreateRole answered: {response}"
    );
    let arn = response
        .split_once("<Arn>")
        .and_then(|(_, rest)| rest.split_once("</Arn>"))
        .map(|(arn, _)| arn.to_owned());
    arn.unwrap_or_else(|| panic!("no role ARN in: {response}"))
}

/// `application/x-www-form-urlencoded` for one value.
pub fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A ZIP archive holding one executable file, stored without compression: what Lambda's
/// `ZipFile` takes, without a ZIP crate.
pub fn stored_zip(name: &str, contents: &[u8]) -> Vec<u8> {
    const DOS_DATE_1980_01_01: u16 = (1 << 5) | 1;
    let name_len = u16::try_from(name.len()).expect("a short file name");
    let size = u32::try_from(contents.len()).expect("a small file");
    let crc = crc32(contents);
    let mut zip = Vec::new();
    // Local file header.
    zip.extend_from_slice(&0x0403_4b50_u32.to_le_bytes());
    for field in [10_u16, 0, 0, 0, DOS_DATE_1980_01_01] {
        zip.extend_from_slice(&field.to_le_bytes()); // version, flags, stored, time, date
    }
    for field in [crc, size, size] {
        zip.extend_from_slice(&field.to_le_bytes());
    }
    zip.extend_from_slice(&name_len.to_le_bytes());
    zip.extend_from_slice(&0_u16.to_le_bytes());
    zip.extend_from_slice(name.as_bytes());
    zip.extend_from_slice(contents);
    // Central directory: made on Unix (3), so the external attributes carry mode 0755.
    let directory_offset = u32::try_from(zip.len()).expect("a small archive");
    zip.extend_from_slice(&0x0201_4b50_u32.to_le_bytes());
    for field in [0x031e_u16, 10, 0, 0, 0, DOS_DATE_1980_01_01] {
        zip.extend_from_slice(&field.to_le_bytes());
    }
    for field in [crc, size, size] {
        zip.extend_from_slice(&field.to_le_bytes());
    }
    for field in [name_len, 0, 0, 0, 0] {
        zip.extend_from_slice(&field.to_le_bytes()); // name, extra, comment, disk, internal
    }
    zip.extend_from_slice(&(0o100_755_u32 << 16).to_le_bytes());
    zip.extend_from_slice(&0_u32.to_le_bytes()); // the local header's offset
    zip.extend_from_slice(name.as_bytes());
    let directory_size = u32::try_from(zip.len()).expect("a small archive") - directory_offset;
    // End of central directory.
    zip.extend_from_slice(&0x0605_4b50_u32.to_le_bytes());
    for field in [0_u16, 0, 1, 1] {
        zip.extend_from_slice(&field.to_le_bytes());
    }
    zip.extend_from_slice(&directory_size.to_le_bytes());
    zip.extend_from_slice(&directory_offset.to_le_bytes());
    zip.extend_from_slice(&0_u16.to_le_bytes());
    zip
}

/// CRC-32 (IEEE 802.3, reflected), as ZIP uses it.
pub fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(u32::MAX, |crc, &byte| {
        (0..8).fold(crc ^ u32::from(byte), |c, _| {
            if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zip_helper_writes_a_readable_archive() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let zip = stored_zip("bootstrap", b"hello");
        assert_eq!(&zip[..4], b"PK\x03\x04");
        assert_eq!(&zip[zip.len() - 22..zip.len() - 18], b"PK\x05\x06");
        assert_eq!(zip.len(), 30 + 9 + 5 + 46 + 9 + 22);
    }
}
