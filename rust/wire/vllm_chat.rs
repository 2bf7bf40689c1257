//! vLLM chat completions with `return_token_ids` (docs/wire.md A.3), as returned by vLLM's
//! `/v1/chat/completions` and prime-rl's `/v1/chat/completions/tokens`.
//!
//! Reads: `choices[0].token_ids` (required: without them the next turn cannot be token-in),
//! top-level `prompt_token_ids`, `choices[0].logprobs.content[].logprob`, the message's
//! `content`, `reasoning_content` or `reasoning`, and `tool_calls`, plus `finish_reason`,
//! `stop_reason`, `usage` and `choices[0].routed_experts` (docs/wire.md A.5, passed through). The
//! message structs here are shared with the Dynamo parser, whose choices are the same OpenAI shape.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::body::{caller_args, estimate, RequestOptions, Writer};
use super::chat::vllm_chat_tail;
use super::parse::{
    check_aligned, routed, set_logprobs, stop_reason, Choices, Cx, Ids, LogprobsObject, Obj,
    Parsed, ParsedToolCall, Usage,
};
use super::scan::{once, Scanner, S};
use crate::error::Result;

/// Where the ids and logprobs of a vLLM chat completion are read from.
pub(crate) const TOKEN_IDS: &str = "choices[0].token_ids";
pub(crate) const LOGPROBS: &str = "choices[0].logprobs.content";

/// The top level of a chat completion. `X` is what `nvext` is read as: skipped unread
/// (`Option<IgnoredAny>`) on vLLM, Dynamo's response extension on Dynamo. (Not
/// `#[serde(flatten)]`: that buffers the whole body and cannot borrow a `RawValue`.)
#[derive(Deserialize)]
pub(crate) struct ChatBody<'a, X> {
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default, borrow)]
    pub(crate) choices: Choices<ChatChoice<'a>>,
    #[serde(default)]
    pub(crate) prompt_token_ids: Option<Ids>,
    #[serde(default)]
    pub(crate) usage: Option<Usage>,
    /// vLLM's newer error shape `{"error": {...}}`.
    #[serde(default, borrow)]
    pub(crate) error: Option<&'a RawValue>,
    /// vLLM's older error shape `{"object": "error", "message": ...}`.
    #[serde(default, borrow)]
    pub(crate) message: Option<&'a RawValue>,
    #[serde(default)]
    pub(crate) nvext: X,
}

impl<'a, X> ChatBody<'a, X> {
    /// The server's error object, if the body is one instead of a completion.
    pub(crate) fn server_error(&self) -> Option<&'a RawValue> {
        self.error.or(self.message)
    }
}

/// `choices[0]` of a chat completion.
#[derive(Deserialize)]
pub(crate) struct ChatChoice<'a> {
    #[serde(default, borrow)]
    pub(crate) message: Option<ChatMessage<'a>>,
    #[serde(default)]
    pub(crate) finish_reason: Option<String>,
    #[serde(default, borrow)]
    pub(crate) stop_reason: Option<&'a RawValue>,
    #[serde(default)]
    pub(crate) token_ids: Option<Ids>,
    #[serde(default)]
    pub(crate) logprobs: Option<LogprobsObject<false>>,
    #[serde(default, borrow)]
    pub(crate) routed_experts: Option<&'a RawValue>,
}

/// `choices[0].message`.
#[derive(Deserialize)]
pub(crate) struct ChatMessage<'a> {
    #[serde(default)]
    pub(crate) content: Option<String>,
    #[serde(default)]
    pub(crate) reasoning_content: Option<String>,
    #[serde(default)]
    pub(crate) reasoning: Option<String>,
    #[serde(default, borrow)]
    pub(crate) tool_calls: Option<Vec<ToolCall<'a>>>,
}

/// One `tool_calls[i]`.
#[derive(Deserialize)]
pub(crate) struct ToolCall<'a> {
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default, borrow)]
    pub(crate) function: Option<Obj<Function<'a>>>,
}

/// `tool_calls[i].function`.
#[derive(Deserialize)]
pub(crate) struct Function<'a> {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default, borrow)]
    pub(crate) arguments: Option<&'a RawValue>,
}

/// The scanner's fast path to a [`ChatBody`] (`rust/wire/scan.rs`): ids and logprobs read by
/// the scanner, `nvext` by `nvext`, the other fields by serde from their bytes.
pub(crate) fn scan_chat_body<'a, X: Default>(
    s: &mut Scanner<'a>,
    mut nvext: impl FnMut(&mut Scanner<'a>) -> S<X>,
) -> S<ChatBody<'a, X>> {
    let mut body = ChatBody {
        id: None,
        choices: Choices::Absent,
        prompt_token_ids: None,
        usage: None,
        error: None,
        message: None,
        nvext: X::default(),
    };
    let mut seen = 0u8;
    s.object(|s, key| {
        match key {
            b"choices" => {
                once(&mut seen, 1)?;
                body.choices = match s.first_choice(scan_chat_choice)? {
                    None => Choices::Absent,
                    Some(None) => Choices::Empty,
                    Some(Some(c)) => Choices::First(c),
                };
            }
            b"prompt_token_ids" => {
                once(&mut seen, 2)?;
                body.prompt_token_ids = s.opt_ids()?.map(Ids);
            }
            b"id" => {
                once(&mut seen, 4)?;
                body.id = s.de()?;
            }
            b"usage" => {
                once(&mut seen, 8)?;
                body.usage = s.de()?;
            }
            b"error" => {
                once(&mut seen, 16)?;
                body.error = s.de()?;
            }
            b"message" => {
                once(&mut seen, 32)?;
                body.message = s.de()?;
            }
            b"nvext" => {
                once(&mut seen, 64)?;
                body.nvext = nvext(s)?;
            }
            _ => s.skip()?,
        }
        Ok(())
    })?;
    Ok(body)
}

fn scan_chat_choice<'a>(s: &mut Scanner<'a>) -> S<ChatChoice<'a>> {
    let mut c = ChatChoice {
        message: None,
        finish_reason: None,
        stop_reason: None,
        token_ids: None,
        logprobs: None,
        routed_experts: None,
    };
    let mut seen = 0u8;
    s.object(|s, key| {
        match key {
            b"token_ids" => {
                once(&mut seen, 1)?;
                c.token_ids = s.opt_ids()?.map(Ids);
            }
            b"logprobs" => {
                once(&mut seen, 2)?;
                c.logprobs = s.logprobs_object::<false>()?;
            }
            b"message" => {
                once(&mut seen, 4)?;
                c.message = s.de()?;
            }
            b"finish_reason" => {
                once(&mut seen, 8)?;
                c.finish_reason = s.de()?;
            }
            b"stop_reason" => {
                once(&mut seen, 16)?;
                c.stop_reason = s.de()?;
            }
            b"routed_experts" => {
                once(&mut seen, 32)?;
                c.routed_experts = s.de()?;
            }
            _ => s.skip()?,
        }
        Ok(())
    })?;
    Ok(c)
}

/// Parses a vLLM chat completion body.
pub(crate) fn parse(cx: Cx<'_>) -> Result<Parsed> {
    let body: ChatBody<'_, Option<IgnoredAny>> = cx.read(|s| {
        scan_chat_body(s, |s| {
            s.skip()?;
            Ok(Some(IgnoredAny))
        })
    })?;
    let server_error = body.server_error();
    let choice = match body.choices {
        Choices::First(choice) => choice,
        Choices::Empty => return Err(cx.no_choice("an empty `choices` list", server_error)),
        Choices::Absent => return Err(cx.no_choice("no `choices`", server_error)),
    };
    let Some(Ids(ids)) = choice.token_ids else {
        return Err(cx.error(format_args!(
            "expected the completion's token ids at `{TOKEN_IDS}`, found none (absent or null). \
             Send `return_token_ids: true` in the request (vLLM >= 0.10.2, vllm#22587; prime-rl's \
             token route needs it too, docs/wire.md A.2)"
        )));
    };
    let mut out = Parsed::new(ids, TOKEN_IDS);
    if let Some(lp) = choice.logprobs.and_then(|l| l.0) {
        check_aligned(cx, &out.completion_ids, TOKEN_IDS, &lp.0, LOGPROBS)?;
        let mut lp = lp.0;
        out.completion_top_logprobs = lp.take_top();
        set_logprobs(&mut out, lp, LOGPROBS);
    }
    out.prompt_ids = body.prompt_token_ids.map(|Ids(ids)| ids);
    out.usage = body.usage;
    out.response_id = body.id;
    fill_choice(
        cx,
        &mut out,
        choice.message,
        choice.finish_reason,
        choice.stop_reason,
    )?;
    if let Some((raw, span)) = routed(cx, choice.routed_experts) {
        out.routed_experts = Some(raw);
        out.routed_experts_span = Some(span);
    }
    Ok(out)
}

/// Fills the message, tool calls and finish/stop reasons of `out` from one OpenAI-shaped choice.
pub(crate) fn fill_choice(
    cx: Cx<'_>,
    out: &mut Parsed,
    message: Option<ChatMessage<'_>>,
    finish_reason: Option<String>,
    stop: Option<&RawValue>,
) -> Result<()> {
    if let Some(message) = message {
        out.content = message.content;
        out.reasoning_content = message.reasoning_content.or(message.reasoning);
        for (i, call) in message
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            out.tool_calls.push(tool_call(cx, i, call)?);
        }
    }
    // vLLM's /generate never says "tool_calls" and Dynamo's parser may not; a turn that called
    // tools and stopped is a tool-call turn (renderers B.2, vf #1289 test). "length" stays: the
    // turn was cut and has no stop token (docs/wire.md A.3, E.5 item 4).
    out.finish_reason = match finish_reason {
        Some(f) if f == "stop" && !out.tool_calls.is_empty() => Some("tool_calls".to_owned()),
        other => other,
    };
    out.stop_reason = stop_reason(stop);
    Ok(())
}

/// One tool call, with `arguments` kept exactly as sent.
pub(crate) fn tool_call(cx: Cx<'_>, i: usize, call: ToolCall<'_>) -> Result<ParsedToolCall> {
    let path = format!("choices[0].message.tool_calls[{i}].function");
    let Some(Obj(function)) = call.function else {
        return Err(cx.error(format_args!(
            "expected a `{path}` object with `name` and `arguments`, found none. The server's \
             tool parser produced an incomplete call; check its `--tool-call-parser`"
        )));
    };
    let Some(name) = function.name else {
        return Err(cx.error(format_args!(
            "expected a string at `{path}.name`, found none. The server's tool parser produced an \
             incomplete call; check its `--tool-call-parser`"
        )));
    };
    let arguments = match function.arguments {
        None => {
            return Err(cx.error(format_args!(
                "expected a JSON string at `{path}.arguments`, found none (absent or null). The \
                 server's tool parser produced an incomplete call; check its `--tool-call-parser`"
            )))
        }
        Some(raw) if raw.get().starts_with('"') => serde_json::from_str::<String>(raw.get())
            .map_err(|e| {
                cx.error(format_args!(
                    "`{path}.arguments` is not a valid JSON string: {e}"
                ))
            })?,
        // Some servers send the arguments object itself: keep its text as sent.
        Some(raw) => raw.get().to_owned(),
    };
    Ok(ParsedToolCall {
        id: call.id,
        name,
        arguments,
    })
}

// ---------------------------------------------------------------------------------------------
// The request body
// ---------------------------------------------------------------------------------------------

/// `POST /v1/chat/completions/tokens` (prime-rl, docs/wire.md A.1, A.2), as verifiers builds it:
///
/// `{"model", "messages", "tools", "tokens": [...], "max_completion_tokens", ...caller...,
/// "logprobs": true, "return_token_ids": true, "cache_salt"?, "priority"?,
/// "chat_template_kwargs"?}`
///
/// * `messages` must still be a valid conversation (the server renders and validates it, then
///   replaces the prompt with `tokens`); `tools` is sent as `null` when there are none;
/// * `max_tokens` is renamed `max_completion_tokens`; `null` caller values are dropped;
/// * a caller's integer `logprobs` N becomes `top_logprobs: N` (chat `logprobs` is a boolean);
/// * `stop_token_ids` are sent only when [`RequestOptions::stop_token_ids`] is set;
/// * Dynamo's `nvext` is dropped.
pub fn chat_tokens_body(
    model: &str,
    messages: &RawValue,
    tools: Option<&RawValue>,
    token_ids: &[u32],
    sampling: &Map<String, Value>,
    opts: &RequestOptions<'_>,
) -> Result<Vec<u8>> {
    let args = caller_args(sampling)?;
    let extra = messages.get().len() + tools.map_or(4, |t| t.get().len());
    let mut w = Writer::with_capacity(estimate(model, token_ids, &args, extra));
    w.open();
    w.key("model");
    w.str(model);
    w.key("messages");
    w.raw(messages.get());
    w.key("tools");
    w.raw(tools.map_or("null", RawValue::get));
    w.key("tokens");
    w.ids(token_ids);
    vllm_chat_tail(&mut w, &args, opts, true)?;
    w.close();
    Ok(w.buf)
}

#[cfg(test)]
mod tests {
    use crate::wire::{parse_response, ParseOptions, Wire};
    use crate::ErrorKind;

    fn parse(body: &str) -> crate::Result<crate::wire::Parsed> {
        parse_response(body.as_bytes(), Wire::VllmChat, &ParseOptions::default())
    }

    #[test]
    fn minimal_choice() {
        let p = parse(r#"{"choices":[{"token_ids":[1,2],"finish_reason":"stop"}]}"#);
        let p = p.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.completion_ids, vec![1, 2]);
        assert!(p.completion_logprobs.is_none());
        assert!(p.prompt_ids.is_none());
        assert_eq!(p.finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn empty_tool_calls_do_not_promote() {
        let p = parse(
            r#"{"choices":[{"token_ids":[],"finish_reason":"stop","message":{"tool_calls":[]}}]}"#,
        );
        let p = p.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn tool_call_without_name_is_an_error() {
        let e = parse(
            r#"{"choices":[{"token_ids":[1],"message":{"tool_calls":[{"function":{"arguments":"{}"}}]}}]}"#,
        );
        let e = e.err().map(|e| (e.kind(), e.text().to_owned()));
        let (kind, text) = e.unwrap_or((ErrorKind::Load, String::new()));
        assert_eq!(kind, ErrorKind::Parse);
        assert!(text.contains("tool_calls[0].function.name"), "{text}");
    }

    #[test]
    fn object_arguments_keep_their_text() {
        let p = parse(
            r#"{"choices":[{"token_ids":[1],"message":{"tool_calls":[{"id":"c","function":{"name":"f","arguments":{"a": 1}}}]}}]}"#,
        );
        let p = p.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.tool_calls[0].arguments, r#"{"a": 1}"#);
    }
}
