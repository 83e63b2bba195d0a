//! The files of `events/` shipped inside the binary (by `build.rs`), so the CLI works from
//! any directory: a relative path such as `events/scenarios/timeouts.json` is read from disk
//! when it exists there (an edited copy wins) and from the binary otherwise; a path that is
//! neither gets a hint naming what is bundled.

use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};

mod table {
    include!(concat!(env!("OUT_DIR"), "/bundled.rs"));
}

pub use table::FILES;

/// A file's text and where it came from.
#[derive(Debug, Clone)]
pub struct Text {
    /// The path as given, with ` (bundled)` when the binary's copy was read.
    pub name: String,
    /// The contents.
    pub text: Cow<'static, str>,
}

/// The repository path `path` stands for: `./events/a.json` → `events/a.json`; none for an
/// absolute path or one with `..`.
fn repository_name(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?.to_owned()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The bundled text of `path`, if the binary ships a file under that repository path.
pub fn file(path: &Path) -> Option<&'static str> {
    let name = repository_name(path)?;
    FILES
        .binary_search_by(|(n, _)| n.cmp(&name.as_str()))
        .ok()
        .map(|i| FILES[i].1)
}

/// The bundled files directly in the folder `dir` (e.g. `events/scenarios`), sorted; none
/// when the binary ships no such folder.
pub fn dir(dir: &Path) -> Option<Vec<PathBuf>> {
    let prefix = format!("{}/", repository_name(dir)?);
    let files: Vec<PathBuf> = FILES
        .iter()
        .filter_map(|(name, _)| {
            name.strip_prefix(&prefix)
                .filter(|rest| !rest.contains('/'))
        })
        .map(|rest| PathBuf::from(format!("{prefix}{rest}")))
        .collect();
    (!files.is_empty()).then_some(files)
}

/// Whether `path` is nowhere on disk but bundled (a file or a folder).
pub fn is_bundled_only(path: &Path) -> bool {
    !path.exists() && (file(path).is_some() || dir(path).is_some())
}

/// Reads `path` from disk, or the binary's copy when the file is not on disk; the error is
/// the disk's.
pub fn read(path: &Path) -> std::io::Result<Text> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Text {
            name: path.display().to_string(),
            text: Cow::Owned(text),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match file(path) {
            Some(text) => Ok(Text {
                name: format!("{} (bundled)", path.display()),
                text: Cow::Borrowed(text),
            }),
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// What to tell a user whose `path` is neither on disk nor bundled.
pub fn missing_hint(path: &Path) -> String {
    let here = std::env::current_dir()
        .map(|d| format!(" (relative to {})", d.display()))
        .unwrap_or_default();
    let wanted = path.file_name().and_then(|n| n.to_str());
    let same_name: Vec<&str> = FILES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| wanted.is_some_and(|w| name.rsplit('/').next() == Some(w)))
        .collect();
    let relative = if path.is_relative() {
        here
    } else {
        String::new()
    };
    match same_name.as_slice() {
        [] => format!(
            "{} does not exist{relative}; the binary bundles {} files of events/ \
             (scenarios in events/scenarios/ and events/scenarios/safety/, sample events in \
             events/, step payloads in events/steps/) under those paths",
            path.display(),
            FILES.len()
        ),
        names => format!(
            "{} does not exist{relative}; bundled under that name: {}",
            path.display(),
            names.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_scenarios_and_step_payloads_are_bundled_in_order() {
        assert!(FILES.windows(2).all(|w| w[0].0 < w[1].0));
        for name in [
            "events/scenarios/timeouts.json",
            "events/alarm-metric.json",
            "events/steps/analyze.json",
            "events/scenarios/safety/nc-healthy-fleet.json",
        ] {
            assert!(file(Path::new(name)).is_some(), "{name}");
        }
        let disk = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../events/scenarios/timeouts.json"
        ))
        .expect("on disk");
        assert_eq!(
            file(Path::new("./events/scenarios/timeouts.json")),
            Some(disk.as_str())
        );
    }

    #[test]
    fn a_folder_lists_only_its_own_files() {
        let top = dir(Path::new("events/scenarios")).expect("bundled");
        assert!(top.contains(&PathBuf::from("events/scenarios/timeouts.json")));
        assert!(
            top.iter()
                .all(|p| !p.starts_with("events/scenarios/safety"))
        );
        let on_disk = std::fs::read_dir(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/scenarios/safety"),
        )
        .expect("the safety scenarios")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
        .count();
        assert_eq!(
            dir(Path::new("events/scenarios/safety")).map(|f| f.len()),
            Some(on_disk)
        );
        assert!(dir(Path::new("events/nothing")).is_none());
        assert!(file(Path::new("/abs/events/alarm-metric.json")).is_none());
        assert!(file(Path::new("../events/alarm-metric.json")).is_none());
    }

    #[test]
    fn a_missing_path_hint_names_the_bundled_file_of_the_same_name() {
        let hint = missing_hint(Path::new("scenarios/timeouts.json"));
        assert!(hint.contains("events/scenarios/timeouts.json"), "{hint}");
        let hint = missing_hint(Path::new("nope.json"));
        assert!(hint.contains("events/scenarios/"), "{hint}");
    }
}
