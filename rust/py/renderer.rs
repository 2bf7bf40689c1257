//! The two calls `fasttito.renderers` needs beyond rendering: attributed renders and bridges made
//! from the previous ids alone.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use serde_json::{Map, Value as Json};

use super::convert::{json_to_py, to_json, to_json_list};
use super::errors::MessageError;
use super::tokenizer::PyTokenizer;
use crate::template::chat::ChatOptions;
use crate::tito::messages::fingerprint;

fn kwargs_map(kwargs: Option<&Bound<'_, PyAny>>) -> PyResult<Map<String, Json>> {
    match kwargs.filter(|k| !k.is_none()) {
        Some(k) => match to_json(k, "chat_template_kwargs")? {
            Json::Object(map) => Ok(map),
            _ => Err(MessageError::new_err("chat_template_kwargs must be a dict")),
        },
        None => Ok(Map::new()),
    }
}

fn tools_list(tools: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Arc<[Json]>>> {
    Ok(tools
        .filter(|t| !t.is_none())
        .map(|t| to_json_list(t, "tools"))
        .transpose()?
        .map(Into::into))
}

/// Renders `messages` like `apply_chat_template` and attributes every id:
/// `(ids, message_indices, sampled)` (see `rust/tito/attribute.rs`).
#[pyfunction]
#[pyo3(signature = (tokenizer, messages, tools = None, add_generation_prompt = false,
                    chat_template_kwargs = None, stop_token_ids = None))]
pub fn attribute<'py>(
    py: Python<'py>,
    tokenizer: &Bound<'py, PyTokenizer>,
    messages: &Bound<'py, PyAny>,
    tools: Option<&Bound<'py, PyAny>>,
    add_generation_prompt: bool,
    chat_template_kwargs: Option<&Bound<'py, PyAny>>,
    stop_token_ids: Option<Vec<u32>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let messages = to_json_list(messages, "messages")?;
    let options = ChatOptions {
        tools: tools_list(tools)?,
        add_generation_prompt,
        kwargs: kwargs_map(chat_template_kwargs)?,
        ..Default::default()
    };
    let tok = tokenizer.get().core();
    let stops = stop_token_ids.unwrap_or_else(|| tok.stop_token_ids().to_vec());
    let a = py.detach(|| crate::tito::attribute::attribute(&tok, &messages, &options, &stops))?;
    PyTuple::new(
        py,
        [
            PyList::new(py, a.ids)?.into_any(),
            PyList::new(py, a.message_indices)?.into_any(),
            PyList::new(py, a.sampled)?.into_any(),
        ],
    )
}

/// The bridge after a turn that ended on `stop_id`, for the new messages `tail`:
/// `(ids, None, full_messages, offset)`, or `(None, fallback_reason, None, 0)` when the rules of
/// a rollout turn refuse it. `tool_names` maps call ids to function names.
#[pyfunction]
#[pyo3(signature = (tokenizer, stop_id, tail, tools = None, chat_template_kwargs = None,
                    tool_names = None))]
pub fn lone_bridge<'py>(
    py: Python<'py>,
    tokenizer: &Bound<'py, PyTokenizer>,
    stop_id: u32,
    tail: &Bound<'py, PyAny>,
    tools: Option<&Bound<'py, PyAny>>,
    chat_template_kwargs: Option<&Bound<'py, PyAny>>,
    tool_names: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let tail = to_json_list(tail, "new_messages")?;
    let tools = tools_list(tools)?;
    let kwargs = kwargs_map(chat_template_kwargs)?;
    let names = match tool_names.filter(|n| !n.is_none()) {
        Some(n) => match to_json(n, "tool_names")? {
            Json::Object(map) => map,
            _ => return Err(MessageError::new_err("tool_names must be a dict")),
        },
        None => Map::new(),
    };
    let fps = (
        fingerprint(tools.as_ref().map(|t| Json::Array(t.to_vec())).as_ref()),
        fingerprint(
            (!kwargs.is_empty())
                .then(|| Json::Object(kwargs.clone()))
                .as_ref(),
        ),
    );
    let tok = tokenizer.get().core();
    let result = py.detach(|| {
        let refs: Vec<&Json> = tail.iter().collect();
        crate::tito::rollout::lone_bridge(
            &tok,
            stop_id,
            &refs,
            &names,
            tools.as_ref(),
            &kwargs,
            fps,
        )
    });
    let none = || py.None().into_bound(py);
    match result {
        Ok(b) => {
            let full = PyList::empty(py);
            for m in &b.full {
                full.append(json_to_py(py, m)?)?;
            }
            PyTuple::new(
                py,
                [
                    PyList::new(py, b.ids)?.into_any(),
                    none(),
                    full.into_any(),
                    b.offset.into_pyobject(py)?.into_any(),
                ],
            )
        }
        Err(reason) => PyTuple::new(
            py,
            [
                none(),
                reason.as_str().into_pyobject(py)?.into_any(),
                none(),
                0usize.into_pyobject(py)?.into_any(),
            ],
        ),
    }
}
