//! The project a recipe belongs to, against which its relative paths resolve, so that `train`
//! and `run` work from any working directory.
//!
//! The project is the nearest directory at or above the recipe file that holds `datasets/`;
//! failing that, the nearest at or above the running executable (a checkout's
//! `target/release/marill` finds that checkout). A relative `model.base`, the datasets, the
//! default base model and the default run directory (`runs/<recipe name>`) all lie under it.
//! The project is an absolute path, so what is recorded from it (a checkpoint's base model)
//! does not depend on the working directory either.

use anyhow::{Result, anyhow};
use std::path::{Path, PathBuf};

/// The datasets directory of a project, `<project>/datasets/<task>/data.jsonl`.
pub const DATASETS_DIR: &str = "datasets";

/// Where the runs of a project go when `--out` is not given.
pub const RUNS_DIR: &str = "runs";

/// The project of the recipe file at `recipe`.
pub fn project_of(recipe: &Path) -> Result<PathBuf> {
    let recipe = std::path::absolute(recipe)
        .map_err(|e| anyhow!("{}: cannot make absolute: {e}", recipe.display()))?;
    let exe = std::env::current_exe().ok();
    recipe
        .parent()
        .and_then(holding_datasets)
        .or_else(|| {
            exe.as_deref()
                .and_then(Path::parent)
                .and_then(holding_datasets)
        })
        .ok_or_else(|| {
            anyhow!(
                "{}: no {DATASETS_DIR}/ directory at or above the recipe nor above the marill \
                 binary (put the recipe in a project that has one)",
                recipe.display()
            )
        })
}

/// The nearest directory at or above `start` that holds a `datasets/` directory.
fn holding_datasets(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| dir.join(DATASETS_DIR).is_dir())
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_directory_with_datasets_above_the_recipe_wins() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let outer = dir.path().join("outer");
        let inner = outer.join("inner");
        std::fs::create_dir_all(outer.join(DATASETS_DIR))?;
        std::fs::create_dir_all(inner.join("recipes"))?;
        assert_eq!(project_of(&inner.join("recipes/r.toml"))?, outer);
        std::fs::create_dir_all(inner.join(DATASETS_DIR))?;
        assert_eq!(project_of(&inner.join("recipes/r.toml"))?, inner);
        Ok(())
    }

    #[test]
    fn a_recipe_outside_any_project_falls_back_to_the_executables() -> Result<()> {
        // The test binary lies in this checkout's target/, under the checkout's datasets/.
        let dir = tempfile::tempdir()?;
        let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).canonicalize()?;
        let found = project_of(&dir.path().join("r.toml"))?.canonicalize()?;
        assert_eq!(found, checkout);
        Ok(())
    }

    #[test]
    fn a_relative_recipe_path_gives_an_absolute_project() -> Result<()> {
        let project = project_of(Path::new("recipes/quickstart.toml"))?;
        assert!(project.is_absolute(), "{}", project.display());
        assert!(project.join(DATASETS_DIR).is_dir());
        Ok(())
    }
}
