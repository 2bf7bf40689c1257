//! The TITO engine end to end without Python: a tool-using rollout on the vendored Qwen2.5
//! tokenizer, where every turn's completion is the template's own rendering of the assistant
//! turn. Stitched prompt ids must equal a full re-render on every turn >= 2.

use std::path::Path;

use fasttito::template::chat::{self, ChatOptions};
use fasttito::tito::bridge::Fallback;
use fasttito::tito::messages::{fingerprint, message_hash, prefix_hashes};
use fasttito::tito::rollout::{Mode, Rollout, TurnInput};
use fasttito::{LoadOptions, Tokenizer};
use serde_json::{json, Map, Value as Json};

fn qwen() -> Tokenizer {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join("qwen2.5");
    Tokenizer::from_dir(&dir, &LoadOptions::default()).unwrap()
}

fn tools() -> Vec<Json> {
    vec![
        json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}),
    ]
}

/// The ids of `assistant` as the template renders it after `conversation`, up to the stop token.
fn completion_ids(tok: &Tokenizer, conversation: &[Json], assistant: &Json) -> Vec<u32> {
    let opts = |g| ChatOptions {
        tools: Some(tools().into()),
        add_generation_prompt: g,
        ..Default::default()
    };
    let prefix = chat::render(tok, conversation.to_vec(), &opts(true)).unwrap();
    let mut with = conversation.to_vec();
    with.push(assistant.clone());
    let full = chat::render(tok, with, &opts(false)).unwrap();
    assert!(full.starts_with(&prefix));
    let rest = &full[prefix.len()..];
    let end = rest.find("<|im_end|>").unwrap() + "<|im_end|>".len();
    tok.encode(&rest[..end], false).unwrap()
}

struct Driver {
    tok: Tokenizer,
    rollout: Rollout,
    messages: Vec<Json>,
}

impl Driver {
    fn turn(
        &mut self,
        tools_for_turn: &[Json],
        kwargs: &Map<String, Json>,
    ) -> fasttito::tito::rollout::Plan {
        let hashes: Vec<u128> = self.messages.iter().map(message_hash).collect();
        let prefix = prefix_hashes(&hashes);
        let refs: Vec<&Json> = self.messages.iter().collect();
        let tools_json = Json::Array(tools_for_turn.to_vec());
        let kwargs_json = Json::Object(kwargs.clone());
        let input = TurnInput {
            messages: &refs,
            prefix: &prefix,
            tools_fp: fingerprint(Some(&tools_json)),
            kwargs_fp: fingerprint((!kwargs.is_empty()).then_some(&kwargs_json)),
        };
        let tools: std::sync::Arc<[Json]> = tools_for_turn.into();
        self.rollout
            .prepare_local(&self.tok, &input, Some(&tools), kwargs, true, true)
    }

    fn reply(&mut self, plan: &fasttito::tito::rollout::Plan, assistant: Json, finish: &str) {
        let ids = completion_ids(&self.tok, &self.messages, &assistant);
        let hash = message_hash(&assistant);
        self.rollout.record(
            plan,
            plan.prompt_ids.clone().unwrap(),
            ids,
            hash,
            Some(finish),
        );
        self.messages.push(assistant);
    }
}

fn call(i: usize) -> Json {
    json!({"role": "assistant", "content": "", "tool_calls": [{"id": format!("call{i:05}"), "type": "function", "function": {"name": "get_weather", "arguments": format!("{{\"city\": \"c{i}\"}}")}}]})
}

#[test]
fn stitched_ids_equal_full_render_on_every_turn() {
    let tok = qwen();
    let stops = tok.stop_token_ids().to_vec();
    let mut d = Driver {
        tok,
        rollout: Rollout::new(stops),
        messages: vec![json!({"role": "user", "content": "Weather in 5 cities?"})],
    };
    let kwargs = Map::new();
    let plan = d.turn(&tools(), &kwargs);
    assert_eq!(plan.fallback, Some(Fallback::FirstTurn));
    d.reply(&plan, call(0), "tool_calls");
    for i in 1..6 {
        d.messages.push(json!({"role": "tool", "tool_call_id": format!("call{:05}", i - 1), "content": format!("{{\"temp\": {i}}}")}));
        if i == 3 {
            d.messages
                .push(json!({"role": "user", "content": "and faster please"}));
        }
        let plan = d.turn(&tools(), &kwargs);
        assert_eq!(plan.mode, Mode::Tito, "turn {i}: {:?}", plan.fallback);
        let report = plan.verify.clone().unwrap();
        assert!(report.identical, "turn {i}: {report:?}");
        assert_eq!(plan.gap, 1);
        d.reply(&plan, call(i), "tool_calls");
    }
}

#[test]
fn fallbacks_are_explicit() {
    let tok = qwen();
    let stops = tok.stop_token_ids().to_vec();
    let mut d = Driver {
        tok,
        rollout: Rollout::new(stops),
        messages: vec![json!({"role": "user", "content": "hi"})],
    };
    let kwargs = Map::new();
    let plan = d.turn(&tools(), &kwargs);
    d.reply(&plan, call(0), "length");
    d.messages
        .push(json!({"role": "tool", "tool_call_id": "call00000", "content": "r"}));
    assert_eq!(
        d.turn(&tools(), &kwargs).fallback,
        Some(Fallback::PreviousTurnTruncated)
    );
    // A changed tool set or template kwargs, an assistant in the tail, an unknown prefix.
    let mut d2 = Driver {
        tok: qwen(),
        rollout: Rollout::new(vec![151645]),
        messages: vec![json!({"role": "user", "content": "hi"})],
    };
    let plan = d2.turn(&tools(), &kwargs);
    d2.reply(&plan, call(0), "tool_calls");
    d2.messages
        .push(json!({"role": "tool", "tool_call_id": "call00000", "content": "r"}));
    assert_eq!(d2.turn(&[], &kwargs).fallback, Some(Fallback::ToolsChanged));
    let mut k = Map::new();
    k.insert("enable_thinking".into(), json!(false));
    assert_eq!(
        d2.turn(&tools(), &k).fallback,
        Some(Fallback::ChatTemplateKwargsChanged)
    );
    d2.messages
        .push(json!({"role": "assistant", "content": "x"}));
    assert_eq!(
        d2.turn(&tools(), &kwargs).fallback,
        Some(Fallback::InvalidTail)
    );
    d2.messages[0] = json!({"role": "user", "content": "other"});
    assert_eq!(
        d2.turn(&tools(), &kwargs).fallback,
        Some(Fallback::NoPrefixMatch)
    );
}

#[test]
fn base_renders_are_shared_across_rollouts_and_change_no_id() {
    // two rollouts with the same shape: the second one's bridges come from the first one's
    // cached base renders, and both equal a full re-render (verify mode) on every turn
    let tok = qwen();
    let stops = tok.stop_token_ids().to_vec();
    assert!(
        tok.base_renders().is_some(),
        "the Qwen2.5 template does not read the clock"
    );
    let mut d = Driver {
        tok,
        rollout: Rollout::new(stops.clone()),
        messages: vec![json!({"role": "user", "content": "Weather?"})],
    };
    let kwargs = Map::new();
    let mut stitched = Vec::new();
    for pass in 0..2 {
        d.rollout = Rollout::new(stops.clone());
        d.messages.truncate(1);
        let plan = d.turn(&tools(), &kwargs);
        d.reply(&plan, call(0), "tool_calls");
        for i in 1..4 {
            d.messages.push(json!({"role": "tool", "tool_call_id": format!("call{:05}", i - 1), "content": "{}"}));
            let plan = d.turn(&tools(), &kwargs);
            assert_eq!(
                plan.mode,
                Mode::Tito,
                "pass {pass} turn {i}: {:?}",
                plan.fallback
            );
            assert!(
                plan.verify.as_ref().unwrap().identical,
                "pass {pass} turn {i}"
            );
            stitched.push(plan.prompt_ids.clone().unwrap().to_vec());
            d.reply(&plan, call(i), "tool_calls");
        }
        let cache = d.tok.base_renders().unwrap();
        assert_eq!(
            (cache.len(), cache.hits()),
            (3, 3 * pass),
            "one base render per dummy shape"
        );
    }
    assert_eq!(stitched[..3], stitched[3..]);
}

#[test]
fn templates_reading_the_clock_get_no_base_render_cache() {
    // Llama 3's date line comes from strftime_now: a cached render could be from yesterday
    let dir = tempfile::tempdir().unwrap();
    let qwen = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join("qwen2.5");
    std::fs::copy(
        qwen.join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    let template =
        "{{ strftime_now('%d %b %Y') }}{% for m in messages %}{{ m.content }}{% endfor %}";
    let config = json!({"chat_template": template, "eos_token": "<|im_end|>"});
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    let tok = Tokenizer::from_dir(dir.path(), &LoadOptions::default()).unwrap();
    assert!(tok.base_renders().is_none());
}

#[test]
fn turns_share_reused_ids_so_memory_grows_with_tokens() {
    let tok = qwen();
    let stops = tok.stop_token_ids().to_vec();
    let mut d = Driver {
        tok,
        rollout: Rollout::new(stops),
        messages: vec![json!({"role": "user", "content": "Weather in 40 cities?"})],
    };
    let kwargs = Map::new();
    let (mut prompts_total, mut last_full) = (0, 0);
    for i in 0..40 {
        if i > 0 {
            d.messages.push(json!({"role": "tool", "tool_call_id": format!("call{:05}", i - 1), "content": format!("{{\"temp\": {i}}}")}));
        }
        let plan = d.turn(&tools(), &kwargs);
        assert!(
            i == 0 || plan.mode == Mode::Tito,
            "turn {i}: {:?}",
            plan.fallback
        );
        assert!(plan.verify.as_ref().is_none_or(|r| r.identical), "turn {i}");
        let ids = plan.prompt_ids.clone().unwrap();
        prompts_total += ids.len();
        d.reply(&plan, call(i), "tool_calls");
        last_full = ids.len()
            + completion_ids(
                &d.tok,
                &d.messages[..d.messages.len() - 1],
                &d.messages[d.messages.len() - 1],
            )
            .len();
    }
    // Every id of the last turn's prompt + completion is held once: nothing more, however many
    // turns repeated them (a copy per turn would hold about 20 times as many here).
    assert_eq!(d.rollout.held_ids(), last_full);
    assert!(
        prompts_total > 15 * last_full,
        "{prompts_total} vs {last_full}"
    );
}

#[test]
fn engine_prompt_ids_that_differ_from_the_plan_are_kept_as_sent() {
    // A turn recorded with ids other than the plan's (the engine's own prompt ids): the next
    // turn stitches onto exactly those, sharing only the prefix they have in common.
    let tok = qwen();
    let stops = tok.stop_token_ids().to_vec();
    let mut d = Driver {
        tok,
        rollout: Rollout::new(stops),
        messages: vec![json!({"role": "user", "content": "hi"})],
    };
    let kwargs = Map::new();
    let plan = d.turn(&tools(), &kwargs);
    d.reply(&plan, call(0), "tool_calls");
    d.messages
        .push(json!({"role": "tool", "tool_call_id": "call00000", "content": "r"}));
    let plan = d.turn(&tools(), &kwargs);
    assert_eq!(plan.mode, Mode::Tito);
    let mut engine: Vec<u32> = plan.prompt_ids.clone().unwrap().to_vec();
    let n = engine.len();
    engine[n - 2] = 11; // the engine saw something else at the end
    let assistant = call(1);
    let completion = completion_ids(&d.tok, &d.messages, &assistant);
    d.rollout.record(
        &plan,
        engine.clone().into(),
        completion.clone(),
        message_hash(&assistant),
        Some("tool_calls"),
    );
    d.messages.push(assistant);
    d.messages
        .push(json!({"role": "tool", "tool_call_id": "call00001", "content": "s"}));
    let plan = d.turn(&tools(), &kwargs);
    assert_eq!(plan.mode, Mode::Tito);
    let ids = plan.prompt_ids.clone().unwrap();
    assert_eq!(ids[..n], engine[..]);
    assert_eq!(ids[n..n + completion.len()], completion[..]);
}
