//! A patched deployment package: a code patch applied to the files of a zip, written as a new
//! zip that Lambda takes as `ZipFile`.
//!
//! Entries the patch does not touch are copied raw (their compressed bytes, name, times and
//! attributes unchanged), so the rest of the package is exactly what was deployed. Written
//! entries keep their unix permissions and compression; new files get 0o644; deleted ones are
//! left out; directory entries stay. Every written entry carries the same fixed time, so the
//! same patch on the same package gives the same bytes, and so the same `CodeSha256`: a retried
//! deploy recognises the version it published before. Python bytecode compiled from a changed
//! or deleted module (`__pycache__/<module>.*.pyc`, or a `<module>.pyc` beside it) is left out
//! too: Python trusts a `.pyc` whose recorded source time and size match, which a same-length
//! edit in a package with fixed timestamps would, and would run the old code.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};

use aws_smithy_types::base64;
use selfbuild_core::change::FilePatch;
use selfbuild_core::change::code_patch::{FileEdit, PatchError, apply_to_package};
use sha2::{Digest, Sha256};
use zip::result::ZipError;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use super::package::{MAX_FILE_BYTES, MAX_PACKAGE_BYTES};

/// The largest package uploaded as `ZipFile` (Lambda's limit for a direct upload is 50 MB).
pub const MAX_UPLOAD_BYTES: u64 = 50 * 1000 * 1000;
/// The permissions of a file the patch creates.
const NEW_FILE_MODE: u32 = 0o644;

/// Why a package cannot be patched.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The package is not a zip, or an entry cannot be read or written.
    #[error("the deployment package: {0}")]
    Zip(String),
    /// The package, a file in it, or the result is over a limit.
    #[error("{0}")]
    TooLarge(String),
    /// The patch names a directory or a symbolic link, which a text diff cannot change.
    #[error("{path}: a {kind} in the package, not a file a diff can change")]
    NotAFile {
        /// The path.
        path: String,
        /// `directory` or `symbolic link`.
        kind: &'static str,
    },
    /// The patch does not apply to the package's files.
    #[error(transparent)]
    Patch(#[from] PatchError),
}

/// A package with a patch applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchedPackage {
    /// The new zip.
    pub zip: Vec<u8>,
    /// Its `CodeSha256`.
    pub code_sha256: String,
}

/// Lambda's `CodeSha256` of a package: base64 of the SHA-256 of its bytes.
pub fn code_sha256(package: &[u8]) -> String {
    base64::encode(Sha256::digest(package))
}

/// Applies `files` to the zip `package` (all or nothing) and writes the patched zip.
pub fn patch_package(package: &[u8], files: &[FilePatch]) -> Result<PatchedPackage, RewriteError> {
    let mut archive = open(package)?;
    let mut current = BTreeMap::new();
    for file in files {
        let bytes = read_file(&mut archive, &file.path)?;
        current.insert(file.path.clone(), bytes);
    }
    let edits = apply_to_package(files, |path| current.get(path).cloned().flatten())?;
    let zip = rewrite_package(package, &edits)?;
    Ok(PatchedPackage {
        code_sha256: code_sha256(&zip),
        zip,
    })
}

/// Writes `package` again with `edits` (path to new text, or deletion): untouched entries
/// copied raw, changed ones written in place, new ones appended in path order.
pub fn rewrite_package(
    package: &[u8],
    edits: &BTreeMap<String, FileEdit>,
) -> Result<Vec<u8>, RewriteError> {
    let mut archive = open(package)?;
    let mut pending: BTreeMap<&str, &FileEdit> = edits
        .iter()
        .map(|(path, edit)| (entry_name(path), edit))
        .collect();
    let stale: Vec<(String, String)> = pending.keys().filter_map(|p| bytecode_of(p)).collect();
    let mut out = ZipWriter::new(Cursor::new(Vec::new()));
    for index in 0..archive.len() {
        let entry = archive.by_index_raw(index).map_err(unreadable)?;
        let name = entry.name().map_err(unreadable)?.into_owned();
        if !pending.contains_key(entry_name(&name)) && is_stale_bytecode(&name, &stale) {
            continue;
        }
        let Some(edit) = pending.remove(entry_name(&name)) else {
            out.raw_copy_file(entry).map_err(unwritable(&name))?;
            continue;
        };
        if let Some(kind) = not_a_file(entry.is_dir(), entry.is_symlink()) {
            return Err(RewriteError::NotAFile { path: name, kind });
        }
        let FileEdit::Write(text) = edit else {
            continue; // deleted
        };
        let options = written_options(
            entry.unix_mode().map_or(NEW_FILE_MODE, |mode| mode & 0o777),
            entry.compression(),
        );
        drop(entry);
        write_file(&mut out, &name, text, options)?;
    }
    for (path, edit) in pending {
        match edit {
            FileEdit::Write(text) => write_file(
                &mut out,
                path,
                text,
                written_options(NEW_FILE_MODE, CompressionMethod::Deflated),
            )?,
            FileEdit::Delete => {
                return Err(PatchError::Missing {
                    path: path.to_owned(),
                }
                .into());
            }
        }
    }
    if !archive.comment().is_empty() {
        out.set_raw_comment(archive.comment().into())
            .map_err(|e| RewriteError::Zip(format!("writing its comment: {e}")))?;
    }
    let zip = out
        .finish()
        .map_err(|e| RewriteError::Zip(format!("finishing the patched zip: {e}")))?
        .into_inner();
    if zip.len() as u64 > MAX_UPLOAD_BYTES {
        return Err(RewriteError::TooLarge(format!(
            "the patched package is {} bytes, more than the {MAX_UPLOAD_BYTES} Lambda takes \
             as ZipFile",
            zip.len()
        )));
    }
    Ok(zip)
}

/// The zip, refused over [`MAX_PACKAGE_BYTES`].
fn open(package: &[u8]) -> Result<ZipArchive<Cursor<&[u8]>>, RewriteError> {
    if package.len() as u64 > MAX_PACKAGE_BYTES {
        return Err(RewriteError::TooLarge(format!(
            "the deployment package is {} bytes, more than the {MAX_PACKAGE_BYTES} patched",
            package.len()
        )));
    }
    ZipArchive::new(Cursor::new(package)).map_err(|e| RewriteError::Zip(format!("not a zip: {e}")))
}

/// The bytes of the file at `path`; none when the package has no such entry.
fn read_file(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    path: &str,
) -> Result<Option<Vec<u8>>, RewriteError> {
    let name = entry_name(path);
    // A directory's entry ends in `/`; a diff naming it without is refused all the same.
    if archive.index_for_name(name).is_none()
        && archive.index_for_name(&format!("{name}/")).is_some()
    {
        return Err(RewriteError::NotAFile {
            path: path.to_owned(),
            kind: "directory",
        });
    }
    let entry = match archive.by_name(name) {
        Ok(entry) => entry,
        Err(ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(RewriteError::Zip(format!("{path}: unreadable: {e}"))),
    };
    if let Some(kind) = not_a_file(entry.is_dir(), entry.is_symlink()) {
        return Err(RewriteError::NotAFile {
            path: path.to_owned(),
            kind,
        });
    }
    if entry.size() > MAX_FILE_BYTES {
        return Err(RewriteError::TooLarge(format!(
            "{path} is {} bytes, more than the {MAX_FILE_BYTES} patched",
            entry.size()
        )));
    }
    let mut bytes = Vec::new();
    entry
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| RewriteError::Zip(format!("{path}: unreadable: {e}")))?;
    Ok(Some(bytes))
}

fn write_file(
    out: &mut ZipWriter<Cursor<Vec<u8>>>,
    name: &str,
    text: &str,
    options: SimpleFileOptions,
) -> Result<(), RewriteError> {
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(RewriteError::TooLarge(format!(
            "{name} would be {} bytes, more than the {MAX_FILE_BYTES} written",
            text.len()
        )));
    }
    out.start_file(name, options).map_err(unwritable(name))?;
    out.write_all(text.as_bytes())
        .map_err(|e| unwritable(name)(e.into()))
}

/// How a written entry is stored: `mode`, deflated unless it was stored, at a fixed time.
fn written_options(mode: u32, was: CompressionMethod) -> SimpleFileOptions {
    let compression = if was == CompressionMethod::Stored {
        CompressionMethod::Stored
    } else {
        CompressionMethod::Deflated
    };
    SimpleFileOptions::default()
        .compression_method(compression)
        .last_modified_time(DateTime::default())
        .unix_permissions(mode)
}

/// For a Python module `dir/name.py`: the prefix of its cached bytecode
/// (`dir/__pycache__/name.`) and its legacy bytecode file (`dir/name.pyc`).
fn bytecode_of(path: &str) -> Option<(String, String)> {
    let module = path.strip_suffix(".py")?;
    let (dir, name) = module.rsplit_once('/').unwrap_or(("", module));
    let dir = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    Some((format!("{dir}__pycache__/{name}."), format!("{module}.pyc")))
}

/// Whether the entry `name` is bytecode of a module in `stale`.
fn is_stale_bytecode(name: &str, stale: &[(String, String)]) -> bool {
    let name = entry_name(name);
    stale.iter().any(|(cached, legacy)| {
        (name.starts_with(cached.as_str()) && name.ends_with(".pyc")) || name == legacy
    })
}

/// The name of `path` in the zip: patches may write `./app.py` for `app.py`.
fn entry_name(path: &str) -> &str {
    path.trim_start_matches("./")
}

fn not_a_file(is_dir: bool, is_symlink: bool) -> Option<&'static str> {
    if is_dir {
        Some("directory")
    } else if is_symlink {
        Some("symbolic link")
    } else {
        None
    }
}

fn unreadable(e: ZipError) -> RewriteError {
    RewriteError::Zip(format!("an entry is unreadable: {e}"))
}

fn unwritable(name: &str) -> impl Fn(ZipError) -> RewriteError + '_ {
    move |e| RewriteError::Zip(format!("{name}: cannot be written: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "def handler(event, context):\n    return event['id']\n";
    const FIXED: &str = "def handler(event, context):\n    return event.get('id')\n";

    /// A package as a build tool writes it: a directory, an executable script, a module
    /// stored without compression, and a file with a real timestamp.
    fn package() -> Vec<u8> {
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        let at = DateTime::from_date_and_time(2025, 6, 1, 12, 30, 0).unwrap();
        let options = SimpleFileOptions::default().last_modified_time(at);
        zip.add_directory("lib/", options.unix_permissions(0o755))
            .unwrap();
        zip.start_file("app.py", options.unix_permissions(0o640))
            .unwrap();
        zip.write_all(APP.as_bytes()).unwrap();
        zip.start_file("run.sh", options.unix_permissions(0o755))
            .unwrap();
        zip.write_all(b"#!/bin/sh\nexec python3 app.py\n").unwrap();
        zip.start_file(
            "lib/util.py",
            options
                .unix_permissions(0o644)
                .compression_method(CompressionMethod::Stored),
        )
        .unwrap();
        zip.write_all(b"X = 1\n").unwrap();
        zip.start_file("blob.bin", options).unwrap();
        zip.write_all(&[0xff, 0xfe, 0x00, 0x01]).unwrap();
        zip.finish().unwrap().into_inner()
    }

    fn diff(path: &str, before: &str, after: &str) -> FilePatch {
        let text = diffy::create_patch(before, after)
            .to_string()
            .replacen("--- original", &format!("--- a/{path}"), 1)
            .replacen("+++ modified", &format!("+++ b/{path}"), 1);
        FilePatch {
            path: path.into(),
            language: None,
            diff: text,
        }
    }

    fn created(path: &str, text: &str) -> FilePatch {
        let mut patch = diff(path, "", text);
        patch.diff = patch
            .diff
            .replacen(&format!("--- a/{path}"), "--- /dev/null", 1);
        patch
    }

    fn deleted(path: &str, before: &str) -> FilePatch {
        let mut patch = diff(path, before, "");
        patch.diff = patch
            .diff
            .replacen(&format!("+++ b/{path}"), "+++ /dev/null", 1);
        patch
    }

    /// Each entry: name, unix mode, compression, time, raw (compressed) bytes.
    type Entry = (
        String,
        Option<u32>,
        CompressionMethod,
        Option<DateTime>,
        Vec<u8>,
    );

    fn entries(zip: &[u8]) -> Vec<Entry> {
        let mut archive = ZipArchive::new(Cursor::new(zip)).unwrap();
        (0..archive.len())
            .map(|i| {
                let mut entry = archive.by_index_raw(i).unwrap();
                let mut raw = Vec::new();
                entry.read_to_end(&mut raw).unwrap();
                (
                    entry.name().unwrap().into_owned(),
                    entry.unix_mode(),
                    entry.compression(),
                    entry.last_modified(),
                    raw,
                )
            })
            .collect()
    }

    fn text(zip: &[u8], name: &str) -> Option<String> {
        let mut archive = ZipArchive::new(Cursor::new(zip)).unwrap();
        let mut entry = match archive.by_name(name) {
            Ok(entry) => entry,
            Err(ZipError::FileNotFound) => return None,
            Err(e) => panic!("{name}: {e}"),
        };
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        Some(text)
    }

    #[test]
    fn a_patch_changes_adds_and_deletes_files_and_copies_the_rest_untouched() {
        // GIVEN a package WHEN app.py is changed, lib/new.py added and lib/util.py deleted
        let before = package();
        let patched = patch_package(
            &before,
            &[
                diff("app.py", APP, FIXED),
                created("lib/new.py", "Y = 2\n"),
                deleted("lib/util.py", "X = 1\n"),
            ],
        )
        .unwrap();

        // THEN the files say so
        assert_eq!(text(&patched.zip, "app.py").as_deref(), Some(FIXED));
        assert_eq!(text(&patched.zip, "lib/new.py").as_deref(), Some("Y = 2\n"));
        assert_eq!(text(&patched.zip, "lib/util.py"), None);
        assert_eq!(patched.code_sha256, code_sha256(&patched.zip));

        let old = entries(&before);
        let new = entries(&patched.zip);
        let names: Vec<&str> = new.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            ["lib/", "app.py", "run.sh", "blob.bin", "lib/new.py"]
        );
        // Untouched entries (the directory, the script, the binary) are the same bytes with
        // the same mode, compression and time.
        for name in ["lib/", "run.sh", "blob.bin"] {
            let find = |list: &[Entry]| list.iter().find(|e| e.0 == name).cloned().unwrap();
            assert_eq!(find(&new), find(&old), "{name}");
        }
        // The changed file keeps its permissions; the new one is 0o644; both at the fixed time.
        let mode = |name: &str| new.iter().find(|e| e.0 == name).unwrap().1;
        assert_eq!(mode("app.py").map(|m| m & 0o777), Some(0o640));
        assert_eq!(mode("lib/new.py").map(|m| m & 0o777), Some(0o644));
        assert_eq!(mode("run.sh").map(|m| m & 0o777), Some(0o755));
        let time = |name: &str| new.iter().find(|e| e.0 == name).unwrap().3;
        assert_eq!(time("app.py"), Some(DateTime::default()));
    }

    #[test]
    fn a_stored_file_stays_stored_when_changed() {
        let patched =
            patch_package(&package(), &[diff("lib/util.py", "X = 1\n", "X = 2\n")]).unwrap();
        let new = entries(&patched.zip);
        let util = new.iter().find(|e| e.0 == "lib/util.py").unwrap();
        assert_eq!(util.2, CompressionMethod::Stored);
        assert_eq!(util.4, b"X = 2\n");
    }

    #[test]
    fn the_same_patch_on_the_same_package_gives_the_same_code_sha256() {
        let files = [diff("app.py", APP, FIXED), created("b.py", "B = 1\n")];
        let first = patch_package(&package(), &files).unwrap();
        let again = patch_package(&package(), &files).unwrap();
        assert_eq!(first, again);
        let other = patch_package(&package(), &[diff("app.py", APP, "pass\n")]).unwrap();
        assert_ne!(other.code_sha256, first.code_sha256);
        assert_ne!(first.code_sha256, code_sha256(&package()));
    }

    #[test]
    fn code_sha256_is_base64_of_the_sha256_of_the_bytes() {
        // sha256("abc"), as `openssl dgst -sha256 -binary | base64` prints it.
        assert_eq!(
            code_sha256(b"abc"),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    #[test]
    fn a_patch_that_does_not_apply_or_targets_a_binary_or_a_directory_is_refused() {
        let err = patch_package(&package(), &[diff("app.py", "other\n", "x\n")]).unwrap_err();
        assert!(
            matches!(err, RewriteError::Patch(PatchError::DoesNotApply { .. })),
            "{err}"
        );
        let err = patch_package(&package(), &[diff("blob.bin", "a\n", "b\n")]).unwrap_err();
        assert!(
            matches!(&err, RewriteError::Patch(PatchError::NotText { path }) if path == "blob.bin"),
            "{err}"
        );
        let err = patch_package(&package(), &[diff("lib", "a\n", "b\n")]).unwrap_err();
        assert!(
            matches!(
                &err,
                RewriteError::NotAFile {
                    kind: "directory",
                    ..
                }
            ),
            "{err}"
        );
        let err = patch_package(&package(), &[diff("../escape.py", "a\n", "b\n")]).unwrap_err();
        assert!(
            matches!(err, RewriteError::Patch(PatchError::BadPath { .. })),
            "{err}"
        );
        let err = patch_package(b"not a zip", &[diff("app.py", APP, FIXED)]).unwrap_err();
        assert!(err.to_string().contains("not a zip"), "{err}");
    }

    #[test]
    fn packages_and_files_over_the_limits_are_refused() {
        let huge = vec![0_u8; usize::try_from(MAX_PACKAGE_BYTES).unwrap() + 1];
        let err = patch_package(&huge, &[diff("app.py", APP, FIXED)]).unwrap_err();
        assert!(matches!(err, RewriteError::TooLarge(_)), "{err}");

        let big = "x".repeat(usize::try_from(MAX_FILE_BYTES).unwrap() + 1);
        let edits = BTreeMap::from([("big.py".to_owned(), FileEdit::Write(big))]);
        let err = rewrite_package(&package(), &edits).unwrap_err();
        assert!(
            matches!(&err, RewriteError::TooLarge(m) if m.contains("big.py")),
            "{err}"
        );
    }

    #[test]
    fn deleting_a_file_the_package_lacks_is_refused() {
        let edits = BTreeMap::from([("gone.py".to_owned(), FileEdit::Delete)]);
        let err = rewrite_package(&package(), &edits).unwrap_err();
        assert!(
            matches!(&err, RewriteError::Patch(PatchError::Missing { path }) if path == "gone.py"),
            "{err}"
        );
    }

    #[test]
    fn bytecode_of_a_changed_or_deleted_module_is_left_out_and_other_bytecode_kept() {
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        for (name, body) in [
            ("app.py", APP.as_bytes()),
            ("__pycache__/app.cpython-312.pyc", b"stale".as_slice()),
            ("__pycache__/app_helpers.cpython-312.pyc", b"other module"),
            ("lib/util.py", b"X = 1\n"),
            ("lib/util.pyc", b"legacy"),
            ("lib/__pycache__/util.cpython-312.opt-1.pyc", b"stale"),
            ("lib/__pycache__/other.cpython-312.pyc", b"kept"),
        ] {
            zip.start_file(name, SimpleFileOptions::default()).unwrap();
            zip.write_all(body).unwrap();
        }
        let package = zip.finish().unwrap().into_inner();
        let patched = patch_package(
            &package,
            &[
                diff("app.py", APP, FIXED),
                deleted("lib/util.py", "X = 1\n"),
            ],
        )
        .unwrap();
        let names: Vec<String> = entries(&patched.zip).into_iter().map(|e| e.0).collect();
        assert_eq!(
            names,
            [
                "app.py",
                "__pycache__/app_helpers.cpython-312.pyc",
                "lib/__pycache__/other.cpython-312.pyc"
            ]
        );
    }

    #[test]
    fn a_dot_slash_path_names_the_same_entry() {
        let patched = patch_package(&package(), &[diff("./app.py", APP, FIXED)]).unwrap();
        assert_eq!(text(&patched.zip, "app.py").as_deref(), Some(FIXED));
        assert_eq!(entries(&patched.zip).len(), entries(&package()).len());
    }
}
