//! Plain chat completions: `POST /v1/chat/completions` with messages, the body of turn 1 and of
//! every turn that falls back to messages (MITO), for vLLM, Dynamo or any OpenAI-compatible
//! server ([`ChatTarget`]); and the answer of any OpenAI-compatible server ([`Wire::Chat`](super::Wire::Chat),
//! docs/wire.md A.4).
//!
//! The [`Wire::Chat`](super::Wire::Chat) parser reads what a strict OpenAI server may send, and the ids and logprobs
//! only where the server sent them:
//! * `choices[0]` must be an object; its `message` an object or `null`; `content`,
//!   `reasoning_content` (else `reasoning`) and `finish_reason` strings or `null`;
//! * `choices[0].token_ids` is optional; when present it must be a list of `u32` ids, and the
//!   logprobs must then be 1:1 with it;
//! * `choices[0].logprobs.content` (read when `logprobs` is an object and `content` a list) gives
//!   one logprob per entry: the entry's numeric `logprob`, NaN (counted in
//!   [`Parsed::null_logprobs`]) for an entry that is not an object with a number there. Without
//!   `token_ids` the logprobs belong to no ids and are not reported (logprobs are always 1:1
//!   with [`Parsed::completion_ids`]);
//! * `prompt_token_ids` is read when it is a list (of `u32` ids), ignored otherwise;
//! * `tool_calls` entries that are objects are read as tool calls (an incomplete one is an
//!   error, as on the other wires); other entries, or a `tool_calls` that is not a list, are
//!   dropped; `finish_reason` `"stop"` with tool calls becomes `"tool_calls"`;
//! * `stop_reason` is kept as sent, `usage` when it has the OpenAI shape, `id` when a string.

use serde::Deserialize;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::body::{
    cache_salt, caller_args, estimate, get, max_tokens, priority, RequestOptions, Writer,
};
use super::nvext::{dynamo, DynamoPrompt};
use super::parse::{
    set_logprobs, stop_reason, Choices, Cx, Ids, Logprobs, Parsed, ParsedToolCall, Usage,
};
use super::scan::{Scanner, S};
use super::vllm_chat::{tool_call, ToolCall};
use crate::error::Result;

const TOKEN_IDS: &str = "choices[0].token_ids";
const LOGPROBS: &str = "choices[0].logprobs.content";

/// A plain chat completion: every field the reference Python parser took in any shape is raw.
#[derive(Deserialize)]
struct PlainBody<'a> {
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    choices: Choices<PlainChoice<'a>>,
    #[serde(default, borrow)]
    prompt_token_ids: Option<&'a RawValue>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
    #[serde(default, borrow)]
    message: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct PlainChoice<'a> {
    #[serde(default)]
    message: Option<PlainMessage<'a>>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default, borrow)]
    stop_reason: Option<&'a RawValue>,
    #[serde(default)]
    token_ids: Option<Ids>,
    #[serde(default, borrow)]
    logprobs: Option<&'a RawValue>,
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
    tool_calls: Option<&'a RawValue>,
}

/// Parses a plain OpenAI-compatible chat completion ([`Wire::Chat`](super::Wire::Chat)).
pub(crate) fn parse(cx: Cx<'_>) -> Result<Parsed> {
    cx.check_depth()?;
    let body: PlainBody<'_> = cx.from_body()?;
    let choice = match body.choices {
        Choices::First(choice) => choice,
        Choices::Empty => {
            return Err(cx.no_choice("an empty `choices` list", body.error.or(body.message)))
        }
        Choices::Absent => return Err(cx.no_choice("no `choices`", body.error.or(body.message))),
    };
    let with_ids = choice.token_ids.is_some();
    let mut out = Parsed::new(
        choice.token_ids.map_or_else(Vec::new, |Ids(ids)| ids),
        TOKEN_IDS,
    );
    if let Some(lp) = choice
        .logprobs
        .map(|raw| lenient_logprobs(cx, raw))
        .transpose()?
    {
        match lp {
            Some(lp) if with_ids => {
                if lp.values.len() != out.completion_ids.len() {
                    return Err(cx.error(format_args!(
                        "expected one logprob per completion token id, found {} logprobs at \
                         `{LOGPROBS}` for {} ids at `{TOKEN_IDS}`. The server's ids and \
                         logprobs disagree, so neither can be trusted for training \
                         (docs/wire.md D3); report it to the server's maintainers",
                        lp.values.len(),
                        out.completion_ids.len()
                    )));
                }
                set_logprobs(&mut out, lp, LOGPROBS);
            }
            _ => {}
        }
    }
    if let Some(raw) = body.prompt_token_ids.filter(|r| r.get().starts_with('[')) {
        let Ids(ids) = serde_json::from_str(raw.get()).map_err(|e| {
            cx.error(format_args!(
                "expected `prompt_token_ids` to be a list of token ids (integers in \
                 0..=4294967295), found {} ({e}). {}",
                super::parse::clip(raw.get(), 200),
                cx.wire.advice()
            ))
        })?;
        out.prompt_ids = Some(ids);
    }
    if let Some(message) = choice.message {
        out.content = message.content;
        out.reasoning_content = message.reasoning_content.or(message.reasoning);
        let calls = message.tool_calls.filter(|r| r.get().starts_with('['));
        let calls: Vec<&RawValue> = match calls {
            Some(raw) => serde_json::from_str(raw.get()).map_err(|e| {
                cx.error(format_args!(
                    "`choices[0].message.tool_calls` could not be read ({e}). {}",
                    cx.wire.advice()
                ))
            })?,
            None => Vec::new(),
        };
        for (i, call) in calls.into_iter().enumerate() {
            if !call.get().starts_with('{') {
                continue;
            }
            let call: ToolCall<'_> = serde_json::from_str(call.get()).map_err(|e| {
                cx.error(format_args!(
                    "expected `choices[0].message.tool_calls[{i}]` to be a tool call {{\"id\", \
                     \"function\": {{\"name\", \"arguments\"}}}}, found {} ({e}). The \
                     server's tool parser produced an incomplete call",
                    super::parse::clip(call.get(), 200)
                ))
            })?;
            let call: ParsedToolCall = tool_call(cx, i, call)?;
            out.tool_calls.push(call);
        }
    }
    out.finish_reason = match choice.finish_reason {
        Some(f) if f == "stop" && !out.tool_calls.is_empty() => Some("tool_calls".to_owned()),
        other => other,
    };
    out.stop_reason = stop_reason(choice.stop_reason);
    out.usage = body
        .usage
        .and_then(|raw| serde_json::from_str::<Option<Usage>>(raw.get()).ok())
        .flatten();
    out.response_id = body
        .id
        .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok());
    Ok(out)
}

/// `choices[0].logprobs` read as the OpenAI shape allows: `Some` when it is an object whose
/// `content` is a list, with one value per entry (NaN for an entry without a numeric `logprob`).
fn lenient_logprobs(cx: Cx<'_>, raw: &RawValue) -> Result<Option<Logprobs>> {
    let read = |s: &mut Scanner<'_>| -> S<Option<Logprobs>> {
        if s.peek()? != b'{' {
            s.skip()?;
            return Ok(None);
        }
        let mut content = None;
        s.object(|s, key| {
            if key != b"content" {
                return s.skip();
            }
            content = None;
            if s.peek()? != b'[' {
                return s.skip();
            }
            let mut lp = Logprobs::default();
            s.array(|s, _| {
                let mut value = None;
                if s.peek()? == b'{' {
                    s.object(|s, key| {
                        if key != b"logprob" {
                            return s.skip();
                        }
                        value = None;
                        match s.peek()? {
                            b'-' | b'0'..=b'9' => value = Some(s.f64()?),
                            _ => s.skip()?,
                        }
                        Ok(())
                    })?;
                } else {
                    s.skip()?;
                }
                lp.push(value);
                Ok(())
            })?;
            content = Some(lp);
            Ok(())
        })?;
        Ok(content)
    };
    // the value was validated by serde; what the scanner declines (an escaped key, a number
    // beyond f64) is refused with its path
    Scanner::new(raw.get().as_bytes(), cx.limit)
        .document(read)
        .map_err(|_| {
            cx.error(format_args!(
                "`choices[0].logprobs` could not be read as {{\"content\": [{{\"logprob\": \
                 <number>}}, ...]}}: found {}. {}",
                super::parse::clip(raw.get(), 200),
                cx.wire.advice()
            ))
        })
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
    use crate::wire::{parse_response, ParseOptions, Parsed, StopReason, Wire};
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

    #[test]
    fn a_strict_openai_answer_has_no_ids() {
        let p = ok(
            r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,
            "message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#,
        );
        assert!(p.completion_ids.is_empty());
        assert!(p.completion_logprobs.is_none() && p.prompt_ids.is_none());
        assert_eq!(p.content.as_deref(), Some("hi"));
        assert_eq!(p.finish_reason.as_deref(), Some("stop"));
        assert_eq!(p.response_id.as_deref(), Some("chatcmpl-1"));
        assert_eq!(p.usage.and_then(|u| u.total_tokens), Some(6));
        assert!(p.stop_reason.is_none() && p.routed_experts.is_none());
    }

    #[test]
    fn ids_and_logprobs_where_sent_with_nan_for_non_numbers() {
        let p = ok(
            r#"{"choices":[{"message":{"content":"ab"},"token_ids":[5,6,7,8,9],
            "logprobs":{"content":[{"logprob":-0.5},null,{"logprob":"x"},{"token":"t"},
            {"logprob":-9999.0,"logprob":-2}]}}],"prompt_token_ids":[1,2]}"#,
        );
        assert_eq!(p.completion_ids, vec![5, 6, 7, 8, 9]);
        assert_eq!(p.prompt_ids, Some(vec![1, 2]));
        let lp = p.completion_logprobs.unwrap_or_default();
        assert_eq!(lp.len(), 5);
        assert_eq!((lp[0], lp[4]), (-0.5, -2.0));
        assert!(lp[1].is_nan() && lp[2].is_nan() && lp[3].is_nan());
        assert_eq!(p.null_logprobs, 3);
        assert_eq!(
            p.completion_logprobs_from,
            Some("choices[0].logprobs.content")
        );
    }

    #[test]
    fn logprobs_without_ids_or_in_other_shapes_are_none() {
        for logprobs in [
            r#"{"content":[{"logprob":-1}]}"#,
            "null",
            "[1,2]",
            r#"{"content":null}"#,
            r#"{"content":{"logprob":-1}}"#,
        ] {
            let p = ok(&format!(
                r#"{{"choices":[{{"message":{{"content":"a"}},"logprobs":{logprobs}}}]}}"#
            ));
            assert!(p.completion_logprobs.is_none(), "{logprobs}");
        }
        let p = ok(r#"{"choices":[{"token_ids":[1],"logprobs":{"content":"x"}}]}"#);
        assert!(p.completion_logprobs.is_none());
    }

    #[test]
    fn ids_must_be_u32_and_1_to_1_with_logprobs() {
        for bad in ["[-1]", "[1.5]", "[\"1\"]", "[4294967296]", "5", "{}"] {
            let text = err(&format!(r#"{{"choices":[{{"token_ids":{bad}}}]}}"#));
            assert!(text.contains("choices[0].token_ids"), "{bad}: {text}");
        }
        let text =
            err(r#"{"choices":[{"token_ids":[1,2],"logprobs":{"content":[{"logprob":-1}]}}]}"#);
        assert!(
            text.contains("found 1 logprobs") && text.contains("for 2 ids"),
            "{text}"
        );
        let text = err(r#"{"choices":[{"token_ids":[1]}],"prompt_token_ids":[1,-2]}"#);
        assert!(text.contains("prompt_token_ids"), "{text}");
        // a prompt_token_ids that is not a list is not read
        let p = ok(r#"{"choices":[{"token_ids":[1]}],"prompt_token_ids":"x"}"#);
        assert!(p.prompt_ids.is_none());
    }

    #[test]
    fn tool_calls_keep_objects_and_promote_stop() {
        let p = ok(
            r#"{"choices":[{"finish_reason":"stop","message":{"content":null,
            "tool_calls":[{"id":"c1","type":"function","function":{"name":"f",
            "arguments":"{\"a\": 1}"}},"junk",7,{"id":"c2","function":{"name":"g",
            "arguments":{"b":2}}}]}}]}"#,
        );
        assert_eq!(p.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(p.tool_calls.len(), 2);
        assert_eq!(p.tool_calls[0].id.as_deref(), Some("c1"));
        assert_eq!(p.tool_calls[0].arguments, r#"{"a": 1}"#);
        assert_eq!(p.tool_calls[1].arguments, r#"{"b":2}"#);
        // "length" stays; a tool_calls that is not a list is dropped
        let p = ok(
            r#"{"choices":[{"finish_reason":"length","message":{"tool_calls":[{
            "function":{"name":"f","arguments":"{}"}}]}}]}"#,
        );
        assert_eq!(p.finish_reason.as_deref(), Some("length"));
        let p = ok(r#"{"choices":[{"finish_reason":"stop","message":{"tool_calls":{"a":1}}}]}"#);
        assert!(p.tool_calls.is_empty());
        assert_eq!(p.finish_reason.as_deref(), Some("stop"));
        let text =
            err(r#"{"choices":[{"message":{"tool_calls":[{"function":{"arguments":"{}"}}]}}]}"#);
        assert!(text.contains("tool_calls[0].function.name"), "{text}");
    }

    #[test]
    fn reasoning_stop_reason_usage_and_id() {
        let p = ok(
            r#"{"id":7,"usage":{"prompt_tokens":"x"},"choices":[{"message":{
            "reasoning":"r2"},"stop_reason":151645}]}"#,
        );
        assert_eq!(p.reasoning_content.as_deref(), Some("r2"));
        assert_eq!(p.stop_reason, Some(StopReason::TokenId(151_645)));
        assert!(p.response_id.is_none() && p.usage.is_none());
        let p = ok(
            r#"{"choices":[{"message":{"reasoning_content":"r1","reasoning":"r2"},
            "stop_reason":"</s>"}]}"#,
        );
        assert_eq!(p.reasoning_content.as_deref(), Some("r1"));
        assert_eq!(p.stop_reason, Some(StopReason::Text("</s>".into())));
        let p = ok(r#"{"choices":[{"message":null,"stop_reason":[1]}]}"#);
        assert!(p.content.is_none());
        assert!(matches!(p.stop_reason, Some(StopReason::Other(_))));
    }

    #[test]
    fn bodies_without_a_first_choice_are_errors() {
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
        for body in [r#"{"choices":[5]}"#, r#"{"choices":{}}"#, "[]x", "not json"] {
            err(body);
        }
        let text = err(r#"{"choices":[{"message":{"content":5}}]}"#);
        assert!(text.contains("choices[0].message.content"), "{text}");
    }
}
