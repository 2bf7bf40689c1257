//! Which message each rendered token belongs to, and which tokens a model samples, for any chat
//! template.
//!
//! A template is opaque, so attribution comes from renders of prefixes of the conversation (all
//! through the tokenizer's encode cache, so only new text is tokenized):
//! * `p[k]`, where message `k` starts: the ids of `messages[..k]` (no generation prompt) shared
//!   with the whole render, made non-decreasing from the right (a template that renders a last
//!   assistant turn differently, Qwen3's think block, gives a short prefix there);
//! * for an assistant message `k`, what the model samples: from where the render of
//!   `messages[..k]` with the generation prompt stops agreeing with the whole render, up to and
//!   including the first stop token after it; message `k` starts no later than that and ends no
//!   earlier than its stop token.
//!
//! Tokens after the last message (the generation prompt) belong to no message (`-1`). The cost is
//! one render per message (and one more per assistant message), so O(messages x length): the
//! bridge (`crate::tito::bridge`) attributes only the new messages.

use serde_json::Value as Json;

use crate::error::Result;
use crate::template::chat::{self, ChatOptions};
use crate::template::tokenizer::Tokenizer;
use crate::tito::messages::role;

/// A render with its attribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributed {
    /// The ids, identical to [`chat::render_ids`] with the same options.
    pub ids: Vec<u32>,
    /// Per id: the index of its message, or -1 outside every message.
    pub message_indices: Vec<i32>,
    /// Per id: the model samples it (an assistant message's body and its stop token).
    pub sampled: Vec<bool>,
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Renders `messages` with `options` and attributes every id (see the module documentation).
pub fn attribute(
    tok: &Tokenizer,
    messages: &[Json],
    options: &ChatOptions,
    stop_ids: &[u32],
) -> Result<Attributed> {
    let ids = chat::render_ids(tok, messages.to_vec(), options)?;
    let n = messages.len();
    let without_prompt = ChatOptions {
        add_generation_prompt: false,
        ..options.clone()
    };
    let with_prompt = ChatOptions {
        add_generation_prompt: true,
        ..options.clone()
    };
    // starts[k]: where message k starts; starts[n]: where the messages end.
    let mut starts = vec![0usize; n + 1];
    for (k, start) in starts.iter_mut().enumerate().skip(1) {
        *start = if k == n && !options.add_generation_prompt {
            ids.len()
        } else {
            // a prefix the template rejects (e.g. one ending in a tool message) says nothing
            chat::render_ids(tok, messages[..k].to_vec(), &without_prompt)
                .map(|p| common_prefix(&p, &ids))
                .unwrap_or(0)
        };
    }
    for k in (0..n).rev() {
        starts[k] = starts[k].min(starts[k + 1]);
    }
    let mut sampled = vec![false; ids.len()];
    for (k, message) in messages.iter().enumerate() {
        if role(message) != "assistant" {
            continue;
        }
        let Ok(prompt) = chat::render_ids(tok, messages[..k].to_vec(), &with_prompt) else {
            continue;
        };
        let from = common_prefix(&prompt, &ids);
        let Some(stop) = ids[from..].iter().position(|id| stop_ids.contains(id)) else {
            continue;
        };
        let to = from + stop + 1;
        sampled[from..to].fill(true);
        starts[k] = starts[k].min(from);
        starts[k + 1] = starts[k + 1].max(to);
    }
    // keep the boundaries ordered after the assistant adjustments
    for k in 1..=n {
        starts[k] = starts[k].max(starts[k - 1]);
    }
    let mut message_indices = vec![-1i32; ids.len()];
    for k in 0..n {
        let end = starts[k + 1].min(ids.len());
        let begin = starts[k].min(end);
        message_indices[begin..end].fill(k as i32);
    }
    Ok(Attributed {
        ids,
        message_indices,
        sampled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn qwen25_tokens_belong_to_their_messages() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/qwen2.5");
        let tok = Tokenizer::from_dir(&dir, &Default::default()).unwrap();
        let messages = [
            json!({"role": "user", "content": "hi"}),
            json!({"role": "assistant", "content": "hello"}),
            json!({"role": "user", "content": "bye"}),
        ];
        let options = ChatOptions {
            add_generation_prompt: true,
            ..Default::default()
        };
        let a = attribute(&tok, &messages, &options, tok.stop_token_ids()).unwrap();
        assert_eq!(
            a.ids,
            chat::render_ids(&tok, messages.to_vec(), &options).unwrap()
        );
        let text_of = |k: i32| {
            let ids: Vec<u32> = a
                .ids
                .iter()
                .zip(&a.message_indices)
                .filter(|(_, m)| **m == k)
                .map(|(i, _)| *i)
                .collect();
            tok.decode(&ids, false).unwrap()
        };
        assert!(text_of(0).ends_with("<|im_start|>user\nhi<|im_end|>\n"));
        assert!(text_of(0).starts_with("<|im_start|>system\n"));
        assert_eq!(text_of(1), "<|im_start|>assistant\nhello<|im_end|>\n");
        assert_eq!(text_of(2), "<|im_start|>user\nbye<|im_end|>\n");
        assert_eq!(text_of(-1), "<|im_start|>assistant\n");
        let sampled: Vec<u32> = a
            .ids
            .iter()
            .zip(&a.sampled)
            .filter(|(_, s)| **s)
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(tok.decode(&sampled, false).unwrap(), "hello<|im_end|>");
    }
}
