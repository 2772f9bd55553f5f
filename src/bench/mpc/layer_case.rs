//! The layer cases of `bench mpc`: one transformer layer of a given shape and architecture
//! with seeded random weights, run on shares by [`crate::secure::layer`] — the code
//! `eval --mode mpc` runs, every projection weight the server's secret (a teacher's layer) —
//! and scored against a plaintext forward of the same layer: for a Llama layer the plaintext
//! model's own (candle, f32: on the SmolLM2 case it is within 2e-7 relative of an f64
//! evaluation, 1e-6 on the update, far below the fixed-point error), for BERT's and GPT-2's
//! the f64 [`reference_layer`].
//!
//! Llama weights are those of [`tiny_weights`] (uniform, variance `1/fan_in`, norm gains
//! `1 ± 0.2`); BERT's and GPT-2's are normal with variance `1/fan_in`, biases and norm shifts
//! of standard deviation 0.1, norm gains `1 ± 0.1` (one standard deviation). In both, queries
//! and keys are twice as sharp so that attention is not uniform. A pre-norm layer's input is a
//! unit normal residual stream with two outlier channels in the hundreds, as real Llama and
//! GPT-2 activations have; a post-norm (BERT) layer's is the previous layer's norm output,
//! unit normal.

use super::case::{CaseSpec, SEED, gaussian};
use super::reference_layer::reference_layer;
use crate::model::attention::AttentionLayout;
use crate::model::linear::Linear;
use crate::model::tiny::tiny_weights;
use crate::model::weights::Weights;
use crate::model::{Llama, LlamaConfig};
use crate::mpc::ops;
use crate::mpc::protocol::{Protocol, Role};
use crate::secure::Secrecy;
use crate::secure::architecture::{
    Dense, FeedForward, LayerArchitecture, LayerParams, NormParams, NormPlacement,
};
use crate::secure::layer::LayerWeights;
use crate::secure::packing::{Packing, Queries};
use anyhow::{Result, ensure};
use candle_core::{DType, Device, Tensor};

/// One decoder layer of SmolLM2-135M's shape: d 576, 9 query and 3 key/value heads of width
/// 64, SwiGLU of width 1536, RoPE base 1e5, RMSNorm eps 1e-5. The vocabulary does not enter a
/// layer.
pub fn smollm2_layer() -> LlamaConfig {
    LlamaConfig {
        hidden_size: 576,
        intermediate_size: 1536,
        num_hidden_layers: 1,
        num_attention_heads: 9,
        num_key_value_heads: 3,
        vocab_size: 1,
        rope_theta: 100_000.0,
        rms_norm_eps: 1e-5,
        tie_word_embeddings: true,
        max_position_embeddings: 8192,
    }
}

/// A one-layer model of `config`'s shape with weights from `seed`.
pub(super) fn random_layer(config: &LlamaConfig, seed: u64) -> Result<Llama> {
    ensure!(
        config.num_hidden_layers == 1,
        "a layer case has one layer, not {}",
        config.num_hidden_layers
    );
    let weights = Weights::new(tiny_weights(config, seed)?);
    let mut model = Llama::from_weights(config.clone(), &weights, &Device::Cpu)?;
    for layer in &mut model.layers {
        let a = &mut layer.attention;
        a.q_proj.weight = (&a.q_proj.weight * 2.0)?;
        a.k_proj.weight = (&a.k_proj.weight * 2.0)?;
    }
    Ok(model)
}

/// `[tokens, d]` residual stream: unit normal, channels 7 and 300 (when present) near 120 and
/// -80.
fn random_input(tokens: usize, d: usize) -> Vec<f64> {
    gaussian(tokens * d, 1.0, 78)
        .into_iter()
        .enumerate()
        .map(|(i, z)| match i % d {
            7 => 120.0 + z,
            300 => -80.0 + z,
            _ => z,
        })
        .collect()
}

/// The plaintext layer on `x` `[tokens, d]`, causal.
fn plaintext_layer(model: &Llama, x: &[f64], tokens: usize) -> Result<Vec<f64>> {
    let d = model.config.hidden_size;
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let x = Tensor::from_vec(x32, (1, tokens, d), model.device())?;
    let allowed = model.attention_mask(tokens, None)?;
    let (y, _) = model.forward_layers(&x, 0..model.num_layers(), &allowed, false)?;
    Ok(y.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?)
}

/// The case of one Llama layer of `config`'s shape on one sequence of `tokens` tokens.
pub fn decoder_layer(config: &LlamaConfig, tokens: usize) -> Result<CaseSpec> {
    let model = random_layer(config, SEED)?;
    let x = random_input(tokens, config.hidden_size);
    let want = plaintext_layer(&model, &x, tokens)?;
    let layer = LayerWeights::llama(&model.layers[0], config.rope_theta, Secrecy::FullWeights)?;
    layer_spec(layer, x, tokens, want)
}

/// The shape of a BERT or GPT-2 layer (heads of width `hidden / heads`).
#[derive(Debug, Clone, Copy)]
pub struct LayerShape {
    pub hidden: usize,
    pub heads: usize,
    pub ffn: usize,
}

impl LayerShape {
    /// BERT-base's and GPT-2 small's: d 768, 12 heads of 64, FFN 3072.
    pub fn base() -> Self {
        LayerShape {
            hidden: 768,
            heads: 12,
            ffn: 3072,
        }
    }
}

/// Random parameters of a layer of `shape` and `arch`, with biases, from the streams of tags
/// `tag..`.
pub(super) fn random_params(
    shape: LayerShape,
    arch: &LayerArchitecture,
    tag: u64,
) -> Result<LayerParams> {
    let LayerShape {
        hidden: d,
        heads,
        ffn,
    } = shape;
    let mut tag = tag;
    let mut stream = |n: usize, sd: f64| {
        tag += 1;
        gaussian(n, sd, tag)
    };
    let mut dense = |out: usize, inp: usize, sharpness: f64| -> Result<Dense> {
        let w: Vec<f32> = stream(out * inp, sharpness / (inp as f64).sqrt())
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let weight = Tensor::from_vec(w, (out, inp), &Device::Cpu)?;
        Ok(Dense::new(Linear::new(weight), Some(stream(out, 0.1))))
    };
    let (q, k, v, o) = (
        dense(d, d, 2.0)?,
        dense(d, d, 2.0)?,
        dense(d, d, 1.0)?,
        dense(d, d, 1.0)?,
    );
    let gate = match arch.feed_forward {
        FeedForward::Gated => Some(dense(ffn, d, 1.0)?),
        FeedForward::Plain => None,
    };
    let (up, down) = (dense(ffn, d, 1.0)?, dense(d, ffn, 1.0)?);
    let mut norm = || NormParams {
        gain: stream(d, 0.1).into_iter().map(|g| 1.0 + g).collect(),
        bias: Some(stream(d, 0.1)),
    };
    Ok(LayerParams {
        attention_norm: norm(),
        q,
        k,
        v,
        o,
        ffn_norm: norm(),
        gate,
        up,
        down,
        layout: AttentionLayout::standard(heads, heads, d / heads),
    })
}

/// The case of one layer of `shape` and `arch` (BERT's, GPT-2's) on one sequence of `tokens`
/// tokens, scored against the f64 reference.
pub fn literature_layer(
    shape: LayerShape,
    arch: LayerArchitecture,
    tokens: usize,
) -> Result<CaseSpec> {
    let params = random_params(shape, &arch, 100)?;
    let x = match arch.norm_placement {
        NormPlacement::Pre => random_input(tokens, shape.hidden),
        NormPlacement::Post => gaussian(tokens * shape.hidden, 1.0, 79),
    };
    let want = reference_layer(&params, &arch, &x, tokens)?;
    let layer = LayerWeights::new(&params, arch, Secrecy::FullWeights)?;
    layer_spec(layer, x, tokens, want)
}

/// `layer` on the client's `x` `[tokens, d]`, revealed to the client. Setup (not measured):
/// the server's weights shared with their masks opened, the client's input shared.
fn layer_spec(layer: LayerWeights, x: Vec<f64>, tokens: usize, want: Vec<f64>) -> Result<CaseSpec> {
    let packing = Packing::new(vec![tokens])?;
    let d = x.len() / tokens;
    let residual = Some(x.clone());
    let program = move |p: &mut dyn Protocol| {
        let shared = layer.share(p)?;
        let mine = (p.role() == Role::Client).then_some(&x[..]);
        let xs = ops::share_f64(p, Role::Client, mine, &[tokens, d])?;
        p.comm().reset_cost();
        let y = layer.forward(p, &shared, &xs, &packing, Queries::All, None)?;
        ops::reveal_f64(p, &y, Some(Role::Client))
    };
    Ok(CaseSpec {
        program: Box::new(program),
        want,
        residual,
        per: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative L2 distance of `a` from `b`.
    fn rel_l2(a: &[f64], b: &[f64]) -> f64 {
        let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
        let den: f64 = b.iter().map(|y| y * y).sum();
        (num / den).sqrt()
    }

    /// The f64 reference, given a Llama layer, is candle's forward of it: what it computes for
    /// BERT and GPT-2 is written the same way.
    #[test]
    fn the_f64_reference_is_the_plaintext_llama_layer() -> Result<()> {
        let config = LlamaConfig {
            num_hidden_layers: 1,
            ..LlamaConfig::tiny()
        };
        let model = random_layer(&config, SEED)?;
        let tokens = 7;
        let x = random_input(tokens, config.hidden_size);
        let want = plaintext_layer(&model, &x, tokens)?;
        let (params, arch) = LayerParams::llama(&model.layers[0], config.rope_theta)?;
        let got = reference_layer(&params, &arch, &x, tokens)?;
        let update = |y: &[f64]| -> Vec<f64> { y.iter().zip(&x).map(|(a, b)| a - b).collect() };
        let err = rel_l2(&update(&got), &update(&want));
        assert!(err < 1e-5, "{err}");
        Ok(())
    }
}
