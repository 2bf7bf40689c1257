//! Qwen3-Coder XML tool calls (also Qwen3.5's format).
//!
//! Grammar of the body (after any reasoning block), `WS` being whitespace:
//!
//! ```text
//! body   := CONTENT ( call ( WS call )* WS )?
//! call   := "<tool_call>" WS "<function=" NAME ">" WS ( param WS )* "</function>" WS "</tool_call>"
//! param  := "<parameter=" KEY ">" "\n"? VALUE "\n"? "</parameter>"
//! NAME, KEY := one line without ">", non-empty
//! VALUE  := any text without "</parameter>" or "<parameter="
//! ```
//!
//! What the template writes (the model matrix's `qwen3-coder`) for a message with tool calls:
//! `'<|im_start|>assistant' + ('\n' + content|trim + '\n' if content|trim)`; then per call
//! `'\n<tool_call>\n<function=' + name + '>\n'`; per argument
//! `'<parameter=' + key + '>\n' + value + '\n</parameter>\n'` (a non-string value printed with
//! `|string`, Python's `str()`); then `'</function>\n</tool_call>'`. A message without tool calls
//! is printed as it is. So:
//! * with calls, the content is trimmed (the template trims it);
//! * each value loses one leading and one trailing `\n` (the template's);
//! * values stay **strings**: the text carries no types, and a string is what the template
//!   prints back verbatim (typing `true` as a bool would print `True`). A caller with the tool
//!   schema can convert them, as vLLM's `qwen3_coder` parser does with `tools`.
//!
//! A call with a missing closing tag (`</parameter>`, `</function>`, `</tool_call>`), a repeated
//! key, or text outside its tags is unparsed and kept verbatim. The Qwen3-Coder template has no
//! reasoning field, so `<think>` stays in the content there (see the module docs of `decode`).

use serde_json::{Map, Value as Json};

use super::{assemble, tagged_blocks, valid_name, Call, Gap, Parsed, Text};

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";
const FUNCTION: &str = "<function=";
const FUNCTION_END: &str = "</function>";
const PARAM: &str = "<parameter=";
const PARAM_END: &str = "</parameter>";

/// Parses `text.s[start..end]` into `out`.
pub(crate) fn parse(text: &Text, start: usize, end: usize, out: &mut Parsed) {
    let pieces = tagged_blocks(text, start, end, OPEN, CLOSE, parse_call);
    assemble(text, pieces, Gap::Trim, out);
}

/// `<function=NAME> (<parameter=KEY>VALUE</parameter>)* </function>`, whitespace around tags.
fn parse_call(inner: &str) -> Option<Call> {
    let rest = inner.trim_start().strip_prefix(FUNCTION)?;
    let (name, mut rest) = rest.split_once('>')?;
    if !valid_name(name) {
        return None;
    }
    let mut arguments = Map::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix(FUNCTION_END) {
            return after
                .trim()
                .is_empty()
                .then(|| Call::new(name.to_owned(), arguments));
        }
        let param = rest.strip_prefix(PARAM)?;
        let (key, value_and_rest) = param.split_once('>')?;
        let (value, after) = value_and_rest.split_once(PARAM_END)?;
        if !valid_name(key) || value.contains(PARAM) || arguments.contains_key(key) {
            return None;
        }
        let value = value.strip_prefix('\n').unwrap_or(value);
        let value = value.strip_suffix('\n').unwrap_or(value);
        arguments.insert(key.to_owned(), Json::String(value.to_owned()));
        rest = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_parse_only_when_every_tag_closes() {
        let call = parse_call("\n<function=f>\n<parameter=a>\nx\ny\n</parameter>\n<parameter=b>\n3\n</parameter>\n</function>\n").unwrap();
        assert_eq!(call.name, "f");
        assert_eq!(
            Json::Object(call.arguments),
            serde_json::json!({"a": "x\ny", "b": "3"})
        );
        assert!(parse_call("\n<function=f>\n</function>\n").is_some());
        assert!(parse_call("\n<function=f>\n<parameter=a>\nx\n</function>\n").is_none());
        assert!(parse_call("\n<function=f>\n<parameter=a>\nx\n</parameter>\n").is_none());
        assert!(parse_call(
            "<function=f><parameter=a>1</parameter><parameter=a>2</parameter></function>"
        )
        .is_none());
        assert!(parse_call("<function=f>\nstray\n</function>").is_none());
        assert!(parse_call("<function=>\n</function>").is_none());
        assert!(parse_call("{\"name\": \"f\"}").is_none());
    }
}
