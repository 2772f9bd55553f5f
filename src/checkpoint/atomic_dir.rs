//! Writing a whole directory so that it is replaced only once the new one is complete.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// Fills a fresh sibling of `dir` with `fill`, then renames it into place. An existing `dir` is
/// replaced only after `fill` succeeded, and only if it is empty or holds `marker` (so that a
/// mistyped output path never deletes an unrelated directory). On failure the staging directory
/// is removed and `dir` is left as it was.
pub fn replace_dir(dir: &Path, marker: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let replacing = dir.exists();
    if replacing {
        ensure_replaceable(dir, marker)?;
    }
    let staging = sibling(dir, "partial")?;
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("{}: cannot remove stale staging", staging.display()))?;
    }
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("{}: cannot create", staging.display()))?;
    if let Err(e) = fill(&staging) {
        std::fs::remove_dir_all(&staging).ok();
        return Err(e);
    }
    if !replacing {
        return std::fs::rename(&staging, dir).with_context(|| {
            format!(
                "{}: cannot move the new directory into place",
                dir.display()
            )
        });
    }
    // Two renames: a crash between them leaves the old directory intact at `retired`.
    let retired = sibling(dir, "old")?;
    if retired.exists() {
        std::fs::remove_dir_all(&retired).ok();
    }
    std::fs::rename(dir, &retired)
        .with_context(|| format!("{}: cannot move the old directory aside", dir.display()))?;
    if let Err(e) = std::fs::rename(&staging, dir) {
        std::fs::rename(&retired, dir).ok();
        std::fs::remove_dir_all(&staging).ok();
        return Err(e).with_context(|| {
            format!(
                "{}: cannot move the new directory into place",
                dir.display()
            )
        });
    }
    std::fs::remove_dir_all(&retired).with_context(|| {
        format!(
            "{}: cannot remove the replaced directory",
            retired.display()
        )
    })
}

fn ensure_replaceable(dir: &Path, marker: &str) -> Result<()> {
    if !dir.is_dir() {
        bail!("{}: exists and is not a directory", dir.display());
    }
    let empty = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .next()
        .is_none();
    if !empty && !dir.join(marker).is_file() {
        bail!(
            "{}: exists and has no {marker}; refusing to replace a directory that is not one",
            dir.display()
        );
    }
    Ok(())
}

/// A hidden sibling, `.{name}.{what}-{pid}`, on the same file system so that rename is atomic.
fn sibling(dir: &Path, what: &str) -> Result<PathBuf> {
    let name = dir
        .file_name()
        .with_context(|| format!("{}: not a directory name", dir.display()))?
        .to_string_lossy();
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok(parent.join(format!(".{name}.{what}-{}", std::process::id())))
}
