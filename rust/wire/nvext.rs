//! NVIDIA Dynamo chat completions carrying token data in `nvext` (docs/wire.md C.2).
//!
//! Read precedence, the union of renderers #79 `parse` and vf #1574 `_graft_engine_data`:
//! * completion ids: `nvext.engine_data.completion_token_ids`, then `nvext.completion_token_ids`,
//!   then `choices[0].token_ids` (renderers ranks it last: "a detokenize-then-retokenize echo").
//!   A present-but-empty list is a valid zero-token completion; absence everywhere is an error
//!   (renderers #79 `RuntimeError`).
//! * prompt ids: `nvext.engine_data.prompt_token_ids`, then `nvext.prompt_token_ids` (dyn #13640).
//! * logprobs: `nvext.engine_data.completion_logprobs` whenever that key is present, even as an
//!   empty list (it is authoritative); otherwise `choices[0].logprobs.content[].logprob`, which
//!   older Dynamo left empty with `top_logprobs=0` and NeMo-Gym #1963 saw off by one. Either
//!   way a length mismatch with the ids is fatal (renderers #79, docs/wire.md D3).
//! * routed experts: `choices[0].routed_experts`, then `nvext.routed_experts`, then
//!   `nvext.engine_data.routed_experts`, passed through unparsed.
//! * stop reason: `choices[0].stop_reason`, then `nvext.stop_reason`.
//!
//! A key whose value is `null` counts as absent at every step. `engine_data` is "backend-specific
//! and not a stable cross-backend schema" (Dynamo docs): only the keys above are read, the rest
//! is ignored.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::body::{
    arg_error, cache_salt, caller_args, estimate, get, max_tokens, priority, write_json_str,
    RequestOptions, Writer,
};
use super::parse::{check_aligned, routed, set_logprobs, Choices, Cx, FloatList, Ids, Parsed};
use super::scan::{once, Scanner, S};
use super::vllm_chat::{scan_chat_body, ChatBody, LOGPROBS, TOKEN_IDS};
use crate::error::{Error, Result};

const ENGINE_COMPLETION_IDS: &str = "nvext.engine_data.completion_token_ids";
const NVEXT_COMPLETION_IDS: &str = "nvext.completion_token_ids";
const ENGINE_LOGPROBS: &str = "nvext.engine_data.completion_logprobs";

/// The response `nvext` (`NvExtResponse`, dyn `extensions.rs`).
#[derive(Deserialize, Default)]
struct NvExt<'a> {
    #[serde(default, borrow)]
    engine_data: Option<EngineData<'a>>,
    #[serde(default)]
    completion_token_ids: Option<Ids>,
    #[serde(default)]
    prompt_token_ids: Option<Ids>,
    #[serde(default, borrow)]
    routed_experts: Option<&'a RawValue>,
    #[serde(default, borrow)]
    stop_reason: Option<&'a RawValue>,
}

/// `nvext.engine_data`, as the Dynamo vLLM worker fills it (dyn #9651).
#[derive(Deserialize, Default)]
struct EngineData<'a> {
    #[serde(default)]
    completion_token_ids: Option<Ids>,
    #[serde(default)]
    prompt_token_ids: Option<Ids>,
    #[serde(default)]
    completion_logprobs: Option<FloatList>,
    #[serde(default, borrow)]
    routed_experts: Option<&'a RawValue>,
}

/// `nvext` for the scanner's fast path (`rust/wire/scan.rs`).
fn scan_nvext<'a>(s: &mut Scanner<'a>) -> S<Option<NvExt<'a>>> {
    if s.null()? {
        return Ok(None);
    }
    let mut n = NvExt::default();
    let mut seen = 0u8;
    s.object(|s, key| {
        match key {
            b"engine_data" => {
                once(&mut seen, 1)?;
                n.engine_data = scan_engine_data(s)?;
            }
            b"completion_token_ids" => {
                once(&mut seen, 2)?;
                n.completion_token_ids = s.opt_ids()?.map(Ids);
            }
            b"prompt_token_ids" => {
                once(&mut seen, 4)?;
                n.prompt_token_ids = s.opt_ids()?.map(Ids);
            }
            b"routed_experts" => {
                once(&mut seen, 8)?;
                n.routed_experts = s.de()?;
            }
            b"stop_reason" => {
                once(&mut seen, 16)?;
                n.stop_reason = s.de()?;
            }
            _ => s.skip()?,
        }
        Ok(())
    })?;
    Ok(Some(n))
}

fn scan_engine_data<'a>(s: &mut Scanner<'a>) -> S<Option<EngineData<'a>>> {
    if s.null()? {
        return Ok(None);
    }
    let mut e = EngineData::default();
    let mut seen = 0u8;
    s.object(|s, key| {
        match key {
            b"completion_token_ids" => {
                once(&mut seen, 1)?;
                e.completion_token_ids = s.opt_ids()?.map(Ids);
            }
            b"prompt_token_ids" => {
                once(&mut seen, 2)?;
                e.prompt_token_ids = s.opt_ids()?.map(Ids);
            }
            b"completion_logprobs" => {
                once(&mut seen, 4)?;
                e.completion_logprobs = if s.null()? {
                    None
                } else {
                    Some(FloatList(s.float_list()?))
                };
            }
            b"routed_experts" => {
                once(&mut seen, 8)?;
                e.routed_experts = s.de()?;
            }
            _ => s.skip()?,
        }
        Ok(())
    })?;
    Ok(Some(e))
}

/// Parses a Dynamo chat completion body.
pub(crate) fn parse(cx: Cx<'_>) -> Result<Parsed> {
    let body: ChatBody<'_, Option<NvExt<'_>>> = cx.read(|s| scan_chat_body(s, scan_nvext))?;
    let server_error = body.server_error();
    let choice = match body.choices {
        Choices::First(choice) => choice,
        Choices::Empty => return Err(cx.no_choice("an empty `choices` list", server_error)),
        Choices::Absent => return Err(cx.no_choice("no `choices`", server_error)),
    };
    let nvext = body.nvext.unwrap_or_default();
    let engine = nvext.engine_data.unwrap_or_default();

    let (ids, ids_from) = match (
        engine.completion_token_ids,
        nvext.completion_token_ids,
        choice.token_ids,
    ) {
        (Some(Ids(ids)), _, _) => (ids, ENGINE_COMPLETION_IDS),
        (None, Some(Ids(ids)), _) => (ids, NVEXT_COMPLETION_IDS),
        (None, None, Some(Ids(ids))) => (ids, TOKEN_IDS),
        (None, None, None) => {
            return Err(cx.error(format_args!(
                "expected the completion's token ids, found none of `{ENGINE_COMPLETION_IDS}`, \
                 `{NVEXT_COMPLETION_IDS}` or `{TOKEN_IDS}`. Request them with \
                 `nvext.extra_fields: [\"engine_data\"]` (Dynamo >= 1.3 with the vLLM worker; \
                 docs/wire.md C.1, C.2)"
            )))
        }
    };
    let mut out = Parsed::new(ids, ids_from);

    let logprobs = match engine.completion_logprobs {
        Some(FloatList(lp)) => Some((lp, ENGINE_LOGPROBS)),
        None => choice.logprobs.and_then(|l| l.0).map(|c| (c.0, LOGPROBS)),
    };
    if let Some((lp, from)) = logprobs {
        check_aligned(cx, &out.completion_ids, ids_from, &lp, from)?;
        let mut lp = lp;
        out.completion_top_logprobs = lp.take_top();
        set_logprobs(&mut out, lp, from);
    }

    out.prompt_ids = engine
        .prompt_token_ids
        .or(nvext.prompt_token_ids)
        .map(|Ids(ids)| ids);
    out.usage = body.usage;
    out.response_id = body.id;
    let stop = choice
        .stop_reason
        .filter(|r| r.get() != "null")
        .or(nvext.stop_reason);
    super::vllm_chat::fill_choice(cx, &mut out, choice.message, choice.finish_reason, stop)?;
    let experts = [
        choice.routed_experts,
        nvext.routed_experts,
        engine.routed_experts,
    ]
    .into_iter()
    .find_map(|raw| routed(cx, raw));
    if let Some((raw, span)) = experts {
        out.routed_experts = Some(raw);
        out.routed_experts_span = Some(span);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The request body
// ---------------------------------------------------------------------------------------------

/// `POST /v1/chat/completions` on Dynamo with the prompt as tokens (docs/wire.md C.1, the canonical
/// TITO request of renderers #79):
///
/// `{"model", "messages": [{"role": "user", "content": ""}], "stream": false, "nvext":
/// {"token_data": [...], "extra_fields": [..., "engine_data"], "cache_salt"?, "agent_hints"?,
/// ...caller's nvext...}, "max_completion_tokens", ...caller..., "stop_token_ids",
/// "logprobs": true, "top_logprobs"?, "skip_special_tokens": false}`
///
/// * `messages` is a placeholder: Dynamo skips templating with `token_data` but rejects an empty
///   list; `tools` (and `tool_choice`, `parallel_tool_calls`) are never sent, they are baked
///   into the ids ("forwarding the renderer ToolSpec ... would 400", renderers #79);
/// * `nvext.extra_fields` is the caller's list plus `"engine_data"`, caller order first, without
///   duplicates (vf #1574, renderers #79);
/// * `cache_salt` goes to `nvext.cache_salt`, never the root (D1): [`RequestOptions::cache_salt`],
///   else the caller's `nvext.cache_salt`, else the caller's root `cache_salt`, first non-empty;
/// * `priority` goes to `nvext.agent_hints.priority`, merged into the caller's `agent_hints`,
///   and never to the root (D2): [`RequestOptions::priority`], else the caller's root `priority`;
/// * the root keys Dynamo rejects are dropped: `return_token_ids`,
///   `spaces_between_special_tokens`, `routed_experts_prompt_start` (vf #1574 `_DYNAMO_DROP_KEYS`,
///   renderers #79) and `truncate_prompt_tokens` (rejected by dyn #9649);
///   `chat_template_kwargs`/`chat_template_args` are accepted and kept;
/// * `max_tokens` is renamed `max_completion_tokens`; a vLLM-style integer `logprobs` N becomes
///   `logprobs: true` plus `top_logprobs: N` when N > 0 (renderers #79 `_build_body`).
pub fn dynamo_body(
    model: &str,
    token_ids: &[u32],
    sampling: &Map<String, Value>,
    opts: &RequestOptions<'_>,
) -> Result<Vec<u8>> {
    let args = caller_args(sampling)?;
    let mut w = Writer::with_capacity(estimate(model, token_ids, &args, 0));
    dynamo(&mut w, model, DynamoPrompt::Tokens(token_ids), &args, opts)?;
    Ok(w.buf)
}

/// The root keys Dynamo's frontend rejects that vLLM-minded callers send (docs/wire.md C.1, D;
/// vf #1574 `_DYNAMO_DROP_KEYS`, renderers #79, dyn #9649). `priority` and `cache_salt` are not
/// here: they are moved into `nvext`, not dropped.
pub const DYNAMO_DROP_KEYS: [&str; 4] = [
    "return_token_ids",
    "spaces_between_special_tokens",
    "routed_experts_prompt_start",
    "truncate_prompt_tokens",
];

/// The placeholder conversation of a Dynamo token-in request (renderers #79, vf #1574: `""`).
const DYNAMO_PLACEHOLDER: &str = r#"[{"role":"user","content":""}]"#;

/// The prompt of a Dynamo request.
pub(super) enum DynamoPrompt<'p> {
    /// Token-in: a placeholder conversation and `nvext.token_data`.
    Tokens(&'p [u32]),
    /// MITO: the real conversation and tools, templated by Dynamo.
    Messages {
        messages: &'p RawValue,
        tools: Option<&'p RawValue>,
    },
}

/// Writes a whole Dynamo chat body (see [`dynamo_body`]).
pub(super) fn dynamo(
    w: &mut Writer,
    model: &str,
    prompt: DynamoPrompt<'_>,
    args: &[(&str, &Value)],
    opts: &RequestOptions<'_>,
) -> Result<()> {
    let token_in = matches!(prompt, DynamoPrompt::Tokens(_));
    let caller_nvext = match get(args, "nvext") {
        None => None,
        Some(Value::Object(map)) => Some(map),
        Some(other) => return Err(arg_error("nvext", "an object", other)),
    };
    w.open();
    w.key("model");
    w.str(model);
    w.key("messages");
    match prompt {
        DynamoPrompt::Tokens(_) => w.raw(DYNAMO_PLACEHOLDER),
        DynamoPrompt::Messages { messages, tools } => {
            w.raw(messages.get());
            if let Some(tools) = tools {
                w.key("tools");
                w.raw(tools.get());
            }
        }
    }
    w.key("stream");
    w.raw("false");

    w.key("nvext");
    w.open();
    if let DynamoPrompt::Tokens(ids) = prompt {
        w.key("token_data");
        w.ids(ids);
    }
    w.key("extra_fields");
    extra_fields(w, caller_nvext)?;
    if let Some(salt) = cache_salt(args, opts, caller_nvext)? {
        w.key("cache_salt");
        w.str(salt);
    }
    let caller_hints = match caller_nvext.and_then(|n| n.get("agent_hints")) {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(other) => return Err(arg_error("nvext.agent_hints", "an object", other)),
    };
    let priority = match priority(args, opts)? {
        None => None,
        Some(p) => Some(i32::try_from(p).map_err(|_| {
            Error::message(format!(
                "priority {p} does not fit nvext.agent_hints.priority (an i32 on Dynamo, \
                 docs/wire.md C.1); pass a priority in {}..={}",
                i32::MIN,
                i32::MAX
            ))
        })?),
    };
    if caller_hints.is_some() || priority.is_some() {
        w.key("agent_hints");
        w.open();
        for (k, v) in caller_hints.into_iter().flatten() {
            if !(v.is_null() || priority.is_some() && k == "priority") {
                w.key(k);
                w.value(v)?;
            }
        }
        if let Some(p) = priority {
            w.key("priority");
            w.int(p);
        }
        w.close();
    }
    for (k, v) in caller_nvext.into_iter().flatten() {
        match k.as_str() {
            "token_data" | "extra_fields" | "cache_salt" | "agent_hints" => {}
            _ if v.is_null() => {}
            _ => {
                w.key(k);
                w.value(v)?;
            }
        }
    }
    w.close();

    if let Some(max) = max_tokens(args, opts) {
        w.key("max_completion_tokens");
        w.value(max)?;
    }
    let mut wants_top = None;
    let mut has_top = false;
    let mut skip_special = false;
    for &(k, v) in args {
        match k {
            "model" | "messages" | "stream" | "stream_options" | "nvext" | "tokens"
            | "token_ids" => {}
            "tools" => {}
            "tool_choice" | "parallel_tool_calls" if token_in => {}
            "max_tokens" | "max_completion_tokens" | "cache_salt" | "priority" => {}
            "logprobs" => wants_top = v.as_u64().filter(|&n| n > 0),
            _ if DYNAMO_DROP_KEYS.contains(&k) => {}
            "stop_token_ids" if opts.stop_token_ids.is_some() => {}
            "chat_template_kwargs" | "chat_template_args"
                if opts.chat_template_kwargs.is_some() => {}
            _ => {
                has_top |= k == "top_logprobs";
                skip_special |= k == "skip_special_tokens";
                w.key(k);
                w.value(v)?;
            }
        }
    }
    if let Some(stop) = opts.stop_token_ids {
        w.key("stop_token_ids");
        w.ids(stop);
    }
    w.key("logprobs");
    w.raw("true");
    if let (Some(n), false) = (wants_top, has_top) {
        w.key("top_logprobs");
        w.int(n);
    }
    if !skip_special {
        w.key("skip_special_tokens");
        w.raw("false");
    }
    if let Some(kwargs) = opts.chat_template_kwargs {
        w.key("chat_template_kwargs");
        w.map(kwargs)?;
    }
    w.close();
    Ok(())
}

/// Writes `nvext.extra_fields`: the caller's names, deduplicated in order, then `engine_data`.
fn extra_fields(w: &mut Writer, caller_nvext: Option<&Map<String, Value>>) -> Result<()> {
    let caller = match caller_nvext.and_then(|n| n.get("extra_fields")) {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(items)) => items.as_slice(),
        Some(other) => return Err(arg_error("nvext.extra_fields", "a list of strings", other)),
    };
    let mut seen: Vec<&str> = Vec::with_capacity(caller.len() + 1);
    for item in caller {
        match item {
            Value::String(s) if !seen.contains(&s.as_str()) => seen.push(s),
            Value::String(_) => {}
            other => return Err(arg_error("nvext.extra_fields[]", "a string", other)),
        }
    }
    if !seen.contains(&"engine_data") {
        seen.push("engine_data");
    }
    w.buf.push(b'[');
    for (i, name) in seen.iter().enumerate() {
        if i > 0 {
            w.buf.push(b',');
        }
        write_json_str(&mut w.buf, name);
    }
    w.buf.push(b']');
    w.comma = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::wire::{parse_response, ParseOptions, Wire};

    fn parse(body: &str) -> crate::Result<crate::wire::Parsed> {
        parse_response(body.as_bytes(), Wire::Dynamo, &ParseOptions::default())
    }

    #[test]
    fn null_engine_keys_fall_through() {
        let p = parse(
            r#"{"choices":[{"token_ids":[5],"logprobs":{"content":[{"logprob":-1}]}}],
                "nvext":{"engine_data":{"completion_token_ids":null,"completion_logprobs":null},
                         "completion_token_ids":null}}"#,
        );
        let p = p.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.completion_ids, vec![5]);
        assert_eq!(p.completion_ids_from, "choices[0].token_ids");
        assert_eq!(
            p.completion_logprobs_from,
            Some("choices[0].logprobs.content")
        );
    }

    #[test]
    fn nvext_null_is_absent() {
        let p = parse(r#"{"choices":[{"token_ids":[]}],"nvext":null}"#);
        assert!(p.map(|p| p.completion_ids.is_empty()).unwrap_or(false));
    }
}
