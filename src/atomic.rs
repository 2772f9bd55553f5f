//! Atomic file writes: a reader sees the old file or the complete new one, never a torn write.

use anyhow::{Context, Result, bail};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// The directory `path` is written in.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The sibling a write goes through before it is renamed over `path`.
fn temp_path(dir: &Path, path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(".{name}.{}.tmp", std::process::id()))
}

/// Fails now, with the reason, where [`write_atomic`] would fail to write `path` later (after
/// minutes of work), or would replace something that is not a file: `path` must name a regular
/// file or nothing yet, in an existing directory that takes a new file (probed by creating and
/// removing the very temporary file the write goes through). Unlike the write, it does not create
/// missing directories: a mistyped one is reported, not made.
pub fn check_writable(path: &Path) -> Result<()> {
    if path.file_name().is_none() {
        bail!("not a file name");
    }
    let dir = parent_dir(path);
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => bail!("{} is not a directory", dir.display()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            bail!("directory {} does not exist", dir.display())
        }
        Err(e) => bail!("{}: {e}", dir.display()),
    }
    match std::fs::metadata(path) {
        // The rename would replace a device or a pipe with a regular file.
        Ok(meta) if !meta.is_file() => bail!("exists and is not a regular file"),
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => bail!("{e}"),
    }
    let tmp = temp_path(dir, path);
    std::fs::File::create(&tmp)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    std::fs::remove_file(&tmp).with_context(|| format!("{}: cannot remove", tmp.display()))
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let tmp = temp_path(dir, path);
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("{}: cannot write", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}

pub fn write_json_atomic(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(value)?;
    text.push(b'\n');
    write_atomic(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(path: &Path) -> String {
        format!("{:#}", check_writable(path).expect_err("should be refused"))
    }

    #[test]
    fn a_writable_path_passes_and_leaves_nothing_behind() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let report = dir.path().join("report.json");
        check_writable(&report)?;
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 0);
        std::fs::write(&report, "old")?;
        check_writable(&report)?;
        assert_eq!(std::fs::read_to_string(&report)?, "old");
        Ok(())
    }

    #[test]
    fn an_unwritable_path_is_refused_with_the_reason() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let missing = dir.path().join("no/such/dir");
        assert_eq!(
            reason(&missing.join("r.json")),
            format!("directory {} does not exist", missing.display())
        );
        assert!(!missing.exists());
        let file = dir.path().join("file");
        std::fs::write(&file, "")?;
        assert_eq!(
            reason(&file.join("r.json")),
            format!("{} is not a directory", file.display())
        );
        assert_eq!(reason(dir.path()), "exists and is not a regular file");
        assert_eq!(
            reason(Path::new("/dev/null")),
            "exists and is not a regular file"
        );
        assert!(reason(Path::new("/proc/x")).starts_with("cannot create a file in /proc"));
        assert_eq!(reason(Path::new("")), "not a file name");
        Ok(())
    }
}
