//! Completion decoding on the real model folders of `$FASTTITO_MODELS` (docs/models.md).
//!
//! The round trip, per family and message shape: render `conversation + [assistant]` and
//! `conversation` with the generation prompt (`fasttito::template::chat::render`, identical to
//! transformers by the parity suite), take the text after that prefix up to and including the
//! stop token, encode it, decode it with `fasttito::decode`, and check that
//! `conversation + [decoded.message]` renders to the same text (the next turn stays TITO) and
//! that content, reasoning, tool names and arguments match. Shapes a template cannot render
//! are left out, each with the reason (see `docs/models.md`). Then: completions as
//! the models really sample them, which decode right but cannot re-render exactly; malformed
//! completions (raw text as content, counted, never a panic); and a grammar fuzzer whose every
//! decoded message must render without error.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use fasttito::decode::{decode_completion, DecodedTurn, Decoder, Family};
use fasttito::template::chat::{self, ChatOptions};
use fasttito::{LoadOptions, Tokenizer};
use serde_json::{json, Map, Value as Json};

fn models_dir() -> PathBuf {
    match std::env::var_os("FASTTITO_MODELS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"),
    }
}

/// The tokenizer of a complete folder (shared between tests), or `None` to skip.
fn load(folder: &str) -> Option<Arc<Tokenizer>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Tokenizer>>>> = OnceLock::new();
    let dir = models_dir().join(folder);
    if !dir.join("tokenizer.json").is_file() {
        eprintln!(
            "skipping {folder}: no {}",
            dir.join("tokenizer.json").display()
        );
        return None;
    }
    let cache = CACHE.get_or_init(Default::default);
    if let Some(tok) = cache.lock().unwrap().get(folder) {
        return Some(tok.clone());
    }
    let tok = Arc::new(Tokenizer::from_dir(&dir, &LoadOptions::default()).unwrap());
    cache.lock().unwrap().insert(folder.to_owned(), tok.clone());
    Some(tok)
}

fn tools() -> Vec<Json> {
    vec![
        json!({"type": "function", "function": {"name": "get_weather", "description": "Get the weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city"},
            "days": {"type": "integer"}}, "required": ["city"]}}}),
        json!({"type": "function", "function": {"name": "get_time", "description": "Get the time in a time zone",
            "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}),
    ]
}

/// A system and a user message; Mistral-Nemo's template moves the system message in front of
/// the *last* user message only while it is the last message, so it gets none.
fn conversation_for(model: &Model) -> Vec<Json> {
    let user =
        json!({"role": "user", "content": "What is the weather in Paris, and the time there?"});
    if model.family == Family::Mistral {
        return vec![user];
    }
    vec![
        json!({"role": "system", "content": "You are a helpful assistant."}),
        user,
    ]
}

/// How a family's template takes messages; which shapes it can render.
struct Model {
    folder: &'static str,
    family: Family,
    /// Arguments as a JSON string (DeepSeek) instead of a dict.
    string_args: bool,
    /// Argument values come back as strings (Qwen3-Coder prints them with `|string`).
    string_values: bool,
    /// The template renders more than one call per message.
    parallel: bool,
    /// The template renders content next to tool calls as content.
    content_with_calls: bool,
    /// The template renders `reasoning_content` (else a message's reasoning is not in the text).
    renders_reasoning: bool,
    /// The template renders tool calls at all on transformers 5.x semantics.
    renders_calls: bool,
    kwargs: fn() -> Map<String, Json>,
}

fn no_kwargs() -> Map<String, Json> {
    Map::new()
}

fn llama_kwargs() -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("date_string".into(), json!("26 Jul 2024"));
    m
}

const QWEN25: Model = Model {
    folder: "qwen2.5",
    family: Family::Hermes,
    string_args: false,
    string_values: false,
    parallel: true,
    content_with_calls: true,
    renders_reasoning: false,
    renders_calls: true,
    kwargs: no_kwargs,
};
const QWEN3: Model = Model {
    folder: "qwen3",
    renders_reasoning: true,
    ..QWEN25
};
// Its template prints no reasoning at all (Qwen3-Coder does not think).
const QWEN3_CODER: Model = Model {
    folder: "qwen3-coder",
    family: Family::Qwen3Coder,
    string_values: true,
    ..QWEN25
};
// "This model only supports single tool-calls at once!"; content next to a call is not printed.
const LLAMA: Model = Model {
    folder: "llama-3.2",
    family: Family::Llama3,
    parallel: false,
    content_with_calls: false,
    kwargs: llama_kwargs,
    ..QWEN25
};
// Content next to tool calls is not printed.
const MISTRAL: Model = Model {
    folder: "mistral-nemo",
    family: Family::Mistral,
    content_with_calls: false,
    ..QWEN25
};
// Only `tool_calls[0]` is printed; content next to a call is printed as the analysis message.
const GPT_OSS: Model = Model {
    folder: "gpt-oss",
    family: Family::Harmony,
    parallel: false,
    content_with_calls: false,
    renders_reasoning: true,
    ..QWEN25
};
// Arguments must be a JSON string; R1 has no reasoning field.
const DEEPSEEK_R1: Model = Model {
    folder: "deepseek-r1",
    family: Family::DeepSeek,
    string_args: true,
    ..QWEN25
};
// V3 prints tool calls only when `content is none`, which transformers 5.x (and fasttito)
// drop before rendering: no tool-call shape can round-trip.
const DEEPSEEK_V3: Model = Model {
    folder: "deepseek-v3",
    renders_calls: false,
    ..DEEPSEEK_R1
};

fn options(model: &Model, add_generation_prompt: bool) -> ChatOptions {
    ChatOptions {
        tools: Some(tools().into()),
        add_generation_prompt,
        kwargs: (model.kwargs)(),
        ..Default::default()
    }
}

fn render(tok: &Tokenizer, model: &Model, messages: Vec<Json>, gen: bool) -> String {
    chat::render(tok, messages, &options(model, gen)).unwrap()
}

/// The sampled text of `assistant`: after the generation prompt, through the stop token.
fn completion_text(tok: &Tokenizer, model: &Model, assistant: &Json) -> (String, String) {
    let prefix = render(tok, model, conversation_for(model), true);
    let mut with = conversation_for(model);
    with.push(assistant.clone());
    let full = render(tok, model, with, false);
    assert!(
        full.starts_with(&prefix),
        "{}: the generation prompt is not a prefix of\n{full}",
        model.folder
    );
    let rest = &full[prefix.len()..];
    let decoder = Decoder::new(tok, model.family);
    let stop_end = decoder
        .stop_token_ids()
        .iter()
        .map(|id| tok.decode(&[*id], false).unwrap())
        .filter_map(|stop| rest.find(&stop).map(|at| at + stop.len()))
        .min()
        .unwrap_or_else(|| panic!("{}: no stop token in {rest:?}", model.folder));
    (rest[..stop_end].to_owned(), full)
}

fn call(model: &Model, index: usize, name: &str, args: Json) -> Json {
    let id = if model.family == Family::Mistral {
        format!("abcDEF{index:03}")
    } else {
        format!("call_{index}")
    };
    let arguments = if model.string_args {
        Json::String(python_json(&args))
    } else {
        args
    };
    json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
}

/// `json.dumps(value)` for the simple values used here (serde's compact form, spaced).
fn python_json(value: &Json) -> String {
    match value {
        Json::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", Json::String(k.clone()), python_json(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Json::Array(items) => format!(
            "[{}]",
            items.iter().map(python_json).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

fn assistant(content: &str, reasoning: Option<&str>, calls: Vec<Json>) -> Json {
    let mut m = Map::new();
    m.insert("role".into(), json!("assistant"));
    m.insert("content".into(), json!(content));
    if let Some(r) = reasoning {
        m.insert("reasoning_content".into(), json!(r));
    }
    if !calls.is_empty() {
        m.insert("tool_calls".into(), Json::Array(calls));
    }
    Json::Object(m)
}

/// What decoding should give back.
struct Expect {
    content: String,
    reasoning: String,
    calls: Vec<(String, Json)>,
}

fn expect(content: &str, reasoning: &str, calls: &[(&str, Json)]) -> Expect {
    Expect {
        content: content.to_owned(),
        reasoning: reasoning.to_owned(),
        calls: calls
            .iter()
            .map(|(n, a)| ((*n).to_owned(), a.clone()))
            .collect(),
    }
}

/// The round trip of one message shape.
fn round_trip(
    tok: &Tokenizer,
    model: &Model,
    shape: &str,
    message: &Json,
    want: &Expect,
) -> DecodedTurn {
    let (text, full) = completion_text(tok, model, message);
    let ids = tok.encode(&text, false).unwrap();
    let turn = decode_completion(tok, model.family, &ids).unwrap();
    let ctx = format!("{} / {shape}: completion {text:?}", model.folder);
    assert!(
        turn.stop_token_id.is_some(),
        "{ctx}: stop token not recognized"
    );
    assert_eq!(
        turn.content.as_deref().unwrap_or(""),
        want.content,
        "{ctx}: content"
    );
    assert_eq!(
        turn.reasoning_content.as_deref().unwrap_or(""),
        want.reasoning,
        "{ctx}: reasoning"
    );
    let got: Vec<(String, Json)> = turn
        .tool_calls
        .iter()
        .map(|c| (c.name.clone(), c.arguments.clone()))
        .collect();
    assert_eq!(got, want.calls, "{ctx}: tool calls");
    assert_eq!(turn.unparsed_tool_calls, 0, "{ctx}: unparsed calls");
    assert_eq!(
        turn.finish_reason_hint,
        (!want.calls.is_empty()).then_some("tool_calls"),
        "{ctx}: finish reason"
    );
    if model.family == Family::Mistral {
        for (i, c) in turn.tool_calls.iter().enumerate() {
            assert_eq!(
                c.id,
                format!("abcDEF{i:03}"),
                "{ctx}: Mistral ids come from the text"
            );
            assert!(!c.generated_id);
        }
    }
    let mut again = conversation_for(model);
    again.push(turn.message.clone());
    let rerendered = chat::render(tok, again, &options(model, false)).unwrap_or_else(|e| {
        panic!(
            "{ctx}: the decoded message does not render: {e}\n{:#}",
            turn.message
        )
    });
    assert_eq!(
        rerendered, full,
        "{ctx}: re-render differs; decoded message {:#}",
        turn.message
    );
    eprintln!("round trip: {} / {shape}", model.folder);
    turn
}

fn weather() -> Json {
    json!({"city": "Paris"})
}

fn run_model(model: &Model) {
    let Some(tok) = load(model.folder) else {
        return;
    };
    let tok = &*tok;
    let stringify = |args: Json| -> Json {
        if !model.string_values {
            return args;
        }
        let Json::Object(map) = args else {
            unreachable!()
        };
        Json::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let s = match v {
                        Json::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, Json::String(s))
                })
                .collect(),
        )
    };
    let text = "It is sunny in Paris: 21 °C ☀️, 東京 is cloudy.\nAnything else?";
    // Qwen3 prints an empty think block for the last assistant turn, which decodes as empty
    // reasoning; the expectations compare `None` and `""` alike.
    round_trip(
        tok,
        model,
        "text",
        &assistant(text, None, vec![]),
        &expect(text, "", &[]),
    );

    if !model.renders_calls {
        return;
    }
    let one = assistant("", None, vec![call(model, 0, "get_weather", weather())]);
    let turn = round_trip(
        tok,
        model,
        "one call",
        &one,
        &expect("", "", &[("get_weather", stringify(weather()))]),
    );
    if model.family != Family::Mistral {
        assert_eq!(turn.tool_calls[0].id, "call_0");
        assert!(turn.tool_calls[0].generated_id);
    }

    let rich = json!({"city": "São Paulo", "days": 3, "opts": {"units": "°C", "hours": [1, 2.5, -3]}, "exact": true, "note": null});
    let rich = if model.string_values {
        json!({"city": "São Paulo", "days": 3, "code": "def f():\n    return 1\n", "lead": "\nindented"})
    } else {
        rich
    };
    let msg = assistant("", None, vec![call(model, 0, "get_weather", rich.clone())]);
    round_trip(
        tok,
        model,
        "one call, rich arguments",
        &msg,
        &expect("", "", &[("get_weather", stringify(rich))]),
    );

    if model.parallel {
        let time = json!({"tz": "Europe/Paris"});
        let msg = assistant(
            "",
            None,
            vec![
                call(model, 0, "get_weather", weather()),
                call(model, 1, "get_time", time.clone()),
            ],
        );
        let want = expect(
            "",
            "",
            &[
                ("get_weather", stringify(weather())),
                ("get_time", stringify(time)),
            ],
        );
        let turn = round_trip(tok, model, "two parallel calls", &msg, &want);
        if model.family != Family::Mistral {
            let ids: Vec<&str> = turn.tool_calls.iter().map(|c| c.id.as_str()).collect();
            assert_eq!(ids, ["call_0", "call_1"]);
        }
    }

    if model.content_with_calls {
        let msg = assistant(
            "Let me check.",
            None,
            vec![call(model, 0, "get_weather", weather())],
        );
        let want = expect(
            "Let me check.",
            "",
            &[("get_weather", stringify(weather()))],
        );
        round_trip(tok, model, "content and a call", &msg, &want);
    }

    let reasoning = "The user wants the weather.\nI should call get_weather.";
    if model.renders_reasoning || [Family::Qwen3Coder, Family::DeepSeek].contains(&model.family) {
        // Where the template drops reasoning (Qwen3-Coder, R1), it is not in the sampled text.
        let shown = if model.renders_reasoning {
            reasoning
        } else {
            ""
        };
        let msg = assistant(
            "",
            Some(reasoning),
            vec![call(model, 0, "get_weather", weather())],
        );
        let want = expect("", shown, &[("get_weather", stringify(weather()))]);
        round_trip(tok, model, "reasoning and a call", &msg, &want);
        let msg = assistant(text, Some(reasoning), vec![]);
        round_trip(
            tok,
            model,
            "reasoning and text",
            &msg,
            &expect(text, shown, &[]),
        );
    }

    if model.family == Family::Harmony {
        // gpt-oss prints a tool-call message's content as the analysis message: it comes back
        // as reasoning, and that message renders the same text.
        let msg = assistant(
            "Let me check.",
            None,
            vec![call(model, 0, "get_weather", weather())],
        );
        let want = expect("", "Let me check.", &[("get_weather", weather())]);
        round_trip(
            tok,
            model,
            "content and a call (printed as analysis)",
            &msg,
            &want,
        );
    }
}

#[test]
fn qwen2_5_round_trips() {
    run_model(&QWEN25);
}

#[test]
fn qwen3_round_trips() {
    run_model(&QWEN3);
}

#[test]
fn qwen3_coder_round_trips() {
    run_model(&QWEN3_CODER);
}

#[test]
fn llama_3_2_round_trips() {
    run_model(&LLAMA);
}

#[test]
fn mistral_nemo_round_trips() {
    run_model(&MISTRAL);
}

#[test]
fn gpt_oss_round_trips() {
    run_model(&GPT_OSS);
}

#[test]
fn deepseek_r1_round_trips() {
    run_model(&DEEPSEEK_R1);
}

#[test]
fn deepseek_v3_round_trips_text() {
    run_model(&DEEPSEEK_V3);
}

const ALL: [&Model; 8] = [
    &QWEN25,
    &QWEN3,
    &QWEN3_CODER,
    &LLAMA,
    &MISTRAL,
    &GPT_OSS,
    &DEEPSEEK_R1,
    &DEEPSEEK_V3,
];

#[test]
fn families_are_detected_from_the_templates() {
    for model in ALL {
        let Some(tok) = load(model.folder) else {
            continue;
        };
        let source = &tok.select_template(None, false).unwrap().source;
        assert_eq!(Family::detect(source), model.family, "{}", model.folder);
        assert_eq!(
            Decoder::for_tokenizer(&tok).family(),
            model.family,
            "{}",
            model.folder
        );
    }
    let glm = models_dir().join("_incomplete/glm-4.5/chat_template.jinja");
    if let Ok(source) = std::fs::read_to_string(glm) {
        assert_eq!(
            Family::detect(&source),
            Family::Plain,
            "GLM's XML calls are not decoded"
        );
    }
}

#[test]
fn reasoning_is_split_only_where_the_template_renders_it() {
    let cases = [
        ("qwen2.5", Family::Hermes, false),
        ("qwen3", Family::Hermes, true),
        ("qwen3-coder", Family::Qwen3Coder, false),
        ("deepseek-r1", Family::DeepSeek, true),
        ("gpt-oss", Family::Harmony, false),
        ("llama-3.2", Family::Llama3, false),
    ];
    for (folder, family, split) in cases {
        let Some(tok) = load(folder) else { continue };
        assert_eq!(
            Decoder::new(&tok, family).splits_reasoning(),
            split,
            "{folder}"
        );
    }
    // Qwen2.5 keeps a think block in the content, where its template prints it back.
    if let Some(tok) = load("qwen2.5") {
        let d = decode(
            &tok,
            Family::Hermes,
            "<think>\nhmm\n</think>\n\nHi<|im_end|>",
        );
        assert_eq!(d.content.as_deref(), Some("<think>\nhmm\n</think>\n\nHi"));
        assert_eq!(d.reasoning_content, None);
    }
}

fn decode(tok: &Tokenizer, family: Family, text: &str) -> DecodedTurn {
    let ids = tok.encode(text, false).unwrap();
    decode_completion(tok, family, &ids).unwrap()
}

/// Completions as models sample them, in forms their templates do not write back.
#[test]
fn real_model_forms_decode() {
    if let Some(tok) = load("gpt-oss") {
        let d = decode(&tok, Family::Harmony, "<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\":\"Paris\"}<|call|>");
        assert_eq!(d.reasoning_content.as_deref(), Some("Need the weather."));
        assert_eq!(d.tool_calls.len(), 1);
        assert_eq!(d.tool_calls[0].name, "get_weather");
        assert_eq!(d.tool_calls[0].arguments, weather());
        assert_eq!(d.tool_calls[0].arguments_text, "{\"city\":\"Paris\"}");
        assert_eq!(d.finish_reason_hint, Some("tool_calls"));
        assert_eq!(d.stop_token_id, tok.token_to_id("<|call|>"));
        // A preamble, reasoning and a call: the message cannot carry all three (the template
        // raises on content and thinking together), so the preamble stays in `content` only.
        let d = decode(&tok, Family::Harmony, "<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>commentary<|message|>Checking.<|end|><|start|>assistant to=functions.get_time<|channel|>commentary json<|message|>{\"tz\": \"UTC\"}<|call|>");
        assert_eq!(d.content.as_deref(), Some("Checking."));
        assert_eq!(d.message["content"], "");
        assert_eq!(d.message["reasoning_content"], "Think.");
        let mut conv = conversation_for(&GPT_OSS);
        conv.push(d.message.clone());
        chat::render(&tok, conv, &options(&GPT_OSS, false)).unwrap();
        // A built-in tool is not a function call the message can express.
        let d = decode(&tok, Family::Harmony, "<|channel|>analysis<|message|>x<|end|><|start|>assistant<|channel|>analysis to=browser.search code<|message|>{\"query\": \"x\"}<|call|>");
        assert_eq!(d.unparsed_tool_calls, 1);
        assert!(d.tool_calls.is_empty());
        assert!(d.content.unwrap().contains("to=browser.search"));
        // Unparsed text never carries what the template refuses in content.
        let d = decode(
            &tok,
            Family::Harmony,
            "<|channel|>commentary to=browser.open<|channel|>final<|message|>{}<|call|>",
        );
        assert_eq!(d.unparsed_tool_calls, 1);
        assert_eq!(
            d.content.as_deref(),
            Some("commentary to=browser.openfinal{}")
        );
        // Plain text (no harmony structure) is content.
        let d = decode(&tok, Family::Harmony, "Hello<|return|>");
        assert_eq!(d.content.as_deref(), Some("Hello"));
    }
    if let Some(tok) = load("deepseek-r1") {
        let d = decode(
            &tok,
            Family::DeepSeek,
            "<think>\nLet me add.\n</think>\n\nThe answer is 4.<｜end▁of▁sentence｜>",
        );
        assert_eq!(d.reasoning_content.as_deref(), Some("Let me add."));
        assert_eq!(d.content.as_deref(), Some("The answer is 4."));
        let d = decode(&tok, Family::DeepSeek, "<think>\nCall it.\n</think>\n\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\":\"Paris\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>");
        assert_eq!(d.reasoning_content.as_deref(), Some("Call it."));
        assert_eq!(d.content, None);
        assert_eq!(
            d.message["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(d.tool_calls[0].arguments, weather());
        // DeepSeek-V3.1's form.
        let d = decode(&tok, Family::DeepSeek, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{\"tz\": \"UTC\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>");
        assert_eq!(d.tool_calls[0].name, "get_time");
        assert_eq!(d.stop_token_id, None);
    }
    if let Some(tok) = load("deepseek-v3") {
        // V3 writes a single call without <｜tool▁calls▁end｜> (its template's bug); the call
        // decodes, though V3's template cannot render it back on transformers 5.x semantics.
        let d = decode(&tok, Family::DeepSeek, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜><｜end▁of▁sentence｜>");
        assert_eq!(d.tool_calls.len(), 1);
        assert_eq!(d.unparsed_tool_calls, 0);
    }
    if let Some(tok) = load("qwen3") {
        // The prompt opened the think block (Qwen3-Thinking-2507's generation prompt).
        let d = decode(
            &tok,
            Family::Hermes,
            "Reasoning here.\n</think>\n\nAnswer.<|im_end|>",
        );
        assert_eq!(d.reasoning_content.as_deref(), Some("Reasoning here."));
        assert_eq!(d.content.as_deref(), Some("Answer."));
        // Cut by the length limit inside the think block: all reasoning, no stop token.
        let d = decode(&tok, Family::Hermes, "<think>\nStill thinking");
        assert_eq!(d.reasoning_content.as_deref(), Some("Still thinking"));
        assert_eq!((d.content, d.stop_token_id), (None, None));
        // Text before <think> means it is not a leading block: nothing is split.
        let d = decode(&tok, Family::Hermes, "Hi <think>x</think> there");
        assert_eq!(d.content.as_deref(), Some("Hi <think>x</think> there"));
        // ... and the message says so, or Qwen3's template would split that content itself.
        assert_eq!(
            (d.reasoning_content, &d.message["reasoning_content"]),
            (None, &json!(""))
        );
        // Compact JSON parses (it re-renders in `json.dumps` form); text after a call moves
        // in front of the calls, where the template prints content.
        let d = decode(&tok, Family::Hermes, "<think>\nok\n</think>\n\n<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}\n</tool_call>\nDone.<|im_end|>");
        assert_eq!(d.tool_calls[0].arguments_text, "{\"city\": \"Paris\"}");
        assert_eq!(d.content.as_deref(), Some("Done."));
        // `<|endoftext|>` is a stop too.
        let d = decode(&tok, Family::Hermes, "Done.<|endoftext|>");
        assert_eq!(
            (d.content.as_deref(), d.stop_token_id),
            (Some("Done."), Some(151643))
        );
    }
    if let Some(tok) = load("mistral-nemo") {
        // Without an id in the text: a generated 9-character one, which the template accepts.
        let d = decode(
            &tok,
            Family::Mistral,
            "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]</s>",
        );
        assert_eq!(d.tool_calls[0].id, "call00000");
        assert!(d.tool_calls[0].generated_id);
        let mut conv = conversation_for(&MISTRAL);
        conv.push(d.message.clone());
        let rendered = chat::render(&tok, conv, &options(&MISTRAL, false)).unwrap();
        assert!(rendered.ends_with("\"id\": \"call00000\"}]</s>"));
    }
    if let Some(tok) = load("llama-3.2") {
        let d = decode(
            &tok,
            Family::Llama3,
            "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}<|eom_id|>",
        );
        assert_eq!(d.tool_calls[0].name, "get_weather");
        assert_eq!(d.content, None);
        // JSON that is not a call is an answer.
        let d = decode(&tok, Family::Llama3, "{\"temperature\": 21}<|eot_id|>");
        assert_eq!(
            (d.content.as_deref(), d.unparsed_tool_calls),
            (Some("{\"temperature\": 21}"), 0)
        );
    }
}

/// A malformed completion: the raw text (stop token excluded, special tokens kept inside the
/// unparsed call) is the content, with the count, and never a panic.
fn malformed(
    folder: &str,
    family: Family,
    text: &str,
    content: &str,
    unparsed: usize,
    parsed: usize,
) {
    let Some(tok) = load(folder) else { return };
    let d = decode(&tok, family, text);
    assert_eq!(
        d.content.as_deref().unwrap_or(""),
        content,
        "{folder}: {text:?}"
    );
    assert_eq!(d.unparsed_tool_calls, unparsed, "{folder}: {text:?}");
    assert_eq!(d.tool_calls.len(), parsed, "{folder}: {text:?}");
    assert_eq!(
        d.finish_reason_hint.is_some(),
        parsed > 0,
        "{folder}: {text:?}"
    );
}

#[test]
fn malformed_completions_are_kept_as_content() {
    let truncated = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par";
    malformed("qwen2.5", Family::Hermes, truncated, truncated, 1, 0);
    let unclosed = "Checking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n";
    malformed(
        "qwen2.5",
        Family::Hermes,
        &format!("{unclosed}<|im_end|>"),
        unclosed,
        1,
        0,
    );
    let extra_key = "<tool_call>\n{\"name\": \"f\", \"arguments\": {}, \"x\": 1}\n</tool_call>";
    malformed("qwen3", Family::Hermes, extra_key, extra_key, 1, 0);
    malformed(
        "qwen3",
        Family::Hermes,
        "}}{{<tool_call></tool_call>garbage",
        "}}{{<tool_call></tool_call>garbage",
        1,
        0,
    );
    malformed("qwen3", Family::Hermes, "", "", 0, 0);
    malformed("qwen3", Family::Hermes, "<|im_end|>", "", 0, 0);
    // One bad call and one good: the bad one is the content, the good one a call.
    let mixed = "<tool_call>\n{bad}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>";
    malformed(
        "qwen2.5",
        Family::Hermes,
        mixed,
        "<tool_call>\n{bad}\n</tool_call>",
        1,
        1,
    );
    if let Some(tok) = load("qwen2.5") {
        // ... and that message renders back to exactly what was sampled.
        let d = decode(&tok, Family::Hermes, mixed);
        let mut conv = conversation_for(&QWEN25);
        let prefix = render(&tok, &QWEN25, conv.clone(), true);
        conv.push(d.message);
        let full = render(&tok, &QWEN25, conv, false);
        assert!(full[prefix.len()..].starts_with(mixed), "{full}");
    }

    let no_param_end =
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</function>\n</tool_call>";
    malformed(
        "qwen3-coder",
        Family::Qwen3Coder,
        no_param_end,
        no_param_end,
        1,
        0,
    );
    let cut = "Sure.\n\n<tool_call>\n<function=get_weather>\n<parameter=ci";
    malformed("qwen3-coder", Family::Qwen3Coder, cut, cut, 1, 0);

    let cut = "{\"name\": \"get_weather\", \"parameters\": {\"city\": ";
    malformed(
        "llama-3.2",
        Family::Llama3,
        &format!("{cut}<|eot_id|>"),
        cut,
        1,
        0,
    );
    let two = "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}; {\"name\": \"get_time\", \"parameters\": {\"tz\": \"UTC\"}}";
    malformed("llama-3.2", Family::Llama3, two, two, 2, 0);
    malformed(
        "llama-3.2",
        Family::Llama3,
        "<|python_tag|>garbage",
        "<|python_tag|>garbage",
        1,
        0,
    );

    let cut = "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par";
    malformed("mistral-nemo", Family::Mistral, cut, cut, 1, 0);
    let bad_id = "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {}, \"id\": \"call_1\"}]";
    malformed(
        "mistral-nemo",
        Family::Mistral,
        &format!("{bad_id}</s>"),
        bad_id,
        1,
        0,
    );
    let half = "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {}}, {\"name\": 3}]";
    malformed("mistral-nemo", Family::Mistral, half, half, 2, 0);

    let cut = "<|channel|>analysis<|message|>Hmm.<|end|><|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{\"city\": ";
    let raw = "<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{\"city\": ";
    malformed(
        "gpt-oss",
        Family::Harmony,
        &format!("{cut}<|call|>"),
        raw,
        1,
        0,
    );
    malformed(
        "gpt-oss",
        Family::Harmony,
        " to=functions.get_weather<|channel|>comm",
        " to=functions.get_weather<|channel|>comm",
        1,
        0,
    );
    // Another role is not the assistant's turn any more: plain text, special tokens skipped.
    malformed(
        "gpt-oss",
        Family::Harmony,
        "<|message|><|end|><|start|>user<|message|>x",
        "userx",
        0,
        0,
    );

    let cut = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}";
    malformed("deepseek-r1", Family::DeepSeek, cut, cut, 1, 0);
    let no_fence = "Hi<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n{}<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
    malformed("deepseek-r1", Family::DeepSeek, no_fence, no_fence, 1, 0);
}

#[test]
fn out_of_vocabulary_ids_are_typed_errors() {
    let Some(tok) = load("qwen2.5") else { return };
    let err = decode_completion(&tok, Family::Hermes, &[9707, u32::MAX]).unwrap_err();
    assert_eq!(err.kind(), fasttito::ErrorKind::Tokenize);
}

/// Decoding in runs split at special tokens gives `decode(skip_special_tokens=True)`.
#[test]
fn plain_content_equals_skip_special_decode() {
    for model in ALL {
        let Some(tok) = load(model.folder) else {
            continue;
        };
        let decoder = Decoder::new(&tok, Family::Plain);
        if decoder.splits_reasoning() {
            continue;
        }
        let specials: Vec<u32> = tok
            .hf()
            .get_added_vocabulary()
            .get_added_tokens_decoder()
            .keys()
            .copied()
            .collect();
        let mut rng = Lcg(7);
        for _ in 0..50 {
            let ids: Vec<u32> = (0..rng.below(40))
                .map(|_| {
                    if rng.below(4) == 0 {
                        specials[rng.below(specials.len())]
                    } else {
                        rng.below(tok.vocab_size()) as u32
                    }
                })
                .collect();
            let d = decoder.decode(&tok, &ids).unwrap();
            let kept = if d.stop_token_id.is_some() {
                &ids[..ids.len() - 1]
            } else {
                &ids[..]
            };
            assert_eq!(
                d.content.unwrap_or_default(),
                tok.decode(kept, true).unwrap(),
                "{}: {ids:?}",
                model.folder
            );
        }
    }
}

struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

const HERMES_CALL: &str =
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
const CODER_CALL: &str =
    "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>";
const MISTRAL_CALL: &str =
    "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"abcDEF123\"}]";
const HARMONY_ANALYSIS: &str = "<|channel|>analysis<|message|>hmm<|end|><|start|>assistant";
const HARMONY_CALL: &str =
    " to=functions.get_weather<|channel|>commentary json<|message|>{\"city\": \"Paris\"}";
const DEEPSEEK_CALL: &str = "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>";
const DEEPSEEK_CALLS: &str = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{}\n```<｜tool▁call▁end｜>";

/// Random completions spliced from each family's markers, whole calls and JSON fragments: decoding never
/// fails, and the decoded message always renders (it never makes the next turn's render raise).
#[test]
fn fuzzed_completions_decode_and_render() {
    let common = [
        "\n",
        " ",
        "x",
        "Paris",
        "{",
        "}",
        "\"",
        "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}",
        "{\"name\": \"get_weather\", \"parameters\": {}}",
        "{\"city\": \"Paris\"}",
        "[",
        "]",
        ", ",
        "\"id\": \"abcDEF123\"",
        "<think>",
        "</think>",
        "\n\n",
    ];
    let per_family: [(&Model, &[&str]); 8] = [
        (
            &QWEN25,
            &[
                HERMES_CALL,
                HERMES_CALL,
                "<tool_call>",
                "</tool_call>",
                "<|im_end|>",
                "<|endoftext|>",
                "<|im_start|>",
            ],
        ),
        (
            &QWEN3,
            &[
                HERMES_CALL,
                HERMES_CALL,
                "<tool_call>",
                "</tool_call>",
                "<|im_end|>",
                "<|im_start|>",
            ],
        ),
        (
            &QWEN3_CODER,
            &[
                CODER_CALL,
                CODER_CALL,
                "<tool_call>",
                "</tool_call>",
                "<function=get_weather>",
                "</function>",
                "<parameter=city>",
                "</parameter>",
                "<|im_end|>",
            ],
        ),
        (
            &LLAMA,
            &[
                "<|python_tag|>",
                "<|eot_id|>",
                "<|eom_id|>",
                ";",
                "<|start_header_id|>",
            ],
        ),
        (
            &MISTRAL,
            &[
                MISTRAL_CALL,
                MISTRAL_CALL,
                "[TOOL_CALLS]",
                "</s>",
                "[INST]",
                "[{\"name\": \"f\", \"arguments\": {}}]",
            ],
        ),
        (
            &GPT_OSS,
            &[
                HARMONY_ANALYSIS,
                HARMONY_CALL,
                HARMONY_CALL,
                "<|channel|>final<|message|>Hi",
                "<|channel|>",
                "<|message|>",
                "<|start|>",
                "<|end|>",
                "<|call|>",
                "<|return|>",
                "<|constrain|>",
                "analysis",
                "final",
                "commentary",
                " to=functions.get_weather",
                "assistant",
                " json",
                "<|channel|>final<|message|>",
                "<|channel|>analysis<|message|>",
            ],
        ),
        (
            &DEEPSEEK_R1,
            &[
                DEEPSEEK_CALLS,
                DEEPSEEK_CALLS,
                DEEPSEEK_CALL,
                "<｜tool▁calls▁begin｜>",
                "<｜tool▁call▁begin｜>",
                "<｜tool▁sep｜>",
                "<｜tool▁call▁end｜>",
                "<｜tool▁calls▁end｜>",
                "function",
                "get_weather",
                "\n```json\n",
                "\n```",
                "<｜end▁of▁sentence｜>",
            ],
        ),
        (
            &DEEPSEEK_V3,
            &[
                DEEPSEEK_CALLS,
                DEEPSEEK_CALL,
                "<｜tool▁calls▁begin｜>",
                "<｜tool▁call▁begin｜>",
                "<｜tool▁sep｜>",
                "<｜tool▁call▁end｜>",
                "function",
                "\n```json\n",
                "\n```",
            ],
        ),
    ];
    for (model, markers) in per_family {
        let Some(tok) = load(model.folder) else {
            continue;
        };
        let decoder = Decoder::new(&tok, model.family);
        let alphabet: Vec<&str> = common.iter().chain(markers.iter()).copied().collect();
        let mut rng = Lcg(model.folder.len() as u64);
        let mut stats = [0usize; 4];
        for _ in 0..300 {
            // Half of the pieces from the family's own markers, so that structure forms.
            let text: String = (0..rng.below(10))
                .map(|_| {
                    if rng.below(2) == 0 {
                        markers[rng.below(markers.len())]
                    } else {
                        alphabet[rng.below(alphabet.len())]
                    }
                })
                .collect();
            let ids = tok.encode(&text, false).unwrap();
            let d = decoder
                .decode(&tok, &ids)
                .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", model.folder));
            assert_eq!(d.finish_reason_hint.is_some(), !d.tool_calls.is_empty());
            // Nothing is dropped: with no call, no unparsed call and no reasoning, the content is
            // the whole text (special tokens skipped); an unparsed call leaves content behind.
            let kept = if d.stop_token_id.is_some() {
                &ids[..ids.len() - 1]
            } else {
                &ids[..]
            };
            if d.tool_calls.is_empty()
                && d.unparsed_tool_calls == 0
                && d.reasoning_content.is_none()
                && model.family != Family::Harmony
            {
                let mut whole = tok.decode(kept, true).unwrap();
                if model.family == Family::Llama3 {
                    whole = whole.trim().to_owned(); // printed `| trim`
                }
                assert_eq!(
                    d.content.clone().unwrap_or_default(),
                    whole,
                    "{}: {text:?}",
                    model.folder
                );
            }
            if d.unparsed_tool_calls > 0 {
                assert!(d.content.is_some(), "{}: {text:?}", model.folder);
            }
            // A fixed point: the decoded message, rendered and decoded again, is the same message.
            // Not with unparsed calls: the template prints all content before the calls, so an
            // unclosed block sampled after a call would swallow that call when decoded again.
            stats[0] += usize::from(!d.tool_calls.is_empty());
            stats[1] += usize::from(d.unparsed_tool_calls > 0);
            stats[2] += usize::from(d.reasoning_content.is_some());
            if d.unparsed_tool_calls > 0 {
                continue;
            }
            // Qwen3 prints the last turn's content with `lstrip('\n')`, so a leading newline sampled
            // without a think block cannot come back.
            if model.folder == "qwen3" && d.content.as_deref().is_some_and(|c| c.starts_with('\n'))
            {
                continue;
            }
            // Content holding the format's own markup (moved in front of the calls by the
            // template) may parse differently the second time.
            let tags = markers.iter().chain(&["<think>", "</think>"]).filter(|m| {
                (m.starts_with('<') && m.ends_with('>') || m.starts_with('[') && m.ends_with(']'))
                    && !m.contains(' ')
            });
            if tags
                .into_iter()
                .any(|t| d.content.as_deref().unwrap_or("").contains(t))
            {
                continue;
            }
            // DeepSeek-V3 cannot print tool calls (transformers 5.x semantics).
            if !model.renders_calls && !d.tool_calls.is_empty() {
                continue;
            }
            // DeepSeek-R1 drops reasoning from the rendered turn.
            if !model.renders_reasoning
                && d.reasoning_content
                    .as_deref()
                    .is_some_and(|r| !r.is_empty())
            {
                continue;
            }
            // Llama, Mistral and gpt-oss do not print content next to tool calls.
            if !model.content_with_calls && !d.tool_calls.is_empty() && d.content.is_some() {
                continue;
            }
            let (again, _) = completion_text(&tok, model, &d.message);
            let d2 = decoder
                .decode(&tok, &tok.encode(&again, false).unwrap())
                .unwrap();
            // Qwen3 prints an empty think block for the last turn: "" and no reasoning are alike.
            let normalized = |m: &Json| {
                let mut m = m.clone();
                if m["reasoning_content"] == "" && model.family != Family::Harmony {
                    m.as_object_mut().unwrap().remove("reasoning_content");
                }
                m
            };
            assert_eq!(
                normalized(&d2.message),
                normalized(&d.message),
                "{}: {text:?} re-renders as {again:?}",
                model.folder
            );
            stats[3] += 1;
            let mut conv = conversation_for(model);
            conv.push(d.message.clone());
            if let Err(e) = chat::render(&tok, conv, &options(model, false)) {
                panic!(
                    "{}: {text:?} decodes to a message that does not render: {e}\n{:#}",
                    model.folder, d.message
                );
            }
        }
        eprintln!(
            "fuzz {}: of 300, {} with calls, {} with unparsed calls, {} with reasoning, {} checked as fixed points",
            model.folder, stats[0], stats[1], stats[2], stats[3]
        );
    }
}

/// `Tokenizer::decode` reads a table of every id's bytes for `ByteLevel` decoders
/// (`template/bytes.rs`): it must give what the `tokenizers` crate gives, for the whole
/// vocabulary (in runs of consecutive ids, with and without special tokens), for ids alone, and
/// for random sequences that cut multi-byte characters and mix in special and added tokens.
#[test]
fn the_byte_table_decodes_as_the_tokenizers_crate() {
    let mut tables = 0;
    for model in ALL {
        let Some(tok) = load(model.folder) else {
            continue;
        };
        let size = tok.vocab_size() as u32;
        let same = |ids: &[u32], skip: bool| {
            let got = tok.decode(ids, skip).unwrap();
            let want = tok.decode_reference(ids, skip).unwrap();
            assert_eq!(got, want, "{}: {ids:?} (skip special {skip})", model.folder);
        };
        let all: Vec<u32> = (0..size).collect();
        for (i, run) in all.chunks(128).enumerate() {
            same(run, i % 2 == 1);
        }
        let specials: Vec<u32> = tok.stop_token_ids().to_vec();
        let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(size);
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..3000 {
            let id = if round < 300 {
                size - 1 - round // the added tokens sit at the end
            } else {
                (next() % u64::from(size)) as u32
            };
            same(&[id], round % 2 == 0);
        }
        for round in 0..500 {
            let len = (next() % 64) as usize;
            let ids: Vec<u32> = (0..len)
                .map(|_| match next() % 10 {
                    0 if !specials.is_empty() => specials[(next() as usize) % specials.len()],
                    1 => size - 1 - (next() % 300) as u32,
                    _ => (next() % u64::from(size)) as u32,
                })
                .collect();
            same(&ids, round % 2 == 0);
        }
        tables += usize::from(tok.decodes_from_table());
    }
    // qwen2.5 is vendored: at least its ByteLevel decoder goes through the table
    assert!(tables >= 1, "no model folder decoded from a byte table");
}
