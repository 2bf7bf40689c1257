//! `fasttito.Tokenizer`: a model folder loaded in Rust.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use serde_json::Map;

use super::convert::{json_to_py, to_json, to_json_list};
use super::errors::{ArgumentError, MessageError, TokenizationError};
use crate::template::chat::{self, ChatOptions};
use crate::template::tokenizer::{LoadOptions, Tokenizer};
use crate::template::RenderLimits;

/// A tokenizer and chat template loaded from a model folder.
#[pyclass(frozen, module = "fasttito._core", name = "Tokenizer")]
pub struct PyTokenizer {
    inner: Arc<Tokenizer>,
    decoder: std::sync::OnceLock<crate::decode::Decoder>,
}

impl PyTokenizer {
    /// The shared core tokenizer (for other binding classes).
    #[allow(dead_code)]
    pub fn core(&self) -> Arc<Tokenizer> {
        self.inner.clone()
    }

    /// The completion decoder of this tokenizer's model family, built on first use.
    pub(super) fn completion_decoder(&self) -> &crate::decode::Decoder {
        self.decoder
            .get_or_init(|| crate::decode::Decoder::for_tokenizer(&self.inner))
    }
}

/// `continue_final_message`: `False`/`None` (off), `True` ("content"), or a field name.
fn continue_field(value: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    if value.is_none() {
        return Ok(None);
    }
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(Some(s.to_str()?.to_owned()));
    }
    if value.is_truthy()? {
        Ok(Some("content".to_owned()))
    } else {
        Ok(None)
    }
}

#[pymethods]
impl PyTokenizer {
    /// Loads `tokenizer.json`, the chat template(s), special tokens and stop ids of a folder.
    #[staticmethod]
    #[pyo3(signature = (path, *, template_fuel = RenderLimits::default().fuel, cache_bytes = LoadOptions::default().cache_bytes,
                        template_recursion = RenderLimits::default().recursion))]
    fn from_dir(
        py: Python<'_>,
        path: PathBuf,
        template_fuel: u64,
        cache_bytes: usize,
        template_recursion: usize,
    ) -> PyResult<Self> {
        let options = LoadOptions {
            limits: RenderLimits {
                fuel: template_fuel,
                recursion: template_recursion,
            },
            cache_bytes,
        };
        let inner = py.detach(|| Tokenizer::from_dir(&path, &options))?;
        Ok(Self {
            inner: Arc::new(inner),
            decoder: std::sync::OnceLock::new(),
        })
    }

    /// Encodes text, without special tokens unless `add_special_tokens`.
    #[pyo3(signature = (text, add_special_tokens = false))]
    fn encode(
        &self,
        py: Python<'_>,
        text: &Bound<'_, PyString>,
        add_special_tokens: bool,
    ) -> PyResult<Vec<u32>> {
        let tok = self.inner.clone();
        let text = text.to_str().map(str::to_owned).map_err(|_| {
            TokenizationError::new_err(
                "cannot encode a string with a lone surrogate (e.g. '\\ud800'): it is not valid text",
            )
        })?;
        Ok(py.detach(move || tok.encode_with_special(&text, add_special_tokens))?)
    }

    /// Decodes ids to text, as transformers' `decode` does.
    #[pyo3(signature = (ids, skip_special_tokens = false))]
    fn decode(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        skip_special_tokens: bool,
    ) -> PyResult<String> {
        // a TokenIds is read in place (its shared buffer); anything else as a list of ints
        let ids: Arc<[u32]> = if ids.cast::<super::ids::TokenIds>().is_ok() {
            super::ids::ids_from_py(ids, "ids")?
        } else {
            ids.extract::<Vec<u32>>()?.into()
        };
        let tok = self.inner.clone();
        Ok(py.detach(move || tok.decode(&ids, skip_special_tokens))?)
    }

    /// Renders a conversation with the chat template; with `tokenize=True` (the default) returns
    /// its ids, else its text. Same arguments and results as transformers' `apply_chat_template`.
    #[pyo3(signature = (messages, tools = None, add_generation_prompt = false, tokenize = true,
                        continue_final_message = None, documents = None, chat_template = None,
                        **template_kwargs))]
    #[allow(clippy::too_many_arguments)]
    fn apply_chat_template<'py>(
        &self,
        py: Python<'py>,
        messages: &Bound<'py, PyAny>,
        tools: Option<&Bound<'py, PyAny>>,
        add_generation_prompt: bool,
        tokenize: bool,
        continue_final_message: Option<&Bound<'py, PyAny>>,
        documents: Option<&Bound<'py, PyAny>>,
        chat_template: Option<String>,
        template_kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let mut list = Vec::new();
        for (i, message) in messages
            .try_iter()
            .map_err(|_| {
                MessageError::new_err(
                    "messages must be a list of chat messages (dicts or Pydantic models)",
                )
            })?
            .enumerate()
        {
            list.push(to_json(&message?, &format!("messages[{i}]"))?);
        }
        let mut kwargs = Map::new();
        if let Some(extra) = template_kwargs {
            for (k, v) in extra.iter() {
                let name: String = k.extract()?;
                let value = to_json(&v, &name)?;
                kwargs.insert(name, value);
            }
        }
        let options = ChatOptions {
            tools: tools
                .filter(|t| !t.is_none())
                .map(|t| to_json_list(t, "tools"))
                .transpose()?
                .map(Into::into),
            documents: documents
                .filter(|d| !d.is_none())
                .map(|d| to_json_list(d, "documents"))
                .transpose()?
                .map(Into::into),
            add_generation_prompt,
            continue_final_message: continue_final_message
                .map(continue_field)
                .transpose()?
                .flatten(),
            template_name: chat_template,
            kwargs,
        };
        let tok = self.inner.clone();
        if tokenize {
            let ids = py.detach(move || chat::render_ids(&tok, list, &options))?;
            Ok(ids.into_pyobject(py)?.into_any().unbind())
        } else {
            let text = py.detach(move || chat::render(&tok, list, &options))?;
            Ok(text.into_pyobject(py)?.into_any().unbind())
        }
    }

    /// The ids an engine should stop on: the eos token, then `generation_config.json`'s.
    #[getter]
    fn stop_token_ids(&self) -> Vec<u32> {
        self.inner.stop_token_ids().to_vec()
    }

    /// Number of ids, added tokens included (`len(tokenizer)` in transformers).
    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// Named special tokens of the folder (`bos_token`, `eos_token`, ...).
    #[getter]
    fn special_tokens<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, text) in self.inner.special_tokens() {
            dict.set_item(name, text)?;
        }
        Ok(dict)
    }

    /// The eos token, if the folder names one.
    #[getter]
    fn eos_token(&self) -> Option<String> {
        self.special("eos_token")
    }

    /// The bos token, if the folder names one.
    #[getter]
    fn bos_token(&self) -> Option<String> {
        self.special("bos_token")
    }

    /// Names of the chat templates (`["default"]` for a single one).
    #[getter]
    fn chat_template_names(&self) -> Vec<String> {
        self.inner
            .template_names()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// `model_max_length` from `tokenizer_config.json`, when it is a real bound.
    #[getter]
    fn model_max_length(&self) -> Option<u64> {
        self.inner.model_max_length()
    }

    /// The folder this tokenizer was loaded from.
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.path().to_path_buf()
    }

    /// The id of a token string, or `None`.
    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token string of an id, or `None`.
    fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Counters of the reuse cache of tokenized chunks: hits, misses, entries, bytes.
    fn cache_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        if let Some(stats) = self.inner.cache_stats() {
            dict.set_item("hits", stats.hits)?;
            dict.set_item("misses", stats.misses)?;
            dict.set_item("entries", stats.entries)?;
            dict.set_item("bytes", stats.bytes)?;
        }
        Ok(dict)
    }

    /// Recovers the assistant message from completion ids (for engines that return ids only):
    /// `content`, `reasoning_content`, `tool_calls` (OpenAI shape), `unparsed_tool_calls`,
    /// `finish_reason_hint`, `family`, and `message` (the dict to append to the conversation,
    /// which the chat template renders back to these ids).
    #[pyo3(signature = (ids, family = None))]
    pub(super) fn decode_completion<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
        family: Option<&str>,
    ) -> PyResult<Bound<'py, PyDict>> {
        use crate::decode::{Decoder, Family};
        let ids = super::ids::ids_from_py(ids, "ids")?;
        let explicit;
        let decoder = match family {
            Some(name) => {
                let fam = Family::from_name(name).ok_or_else(|| {
                    ArgumentError::new_err(format!("unknown completion family {name:?}"))
                })?;
                explicit = Decoder::new(&self.inner, fam);
                &explicit
            }
            None => self
                .decoder
                .get_or_init(|| Decoder::for_tokenizer(&self.inner)),
        };
        let tok = self.inner.clone();
        let turn = py.detach(|| decoder.decode(&tok, &ids))?;
        let d = PyDict::new(py);
        d.set_item("family", decoder.family().as_str())?;
        d.set_item("content", &turn.content)?;
        d.set_item("reasoning_content", &turn.reasoning_content)?;
        let calls = pyo3::types::PyList::empty(py);
        for call in &turn.tool_calls {
            let function = PyDict::new(py);
            function.set_item("name", &call.name)?;
            function.set_item("arguments", &call.arguments_text)?;
            let c = PyDict::new(py);
            c.set_item("id", &call.id)?;
            c.set_item("type", &call.call_type)?;
            c.set_item("function", function)?;
            calls.append(c)?;
        }
        d.set_item("tool_calls", calls)?;
        d.set_item("unparsed_tool_calls", turn.unparsed_tool_calls)?;
        d.set_item("finish_reason_hint", turn.finish_reason_hint)?;
        d.set_item("stop_token_id", turn.stop_token_id)?;
        d.set_item("message", json_to_py(py, &turn.message)?)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "Tokenizer.from_dir({:?})",
            self.inner.path().display().to_string()
        )
    }
}

impl PyTokenizer {
    fn special(&self, name: &str) -> Option<String> {
        self.inner
            .special_tokens()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
    }
}
