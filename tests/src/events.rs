//! The real-shaped sample events under `events/`, parsed.

use serde_json::Value;

/// The repository's `events/` folder.
pub fn events_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("events")
}

/// Parses `events/<name>`; panics with the file name if it is missing or not JSON.
pub fn load(name: &str) -> Value {
    let path = events_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}
