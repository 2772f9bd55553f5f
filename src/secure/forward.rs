//! The secure forward: the private layers `k..L` and the choice head on a protocol, for a batch
//! of examples in one MPC run (the server's weights are shared once and reused by every example).
//! [`secure_party`] is one party's whole program, the same whether the parties are threads of
//! this process ([`run_secure`]) or processes over TCP (`super::remote`).

use super::architecture::reals;
use super::client::SecureInput;
use super::head::{choice_scores, reveal_choice};
use super::job::{ExampleShape, JobShape};
use super::kv_cache::SharedKvCache;
use super::layer::{LayerWeights, SharedLayer};
use super::packing::{Packing, Queries};
use super::policy::{MAX_VERDICT_BYTES, ServePolicy, Verdict};
use super::projection::{Matrix, Secrecy};
use super::vocab_head::VocabHead;
use crate::model::Llama;
use crate::mpc::comm::Phase;
use crate::mpc::cost::{CostClass, CostReport, PartyCost};
use crate::mpc::fixed::FixedPoint;
use crate::mpc::local::{RunOptions, run_local};
use crate::mpc::ops;
use crate::mpc::protocol::{Protocol, ProtocolKind, Role};
use crate::mpc::share::Share;
use crate::mpc::transport::Expect;
use anyhow::{Context, Result, bail, ensure};
use candle_core::Tensor;

/// What the protocol needs of a model's private part, and the public head.
pub struct SecureModel {
    layers: Vec<LayerWeights>,
    hidden_size: usize,
    final_eps: f64,
    /// The tied head `(vocab, d)` and the final norm's gain: public, so every party builds the
    /// choice rows of an example from its choice token ids.
    lm_head: Tensor,
    final_gain: Vec<f64>,
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
                .map(|l| LayerWeights::llama(l, model.config.rope_theta, secrecy))
                .collect::<Result<_>>()?,
            hidden_size: model.config.hidden_size,
            final_eps: model.norm.eps,
            lm_head: model.lm_head.weight.clone(),
            final_gain: reals(&model.norm.weight)?,
        })
    }

    pub(super) fn share(&self, p: &mut dyn Protocol) -> Result<Vec<SharedLayer>> {
        self.layers.iter().map(|l| l.share(p)).collect()
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// The private layers' count.
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// The whole tied head, for decoding: every party encodes it once per run.
    pub fn vocab_head(&self) -> Result<VocabHead> {
        VocabHead::new(
            &self.lm_head,
            &self.final_gain,
            self.final_eps,
            FixedPoint::default(),
        )
    }

    /// The private layers on the shared rows `x` of sequences packed as `packing` says, the
    /// last layer computing what the head reads: each sequence's last position, of a prompt
    /// ([`Queries::Last`], every row given) or of a decoding step ([`Queries::Next`], one new
    /// row a sequence, the earlier ones' keys and values in `cache`). Returns `[B, d]`; a
    /// `cache` keeps every position's keys and values.
    pub(super) fn private_layers(
        &self,
        p: &mut dyn Protocol,
        shared: &[SharedLayer],
        mut x: Share,
        packing: &Packing,
        last_queries: Queries,
        mut cache: Option<&mut SharedKvCache>,
    ) -> Result<Share> {
        let last = self.layers.len() - 1;
        for (i, (layer, w)) in self.layers.iter().zip(shared).enumerate() {
            let queries = match last_queries {
                Queries::Next => Queries::Next,
                // Only the head reads the last layer.
                _ if i == last => last_queries,
                _ => Queries::All,
            };
            let layer_cache = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            x = layer.forward(p, w, &x, packing, queries, layer_cache)?;
        }
        if let Some(cache) = cache {
            cache.advance(packing);
        }
        Ok(x)
    }

    /// The head rows of `choices`, `(d, C)`, final norm gain folded in.
    fn choice_head(&self, choices: &[u32]) -> Result<Matrix> {
        let ids = Tensor::new(choices, self.lm_head.device())?;
        Matrix::transposed(&self.lm_head.index_select(&ids, 0)?, &self.final_gain)
    }

    /// The choice scores `[1, C]` of each example of `batch`, as shares; only the client has
    /// the hidden states (`hidden[b]`).
    fn scores(
        &self,
        p: &mut dyn Protocol,
        shared: &[SharedLayer],
        batch: &[&ExampleShape],
        hidden: Option<Vec<&[f64]>>,
    ) -> Result<Vec<Share>> {
        let packing = Packing::new(batch.iter().map(|s| s.tokens).collect())?;
        let packed: Option<Vec<f64>> = hidden.map(|h| h.concat());
        let shape = [packing.rows(), self.hidden_size];
        let x = ops::share_f64(p, Role::Client, packed.as_deref(), &shape)?;
        let x = self.private_layers(p, shared, x, &packing, Queries::Last, None)?;
        let heads: Vec<Matrix> = batch
            .iter()
            .map(|s| self.choice_head(&s.choices))
            .collect::<Result<_>>()?;
        choice_scores(p, &x, &heads.iter().collect::<Vec<_>>(), self.final_eps)
    }
}

/// What the client brings to a run.
pub struct ClientJob<'a> {
    pub inputs: &'a [SecureInput],
    /// Examples per forward (of similar length; they share its rounds).
    pub batch: usize,
}

/// The job's public shape, agreed by every party before anything secret is touched: the client
/// sends it, the dealer / helper and the server check it against their own policy, and the
/// server's verdict (which alone decides what is revealed) reaches the other two.
fn agree_job(
    p: &mut dyn Protocol,
    job: Option<&ClientJob>,
    policy: Option<&ServePolicy>,
) -> Result<(JobShape, bool)> {
    let mine = match job {
        Some(job) => {
            ensure!(job.batch > 0, "a secure forward needs at least one example");
            let shape = JobShape {
                batch: job.batch,
                shapes: job.inputs.iter().map(|i| i.shape.clone()).collect(),
            };
            let words = shape.encode();
            Some((shape, words))
        }
        None => None,
    };
    let decode = |words: &[u64]| match policy {
        Some(policy) => JobShape::decode(words, policy),
        None => bail!("no policy to admit a job under"),
    };
    let admission = policy.map(|policy| Admission {
        max_words: policy.max_job_words(),
        decode: &decode,
        reveal_scores: policy.reveal_scores,
    });
    agree(p, mine, admission)
}

/// How the server, dealer and helper admit a job message.
pub(super) struct Admission<'a, T> {
    /// The longest message read.
    pub max_words: usize,
    /// The job, or why it is refused.
    pub decode: &'a dyn Fn(&[u64]) -> Result<T>,
    /// The server's flag, sent in its verdict.
    pub reveal_scores: bool,
}

/// Agrees a job between the client (`mine`: the job and its message) and the others (their
/// `admission`): the client sends the message, the server decides and tells the client and
/// the dealer / helper, who check the message too. Returns the job and whether the server
/// reveals scores.
pub(super) fn agree<T>(
    p: &mut dyn Protocol,
    mine: Option<(T, Vec<u64>)>,
    admission: Option<Admission<T>>,
) -> Result<(T, bool)> {
    let (client, server) = (Role::Client.index(), Role::Server.index());
    let third = 3 - client - server;
    if let Some((job, words)) = mine {
        for peer in [server, third] {
            p.comm().send(peer, &words, Phase::Online)?;
        }
        let verdict = recv_verdict(p)?;
        return match verdict {
            Verdict::Accepted { reveal_scores } => Ok((job, reveal_scores)),
            Verdict::Refused { reason } => bail!("the server refused the job: {reason}"),
        };
    }
    let admission = admission.context("the server, dealer and helper serve under a policy")?;
    let words = p
        .comm()
        .recv_at_most(client, admission.max_words, Phase::Online)?;
    let decoded = (admission.decode)(&words);
    if p.role() != Role::Server {
        let job = decoded.context("the client's job")?;
        return match recv_verdict(p)? {
            Verdict::Accepted { reveal_scores } => Ok((job, reveal_scores)),
            Verdict::Refused { reason } => bail!("the server refused the client's job: {reason}"),
        };
    }
    let verdict = match &decoded {
        Ok(_) => Verdict::Accepted {
            reveal_scores: admission.reveal_scores,
        },
        Err(e) => Verdict::Refused {
            reason: format!("{e:#}"),
        },
    };
    let bytes = verdict.encode();
    for peer in [client, third] {
        p.comm().send_bytes(peer, &bytes, Phase::Online)?;
    }
    if decoded.is_err() {
        // A failing party's links are cut, not drained: deliver the refusal first. The dealer
        // or helper may have refused the job already and gone, so a failed delivery to it is
        // not the error to report.
        let _ = p.comm().finish();
    }
    let job = decoded.context("refused the client's job")?;
    Ok((job, admission.reveal_scores))
}

fn recv_verdict(p: &mut dyn Protocol) -> Result<Verdict> {
    let bytes = p.comm().recv_bytes(
        Role::Server.index(),
        Expect::AtMost(MAX_VERDICT_BYTES),
        Phase::Online,
    )?;
    Verdict::decode(&bytes)
}

/// What a party ends a run with.
pub struct PartyResult {
    /// Sharing the server's weights (and the job's shapes), once per run.
    pub setup: PartyCost,
    /// The client's predicted choice of each input (`None` at the other parties).
    pub choices: Vec<Option<usize>>,
    /// The client's revealed scores, when the server's policy reveals them.
    pub scores: Vec<Option<Vec<f64>>>,
    /// Whether the server revealed the scores (its debugging flag).
    pub scores_revealed: bool,
    /// The rounds this party counted from each forward's start until its first example was
    /// revealed, summed over the forwards: what one query alone pays, since a forward's rounds
    /// do not grow with its width (only each further example's reveal adds rounds).
    pub query_rounds: u64,
    /// The forwards run (batches of the job).
    pub forwards: usize,
}

/// One party's program: the client (`job` given) tells the others the job's shapes, which the
/// others check against their `policy`; the server's weights are shared, then every batch runs
/// through the private layers and the head; only the client learns each example's choice (and,
/// where the server's policy says so, its scores). `done(k)` is called at the client after each
/// forward of `k` examples. The protocol's costs after setup are the examples' costs.
pub fn secure_party(
    p: &mut dyn Protocol,
    model: &SecureModel,
    job: Option<&ClientJob>,
    policy: Option<&ServePolicy>,
    done: impl Fn(usize),
) -> Result<PartyResult> {
    ensure!(
        job.is_some() == (p.role() == Role::Client),
        "only the client brings the inputs"
    );
    let (shape, reveal_scores) = ops::labelled(p, CostClass::Other, |p| agree_job(p, job, policy))?;
    let shared = ops::labelled(p, CostClass::Weights, |p| model.share(p))?;
    let setup = p.comm().cost();
    p.comm().reset_cost();
    let n = shape.shapes.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| shape.shapes[i].tokens);
    let (mut choices, mut scores) = (vec![None; n], vec![None; n]);
    let mut query_rounds = 0;
    for chunk in order.chunks(shape.batch) {
        let start = p.comm().rounds();
        let shapes: Vec<&ExampleShape> = chunk.iter().map(|&i| &shape.shapes[i]).collect();
        let hidden = job.map(|j| {
            chunk
                .iter()
                .map(|&i| j.inputs[i].hidden.as_slice())
                .collect()
        });
        for (k, (&i, s)) in chunk
            .iter()
            .zip(model.scores(p, &shared, &shapes, hidden)?)
            .enumerate()
        {
            if reveal_scores {
                scores[i] = ops::labelled(p, CostClass::Other, |p| {
                    ops::reveal_f64(p, &s, Some(Role::Client))
                })?;
            }
            choices[i] = reveal_choice(p, &s)?;
            if k == 0 {
                query_rounds += p.comm().rounds() - start;
            }
        }
        if job.is_some() {
            done(chunk.len());
        }
    }
    Ok(PartyResult {
        setup,
        choices,
        scores,
        scores_revealed: reveal_scores,
        query_rounds,
        forwards: n.div_ceil(shape.batch),
    })
}

/// What one secure run returns to the client, and what it cost.
pub struct SecureRun {
    /// The predicted choice of each input.
    pub choices: Vec<usize>,
    /// The revealed scores of each input, when the server's policy revealed them.
    pub scores: Vec<Vec<f64>>,
    pub scores_revealed: bool,
    /// Sharing the server's weights, once per run.
    pub setup: CostReport,
    /// Bytes on the wire over every party's connections, the whole run (network transports),
    /// as the parties received them (a sender's counter can lag behind what it has queued).
    pub wire_bytes: Option<u64>,
    /// Every example's forward together.
    pub examples: CostReport,
    pub examples_wall_seconds: f64,
    /// The forwards run, and the most [`PartyResult::query_rounds`] of a party (rounds are
    /// those of the party with the most, as in [`CostReport`]).
    pub forwards: usize,
    pub query_rounds: u64,
}

impl SecureRun {
    /// The run from the client's result and every party's costs and query rounds, in
    /// party-index order.
    pub fn collect(
        client: PartyResult,
        setups: &[PartyCost],
        examples: &[PartyCost],
        query_rounds: &[u64],
    ) -> Result<Self> {
        let choices = client
            .choices
            .into_iter()
            .map(|c| c.context("the client received no choice"))
            .collect::<Result<_>>()?;
        let examples_wall_seconds = examples[..2]
            .iter()
            .map(|c| c.wall_seconds)
            .fold(0.0, f64::max);
        let wire_bytes = setups
            .iter()
            .chain(examples)
            .map(|c| c.wire.map(|w| w.received))
            .sum::<Option<u64>>();
        Ok(SecureRun {
            wire_bytes,
            choices,
            scores: client.scores.into_iter().flatten().collect(),
            scores_revealed: client.scores_revealed,
            setup: CostReport::from_parties(setups),
            examples: CostReport::from_parties(examples),
            examples_wall_seconds,
            forwards: client.forwards,
            query_rounds: query_rounds.iter().copied().max().unwrap_or(0),
        })
    }
}

/// Runs `job` through `model` on `kind` with all parties in this process; the server and the
/// dealer / helper serve under `policy`.
pub fn run_secure(
    kind: ProtocolKind,
    opts: &RunOptions,
    model: &SecureModel,
    job: &ClientJob,
    policy: &ServePolicy,
    done: impl Fn(usize) + Sync,
) -> Result<SecureRun> {
    let mut run = run_local(kind, opts, |p| {
        if p.role() == Role::Client {
            secure_party(p, model, Some(job), None, &done)
        } else {
            secure_party(p, model, None, Some(policy), &done)
        }
    })?;
    let setups: Vec<PartyCost> = run.parties.iter().map(|r| r.output.setup.clone()).collect();
    let examples: Vec<PartyCost> = run.parties.iter().map(|r| r.cost.clone()).collect();
    let query_rounds: Vec<u64> = run.parties.iter().map(|r| r.output.query_rounds).collect();
    let client = run.parties.remove(Role::Client.index()).output;
    SecureRun::collect(client, &setups, &examples, &query_rounds)
}
