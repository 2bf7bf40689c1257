//! Chat templates (rust/template/mod.rs): any template source, any context. Compiling and rendering
//! never panic and never run unbounded: fuel and recursion limits stop a hostile template with a
//! typed error (libFuzzer's -timeout and -rss_limit_mb catch what they would let through).
#![no_main]

use fasttito::template::{ChatTemplate, RenderLimits};
use fasttito::ErrorKind;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // Template source, then a NUL, then the context as JSON (an object, else empty).
    let (source, context) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(source) = std::str::from_utf8(source) else { return };
    let context = match serde_json::from_slice::<Value>(context) {
        Ok(v @ Value::Object(_)) => v,
        _ => serde_json::json!({
            "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
            "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>",
        }),
    };
    let limits = RenderLimits { fuel: 200_000, recursion: 64 };
    let template = match ChatTemplate::new(source, limits) {
        Ok(t) => t,
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Template, "{e}");
            return;
        }
    };
    if let Err(e) = template.render(minijinja::Value::from(minijinja::value::Serde(&context))) {
        assert!(
            matches!(e.kind(), ErrorKind::Template | ErrorKind::TemplateLimit | ErrorKind::Message),
            "{:?}: {e}",
            e.kind()
        );
    }
});
