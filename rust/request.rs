//! Request bodies for the TITO wires of `docs/wire.md`, written as JSON bytes.
//!
//! Each writer takes the prompt ids as `&[u32]`, the caller's sampling arguments as a
//! `serde_json::Map` and typed [`RequestOptions`], and writes the body into one pre-sized
//! `Vec<u8>`: ids go through `itoa` straight into the buffer (no `Vec<Value>` of ids), the
//! caller's values through serde_json. The bytes are what the HTTP client sends, unchanged.
//!
//! Rules every writer keeps:
//! * **Caller arguments are normalized first** (verifiers `normalize_sampling_args`,
//!   docs/wire.md A.2): a nested `extra_body` object is merged over the top level
//!   (`{**sampling, **extra_body}`), and keys whose value is `null` are dropped.
//! * **Typed options win** over the same caller keys, and no key is ever written twice.
//! * **Empty salts are absent**: an empty `cache_salt` is never sent (Dynamo treats `""` as
//!   absent, docs/wire.md C.1; vLLM rejects it).
//! * **Every wire gets only keys it accepts**: vLLM's generate route takes sampling inside
//!   `sampling_params` and `cache_salt`/`priority` at the root (B.2); Dynamo 400s on unknown root
//!   keys, so the vLLM-only ones are scrubbed and `cache_salt`/`priority` move into `nvext`
//!   (C.1, D1, D2).
//!
//! A caller argument that cannot be placed (an `nvext` that is not an object, a `priority` that
//! is not an integer) is an [`ErrorKind::Message`](crate::ErrorKind::Message) error naming the key.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Typed options a writer applies on top of the caller's sampling arguments.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestOptions<'a> {
    /// The most new tokens to sample. Overrides the caller's `max_tokens` and
    /// `max_completion_tokens`; with neither, the server default applies (vLLM's
    /// `SamplingParams.max_tokens` defaults to 16 on the generate route, docs/wire.md B.2).
    pub max_tokens: Option<u32>,
    /// The tokenizer's stop ids. Where a writer sends them they replace the caller's
    /// `stop_token_ids` (renderers, docs/wire.md B.2, C.1); `None` keeps the caller's.
    pub stop_token_ids: Option<&'a [u32]>,
    /// The KV-cache salt (change it per policy version, docs/wire.md E.5 item 16). Overrides the
    /// caller's `cache_salt` (and, on Dynamo, `nvext.cache_salt`) unless empty.
    pub cache_salt: Option<&'a str>,
    /// The scheduling priority. vLLM: lower runs earlier, root `priority`. Dynamo:
    /// `nvext.agent_hints.priority` (an `i32`; Dynamo maps it onto the vLLM worker's scale, C.1).
    pub priority: Option<i64>,
    /// Chat-template variables; override the caller's `chat_template_kwargs`. Not sent on the
    /// generate route, which renders no template.
    pub chat_template_kwargs: Option<&'a Map<String, Value>>,
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

/// `POST /inference/v1/generate` (vLLM >= 0.20, docs/wire.md B.2), as renderers 0.1.12 builds it:
///
/// `{"model", "token_ids": [...], "sampling_params": {...caller..., "max_tokens",
/// "stop_token_ids", "logprobs", "skip_special_tokens"}, "cache_salt"?, "priority"?}`
///
/// * `max_completion_tokens` is renamed `max_tokens` (a `SamplingParams` has only that name);
/// * `stop_token_ids` are the tokenizer's ([`RequestOptions::stop_token_ids`]), replacing the
///   caller's;
/// * `logprobs` is at least 1 (the sampled token's logprob); a caller's integer `logprobs` or
///   chat-style `top_logprobs` above 1 is kept as the count of alternatives;
/// * `skip_special_tokens` is `false` unless the caller set it;
/// * `cache_salt`, `priority`, `request_id` and `kv_transfer_params` are `GenerateRequest`
///   fields and go to the body root;
/// * `return_token_ids: true` goes to the root (vLLM >= 0.32 then echoes `prompt_token_ids`);
/// * keys without meaning here are dropped: the chat-route ones (`chat_template_kwargs`, `stream`, `stream_options`, `messages`, `tools`, `tool_choice`,
///   `tokens`) and Dynamo's `nvext`, so one set of sampling arguments serves every wire.
pub fn vllm_generate_body(
    model: &str,
    token_ids: &[u32],
    sampling: &Map<String, Value>,
    opts: &RequestOptions<'_>,
) -> Result<Vec<u8>> {
    let args = caller_args(sampling)?;
    let mut w = Writer::with_capacity(estimate(model, token_ids, &args, 0));
    w.open();
    w.key("model");
    w.str(model);
    w.key("token_ids");
    w.ids(token_ids);
    w.key("sampling_params");
    w.open();
    if let Some(max) = max_tokens(&args, opts) {
        w.key("max_tokens");
        w.value(max)?;
    }
    let mut logprobs = 1u64;
    let mut skip_special = false;
    for &(k, v) in &args {
        match k {
            "model" | "token_ids" | "sampling_params" | "max_tokens" | "max_completion_tokens" => {}
            "cache_salt" | "priority" | "request_id" | "kv_transfer_params" => {}
            "logprobs" | "top_logprobs" => logprobs = logprobs.max(v.as_u64().unwrap_or(0)),
            // a `GenerateRequest` field: sent at the root (below) when the caller asks
            "return_token_ids" => {}
            "chat_template_kwargs"
            | "stream"
            | "stream_options"
            | "messages"
            | "tools"
            | "tool_choice"
            | "tokens"
            | "nvext" => {}
            "stop_token_ids" if opts.stop_token_ids.is_some() => {}
            _ => {
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
    w.int(logprobs);
    if !skip_special {
        w.key("skip_special_tokens");
        w.raw("false");
    }
    w.close();
    if let Some(salt) = cache_salt(&args, opts, None)? {
        w.key("cache_salt");
        w.str(salt);
    }
    if let Some(priority) = priority(&args, opts)? {
        w.key("priority");
        w.int(priority);
    }
    for key in ["request_id", "kv_transfer_params"] {
        if let Some(v) = get(&args, key) {
            w.key(key);
            w.value(v)?;
        }
    }
    // vLLM >= 0.32 echoes the prompt it ran as `prompt_token_ids` only when asked: the engine's
    // own evidence of what it received, at the cost of the prompt's size in every response
    if get(&args, "return_token_ids") == Some(&Value::Bool(true)) {
        w.key("return_token_ids");
        w.raw("true");
    }
    w.close();
    Ok(w.buf)
}

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

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

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

/// The caller's keys after `max_completion_tokens`, for a vLLM (or plain OpenAI) chat body.
/// `vllm` adds `return_token_ids` and the root options; without it the vLLM-only keys are
/// scrubbed.
fn vllm_chat_tail(
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

/// The prompt of a Dynamo request.
enum DynamoPrompt<'p> {
    /// Token-in: a placeholder conversation and `nvext.token_data`.
    Tokens(&'p [u32]),
    /// MITO: the real conversation and tools, templated by Dynamo.
    Messages {
        messages: &'p RawValue,
        tools: Option<&'p RawValue>,
    },
}

/// Writes a whole Dynamo chat body (see [`dynamo_body`]).
fn dynamo(
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

/// The caller's arguments, `extra_body` merged over the top level and `null` values dropped
/// (verifiers `normalize_sampling_args`, docs/wire.md A.2).
fn caller_args(sampling: &Map<String, Value>) -> Result<Vec<(&str, &Value)>> {
    let extra = match sampling.get("extra_body") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(other) => return Err(arg_error("extra_body", "an object", other)),
    };
    let mut out = Vec::with_capacity(sampling.len() + extra.map_or(0, Map::len));
    for (k, v) in sampling {
        if k == "extra_body" {
            continue;
        }
        let v = extra.and_then(|e| e.get(k)).unwrap_or(v);
        if !v.is_null() {
            out.push((k.as_str(), v));
        }
    }
    for (k, v) in extra.into_iter().flatten() {
        if k != "extra_body" && !sampling.contains_key(k) && !v.is_null() {
            out.push((k.as_str(), v));
        }
    }
    Ok(out)
}

/// The caller's value for `key`.
fn get<'v>(args: &[(&str, &'v Value)], key: &str) -> Option<&'v Value> {
    args.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
}

/// The max-new-tokens value: the option, else the caller's `max_completion_tokens`, else
/// `max_tokens` (vLLM reads `max_completion_tokens or max_tokens`, docs/wire.md A.1).
fn max_tokens<'v>(args: &[(&str, &'v Value)], opts: &RequestOptions<'_>) -> Option<MaxTokens<'v>> {
    match opts.max_tokens {
        Some(n) => Some(MaxTokens::Option(n)),
        None => get(args, "max_completion_tokens")
            .or_else(|| get(args, "max_tokens"))
            .map(MaxTokens::Caller),
    }
}

/// A max-new-tokens value to write.
enum MaxTokens<'v> {
    Option(u32),
    Caller(&'v Value),
}

/// The salt to send: the option, else the caller's `nvext.cache_salt` (Dynamo only), else the
/// caller's `cache_salt`; empty strings count as absent (docs/wire.md C.1 precedence).
fn cache_salt<'v>(
    args: &[(&str, &'v Value)],
    opts: &RequestOptions<'v>,
    caller_nvext: Option<&'v Map<String, Value>>,
) -> Result<Option<&'v str>> {
    if let Some(salt) = opts.cache_salt.filter(|s| !s.is_empty()) {
        return Ok(Some(salt));
    }
    let candidates = [
        (
            "nvext.cache_salt",
            caller_nvext.and_then(|n| n.get("cache_salt")),
        ),
        ("cache_salt", get(args, "cache_salt")),
    ];
    for (key, value) in candidates {
        match value {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::String(s)) => return Ok(Some(s)),
            Some(other) => return Err(arg_error(key, "a string", other)),
        }
    }
    Ok(None)
}

/// The priority to send: the option, else the caller's integer `priority`.
fn priority(args: &[(&str, &Value)], opts: &RequestOptions<'_>) -> Result<Option<i64>> {
    if let Some(p) = opts.priority {
        return Ok(Some(p));
    }
    match get(args, "priority") {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| arg_error("priority", "an integer", v)),
    }
}

/// A caller argument of the wrong type.
fn arg_error(key: &str, expected: &str, found: &Value) -> Error {
    let found = match found {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    };
    Error::message(format!(
        "sampling argument `{key}` must be {expected}, found {found}; fix the sampling arguments \
         (or their `extra_body`) passed for this request"
    ))
}

/// A rough body size, so the buffer is allocated once in the common case: ids take at most 11
/// bytes each, typically 7.
fn estimate(model: &str, ids: &[u32], args: &[(&str, &Value)], extra: usize) -> usize {
    256 + model.len() + ids.len() * 7 + args.len() * 48 + extra
}

/// A minimal JSON object writer over one `Vec<u8>`.
struct Writer {
    buf: Vec<u8>,
    /// Whether the next key needs a comma before it.
    comma: bool,
}

impl Writer {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
            comma: false,
        }
    }

    fn open(&mut self) {
        self.buf.push(b'{');
        self.comma = false;
    }

    fn close(&mut self) {
        self.buf.push(b'}');
        self.comma = true;
    }

    fn key(&mut self, key: &str) {
        if self.comma {
            self.buf.push(b',');
        }
        write_json_str(&mut self.buf, key);
        self.buf.push(b':');
        self.comma = false;
    }

    fn str(&mut self, s: &str) {
        write_json_str(&mut self.buf, s);
        self.comma = true;
    }

    fn raw(&mut self, json: &str) {
        self.buf.extend_from_slice(json.as_bytes());
        self.comma = true;
    }

    fn int(&mut self, n: impl itoa::Integer) {
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self.comma = true;
    }

    fn ids(&mut self, ids: &[u32]) {
        let mut digits = itoa::Buffer::new();
        self.buf.reserve(ids.len() * 7 + 2);
        self.buf.push(b'[');
        for (i, &id) in ids.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.buf.extend_from_slice(digits.format(id).as_bytes());
        }
        self.buf.push(b']');
        self.comma = true;
    }

    fn value<'v>(&mut self, v: impl Into<ValueRef<'v>>) -> Result<()> {
        match v.into() {
            ValueRef::Json(v) => serde_json::to_writer(&mut self.buf, v).map_err(|e| {
                Error::message(format!(
                    "a sampling argument could not be written as JSON: {e}"
                ))
            })?,
            ValueRef::Int(n) => self
                .buf
                .extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        }
        self.comma = true;
        Ok(())
    }

    fn map(&mut self, map: &Map<String, Value>) -> Result<()> {
        serde_json::to_writer(&mut self.buf, map).map_err(|e| {
            Error::message(format!(
                "chat_template_kwargs could not be written as JSON: {e}"
            ))
        })?;
        self.comma = true;
        Ok(())
    }
}

/// A value [`Writer::value`] writes.
enum ValueRef<'v> {
    Json(&'v Value),
    Int(u32),
}

impl<'v> From<&'v Value> for ValueRef<'v> {
    fn from(v: &'v Value) -> Self {
        ValueRef::Json(v)
    }
}

impl<'v> From<MaxTokens<'v>> for ValueRef<'v> {
    fn from(m: MaxTokens<'v>) -> Self {
        match m {
            MaxTokens::Option(n) => ValueRef::Int(n),
            MaxTokens::Caller(v) => ValueRef::Json(v),
        }
    }
}

/// Appends `s` as a JSON string: `"`, `\` and control characters escaped, everything else as is.
fn write_json_str(buf: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    buf.reserve(bytes.len() + 2);
    buf.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ],
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        buf.extend_from_slice(escape);
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_like_serde_json() {
        for s in [
            "",
            "plain",
            "q\"b\\s",
            "\n\r\t\u{8}\u{c}\u{1}\u{1f}",
            "é😀\u{2028}",
        ] {
            let mut buf = Vec::new();
            write_json_str(&mut buf, s);
            let back: String = serde_json::from_slice(&buf).unwrap_or_default();
            assert_eq!(back, s);
            assert_eq!(buf, serde_json::to_vec(s).unwrap_or_default());
        }
    }

    #[test]
    fn ids_are_written_with_itoa() {
        let mut w = Writer::with_capacity(0);
        w.ids(&[0, 7, u32::MAX]);
        assert_eq!(w.buf, b"[0,7,4294967295]");
        let mut w = Writer::with_capacity(0);
        w.ids(&[]);
        assert_eq!(w.buf, b"[]");
    }

    #[test]
    fn extra_body_merges_over_top_level_and_nulls_drop() {
        let sampling = serde_json::json!({
            "temperature": 1.0, "seed": null, "top_p": 0.5,
            "extra_body": {"top_p": 0.9, "min_p": null, "cache_salt": "s"}
        });
        let map = sampling.as_object().cloned().unwrap_or_default();
        let args = caller_args(&map).unwrap_or_default();
        let keys: Vec<_> = args.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["temperature", "top_p", "cache_salt"]);
        assert_eq!(get(&args, "top_p"), Some(&serde_json::json!(0.9)));
    }
}
