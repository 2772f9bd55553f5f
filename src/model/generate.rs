//! Greedy decoding with a key/value cache.

use super::attention::KvCache;
use super::llama::Llama;
use anyhow::Result;
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
}
