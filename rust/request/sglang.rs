//! `POST /generate` on SGLang (docs/wire.md S;
//! `sglang/srt/managers/io_struct.py::GenerateReqInput`).
//!
//! `{"input_ids": [...], "sampling_params": {"max_new_tokens", ...caller's sampling keys...,
//! "stop_token_ids", "skip_special_tokens": false, "no_stop_trim": true}, "return_logprob": true,
//! "logprob_start_len": -1, "top_logprobs_num"?, "rid"?, "cache_salt"?, "priority"?,
//! ...caller's other keys...}`
//!
//! * `max_tokens`, `max_completion_tokens` and `max_new_tokens` become `max_new_tokens`
//!   ([`RequestOptions::max_tokens`] first);
//! * `seed` becomes `sampling_seed` (SGLang's name);
//! * the caller's keys that are SGLang `SamplingParams` fields go into `sampling_params`
//!   (SGLang builds `SamplingParams(**sampling_params)` and rejects unknown names there); every
//!   other key goes to the root, where `GenerateReqInput` ignores what it does not know;
//! * `stop_token_ids` are the tokenizer's ([`RequestOptions::stop_token_ids`]), replacing the
//!   caller's; `skip_special_tokens` is `false` and `no_stop_trim` `true` unless the caller set
//!   them, so the stop token stays in `output_ids` and the decoded text;
//! * `return_logprob: true` with `logprob_start_len: -1` (output tokens only) is always sent;
//!   `top_logprobs_num` is [`RequestOptions::top_logprobs`], else the caller's
//!   `top_logprobs_num`, integer `logprobs` or `top_logprobs`, when above 0;
//! * `request_id` becomes `rid`; `cache_salt` and `priority` go to the root;
//! * `n` other than 1 is refused (SGLang answers a list, one turn needs one completion), and the
//!   keys of other wires are dropped (`model`, `messages`, `tools`, `tool_choice`, `tokens`,
//!   `token_ids`, `stream`, `stream_options`, `return_token_ids`, `chat_template_kwargs`,
//!   `nvext`, `kv_transfer_params`, `routed_experts_prompt_start`, `truncate_prompt_tokens`).

use serde_json::{Map, Value};

use super::{
    arg_error, cache_salt, caller_args, estimate, get, max_tokens, priority, RequestOptions, Writer,
};
use crate::error::Result;

/// The fields of SGLang 0.5.23's `SamplingParams` (`sglang/srt/sampling/sampling_params.py`).
pub const SGLANG_SAMPLING_KEYS: [&str; 25] = [
    "max_new_tokens",
    "stop",
    "stop_token_ids",
    "stop_regex",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "min_new_tokens",
    "n",
    "json_schema",
    "regex",
    "ebnf",
    "structural_tag",
    "ignore_eos",
    "skip_special_tokens",
    "spaces_between_special_tokens",
    "no_stop_trim",
    "custom_params",
    "stream_interval",
    "logit_bias",
    "sampling_seed",
];

/// Keys of the other wires that mean nothing on SGLang's `/generate`.
const DROPPED: [&str; 19] = [
    "model",
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "tokens",
    "token_ids",
    "input_ids",
    "text",
    "stream",
    "stream_options",
    "return_token_ids",
    "chat_template_kwargs",
    "nvext",
    "kv_transfer_params",
    "routed_experts_prompt_start",
    "truncate_prompt_tokens",
    "return_logprob",
    "logprob_start_len",
];

/// Writes an SGLang `/generate` body (see the module documentation).
pub fn sglang_generate_body(
    token_ids: &[u32],
    sampling: &Map<String, Value>,
    opts: &RequestOptions<'_>,
) -> Result<Vec<u8>> {
    let args = caller_args(sampling)?;
    if let Some(n) = get(&args, "n") {
        if n.as_u64() != Some(1) {
            return Err(arg_error("n", "1 (one completion per turn)", n));
        }
    }
    let mut w = Writer::with_capacity(estimate("", token_ids, &args, 0));
    w.open();
    w.key("input_ids");
    w.ids(token_ids);

    w.key("sampling_params");
    w.open();
    let max = match opts.max_tokens {
        Some(n) => Some(super::MaxTokens::Option(n)),
        None => get(&args, "max_new_tokens")
            .map(super::MaxTokens::Caller)
            .or_else(|| max_tokens(&args, opts)),
    };
    if let Some(max) = max {
        w.key("max_new_tokens");
        w.value(max)?;
    }
    let mut skip_special = false;
    let mut no_stop_trim = false;
    for &(k, v) in &args {
        match k {
            "max_new_tokens" | "max_tokens" | "max_completion_tokens" => {}
            "stop_token_ids" if opts.stop_token_ids.is_some() => {}
            "seed" if get(&args, "sampling_seed").is_none() => {
                w.key("sampling_seed");
                w.value(v)?;
            }
            _ if SGLANG_SAMPLING_KEYS.contains(&k) => {
                skip_special |= k == "skip_special_tokens";
                no_stop_trim |= k == "no_stop_trim";
                w.key(k);
                w.value(v)?;
            }
            _ => {}
        }
    }
    if let Some(stop) = opts.stop_token_ids {
        w.key("stop_token_ids");
        w.ids(stop);
    }
    if !skip_special {
        w.key("skip_special_tokens");
        w.raw("false");
    }
    if !no_stop_trim {
        w.key("no_stop_trim");
        w.raw("true");
    }
    w.close();

    w.key("return_logprob");
    w.raw("true");
    w.key("logprob_start_len");
    w.raw("-1");
    let top = match opts.top_logprobs {
        Some(n) => u64::from(n),
        None => ["top_logprobs_num", "logprobs", "top_logprobs"]
            .iter()
            .find_map(|k| get(&args, k).and_then(Value::as_u64))
            .unwrap_or(0),
    };
    if top > 0 {
        w.key("top_logprobs_num");
        w.int(top);
    }
    if let Some(rid) = get(&args, "rid").or_else(|| get(&args, "request_id")) {
        w.key("rid");
        w.value(rid)?;
    }
    if let Some(salt) = cache_salt(&args, opts, None)? {
        w.key("cache_salt");
        w.str(salt);
    }
    if let Some(priority) = priority(&args, opts)? {
        w.key("priority");
        w.int(priority);
    }
    for &(k, v) in &args {
        match k {
            _ if SGLANG_SAMPLING_KEYS.contains(&k) || DROPPED.contains(&k) => {}
            "max_tokens"
            | "max_completion_tokens"
            | "seed"
            | "logprobs"
            | "top_logprobs"
            | "top_logprobs_num"
            | "rid"
            | "request_id"
            | "cache_salt"
            | "priority" => {}
            _ => {
                w.key(k);
                w.value(v)?;
            }
        }
    }
    w.close();
    Ok(w.buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(sampling: Value, opts: &RequestOptions<'_>) -> Value {
        let map = sampling.as_object().cloned().unwrap_or_default();
        let bytes = sglang_generate_body(&[1, 2, 3], &map, opts).unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    #[test]
    fn fields_land_where_sglang_reads_them() {
        let stop = [2u32];
        let opts = RequestOptions {
            max_tokens: Some(64),
            stop_token_ids: Some(&stop),
            cache_salt: Some("v7"),
            priority: Some(3),
            top_logprobs: Some(2),
            ..RequestOptions::default()
        };
        let b = body(
            serde_json::json!({"temperature": 0.7, "seed": 5, "stop_token_ids": [9],
                "request_id": "r1", "return_routed_experts": true, "tools": [],
                "max_tokens": 9, "extra_body": {"top_k": 20}}),
            &opts,
        );
        assert_eq!(
            b,
            serde_json::json!({
                "input_ids": [1, 2, 3],
                "sampling_params": {"max_new_tokens": 64, "temperature": 0.7,
                    "sampling_seed": 5, "top_k": 20, "stop_token_ids": [2],
                    "skip_special_tokens": false, "no_stop_trim": true},
                "return_logprob": true, "logprob_start_len": -1, "top_logprobs_num": 2,
                "rid": "r1", "cache_salt": "v7", "priority": 3,
                "return_routed_experts": true
            })
        );
    }

    #[test]
    fn caller_limits_and_n() {
        let b = body(
            serde_json::json!({"max_new_tokens": 7, "logprobs": 3}),
            &RequestOptions::default(),
        );
        assert_eq!(b["sampling_params"]["max_new_tokens"], 7);
        assert_eq!(b["top_logprobs_num"], 3);
        let map = serde_json::json!({"n": 2});
        let err = sglang_generate_body(
            &[1],
            map.as_object().unwrap_or(&Map::new()),
            &RequestOptions::default(),
        );
        assert!(err.is_err());
    }
}
