//! Llama 3.1–3.3 JSON tool calls ("JSON based tool calling" of the Llama 3 model cards).
//!
//! Grammar of the whole completion, `WS` being whitespace:
//!
//! ```text
//! completion := WS ( "<|python_tag|>" WS )? CALL TEXT?
//! CALL       := {"name": STRING, "parameters": OBJECT}
//!               ("arguments" is accepted for "parameters", and "type": "function" may be added)
//! ```
//!
//! A completion is taken as a tool call when it starts with `<|python_tag|>`, or with `{`
//! then `"name"`, or is one JSON object with `name` and `parameters`/`arguments` keys (vLLM's
//! `llama3_json` parser looks at the same start). Anything else is plain content, even JSON.
//!
//! What the template writes (the model matrix's `llama-3.2`, docs/models.md): for a message with
//! `tool_calls`, `'{"name": "' + name + '", "parameters": ' + arguments|tojson + '}'` and nothing
//! else (the content is not printed), and it raises "This model only supports single tool-calls at
//! once!" on more than one call. So:
//! * one call is decoded; several (`CALL; CALL`, as vLLM accepts) would make the next render
//!   raise, so they are unparsed, counted one per call, and kept verbatim in the content;
//! * text after the call goes to the content, trimmed (kept, though the template will not print it);
//! * plain content is trimmed, as the template prints it (`content | trim`);
//! * a call re-renders exactly when written in `json.dumps` form with `name` first and
//!   `parameters`, without `<|python_tag|>` and leading whitespace.
//!
//! A call-like start that does not parse (truncated JSON, unknown keys, arguments that are not
//! an object) is unparsed and kept verbatim.

use serde_json::{Map, Value as Json};

use super::{json_prefix, valid_name, Call, Parsed, Text};

const PYTHON_TAG: &str = "<|python_tag|>";

/// Parses `text.s[start..end]` into `out`.
pub(crate) fn parse(text: &Text, start: usize, end: usize, out: &mut Parsed) {
    let s = &text.s;
    let lead = start + leading_ws(&s[start..end]);
    let tagged = s[lead..end].starts_with(PYTHON_TAG);
    // Other special tokens are invisible here, as in the content.
    let plain = text.plain(
        if tagged {
            lead + PYTHON_TAG.len()
        } else {
            start
        },
        end,
    );
    let body = plain.trim_start();

    // One value, or `;`-separated values.
    let mut values = Vec::new();
    let mut segments = 0;
    let mut q = 0;
    loop {
        segments += 1;
        let Some((value, n)) = json_prefix(&body[q..]) else {
            break;
        };
        values.push(value);
        q += n;
        let rest = body[q..].trim_start();
        match rest.strip_prefix(';') {
            Some(after) if !after.trim().is_empty() => q = body.len() - after.len(),
            _ => break,
        }
    }
    let intent = tagged
        || starts_with_name_key(body)
        || (values.len() == 1 && body[q..].trim().is_empty() && looks_like_call(&values[0]));
    if !intent {
        // The template prints `content | trim`: surrounding whitespace cannot come back.
        out.content.push_str(text.plain(start, end).trim());
        return;
    }
    if segments == 1 && values.len() == 1 {
        if let Some(call) = to_call(values.pop().unwrap_or(Json::Null)) {
            out.calls.push(call);
            out.content.push_str(body[q..].trim());
            return;
        }
    }
    out.unparsed += segments;
    out.content.push_str(text.raw(start, end));
}

fn leading_ws(s: &str) -> usize {
    s.len() - s.trim_start().len()
}

/// `{` then whitespace then `"name"`.
fn starts_with_name_key(body: &str) -> bool {
    body.strip_prefix('{')
        .is_some_and(|rest| rest.trim_start().starts_with("\"name\""))
}

fn looks_like_call(value: &Json) -> bool {
    value.as_object().is_some_and(|m| {
        m.contains_key("name") && (m.contains_key("parameters") || m.contains_key("arguments"))
    })
}

/// Keys `name`, `parameters` (or `arguments`) and optionally `"type": "function"`.
fn to_call(value: Json) -> Option<Call> {
    let Json::Object(mut map) = value else {
        return None;
    };
    if let Some(kind) = map.remove("type") {
        if kind != "function" {
            return None;
        }
    }
    let Some(Json::String(name)) = map.remove("name") else {
        return None;
    };
    let arguments: Map<String, Json> = match (map.remove("parameters"), map.remove("arguments")) {
        (Some(Json::Object(a)), None) | (None, Some(Json::Object(a))) => a,
        _ => return None,
    };
    (map.is_empty() && valid_name(&name)).then(|| Call::new(name, arguments))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn call_keys_are_checked() {
        assert!(to_call(json!({"name": "f", "parameters": {}})).is_some());
        assert!(to_call(json!({"type": "function", "name": "f", "arguments": {"a": 1}})).is_some());
        assert!(to_call(json!({"name": "f", "parameters": {}, "arguments": {}})).is_none());
        assert!(to_call(json!({"name": "f", "parameters": {}, "x": 1})).is_none());
        assert!(to_call(json!({"name": "f", "parameters": "{}"})).is_none());
        assert!(to_call(json!({"type": "other", "name": "f", "parameters": {}})).is_none());
    }
}
