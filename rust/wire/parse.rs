//! Response parsers: one server response body (bytes) in, the turn's token ids, logprobs and
//! message out, for the wires of `docs/wire.md`.
//!
//! | [`Wire`] | route | shape |
//! |---|---|---|
//! | [`Wire::VllmChat`] | vLLM `/v1/chat/completions`, prime-rl `.../completions/tokens` | A.3 |
//! | [`Wire::VllmGenerate`] | vLLM `/inference/v1/generate` | B.2 |
//! | [`Wire::Dynamo`] | NVIDIA Dynamo `/v1/chat/completions` with `nvext` | C.2 |
//! | [`Wire::Sglang`] | SGLang native `/generate` | S |
//! | [`Wire::Chat`] | any OpenAI-compatible `/v1/chat/completions` | A.4 |
//!
//! Invariants every parser keeps:
//! * **Logprobs are 1:1 with the completion ids** (on [`Wire::Chat`], when the server sent ids:
//!   a plain OpenAI server's logprobs come without ids, [`IDS_NOT_SENT`]). A list of another length is a
//!   [`ErrorKind::Parse`](crate::ErrorKind::Parse) error naming both lengths, never a shorter or
//!   padded list (docs/wire.md D3: renderers' filter of non-dict entries silently misaligned
//!   them). A `null` logprob (or a `null` entry) is kept in place as NaN and counted in
//!   [`Parsed::null_logprobs`]. vLLM's `-9999.0` (its clamp of `-inf`, docs/wire.md A.3) is kept as
//!   is and counted in [`Parsed::clamped_logprobs`]: whether it is evidence is the trainer's call.
//! * **Token ids are `u32`.** A negative, fractional or too-large id is an error, never a cast.
//! * **Bounded input.** A body over [`ParseOptions::max_body_bytes`] is rejected before any
//!   parsing, and one nested deeper than [`ParseOptions::max_depth`] is an error before serde
//!   sees it (serde_json's own limit refuses the 128th level with a bare "recursion limit
//!   exceeded" syntax error; that error is still mapped to a typed one should it ever surface).
//! * **No panic on input.** Every malformed, truncated or mutated body gives a typed error whose
//!   message names what was expected, what was found with its JSON path, and what to do.
//!
//! Parsing is one pass of a hand-written scanner (`rust/wire/scan.rs`) over the body: ids go
//! straight into a `Vec<u32>`, logprobs into a `Vec<f64>` (no per-token `String`), every other
//! value is skipped and validated at memory speed with the nesting depth counted in the same
//! pass, and the few fields that are not hot (a message, `usage`, raw values) are read by serde
//! from their bytes. The scanner accepts a strict subset of JSON and reads it exactly as the
//! serde structs of each wire do; whatever it declines (malformed or unusual input: an escaped
//! key, a duplicate key, a value of the wrong type) is read by those serde structs, the
//! reference parser, after a depth scan (`Cx::read`): the errors, their paths and the limits
//! are the reference parser's. The opaque `routed_experts` blob is located, not decoded:
//! [`Parsed::routed_experts`] is its raw JSON and [`Parsed::routed_experts_span`] its byte range
//! in the body, so a binding can hand out a zero-copy slice (verifiers' memoryview splice,
//! docs/wire.md A.5).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::scan::{Bail, Scanner, S};
use super::Wire;
use crate::error::{Error, Result};

/// serde_json's recursion limit: it refuses the 128th nested array or object, so 127 levels is
/// the deepest body it parses. [`ParseOptions::max_depth`] is clamped to this.
pub const SERDE_JSON_MAX_DEPTH: usize = 127;

/// [`Parsed::completion_ids_from`] of a [`Wire::Chat`] answer that carries no token ids (a plain
/// OpenAI-compatible server): [`Parsed::completion_ids`] is empty, and logprobs, when sent, are
/// one per generated token without ids.
pub const IDS_NOT_SENT: &str = "<no token ids sent>";

/// Limits applied to a response body before it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// Bodies longer than this many bytes are rejected unread. Default 1 GiB: a `routed_experts`
    /// blob is base64 of `seq x layers x topk` bytes, hundreds of MB for long MoE rollouts.
    pub max_body_bytes: usize,
    /// Arrays and objects nested deeper than this are rejected (the top-level object is depth 1).
    /// Default 64; values above [`SERDE_JSON_MAX_DEPTH`] act as that.
    pub max_depth: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 30,
            max_depth: 64,
        }
    }
}

/// A `stop_reason`: vLLM's `int | str | None` (the stop token id or the stop string that ended
/// the turn, docs/wire.md A.3), or Dynamo's `nvext.stop_reason` (docs/wire.md C.2).
#[derive(Debug, Clone)]
pub enum StopReason {
    /// The stop token id.
    TokenId(u32),
    /// The stop string.
    Text(String),
    /// Any other JSON value, kept raw (Dynamo documents no schema for `nvext.stop_reason`).
    Other(Box<RawValue>),
}

impl PartialEq for StopReason {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (StopReason::TokenId(a), StopReason::TokenId(b)) => a == b,
            (StopReason::Text(a), StopReason::Text(b)) => a == b,
            (StopReason::Other(a), StopReason::Other(b)) => a.get() == b.get(),
            _ => false,
        }
    }
}

/// One tool call of the assistant message, as the server's tool parser produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedToolCall {
    /// `tool_calls[i].id`, if the server sent one.
    pub id: Option<String>,
    /// `tool_calls[i].function.name`.
    pub name: String,
    /// `tool_calls[i].function.arguments` exactly as sent: the decoded JSON string (itself JSON
    /// text, never re-serialized, so the next turn's prefix match sees the same bytes); a server
    /// that sends an object instead gets that object's raw JSON text.
    pub arguments: String,
}

/// `usage`, as reported by the server: an object (an array is refused, not read positionally).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "Obj<UsageFields>")]
pub struct Usage {
    /// `usage.prompt_tokens`.
    pub prompt_tokens: Option<u64>,
    /// `usage.completion_tokens`.
    pub completion_tokens: Option<u64>,
    /// `usage.total_tokens`.
    pub total_tokens: Option<u64>,
    /// `usage.prompt_tokens_details` (vLLM with `--enable-prompt-tokens-details`, Dynamo).
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// The keys of [`Usage`], read from an object only (see [`Obj`]).
#[derive(Deserialize)]
struct UsageFields {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptTokensDetails>,
}

impl From<Obj<UsageFields>> for Usage {
    fn from(Obj(u): Obj<UsageFields>) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
            prompt_tokens_details: u.prompt_tokens_details,
        }
    }
}

/// `usage.prompt_tokens_details`: the prefix-cache hits of the prompt (an object).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "Obj<DetailsFields>")]
pub struct PromptTokensDetails {
    /// `usage.prompt_tokens_details.cached_tokens`.
    pub cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct DetailsFields {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl From<Obj<DetailsFields>> for PromptTokensDetails {
    fn from(Obj(d): Obj<DetailsFields>) -> Self {
        Self {
            cached_tokens: d.cached_tokens,
        }
    }
}

/// A `T` read from a JSON object only. A derived struct also takes an array, filling its fields
/// by position (`"usage": [1, 2, 3]` read as three counters; a tool call `["id", {...}]`); a
/// shape the server never sends is refused with a typed error instead.
pub(crate) struct Obj<T>(pub(crate) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Obj)
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// What one response says about its first choice (`choices[0]`; further choices are skipped).
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The sampled token ids, stop token included when the engine sampled one (docs/wire.md A.3).
    pub completion_ids: Vec<u32>,
    /// The JSON path the ids were read from (Dynamo has three channels, docs/wire.md C.2), or
    /// [`IDS_NOT_SENT`] when a [`Wire::Chat`] server sent none.
    pub completion_ids_from: &'static str,
    /// One logprob per completion id, or `None` when the response carries no logprobs.
    /// `null` entries are NaN; vLLM's `-9999.0` clamp is kept as is. The one exception: a
    /// [`Wire::Chat`] answer without ids ([`Parsed::completion_ids_from`] is [`IDS_NOT_SENT`]),
    /// where they are one per generated token as `logprobs.content` lists them, with no ids.
    pub completion_logprobs: Option<Vec<f64>>,
    /// The JSON path the logprobs were read from, when there are logprobs.
    pub completion_logprobs_from: Option<&'static str>,
    /// How many logprobs were `null` (kept as NaN).
    pub null_logprobs: usize,
    /// How many logprobs were vLLM's `-9999.0` clamp of `-inf` (kept as is).
    pub clamped_logprobs: usize,
    /// The prompt ids the engine actually ran, when the response echoes them.
    pub prompt_ids: Option<Vec<u32>>,
    /// `finish_reason` as sent, except that `"stop"` becomes `"tool_calls"` when the message has
    /// tool calls (docs/wire.md B.2, vf #1289). `"length"` is never rewritten: it marks truncation.
    pub finish_reason: Option<String>,
    /// `stop_reason`, when sent and not `null`.
    pub stop_reason: Option<StopReason>,
    /// The assistant message's `content`.
    pub content: Option<String>,
    /// The assistant message's `reasoning_content`, else its `reasoning` (newer vLLM's name).
    pub reasoning_content: Option<String>,
    /// The assistant message's tool calls, in order (empty when there are none).
    pub tool_calls: Vec<ParsedToolCall>,
    /// [`Wire::Chat`] only: each tool call object exactly as sent, 1:1 with
    /// [`Parsed::tool_calls`], so that keys fasttito does not model (a provider's
    /// `extra_content`, an `index`) reach the next turn's messages unchanged; empty on the
    /// other wires.
    pub tool_calls_as_sent: Vec<Box<RawValue>>,
    /// `usage`, when sent.
    pub usage: Option<Usage>,
    /// [`Wire::Chat`] only: the `usage` object exactly as sent, every key kept (OpenAI's
    /// `completion_tokens_details`, a provider's own counters), for bindings that hand it on
    /// whole; `None` on the other wires and when the server sent no usage.
    pub usage_as_sent: Option<Box<RawValue>>,
    /// The `routed_experts` value, unparsed (docs/wire.md A.5, C.2), when sent and not `null`.
    pub routed_experts: Option<Box<RawValue>>,
    /// The byte range of [`Parsed::routed_experts`] inside the parsed body.
    pub routed_experts_span: Option<Range<usize>>,
    /// The response's `id` (chat) or `request_id` (generate).
    pub response_id: Option<String>,
    /// How many prompt tokens the engine found in its prefix cache, when it says (SGLang
    /// `meta_info.cached_tokens`; `usage.prompt_tokens_details.cached_tokens` elsewhere).
    pub cached_tokens: Option<u64>,
    /// Per completion token, the engine's top alternatives as (token id, logprob), in the
    /// engine's order; `None` when the response carries none, or names them by text only.
    pub completion_top_logprobs: Option<TopLogprobs>,
}

/// Top logprobs of every completion token, flat: token `i`'s alternatives are
/// `ids[offsets[i]..offsets[i + 1]]` with `logprobs` at the same positions (one allocation per
/// response, none per token).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopLogprobs {
    /// `len() == tokens + 1`, starting at 0.
    pub offsets: Vec<u32>,
    /// The alternatives' token ids.
    pub ids: Vec<u32>,
    /// The alternatives' logprobs (NaN for `null`).
    pub logprobs: Vec<f64>,
}

impl TopLogprobs {
    /// How many tokens the table covers.
    pub fn tokens(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Token `i`'s alternatives as (id, logprob) pairs.
    pub fn at(&self, i: usize) -> impl Iterator<Item = (u32, f64)> + '_ {
        let (a, b) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
        self.ids[a..b]
            .iter()
            .copied()
            .zip(self.logprobs[a..b].iter().copied())
    }
}

/// Parses one response body of `wire`.
///
/// The body is checked against `opts.max_body_bytes` first, then parsed in one scanner pass that
/// also bounds the nesting depth (the serde reference parser reads what the scanner declines).
/// Every failure is an [`ErrorKind::Parse`](crate::ErrorKind::Parse) error (SGLang's abort an
/// [`ErrorKind::Abort`](crate::ErrorKind::Abort) one).
pub fn parse_response(body: &[u8], wire: Wire, opts: &ParseOptions) -> Result<Parsed> {
    parse_via(body, wire, opts, Via::Both)
}

/// Which parser reads a body (tests compare them; [`parse_response`] uses [`Via::Both`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// The scanner, and the reference parser when the scanner declines.
    Both,
    /// The reference parser alone (depth scan, then serde).
    #[cfg_attr(not(test), allow(dead_code))]
    Reference,
    /// The scanner alone: a body it declines is an error saying so.
    #[cfg_attr(not(test), allow(dead_code))]
    Scanner,
}

/// [`parse_response`] through the parser(s) `via`.
pub(crate) fn parse_via(body: &[u8], wire: Wire, opts: &ParseOptions, via: Via) -> Result<Parsed> {
    if body.len() > opts.max_body_bytes {
        return Err(Error::parse(format!(
            "{} response is {} bytes, over the limit of {} bytes (ParseOptions.max_body_bytes, \
             Client max_body_bytes); raise the limit if the server legitimately sends bodies this large (routed_experts \
             blobs grow with sequence length)",
            wire.describe(),
            body.len(),
            opts.max_body_bytes
        )));
    }
    let cx = Cx {
        body,
        wire,
        limit: opts.max_depth.min(SERDE_JSON_MAX_DEPTH),
        via,
    };
    let mut out = match wire {
        Wire::VllmChat => super::vllm_chat::parse(cx),
        Wire::VllmGenerate => super::vllm_generate::parse(cx),
        Wire::Dynamo => super::nvext::parse(cx),
        Wire::Sglang => super::sglang::parse(cx),
        Wire::Chat => super::chat::parse(cx),
    }?;
    if out.cached_tokens.is_none() {
        out.cached_tokens = out
            .usage
            .and_then(|u| u.prompt_tokens_details)
            .and_then(|d| d.cached_tokens);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// The body being parsed and its wire, for error messages and spans.
#[derive(Clone, Copy)]
pub(crate) struct Cx<'b> {
    pub(crate) body: &'b [u8],
    pub(crate) wire: Wire,
    /// [`ParseOptions::max_depth`] clamped to [`SERDE_JSON_MAX_DEPTH`].
    pub(crate) limit: usize,
    /// Which parser reads the body.
    pub(crate) via: Via,
}

impl<'b> Cx<'b> {
    /// Reads the body into `T`: with the scanner's fast path `fast` (depth tracked in the same
    /// pass), and when it declines, with the reference parser: the depth check, then serde into
    /// `T`. Whatever `fast` accepts, the reference parser reads to the same `T`
    /// (`rust/wire/scan.rs`), so results and errors are the reference parser's.
    pub(crate) fn read<T: Deserialize<'b>>(
        self,
        fast: impl FnOnce(&mut Scanner<'b>) -> S<T>,
    ) -> Result<T> {
        if self.via != Via::Reference {
            let mut scanner = Scanner::new(self.body, self.limit);
            match scanner.document(fast) {
                Ok(v) => return Ok(v),
                Err(Bail) if self.via == Via::Scanner => {
                    return Err(self.error("the scanner declined the body"))
                }
                Err(Bail) => {}
            }
        }
        self.check_depth()?;
        self.from_body()
    }

    /// The error for a body nested deeper than the limit, found by a scan of the whole body.
    pub(crate) fn check_depth(self) -> Result<()> {
        let Some(at) = deeper_than(self.body, self.limit) else {
            return Ok(());
        };
        Err(Error::parse(format!(
            "{} response nests arrays/objects deeper than {} levels at `{}` (byte {}); expected \
             a shallow JSON object. {}; raise ParseOptions.max_depth (Python: max_depth, Client \
             max_json_depth; at most {}) if the depth is legitimate",
            self.wire.describe(),
            self.limit,
            path_at(self.body, at),
            at,
            self.wire.advice(),
            SERDE_JSON_MAX_DEPTH
        )))
    }

    /// Deserializes the whole body into `T`, mapping serde's error to a typed one with a path.
    // Takes `self`: it consumes the (Copy) context and reads its body, so `from_` is apt here.
    #[allow(clippy::wrong_self_convention)]
    pub(crate) fn from_body<T: Deserialize<'b>>(self) -> Result<T> {
        serde_json::from_slice(self.body).map_err(|e| self.json_error(&e))
    }

    /// A serde_json error as a Parse error: what went wrong, where (JSON path, line, column), and
    /// what to do.
    fn json_error(self, e: &serde_json::Error) -> Error {
        let offset = offset_of(self.body, e.line(), e.column());
        let path = path_at(self.body, offset);
        let text = e.to_string();
        // serde_json appends " at line L column C"; the position is restated below with the path.
        let detail = match text.rfind(" at line ") {
            Some(i) if e.line() > 0 => &text[..i],
            _ => text.as_str(),
        };
        let what = match e.classify() {
            serde_json::error::Category::Eof => "ends early (truncated body?)",
            serde_json::error::Category::Syntax if detail.contains("recursion limit") => {
                "nests too deep for serde_json"
            }
            serde_json::error::Category::Syntax => "is not valid JSON",
            serde_json::error::Category::Data => "has an unexpected value",
            serde_json::error::Category::Io => "could not be read",
        };
        Error::parse(format!(
            "{} response {what}: {detail} at `{path}` (line {}, column {}). {}",
            self.wire.describe(),
            e.line(),
            e.column(),
            self.wire.advice()
        ))
    }

    /// A Parse error about the response's content (not its JSON syntax).
    pub(crate) fn error(self, message: impl fmt::Display) -> Error {
        Error::parse(format!("{} response: {message}", self.wire.describe()))
    }

    /// The error for a body without `choices[0]`; quotes the server's error object if it sent one.
    pub(crate) fn no_choice(self, found: &str, server_error: Option<&RawValue>) -> Error {
        match server_error {
            Some(raw) => self.error(format_args!(
                "expected `choices[0]`, found {found}; the server sent an error instead of a \
                 completion: {}. Fix the request the server rejected",
                clip(raw.get(), 600)
            )),
            None => self.error(format_args!(
                "expected `choices[0]` (an object), found {found}. {}",
                self.wire.advice()
            )),
        }
    }

    /// The byte range of `raw` inside the body (`raw` was borrowed from it).
    pub(crate) fn span_of(self, raw: &RawValue) -> Option<Range<usize>> {
        let base = self.body.as_ptr() as usize;
        let start = (raw.get().as_ptr() as usize).checked_sub(base)?;
        let end = start.checked_add(raw.get().len())?;
        (end <= self.body.len()).then_some(start..end)
    }
}

/// `s` cut to at most `max` bytes on a char boundary, with an ellipsis when cut.
pub(super) fn clip(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}...", &s[..end]))
}

/// The byte offset of serde_json's (1-based line, 0-based column) position; the end of the body
/// when the position is unknown (line 0).
fn offset_of(body: &[u8], line: usize, column: usize) -> usize {
    if line == 0 {
        return body.len();
    }
    let mut start = 0;
    for _ in 1..line {
        match memchr::memchr(b'\n', &body[start..]) {
            Some(i) => start += i + 1,
            None => break,
        }
    }
    start.saturating_add(column).min(body.len())
}

/// Index just past the string whose opening quote is at `start - 1`, or the body's end for an
/// unterminated string. Jumps with memchr, so a multi-MB base64 blob costs little.
fn skip_string(body: &[u8], mut i: usize) -> usize {
    loop {
        let Some(rest) = body.get(i..) else {
            return body.len();
        };
        match memchr::memchr2(b'"', b'\\', rest) {
            None => return body.len(),
            Some(k) if rest[k] == b'\\' => i += k + 2,
            Some(k) => return i + k + 1,
        }
    }
}

/// The byte offset of the first array/object opened deeper than `limit`, if any. Strings are
/// skipped, so brackets inside them do not count. Needs no valid JSON: it only bounds nesting.
fn deeper_than(body: &[u8], limit: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => {
                i = skip_string(body, i + 1);
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The JSON path (`choices[0].logprobs.content[3]`) of the value being read at byte `offset`,
/// found by re-scanning the body up to there. Runs only when building an error message.
fn path_at(body: &[u8], offset: usize) -> String {
    enum Frame {
        Object { key: Option<Range<usize>> },
        Array { index: usize },
    }
    let end = offset.min(body.len());
    let mut stack: Vec<Frame> = Vec::new();
    let mut expect_key = false;
    let mut i = 0;
    while i < end {
        match body[i] {
            b'"' => {
                let close = skip_string(body, i + 1);
                if expect_key {
                    if let Some(Frame::Object { key }) = stack.last_mut() {
                        *key = Some(i + 1..close.saturating_sub(1).max(i + 1));
                    }
                    expect_key = false;
                }
                i = close;
                continue;
            }
            b'{' => {
                stack.push(Frame::Object { key: None });
                expect_key = true;
            }
            b'[' => {
                stack.push(Frame::Array { index: 0 });
                expect_key = false;
            }
            b']' | b'}' => {
                stack.pop();
                expect_key = false;
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array { index }) => *index += 1,
                Some(Frame::Object { .. }) => expect_key = true,
                None => {}
            },
            _ => {}
        }
        i += 1;
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object { key: Some(range) } => {
                if !path.is_empty() {
                    path.push('.');
                }
                let key = body.get(range.clone()).unwrap_or_default();
                path.push_str(&String::from_utf8_lossy(key));
            }
            Frame::Object { key: None } => {}
            Frame::Array { index } => {
                path.push('[');
                path.push_str(itoa::Buffer::new().format(*index));
                path.push(']');
            }
        }
        if path.len() > 300 {
            // keys are arbitrary text: cut on a char boundary (a cut inside a multi-byte
            // character panicked; found by fuzz/ parse_response)
            let mut cut = 300;
            while !path.is_char_boundary(cut) {
                cut -= 1;
            }
            path.truncate(cut);
            path.push_str("...");
            break;
        }
    }
    if path.is_empty() {
        path.push_str("<root>");
    }
    path
}

// ---------------------------------------------------------------------------------------------
// Shared wire pieces
// ---------------------------------------------------------------------------------------------

/// A list of token ids, each checked to fit `u32`.
#[derive(Debug, Default)]
pub(crate) struct Ids(pub(crate) Vec<u32>);

impl<'de> Deserialize<'de> for Ids {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ids;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of token ids (integers in 0..=4294967295)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ids, A::Error> {
                let mut ids = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(TokenId(id)) = seq.next_element()? {
                    ids.push(id);
                }
                Ok(Ids(ids))
            }
        }
        d.deserialize_seq(V)
    }
}

/// One token id: an integer in `0..=u32::MAX`.
pub(crate) struct TokenId(pub(crate) u32);

impl<'de> Deserialize<'de> for TokenId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TokenId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a token id (an integer in 0..=4294967295)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TokenId, E> {
                u32::try_from(v).map(TokenId).map_err(|_| {
                    E::custom(format_args!(
                        "token id {v} does not fit in u32 (expected an integer in 0..=4294967295)"
                    ))
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TokenId, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format_args!(
                        "negative token id {v} (expected an integer in 0..=4294967295)"
                    ))),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<TokenId, E> {
                Err(E::custom(format_args!(
                    "token id {v} is not an integer (expected an integer in 0..=4294967295)"
                )))
            }
        }
        d.deserialize_u64(V)
    }
}

/// Logprobs read into one `Vec<f64>`, `null` kept as NaN.
#[derive(Debug, Default)]
pub(crate) struct Logprobs {
    pub(crate) values: Vec<f64>,
    pub(crate) nulls: usize,
    /// For `token_id:N` checks (docs/wire.md B.2): per entry, the id its `token` names, `None` when
    /// the token is absent or not of that form. Empty unless collected.
    pub(crate) tokens: Vec<Option<u32>>,
    /// The first `token` that is not `token_id:<u32>`, with its index, for the error message.
    pub(crate) first_bad_token: Option<(usize, String)>,
    /// Every entry's `top_logprobs`, while each alternative names its id (`"token_id": N` or
    /// `"token": "token_id:N"`); cleared to `None` by the first one that does not.
    pub(crate) top: Option<TopLogprobs>,
    /// Whether any entry had a non-empty `top_logprobs` list.
    pub(crate) any_top: bool,
}

impl Logprobs {
    pub(crate) fn new() -> Self {
        Self {
            top: Some(TopLogprobs {
                offsets: vec![0],
                ..TopLogprobs::default()
            }),
            ..Self::default()
        }
    }

    /// Closes the current entry's list of alternatives.
    pub(crate) fn end_top(&mut self) {
        if let Some(top) = &mut self.top {
            let n = u32::try_from(top.ids.len()).unwrap_or(u32::MAX);
            top.offsets.push(n);
        }
    }

    /// The top logprobs, when some entry had any and all of them named their ids.
    pub(crate) fn take_top(&mut self) -> Option<TopLogprobs> {
        if self.any_top {
            self.top.take()
        } else {
            None
        }
    }

    /// How many values are vLLM's `-9999.0` clamp of `-inf` (docs/wire.md A.3).
    pub(crate) fn clamped(&self) -> usize {
        self.values
            .iter()
            .filter(|&&v| v == VLLM_LOGPROB_CLAMP)
            .count()
    }

    pub(crate) fn push(&mut self, v: Option<f64>) {
        match v {
            Some(v) => self.values.push(v),
            None => {
                self.values.push(f64::NAN);
                self.nulls += 1;
            }
        }
    }
}

/// vLLM writes `-inf` logprobs as this value (`ChatCompletionLogProbsContent.logprob` default,
/// docs/wire.md A.3). renderers 0.1.12 rejects it; fasttito keeps it and counts it.
pub const VLLM_LOGPROB_CLAMP: f64 = -9999.0;

/// A flat list of numbers-or-null (Dynamo `engine_data.completion_logprobs`, docs/wire.md C.2).
#[derive(Debug, Default)]
pub(crate) struct FloatList(pub(crate) Logprobs);

impl<'de> Deserialize<'de> for FloatList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FloatList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of logprobs (numbers or null)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FloatList, A::Error> {
                let mut out = Logprobs::default();
                while let Some(v) = seq.next_element::<Option<f64>>()? {
                    out.push(v);
                }
                Ok(FloatList(out))
            }
        }
        d.deserialize_seq(V)
    }
}

/// `logprobs.content`: a list of `{token, logprob, bytes, top_logprobs, ...}` entries of which
/// only `logprob` is kept (and `token` when `TOKENS`). A `null` entry counts as a `null` logprob
/// so the list stays 1:1 with the ids (docs/wire.md D3).
#[derive(Debug, Default)]
pub(crate) struct LogprobContent<const TOKENS: bool>(pub(crate) Logprobs);

impl<'de, const TOKENS: bool> Deserialize<'de> for LogprobContent<TOKENS> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const T: bool>;
        impl<'de, const T: bool> Visitor<'de> for V<T> {
            type Value = LogprobContent<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of logprob entries ({\"token\", \"logprob\", ...} objects)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Logprobs::new();
                loop {
                    let index = out.values.len();
                    match seq.next_element_seed(EntrySeed::<T> {
                        out: &mut out,
                        index,
                    })? {
                        Some(()) => {}
                        None => break,
                    }
                }
                Ok(LogprobContent(out))
            }
        }
        d.deserialize_seq(V::<TOKENS>)
    }
}

/// `choices[0].logprobs`: an object `{"content": [...] | null, ...}`, read as its `content`.
/// Objects only: a derived struct would also take an array positionally, and then prime-rl's
/// legacy flat list of floats (docs/wire.md B.2) would fail with a confusing message.
pub(crate) struct LogprobsObject<const TOKENS: bool>(pub(crate) Option<LogprobContent<TOKENS>>);

impl<'de, const TOKENS: bool> Deserialize<'de> for LogprobsObject<TOKENS> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const T: bool>;
        impl<'de, const T: bool> Visitor<'de> for V<T> {
            type Value = LogprobsObject<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a logprobs object {\"content\": [...]}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut content = None;
                while let Some(key) = map.next_key::<LogprobsField>()? {
                    match key {
                        LogprobsField::Content => content = map.next_value()?,
                        LogprobsField::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(LogprobsObject(content))
            }
        }
        d.deserialize_map(V::<TOKENS>)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum LogprobsField {
    Content,
    #[serde(other)]
    Other,
}

/// Reads one logprob entry into the shared [`Logprobs`], with no per-entry allocation.
struct EntrySeed<'o, const TOKENS: bool> {
    out: &'o mut Logprobs,
    index: usize,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum EntryField {
    Logprob,
    Token,
    TokenId,
    TopLogprobs,
    #[serde(other)]
    Other,
}

impl<'de, const TOKENS: bool> DeserializeSeed<'de> for EntrySeed<'_, TOKENS> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, const TOKENS: bool> Visitor<'de> for EntrySeed<'_, TOKENS> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a logprob entry (an object with a \"logprob\" number) or null")
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.out.push(None);
        self.out.end_top();
        if TOKENS {
            self.out.tokens.push(None);
            if self.out.first_bad_token.is_none() {
                self.out.first_bad_token = Some((self.index, "null entry".to_owned()));
            }
        }
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.visit_none()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut logprob: Option<Option<f64>> = None;
        // the id named by `"token": "token_id:N"` (prime-rl, older vLLM) and by `"token_id": N`
        // (vLLM >= 0.32 tokens mode): either may be present; both must then agree
        let mut tagged: Option<Option<u32>> = None;
        let mut numbered: Option<u32> = None;
        let mut bad: Option<String> = None;
        while let Some(field) = map.next_key::<EntryField>()? {
            match field {
                EntryField::Logprob => logprob = Some(map.next_value::<Option<f64>>()?),
                EntryField::Token if TOKENS => {
                    let tag = map.next_value::<TokenTag>()?;
                    tagged = Some(tag.id);
                    bad = tag.bad;
                }
                EntryField::TokenId if TOKENS => {
                    numbered = map.next_value::<Option<TokenId>>()?.map(|TokenId(id)| id);
                }
                EntryField::TopLogprobs => map.next_value_seed(TopSeed {
                    out: &mut *self.out,
                })?,
                EntryField::Token | EntryField::TokenId | EntryField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let Some(logprob) = logprob else {
            return Err(de::Error::custom(
                "logprob entry has no \"logprob\" key (expected {\"token_id\": ..., \"logprob\": \
                 <number or null>, ...})",
            ));
        };
        self.out.push(logprob);
        self.out.end_top();
        if TOKENS {
            let id = match (tagged, numbered) {
                (Some(Some(a)), Some(b)) if a != b => {
                    bad = Some(format!(
                        "\"token\": \"token_id:{a}\" with \"token_id\": {b}"
                    ));
                    None
                }
                (_, Some(b)) => Some(b),
                (Some(a), None) => a,
                (None, None) => {
                    bad = Some("neither a \"token_id\" nor a \"token\" key".to_owned());
                    None
                }
            };
            self.out.tokens.push(id);
            if id.is_none() && self.out.first_bad_token.is_none() {
                let found = bad.unwrap_or_else(|| "no \"token\" key".to_owned());
                self.out.first_bad_token = Some((self.index, found));
            }
        }
        Ok(())
    }
}

/// One entry's `top_logprobs`: a list (or `null`) of `{"token_id": N | "token": ..., "logprob"}`
/// appended to [`Logprobs::top`]. An alternative that does not name its id (a chat route
/// without `return_tokens_as_token_ids` labels them by text) drops the whole table.
struct TopSeed<'o> {
    out: &'o mut Logprobs,
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of top logprob entries or null")
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
        while let Some(alt) = seq.next_element::<TopEntry>()? {
            self.out.any_top = true;
            match (alt.id, &mut self.out.top) {
                (Some(id), Some(top)) => {
                    top.ids.push(id);
                    top.logprobs.push(alt.logprob.unwrap_or(f64::NAN));
                }
                (None, _) => self.out.top = None,
                (Some(_), None) => {}
            }
        }
        Ok(())
    }
}

/// One alternative of `top_logprobs`; `id` is `None` when it names its token by text only.
struct TopEntry {
    id: Option<u32>,
    logprob: Option<f64>,
}

impl<'de> Deserialize<'de> for TopEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a top logprob entry ({\"token_id\" or \"token\", \"logprob\"})")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopEntry, A::Error> {
                let mut out = TopEntry {
                    id: None,
                    logprob: None,
                };
                let mut tagged = None;
                while let Some(field) = map.next_key::<EntryField>()? {
                    match field {
                        EntryField::Logprob => out.logprob = map.next_value::<Option<f64>>()?,
                        EntryField::TokenId => {
                            out.id = map.next_value::<Option<TokenId>>()?.map(|TokenId(id)| id);
                        }
                        EntryField::Token => tagged = map.next_value::<TokenTag>()?.id,
                        EntryField::TopLogprobs | EntryField::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                out.id = out.id.or(tagged);
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// A logprob entry's `token`, read as the id of a `token_id:<id>` string (docs/wire.md B.2); the
/// string itself is only kept (allocated) when it is not of that form.
struct TokenTag {
    id: Option<u32>,
    bad: Option<String>,
}

impl<'de> Deserialize<'de> for TokenTag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TokenTag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a token string \"token_id:<id>\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<TokenTag, E> {
                let id = s
                    .strip_prefix("token_id:")
                    .filter(|digits| {
                        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
                    })
                    .and_then(|digits| digits.parse::<u32>().ok());
                Ok(match id {
                    Some(id) => TokenTag {
                        id: Some(id),
                        bad: None,
                    },
                    None => TokenTag {
                        id: None,
                        bad: Some(format!("{:?}", clip(s, 80))),
                    },
                })
            }
            fn visit_unit<E: de::Error>(self) -> Result<TokenTag, E> {
                Ok(TokenTag {
                    id: None,
                    bad: Some("null".to_owned()),
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Deserializes `choices` as its first element only; the rest are skipped unbuilt. `null`, and a
/// missing key (with `#[serde(default)]`), give `Choices::Absent`; `[]` gives `Choices::Empty`.
#[derive(Default)]
pub(crate) enum Choices<T> {
    #[default]
    Absent,
    Empty,
    First(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Choices<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Choices<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of choices")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Choices<T>, E> {
                Ok(Choices::Absent)
            }
            fn visit_none<E: de::Error>(self) -> Result<Choices<T>, E> {
                Ok(Choices::Absent)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Choices<T>, D::Error> {
                d.deserialize_seq(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Choices<T>, A::Error> {
                let Some(first) = seq.next_element::<T>()? else {
                    return Ok(Choices::Empty);
                };
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Choices::First(first))
            }
        }
        d.deserialize_option(V(PhantomData))
    }
}

/// A raw `stop_reason` turned into a [`StopReason`]; `None` for JSON `null`.
pub(crate) fn stop_reason(raw: Option<&RawValue>) -> Option<StopReason> {
    let raw = raw?;
    let text = raw.get();
    if text == "null" {
        return None;
    }
    if let Ok(id) = serde_json::from_str::<u32>(text) {
        return Some(StopReason::TokenId(id));
    }
    if let Ok(s) = serde_json::from_str::<String>(text) {
        return Some(StopReason::Text(s));
    }
    Some(StopReason::Other(raw.to_owned()))
}

/// The owned raw value and its span, unless it is absent or `null`.
pub(crate) fn routed(cx: Cx<'_>, raw: Option<&RawValue>) -> Option<(Box<RawValue>, Range<usize>)> {
    let raw = raw.filter(|r| r.get() != "null")?;
    let span = cx.span_of(raw)?;
    Some((raw.to_owned(), span))
}

/// Checks that `logprobs` has one value per id; names both lengths and both paths otherwise.
pub(crate) fn check_aligned(
    cx: Cx<'_>,
    ids: &[u32],
    ids_from: &str,
    logprobs: &Logprobs,
    logprobs_from: &str,
) -> Result<()> {
    if logprobs.values.len() == ids.len() {
        return Ok(());
    }
    Err(cx.error(format_args!(
        "expected one logprob per completion token id, found {} logprobs at `{logprobs_from}` \
         for {} ids at `{ids_from}`. The server's ids and logprobs disagree, so neither can be \
         trusted for training (docs/wire.md D3); report it to the server's maintainers{}",
        logprobs.values.len(),
        ids.len(),
        if cx.wire == Wire::Dynamo {
            " and request `nvext.extra_fields: [\"engine_data\"]` so that \
             `engine_data.completion_logprobs` is used (docs/wire.md C.2)"
        } else {
            ""
        }
    )))
}

/// Fills the logprob fields of `out` from `lp` read at `from`.
pub(crate) fn set_logprobs(out: &mut Parsed, lp: Logprobs, from: &'static str) {
    out.clamped_logprobs = lp.clamped();
    out.null_logprobs = lp.nulls;
    out.completion_logprobs = Some(lp.values);
    out.completion_logprobs_from = Some(from);
}

impl Parsed {
    /// A result with `completion_ids` read from `from` and nothing else set.
    pub(crate) fn new(completion_ids: Vec<u32>, from: &'static str) -> Self {
        Self {
            completion_ids,
            completion_ids_from: from,
            completion_logprobs: None,
            completion_logprobs_from: None,
            null_logprobs: 0,
            clamped_logprobs: 0,
            prompt_ids: None,
            finish_reason: None,
            stop_reason: None,
            content: None,
            reasoning_content: None,
            tool_calls: Vec::new(),
            tool_calls_as_sent: Vec::new(),
            usage: None,
            usage_as_sent: None,
            routed_experts: None,
            routed_experts_span: None,
            response_id: None,
            cached_tokens: None,
            completion_top_logprobs: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_scan_skips_strings_and_escapes() {
        assert_eq!(deeper_than(br#"{"a":"[[[[\"[["}"#, 1), None);
        assert_eq!(deeper_than(br#"{"a":[[1]]}"#, 3), None);
        assert_eq!(deeper_than(br#"{"a":[[1]]}"#, 2), Some(6));
        assert_eq!(deeper_than(br#"{"a":"\"#, 0), Some(0));
        assert_eq!(deeper_than(b"", 0), None);
    }

    #[test]
    fn path_at_names_keys_and_indices() {
        let body = br#"{"choices":[{"token_ids":[1,2,-3]}]}"#;
        let at = body.iter().position(|&b| b == b'-').unwrap_or(0);
        assert_eq!(path_at(body, at), "choices[0].token_ids[2]");
        assert_eq!(path_at(body, 0), "<root>");
        assert_eq!(path_at(br#"{"a\"b":["#, 9), "a\\\"b[0]");
    }

    #[test]
    fn offset_of_inverts_serde_positions() {
        let body = b"{\n  \"a\": x}";
        let e = serde_json::from_slice::<serde_json::Value>(body).err();
        let e = e.as_ref().map(|e| (e.line(), e.column())).unwrap_or((0, 0));
        assert_eq!(e.0, 2);
        // serde_json reports the position just past the offending byte (`x` is at 9).
        assert_eq!(offset_of(body, e.0, e.1), 10);
        assert_eq!(offset_of(body, 0, 0), body.len());
        assert_eq!(offset_of(body, 99, 99), body.len());
    }

    #[test]
    fn token_ids_reject_out_of_range() {
        let ok: Ids = serde_json::from_str("[0, 4294967295]").unwrap_or_default();
        assert_eq!(ok.0, vec![0, u32::MAX]);
        for bad in [
            "[4294967296]",
            "[-1]",
            "[1.5]",
            "[\"1\"]",
            "[null]",
            "[1e20]",
        ] {
            assert!(serde_json::from_str::<Ids>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_tags_parse_only_exact_form() {
        let tag = |s: &str| serde_json::from_str::<TokenTag>(s).ok().and_then(|t| t.id);
        assert_eq!(tag(r#""token_id:7""#), Some(7));
        assert_eq!(tag(r#""token_id:""#), None);
        assert_eq!(tag(r#""token_id:+7""#), None);
        assert_eq!(tag(r#""token_id:4294967296""#), None);
        assert_eq!(tag(r#""7""#), None);
    }

    #[test]
    fn logprob_entries_keep_nulls_in_place() {
        let lp: LogprobContent<false> = serde_json::from_str(
            r#"[{"logprob":-1.5},null,{"logprob":null,"x":[1]},{"logprob":-9999.0}]"#,
        )
        .unwrap_or_default();
        assert_eq!(lp.0.values.len(), 4);
        assert_eq!(lp.0.values[0], -1.5);
        assert!(lp.0.values[1].is_nan() && lp.0.values[2].is_nan());
        assert_eq!(lp.0.nulls, 2);
        assert_eq!(lp.0.clamped(), 1);
        assert!(serde_json::from_str::<LogprobContent<false>>(r#"[{"token":"a"}]"#).is_err());
        assert!(serde_json::from_str::<LogprobContent<false>>(r#"[{"logprob":"a"}]"#).is_err());
        assert!(serde_json::from_str::<LogprobContent<false>>(r#"[1]"#).is_err());
    }

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("héllo", 2), "h...");
        assert_eq!(clip("abc", 3), "abc");
    }
}
