//! vLLM `/inference/v1/generate` responses (docs/wire.md B.2, vLLM >= 0.20 "Tokens IN <> Tokens
//! OUT").
//!
//! Reads `choices[0].token_ids` (required), `choices[0].logprobs.content[]`, top-level
//! `prompt_token_ids`, `finish_reason`, `stop_reason`, `usage`, `request_id` and
//! `choices[0].routed_experts` (docs/wire.md A.5, passed through). There is no message: the route
//! returns ids only, so `content`, `reasoning_content` and `tool_calls` stay empty and
//! `finish_reason` is never `"tool_calls"` (the caller promotes it after parsing tool calls out
//! of the ids, as renderers does).
//!
//! Each logprob entry names the id it belongs to, in one of two shapes: `"token": "token_id:<id>"`
//! (prime-rl's server and vLLM before 0.32; renderers 0.1.12 `_parse_completion_logprobs`) or
//! `"token_id": <id>` with a `rank` (upstream vLLM 0.32's tokens mode, measured on a running
//! server: docs/wire.md B.2). That id must equal the completion id at the same position: it is the
//! one cross-check this route offers that ids and logprobs are aligned. Every logprob must be a
//! finite number other than vLLM's `-9999.0` clamp of `-inf`: a sampled token always has a finite
//! logprob, so anything else is not evidence to train on.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::body::{
    cache_salt, caller_args, estimate, get, max_tokens, priority, RequestOptions, Writer,
};
use super::parse::{
    check_aligned, routed, set_logprobs, stop_reason, Choices, Cx, Ids, LogprobContent,
    LogprobsObject, Parsed, Usage, VLLM_LOGPROB_CLAMP,
};
use super::scan::{once, Scanner, S};
use crate::error::Result;

const TOKEN_IDS: &str = "choices[0].token_ids";
const LOGPROBS: &str = "choices[0].logprobs.content";

#[derive(Deserialize)]
struct GenerateBody<'a> {
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default, borrow)]
    choices: Choices<GenerateChoice<'a>>,
    #[serde(default)]
    prompt_token_ids: Option<Ids>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
    #[serde(default, borrow)]
    message: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct GenerateChoice<'a> {
    #[serde(default)]
    token_ids: Option<Ids>,
    #[serde(default)]
    logprobs: Option<LogprobsObject<true>>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default, borrow)]
    stop_reason: Option<&'a RawValue>,
    #[serde(default, borrow)]
    routed_experts: Option<&'a RawValue>,
}

/// The scanner's fast path to a [`GenerateBody`] (`rust/wire/scan.rs`): ids and logprobs read
/// by the scanner, the other fields by serde from their bytes.
fn scan_body<'a>(s: &mut Scanner<'a>) -> S<GenerateBody<'a>> {
    let mut body = GenerateBody {
        request_id: None,
        choices: Choices::Absent,
        prompt_token_ids: None,
        usage: None,
        error: None,
        message: None,
    };
    let mut seen = 0u8;
    s.object(|s, key| {
        match key {
            b"choices" => {
                once(&mut seen, 1)?;
                body.choices = match s.first_choice(scan_choice)? {
                    None => Choices::Absent,
                    Some(None) => Choices::Empty,
                    Some(Some(c)) => Choices::First(c),
                };
            }
            b"prompt_token_ids" => {
                once(&mut seen, 2)?;
                body.prompt_token_ids = s.opt_ids()?.map(Ids);
            }
            b"request_id" => {
                once(&mut seen, 4)?;
                body.request_id = s.de()?;
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
            _ => s.skip()?,
        }
        Ok(())
    })?;
    Ok(body)
}

fn scan_choice<'a>(s: &mut Scanner<'a>) -> S<GenerateChoice<'a>> {
    let mut c = GenerateChoice {
        token_ids: None,
        logprobs: None,
        finish_reason: None,
        stop_reason: None,
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
                c.logprobs = s.logprobs_object::<true>()?;
            }
            b"finish_reason" => {
                once(&mut seen, 4)?;
                c.finish_reason = s.de()?;
            }
            b"stop_reason" => {
                once(&mut seen, 8)?;
                c.stop_reason = s.de()?;
            }
            b"routed_experts" => {
                once(&mut seen, 16)?;
                c.routed_experts = s.de()?;
            }
            _ => s.skip()?,
        }
        Ok(())
    })?;
    Ok(c)
}

/// Parses a vLLM `/inference/v1/generate` body.
pub(crate) fn parse(cx: Cx<'_>) -> Result<Parsed> {
    let body: GenerateBody<'_> = cx.read(scan_body)?;
    let server_error = body.error.or(body.message);
    let choice = match body.choices {
        Choices::First(choice) => choice,
        Choices::Empty => return Err(cx.no_choice("an empty `choices` list", server_error)),
        Choices::Absent => return Err(cx.no_choice("no `choices`", server_error)),
    };
    let Some(Ids(ids)) = choice.token_ids else {
        return Err(cx.error(format_args!(
            "expected the completion's token ids at `{TOKEN_IDS}`, found none (absent or null). \
             {}",
            cx.wire.advice()
        )));
    };
    let mut out = Parsed::new(ids, TOKEN_IDS);
    if let Some(LogprobContent(lp)) = choice.logprobs.and_then(|l| l.0) {
        check_aligned(cx, &out.completion_ids, TOKEN_IDS, &lp, LOGPROBS)?;
        if let Some((i, found)) = &lp.first_bad_token {
            return Err(cx.error(format_args!(
                "expected `{LOGPROBS}[{i}]` to name token id {} (`\"token_id\": {}` or \
                 `\"token\": \"token_id:{}\"`), found {found}. The generate route labels \
                 every logprob with its token id; send requests to vLLM's \
                 /inference/v1/generate (docs/wire.md)",
                out.completion_ids[*i], out.completion_ids[*i], out.completion_ids[*i]
            )));
        }
        if let Some(i) = lp
            .tokens
            .iter()
            .zip(&out.completion_ids)
            .position(|(tag, id)| *tag != Some(*id))
        {
            return Err(cx.error(format_args!(
                "expected `{LOGPROBS}[{i}]` to name token id {} (the id at `{TOKEN_IDS}[{i}]`), \
                 found token id {}. The logprobs belong to other tokens than the ids, so the \
                 turn cannot be trained on; report it to the server's maintainers",
                out.completion_ids[i],
                lp.tokens[i].unwrap_or_default()
            )));
        }
        if let Some(i) = lp
            .values
            .iter()
            .position(|v| !v.is_finite() || *v == VLLM_LOGPROB_CLAMP)
        {
            let v = lp.values[i];
            let found = if v.is_nan() {
                "null".to_owned()
            } else {
                format!("{v}")
            };
            return Err(cx.error(format_args!(
                "expected `{LOGPROBS}[{i}].logprob` to be the finite logprob of the sampled \
                 token {}, found {found}{}. A sampled token has a finite logprob; this one \
                 carries no evidence to train on; report it to the server's maintainers",
                out.completion_ids[i],
                if v == VLLM_LOGPROB_CLAMP {
                    " (vLLM's clamp of -inf)"
                } else {
                    ""
                }
            )));
        }
        let mut lp = lp;
        out.completion_top_logprobs = lp.take_top();
        set_logprobs(&mut out, lp, LOGPROBS);
    }
    out.prompt_ids = body.prompt_token_ids.map(|Ids(ids)| ids);
    out.usage = body.usage;
    out.response_id = body.request_id;
    out.finish_reason = choice.finish_reason;
    out.stop_reason = stop_reason(choice.stop_reason);
    if let Some((raw, span)) = routed(cx, choice.routed_experts) {
        out.routed_experts = Some(raw);
        out.routed_experts_span = Some(span);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The request body
// ---------------------------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use crate::wire::{parse_response, ParseOptions, Wire};

    fn parse(body: &str) -> crate::Result<crate::wire::Parsed> {
        parse_response(
            body.as_bytes(),
            Wire::VllmGenerate,
            &ParseOptions::default(),
        )
    }

    #[test]
    fn token_tags_checked_positionally() {
        let ok = parse(
            r#"{"choices":[{"token_ids":[7,8],"logprobs":{"content":[{"token":"token_id:7","logprob":-0.1},{"token":"token_id:8","logprob":-0.2}]}}]}"#,
        );
        assert!(ok.is_ok());
        let swapped = parse(
            r#"{"choices":[{"token_ids":[7,8],"logprobs":{"content":[{"token":"token_id:8","logprob":-0.1},{"token":"token_id:7","logprob":-0.2}]}}]}"#,
        );
        let text = swapped
            .err()
            .map(|e| e.text().to_owned())
            .unwrap_or_default();
        assert!(
            text.contains("content[0]`") && text.contains("token id 7"),
            "{text}"
        );
    }

    fn err(body: &str) -> String {
        parse(body)
            .err()
            .map(|e| e.text().to_owned())
            .unwrap_or_default()
    }

    #[test]
    fn tokens_mode_entries_name_their_ids() {
        // vLLM 0.32 upstream: `token_id` + `rank`, no `token` key
        let p = parse(
            r#"{"output_mode":"tokens","choices":[{"token_ids":[504,2],"logprobs":{"content":[
                {"token_id":504,"logprob":-1.5,"rank":1,"top_logprobs":[{"token_id":504,"logprob":-1.5,"rank":1},{"token_id":9,"logprob":-2.5,"rank":2}]},
                {"token_id":2,"logprob":-0.25,"rank":3,"top_logprobs":[{"token_id":7,"logprob":-0.1,"rank":1},{"token_id":8,"logprob":-0.2,"rank":2}]}]}}]}"#,
        )
        .unwrap();
        assert_eq!(p.completion_logprobs, Some(vec![-1.5, -0.25]));
        let top = p.completion_top_logprobs.unwrap();
        assert_eq!(top.tokens(), 2);
        assert_eq!(top.at(0).collect::<Vec<_>>(), vec![(504, -1.5), (9, -2.5)]);
        assert_eq!(top.at(1).collect::<Vec<_>>(), vec![(7, -0.1), (8, -0.2)]);
        let shifted = err(
            r#"{"choices":[{"token_ids":[7,8],"logprobs":{"content":[{"token_id":7,"logprob":-0.1},{"token_id":9,"logprob":-0.2}]}}]}"#,
        );
        assert!(
            shifted.contains("content[1]`") && shifted.contains("token id 8"),
            "{shifted}"
        );
        let both = err(
            r#"{"choices":[{"token_ids":[7],"logprobs":{"content":[{"token":"token_id:7","token_id":8,"logprob":-0.1}]}}]}"#,
        );
        assert!(both.contains("token_id:7") && both.contains("8"), "{both}");
        let none =
            err(r#"{"choices":[{"token_ids":[7],"logprobs":{"content":[{"logprob":-0.1}]}}]}"#);
        assert!(none.contains("neither"), "{none}");
    }

    #[test]
    fn logprobs_must_be_finite_evidence() {
        // (JSON has no infinities: 1e999 is already a JSON error)
        for (lp, what) in [("null", "null"), ("-9999.0", "clamp")] {
            let e = err(&format!(
                r#"{{"choices":[{{"token_ids":[7,8],"logprobs":{{"content":[{{"token_id":7,"logprob":-0.5}},{{"token_id":8,"logprob":{lp}}}]}}}}]}}"#
            ));
            assert!(
                e.contains("content[1].logprob") && e.contains("finite"),
                "{what}: {e}"
            );
        }
    }

    #[test]
    fn labelled_top_logprobs_are_read() {
        let p = parse(
            r#"{"choices":[{"token_ids":[7],"logprobs":{"content":[{"token":"token_id:7","logprob":-0.1,"top_logprobs":[{"token":"token_id:7","logprob":-0.1},{"token":"token_id:3","logprob":-3.0}]}]}}]}"#,
        )
        .unwrap();
        let top = p.completion_top_logprobs.unwrap();
        assert_eq!(top.at(0).collect::<Vec<_>>(), vec![(7, -0.1), (3, -3.0)]);
        // no top_logprobs anywhere: None, not a table of empty lists
        let p = parse(
            r#"{"choices":[{"token_ids":[7],"logprobs":{"content":[{"token_id":7,"logprob":-0.1}]}}]}"#,
        )
        .unwrap();
        assert!(p.completion_top_logprobs.is_none());
    }

    #[test]
    fn null_entry_is_a_bad_token() {
        let e = parse(r#"{"choices":[{"token_ids":[7],"logprobs":{"content":[null]}}]}"#);
        let text = e.err().map(|e| e.text().to_owned()).unwrap_or_default();
        assert!(text.contains("null entry"), "{text}");
    }

    #[test]
    fn null_logprobs_mean_none() {
        let p = parse(r#"{"choices":[{"token_ids":[7],"logprobs":null}]}"#);
        assert!(p.map(|p| p.completion_logprobs.is_none()).unwrap_or(false));
    }
}
