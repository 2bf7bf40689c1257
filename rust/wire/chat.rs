//! Plain chat completions: `POST /v1/chat/completions` with messages, the body of turn 1 and of
//! every turn that falls back to messages (MITO), for vLLM, Dynamo or any OpenAI-compatible
//! server ([`ChatTarget`]); and the answer of any OpenAI-compatible server
//! ([`Wire::Chat`](super::Wire::Chat), docs/wire.md A.4).
//!
//! The [`Wire::Chat`](super::Wire::Chat) parser reads the OpenAI chat completion shape as the
//! other chat wires do (the same types and checks as [`Wire::VllmChat`](super::Wire::VllmChat)),
//! except that ids are optional and what only an OpenAI-compatible server sends is kept whole:
//! * `choices[0]` must be an object; its `message` an object or `null`; `content`,
//!   `reasoning_content` (else `reasoning`) and `finish_reason` strings or `null`;
//! * `choices[0].token_ids` and the top-level `prompt_token_ids` are optional; when present
//!   (not `null`) they must be lists of `u32` ids, and the logprobs must then be 1:1 with the
//!   completion ids;
//! * `choices[0].logprobs` is `null` or `{"content": [...] | null, ...}` whose entries are `null`
//!   or objects with a numeric or `null` `logprob` (`null` kept as NaN and counted in
//!   [`Parsed::null_logprobs`]). Without `token_ids` (a plain OpenAI server) the logprobs are
//!   reported as sent, one per generated token, with no ids:
//!   [`Parsed::completion_ids_from`] is [`IDS_NOT_SENT`];
//! * `tool_calls` is `null` or a list of tool call objects, each with `function.name` and
//!   `function.arguments` (an incomplete one is an error, as on the other wires); every object is
//!   also kept as sent ([`Parsed::tool_calls_as_sent`]); `finish_reason` `"stop"` with tool calls
//!   becomes `"tool_calls"`;
//! * `stop_reason` is a stop token id, a stop string or `null`; `id` a string or `null`;
//!   `usage` `null` or an object whose counters are non-negative integers or `null`, kept
//!   whole as sent ([`Parsed::usage_as_sent`]); `choices[0].routed_experts` is passed through
//!   as on vLLM.
//!
//! Anything else is a [`ErrorKind::Parse`](crate::ErrorKind::Parse) error naming the path, what
//! was expected and what was found: nothing the server sent is dropped or changed silently.

use serde::Deserialize;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::body::{
    cache_salt, caller_args, estimate, get, max_tokens, priority, RequestOptions, Writer,
};
use super::nvext::{dynamo, DynamoPrompt};
use super::parse::{
    check_aligned, clip, routed, set_logprobs, stop_reason, Choices, Cx, Ids, LogprobsObject, Obj,
    Parsed, StopReason, Usage, IDS_NOT_SENT,
};
use super::vllm_chat::{tool_call, ToolCall};
use crate::error::Result;

const TOKEN_IDS: &str = "choices[0].token_ids";
const LOGPROBS: &str = "choices[0].logprobs.content";

/// A plain chat completion.
#[derive(Deserialize)]
struct PlainBody<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default, borrow)]
    choices: Choices<Obj<PlainChoice<'a>>>,
    #[serde(default)]
    prompt_token_ids: Option<Ids>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
    #[serde(default, borrow)]
    message: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct PlainChoice<'a> {
    #[serde(default, borrow)]
    message: Option<Obj<PlainMessage<'a>>>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default, borrow)]
    stop_reason: Option<&'a RawValue>,
    #[serde(default)]
    token_ids: Option<Ids>,
    #[serde(default)]
    logprobs: Option<LogprobsObject<false>>,
    #[serde(default, borrow)]
    routed_experts: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct PlainMessage<'a> {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<&'a RawValue>>,
}

/// Parses a plain OpenAI-compatible chat completion ([`Wire::Chat`](super::Wire::Chat)).
pub(crate) fn parse(cx: Cx<'_>) -> Result<Parsed> {
    cx.check_depth()?;
    let body: PlainBody<'_> = cx.from_body()?;
    let choice = match body.choices {
        Choices::First(Obj(choice)) => choice,
        Choices::Empty => {
            return Err(cx.no_choice("an empty `choices` list", body.error.or(body.message)))
        }
        Choices::Absent => return Err(cx.no_choice("no `choices`", body.error.or(body.message))),
    };
    let mut out = match choice.token_ids {
        Some(Ids(ids)) => Parsed::new(ids, TOKEN_IDS),
        None => Parsed::new(Vec::new(), IDS_NOT_SENT),
    };
    if let Some(mut lp) = choice.logprobs.and_then(|l| l.0).map(|c| c.0) {
        if out.completion_ids_from == TOKEN_IDS {
            check_aligned(cx, &out.completion_ids, TOKEN_IDS, &lp, LOGPROBS)?;
        }
        out.completion_top_logprobs = lp.take_top();
        set_logprobs(&mut out, lp, LOGPROBS);
    }
    out.prompt_ids = body.prompt_token_ids.map(|Ids(ids)| ids);
    if let Some(Obj(message)) = choice.message {
        out.content = message.content;
        out.reasoning_content = message.reasoning_content.or(message.reasoning);
        for (i, raw) in message
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let call: Obj<ToolCall<'_>> = serde_json::from_str(raw.get()).map_err(|e| {
                cx.error(format_args!(
                    "expected `choices[0].message.tool_calls[{i}]` to be a tool call {{\"id\", \
                     \"type\": \"function\", \"function\": {{\"name\", \"arguments\"}}}}, found \
                     {} ({e}). The server's tool parser produced a malformed call",
                    clip(raw.get(), 200)
                ))
            })?;
            out.tool_calls.push(tool_call(cx, i, call.0)?);
            out.tool_calls_as_sent.push(raw.to_owned());
        }
    }
    out.finish_reason = match choice.finish_reason {
        Some(f) if f == "stop" && !out.tool_calls.is_empty() => Some("tool_calls".to_owned()),
        other => other,
    };
    out.stop_reason = stop_reason(choice.stop_reason);
    if let Some(StopReason::Other(raw)) = &out.stop_reason {
        return Err(cx.error(format_args!(
            "expected `choices[0].stop_reason` to be a stop token id (an integer in \
             0..=4294967295), a stop string or null, found {}. {}",
            clip(raw.get(), 200),
            cx.wire.advice()
        )));
    }
    if let Some(raw) = body.usage.filter(|r| r.get() != "null") {
        let usage: Usage = serde_json::from_str(raw.get()).map_err(|e| {
            cx.error(format_args!(
                "expected `usage` to be null or an object {{\"prompt_tokens\", \
                 \"completion_tokens\", \"total_tokens\", ...}} whose counters are non-negative \
                 integers or null, found {} ({e}). {}",
                clip(raw.get(), 200),
                cx.wire.advice()
            ))
        })?;
        out.usage = Some(usage);
        out.usage_as_sent = Some(raw.to_owned());
    }
    out.response_id = body.id;
    if let Some((raw, span)) = routed(cx, choice.routed_experts) {
        out.routed_experts = Some(raw);
        out.routed_experts_span = Some(span);
    }
    Ok(out)
}

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

#[cfg(test)]
mod tests {
    use crate::wire::{parse_response, ParseOptions, Parsed, StopReason, Wire, IDS_NOT_SENT};
    use crate::ErrorKind;

    fn parse(body: &str) -> crate::Result<Parsed> {
        parse_response(body.as_bytes(), Wire::Chat, &ParseOptions::default())
    }

    fn ok(body: &str) -> Parsed {
        parse(body).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(body: &str) -> String {
        match parse(body) {
            Ok(p) => panic!("expected an error, parsed {p:?}"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Parse, "{e}");
                e.text().to_owned()
            }
        }
    }

    /// `choices[0]` with `choice` spliced in.
    fn with_choice(choice: &str) -> String {
        format!(r#"{{"id":"c","choices":[{{{choice}}}]}}"#)
    }

    #[test]
    fn a_strict_openai_answer_has_no_ids() {
        let p = ok(
            r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,
            "message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#,
        );
        assert!(p.completion_ids.is_empty());
        assert_eq!(p.completion_ids_from, IDS_NOT_SENT);
        assert!(p.completion_logprobs.is_none() && p.prompt_ids.is_none());
        assert_eq!(p.content.as_deref(), Some("hi"));
        assert_eq!(p.finish_reason.as_deref(), Some("stop"));
        assert_eq!(p.response_id.as_deref(), Some("chatcmpl-1"));
        assert_eq!(p.usage.and_then(|u| u.total_tokens), Some(6));
        assert!(p.stop_reason.is_none() && p.routed_experts.is_none());
    }

    #[test]
    fn ids_and_logprobs_where_sent_with_nan_for_null() {
        let p = ok(
            r#"{"choices":[{"message":{"content":"ab"},"token_ids":[5,6,7,8],
            "logprobs":{"content":[{"logprob":-0.5},null,{"token":"t","logprob":null},
            {"logprob":-9999.0,"logprob":-2}]}}],"prompt_token_ids":[1,2]}"#,
        );
        assert_eq!(p.completion_ids, vec![5, 6, 7, 8]);
        assert_eq!(p.completion_ids_from, "choices[0].token_ids");
        assert_eq!(p.prompt_ids, Some(vec![1, 2]));
        let lp = p.completion_logprobs.unwrap_or_default();
        assert_eq!(lp.len(), 4);
        assert_eq!((lp[0], lp[3]), (-0.5, -2.0));
        assert!(lp[1].is_nan() && lp[2].is_nan());
        assert_eq!(p.null_logprobs, 2);
        assert_eq!(
            p.completion_logprobs_from,
            Some("choices[0].logprobs.content")
        );
    }

    #[test]
    fn logprobs_without_ids_are_reported_one_per_token() {
        // a plain OpenAI server (or vLLM without return_token_ids): token strings, no ids
        let p = ok(&with_choice(
            r#""message":{"content":"ab"},"token_ids":null,"logprobs":{"content":[
            {"token":"a","logprob":-0.25,"bytes":[97],"top_logprobs":[{"token":"a",
            "logprob":-0.25}]},{"token":"b","logprob":null,"bytes":[98],"top_logprobs":[]}]}"#,
        ));
        assert!(p.completion_ids.is_empty());
        assert_eq!(p.completion_ids_from, IDS_NOT_SENT);
        let lp = p.completion_logprobs.unwrap_or_default();
        assert_eq!(lp.len(), 2);
        assert!(lp[0] == -0.25 && lp[1].is_nan());
        assert_eq!(p.null_logprobs, 1);
        // alternatives named by text only are not a table of ids
        assert!(p.completion_top_logprobs.is_none());
        for absent in ["null", r#"{"content":null}"#, "{}"] {
            let p = ok(&with_choice(&format!(r#""logprobs":{absent}"#)));
            assert!(p.completion_logprobs.is_none(), "{absent}");
        }
    }

    #[test]
    fn malformed_logprobs_are_errors_not_nan() {
        for (logprobs, found) in [
            ("[1,2]", "logprobs"),
            (r#""x""#, "logprobs"),
            (r#"{"content":{"logprob":-1}}"#, "logprobs.content"),
            (r#"{"content":"x"}"#, "logprobs.content"),
            (r#"{"content":[5]}"#, "logprobs.content[0]"),
            (
                r#"{"content":[{"logprob":"x"}]}"#,
                "logprobs.content[0].logprob",
            ),
            (
                r#"{"content":[{"logprob":true}]}"#,
                "logprobs.content[0].logprob",
            ),
            (r#"{"content":[{"token":"t"}]}"#, "logprobs.content[0]"),
        ] {
            let text = err(&with_choice(&format!(r#""logprobs":{logprobs}"#)));
            assert!(text.contains(found), "{logprobs}: {text}");
        }
        // not JSON: a NaN literal is refused, as on every wire
        err(&with_choice(r#""logprobs":{"content":[{"logprob":NaN}]}"#));
    }

    #[test]
    fn ids_must_be_u32_and_1_to_1_with_logprobs() {
        for bad in [
            "[-1]",
            "[1.5]",
            "[\"1\"]",
            "[4294967296]",
            "[true]",
            "5",
            "{}",
        ] {
            let text = err(&with_choice(&format!(r#""token_ids":{bad}"#)));
            assert!(text.contains("choices[0].token_ids"), "{bad}: {text}");
        }
        let text = err(&with_choice(
            r#""token_ids":[1,2],"logprobs":{"content":[{"logprob":-1}]}"#,
        ));
        assert!(
            text.contains("found 1 logprobs") && text.contains("for 2 ids"),
            "{text}"
        );
        for bad in ["[1,-2]", r#""x""#, "{}"] {
            let text = err(&format!(
                r#"{{"choices":[{{"token_ids":[1]}}],"prompt_token_ids":{bad}}}"#
            ));
            assert!(text.contains("prompt_token_ids"), "{bad}: {text}");
        }
        let p = ok(r#"{"choices":[{"token_ids":[1]}],"prompt_token_ids":null}"#);
        assert!(p.prompt_ids.is_none());
    }

    #[test]
    fn tool_calls_are_kept_as_sent_and_promote_stop() {
        let p = ok(&with_choice(
            r#""finish_reason":"stop","message":{"content":null,"tool_calls":[
            {"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\": 1}"},
            "extra_content":{"google":{"thought_signature":"sig"}}},
            {"index":1,"function":{"name":"g","arguments":{"b":2}}}]}"#,
        ));
        assert_eq!(p.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(p.tool_calls.len(), 2);
        assert_eq!(p.tool_calls[0].id.as_deref(), Some("c1"));
        assert_eq!(p.tool_calls[0].arguments, r#"{"a": 1}"#);
        assert_eq!(p.tool_calls[1].arguments, r#"{"b":2}"#);
        assert!(p.tool_calls[1].id.is_none());
        let sent: Vec<&str> = p.tool_calls_as_sent.iter().map(|r| r.get()).collect();
        assert_eq!(sent.len(), 2);
        assert!(sent[0].contains(r#""extra_content":{"google":{"thought_signature":"sig"}}"#));
        assert_eq!(
            sent[1],
            r#"{"index":1,"function":{"name":"g","arguments":{"b":2}}}"#
        );
        // "length" stays; null and [] are no tool calls
        let p = ok(&with_choice(
            r#""finish_reason":"length","message":{"tool_calls":[{
            "function":{"name":"f","arguments":"{}"}}]}"#,
        ));
        assert_eq!(p.finish_reason.as_deref(), Some("length"));
        for none in ["null", "[]"] {
            let p = ok(&with_choice(&format!(
                r#""finish_reason":"stop","message":{{"tool_calls":{none}}}"#
            )));
            assert!(p.tool_calls.is_empty() && p.tool_calls_as_sent.is_empty());
            assert_eq!(p.finish_reason.as_deref(), Some("stop"));
        }
    }

    #[test]
    fn malformed_tool_calls_are_errors_not_dropped() {
        for (calls, found) in [
            (r#"{"a":1}"#, "choices[0].message.tool_calls"),
            (r#""x""#, "choices[0].message.tool_calls"),
            (r#"["junk"]"#, "tool_calls[0]"),
            (r#"[null]"#, "tool_calls[0]"),
            (r#"[["c1",{"name":"f"}]]"#, "tool_calls[0]"),
            (
                r#"[{"function":{"arguments":"{}"}}]"#,
                "tool_calls[0].function.name",
            ),
            (r#"[{"function":["f","{}"]}]"#, "tool_calls[0]"),
            (
                r#"[{"function":{"name":"f"}}]"#,
                "tool_calls[0].function.arguments",
            ),
            (
                r#"[{"id":5,"function":{"name":"f","arguments":"{}"}}]"#,
                "tool_calls[0]",
            ),
        ] {
            let text = err(&with_choice(&format!(
                r#""message":{{"tool_calls":{calls}}}"#
            )));
            assert!(text.contains(found), "{calls}: {text}");
        }
    }

    #[test]
    fn reasoning_and_stop_reason() {
        let p = ok(&with_choice(
            r#""message":{"reasoning":"r2"},"stop_reason":151645"#,
        ));
        assert_eq!(p.reasoning_content.as_deref(), Some("r2"));
        assert_eq!(p.stop_reason, Some(StopReason::TokenId(151_645)));
        let p = ok(&with_choice(
            r#""message":{"reasoning_content":"r1","reasoning":"r2"},"stop_reason":"</s>""#,
        ));
        assert_eq!(p.reasoning_content.as_deref(), Some("r1"));
        assert_eq!(p.stop_reason, Some(StopReason::Text("</s>".into())));
        let p = ok(&with_choice(r#""message":null,"stop_reason":null"#));
        assert!(p.content.is_none() && p.stop_reason.is_none());
        for bad in ["[1]", "-1", "1.5", "true", "{}"] {
            let text = err(&with_choice(&format!(r#""stop_reason":{bad}"#)));
            assert!(text.contains("choices[0].stop_reason"), "{bad}: {text}");
        }
    }

    #[test]
    fn usage_is_kept_whole_and_id_must_be_a_string() {
        let usage = r#"{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":3,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":4}}"#;
        let p = ok(&format!(
            r#"{{"id":"x","usage":{usage},"choices":[{{"message":{{"content":"a"}}}}]}}"#
        ));
        assert_eq!(p.usage.and_then(|u| u.completion_tokens), Some(10));
        assert_eq!(p.cached_tokens, Some(3));
        assert_eq!(p.usage_as_sent.as_ref().map(|r| r.get()), Some(usage));
        let p = ok(r#"{"id":null,"usage":null,"choices":[{}]}"#);
        assert!(p.usage.is_none() && p.usage_as_sent.is_none() && p.response_id.is_none());
        for bad in [
            r#""x""#,
            "[1,2,3]",
            r#"{"prompt_tokens":"x"}"#,
            r#"{"total_tokens":-1}"#,
            r#"{"prompt_tokens_details":[1]}"#,
        ] {
            let text = err(&format!(r#"{{"usage":{bad},"choices":[{{}}]}}"#));
            assert!(text.contains("`usage`"), "{bad}: {text}");
        }
        for bad in ["7", "[]", "{}"] {
            let text = err(&format!(r#"{{"id":{bad},"choices":[{{}}]}}"#));
            assert!(text.contains("`id`"), "{bad}: {text}");
        }
    }

    #[test]
    fn bodies_without_a_first_choice_or_of_other_shapes_are_errors() {
        for (body, found) in [
            ("{}", "no `choices`"),
            (r#"{"choices":[]}"#, "empty `choices`"),
            (r#"{"choices":null}"#, "no `choices`"),
        ] {
            let text = err(body);
            assert!(text.contains(found) && text.contains("OpenAI"), "{text}");
        }
        let text = err(r#"{"error":{"message":"bad model"}}"#);
        assert!(text.contains("bad model"), "{text}");
        for body in [
            r#"{"choices":[5]}"#,
            r#"{"choices":{}}"#,
            r#"{"choices":[[]]}"#,
            "[]x",
            "not json",
        ] {
            err(body);
        }
        for (message, found) in [
            (r#"{"content":5}"#, "choices[0].message.content"),
            (r#"{"reasoning":[]}"#, "choices[0].message.reasoning"),
            (r#"["x"]"#, "choices[0].message"),
            (r#""""#, "choices[0].message"),
        ] {
            let text = err(&with_choice(&format!(r#""message":{message}"#)));
            assert!(text.contains(found), "{message}: {text}");
        }
        let text = err(&with_choice(r#""finish_reason":1"#));
        assert!(text.contains("choices[0].finish_reason"), "{text}");
    }
}
