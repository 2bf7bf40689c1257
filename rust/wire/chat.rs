//! Plain chat completions: `POST /v1/chat/completions` with messages, the body of turn 1 and of
//! every turn that falls back to messages (MITO), for vLLM, Dynamo or any OpenAI-compatible
//! server ([`ChatTarget`]).

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::body::{
    cache_salt, caller_args, estimate, get, max_tokens, priority, RequestOptions, Writer,
};
use super::nvext::{dynamo, DynamoPrompt};
use crate::error::Result;

/// Which server a plain chat completion ([`chat_body`]) goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatTarget {
    /// vLLM or prime-rl: `return_token_ids: true` and `logprobs: true` so the response carries
    /// the ids TITO reuses (docs/wire.md A.2, A.4); `cache_salt`, `priority`,
    /// `chat_template_kwargs` and `stop_token_ids` at the root.
    Vllm,
    /// Dynamo (turn 1 / MITO): the real messages and tools, with the `nvext` routing of
    /// [`dynamo_body`] so the response carries `engine_data` ids (docs/wire.md C.1, C.2).
    Dynamo,
    /// Any other OpenAI-compatible server: the vLLM-only keys are omitted (none is added, and the
    /// caller's `return_token_ids`, `spaces_between_special_tokens`, `priority` and
    /// `routed_experts_prompt_start` are scrubbed).
    OpenAi,
}

/// `POST /v1/chat/completions` with messages: turn 1, or a turn that falls back to MITO.
///
/// * [`ChatTarget::Vllm`]: `{"model", "messages", "tools"?, "max_completion_tokens",
///   ...caller..., "logprobs": true, "return_token_ids": true, "cache_salt"?, "priority"?,
///   "chat_template_kwargs"?}` (docs/wire.md A.2 step 2, A.4);
/// * [`ChatTarget::Dynamo`]: the body of [`dynamo_body`] with the real `messages` and `tools`
///   instead of `nvext.token_data` (Dynamo renders the template itself);
/// * [`ChatTarget::OpenAi`]: `{"model", "messages", "tools"?, "max_completion_tokens",
///   ...caller..., "logprobs": true}` without any vLLM-only key.
pub fn chat_body(
    model: &str,
    messages: &RawValue,
    tools: Option<&RawValue>,
    sampling: &Map<String, Value>,
    target: ChatTarget,
    opts: &RequestOptions<'_>,
) -> Result<Vec<u8>> {
    let args = caller_args(sampling)?;
    let extra = messages.get().len() + tools.map_or(0, |t| t.get().len());
    let mut w = Writer::with_capacity(estimate(model, &[], &args, extra));
    if target == ChatTarget::Dynamo {
        dynamo(
            &mut w,
            model,
            DynamoPrompt::Messages { messages, tools },
            &args,
            opts,
        )?;
        return Ok(w.buf);
    }
    w.open();
    w.key("model");
    w.str(model);
    w.key("messages");
    w.raw(messages.get());
    if let Some(tools) = tools {
        w.key("tools");
        w.raw(tools.get());
    }
    vllm_chat_tail(&mut w, &args, opts, target == ChatTarget::Vllm)?;
    w.close();
    Ok(w.buf)
}

/// The caller's keys after `max_completion_tokens`, for a vLLM (or plain OpenAI) chat body.
/// `vllm` adds `return_token_ids` and the root options; without it the vLLM-only keys are
/// scrubbed.
pub(super) fn vllm_chat_tail(
    w: &mut Writer,
    args: &[(&str, &Value)],
    opts: &RequestOptions<'_>,
    vllm: bool,
) -> Result<()> {
    if let Some(max) = max_tokens(args, opts) {
        w.key("max_completion_tokens");
        w.value(max)?;
    }
    let mut wants_top = None;
    let mut has_top = false;
    for &(k, v) in args {
        match k {
            "model" | "messages" | "tools" | "tokens" | "max_tokens" | "max_completion_tokens" => {}
            // forced below (vLLM) or vLLM-only; `nvext` is Dynamo's
            "return_token_ids" | "nvext" => {}
            "logprobs" => wants_top = v.as_u64().filter(|&n| n > 0),
            "cache_salt" | "priority" | "chat_template_kwargs" if vllm => {}
            "stop_token_ids" if vllm && opts.stop_token_ids.is_some() => {}
            "priority" | "spaces_between_special_tokens" | "routed_experts_prompt_start"
                if !vllm => {}
            _ => {
                has_top |= k == "top_logprobs";
                w.key(k);
                w.value(v)?;
            }
        }
    }
    w.key("logprobs");
    w.raw("true");
    if let (Some(n), false) = (wants_top, has_top) {
        w.key("top_logprobs");
        w.int(n);
    }
    if !vllm {
        return Ok(());
    }
    w.key("return_token_ids");
    w.raw("true");
    if let Some(stop) = opts.stop_token_ids {
        w.key("stop_token_ids");
        w.ids(stop);
    }
    if let Some(salt) = cache_salt(args, opts, None)? {
        w.key("cache_salt");
        w.str(salt);
    }
    if let Some(priority) = priority(args, opts)? {
        w.key("priority");
        w.int(priority);
    }
    if let Some(kwargs) = opts.chat_template_kwargs {
        w.key("chat_template_kwargs");
        w.map(kwargs)?;
    } else if let Some(kwargs) = get(args, "chat_template_kwargs") {
        w.key("chat_template_kwargs");
        w.value(kwargs)?;
    }
    Ok(())
}
