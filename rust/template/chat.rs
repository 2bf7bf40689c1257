//! `apply_chat_template`: what transformers does to messages, then render, then encode.
//!
//! transformers 5.x (`tokenization_utils_base.py::apply_chat_template` and
//! `utils/chat_template_utils.py::render_jinja_template`), in order:
//! 1. drop the keys whose value is `None` from each message (top level only);
//! 2. copy reasoning between `reasoning_content`, `thinking` and `reasoning`: the first non-null
//!    of those (in that order) becomes `reasoning_content`, and `thinking` unless the message
//!    already has one (`_alias_reasoning_fields`), with transformers' key order;
//! 3. for `continue_final_message`, append a tag to the final message's field, render, and cut the
//!    text at the tag;
//! 4. render with `messages`, `tools`, `documents`, `add_generation_prompt`, the named special
//!    tokens, then the caller's template variables (which win over the special tokens);
//! 5. encode the text with no special tokens added.
//!
//! Inputs are JSON values: the PyO3 layer turns dicts, Pydantic models and dataclasses into them
//! first, as transformers' `_plain_template_data` does.

use std::sync::Arc;

use minijinja::value::Serde;
use minijinja::Value;
use serde_json::{Map, Value as Json};

use crate::error::{Error, Result};
use crate::template::tokenizer::Tokenizer;

/// Names a message's reasoning is passed under; the first is the one templates read.
const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "thinking", "reasoning"];

/// transformers' marker for `continue_final_message`.
const CONTINUE_TAG: &str = "CONTINUE_FINAL_MESSAGE_TAG ";

/// Template variables that are not messages.
#[derive(Debug, Clone, Default)]
pub struct ChatOptions {
    /// Tool schemas (OpenAI function format), or `None`; shared, so the options of every render
    /// of a rollout's turn hold the one list.
    pub tools: Option<Arc<[Json]>>,
    /// RAG documents, or `None`.
    pub documents: Option<Arc<[Json]>>,
    /// Open an assistant turn after the messages.
    pub add_generation_prompt: bool,
    /// Leave the final message open: `Some("content")` (or another field, e.g.
    /// `reasoning_content`).
    pub continue_final_message: Option<String>,
    /// Pick a named template.
    pub template_name: Option<String>,
    /// Further template variables (`enable_thinking`, `date_string`, ...), in the caller's order.
    pub kwargs: Map<String, Json>,
}

/// Variables a caller cannot pass as template kwargs, because apply_chat_template sets them.
const RESERVED: [&str; 4] = ["messages", "tools", "documents", "add_generation_prompt"];

fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Steps 1 and 2: `None` keys dropped, reasoning aliased.
fn prepare_message(index: usize, message: Json) -> Result<Map<String, Json>> {
    let Json::Object(map) = message else {
        return Err(Error::message(format!(
            "message {index} is {}, but chat messages must be dicts (or Pydantic models / \
             dataclasses) with a \"role\"",
            kind_name(&message)
        )));
    };
    let map: Map<String, Json> = map.into_iter().filter(|(_, v)| !v.is_null()).collect();
    let reasoning = REASONING_FIELDS.iter().find_map(|k| map.get(*k)).cloned();
    let Some(reasoning) = reasoning else {
        return Ok(map);
    };
    // {"thinking": reasoning, **message, "reasoning_content": reasoning}
    let mut out = Map::with_capacity(map.len() + 2);
    out.insert("thinking".to_owned(), reasoning.clone());
    for (k, v) in map {
        out.insert(k, v);
    }
    out.insert("reasoning_content".to_owned(), reasoning);
    Ok(out)
}

fn kind_name(value: &Json) -> &'static str {
    match value {
        Json::Null => "None",
        Json::Bool(_) => "a bool",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a dict",
    }
}

/// Where `continue_final_message` put its tag, to cut the rendered text there.
struct Continuation {
    final_text: String,
}

/// Step 3, before rendering.
fn tag_final_message(
    chat: &mut [Map<String, Json>],
    field: &str,
    template_source: &str,
) -> Result<Continuation> {
    let Some(last) = chat.last_mut() else {
        return Err(Error::template(
            "continue_final_message is set but the conversation is empty",
        ));
    };
    let Some(final_value) = last.get(field).cloned() else {
        return Err(Error::template(format!(
            "continue_final_message is set but the final message has no {field:?} to continue"
        )));
    };
    let mut fields = vec![field.to_owned()];
    if REASONING_FIELDS.contains(&field) {
        fields = REASONING_FIELDS
            .iter()
            .filter(|f| last.get(**f) == Some(&final_value))
            .map(|f| (*f).to_owned())
            .collect();
    }
    if !fields.iter().any(|f| template_source.contains(f.as_str())) {
        return Err(Error::template(format!(
            "continue_final_message is set to {field:?} but this is not an accepted field in the \
             chat template"
        )));
    }
    match final_value {
        Json::Array(_) => {
            let Some(Json::Array(blocks)) = last.get_mut(field) else {
                return Err(Error::template(
                    "continue_final_message: final message changed",
                ));
            };
            for block in blocks.iter_mut().rev() {
                if let Json::Object(block) = block {
                    if let Some(Json::String(text)) = block.get_mut("text") {
                        let final_text = text.clone();
                        text.push_str(CONTINUE_TAG);
                        return Ok(Continuation { final_text });
                    }
                }
            }
            Err(Error::template(
                "continue_final_message is set but we could not find any text to continue in the \
                 final message",
            ))
        }
        Json::String(text) => {
            for f in &fields {
                match last.get_mut(f.as_str()) {
                    Some(Json::String(s)) => s.push_str(CONTINUE_TAG),
                    _ => {
                        return Err(Error::template(format!(
                            "continue_final_message: the final message's {f:?} is not a string"
                        )))
                    }
                }
            }
            Ok(Continuation { final_text: text })
        }
        other => Err(Error::template(format!(
            "continue_final_message: the final message's {field:?} is {}, not text",
            kind_name(&other)
        ))),
    }
}

/// Step 3, after rendering: cut the text at the tag.
fn cut_at_tag(rendered: String, continuation: &Continuation) -> Result<String> {
    let tag = CONTINUE_TAG.trim_matches(is_py_space);
    let final_text = continuation.final_text.trim_matches(is_py_space);
    if !rendered.contains(final_text) || !rendered.contains(tag) {
        return Err(Error::template(
            "continue_final_message is set but the final message does not appear in the chat \
             after applying the chat template; the template deletes part of the final message",
        ));
    }
    let loc = rendered.rfind(tag).unwrap_or(0);
    if rendered[loc..].starts_with(CONTINUE_TAG) {
        Ok(rendered[..loc].to_owned())
    } else {
        Ok(rendered[..loc].trim_end_matches(is_py_space).to_owned())
    }
}

/// Renders `messages` with the tokenizer's chat template.
pub fn render(tokenizer: &Tokenizer, messages: Vec<Json>, options: &ChatOptions) -> Result<String> {
    if messages.is_empty() {
        return Err(Error::template(
            "cannot apply the chat template to an empty conversation; pass at least one message",
        ));
    }
    if options.continue_final_message.is_some() && options.add_generation_prompt {
        return Err(Error::template(
            "continue_final_message and add_generation_prompt are not compatible: use \
             continue_final_message to continue the final message, add_generation_prompt to \
             open a new assistant turn",
        ));
    }
    for (i, tool) in options.tools.iter().flat_map(|t| t.iter()).enumerate() {
        if !tool.is_object() {
            return Err(Error::message(format!(
                "tool {i} is {}; tools must be JSON schema dicts ({{\"type\": \"function\", \
                 \"function\": {{...}}}})",
                kind_name(tool)
            )));
        }
    }
    for (i, doc) in options.documents.iter().flat_map(|d| d.iter()).enumerate() {
        if !doc.is_object() {
            return Err(Error::message(format!(
                "document {i} is {}; documents must be dicts with \"title\" and \"text\"",
                kind_name(doc)
            )));
        }
    }
    if let Some(name) = options
        .kwargs
        .keys()
        .find(|k| RESERVED.contains(&k.as_str()))
    {
        return Err(Error::message(format!(
            "{name:?} cannot be passed as a template variable: apply_chat_template sets it"
        )));
    }
    let template =
        tokenizer.select_template(options.template_name.as_deref(), options.tools.is_some())?;
    let mut chat = messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| prepare_message(i, m))
        .collect::<Result<Vec<_>>>()?;
    let continuation = match &options.continue_final_message {
        Some(field) => Some(tag_final_message(&mut chat, field, &template.source)?),
        None => None,
    };

    // The context is built as template values straight from the options (no copy of the tools
    // or kwargs as JSON first); a kwarg named like a special token replaces it, as in
    // transformers.
    let listed = |items: &Option<Arc<[Json]>>| match items {
        Some(items) => Value::from(Serde(&**items)),
        None => Value::from(()),
    };
    let mut context: Vec<(&str, Value)> =
        Vec::with_capacity(4 + tokenizer.special_tokens().len() + options.kwargs.len());
    context.push(("messages", Value::from(Serde(&chat))));
    context.push(("tools", listed(&options.tools)));
    context.push(("documents", listed(&options.documents)));
    context.push((
        "add_generation_prompt",
        Value::from(options.add_generation_prompt),
    ));
    for (name, text) in tokenizer.special_tokens() {
        context.push((name, Value::from(text.as_str())));
    }
    for (name, value) in &options.kwargs {
        context.push((name, Value::from(Serde(value))));
    }
    let rendered = template.compiled.render(Value::from_pairs(context))?;
    match continuation {
        Some(c) => cut_at_tag(rendered, &c),
        None => Ok(rendered),
    }
}

/// Renders and encodes `messages` (no special tokens added), reusing the ids of text seen in
/// earlier renders.
pub fn render_ids(
    tokenizer: &Tokenizer,
    messages: Vec<Json>,
    options: &ChatOptions,
) -> Result<Vec<u32>> {
    let text = render(tokenizer, messages, options)?;
    tokenizer.encode(&text, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn none_keys_dropped_and_reasoning_aliased_in_transformers_order() {
        let m = prepare_message(
            0,
            json!({"role": "assistant", "content": null, "reasoning": "r", "x": 1}),
        )
        .unwrap();
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["thinking", "role", "reasoning", "x", "reasoning_content"]
        );
        let m = prepare_message(
            0,
            json!({"role": "assistant", "reasoning_content": "a", "thinking": "b"}),
        )
        .unwrap();
        assert_eq!(m["thinking"], "b");
        assert_eq!(m["reasoning_content"], "a");
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(keys, ["thinking", "role", "reasoning_content"]);
    }

    #[test]
    fn reserved_names_are_not_template_variables() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/qwen2.5");
        let tok = Tokenizer::from_dir(&dir, &Default::default()).unwrap();
        let mut kwargs = Map::new();
        kwargs.insert("tools".into(), json!([]));
        let options = ChatOptions {
            kwargs,
            ..Default::default()
        };
        let err = render(
            &tok,
            vec![json!({"role": "user", "content": "x"})],
            &options,
        )
        .unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Message);
    }

    #[test]
    fn non_dict_messages_are_typed_errors() {
        let err = prepare_message(3, json!("hi")).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Message);
        assert!(err.text().contains("message 3 is a string"));
    }
}
