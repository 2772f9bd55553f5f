//! Writing, reading and verifying a split checkpoint directory.

use super::atomic_dir::replace_dir;
use super::manifest::{FORMAT_VERSION, Manifest};
use super::tensor_name::check_tensors;
use crate::atomic::write_json_atomic;
use crate::model::source::{sha256_bytes, sha256_file};
use anyhow::{Context, Result, anyhow, bail};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const PRIVATE_FILE: &str = "private.safetensors";

/// What `manifest.json` holds: the manifest, and the sha256 of the `private.safetensors` written
/// with it, so that a corrupted or edited private file is refused instead of silently computing
/// another model. The hash is a property of the written file, not of the model the trainer
/// describes, so it lives here rather than in [`Manifest`].
#[derive(Serialize, Deserialize)]
struct ManifestFile {
    #[serde(flatten)]
    manifest: Manifest,
    private_sha256: String,
}

/// Writes `dir` atomically: the manifest and tensors are checked first, written into a sibling
/// directory, and only then put in place of any existing checkpoint.
pub fn write_checkpoint(
    dir: &Path,
    manifest: &Manifest,
    tensors: &HashMap<String, Tensor>,
) -> Result<()> {
    let refuse = |e: anyhow::Error| anyhow!("{}: not written: {e}", dir.display());
    manifest.validate().map_err(refuse)?;
    check_tensors(manifest, tensors).map_err(refuse)?;
    replace_dir(dir, MANIFEST_FILE, |staging| {
        let private = staging.join(PRIVATE_FILE);
        save_tensors(&private, tensors)?;
        // Hashed after the flush: the bytes on disk are what a reader will verify.
        let file = ManifestFile {
            manifest: manifest.clone(),
            private_sha256: sha256_file(&private)?,
        };
        write_json_atomic(&staging.join(MANIFEST_FILE), &file)
    })
}

/// Reads and checks a checkpoint; tensors land on the CPU. The private file is verified against
/// the manifest's sha256 before it is parsed.
pub fn read_checkpoint(dir: &Path) -> Result<(Manifest, HashMap<String, Tensor>)> {
    let ManifestFile {
        manifest,
        private_sha256,
    } = read_manifest_file(dir)?;
    let path = dir.join(PRIVATE_FILE);
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow!("{}: missing", path.display()),
        _ => anyhow!("{}: cannot read: {e}", path.display()),
    })?;
    // Hash and parse the same bytes, so the file cannot change between the two.
    let actual = sha256_bytes(&bytes);
    if !actual.eq_ignore_ascii_case(&private_sha256) {
        bail!(
            "{}: sha256 {actual} does not match the manifest's private_sha256 \
             {private_sha256}; the file is corrupt or was modified",
            path.display()
        );
    }
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| anyhow!("{}: not a valid safetensors file: {e}", path.display()))?;
    check_tensors(&manifest, &tensors).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok((manifest, tensors))
}

/// Reads and checks `dir/manifest.json` alone (no tensors).
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    Ok(read_manifest_file(dir)?.manifest)
}

fn read_manifest_file(dir: &Path) -> Result<ManifestFile> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            anyhow!("{}: missing (not a split checkpoint)", path.display())
        }
        _ => anyhow!("{}: cannot read: {e}", path.display()),
    })?;
    // The version first, so that a manifest from another format says so rather than failing on
    // whichever field changed.
    #[derive(Deserialize)]
    struct Version {
        format_version: u32,
    }
    let invalid = |e: serde_json::Error| anyhow!("{}: invalid manifest: {e}", path.display());
    let version: Version = serde_json::from_str(&text).map_err(invalid)?;
    if version.format_version != FORMAT_VERSION {
        bail!(
            "{}: format_version {}, but this marill reads version {FORMAT_VERSION}",
            path.display(),
            version.format_version
        );
    }
    let file: ManifestFile = serde_json::from_str(&text).map_err(invalid)?;
    file.manifest
        .validate()
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(file)
}

/// Refuses a base model whose weights are not the ones the checkpoint was trained on.
pub fn verify_base(manifest: &Manifest, actual_sha256: &str) -> Result<()> {
    let expected = &manifest.base.sha256;
    if !expected.eq_ignore_ascii_case(actual_sha256) {
        bail!(
            "base model {}: sha256 {actual_sha256} does not match the checkpoint's base sha256 \
             {expected}; the private tensors belong to another base model",
            manifest.base.source
        );
    }
    Ok(())
}

/// Saves tensors as safetensors and flushes the file to disk (the directory rename that follows
/// must not publish a file still in the page cache only).
pub(super) fn save_tensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    candle_core::safetensors::save(tensors, path)
        .with_context(|| format!("{}: cannot write", path.display()))?;
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("{}: cannot flush", path.display()))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{BASE_SHA256, flip_bytes, lora_tensors, random, student};
    use super::super::manifest::{CheckpointKind, HeadMerge, LoraInfo};
    use super::*;
    use crate::model::lora_target::LoraTarget;
    use std::path::PathBuf;

    fn assert_same_tensors(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) {
        let mut names: Vec<&String> = a.keys().collect();
        names.sort();
        let mut other: Vec<&String> = b.keys().collect();
        other.sort();
        assert_eq!(names, other);
        for name in names {
            let x: Vec<f32> = a[name].flatten_all().unwrap().to_vec1().unwrap();
            let y: Vec<f32> = b[name].flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(a[name].dims(), b[name].dims(), "{name}");
            assert_eq!(x, y, "{name}");
        }
    }

    /// A temporary directory holding the fixture student checkpoint, and the checkpoint's path.
    fn written_student() -> Result<(tempfile::TempDir, PathBuf)> {
        let dir = tempfile::tempdir()?;
        let ckpt = dir.path().join("student");
        let manifest = student();
        write_checkpoint(&ckpt, &manifest, &lora_tensors(&manifest))?;
        Ok((dir, ckpt))
    }

    fn message(result: Result<impl std::fmt::Debug>) -> String {
        let text = format!("{:#}", result.expect_err("should fail"));
        assert!(!text.contains('\n'), "{text}");
        text
    }

    #[test]
    fn write_then_read_round_trips() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let ckpt = dir.path().join("student");
        let manifest = student();
        let mut tensors = lora_tensors(&manifest);
        tensors.insert("model.norm.weight".into(), random(48));
        tensors.insert(
            "model.layers.3.post_attention_layernorm.weight".into(),
            random(48),
        );
        write_checkpoint(&ckpt, &manifest, &tensors)?;
        let (read, read_tensors) = read_checkpoint(&ckpt)?;
        assert_eq!(read, manifest);
        assert_same_tensors(&read_tensors, &tensors);
        // Only the checkpoint itself is left in the parent: no staging directories.
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
        Ok(())
    }

    #[test]
    fn a_rejected_write_keeps_the_old_checkpoint() -> Result<()> {
        let (dir, ckpt) = written_student()?;
        let manifest = student();
        let before = std::fs::read(ckpt.join(PRIVATE_FILE))?;

        // Layer 1 is public: a LoRA factor there would leak into the client's prefix.
        let mut leaking = lora_tensors(&manifest);
        leaking.insert(
            "model.layers.1.self_attn.q_proj.lora_A.weight".into(),
            random((4, 48)),
        );
        let text = message(write_checkpoint(&ckpt, &manifest, &leaking));
        assert!(text.contains("layer 1 is public"), "{text}");
        assert_eq!(std::fs::read(ckpt.join(PRIVATE_FILE))?, before);
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);

        // A valid write replaces it.
        let new = lora_tensors(&manifest);
        write_checkpoint(&ckpt, &manifest, &new)?;
        assert_same_tensors(&read_checkpoint(&ckpt)?.1, &new);
        Ok(())
    }

    #[test]
    fn a_failing_fill_leaves_the_old_directory() -> Result<()> {
        let (dir, ckpt) = written_student()?;
        let before = std::fs::read(ckpt.join(MANIFEST_FILE))?;
        let result = replace_dir(&ckpt, MANIFEST_FILE, |staging| {
            std::fs::write(staging.join(MANIFEST_FILE), b"half")?;
            bail!("disk full")
        });
        assert!(message(result).contains("disk full"));
        assert_eq!(std::fs::read(ckpt.join(MANIFEST_FILE))?, before);
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
        Ok(())
    }

    #[test]
    fn refuses_to_replace_a_directory_that_is_not_a_checkpoint() -> Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("notes.txt"), b"keep me")?;
        let manifest = student();
        let text = message(write_checkpoint(
            dir.path(),
            &manifest,
            &lora_tensors(&manifest),
        ));
        assert!(text.contains("has no manifest.json"), "{text}");
        assert!(dir.path().join("notes.txt").is_file());
        Ok(())
    }

    #[test]
    fn tensors_the_manifest_does_not_allow_are_rejected_on_read() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let manifest = student();
        let cases = [
            (
                "model.layers.2.self_attn.k_proj.lora_A.weight",
                (4, 48),
                "not among",
            ),
            (
                "model.layers.2.self_attn.q_proj.lora_A.weight",
                (5, 48),
                "expected [4, 48]",
            ),
            (
                "model.layers.7.self_attn.q_proj.weight",
                (48, 48),
                "no layer 7",
            ),
            (
                "model.embed_tokens.weight",
                (320, 48),
                "embedding is public",
            ),
        ];
        for (name, shape, expected) in cases {
            let mut tensors = lora_tensors(&manifest);
            tensors.insert(name.into(), random(shape));
            let ckpt = dir.path().join("bad");
            write_checkpoint(&ckpt, &manifest, &lora_tensors(&manifest))?;
            // Bypass the writer's checks, as a foreign tool might.
            candle_core::safetensors::save(&tensors, ckpt.join(PRIVATE_FILE))?;
            reseal(&ckpt)?;
            let text = message(read_checkpoint(&ckpt));
            assert!(
                text.contains(PRIVATE_FILE) && text.contains(expected),
                "{text}"
            );
        }
        let mut half = lora_tensors(&manifest);
        let name = "model.layers.2.self_attn.q_proj.lora_A.weight";
        half.insert(name.into(), half[name].to_dtype(candle_core::DType::F16)?);
        let text = message(write_checkpoint(&dir.path().join("half"), &manifest, &half));
        assert!(text.contains("is f16, expected f32"), "{text}");
        // A LoRA factor in a checkpoint whose manifest has no LoRA.
        let mut merged = student();
        merged.lora = None;
        let text = message(write_checkpoint(
            &dir.path().join("merged"),
            &merged,
            &lora_tensors(&manifest),
        ));
        assert!(text.contains("manifest has no LoRA"), "{text}");
        // An A factor without its B.
        let mut unpaired = lora_tensors(&manifest);
        unpaired.remove("model.layers.3.self_attn.v_proj.lora_B.weight");
        let text = message(write_checkpoint(
            &dir.path().join("u"),
            &manifest,
            &unpaired,
        ));
        assert!(text.contains("no partner"), "{text}");
        Ok(())
    }

    #[test]
    fn broken_manifests_name_the_file() -> Result<()> {
        let (_dir, ckpt) = written_student()?;
        let manifest_path = ckpt.join(MANIFEST_FILE);

        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&manifest_path)?)?;
        // A version-1 manifest (from before private_sha256) says so instead of a missing field.
        json["format_version"] = 1.into();
        json.as_object_mut().unwrap().remove("private_sha256");
        std::fs::write(&manifest_path, serde_json::to_string(&json)?)?;
        let text = message(read_checkpoint(&ckpt));
        assert!(
            text.contains("manifest.json: format_version 1, but this marill reads version 2"),
            "{text}"
        );

        json["format_version"] = FORMAT_VERSION.into();
        std::fs::write(&manifest_path, serde_json::to_string(&json)?)?;
        let text = message(read_checkpoint(&ckpt));
        assert!(text.contains("missing field `private_sha256`"), "{text}");

        let truncated = format!("{{\"format_version\": {FORMAT_VERSION}, \"kind\": ");
        std::fs::write(&manifest_path, truncated)?;
        let text = message(read_checkpoint(&ckpt));
        assert!(text.contains("manifest.json: invalid manifest"), "{text}");

        std::fs::remove_file(&manifest_path)?;
        let text = message(read_checkpoint(&ckpt));
        assert!(text.contains("manifest.json: missing"), "{text}");
        Ok(())
    }

    #[test]
    fn missing_or_corrupt_tensors_name_the_file() -> Result<()> {
        let (_dir, ckpt) = written_student()?;
        let private = ckpt.join(PRIVATE_FILE);
        let bytes = std::fs::read(&private)?;
        std::fs::write(&private, &bytes[..bytes.len() / 2])?;
        let text = message(read_checkpoint(&ckpt));
        assert!(
            text.contains("private.safetensors: sha256") && text.contains("does not match"),
            "{text}"
        );
        // Even with a matching hash, a broken file is refused by the parser.
        reseal(&ckpt)?;
        let text = message(read_checkpoint(&ckpt));
        assert!(
            text.contains("private.safetensors: not a valid safetensors"),
            "{text}"
        );
        std::fs::remove_file(&private)?;
        let text = message(read_checkpoint(&ckpt));
        assert!(text.contains("private.safetensors: missing"), "{text}");
        Ok(())
    }

    /// Records the current private file's sha256 in the manifest, as a foreign tool writing
    /// both files would.
    fn reseal(ckpt: &Path) -> Result<()> {
        let path = ckpt.join(MANIFEST_FILE);
        let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        json["private_sha256"] = sha256_file(&ckpt.join(PRIVATE_FILE))?.into();
        std::fs::write(&path, serde_json::to_string(&json)?)?;
        Ok(())
    }

    #[test]
    fn the_manifest_records_the_private_files_sha256() -> Result<()> {
        let (_dir, ckpt) = written_student()?;
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(ckpt.join(MANIFEST_FILE))?)?;
        assert_eq!(
            json["private_sha256"].as_str(),
            Some(sha256_file(&ckpt.join(PRIVATE_FILE))?.as_str())
        );
        Ok(())
    }

    #[test]
    fn flipped_bytes_in_the_private_file_are_refused() -> Result<()> {
        let (_dir, ckpt) = written_student()?;
        flip_bytes(&ckpt.join(PRIVATE_FILE), 1000)?;
        let text = message(read_checkpoint(&ckpt));
        assert!(
            text.contains("private.safetensors: sha256")
                && text.contains("does not match the manifest's private_sha256"),
            "{text}"
        );
        Ok(())
    }

    fn lora(manifest: &mut Manifest) -> &mut LoraInfo {
        manifest.lora.as_mut().expect("fixture has LoRA")
    }

    /// A change to the fixture student.
    type Edit = fn(&mut Manifest);

    /// The one-line error of validating the fixture student after `edit`.
    fn refused(edit: Edit) -> String {
        let mut manifest = student();
        edit(&mut manifest);
        message(manifest.validate())
    }

    #[test]
    fn inconsistent_manifests_are_refused() {
        let cases: [(Edit, &str); 12] = [
            (
                |m| m.kind = CheckpointKind::Teacher,
                "teacher checkpoint keeps every layer",
            ),
            (
                |m| m.head_merge.groups[1][0] = vec![0, 1, 1],
                "layer 3: merged head 0 is [0, 1, 1], expected heads 0..3",
            ),
            // A partition the loader would not build (it merges consecutive heads).
            (
                |m| m.head_merge.groups[0] = vec![vec![3, 4, 5], vec![0, 1, 2]],
                "merged head 0 is [3, 4, 5]",
            ),
            (
                |m| drop(m.head_merge.groups[0].pop()),
                "has 1 merged heads, expected 2",
            ),
            (|m| drop(m.head_merge.groups.pop()), "one per private layer"),
            // Tiny has 6 heads in KV groups of 3: 2 divides the heads but splits every group.
            (
                |m| m.head_merge = HeadMerge::uniform(2, &m.base.config, &m.split),
                "head_merge.factor = 2 must divide or be a multiple of the GQA group size 3",
            ),
            (
                |m| m.head_merge.factor = 4,
                "head_merge.factor = 4 must divide the 6",
            ),
            (
                |m| lora(m).rank = 1_000_000_000,
                "lora.rank = 1000000000 exceeds the smaller side of q_proj (48 → 48)",
            ),
            (
                |m| lora(m).rank = 17,
                "lora.rank = 17 exceeds the smaller side of v_proj (48 → 16)",
            ),
            (
                |m| lora(m).targets = vec![LoraTarget::Q; 2],
                "lora.targets names \"q\" twice",
            ),
            (
                |m| lora(m).alpha = f64::INFINITY,
                "lora.alpha inf must be a positive number",
            ),
            (
                |m| m.task.max_len = 1025,
                "task.max_len 1025 must be in 1..=1024",
            ),
        ];
        for (edit, expected) in cases {
            let text = refused(edit);
            assert!(text.contains(expected), "`{expected}` not in: {text}");
        }
    }

    #[test]
    fn verify_base_refuses_another_base() -> Result<()> {
        let manifest = student();
        verify_base(&manifest, BASE_SHA256)?;
        verify_base(&manifest, &BASE_SHA256.to_uppercase())?;
        let other = "0".repeat(64);
        let text = message(verify_base(&manifest, &other));
        for part in [other.as_str(), BASE_SHA256, "checkpoints/base/tiny.gguf"] {
            assert!(text.contains(part), "{part} missing from {text}");
        }
        Ok(())
    }
}
