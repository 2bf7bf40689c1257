//! Bridge tokens: the ids that join a previous turn's verbatim ids to the next generation prompt.
//!
//! The algorithm is verifiers' `get_prompt_ids` (`docs/wire.md` E.2) with its fixes:
//! * the tail after the matched prefix must be one or more `tool` messages, or zero or more
//!   `tool` messages then exactly one `user` message (vf #1005, #1443);
//! * a dummy assistant stands in for the sampled turn, so sampled text is never re-tokenized;
//!   it carries `tool_calls` whose ids match the leading tool messages (MiniMax-M2.5, vf #1134),
//!   with the real tool names of the matched turn where known (gpt-oss renders a tool result
//!   with the name of its call, `docs/models.md`), and `reasoning_content: ""`
//!   (GLM-5.1, vf #1322);
//! * `full = render([dummy] + tail, add_generation_prompt)` must start with
//!   `base = render([dummy])` (the "bridge prefix property");
//! * the gap: the template tokens after the stop token in `base` (Qwen's `\n` after
//!   `<|im_end|>`), which the engine never samples, are put back in front of the bridge;
//! * a bridge that starts with the stop token again loses it (GLM's `<|observation|>` is both
//!   the stop token and the next role marker, vf #1005).

use serde_json::{json, Map, Value as Json};

use crate::tito::messages::role;

/// Why a turn goes as messages (MITO) instead of tokens. Every fallback is counted and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fallback {
    /// No previous turn: the first turn is rendered in full.
    FirstTurn,
    /// No previous turn's messages are a prefix of the new prompt.
    NoPrefixMatch,
    /// The new messages after the prefix are not tool results, optionally ending in one user
    /// message.
    InvalidTail,
    /// The matched turn was cut by the length limit (no stop token to anchor the gap).
    PreviousTurnTruncated,
    /// The matched turn ended without a stop token although it was not cut by length.
    StopTokenMissing,
    /// Image or audio content somewhere in the rollout.
    Multimodal,
    /// The tool set differs from the matched turn's (tools render into the prompt).
    ToolsChanged,
    /// `chat_template_kwargs` differ from the matched turn's.
    ChatTemplateKwargsChanged,
    /// `render([dummy] + tail)` does not start with `render([dummy])`.
    BridgePrefixMismatch,
    /// Rendering or tokenizing the bridge failed.
    TokenizationFailed,
}

impl Fallback {
    /// Every reason, in a stable order.
    pub const ALL: [Fallback; 10] = [
        Fallback::FirstTurn,
        Fallback::NoPrefixMatch,
        Fallback::InvalidTail,
        Fallback::PreviousTurnTruncated,
        Fallback::StopTokenMissing,
        Fallback::Multimodal,
        Fallback::ToolsChanged,
        Fallback::ChatTemplateKwargsChanged,
        Fallback::BridgePrefixMismatch,
        Fallback::TokenizationFailed,
    ];

    /// The reason's name, as reported in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::FirstTurn => "first_turn",
            Fallback::NoPrefixMatch => "no_prefix_match",
            Fallback::InvalidTail => "invalid_tail",
            Fallback::PreviousTurnTruncated => "previous_turn_truncated",
            Fallback::StopTokenMissing => "stop_token_missing",
            Fallback::Multimodal => "multimodal",
            Fallback::ToolsChanged => "tools_changed",
            Fallback::ChatTemplateKwargsChanged => "chat_template_kwargs_changed",
            Fallback::BridgePrefixMismatch => "bridge_prefix_mismatch",
            Fallback::TokenizationFailed => "tokenization_failed",
        }
    }

    /// The position of this reason in [`Fallback::ALL`].
    pub fn index(self) -> usize {
        Fallback::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }
}

/// Checks the tail rule: one or more `tool` messages, or zero or more `tool` messages then
/// exactly one final `user` message.
pub fn check_tail(tail: &[&Json]) -> Result<(), Fallback> {
    let Some((last, rest)) = tail.split_last() else {
        return Err(Fallback::InvalidTail);
    };
    let last_ok = matches!(role(last), "tool" | "user");
    if last_ok && rest.iter().all(|m| role(m) == "tool") {
        Ok(())
    } else {
        Err(Fallback::InvalidTail)
    }
}

/// The two conversations whose renders give the bridge: `[dummy] + tail` and `[dummy]`.
#[derive(Debug, Clone)]
pub struct BridgeInputs {
    /// `[dummy] + tail`, rendered with the generation prompt.
    pub full: Vec<Json>,
    /// `[dummy]`, rendered without it.
    pub base: Vec<Json>,
}

/// Builds the dummy assistant and the two conversations. `names` maps tool-call ids of the
/// matched turn to their function names; `string_arguments` writes the dummy's arguments as
/// `"{}"` (DeepSeek templates need a string) instead of `{}` (Qwen3-Coder needs a mapping).
pub fn bridge_inputs(
    tail: &[&Json],
    names: &Map<String, Json>,
    string_arguments: bool,
) -> BridgeInputs {
    let ids: Vec<&str> = tail
        .iter()
        .take_while(|m| role(m) == "tool")
        .filter_map(|m| m.get("tool_call_id").and_then(Json::as_str))
        .filter(|id| !id.is_empty())
        .collect();
    let dummy = if ids.is_empty() {
        json!({"role": "assistant", "reasoning_content": "", "content": "x"})
    } else {
        let calls: Vec<Json> = ids
            .iter()
            .map(|id| {
                let name = names.get(*id).cloned().unwrap_or_else(|| Json::from("f"));
                let arguments = if string_arguments { Json::from("{}") } else { json!({}) };
                json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
            })
            .collect();
        // `content: ""`: templates that concatenate `message['content']` (SmolLM2) fail on an
        // undefined one; every template of the matrix renders "" like an absent content.
        json!({"role": "assistant", "reasoning_content": "", "content": "", "tool_calls": calls})
    };
    let mut full = Vec::with_capacity(tail.len() + 1);
    full.push(dummy.clone());
    full.extend(tail.iter().map(|m| (*m).clone()));
    BridgeInputs {
        full,
        base: vec![dummy],
    }
}

/// The function names of the tool calls of the last assistant message in `prefix`, by call id.
pub fn tool_names(prefix: &[&Json]) -> Map<String, Json> {
    let mut names = Map::new();
    if let Some(assistant) = prefix.iter().rev().find(|m| role(m) == "assistant") {
        if let Some(Json::Array(calls)) = assistant.get("tool_calls") {
            for call in calls {
                let id = call.get("id").and_then(Json::as_str);
                // OpenAI shape, or verifiers' flat `vf.ToolCall` shape.
                let name = call
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .or_else(|| call.get("name"))
                    .and_then(Json::as_str);
                if let (Some(id), Some(name)) = (id, name) {
                    names.insert(id.to_owned(), Json::from(name));
                }
            }
        }
    }
    names
}

/// The stitched prompt and how it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stitched {
    /// Previous prompt + completion ids, then the bridge.
    pub ids: Vec<u32>,
    /// How many leading ids are the previous turn's, verbatim.
    pub reused: usize,
    /// Template tokens after the stop token that the engine never sampled, put back.
    pub gap: usize,
    /// Whether a duplicated leading stop token was dropped from the bridge.
    pub deduped: bool,
}

/// Joins `prev` (the matched turn's prompt + completion ids, in pieces) with the bridge from
/// the two renders. `prev` must end in the turn's stop token. The bridge is `ids[reused..]`.
pub fn stitch(prev: &[&[u32]], full: &[u32], base: &[u32]) -> Result<Stitched, Fallback> {
    if full.len() < base.len() || full[..base.len()] != *base {
        return Err(Fallback::BridgePrefixMismatch);
    }
    let stop = *prev
        .iter()
        .rev()
        .find_map(|piece| piece.last())
        .ok_or(Fallback::StopTokenMissing)?;
    let gap = base.iter().rev().position(|id| *id == stop).unwrap_or(0);
    let mut bridge = &full[base.len() - gap..];
    let mut deduped = false;
    if bridge.first() == Some(&stop) {
        bridge = &bridge[1..];
        deduped = true;
    }
    let reused = prev.iter().map(|piece| piece.len()).sum();
    let mut ids = Vec::with_capacity(reused + bridge.len());
    for piece in prev {
        ids.extend_from_slice(piece);
    }
    ids.extend_from_slice(bridge);
    Ok(Stitched {
        ids,
        reused,
        gap,
        deduped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stitch_matches_the_worked_examples() {
        // Qwen3 (docs/wire.md E.2): base = [..., <|im_end|>, \n], gap 1.
        let base = [151644, 77091, 198, 151645, 198];
        let mut full = base.to_vec();
        full.extend([151644, 872, 198, 9, 151645, 198, 151644, 77091, 198]);
        let s = stitch(&[&[1, 2], &[7, 151645]], &full, &base).unwrap();
        assert_eq!(
            s.ids,
            [1, 2, 7, 151645, 198, 151644, 872, 198, 9, 151645, 198, 151644, 77091, 198]
        );
        assert_eq!((s.reused, s.gap, s.deduped), (4, 1, false));
        // GLM (docs/wire.md E.2): the stop token <|observation|> (9) is not in base; the bridge
        // starts with it and it is dropped.
        let base = [5, 6];
        let full = [5, 6, 9, 3, 4];
        let s = stitch(&[&[1], &[2, 9]], &full, &base).unwrap();
        assert_eq!(s.ids, [1, 2, 9, 3, 4]);
        assert!(s.deduped);
        assert_eq!(
            stitch(&[&[1], &[2]], &[5, 7], &[5, 6]).unwrap_err(),
            Fallback::BridgePrefixMismatch
        );
        assert_eq!(
            stitch(&[&[], &[]], &[5, 6, 7], &[5, 6]).unwrap_err(),
            Fallback::StopTokenMissing
        );
    }

    #[test]
    fn tails() {
        let tool = json!({"role": "tool", "tool_call_id": "a"});
        let user = json!({"role": "user"});
        let asst = json!({"role": "assistant"});
        assert!(check_tail(&[&tool]).is_ok());
        assert!(check_tail(&[&tool, &tool, &user]).is_ok());
        assert!(check_tail(&[&user]).is_ok());
        assert!(check_tail(&[&user, &tool]).is_err());
        assert!(check_tail(&[&tool, &asst]).is_err());
        assert!(check_tail(&[&user, &user]).is_err());
        assert!(check_tail(&[]).is_err());
    }

    #[test]
    fn dummy_carries_ids_and_real_names() {
        let tool = json!({"role": "tool", "tool_call_id": "c1", "content": "r"});
        let prefix = [
            json!({"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "get_weather"}}]}),
        ];
        let names = tool_names(&prefix.iter().collect::<Vec<_>>());
        let inputs = bridge_inputs(&[&tool], &names, false);
        assert_eq!(
            inputs.base[0]["tool_calls"][0]["function"]["name"],
            "get_weather"
        );
        assert_eq!(inputs.base[0]["tool_calls"][0]["id"], "c1");
        assert_eq!(inputs.full.len(), 2);
        let user = json!({"role": "user", "content": "u"});
        let inputs = bridge_inputs(&[&user], &Map::new(), true);
        assert_eq!(inputs.base[0]["content"], "x");
    }
}
