//! Greedy decoding with a key/value cache, one sequence or a left-padded batch of them.
//!
//! A batch is left-padded so that every row's next token comes at the same step; padding keys
//! are masked. RoPE scores depend only on the distance between query and key, so a row shifted
//! right by its padding attends exactly as it would alone (up to float rounding).

use super::attention::KvCache;
use super::llama::Llama;
use anyhow::{Result, ensure};
use candle_core::{D, Tensor};

/// Greedily continues `prompt` by up to `max_new_tokens` tokens, stopping before any of `stop`.
pub fn generate_greedy(
    model: &Llama,
    prompt: &[u32],
    max_new_tokens: usize,
    stop: &[u32],
) -> Result<Vec<u32>> {
    let mut caches = vec![KvCache::default(); model.num_layers()];
    let mut input = prompt.to_vec();
    let mut generated = Vec::new();
    for _ in 0..max_new_tokens {
        let past = caches[0].len();
        let allowed = model.causal_mask(input.len(), past)?;
        let mut h = model.embed(&Tensor::new(input.as_slice(), model.device())?.unsqueeze(0)?)?;
        for (layer, cache) in model.layers.iter().zip(caches.iter_mut()) {
            h = layer.forward(&h, &model.rope, &allowed, Some(cache))?;
        }
        let last = h.get(0)?.get(input.len() - 1)?;
        let next = model.logits(&last)?.argmax(D::Minus1)?.to_scalar::<u32>()?;
        if stop.contains(&next) {
            break;
        }
        generated.push(next);
        input = vec![next];
    }
    Ok(generated)
}

/// [`generate_greedy`] for several prompts at once: each row's continuation, stopping before
/// any of `stop` (a stopped row is carried along, its further tokens dropped).
pub fn generate_greedy_batch(
    model: &Llama,
    prompts: &[Vec<u32>],
    max_new_tokens: usize,
    stop: &[u32],
) -> Result<Vec<Vec<u32>>> {
    let rows = prompts.len();
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    ensure!(
        prompts.iter().all(|p| !p.is_empty()),
        "a prompt to decode is empty"
    );
    let mut input: Vec<u32> = Vec::with_capacity(rows * longest);
    // Per row, 1 for each real key so far, 0 for padding.
    let mut real_keys: Vec<Vec<f32>> = Vec::with_capacity(rows);
    for p in prompts {
        let pad = longest - p.len();
        input.extend(std::iter::repeat_n(0, pad).chain(p.iter().copied()));
        real_keys.push([vec![0.0; pad], vec![1.0; p.len()]].concat());
    }
    let mut caches = vec![KvCache::default(); model.num_layers()];
    let mut generated = vec![Vec::new(); rows];
    let mut stopped = vec![false; rows];
    let mut new = longest;
    for _ in 0..max_new_tokens {
        let past = caches[0].len();
        let keys = past + new;
        let key_mask: Vec<f32> = real_keys.iter().flatten().copied().collect();
        let key_mask = Tensor::from_vec(key_mask, (rows, 1, 1, keys), model.device())?;
        let allowed = model.causal_mask(new, past)?.broadcast_mul(&key_mask)?;
        let ids = Tensor::from_vec(input, (rows, new), model.device())?;
        let mut h = model.embed(&ids)?;
        for (layer, cache) in model.layers.iter().zip(caches.iter_mut()) {
            h = layer.forward(&h, &model.rope, &allowed, Some(cache))?;
        }
        let last = h.narrow(1, new - 1, 1)?.squeeze(1)?;
        let next: Vec<u32> = model.logits(&last)?.argmax(D::Minus1)?.to_vec1()?;
        for (row, &token) in next.iter().enumerate() {
            if stopped[row] || stop.contains(&token) {
                stopped[row] = true;
            } else {
                generated[row].push(token);
            }
            real_keys[row].push(1.0);
        }
        if stopped.iter().all(|&s| s) {
            break;
        }
        input = next;
        new = 1;
    }
    Ok(generated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LlamaConfig;
    use crate::model::tiny::tiny_weights;
    use crate::model::weights::Weights;
    use candle_core::Device;

    #[test]
    fn cached_decoding_equals_recomputing_the_whole_sequence() -> Result<()> {
        let config = LlamaConfig::tiny();
        let weights = Weights::new(tiny_weights(&config, 5)?);
        let model = Llama::from_weights(config, &weights, &Device::Cpu)?;
        let prompt = [3u32, 44, 120, 7, 9];
        let cached = generate_greedy(&model, &prompt, 6, &[])?;
        let mut seq = prompt.to_vec();
        for _ in 0..6 {
            let ids = Tensor::new(seq.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
            let logits = model
                .forward(&ids, None, false)?
                .logits
                .get(0)?
                .get(seq.len() - 1)?;
            seq.push(logits.argmax(D::Minus1)?.to_scalar::<u32>()?);
        }
        assert_eq!(cached, seq[prompt.len()..]);
        Ok(())
    }

    #[test]
    fn a_left_padded_batch_decodes_as_each_prompt_alone() -> Result<()> {
        let config = LlamaConfig::tiny();
        let weights = Weights::new(tiny_weights(&config, 5)?);
        let model = Llama::from_weights(config, &weights, &Device::Cpu)?;
        let prompts = vec![vec![3u32, 44, 120, 7, 9], vec![17], vec![250, 8, 8]];
        let alone: Vec<Vec<u32>> = prompts
            .iter()
            .map(|p| generate_greedy(&model, p, 6, &[]))
            .collect::<Result<_>>()?;
        assert_eq!(generate_greedy_batch(&model, &prompts, 6, &[])?, alone);
        // A stop token ends only the rows that produce it.
        let stop = alone[1][2];
        let with_stop: Vec<Vec<u32>> = prompts
            .iter()
            .map(|p| generate_greedy(&model, p, 6, &[stop]))
            .collect::<Result<_>>()?;
        assert!(with_stop[1].len() <= 2);
        assert_eq!(
            generate_greedy_batch(&model, &prompts, 6, &[stop])?,
            with_stop
        );
        Ok(())
    }
}
