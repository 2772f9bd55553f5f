//! The MARILL architecture changes on a loaded model: which layers are private, head merging and
//! MPC-friendly non-linearities there, and unmerged LoRA adapters on the private projections.

use super::LlamaConfig;
use super::attention::AttentionLayout;
use super::linear::Linear;
use super::llama::Llama;
use super::lora::LoraAdapter;
use super::lora_target::LoraTarget;
use super::variants::{Activation, SoftmaxKind};
use super::weights::layer_prefix;
use anyhow::{Context, Result, ensure};
use candle_core::{Tensor, Var};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::ops::Range;

/// What runs where: layers `0..public_layers` keep the public base weights (the client runs them
/// in plaintext); the rest are private and may merge heads and use approximations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MarillArch {
    pub public_layers: usize,
    pub head_merge: usize,
    pub activation: Activation,
    pub softmax: SoftmaxKind,
}

impl MarillArch {
    /// Standard fine-tuning: every layer private, nothing changed.
    pub fn standard() -> Self {
        MarillArch {
            public_layers: 0,
            head_merge: 1,
            activation: Activation::Silu,
            softmax: SoftmaxKind::Exact,
        }
    }

    pub fn private_layers(&self, model: &Llama) -> Range<usize> {
        self.public_layers..model.num_layers()
    }

    /// Re-lays out the private layers.
    pub fn apply(&self, model: &mut Llama) -> Result<()> {
        ensure!(
            self.public_layers < model.num_layers(),
            "{} public layers leave none of the {} layers private",
            self.public_layers,
            model.num_layers()
        );
        let range = self.private_layers(model);
        for layer in &mut model.layers[range] {
            let a = &mut layer.attention;
            let l = a.layout;
            a.layout =
                AttentionLayout::merged(l.num_heads, l.num_kv_heads, l.head_dim, self.head_merge);
            a.softmax = self.softmax;
            a.check_shapes()?;
            layer.mlp.activation = self.activation;
        }
        Ok(())
    }
}

/// Merged heads must not split a key/value group unevenly: with `g` query heads per KV head,
/// `m` merges `m` consecutive query heads, so either `m | g` (a merged head lies inside one KV
/// group) or `g | m` (a merged head is a run of whole KV groups). Recipes and checkpoint
/// manifests both answer to this rule; `field` names the setting in the error.
pub fn check_head_merge(field: &str, factor: usize, config: &LlamaConfig) -> Result<(), String> {
    let heads = config.num_attention_heads;
    let group = heads / config.num_key_value_heads;
    if !heads.is_multiple_of(factor) {
        return Err(format!(
            "{field} = {factor} must divide the {heads} attention heads"
        ));
    }
    if !(group.is_multiple_of(factor) || factor.is_multiple_of(group)) {
        return Err(format!(
            "{field} = {factor} must divide or be a multiple of the GQA group size {group} \
             ({heads} query heads / {} key-value heads), so that merged heads never split a \
             key/value group unevenly",
            config.num_key_value_heads
        ));
    }
    Ok(())
}

/// A rank above a projection's smaller side cannot add expressiveness, only parameters; it also
/// bounds the factors a checkpoint loader allocates from a manifest's rank.
pub fn check_lora_rank(
    field: &str,
    rank: usize,
    targets: &[LoraTarget],
    config: &LlamaConfig,
) -> Result<(), String> {
    for &target in targets {
        let (fan_in, fan_out) = target.dims(config);
        if rank > fan_in.min(fan_out) {
            return Err(format!(
                "{field} = {rank} exceeds the smaller side of {} ({fan_in} → {fan_out})",
                target.peft_name()
            ));
        }
    }
    Ok(())
}

/// The projection `target` of layer `layer`.
pub fn projection(model: &Llama, layer: usize, target: LoraTarget) -> &Linear {
    let l = &model.layers[layer];
    match target {
        LoraTarget::Q => &l.attention.q_proj,
        LoraTarget::K => &l.attention.k_proj,
        LoraTarget::V => &l.attention.v_proj,
        LoraTarget::O => &l.attention.o_proj,
        LoraTarget::Gate => &l.mlp.gate_proj,
        LoraTarget::Up => &l.mlp.up_proj,
        LoraTarget::Down => &l.mlp.down_proj,
    }
}

/// The projection `target` of layer `layer`, to change.
pub fn projection_mut(model: &mut Llama, layer: usize, target: LoraTarget) -> &mut Linear {
    let l = &mut model.layers[layer];
    match target {
        LoraTarget::Q => &mut l.attention.q_proj,
        LoraTarget::K => &mut l.attention.k_proj,
        LoraTarget::V => &mut l.attention.v_proj,
        LoraTarget::O => &mut l.attention.o_proj,
        LoraTarget::Gate => &mut l.mlp.gate_proj,
        LoraTarget::Up => &mut l.mlp.up_proj,
        LoraTarget::Down => &mut l.mlp.down_proj,
    }
}

/// Names of a LoRA adapter's factors in checkpoints (PEFT's, without its prefix).
pub fn lora_names(layer: usize, target: LoraTarget) -> (String, String) {
    let base = format!("{}.{}", layer_prefix(layer), target.module());
    (
        format!("{base}.lora_A.weight"),
        format!("{base}.lora_B.weight"),
    )
}

/// How to adapt a model with LoRA.
#[derive(Debug, Clone)]
pub struct LoraSpec {
    pub rank: usize,
    pub alpha: f64,
    pub targets: Vec<LoraTarget>,
    pub dropout: f32,
}

/// Attaches trainable adapters to `targets` of `layers`, starting from `init` where it holds
/// factors of that name and of this rank (e.g. the teacher's), else fresh. Returns the variables
/// by name.
pub fn attach_lora(
    model: &mut Llama,
    layers: Range<usize>,
    spec: &LoraSpec,
    init: &HashMap<String, Tensor>,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<(String, Var)>> {
    let device = model.device().clone();
    let mut vars = Vec::new();
    for layer in layers {
        for &target in &spec.targets {
            let linear = projection_mut(model, layer, target);
            let (a_name, b_name) = lora_names(layer, target);
            let (rows, cols) = (linear.out_features(), linear.in_features());
            let fits = |t: &&Tensor, shape: [usize; 2]| t.dims() == shape;
            let a0 = init.get(&a_name).filter(|t| fits(t, [spec.rank, cols]));
            let b0 = init.get(&b_name).filter(|t| fits(t, [rows, spec.rank]));
            let (mut adapter, a, b) = match (a0, b0) {
                (Some(a0), Some(b0)) => {
                    let (a, b) = (Var::from_tensor(a0)?, Var::from_tensor(b0)?);
                    let adapter = LoraAdapter {
                        a: a.as_tensor().clone(),
                        b: b.as_tensor().clone(),
                        alpha: spec.alpha,
                        dropout: 0.0,
                    };
                    (adapter, a, b)
                }
                _ => LoraAdapter::init(cols, rows, spec.rank, spec.alpha, rng, &device)?,
            };
            adapter.dropout = spec.dropout;
            linear.lora = Some(adapter);
            vars.push((a_name, a));
            vars.push((b_name, b));
        }
    }
    Ok(vars)
}

/// Attaches frozen adapters from checkpoint tensors (no variables, no dropout).
pub fn load_lora(
    model: &mut Llama,
    layers: Range<usize>,
    targets: &[LoraTarget],
    alpha: f64,
    tensors: &HashMap<String, Tensor>,
) -> Result<()> {
    for layer in layers {
        for &target in targets {
            let (a_name, b_name) = lora_names(layer, target);
            let get = |n: &str| {
                tensors
                    .get(n)
                    .cloned()
                    .with_context(|| format!("missing tensor {n}"))
            };
            projection_mut(model, layer, target).lora = Some(LoraAdapter {
                a: get(&a_name)?,
                b: get(&b_name)?,
                alpha,
                dropout: 0.0,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LlamaConfig;
    use crate::model::tiny::tiny_weights;
    use crate::model::weights::Weights;
    use candle_core::Device;

    fn tiny(config: &LlamaConfig, weights: HashMap<String, Tensor>) -> Result<Llama> {
        Llama::from_weights(config.clone(), &Weights::new(weights), &Device::Cpu)
    }

    fn ids() -> Result<Tensor> {
        Ok(Tensor::new(&[[4u32, 80, 15, 16, 23, 42, 8]], &Device::Cpu)?)
    }

    #[test]
    fn adapters_start_from_init_factors_only_of_their_rank() -> Result<()> {
        let config = LlamaConfig::tiny();
        let mut model = tiny(&config, tiny_weights(&config, 1)?)?;
        let d = config.hidden_size;
        let (a_name, b_name) = lora_names(1, LoraTarget::Q);
        let (ka, kb) = lora_names(1, LoraTarget::K);
        let kv = config.num_key_value_heads * config.head_dim();
        let init = HashMap::from([
            (
                a_name.clone(),
                Tensor::ones((4, d), candle_core::DType::F32, &Device::Cpu)?,
            ),
            (
                b_name.clone(),
                Tensor::ones((d, 4), candle_core::DType::F32, &Device::Cpu)?,
            ),
            // A teacher of another rank: not used.
            (
                ka.clone(),
                Tensor::ones((8, d), candle_core::DType::F32, &Device::Cpu)?,
            ),
            (
                kb.clone(),
                Tensor::ones((kv, 8), candle_core::DType::F32, &Device::Cpu)?,
            ),
        ]);
        let spec = LoraSpec {
            rank: 4,
            alpha: 8.0,
            targets: vec![LoraTarget::Q, LoraTarget::K],
            dropout: 0.0,
        };
        let mut rng = rand::SeedableRng::seed_from_u64(0);
        let vars: HashMap<String, Var> = attach_lora(&mut model, 1..2, &spec, &init, &mut rng)?
            .into_iter()
            .collect();
        let sum =
            |n: &str| -> Result<f32> { Ok(vars[n].as_tensor().sum_all()?.to_scalar::<f32>()?) };
        assert_eq!(sum(&b_name)?, (d * 4) as f32, "the matching init is used");
        assert_eq!(vars[&ka].as_tensor().dims(), &[4, d]);
        assert_eq!(sum(&kb)?, 0.0, "a fresh B starts at zero");
        Ok(())
    }

    #[test]
    fn merge_factor_one_is_the_unmerged_model() -> Result<()> {
        let config = LlamaConfig::tiny();
        let base = tiny(&config, tiny_weights(&config, 1)?)?;
        let mut same = base.clone();
        MarillArch {
            public_layers: 1,
            ..MarillArch::standard()
        }
        .apply(&mut same)?;
        let a = base.forward(&ids()?, None, false)?.logits;
        let b = same.forward(&ids()?, None, false)?.logits;
        assert_eq!(
            a.flatten_all()?.to_vec1::<f32>()?,
            b.flatten_all()?.to_vec1::<f32>()?
        );
        Ok(())
    }

    #[test]
    fn merging_heads_that_agree_changes_nothing() -> Result<()> {
        // When the query heads of each group are copies of each other, the mean of their
        // scores is each one's score: a merged layer must then compute the unmerged output.
        let config = LlamaConfig::tiny();
        let mut weights = tiny_weights(&config, 2)?;
        let (hd, g) = (
            config.head_dim(),
            config.num_attention_heads / config.num_key_value_heads,
        );
        for layer in 0..config.num_hidden_layers {
            let name = format!("model.layers.{layer}.self_attn.q_proj.weight");
            let q = &weights[&name];
            let rows: Vec<Tensor> = (0..config.num_attention_heads)
                .map(|h| q.narrow(0, (h / g) * g * hd, hd))
                .collect::<candle_core::Result<_>>()?;
            weights.insert(name, Tensor::cat(&rows, 0)?);
        }
        let base = tiny(&config, weights)?;
        let mut merged = base.clone();
        let arch = MarillArch {
            public_layers: 1,
            head_merge: g,
            ..MarillArch::standard()
        };
        arch.apply(&mut merged)?;
        assert_eq!(
            merged.layers[1].attention.layout.softmax_heads(),
            config.num_key_value_heads
        );
        let a = base.forward(&ids()?, None, false)?.logits;
        let b = merged.forward(&ids()?, None, false)?.logits;
        let diff = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(diff < 1e-4, "{diff}");
        // Heads that disagree do change the output.
        let mut other = tiny(&config, tiny_weights(&config, 2)?)?;
        let reference = other.forward(&ids()?, None, false)?.logits;
        arch.apply(&mut other)?;
        let changed = (reference - other.forward(&ids()?, None, false)?.logits)?;
        assert!(changed.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()? > 1e-3);
        Ok(())
    }
}
