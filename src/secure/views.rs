//! Tests of views of a whole secure forward of a tiny model, as `mpc::views` tests each
//! operation: for both protocols, a MARILL student (public first layer, merged heads, secret
//! LoRA factors) and a teacher (every layer private, secret full weights), two runs with
//! different client inputs (hidden states) and server secrets give every party views of the same
//! shape that the statistics cannot tell apart; nothing a party can compute from its view and
//! its own streams changes with the secrets; every stream's two ends end in step and every
//! frame sent is received.
//!
//! Left out of the statistics, and required to be the same in both runs instead: the job
//! message (the first online frame from the client, to the server and the dealer / helper:
//! prompt lengths and choice tokens, public by design) and the server's verdict (the first
//! online frame from the server, to the client and the dealer / helper: its policy's decision,
//! public). Nothing else is left out: the choice revealed to the client arrives as the server's
//! uniform share of it. 2pc-dealer's dealer receives those two public frames and nothing else.
//!
//! Secure decoding: the private layers' cached keys and values are never opened to anyone.

use super::client::SecureInput;
use super::forward::{ClientJob, PartyResult, SecureModel, secure_party};
use super::generate::{ClientGeneration, GenerationPartyResult, generation_party};
use super::job::ExampleShape;
use super::policy::{GenerationPolicy, ServePolicy};
use super::projection::Secrecy;
use crate::model::LlamaConfig;
use crate::model::marill::MarillArch;
use crate::model::tiny::tiny_student;
use crate::mpc::comm::Phase;
use crate::mpc::protocol::{ProtocolKind, Role};
use crate::mpc::share::Share;
use crate::mpc::views::check::check;
use crate::mpc::views::material::{lock_step, words_drawn};
use crate::mpc::views::ops::{Draw, draw};
use crate::mpc::views::record::{Received, Recorded, Setup, run_recorded};
use anyhow::Result;
use candle_core::{Device, Tensor};
use std::collections::HashSet;

const CHOICES: [u32; 3] = [300, 301, 64];
const TOKENS: [usize; 2] = [9, 5];
/// How large the client's hidden states and the server's LoRA factors get.
const HIDDEN_LARGE: f64 = 100.0;
const FACTOR_LARGE: f64 = 2.0;

/// A student with secret LoRA factors after one public layer, or a teacher whose every
/// projection weight is secret.
fn models() -> [(Secrecy, MarillArch); 2] {
    let student = MarillArch {
        public_layers: 1,
        head_merge: 3,
        ..MarillArch::standard()
    };
    [
        (Secrecy::LoraOnly, student),
        (Secrecy::FullWeights, MarillArch::standard()),
    ]
}

/// The secure forward of both examples in one batch, the client's hidden states and the
/// server's LoRA factors drawn as `how` (`tag` telling draws apart).
fn forward(
    kind: ProtocolKind,
    (secrecy, arch): (Secrecy, MarillArch),
    (how, tag): (Draw, u64),
    setup: Setup,
) -> Result<Recorded<PartyResult>> {
    let config = LlamaConfig::tiny();
    let mut factors = 0;
    let model = tiny_student(&config, 7, &arch, |rows, cols| {
        factors += 1;
        let v = draw(how, rows * cols, FACTOR_LARGE, 1000 * tag + factors);
        let v: Vec<f32> = v.into_iter().map(|v| v as f32).collect();
        Ok(Tensor::from_vec(v, (rows, cols), &Device::Cpu)?)
    })?;
    let public_layers = match secrecy {
        Secrecy::LoraOnly => arch.public_layers,
        Secrecy::FullWeights => 0,
    };
    let model = SecureModel::new(&model, public_layers, secrecy)?;
    let inputs: Vec<SecureInput> = TOKENS
        .iter()
        .zip(1..)
        .map(|(&tokens, i)| SecureInput {
            hidden: draw(
                how,
                tokens * config.hidden_size,
                HIDDEN_LARGE,
                1000 * tag + 500 + i,
            ),
            shape: ExampleShape {
                tokens,
                choices: CHOICES.to_vec(),
            },
        })
        .collect();
    let job = ClientJob {
        inputs: &inputs,
        batch: 2,
    };
    let policy = ServePolicy {
        choice_tokens: CHOICES.to_vec(),
        max_tokens: 16,
        max_batch: 4,
        max_examples: 8,
        reveal_scores: false,
    };
    run_recorded(kind, setup, |p| {
        if p.role() == Role::Client {
            secure_party(p, &model, Some(&job), None, |_| {})
        } else {
            secure_party(p, &model, None, Some(&policy), |_| {})
        }
    })
}

/// `party`'s view without its public frames (the job from the client, the verdict from the
/// server: each the first online frame from that peer), and those frames.
fn without_public(view: &[Received], party: usize) -> (Vec<Received>, Vec<Received>) {
    let (client, server) = (Role::Client.index(), Role::Server.index());
    let public_from: Vec<usize> = [client, server]
        .into_iter()
        .filter(|&p| p != party)
        .collect();
    let mut seen = Vec::new();
    let (mut tested, mut public) = (Vec::new(), Vec::new());
    for frame in view {
        let first_online = frame.phase() == Phase::Online && !seen.contains(&frame.from);
        if first_online {
            seen.push(frame.from);
        }
        if first_online && public_from.contains(&frame.from) {
            public.push(frame.clone());
        } else {
            tested.push(frame.clone());
        }
    }
    (tested, public)
}

/// The checks of views on the forward of `model`; each computing party has one public frame
/// (the job, or the verdict), the dealer / helper two.
fn check_forward(model: (Secrecy, MarillArch)) {
    let public = |view: &[Received], party: usize| {
        let (tested, public) = without_public(view, party);
        let expected = if party == Role::Client.index() || party == Role::Server.index() {
            1
        } else {
            2
        };
        assert_eq!(public.len(), expected, "party {party}'s public frames");
        (tested, public)
    };
    let failures = check(
        &|kind, draw, setup| forward(kind, model, draw, setup),
        &public,
    );
    assert!(
        failures.is_empty(),
        "{:?}:\n{}",
        model.0,
        failures.join("\n")
    );
}

#[test]
fn student_forward_views_do_not_depend_on_the_secrets() {
    check_forward(models()[0]);
}

#[test]
fn teacher_forward_views_do_not_depend_on_the_secrets() {
    check_forward(models()[1]);
}

#[test]
fn forward_draws_material_in_lock_step() {
    for model in models() {
        for kind in ProtocolKind::ALL {
            let run = forward(kind, model, (Draw::Normal, 3), Setup::Exchanged(9)).expect("run");
            let client = &run.outputs[Role::Client.index()];
            assert!(
                client.choices.iter().all(Option::is_some),
                "{kind}: no choice"
            );
            assert!(words_drawn(&run) > 0, "{kind}: nothing drawn");
            let findings = lock_step(&run);
            assert!(
                findings.is_empty(),
                "{:?} {kind}: {}",
                model.0,
                findings.join("\n")
            );
        }
    }
}

/// Secure decoding of both prompts of the student (public first layer, merged heads, secret
/// LoRA), three new tokens each, recorded.
fn decoding(kind: ProtocolKind) -> Result<Recorded<GenerationPartyResult>> {
    let config = LlamaConfig::tiny();
    let (_, arch) = models()[0];
    let model = tiny_student(&config, 7, &arch, |rows, cols| {
        let v = draw(Draw::Normal, rows * cols, FACTOR_LARGE, 77);
        let v: Vec<f32> = v.into_iter().map(|v| v as f32).collect();
        Ok(Tensor::from_vec(v, (rows, cols), &Device::Cpu)?)
    })?;
    let secure = SecureModel::new(&model, arch.public_layers, Secrecy::LoraOnly)?;
    let head = secure.vocab_head()?;
    let prompts: Vec<Vec<u32>> = TOKENS
        .iter()
        .map(|&n| (0..n as u32).map(|i| 3 + 17 * i).collect())
        .collect();
    let job = ClientGeneration {
        model: &model,
        public_layers: arch.public_layers,
        prompts: &prompts,
        batch: 2,
        max_new_tokens: 3,
        stop: &[],
    };
    let policy = GenerationPolicy {
        positions: config.max_position_embeddings,
        max_new_tokens: 8,
        max_batch: 2,
        max_prompts: 2,
    };
    run_recorded(kind, Setup::Exchanged(5), |p| {
        if p.role() == Role::Client {
            generation_party(p, &secure, &head, Some(&job), None, |_| {})
        } else {
            generation_party(p, &secure, &head, None, Some(&policy), |_| {})
        }
    })
}

/// The raw values of a shared tensor from every party's share: 2pc-dealer's client and server
/// hold one additive part each, 3pc's party `i` holds parts `i` and `i + 1` of three.
fn reconstruct(kind: ProtocolKind, shares: &[&Share]) -> Vec<u64> {
    let holders = match kind {
        ProtocolKind::TwoPartyDealer => 2,
        ProtocolKind::ThreeParty => 3,
    };
    let mut sum = vec![0u64; shares[0].len()];
    for share in &shares[..holders] {
        for (s, &v) in sum.iter_mut().zip(share.parts()[0].data()) {
            *s = s.wrapping_add(v);
        }
    }
    sum
}

/// The 8-byte words of the online `frames` that are among `secret`. Offline material (the
/// dealer's or helper's) is drawn before and apart from any data, and its DCF keys hold
/// structured words that could meet a value by chance.
fn words_among(frames: &[Received], secret: &HashSet<u64>) -> usize {
    frames
        .iter()
        .filter(|f| f.phase() == Phase::Online && f.bytes.len().is_multiple_of(8))
        .flat_map(|f| f.bytes.chunks(8))
        .filter(|w| secret.contains(&u64::from_le_bytes((*w).try_into().expect("8 bytes"))))
        .count()
}

/// No party ever receives or opens a cached key or value: none of their (distinctive) raw
/// values appears as a word of any online frame a party received or any opening it computed. The
/// search is shown to find them in a frame that holds them.
#[test]
fn the_shared_kv_cache_is_never_opened() {
    for kind in ProtocolKind::ALL {
        let run = decoding(kind).expect("run");
        let client = &run.outputs[Role::Client.index()];
        assert!(client.tokens.iter().all(|t| t.len() == 3), "{kind}");
        let mut secret = HashSet::new();
        let forwards = client.caches.len();
        assert!(forwards > 0, "{kind}: no cache recorded");
        for i in 0..forwards {
            for kv in [0, 1] {
                let shares: Vec<&Share> = run
                    .outputs
                    .iter()
                    .map(|o| {
                        if kv == 0 {
                            &o.caches[i].0
                        } else {
                            &o.caches[i].1
                        }
                    })
                    .collect();
                // Small values could meet a job message or a flag by chance.
                secret.extend(
                    reconstruct(kind, &shares)
                        .into_iter()
                        .filter(|&v| (1 << 10..1 << 40).contains(&(v as i64).unsigned_abs())),
                );
            }
        }
        assert!(
            secret.len() > 1000,
            "{kind}: {} distinctive values",
            secret.len()
        );
        for (party, view) in run.views.iter().enumerate() {
            let found = words_among(&view.received, &secret) + words_among(&view.opened, &secret);
            assert_eq!(found, 0, "{kind}: party {party} saw cached keys or values");
        }
        let planted = Received {
            from: 0,
            stamp: 1,
            bytes: secret
                .iter()
                .take(5)
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        };
        assert_eq!(words_among(&[planted], &secret), 5);
    }
}
