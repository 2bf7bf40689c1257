//! Wire tests: response parsers over recorded and docs/wire.md fixtures, every read-precedence rule
//! and error path, truncation/mutation sweeps (never a panic), and request bodies parsed back
//! and compared as exact JSON.
//!
//! Fixtures (`rust/tests/fixtures/`):
//! * `wire_*.json`: example responses in the shapes of `docs/wire.md` A.3, B.2 and C.2;
//! * `dynamo_1_6_1_observed.json`: a response of the real Dynamo 1.6.1 frontend (hidden eos as
//!   `token: ""`, `bytes: null`; `token_id` and a one-item `top_logprobs` per entry);
//! * `dynamo_1_6_1_*.json`: more real Dynamo 1.6.1 responses (scripted engine behind the real
//!   frontend, `tests/engines/dynamo_launch.py`): MITO with tools, `nvext` opt-ins without
//!   `engine_data`, a `length` cut;
//! * `engine_vllm_*.json`: responses of the local vLLM-compatible test engine
//!   (`tests/engines/vllm_engine.py`): chat with a tool call, the prime-rl tokens route, plain
//!   text, `/inference/v1/generate` (stop and length).

use fasttito::wire::{
    chat_body, chat_tokens_body, dynamo_body, vllm_generate_body, ChatTarget, RequestOptions,
};
use fasttito::wire::{
    parse_response, ParseOptions, Parsed, ParsedToolCall, StopReason, Usage, Wire, IDS_NOT_SENT,
    SERDE_JSON_MAX_DEPTH,
};
use fasttito::ErrorKind;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const FIXTURES: [(&str, Wire); 18] = [
    ("wire_a3_vllm_chat.json", Wire::VllmChat),
    ("wire_b2_vllm_generate.json", Wire::VllmGenerate),
    ("wire_c2_dynamo.json", Wire::Dynamo),
    ("dynamo_1_6_1_observed.json", Wire::Dynamo),
    ("dynamo_1_6_1_mito_tools.json", Wire::Dynamo),
    ("dynamo_1_6_1_nvext_fields.json", Wire::Dynamo),
    ("dynamo_1_6_1_length.json", Wire::Dynamo),
    ("engine_vllm_chat_tool_call.json", Wire::VllmChat),
    ("engine_vllm_chat_tokens.json", Wire::VllmChat),
    ("engine_vllm_chat_text.json", Wire::VllmChat),
    ("engine_vllm_generate.json", Wire::VllmGenerate),
    ("engine_vllm_generate_length.json", Wire::VllmGenerate),
    ("sglang_0_5_23_stop.json", Wire::Sglang),
    (
        "sglang_0_5_23_length_skip_tokenizer_init.json",
        Wire::Sglang,
    ),
    ("vllm_0_32_chat_openai_logprobs.json", Wire::Chat),
    ("vllm_0_32_chat_openai_tool_call.json", Wire::Chat),
    ("openai_shape_text_logprobs.json", Wire::Chat),
    ("openai_shape_tool_call_extra_keys.json", Wire::Chat),
];

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/rust/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

fn parse(body: impl AsRef<[u8]>, wire: Wire) -> fasttito::Result<Parsed> {
    parse_response(body.as_ref(), wire, &ParseOptions::default())
}

fn ok(body: impl AsRef<[u8]>, wire: Wire) -> Parsed {
    parse(body, wire).unwrap_or_else(|e| panic!("{e}"))
}

/// The message of the Parse error `body` must give.
fn err(body: impl AsRef<[u8]>, wire: Wire) -> String {
    match parse(body, wire) {
        Ok(p) => panic!("expected an error, parsed {p:?}"),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Parse, "{e}");
            e.text().to_owned()
        }
    }
}

fn assert_contains(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "{part:?} not in: {text}");
    }
}

fn map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn raw(v: Value) -> Box<RawValue> {
    RawValue::from_string(v.to_string()).unwrap_or_else(|e| panic!("{e}"))
}

fn logprobs(p: &Parsed) -> &[f64] {
    p.completion_logprobs
        .as_deref()
        .unwrap_or_else(|| panic!("no logprobs in {p:?}"))
}

/// A vLLM chat body with `choice` as `choices[0]`.
fn chat_with(choice: Value) -> Vec<u8> {
    json!({"id": "x", "choices": [choice]})
        .to_string()
        .into_bytes()
}

/// A Dynamo body with `choice` as `choices[0]` and `nvext`.
fn dynamo_with(choice: Value, nvext: Value) -> Vec<u8> {
    json!({"choices": [choice], "nvext": nvext})
        .to_string()
        .into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

#[test]
fn every_fixture_parses_as_its_wire() {
    for (name, wire) in FIXTURES {
        let p = parse(fixture(name), wire).unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Some(lp) = p
            .completion_logprobs
            .as_ref()
            .filter(|_| p.completion_ids_from != IDS_NOT_SENT)
        {
            assert_eq!(lp.len(), p.completion_ids.len(), "{name}");
        }
    }
}

#[test]
fn a3_vllm_chat_completion() {
    let body = fixture("wire_a3_vllm_chat.json");
    let p = ok(&body, Wire::VllmChat);
    assert_eq!(p.completion_ids, [11613, 3542, 13, 151645]);
    assert_eq!(p.completion_ids_from, "choices[0].token_ids");
    assert_eq!(logprobs(&p), [-0.21, -0.05, -0.01, -0.002]);
    assert_eq!(
        p.completion_logprobs_from,
        Some("choices[0].logprobs.content")
    );
    assert_eq!((p.null_logprobs, p.clamped_logprobs), (0, 0));
    let prompt = p.prompt_ids.as_deref().unwrap_or_default();
    assert_eq!(prompt.len(), 26);
    assert_eq!(prompt[..3], [151644, 872, 198]);
    assert_eq!(p.content.as_deref(), Some("Two files."));
    assert_eq!(p.reasoning_content, None);
    assert!(p.tool_calls.is_empty());
    assert_eq!(p.finish_reason.as_deref(), Some("stop"));
    assert_eq!(p.stop_reason, None);
    let usage = Usage {
        prompt_tokens: Some(26),
        completion_tokens: Some(4),
        total_tokens: Some(30),
        prompt_tokens_details: None,
    };
    assert_eq!(p.usage, Some(usage));
    assert_eq!(p.response_id.as_deref(), Some("chatcmpl-7f3c"));
    // routed_experts: passed through raw, and its span slices the very same bytes out of the body
    let experts = p
        .routed_experts
        .as_ref()
        .map(|r| r.get())
        .unwrap_or_default();
    assert_eq!(
        json_of(experts.as_bytes()),
        json!({"data": "AAECAwQFBgcAAQIDBAUGBwABAgMEBQYHAAECAwQ=", "shape": [29, 1, 1], "start": 0, "dtype": "uint8"})
    );
    let span = p.routed_experts_span.clone().unwrap_or_default();
    assert_eq!(&body[span], experts.as_bytes());
}

#[test]
fn b2_vllm_generate() {
    let body = fixture("wire_b2_vllm_generate.json");
    let p = ok(&body, Wire::VllmGenerate);
    assert_eq!(p.completion_ids, [7, 8]);
    assert_eq!(logprobs(&p), [-0.1, -0.2]);
    assert_eq!(p.prompt_ids, None);
    assert_eq!(p.finish_reason.as_deref(), Some("stop"));
    assert_eq!(p.response_id.as_deref(), Some("gen-test"));
    assert_eq!((p.content.as_deref(), p.tool_calls.len()), (None, 0));
    assert_eq!(p.usage.and_then(|u| u.total_tokens), Some(5));
    let span = p.routed_experts_span.clone().unwrap_or_default();
    assert_eq!(
        &body[span],
        br#"{"data": "AQI=", "shape": [2, 1, 1], "start": 0, "dtype": "uint8"}"#
    );
}

#[test]
fn c2_dynamo_engine_data() {
    let body = fixture("wire_c2_dynamo.json");
    let p = ok(&body, Wire::Dynamo);
    assert_eq!(p.completion_ids, [11613, 3542, 13, 151645]);
    assert_eq!(
        p.completion_ids_from,
        "nvext.engine_data.completion_token_ids"
    );
    // choices[0].logprobs.content is null: the engine channel carries them
    assert_eq!(logprobs(&p), [-0.21, -0.05, -0.01, -0.002]);
    assert_eq!(
        p.completion_logprobs_from,
        Some("nvext.engine_data.completion_logprobs")
    );
    assert_eq!(p.prompt_ids.as_ref().map(Vec::len), Some(10));
    assert_eq!(p.content.as_deref(), Some("Two files."));
    let span = p.routed_experts_span.clone().unwrap_or_default();
    assert!(body[span].starts_with(br#"{"data": "AQIDBAUGBwgJCgsMDQ==""#));
}

#[test]
fn dynamo_1_6_1_observed_response() {
    let p = ok(fixture("dynamo_1_6_1_observed.json"), Wire::Dynamo);
    assert_eq!(p.completion_ids, [2403, 151645]);
    assert_eq!(
        p.completion_ids_from,
        "nvext.engine_data.completion_token_ids"
    );
    assert_eq!(logprobs(&p), [-1.6875, -1.625]);
    assert_eq!(
        p.completion_logprobs_from,
        Some("nvext.engine_data.completion_logprobs")
    );
    assert_eq!(
        p.prompt_ids.as_deref().unwrap_or_default(),
        [151644, 872, 198, 852, 3542, 151645, 198, 151644, 77091, 198]
    );
    assert_eq!(
        p.content.as_deref(),
        Some("All done: the tools were called.")
    );
    assert_eq!(p.finish_reason.as_deref(), Some("stop"));
    assert_eq!(p.usage.and_then(|u| u.completion_tokens), Some(2));
    assert_eq!(p.routed_experts_span, None);
    assert_eq!(
        p.response_id.as_deref(),
        Some("chatcmpl-5cdd6327-5f1e-415b-87f7-28df4b701bdd")
    );
}

#[test]
fn dynamo_1_6_1_observed_choice_channel_alone_agrees() {
    // Without engine_data the same response falls back to the choice channel: the ids are gone
    // (the frontend sends no choices[0].token_ids), so it is an error naming all three paths.
    let mut v = json_of(&fixture("dynamo_1_6_1_observed.json"));
    v["nvext"] = json!({"engine_data": {"completion_token_ids": [2403, 151645]}});
    let p = ok(v.to_string(), Wire::Dynamo);
    assert_eq!(logprobs(&p), [-1.6875, -1.625]);
    assert_eq!(
        p.completion_logprobs_from,
        Some("choices[0].logprobs.content")
    );
    v["nvext"] = json!({});
    let text = err(v.to_string(), Wire::Dynamo);
    assert_contains(
        &text,
        &[
            "nvext.engine_data.completion_token_ids",
            "nvext.completion_token_ids",
            "choices[0].token_ids",
            "extra_fields",
        ],
    );
}

#[test]
fn dynamo_1_6_1_nvext_opt_ins_without_engine_data() {
    let p = ok(fixture("dynamo_1_6_1_nvext_fields.json"), Wire::Dynamo);
    assert_eq!(p.completion_ids_from, "nvext.completion_token_ids");
    assert_eq!(p.completion_ids.len(), 9);
    assert_eq!(p.completion_ids.last(), Some(&151645));
    assert_eq!(
        p.completion_logprobs_from,
        Some("choices[0].logprobs.content")
    );
    assert_eq!(logprobs(&p).len(), 9);
    assert_eq!(p.prompt_ids.as_ref().map(Vec::len), Some(10));
    assert_eq!(p.stop_reason, Some(StopReason::TokenId(151645)));
}

#[test]
fn dynamo_1_6_1_mito_and_length() {
    let p = ok(fixture("dynamo_1_6_1_mito_tools.json"), Wire::Dynamo);
    // Dynamo 1.6.1 without a tool parser returns the call as text: no tool_calls, no promotion
    assert!(p
        .content
        .as_deref()
        .unwrap_or_default()
        .starts_with("<tool_call>"));
    assert!(p.tool_calls.is_empty());
    assert_eq!(p.finish_reason.as_deref(), Some("stop"));
    assert!(
        p.prompt_ids.as_ref().map_or(0, Vec::len) > 100,
        "tools are rendered into the prompt"
    );
    let p = ok(fixture("dynamo_1_6_1_length.json"), Wire::Dynamo);
    assert_eq!(p.finish_reason.as_deref(), Some("length"));
    assert_eq!(p.completion_ids, [2403, 2814, 25]);
}

#[test]
fn engine_vllm_chat_tool_call() {
    let p = ok(fixture("engine_vllm_chat_tool_call.json"), Wire::VllmChat);
    assert_eq!(
        p.tool_calls,
        [ParsedToolCall {
            id: Some("call00000".into()),
            name: "ls".into(),
            arguments: r#"{"path": "path-0"}"#.into(),
        }]
    );
    assert_eq!(p.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(p.content, None);
    assert_eq!(p.reasoning_content.as_deref(), Some("Need to list."));
    assert_eq!(p.completion_ids.first(), Some(&151657));
    assert_eq!(p.completion_ids.last(), Some(&151645));
    assert_eq!(logprobs(&p).len(), p.completion_ids.len());
    assert!(p.prompt_ids.is_some());
}

#[test]
fn engine_vllm_tokens_route_and_text() {
    let p = ok(fixture("engine_vllm_chat_tokens.json"), Wire::VllmChat);
    assert_eq!(
        p.content.as_deref(),
        Some("Final answer after 1 tool calls.")
    );
    assert!(p.tool_calls.is_empty());
    assert_eq!(p.finish_reason.as_deref(), Some("stop"));
    assert_eq!(p.prompt_ids.as_ref().map(Vec::len), Some(204));
    let p = ok(fixture("engine_vllm_chat_text.json"), Wire::VllmChat);
    assert_eq!(p.content.as_deref(), Some("Hi there"));
}

#[test]
fn engine_vllm_generate_stop_and_length() {
    let p = ok(fixture("engine_vllm_generate.json"), Wire::VllmGenerate);
    assert_eq!(p.completion_ids.last(), Some(&151645));
    assert_eq!(logprobs(&p).len(), p.completion_ids.len());
    assert_eq!(p.prompt_ids.as_ref().map(Vec::len), Some(204));
    assert_eq!(p.finish_reason.as_deref(), Some("stop"));
    let p = ok(
        fixture("engine_vllm_generate_length.json"),
        Wire::VllmGenerate,
    );
    assert_eq!(p.finish_reason.as_deref(), Some("length"));
    assert_eq!(p.completion_ids, [19357, 4226, 1283]);
}

#[test]
fn cross_wire_shapes() {
    // A vLLM chat body read as Dynamo: no nvext, so the ids come from the choice channel.
    let p = ok(fixture("wire_a3_vllm_chat.json"), Wire::Dynamo);
    assert_eq!(p.completion_ids_from, "choices[0].token_ids");
    assert_eq!(
        p.prompt_ids, None,
        "Dynamo reads prompt ids only from nvext (docs/wire.md C.2)"
    );
    // A Dynamo body read as vLLM chat: no choices[0].token_ids.
    let text = err(fixture("dynamo_1_6_1_observed.json"), Wire::VllmChat);
    assert_contains(&text, &["choices[0].token_ids", "return_token_ids"]);
    // A chat body read as generate: its text tokens are not token_id:N labels.
    let text = err(fixture("wire_a3_vllm_chat.json"), Wire::VllmGenerate);
    assert_contains(
        &text,
        &[
            "choices[0].logprobs.content[0]`",
            "\"Two\"",
            "token id 11613",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// vLLM chat rules (docs/wire.md A.3)
// ---------------------------------------------------------------------------------------------

#[test]
fn vllm_chat_needs_token_ids() {
    for choice in [json!({"finish_reason": "stop"}), json!({"token_ids": null})] {
        let text = err(chat_with(choice), Wire::VllmChat);
        assert_contains(
            &text,
            &[
                "choices[0].token_ids",
                "return_token_ids: true",
                "found none",
            ],
        );
    }
    // an empty list is a valid zero-token completion
    assert!(ok(chat_with(json!({"token_ids": []})), Wire::VllmChat)
        .completion_ids
        .is_empty());
}

#[test]
fn logprob_length_mismatch_names_both_lengths() {
    for (n_ids, n_lp) in [(4, 3), (2, 3), (1, 0)] {
        let ids: Vec<u32> = (0..n_ids).collect();
        let content: Vec<Value> = (0..n_lp)
            .map(|_| json!({"token": "a", "logprob": -1.0}))
            .collect();
        let body = chat_with(json!({"token_ids": ids, "logprobs": {"content": content}}));
        let text = err(body, Wire::VllmChat);
        assert_contains(
            &text,
            &[
                &format!("found {n_lp} logprobs at `choices[0].logprobs.content`"),
                &format!("for {n_ids} ids at `choices[0].token_ids`"),
                "docs/wire.md D3",
            ],
        );
    }
}

#[test]
fn null_logprobs_stay_in_place_as_nan() {
    let body = chat_with(json!({"token_ids": [1, 2, 3, 4], "logprobs": {"content": [
        {"token": "a", "logprob": -0.5},
        {"token": "b", "logprob": null},
        null,
        {"token": "d", "logprob": -9999.0, "top_logprobs": []}
    ]}}));
    let p = ok(body, Wire::VllmChat);
    let lp = logprobs(&p);
    assert_eq!(lp.len(), 4);
    assert_eq!(lp[0], -0.5);
    assert!(lp[1].is_nan() && lp[2].is_nan());
    assert_eq!(lp[3], -9999.0, "vLLM's -inf clamp is kept as is");
    assert_eq!((p.null_logprobs, p.clamped_logprobs), (2, 1));
}

#[test]
fn logprobs_absent_or_null_mean_none() {
    for choice in [
        json!({"token_ids": [1]}),
        json!({"token_ids": [1], "logprobs": null}),
        json!({"token_ids": [1], "logprobs": {}}),
        json!({"token_ids": [1], "logprobs": {"content": null}}),
    ] {
        let p = ok(chat_with(choice), Wire::VllmChat);
        assert_eq!(
            (p.completion_logprobs, p.completion_logprobs_from),
            (None, None)
        );
    }
}

#[test]
fn logprob_entry_without_logprob_is_an_error() {
    let body = chat_with(json!({"token_ids": [1, 2], "logprobs": {"content": [
        {"token": "a", "logprob": -1}, {"token": "b"}
    ]}}));
    let text = err(body, Wire::VllmChat);
    assert_contains(
        &text,
        &["no \"logprob\" key", "choices[0].logprobs.content[1]"],
    );
}

#[test]
fn bad_token_ids_are_errors_with_their_path() {
    let cases: [(Value, &str); 6] = [
        (json!(-1), "negative token id -1"),
        (
            json!(4294967296u64),
            "token id 4294967296 does not fit in u32",
        ),
        (json!(1.5), "token id 1.5 is not an integer"),
        (json!("7"), "invalid type: string \"7\""),
        (json!(null), "invalid type: null"),
        (json!([1]), "invalid type: sequence"),
    ];
    for (bad, what) in cases {
        let text = err(chat_with(json!({"token_ids": [5, bad]})), Wire::VllmChat);
        assert_contains(
            &text,
            &[what, "at `choices[0].token_ids[1]`", "docs/wire.md A.3"],
        );
        let body = json!({"prompt_token_ids": [bad], "choices": [{"token_ids": [1]}]}).to_string();
        assert_contains(
            &err(body, Wire::VllmChat),
            &[what, "at `prompt_token_ids[0]`"],
        );
    }
    // the largest u32 is fine
    let p = ok(
        chat_with(json!({"token_ids": [0, 4294967295u64]})),
        Wire::VllmChat,
    );
    assert_eq!(p.completion_ids, [0, u32::MAX]);
    // 1e20 and -0.0 are not integers
    assert_contains(
        &err(br#"{"choices":[{"token_ids":[1e20]}]}"#, Wire::VllmChat),
        &["not an integer"],
    );
}

#[test]
fn message_fields() {
    let p = ok(
        chat_with(json!({"token_ids": [1], "message": {"content": "hi", "reasoning": "r"}})),
        Wire::VllmChat,
    );
    assert_eq!(
        (p.content.as_deref(), p.reasoning_content.as_deref()),
        (Some("hi"), Some("r"))
    );
    let p = ok(
        chat_with(
            json!({"token_ids": [1], "message": {"reasoning_content": "rc", "reasoning": "r"}}),
        ),
        Wire::VllmChat,
    );
    assert_eq!(
        p.reasoning_content.as_deref(),
        Some("rc"),
        "reasoning_content wins"
    );
    let p = ok(
        chat_with(
            json!({"token_ids": [1], "message": {"content": null, "reasoning_content": null, "reasoning": "r"}}),
        ),
        Wire::VllmChat,
    );
    assert_eq!(
        (p.content, p.reasoning_content.as_deref()),
        (None, Some("r"))
    );
    let p = ok(
        chat_with(json!({"token_ids": [1], "message": null})),
        Wire::VllmChat,
    );
    assert_eq!((p.content, p.tool_calls.len()), (None, 0));
}

#[test]
fn tool_calls_keep_arguments_as_sent_and_promote_stop() {
    let args = "{\"q\": \"x\\ny \\u00e9\", \"n\":1}";
    let call =
        json!({"id": "call_0", "type": "function", "function": {"name": "f", "arguments": args}});
    let body = chat_with(json!({"token_ids": [1], "finish_reason": "stop",
        "message": {"content": null, "tool_calls": [call, {"function": {"name": "g", "arguments": "{}"}}]}}));
    let p = ok(body, Wire::VllmChat);
    assert_eq!(p.tool_calls.len(), 2);
    assert_eq!(
        p.tool_calls[0].arguments, args,
        "decoded JSON string, byte for byte"
    );
    assert_eq!(p.tool_calls[0].id.as_deref(), Some("call_0"));
    assert_eq!(
        (p.tool_calls[1].id.as_deref(), p.tool_calls[1].name.as_str()),
        (None, "g")
    );
    assert_eq!(p.finish_reason.as_deref(), Some("tool_calls"));
    // "length" is never rewritten (truncation marks the turn), nor is a missing finish_reason
    for (finish, want) in [
        (json!("length"), Some("length")),
        (json!(null), None),
        (json!("tool_calls"), Some("tool_calls")),
    ] {
        let body = chat_with(json!({"token_ids": [1], "finish_reason": finish,
            "message": {"tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}}));
        assert_eq!(ok(body, Wire::VllmChat).finish_reason.as_deref(), want);
    }
    // finish_reason values outside OpenAI's set are kept as sent
    let p = ok(
        chat_with(json!({"token_ids": [1], "finish_reason": "abort"})),
        Wire::VllmChat,
    );
    assert_eq!(p.finish_reason.as_deref(), Some("abort"));
}

#[test]
fn malformed_tool_calls_are_errors() {
    let cases = [
        (json!([{"id": "a"}]), "tool_calls[0].function` object"),
        (
            json!([{"function": {"arguments": "{}"}}]),
            "tool_calls[0].function.name",
        ),
        (
            json!([{"function": {"name": "f"}}]),
            "tool_calls[0].function.arguments",
        ),
        (
            json!([{"function": {"name": "f", "arguments": null}}]),
            "found none (absent or null)",
        ),
        (
            json!([{"function": {"name": 5, "arguments": "{}"}}]),
            "choices[0].message.tool_calls[0].function.name",
        ),
        (json!({"a": 1}), "at `choices[0].message.tool_calls`"),
    ];
    for (calls, want) in cases {
        let text = err(
            chat_with(json!({"token_ids": [1], "message": {"tool_calls": calls}})),
            Wire::VllmChat,
        );
        assert_contains(&text, &[want]);
    }
}

#[test]
fn stop_reason_shapes() {
    let cases = [
        (json!(151645), Some(StopReason::TokenId(151645))),
        (json!("</s>"), Some(StopReason::Text("</s>".into()))),
        (json!(null), None),
    ];
    for (sent, want) in cases {
        let p = ok(
            chat_with(json!({"token_ids": [1], "stop_reason": sent})),
            Wire::VllmChat,
        );
        assert_eq!(p.stop_reason, want);
    }
    let p = ok(
        chat_with(json!({"token_ids": [1], "stop_reason": {"kind": "eos"}})),
        Wire::VllmChat,
    );
    match p.stop_reason {
        Some(StopReason::Other(raw)) => {
            assert_eq!(json_of(raw.get().as_bytes()), json!({"kind": "eos"}))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_the_first_choice_is_read() {
    // choices[1] has wrong types everywhere: it is skipped unbuilt (n > 1 responses)
    let body = json!({"choices": [{"token_ids": [1]}, {"token_ids": "x", "message": 5}]});
    assert_eq!(ok(body.to_string(), Wire::VllmChat).completion_ids, [1]);
}

#[test]
fn missing_or_empty_choices_quote_server_errors() {
    let text = err(br#"{"id":"x"}"#, Wire::VllmChat);
    assert_contains(&text, &["expected `choices[0]`", "found no `choices`"]);
    let text = err(br#"{"choices":[]}"#, Wire::VllmGenerate);
    assert_contains(&text, &["found an empty `choices` list"]);
    let text = err(br#"{"choices":null}"#, Wire::Dynamo);
    assert_contains(&text, &["found no `choices`"]);
    // vLLM's error body
    let body = br#"{"error":{"message":"max_tokens is too large","type":"BadRequestError","param":null,"code":400}}"#;
    assert_contains(
        &err(body, Wire::VllmChat),
        &["the server sent an error", "max_tokens is too large"],
    );
    // Dynamo 1.6.1's error body (observed)
    let body = br#"{"message":"Validation: Unsupported parameter(s): `priority`","type":"Bad Request","code":400}"#;
    assert_contains(
        &err(body, Wire::Dynamo),
        &["the server sent an error", "Unsupported parameter(s)"],
    );
    assert_contains(
        &err(body, Wire::VllmGenerate),
        &["Unsupported parameter(s)"],
    );
}

// ---------------------------------------------------------------------------------------------
// vLLM generate rules (docs/wire.md B.2)
// ---------------------------------------------------------------------------------------------

fn generate_with(ids: Value, content: Value) -> Vec<u8> {
    json!({"choices": [{"token_ids": ids, "logprobs": {"content": content}, "finish_reason": "stop"}]})
        .to_string()
        .into_bytes()
}

#[test]
fn generate_token_labels_must_match_the_ids() {
    let entry = |t: &str| json!({"token": t, "logprob": -0.5});
    // swapped ids
    let text = err(
        generate_with(
            json!([7, 8]),
            json!([entry("token_id:7"), entry("token_id:9")]),
        ),
        Wire::VllmGenerate,
    );
    assert_contains(
        &text,
        &[
            "`choices[0].logprobs.content[1]`",
            "token id 8",
            "found token id 9",
        ],
    );
    // not of the token_id:N form
    for (bad, found) in [
        ("Two", "found \"Two\""),
        ("token_id:", "found \"token_id:\""),
        ("token_id:-8", "found \"token_id:-8\""),
        ("token_id:8 ", "found \"token_id:8 \""),
        ("token_id:99999999999", "found \"token_id:99999999999\""),
    ] {
        let text = err(
            generate_with(json!([8]), json!([entry(bad)])),
            Wire::VllmGenerate,
        );
        assert_contains(&text, &["content[0]`", "\"token_id:8\"", found]);
    }
    // no token key, a null token, a null entry
    let text = err(
        generate_with(json!([8]), json!([{"logprob": -1}])),
        Wire::VllmGenerate,
    );
    assert_contains(&text, &["neither a \"token_id\" nor a \"token\" key"]);
    let text = err(
        generate_with(json!([8]), json!([{"logprob": -1, "token": null}])),
        Wire::VllmGenerate,
    );
    assert_contains(&text, &["found null"]);
    let text = err(generate_with(json!([8]), json!([null])), Wire::VllmGenerate);
    assert_contains(&text, &["null entry"]);
    // a length mismatch is reported as such, before any label
    let text = err(
        generate_with(json!([7, 8]), json!([entry("Two")])),
        Wire::VllmGenerate,
    );
    assert_contains(&text, &["found 1 logprobs", "for 2 ids"]);
}

#[test]
fn generate_rejects_null_and_clamped_logprobs() {
    // a sampled token has a finite logprob: null and vLLM's -9999.0 clamp are no evidence
    for (bad, found) in [("null", "found null"), ("-9999.0", "-inf")] {
        let entries: Value = serde_json::from_str(&format!(
            r#"[{{"token": "token_id:7", "logprob": -0.5}}, {{"token_id": 8, "logprob": {bad}}}]"#
        ))
        .unwrap();
        let text = err(generate_with(json!([7, 8]), entries), Wire::VllmGenerate);
        assert_contains(&text, &["content[1].logprob", "finite", "token 8", found]);
    }
    let body = generate_with(
        json!([7, 8]),
        json!([{"token": "token_id:7", "logprob": -0.5}, {"token_id": 8, "logprob": -0.25}]),
    );
    assert_eq!(logprobs(&ok(body, Wire::VllmGenerate)), [-0.5, -0.25]);
}

#[test]
fn generate_rules() {
    // ids are required
    let text = err(
        br#"{"choices":[{"finish_reason":"stop"}]}"#,
        Wire::VllmGenerate,
    );
    assert_contains(&text, &["choices[0].token_ids", "found none"]);
    // there is no message, so a stop is never promoted to tool_calls
    let p = ok(
        br#"{"choices":[{"token_ids":[1],"finish_reason":"stop","message":{"tool_calls":[{}]}}]}"#,
        Wire::VllmGenerate,
    );
    assert_eq!(p.finish_reason.as_deref(), Some("stop"));
    // prime-rl's pre-0.20 flat logprob list is another route: a typed error with the path
    let text = err(
        br#"{"choices":[{"token_ids":[1],"logprobs":[-0.5]}]}"#,
        Wire::VllmGenerate,
    );
    assert_contains(
        &text,
        &[
            "invalid type: sequence, expected a logprobs object",
            "at `choices[0].logprobs`",
        ],
    );
    let p = ok(
        br#"{"choices":[{"token_ids":[1],"stop_reason":1}],"prompt_token_ids":[4,5]}"#,
        Wire::VllmGenerate,
    );
    assert_eq!(
        (p.stop_reason, p.prompt_ids),
        (Some(StopReason::TokenId(1)), Some(vec![4, 5]))
    );
}

// ---------------------------------------------------------------------------------------------
// Dynamo precedence (docs/wire.md C.2)
// ---------------------------------------------------------------------------------------------

#[test]
fn dynamo_completion_id_precedence() {
    let choice = json!({"token_ids": [3]});
    let all = json!({"engine_data": {"completion_token_ids": [1]}, "completion_token_ids": [2]});
    let p = ok(dynamo_with(choice.clone(), all), Wire::Dynamo);
    assert_eq!(
        (p.completion_ids.as_slice(), p.completion_ids_from),
        (&[1][..], "nvext.engine_data.completion_token_ids")
    );
    let p = ok(
        dynamo_with(choice.clone(), json!({"completion_token_ids": [2]})),
        Wire::Dynamo,
    );
    assert_eq!(
        (p.completion_ids.as_slice(), p.completion_ids_from),
        (&[2][..], "nvext.completion_token_ids")
    );
    let p = ok(
        dynamo_with(choice.clone(), json!({"engine_data": {}})),
        Wire::Dynamo,
    );
    assert_eq!(
        (p.completion_ids.as_slice(), p.completion_ids_from),
        (&[3][..], "choices[0].token_ids")
    );
    // a present-but-empty list is a valid zero-token completion, and it wins
    let p = ok(
        dynamo_with(
            choice,
            json!({"engine_data": {"completion_token_ids": []}, "completion_token_ids": [2]}),
        ),
        Wire::Dynamo,
    );
    assert_eq!(
        (p.completion_ids.len(), p.completion_ids_from),
        (0, "nvext.engine_data.completion_token_ids")
    );
    let p = ok(
        dynamo_with(json!({}), json!({"completion_token_ids": []})),
        Wire::Dynamo,
    );
    assert!(p.completion_ids.is_empty());
    // absent everywhere is an error
    let text = err(
        dynamo_with(
            json!({"message": {"content": "x"}}),
            json!({"engine_data": {}}),
        ),
        Wire::Dynamo,
    );
    assert_contains(
        &text,
        &["found none of", "extra_fields", "docs/wire.md C.1, C.2"],
    );
}

#[test]
fn dynamo_prompt_id_precedence() {
    let choice = json!({"token_ids": [3]});
    let p = ok(
        dynamo_with(
            choice.clone(),
            json!({"engine_data": {"prompt_token_ids": [1]}, "prompt_token_ids": [2]}),
        ),
        Wire::Dynamo,
    );
    assert_eq!(p.prompt_ids, Some(vec![1]));
    let p = ok(
        dynamo_with(choice.clone(), json!({"prompt_token_ids": [2]})),
        Wire::Dynamo,
    );
    assert_eq!(p.prompt_ids, Some(vec![2]));
    // the vLLM top-level field is not a Dynamo channel
    let body = json!({"choices": [choice], "prompt_token_ids": [9]}).to_string();
    assert_eq!(ok(body, Wire::Dynamo).prompt_ids, None);
}

#[test]
fn dynamo_logprob_precedence() {
    let choice =
        json!({"token_ids": [1, 2], "logprobs": {"content": [{"logprob": -1}, {"logprob": -2}]}});
    let engine = |lp: Value| json!({"engine_data": {"completion_token_ids": [1, 2], "completion_logprobs": lp}});
    let p = ok(
        dynamo_with(choice.clone(), engine(json!([-0.5, null]))),
        Wire::Dynamo,
    );
    assert_eq!(
        p.completion_logprobs_from,
        Some("nvext.engine_data.completion_logprobs")
    );
    assert_eq!(logprobs(&p)[0], -0.5);
    assert!(logprobs(&p)[1].is_nan());
    assert_eq!(p.null_logprobs, 1);
    // present-but-empty is authoritative: no fallback to the choice channel, so a mismatch
    let text = err(dynamo_with(choice.clone(), engine(json!([]))), Wire::Dynamo);
    assert_contains(
        &text,
        &[
            "found 0 logprobs at `nvext.engine_data.completion_logprobs`",
            "for 2 ids",
        ],
    );
    let p = ok(
        dynamo_with(
            json!({"logprobs": {"content": [{"logprob": -1}]}}),
            json!({"engine_data": {"completion_token_ids": [], "completion_logprobs": []}}),
        ),
        Wire::Dynamo,
    );
    assert_eq!(p.completion_logprobs, Some(vec![]));
    // null or absent key: the choice channel
    for nvext in [
        engine(json!(null)),
        json!({"engine_data": {"completion_token_ids": [1, 2]}}),
    ] {
        let p = ok(dynamo_with(choice.clone(), nvext), Wire::Dynamo);
        assert_eq!(logprobs(&p), [-1.0, -2.0]);
        assert_eq!(
            p.completion_logprobs_from,
            Some("choices[0].logprobs.content")
        );
    }
    // neither: no logprobs
    let p = ok(
        dynamo_with(
            json!({"token_ids": [1], "logprobs": {"content": null}}),
            json!({}),
        ),
        Wire::Dynamo,
    );
    assert_eq!(p.completion_logprobs, None);
}

#[test]
fn dynamo_choice_logprobs_off_by_one_is_fatal() {
    // NeMo-Gym #1963: 566 engine ids against 565 choice logprobs
    let ids: Vec<u32> = (0..566).collect();
    let content: Vec<Value> = (0..565)
        .map(|i| json!({"token": "", "logprob": -0.1, "token_id": i}))
        .collect();
    let body = dynamo_with(
        json!({"logprobs": {"content": content}}),
        json!({"engine_data": {"completion_token_ids": ids}}),
    );
    let text = err(body, Wire::Dynamo);
    assert_contains(
        &text,
        &[
            "found 565 logprobs at `choices[0].logprobs.content`",
            "for 566 ids at `nvext.engine_data.completion_token_ids`",
            "engine_data",
        ],
    );
}

#[test]
fn dynamo_routed_experts_and_stop_reason_precedence() {
    let re = |n: u32| json!({"data": "AQI=", "shape": [n, 1, 1], "start": 0, "dtype": "uint8"});
    let shape = |p: &Parsed| {
        let raw = p
            .routed_experts
            .as_ref()
            .map(|r| r.get().to_owned())
            .unwrap_or_default();
        json_of(raw.as_bytes())["shape"][0].clone()
    };
    let nvext = json!({"routed_experts": re(2), "engine_data": {"routed_experts": re(3), "completion_token_ids": [1]}});
    let p = ok(
        dynamo_with(json!({"routed_experts": re(1)}), nvext.clone()),
        Wire::Dynamo,
    );
    assert_eq!(shape(&p), json!(1));
    let p = ok(
        dynamo_with(json!({"routed_experts": null}), nvext),
        Wire::Dynamo,
    );
    assert_eq!(shape(&p), json!(2));
    let body = dynamo_with(
        json!({}),
        json!({"engine_data": {"routed_experts": re(3), "completion_token_ids": [1]}}),
    );
    let p = ok(&body, Wire::Dynamo);
    assert_eq!(shape(&p), json!(3));
    let span = p.routed_experts_span.clone().unwrap_or_default();
    assert_eq!(json_of(&body[span]), re(3));
    // stop_reason: the choice's, then nvext's
    let nvext = json!({"completion_token_ids": [1], "stop_reason": 151645});
    let p = ok(
        dynamo_with(json!({"stop_reason": "</s>"}), nvext.clone()),
        Wire::Dynamo,
    );
    assert_eq!(p.stop_reason, Some(StopReason::Text("</s>".into())));
    let p = ok(
        dynamo_with(json!({"stop_reason": null}), nvext),
        Wire::Dynamo,
    );
    assert_eq!(p.stop_reason, Some(StopReason::TokenId(151645)));
}

#[test]
fn dynamo_tool_calls_promote_stop() {
    let body = dynamo_with(
        json!({"finish_reason": "stop", "message": {"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]}}),
        json!({"engine_data": {"completion_token_ids": [1]}}),
    );
    let p = ok(body, Wire::Dynamo);
    assert_eq!(p.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(p.tool_calls[0].arguments, "{\"a\": 1}");
}

#[test]
fn dynamo_ignores_unknown_engine_data_keys_but_checks_read_ones() {
    let nvext = json!({"engine_data": {"completion_token_ids": [1], "policy": {"x": [1, {"y": null}]}, "request": "…"},
                        "timing": {"ttft_ms": 1.5}, "worker_id": {"prefill_worker_id": 18402328803606963855u64}});
    assert_eq!(
        ok(dynamo_with(json!({}), nvext), Wire::Dynamo).completion_ids,
        [1]
    );
    let nvext = json!({"engine_data": {"completion_token_ids": [1], "completion_logprobs": ["a"]}});
    let text = err(dynamo_with(json!({}), nvext), Wire::Dynamo);
    assert_contains(
        &text,
        &[
            "invalid type: string \"a\"",
            "at `nvext.engine_data.completion_logprobs[0]`",
            "docs/wire.md C.2",
        ],
    );
    // (serde reads a derived struct from an array positionally: the error names the element)
    let text = err(
        dynamo_with(json!({}), json!({"engine_data": [1]})),
        Wire::Dynamo,
    );
    assert_contains(&text, &["at `nvext.engine_data[0]`"]);
    let text = err(
        dynamo_with(json!({}), json!({"completion_token_ids": [1, -2]})),
        Wire::Dynamo,
    );
    assert_contains(
        &text,
        &["negative token id -2", "at `nvext.completion_token_ids[1]`"],
    );
}

// ---------------------------------------------------------------------------------------------
// Malformed bodies and limits
// ---------------------------------------------------------------------------------------------

#[test]
fn non_json_bodies_are_typed_errors() {
    let cases: [(&[u8], &str); 9] = [
        (b"", "ends early"),
        (b"hello", "is not valid JSON"),
        (b"<html>502 Bad Gateway</html>", "is not valid JSON"),
        (b"null", "has an unexpected value"),
        (b"[]", "choices"),
        (b"\"str\"", "has an unexpected value"),
        (b"42", "has an unexpected value"),
        (
            b"{\"choices\":[{\"token_ids\":[1]}]} trailing",
            "is not valid JSON",
        ),
        (
            b"{\"choices\":[{\"token_ids\":[1],\"logprobs\":{\"content\":[{\"logprob\":NaN}]}}]}",
            "is not valid JSON",
        ),
    ];
    for wire in Wire::ALL {
        for (body, what) in cases {
            let text = err(body, wire);
            // SGLang answers a batch with an array: a list body is named as that
            let what = if wire == Wire::Sglang && body == b"[]" {
                "JSON array"
            } else {
                what
            };
            assert_contains(&text, &[what, "docs/wire.md"]);
        }
    }
    // invalid UTF-8 inside a string
    let text = err(b"{\"id\":\"\xff\",\"choices\":[]}", Wire::VllmChat);
    assert_contains(&text, &["is not valid JSON", "at `id`"]);
}

#[test]
fn wrong_types_name_their_path() {
    let cases: [(Value, &str); 8] = [
        (json!({"choices": {}}), "at `choices`"),
        (json!({"choices": [5]}), "at `choices[0]`"),
        (
            json!({"choices": [{"token_ids": [1], "message": 5}]}),
            "at `choices[0].message`",
        ),
        (
            json!({"choices": [{"token_ids": [1], "message": {"content": 5}}]}),
            "at `choices[0].message.content`",
        ),
        (
            json!({"choices": [{"token_ids": [1], "logprobs": {"content": "x"}}]}),
            "at `choices[0].logprobs.content`",
        ),
        (
            json!({"choices": [{"token_ids": [1], "logprobs": {"content": [{"logprob": "x"}]}}]}),
            "at `choices[0].logprobs.content[0].logprob`",
        ),
        (
            json!({"choices": [{"token_ids": [1], "finish_reason": 5}]}),
            "at `choices[0].finish_reason`",
        ),
        (
            json!({"choices": [{"token_ids": [1]}], "usage": {"prompt_tokens": -1}}),
            "at `usage.prompt_tokens`",
        ),
    ];
    for (body, path) in cases {
        let text = err(body.to_string(), Wire::VllmChat);
        assert_contains(&text, &["has an unexpected value", path, "(line 1, column"]);
    }
    // paths survive pretty-printed (multi-line) bodies
    let pretty = serde_json::to_string_pretty(&json!({"choices": [{"token_ids": [1, 2, -3]}]}))
        .unwrap_or_default();
    assert_contains(
        &err(pretty, Wire::VllmChat),
        &["at `choices[0].token_ids[2]`", "(line 7,"],
    );
}

#[test]
fn truncated_bodies_error_with_eof() {
    let body = fixture("wire_a3_vllm_chat.json");
    let text = err(&body[..body.len() / 2], Wire::VllmChat);
    assert_contains(&text, &["ends early (truncated body?)", "at `choices[0]"]);
}

#[test]
fn oversized_bodies_are_rejected_before_parsing() {
    let body = fixture("wire_a3_vllm_chat.json");
    let at = ParseOptions {
        max_body_bytes: body.len(),
        ..ParseOptions::default()
    };
    assert!(parse_response(&body, Wire::VllmChat, &at).is_ok());
    let under = ParseOptions {
        max_body_bytes: body.len() - 1,
        ..ParseOptions::default()
    };
    let e = parse_response(&body, Wire::VllmChat, &under)
        .err()
        .map(|e| (e.kind(), e.text().to_owned()));
    let (kind, text) = e.unwrap_or((ErrorKind::Load, String::new()));
    assert_eq!(kind, ErrorKind::Parse);
    assert_contains(
        &text,
        &[&format!("is {} bytes", body.len()), "max_body_bytes"],
    );
    // checked before parsing: even garbage gets the size error
    let e = parse_response(
        b"not json",
        Wire::Dynamo,
        &ParseOptions {
            max_body_bytes: 3,
            max_depth: 64,
        },
    );
    assert_contains(
        e.err()
            .map(|e| e.text().to_owned())
            .as_deref()
            .unwrap_or_default(),
        &["over the limit"],
    );
}

/// `{"choices":[{"token_ids":[1],"x":` + `depth` nested arrays + `}]}`: total nesting `depth + 3`.
fn nested(depth: usize) -> String {
    format!(
        "{{\"choices\":[{{\"token_ids\":[1],\"x\":{}{}}}]}}",
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

/// Found by the `parse_response` fuzz target: the JSON path of an error, cut at 300 bytes, was cut
/// inside a multi-byte character of a key and panicked.
#[test]
fn error_paths_through_long_non_ascii_keys_are_cut_on_char_boundaries() {
    for key in [
        "é".repeat(101),
        "日本".repeat(60),
        r"\u00e9".repeat(101),
        r"\ud83d".repeat(40),
    ] {
        let body = format!("{{\"{key}\": {{\"{key}\": {{\"{key}\": [1, ]}}}}}}");
        for wire in Wire::ALL {
            let text = err(&body, wire);
            assert!(text.contains("...") || key.starts_with(r"\ud83d"), "{text}");
        }
    }
    let body = fixture("engine_vllm_chat_text.json");
    let mut mangled = body[..body.len() / 2].to_vec();
    mangled.splice(
        2..2,
        format!("\"{}\": {{\"{}\": 1}}, ", "é".repeat(200), "ü".repeat(200)).into_bytes(),
    );
    for wire in Wire::ALL {
        err(&mangled, wire);
    }
}

#[test]
fn over_deep_bodies_are_typed_errors() {
    let opts = ParseOptions::default();
    assert_eq!(opts.max_depth, 64);
    assert!(parse_response(nested(61).as_bytes(), Wire::VllmChat, &opts).is_ok());
    let e = parse_response(nested(62).as_bytes(), Wire::VllmChat, &opts).err();
    let text = e.map(|e| e.text().to_owned()).unwrap_or_default();
    assert_contains(
        &text,
        &[
            "deeper than 64 levels",
            "at `choices[0].x",
            "ParseOptions.max_depth",
        ],
    );
    // a limit above serde_json's own acts as serde_json's, and stays typed
    let loose = ParseOptions {
        max_depth: usize::MAX,
        ..opts
    };
    assert!(parse_response(
        nested(SERDE_JSON_MAX_DEPTH - 3).as_bytes(),
        Wire::VllmChat,
        &loose
    )
    .is_ok());
    for depth in [SERDE_JSON_MAX_DEPTH - 2, 200, 100_000] {
        for wire in Wire::ALL {
            let e = parse_response(nested(depth).as_bytes(), wire, &loose).err();
            let kind = e.as_ref().map(|e| e.kind());
            assert_eq!(kind, Some(ErrorKind::Parse), "{depth} {wire}");
            assert_contains(
                e.map(|e| e.text().to_owned())
                    .as_deref()
                    .unwrap_or_default(),
                &["deeper than 127 levels"],
            );
        }
    }
    // brackets inside strings do not count
    let body = format!(
        "{{\"choices\":[{{\"token_ids\":[1],\"x\":\"{}\"}}]}}",
        "[{".repeat(1000)
    );
    assert!(parse_response(body.as_bytes(), Wire::VllmChat, &opts).is_ok());
    // a typed field nested deep (not only skipped values): still the depth error, never a stack issue
    let deep_tools = format!(
        "{{\"choices\":[{{\"token_ids\":[1],\"message\":{{\"tool_calls\":[{}]}}}}]}}",
        "{\"function\":".repeat(300)
    );
    assert_contains(&err(deep_tools, Wire::VllmChat), &["deeper than 64 levels"]);
}

// ---------------------------------------------------------------------------------------------
// Property-style sweeps: truncations and mutations never panic
// ---------------------------------------------------------------------------------------------

#[test]
fn every_truncation_of_every_fixture_is_ok_or_a_typed_error() {
    // Every prefix against the fixture's own wire; every 5th also against the other two (the
    // sweep is quadratic in the fixture size, and the test build is unoptimized).
    let mut errors = 0usize;
    for (name, own) in FIXTURES {
        let body = fixture(name);
        let complete = body.trim_ascii_end().len();
        for len in 0..body.len() {
            for wire in Wire::ALL {
                if wire != own && len % 5 != 0 {
                    continue;
                }
                match parse_response(&body[..len], wire, &ParseOptions::default()) {
                    Ok(_) if len >= complete => {}
                    Ok(p) => panic!("{name}[..{len}] as {wire} parsed: {p:?}"),
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::Parse, "{name}[..{len}]: {e}");
                        errors += 1;
                    }
                }
            }
        }
        // the whole body minus trailing whitespace still parses
        assert!(
            parse_response(&body[..complete], own, &ParseOptions::default()).is_ok(),
            "{name}"
        );
    }
    assert!(errors > 35_000, "{errors}");
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_bodies_never_panic() {
    const BYTES: &[u8] = b"{}[]\",:-0123456789.eE+nulltruefalse\\ \n\xff\xc3\x00";
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut oks, mut errs) = (0usize, 0usize);
    for (name, _) in FIXTURES {
        let body = fixture(name);
        for _ in 0..600 {
            let mut m = body.clone();
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(m.len());
                match rng.below(4) {
                    0 => m[i] = BYTES[rng.below(BYTES.len())],
                    1 => m.insert(i, BYTES[rng.below(BYTES.len())]),
                    2 => {
                        m.remove(i);
                    }
                    _ => {
                        // duplicate a slice (repeats keys and brackets)
                        let j = (i + rng.below(40)).min(m.len());
                        let piece = m[i..j].to_vec();
                        m.splice(i..i, piece);
                    }
                }
            }
            for wire in Wire::ALL {
                match parse_response(&m, wire, &ParseOptions::default()) {
                    Ok(p) => {
                        if p.completion_ids_from == IDS_NOT_SENT {
                            // a plain OpenAI answer: logprobs without ids, nothing to align
                            assert_eq!(wire, Wire::Chat);
                            assert!(p.completion_ids.is_empty());
                        } else if let Some(lp) = &p.completion_logprobs {
                            assert_eq!(
                                lp.len(),
                                p.completion_ids.len(),
                                "1:1 even on mutated input"
                            );
                        }
                        oks += 1;
                    }
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::Parse, "{e}");
                        assert!(!e.text().is_empty());
                        errs += 1;
                    }
                }
            }
        }
    }
    assert!(oks > 0 && errs > 0, "{oks} ok, {errs} errors");
}

// ---------------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------------

fn opts<'a>(
    stop: Option<&'a [u32]>,
    salt: Option<&'a str>,
    priority: Option<i64>,
) -> RequestOptions<'a> {
    RequestOptions {
        stop_token_ids: stop,
        cache_salt: salt,
        priority,
        ..RequestOptions::default()
    }
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn generate_body_b2_exact() {
    // renderers PR #79 test_generate_builds_request_body_and_parses_response (docs/wire.md B.2)
    let sampling =
        map(json!({"temperature": 0.3, "max_tokens": 7, "min_tokens": 2, "cache_salt": "ckpt-42"}));
    let body = vllm_generate_body(
        "test-model",
        &[1, 2, 3],
        &sampling,
        &opts(Some(&[99]), None, None),
    );
    let body = body.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        json_of(&body),
        json!({"model": "test-model",
               "token_ids": [1, 2, 3],
               "cache_salt": "ckpt-42",
               "sampling_params": {"temperature": 0.3, "max_tokens": 7, "min_tokens": 2,
                                   "stop_token_ids": [99], "logprobs": 1, "skip_special_tokens": false}})
    );
    assert!(body.starts_with(br#"{"model":"test-model","token_ids":[1,2,3],"sampling_params":{"#));
}

#[test]
fn generate_body_rules() {
    let sampling = map(json!({
        "temperature": 1.0, "seed": null, "max_completion_tokens": 50, "max_tokens": 10,
        "stop_token_ids": [5], "logprobs": true, "top_logprobs": 3, "skip_special_tokens": true,
        "return_token_ids": true, "chat_template_kwargs": {"enable_thinking": false}, "stream": false,
        "messages": [], "tools": [], "tool_choice": "auto", "tokens": [1],
        "request_id": "r-1", "kv_transfer_params": {"a": 1}, "routed_experts_prompt_start": 4,
        "nvext": {"extra_fields": ["engine_data"]},
        "extra_body": {"priority": 3, "cache_salt": "caller-salt", "min_p": 0.1}
    }));
    let o = RequestOptions {
        max_tokens: Some(20),
        ..opts(Some(&[151645, 151643]), Some("opt-salt"), None)
    };
    let body =
        json_of(&vllm_generate_body("m", &[], &sampling, &o).unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(
        body,
        json!({"model": "m", "token_ids": [],
               "sampling_params": {"max_tokens": 20, "temperature": 1.0, "skip_special_tokens": true,
                                   "routed_experts_prompt_start": 4, "min_p": 0.1,
                                   "stop_token_ids": [151645, 151643], "logprobs": 3},
               "cache_salt": "opt-salt", "priority": 3, "request_id": "r-1", "kv_transfer_params": {"a": 1},
               "return_token_ids": true})
    );
    // without options: the caller's max_completion_tokens (renamed), stop ids, salt and priority
    let sampling = map(
        json!({"max_tokens": 10, "max_completion_tokens": 50, "stop_token_ids": [5],
                              "cache_salt": "", "priority": -2, "logprobs": 0}),
    );
    let body = json_of(
        &vllm_generate_body("m", &[u32::MAX], &sampling, &RequestOptions::default())
            .unwrap_or_default(),
    );
    assert_eq!(
        body,
        json!({"model": "m", "token_ids": [4294967295u64],
               "sampling_params": {"max_tokens": 50, "stop_token_ids": [5], "logprobs": 1, "skip_special_tokens": false},
               "priority": -2})
    );
}

fn a2_messages() -> Box<RawValue> {
    raw(json!([
        {"role": "user", "content": "List files"},
        {"role": "assistant", "content": null,
         "tool_calls": [{"id": "call_0", "type": "function",
                         "function": {"name": "ls", "arguments": "{\"path\": \".\"}"}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "a.txt\nb.txt"}
    ]))
}

fn a2_tools() -> Box<RawValue> {
    raw(
        json!([{"type": "function", "function": {"name": "ls", "parameters": {"type": "object",
               "properties": {"path": {"type": "string"}}}}}]),
    )
}

const A2_TOKENS: [u32; 26] = [
    151644, 872, 198, 852, 3542, 151645, 198, 151644, 77091, 198, 151657, 151658, 151645, 198,
    151644, 872, 198, 151665, 64, 3909, 151666, 151645, 198, 151644, 77091, 198,
];

#[test]
fn chat_tokens_body_a2_exact() {
    // docs/wire.md A.2: sampling args as prime-rl passes them (cache_salt and chat_template_kwargs
    // in extra_body), normalized by verifiers' normalize_sampling_args
    let sampling = map(
        json!({"max_tokens": 2048, "temperature": 1.0, "top_p": null,
        "extra_body": {"cache_salt": "17", "chat_template_kwargs": {"enable_thinking": true}}}),
    );
    let body = chat_tokens_body(
        "Qwen/Qwen3-8B",
        &a2_messages(),
        Some(&a2_tools()),
        &A2_TOKENS,
        &sampling,
        &RequestOptions::default(),
    );
    let body = body.unwrap_or_else(|e| panic!("{e}"));
    let want = json!({
        "model": "Qwen/Qwen3-8B",
        "messages": json_of(a2_messages().get().as_bytes()),
        "tools": json_of(a2_tools().get().as_bytes()),
        "tokens": A2_TOKENS,
        "max_completion_tokens": 2048,
        "temperature": 1.0,
        "logprobs": true,
        "return_token_ids": true,
        "cache_salt": "17",
        "chat_template_kwargs": {"enable_thinking": true}
    });
    let got = json_of(&body);
    assert_eq!(got, want);
    assert_eq!(keys(&got), keys(&want), "key order as in docs/wire.md A.2");
    // messages and tools are copied byte for byte
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains(a2_messages().get()) && text.contains(a2_tools().get()));
}

#[test]
fn chat_tokens_body_rules() {
    let messages = raw(json!([{"role": "user", "content": "héllo \u{2028} \"q\""}]));
    let sampling = map(
        json!({"logprobs": 3, "return_token_ids": false, "max_completion_tokens": 9,
        "cache_salt": "caller", "priority": 1, "chat_template_kwargs": {"a": 1}, "stop_token_ids": [7],
        "tokens": [0], "messages": [], "model": "other", "n": 1, "nvext": {"cache_salt": "dyn"}}),
    );
    let kwargs = map(json!({"enable_thinking": false}));
    let o = RequestOptions {
        max_tokens: Some(100),
        chat_template_kwargs: Some(&kwargs),
        ..opts(Some(&[151645]), Some("salt"), Some(-1))
    };
    let body = chat_tokens_body("m", &messages, None, &[1, 2], &sampling, &o)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        json_of(&body),
        json!({"model": "m", "messages": [{"role": "user", "content": "héllo \u{2028} \"q\""}], "tools": null,
               "tokens": [1, 2], "max_completion_tokens": 100, "n": 1,
               "logprobs": true, "top_logprobs": 3, "return_token_ids": true, "stop_token_ids": [151645],
               "cache_salt": "salt", "priority": -1, "chat_template_kwargs": {"enable_thinking": false}})
    );
    // a caller's top_logprobs wins over an integer logprobs; no stop ids unless given
    let sampling = map(json!({"logprobs": 5, "top_logprobs": 2, "stop_token_ids": [7]}));
    let body = chat_tokens_body(
        "m",
        &messages,
        None,
        &[],
        &sampling,
        &RequestOptions::default(),
    )
    .unwrap_or_default();
    let v = json_of(&body);
    assert_eq!(
        (&v["top_logprobs"], &v["stop_token_ids"], &v["logprobs"]),
        (&json!(2), &json!([7]), &json!(true))
    );
    assert_eq!(v.get("max_completion_tokens"), None);
}

#[test]
fn chat_body_targets() {
    let messages = raw(json!([{"role": "user", "content": "hi"}]));
    let tools = a2_tools();
    let sampling = map(
        json!({"max_tokens": 64, "temperature": 0.7, "tool_choice": "auto",
        "return_token_ids": true, "spaces_between_special_tokens": false, "priority": 2,
        "routed_experts_prompt_start": 3, "cache_salt": "s", "top_k": 20}),
    );
    let o = opts(Some(&[151645]), None, None);
    // vLLM: ids and logprobs requested, root options
    let v = json_of(
        &chat_body(
            "m",
            &messages,
            Some(&tools),
            &sampling,
            ChatTarget::Vllm,
            &o,
        )
        .unwrap_or_default(),
    );
    assert_eq!(
        v,
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": json_of(tools.get().as_bytes()),
               "max_completion_tokens": 64, "temperature": 0.7, "tool_choice": "auto",
               "spaces_between_special_tokens": false, "routed_experts_prompt_start": 3, "top_k": 20,
               "logprobs": true, "return_token_ids": true, "stop_token_ids": [151645], "cache_salt": "s", "priority": 2})
    );
    // tools omitted when there are none (docs/wire.md A.2 step 2: `tools?`)
    let v = json_of(
        &chat_body(
            "m",
            &messages,
            None,
            &Map::new(),
            ChatTarget::Vllm,
            &RequestOptions::default(),
        )
        .unwrap_or_default(),
    );
    assert_eq!(
        v,
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "logprobs": true, "return_token_ids": true})
    );
    // plain OpenAI: no vLLM-only keys added, the known ones scrubbed
    let v = json_of(
        &chat_body("m", &messages, None, &sampling, ChatTarget::OpenAi, &o).unwrap_or_default(),
    );
    assert_eq!(
        v,
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 64,
               "temperature": 0.7, "tool_choice": "auto", "cache_salt": "s", "top_k": 20, "logprobs": true})
    );
    // Dynamo MITO: real messages and tools, nvext routing, no token_data, nothing Dynamo rejects
    let o = opts(Some(&[151645]), None, Some(9));
    let v = json_of(
        &chat_body(
            "m",
            &messages,
            Some(&tools),
            &sampling,
            ChatTarget::Dynamo,
            &o,
        )
        .unwrap_or_default(),
    );
    assert_eq!(
        v,
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": json_of(tools.get().as_bytes()),
               "stream": false,
               "nvext": {"extra_fields": ["engine_data"], "cache_salt": "s", "agent_hints": {"priority": 9}},
               "max_completion_tokens": 64, "temperature": 0.7, "tool_choice": "auto", "top_k": 20,
               "stop_token_ids": [151645], "logprobs": true, "skip_special_tokens": false})
    );
}

#[test]
fn dynamo_body_c1_exact() {
    let ids = [151644, 872, 198, 852, 3542, 151645, 198, 151644, 77091, 198];
    let sampling = map(json!({"max_tokens": 2048, "temperature": 1.0}));
    let body = dynamo_body(
        "Qwen/Qwen3-8B",
        &ids,
        &sampling,
        &opts(Some(&[151645, 151643]), Some("17"), Some(5)),
    );
    let body = body.unwrap_or_else(|e| panic!("{e}"));
    let want = json!({
        "model": "Qwen/Qwen3-8B",
        "messages": [{"role": "user", "content": ""}],
        "stream": false,
        "nvext": {
            "token_data": ids,
            "extra_fields": ["engine_data"],
            "cache_salt": "17",
            "agent_hints": {"priority": 5}
        },
        "max_completion_tokens": 2048,
        "temperature": 1.0,
        "stop_token_ids": [151645, 151643],
        "logprobs": true,
        "skip_special_tokens": false
    });
    let got = json_of(&body);
    assert_eq!(got, want);
    assert_eq!(keys(&got), keys(&want), "key order as in docs/wire.md C.1");
    assert_eq!(keys(&got["nvext"]), keys(&want["nvext"]));
}

#[test]
fn dynamo_cache_salt_reaches_nvext_never_the_root() {
    // vf #1289 finding D1: the salt must arrive, inside nvext
    let cases = [
        (json!({"cache_salt": "root"}), None, "root"),
        (
            json!({"extra_body": {"cache_salt": "extra"}}),
            None,
            "extra",
        ),
        (
            json!({"cache_salt": "root", "nvext": {"cache_salt": "nv"}}),
            None,
            "nv",
        ),
        (
            json!({"cache_salt": "root", "nvext": {"cache_salt": "nv"}}),
            Some("opt"),
            "opt",
        ),
        (
            json!({"cache_salt": "root", "nvext": {"cache_salt": ""}}),
            Some(""),
            "root",
        ),
    ];
    for (sampling, salt, want) in cases {
        let body = dynamo_body("m", &[1], &map(sampling.clone()), &opts(None, salt, None))
            .unwrap_or_else(|e| panic!("{e}"));
        let v = json_of(&body);
        assert_eq!(v["nvext"]["cache_salt"], json!(want), "{sampling}");
        assert_eq!(v.get("cache_salt"), None, "{sampling}");
    }
    let v = json_of(
        &dynamo_body(
            "m",
            &[1],
            &map(json!({"cache_salt": ""})),
            &RequestOptions::default(),
        )
        .unwrap_or_default(),
    );
    assert_eq!(
        v["nvext"].get("cache_salt"),
        None,
        "empty salts count as absent (docs/wire.md C.1)"
    );
}

#[test]
fn dynamo_priority_goes_to_agent_hints_never_the_root() {
    // vf #1289 finding D2 and renderers #79 test_dynamo_transport_merges_caller_nvext
    let sampling = map(
        json!({"priority": 4, "extra_body": {"nvext": {"agent_hints": {"osl": 100, "priority": 1, "latency_sensitivity": null}}}}),
    );
    let v =
        json_of(&dynamo_body("m", &[1], &sampling, &RequestOptions::default()).unwrap_or_default());
    assert_eq!(
        v["nvext"]["agent_hints"],
        json!({"osl": 100, "priority": 4})
    );
    assert_eq!(v.get("priority"), None);
    let v = json_of(
        &dynamo_body("m", &[1], &sampling, &opts(None, None, Some(17))).unwrap_or_default(),
    );
    assert_eq!(
        v["nvext"]["agent_hints"],
        json!({"osl": 100, "priority": 17})
    );
    // the caller's hints alone are kept as they are
    let sampling = map(json!({"nvext": {"agent_hints": {"osl": 100, "priority": 1}}}));
    let v =
        json_of(&dynamo_body("m", &[1], &sampling, &RequestOptions::default()).unwrap_or_default());
    assert_eq!(
        v["nvext"]["agent_hints"],
        json!({"osl": 100, "priority": 1})
    );
    // no priority anywhere: no agent_hints
    let v = json_of(
        &dynamo_body("m", &[1], &Map::new(), &RequestOptions::default()).unwrap_or_default(),
    );
    assert_eq!(v["nvext"].get("agent_hints"), None);
    assert!(!String::from_utf8_lossy(
        &dynamo_body(
            "m",
            &[1],
            &map(json!({"priority": 4})),
            &RequestOptions::default()
        )
        .unwrap_or_default()
    )
    .contains("\"priority\":4,"));
}

#[test]
fn dynamo_extra_fields_union_and_caller_nvext() {
    let sampling = map(json!({"extra_body": {"nvext": {
        "extra_fields": ["timing", "engine_data", "timing", "worker_id"],
        "annotations": ["a"], "token_data": [9, 9], "backend_instance_id": 7, "dp_rank": null
    }}}));
    let v = json_of(
        &dynamo_body("m", &[1, 2], &sampling, &RequestOptions::default()).unwrap_or_default(),
    );
    assert_eq!(
        v["nvext"],
        json!({"token_data": [1, 2], "extra_fields": ["timing", "engine_data", "worker_id"],
               "annotations": ["a"], "backend_instance_id": 7})
    );
    // vf #1287/#1313 test: ["timing"] becomes ["timing", "engine_data"]
    let v = json_of(
        &dynamo_body(
            "m",
            &[1],
            &map(json!({"nvext": {"extra_fields": ["timing"]}})),
            &RequestOptions::default(),
        )
        .unwrap_or_default(),
    );
    assert_eq!(v["nvext"]["extra_fields"], json!(["timing", "engine_data"]));
}

#[test]
fn dynamo_scrubs_rejected_root_keys_and_forwards_the_rest() {
    // vf #1574 test_post_dynamo_scrubs_vllm_only_and_forwards_sampling and renderers #79
    // test_dynamo_transport_forwards_{priority_and_detokenize,extra_sampling_fields_and_drops_denylist}
    let sampling = map(json!({
        "return_token_ids": true, "spaces_between_special_tokens": false, "routed_experts_prompt_start": 3,
        "truncate_prompt_tokens": 100, "priority": 2, "cache_salt": "ckpt-1", "stream": true,
        "stream_options": {"include_usage": true}, "tools": [], "tool_choice": "auto", "parallel_tool_calls": true,
        "messages": [{"role": "user", "content": "real"}], "max_tokens": 5, "model": "x",
        "presence_penalty": 0.5, "frequency_penalty": 0.1, "temperature": 0.9, "reasoning_effort": "low",
        "stop": ["\n\n"], "guided_json": {"type": "object"}, "bad_words_token_ids": [[1, 2]],
        "allowed_token_ids": [1, 2, 3], "detokenize": false, "chat_template_kwargs": {"enable_thinking": true},
        "chat_template_args": {"x": 1}, "seed": 7, "skip_special_tokens": true, "logprobs": 5
    }));
    let v =
        json_of(&dynamo_body("m", &[1], &sampling, &opts(None, None, None)).unwrap_or_default());
    assert_eq!(
        v,
        json!({"model": "m", "messages": [{"role": "user", "content": ""}], "stream": false,
               "nvext": {"token_data": [1], "extra_fields": ["engine_data"], "cache_salt": "ckpt-1",
                         "agent_hints": {"priority": 2}},
               "max_completion_tokens": 5,
               "presence_penalty": 0.5, "frequency_penalty": 0.1, "temperature": 0.9, "reasoning_effort": "low",
               "stop": ["\n\n"], "guided_json": {"type": "object"}, "bad_words_token_ids": [[1, 2]],
               "allowed_token_ids": [1, 2, 3], "detokenize": false, "chat_template_kwargs": {"enable_thinking": true},
               "chat_template_args": {"x": 1}, "seed": 7, "skip_special_tokens": true,
               "logprobs": true, "top_logprobs": 5})
    );
}

#[test]
fn dynamo_logprobs_stop_ids_and_template_kwargs() {
    let logprob_keys = |sampling: Value| {
        let v = json_of(
            &dynamo_body("m", &[1], &map(sampling), &RequestOptions::default()).unwrap_or_default(),
        );
        (v["logprobs"].clone(), v.get("top_logprobs").cloned())
    };
    assert_eq!(logprob_keys(json!({})), (json!(true), None));
    assert_eq!(
        logprob_keys(json!({"logprobs": false})),
        (json!(true), None)
    );
    assert_eq!(logprob_keys(json!({"logprobs": 0})), (json!(true), None));
    assert_eq!(
        logprob_keys(json!({"logprobs": 1})),
        (json!(true), Some(json!(1)))
    );
    assert_eq!(
        logprob_keys(json!({"logprobs": 4, "top_logprobs": 2})),
        (json!(true), Some(json!(2)))
    );
    // root stop ids: the tokenizer's replace the caller's; without them the caller's stay
    let sampling = map(json!({"stop_token_ids": [7]}));
    let v = json_of(
        &dynamo_body("m", &[1], &sampling, &opts(Some(&[151645]), None, None)).unwrap_or_default(),
    );
    assert_eq!(v["stop_token_ids"], json!([151645]));
    let v =
        json_of(&dynamo_body("m", &[1], &sampling, &RequestOptions::default()).unwrap_or_default());
    assert_eq!(v["stop_token_ids"], json!([7]));
    // template kwargs from options replace the caller's (both spellings)
    let kwargs = map(json!({"enable_thinking": false}));
    let o = RequestOptions {
        chat_template_kwargs: Some(&kwargs),
        max_tokens: Some(3),
        ..RequestOptions::default()
    };
    let sampling = map(
        json!({"chat_template_kwargs": {"a": 1}, "chat_template_args": {"b": 2}, "max_completion_tokens": 9}),
    );
    let v = json_of(&dynamo_body("m", &[1], &sampling, &o).unwrap_or_default());
    assert_eq!(
        (&v["chat_template_kwargs"], v.get("chat_template_args")),
        (&json!({"enable_thinking": false}), None)
    );
    assert_eq!(v["max_completion_tokens"], json!(3));
}

#[test]
fn caller_arguments_of_the_wrong_type_are_message_errors() {
    let cases = [
        (
            json!({"nvext": 5}),
            "`nvext` must be an object, found a number",
        ),
        (
            json!({"nvext": {"extra_fields": "engine_data"}}),
            "`nvext.extra_fields` must be a list of strings",
        ),
        (
            json!({"nvext": {"extra_fields": [1]}}),
            "`nvext.extra_fields[]` must be a string",
        ),
        (
            json!({"nvext": {"agent_hints": []}}),
            "`nvext.agent_hints` must be an object",
        ),
        (
            json!({"priority": "high"}),
            "`priority` must be an integer, found a string",
        ),
        (
            json!({"priority": 1.5}),
            "`priority` must be an integer, found a number",
        ),
        (
            json!({"cache_salt": 17}),
            "`cache_salt` must be a string, found a number",
        ),
        (
            json!({"nvext": {"cache_salt": true}}),
            "`nvext.cache_salt` must be a string",
        ),
        (
            json!({"extra_body": []}),
            "`extra_body` must be an object, found a list",
        ),
        (
            json!({"priority": 3_000_000_000u64}),
            "does not fit nvext.agent_hints.priority",
        ),
    ];
    for (sampling, want) in cases {
        let e = dynamo_body(
            "m",
            &[1],
            &map(sampling.clone()),
            &RequestOptions::default(),
        )
        .err();
        let e = e.unwrap_or_else(|| panic!("{sampling} was accepted"));
        assert_eq!(e.kind(), ErrorKind::Message);
        assert_contains(e.text(), &[want]);
    }
    let e = dynamo_body("m", &[1], &Map::new(), &opts(None, None, Some(i64::MAX))).err();
    assert_contains(
        e.map(|e| e.text().to_owned())
            .as_deref()
            .unwrap_or_default(),
        &["does not fit"],
    );
    // vLLM takes any integer priority, and rejects the same wrong types
    assert!(vllm_generate_body("m", &[1], &Map::new(), &opts(None, None, Some(i64::MAX))).is_ok());
    for sampling in [
        json!({"priority": "x"}),
        json!({"cache_salt": 1}),
        json!({"extra_body": 1}),
    ] {
        let e = vllm_generate_body("m", &[1], &map(sampling), &RequestOptions::default()).err();
        assert_eq!(e.map(|e| e.kind()), Some(ErrorKind::Message));
    }
}

#[test]
fn bodies_are_valid_json_for_awkward_keys_and_values() {
    let mut rng = Rng(42);
    let keys = [
        "a\"b", "c\\d", "e\nf", "\u{0}", "ü", "😀", "", "stop", "x\u{1f}",
    ];
    for _ in 0..200 {
        let mut sampling = Map::new();
        for _ in 0..rng.below(6) {
            let k = keys[rng.below(keys.len())].to_owned();
            let v = match rng.below(5) {
                0 => json!(k.clone()),
                1 => json!(rng.next() as f64 / 7.0),
                2 => json!([1, {"k": k.clone()}]),
                3 => Value::Null,
                _ => json!({"nested": {"k": [k.clone()]}}),
            };
            sampling.insert(k, v);
        }
        let ids: Vec<u32> = (0..rng.below(50)).map(|_| rng.next() as u32).collect();
        let model = keys[rng.below(keys.len())];
        let messages = raw(json!([{"role": "user", "content": model}]));
        let salt = Some(keys[rng.below(keys.len())]);
        let o = opts(
            Some(&ids[..ids.len().min(3)]),
            salt,
            Some(rng.below(10) as i64),
        );
        for body in [
            vllm_generate_body(model, &ids, &sampling, &o),
            chat_tokens_body(model, &messages, None, &ids, &sampling, &o),
            dynamo_body(model, &ids, &sampling, &o),
            chat_body(model, &messages, None, &sampling, ChatTarget::Vllm, &o),
            chat_body(model, &messages, None, &sampling, ChatTarget::Dynamo, &o),
            chat_body(model, &messages, None, &sampling, ChatTarget::OpenAi, &o),
        ] {
            let body = body.unwrap_or_else(|e| panic!("{e}"));
            let v = json_of(&body);
            assert_eq!(v["model"], json!(model));
            // no duplicate keys: serde_json's Map keeps the last, so re-serializing loses bytes
            let reparsed: Map<String, Value> = serde_json::from_slice(&body).unwrap_or_default();
            assert_eq!(reparsed.len(), v.as_object().map_or(0, Map::len));
            let text = String::from_utf8_lossy(&body);
            for key in ["\"model\":", "\"logprobs\":", "\"stream\":"] {
                assert!(text.matches(key).count() <= 2, "{key} repeated in {text}");
            }
        }
    }
}

/// A response recorded from a running upstream vLLM 0.32.0 (CPU build, SmolLM2-135M-Instruct,
/// `logprobs: 2`, no `return_token_ids`): tokens-mode entries, no echoed prompt.
#[test]
fn vllm_0_32_tokens_mode_recorded() {
    let body = fixture("vllm_0_32_generate_tokens_mode.json");
    let p = ok(&body, Wire::VllmGenerate);
    let raw: Value = serde_json::from_slice(&body).unwrap();
    let choice = &raw["choices"][0];
    let ids: Vec<u32> = serde_json::from_value(choice["token_ids"].clone()).unwrap();
    assert_eq!(p.completion_ids, ids);
    assert_eq!(p.prompt_ids, None);
    let entries = choice["logprobs"]["content"].as_array().unwrap();
    let want: Vec<f64> = entries
        .iter()
        .map(|e| e["logprob"].as_f64().unwrap())
        .collect();
    assert_eq!(logprobs(&p), want);
    let top = p.completion_top_logprobs.clone().unwrap();
    for (i, e) in entries.iter().enumerate() {
        let alts: Vec<(u32, f64)> = e["top_logprobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["token_id"].as_u64().unwrap() as u32,
                    a["logprob"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(top.at(i).collect::<Vec<_>>(), alts);
    }
}

#[test]
fn generate_routed_experts_in_both_forms() {
    // prime-rl: an object with the data and its shape; upstream vLLM 0.32: a base64 .npy string
    for experts in [
        json!({"data": "AAEC", "shape": [3, 1, 1], "dtype": "uint8"}),
        json!("k05VTVBZAQB2AHsnZGVzY3InOiAnfHUxJywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZX0="),
    ] {
        let body = json!({"choices": [{"token_ids": [7], "routed_experts": experts,
                                       "logprobs": {"content": [{"token_id": 7, "logprob": -0.5}]}}]})
        .to_string()
        .into_bytes();
        let p = ok(&body, Wire::VllmGenerate);
        let raw = p
            .routed_experts
            .as_ref()
            .map(|r| r.get())
            .unwrap_or_default();
        assert_eq!(json_of(raw.as_bytes()), experts);
        let span = p.routed_experts_span.clone().unwrap_or_default();
        assert_eq!(&body[span], raw.as_bytes());
    }
}

// ---------------------------------------------------------------------------------------------
// SGLang /generate (docs/wire.md S). The fixtures are the shape recorded from SGLang 0.5.23 (issue 14);
// the entries the record elides ("...") are filled with values of the same form.
// ---------------------------------------------------------------------------------------------

fn parse_err(body: impl AsRef<[u8]>, wire: Wire) -> fasttito::Error {
    match parse(body, wire) {
        Ok(p) => panic!("parsed, expected an error: {p:?}"),
        Err(e) => e,
    }
}

#[test]
fn s_sglang_generate_recorded_shape() {
    let p =
        parse(fixture("sglang_0_5_23_stop.json"), Wire::Sglang).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.completion_ids, [67, 93, 308, 60, 4153, 2]);
    assert_eq!(p.completion_ids_from, "output_ids");
    let lp = p.completion_logprobs.clone().unwrap_or_default();
    assert_eq!(lp.len(), 6);
    assert_eq!(lp[0], -3.018204927444458);
    assert_eq!(lp[5], -1.2000340223312378);
    assert_eq!(p.finish_reason.as_deref(), Some("stop"));
    assert_eq!(p.stop_reason, Some(StopReason::TokenId(2)));
    assert_eq!(p.cached_tokens, Some(0));
    assert_eq!(
        p.content, None,
        "the text is never used: content is decoded locally"
    );
    let top = p.completion_top_logprobs.unwrap_or_default();
    assert_eq!(top.tokens(), 6);
    assert_eq!(
        top.at(0).collect::<Vec<_>>(),
        [(67, -3.0182), (49, -3.0963)]
    );
    let usage = p.usage.unwrap_or_default();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (Some(36), Some(6), Some(42))
    );
    assert_eq!(
        p.response_id.as_deref(),
        Some("6f75475f0b4c48febaf1d97b454417af")
    );

    let p = parse(
        fixture("sglang_0_5_23_length_skip_tokenizer_init.json"),
        Wire::Sglang,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.finish_reason.as_deref(), Some("length"));
    assert_eq!(p.stop_reason, None);
    assert_eq!(p.cached_tokens, Some(35));
    assert!(p.completion_top_logprobs.is_none());
}

#[test]
fn s_sglang_abort_is_an_abort_error_with_the_message() {
    let e = parse_err(fixture("sglang_0_5_23_abort.json"), Wire::Sglang);
    assert_eq!(e.kind(), ErrorKind::Abort);
    assert!(e.text().contains("paused for a weight update"), "{e}");
    assert!(e.text().contains("status_code 503"), "{e}");
}

#[test]
fn s_sglang_rejections() {
    let cases = [
        (r#"[{"output_ids":[1],"meta_info":{}}]"#, "JSON array"),
        (
            r#"{"meta_info":{"id":"x"}}"#,
            "expected the completion's token ids at `output_ids`",
        ),
        (
            r#"{"error":{"message":"input_ids cannot be empty."}}"#,
            "input_ids cannot be empty.",
        ),
        (
            r#"{"output_ids":[1,2],"meta_info":{"output_token_logprobs":[[-1.0,1,null]]}}"#,
            "found 1 entries",
        ),
        (
            r#"{"output_ids":[1,2],"meta_info":{"output_token_logprobs":[[-1.0,1,null],[-1.0,7,null]]}}"#,
            "output_token_logprobs[1][1]` to be 2",
        ),
        (
            r#"{"output_ids":[1],"meta_info":{"output_token_logprobs":[[-1.0]]}}"#,
            "without a token id",
        ),
        (
            r#"{"output_ids":[1],"meta_info":{"output_token_logprobs":[[-1.0,-1,null]]}}"#,
            "negative token id",
        ),
        (
            r#"{"output_ids":[1],"meta_info":{"output_token_logprobs":[[1e999,1,null]]}}"#,
            "output_token_logprobs",
        ),
        (
            r#"{"output_ids":[1,2],"meta_info":{"output_top_logprobs":[[[-1.0,1,null]]]}}"#,
            "one row of top logprobs per completion token id",
        ),
        (
            r#"{"output_ids":[1],"meta_info":{"finish_reason":{"matched":2}}}"#,
            "meta_info.finish_reason",
        ),
        (
            r#"{"output_ids":[1],"meta_info":{"output_ids":[1]"#,
            "truncated",
        ),
    ];
    for (body, needle) in cases {
        let e = parse_err(body, Wire::Sglang);
        assert_eq!(e.kind(), ErrorKind::Parse, "{body}: {e}");
        assert!(e.text().contains(needle), "{body}: {e}");
    }
}

#[test]
fn s_sglang_routed_experts_passed_through_and_cached_tokens_elsewhere() {
    let body = br#"{"output_ids":[5,2],"meta_info":{"finish_reason":{"type":"stop","matched":"</s>"},"routed_experts":"AAECAw=="}}"#;
    let p = parse(&body[..], Wire::Sglang).unwrap_or_else(|e| panic!("{e}"));
    let raw = p
        .routed_experts
        .as_ref()
        .map(|r| r.get())
        .unwrap_or_default();
    assert_eq!(raw, r#""AAECAw==""#);
    let span = p.routed_experts_span.clone().unwrap_or_default();
    assert_eq!(&body[span], raw.as_bytes());
    assert_eq!(p.stop_reason, Some(StopReason::Text("</s>".into())));
    assert!(p.completion_logprobs.is_none());
    // vLLM / Dynamo report prefix-cache hits in usage.prompt_tokens_details
    let chat = chat_with(json!({"message": {"role": "assistant", "content": "x"},
        "finish_reason": "stop", "token_ids": [1]}));
    let mut v = json_of(&chat);
    v["usage"] = json!({"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 8}});
    let p = parse(v.to_string().into_bytes(), Wire::VllmChat).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.cached_tokens, Some(8));
    let p = parse(chat, Wire::VllmChat).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.cached_tokens, None);
}

// ---------------------------------------------------------------------------------------------
// Wire::Chat: any OpenAI-compatible chat completion
// ---------------------------------------------------------------------------------------------

#[test]
fn chat_wire_reads_vllm_answers_like_the_vllm_parser() {
    for name in [
        "wire_a3_vllm_chat.json",
        "engine_vllm_chat_tool_call.json",
        "engine_vllm_chat_tokens.json",
        "engine_vllm_chat_text.json",
    ] {
        let body = fixture(name);
        let (chat, vllm) = (ok(&body, Wire::Chat), ok(&body, Wire::VllmChat));
        assert_eq!(chat.completion_ids, vllm.completion_ids, "{name}");
        assert_eq!(chat.prompt_ids, vllm.prompt_ids, "{name}");
        assert_eq!(
            chat.completion_logprobs
                .map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()),
            vllm.completion_logprobs
                .map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()),
            "{name}"
        );
        assert_eq!(chat.content, vllm.content, "{name}");
        assert_eq!(chat.reasoning_content, vllm.reasoning_content, "{name}");
        assert_eq!(chat.tool_calls, vllm.tool_calls, "{name}");
        assert_eq!(chat.finish_reason, vllm.finish_reason, "{name}");
        assert_eq!(chat.stop_reason, vllm.stop_reason, "{name}");
        assert_eq!(chat.usage, vllm.usage, "{name}");
        assert_eq!(chat.response_id, vllm.response_id, "{name}");
    }
}

#[test]
fn chat_wire_takes_a_strict_openai_answer_and_keeps_ids_typed() {
    let p = ok(
        json!({"id": "chatcmpl-9", "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "hello", "tool_calls": null},
            "logprobs": {"content": [{"token": "hello", "logprob": -0.25, "bytes": [104],
            "top_logprobs": []}]}}], "usage": {"prompt_tokens": 3, "completion_tokens": 1,
            "total_tokens": 4}})
        .to_string(),
        Wire::Chat,
    );
    // the logprobs of a server that sends no ids are kept, one per generated token
    assert!(p.completion_ids.is_empty() && p.completion_ids_from == IDS_NOT_SENT);
    assert_eq!(p.completion_logprobs, Some(vec![-0.25]));
    assert_eq!(p.content.as_deref(), Some("hello"));
    assert_eq!(p.usage.and_then(|u| u.prompt_tokens), Some(3));
    let text = err(chat_with(json!({"token_ids": [1, -2]})), Wire::Chat);
    assert_contains(
        &text,
        &[
            "OpenAI chat completion",
            "choices[0].token_ids[1]",
            "docs/wire.md",
        ],
    );
    let text = err(
        chat_with(
            json!({"token_ids": [1], "logprobs": {"content": [{"logprob": -1}, {"logprob": -2}]}}),
        ),
        Wire::Chat,
    );
    assert_contains(&text, &["found 2 logprobs", "for 1 ids"]);
}

#[test]
fn chat_wire_reads_real_vllm_answers_to_a_plain_openai_request() {
    // vLLM 0.32 asked without return_token_ids: token strings, no ids, `"token_ids": null`
    let body = fixture("vllm_0_32_chat_openai_logprobs.json");
    let p = ok(&body, Wire::Chat);
    let doc = json_of(&body);
    let entries = doc["choices"][0]["logprobs"]["content"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(entries > 0);
    assert_eq!(p.completion_logprobs.as_ref().map(Vec::len), Some(entries));
    assert!(p.completion_ids.is_empty() && p.completion_ids_from == IDS_NOT_SENT);
    assert_eq!(p.finish_reason.as_deref(), Some("length"));
    // the usage object is kept whole: vLLM's `prompt_tokens_details: null` included
    assert_eq!(
        p.usage_as_sent
            .as_ref()
            .map(|raw| json_of(raw.get().as_bytes())),
        Some(doc["usage"].clone())
    );
    let body = fixture("vllm_0_32_chat_openai_tool_call.json");
    let p = ok(&body, Wire::Chat);
    let doc = json_of(&body);
    assert_eq!(p.tool_calls.len(), 1);
    assert_eq!(p.tool_calls[0].name, "get_weather");
    assert_eq!(p.tool_calls_as_sent.len(), 1);
    assert_eq!(
        json_of(p.tool_calls_as_sent[0].get().as_bytes()),
        doc["choices"][0]["message"]["tool_calls"][0]
    );
    assert_eq!(p.finish_reason.as_deref(), Some("tool_calls"));
}
