//! How a task prompt is presented to the model: as plain completion-style text, or as the user
//! turn of SmolLM2's ChatML template.

use serde::{Deserialize, Serialize};

/// How a task prompt is presented to the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PromptFormat {
    /// The completion-style prompt as it is; the answer follows after a space.
    #[default]
    Plain,
    /// Inside the model's ChatML template as the user turn; the answer is the assistant turn.
    Chat,
}

impl PromptFormat {
    pub fn name(self) -> &'static str {
        match self {
            PromptFormat::Plain => "plain",
            PromptFormat::Chat => "chat",
        }
    }

    pub fn wrap(self, message: &str) -> String {
        match self {
            PromptFormat::Plain => message.to_string(),
            PromptFormat::Chat => chat_prompt(message),
        }
    }

    /// What stands between the prompt and the answer's first word.
    pub fn answer_prefix(self) -> &'static str {
        match self {
            PromptFormat::Plain => " ",
            PromptFormat::Chat => "",
        }
    }
}

/// SmolLM2's default system turn, which its chat template inserts when none is given.
pub const DEFAULT_SYSTEM_PROMPT: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// The ChatML conversation of one user turn, ending where the assistant's answer begins.
pub fn chat_prompt(user: &str) -> String {
    format!(
        "<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )
}
