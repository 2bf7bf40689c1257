//! SGLang native `POST /generate` responses (docs/wire.md S, recorded from SGLang 0.5.23).
//!
//! Reads `output_ids` (required), `meta_info.output_token_logprobs` (entries
//! `[logprob, token_id, text-or-null]`), `meta_info.output_top_logprobs` (per token a list of such
//! entries), `meta_info.finish_reason` (an object: `{"type": "stop", "matched": id|str}`,
//! `{"type": "length", "length": n}`, `{"type": "abort", "message", "status_code", "err_type"}`),
//! `meta_info.prompt_tokens`, `completion_tokens`, `cached_tokens`, `id` and `routed_experts`
//! (base64 of the raw tensor, passed through). `text` is skipped: it is absent with
//! `--skip-tokenizer-init` and omits the stop token, so the message is always decoded locally.
//!
//! Checks beyond the shared invariants:
//! * every logprob entry names the id at its position (`entry[1] == output_ids[i]`), the one
//!   cross-check this route offers that ids and logprobs are aligned;
//! * logprobs are finite numbers: a `null` (SGLang's JSON for NaN or infinity) is an error, as on
//!   vLLM's generate route (a sampled token has a finite logprob);
//! * `finish_reason.type == "abort"` is an [`ErrorKind::Abort`](crate::ErrorKind::Abort) error
//!   quoting the server's message, never a turn;
//! * a JSON array (what SGLang returns for a batch, a 2-D `input_ids`) is an error naming it.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::body::{
    arg_error, cache_salt, caller_args, estimate, get, max_tokens, priority, MaxTokens,
    RequestOptions, Writer,
};
use super::parse::{clip, routed, Cx, Ids, Logprobs, Parsed, StopReason, TopLogprobs, Usage};
use super::scan::{once, Scanner, S};
use crate::error::{Error, ErrorKind, Result};
use serde_json::{Map, Value};

const OUTPUT_IDS: &str = "output_ids";
const LOGPROBS: &str = "meta_info.output_token_logprobs";
const TOP_LOGPROBS: &str = "meta_info.output_top_logprobs";

#[derive(Deserialize)]
struct GenerateBody<'a> {
    #[serde(default)]
    output_ids: Option<Ids>,
    #[serde(default, borrow)]
    meta_info: Option<MetaInfo<'a>>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
    #[serde(default, borrow)]
    message: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct MetaInfo<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default, borrow)]
    finish_reason: Option<&'a RawValue>,
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    output_token_logprobs: Option<EntryList>,
    #[serde(default)]
    output_top_logprobs: Option<TopList>,
    #[serde(default, borrow)]
    routed_experts: Option<&'a RawValue>,
}

/// `meta_info.finish_reason` as SGLang writes it.
#[derive(Deserialize)]
struct FinishReason {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    matched: Option<Box<RawValue>>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status_code: Option<Box<RawValue>>,
    #[serde(default)]
    err_type: Option<Box<RawValue>>,
}

/// `[logprob, token_id, text-or-null]` entries, read into one [`Logprobs`] plus the ids.
#[derive(Default)]
struct EntryList {
    lp: Logprobs,
    ids: Vec<u32>,
    /// The first logprob that is a number but not finite, with its index.
    non_finite: Option<usize>,
}

impl<'de> Deserialize<'de> for EntryList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EntryList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of [logprob, token_id, text] entries")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EntryList, A::Error> {
                let mut out = EntryList::default();
                let hint = seq.size_hint().unwrap_or(0).min(1 << 16);
                out.lp.values.reserve(hint);
                out.ids.reserve(hint);
                while let Some(Entry(lp, id)) = seq.next_element()? {
                    push_entry(&mut out, lp, id);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V)
    }
}

fn push_entry(out: &mut EntryList, lp: Option<f64>, id: u32) {
    let v = lp.unwrap_or(f64::NAN); // `null`: no evidence, refused below like a non-finite value
    if !v.is_finite() && out.non_finite.is_none() {
        out.non_finite = Some(out.lp.values.len());
    }
    out.lp.values.push(v);
    out.ids.push(id);
}

/// One `[logprob, token_id, text-or-null, ...]` entry.
struct Entry(Option<f64>, u32);

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a logprob entry [logprob, token_id, text-or-null]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Entry, A::Error> {
                let lp: Option<f64> = seq.next_element()?.ok_or_else(|| {
                    de::Error::custom("empty logprob entry (expected [logprob, token_id, text])")
                })?;
                let Some(super::parse::TokenId(id)) = seq.next_element()? else {
                    return Err(de::Error::custom(
                        "logprob entry without a token id (expected [logprob, token_id, text])",
                    ));
                };
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Entry(lp, id))
            }
        }
        d.deserialize_seq(V)
    }
}

/// `output_top_logprobs`: per token, `null` or a list of entries, into one flat [`TopLogprobs`].
#[derive(Default)]
struct TopList(TopLogprobs);

impl<'de> Deserialize<'de> for TopList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list (one per output token) of lists of [logprob, token_id, text]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TopList, A::Error> {
                let mut out = TopLogprobs {
                    offsets: vec![0],
                    ..TopLogprobs::default()
                };
                while seq.next_element_seed(TopRow(&mut out))?.is_some() {
                    let end = u32::try_from(out.ids.len()).map_err(|_| {
                        de::Error::custom("more than 4294967295 top logprob entries")
                    })?;
                    out.offsets.push(end);
                }
                Ok(TopList(out))
            }
        }
        d.deserialize_seq(V)
    }
}

/// One token's alternatives, appended to the table: `null` (none asked) or a list of entries.
struct TopRow<'t>(&'t mut TopLogprobs);

impl<'de> DeserializeSeed<'de> for TopRow<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for TopRow<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("null or a list of [logprob, token_id, text] entries")
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(Entry(lp, id)) = seq.next_element()? {
            self.0.ids.push(id);
            self.0.logprobs.push(lp.unwrap_or(f64::NAN));
        }
        Ok(())
    }
}

/// The scanner's fast path to a [`GenerateBody`] (`rust/wire/scan.rs`): ids and logprob
/// entries read by the scanner, the other fields by serde from their bytes.
fn scan_body<'a>(s: &mut Scanner<'a>) -> S<GenerateBody<'a>> {
    let mut body = GenerateBody {
        output_ids: None,
        meta_info: None,
        error: None,
        message: None,
    };
    let mut seen = 0u8;
    s.object(|s, key| {
        match key {
            b"output_ids" => {
                once(&mut seen, 1)?;
                body.output_ids = s.opt_ids()?.map(Ids);
            }
            b"meta_info" => {
                once(&mut seen, 2)?;
                body.meta_info = if s.null()? { None } else { Some(scan_meta(s)?) };
            }
            b"error" => {
                once(&mut seen, 4)?;
                body.error = s.de()?;
            }
            b"message" => {
                once(&mut seen, 8)?;
                body.message = s.de()?;
            }
            _ => s.skip()?,
        }
        Ok(())
    })?;
    Ok(body)
}

fn scan_meta<'a>(s: &mut Scanner<'a>) -> S<MetaInfo<'a>> {
    let mut m = MetaInfo {
        id: None,
        finish_reason: None,
        prompt_tokens: None,
        completion_tokens: None,
        cached_tokens: None,
        output_token_logprobs: None,
        output_top_logprobs: None,
        routed_experts: None,
    };
    let mut seen = 0u8;
    s.object(|s, key| {
        match key {
            b"id" => {
                once(&mut seen, 1)?;
                m.id = s.de()?;
            }
            b"finish_reason" => {
                once(&mut seen, 2)?;
                m.finish_reason = s.de()?;
            }
            b"prompt_tokens" => {
                once(&mut seen, 4)?;
                m.prompt_tokens = s.de()?;
            }
            b"completion_tokens" => {
                once(&mut seen, 8)?;
                m.completion_tokens = s.de()?;
            }
            b"cached_tokens" => {
                once(&mut seen, 16)?;
                m.cached_tokens = s.de()?;
            }
            b"output_token_logprobs" => {
                once(&mut seen, 32)?;
                m.output_token_logprobs = if s.null()? {
                    None
                } else {
                    let mut out = EntryList::default();
                    s.array(|s, _| {
                        let (lp, id) = s.sglang_entry()?;
                        push_entry(&mut out, lp, id);
                        Ok(())
                    })?;
                    Some(out)
                };
            }
            b"output_top_logprobs" => {
                once(&mut seen, 64)?;
                m.output_top_logprobs = if s.null()? {
                    None
                } else {
                    Some(TopList(s.sglang_top()?))
                };
            }
            b"routed_experts" => {
                once(&mut seen, 128)?;
                m.routed_experts = s.de()?;
            }
            _ => s.skip()?,
        }
        Ok(())
    })?;
    Ok(m)
}

/// Parses an SGLang `/generate` body.
pub(crate) fn parse(cx: Cx<'_>) -> Result<Parsed> {
    if let Some(&first) = cx.body.iter().find(|b| !b.is_ascii_whitespace()) {
        if first == b'[' {
            // the depth limit is checked first, as for every other body
            cx.check_depth()?;
            return Err(cx.error(format_args!(
                "expected one JSON object, found a JSON array: SGLang answers a batch (a list \
                 of `input_ids` lists, or `n` > 1 with a list) with an array of results. \
                 fasttito sends one prompt per request; check that nothing rewrites \
                 `input_ids` into a list of lists and that `n` is not set in the sampling \
                 arguments (docs/wire.md S)"
            )));
        }
    }
    let body: GenerateBody<'_> = cx.read(scan_body)?;
    let Some(Ids(ids)) = body.output_ids else {
        let server_error = body.error.or(body.message);
        return Err(match server_error {
            Some(raw) => cx.error(format_args!(
                "expected `{OUTPUT_IDS}`, found none; the server sent an error instead of a \
                 completion: {}. Fix the request the server rejected",
                clip(raw.get(), 600)
            )),
            None => cx.error(format_args!(
                "expected the completion's token ids at `{OUTPUT_IDS}`, found none (absent or \
                 null). {}",
                cx.wire.advice()
            )),
        });
    };
    let mut out = Parsed::new(ids, OUTPUT_IDS);
    let Some(meta) = body.meta_info else {
        return Ok(out);
    };
    let finish = match meta.finish_reason {
        None => None,
        Some(raw) if raw.get() == "null" => None,
        Some(raw) => Some(finish_reason(cx, raw)?),
    };
    if let Some(entries) = meta.output_token_logprobs {
        let n = out.completion_ids.len();
        if entries.ids.len() != n {
            return Err(cx.error(format_args!(
                "expected one logprob per completion token id, found {} entries at \
                 `{LOGPROBS}` for {n} ids at `{OUTPUT_IDS}`. The server's ids and logprobs \
                 disagree, so neither can be trusted for training (docs/wire.md D3); report it to \
                 the server's maintainers",
                entries.ids.len()
            )));
        }
        if let Some(i) = entries
            .ids
            .iter()
            .zip(&out.completion_ids)
            .position(|(a, b)| a != b)
        {
            return Err(cx.error(format_args!(
                "expected `{LOGPROBS}[{i}][1]` to be {} (the id at `{OUTPUT_IDS}[{i}]`), found \
                 {}. The logprobs belong to other tokens than the ids, so the turn cannot be \
                 trained on; report it to the server's maintainers",
                out.completion_ids[i], entries.ids[i]
            )));
        }
        if let Some(i) = entries.non_finite {
            let v = entries.lp.values[i];
            return Err(cx.error(format_args!(
                "expected `{LOGPROBS}[{i}][0]` to be the finite logprob of the sampled token {}, \
                 found {}. A sampled token has a finite logprob; this one carries no evidence to \
                 train on; report it to the server's maintainers",
                entries.ids[i],
                if v.is_nan() {
                    "null".to_owned()
                } else {
                    v.to_string()
                }
            )));
        }
        out.completion_logprobs = Some(entries.lp.values);
        out.completion_logprobs_from = Some(LOGPROBS);
    }
    if let Some(TopList(top)) = meta.output_top_logprobs {
        // SGLang sends the key with `null` rows when no alternatives were asked.
        if !top.ids.is_empty() {
            if top.tokens() != out.completion_ids.len() {
                return Err(cx.error(format_args!(
                    "expected one row of top logprobs per completion token id, found {} rows \
                     at `{TOP_LOGPROBS}` for {} ids at `{OUTPUT_IDS}`; report it to the \
                     server's maintainers",
                    top.tokens(),
                    out.completion_ids.len()
                )));
            }
            out.completion_top_logprobs = Some(top);
        }
    }
    if let Some((kind, matched)) = finish {
        out.finish_reason = Some(kind);
        out.stop_reason = matched;
    }
    out.cached_tokens = meta.cached_tokens;
    if meta.prompt_tokens.is_some() || meta.completion_tokens.is_some() {
        out.usage = Some(Usage {
            prompt_tokens: meta.prompt_tokens,
            completion_tokens: meta.completion_tokens,
            total_tokens: meta
                .prompt_tokens
                .zip(meta.completion_tokens)
                .and_then(|(p, c)| p.checked_add(c)),
            prompt_tokens_details: None,
        });
    }
    out.response_id = meta.id;
    if let Some((raw, span)) = routed(cx, meta.routed_experts) {
        out.routed_experts = Some(raw);
        out.routed_experts_span = Some(span);
    }
    Ok(out)
}

/// `("stop" | "length" | other type, matched)`; an abort is an error with the server's message.
fn finish_reason(cx: Cx<'_>, raw: &RawValue) -> Result<(String, Option<StopReason>)> {
    // Older SGLang and some proxies write the plain OpenAI string.
    if let Ok(s) = serde_json::from_str::<String>(raw.get()) {
        return match s.as_str() {
            "abort" => Err(abort_error(cx, None, None, None)),
            _ => Ok((s, None)),
        };
    }
    let fr: FinishReason = serde_json::from_str(raw.get()).map_err(|e| {
        cx.error(format_args!(
            "expected `meta_info.finish_reason` to be an object {{\"type\": \"stop\" | \
             \"length\" | \"abort\", ...}}, found {} ({e}). {}",
            clip(raw.get(), 200),
            cx.wire.advice()
        ))
    })?;
    if fr.kind == "abort" {
        return Err(abort_error(
            cx,
            fr.message.as_deref(),
            fr.status_code.as_deref(),
            fr.err_type.as_deref(),
        ));
    }
    let matched = super::parse::stop_reason(fr.matched.as_deref());
    Ok((fr.kind, matched))
}

fn abort_error(
    cx: Cx<'_>,
    message: Option<&str>,
    status: Option<&RawValue>,
    err_type: Option<&RawValue>,
) -> Error {
    let mut extra = String::new();
    if let Some(s) = status.filter(|s| s.get() != "null") {
        extra.push_str(&format!(", status_code {}", clip(s.get(), 40)));
    }
    if let Some(t) = err_type.filter(|t| t.get() != "null") {
        extra.push_str(&format!(", err_type {}", clip(t.get(), 80)));
    }
    Error::new(
        ErrorKind::Abort,
        format!(
            "{} response: the engine aborted the request (finish_reason type \"abort\"{extra}): \
             {}. The turn has no usable completion; the server's message says why (a request \
             over the server's limits, a scheduler abort, the server shutting down or pausing \
             for a weight update). Retry the turn or end the rollout",
            cx.wire.describe(),
            message.map_or_else(|| "no message".into(), |m| clip(m, 600))
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// The request body
// ---------------------------------------------------------------------------------------------

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

/// `POST /generate` on SGLang (docs/wire.md S;
/// `sglang/srt/managers/io_struct.py::GenerateReqInput`).
///
/// `{"input_ids": [...], "sampling_params": {"max_new_tokens", ...caller's sampling keys...,
/// "stop_token_ids", "skip_special_tokens": false, "no_stop_trim": true}, "return_logprob": true,
/// "logprob_start_len": -1, "top_logprobs_num"?, "rid"?, "cache_salt"?, "priority"?,
/// ...caller's other keys...}`
///
/// * `max_tokens`, `max_completion_tokens` and `max_new_tokens` become `max_new_tokens`
///   ([`RequestOptions::max_tokens`] first);
/// * `seed` becomes `sampling_seed` (SGLang's name);
/// * the caller's keys that are SGLang `SamplingParams` fields go into `sampling_params`
///   (SGLang builds `SamplingParams(**sampling_params)` and rejects unknown names there); every
///   other key goes to the root, where `GenerateReqInput` ignores what it does not know;
/// * `stop_token_ids` are the tokenizer's ([`RequestOptions::stop_token_ids`]), replacing the
///   caller's; `skip_special_tokens` is `false` and `no_stop_trim` `true` unless the caller set
///   them, so the stop token stays in `output_ids` and the decoded text;
/// * `return_logprob: true` with `logprob_start_len: -1` (output tokens only) is always sent;
///   `top_logprobs_num` is [`RequestOptions::top_logprobs`], else the caller's
///   `top_logprobs_num`, integer `logprobs` or `top_logprobs`, when above 0;
/// * `request_id` becomes `rid`; `cache_salt` and `priority` go to the root;
/// * `n` other than 1 is refused (SGLang answers a list, one turn needs one completion), and the
///   keys of other wires are dropped (`model`, `messages`, `tools`, `tool_choice`, `tokens`,
///   `token_ids`, `stream`, `stream_options`, `return_token_ids`, `chat_template_kwargs`,
///   `nvext`, `kv_transfer_params`, `routed_experts_prompt_start`, `truncate_prompt_tokens`).
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
        Some(n) => Some(MaxTokens::Option(n)),
        None => get(&args, "max_new_tokens")
            .map(MaxTokens::Caller)
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
    use crate::error::ErrorKind;
    use crate::wire::{parse_response, ParseOptions, StopReason, Wire};

    fn parse(body: &str) -> crate::Result<crate::wire::Parsed> {
        parse_response(body.as_bytes(), Wire::Sglang, &ParseOptions::default())
    }

    #[test]
    fn recorded_shape() {
        let p = parse(
            r#"{"text":"SmolLAM","output_ids":[67,93,2],"meta_info":{"id":"6f75","finish_reason":{"type":"stop","matched":2},"prompt_tokens":36,"output_token_logprobs":[[-3.01,67,null],[-0.51,93,null],[-1.2,2,null]],"output_top_logprobs":[[[-3.01,67,null],[-3.09,49,null]],[[-0.51,93,null]],[[-1.2,2,null]]],"completion_tokens":3,"cached_tokens":35,"cached_tokens_details":null}}"#,
        );
        let p = p.map_err(|e| e.text().to_owned());
        assert!(p.is_ok(), "{p:?}");
        let Ok(p) = p else { return };
        assert_eq!(p.completion_ids, vec![67, 93, 2]);
        assert_eq!(p.completion_logprobs, Some(vec![-3.01, -0.51, -1.2]));
        assert_eq!(p.finish_reason.as_deref(), Some("stop"));
        assert_eq!(p.stop_reason, Some(StopReason::TokenId(2)));
        assert_eq!(p.cached_tokens, Some(35));
        assert_eq!(p.response_id.as_deref(), Some("6f75"));
        let top = p.completion_top_logprobs.unwrap_or_default();
        assert_eq!(top.tokens(), 3);
        assert_eq!(
            top.at(0).collect::<Vec<_>>(),
            vec![(67, -3.01), (49, -3.09)]
        );
        assert_eq!(top.at(1).collect::<Vec<_>>(), vec![(93, -0.51)]);
        assert_eq!(p.usage.and_then(|u| u.total_tokens), Some(39));
    }

    #[test]
    fn misaligned_and_mislabelled_logprobs_fail() {
        let short =
            parse(r#"{"output_ids":[1,2],"meta_info":{"output_token_logprobs":[[-1,1,null]]}}"#);
        let text = short.err().map(|e| e.text().to_owned()).unwrap_or_default();
        assert!(
            text.contains("found 1 entries") && text.contains("for 2 ids"),
            "{text}"
        );
        let wrong = parse(
            r#"{"output_ids":[1,2],"meta_info":{"output_token_logprobs":[[-1,1,null],[-1,3,null]]}}"#,
        );
        let text = wrong.err().map(|e| e.text().to_owned()).unwrap_or_default();
        assert!(
            text.contains("output_token_logprobs[1][1]") && text.contains("found 3"),
            "{text}"
        );
    }

    #[test]
    fn abort_is_typed_with_the_message() {
        let e = parse(
            r#"{"output_ids":[],"meta_info":{"finish_reason":{"type":"abort","message":"Abort before prefill","status_code":400,"err_type":"BadRequestError"}}}"#,
        )
        .err();
        assert_eq!(e.as_ref().map(|e| e.kind()), Some(ErrorKind::Abort));
        let text = e.map(|e| e.text().to_owned()).unwrap_or_default();
        assert!(
            text.contains("Abort before prefill") && text.contains("status_code 400"),
            "{text}"
        );
    }

    #[test]
    fn batch_array_is_an_error() {
        let text = parse(r#" [{"output_ids":[1]}]"#)
            .err()
            .map(|e| e.text().to_owned())
            .unwrap_or_default();
        assert!(text.contains("JSON array"), "{text}");
    }

    #[test]
    fn length_and_null_rows() {
        let p = parse(
            r#"{"output_ids":[5],"meta_info":{"finish_reason":{"type":"length","length":1},"output_token_logprobs":[[-0.5,5,null]],"output_top_logprobs":[null]}}"#,
        )
        .map_err(|e| e.text().to_owned());
        let Ok(p) = p else {
            panic!("{p:?}");
        };
        assert_eq!(p.finish_reason.as_deref(), Some("length"));
        assert!(p.completion_top_logprobs.is_none());
        assert!(p.stop_reason.is_none());
        let null =
            parse(r#"{"output_ids":[5],"meta_info":{"output_token_logprobs":[[null,5,null]]}}"#);
        let text = null.err().map(|e| e.text().to_owned()).unwrap_or_default();
        assert!(
            text.contains("finite logprob of the sampled token 5, found null"),
            "{text}"
        );
    }
}

#[cfg(test)]
mod body_tests {
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
