//! The decoder on a tiny random Llama: loading, layer ranges, padding, gradients, and agreement
//! with candle-transformers' own Llama on the same weights.

use anyhow::Result;
use candle_core::{D, DType, Device, Tensor, Var};
use marill::model::tiny::{tiny_weights, write_tiny_model};
use marill::model::variants::{Activation, SoftmaxKind};
use marill::model::weights::Weights;
use marill::model::{Llama, LlamaConfig, ModelSource, load};

fn tiny_dir() -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    write_tiny_model(dir.path(), &LlamaConfig::tiny(), 7)?;
    Ok(dir)
}

fn ids(rows: &[&[u32]]) -> Result<Tensor> {
    let t = rows[0].len();
    let flat: Vec<u32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Ok(Tensor::from_vec(flat, (rows.len(), t), &Device::Cpu)?)
}

fn max_abs(a: &Tensor, b: &Tensor) -> Result<f32> {
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

#[test]
fn loads_a_hugging_face_directory_with_its_tokenizer() -> Result<()> {
    let dir = tiny_dir()?;
    let source = ModelSource::parse(dir.path().to_str().unwrap())?;
    assert!(matches!(source, ModelSource::HfDir(_)));
    let loaded = load(&source, &Device::Cpu)?;
    let c = LlamaConfig::tiny();
    assert_eq!(loaded.model.config, c);
    let per_layer = 2 * c.hidden_size * c.hidden_size
        + 2 * c.hidden_size * c.num_key_value_heads * c.head_dim()
        + 3 * c.hidden_size * c.intermediate_size
        + 2 * c.hidden_size;
    assert_eq!(
        loaded.model.parameter_count(),
        c.vocab_size * c.hidden_size + c.num_hidden_layers * per_layer + c.hidden_size
    );
    let text = marill::data::chat_prompt("héllo 42");
    let ids = marill::model::tokenizer::encode(&loaded.tokenizer, &text)?;
    assert_eq!(
        loaded
            .tokenizer
            .decode(&ids, false)
            .map_err(anyhow::Error::msg)?,
        text
    );
    let out = loaded.model.forward(
        &Tensor::new(ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?,
        None,
        true,
    )?;
    assert_eq!(out.logits.dims()[2], c.vocab_size);
    assert_eq!(out.hidden_states.len(), c.num_hidden_layers);
    Ok(())
}

#[test]
fn running_layer_ranges_in_turn_equals_the_full_forward() -> Result<()> {
    let dir = tiny_dir()?;
    let model = load(&ModelSource::HfDir(dir.path().into()), &Device::Cpu)?.model;
    let x = ids(&[&[5, 17, 99, 3, 250, 8], &[1, 2, 3, 4, 5, 6]])?;
    let full = model.forward(&x, None, true)?;
    let allowed = model.attention_mask(6, None)?;
    let (bottom, _) = model.forward_layers(&model.embed(&x)?, 0..2, &allowed, false)?;
    let (top, _) = model.forward_layers(&bottom, 2..model.num_layers(), &allowed, false)?;
    assert!(max_abs(&bottom, &full.hidden_states[1])? < 1e-6);
    assert!(max_abs(&model.logits(&top)?, &full.logits)? < 1e-5);
    Ok(())
}

#[test]
fn right_padding_leaves_real_positions_unchanged() -> Result<()> {
    let dir = tiny_dir()?;
    let model = load(&ModelSource::HfDir(dir.path().into()), &Device::Cpu)?.model;
    let alone = model.forward(&ids(&[&[5, 17, 99]])?, None, false)?.logits;
    let padded = model.forward(&ids(&[&[5, 17, 99, 0, 0], &[1, 2, 3, 4, 5]])?, None, false)?;
    let real = padded.logits.get(0)?.narrow(0, 0, 3)?.unsqueeze(0)?;
    assert!(max_abs(&alone, &real)? < 1e-5);
    // A key-padding mask hides the pads from every query, pads included.
    let mask = Tensor::new(&[[1u8, 1, 1, 0, 0]], &Device::Cpu)?;
    let masked = model.forward(&ids(&[&[5, 17, 99, 0, 0]])?, Some(&mask), false)?;
    assert!(max_abs(&alone, &masked.logits.narrow(1, 0, 3)?)? < 1e-5);
    assert!(
        masked
            .logits
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .all(|v| v.is_finite())
    );
    Ok(())
}

/// Rebuilds the tiny model with every weight a `Var`, so gradients can be inspected.
fn trainable(config: &LlamaConfig) -> Result<(Llama, Vec<(String, Var)>)> {
    let mut vars = Vec::new();
    let mut weights = Weights::default();
    for (name, t) in tiny_weights(config, 3)? {
        let var = Var::from_tensor(&t)?;
        weights.insert(name.clone(), var.as_tensor().clone());
        vars.push((name, var));
    }
    Ok((
        Llama::from_weights(config.clone(), &weights, &Device::Cpu)?,
        vars,
    ))
}

#[test]
fn every_weight_gets_a_gradient_with_every_variant() -> Result<()> {
    let config = LlamaConfig::tiny();
    for (activation, softmax) in [
        (Activation::Silu, SoftmaxKind::Exact),
        (Activation::Quad, SoftmaxKind::TwoQuad),
    ] {
        let (mut model, vars) = trainable(&config)?;
        for layer in &mut model.layers {
            layer.mlp.activation = activation;
            layer.attention.softmax = softmax;
        }
        let x = ids(&[&[5, 17, 99, 3, 250, 8]])?;
        let logits = model.forward(&x, None, false)?.logits;
        let loss = candle_nn::loss::cross_entropy(
            &logits.squeeze(0)?.narrow(0, 0, 5)?,
            &Tensor::new(&[17u32, 99, 3, 250, 8], &Device::Cpu)?,
        )?;
        let grads = loss.backward()?;
        for (name, var) in &vars {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient ({activation:?}, {softmax:?})"));
            let norm = g.sqr()?.sum_all()?.to_scalar::<f32>()?;
            assert!(
                norm > 0.0,
                "{name}: zero gradient ({activation:?}, {softmax:?})"
            );
        }
    }
    Ok(())
}

#[test]
fn matches_candle_transformers_llama_on_the_same_weights() -> Result<()> {
    use candle_transformers::models::llama as reference;
    let dir = tiny_dir()?;
    let ours = load(&ModelSource::HfDir(dir.path().into()), &Device::Cpu)?.model;
    let c = LlamaConfig::tiny();
    let ref_config: reference::LlamaConfig =
        serde_json::from_value(c.to_hf_json()).expect("candle-transformers reads our config.json");
    let ref_config = ref_config.into_config(false);
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(
            &[dir.path().join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )?
    };
    let model = reference::Llama::load(vb, &ref_config)?;
    let mut cache = reference::Cache::new(false, DType::F32, &ref_config, &Device::Cpu)?;
    let x = ids(&[&[5, 17, 99, 3, 250, 8, 42]])?;
    let expected = model.forward(&x, 0, &mut cache)?.squeeze(0)?;
    let got = ours.forward(&x, None, false)?.logits.get(0)?.get(6)?;
    assert_eq!(
        expected.argmax(D::Minus1)?.to_scalar::<u32>()?,
        got.argmax(D::Minus1)?.to_scalar::<u32>()?
    );
    assert!(
        max_abs(&expected, &got)? < 1e-4,
        "{}",
        max_abs(&expected, &got)?
    );
    Ok(())
}

/// `config.json` as transformers 5 writes it: the RoPE base under `rope_parameters`, no
/// top-level `rope_theta`.
fn to_transformers5_layout(dir: &std::path::Path) -> Result<()> {
    let path = dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let theta = config
        .as_object_mut()
        .unwrap()
        .remove("rope_theta")
        .unwrap();
    config["rope_parameters"] = serde_json::json!({"rope_theta": theta, "rope_type": "default"});
    config["transformers_version"] = serde_json::json!("5.0.0");
    std::fs::write(&path, serde_json::to_string_pretty(&config)?)?;
    Ok(())
}

#[test]
fn a_transformers5_directory_loads_with_its_rope_base() -> Result<()> {
    // SmolLM2's RoPE base on the tiny shapes.
    let smollm2_rope = LlamaConfig {
        rope_theta: 100_000.0,
        ..LlamaConfig::tiny()
    };
    let v4 = tempfile::tempdir()?;
    write_tiny_model(v4.path(), &smollm2_rope, 7)?;
    let v5 = tempfile::tempdir()?;
    write_tiny_model(v5.path(), &smollm2_rope, 7)?;
    to_transformers5_layout(v5.path())?;
    let old = load(&ModelSource::HfDir(v4.path().into()), &Device::Cpu)?.model;
    let new = load(&ModelSource::HfDir(v5.path().into()), &Device::Cpu)?.model;
    assert_eq!(new.config.rope_theta, 100_000.0);
    assert_eq!(new.config, old.config);
    let x = ids(&[&[5, 17, 99, 3, 250, 8, 42]])?;
    let logits = |m: &Llama| m.forward(&x, None, false).map(|o| o.logits);
    assert_eq!(max_abs(&logits(&new)?, &logits(&old)?)?, 0.0);
    // The base matters on these weights: the 10,000 default would have given other logits.
    let default_base = tempfile::tempdir()?;
    write_tiny_model(default_base.path(), &LlamaConfig::tiny(), 7)?;
    let wrong = load(
        &ModelSource::HfDir(default_base.path().into()),
        &Device::Cpu,
    )?
    .model;
    assert!(max_abs(&logits(&wrong)?, &logits(&old)?)? > 1e-3);
    Ok(())
}
