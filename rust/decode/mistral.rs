//! Mistral tool calls in the Tekken v3 format (Mistral-Nemo-Instruct-2407).
//!
//! Grammar of the completion, `WS` being whitespace:
//!
//! ```text
//! completion := CONTENT block*
//! block      := "[TOOL_CALLS]" WS ARRAY TEXT          (TEXT: up to the next "[TOOL_CALLS]")
//! ARRAY      := [ CALL ( "," WS CALL )* ]
//! CALL       := {"name": STRING, "arguments": OBJECT, "id": ID}    ("id" optional, any order)
//! ID         := exactly 9 ASCII letters or digits
//! ```
//!
//! What the template writes (the model matrix's `mistral-nemo`): a message with `tool_calls` is
//! `'[TOOL_CALLS][' + ', '.join(function|tojson minus its final '}' + ', "id": "' + id + '"}') +
//! ']' + eos`, and its content is not printed; it raises unless every id is 9 characters long
//! (the README: exactly 9 alphanumerics). The engine's prompt ends with `[/INST]`, so there is
//! no generation prompt to strip. Therefore:
//! * the id in the text is kept; a call without one gets a generated `call<i:05>` (vLLM's
//!   `mistral` parser generates random 9-character ids instead, which would not be
//!   deterministic), and the re-render then differs by the `"id"` it adds;
//! * an id that is not 9 alphanumerics would make the next render raise, so its block is
//!   unparsed;
//! * a block is parsed whole: if any element is not a call of the shape above (or the array
//!   does not parse), the whole block stays verbatim in the content, counted one per element
//!   (one if the array did not parse). Content kept verbatim with its `[TOOL_CALLS]` re-encodes
//!   to the same ids, because the template prints an assistant message's content as it is;
//! * content before `[TOOL_CALLS]` and text after an array are kept in the content, though the
//!   template does not print content next to tool calls.
//!
//! Exact re-render needs the `json.dumps` form with keys in the order `name`, `arguments`, `id`.
//! The newer `[TOOL_CALLS]name[ARGS]{…}` format (tokenizer v11+, Mistral-Small-3.2, Devstral) is
//! not decoded: no tokenizer for it is in the model matrix (docs/models.md).

use serde_json::Value as Json;

use super::{json_prefix, valid_name, Call, Parsed, Text};

const TOOL_CALLS: &str = "[TOOL_CALLS]";

/// Parses `text.s[start..end]` into `out`.
pub(crate) fn parse(text: &Text, start: usize, end: usize, out: &mut Parsed) {
    let s = &text.s;
    let Some(first) = s[start..end].find(TOOL_CALLS).map(|r| start + r) else {
        out.content.push_str(&text.plain(start, end));
        return;
    };
    out.content.push_str(&text.plain(start, first));
    let mut block = first;
    while block < end {
        let body = block + TOOL_CALLS.len();
        let block_end = s[body..end].find(TOOL_CALLS).map_or(end, |r| body + r);
        match parse_array(&s[body..block_end]) {
            Ok((calls, used)) => {
                out.calls.extend(calls);
                let rest = text.plain(body + used, block_end);
                if !rest.trim().is_empty() {
                    out.content.push_str(rest.trim_start());
                }
            }
            Err(count) => {
                out.unparsed += count;
                out.content.push_str(text.raw(block, block_end));
            }
        }
        block = block_end;
    }
}

/// The calls of one block and the bytes of `s` they used; or how many calls failed.
fn parse_array(s: &str) -> Result<(Vec<Call>, usize), usize> {
    let Some((Json::Array(items), used)) = json_prefix(s) else {
        return Err(1);
    };
    let count = items.len().max(1);
    if items.is_empty() {
        return Err(count);
    }
    let calls: Option<Vec<Call>> = items.into_iter().map(to_call).collect();
    calls.map(|c| (c, used)).ok_or(count)
}

fn to_call(item: Json) -> Option<Call> {
    let Json::Object(mut map) = item else {
        return None;
    };
    let Some(Json::String(name)) = map.remove("name") else {
        return None;
    };
    let Some(Json::Object(arguments)) = map.remove("arguments") else {
        return None;
    };
    let id = match map.remove("id") {
        None => None,
        Some(Json::String(id)) if valid_id(&id) => Some(id),
        Some(_) => return None,
    };
    if !map.is_empty() || !valid_name(&name) {
        return None;
    }
    let mut call = Call::new(name, arguments);
    call.id = id;
    Some(call)
}

/// What the template (and Mistral's tokenizer) accept: 9 ASCII letters or digits.
fn valid_id(id: &str) -> bool {
    id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_parse_whole_or_not_at_all() {
        let (calls, used) =
            parse_array(r#"[{"name": "f", "arguments": {}, "id": "abcDEF123"}] x"#).unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].id.as_deref(), Some("abcDEF123"));
        assert_eq!(used, 51);
        assert_eq!(
            parse_array(r#"[{"name": "f", "arguments": {}}, {"name": "g"}]"#).err(),
            Some(2)
        );
        assert_eq!(
            parse_array(r#"[{"name": "f", "arguments": {}, "id": "call_1"}]"#).err(),
            Some(1)
        );
        assert_eq!(
            parse_array(r#"[{"name": "f", "arguments": {"#).err(),
            Some(1)
        );
        assert_eq!(parse_array("[]").err(), Some(1));
        assert!(parse_array(r#"[{"name": "f", "arguments": {}}]"#)
            .unwrap()
            .0[0]
            .id
            .is_none());
    }
}
