//! The literature layers' costs pinned (BERT's post-norm and GPT-2's pre-norm layer, on a tiny
//! shape of the same structure): each party's online bytes sent, rounds and offline bytes
//! received, per protocol, equal to the layer's formula written with the ops' own pinned
//! formulas (`mpc::tests::costs`). A change to the layer that costs more fails here and must
//! update the formula on purpose.
//!
//! The layer, `T` tokens of width `d`, `h` heads, FFN width `F`, every projection the server's
//! secret (`x W` untruncated, biases local), at `f` fractional bits:
//! - attention: `q|k|v = x W_qkv` truncated by `f` together (the score scale is in `W_q`),
//!   `q kᵀ` (both masked, truncated), the softmax on `[h, T, T]`, `p v` (both masked,
//!   truncated), `x W_o` truncated;
//! - feed-forward: `x W_up` untruncated, GeLU of it at `2f` (its truncation rides on the
//!   comparison), `x W_down` truncated;
//! - pre-norm: LayerNorm without affine part before each block (folded into the projections);
//!   post-norm: LayerNorm with gain (one truncation) and bias after each residual sum.

use super::layer_case::{LayerShape, random_params};
use crate::mpc::ops;
use crate::mpc::protocol::{Protocol, ProtocolKind, Role};
use crate::mpc::tests::costs::approx_pins as ap;
use crate::mpc::tests::costs::{C, Model, S, measure};
use crate::secure::Secrecy;
use crate::secure::architecture::{LayerArchitecture, NormPlacement};
use crate::secure::layer::LayerWeights;
use crate::secure::packing::{Packing, Queries};
use anyhow::Result;

const F: u32 = 16;
/// GeLU's comparison resolution (`approx::gelu_wide`).
const GELU_RESOLUTION_BITS: u32 = 6;

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

fn attention(m: &mut Model, s: LayerShape, t: u64) {
    let (d, h) = (s.hidden as u64, s.heads as u64);
    weight_product(m, t * d, 3 * t * d);
    m.truncate(3 * t * d, F);
    // q, k, v and the softmax's output reach their products reshaped into heads, as plain
    // shares (no truncation's parts).
    m.mask(2 * t * d);
    m.product_truncate(h * t * t, F);
    ap::softmax(m, &[h as usize, t as usize, t as usize]);
    m.mask(h * t * t + t * d);
    m.product_truncate(t * d, F);
    weight_product(m, t * d, t * d);
    m.truncate(t * d, F);
}

fn feed_forward(m: &mut Model, s: LayerShape, t: u64) {
    let (d, ffn) = (s.hidden as u64, s.ffn as u64);
    weight_product(m, t * d, t * ffn);
    ap::relu_plus_even(m, t * ffn, F, GELU_RESOLUTION_BITS);
    weight_product(m, t * ffn, t * d);
    m.truncate(t * d, F);
}

/// The layer of `arch` (BERT's or GPT-2's) on `t` tokens.
fn layer_formula(m: &mut Model, s: LayerShape, arch: &LayerArchitecture, t: u64) {
    let rows = [t as usize, s.hidden];
    match arch.norm_placement {
        NormPlacement::Pre => {
            ap::layer_norm(m, &rows, false);
            attention(m, s, t);
            ap::layer_norm(m, &rows, false);
            feed_forward(m, s, t);
        }
        NormPlacement::Post => {
            attention(m, s, t);
            ap::layer_norm(m, &rows, true);
            feed_forward(m, s, t);
            ap::layer_norm(m, &rows, true);
        }
    }
}

#[test]
fn bert_and_gpt2_layers_cost_their_formula() -> Result<()> {
    let shape = LayerShape {
        hidden: 32,
        heads: 2,
        ffn: 64,
    };
    for arch in [LayerArchitecture::bert(), LayerArchitecture::gpt2()] {
        let layer = LayerWeights::new(
            &random_params(shape, &arch, 100)?,
            arch,
            Secrecy::FullWeights,
        )?;
        for tokens in [5, 8] {
            let packing = Packing::new(vec![tokens])?;
            for kind in ProtocolKind::ALL {
                let got = measure(
                    kind,
                    |p: &mut dyn Protocol| {
                        let w = layer.share(p)?;
                        let x: Vec<f64> = (0..tokens * shape.hidden)
                            .map(|i| ((i * 37 % 101) as f64 - 50.0) / 25.0)
                            .collect();
                        let mine = (p.role() == Role::Client).then_some(&x[..]);
                        let xs = ops::share_f64(p, Role::Client, mine, &[tokens, shape.hidden])?;
                        Ok((w, xs))
                    },
                    |p, (w, x)| {
                        layer
                            .forward(p, w, x, &packing, Queries::All, None)
                            .map(drop)
                    },
                );
                let mut want = Model::new(kind);
                layer_formula(&mut want, shape, &arch, tokens as u64);
                assert_eq!(
                    got, want.cost,
                    "{:?} layer on {kind}, {tokens} tokens",
                    arch.norm_placement
                );
            }
        }
    }
    Ok(())
}
