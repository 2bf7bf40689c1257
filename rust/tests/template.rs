//! Loading model folders and rendering their chat templates, without Python.
//!
//! Uses the Qwen2.5 folder vendored in `models/qwen2.5`.

use std::fs;
use std::path::{Path, PathBuf};

use fasttito::template::chat::{self, ChatOptions};
use fasttito::{ErrorKind, LoadOptions, Tokenizer};
use serde_json::json;

fn qwen_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join("qwen2.5")
}

fn qwen() -> Tokenizer {
    Tokenizer::from_dir(&qwen_dir(), &LoadOptions::default()).expect("vendored qwen2.5 loads")
}

/// A copy of the vendored folder whose `tokenizer_config.json` is edited by `edit`.
fn edited_copy(edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(
        qwen_dir().join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    let mut config: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(qwen_dir().join("tokenizer_config.json")).unwrap(),
    )
    .unwrap();
    edit(&mut config);
    fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    dir
}

#[test]
fn loads_special_tokens_and_stop_ids() {
    let tok = qwen();
    assert_eq!(tok.encode("Hello world", false).unwrap(), vec![9707, 1879]);
    assert_eq!(tok.stop_token_ids(), &[151645]);
    assert_eq!(tok.vocab_size(), 151665);
    let names: Vec<&str> = tok
        .special_tokens()
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(names, ["eos_token", "pad_token"]);
    assert_eq!(tok.template_names(), ["default"]);
}

#[test]
fn renders_tool_conversation() {
    let tok = qwen();
    let messages = vec![
        json!({"role": "user", "content": "Weather in Paris?"}),
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}),
        json!({"role": "tool", "tool_call_id": "c1", "content": "18C"}),
    ];
    let options = ChatOptions {
        add_generation_prompt: true,
        ..Default::default()
    };
    let text = chat::render(&tok, messages.clone(), &options).unwrap();
    assert!(
        text.starts_with("<|im_start|>system\nYou are Qwen"),
        "{text}"
    );
    assert!(text.contains("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"), "{text}");
    assert!(
        text.ends_with("<tool_response>\n18C\n</tool_response><|im_end|>\n<|im_start|>assistant\n"),
        "{text}"
    );
    let ids = chat::render_ids(&tok, messages, &options).unwrap();
    assert_eq!(tok.decode(&ids, false).unwrap(), text);
}

#[test]
fn chunk_reuse_is_exact() {
    let tok = qwen();
    let mut messages = vec![json!({"role": "system", "content": "sys  \n\n  prompt"})];
    for i in 0..20 {
        messages.push(
            json!({"role": "user", "content": format!("question {i} 東京 🙂 <|im_end|> tail  ")}),
        );
        messages.push(json!({"role": "assistant", "content": format!("  answer {i}\n\n")}));
        let options = ChatOptions::default();
        let text = chat::render(&tok, messages.clone(), &options).unwrap();
        let reused = chat::render_ids(&tok, messages.clone(), &options).unwrap();
        assert_eq!(reused, tok.encode(&text, false).unwrap(), "turn {i}");
    }
    let stats = tok.cache_stats().unwrap();
    assert!(stats.hits > stats.misses, "{stats:?}");
}

#[test]
fn named_templates_pick_default_tool_use_or_name() {
    let dir = edited_copy(|c| {
        c["chat_template"] = json!([
            {"name": "default", "template": "D{{ messages|length }}"},
            {"name": "tool_use", "template": "T{{ tools|length }}"},
            {"name": "other", "template": "O"},
        ]);
    });
    let tok = Tokenizer::from_dir(dir.path(), &LoadOptions::default()).unwrap();
    let m = vec![json!({"role": "user", "content": "x"})];
    assert_eq!(
        chat::render(&tok, m.clone(), &ChatOptions::default()).unwrap(),
        "D1"
    );
    let with_tools = ChatOptions {
        tools: Some(vec![json!({"type": "function"})].into()),
        ..Default::default()
    };
    assert_eq!(chat::render(&tok, m.clone(), &with_tools).unwrap(), "T1");
    let named = ChatOptions {
        template_name: Some("other".into()),
        ..Default::default()
    };
    assert_eq!(chat::render(&tok, m.clone(), &named).unwrap(), "O");
    let missing = ChatOptions {
        template_name: Some("nope".into()),
        ..Default::default()
    };
    assert_eq!(
        chat::render(&tok, m, &missing).unwrap_err().kind(),
        ErrorKind::Template
    );
}

#[test]
fn jinja_file_overrides_config_and_generation_config_adds_stops() {
    let dir = edited_copy(|_| {});
    fs::write(
        dir.path().join("chat_template.jinja"),
        "J{{ bos_token }}{{ eos_token }}",
    )
    .unwrap();
    fs::write(
        dir.path().join("generation_config.json"),
        r#"{"eos_token_id": [151643, 151645]}"#,
    )
    .unwrap();
    let tok = Tokenizer::from_dir(dir.path(), &LoadOptions::default()).unwrap();
    let m = vec![json!({"role": "user", "content": "x"})];
    assert_eq!(
        chat::render(&tok, m, &ChatOptions::default()).unwrap(),
        "J<|im_end|>"
    );
    assert_eq!(tok.stop_token_ids(), &[151645, 151643]);
}

#[test]
fn special_tokens_map_is_read_on_the_legacy_path() {
    let dir = edited_copy(|c| {
        c.as_object_mut().unwrap().remove("added_tokens_decoder");
        c["chat_template"] = json!("{{ bos_token }}|{{ eos_token }}");
    });
    fs::write(
        dir.path().join("special_tokens_map.json"),
        r#"{"bos_token": {"content": "<|endoftext|>", "lstrip": false}, "eos_token": "<|im_end|>"}"#,
    )
    .unwrap();
    let tok = Tokenizer::from_dir(dir.path(), &LoadOptions::default()).unwrap();
    let m = vec![json!({"role": "user", "content": "x"})];
    assert_eq!(
        chat::render(&tok, m, &ChatOptions::default()).unwrap(),
        "<|endoftext|>|<|im_end|>"
    );
}

/// Found by the `tokenizer_load` fuzz target: the tokenizers crate panics on a syntax error
/// inside `decoder` (and other parts it re-parses with `expect`).
#[test]
fn a_tokenizer_json_that_panics_the_tokenizers_crate_is_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    let model =
        r#""model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "hi": 1}, "unk_token": "[UNK]"}"#;
    for decoder in [
        "e",
        "{\"type\": }",
        "[1,",
        "{\"type\": \"ByteLevel\", \"x\": nul}",
    ] {
        let text = format!(
            r#"{{"version": "1.0", "added_tokens": [], "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": {decoder}, {model}}}"#
        );
        fs::write(dir.path().join("tokenizer.json"), text).unwrap();
        let err = Tokenizer::from_dir(dir.path(), &LoadOptions::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Load, "{decoder}: {err}");
        assert!(err.text().contains("not a valid tokenizer.json"), "{err}");
    }
}

#[test]
fn broken_folders_are_load_errors() {
    let missing =
        Tokenizer::from_dir(Path::new("/nonexistent/model"), &LoadOptions::default()).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::Load);
    let empty = tempfile::tempdir().unwrap();
    let err = Tokenizer::from_dir(empty.path(), &LoadOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Load);
    assert!(err.text().contains("no tokenizer.json"), "{err}");
    fs::write(empty.path().join("tokenizer.json"), "{not json").unwrap();
    let err = Tokenizer::from_dir(empty.path(), &LoadOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Load);
    let dir = edited_copy(|c| c["chat_template"] = json!("{% for %}"));
    let err = Tokenizer::from_dir(dir.path(), &LoadOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Template);
    let dir = edited_copy(|c| c["chat_template"] = json!(42));
    assert_eq!(
        Tokenizer::from_dir(dir.path(), &LoadOptions::default())
            .unwrap_err()
            .kind(),
        ErrorKind::Load
    );
}

#[test]
fn continue_final_message_cuts_at_the_tag() {
    let tok = qwen();
    let m = vec![
        json!({"role": "user", "content": "Say hi"}),
        json!({"role": "assistant", "content": "Hi there"}),
    ];
    let options = ChatOptions {
        continue_final_message: Some("content".into()),
        ..Default::default()
    };
    let text = chat::render(&tok, m.clone(), &options).unwrap();
    assert!(text.ends_with("<|im_start|>assistant\nHi there"), "{text}");
    let both = ChatOptions {
        add_generation_prompt: true,
        ..options
    };
    assert_eq!(
        chat::render(&tok, m, &both).unwrap_err().kind(),
        ErrorKind::Template
    );
}
