//! Hermes-style JSON tool calls: Qwen2.5, Qwen3 (and Hermes-2-Pro).
//!
//! Grammar of the body (after any reasoning block), `WS` being whitespace:
//!
//! ```text
//! body  := CONTENT ( "\n"? call ( WS call )* WS )?
//! call  := "<tool_call>" WS JSON WS "</tool_call>"
//! JSON  := {"name": STRING, "arguments": OBJECT}     exactly these two keys, any order
//! ```
//!
//! What the templates write, which this inverts (the model matrix's `qwen2.5`, `qwen3`):
//! Qwen2.5 renders `'<|im_start|>assistant' + ('\n' + content if content)` then, per call,
//! `'\n<tool_call>\n{"name": "' + name + '", "arguments": ' + arguments|tojson + '}\n</tool_call>'`;
//! its generation prompt `<|im_start|>assistant\n` absorbs the first `\n`. Qwen3 renders
//! `content` then, per call, `'\n'` (unless it is the first call and there is no content) and
//! the same block (a string `arguments` is printed as it is, a dict with `tojson`). Either way
//! the completion is `CONTENT "\n" call "\n" call …`, so the content loses exactly one trailing
//! `\n` and whitespace between calls is the template's.
//!
//! A block re-renders exactly when its JSON is in `json.dumps` form (`{"name": "…",
//! "arguments": {…}}` with `", "` and `": "` separators, non-ASCII unescaped), which is what these
//! models are trained on. A block whose JSON does not parse, is not an object with exactly
//! `name` (a non-empty one-line string) and `arguments` (an object), or has no closing tag, is
//! unparsed: kept verbatim in the content (vLLM's `hermes` parser accepts the same calls, but
//! would also take other keys and drop them).

use serde_json::Value as Json;

use super::{assemble, tagged_blocks, valid_name, Call, Gap, Parsed, Text};

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

/// Parses `text.s[start..end]` into `out`.
pub(crate) fn parse(text: &Text, start: usize, end: usize, out: &mut Parsed) {
    let pieces = tagged_blocks(text, start, end, OPEN, CLOSE, parse_call);
    assemble(text, pieces, Gap::Newline, out);
}

/// `{"name": …, "arguments": {…}}`, nothing else.
fn parse_call(inner: &str) -> Option<Call> {
    let Ok(Json::Object(mut map)) = serde_json::from_str::<Json>(inner.trim()) else {
        return None;
    };
    if map.len() != 2 {
        return None;
    }
    let Some(Json::String(name)) = map.remove("name") else {
        return None;
    };
    let Some(Json::Object(arguments)) = map.remove("arguments") else {
        return None;
    };
    valid_name(&name).then(|| Call::new(name, arguments))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_objects_need_exactly_name_and_arguments() {
        assert!(parse_call(r#" {"name": "f", "arguments": {"a": 1}} "#).is_some());
        assert!(parse_call(r#"{"arguments": {}, "name": "f"}"#).is_some());
        assert!(parse_call(r#"{"name": "f", "arguments": {}, "id": "x"}"#).is_none());
        assert!(parse_call(r#"{"name": "f", "arguments": "{}"}"#).is_none());
        assert!(parse_call(r#"{"name": "", "arguments": {}}"#).is_none());
        assert!(parse_call(r#"{"name": "f", "arguments": {"a": 1}"#).is_none());
        assert!(parse_call(r#"[]"#).is_none());
    }
}
