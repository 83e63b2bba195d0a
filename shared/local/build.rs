//! Bundles `events/` into the `selfbuild` binary (`src/bundled.rs`): the scenarios `demo`,
//! `cycle` and `serve` read by default, the sample events and the step payloads, so the CLI
//! works from any directory. Writes `$OUT_DIR/bundled.rs`, a sorted table of
//! `(repository path, include_str!(absolute path))`.

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest.join("../..");
    let events = root.join("events");
    println!("cargo::rerun-if-changed={}", events.display());
    let mut files = Vec::new();
    collect(&root, &events, &mut files);
    files.sort();
    let mut out = String::from("/// Bundled files: (repository path, text), sorted by path.\n");
    out.push_str("pub static FILES: &[(&str, &str)] = &[\n");
    for (name, path) in &files {
        out.push_str(&format!("    ({name:?}, include_str!({path:?})),\n"));
    }
    out.push_str("];\n");
    let dest =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it")).join("bundled.rs");
    std::fs::write(dest, out).expect("write bundled.rs");
}

/// Every `*.json` under `dir`, as (path relative to `root` with `/`, absolute path).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if path.extension().is_some_and(|x| x == "json") {
            let relative = path.strip_prefix(root).expect("under the root");
            let name = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let absolute = path.canonicalize().unwrap_or(path.clone());
            files.push((name, absolute.display().to_string()));
        }
    }
}
