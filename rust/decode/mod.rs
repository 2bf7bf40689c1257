//! Completion decoding: the assistant message a model wrote, recovered from its sampled ids.
//!
//! Engines that return only token ids (vLLM `/inference/v1/generate`, NVIDIA Dynamo without a
//! message) leave it to the client to turn a completion into the assistant message that goes into
//! the conversation: `content`, `reasoning_content` and `tool_calls`. Each model family writes
//! tool calls and reasoning in its own grammar ([`Family`]); one file per grammar parses it.
//!
//! Invariants:
//! * **Re-render.** The returned [`DecodedTurn::message`] is built so that the family's chat
//!   template, rendering the conversation with that message appended, writes the sampled text
//!   again: separators the template adds itself (Qwen's `\n` before `<tool_call>`, Qwen3's
//!   `<think>\n…\n</think>\n\n`) are removed, arguments are given in the form the template
//!   prints them (a dict where the template applies `tojson` or iterates them; the sampled JSON
//!   string where DeepSeek concatenates it). Where a template cannot express what was sampled
//!   (text after a tool call, a non-canonical JSON spacing, Harmony's `to=` in the channel header)
//!   the message keeps every piece of information but the re-render differs; each family file
//!   lists these cases. TITO itself never depends on it: the engine is sent the sampled ids.
//! * **Nothing dropped, nothing guessed.** A tool call that does not parse completely (truncated
//!   JSON, a missing closing tag, unknown keys, an id the template would reject) is left in
//!   `content` verbatim and counted in [`DecodedTurn::unparsed_tool_calls`]; it never becomes a
//!   partial call. Text that is not a tool call is content; only whitespace the template writes
//!   itself (between tool calls, around content it prints trimmed) is discarded. Text sampled
//!   after a tool call is moved into the content, since templates print content first.
//! * **Stop and special tokens.** One trailing stop id (the tokenizer's, plus the family's
//!   end-of-turn tokens) is excluded. Special tokens (added tokens marked `special`) are skipped
//!   in content and reasoning, as `decode(skip_special_tokens=True)` does; they are kept only
//!   inside an unparsed tool call, which is kept verbatim.
//! * **Tool-call ids.** Mistral writes its 9-character id in the text and it is kept. The other
//!   formats carry no id, so ids are generated deterministically: `call_<i>`, where `i` is the
//!   call's index in the completion (0, 1, ...); a Mistral call without an id gets
//!   `call<i:05>` (`call00000`), the 9 alphanumerics its template requires. Ids therefore repeat
//!   across turns; a tool result refers to the calls of the turn just before it.
//! * **Reasoning.** `<think>…</think>` is split off (grammar in `think.rs`) for DeepSeek, and for the
//!   Qwen families and unknown templates only when the chat template renders
//!   `reasoning_content`: a template that ignores the field (Qwen2.5, Qwen3-Coder) would lose
//!   reasoning moved there, so it stays in `content`. Harmony's `analysis` channel is reasoning.
//! * **No panics on input.** Any id sequence gives a [`DecodedTurn`]; only an id outside the
//!   vocabulary is an error ([`ErrorKind::Tokenize`](crate::error::ErrorKind::Tokenize)). JSON is
//!   parsed with serde_json's recursion limit.
//!
//! Parsing works on the decoded text (with `skip_special_tokens=False`), not on marker ids: the
//! template pipeline is text-based too (a rendered `<tool_call>` encodes to the marker id
//! whichever way the model spelled it), so the two agree. The text is decoded in runs split at
//! special tokens, which for the byte-level decoders of every supported family concatenates to
//! the same string as one `decode` call, and records where the special tokens are.
//!
//! Sources for the grammars: the chat templates of the model matrix (docs/models.md), and vLLM's
//! tool and reasoning parsers of the same names (`hermes`, `qwen3_coder`, `llama3_json`, `mistral`,
//! `openai` (harmony), `deepseek_v3`, `qwen3`/`deepseek_r1` reasoning), whose accepted inputs these
//! grammars follow, more strictly: vLLM also takes partial or extra fields, which would be guessing
//! or dropping here.

mod deepseek;
mod harmony;
mod hermes;
mod llama3;
mod mistral;
mod qwen3_coder;
mod think;

use rustc_hash::FxHashSet;
use serde_json::{json, Map, Value as Json};

use crate::error::Result;
use crate::template::pyfmt::{json_dumps, JsonOptions};
use crate::template::tokenizer::Tokenizer;

/// A tool-call and reasoning grammar, shared by a family of models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Qwen2.5 / Qwen3 (and Hermes-2-Pro): `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`.
    Hermes,
    /// Qwen3-Coder / Qwen3.5: `<tool_call>\n<function=NAME>\n<parameter=KEY>\nVALUE\n</parameter>\n…`.
    Qwen3Coder,
    /// Llama 3.1–3.3 JSON calls: the whole reply is `{"name": …, "parameters": {…}}`.
    Llama3,
    /// Mistral (Tekken v3, Mistral-Nemo): `[TOOL_CALLS][{"name": …, "arguments": {…}, "id": "…"}]`.
    Mistral,
    /// gpt-oss' Harmony format: `<|channel|>analysis/commentary/final`, `to=functions.NAME`.
    Harmony,
    /// DeepSeek-V3 / R1 (and V3.1): `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME…`.
    DeepSeek,
    /// No tool-call grammar: the completion is content (with `<think>` reasoning when the
    /// template renders `reasoning_content`).
    Plain,
}

impl Family {
    /// Every family, in detection order.
    pub const ALL: [Family; 7] = [
        Family::Harmony,
        Family::Mistral,
        Family::DeepSeek,
        Family::Qwen3Coder,
        Family::Hermes,
        Family::Llama3,
        Family::Plain,
    ];

    /// The family whose tool-call format a chat template writes, from markers in its source,
    /// checked in this order (the first match wins):
    ///
    /// | family | marker in the template source |
    /// |---|---|
    /// | [`Harmony`](Family::Harmony) | `<\|channel\|>` |
    /// | [`Mistral`](Family::Mistral) | `[TOOL_CALLS]` |
    /// | [`DeepSeek`](Family::DeepSeek) | `<｜tool▁calls▁begin｜>` or `<｜Assistant｜>` |
    /// | [`Plain`](Family::Plain) | `<arg_key>` (GLM-4.5+, whose XML calls are not decoded) |
    /// | [`Qwen3Coder`](Family::Qwen3Coder) | `<function=` and `<parameter=` |
    /// | [`Hermes`](Family::Hermes) | `<tool_call>` |
    /// | [`Llama3`](Family::Llama3) | `<\|start_header_id\|>` and `"parameters"` |
    /// | [`Plain`](Family::Plain) | anything else |
    ///
    /// Qwen3-Coder is checked before Hermes because its templates also contain `<tool_call>`,
    /// and GLM's `<tool_call>NAME<arg_key>…` is kept away from the Hermes JSON parser.
    pub fn detect(template_source: &str) -> Family {
        let has = |m: &str| template_source.contains(m);
        if has("<|channel|>") {
            Family::Harmony
        } else if has("[TOOL_CALLS]") {
            Family::Mistral
        } else if has("<｜tool▁calls▁begin｜>") || has("<｜Assistant｜>") {
            Family::DeepSeek
        } else if has("<arg_key>") {
            Family::Plain
        } else if has("<function=") && has("<parameter=") {
            Family::Qwen3Coder
        } else if has("<tool_call>") {
            Family::Hermes
        } else if has("<|start_header_id|>") && has("\"parameters\"") {
            Family::Llama3
        } else {
            Family::Plain
        }
    }

    /// The family's name: `hermes`, `qwen3_coder`, `llama3`, `mistral`, `harmony`, `deepseek`,
    /// `plain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Hermes => "hermes",
            Family::Qwen3Coder => "qwen3_coder",
            Family::Llama3 => "llama3",
            Family::Mistral => "mistral",
            Family::Harmony => "harmony",
            Family::DeepSeek => "deepseek",
            Family::Plain => "plain",
        }
    }

    /// The family named `name` (as [`Family::as_str`] spells it).
    pub fn from_name(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.as_str() == name)
    }

    /// End-of-turn tokens the family's models stop on besides the tokenizer's eos (from the
    /// upstream generation configs listed in `docs/models.md`).
    fn stop_tokens(self) -> &'static [&'static str] {
        match self {
            Family::Hermes | Family::Qwen3Coder => &["<|im_end|>", "<|endoftext|>"],
            Family::Llama3 => &["<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"],
            Family::Mistral => &["</s>"],
            Family::Harmony => &["<|return|>", "<|call|>", "<|endoftext|>"],
            Family::DeepSeek => &["<｜end▁of▁sentence｜>"],
            Family::Plain => &[],
        }
    }

    /// Whether the family's templates take `arguments` as the JSON string itself (DeepSeek
    /// concatenates it) rather than a dict.
    fn string_arguments(self) -> bool {
        self == Family::DeepSeek
    }
}

/// One tool call recovered from a completion.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedToolCall {
    /// The call's id: from the text (Mistral) or generated (see the module docs).
    pub id: String,
    /// `true` when [`id`](Self::id) was generated because the text carries none.
    pub generated_id: bool,
    /// The call's `type`: `function`, or the type DeepSeek wrote before `<｜tool▁sep｜>`.
    pub call_type: String,
    /// The function name.
    pub name: String,
    /// The arguments, always a JSON object. Qwen3-Coder's values are strings: its text carries
    /// no types, and typing them from a schema would change how the template prints them.
    pub arguments: Json,
    /// The arguments as the JSON string an OpenAI-compatible server returns: the sampled text
    /// where the format gives the arguments a span of their own (Harmony's message body,
    /// DeepSeek's fenced block), else `json.dumps(arguments, ensure_ascii=False)`.
    pub arguments_text: String,
}

/// The assistant turn recovered from a completion's ids.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedTurn {
    /// The visible text, special tokens skipped, with unparsed tool calls kept verbatim; `None`
    /// when there is none.
    pub content: Option<String>,
    /// The reasoning, when the completion had a reasoning block (possibly empty).
    pub reasoning_content: Option<String>,
    /// The tool calls that parsed, in order.
    pub tool_calls: Vec<DecodedToolCall>,
    /// How many tool calls were started but did not parse; their text is in `content`.
    pub unparsed_tool_calls: usize,
    /// `Some("tool_calls")` when a call parsed (the engine's `stop` becomes `tool_calls`, as
    /// OpenAI-compatible servers report it); `None` leaves the engine's finish reason as it is.
    pub finish_reason_hint: Option<&'static str>,
    /// The stop id that ended the completion and was excluded, if the last id was one.
    pub stop_token_id: Option<u32>,
    /// The assistant message to append to the conversation, in OpenAI shape:
    /// `{"role": "assistant", "content": str, ["reasoning_content": str], ["tool_calls": [{"id",
    /// "type", "function": {"name", "arguments"}}]]}`. `content` is always a string (`""` when
    /// empty: DeepSeek-R1's template concatenates it, and transformers 5.x drops `None`);
    /// `arguments` is a dict, or the sampled JSON string for DeepSeek.
    pub message: Json,
}

/// Decodes completions of one tokenizer in one family; holds what [`decode_completion`] would
/// otherwise look up on every call (stop ids, the set of special ids, whether the template
/// renders reasoning).
#[derive(Debug, Clone)]
pub struct Decoder {
    family: Family,
    split_reasoning: bool,
    stop_ids: Vec<u32>,
    special: FxHashSet<u32>,
}

impl Decoder {
    /// A decoder for `family` on `tok`.
    pub fn new(tok: &Tokenizer, family: Family) -> Self {
        let mut stop_ids = tok.stop_token_ids().to_vec();
        for name in family.stop_tokens() {
            if let Some(id) = tok.token_to_id(name) {
                if !stop_ids.contains(&id) {
                    stop_ids.push(id);
                }
            }
        }
        let special = tok
            .hf()
            .get_added_vocabulary()
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| *id)
            .collect();
        let template_renders_reasoning = tok
            .select_template(None, false)
            .is_ok_and(|t| t.source.contains("reasoning_content"));
        let split_reasoning = match family {
            Family::DeepSeek => true,
            Family::Hermes | Family::Qwen3Coder | Family::Plain => template_renders_reasoning,
            Family::Llama3 | Family::Mistral | Family::Harmony => false,
        };
        Self {
            family,
            split_reasoning,
            stop_ids,
            special,
        }
    }

    /// A decoder for the family [`Family::detect`] finds in `tok`'s default chat template
    /// ([`Family::Plain`] when it has none).
    pub fn for_tokenizer(tok: &Tokenizer) -> Self {
        let family = tok
            .select_template(None, false)
            .map_or(Family::Plain, |t| Family::detect(&t.source));
        Self::new(tok, family)
    }

    /// The family this decoder parses.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The ids excluded when they end a completion.
    pub fn stop_token_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// Whether `<think>` reasoning is split into `reasoning_content` (see the module docs).
    pub fn splits_reasoning(&self) -> bool {
        self.split_reasoning
    }

    /// Decodes one completion (the sampled ids, with or without its stop id).
    pub fn decode(&self, tok: &Tokenizer, completion_ids: &[u32]) -> Result<DecodedTurn> {
        let (ids, stop_token_id) = match completion_ids.split_last() {
            Some((last, rest)) if self.stop_ids.contains(last) => (rest, Some(*last)),
            _ => (completion_ids, None),
        };
        let text = Text::decode(tok, &self.special, ids)?;
        let end = text.s.len();
        let mut parsed = Parsed::default();
        if self.family == Family::Harmony {
            harmony::parse(&text, &mut parsed);
        } else {
            let body = if self.split_reasoning {
                think::split(&text, 0, end, &mut parsed)
            } else {
                0
            };
            match self.family {
                Family::Hermes => hermes::parse(&text, body, end, &mut parsed),
                Family::Qwen3Coder => qwen3_coder::parse(&text, body, end, &mut parsed),
                Family::Llama3 => llama3::parse(&text, body, end, &mut parsed),
                Family::Mistral => mistral::parse(&text, body, end, &mut parsed),
                Family::DeepSeek => deepseek::parse(&text, body, end, &mut parsed),
                Family::Harmony | Family::Plain => parsed.content.push_str(&text.plain(body, end)),
            }
        }
        Ok(self.finish(parsed, stop_token_id))
    }

    fn finish(&self, parsed: Parsed, stop_token_id: Option<u32>) -> DecodedTurn {
        let mut used: Vec<String> = parsed.calls.iter().filter_map(|c| c.id.clone()).collect();
        let mut tool_calls = Vec::with_capacity(parsed.calls.len());
        for (index, call) in parsed.calls.into_iter().enumerate() {
            let (id, generated_id) = match call.id {
                Some(id) => (id, false),
                None => {
                    let id = generate_id(self.family, index, &used);
                    used.push(id.clone());
                    (id, true)
                }
            };
            let arguments = Json::Object(call.arguments);
            let arguments_text = call
                .arguments_text
                .unwrap_or_else(|| python_json(&arguments));
            tool_calls.push(DecodedToolCall {
                id,
                generated_id,
                call_type: call.call_type.unwrap_or_else(|| "function".to_owned()),
                name: call.name,
                arguments,
                arguments_text,
            });
        }
        // A template that renders reasoning splits a content holding `</think>` by itself
        // (Qwen3: `content.split('</think>')`) unless the message says there is no reasoning.
        let no_reasoning =
            (self.split_reasoning && parsed.content.contains("</think>")).then_some("");
        let message = build_message(
            self.family,
            &parsed.content,
            parsed.reasoning.as_deref().or(no_reasoning),
            &tool_calls,
        );
        DecodedTurn {
            content: (!parsed.content.is_empty()).then_some(parsed.content),
            reasoning_content: parsed.reasoning,
            finish_reason_hint: (!tool_calls.is_empty()).then_some("tool_calls"),
            tool_calls,
            unparsed_tool_calls: parsed.unparsed,
            stop_token_id,
            message,
        }
    }
}

/// Decodes one completion of `tok` in `family`: see [`Decoder`] to decode many.
pub fn decode_completion(
    tok: &Tokenizer,
    family: Family,
    completion_ids: &[u32],
) -> Result<DecodedTurn> {
    Decoder::new(tok, family).decode(tok, completion_ids)
}

/// `call_<i>`, or for Mistral `call<i:05>` (its template requires 9 alphanumerics); the next
/// free index when the text already used that id.
fn generate_id(family: Family, index: usize, used: &[String]) -> String {
    let make = |i: usize| match family {
        Family::Mistral => format!("call{:05}", i % 100_000),
        _ => format!("call_{i}"),
    };
    // At most `used.len()` indices are taken, so this finds a free one (bounded, so that a
    // completion with 100 000 Mistral calls cannot loop forever).
    let mut id = make(index);
    for i in index + 1..=index + used.len() {
        if !used.contains(&id) {
            break;
        }
        id = make(i);
    }
    id
}

/// `json.dumps(value, ensure_ascii=False)`, as transformers' `tojson` prints it.
fn python_json(value: &Json) -> String {
    json_dumps(
        &minijinja::Value::from(minijinja::value::Serde(value)),
        &JsonOptions::default(),
    )
    .unwrap_or_else(|_| value.to_string())
}

fn build_message(
    family: Family,
    content: &str,
    reasoning: Option<&str>,
    calls: &[DecodedToolCall],
) -> Json {
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    // gpt-oss' template raises on an assistant message with tool calls and both content and
    // reasoning ("Cannot pass both content and thinking"): it renders either one as the
    // analysis message. The reasoning is that message; a commentary preamble stays in
    // `DecodedTurn::content`.
    let harmony_conflict = family == Family::Harmony
        && !calls.is_empty()
        && reasoning.is_some_and(|r| !r.is_empty())
        && !content.is_empty();
    message.insert(
        "content".into(),
        json!(if harmony_conflict { "" } else { content }),
    );
    if let Some(reasoning) = reasoning {
        message.insert("reasoning_content".into(), json!(reasoning));
    }
    if !calls.is_empty() {
        let list: Vec<Json> = calls
            .iter()
            .map(|c| {
                let arguments = if family.string_arguments() {
                    Json::String(c.arguments_text.clone())
                } else {
                    c.arguments.clone()
                };
                json!({
                    "id": c.id,
                    "type": c.call_type,
                    "function": {"name": c.name, "arguments": arguments},
                })
            })
            .collect();
        message.insert("tool_calls".into(), Json::Array(list));
    }
    Json::Object(message)
}

/// A decoded completion: the text as `decode(skip_special_tokens=False)` gives it, and the byte
/// ranges that came from special tokens.
pub(crate) struct Text {
    pub(crate) s: String,
    special: Vec<(usize, usize)>,
}

impl Text {
    fn decode(tok: &Tokenizer, special: &FxHashSet<u32>, ids: &[u32]) -> Result<Self> {
        let mut s = String::new();
        let mut spans = Vec::new();
        let mut run_start = 0;
        for (i, id) in ids.iter().enumerate() {
            if special.contains(id) {
                if run_start < i {
                    s.push_str(&tok.decode(&ids[run_start..i], false)?);
                }
                let begin = s.len();
                s.push_str(&tok.decode(&ids[i..=i], false)?);
                spans.push((begin, s.len()));
                run_start = i + 1;
            }
        }
        if run_start < ids.len() {
            s.push_str(&tok.decode(&ids[run_start..], false)?);
        }
        Ok(Self { s, special: spans })
    }

    /// `s[start..end]` without the special tokens in it.
    pub(crate) fn plain(&self, start: usize, end: usize) -> String {
        let mut out = String::with_capacity(end.saturating_sub(start));
        let mut pos = start;
        for &(a, b) in &self.special {
            if b <= pos || a >= end {
                continue;
            }
            if a > pos {
                out.push_str(&self.s[pos..a]);
            }
            pos = b.max(pos);
        }
        if pos < end {
            out.push_str(&self.s[pos..end]);
        }
        out
    }

    /// `s[start..end]` as sampled, special tokens included.
    pub(crate) fn raw(&self, start: usize, end: usize) -> &str {
        &self.s[start..end]
    }
}

/// What a family parser found.
#[derive(Default)]
pub(crate) struct Parsed {
    pub(crate) content: String,
    pub(crate) reasoning: Option<String>,
    pub(crate) calls: Vec<Call>,
    pub(crate) unparsed: usize,
}

/// A parsed call before ids are assigned.
pub(crate) struct Call {
    pub(crate) name: String,
    pub(crate) arguments: Map<String, Json>,
    /// The sampled JSON text of the arguments, where the format has it as a span of its own.
    pub(crate) arguments_text: Option<String>,
    pub(crate) id: Option<String>,
    pub(crate) call_type: Option<String>,
}

impl Call {
    pub(crate) fn new(name: String, arguments: Map<String, Json>) -> Self {
        Self {
            name,
            arguments,
            arguments_text: None,
            id: None,
            call_type: None,
        }
    }
}

/// A stretch of a completion's body, for the formats whose calls are tagged blocks in the text.
pub(crate) enum Piece {
    /// Text outside tool calls: byte range.
    Text(usize, usize),
    /// A call that parsed.
    Call(Call),
    /// A started call that did not parse: byte range, kept verbatim.
    Bad(usize, usize),
}

/// Splits `text.s[start..end]` at `open … close` blocks, each parsed by `parse_call`: a block
/// without `close` runs to the end and is unparsed, as is one `parse_call` rejects.
pub(crate) fn tagged_blocks(
    text: &Text,
    start: usize,
    end: usize,
    open: &str,
    close: &str,
    parse_call: fn(&str) -> Option<Call>,
) -> Vec<Piece> {
    let s = &text.s;
    let mut pieces = Vec::new();
    let mut pos = start;
    while let Some(rel) = s[pos..end].find(open) {
        let block = pos + rel;
        pieces.push(Piece::Text(pos, block));
        let inner = block + open.len();
        let Some(rel) = s[inner..end].find(close) else {
            pieces.push(Piece::Bad(block, end));
            return pieces;
        };
        let after = inner + rel + close.len();
        match parse_call(&s[inner..inner + rel]) {
            Some(call) => pieces.push(Piece::Call(call)),
            None => pieces.push(Piece::Bad(block, after)),
        }
        pos = after;
    }
    pieces.push(Piece::Text(pos, end));
    pieces
}

/// What a template writes between the content and the first tool call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gap {
    /// One `\n` (Qwen2.5/Qwen3's `'\n' + content` then `'\n<tool_call>'`, or `content + '\n'`).
    Newline,
    /// The content is printed trimmed (Qwen3-Coder's `content | trim`), so trim it.
    Trim,
}

/// Content and calls from pieces: the text before the first parsed call loses the template's
/// separator; whitespace-only text after it is the template's own spacing and is discarded;
/// other text between or after calls is trimmed (its spacing was around the calls) and joined
/// to the content with a `\n`, since the template prints all content before the calls;
/// unparsed calls are kept verbatim, in order.
pub(crate) fn assemble(text: &Text, pieces: Vec<Piece>, gap: Gap, out: &mut Parsed) {
    let first_call = pieces.iter().position(|p| matches!(p, Piece::Call(_)));
    let mut content = String::new();
    for (i, piece) in pieces.into_iter().enumerate() {
        match piece {
            Piece::Text(a, b) => {
                let mut part = text.plain(a, b);
                match first_call {
                    Some(f) if i > f => {
                        let moved = part.trim();
                        if moved.is_empty() {
                            continue;
                        }
                        if !content.is_empty() && !content.ends_with('\n') {
                            content.push('\n');
                        }
                        content.push_str(moved);
                        continue;
                    }
                    Some(f) if i + 1 == f && gap == Gap::Newline && part.ends_with('\n') => {
                        part.pop();
                    }
                    _ => {}
                }
                content.push_str(&part);
            }
            Piece::Call(call) => out.calls.push(call),
            Piece::Bad(a, b) => {
                out.unparsed += 1;
                content.push_str(text.raw(a, b));
            }
        }
    }
    if first_call.is_some() && gap == Gap::Trim {
        content = content.trim().to_owned();
    }
    out.content.push_str(&content);
}

/// Parses one JSON value at the start of `s` (after whitespace): the value and the byte offset
/// just after it.
pub(crate) fn json_prefix(s: &str) -> Option<(Json, usize)> {
    let mut stream = serde_json::Deserializer::from_str(s).into_iter::<Json>();
    match stream.next() {
        Some(Ok(value)) => Some((value, stream.byte_offset())),
        _ => None,
    }
}

/// A function name as a template can print it back: non-empty, one line.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['\n', '\r'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str, special: &[(usize, usize)]) -> Text {
        Text {
            s: s.to_owned(),
            special: special.to_vec(),
        }
    }

    #[test]
    fn plain_skips_special_spans_inside_the_range() {
        let t = text("a<x>b<y>c", &[(1, 4), (5, 8)]);
        assert_eq!(t.plain(0, 9), "abc");
        assert_eq!(t.plain(2, 9), "bc");
        assert_eq!(t.plain(4, 5), "b");
        assert_eq!(t.raw(0, 9), "a<x>b<y>c");
    }

    #[test]
    fn detect_orders_markers() {
        assert_eq!(
            Family::detect("<|start|>assistant<|channel|>final"),
            Family::Harmony
        );
        assert_eq!(Family::detect("[TOOL_CALLS]"), Family::Mistral);
        assert_eq!(
            Family::detect("<tool_call>\n<function=x>\n<parameter=y>"),
            Family::Qwen3Coder
        );
        assert_eq!(Family::detect("<tool_call>{\"name\""), Family::Hermes);
        assert_eq!(
            Family::detect("<tool_call>x<arg_key>k</arg_key>"),
            Family::Plain
        );
        assert_eq!(
            Family::detect("<|start_header_id|>\"parameters\": "),
            Family::Llama3
        );
        assert_eq!(Family::detect("<|start_header_id|>"), Family::Plain);
        assert_eq!(
            Family::detect("{{'<｜Assistant｜>' + content}}"),
            Family::DeepSeek
        );
        for f in Family::ALL {
            assert_eq!(Family::from_name(f.as_str()), Some(f));
        }
    }

    #[test]
    fn generated_ids_skip_ids_in_the_text() {
        assert_eq!(generate_id(Family::Hermes, 1, &[]), "call_1");
        assert_eq!(
            generate_id(Family::Mistral, 0, &["call00000".into()]),
            "call00001"
        );
    }

    #[test]
    fn json_prefix_reports_the_end() {
        let (v, end) = json_prefix("  {\"a\": [1]} tail").unwrap();
        assert_eq!(v, json!({"a": [1]}));
        assert_eq!(&"  {\"a\": [1]} tail"[end..], " tail");
        assert!(json_prefix("{\"a\": ").is_none());
        assert!(json_prefix(&"[".repeat(100_000)).is_none());
    }
}
