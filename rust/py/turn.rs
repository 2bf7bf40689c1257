//! `fasttito._core.TurnData`: one completed turn, as the Python `Turn` reads it.
//!
//! A turn's response is parsed, validated, decoded and recorded in one call
//! (`Rollout.complete`, or `parse_turn` for the chat transport, which keeps no rollout); what
//! comes back is this object. Its ids are `TokenIds` over the parsed buffers, created once and
//! handed out as the same objects on every access; the lists and dicts a field needs (logprobs,
//! tool calls, usage) are built on first access and kept, so a field read twice is the same
//! object, as on a dataclass.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList};
use serde_json::value::RawValue;

use super::convert::json_to_py;
use super::errors::ResponseParseError;
use super::ids::TokenIds;
use crate::decode::DecodedToolCall;
use crate::wire::{ParseOptions, Parsed, ParsedToolCall, StopReason, TopLogprobs, Usage};

/// The tool calls of a turn: as the server's parser produced them, the objects exactly as sent
/// (the `chat` wire, which keeps keys fasttito does not model), or decoded locally from the ids.
enum Calls {
    Parsed(Vec<ParsedToolCall>),
    Sent(Vec<Box<RawValue>>),
    Decoded(Vec<DecodedToolCall>),
}

impl Calls {
    fn is_empty(&self) -> bool {
        match self {
            Calls::Parsed(c) => c.is_empty(),
            Calls::Sent(c) => c.is_empty(),
            Calls::Decoded(c) => c.is_empty(),
        }
    }

    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        let push = |id: Option<&str>, kind: &str, name: &str, args: &str| -> PyResult<()> {
            let function = PyDict::new(py);
            function.set_item("name", name)?;
            function.set_item("arguments", args)?;
            let d = PyDict::new(py);
            d.set_item("id", id)?;
            d.set_item("type", kind)?;
            d.set_item("function", function)?;
            list.append(d)
        };
        match self {
            Calls::Parsed(calls) => {
                for c in calls {
                    push(c.id.as_deref(), "function", &c.name, &c.arguments)?;
                }
            }
            Calls::Sent(calls) => {
                for raw in calls {
                    list.append(raw_to_py(py, raw)?)?;
                }
            }
            Calls::Decoded(calls) => {
                for c in calls {
                    push(Some(&c.id), &c.call_type, &c.name, &c.arguments_text)?;
                }
            }
        }
        Ok(list)
    }
}

/// A JSON value the parser kept as sent (a tool call or `usage` of the `chat` wire), as a fresh
/// Python object.
pub(super) fn raw_to_py(py: Python<'_>, raw: &RawValue) -> PyResult<Py<PyAny>> {
    let value: serde_json::Value = serde_json::from_str(raw.get()).map_err(|e| {
        ResponseParseError::new_err(format!("a kept JSON value is unreadable: {e}"))
    })?;
    json_to_py(py, &value)
}

/// How a turn was planned, for its `Turn`.
pub(super) struct PlanFacts {
    pub mode: &'static str,
    pub fallback_reason: Option<&'static str>,
    pub tokens_reused: Option<usize>,
    pub bridge_tokens: Option<usize>,
    pub turn: usize,
}

/// One completed turn.
#[pyclass(frozen, module = "fasttito._core", name = "TurnData")]
pub struct TurnData {
    prompt_ids: Option<Py<TokenIds>>,
    completion_ids: Py<TokenIds>,
    logprobs: Option<Vec<f64>>,
    logprobs_list: PyOnceLock<Py<PyList>>,
    top: Option<TopLogprobs>,
    top_list: PyOnceLock<Py<PyList>>,
    content: Option<String>,
    reasoning_content: Option<String>,
    calls: Calls,
    calls_list: PyOnceLock<Py<PyList>>,
    finish_reason: Option<String>,
    stop_reason: Option<StopReason>,
    usage: Option<Usage>,
    usage_as_sent: Option<Box<RawValue>>,
    usage_dict: PyOnceLock<Py<PyDict>>,
    response_id: Option<String>,
    routed_experts: Option<Box<RawValue>>,
    routed_bytes: PyOnceLock<Py<PyBytes>>,
    cached_tokens: Option<u64>,
    null_logprobs: usize,
    unparsed_tool_calls: usize,
    message: Py<PyAny>,
    plan: PlanFacts,
    transport: String,
    prompt_mismatch: Option<(usize, usize)>,
    engine_prompt_ids: bool,
}

/// A turn's response, checked: top logprobs present when asked for, logprobs 1:1 with the
/// completion ids, and (with a vocabulary) every id inside it. The messages are those
/// `finish_turn` raised before this moved into Rust.
pub(super) fn validate(
    parsed: &Parsed,
    transport: &str,
    top_logprobs: Option<u32>,
    vocab_size: Option<usize>,
) -> PyResult<()> {
    if let Some(k) = top_logprobs.filter(|k| *k > 0) {
        if parsed.completion_top_logprobs.is_none() {
            return Err(ResponseParseError::new_err(format!(
                "{transport}: asked for top_logprobs={k}, the response has none that name their \
                 token ids; the server ignored the request (check its max_logprobs setting) or \
                 labels them by text only"
            )));
        }
    }
    // a plain OpenAI server's logprobs come without ids (the `chat` wire): nothing to align
    let ids_sent = parsed.completion_ids_from != crate::wire::IDS_NOT_SENT;
    if let Some(lp) = parsed.completion_logprobs.as_ref().filter(|_| ids_sent) {
        if lp.len() != parsed.completion_ids.len() {
            return Err(ResponseParseError::new_err(format!(
                "{transport}: {} logprobs for {} completion ids",
                lp.len(),
                parsed.completion_ids.len()
            )));
        }
    }
    if let Some(vocab) = vocab_size {
        // An id outside the vocabulary would be recorded and re-sent next turn: a corrupt
        // engine response must stop here, typed, not poison the rollout.
        for (what, ids) in [
            ("completion", Some(&parsed.completion_ids[..])),
            ("prompt", parsed.prompt_ids.as_deref()),
        ] {
            if let Some(top) = ids.and_then(|ids| ids.iter().copied().max()) {
                if top as usize >= vocab {
                    return Err(ResponseParseError::new_err(format!(
                        "{transport}: the response's {what} ids hold {top}, outside the \
                         vocabulary of {vocab} ids; the engine serves another model or sent \
                         corrupt ids"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The assistant message to append when nothing was decoded locally: role, content, and the
/// reasoning and tool calls when present (the tool calls as shallow copies of `calls`' dicts).
fn assistant_message<'py>(
    py: Python<'py>,
    content: Option<&str>,
    reasoning: Option<&str>,
    calls: Option<&Bound<'py, PyList>>,
) -> PyResult<Bound<'py, PyAny>> {
    let msg = PyDict::new(py);
    msg.set_item("role", "assistant")?;
    msg.set_item("content", content)?;
    if let Some(r) = reasoning {
        msg.set_item("reasoning_content", r)?;
    }
    if let Some(calls) = calls.filter(|c| !c.is_empty()) {
        let copies = PyList::empty(py);
        for call in calls.iter() {
            copies.append(call.cast::<PyDict>()?.copy()?)?;
        }
        msg.set_item("tool_calls", copies)?;
    }
    Ok(msg.into_any())
}

/// What [`build`] takes besides the parse.
pub(super) struct Finish<'a> {
    pub transport: &'a str,
    pub plan: PlanFacts,
    /// The message decoded locally: content, reasoning, tool calls, unparsed count, finish
    /// hint, and the message as JSON.
    pub decoded: Option<crate::decode::DecodedTurn>,
    /// The prompt ids to report: the engine's or the plan's (see `Rollout.complete`).
    pub prompt_ids: Option<Arc<[u32]>>,
    pub prompt_mismatch: Option<(usize, usize)>,
    pub engine_prompt_ids: bool,
}

/// The turn's data from its parse (and local decode); also returns the completion ids for the
/// record.
pub(super) fn build(
    py: Python<'_>,
    mut parsed: Parsed,
    completion: Arc<[u32]>,
    finish: Finish<'_>,
) -> PyResult<TurnData> {
    let calls_list = PyOnceLock::new();
    let mut finish_reason = parsed.finish_reason.take();
    let (content, reasoning_content, calls, unparsed, message) = match finish.decoded {
        Some(dec) => {
            if dec.finish_reason_hint == Some("tool_calls")
                && finish_reason.as_deref() == Some("stop")
            {
                finish_reason = Some("tool_calls".to_owned()); // generate never says tool_calls
            }
            let message = json_to_py(py, &dec.message)?;
            (
                dec.content,
                dec.reasoning_content,
                Calls::Decoded(dec.tool_calls),
                dec.unparsed_tool_calls,
                message,
            )
        }
        None => {
            let calls = if parsed.tool_calls_as_sent.is_empty() {
                Calls::Parsed(std::mem::take(&mut parsed.tool_calls))
            } else {
                Calls::Sent(std::mem::take(&mut parsed.tool_calls_as_sent))
            };
            let list = if calls.is_empty() {
                None
            } else {
                let list = calls.to_py(py)?;
                let _ = calls_list.set(py, list.clone().unbind());
                Some(list)
            };
            let content = parsed.content.take();
            let reasoning = parsed.reasoning_content.take();
            let message =
                assistant_message(py, content.as_deref(), reasoning.as_deref(), list.as_ref())?
                    .unbind();
            (content, reasoning, calls, 0, message)
        }
    };
    Ok(TurnData {
        prompt_ids: finish
            .prompt_ids
            .map(|ids| Py::new(py, TokenIds::new(ids)))
            .transpose()?,
        completion_ids: Py::new(py, TokenIds::new(completion))?,
        logprobs: parsed.completion_logprobs.take(),
        logprobs_list: PyOnceLock::new(),
        top: parsed.completion_top_logprobs.take(),
        top_list: PyOnceLock::new(),
        content,
        reasoning_content,
        calls,
        calls_list,
        finish_reason,
        stop_reason: parsed.stop_reason.take(),
        usage: parsed.usage.take(),
        usage_as_sent: parsed.usage_as_sent.take(),
        usage_dict: PyOnceLock::new(),
        response_id: parsed.response_id.take(),
        routed_experts: parsed.routed_experts.take(),
        routed_bytes: PyOnceLock::new(),
        cached_tokens: parsed.cached_tokens,
        null_logprobs: parsed.null_logprobs,
        unparsed_tool_calls: unparsed,
        message,
        plan: finish.plan,
        transport: finish.transport.to_owned(),
        prompt_mismatch: finish.prompt_mismatch,
        engine_prompt_ids: finish.engine_prompt_ids,
    })
}

#[pymethods]
impl TurnData {
    /// The prompt ids the engine generated from (the server's when it reports them, else the
    /// ids sent), the same `TokenIds` object on every access; `None` when neither is known.
    #[getter]
    fn prompt_ids(&self, py: Python<'_>) -> Option<Py<TokenIds>> {
        self.prompt_ids.as_ref().map(|ids| ids.clone_ref(py))
    }

    /// The sampled ids, the same `TokenIds` object on every access.
    #[getter]
    fn completion_ids(&self, py: Python<'_>) -> Py<TokenIds> {
        self.completion_ids.clone_ref(py)
    }

    /// One logprob per completion id (NaN where the server sent `null`), or `None`.
    #[getter]
    fn completion_logprobs(&self, py: Python<'_>) -> PyResult<Option<Py<PyList>>> {
        let Some(lp) = &self.logprobs else {
            return Ok(None);
        };
        self.logprobs_list
            .get_or_try_init(py, || PyList::new(py, lp).map(Bound::unbind))
            .map(|l| Some(l.clone_ref(py)))
    }

    /// Per completion id, the top alternatives as `(token_id, logprob)` pairs, or `None`.
    #[getter]
    fn completion_top_logprobs(&self, py: Python<'_>) -> PyResult<Option<Py<PyList>>> {
        let Some(top) = &self.top else {
            return Ok(None);
        };
        self.top_list
            .get_or_try_init(py, || {
                let rows = (0..top.tokens())
                    .map(|i| PyList::new(py, top.at(i)))
                    .collect::<PyResult<Vec<_>>>()?;
                PyList::new(py, rows).map(Bound::unbind)
            })
            .map(|l| Some(l.clone_ref(py)))
    }

    /// The message text.
    #[getter]
    fn content(&self) -> Option<&str> {
        self.content.as_deref()
    }

    /// The reasoning text.
    #[getter]
    fn reasoning_content(&self) -> Option<&str> {
        self.reasoning_content.as_deref()
    }

    /// The tool calls in the OpenAI shape (the same list on every access).
    #[getter]
    fn tool_calls(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        self.calls_list
            .get_or_try_init(py, || self.calls.to_py(py).map(Bound::unbind))
            .map(|l| l.clone_ref(py))
    }

    /// The finish reason (`stop` became `tool_calls` when a tool call was decoded locally).
    #[getter]
    pub(super) fn finish_reason(&self) -> Option<&str> {
        self.finish_reason.as_deref()
    }

    /// The stop token id or stop string that ended the turn, as the server reports it.
    #[getter]
    fn stop_reason(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(match &self.stop_reason {
            None => py.None(),
            Some(StopReason::TokenId(id)) => id.into_pyobject(py)?.into_any().unbind(),
            Some(StopReason::Text(t)) => t.into_pyobject(py)?.into_any().unbind(),
            Some(StopReason::Other(raw)) => raw.get().into_pyobject(py)?.into_any().unbind(),
        })
    }

    /// Token usage, if sent (the same dict on every access): every key as sent on the `chat`
    /// wire, the three counters elsewhere.
    #[getter]
    fn usage(&self, py: Python<'_>) -> PyResult<Option<Py<PyDict>>> {
        let Some(u) = &self.usage else {
            return Ok(None);
        };
        self.usage_dict
            .get_or_try_init(py, || {
                if let Some(raw) = &self.usage_as_sent {
                    return Ok(raw_to_py(py, raw)?
                        .into_bound(py)
                        .cast_into::<PyDict>()?
                        .unbind());
                }
                let d = PyDict::new(py);
                d.set_item("prompt_tokens", u.prompt_tokens)?;
                d.set_item("completion_tokens", u.completion_tokens)?;
                d.set_item("total_tokens", u.total_tokens)?;
                Ok::<_, PyErr>(d.unbind())
            })
            .map(|d| Some(d.clone_ref(py)))
    }

    /// The response id.
    #[getter]
    fn response_id(&self) -> Option<&str> {
        self.response_id.as_deref()
    }

    /// The `routed_experts` sidecar as raw JSON bytes.
    #[getter]
    fn routed_experts(&self, py: Python<'_>) -> Option<Py<PyBytes>> {
        let raw = self.routed_experts.as_ref()?;
        Some(
            self.routed_bytes
                .get_or_init(py, || PyBytes::new(py, raw.get().as_bytes()).unbind())
                .clone_ref(py),
        )
    }

    /// Prompt tokens the engine found in its prefix cache, when it reports them.
    #[getter]
    fn cached_tokens(&self) -> Option<u64> {
        self.cached_tokens
    }

    /// How many logprobs were `null`.
    #[getter]
    fn null_logprobs(&self) -> usize {
        self.null_logprobs
    }

    /// Tool calls that did not parse (left in `content`).
    #[getter]
    fn unparsed_tool_calls(&self) -> usize {
        self.unparsed_tool_calls
    }

    /// The assistant message recorded in the rollout (the same dict on every access).
    #[getter]
    pub(super) fn message(&self, py: Python<'_>) -> Py<PyAny> {
        self.message.clone_ref(py)
    }

    /// `"tito"` or `"mito"`.
    #[getter]
    fn mode(&self) -> &'static str {
        self.plan.mode
    }

    /// Why the turn went as messages, or `None`.
    #[getter]
    fn fallback_reason(&self) -> Option<&'static str> {
        self.plan.fallback_reason
    }

    /// Ids copied verbatim from the matched turn (`None` without a rollout).
    #[getter]
    fn tokens_reused(&self) -> Option<usize> {
        self.plan.tokens_reused
    }

    /// Ids rendered for the new messages (`None` without a rollout).
    #[getter]
    fn bridge_tokens(&self) -> Option<usize> {
        self.plan.bridge_tokens
    }

    /// The turn's number (1-based).
    #[getter]
    fn turn(&self) -> usize {
        self.plan.turn
    }

    /// The transport that ran the turn.
    #[getter]
    fn transport(&self) -> &str {
        &self.transport
    }

    /// `(engine's prompt ids, ids sent)` when the engine reported prompt ids that differ from
    /// those sent (the turn was recorded with the engine's), else `None`.
    #[getter]
    fn prompt_mismatch(&self) -> Option<(usize, usize)> {
        self.prompt_mismatch
    }

    /// The turn was recorded with the engine's prompt ids, not the plan's.
    #[getter]
    fn engine_prompt_ids(&self) -> bool {
        self.engine_prompt_ids
    }

    fn __repr__(&self) -> String {
        format!(
            "TurnData(turn={}, mode={:?}, completion_ids=<{} ids>)",
            self.plan.turn,
            self.plan.mode,
            self.completion_ids.get().len()
        )
    }
}

/// Parses, checks and shapes a response of `wire` into the data of a turn that no rollout
/// records: the `chat` transport's (mode `"mito"`, fallback reason `"chat_transport"`).
#[pyfunction]
#[pyo3(signature = (body, wire, *, transport, turn, top_logprobs = None,
                    max_body_bytes = ParseOptions::default().max_body_bytes,
                    max_depth = ParseOptions::default().max_depth))]
#[allow(clippy::too_many_arguments)]
pub fn parse_turn(
    py: Python<'_>,
    body: Bound<'_, PyBytes>,
    wire: &str,
    transport: &str,
    turn: usize,
    top_logprobs: Option<u32>,
    max_body_bytes: usize,
    max_depth: usize,
) -> PyResult<TurnData> {
    let wire = super::wire::wire_of(wire)?;
    let opts = ParseOptions {
        max_body_bytes,
        max_depth,
    };
    let bytes = body.as_bytes();
    let mut parsed = py.detach(|| crate::wire::parse_response(bytes, wire, &opts))?;
    validate(&parsed, transport, top_logprobs, None)?;
    if top_logprobs.unwrap_or(0) == 0 {
        parsed.completion_top_logprobs = None; // not asked for: not reported
    }
    let completion: Arc<[u32]> = std::mem::take(&mut parsed.completion_ids).into();
    let prompt_ids = parsed.prompt_ids.take().map(Arc::from);
    build(
        py,
        parsed,
        completion,
        Finish {
            transport,
            plan: PlanFacts {
                mode: "mito",
                fallback_reason: Some("chat_transport"),
                tokens_reused: None,
                bridge_tokens: None,
                turn,
            },
            decoded: None,
            prompt_ids,
            prompt_mismatch: None,
            engine_prompt_ids: false,
        },
    )
}
