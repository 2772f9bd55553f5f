//! A split checkpoint as a runnable model: the public base model, verified against the
//! manifest, with the private tensors and the MARILL architecture applied.

use super::io::{MANIFEST_FILE, read_checkpoint, read_manifest, verify_base};
use super::manifest::{BaseModel, Manifest};
use super::tensor_name::{LayerNorm, PrivateTensor};
use crate::model::marill::{MarillArch, load_lora, lora_names, projection_mut};
use crate::model::{LoadedModel, ModelSource, load};
use anyhow::{Context, Result, anyhow};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Whether `path` is a split checkpoint directory.
pub fn is_checkpoint(path: &Path) -> bool {
    path.join(MANIFEST_FILE).is_file()
}

/// A split checkpoint loaded: the model with its private tensors in place.
pub struct Checkpoint {
    pub loaded: LoadedModel,
    pub manifest: Manifest,
    /// What `private.safetensors` held.
    pub private: Vec<PrivateTensor>,
}

/// The verified base model in the checkpoint's architecture, without its private tensors. The
/// manifest (validated when read) is checked against the base's config before anything is built.
fn base_in_architecture(dir: &Path, manifest: &Manifest, device: &Device) -> Result<LoadedModel> {
    let source = ModelSource::parse(&manifest.base.source)
        .with_context(|| format!("{}: base model", dir.display()))?;
    let mut loaded = load(&source, device)?;
    verify_base(manifest, &BaseModel::weights_sha256(&loaded.weight_files)?)
        .with_context(|| format!("{}", dir.display()))?;
    // The same weights file can still come with an edited architecture in the manifest: every
    // size below was bounded against that, so it must be the base's own.
    manifest
        .check_base(&loaded.model.config)
        .map_err(|e| anyhow!("{}: {e}", dir.join(MANIFEST_FILE).display()))?;
    MarillArch {
        public_layers: manifest.split.public_layers,
        head_merge: manifest.head_merge.factor,
        activation: manifest.approximations.activation,
        softmax: manifest.approximations.softmax,
    }
    .apply(&mut loaded.model)?;
    Ok(loaded)
}

/// The checkpoint as a party without the server's secrets sees it: the manifest and the base
/// model, with zero LoRA factors of the manifest's shapes (`private.safetensors` is not read).
/// Right in every shape, so it builds the same secure computation; its private values are
/// placeholders that never enter the protocol.
pub fn load_checkpoint_public(dir: &Path, device: &Device) -> Result<Checkpoint> {
    let manifest = read_manifest(dir)?;
    let mut loaded = base_in_architecture(dir, &manifest, device)?;
    if let Some(lora) = &manifest.lora {
        let config = loaded.model.config.clone();
        let mut zeros = HashMap::new();
        for layer in manifest.split.private_range() {
            for &target in &lora.targets {
                let (inp, out) = target.dims(&config);
                let (a, b) = lora_names(layer, target);
                zeros.insert(a, Tensor::zeros((lora.rank, inp), DType::F32, device)?);
                zeros.insert(b, Tensor::zeros((out, lora.rank), DType::F32, device)?);
            }
        }
        let range = manifest.split.private_range();
        load_lora(&mut loaded.model, range, &lora.targets, lora.alpha, &zeros)?;
    }
    Ok(Checkpoint {
        loaded,
        manifest,
        private: Vec::new(),
    })
}

pub fn load_checkpoint(dir: &Path, device: &Device) -> Result<Checkpoint> {
    let (manifest, tensors) = read_checkpoint(dir)?;
    let mut private = Vec::with_capacity(tensors.len());
    let mut loaded = base_in_architecture(dir, &manifest, device)?;
    let model = &mut loaded.model;
    for (name, tensor) in &tensors {
        let tensor = tensor.to_device(device)?;
        let kind = PrivateTensor::parse(name)?;
        private.push(kind);
        match kind {
            PrivateTensor::Lora { .. } => {} // attached below, by pairs
            PrivateTensor::Projection { layer, target } => {
                projection_mut(model, layer, target).weight = tensor;
            }
            PrivateTensor::Norm { layer, norm } => {
                let l = &mut model.layers[layer];
                let n = match norm {
                    LayerNorm::Input => &mut l.input_norm,
                    LayerNorm::PostAttention => &mut l.post_attention_norm,
                };
                n.weight = tensor;
            }
            PrivateTensor::FinalNorm => model.norm.weight = tensor,
            PrivateTensor::Head => model.lm_head.weight = tensor,
        }
    }
    if let Some(lora) = &manifest.lora {
        let range = manifest.split.private_range();
        load_lora(model, range, &lora.targets, lora.alpha, &tensors)?;
    }
    Ok(Checkpoint {
        loaded,
        manifest,
        private,
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{flip_bytes, student_over_tiny_base};
    use super::super::io::PRIVATE_FILE;
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// The error of a load that must fail, checked to be one line.
    fn message(result: Result<Checkpoint>) -> String {
        let Err(e) = result else {
            panic!("should fail")
        };
        let text = format!("{e:#}");
        assert!(!text.contains('\n'), "{text}");
        text
    }

    fn edit_manifest(ckpt: &Path, edit: impl FnOnce(&mut Value)) -> Result<()> {
        let path = ckpt.join(MANIFEST_FILE);
        let mut json: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        edit(&mut json);
        std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
        Ok(())
    }

    #[test]
    fn flipped_private_bytes_are_refused_by_load_checkpoint() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let ckpt = student_over_tiny_base(dir.path())?;
        load_checkpoint(&ckpt, &Device::Cpu)?;
        flip_bytes(&ckpt.join(PRIVATE_FILE), 1000)?;
        let text = message(load_checkpoint(&ckpt, &Device::Cpu));
        assert!(
            text.contains(&ckpt.join(PRIVATE_FILE).display().to_string())
                && text.contains("does not match the manifest's private_sha256"),
            "{text}"
        );
        Ok(())
    }

    /// The one-line error of [`load_checkpoint_public`] on the tiny student with `edit` made to
    /// its manifest; the manifest's path is `{manifest}` in `expected`, which the error must hold.
    fn assert_refused(edit: impl FnOnce(&mut Value), expected: &str) -> Result<()> {
        let dir = tempfile::tempdir()?;
        let ckpt = student_over_tiny_base(dir.path())?;
        edit_manifest(&ckpt, edit)?;
        let text = message(load_checkpoint_public(&ckpt, &Device::Cpu));
        let manifest = ckpt.join(MANIFEST_FILE).display().to_string();
        let expected = expected.replace("{manifest}", &manifest);
        assert!(text.contains(&expected), "`{expected}` not in: {text}");
        Ok(())
    }

    #[test]
    fn a_split_with_more_layers_than_the_base_is_refused() -> Result<()> {
        // Consistent in itself (config, split and one head partition per private layer agree),
        // so only the base model can tell.
        let forty = |m: &mut Value| {
            m["base"]["config"]["num_hidden_layers"] = 40.into();
            m["split"]["num_layers"] = 40.into();
            let layer = m["head_merge"]["groups"][0].clone();
            m["head_merge"]["groups"] = json!(vec![layer; 38]);
        };
        assert_refused(
            forty,
            "{manifest}: split claims 40 layers but the base model has 4",
        )
    }

    #[test]
    fn a_recorded_architecture_other_than_the_bases_is_refused() -> Result<()> {
        assert_refused(
            |m| m["base"]["config"]["vocab_size"] = 640.into(),
            "{manifest}: base.config.vocab_size is 640 but the base model's is 320",
        )
    }

    #[test]
    fn a_billion_rank_is_refused_before_any_allocation() -> Result<()> {
        // Zero factors of this rank would take 1e9 · 48 · 4 bytes each.
        assert_refused(
            |m| m["lora"]["rank"] = 1_000_000_000u64.into(),
            "{manifest}: lora.rank = 1000000000 exceeds the smaller side of q_proj",
        )
    }

    #[test]
    fn a_head_merge_factor_the_base_cannot_have_is_refused() -> Result<()> {
        // Factor 2 divides the 6 heads but splits their KV groups of 3; the groups match it.
        let two = |m: &mut Value| {
            m["head_merge"]["factor"] = 2.into();
            m["head_merge"]["groups"] = json!(vec![[[0, 1], [2, 3], [4, 5]]; 2]);
        };
        assert_refused(
            two,
            "{manifest}: head_merge.factor = 2 must divide or be a multiple of the GQA group size 3",
        )
    }

    /// Every node of a JSON value, as a JSON pointer.
    fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => map
                .iter()
                .for_each(|(k, v)| pointers(v, format!("{at}/{k}"), out)),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .for_each(|(i, v)| pointers(v, format!("{at}/{i}"), out)),
            _ => {}
        }
        out.push(at);
    }

    /// One edit of a manifest's JSON, at a node chosen by a (wrapped) index.
    #[derive(Debug, Clone)]
    enum Edit {
        /// A count in place of a count outside the head partitions (whose many entries would
        /// otherwise draw most edits): the edits that parse, and so reach the checks.
        Count(usize, u64),
        /// Any value in place of any node.
        Replace(usize, Value),
        /// The node removed from its parent.
        Remove(usize),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let count = prop_oneof![
            prop_oneof![Just(0u64), Just(1), Just(2), Just(3), Just(5), Just(40)],
            prop_oneof![Just(1u64 << 32), Just(1_000_000_000), Just(u64::MAX)],
            any::<u64>(),
        ];
        let value = prop_oneof![
            prop_oneof![Just(-1.0f64), Just(0.5), Just(1e300)].prop_map(Value::from),
            Just(Value::Null),
            Just(json!("q")),
            Just(json!([])),
            Just(json!([[0, 1, 2]])),
        ];
        prop_oneof![
            3 => (any::<usize>(), count).prop_map(|(at, n)| Edit::Count(at, n)),
            1 => (any::<usize>(), value).prop_map(|(at, v)| Edit::Replace(at, v)),
            1 => any::<usize>().prop_map(Edit::Remove),
        ]
    }

    fn apply(json: &mut Value, edit: Edit) {
        let mut all = Vec::new();
        pointers(json, String::new(), &mut all);
        let counts: Vec<&String> = all
            .iter()
            .filter(|p| !p.starts_with("/head_merge/groups/"))
            .filter(|p| json.pointer(p).is_some_and(Value::is_u64))
            .collect();
        match edit {
            // An earlier edit may have left no count.
            Edit::Count(_, _) if counts.is_empty() => {}
            Edit::Count(at, n) => {
                *json.pointer_mut(counts[at % counts.len()]).expect("listed") = n.into()
            }
            Edit::Replace(at, value) => {
                *json.pointer_mut(&all[at % all.len()]).expect("listed") = value
            }
            Edit::Remove(at) => {
                let (parent, key) = all[at % all.len()].rsplit_once('/').unwrap_or(("", ""));
                match json.pointer_mut(parent) {
                    Some(Value::Object(map)) => drop(map.remove(key)),
                    // An earlier removal may have shortened the array.
                    Some(Value::Array(items)) => {
                        if let Some(i) = key.parse().ok().filter(|&i: &usize| i < items.len()) {
                            items.remove(i);
                        }
                    }
                    _ => *json = Value::Null,
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever a few edits make of a valid manifest, both loaders answer without panicking
        /// (a panic or an abort fails the test), and an error is one line.
        #[test]
        fn mutated_manifests_never_panic_a_loader(
            edits in proptest::collection::vec(edit(), 1..4)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let ckpt = student_over_tiny_base(dir.path()).unwrap();
            edit_manifest(&ckpt, |m| {
                edits.into_iter().for_each(|e| apply(m, e));
            }).unwrap();
            for result in [load_checkpoint_public(&ckpt, &Device::Cpu), load_checkpoint(&ckpt, &Device::Cpu)] {
                if let Err(e) = result {
                    let text = format!("{e:#}");
                    prop_assert!(!text.contains('\n'), "{}", text);
                }
            }
        }

        /// Random bytes overwritten in the manifest's text: the same.
        #[test]
        fn corrupted_manifest_bytes_never_panic_a_loader(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let ckpt = student_over_tiny_base(dir.path()).unwrap();
            let path = ckpt.join(MANIFEST_FILE);
            let mut bytes = std::fs::read(&path).unwrap();
            let len = bytes.len();
            for (at, byte) in flips {
                bytes[at % len] = byte;
            }
            std::fs::write(&path, bytes).unwrap();
            if let Err(e) = load_checkpoint_public(&ckpt, &Device::Cpu) {
                let text = format!("{e:#}");
                prop_assert!(!text.contains('\n'), "{}", text);
            }
        }
    }
}
