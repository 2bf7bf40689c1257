//! Request builders (rust/wire/): any caller sampling arguments, ids and options. A body is
//! written or the argument is refused with a typed error; a written body is one JSON object,
//! never a key twice at any level, carries exactly the prompt ids it was given, and a Dynamo
//! body never has the root keys Dynamo rejects (docs/wire.md C.1, D1, D2).
#![no_main]

mod common;

use fasttito::wire::{chat_body, chat_tokens_body, dynamo_body, sglang_generate_body, vllm_generate_body, ChatTarget, RequestOptions};
use fasttito::ErrorKind;
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (head, rest) = data.split_at(4);
    let Ok(Value::Object(mut sampling)) = serde_json::from_slice::<Value>(rest) else { return };
    let n_ids = usize::from(head[1]) % 40;
    let ids: Vec<u32> = (0..n_ids).map(|i| u32::from(head[2]).wrapping_mul(i as u32 + 1) ^ u32::from(head[3]) << 9).collect();
    let stop = [u32::from(head[3]), 151645];
    let salt = match sampling.remove("__salt") {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let priority = sampling.remove("__priority").and_then(|v| v.as_i64());
    let ctk: Option<Map<String, Value>> = match sampling.remove("__ctk") {
        Some(Value::Object(m)) => Some(m),
        _ => None,
    };
    let messages = match sampling.remove("__messages") {
        Some(v @ Value::Array(_)) => v,
        _ => serde_json::json!([{"role": "user", "content": "hi"}]),
    };
    let tools = sampling.remove("__tools");
    let messages_raw = RawValue::from_string(messages.to_string()).expect("serialized JSON");
    let tools_raw = tools.map(|t| RawValue::from_string(t.to_string()).expect("serialized JSON"));
    let opts = RequestOptions {
        max_tokens: (head[0] & 0x80 != 0).then_some(u32::from(head[2])),
        stop_token_ids: (head[0] & 0x40 != 0).then_some(&stop[..]),
        cache_salt: salt.as_deref(),
        priority,
        chat_template_kwargs: ctk.as_ref(),
        top_logprobs: (head[0] & 0x20 != 0).then_some(u32::from(head[1] & 0x0f)),
    };
    let kind = head[0] % 7;
    let out = match kind {
        0 => vllm_generate_body("m", &ids, &sampling, &opts),
        1 => chat_tokens_body("m", &messages_raw, tools_raw.as_deref(), &ids, &sampling, &opts),
        2 => dynamo_body("m", &ids, &sampling, &opts),
        3 => chat_body("m", &messages_raw, tools_raw.as_deref(), &sampling, ChatTarget::Vllm, &opts),
        4 => chat_body("m", &messages_raw, tools_raw.as_deref(), &sampling, ChatTarget::Dynamo, &opts),
        5 => sglang_generate_body(&ids, &sampling, &opts),
        _ => chat_body("m", &messages_raw, tools_raw.as_deref(), &sampling, ChatTarget::OpenAi, &opts),
    };
    let body = match out {
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Message, "kind {kind}: {e}");
            return;
        }
        Ok(body) => body,
    };
    common::assert_no_duplicate_keys(&body);
    let v: Value = serde_json::from_slice(&body).expect("a written body is JSON");
    let root = v.as_object().expect("a written body is a JSON object");
    let sent_ids = |v: Option<&Value>| -> Vec<u32> {
        v.and_then(Value::as_array)
            .expect("ids are a list")
            .iter()
            .map(|x| u32::try_from(x.as_u64().expect("an id is an integer")).expect("u32 id"))
            .collect()
    };
    match kind {
        0 => assert_eq!(sent_ids(root.get("token_ids")), ids),
        1 => assert_eq!(sent_ids(root.get("tokens")), ids),
        2 => assert_eq!(sent_ids(root.get("nvext").and_then(|n| n.get("token_data"))), ids),
        5 => assert_eq!(sent_ids(root.get("input_ids")), ids),
        _ => {}
    }
    if kind == 2 || kind == 4 {
        for key in ["priority", "cache_salt", "return_token_ids", "spaces_between_special_tokens", "routed_experts_prompt_start", "truncate_prompt_tokens"] {
            assert!(!root.contains_key(key), "Dynamo body with root key {key}");
        }
    }
    if let Some(salt) = root.get("cache_salt").or_else(|| root.get("nvext").and_then(|n| n.get("cache_salt"))) {
        assert_ne!(salt.as_str(), Some(""), "an empty cache_salt was sent");
    }
});
