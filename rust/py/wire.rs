//! `fasttito.parse_response` and `_core.request_body`: response bytes in, request bytes out.
//!
//! Bodies never become Python objects: a response's bytes go straight to the Rust parser (GIL
//! released) and its ids come back as `TokenIds`; a request body is written in Rust from the
//! rollout's ids and handed to the HTTP layer as `bytes`.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json};

use super::convert::{to_json, to_json_list};
use super::errors::ArgumentError;
use super::ids::{ids_from_py, TokenIds};
use super::turn::raw_to_py;
use crate::wire::{self, ChatTarget, ParseOptions, Parsed, RequestOptions, StopReason, Wire};

/// A parsed server response.
#[pyclass(frozen, module = "fasttito._core", name = "ParsedResponse")]
pub struct PyParsed {
    parsed: Parsed,
    body: Py<PyBytes>,
}

#[pymethods]
impl PyParsed {
    /// The sampled ids (the stop token included when the engine sampled it).
    #[getter]
    fn completion_ids(&self) -> TokenIds {
        TokenIds::new(self.parsed.completion_ids.clone())
    }

    /// One logprob per completion id (NaN where the server sent `null`), or `None` if the server
    /// sent none.
    #[getter]
    fn completion_logprobs(&self) -> Option<Vec<f64>> {
        self.parsed.completion_logprobs.clone()
    }

    /// Per completion id, the engine's top alternatives as `(token_id, logprob)` pairs in the
    /// engine's order, or `None` when the response names none by id.
    #[getter]
    fn completion_top_logprobs<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let Some(top) = &self.parsed.completion_top_logprobs else {
            return Ok(None);
        };
        let rows = (0..top.tokens())
            .map(|i| PyList::new(py, top.at(i)))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, rows).map(Some)
    }

    /// The prompt tokens the engine found in its prefix cache, when it reports them.
    #[getter]
    fn cached_tokens(&self) -> Option<u64> {
        self.parsed.cached_tokens
    }

    /// How many logprobs were `null`.
    #[getter]
    fn null_logprobs(&self) -> usize {
        self.parsed.null_logprobs
    }

    /// The prompt ids the engine reports, if it does.
    #[getter]
    fn prompt_ids(&self) -> Option<TokenIds> {
        self.parsed.prompt_ids.clone().map(TokenIds::new)
    }

    /// `stop`, `length`, `tool_calls` (promoted when tool calls parsed), ...
    #[getter]
    fn finish_reason(&self) -> Option<String> {
        self.parsed.finish_reason.clone()
    }

    /// The stop token id or stop string that ended the turn, as the server reports it.
    #[getter]
    fn stop_reason(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(match &self.parsed.stop_reason {
            None => py.None(),
            Some(StopReason::TokenId(id)) => id.into_pyobject(py)?.into_any().unbind(),
            Some(StopReason::Text(t)) => t.into_pyobject(py)?.into_any().unbind(),
            Some(StopReason::Other(raw)) => raw.get().into_pyobject(py)?.into_any().unbind(),
        })
    }

    /// The message text, if the server sent one.
    #[getter]
    fn content(&self) -> Option<String> {
        self.parsed.content.clone()
    }

    /// The reasoning text, if the server sent one.
    #[getter]
    fn reasoning_content(&self) -> Option<String> {
        self.parsed.reasoning_content.clone()
    }

    /// Tool calls in the OpenAI shape (on the `chat` wire, the objects exactly as sent).
    #[getter]
    fn tool_calls<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        if !self.parsed.tool_calls_as_sent.is_empty() {
            for raw in &self.parsed.tool_calls_as_sent {
                list.append(raw_to_py(py, raw)?)?;
            }
            return Ok(list);
        }
        for call in &self.parsed.tool_calls {
            let function = PyDict::new(py);
            function.set_item("name", &call.name)?;
            function.set_item("arguments", &call.arguments)?;
            let d = PyDict::new(py);
            d.set_item("id", &call.id)?;
            d.set_item("type", "function")?;
            d.set_item("function", function)?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// Token usage, if sent: every key as sent on the `chat` wire, the three counters elsewhere.
    #[getter]
    fn usage<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(u) = &self.parsed.usage else {
            return Ok(None);
        };
        if let Some(raw) = &self.parsed.usage_as_sent {
            return Ok(Some(
                raw_to_py(py, raw)?.into_bound(py).cast_into::<PyDict>()?,
            ));
        }
        let d = PyDict::new(py);
        d.set_item("prompt_tokens", u.prompt_tokens)?;
        d.set_item("completion_tokens", u.completion_tokens)?;
        d.set_item("total_tokens", u.total_tokens)?;
        Ok(Some(d))
    }

    /// The response id.
    #[getter]
    fn response_id(&self) -> Option<String> {
        self.parsed.response_id.clone()
    }

    /// The `routed_experts` sidecar as raw JSON bytes, not decoded.
    #[getter]
    fn routed_experts<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.parsed
            .routed_experts
            .as_ref()
            .map(|raw| PyBytes::new(py, raw.get().as_bytes()))
    }

    /// The body the response was parsed from.
    #[getter]
    fn body(&self, py: Python<'_>) -> Py<PyBytes> {
        self.body.clone_ref(py)
    }

    fn __repr__(&self) -> String {
        format!(
            "ParsedResponse(completion_ids=<{} ids>, finish_reason={:?}, tool_calls={})",
            self.parsed.completion_ids.len(),
            self.parsed.finish_reason,
            self.parsed.tool_calls.len()
        )
    }
}

pub(super) fn wire_of(name: &str) -> PyResult<Wire> {
    match name {
        "vllm-chat" | "vllm_chat" => Ok(Wire::VllmChat),
        "vllm-generate" | "vllm_generate" => Ok(Wire::VllmGenerate),
        "dynamo" | "dynamo-nvext" => Ok(Wire::Dynamo),
        "sglang" | "sglang-generate" => Ok(Wire::Sglang),
        "chat" => Ok(Wire::Chat),
        other => Err(ArgumentError::new_err(format!(
            "unknown wire {other:?}; expected \"vllm-chat\", \"vllm-generate\", \"dynamo\", \"sglang\" or \"chat\""
        ))),
    }
}

/// Parses a response body of `wire` (`"vllm-chat"`, `"vllm-generate"`, `"dynamo"`, `"sglang"`
/// or `"chat"`, any OpenAI-compatible server: docs/wire.md A.4).
#[pyfunction]
#[pyo3(signature = (body, wire, *, max_body_bytes = ParseOptions::default().max_body_bytes, max_depth = ParseOptions::default().max_depth))]
pub fn parse_response(
    py: Python<'_>,
    body: Bound<'_, PyBytes>,
    wire: &str,
    max_body_bytes: usize,
    max_depth: usize,
) -> PyResult<PyParsed> {
    let wire = wire_of(wire)?;
    let opts = ParseOptions {
        max_body_bytes,
        max_depth,
    };
    let bytes = body.as_bytes();
    let parsed = py.detach(|| wire::parse_response(bytes, wire, &opts))?;
    Ok(PyParsed {
        parsed,
        body: body.unbind(),
    })
}

fn raw_json(value: Json) -> PyResult<Box<RawValue>> {
    RawValue::from_string(value.to_string()).map_err(|e| ArgumentError::new_err(e.to_string()))
}

/// What a request body is made of, besides the ids: read from Python (with the GIL), written
/// by [`BodyInputs::write`] (without it).
pub(super) struct BodyInputs {
    kind: String,
    model: String,
    sampling: Map<String, Json>,
    ctk: Option<Map<String, Json>>,
    chat_target: Option<ChatTarget>,
    messages_raw: Option<Box<RawValue>>,
    tools_raw: Option<Box<RawValue>>,
    max_tokens: Option<u32>,
    stop_token_ids: Option<Vec<u32>>,
    cache_salt: Option<String>,
    priority: Option<i64>,
    top_logprobs: Option<u32>,
}

/// Whether `kind` writes token ids (else messages).
pub(super) fn kind_takes_ids(kind: &str) -> bool {
    matches!(
        kind,
        "vllm-generate" | "chat-tokens" | "dynamo" | "sglang-generate"
    )
}

impl BodyInputs {
    /// Reads and checks the arguments of a `kind` body (see [`request_body`]); `has_ids` says
    /// whether ids will be given, when that is known already.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn from_py(
        kind: &str,
        model: &str,
        messages: Option<&Bound<'_, PyAny>>,
        tools: Option<&Bound<'_, PyAny>>,
        sampling: Option<&Bound<'_, PyAny>>,
        max_tokens: Option<u32>,
        stop_token_ids: Option<Vec<u32>>,
        cache_salt: Option<String>,
        priority: Option<i64>,
        chat_template_kwargs: Option<&Bound<'_, PyAny>>,
        target: &str,
        top_logprobs: Option<u32>,
        has_ids: Option<bool>,
    ) -> PyResult<Self> {
        let messages = messages.map(|m| to_json_list(m, "messages")).transpose()?;
        let tools = tools
            .filter(|t| !t.is_none())
            .map(|t| to_json_list(t, "tools"))
            .transpose()?;
        let sampling = match sampling.filter(|s| !s.is_none()) {
            Some(s) => match to_json(s, "sampling")? {
                Json::Object(map) => map,
                _ => return Err(ArgumentError::new_err("sampling must be a dict")),
            },
            None => Map::new(),
        };
        let ctk = match chat_template_kwargs.filter(|s| !s.is_none()) {
            Some(s) => match to_json(s, "chat_template_kwargs")? {
                Json::Object(map) => Some(map),
                _ => {
                    return Err(ArgumentError::new_err(
                        "chat_template_kwargs must be a dict",
                    ))
                }
            },
            None => None,
        };
        // The kind and target, checked after the arguments were read (as always).
        let chat_target = match (kind, target) {
            ("chat", "vllm") => Some(ChatTarget::Vllm),
            ("chat", "dynamo") => Some(ChatTarget::Dynamo),
            ("chat", "openai") => Some(ChatTarget::OpenAi),
            ("chat", other) => {
                return Err(ArgumentError::new_err(format!(
                    "unknown chat target {other:?}; expected \"vllm\", \"dynamo\" or \"openai\""
                )))
            }
            (k, _) if kind_takes_ids(k) => None,
            (other, _) => {
                return Err(ArgumentError::new_err(format!(
                    "unknown request kind {other:?}; expected \"vllm-generate\", \"chat-tokens\", \"dynamo\", \"sglang-generate\" or \"chat\""
                )))
            }
        };
        if has_ids.is_some_and(|has| !has) && kind_takes_ids(kind) {
            return Err(ArgumentError::new_err(format!(
                "{kind} bodies need token_ids"
            )));
        }
        let messages_raw = match kind {
            "chat-tokens" | "chat" => Some(
                messages
                    .map(|m| raw_json(Json::Array(m)))
                    .transpose()?
                    .ok_or_else(|| {
                        ArgumentError::new_err(format!("{kind} bodies need messages"))
                    })?,
            ),
            _ => None,
        };
        let tools_raw = tools.map(|t| raw_json(Json::Array(t))).transpose()?;
        Ok(Self {
            kind: kind.to_owned(),
            model: model.to_owned(),
            sampling,
            ctk,
            chat_target,
            messages_raw,
            tools_raw,
            max_tokens,
            stop_token_ids,
            cache_salt,
            priority,
            top_logprobs,
        })
    }

    /// Writes the body (no Python involved: call it with the GIL released). `ids` are required
    /// by the kinds that take them.
    pub(super) fn write(&self, ids: Option<&[u32]>) -> PyResult<Vec<u8>> {
        let kind = self.kind.as_str();
        if kind_takes_ids(kind) && ids.is_none() {
            return Err(ArgumentError::new_err(format!(
                "{kind} bodies need token_ids"
            )));
        }
        let opts = RequestOptions {
            max_tokens: self.max_tokens,
            stop_token_ids: self.stop_token_ids.as_deref(),
            cache_salt: self.cache_salt.as_deref(),
            priority: self.priority,
            chat_template_kwargs: self.ctk.as_ref(),
            top_logprobs: self.top_logprobs,
        };
        let ids = ids.unwrap_or_default();
        let model = self.model.as_str();
        let sampling = &self.sampling;
        let tools = self.tools_raw.as_deref();
        Ok(
            match (kind, self.messages_raw.as_deref(), self.chat_target) {
                ("vllm-generate", _, _) => wire::vllm_generate_body(model, ids, sampling, &opts),
                ("chat-tokens", Some(m), _) => {
                    wire::chat_tokens_body(model, m, tools, ids, sampling, &opts)
                }
                ("dynamo", _, _) => wire::dynamo_body(model, ids, sampling, &opts),
                ("sglang-generate", _, _) => wire::sglang_generate_body(ids, sampling, &opts),
                (_, Some(m), Some(target)) => {
                    wire::chat_body(model, m, tools, sampling, target, &opts)
                }
                _ => Err(crate::Error::message(format!(
                    "request kind {kind:?} is missing its messages"
                ))),
            }?,
        )
    }
}

/// Writes a request body: `kind` is `"vllm-generate"`, `"chat-tokens"`, `"dynamo"`,
/// `"sglang-generate"` or `"chat"` (`target` `"vllm"`, `"dynamo"` or `"openai"` for `"chat"`).
#[pyfunction]
#[pyo3(signature = (kind, model, *, token_ids = None, messages = None, tools = None, sampling = None,
                    max_tokens = None, stop_token_ids = None, cache_salt = None, priority = None,
                    chat_template_kwargs = None, target = "vllm", top_logprobs = None))]
#[allow(clippy::too_many_arguments)]
pub fn request_body<'py>(
    py: Python<'py>,
    kind: &str,
    model: &str,
    token_ids: Option<&Bound<'py, PyAny>>,
    messages: Option<&Bound<'py, PyAny>>,
    tools: Option<&Bound<'py, PyAny>>,
    sampling: Option<&Bound<'py, PyAny>>,
    max_tokens: Option<u32>,
    stop_token_ids: Option<Vec<u32>>,
    cache_salt: Option<String>,
    priority: Option<i64>,
    chat_template_kwargs: Option<&Bound<'py, PyAny>>,
    target: &str,
    top_logprobs: Option<u32>,
) -> PyResult<Bound<'py, PyBytes>> {
    let ids = token_ids.map(|t| ids_from_py(t, "token_ids")).transpose()?;
    let inputs = BodyInputs::from_py(
        kind,
        model,
        messages,
        tools,
        sampling,
        max_tokens,
        stop_token_ids,
        cache_salt,
        priority,
        chat_template_kwargs,
        target,
        top_logprobs,
        Some(ids.is_some()),
    )?;
    // Write the body (O(ids), the real work) without the GIL.
    let body = py.detach(|| inputs.write(ids.as_deref()))?;
    Ok(PyBytes::new(py, &body))
}
