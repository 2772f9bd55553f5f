//! The secure forward on a tiny random Llama against candle's plaintext forward of the same
//! model: choice scores within a fixed-point / approximation bound and the same predicted label,
//! for a MARILL student (public prefix, merged heads, secret LoRA), a teacher (every layer
//! private, secret full weights) and a student with Quad / 2Quad. Secure greedy decoding
//! against candle's.

use anyhow::Result;
use candle_core::{Device, Tensor};
use marill::model::generate::generate_greedy;
use marill::model::marill::MarillArch;
use marill::model::tiny::tiny_student;
use marill::model::variants::{Activation, SoftmaxKind};
use marill::model::{Llama, LlamaConfig};
use marill::mpc::cost::CostClass;
use marill::mpc::latency::{Basis, QueryLatency};
use marill::mpc::local::RunOptions;
use marill::mpc::protocol::ProtocolKind;
use marill::secure::generate::{ClientGeneration, run_generation};
use marill::secure::policy::GenerationPolicy;
use marill::secure::report::latency_one_query;
use marill::secure::{
    ClientJob, Secrecy, SecureInput, SecureModel, SecureRun, ServePolicy, run_secure,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PROMPTS: [&[u32]; 2] = [&[4, 80, 15, 16, 23, 42, 8, 99, 7], &[200, 3, 17, 61, 5]];
const CHOICES: [u32; 3] = [300, 301, 64];
/// Logits of the tiny model are O(1); fixed point (16 bits), RMSNorm's rsqrt, exp and the
/// reciprocal together stay well inside this.
const MAX_ABS_ERROR: f64 = 5e-2;

/// `arch` applied and random non-zero LoRA factors on every projection of the private layers.
fn student(arch: MarillArch) -> Result<Llama> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    tiny_student(&LlamaConfig::tiny(), 7, &arch, |rows, cols| {
        let v: Vec<f32> = (0..rows * cols)
            .map(|_| rng.random::<f32>() * 0.2 - 0.1)
            .collect();
        Ok(Tensor::from_vec(v, (rows, cols), &Device::Cpu)?)
    })
}

/// Candle's choice logits at each prompt's last position.
fn plaintext_scores(model: &Llama, ids: &[u32]) -> Result<Vec<f64>> {
    let x = model.embed(&Tensor::new(ids, &Device::Cpu)?.unsqueeze(0)?)?;
    let allowed = model.attention_mask(ids.len(), None)?;
    let (h, _) = model.forward_layers(&x, 0..model.num_layers(), &allowed, false)?;
    let last = h.get(0)?.get(ids.len() - 1)?.unsqueeze(0)?;
    let logits = model.logits_for_tokens(&last, &Tensor::new(&CHOICES, &Device::Cpu)?)?;
    Ok(logits
        .flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(f64::from)
        .collect())
}

/// The tiny model's "task": its answer words are the tokens `CHOICES`.
fn policy(reveal_scores: bool) -> ServePolicy {
    ServePolicy {
        choice_tokens: CHOICES.to_vec(),
        max_tokens: 16,
        max_batch: 4,
        max_examples: 8,
        reveal_scores,
    }
}

fn argmax(v: &[f64]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

/// Runs both prompts securely on every protocol and checks scores and labels against candle.
fn check(model: &Llama, public_layers: usize, secrecy: Secrecy) -> Result<()> {
    let secure = SecureModel::new(model, public_layers, secrecy)?;
    let inputs: Vec<SecureInput> = PROMPTS
        .iter()
        .map(|ids| SecureInput::new(model, ids, &CHOICES, public_layers))
        .collect::<Result<_>>()?;
    let want: Vec<Vec<f64>> = PROMPTS
        .iter()
        .map(|ids| plaintext_scores(model, ids))
        .collect::<Result<_>>()?;
    let opts = RunOptions {
        seed: Some(11),
        ..Default::default()
    };
    for kind in ProtocolKind::ALL {
        let job = ClientJob {
            inputs: &inputs,
            batch: 2,
        };
        // Scores revealed by the server's debugging flag, to compare them with candle's.
        let run = run_secure(kind, &opts, &secure, &job, &policy(true), |_| {})?;
        assert!(run.scores_revealed);
        assert_eq!(run.scores.len(), PROMPTS.len());
        for ((got, want), choice) in run.scores.iter().zip(&want).zip(&run.choices) {
            let err = got
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(err <= MAX_ABS_ERROR, "{kind}: {got:?} vs {want:?}");
            assert!(
                want.iter().any(|v| v.abs() > 0.1),
                "degenerate logits {want:?}"
            );
            // The secure argmax is the argmax of the revealed scores, and candle's wherever its
            // margin exceeds the error bound.
            assert_eq!(*choice, argmax(got), "{kind}");
            let mut sorted = want.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            if sorted[0] - sorted[1] > 2.0 * MAX_ABS_ERROR {
                assert_eq!(*choice, argmax(want), "{kind}: {want:?}");
            }
        }
        // Weights are shared once: the examples' online traffic does not include them.
        assert!(run.setup.online_bytes > 0 && run.examples.online_bytes > 0);
        for class in [
            CostClass::Matmul,
            CostClass::Softmax,
            CostClass::Norm,
            CostClass::Activation,
        ] {
            assert!(
                run.examples.labels.contains_key(&class),
                "{kind}: no {class}"
            );
        }
    }
    Ok(())
}

/// The server alone decides what is revealed: by default only the choice; a job naming choice
/// tokens other than the task's answer words, or too long a prompt, is refused before any
/// secret is touched, with the server's reason at the client.
#[test]
fn the_server_policy_decides_what_is_revealed() -> Result<()> {
    let model = student(MarillArch::standard())?;
    let secure = SecureModel::new(&model, 0, Secrecy::FullWeights)?;
    let opts = RunOptions {
        seed: Some(12),
        ..Default::default()
    };
    let input = |choices: &[u32]| SecureInput::new(&model, PROMPTS[1], choices, 0);
    let honest = [input(&CHOICES)?];
    for kind in ProtocolKind::ALL {
        let job = ClientJob {
            inputs: &honest,
            batch: 1,
        };
        let run = run_secure(kind, &opts, &secure, &job, &policy(false), |_| {})?;
        assert!(!run.scores_revealed && run.scores.is_empty(), "{kind}");
        assert_eq!(run.choices.len(), 1);
    }
    // A next-token query over other rows of the head, and a prompt beyond the cap.
    let foreign = [input(&[300, 7])?];
    let long_prompt: Vec<u32> = (0..17).collect();
    let long = [SecureInput::new(&model, &long_prompt, &CHOICES, 0)?];
    for (inputs, why) in [
        (
            &foreign,
            "choice tokens [300, 7] are not this task's answer words [300, 301]",
        ),
        (&long, "a prompt of 17 tokens (this server takes 1 to 16)"),
    ] {
        let job = ClientJob { inputs, batch: 1 };
        let kind = ProtocolKind::TwoPartyDealer;
        let err = run_secure(kind, &opts, &secure, &job, &policy(false), |_| {})
            .err()
            .map(|e| format!("{e:#}"))
            .expect("refused");
        assert!(err.contains("refused") && err.contains(why), "{err}");
    }
    Ok(())
}

/// A MARILL student: one public layer, the query heads of each KV head merged into one.
fn merged_heads() -> MarillArch {
    MarillArch {
        public_layers: 1,
        head_merge: 3,
        ..MarillArch::standard()
    }
}

#[test]
fn student_with_merged_heads_and_secret_lora_matches_plaintext() -> Result<()> {
    check(&student(merged_heads())?, 1, Secrecy::LoraOnly)
}

#[test]
fn teacher_with_secret_full_weights_matches_plaintext() -> Result<()> {
    // LoRA factors present: the teacher's secret weight must include them.
    check(&student(MarillArch::standard())?, 0, Secrecy::FullWeights)
}

#[test]
fn student_with_quad_and_two_quad_matches_plaintext() -> Result<()> {
    // One merged head over all six query heads, reading both KV heads.
    let arch = MarillArch {
        public_layers: 2,
        head_merge: 6,
        activation: Activation::Quad,
        softmax: SoftmaxKind::TwoQuad,
    };
    check(&student(arch)?, 2, Secrecy::LoraOnly)
}

/// Prompts of `lens` tokens, each with its own ids.
fn prompts(lens: &[usize]) -> Vec<Vec<u32>> {
    lens.iter()
        .zip(0u32..)
        .map(|(&len, k)| (0..len as u32).map(|t| 3 + 17 * k + 5 * t).collect())
        .collect()
}

/// `inputs` at `batch` rows per forward; its one-query latency and its costs.
fn latency_at(
    kind: ProtocolKind,
    secure: &SecureModel,
    inputs: &[SecureInput],
    batch: usize,
) -> Result<(QueryLatency, SecureRun)> {
    let opts = RunOptions {
        seed: Some(13),
        ..Default::default()
    };
    let job = ClientJob { inputs, batch };
    let run = run_secure(kind, &opts, secure, &job, &policy(false), |_| {})?;
    let latency = latency_one_query(&run.examples, inputs.len(), run.forwards, run.query_rounds);
    Ok((latency, run))
}

/// The latency of one query derived from a batched run is what a query alone pays: the rounds
/// of a batch-1 run of its longest prompt exactly; bytes between the lone queries' sum and
/// every query padded to the longest (padding to the longest explains the rest).
#[test]
fn one_query_latency_derived_from_a_batch_matches_a_batch_1_run() -> Result<()> {
    let model = student(merged_heads())?;
    let secure = SecureModel::new(&model, 1, Secrecy::LoraOnly)?;
    let inputs_of = |lens: &[usize]| -> Result<Vec<SecureInput>> {
        prompts(lens)
            .iter()
            .map(|ids| SecureInput::new(&model, ids, &CHOICES, 1))
            .collect()
    };
    for kind in ProtocolKind::ALL {
        for lens in [[7, 7, 7, 7], [9, 3, 5, 7]] {
            let inputs = inputs_of(&lens)?;
            let (batched, run) = latency_at(kind, &secure, &inputs, 4)?;
            assert_eq!((batched.basis, run.forwards), (Basis::Derived, 1), "{kind}");
            // Rounds are shared: per example they are far fewer than a query's.
            assert!(
                run.examples.rounds as f64 / 4.0 < batched.rounds / 2.0,
                "{kind}"
            );
            let lone: Vec<(QueryLatency, SecureRun)> = inputs
                .chunks(1)
                .map(|one| latency_at(kind, &secure, one, 1))
                .collect::<Result<_>>()?;
            for (l, r) in &lone {
                // Alone, the latency is the run's own cost.
                assert_eq!(l.basis, Basis::Measured);
                assert_eq!(l.rounds, r.examples.rounds as f64);
                assert_eq!(l.online_bytes, r.examples.online_bytes as f64);
            }
            let longest = (0..4).max_by_key(|&i| lens[i]).unwrap();
            assert_eq!(batched.rounds, lone[longest].0.rounds, "{kind} {lens:?}");
            let lone_bytes: f64 = lone.iter().map(|(l, _)| l.online_bytes).sum();
            let padded = 4.0 * lone[longest].0.online_bytes;
            let batch_bytes = 4.0 * batched.online_bytes;
            // Bits masked as bits open packed, a byte per 8: a batch packs its rows' bits
            // together and may round up fewer bytes than its lone queries did (1e-4 here).
            assert!(
                lone_bytes * (1.0 - 1e-4) <= batch_bytes && batch_bytes <= padded,
                "{kind} {lens:?}: {lone_bytes} <= {batch_bytes} <= {padded}"
            );
            if lens.iter().all(|&l| l == lens[0]) {
                assert!(
                    batch_bytes <= lone_bytes && batch_bytes >= lone_bytes * (1.0 - 1e-4),
                    "{kind}: no padding, no extra bytes ({batch_bytes} vs {lone_bytes})"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn eval_mode_mpc_reports_accuracy_agreement_and_cost() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let model = dir.path().join("m");
    marill::model::tiny::write_tiny_model(&model, &LlamaConfig::tiny(), 1)?;
    let json = dir.path().join("report.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_marill"))
        .args(["eval", "--model", model.to_str().unwrap(), "--task", "sst2"])
        .args(["--limit", "3", "--mode", "mpc", "--protocol", "3pc"])
        .args([
            "--network",
            "wan",
            "--json",
            json.to_str().unwrap(),
            "--reference",
        ])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("agreement"), "{stdout}");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    assert_eq!(r["mode"], "mpc");
    assert_eq!(r["protocol"], "3pc");
    assert_eq!(r["network"], "wan");
    assert_eq!(r["n"], 3);
    // A base model runs every layer privately; the tiny model's margins are far above the
    // fixed-point error, so MPC and plaintext agree.
    assert_eq!(r["private_layers"], 4);
    assert_eq!(r["agreement"], 1.0);
    assert_eq!(r["accuracy"], r["plaintext_accuracy"]);
    let c = &r["cost_per_example"];
    let est = &c["est_seconds"];
    assert!(est["wan"].as_f64().unwrap() > est["lan"].as_f64().unwrap());
    let classes = c["by_class"].as_object().unwrap();
    let class_bytes: f64 = classes
        .values()
        .map(|v| v["online_bytes"].as_f64().unwrap())
        .sum();
    let total = c["online_bytes"].as_f64().unwrap();
    assert!(total > 0.0 && (class_bytes - total).abs() < 1e-6 * total);
    let keys: Vec<&String> = classes.keys().collect();
    assert_eq!(keys, ["activation", "matmul", "norm", "other", "softmax"]);
    // The three rows shared one forward of the default batch (8): one query alone waits for
    // about three times the rounds each of them paid.
    assert_eq!(r["batch"], 8);
    let q = &r["latency_one_query"];
    assert_eq!(q["basis"], "derived");
    let (q_rounds, rounds) = (q["rounds"].as_f64().unwrap(), c["rounds"].as_f64().unwrap());
    assert!(
        q_rounds > 2.5 * rounds && q_rounds < 3.0 * rounds,
        "{q} {c}"
    );
    assert_eq!(q["online_bytes"], c["online_bytes"]);
    assert!(q["est_seconds"]["wan"].as_f64().unwrap() > est["wan"].as_f64().unwrap());
    assert!(
        stdout.contains("one query alone (batch 1, derived)"),
        "{stdout}"
    );
    Ok(())
}

/// The greedy tokens' smallest lead of the top logit over the runner-up along the way: what
/// the fixed-point error of the secure forward must stay below.
fn greedy_margin(model: &Llama, prompt: &[u32], tokens: &[u32]) -> Result<f32> {
    let mut seq = prompt.to_vec();
    let mut margin = f32::INFINITY;
    for &t in tokens {
        let ids = Tensor::new(seq.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
        let logits: Vec<f32> = model
            .forward(&ids, None, false)?
            .logits
            .get(0)?
            .get(seq.len() - 1)?
            .to_vec1()?;
        let mut sorted = logits.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        margin = margin.min(sorted[0] - sorted[1]);
        seq.push(t);
    }
    Ok(margin)
}

/// Secure greedy decoding of a batch of prompts (one stopped early by a stop token, so the
/// batch shrinks mid-way) gives exactly candle's cached greedy tokens on both protocols, for
/// the student (public first layer, merged heads, secret LoRA) and the teacher (every layer
/// private). The prompts are chosen among candidates for a clear lead at every step.
#[test]
fn secure_decoding_gives_the_plaintext_greedy_tokens() -> Result<()> {
    const NEW: usize = 5;
    for (model, public_layers, secrecy) in [
        (student(merged_heads())?, 1, Secrecy::LoraOnly),
        (student(MarillArch::standard())?, 0, Secrecy::FullWeights),
    ] {
        let mut chosen: Vec<(Vec<u32>, Vec<u32>)> = Vec::new();
        for seed in 0..40u32 {
            let prompt: Vec<u32> = (0..3 + seed % 6)
                .map(|i| (seed * 31 + i * 7) % 320)
                .collect();
            let tokens = generate_greedy(&model, &prompt, NEW, &[])?;
            if greedy_margin(&model, &prompt, &tokens)? > 0.15 {
                chosen.push((prompt, tokens));
            }
            if chosen.len() == 3 {
                break;
            }
        }
        assert_eq!(chosen.len(), 3, "too few prompts with a clear margin");
        // The first prompt's third token stops it (unless another prompt meets it first).
        let stop = [chosen[0].1[2]];
        let want: Vec<Vec<u32>> = chosen
            .iter()
            .map(|(p, _)| generate_greedy(&model, p, NEW, &stop))
            .collect::<Result<_>>()?;
        assert!(want[0].len() < NEW, "the stop token ends the first answer");
        let prompts: Vec<Vec<u32>> = chosen.into_iter().map(|(p, _)| p).collect();
        let secure = SecureModel::new(&model, public_layers, secrecy)?;
        let policy = GenerationPolicy {
            positions: model.config.max_position_embeddings,
            max_new_tokens: NEW,
            max_batch: 2,
            max_prompts: 4,
        };
        let job = ClientGeneration {
            model: &model,
            public_layers,
            prompts: &prompts,
            batch: 2,
            max_new_tokens: NEW,
            stop: &stop,
        };
        for kind in ProtocolKind::ALL {
            let run = run_generation(kind, &RunOptions::default(), &secure, &job, &policy, |_| {})?;
            assert_eq!(run.tokens, want, "{kind} {secrecy:?}");
            assert_eq!(run.prefills, 2, "{kind}: batches of 2 and 1");
            let decoded: usize = want.iter().map(|t| t.len().min(NEW - 1)).sum();
            assert_eq!(
                run.decoded, decoded,
                "{kind}: a step per token after the first"
            );
            assert!(run.decode.rounds > 0 && run.prefill.rounds > 0);
        }
    }
    Ok(())
}

/// The server refuses a job beyond its policy before anything secret is touched, and says
/// why to the client: more new tokens than it serves, a prompt whose answer would not fit the
/// model's positions.
#[test]
fn the_server_bounds_a_generation_job() -> Result<()> {
    let model = student(MarillArch::standard())?;
    let secure = SecureModel::new(&model, 0, Secrecy::FullWeights)?;
    let prompts = vec![vec![5u32; 10]];
    let policy = GenerationPolicy {
        positions: 12,
        max_new_tokens: 4,
        max_batch: 2,
        max_prompts: 4,
    };
    for (max_new, want) in [
        (5, "5 new tokens (this server generates 1 to 4)"),
        (
            3,
            "prompt 0: 10 tokens and 3 new ones exceed the model's 12 positions",
        ),
    ] {
        let job = ClientGeneration {
            model: &model,
            public_layers: 0,
            prompts: &prompts,
            batch: 1,
            max_new_tokens: max_new,
            stop: &[],
        };
        let run = run_generation(
            ProtocolKind::TwoPartyDealer,
            &RunOptions::default(),
            &secure,
            &job,
            &policy,
            |_| {},
        );
        let err = format!("{:#}", run.err().expect("refused"));
        assert!(err.contains(want), "{err}");
    }
    Ok(())
}
