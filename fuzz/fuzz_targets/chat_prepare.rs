//! Chat rendering and turn planning with odd messages (rust/template/chat.rs, rust/tito/rollout.rs): a turn-1
//! conversation, a recorded completion, then an arbitrary tail, tools and template variables,
//! with the repository's Qwen2.5 tokenizer. Planning never panics; a TITO plan's prompt starts
//! with the previous turn's prompt and completion ids verbatim (the TITO invariant).
#![no_main]

mod common;

use std::sync::Arc;

use fasttito::template::chat::{self, ChatOptions};
use fasttito::tito::messages::{fingerprint, message_hash, prefix_hashes};
use fasttito::tito::rollout::{Mode, Rollout, TurnInput};
use fasttito::ErrorKind;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

fn input<'a>(messages: &'a [&'a Value], prefix: &'a [u128], tools: Option<&Value>, kwargs: &Value) -> TurnInput<'a> {
    TurnInput { messages, prefix, tools_fp: fingerprint(tools), kwargs_fp: fingerprint(Some(kwargs)) }
}

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Array(parts)) = serde_json::from_slice::<Value>(data) else { return };
    let (Some(Value::Array(first)), Some(Value::Array(tail))) = (parts.first(), parts.get(1)) else { return };
    let tools: Option<std::sync::Arc<[Value]>> = parts.get(2).and_then(Value::as_array).map(|t| t.as_slice().into());
    let kwargs: Map<String, Value> = parts.get(3).and_then(Value::as_object).cloned().unwrap_or_default();
    let kwargs_value = Value::Object(kwargs.clone());
    let tools_value = tools.as_ref().map(|t| Value::Array(t.to_vec()));
    let tok = common::qwen();

    // The plain render: a typed error or text.
    let opts = ChatOptions { tools: tools.clone(), add_generation_prompt: true, kwargs: kwargs.clone(), ..Default::default() };
    if let Err(e) = chat::render(tok, first.clone(), &opts) {
        assert!(matches!(e.kind(), ErrorKind::Template | ErrorKind::TemplateLimit | ErrorKind::Message), "{e}");
    }

    let mut rollout = Rollout::new(tok.stop_token_ids().to_vec());
    let refs: Vec<&Value> = first.iter().collect();
    let hashes: Vec<u128> = refs.iter().map(|m| message_hash(m)).collect();
    let prefix = prefix_hashes(&hashes);
    let plan = rollout.prepare_local(tok, &input(&refs, &prefix, tools_value.as_ref(), &kwargs_value), tools.as_ref(), &kwargs, true, false);
    let Some(prompt) = plan.prompt_ids.clone() else { return };
    let mut completion = tok.encode("ok", false).expect("encode");
    completion.push(tok.stop_token_ids()[0]);
    let assistant = json!({"role": "assistant", "content": "ok"});
    rollout.record(&plan, Arc::clone(&prompt), completion.clone(), message_hash(&assistant), Some("stop"));

    let mut second: Vec<&Value> = refs.clone();
    second.push(&assistant);
    second.extend(tail.iter());
    let hashes: Vec<u128> = second.iter().map(|m| message_hash(m)).collect();
    let prefix = prefix_hashes(&hashes);
    let plan = rollout.prepare_local(tok, &input(&second, &prefix, tools_value.as_ref(), &kwargs_value), tools.as_ref(), &kwargs, true, false);
    if plan.mode == Mode::Tito {
        let ids = plan.prompt_ids.as_deref().expect("a TITO plan has prompt ids");
        let previous: Vec<u32> = prompt.iter().copied().chain(completion.iter().copied()).collect();
        assert!(ids.len() > previous.len(), "a TITO prompt no longer than the previous turn");
        assert_eq!(&ids[..previous.len()], &previous[..], "a TITO prompt that does not start with the previous turn's ids");
    } else {
        assert!(plan.fallback.is_some(), "a MITO plan without a reason");
    }
});
