//! DeepSeek-V3 / R1 tool calls (and V3.1's shorter form).
//!
//! Grammar of the body (after the `<think>` block, which is always split for DeepSeek), with
//! `WS` whitespace and the markers written out (all are added tokens):
//!
//! ```text
//! body  := CONTENT ( "<｜tool▁calls▁begin｜>" ( WS call )+ WS "<｜tool▁calls▁end｜>"? TEXT )?
//! call  := "<｜tool▁call▁begin｜>" TYPE "<｜tool▁sep｜>" NAME "\n```json\n" ARGS "\n```" "<｜tool▁call▁end｜>"
//!        | "<｜tool▁call▁begin｜>" NAME "<｜tool▁sep｜>" ARGS "<｜tool▁call▁end｜>"         (V3.1)
//! TYPE, NAME := one line, non-empty;  ARGS := a JSON object, kept as the sampled string
//! ```
//!
//! What the templates write (the model matrix's `deepseek-r1`, `deepseek-v3`): R1 renders
//! `'<｜Assistant｜>' + content + '<｜tool▁calls▁begin｜>'` then the calls as above (the
//! first right after `<｜tool▁calls▁begin｜>`, the next ones after a `\n`) and
//! `'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'`, concatenating `type`, `name` and the
//! `arguments` **string** (a dict raises). So the message carries `arguments` as the sampled
//! string and `type` as sampled, and a completion in that form re-renders exactly.
//!
//! Not round-trippable, because of the templates (`docs/models.md`):
//! * DeepSeek-V3 prints tool calls only when `content is none`, and transformers 5.x (which
//!   [`crate::template::chat`] follows) drops `None` keys first, so its tool-call messages cannot render;
//!   it also leaves a single call without `<｜tool▁calls▁end｜>`, which is why that marker is
//!   optional here;
//! * R1 drops reasoning from history (`content.split('</think>')[-1]`) and has no reasoning
//!   field, so a turn with reasoning does not re-render; the reasoning is still returned;
//! * R1's `ns.is_first` is global: after the first tool-call message of a conversation, later
//!   ones are printed without `<｜Assistant｜><｜tool▁calls▁begin｜>` (an upstream bug).
//!
//! A block that does not parse (no `<｜tool▁call▁end｜>`, no fence, ARGS not a JSON object)
//! is unparsed; if no call parses at all, everything from `<｜tool▁calls▁begin｜>` on is
//! kept verbatim in the content.

use serde_json::Value as Json;

use super::{valid_name, Call, Parsed, Text};

const CALLS_BEGIN: &str = "<｜tool▁calls▁begin｜>";
const CALLS_END: &str = "<｜tool▁calls▁end｜>";
const CALL_BEGIN: &str = "<｜tool▁call▁begin｜>";
const CALL_END: &str = "<｜tool▁call▁end｜>";
const SEP: &str = "<｜tool▁sep｜>";
const FENCE_OPEN: &str = "\n```json\n";
const FENCE_CLOSE: &str = "\n```";

/// Parses `text.s[start..end]` into `out`.
pub(crate) fn parse(text: &Text, start: usize, end: usize, out: &mut Parsed) {
    let s = &text.s;
    let Some(begin) = s[start..end].find(CALLS_BEGIN).map(|r| start + r) else {
        out.content.push_str(&text.plain(start, end));
        return;
    };
    let mut calls = Vec::new();
    let mut bad: Vec<(usize, usize)> = Vec::new();
    let mut pos = begin + CALLS_BEGIN.len();
    loop {
        let ws = s[pos..end].len() - s[pos..end].trim_start().len();
        if !s[pos + ws..end].starts_with(CALL_BEGIN) {
            break;
        }
        let call_start = pos + ws;
        let inner = call_start + CALL_BEGIN.len();
        let Some(rel) = s[inner..end].find(CALL_END) else {
            bad.push((call_start, end));
            pos = end;
            break;
        };
        let after = inner + rel + CALL_END.len();
        match parse_call(&s[inner..inner + rel]) {
            Some(call) => calls.push(call),
            None => bad.push((call_start, after)),
        }
        pos = after;
    }
    let ws = s[pos..end].len() - s[pos..end].trim_start().len();
    if s[pos + ws..end].starts_with(CALLS_END) {
        pos += ws + CALLS_END.len();
    }
    if calls.is_empty() {
        out.unparsed += bad.len().max(1);
        out.content.push_str(&text.plain(start, begin));
        out.content.push_str(text.raw(begin, end));
        return;
    }
    out.content.push_str(&text.plain(start, begin));
    for (a, b) in &bad {
        out.content.push_str(text.raw(*a, *b));
    }
    out.unparsed += bad.len();
    // Text after the calls is kept; a call or calls section in it (after stray text) counts as
    // unparsed.
    let rest = text.raw(pos, end);
    if !rest.trim().is_empty() {
        let started = rest.matches(CALL_BEGIN).count();
        out.unparsed += if started == 0 && rest.contains(CALLS_BEGIN) {
            1
        } else {
            started
        };
        out.content.push_str(&text.plain(pos, end));
    }
    out.calls.extend(calls);
}

/// `TYPE<｜tool▁sep｜>NAME\n```json\nARGS\n```` or V3.1's `NAME<｜tool▁sep｜>ARGS`.
fn parse_call(inner: &str) -> Option<Call> {
    let (left, right) = inner.split_once(SEP)?;
    if let Some((name, fenced)) = right.split_once(FENCE_OPEN) {
        let args = fenced.strip_suffix(FENCE_CLOSE)?;
        if !valid_name(left) || !valid_name(name) {
            return None;
        }
        let mut call = object_call(name, args)?;
        call.call_type = Some(left.to_owned());
        return Some(call);
    }
    if !valid_name(left) {
        return None;
    }
    object_call(left, right)
}

fn object_call(name: &str, args: &str) -> Option<Call> {
    let Ok(Json::Object(arguments)) = serde_json::from_str::<Json>(args) else {
        return None;
    };
    let mut call = Call::new(name.to_owned(), arguments);
    call.arguments_text = Some(args.to_owned());
    Some(call)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_call_forms() {
        let c = parse_call("function<｜tool▁sep｜>f\n```json\n{\"a\": 1}\n```").unwrap();
        assert_eq!(
            (c.name.as_str(), c.call_type.as_deref()),
            ("f", Some("function"))
        );
        assert_eq!(c.arguments_text.as_deref(), Some("{\"a\": 1}"));
        let c = parse_call("f<｜tool▁sep｜>{\"a\": 1}").unwrap();
        assert_eq!((c.name.as_str(), c.call_type), ("f", None));
        assert!(parse_call("function<｜tool▁sep｜>f\n```json\n{\"a\": 1}").is_none());
        assert!(parse_call("function<｜tool▁sep｜>f\n```json\n[1]\n```").is_none());
        assert!(parse_call("f{\"a\": 1}").is_none());
    }
}
