//! Stand-ins for the host behind `GetFunction`'s `Code.Location`: a presigned S3 URL on AWS,
//! a host that does not resolve on moto. Fetchers reach them through
//! `PackageFetcher::with_base_url` or `CODE_PACKAGE_ENDPOINT_URL`, which move the location
//! onto the stand-in and keep its path.
//!
//! - [`fixed`]: one status and body for every request (error paths, one package).
//! - [`MotoPackages`]: the package moto holds at the requested location, by its `CodeSha256`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::http::read_request;

/// The status and body a request gets.
type Answer = (u16, Vec<u8>);
/// Answers a request path.
type Handler = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Answer> + Send>> + Send + Sync>;

/// Serves GETs with `handler` on 127.0.0.1: the URL and the task; every path is kept in `seen`.
async fn serve(
    handler: Handler,
    seen: Arc<Mutex<Vec<String>>>,
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind the package host: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("package host address: {e}"));
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (handler, seen) = (Arc::clone(&handler), Arc::clone(&seen));
            tokio::spawn(async move {
                let Ok(Some(request)) = read_request(&mut stream).await else {
                    return;
                };
                seen.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(request.path.clone());
                let (status, body) = handler(request.path).await;
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/zip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), task)
}

/// A listener answering every GET with `status` and `body`: its URL and the request paths it
/// saw. It runs until the runtime stops.
pub async fn fixed(status: u16, body: Vec<u8>) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let body = Arc::new(body);
    let handler: Handler = Arc::new(move |_| {
        let body = Arc::clone(&body);
        Box::pin(async move { (status, body.to_vec()) })
    });
    let (url, _task) = serve(handler, Arc::clone(&seen)).await;
    (url, seen)
}

/// The packages of moto's functions, served at the path of their `Code.Location`.
///
/// moto keeps no package a client can download, so the zips are handed in ([`add`]) and keyed
/// by their `CodeSha256`; a request is answered with the zip whose hash moto reports for the
/// function version whose location has the requested path, so what is served is provably what
/// moto holds. A path no version has, or a hash no zip was added for, is a 404 naming it.
///
/// moto 5.2.1 keeps one code record for `$LATEST` and all its versions: after
/// `UpdateFunctionCode`, every version's location names the new upload. `$LATEST` is looked
/// at first, as its hash is the one of the package now stored under that name.
///
/// [`add`]: MotoPackages::add
pub struct MotoPackages {
    /// `http://127.0.0.1:<port>`: the value of `CODE_PACKAGE_ENDPOINT_URL`.
    pub url: String,
    zips: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MotoPackages {
    /// Starts serving the packages of the functions `lambda` (a client of moto) lists.
    pub async fn start(lambda: aws_sdk_lambda::Client) -> Self {
        let zips: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let known = Arc::clone(&zips);
        let handler: Handler = Arc::new(move |path| {
            let (lambda, known) = (lambda.clone(), Arc::clone(&known));
            Box::pin(async move {
                let wanted = path.split('?').next().unwrap_or_default().to_owned();
                let Some(hash) = hash_at(&lambda, &wanted).await else {
                    return (
                        404,
                        format!("no function version of moto's has {wanted}").into(),
                    );
                };
                let zip = known
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(&hash)
                    .cloned();
                zip.map_or_else(
                    || {
                        (
                            404,
                            format!("{wanted} is CodeSha256 {hash}: no such zip added").into(),
                        )
                    },
                    |zip| (200, zip),
                )
            })
        });
        let (url, task) = serve(handler, Arc::clone(&seen)).await;
        Self {
            url,
            zips,
            seen,
            task,
        }
    }

    /// Makes `zip` servable; its `CodeSha256`.
    pub fn add(&self, zip: Vec<u8>) -> String {
        let hash = selfbuild_aws::lambda_code::rewrite::code_sha256(&zip);
        self.zips
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(hash.clone(), zip);
        hash
    }

    /// The paths requested so far.
    pub fn requested(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for MotoPackages {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The path of a `Code.Location` URL (`/<key>`), without its query.
pub fn location_path(location: &str) -> &str {
    let rest = location
        .split_once("://")
        .map_or(location, |(_, rest)| rest);
    let path = rest.find('/').map_or("/", |at| &rest[at..]);
    path.split('?').next().unwrap_or(path)
}

/// The `CodeSha256` of the first function version (each function's `$LATEST`, then its
/// versions) whose `Code.Location` has `path`.
async fn hash_at(lambda: &aws_sdk_lambda::Client, path: &str) -> Option<String> {
    let functions = lambda.list_functions().send().await.ok()?;
    for function in functions.functions() {
        let name = function.function_name()?;
        let versions = lambda
            .list_versions_by_function()
            .function_name(name)
            .send()
            .await
            .ok()?;
        let mut qualifiers = vec!["$LATEST".to_owned()];
        qualifiers.extend(
            versions
                .versions()
                .iter()
                .filter_map(|v| v.version())
                .filter(|v| *v != "$LATEST")
                .map(str::to_owned),
        );
        for qualifier in qualifiers {
            let Ok(got) = lambda
                .get_function()
                .function_name(name)
                .qualifier(&qualifier)
                .send()
                .await
            else {
                continue;
            };
            let at = got.code().and_then(|c| c.location()).map(location_path);
            if at == Some(path) {
                return got
                    .configuration()
                    .and_then(|c| c.code_sha256())
                    .map(str::to_owned);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_path_drops_scheme_host_and_query() {
        assert_eq!(
            location_path(
                "https://awslambda-us-east-1-tasks.s3.us-east-1.amazonaws.com/f-1a?X-Amz-Signature=x"
            ),
            "/f-1a"
        );
        assert_eq!(location_path("https://host"), "/");
    }
}
