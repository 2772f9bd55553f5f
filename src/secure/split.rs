//! Which part of a model runs where: the public layers in plaintext at the client, the rest
//! under MPC with the server's weights secret as a checkpoint says (a student's LoRA factors, a
//! teacher's full weights), and what a checkpoint may not hold for that to be sound.

use super::projection::Secrecy;
use crate::checkpoint::{CheckpointKind, Manifest, PrivateTensor};
use anyhow::{Result, bail};

/// What runs in plaintext at the client and who holds the private weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecureSplit {
    pub public_layers: usize,
    pub secrecy: Secrecy,
}

impl SecureSplit {
    /// A bare base model served as is: every layer private, with secret full weights.
    pub const BARE: SecureSplit = SecureSplit {
        public_layers: 0,
        secrecy: Secrecy::FullWeights,
    };

    /// A student's public prefix and secret LoRA; a teacher's every layer, with secret full
    /// weights. Refuses a checkpoint with private tensors that the secure forward would treat
    /// as public: the final norm or head (the client computes with them), and in a student
    /// any tuned norm or whole projection (only its LoRA factors are the server's).
    pub fn of_checkpoint(manifest: &Manifest, private: &[PrivateTensor]) -> Result<Self> {
        let secrecy = match manifest.kind {
            CheckpointKind::Student => Secrecy::LoraOnly,
            CheckpointKind::Teacher => Secrecy::FullWeights,
        };
        for t in private {
            let public_part = match *t {
                PrivateTensor::FinalNorm | PrivateTensor::Head => true,
                PrivateTensor::Lora { .. } => false,
                PrivateTensor::Projection { layer, .. } | PrivateTensor::Norm { layer, .. } => {
                    secrecy == Secrecy::LoraOnly || !manifest.split.is_private(layer)
                }
            };
            if public_part {
                bail!(
                    "private.safetensors holds `{}`, which secure evaluation would treat as public: this checkpoint cannot be evaluated under MPC",
                    t.name()
                );
            }
        }
        Ok(SecureSplit {
            public_layers: manifest.split.public_layers,
            secrecy,
        })
    }
}
