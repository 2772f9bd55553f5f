//! Training on a tiny random Llama: every adapter gets a gradient, frozen weights never change,
//! the model learns a separable task, and a killed run resumes to the uninterrupted result.

use anyhow::Result;
use candle_core::{Device, Tensor, Var};
use marill::model::lora_target::LoraTarget;
use marill::model::marill::{LoraSpec, MarillArch, attach_lora};
use marill::model::tiny::tiny_weights;
use marill::model::weights::Weights;
use marill::model::{Llama, LlamaConfig};
use marill::recipe::LrSchedule;
use marill::train::batch::{Batch, Encoded, forward_batch, prefix_activations};
use marill::train::choice::ChoiceData;
use marill::train::loss::choice_cross_entropy;
use marill::train::optimizer::AdamWConfig;
use marill::train::trainer::{LossWeights, Stage, StageConfig, train_stage};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

/// Random sequences whose label is whether the first token is one of 0..4 (the first token is
/// always one of 0..8): learnable, through attention, from a few dozen examples.
fn dataset(n: usize, seed: u64) -> Vec<Encoded> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let len = 4 + rng.random_range(0..6);
            let mut ids: Vec<u32> = (0..len).map(|_| rng.random_range(0..256)).collect();
            ids[0] = rng.random_range(0..8);
            let target = usize::from(ids[0] < 4);
            Encoded {
                ids,
                choices: vec![300, 301],
                target,
            }
        })
        .collect()
}

type Student = (Llama, Vec<(String, Var)>);

fn student(public_layers: usize) -> Result<Student> {
    let config = LlamaConfig::tiny();
    let mut model = Llama::from_weights(
        config.clone(),
        &Weights::new(tiny_weights(&config, 11)?),
        &Device::Cpu,
    )?;
    let arch = MarillArch {
        public_layers,
        head_merge: 3,
        ..MarillArch::standard()
    };
    arch.apply(&mut model)?;
    let spec = LoraSpec {
        rank: 4,
        alpha: 8.0,
        targets: LoraTarget::ALL.to_vec(),
        dropout: 0.1,
    };
    let private = arch.private_layers(&model);
    let vars = attach_lora(
        &mut model,
        private,
        &spec,
        &HashMap::new(),
        &mut ChaCha8Rng::seed_from_u64(5),
    )?;
    Ok((model, vars))
}

fn config(epochs: usize) -> StageConfig {
    StageConfig {
        epochs,
        batch: 8,
        accumulation: 2,
        adamw: AdamWConfig {
            lr: 3e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        },
        schedule: LrSchedule::Cosine,
        warmup_ratio: 0.1,
        grad_clip: 1.0,
        eval_interval: 3,
        seed: 7,
        loss: LossWeights {
            ce: 1.0,
            kl: 0.0,
            hidden: 0.0,
            temperature: 1.0,
        },
    }
}

fn values(vars: &[(String, Var)]) -> Result<Vec<Vec<f32>>> {
    vars.iter()
        .map(|(_, v)| Ok(v.as_tensor().flatten_all()?.to_vec1()?))
        .collect()
}

#[test]
fn every_adapter_gets_a_gradient_and_frozen_weights_stay() -> Result<()> {
    let (model, vars) = student(2)?;
    // B starts at zero, so A's gradient is zero on the first step by construction; one step of
    // plain SGD on B makes every factor's gradient non-zero.
    let train = dataset(16, 1);
    let inputs = prefix_activations(&model, &train, 2)?;
    let rows: Vec<usize> = (0..16).collect();
    let batch = Batch::new(&rows, &train, &inputs)?;
    let loss = |model: &Llama| -> Result<Tensor> {
        let out = forward_batch(model, &batch, 2, false)?;
        choice_cross_entropy(&out.choice_logits, &batch.choice_mask, &batch.targets)
    };
    let grads = loss(&model)?.backward()?;
    for (name, var) in vars.iter().filter(|(n, _)| n.contains("lora_B")) {
        let g = grads.get(var.as_tensor()).expect(name);
        var.set(&(var.as_tensor() - (g * 1.0)?)?)?;
    }
    let grads = loss(&model)?.backward()?;
    for (name, var) in &vars {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        assert!(
            g.sqr()?.sum_all()?.to_scalar::<f32>()? > 0.0,
            "{name}: zero gradient"
        );
    }
    // The frozen public weights are not variables and receive no gradient.
    let frozen = &model.layers[3].attention.q_proj.weight;
    assert!(!frozen.is_variable() && grads.get(frozen).is_none());
    Ok(())
}

#[test]
fn training_learns_and_a_killed_run_resumes_to_the_same_end() -> Result<()> {
    let (train, validation) = (dataset(64, 2), dataset(32, 3));
    let dir = tempfile::tempdir()?;
    let run = |stop_after: Option<usize>,
               resume: bool,
               dir: &std::path::Path|
     -> Result<(Vec<Vec<f32>>, f64)> {
        let (model, vars) = student(1)?;
        let frozen_before: Vec<f32> = model.layers[2]
            .mlp
            .up_proj
            .weight
            .flatten_all()?
            .to_vec1()?;
        let ti = prefix_activations(&model, &train, 1)?;
        let vi = prefix_activations(&model, &validation, 1)?;
        let stage = Stage {
            name: "student",
            model: &model,
            vars: vars.clone(),
            first_layer: 1,
        };
        let data = ChoiceData {
            train: &train,
            train_inputs: &ti,
            validation: &validation,
            validation_inputs: &vi,
            teacher: None,
        };
        let outcome = train_stage(&stage, &data, &config(6), dir, resume, stop_after)?;
        let frozen_after: Vec<f32> = model.layers[2]
            .mlp
            .up_proj
            .weight
            .flatten_all()?
            .to_vec1()?;
        assert_eq!(frozen_before, frozen_after, "a frozen weight changed");
        Ok((values(&vars)?, outcome.best_val_accuracy))
    };
    let (uninterrupted, accuracy) = run(None, false, dir.path())?;
    assert!(accuracy >= 0.75, "validation accuracy {accuracy}");

    let dir2 = tempfile::tempdir()?;
    run(Some(5), false, dir2.path())?;
    let (resumed, accuracy2) = run(None, true, dir2.path())?;
    assert_eq!(accuracy, accuracy2);
    assert_eq!(uninterrupted, resumed);
    Ok(())
}
