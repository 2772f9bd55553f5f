//! Secure greedy decoding: the client's prompts continued token by token with the private
//! layers under MPC, each token revealed to the client only.
//!
//! - Prefill (a batch of prompts in one forward): the client embeds its prompts and runs the
//!   public layers in plaintext, keeping their keys and values in its own cache
//!   ([`PublicDecoder`]), and shares the hidden states; the private layers run on shares and
//!   keep every position's keys and values as shares ([`SharedKvCache`], never opened); the
//!   final norm, the tied head (a local product) and a vocabulary argmax give each prompt's
//!   first token, revealed to the client ([`VocabHead`]).
//! - Each step: the client tells the others which prompts go on (it alone sees the tokens,
//!   so it alone applies the stop tokens and the length), embeds each one's last token, runs
//!   the public layers on that one position and shares it; each private layer attends its one
//!   query to the shared cache and appends the new keys and values; the head and the argmax
//!   give the next tokens. The prompts of a batch step together, sharing rounds.
//!
//! Leakage, public by design: the prompts' lengths, the batch grouping, the most new tokens
//! asked for, and how many tokens each prompt took (the client's "go on" after every step).
//! The server's policy bounds the job before anything is allocated and caps the steps.

use super::client::PublicDecoder;
use super::forward::{Admission, SecureModel, agree};
use super::job::GenerationShape;
use super::kv_cache::SharedKvCache;
use super::packing::{Packing, Queries};
use super::policy::GenerationPolicy;
use super::vocab_head::VocabHead;
use crate::model::Llama;
use crate::mpc::comm::Phase;
use crate::mpc::cost::{CostClass, CostReport, PartyCost};
use crate::mpc::local::{RunOptions, run_local};
use crate::mpc::ops;
use crate::mpc::protocol::{Protocol, ProtocolKind, Role};
use anyhow::{Context, Result, bail, ensure};

/// What the client brings to a generation run.
pub struct ClientGeneration<'a> {
    /// The model as the client holds it: embedding and public layers.
    pub model: &'a Llama,
    pub public_layers: usize,
    pub prompts: &'a [Vec<u32>],
    /// Prompts decoded together.
    pub batch: usize,
    pub max_new_tokens: usize,
    /// Tokens that end an answer (not part of it).
    pub stop: &'a [u32],
}

/// What a party ends a generation run with; costs are this party's.
#[derive(Default)]
pub struct GenerationPartyResult {
    /// Agreeing the job and sharing the server's weights, once per run.
    pub setup: PartyCost,
    /// Every prompt's forward (to its first token).
    pub prefill: PartyCost,
    /// Every decoding step, and the client's "go on" messages.
    pub decode: PartyCost,
    /// The client's generated tokens of each prompt (empty at the other parties).
    pub tokens: Vec<Vec<u32>>,
    /// Prefill forwards (batches) and decoding steps run.
    pub prefills: usize,
    pub steps: usize,
    /// Tokens the steps computed, over every prompt (a step of `B` prompts computes `B`).
    pub decoded: usize,
    /// Test only: this party's shares of every layer's cached keys and values after each
    /// forward (the views check that they are never opened).
    #[cfg(test)]
    pub caches: Vec<(crate::mpc::share::Share, crate::mpc::share::Share)>,
}

/// Adds the costs since the last reset to `into`, and resets.
fn take_cost(p: &mut dyn Protocol, into: &mut PartyCost) {
    let c = p.comm().cost();
    p.comm().reset_cost();
    for (class, t) in &c.online {
        into.online.entry(*class).or_default().add(t);
    }
    into.offline.add(&c.offline);
    into.compute_seconds += c.compute_seconds;
    into.wall_seconds += c.wall_seconds;
}

/// The client's "go on" flags for the `active` prompts after their `produced`-th token
/// (`keep` given at the client), checked at the others: one flag each, and no step beyond
/// the job's new tokens.
fn continuation(
    p: &mut dyn Protocol,
    keep: Option<Vec<bool>>,
    active: usize,
    produced: usize,
    max_new_tokens: usize,
) -> Result<Vec<bool>> {
    let client = Role::Client.index();
    ops::labelled(p, CostClass::Other, |p| {
        if let Some(keep) = keep {
            let words: Vec<u64> = keep.iter().map(|&k| u64::from(k)).collect();
            for peer in [Role::Server.index(), 3 - client - Role::Server.index()] {
                p.comm().send(peer, &words, Phase::Online)?;
            }
            return Ok(keep);
        }
        let words = p.comm().recv(client, active, Phase::Online)?;
        ensure!(
            words.iter().all(|&w| w <= 1),
            "the client's continuation flags are not 0 or 1"
        );
        let keep: Vec<bool> = words.iter().map(|&w| w == 1).collect();
        if keep.contains(&true) && produced >= max_new_tokens {
            bail!("the client asked for more than the job's {max_new_tokens} new tokens");
        }
        Ok(keep)
    })
}

/// One party's program of a generation job: the client (`client` given) states the job, the
/// others admit it under their `policy`; the server's weights are shared once, then each
/// batch of prompts is prefilled and decoded until the client stops it. `done(k)` is called
/// at the client after each batch of `k` prompts.
pub fn generation_party(
    p: &mut dyn Protocol,
    model: &SecureModel,
    head: &VocabHead,
    client: Option<&ClientGeneration>,
    policy: Option<&GenerationPolicy>,
    done: impl Fn(usize),
) -> Result<GenerationPartyResult> {
    ensure!(
        client.is_some() == (p.role() == Role::Client),
        "only the client brings the prompts"
    );
    let mine = client.map(|c| {
        let shape = GenerationShape {
            batch: c.batch,
            max_new_tokens: c.max_new_tokens,
            prompt_lens: c.prompts.iter().map(Vec::len).collect(),
        };
        let words = shape.encode();
        (shape, words)
    });
    let decode = |words: &[u64]| match policy {
        Some(policy) => GenerationShape::decode(words, policy),
        None => bail!("no policy to admit a job under"),
    };
    let admission = policy.map(|policy| Admission {
        max_words: policy.max_job_words(),
        decode: &decode,
        reveal_scores: false,
    });
    let (shape, _) = ops::labelled(p, CostClass::Other, |p| agree(p, mine, admission))?;
    ensure!(shape.batch > 0, "a generation batch of no prompts");
    let shared = ops::labelled(p, CostClass::Weights, |p| model.share(p))?;
    let mut result = GenerationPartyResult {
        tokens: vec![
            Vec::new();
            if client.is_some() {
                shape.prompt_lens.len()
            } else {
                0
            }
        ],
        ..Default::default()
    };
    take_cost(p, &mut result.setup);
    let d = model.hidden_size();
    for (first, lens) in (0..)
        .step_by(shape.batch)
        .zip(shape.prompt_lens.chunks(shape.batch))
    {
        let mut active: Vec<usize> = (first..first + lens.len()).collect();
        let mut decoders: Vec<PublicDecoder> = client
            .map(|c| {
                active
                    .iter()
                    .map(|_| PublicDecoder::new(c.model, c.public_layers))
                    .collect()
            })
            .unwrap_or_default();
        let hidden = client
            .map(|c| -> Result<Vec<f64>> {
                let mut rows = Vec::new();
                for (dec, &i) in decoders.iter_mut().zip(&active) {
                    rows.extend(dec.hidden(&c.prompts[i])?);
                }
                Ok(rows)
            })
            .transpose()?;
        let packing = Packing::new(lens.to_vec())?;
        let x = ops::share_f64(p, Role::Client, hidden.as_deref(), &[packing.rows(), d])?;
        let mut cache = SharedKvCache::new(model.layer_count());
        let last =
            model.private_layers(p, &shared, x, &packing, Queries::Last, Some(&mut cache))?;
        let mut next = head.next_tokens(p, &last)?;
        #[cfg(test)]
        result.caches.extend(cache.snapshot());
        take_cost(p, &mut result.prefill);
        result.prefills += 1;
        for produced in 1.. {
            let keep = match (client, &next) {
                (Some(c), Some(tokens)) => Some(
                    active
                        .iter()
                        .zip(tokens)
                        .map(|(&i, &t)| {
                            if c.stop.contains(&t) {
                                return false;
                            }
                            result.tokens[i].push(t);
                            result.tokens[i].len() < shape.max_new_tokens
                        })
                        .collect(),
                ),
                (Some(_), None) => bail!("the client received no token"),
                (None, _) => None,
            };
            let keep = continuation(p, keep, active.len(), produced, shape.max_new_tokens)?;
            if !keep.contains(&true) {
                take_cost(p, &mut result.decode);
                break;
            }
            cache.retain(&keep)?;
            let kept = |v: &[usize]| -> Vec<usize> {
                v.iter()
                    .zip(&keep)
                    .filter(|(_, k)| **k)
                    .map(|(&i, _)| i)
                    .collect()
            };
            let mut flags = keep.iter();
            decoders.retain(|_| *flags.next().unwrap_or(&false));
            let inputs: Option<Vec<u32>> = next.map(|tokens| {
                tokens
                    .iter()
                    .zip(&keep)
                    .filter(|(_, k)| **k)
                    .map(|(&t, _)| t)
                    .collect()
            });
            active = kept(&active);
            let hidden = inputs
                .map(|tokens| -> Result<Vec<f64>> {
                    let mut rows = Vec::new();
                    for (dec, &t) in decoders.iter_mut().zip(&tokens) {
                        rows.extend(dec.hidden(&[t])?);
                    }
                    Ok(rows)
                })
                .transpose()?;
            let packing = cache.next_packing()?;
            let x = ops::share_f64(p, Role::Client, hidden.as_deref(), &[active.len(), d])?;
            let last =
                model.private_layers(p, &shared, x, &packing, Queries::Next, Some(&mut cache))?;
            next = head.next_tokens(p, &last)?;
            #[cfg(test)]
            result.caches.extend(cache.snapshot());
            take_cost(p, &mut result.decode);
            result.steps += 1;
            result.decoded += active.len();
        }
        if client.is_some() {
            done(lens.len());
        }
    }
    Ok(result)
}

/// A generation run as the client sees it: the tokens and what every phase cost (over every
/// party).
pub struct GenerationRun {
    pub tokens: Vec<Vec<u32>>,
    pub setup: CostReport,
    pub prefill: CostReport,
    pub decode: CostReport,
    /// Longest of client and server, each phase's total.
    pub prefill_wall_seconds: f64,
    pub decode_wall_seconds: f64,
    pub prefills: usize,
    pub steps: usize,
    pub decoded: usize,
}

impl GenerationRun {
    /// The run from the client's result and every party's, in party-index order.
    pub fn collect(parties: Vec<GenerationPartyResult>) -> Result<Self> {
        let wall = |f: fn(&GenerationPartyResult) -> &PartyCost| {
            parties[..2]
                .iter()
                .map(|r| f(r).wall_seconds)
                .fold(0.0, f64::max)
        };
        let report = |f: fn(&GenerationPartyResult) -> &PartyCost| {
            CostReport::from_parties(&parties.iter().map(|r| f(r).clone()).collect::<Vec<_>>())
        };
        let client = parties
            .get(Role::Client.index())
            .context("no client result")?;
        Ok(GenerationRun {
            setup: report(|r| &r.setup),
            prefill: report(|r| &r.prefill),
            decode: report(|r| &r.decode),
            prefill_wall_seconds: wall(|r| &r.prefill),
            decode_wall_seconds: wall(|r| &r.decode),
            prefills: client.prefills,
            steps: client.steps,
            decoded: client.decoded,
            tokens: client.tokens.clone(),
        })
    }
}

/// Runs `job` on `kind` with every party a thread of this process; the server and the dealer
/// / helper serve under `policy`.
pub fn run_generation(
    kind: ProtocolKind,
    opts: &RunOptions,
    model: &SecureModel,
    job: &ClientGeneration,
    policy: &GenerationPolicy,
    done: impl Fn(usize) + Sync,
) -> Result<GenerationRun> {
    let head = model.vocab_head()?;
    let run = run_local(kind, opts, |p| {
        if p.role() == Role::Client {
            generation_party(p, model, &head, Some(job), None, &done)
        } else {
            generation_party(p, model, &head, None, Some(policy), &done)
        }
    })?;
    GenerationRun::collect(run.parties.into_iter().map(|r| r.output).collect())
}
