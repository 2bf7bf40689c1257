//! gpt-oss' Harmony format: a completion is a sequence of messages on channels.
//!
//! Grammar of the completion (the generation prompt `<|start|>assistant` already opened the
//! first message; `<|…|>` are special tokens):
//!
//! ```text
//! completion := message ( "<|start|>" "assistant" message )*
//! message    := header "<|message|>" BODY terminator
//! header     := ( " to=" RECIPIENT )? "<|channel|>" CHANNEL ( " to=" RECIPIENT )?
//!               ( " " TYPE | " <|constrain|>" TYPE )?
//! terminator := "<|end|>" | "<|call|>" | "<|return|>" | before "<|start|>" | end of text
//! ```
//!
//! Mapping (OpenAI's harmony guide; vLLM's `openai` tool parser):
//! * `analysis` without a recipient: reasoning (several are joined with a blank line);
//! * a recipient `functions.NAME`: a tool call, its BODY the JSON arguments (an object);
//! * `final`, or `commentary` without a recipient (a preamble): content (joined likewise);
//! * any other recipient (`browser.search`, `python`: built-in tools the message shape cannot
//!   express), a BODY that is not a JSON object, or a header cut off before `<|message|>` that
//!   names a recipient: an unparsed call, kept verbatim;
//! * text outside this grammar: content.
//!
//! What the template writes (the model matrix's `gpt-oss/chat_template.jinja`) for the last
//! assistant message: for a tool call, `'<|start|>assistant<|channel|>analysis<|message|>' +
//! thinking + '<|end|>'` when there is reasoning, then `'<|start|>assistant to=functions.' + name +
//! '<|channel|>commentary json<|message|>' + arguments|tojson + '<|call|>'` (only the first
//! call: the model stops at `<|call|>`, so a completion has one); otherwise the analysis message
//! and `'<|start|>assistant<|channel|>final<|message|>' + content + '<|return|>'`. So a completion
//! in that form re-renders exactly; these do not: the recipient written after the channel (the
//! form the model often samples: `<|channel|>commentary to=functions.f <|constrain|>json`),
//! JSON arguments not in `json.dumps` form, a preamble (the template prints a tool-call
//! message's content as analysis), and several messages on one channel.
//!
//! The template raises on a tool-call message with both content and reasoning, and on content
//! or reasoning containing `<|channel|>analysis<|message|>` or `<|channel|>final<|message|>`; the
//! message is built never to contain either (`decode::build_message`, and unparsed text falls
//! back to its form without special tokens when it would contain those strings).

use serde_json::Value as Json;

use super::{valid_name, Call, Parsed, Text};

const START: &str = "<|start|>";
const CHANNEL: &str = "<|channel|>";
const MESSAGE: &str = "<|message|>";
const END: &str = "<|end|>";
const CALL: &str = "<|call|>";
const RETURN: &str = "<|return|>";
const FUNCTIONS: &str = "functions.";
/// Strings gpt-oss' template refuses in content and reasoning.
const FORBIDDEN: [&str; 2] = [
    "<|channel|>analysis<|message|>",
    "<|channel|>final<|message|>",
];

/// A piece of content: text, or an unparsed call (its verbatim text and its text without
/// special tokens).
enum Part {
    Text(String),
    Bad(String, String),
}

/// Parses the whole of `text` into `out`.
pub(crate) fn parse(text: &Text, out: &mut Parsed) {
    let s = &text.s;
    let end = s.len();
    let mut reasoning: Vec<String> = Vec::new();
    let mut saw_analysis = false;
    let mut parts: Vec<Part> = Vec::new();
    let mut pos = 0;
    // The first message's `<|start|>assistant` is in the prompt, unless the engine left it out.
    let mut first = !s.starts_with(START);
    while pos < end {
        let message_start = pos;
        let mut h = pos;
        if !first {
            let Some(after) = s[h..end].strip_prefix(START) else {
                tail(text, pos, &mut parts, &mut out.unparsed);
                break;
            };
            let role_len = after.find([' ', '<']).unwrap_or(after.len());
            if &after[..role_len] != "assistant" {
                tail(text, pos, &mut parts, &mut out.unparsed);
                break;
            }
            h += START.len() + role_len;
        }
        let Some(rel) = s[h..end].find(MESSAGE) else {
            tail(text, pos, &mut parts, &mut out.unparsed);
            break;
        };
        let header = &s[h..h + rel];
        if header.contains(START) || header.contains(END) {
            tail(text, pos, &mut parts, &mut out.unparsed);
            break;
        }
        let body_start = h + rel + MESSAGE.len();
        let (body_end, next) = terminator(s, body_start);
        let body = text.plain(body_start, body_end);
        match (recipient(header), channel(header)) {
            (Some(to), _) => match to
                .strip_prefix(FUNCTIONS)
                .and_then(|name| to_call(name, &body))
            {
                Some(call) => out.calls.push(call),
                None => {
                    out.unparsed += 1;
                    let raw = text.raw(message_start, next).to_owned();
                    parts.push(Part::Bad(raw, text.plain(message_start, next)));
                }
            },
            (None, Some("analysis")) => {
                saw_analysis = true;
                if !body.is_empty() {
                    reasoning.push(body);
                }
            }
            (None, _) => parts.push(Part::Text(body)),
        }
        pos = next;
        first = false;
    }
    if saw_analysis {
        out.reasoning = Some(reasoning.join("\n\n"));
    }
    let join = |verbatim: bool| {
        let pieces: Vec<&str> = parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.as_str(),
                Part::Bad(raw, plain) => {
                    if verbatim {
                        raw.as_str()
                    } else {
                        plain.as_str()
                    }
                }
            })
            .filter(|t| !t.is_empty())
            .collect();
        pieces.join("\n\n")
    };
    let mut content = join(true);
    if FORBIDDEN.iter().any(|f| content.contains(f)) {
        content = join(false);
    }
    out.content.push_str(&content);
}

/// Text that does not follow the grammar: content, or an unparsed call if its header names a
/// recipient.
fn tail(text: &Text, pos: usize, parts: &mut Vec<Part>, unparsed: &mut usize) {
    let rest = &text.s[pos..];
    let header = rest.split(MESSAGE).next().unwrap_or(rest);
    if recipient(header).is_some() {
        *unparsed += 1;
        parts.push(Part::Bad(rest.to_owned(), text.plain(pos, text.s.len())));
    } else {
        parts.push(Part::Text(text.plain(pos, text.s.len())));
    }
}

/// Where the body that starts at `from` ends, and where the next message starts.
fn terminator(s: &str, from: usize) -> (usize, usize) {
    let rest = &s[from..];
    let mut best: Option<(usize, usize)> = None;
    for (marker, consumed) in [(END, true), (CALL, true), (RETURN, true), (START, false)] {
        if let Some(at) = rest.find(marker) {
            if best.is_none_or(|(b, _)| at < b) {
                best = Some((at, if consumed { marker.len() } else { 0 }));
            }
        }
    }
    match best {
        Some((at, len)) => (from + at, from + at + len),
        None => (s.len(), s.len()),
    }
}

/// The recipient after ` to=` (or `to=` at the start of the header), up to a space or a `<`.
fn recipient(header: &str) -> Option<&str> {
    let mut search = 0;
    while let Some(rel) = header[search..].find("to=") {
        let at = search + rel;
        let bounded = at == 0 || header[..at].ends_with([' ', '>']);
        if bounded {
            let rest = &header[at + 3..];
            let len = rest
                .find(|c: char| c.is_whitespace() || c == '<')
                .unwrap_or(rest.len());
            return (len > 0).then(|| &rest[..len]);
        }
        search = at + 3;
    }
    None
}

/// The channel after `<|channel|>`, up to a space or a `<`.
fn channel(header: &str) -> Option<&str> {
    let at = header.find(CHANNEL)? + CHANNEL.len();
    let rest = &header[at..];
    let len = rest
        .find(|c: char| c.is_whitespace() || c == '<')
        .unwrap_or(rest.len());
    Some(&rest[..len])
}

fn to_call(name: &str, body: &str) -> Option<Call> {
    let Ok(Json::Object(arguments)) = serde_json::from_str::<Json>(body.trim()) else {
        return None;
    };
    if !valid_name(name) {
        return None;
    }
    let mut call = Call::new(name.to_owned(), arguments);
    call.arguments_text = Some(body.to_owned());
    Some(call)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_in_both_recipient_positions() {
        let h = " to=functions.get_weather<|channel|>commentary json";
        assert_eq!(recipient(h), Some("functions.get_weather"));
        assert_eq!(channel(h), Some("commentary"));
        let h = "<|channel|>commentary to=functions.f <|constrain|>json";
        assert_eq!(recipient(h), Some("functions.f"));
        assert_eq!(channel(h), Some("commentary"));
        assert_eq!(recipient("<|channel|>analysis"), None);
        assert_eq!(recipient("<|channel|>final auto=1"), None);
        assert_eq!(channel("no channel"), None);
    }
}
