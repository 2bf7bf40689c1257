//! Chat messages as the TITO engine compares them: normalized, then hashed once.
//!
//! Two messages are the same message when their normalized forms are equal, with the rules of
//! `docs/wire.md` E.2/E.4 made symmetric (verifiers #1259, the Dynamo branches' "drop None
//! keys", the renderer client's JSON-argument comparison):
//! * keys whose value is `null` are dropped, at every depth;
//! * `"content": ""` is the same as no `content`;
//! * a string under the key `arguments` that parses as JSON compares as the parsed value, so
//!   `{"a":1}` equals `{"a": 1}`;
//! * map key order does not matter (Python dict equality); an integral float equals the integer
//!   (`1.0 == 1` in Python);
//! * a tool call in verifiers' flat shape (`{"id", "name", "arguments"}`, its `vf.ToolCall`)
//!   equals the OpenAI shape (`{"id", "type": "function", "function": {"name", "arguments"}}`)
//!   that verifiers' `to_native_prompt` turns it into.
//!
//! [`message_hash`] feeds that normalized form, with type tags and lengths, into xxh3-128, so
//! equal messages hash equal and different ones collide with probability about 2^-128.

use serde_json::Value as Json;
use xxhash_rust::xxh3::Xxh3;

/// A 128-bit digest of a normalized message.
pub type MessageHash = u128;

/// Hashes `message` in its normalized form.
pub fn message_hash(message: &Json) -> MessageHash {
    let mut hasher = Xxh3::new();
    feed(&mut hasher, message, None, 0);
    hasher.digest128()
}

/// Combines the running prefix hash of messages `0..k` with message `k`'s hash.
pub fn chain(prefix: u128, message: MessageHash) -> u128 {
    let mut hasher = Xxh3::new();
    hasher.update(&prefix.to_le_bytes());
    hasher.update(&message.to_le_bytes());
    hasher.digest128()
}

/// The prefix hashes of a list of message hashes: element `k` covers messages `0..=k`.
pub fn prefix_hashes(hashes: &[MessageHash]) -> Vec<u128> {
    let mut out = Vec::with_capacity(hashes.len());
    let mut running = 0u128;
    for h in hashes {
        running = chain(running, *h);
        out.push(running);
    }
    out
}

/// Deeper than this, values are hashed by their text form only (they cannot be chat data).
const MAX_DEPTH: usize = 64;

fn feed(h: &mut Xxh3, value: &Json, key: Option<&str>, depth: usize) {
    if depth > MAX_DEPTH {
        h.update(b"X");
        h.update(value.to_string().as_bytes());
        return;
    }
    match value {
        Json::Null => h.update(b"N"),
        Json::Bool(b) => h.update(if *b { b"T" } else { b"F" }),
        Json::Number(n) => feed_number(h, n),
        Json::String(s) => {
            if key == Some("arguments") {
                if let Ok(parsed) = serde_json::from_str::<Json>(s) {
                    feed(h, &parsed, None, depth + 1);
                    return;
                }
            }
            h.update(b"S");
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        Json::Array(items) => {
            h.update(b"L");
            h.update(&(items.len() as u64).to_le_bytes());
            for item in items {
                match (key, openai_tool_call(item)) {
                    (Some("tool_calls"), Some(call)) => feed(h, &call, None, depth + 1),
                    _ => feed(h, item, None, depth + 1),
                }
            }
        }
        Json::Object(map) => {
            let mut entries: Vec<(&String, &Json)> =
                map.iter().filter(|(k, v)| !is_absent(k, v)).collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            h.update(b"M");
            h.update(&(entries.len() as u64).to_le_bytes());
            for (k, v) in entries {
                h.update(&(k.len() as u64).to_le_bytes());
                h.update(k.as_bytes());
                feed(h, v, Some(k), depth + 1);
            }
        }
    }
}

/// The OpenAI shape of a tool call in verifiers' flat shape, or `None` if it is not one.
fn openai_tool_call(item: &Json) -> Option<Json> {
    let map = item.as_object()?;
    if map.contains_key("function") || !map.contains_key("name") {
        return None;
    }
    let mut function = serde_json::Map::new();
    let mut call = serde_json::Map::new();
    for (k, v) in map {
        match k.as_str() {
            "name" | "arguments" => {
                function.insert(k.clone(), v.clone());
            }
            _ => {
                call.insert(k.clone(), v.clone());
            }
        }
    }
    call.entry("type").or_insert_with(|| Json::from("function"));
    call.insert("function".to_owned(), Json::Object(function));
    Some(Json::Object(call))
}

/// A map entry that normalization removes: `null` values and empty `content`.
fn is_absent(key: &str, value: &Json) -> bool {
    value.is_null() || (key == "content" && value.as_str() == Some(""))
}

fn feed_number(h: &mut Xxh3, n: &serde_json::Number) {
    if let Some(i) = n.as_i64() {
        h.update(b"I");
        h.update(&i.to_le_bytes());
    } else if let Some(u) = n.as_u64() {
        h.update(b"U");
        h.update(&u.to_le_bytes());
    } else if let Some(f) = n.as_f64() {
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            h.update(b"I");
            h.update(&(f as i64).to_le_bytes());
        } else {
            h.update(b"D");
            h.update(&f.to_bits().to_le_bytes());
        }
    }
}

/// The role of a message (`""` when absent or not a string).
pub fn role(message: &Json) -> &str {
    message.get("role").and_then(Json::as_str).unwrap_or("")
}

/// Whether a message carries image or audio parts (verifiers `_has_multimodal_content`): its
/// `content` is a list with a part whose `type` is `image_url`, `input_audio`, `image` or
/// `audio`.
pub fn is_multimodal(message: &Json) -> bool {
    match message.get("content") {
        Some(Json::Array(parts)) => parts.iter().any(|part| {
            matches!(
                part.get("type").and_then(Json::as_str),
                Some("image_url" | "input_audio" | "image" | "audio" | "input_image")
            )
        }),
        _ => false,
    }
}

/// A fingerprint of the tools or template variables of a turn (`None` and `[]`/`{}` differ).
pub fn fingerprint(value: Option<&Json>) -> u128 {
    match value {
        None => 0,
        Some(v) => message_hash(v) ^ 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn normalization_is_symmetric() {
        let a = json!({"role": "assistant", "content": "", "thinking_blocks": null,
                       "tool_calls": [{"id": "c", "type": "function",
                                       "function": {"name": "f", "arguments": "{\"a\":1}"}}]});
        let b = json!({"tool_calls": [{"type": "function", "id": "c",
                                       "function": {"arguments": {"a": 1.0}, "name": "f"}}],
                       "role": "assistant"});
        assert_eq!(message_hash(&a), message_hash(&b));
        let c = json!({"role": "assistant", "content": " "});
        assert_ne!(
            message_hash(&c),
            message_hash(&json!({"role": "assistant"}))
        );
    }

    #[test]
    fn flat_verifiers_tool_calls_equal_openai_ones() {
        let flat = json!({"role": "assistant", "tool_calls": [{"id": "c", "name": "f", "arguments": "{}"}]});
        let openai = json!({"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}]});
        assert_eq!(message_hash(&flat), message_hash(&openai));
    }

    #[test]
    fn different_messages_differ() {
        let base = json!({"role": "user", "content": "hi"});
        for other in [
            json!({"role": "user", "content": "hi "}),
            json!({"role": "assistant", "content": "hi"}),
            json!({"role": "user", "content": ["hi"]}),
            json!({"role": "user", "content": "hi", "name": "x"}),
        ] {
            assert_ne!(message_hash(&base), message_hash(&other), "{other}");
        }
        // A string that is not JSON stays a string; "1" as arguments equals the number 1.
        let s = json!({"arguments": "not json"});
        assert_ne!(
            message_hash(&s),
            message_hash(&json!({"arguments": "not  json"}))
        );
    }

    #[test]
    fn prefix_hashes_chain() {
        let h = [1u128, 2, 3];
        let p = prefix_hashes(&h);
        assert_eq!(p[1], chain(chain(0, 1), 2));
        assert_ne!(prefix_hashes(&[2, 1])[1], p[1]);
    }

    #[test]
    fn multimodal_parts_are_seen() {
        assert!(is_multimodal(
            &json!({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]})
        ));
        assert!(!is_multimodal(
            &json!({"role": "user", "content": [{"type": "text", "text": "x"}]})
        ));
    }
}
