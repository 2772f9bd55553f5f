//! The secure forward: the private layers `k..L` and the choice head on a protocol, for a batch
//! of examples in one MPC run (the server's weights are shared once and reused by every example).

use super::client::SecureInput;
use super::head::{choice_scores, reveal_choice};
use super::layer::{LayerWeights, RopeTables, SharedLayer};
use super::packing::Packing;
use super::projection::{Matrix, Secrecy};
use crate::model::Llama;
use crate::mpc::cost::{CostReport, PartyCost};
use crate::mpc::local::{RunOptions, run_local};
use crate::mpc::ops;
use crate::mpc::protocol::{Protocol, ProtocolKind, Role};
use crate::mpc::share::Share;
use anyhow::{Context, Result, ensure};

/// What the protocol needs of a model's private part.
pub struct SecureModel {
    layers: Vec<LayerWeights>,
    hidden_size: usize,
    rope_theta: f64,
    final_eps: f64,
}

impl SecureModel {
    /// Layers `public_layers..` of `model`, their projection weights held as `secrecy` says.
    pub fn new(model: &Llama, public_layers: usize, secrecy: Secrecy) -> Result<Self> {
        ensure!(
            public_layers < model.num_layers(),
            "{public_layers} public layers leave none of the {} private",
            model.num_layers()
        );
        Ok(SecureModel {
            layers: model.layers[public_layers..]
                .iter()
                .map(|l| LayerWeights::new(l, secrecy))
                .collect::<Result<_>>()?,
            hidden_size: model.config.hidden_size,
            rope_theta: model.config.rope_theta,
            final_eps: model.norm.eps,
        })
    }

    fn share(&self, p: &mut dyn Protocol) -> Result<Vec<SharedLayer>> {
        self.layers.iter().map(|l| l.share(p)).collect()
    }

    /// The choice scores `[1, C]` of each example of `batch`, as shares; the client supplies
    /// the hidden states.
    fn scores(
        &self,
        p: &mut dyn Protocol,
        shared: &[SharedLayer],
        batch: &[&SecureInput],
    ) -> Result<Vec<Share>> {
        let packing = Packing::new(batch.iter().map(|i| i.tokens).collect())?;
        let packed = (p.role() == Role::Client).then(|| {
            batch
                .iter()
                .flat_map(|i| i.hidden.iter().copied())
                .collect::<Vec<f64>>()
        });
        let shape = [packing.rows(), self.hidden_size];
        let mut x = ops::share_f64(p, Role::Client, packed.as_deref(), &shape)?;
        let positions = packing.positions();
        for (layer, w) in self.layers.iter().zip(shared) {
            let l = layer.layout();
            let tables =
                RopeTables::new(p, &positions, l.head_dim, self.rope_theta, l.score_scale)?;
            x = layer.forward(p, w, &x, &packing, &tables)?;
        }
        let heads: Vec<&Matrix> = batch.iter().map(|i| &i.head).collect();
        choice_scores(p, &x, &packing, &heads, self.final_eps)
    }
}

/// What one secure run returns to the client, and what it cost.
pub struct SecureRun {
    /// The predicted choice of each input.
    pub choices: Vec<usize>,
    /// The revealed scores of each input, when asked for (tests; the client normally learns
    /// only the choice).
    pub scores: Vec<Vec<f64>>,
    /// Sharing the server's weights, once per run.
    pub setup: CostReport,
    /// Every example's forward together.
    pub examples: CostReport,
    pub examples_wall_seconds: f64,
}

/// Runs `inputs` through `model` on `kind` with all parties in this process, `batch` examples
/// (of similar length) per forward so that they share its rounds; `done(k)` is called after
/// each forward of `k` examples.
pub fn run_secure(
    kind: ProtocolKind,
    opts: &RunOptions,
    model: &SecureModel,
    inputs: &[SecureInput],
    batch: usize,
    reveal_scores: bool,
    done: impl Fn(usize) + Sync,
) -> Result<SecureRun> {
    ensure!(batch > 0, "a secure forward needs at least one example");
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&i| inputs[i].tokens);
    type Outputs = Vec<(Option<usize>, Option<Vec<f64>>)>;
    let run = run_local(kind, opts, |p| -> Result<(PartyCost, Outputs)> {
        let shared = ops::labelled(p, "weights", |p| model.share(p))?;
        let setup = p.comm().cost();
        p.comm().reset_cost();
        let mut out = vec![(None, None); inputs.len()];
        for chunk in order.chunks(batch) {
            let examples: Vec<&SecureInput> = chunk.iter().map(|&i| &inputs[i]).collect();
            for (&i, scores) in chunk.iter().zip(model.scores(p, &shared, &examples)?) {
                let revealed = if reveal_scores {
                    ops::labelled(p, "other", |p| {
                        ops::reveal_f64(p, &scores, Some(Role::Client))
                    })?
                } else {
                    None
                };
                out[i] = (reveal_choice(p, &scores)?, revealed);
            }
            if p.role() == Role::Client {
                done(chunk.len());
            }
        }
        Ok((setup, out))
    })?;
    let setups: Vec<PartyCost> = run.parties.iter().map(|r| r.output.0.clone()).collect();
    let client = &run.output(Role::Client).1;
    let choices = client
        .iter()
        .map(|(c, _)| c.context("the client received no choice"))
        .collect::<Result<_>>()?;
    let scores = client.iter().filter_map(|(_, s)| s.clone()).collect();
    Ok(SecureRun {
        choices,
        scores,
        setup: CostReport::from_parties(&setups),
        examples: run.report,
        examples_wall_seconds: run.online_wall_seconds,
    })
}
