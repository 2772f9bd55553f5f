//! The layer cases' costs pinned (SmolLM2's Llama layer, BERT's post-norm and GPT-2's pre-norm
//! layer, on tiny shapes of the same structure): each party's online bytes sent, rounds and
//! offline bytes received, per protocol, equal to the layer's formula written with the ops'
//! own pinned formulas (`mpc::tests::costs`). A change to the layer that costs more fails here
//! and must update the formula on purpose.
//!
//! The layer, `T` tokens of width `d`, `n_q` query and `n_kv` key/value heads of width `h_d`,
//! FFN width `F`, every projection the server's secret (`x W` untruncated, biases local), at
//! `f` fractional bits:
//! - attention: `q|k|v = x W_qkv` truncated together, by `2f` with rotary embeddings (they
//!   ride on the truncation) or by `f` (the score scale is then in `W_q`); `q kᵀ` (every
//!   key/value head opened once), the softmax on `[n_q, T, T]`, `p v`, both products' factors
//!   masked and their outputs truncated; `x W_o` truncated;
//! - feed-forward: `x W_in` untruncated, the activation of it at `2f` (its truncation rides on
//!   the comparison); gated: `act ⊙ up` (both masked, truncated by `2f`); `x W_down` truncated;
//! - pre-norm: the norms without affine part (folded into the projections) before each block;
//!   post-norm: after each residual sum, with gain (one truncation) and bias.

use super::layer_case::{LayerShape, random_layer, random_params};
use crate::model::LlamaConfig;
use crate::model::variants::Activation;
use crate::mpc::ops;
use crate::mpc::protocol::{Protocol, ProtocolKind, Role};
use crate::mpc::tests::costs::approx_pins as ap;
use crate::mpc::tests::costs::{C, Model, S, measure};
use crate::secure::Secrecy;
use crate::secure::architecture::{
    FeedForward, LayerArchitecture, NormKind, NormPlacement, PositionEncoding,
};
use crate::secure::layer::LayerWeights;
use crate::secure::packing::{Packing, Queries};
use anyhow::Result;

const F: u32 = 16;

/// `x W` (untruncated) for a server weight, `x_len` input and `out` output elements:
/// 2pc-dealer the client sends `x - A`, the server gets `A B`; 3pc a product.
fn weight_product(m: &mut Model, x_len: u64, out: u64) {
    if m.three_party() {
        m.product(out, 0);
    } else {
        m.dealt(S, out);
        m.step(&[(C, S, 8 * x_len)]);
    }
}

/// What the formula needs of a layer: its architecture and sizes.
struct Dims {
    arch: LayerArchitecture,
    d: u64,
    ffn: u64,
    heads: u64,
    kv_heads: u64,
    head_dim: u64,
}

impl Dims {
    fn of(layer: &LayerWeights, d: usize, ffn: usize) -> Self {
        let l = layer.layout();
        Dims {
            arch: *layer.architecture(),
            d: d as u64,
            ffn: ffn as u64,
            heads: l.num_heads as u64,
            kv_heads: l.num_kv_heads as u64,
            head_dim: l.head_dim as u64,
        }
    }
}

fn attention(m: &mut Model, s: &Dims, t: u64) {
    let (d, hd) = (s.d, s.head_dim);
    let (q, kv) = (t * s.heads * hd, t * s.kv_heads * hd);
    let scores = s.heads * t * t;
    weight_product(m, t * d, q + 2 * kv);
    let shift = match s.arch.positions {
        PositionEncoding::Rotary { .. } => 2 * F,
        PositionEncoding::Absolute => F,
    };
    m.truncate(q + 2 * kv, shift);
    // q, k, v and the softmax's output reach their products reshaped into heads, as plain
    // shares (no truncation's parts).
    m.mask(q + kv);
    m.product_truncate(scores, F);
    ap::softmax(m, &[s.heads as usize, t as usize, t as usize]);
    m.mask(scores + kv);
    m.product_truncate(q, F);
    weight_product(m, t * d, t * d);
    m.truncate(t * d, F);
}

fn feed_forward(m: &mut Model, s: &Dims, t: u64) {
    let (d, n) = (s.d, t * s.ffn);
    let gated = s.arch.feed_forward == FeedForward::Gated;
    weight_product(m, t * d, if gated { 2 * n } else { n });
    match s.arch.activation {
        Activation::Silu | Activation::Puma => ap::relu_plus_even(m, n, F, 3),
        Activation::Gelu => ap::relu_plus_even(m, n, F, 6),
        Activation::Quad => unreachable!("no layer case runs Quad"),
    }
    if gated {
        m.mask(2 * n);
        m.product_truncate(n, 2 * F);
    }
    weight_product(m, n, t * d);
    m.truncate(t * d, F);
}

fn norm(m: &mut Model, s: &Dims, t: u64, affine: bool) {
    let rows = [t as usize, s.d as usize];
    match s.arch.norm {
        NormKind::Rms => ap::rms_norm(m, &rows, affine),
        NormKind::Layer => ap::layer_norm(m, &rows, affine),
    }
}

/// The layer on `t` tokens.
fn layer_formula(m: &mut Model, s: &Dims, t: u64) {
    match s.arch.norm_placement {
        NormPlacement::Pre => {
            norm(m, s, t, false);
            attention(m, s, t);
            norm(m, s, t, false);
            feed_forward(m, s, t);
        }
        NormPlacement::Post => {
            attention(m, s, t);
            norm(m, s, t, true);
            feed_forward(m, s, t);
            norm(m, s, t, true);
        }
    }
}

#[test]
fn llama_bert_and_gpt2_layers_cost_their_formula() -> Result<()> {
    let shape = LayerShape {
        hidden: 32,
        heads: 2,
        ffn: 64,
    };
    let literature = |arch: LayerArchitecture| -> Result<LayerWeights> {
        let params = random_params(shape, &arch, 100)?;
        LayerWeights::new(&params, arch, Secrecy::FullWeights)
    };
    let llama = LlamaConfig {
        num_hidden_layers: 1,
        ..LlamaConfig::tiny()
    };
    let model = random_layer(&llama, 5)?;
    let layers = [
        (
            LayerWeights::llama(&model.layers[0], llama.rope_theta, Secrecy::FullWeights)?,
            llama.hidden_size,
            llama.intermediate_size,
        ),
        (
            literature(LayerArchitecture::bert())?,
            shape.hidden,
            shape.ffn,
        ),
        (
            literature(LayerArchitecture::gpt2())?,
            shape.hidden,
            shape.ffn,
        ),
    ];
    for (layer, d, ffn) in &layers {
        let dims = Dims::of(layer, *d, *ffn);
        for tokens in [5, 8] {
            let packing = Packing::new(vec![tokens])?;
            for kind in ProtocolKind::ALL {
                let got = measure(
                    kind,
                    |p: &mut dyn Protocol| {
                        let w = layer.share(p)?;
                        let x: Vec<f64> = (0..tokens * d)
                            .map(|i| ((i * 37 % 101) as f64 - 50.0) / 25.0)
                            .collect();
                        let mine = (p.role() == Role::Client).then_some(&x[..]);
                        let xs = ops::share_f64(p, Role::Client, mine, &[tokens, *d])?;
                        Ok((w, xs))
                    },
                    |p, (w, x)| {
                        layer
                            .forward(p, w, x, &packing, Queries::All, None)
                            .map(drop)
                    },
                );
                let mut want = Model::new(kind);
                layer_formula(&mut want, &dims, tokens as u64);
                assert_eq!(got, want.cost, "{:?} on {kind}, {tokens} tokens", dims.arch);
            }
        }
    }
    Ok(())
}

/// The formula at the full shapes, with the output's reveal to the client, gives what
/// `bench mpc` measured and README and `docs/literature.md` quote (2pc-dealer, all parties).
#[test]
fn the_formula_gives_the_full_size_cases_measured() {
    use crate::model::variants::SoftmaxKind;
    use crate::secure::architecture::AttentionMask;
    let smollm2 = LayerArchitecture {
        norm: NormKind::Rms,
        norm_placement: NormPlacement::Pre,
        eps: 1e-5,
        feed_forward: FeedForward::Gated,
        activation: Activation::Silu,
        positions: PositionEncoding::Rotary { base: 1e5 },
        mask: AttentionMask::Causal,
        softmax: SoftmaxKind::Exact,
    };
    let base = |arch| Dims {
        arch,
        d: 768,
        ffn: 3072,
        heads: 12,
        kv_heads: 12,
        head_dim: 64,
    };
    let cases = [
        (
            Dims {
                arch: smollm2,
                d: 576,
                ffn: 1536,
                heads: 9,
                kv_heads: 3,
                head_dim: 64,
            },
            64,
            (19_711_344, 48),
        ),
        (base(LayerArchitecture::bert()), 128, (64_840_320, 52)),
        (base(LayerArchitecture::gpt2()), 128, (62_481_024, 49)),
    ];
    for (dims, t, want) in cases {
        let mut m = Model::new(ProtocolKind::TwoPartyDealer);
        layer_formula(&mut m, &dims, t);
        m.reveal(t * dims.d, Some(C));
        let got = (m.cost.sent.iter().sum::<u64>(), m.cost.critical_rounds());
        assert_eq!(got, want, "{:?}", dims.arch);
    }
}
