//! Model-folder loading (rust/template/tokenizer.rs): mangled tokenizer.json, tokenizer_config.json,
//! special_tokens_map.json, generation_config.json and chat_template.jinja. Loading never panics:
//! a folder loads or is refused with a typed error; a folder that loads renders a small
//! conversation and round-trips its text through encode/decode, or refuses with a typed error.
#![no_main]

use std::fs;

use fasttito::template::chat::{self, ChatOptions};
use fasttito::template::RenderLimits;
use fasttito::{ErrorKind, LoadOptions, Tokenizer};
use libfuzzer_sys::fuzz_target;

/// The files of a folder, in the order the input gives them, separated by this line.
const SEPARATOR: &[u8] = b"\n--8<--\n";
const FILES: [&str; 5] =
    ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "chat_template.jinja"];

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while parts.len() < FILES.len() - 1 {
        match rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            Some(i) => {
                parts.push(&rest[..i]);
                rest = &rest[i + SEPARATOR.len()..];
            }
            None => break,
        }
    }
    parts.push(rest);
    parts
}

fuzz_target!(|data: &[u8]| {
    // Tokenizer::from_dir catches the panics of the tokenizers crate on malformed files (see
    // rust/template/tokenizer.rs). libFuzzer's panic hook would abort on them before they are caught, so
    // it is replaced by a plain one: a panic that escapes from_dir still reaches libfuzzer-sys'
    // own catch_unwind around this closure, which aborts, and the input is kept as a crash.
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| std::panic::set_hook(Box::new(|info| eprintln!("caught panic: {info}"))));
    let dir = tempfile::tempdir().expect("a temporary folder");
    for (name, content) in FILES.iter().zip(split(data)) {
        if !content.is_empty() {
            fs::write(dir.path().join(name), content).expect("write a folder file");
        }
    }
    let options = LoadOptions { limits: RenderLimits { fuel: 200_000, recursion: 64 }, cache_bytes: 1 << 16 };
    let tok = match Tokenizer::from_dir(dir.path(), &options) {
        Ok(tok) => tok,
        Err(e) => {
            assert!(matches!(e.kind(), ErrorKind::Load | ErrorKind::Template), "{:?}: {e}", e.kind());
            return;
        }
    };
    let messages = vec![
        serde_json::json!({"role": "user", "content": "hello world"}),
        serde_json::json!({"role": "assistant", "content": "hi"}),
    ];
    let opts = ChatOptions { add_generation_prompt: true, ..Default::default() };
    if let Err(e) = chat::render_ids(&tok, messages, &opts) {
        assert!(
            matches!(e.kind(), ErrorKind::Template | ErrorKind::TemplateLimit | ErrorKind::Message | ErrorKind::Tokenize),
            "{:?}: {e}",
            e.kind()
        );
    }
    if let Ok(ids) = tok.encode("hello world", false) {
        assert!(ids.iter().all(|&id| tok.id_to_token(id).is_some()), "encode gave an id outside the vocabulary");
        let _ = tok.decode(&ids, false);
    }
    for &stop in tok.stop_token_ids() {
        let _ = tok.id_to_token(stop);
    }
});
