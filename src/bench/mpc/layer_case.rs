//! The layer cases of `bench mpc`: one decoder layer of a given shape with seeded random
//! weights, run on shares by [`crate::secure::layer`] — the code `eval --mode mpc` runs, every
//! projection weight the server's secret (a teacher's layer) — and scored against the plaintext
//! model's own forward of the same layer (candle, f32: on the SmolLM2 case it is within 2e-7
//! relative of an f64 evaluation, 1e-6 on the update, far below the fixed-point error).
//!
//! Weights are those of [`tiny_weights`] (uniform, variance `1/fan_in`, norm gains `1 ± 0.2`),
//! with queries and keys twice as sharp so that attention is not uniform; the input is a unit
//! normal residual stream with two outlier channels in the hundreds, as real Llama activations
//! have.

use super::case::{CaseSpec, SEED, gaussian};
use crate::model::tiny::tiny_weights;
use crate::model::weights::Weights;
use crate::model::{Llama, LlamaConfig};
use crate::mpc::ops;
use crate::mpc::protocol::{Protocol, Role};
use crate::secure::Secrecy;
use crate::secure::layer::{LayerWeights, RopeTables};
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
fn random_layer(config: &LlamaConfig, seed: u64) -> Result<Llama> {
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

/// The case of one layer of `config`'s shape on one sequence of `tokens` tokens. Setup (not
/// measured): the server's weights shared with their masks opened, the client's input shared.
pub fn decoder_layer(config: &LlamaConfig, tokens: usize) -> Result<CaseSpec> {
    let model = random_layer(config, SEED)?;
    let d = config.hidden_size;
    let x = random_input(tokens, d);
    let want = plaintext_layer(&model, &x, tokens)?;
    let layer = LayerWeights::new(&model.layers[0], Secrecy::FullWeights)?;
    let packing = Packing::new(vec![tokens])?;
    let rope_theta = config.rope_theta;
    let residual = Some(x.clone());
    let program = move |p: &mut dyn Protocol| {
        let shared = layer.share(p)?;
        let mine = (p.role() == Role::Client).then_some(&x[..]);
        let xs = ops::share_f64(p, Role::Client, mine, &[tokens, d])?;
        p.comm().reset_cost();
        let l = layer.layout();
        let positions = packing.positions();
        let tables = RopeTables::new(p, &positions, l.head_dim, rope_theta, l.score_scale)?;
        let y = layer.forward(p, &shared, &xs, &packing, &tables, Queries::All, None)?;
        ops::reveal_f64(p, &y, Some(Role::Client))
    };
    Ok(CaseSpec {
        program: Box::new(program),
        want,
        residual,
    })
}
