//! A rollout: the turns of one multi-turn conversation, and the plan for its next turn.
//!
//! Each recorded turn keeps its prompt and completion ids verbatim (as a [`Rope`] sharing the
//! ids it reused from an earlier turn, so memory grows with the rollout's tokens, not their
//! square), how it ended, and
//! fingerprints of its tools and `chat_template_kwargs`. Its messages (prompt + the assistant
//! reply) are known by one prefix hash (the chain of the per-message hashes of
//! [`crate::tito::messages`]), indexed in a hash map. To plan a turn, the prompt's prefix hashes are
//! looked up longest-first: the first hit is the longest previous turn whose messages are a
//! prefix of the prompt (strictly shorter), found in O(prompt messages) hash-map probes however
//! many turns came before. Equal prefixes: the latest turn wins.
//!
//! Then the checks of `docs/wire.md` E.1/E.2 decide TITO or an explicit fallback
//! ([`Fallback`]), and [`crate::tito::bridge`] stitches the ids. Bridge tokenization is pluggable:
//! [`Rollout::prepare_local`] renders with the local [`Tokenizer`]; [`Rollout::begin`] +
//! [`Rollout::finish`] let a caller tokenize the two bridge conversations elsewhere (vLLM's
//! `/tokenize`) with the same algorithm and results.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde_json::{Map, Value as Json};

use crate::error::ErrorKind;
use crate::template::chat::{self, ChatOptions};
use crate::template::tokenizer::Tokenizer;
use crate::tito::bridge::{self, BridgeInputs, Fallback, Stitched};
use crate::tito::messages::{chain, is_multimodal};
use crate::tito::metrics;
use crate::tito::rope::Rope;

/// How a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnEnd {
    /// On a stop token.
    Stop,
    /// Cut by the length limit (`finish_reason == "length"`).
    Length,
    /// Not cut by length, yet the last id is not a stop token (Dynamo SGLang, dyn #14302).
    NoStopToken,
}

#[derive(Debug, Clone)]
struct Turn {
    /// The prompt ids.
    prompt: Rope,
    /// The prompt then the completion ids.
    full: Rope,
    end: TurnEnd,
    tools_fp: u128,
    kwargs_fp: u128,
}

/// How the next turn goes to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Token ids: the previous turn's ids verbatim plus the bridge.
    Tito,
    /// Messages, rendered by the engine (or locally, in full).
    Mito,
}

/// Stitched ids compared with a full local re-render (verify mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Stitched ids equal the re-render.
    pub identical: bool,
    /// The first index where they differ.
    pub first_diff: Option<usize>,
    /// Length of the stitched ids.
    pub stitched_len: usize,
    /// Length of the re-rendered ids.
    pub rendered_len: usize,
    /// Decoded stitched ids around the difference.
    pub stitched_context: String,
    /// Decoded re-rendered ids around the difference.
    pub rendered_context: String,
}

/// The plan for one turn.
#[derive(Debug, Clone)]
pub struct Plan {
    /// TITO or MITO.
    pub mode: Mode,
    /// Why the turn is MITO.
    pub fallback: Option<Fallback>,
    /// The prompt ids: stitched (TITO), or a full local render (MITO, when asked for). Shared
    /// with the recorded turn, not copied.
    pub prompt_ids: Option<Arc<[u32]>>,
    /// The matched previous turn (0-based).
    pub matched_turn: Option<usize>,
    /// Leading ids copied verbatim from the matched turn.
    pub reused: usize,
    /// Ids after the reused ones (gap + bridge + generation prompt).
    pub bridged: usize,
    /// Template tokens after the stop token that were put back.
    pub gap: usize,
    /// A duplicated leading stop token was dropped.
    pub deduped: bool,
    /// Verify mode's comparison, when it ran.
    pub verify: Option<VerifyReport>,
    /// This turn's number in the rollout (1-based).
    pub turn: usize,
    /// `prompt_ids` as the matched turn's rope plus the bridge (TITO).
    rope: Option<Rope>,
    prefix: Vec<u128>,
    tools_fp: u128,
    kwargs_fp: u128,
    multimodal: bool,
    /// Set once the turn was counted in [`metrics`] (shared by clones of the plan).
    counted: Arc<AtomicBool>,
}

impl Plan {
    /// Counts the turn in [`metrics`] as TITO or MITO (with its reason), once per plan however
    /// often it is called; `true` the first time. [`Rollout::record`] calls it: a caller that
    /// sends a planned turn without recording it (verifiers records through `ingest`) calls it
    /// when the turn completed.
    pub fn count(&self) -> bool {
        if self.counted.swap(true, Ordering::Relaxed) {
            return false;
        }
        match (self.mode, self.fallback) {
            (Mode::Tito, _) => metrics::count_tito(self.reused, self.bridged),
            (Mode::Mito, reason) => metrics::count_mito(reason.unwrap_or(Fallback::FirstTurn)),
        }
        true
    }

    /// The plan of turn `turn` whose prompt `ids` the caller chose rather than a rollout (a
    /// verifiers subclass's own `get_prompt_ids`): `mode` as the caller says, nothing reused
    /// (`bridged` is every id of a TITO turn, 0 of a MITO one), no fallback reason. fasttito
    /// did not plan it, so it never counts in [`metrics`], and no rollout can record it.
    pub fn of_ids(ids: Arc<[u32]>, mode: Mode, turn: usize) -> Self {
        Plan {
            mode,
            fallback: None,
            matched_turn: None,
            reused: 0,
            bridged: if mode == Mode::Tito { ids.len() } else { 0 },
            prompt_ids: Some(ids),
            gap: 0,
            deduped: false,
            verify: None,
            turn,
            rope: None,
            counted: Arc::new(AtomicBool::new(true)),
            prefix: Vec::new(),
            tools_fp: 0,
            kwargs_fp: 0,
            multimodal: false,
        }
    }

    /// Planned by a rollout (from its messages), not made by [`Plan::of_ids`]: only such a
    /// plan can be recorded.
    pub fn is_planned(&self) -> bool {
        !self.prefix.is_empty()
    }

    fn mito(reason: Fallback, input: &TurnInput<'_>, turn: usize) -> Self {
        Plan {
            mode: Mode::Mito,
            fallback: Some(reason),
            prompt_ids: None,
            matched_turn: None,
            reused: 0,
            bridged: 0,
            gap: 0,
            deduped: false,
            verify: None,
            turn,
            rope: None,
            counted: Arc::default(),
            prefix: input.prefix.to_vec(),
            tools_fp: input.tools_fp,
            kwargs_fp: input.kwargs_fp,
            multimodal: input.multimodal(),
        }
    }
}

/// One turn's prompt, as the engine sees it: messages, their prefix hashes, fingerprints.
#[derive(Debug, Clone, Copy)]
pub struct TurnInput<'a> {
    /// The whole conversation so far.
    pub messages: &'a [&'a Json],
    /// `prefix[k]` is the prefix hash of `messages[..=k]` ([`crate::tito::messages::prefix_hashes`]).
    pub prefix: &'a [u128],
    /// Fingerprint of the tools ([`crate::tito::messages::fingerprint`]).
    pub tools_fp: u128,
    /// Fingerprint of the `chat_template_kwargs`.
    pub kwargs_fp: u128,
}

impl TurnInput<'_> {
    fn multimodal(&self) -> bool {
        self.messages.iter().any(|m| is_multimodal(m))
    }
}

/// A TITO turn waiting for its two bridge conversations to be tokenized.
#[derive(Debug, Clone)]
pub struct PendingBridge {
    /// The conversations to tokenize: `full` with the generation prompt, `base` without.
    pub inputs: BridgeInputs,
    matched: usize,
    plan: Plan,
}

/// What [`Rollout::begin`] decided.
#[derive(Debug, Clone)]
pub enum Begin {
    /// The turn goes as messages.
    Fallback(Plan),
    /// The turn can go as tokens once the bridge is tokenized.
    Bridge(PendingBridge),
}

/// The turns of one conversation.
#[derive(Debug, Clone, Default)]
pub struct Rollout {
    turns: Vec<Turn>,
    by_prefix: FxHashMap<u128, usize>,
    multimodal: bool,
    stop_ids: Vec<u32>,
}

impl Rollout {
    /// An empty rollout whose turns end on one of `stop_ids` (empty: any last id counts as the
    /// stop token, as verifiers assumes).
    pub fn new(stop_ids: Vec<u32>) -> Self {
        Self {
            stop_ids,
            ..Default::default()
        }
    }

    /// Number of recorded turns.
    pub fn len(&self) -> usize {
        self.turns.len()
    }

    /// No turn recorded yet.
    pub fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }

    /// Decides TITO or a fallback for `input`, and for TITO the two bridge conversations.
    pub fn begin(&self, input: &TurnInput<'_>) -> Begin {
        let turn = self.turns.len() + 1;
        let fallback = |reason| Begin::Fallback(Plan::mito(reason, input, turn));
        if self.multimodal || input.multimodal() {
            return fallback(Fallback::Multimodal);
        }
        if self.turns.is_empty() {
            return fallback(Fallback::FirstTurn);
        }
        let Some((prefix_len, matched)) = self.longest_match(input.prefix) else {
            return fallback(Fallback::NoPrefixMatch);
        };
        let tail = &input.messages[prefix_len..];
        if let Err(reason) = bridge::check_tail(tail) {
            return fallback(reason);
        }
        let previous = &self.turns[matched];
        match previous.end {
            TurnEnd::Stop => {}
            TurnEnd::Length => return fallback(Fallback::PreviousTurnTruncated),
            TurnEnd::NoStopToken => return fallback(Fallback::StopTokenMissing),
        }
        if previous.tools_fp != input.tools_fp {
            return fallback(Fallback::ToolsChanged);
        }
        if previous.kwargs_fp != input.kwargs_fp {
            return fallback(Fallback::ChatTemplateKwargsChanged);
        }
        let names = bridge::tool_names(&input.messages[..prefix_len]);
        let inputs = bridge::bridge_inputs(tail, &names, false);
        let mut plan = Plan::mito(Fallback::TokenizationFailed, input, turn);
        plan.matched_turn = Some(matched);
        Begin::Bridge(PendingBridge {
            inputs,
            matched,
            plan,
        })
    }

    /// Completes a TITO turn from the token ids of `pending.inputs.full` and `.base`.
    pub fn finish(&self, pending: PendingBridge, full: &[u32], base: &[u32]) -> Plan {
        let previous = &self.turns[pending.matched];
        let mut plan = pending.plan;
        match bridge::stitch(&previous.full.pieces(), full, base) {
            Ok(Stitched {
                ids,
                reused,
                gap,
                deduped,
            }) => {
                plan.rope = Some(previous.full.push(ids[reused..].into()));
                plan.mode = Mode::Tito;
                plan.fallback = None;
                plan.bridged = ids.len() - reused;
                plan.reused = reused;
                plan.gap = gap;
                plan.deduped = deduped;
                plan.prompt_ids = Some(ids.into());
            }
            Err(reason) => {
                plan.fallback = Some(reason);
            }
        }
        plan
    }

    /// Records that a pending bridge could not be tokenized: the turn goes as messages.
    pub fn fail(&self, pending: PendingBridge) -> Plan {
        pending.plan
    }

    /// Plans a turn with the local tokenizer for the bridge. With `render_mito`, a MITO turn
    /// gets the full local render as its prompt ids; with `verify`, a TITO turn is compared
    /// with the full local render.
    pub fn prepare_local(
        &self,
        tok: &Tokenizer,
        input: &TurnInput<'_>,
        tools: Option<&Arc<[Json]>>,
        kwargs: &Map<String, Json>,
        render_mito: bool,
        verify: bool,
    ) -> Plan {
        let options = |add_generation_prompt| ChatOptions {
            tools: tools.cloned(),
            add_generation_prompt,
            kwargs: kwargs.clone(),
            ..Default::default()
        };
        let full_render = || {
            let messages: Vec<Json> = input.messages.iter().map(|m| (*m).clone()).collect();
            chat::render_ids(tok, messages, &options(true))
        };
        let mut plan = match self.begin(input) {
            Begin::Fallback(plan) => plan,
            Begin::Bridge(mut pending) => {
                let fps = (input.tools_fp, input.kwargs_fp);
                let mut ids = bridge_ids(tok, &pending.inputs, &options, fps);
                if matches!(&ids, Err(e) if e.kind() == ErrorKind::Template) {
                    // DeepSeek templates concatenate `arguments` as a string (models README).
                    let tail: Vec<&Json> = pending.inputs.full[1..].iter().collect();
                    let names =
                        bridge::tool_names(&input.messages[..input.messages.len() - tail.len()]);
                    pending.inputs = bridge::bridge_inputs(&tail, &names, true);
                    ids = bridge_ids(tok, &pending.inputs, &options, fps);
                }
                match ids {
                    Ok((full, base)) => self.finish(pending, &full, &base),
                    Err(_) => self.fail(pending),
                }
            }
        };
        match plan.mode {
            Mode::Mito if render_mito => {
                // A failed full render leaves the prompt ids empty: the caller sends messages
                // and the engine's template reports the problem.
                if let Ok(ids) = full_render() {
                    metrics::count_rendered(ids.len());
                    plan.prompt_ids = Some(ids.into());
                }
            }
            Mode::Tito if verify => {
                if let (Ok(rendered), Some(stitched)) = (full_render(), plan.prompt_ids.as_deref())
                {
                    let report = compare(tok, stitched, &rendered);
                    if !report.identical {
                        metrics::count_verify_mismatch();
                    }
                    plan.verify = Some(report);
                }
            }
            _ => {}
        }
        plan
    }

    /// Records the turn planned by `plan`: the engine's prompt ids (those it reported, or the
    /// plan's), the completion ids, the hash of the assistant message the caller appends, and
    /// the finish reason. The turn counts in [`metrics`] as TITO or MITO here, once it completed:
    /// a planned turn whose request failed is not a turn.
    pub fn record(
        &mut self,
        plan: &Plan,
        prompt_ids: Arc<[u32]>,
        completion_ids: Vec<u32>,
        completion_hash: u128,
        finish_reason: Option<&str>,
    ) {
        plan.count();
        let prompt_hash = plan.prefix.last().copied().unwrap_or(0);
        self.multimodal |= plan.multimodal;
        let prompt = match (&plan.rope, &plan.prompt_ids) {
            (Some(rope), Some(ids)) if Arc::ptr_eq(ids, &prompt_ids) => rope.clone(),
            _ => self.share(self.longest_match(&plan.prefix).map(|(_, t)| t), prompt_ids),
        };
        let turn = self.turn(
            prompt,
            completion_ids,
            finish_reason == Some("length"),
            plan.tools_fp,
            plan.kwargs_fp,
        );
        self.push(chain(prompt_hash, completion_hash), turn);
    }

    /// Records a turn that was not planned here (a verifiers trajectory step): `messages` is its
    /// `prompt_len` prompt messages followed by its completion messages, `prefix` their prefix
    /// hashes.
    #[allow(clippy::too_many_arguments)]
    pub fn ingest(
        &mut self,
        messages: &[&Json],
        prefix: &[u128],
        prompt_len: usize,
        prompt_ids: Arc<[u32]>,
        completion_ids: Vec<u32>,
        truncated: bool,
        tools_fp: u128,
        kwargs_fp: u128,
    ) {
        let Some(key) = prefix.last().copied() else {
            return;
        };
        self.multimodal |= messages.iter().any(|m| is_multimodal(m));
        let matched = self
            .longest_match(&prefix[..prompt_len.min(prefix.len())])
            .map(|(_, t)| t);
        let prompt = self.share(matched, prompt_ids);
        let turn = self.turn(prompt, completion_ids, truncated, tools_fp, kwargs_fp);
        self.push(key, turn);
    }

    /// Token ids this rollout holds, each piece shared between turns counted once.
    pub fn held_ids(&self) -> usize {
        Rope::held(self.turns.iter().map(|t| &t.full))
    }

    /// The longest previous turn whose messages are a strict prefix of the `prefix.len()`
    /// messages hashed in `prefix`, as (its message count, its index); equal prefixes: the
    /// latest turn (O(messages) hash probes).
    fn longest_match(&self, prefix: &[u128]) -> Option<(usize, usize)> {
        (1..prefix.len())
            .rev()
            .find_map(|k| self.by_prefix.get(&prefix[k - 1]).map(|t| (k, *t)))
    }

    /// `ids` as a rope sharing what it repeats of turn `matched` (its prompt and completion,
    /// or its prompt alone); a single new piece otherwise.
    fn share(&self, matched: Option<usize>, ids: Arc<[u32]>) -> Rope {
        if let Some(turn) = matched.map(|m| &self.turns[m]) {
            for reused in [&turn.full, &turn.prompt] {
                if reused.is_prefix_of(&ids) {
                    return reused.push(ids[reused.len()..].into());
                }
            }
        }
        Rope::leaf(ids)
    }

    fn turn(
        &self,
        prompt: Rope,
        completion_ids: Vec<u32>,
        truncated: bool,
        tools_fp: u128,
        kwargs_fp: u128,
    ) -> Turn {
        let end = self.end_of(&completion_ids, truncated);
        let full = prompt.push(completion_ids.into());
        Turn {
            prompt,
            full,
            end,
            tools_fp,
            kwargs_fp,
        }
    }

    fn end_of(&self, completion_ids: &[u32], truncated: bool) -> TurnEnd {
        if truncated {
            return TurnEnd::Length;
        }
        match completion_ids.last() {
            None => TurnEnd::NoStopToken,
            Some(id) if !self.stop_ids.is_empty() && !self.stop_ids.contains(id) => {
                TurnEnd::NoStopToken
            }
            Some(_) => TurnEnd::Stop,
        }
    }

    fn push(&mut self, key: u128, turn: Turn) {
        self.by_prefix.insert(key, self.turns.len());
        self.turns.push(turn);
    }
}

/// The ids of the bridge's two renders; the base one from the tokenizer's cache when it can
/// (keyed by the dummy's JSON and the tools and template-variable fingerprints).
fn bridge_ids(
    tok: &Tokenizer,
    inputs: &BridgeInputs,
    options: &dyn Fn(bool) -> ChatOptions,
    (tools_fp, kwargs_fp): (u128, u128),
) -> crate::Result<(Vec<u32>, Arc<[u32]>)> {
    let full = chat::render_ids(tok, inputs.full.clone(), &options(true))?;
    let render_base = || chat::render_ids(tok, inputs.base.clone(), &options(false));
    let base = match (tok.base_renders(), serde_json::to_vec(&inputs.base)) {
        (Some(cache), Ok(mut key)) => {
            key.extend_from_slice(&tools_fp.to_le_bytes());
            key.extend_from_slice(&kwargs_fp.to_le_bytes());
            cache.get_or_render(&key, render_base)?
        }
        _ => render_base()?.into(),
    };
    Ok((full, base))
}

/// Compares stitched ids with a full re-render, with decoded context around the first difference.
pub fn compare(tok: &Tokenizer, stitched: &[u32], rendered: &[u32]) -> VerifyReport {
    let first_diff = stitched
        .iter()
        .zip(rendered)
        .position(|(a, b)| a != b)
        .or_else(|| (stitched.len() != rendered.len()).then(|| stitched.len().min(rendered.len())));
    let context = |ids: &[u32], at: usize| {
        let lo = at.saturating_sub(8);
        let hi = (at + 8).min(ids.len());
        let before = tok
            .decode(&ids[lo..at.min(ids.len())], false)
            .unwrap_or_default();
        let after = tok
            .decode(&ids[at.min(ids.len())..hi], false)
            .unwrap_or_default();
        format!("{before}⟦{after}⟧")
    };
    VerifyReport {
        identical: first_diff.is_none(),
        first_diff,
        stitched_len: stitched.len(),
        rendered_len: rendered.len(),
        stitched_context: first_diff.map(|i| context(stitched, i)).unwrap_or_default(),
        rendered_context: first_diff.map(|i| context(rendered, i)).unwrap_or_default(),
    }
}

/// A bridge made without the previous turn's messages (renderers' `bridge_to_next_turn` knows
/// only the previous ids): the ids after a turn that ended on `stop`, for the new messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoneBridge {
    /// The ids to append to the previous prompt + completion.
    pub ids: Vec<u32>,
    /// The conversation rendered for the bridge: the dummy assistant, then the new messages.
    pub full: Vec<Json>,
    /// Where the bridge starts in the render of `full` (with the generation prompt).
    pub offset: usize,
    /// Template tokens after the stop token that were put back.
    pub gap: usize,
    /// A duplicated leading stop token was dropped.
    pub deduped: bool,
}

/// The bridge for `tail` after a turn that ended on `stop`, by the same rules and renders as a
/// [`Rollout`] turn (`names`: the previous turn's tool names by call id, for templates that
/// render a tool result with its call's name). The tail rule and the tokenization failures are
/// the same fallbacks; the caller checks that `stop` is a stop token.
pub fn lone_bridge(
    tok: &Tokenizer,
    stop: u32,
    tail: &[&Json],
    names: &Map<String, Json>,
    tools: Option<&Arc<[Json]>>,
    kwargs: &Map<String, Json>,
    fps: (u128, u128),
) -> std::result::Result<LoneBridge, Fallback> {
    if tail.iter().any(|m| is_multimodal(m)) {
        return Err(Fallback::Multimodal);
    }
    bridge::check_tail(tail)?;
    let options = |add_generation_prompt| ChatOptions {
        tools: tools.cloned(),
        add_generation_prompt,
        kwargs: kwargs.clone(),
        ..Default::default()
    };
    let mut inputs = bridge::bridge_inputs(tail, names, false);
    let mut ids = bridge_ids(tok, &inputs, &options, fps);
    if matches!(&ids, Err(e) if e.kind() == ErrorKind::Template) {
        inputs = bridge::bridge_inputs(tail, names, true);
        ids = bridge_ids(tok, &inputs, &options, fps);
    }
    let (full, base) = ids.map_err(|_| Fallback::TokenizationFailed)?;
    let Stitched {
        ids, gap, deduped, ..
    } = bridge::stitch(&[&[stop]], &full, &base)?;
    Ok(LoneBridge {
        ids: ids[1..].to_vec(),
        offset: base.len() - gap + usize::from(deduped),
        full: inputs.full,
        gap,
        deduped,
    })
}

#[cfg(test)]
mod lone_bridge_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn qwen25_bridge_after_a_stop_token_and_the_fallbacks() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/qwen2.5");
        let tok = Tokenizer::from_dir(&dir, &Default::default()).unwrap();
        let stop = tok.stop_token_ids()[0];
        let user = json!({"role": "user", "content": "And in Rome?"});
        let b = lone_bridge(&tok, stop, &[&user], &Map::new(), None, &Map::new(), (0, 0)).unwrap();
        assert_eq!(
            tok.decode(&b.ids, false).unwrap(),
            "\n<|im_start|>user\nAnd in Rome?<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!((b.gap, b.deduped, b.full.len()), (1, false, 2));
        let assistant = json!({"role": "assistant", "content": "x"});
        assert_eq!(
            lone_bridge(
                &tok,
                stop,
                &[&assistant],
                &Map::new(),
                None,
                &Map::new(),
                (0, 0)
            ),
            Err(Fallback::InvalidTail)
        );
        let image =
            json!({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]});
        assert_eq!(
            lone_bridge(
                &tok,
                stop,
                &[&image],
                &Map::new(),
                None,
                &Map::new(),
                (0, 0)
            ),
            Err(Fallback::Multimodal)
        );
    }
}
