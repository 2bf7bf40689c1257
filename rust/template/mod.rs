//! Chat templates: Hugging Face Jinja templates rendered with minijinja, with transformers'
//! semantics.
//!
//! transformers compiles chat templates in an `ImmutableSandboxedEnvironment(trim_blocks=True,
//! lstrip_blocks=True)` with the loop-controls extension, its own `tojson` filter (plain
//! `json.dumps`, no HTML escaping), and the globals `raise_exception`, `strftime_now`, `dict` and
//! `namespace` (transformers `utils/chat_template_utils.py::_cached_compile_jinja_template`).
//! This module builds the minijinja equivalent:
//!
//! * output of `{{ x }}` and `|string` is Python's `str(x)` (`None`, `True`, float repr, dict repr);
//! * `tojson` is `json.dumps` byte for byte, with its keyword arguments;
//! * Python string, dict and list methods (minijinja-contrib's pycompat, with Python's definition
//!   of whitespace for `strip`/`split`);
//! * the tests `sequence` and `iterable` follow Jinja2 (a string is a sequence).
//!
//! Templates are untrusted input: the environment has no loader (no file access, `include` of
//! anything fails), no network, and every render runs on a fuel budget and a recursion limit, so
//! a template that loops forever or allocates without bound fails with
//! [`ErrorKind::TemplateLimit`] instead of hanging.

pub mod bytes;
pub mod chat;
pub mod pyfmt;
pub mod segments;
pub mod tokenizer;

use std::fmt;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, State, UndefinedBehavior};

use self::pyfmt::JsonOptions;
use crate::error::{Error, ErrorKind, Result};

/// The name under which the one template of an environment is stored.
const NAME: &str = "chat_template";

/// Budgets that bound one render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderLimits {
    /// minijinja fuel: about one unit per instruction and per 64 bytes of data created, so it
    /// bounds both time and memory. The default, 5M, is about 200x what a 64-turn, 64k-token agent
    /// conversation needs (~23k with the Qwen3 template) and caps a render near 0.3 GB.
    pub fuel: u64,
    /// Maximum nesting of macro calls, loops and includes.
    pub recursion: usize,
}

impl Default for RenderLimits {
    fn default() -> Self {
        Self {
            fuel: 5_000_000,
            recursion: 200,
        }
    }
}

/// The error a template raises with `raise_exception(message)`, kept apart so the message reaches
/// the caller as the template wrote it.
#[derive(Debug)]
struct RaisedByTemplate(String);

impl fmt::Display for RaisedByTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedByTemplate {}

/// A compiled chat template, ready to render many times from many threads.
pub struct ChatTemplate {
    env: Environment<'static>,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source`. A syntax error is an [`ErrorKind::Template`] error naming the line.
    pub fn new(source: &str, limits: RenderLimits) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| Error::template(format!("chat template syntax config: {e}")))?;
        env.set_syntax(syntax);
        // Jinja2's default `Undefined`: printing an undefined value gives "", using it as a
        // container is an error.
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_fuel(Some(limits.fuel));
        env.set_recursion_limit(limits.recursion);
        env.set_debug(false);
        env.set_unknown_method_callback(python_methods);
        env.set_formatter(|out, _state, value| {
            let mut text = String::new();
            pyfmt::py_str(value, &mut text);
            out.write_str(&text).map_err(minijinja::Error::from)
        });
        env.add_filter("tojson", tojson);
        env.add_filter("string", |value: &Value| {
            let mut text = String::new();
            pyfmt::py_str(value, &mut text);
            text
        });
        env.add_test("sequence", |value: &Value| {
            matches!(
                value.kind(),
                ValueKind::Undefined | ValueKind::Seq | ValueKind::Map | ValueKind::String
            )
        });
        env.add_test("iterable", |value: &Value| {
            matches!(
                value.kind(),
                ValueKind::Undefined
                    | ValueKind::Seq
                    | ValueKind::Map
                    | ValueKind::String
                    | ValueKind::Iterable
            )
        });
        env.add_function(
            "raise_exception",
            |message: Value| -> Result<Value, minijinja::Error> {
                let mut text = String::new();
                pyfmt::py_str(&message, &mut text);
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    "raise_exception",
                )
                .with_source(RaisedByTemplate(text)))
            },
        );
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|e| {
                Error::template(format!("chat template does not compile: {}", describe(&e)))
            })?;
        Ok(Self { env })
    }

    /// Renders the template with `context` (the template's global variables).
    pub fn render(&self, context: Value) -> Result<String> {
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| Error::template(describe(&e)))?;
        template.render(context).map_err(|e| render_error(&e))
    }
}

/// Maps a render error to the core error, keeping `raise_exception`'s own message.
fn render_error(err: &minijinja::Error) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(current) = source {
        if let Some(raised) = current.downcast_ref::<RaisedByTemplate>() {
            return Error::template(raised.0.clone());
        }
        source = current.source();
    }
    match err.kind() {
        minijinja::ErrorKind::OutOfFuel => Error::new(
            ErrorKind::TemplateLimit,
            format!(
                "chat template exceeded its render budget ({}); the template loops or allocates \
                 without bound, or the conversation is far larger than expected: raise \
                 `template_fuel` only if the conversation is legitimately this large",
                describe(err)
            ),
        ),
        _ if describe(err).contains("recursion") => Error::new(
            ErrorKind::TemplateLimit,
            format!(
                "chat template recursed too deeply ({}); the template recurses without bound or \
                 the data nests deeply: raise `template_recursion` only if the template \
                 legitimately nests this deep",
                describe(err)
            ),
        ),
        _ => Error::template(format!("chat template failed to render: {}", describe(err))),
    }
}

/// An error's message with its template line, and its causes.
fn describe(err: &minijinja::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(current) = source {
        text.push_str(": ");
        text.push_str(&current.to_string());
        source = current.source();
    }
    text
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`
/// (`separators` and `sort_keys` by keyword only).
fn tojson(
    value: &Value,
    ensure_ascii: Option<Value>,
    indent: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, minijinja::Error> {
    let pick = |positional: Option<Value>, name: &str| -> Result<Option<Value>, minijinja::Error> {
        match kwargs.get::<Option<Value>>(name)? {
            Some(v) => Ok(Some(v)),
            None => Ok(positional),
        }
    };
    let ensure_ascii = pick(ensure_ascii, "ensure_ascii")?;
    let indent = pick(indent, "indent")?;
    let separators = pick(None, "separators")?;
    let sort_keys = pick(None, "sort_keys")?;
    kwargs.assert_all_used()?;

    let invalid = |msg: String| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg);
    let mut opts = JsonOptions {
        ensure_ascii: ensure_ascii.is_some_and(|v| v.is_true()),
        sort_keys: sort_keys.is_some_and(|v| v.is_true()),
        ..Default::default()
    };
    opts.indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) if v.kind() == ValueKind::String => Some(v.as_str().unwrap_or_default().to_owned()),
        Some(v) => {
            let n = i64::try_from(v.clone()).map_err(|_| {
                invalid(format!(
                    "tojson: indent must be an int or a string, not {v}"
                ))
            })?;
            if n > 64 {
                return Err(invalid(format!("tojson: indent {n} is larger than 64")));
            }
            Some(" ".repeat(n.max(0) as usize))
        }
    };
    opts.separators = match separators {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => {
            let parts: Vec<Value> = v
                .try_iter()
                .map_err(|_| invalid("tojson: separators must be a pair of strings".into()))?
                .collect();
            match parts.as_slice() {
                [a, b] if a.as_str().is_some() && b.as_str().is_some() => Some((
                    a.as_str().unwrap_or_default().to_owned(),
                    b.as_str().unwrap_or_default().to_owned(),
                )),
                _ => {
                    return Err(invalid(
                        "tojson: separators must be a pair of strings".into(),
                    ))
                }
            }
        }
    };
    pyfmt::json_dumps(value, &opts)
        .map(Value::from)
        .map_err(|e| invalid(format!("tojson: {}", e.0)))
}

/// transformers' `strftime_now(format)`: the local time formatted with `strftime`.
fn strftime_now(format: &str) -> Result<Value, minijinja::Error> {
    use chrono::format::{Item, StrftimeItems};
    let items: Vec<Item<'_>> = StrftimeItems::new(format).collect();
    if items.iter().any(|item| matches!(item, Item::Error)) {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("strftime_now: invalid format string {format:?}"),
        ));
    }
    Ok(Value::from(
        chrono::Local::now()
            .format_with_items(items.into_iter())
            .to_string(),
    ))
}

/// Python's `str.isspace` characters: Rust's `char::is_whitespace` plus U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python methods on template values: pycompat, with Python's whitespace for the no-argument
/// forms of `strip`, `lstrip`, `rstrip` and `split`.
fn python_methods(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, minijinja::Error> {
    if let Some(s) = value.as_str() {
        let no_chars = args.is_empty() || (args.len() == 1 && args[0].is_none());
        match method {
            "strip" if no_chars => return Ok(Value::from(s.trim_matches(is_py_space))),
            "lstrip" if no_chars => return Ok(Value::from(s.trim_start_matches(is_py_space))),
            "rstrip" if no_chars => return Ok(Value::from(s.trim_end_matches(is_py_space))),
            "split" if args.is_empty() || args[0].is_none() => {
                let maxsplit = match args.get(1) {
                    Some(v) if !v.is_none() => i64::try_from(v.clone())?,
                    _ => -1,
                };
                return Ok(Value::from(py_split_whitespace(s, maxsplit)));
            }
            // Python raises here; minijinja-contrib would split between every character.
            "split" if args[0].as_str() == Some("") => {
                return Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    "str.split: empty separator (Python raises ValueError)",
                ));
            }
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// Python's `str.split(None, maxsplit)`.
fn py_split_whitespace(s: &str, maxsplit: i64) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = s.trim_start_matches(is_py_space);
    while !rest.is_empty() {
        if maxsplit >= 0 && parts.len() as i64 >= maxsplit {
            parts.push(rest.to_owned());
            break;
        }
        let end = rest.find(is_py_space).unwrap_or(rest.len());
        parts.push(rest[..end].to_owned());
        rest = rest[end..].trim_start_matches(is_py_space);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, ctx: serde_json::Value) -> Result<String> {
        ChatTemplate::new(source, RenderLimits::default())?
            .render(Value::from(minijinja::value::Serde(&ctx)))
    }

    /// Found by tests/test_fuzz_py.py (hostile templates): `split('')` gave
    /// `['', 'h', 'i', '']` where transformers raises `ValueError: empty separator`.
    #[test]
    fn split_on_an_empty_separator_raises_like_python() {
        for source in ["{{ 'hi'.split('') }}", "{{ 'hi'.split('', 1) }}"] {
            let e = render(source, serde_json::json!({})).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Template, "{e}");
            assert!(e.to_string().contains("empty separator"), "{e}");
        }
        assert_eq!(
            render("{{ 'a,b'.split(',') }}", serde_json::json!({})).unwrap(),
            "['a', 'b']"
        );
    }

    #[test]
    fn prints_like_python() {
        let out = render(
            "{{ a }}|{{ b }}|{{ c }}|{{ d }}|{{ e }}|{{ f|string }}",
            serde_json::json!({"a": null, "b": true, "c": 1e16, "d": {"k": [1, "x'"]}, "e": 2.5, "f": false}),
        )
        .unwrap();
        assert_eq!(out, "None|True|1e+16|{'k': [1, \"x'\"]}|2.5|False");
    }

    #[test]
    fn trims_blocks_like_transformers() {
        let out = render(
            "{% for m in ms %}\n  {% if m %}\n{{ m }}\n  {% endif %}\n{% endfor %}\n",
            serde_json::json!({"ms": ["a", "b"]}),
        )
        .unwrap();
        assert_eq!(out, "a\nb\n");
    }

    #[test]
    fn tojson_matches_json_dumps() {
        let out = render(
            "{{ x|tojson }}|{{ x|tojson(indent=2) }}",
            serde_json::json!({"x": {"a": "é<>&", "b": [1.0]}}),
        )
        .unwrap();
        assert_eq!(
            out,
            "{\"a\": \"é<>&\", \"b\": [1.0]}|{\n  \"a\": \"é<>&\",\n  \"b\": [\n    1.0\n  ]\n}"
        );
    }

    #[test]
    fn raise_exception_keeps_message() {
        let err = render(
            "{{ raise_exception('bad role: ' ~ r) }}",
            serde_json::json!({"r": "x"}),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Template);
        assert_eq!(err.text(), "bad role: x");
    }

    #[test]
    fn runaway_templates_hit_the_budget() {
        let src = "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}";
        let err = render(src, serde_json::json!({})).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TemplateLimit);
        let src = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
        let err = render(src, serde_json::json!({})).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TemplateLimit, "{err}");
    }

    #[test]
    fn no_file_access() {
        let err = render("{% include '/etc/passwd' %}", serde_json::json!({})).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Template);
    }

    #[test]
    fn python_string_methods() {
        let out = render(
            "{{ s.strip() }}|{{ s.split() }}|{{ s.split(' ', 1) }}|{{ 'a' is sequence }}",
            serde_json::json!({"s": " a b\u{1c} "}),
        )
        .unwrap();
        assert_eq!(out, "a b|['a', 'b']|['', 'a b\\x1c ']|True");
    }
}
