//! Deployment packages: fetched over HTTPS from the presigned `Code.Location` and read in
//! memory as zips.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::time::Duration;

use selfbuild_core::config::ConfigError;
use selfbuild_core::ids::ComponentId;
use selfbuild_core::ports::CodeSourceError;
use tracing::debug;

/// The largest deployment package read (Lambda's own limit for a zip is 50 MB uploaded
/// directly; larger ones come from S3 and are not patched here).
pub const MAX_PACKAGE_BYTES: u64 = 64 * 1024 * 1024;
/// The largest file read from a package (twice what the validation pipeline reads).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// How long fetching a package may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Fetches deployment packages.
#[derive(Debug, Clone, Default)]
pub struct PackageFetcher {
    http: reqwest::Client,
    base_url: Option<reqwest::Url>,
}

impl PackageFetcher {
    /// A fetcher with a timeout, from the host each `Code.Location` names.
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(FETCH_TIMEOUT)
                .build()
                .unwrap_or_default(),
            base_url: None,
        }
    }

    /// [`new`](Self::new), moved onto `CODE_PACKAGE_ENDPOINT_URL` when that is set (an S3
    /// interface endpoint, or a local stand-in where `Code.Location` names a host that does
    /// not resolve); a value that is not an http(s) URL is an error naming the variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        const NAME: &str = "CODE_PACKAGE_ENDPOINT_URL";
        let Some(value) = lookup(NAME).filter(|v| !v.trim().is_empty()) else {
            return Ok(Self::new());
        };
        let invalid = |problem: String| ConfigError::Invalid {
            name: NAME,
            value: value.clone(),
            problem,
        };
        let base = reqwest::Url::parse(value.trim()).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(invalid("must be an http(s) URL with a host".into()));
        }
        Ok(Self::new().with_base_url(base))
    }

    /// Fetches from `base` (scheme, host and port) instead of the host in `Code.Location`,
    /// keeping its path and query: for a local endpoint whose presigned URLs name a host that
    /// does not resolve, or an S3 VPC endpoint.
    #[must_use]
    pub fn with_base_url(mut self, base: reqwest::Url) -> Self {
        self.base_url = Some(base);
        self
    }

    /// The URL to fetch a package from.
    fn url(&self, location: &str) -> Result<reqwest::Url, String> {
        let mut url = reqwest::Url::parse(location)
            .map_err(|e| format!("Code.Location is not a URL: {e}"))?;
        if let Some(base) = &self.base_url {
            url.set_scheme(base.scheme())
                .and_then(|()| url.set_host(base.host_str()).map_err(|_| ()))
                .and_then(|()| url.set_port(base.port()))
                .map_err(|()| format!("cannot move the package location onto {base}"))?;
        }
        Ok(url)
    }

    /// The package at `location`, at most [`MAX_PACKAGE_BYTES`].
    pub async fn fetch(
        &self,
        component: &ComponentId,
        location: &str,
    ) -> Result<Vec<u8>, CodeSourceError> {
        let url = self.url(location).map_err(CodeSourceError::Rejected)?;
        debug!(
            host = url.host_str().unwrap_or(""),
            "fetching the deployment package"
        );
        let unavailable = |e: &dyn std::fmt::Display| {
            CodeSourceError::Unavailable(format!("fetching {component}'s package: {e}"))
        };
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        let status = response.status();
        if !status.is_success() {
            let message = format!("fetching {component}'s package answered HTTP {status}");
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                CodeSourceError::Unavailable(message)
            } else {
                CodeSourceError::Rejected(message)
            });
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_PACKAGE_BYTES)
        {
            return Err(too_large(component));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| unavailable(&e))? {
            body.extend_from_slice(&chunk);
            if body.len() as u64 > MAX_PACKAGE_BYTES {
                return Err(too_large(component));
            }
        }
        Ok(body)
    }
}

fn too_large(component: &ComponentId) -> CodeSourceError {
    CodeSourceError::Rejected(format!(
        "{component}'s deployment package is larger than {MAX_PACKAGE_BYTES} bytes"
    ))
}

/// The files at `paths` in a zip package: each one's text, or none when the package has no
/// such file. A file that is not UTF-8 text or is too large is an error naming it.
pub fn files_in_package(
    package: &[u8],
    paths: &[&str],
) -> Result<BTreeMap<String, Option<String>>, String> {
    let mut zip = zip::ZipArchive::new(Cursor::new(package))
        .map_err(|e| format!("the deployment package is not a zip: {e}"))?;
    let mut files = BTreeMap::new();
    for &path in paths {
        let name = path.trim_start_matches("./");
        let text = match zip.by_name(name) {
            Ok(entry) if entry.is_dir() => {
                return Err(format!("{path} is a directory in the package"));
            }
            Ok(entry) => {
                if entry.size() > MAX_FILE_BYTES {
                    return Err(format!(
                        "{path} is {} bytes, more than the {MAX_FILE_BYTES} read",
                        entry.size()
                    ));
                }
                let mut bytes = Vec::new();
                entry
                    .take(MAX_FILE_BYTES + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| format!("{path}: unreadable in the package: {e}"))?;
                Some(String::from_utf8(bytes).map_err(|_| format!("{path} is not UTF-8 text"))?)
            }
            Err(zip::result::ZipError::FileNotFound) => None,
            Err(e) => return Err(format!("{path}: unreadable in the package: {e}")),
        };
        files.insert(path.to_owned(), text);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn the_endpoint_variable_moves_fetches_and_a_bad_one_is_named() {
        let with = |value: &str| {
            let value = value.to_owned();
            PackageFetcher::from_lookup(move |_| Some(value.clone()))
        };
        let location = "https://awslambda-us-east-1-tasks.s3.us-east-1.amazonaws.com/snapshots/1/f?X-Amz-Signature=s";
        let moved = with("http://127.0.0.1:9000")
            .unwrap()
            .url(location)
            .unwrap();
        assert_eq!(
            moved.as_str(),
            "http://127.0.0.1:9000/snapshots/1/f?X-Amz-Signature=s"
        );
        let kept = with("  ").unwrap().url(location).unwrap();
        assert_eq!(kept.as_str(), location);
        for bad in ["not a url", "file:///tmp/x", "ftp://host/"] {
            let err = with(bad).unwrap_err().to_string();
            assert!(err.contains("CODE_PACKAGE_ENDPOINT_URL"), "{err}");
        }
    }

    fn package(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, body) in files {
            zip.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(body).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn reads_the_named_files_and_marks_missing_ones() {
        let zip = package(&[("app.py", b"x = 1\n"), ("lib/util.py", b"y = 2\n")]);
        let files = files_in_package(&zip, &["app.py", "./lib/util.py", "new.py"]).unwrap();
        assert_eq!(files["app.py"].as_deref(), Some("x = 1\n"));
        assert_eq!(files["./lib/util.py"].as_deref(), Some("y = 2\n"));
        assert_eq!(files["new.py"], None);
    }

    #[test]
    fn binary_files_and_non_zips_are_errors_naming_them() {
        let zip = package(&[("blob.py", &[0xff, 0xfe, 0x00])]);
        let e = files_in_package(&zip, &["blob.py"]).unwrap_err();
        assert!(e.contains("blob.py") && e.contains("UTF-8"), "{e}");
        let e = files_in_package(b"not a zip", &["a.py"]).unwrap_err();
        assert!(e.contains("not a zip"), "{e}");
    }

    #[test]
    fn a_base_url_moves_the_location_keeping_path_and_query() {
        let fetcher = PackageFetcher::new().with_base_url("http://127.0.0.1:4567".parse().unwrap());
        let url = fetcher
            .url("https://awslambda-us-east-1-tasks.s3.us-east-1.amazonaws.com/snapshots/123/f-abc?X-Amz-Signature=s")
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:4567/snapshots/123/f-abc?X-Amz-Signature=s"
        );
        assert!(fetcher.url("not a url").is_err());
    }
}
