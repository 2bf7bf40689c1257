//! `fasttito._core.Rollout` and `Plan`: the TITO engine over Python messages.
//!
//! Messages arrive as Python objects every turn (the whole conversation so far). Each is
//! converted and hashed once, when first seen; on later turns a message made of the same leaf
//! objects in the same shape is recognised without reading its text ([`walk`]), so an object
//! mutated in place (a new leaf) is converted and hashed again. The rollout holds a reference to
//! every leaf it has cached, so an object id can never be reused by another object while cached.
//! The cache keeps what the last two turns used ([`SeenCache`]): a caller that builds new message
//! objects every turn (messages decoded from JSON each turn) costs a conversion per message per
//! turn, never a cache that grows with turns times messages.

use std::hash::Hasher;
use std::sync::Arc;

use parking_lot::Mutex;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use rustc_hash::{FxHashMap, FxHasher};
use serde_json::{Map, Value as Json};

use super::convert::{json_to_py, to_json, to_json_list};
use super::errors::{ArgumentError, MessageError, ResponseParseError};
use super::ids::{ids_from_py, TokenIds};
use super::tokenizer::PyTokenizer;
use super::turn::{build, validate, Finish, PlanFacts, TurnData};
use super::wire::{wire_of, BodyInputs};
use crate::template::tokenizer::Tokenizer;
use crate::tito::messages::{fingerprint, message_hash, prefix_hashes};
use crate::tito::rollout::{Begin, Mode, PendingBridge, Plan, Rollout, TurnInput};
use crate::wire::ParseOptions;

/// A message seen before: its structure (see [`walk`]), the leaf objects it was made of (held,
/// so their ids cannot be reused while cached), and its hash and JSON.
struct Seen {
    shape: Vec<usize>,
    _leaves: Vec<Py<PyAny>>,
    hash: u128,
    json: Arc<Json>,
}

const TAG_DICT: usize = usize::MAX;
const TAG_LIST: usize = usize::MAX - 1;
const TAG_TUPLE: usize = usize::MAX - 2;
const TAG_OBJECT: usize = usize::MAX - 3;

/// The shape of a message: container tags and sizes, dict keys' object ids, and the object ids
/// of its immutable leaves (str, int, float, bool, None). Two objects with the same shape hold
/// the same leaf objects in the same places, so they are equal: verifiers rebuilds its message
/// dicts every turn (`to_native_prompt`) around the same strings, and such a rebuilt message is
/// recognised without reading or hashing its text again.
fn walk<'py>(
    obj: &Bound<'py, PyAny>,
    shape: &mut Vec<usize>,
    mut leaves: Option<&mut Vec<Bound<'py, PyAny>>>,
    depth: usize,
) -> PyResult<()> {
    if depth > 32 {
        return Err(MessageError::new_err(
            "a message is nested more than 32 levels deep",
        ));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        shape.push(TAG_DICT);
        shape.push(d.len());
        for (k, v) in d.iter() {
            shape.push(k.as_ptr() as usize);
            if let Some(l) = leaves.as_deref_mut() {
                l.push(k);
            }
            walk(&v, shape, leaves.as_deref_mut(), depth + 1)?;
        }
    } else if let Ok(l) = obj.cast::<PyList>() {
        shape.push(TAG_LIST);
        shape.push(l.len());
        for v in l.iter() {
            walk(&v, shape, leaves.as_deref_mut(), depth + 1)?;
        }
    } else if let Ok(t) = obj.cast::<PyTuple>() {
        shape.push(TAG_TUPLE);
        shape.push(t.len());
        for v in t.iter() {
            walk(&v, shape, leaves.as_deref_mut(), depth + 1)?;
        }
    } else if obj.is_none()
        || obj.is_exact_instance_of::<PyString>()
        || obj.is_exact_instance_of::<pyo3::types::PyInt>()
        || obj.is_exact_instance_of::<pyo3::types::PyFloat>()
        || obj.is_exact_instance_of::<pyo3::types::PyBool>()
    {
        shape.push(obj.as_ptr() as usize);
        if let Some(l) = leaves {
            l.push(obj.clone());
        }
    } else {
        // Pydantic models, dataclasses, enums...: their type, then their fields.
        let py = obj.py();
        shape.push(TAG_OBJECT);
        shape.push(obj.get_type().as_ptr() as usize);
        shape.push(obj.as_ptr() as usize);
        if let Some(l) = leaves.as_deref_mut() {
            l.push(obj.get_type().into_any());
            l.push(obj.clone());
        }
        if let Ok(fields) = obj.getattr(intern!(py, "__dict__")) {
            walk(&fields, shape, leaves.as_deref_mut(), depth + 1)?;
        }
        if let Ok(extra) = obj.getattr(intern!(py, "__pydantic_extra__")) {
            walk(&extra, shape, leaves, depth + 1)?;
        }
    }
    Ok(())
}

/// The messages seen, by the hash of their shape, in two generations: those used since the
/// current turn began, and those of the turn before. A turn moves what it uses from the older
/// generation into the current one; what neither of the last two turns used is dropped (with
/// the leaf references it held) when the next turn begins.
#[derive(Default)]
struct SeenCache {
    current: FxHashMap<u64, Vec<Seen>>,
    previous: FxHashMap<u64, Vec<Seen>>,
}

impl SeenCache {
    /// A new turn begins (prepare/begin): the current generation becomes the previous one.
    fn new_turn(&mut self) {
        self.previous = std::mem::take(&mut self.current);
    }

    /// The hash and JSON of a message of this `shape`, if one was seen in the last two turns.
    fn get(&mut self, key: u64, shape: &[usize]) -> Option<(u128, Arc<Json>)> {
        if let Some(s) = self
            .current
            .get(&key)
            .and_then(|v| v.iter().find(|s| s.shape == shape))
        {
            return Some((s.hash, s.json.clone()));
        }
        let older = self.previous.get_mut(&key)?;
        let s = older.swap_remove(older.iter().position(|s| s.shape == shape)?);
        let found = (s.hash, s.json.clone());
        self.current.entry(key).or_default().push(s);
        Some(found)
    }

    fn insert(&mut self, key: u64, seen: Seen) {
        self.current.entry(key).or_default().push(seen);
    }

    /// Messages held, in both generations.
    fn len(&self) -> usize {
        self.current
            .values()
            .chain(self.previous.values())
            .map(Vec::len)
            .sum()
    }
}

#[derive(Default)]
struct State {
    rollout: Rollout,
    seen: SeenCache,
    /// The tools of the last turn, recognised by shape like a message (`walk`): agents pass
    /// the same list every turn, converted and fingerprinted once.
    tools: Option<SeenTools>,
}

/// A tools list seen before: its shape, the leaves it was made of (held, as for [`Seen`]), the
/// list and its fingerprint.
struct SeenTools {
    shape: Vec<usize>,
    _leaves: Vec<Py<PyAny>>,
    tools: Arc<[Json]>,
    fingerprint: u128,
}

/// The engine's view of one Python message: converted and hashed, from the cache if a message
/// of the same shape was seen in the last two turns.
fn intern_message(
    seen: &mut SeenCache,
    obj: &Bound<'_, PyAny>,
    what: &str,
) -> PyResult<(u128, Arc<Json>)> {
    let mut shape = Vec::with_capacity(32);
    walk(obj, &mut shape, None, 0)?;
    let mut h = FxHasher::default();
    for word in &shape {
        h.write_usize(*word);
    }
    let key = h.finish();
    if let Some(found) = seen.get(key, &shape) {
        return Ok(found);
    }
    let json = Arc::new(to_json(obj, what)?);
    let hash = message_hash(&json);
    // A miss: walk again, keeping the leaves alive for as long as the entry is cached.
    let mut again = Vec::with_capacity(shape.len());
    let mut leaves = Vec::with_capacity(16);
    walk(obj, &mut again, Some(&mut leaves), 0)?;
    let leaves = leaves.into_iter().map(Bound::unbind).collect();
    seen.insert(
        key,
        Seen {
            shape,
            _leaves: leaves,
            hash,
            json: json.clone(),
        },
    );
    Ok((hash, json))
}

/// The tools list `obj` as JSON and its fingerprint, from `cache` when it holds a list of the
/// same shape (the same leaf objects in the same places), else converted and cached.
fn intern_tools(
    cache: &mut Option<SeenTools>,
    obj: &Bound<'_, PyAny>,
) -> PyResult<(Option<Arc<[Json]>>, u128)> {
    let mut shape = Vec::with_capacity(64);
    walk(obj, &mut shape, None, 0)?;
    if let Some(seen) = cache.as_ref().filter(|s| s.shape == shape) {
        return Ok((Some(seen.tools.clone()), seen.fingerprint));
    }
    let list = to_json_list(obj, "tools")?;
    let fp = fingerprint(Some(&Json::Array(list.clone()))); // once per new tools list
    let tools: Arc<[Json]> = list.into();
    // A miss: walk again, keeping the leaves alive for as long as the entry is cached.
    let mut again = Vec::with_capacity(shape.len());
    let mut leaves = Vec::with_capacity(32);
    walk(obj, &mut again, Some(&mut leaves), 0)?;
    *cache = Some(SeenTools {
        shape,
        _leaves: leaves.into_iter().map(Bound::unbind).collect(),
        tools: tools.clone(),
        fingerprint: fp,
    });
    Ok((Some(tools), fp))
}

/// The plan for one turn: TITO ids, or MITO and why.
#[pyclass(frozen, module = "fasttito._core", name = "Plan")]
pub struct PyPlan {
    plan: Plan,
    /// The request body, when the plan was made by `Rollout.plan_turn`.
    body: Option<Py<PyBytes>>,
    /// The body sends the prompt ids (else the messages).
    sends_ids: bool,
}

impl PyPlan {
    fn new(plan: Plan) -> Self {
        Self {
            plan,
            body: None,
            sends_ids: false,
        }
    }
}

#[pymethods]
impl PyPlan {
    /// Counts this turn in `fasttito.metrics()` as TITO or MITO, once however often it is
    /// called (`True` the first time). `Rollout.record` calls it; a caller that sends a planned
    /// turn without recording it calls it when the turn completed.
    fn count(&self) -> bool {
        self.plan.count()
    }

    /// `"tito"` or `"mito"`.
    #[getter]
    fn mode(&self) -> &'static str {
        match self.plan.mode {
            Mode::Tito => "tito",
            Mode::Mito => "mito",
        }
    }

    /// `None`, or why this turn goes as messages.
    #[getter]
    fn fallback_reason(&self) -> Option<&'static str> {
        self.plan.fallback.map(|f| f.as_str())
    }

    /// The prompt ids (a zero-copy `TokenIds` view): stitched for TITO; for MITO the full local
    /// render, or `None` without a local tokenizer.
    #[getter]
    fn prompt_ids(&self) -> Option<TokenIds> {
        self.plan.prompt_ids.clone().map(TokenIds::new)
    }

    /// How many prompt ids the plan has (`None` without them): the length pre-flight reads
    /// this rather than the ids.
    #[getter]
    fn prompt_len(&self) -> Option<usize> {
        self.plan.prompt_ids.as_ref().map(|ids| ids.len())
    }

    /// The request body `Rollout.plan_turn` wrote for this turn, else `None`.
    #[getter]
    fn body(&self, py: Python<'_>) -> Option<Py<PyBytes>> {
        self.body.as_ref().map(|b| b.clone_ref(py))
    }

    /// Whether that body sends the prompt ids (`False`: it sends the messages).
    #[getter]
    fn sends_ids(&self) -> bool {
        self.sends_ids
    }

    /// Ids copied verbatim from the matched turn.
    #[getter]
    fn tokens_reused(&self) -> usize {
        self.plan.reused
    }

    /// Ids after the reused ones: gap, bridge and generation prompt.
    #[getter]
    fn bridge_tokens(&self) -> usize {
        self.plan.bridged
    }

    /// Template tokens after the stop token that were put back.
    #[getter]
    fn gap(&self) -> usize {
        self.plan.gap
    }

    /// A duplicated leading stop token was dropped from the bridge.
    #[getter]
    fn deduped(&self) -> bool {
        self.plan.deduped
    }

    /// This turn's number (1-based).
    #[getter]
    fn turn(&self) -> usize {
        self.plan.turn
    }

    /// The matched previous turn (1-based), if any.
    #[getter]
    fn matched_turn(&self) -> Option<usize> {
        self.plan.matched_turn.map(|t| t + 1)
    }

    /// Verify mode's comparison of stitched and re-rendered ids, as a dict, when it ran.
    #[getter]
    fn verify<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(r) = &self.plan.verify else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("identical", r.identical)?;
        d.set_item("first_diff", r.first_diff)?;
        d.set_item("stitched_len", r.stitched_len)?;
        d.set_item("rendered_len", r.rendered_len)?;
        d.set_item("stitched_context", &r.stitched_context)?;
        d.set_item("rendered_context", &r.rendered_context)?;
        Ok(Some(d))
    }

    fn __repr__(&self) -> String {
        match self.plan.fallback {
            None => format!(
                "Plan(turn={}, mode='tito', prompt_ids=<{} ids>, tokens_reused={}, bridge_tokens={})",
                self.plan.turn,
                self.plan.prompt_ids.as_ref().map_or(0, |ids| ids.len()),
                self.plan.reused,
                self.plan.bridged
            ),
            Some(f) => format!("Plan(turn={}, mode='mito', fallback_reason='{}')", self.plan.turn, f.as_str()),
        }
    }
}

/// A TITO turn waiting for its bridge to be tokenized elsewhere (e.g. vLLM `/tokenize`).
#[pyclass(frozen, module = "fasttito._core", name = "PendingBridge")]
pub struct PyPendingBridge {
    pending: Mutex<Option<PendingBridge>>,
    full: Py<PyAny>,
    base: Py<PyAny>,
}

#[pymethods]
impl PyPendingBridge {
    /// `[dummy assistant] + new messages`: tokenize with the generation prompt.
    #[getter]
    fn full_messages(&self, py: Python<'_>) -> Py<PyAny> {
        self.full.clone_ref(py)
    }

    /// `[dummy assistant]`: tokenize without the generation prompt.
    #[getter]
    fn base_messages(&self, py: Python<'_>) -> Py<PyAny> {
        self.base.clone_ref(py)
    }
}

/// One multi-turn conversation's TITO state.
#[pyclass(frozen, module = "fasttito._core", name = "Rollout")]
pub struct PyRollout {
    tokenizer: Option<Arc<Tokenizer>>,
    py_tokenizer: Option<Py<PyTokenizer>>,
    verify: bool,
    max_messages: usize,
    max_tokens: usize,
    state: Mutex<State>,
}

/// `RolloutLimitError(message, limit=, value=, maximum=)`.
fn limit_error(
    py: Python<'_>,
    message: String,
    limit: &str,
    value: usize,
    maximum: usize,
) -> PyErr {
    let kwargs = PyDict::new(py);
    let made = (|| {
        kwargs.set_item("limit", limit)?;
        kwargs.set_item("value", value)?;
        kwargs.set_item("maximum", maximum)?;
        py.get_type::<RolloutLimitError>()
            .call((message,), Some(&kwargs))
    })();
    match made {
        Ok(err) => PyErr::from_value(err),
        Err(err) => err,
    }
}

/// The check every token-in body goes through before it is written: an id at or above
/// `vocab_size` is an `InvalidTokenIdError` naming the largest id and its first position (ids are
/// u32: never negative).
fn check_prompt_ids(
    py: Python<'_>,
    ids: &[u32],
    vocab_size: usize,
    transport: &str,
) -> PyResult<()> {
    let Some(top) = ids.iter().copied().max() else {
        return Ok(());
    };
    if (top as usize) < vocab_size {
        return Ok(());
    }
    let pos = ids.iter().position(|id| *id == top).unwrap_or(0);
    let message = format!(
        "{transport}: prompt id {top} at position {pos} is outside the tokenizer's vocabulary \
         (ids 0..{}); it was not sent (an engine may crash on it: SGLang exits on an \
         out-of-range id). Check the ids given to fasttito (a caller's get_prompt_ids, a \
         recorded turn) and that the tokenizer is the served model's",
        vocab_size as i64 - 1
    );
    let kwargs = PyDict::new(py);
    let made = (|| {
        kwargs.set_item("token_id", top)?;
        kwargs.set_item("position", pos)?;
        kwargs.set_item("vocab_size", vocab_size)?;
        py.get_type::<InvalidTokenIdError>()
            .call((message,), Some(&kwargs))
    })();
    Err(match made {
        Ok(err) => PyErr::from_value(err),
        Err(err) => err,
    })
}

pyo3::import_exception!(fasttito.errors, RolloutLimitError);
pyo3::import_exception!(fasttito.errors, InvalidTokenIdError);

struct Prepared {
    jsons: Vec<Arc<Json>>,
    prefix: Vec<u128>,
    tools: Option<Arc<[Json]>>,
    kwargs: Map<String, Json>,
    tools_fp: u128,
    kwargs_fp: u128,
}

/// `fasttito.rollout.DEFAULT_MAX_ROLLOUT_MESSAGES`.
const DEFAULT_MAX_MESSAGES: usize = 10_000;
/// `fasttito.rollout.DEFAULT_MAX_ROLLOUT_TOKENS`.
const DEFAULT_MAX_TOKENS: usize = 8 << 20;

/// What `plan_turn` writes the body from, besides the plan and the conversation.
struct TurnRequest<'a, 'py> {
    kind: &'a str,
    model: &'a str,
    transport: &'a str,
    sampling: Option<&'a Bound<'py, PyAny>>,
    max_tokens: Option<u32>,
    stop_token_ids: Option<Vec<u32>>,
    cache_salt: Option<String>,
    priority: Option<i64>,
    body_template_kwargs: bool,
    top_logprobs: Option<u32>,
    messages_target: Option<&'a str>,
    mito_messages: bool,
    vocab_size: Option<usize>,
}

impl PyRollout {
    /// `RolloutLimitError` when the conversation has more than `max_messages` messages.
    fn check_messages(&self, py: Python<'_>, messages: &Bound<'_, PyAny>) -> PyResult<()> {
        match messages.len() {
            Ok(n) if n > self.max_messages => Err(limit_error(
                py,
                format!(
                    "the conversation has {n} messages, over max_rollout_messages={}; end the \
                     rollout, or raise max_rollout_messages (Client) / max_messages (Rollout) if \
                     conversations this long are intended",
                    self.max_messages
                ),
                "max_rollout_messages",
                n,
                self.max_messages,
            )),
            _ => Ok(()),
        }
    }

    /// `RolloutLimitError` when the plan has more than `max_tokens` prompt ids.
    fn check_tokens(&self, py: Python<'_>, plan: &Plan) -> PyResult<()> {
        let n = plan.prompt_ids.as_ref().map_or(0, |ids| ids.len());
        if n <= self.max_tokens {
            return Ok(());
        }
        Err(limit_error(
            py,
            format!(
                "the turn's prompt has {n} token ids, over max_rollout_tokens={}; it was not \
                 sent. End the rollout, or raise max_rollout_tokens (Client) / max_tokens \
                 (Rollout) if prompts this long are intended",
                self.max_tokens
            ),
            "max_rollout_tokens",
            n,
            self.max_tokens,
        ))
    }

    /// `prepare` without the Python wrapper: the limits, then the plan.
    fn plan_local(
        &self,
        py: Python<'_>,
        messages: &Bound<'_, PyAny>,
        tools: Option<&Bound<'_, PyAny>>,
        chat_template_kwargs: Option<&Bound<'_, PyAny>>,
        render_mito: bool,
    ) -> PyResult<Plan> {
        let Some(tok) = self.tokenizer.clone() else {
            return Err(ArgumentError::new_err(
                "this Rollout has no local tokenizer: use begin()/finish() with a remote tokenizer, \
                 or create it with Rollout(tokenizer)",
            ));
        };
        self.check_messages(py, messages)?;
        let p = self.prepare_inputs(messages, tools, chat_template_kwargs, true)?;
        let verify = self.verify;
        let state = &self.state;
        let plan = py.detach(move || {
            let refs: Vec<&Json> = p.jsons.iter().map(|j| j.as_ref()).collect();
            let input = TurnInput {
                messages: &refs,
                prefix: &p.prefix,
                tools_fp: p.tools_fp,
                kwargs_fp: p.kwargs_fp,
            };
            let guard = state.lock();
            guard.rollout.prepare_local(
                &tok,
                &input,
                p.tools.as_ref(),
                &p.kwargs,
                render_mito,
                verify,
            )
        });
        self.check_tokens(py, &plan)?;
        Ok(plan)
    }

    /// Converts a turn's inputs; `new_turn` (prepare/begin, not ingest) ages the message cache.
    fn prepare_inputs(
        &self,
        messages: &Bound<'_, PyAny>,
        tools: Option<&Bound<'_, PyAny>>,
        chat_template_kwargs: Option<&Bound<'_, PyAny>>,
        new_turn: bool,
    ) -> PyResult<Prepared> {
        let mut state = self.state.lock();
        if new_turn {
            state.seen.new_turn();
        }
        let mut jsons = Vec::new();
        let mut hashes = Vec::new();
        let iter = messages
            .try_iter()
            .map_err(|_| MessageError::new_err("messages must be a list of chat messages"))?;
        for (i, message) in iter.enumerate() {
            let (hash, json) =
                intern_message(&mut state.seen, &message?, &format!("messages[{i}]"))?;
            hashes.push(hash);
            jsons.push(json);
        }
        if jsons.is_empty() {
            return Err(MessageError::new_err(
                "messages is empty; a turn needs at least one message",
            ));
        }
        let (tools, tools_fp) = match tools.filter(|t| !t.is_none()) {
            None => (None, fingerprint(None)),
            Some(t) => intern_tools(&mut state.tools, t)?,
        };
        let kwargs = match chat_template_kwargs.filter(|k| !k.is_none()) {
            Some(k) => match to_json(k, "chat_template_kwargs")? {
                Json::Object(map) => map,
                _ => return Err(MessageError::new_err("chat_template_kwargs must be a dict")),
            },
            None => Map::new(),
        };
        let kwargs_fp = fingerprint(
            (!kwargs.is_empty())
                .then(|| Json::Object(kwargs.clone()))
                .as_ref(),
        );
        Ok(Prepared {
            prefix: prefix_hashes(&hashes),
            jsons,
            tools,
            kwargs,
            tools_fp,
            kwargs_fp,
        })
    }
}

/// The plan with its request body (see `plan_turn`).
fn with_body(
    py: Python<'_>,
    plan: Plan,
    messages: &Bound<'_, PyAny>,
    tools: Option<&Bound<'_, PyAny>>,
    chat_template_kwargs: Option<&Bound<'_, PyAny>>,
    r: TurnRequest<'_, '_>,
) -> PyResult<PyPlan> {
    let sends_ids = plan.prompt_ids.is_some() && (plan.mode == Mode::Tito || !r.mito_messages);
    let (kind, target) = if sends_ids {
        (r.kind, "vllm")
    } else {
        match r.messages_target {
            Some(target) => ("chat", target),
            None => {
                return Err(ArgumentError::new_err(format!(
                    "{}: this turn has no prompt ids to send (no local render) and the \
                     transport sends no messages",
                    r.transport
                )))
            }
        }
    };
    if sends_ids {
        if let (Some(vocab), Some(ids)) = (r.vocab_size, &plan.prompt_ids) {
            check_prompt_ids(py, ids, vocab, r.transport)?;
        }
    }
    let with_messages = matches!(kind, "chat" | "chat-tokens");
    let inputs = BodyInputs::from_py(
        kind,
        r.model,
        with_messages.then_some(messages),
        if with_messages { tools } else { None },
        r.sampling,
        r.max_tokens,
        r.stop_token_ids,
        r.cache_salt,
        r.priority,
        if r.body_template_kwargs {
            chat_template_kwargs
        } else {
            None
        },
        target,
        r.top_logprobs,
        Some(sends_ids),
    )?;
    let ids = if sends_ids {
        plan.prompt_ids.as_deref()
    } else {
        None
    };
    let body = py.detach(|| inputs.write(ids))?;
    Ok(PyPlan {
        plan,
        body: Some(PyBytes::new(py, &body).unbind()),
        sends_ids,
    })
}

/// How a response is read after HTTP (`Rollout.complete`, `complete_turn`).
struct CompleteStep<'a> {
    wire: &'a str,
    transport: &'a str,
    decode_locally: bool,
    top_logprobs: Option<u32>,
    vocab_size: Option<usize>,
    opts: ParseOptions,
}

/// A response parsed, checked and decoded: the turn's data, its completion ids, and the
/// engine's prompt ids when it reported ids the plan does not have (what a record keeps).
struct Completed {
    data: TurnData,
    completion: Arc<[u32]>,
    record_ids: Option<Arc<[u32]>>,
}

/// The part of a turn after HTTP that records nothing: parse `body`, check it, decode the
/// message from the ids with `tokenizer` when the step says so and the server sent no tool
/// calls, and shape the turn's data (prompt ids: the engine's when reported, else `sent`).
fn complete_step(
    py: Python<'_>,
    plan: &Plan,
    sent: Option<&Arc<[u32]>>,
    body: &Bound<'_, PyBytes>,
    tokenizer: Option<&PyTokenizer>,
    step: &CompleteStep<'_>,
) -> PyResult<Completed> {
    let wire = wire_of(step.wire)?;
    let bytes = body.as_bytes();
    let opts = &step.opts;
    let mut parsed = py.detach(|| crate::wire::parse_response(bytes, wire, opts))?;
    validate(&parsed, step.transport, step.top_logprobs, step.vocab_size)?;
    if step.top_logprobs.unwrap_or(0) == 0 {
        parsed.completion_top_logprobs = None; // not asked for: not reported
    }
    let completion: Arc<[u32]> = std::mem::take(&mut parsed.completion_ids).into();
    let decoded = match tokenizer {
        Some(pytok) if step.decode_locally && parsed.tool_calls.is_empty() => {
            // ids only (or raw text without a tool parser): decode per model family; the
            // message is the one the template renders back to these ids
            let decoder = pytok.completion_decoder();
            let tok = pytok.core();
            let ids = &completion;
            Some(py.detach(|| decoder.decode(&tok, ids))?)
        }
        _ => None,
    };
    // prompt ids: the server's when it reports them, else those sent
    let server = parsed.prompt_ids.take();
    let (prompt_ids, record_ids, mismatch) = match (server, sent) {
        (Some(server), None) => {
            let server: Arc<[u32]> = server.into();
            (Some(server.clone()), Some(server), None)
        }
        (Some(server), Some(sent)) if server[..] != sent[..] => {
            let n = (server.len(), sent.len());
            let server: Arc<[u32]> = server.into();
            (Some(server.clone()), Some(server), Some(n))
        }
        (_, sent) => (sent.cloned(), None, None),
    };
    let engine_prompt_ids = record_ids.is_some();
    let data = build(
        py,
        parsed,
        completion.clone(),
        Finish {
            transport: step.transport,
            plan: PlanFacts {
                mode: match plan.mode {
                    Mode::Tito => "tito",
                    Mode::Mito => "mito",
                },
                fallback_reason: plan.fallback.map(|f| f.as_str()),
                tokens_reused: Some(plan.reused),
                bridge_tokens: Some(plan.bridged),
                turn: plan.turn,
            },
            decoded,
            prompt_ids,
            prompt_mismatch: mismatch,
            engine_prompt_ids,
        },
    )?;
    Ok(Completed {
        data,
        completion,
        record_ids,
    })
}

/// `Rollout.complete` without the rollout: parses, checks and decodes the response `body` of
/// `plan`'s turn (decoding with `tokenizer`) and returns the turn's data, recording nothing and
/// counting nothing in `fasttito.metrics()` (`plan.count()` does, once the caller takes the
/// turn). For a caller that keeps its turns itself (verifiers' trajectory). `prompt_ids` are
/// the server's when it reports them, else those the plan's body sent (`Plan.sends_ids`), else
/// `None`.
#[pyfunction]
#[pyo3(signature = (plan, body, *, wire, transport, decode_locally, tokenizer = None,
                    top_logprobs = None, vocab_size = None,
                    max_body_bytes = ParseOptions::default().max_body_bytes,
                    max_depth = ParseOptions::default().max_depth))]
#[allow(clippy::too_many_arguments)]
pub fn complete_turn(
    py: Python<'_>,
    plan: &Bound<'_, PyPlan>,
    body: Bound<'_, PyBytes>,
    wire: &str,
    transport: &str,
    decode_locally: bool,
    tokenizer: Option<&Bound<'_, PyTokenizer>>,
    top_logprobs: Option<u32>,
    vocab_size: Option<usize>,
    max_body_bytes: usize,
    max_depth: usize,
) -> PyResult<TurnData> {
    let step = CompleteStep {
        wire,
        transport,
        decode_locally,
        top_logprobs,
        vocab_size,
        opts: ParseOptions {
            max_body_bytes,
            max_depth,
        },
    };
    let tokenizer = tokenizer.map(|t| t.get());
    let plan = plan.get();
    let sent = plan
        .sends_ids
        .then_some(plan.plan.prompt_ids.as_ref())
        .flatten();
    complete_step(py, &plan.plan, sent, &body, tokenizer, &step).map(|done| done.data)
}

/// The plan of turn `turn` whose `prompt_ids` the caller chose (a verifiers subclass's own
/// `get_prompt_ids`), with its request body as `Rollout.plan_body` writes it: a TITO turn, or
/// with `tito=False` a MITO one sending these ids. It reuses nothing (`tokens_reused` 0),
/// never counts in `fasttito.metrics()` (fasttito did not plan it), and no rollout records it:
/// complete it with `complete_turn`.
#[pyfunction]
#[pyo3(signature = (prompt_ids, messages, tools = None, chat_template_kwargs = None, *, turn,
                    tito = true, kind, model, transport, sampling = None, max_tokens = None,
                    stop_token_ids = None, cache_salt = None, priority = None,
                    body_template_kwargs = false, top_logprobs = None, messages_target = None,
                    mito_messages = false, vocab_size = None))]
#[allow(clippy::too_many_arguments)]
pub fn plan_ids(
    py: Python<'_>,
    prompt_ids: &Bound<'_, PyAny>,
    messages: &Bound<'_, PyAny>,
    tools: Option<&Bound<'_, PyAny>>,
    chat_template_kwargs: Option<&Bound<'_, PyAny>>,
    turn: usize,
    tito: bool,
    kind: &str,
    model: &str,
    transport: &str,
    sampling: Option<&Bound<'_, PyAny>>,
    max_tokens: Option<u32>,
    stop_token_ids: Option<Vec<u32>>,
    cache_salt: Option<String>,
    priority: Option<i64>,
    body_template_kwargs: bool,
    top_logprobs: Option<u32>,
    messages_target: Option<&str>,
    mito_messages: bool,
    vocab_size: Option<usize>,
) -> PyResult<PyPlan> {
    let ids = ids_from_py(prompt_ids, "prompt_ids")?;
    let mode = if tito { Mode::Tito } else { Mode::Mito };
    let request = TurnRequest {
        kind,
        model,
        transport,
        sampling,
        max_tokens,
        stop_token_ids,
        cache_salt,
        priority,
        body_template_kwargs,
        top_logprobs,
        messages_target,
        mito_messages,
        vocab_size,
    };
    let plan = Plan::of_ids(ids, mode, turn);
    with_body(py, plan, messages, tools, chat_template_kwargs, request)
}

#[pymethods]
impl PyRollout {
    #[new]
    #[pyo3(signature = (tokenizer = None, *, stop_token_ids = None, verify = false,
                        max_messages = DEFAULT_MAX_MESSAGES, max_tokens = DEFAULT_MAX_TOKENS))]
    fn new(
        tokenizer: Option<&Bound<'_, PyTokenizer>>,
        stop_token_ids: Option<Vec<u32>>,
        verify: bool,
        max_messages: usize,
        max_tokens: usize,
    ) -> PyResult<Self> {
        let py_tokenizer = tokenizer.map(|t| t.clone().unbind());
        let tokenizer = tokenizer.map(|t| t.get().core());
        if verify && tokenizer.is_none() {
            return Err(ArgumentError::new_err(
                "verify=True needs a local tokenizer to re-render with",
            ));
        }
        let stops = stop_token_ids
            .or_else(|| tokenizer.as_ref().map(|t| t.stop_token_ids().to_vec()))
            .unwrap_or_default();
        Ok(Self {
            tokenizer,
            py_tokenizer,
            verify,
            max_messages,
            max_tokens,
            state: Mutex::new(State {
                rollout: Rollout::new(stops),
                ..Default::default()
            }),
        })
    }

    /// Number of recorded turns.
    fn __len__(&self) -> usize {
        self.state.lock().rollout.len()
    }

    /// Token ids this rollout holds for its turns: each turn keeps the ids it reused from an
    /// earlier turn shared, not copied, so this grows with the rollout's tokens, not with
    /// turns times prompt length.
    #[getter]
    fn held_ids(&self) -> usize {
        self.state.lock().rollout.held_ids()
    }

    /// Messages kept converted and hashed for reuse: those the last two turns used, so this
    /// stays about twice the conversation's length however the caller builds its messages.
    #[getter]
    fn cached_messages(&self) -> usize {
        self.state.lock().seen.len()
    }

    /// Plans the next turn with the local tokenizer: TITO ids, or MITO with a reason (and the
    /// full local render as `prompt_ids` when `render_mito`). A conversation of more than
    /// `max_messages` messages, or a plan of more than `max_tokens` prompt ids, raises
    /// `RolloutLimitError`.
    #[pyo3(signature = (messages, tools = None, chat_template_kwargs = None, *, render_mito = true))]
    fn prepare(
        &self,
        py: Python<'_>,
        messages: &Bound<'_, PyAny>,
        tools: Option<&Bound<'_, PyAny>>,
        chat_template_kwargs: Option<&Bound<'_, PyAny>>,
        render_mito: bool,
    ) -> PyResult<PyPlan> {
        self.plan_local(py, messages, tools, chat_template_kwargs, render_mito)
            .map(PyPlan::new)
    }

    /// One turn's work before HTTP, in one call: plans it as `prepare` does, checks the prompt
    /// ids it will send against the vocabulary (`InvalidTokenIdError`, naming `transport`) and
    /// writes its request body (`Plan.body`, the bytes `request_body` writes). The body sends the
    /// ids as a `kind` body on TITO turns, and on MITO turns with ids unless `mito_messages`;
    /// otherwise the messages, as a `"chat"` body for `messages_target` (`Plan.sends_ids` says
    /// which). `stop_token_ids`, `body_template_kwargs` and `top_logprobs` go into the body as
    /// given (each transport sends what its route takes). The ids are checked against
    /// `vocab_size` when given (the caller's tokenizer's).
    #[pyo3(signature = (messages, tools = None, chat_template_kwargs = None, *, kind, model,
                        transport, sampling = None, max_tokens = None, stop_token_ids = None,
                        cache_salt = None, priority = None, body_template_kwargs = false,
                        top_logprobs = None, messages_target = None, mito_messages = false,
                        vocab_size = None, render_mito = true))]
    #[allow(clippy::too_many_arguments)]
    fn plan_turn(
        &self,
        py: Python<'_>,
        messages: &Bound<'_, PyAny>,
        tools: Option<&Bound<'_, PyAny>>,
        chat_template_kwargs: Option<&Bound<'_, PyAny>>,
        kind: &str,
        model: &str,
        transport: &str,
        sampling: Option<&Bound<'_, PyAny>>,
        max_tokens: Option<u32>,
        stop_token_ids: Option<Vec<u32>>,
        cache_salt: Option<String>,
        priority: Option<i64>,
        body_template_kwargs: bool,
        top_logprobs: Option<u32>,
        messages_target: Option<&str>,
        mito_messages: bool,
        vocab_size: Option<usize>,
        render_mito: bool,
    ) -> PyResult<PyPlan> {
        let plan = self.plan_local(py, messages, tools, chat_template_kwargs, render_mito)?;
        let request = TurnRequest {
            kind,
            model,
            transport,
            sampling,
            max_tokens,
            stop_token_ids,
            cache_salt,
            priority,
            body_template_kwargs,
            top_logprobs,
            messages_target,
            mito_messages,
            vocab_size,
        };
        with_body(py, plan, messages, tools, chat_template_kwargs, request)
    }

    /// The body step of `plan_turn` for a plan made otherwise (`begin`/`finish` with a remote
    /// tokenizer): a new `Plan` of the same turn carrying its body.
    #[pyo3(signature = (plan, messages, tools = None, chat_template_kwargs = None, *, kind, model,
                        transport, sampling = None, max_tokens = None, stop_token_ids = None,
                        cache_salt = None, priority = None, body_template_kwargs = false,
                        top_logprobs = None, messages_target = None, mito_messages = false,
                        vocab_size = None))]
    #[allow(clippy::too_many_arguments)]
    fn plan_body(
        &self,
        py: Python<'_>,
        plan: &Bound<'_, PyPlan>,
        messages: &Bound<'_, PyAny>,
        tools: Option<&Bound<'_, PyAny>>,
        chat_template_kwargs: Option<&Bound<'_, PyAny>>,
        kind: &str,
        model: &str,
        transport: &str,
        sampling: Option<&Bound<'_, PyAny>>,
        max_tokens: Option<u32>,
        stop_token_ids: Option<Vec<u32>>,
        cache_salt: Option<String>,
        priority: Option<i64>,
        body_template_kwargs: bool,
        top_logprobs: Option<u32>,
        messages_target: Option<&str>,
        mito_messages: bool,
        vocab_size: Option<usize>,
    ) -> PyResult<PyPlan> {
        let request = TurnRequest {
            kind,
            model,
            transport,
            sampling,
            max_tokens,
            stop_token_ids,
            cache_salt,
            priority,
            body_template_kwargs,
            top_logprobs,
            messages_target,
            mito_messages,
            vocab_size,
        };
        let plan = plan.get().plan.clone();
        with_body(py, plan, messages, tools, chat_template_kwargs, request)
    }

    /// One turn's work after HTTP, in one call: parses `body` as `wire`, checks it (top
    /// logprobs present when `top_logprobs` asked for them, logprobs 1:1 with the ids, every id
    /// inside the vocabulary: `ResponseParseError`), decodes the message from the ids when
    /// `decode_locally` (and the server sent no tool calls), records the turn with the engine's
    /// prompt ids when it reports different ones (`TurnData.prompt_mismatch`), counts it in
    /// `fasttito.metrics()`, and returns the turn's data. `complete_turn` is the same without
    /// the record and the count.
    #[pyo3(signature = (plan, body, *, wire, transport, decode_locally, top_logprobs = None,
                        vocab_size = None, max_body_bytes = ParseOptions::default().max_body_bytes,
                        max_depth = ParseOptions::default().max_depth))]
    #[allow(clippy::too_many_arguments)]
    fn complete(
        &self,
        py: Python<'_>,
        plan: &Bound<'_, PyPlan>,
        body: Bound<'_, PyBytes>,
        wire: &str,
        transport: &str,
        decode_locally: bool,
        top_logprobs: Option<u32>,
        vocab_size: Option<usize>,
        max_body_bytes: usize,
        max_depth: usize,
    ) -> PyResult<TurnData> {
        let plan = &plan.get().plan;
        if !plan.is_planned() {
            return Err(ArgumentError::new_err(
                "this plan holds a caller's prompt ids (plan_ids), not a turn this rollout \
                 planned: complete it with complete_turn, which records nothing",
            ));
        }
        let step = CompleteStep {
            wire,
            transport,
            decode_locally,
            top_logprobs,
            vocab_size,
            opts: ParseOptions {
                max_body_bytes,
                max_depth,
            },
        };
        let tokenizer = self.py_tokenizer.as_ref().map(|t| t.get());
        let sent = plan.prompt_ids.as_ref();
        let done = complete_step(py, plan, sent, &body, tokenizer, &step)?;
        let Some(record) = done.record_ids.or_else(|| plan.prompt_ids.clone()) else {
            return Err(ResponseParseError::new_err(format!(
                "{transport}: the response has no prompt token ids and none were rendered \
                 locally, so the turn cannot be recorded for token-in reuse; ask the server \
                 for them (vLLM: return_token_ids) or give the Client a tokenizer"
            )));
        };
        let data = done.data;
        let message = data.message(py);
        let mut state = self.state.lock();
        let (hash, _) = intern_message(&mut state.seen, message.bind(py), "message")?;
        state.rollout.record(
            plan,
            record,
            done.completion.to_vec(),
            hash,
            data.finish_reason(),
        );
        drop(state);
        Ok(data)
    }

    /// Plans the next turn for a remote tokenizer: a `Plan` (MITO), or a `PendingBridge` whose
    /// two message lists the caller tokenizes and passes to `finish`.
    #[pyo3(signature = (messages, tools = None, chat_template_kwargs = None))]
    fn begin(
        &self,
        py: Python<'_>,
        messages: &Bound<'_, PyAny>,
        tools: Option<&Bound<'_, PyAny>>,
        chat_template_kwargs: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        self.check_messages(py, messages)?;
        let p = self.prepare_inputs(messages, tools, chat_template_kwargs, true)?;
        let refs: Vec<&Json> = p.jsons.iter().map(|j| j.as_ref()).collect();
        let input = TurnInput {
            messages: &refs,
            prefix: &p.prefix,
            tools_fp: p.tools_fp,
            kwargs_fp: p.kwargs_fp,
        };
        let begun = self.state.lock().rollout.begin(&input);
        match begun {
            Begin::Fallback(plan) => {
                self.check_tokens(py, &plan)?;
                Ok(Py::new(py, PyPlan::new(plan))?.into_any())
            }
            Begin::Bridge(pending) => {
                let full = json_to_py(py, &Json::Array(pending.inputs.full.clone()))?;
                let base = json_to_py(py, &Json::Array(pending.inputs.base.clone()))?;
                Ok(Py::new(
                    py,
                    PyPendingBridge {
                        pending: Mutex::new(Some(pending)),
                        full,
                        base,
                    },
                )?
                .into_any())
            }
        }
    }

    /// Completes a pending bridge from the ids of its `full_messages` and `base_messages`; with
    /// `None` for both (tokenization failed), the turn falls back to MITO.
    #[pyo3(signature = (pending, full_ids, base_ids))]
    fn finish(
        &self,
        py: Python<'_>,
        pending: &Bound<'_, PyPendingBridge>,
        full_ids: Option<&Bound<'_, PyAny>>,
        base_ids: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyPlan> {
        let full_ids = full_ids
            .map(|ids| ids_from_py(ids, "full_ids"))
            .transpose()?;
        let base_ids = base_ids
            .map(|ids| ids_from_py(ids, "base_ids"))
            .transpose()?;
        let pending = pending
            .get()
            .pending
            .lock()
            .take()
            .ok_or_else(|| ArgumentError::new_err("this PendingBridge was already finished"))?;
        let state = self.state.lock();
        let plan = match (full_ids, base_ids) {
            (Some(full), Some(base)) => state.rollout.finish(pending, &full, &base),
            _ => state.rollout.fail(pending),
        };
        drop(state);
        self.check_tokens(py, &plan)?;
        Ok(PyPlan::new(plan))
    }

    /// Records a turn planned elsewhere, e.g. a verifiers trajectory step: its prompt and
    /// completion messages, ids, and whether it was truncated.
    #[pyo3(signature = (prompt, completion, prompt_ids, completion_ids, is_truncated = false, tools = None, chat_template_kwargs = None))]
    #[allow(clippy::too_many_arguments)]
    fn ingest(
        &self,
        prompt: &Bound<'_, PyAny>,
        completion: &Bound<'_, PyAny>,
        prompt_ids: &Bound<'_, PyAny>,
        completion_ids: &Bound<'_, PyAny>,
        is_truncated: bool,
        tools: Option<&Bound<'_, PyAny>>,
        chat_template_kwargs: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let prompt_ids = ids_from_py(prompt_ids, "prompt_ids")?;
        let completion_ids = ids_from_py(completion_ids, "completion_ids")?.to_vec();
        let all = PyList::empty(prompt.py());
        for m in prompt.try_iter()? {
            all.append(m?)?;
        }
        let prompt_len = all.len();
        for m in completion.try_iter()? {
            all.append(m?)?;
        }
        let p = self.prepare_inputs(all.as_any(), tools, chat_template_kwargs, false)?;
        let refs: Vec<&Json> = p.jsons.iter().map(|j| j.as_ref()).collect();
        self.state.lock().rollout.ingest(
            &refs,
            &p.prefix,
            prompt_len,
            prompt_ids,
            completion_ids,
            is_truncated,
            p.tools_fp,
            p.kwargs_fp,
        );
        Ok(())
    }

    /// Records the turn of `plan`: the completion ids, the assistant message appended to the
    /// conversation, the finish reason, and the engine's prompt ids when they are not the plan's.
    #[pyo3(signature = (plan, completion_ids, message, finish_reason = None, prompt_ids = None))]
    fn record(
        &self,
        plan: &Bound<'_, PyPlan>,
        completion_ids: &Bound<'_, PyAny>,
        message: &Bound<'_, PyAny>,
        finish_reason: Option<&str>,
        prompt_ids: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let plan = &plan.get().plan;
        if !plan.is_planned() {
            return Err(ArgumentError::new_err(
                "this plan holds a caller's prompt ids (plan_ids), not a turn this rollout \
                 planned: it cannot be recorded",
            ));
        }
        let completion_ids = ids_from_py(completion_ids, "completion_ids")?.to_vec();
        let prompt_ids = prompt_ids
            .map(|ids| ids_from_py(ids, "prompt_ids"))
            .transpose()?;
        let prompt_ids = match prompt_ids.or_else(|| plan.prompt_ids.clone()) {
            Some(ids) => ids,
            None => {
                return Err(ArgumentError::new_err(
                    "this MITO turn has no prompt ids: pass the engine's prompt_ids (the \
                     response's prompt_token_ids) to record()",
                ))
            }
        };
        let mut state = self.state.lock();
        let (hash, _) = intern_message(&mut state.seen, message, "message")?;
        state
            .rollout
            .record(plan, prompt_ids, completion_ids, hash, finish_reason);
        Ok(())
    }
}
