//! The projections LoRA can adapt, by their short recipe names.

use super::LlamaConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoraTarget {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl LoraTarget {
    pub const ALL: [LoraTarget; 7] = [
        LoraTarget::Q,
        LoraTarget::K,
        LoraTarget::V,
        LoraTarget::O,
        LoraTarget::Gate,
        LoraTarget::Up,
        LoraTarget::Down,
    ];

    /// `(in, out)` features of this projection in `config`'s decoder layers (Hugging Face
    /// stores weights as `(out, in)`).
    pub fn dims(self, config: &LlamaConfig) -> (usize, usize) {
        let hidden = config.hidden_size;
        let kv = config.num_key_value_heads * config.head_dim();
        let ffn = config.intermediate_size;
        match self {
            LoraTarget::Q | LoraTarget::O => (hidden, hidden),
            LoraTarget::K | LoraTarget::V => (hidden, kv),
            LoraTarget::Gate | LoraTarget::Up => (hidden, ffn),
            LoraTarget::Down => (ffn, hidden),
        }
    }

    /// The first target a list names twice (a recipe or manifest typo that would attach one
    /// adapter twice).
    pub fn first_repeated(targets: &[LoraTarget]) -> Option<LoraTarget> {
        let mut seen = [false; LoraTarget::ALL.len()];
        targets
            .iter()
            .copied()
            .find(|&t| std::mem::replace(&mut seen[t as usize], true))
    }

    /// The module inside a decoder layer, in Hugging Face naming (`self_attn.q_proj`).
    pub fn module(self) -> &'static str {
        match self {
            LoraTarget::Q => "self_attn.q_proj",
            LoraTarget::K => "self_attn.k_proj",
            LoraTarget::V => "self_attn.v_proj",
            LoraTarget::O => "self_attn.o_proj",
            LoraTarget::Gate => "mlp.gate_proj",
            LoraTarget::Up => "mlp.up_proj",
            LoraTarget::Down => "mlp.down_proj",
        }
    }

    /// The recipe name (`q`, `gate`).
    pub fn short_name(self) -> &'static str {
        match self {
            LoraTarget::Q => "q",
            LoraTarget::K => "k",
            LoraTarget::V => "v",
            LoraTarget::O => "o",
            LoraTarget::Gate => "gate",
            LoraTarget::Up => "up",
            LoraTarget::Down => "down",
        }
    }

    /// PEFT's `target_modules` name (`q_proj`).
    pub fn peft_name(self) -> &'static str {
        self.module()
            .rsplit('.')
            .next()
            .expect("dotted module path")
    }
}

impl std::str::FromStr for LoraTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        LoraTarget::ALL
            .into_iter()
            .find(|t| t.short_name() == s)
            .ok_or_else(|| {
                format!("unknown LoRA target `{s}`; expected one of q, k, v, o, gate, up, down")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_follow_the_architecture() {
        let config = LlamaConfig::tiny();
        assert_eq!(LoraTarget::Q.dims(&config), (48, 48));
        assert_eq!(LoraTarget::K.dims(&config), (48, 16));
        assert_eq!(LoraTarget::Up.dims(&config), (48, 96));
        assert_eq!(LoraTarget::Down.dims(&config), (96, 48));
    }
}
