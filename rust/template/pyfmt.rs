//! Python's text forms of template values: `str()`, `repr()` and `json.dumps`.
//!
//! Chat templates were written for Jinja2, where `{{ x }}` prints `str(x)` and transformers'
//! `tojson` filter is `json.dumps(x, ensure_ascii=False, indent=None, separators=None,
//! sort_keys=False)` (transformers `utils/chat_template_utils.py`). A template's output must be
//! byte-identical to transformers', so these functions reproduce CPython's rules exactly for
//! the JSON-like values templates see: `None`/`True`/`False`, integers, floats (shortest
//! round-trip repr, scientific notation outside `1e-4 <= |x| < 1e16`), strings, lists and dicts
//! (insertion order kept).

use std::fmt::Write;

use minijinja::value::{Value, ValueKind};

/// Options of `json.dumps` that templates pass to `tojson`.
#[derive(Debug, Clone, Default)]
pub struct JsonOptions {
    /// `ensure_ascii`: escape every non-ASCII character as `\uXXXX`.
    pub ensure_ascii: bool,
    /// `indent`: `None`, a number of spaces, or a string put once per nesting level.
    pub indent: Option<String>,
    /// `separators`: (item separator, key separator); `None` picks Python's defaults.
    pub separators: Option<(String, String)>,
    /// `sort_keys`: order dict keys.
    pub sort_keys: bool,
}

/// Why a value could not be written as JSON: the same cases where `json.dumps` raises `TypeError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError(pub String);

/// Python's `repr(float)`: the shortest string that round-trips, in fixed notation when
/// `1e-4 <= |x| < 1e16` and scientific notation (`1e+16`, `1.5e-05`) otherwise.
pub fn float_repr(x: f64, out: &mut String) {
    if x.is_nan() {
        out.push_str("nan");
        return;
    }
    if x.is_infinite() {
        out.push_str(if x < 0.0 { "-inf" } else { "inf" });
        return;
    }
    if x == 0.0 {
        out.push_str(if x.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    let abs = x.abs();
    if (1e-4..1e16).contains(&abs) {
        // Rust's Display for f64 is the shortest round-trip digits in fixed notation.
        let start = out.len();
        let _ = write!(out, "{x}");
        if !out[start..].contains('.') {
            out.push_str(".0");
        }
        return;
    }
    // `{:e}` is the shortest round-trip digits in scientific notation ("1.5e-5", "1e16").
    let sci = format!("{x:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exponent.parse().unwrap_or(0);
    out.push_str(mantissa);
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(out, "{:02}", exp.unsigned_abs());
}

/// `json.dumps`'s form of a float: like `repr`, but `NaN`, `Infinity` and `-Infinity`.
fn json_float(x: f64, out: &mut String) {
    if x.is_nan() {
        out.push_str("NaN");
    } else if x.is_infinite() {
        out.push_str(if x < 0.0 { "-Infinity" } else { "Infinity" });
    } else {
        float_repr(x, out);
    }
}

/// Python's `str(x)`: what `{{ x }}` prints in Jinja2.
pub fn py_str(value: &Value, out: &mut String) {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::String => out.push_str(value.as_str().unwrap_or_default()),
        _ => py_repr(value, out),
    }
}

/// Python's `repr(x)` for JSON-like values, as `str()` of a container prints its items.
pub fn py_repr(value: &Value, out: &mut String) {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => number(value, out, false),
        ValueKind::String => str_repr(value.as_str().unwrap_or_default(), out),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            if let Ok(iter) = value.try_iter() {
                for (i, item) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    py_repr(&item, out);
                }
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(iter) = value.try_iter() {
                for (i, key) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    py_repr(&key, out);
                    out.push_str(": ");
                    let item = value.get_item(&key).unwrap_or_default();
                    py_repr(&item, out);
                }
            }
            out.push('}');
        }
        // Plain objects, bytes and invalid values: minijinja's own display is the best available.
        _ => {
            let _ = write!(out, "{value}");
        }
    }
}

fn number(value: &Value, out: &mut String, json: bool) {
    if value.is_integer() {
        let _ = write!(out, "{value}");
    } else if let Ok(x) = f64::try_from(value.clone()) {
        if json {
            json_float(x, out);
        } else {
            float_repr(x, out);
        }
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Python's `repr(str)`: single quotes unless the text has a single quote and no double quote;
/// `\\`, `\n`, `\r`, `\t` and the quote escaped; other non-printable characters as `\xNN`,
/// `\uNNNN` or `\UNNNNNNNN`.
pub fn str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !is_printable(c) => {
                let cp = c as u32;
                let _ = if cp <= 0xff {
                    write!(out, "\\x{cp:02x}")
                } else if cp <= 0xffff {
                    write!(out, "\\u{cp:04x}")
                } else {
                    write!(out, "\\U{cp:08x}")
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// An approximation of `str.isprintable` that is exact for ASCII and Latin-1 and for the
/// characters chat text is made of: control characters, the line and paragraph separators and
/// the format characters that Python escapes.
fn is_printable(c: char) -> bool {
    let cp = c as u32;
    if cp < 0x20 || (0x7f..0xa1).contains(&cp) || cp == 0xad {
        return false;
    }
    // Zl, Zp, non-ASCII Zs, and common Cf characters (zero-width, bidi controls, BOM).
    !matches!(
        cp,
        0x1680 | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x2064 | 0x2066..=0x206f
            | 0x3000 | 0xfeff | 0xfff9..=0xfffb | 0xe000..=0xf8ff | 0xd800..=0xdfff
    )
}

/// `json.dumps(value, ...)` with Python's exact output.
pub fn json_dumps(value: &Value, opts: &JsonOptions) -> Result<String, JsonError> {
    let (item_sep, key_sep) = match &opts.separators {
        Some((a, b)) => (a.as_str(), b.as_str()),
        None if opts.indent.is_some() => (",", ": "),
        None => (", ", ": "),
    };
    let mut out = String::new();
    let writer = JsonWriter {
        opts,
        item_sep,
        key_sep,
    };
    writer.write(value, 0, &mut out)?;
    Ok(out)
}

struct JsonWriter<'a> {
    opts: &'a JsonOptions,
    item_sep: &'a str,
    key_sep: &'a str,
}

/// Nesting deeper than this is refused, as CPython's recursion limit would refuse it.
const MAX_JSON_DEPTH: usize = 512;

impl JsonWriter<'_> {
    fn newline(&self, level: usize, out: &mut String) {
        if let Some(indent) = &self.opts.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(indent);
            }
        }
    }

    fn write(&self, value: &Value, level: usize, out: &mut String) -> Result<(), JsonError> {
        if level > MAX_JSON_DEPTH {
            return Err(JsonError("tojson: value nested too deeply".into()));
        }
        match value.kind() {
            ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => number(value, out, true),
            ValueKind::String => json_string(
                value.as_str().unwrap_or_default(),
                self.opts.ensure_ascii,
                out,
            ),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value
                    .try_iter()
                    .map_err(|e| JsonError(e.to_string()))?
                    .collect();
                if items.is_empty() {
                    out.push_str("[]");
                    return Ok(());
                }
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(self.item_sep);
                    }
                    self.newline(level + 1, out);
                    self.write(item, level + 1, out)?;
                }
                self.newline(level, out);
                out.push(']');
            }
            ValueKind::Map => {
                let mut pairs = Vec::new();
                for key in value.try_iter().map_err(|e| JsonError(e.to_string()))? {
                    let item = value.get_item(&key).unwrap_or_default();
                    pairs.push((json_key(&key)?, item));
                }
                if self.opts.sort_keys {
                    pairs.sort_by(|a, b| a.0.cmp(&b.0));
                }
                if pairs.is_empty() {
                    out.push_str("{}");
                    return Ok(());
                }
                out.push('{');
                for (i, (key, item)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(self.item_sep);
                    }
                    self.newline(level + 1, out);
                    json_string(key, self.opts.ensure_ascii, out);
                    out.push_str(self.key_sep);
                    self.write(item, level + 1, out)?;
                }
                self.newline(level, out);
                out.push('}');
            }
            ValueKind::Undefined => {
                return Err(JsonError(
                    "Object of type Undefined is not JSON serializable".into(),
                ))
            }
            other => {
                return Err(JsonError(format!(
                    "Object of type {other} is not JSON serializable"
                )))
            }
        }
        Ok(())
    }
}

/// The key `json.dumps` writes for a dict key: strings as they are; numbers, booleans and `None`
/// converted as Python does; anything else is a `TypeError` there and an error here.
fn json_key(key: &Value) -> Result<String, JsonError> {
    let mut out = String::new();
    match key.kind() {
        ValueKind::String => out.push_str(key.as_str().unwrap_or_default()),
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if key.is_true() { "true" } else { "false" }),
        ValueKind::Number => number(key, &mut out, true),
        other => {
            return Err(JsonError(format!(
                "keys must be str, int, float, bool or None, not {other}"
            )))
        }
    }
    Ok(out)
}

/// A JSON string as `json.dumps` writes it (`ensure_ascii` escapes non-ASCII with surrogates).
pub fn json_string(s: &str, ensure_ascii: bool, out: &mut String) {
    out.reserve(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(x: f64) -> String {
        let mut s = String::new();
        float_repr(x, &mut s);
        s
    }

    #[test]
    fn floats_follow_python_repr() {
        assert_eq!(repr(1.0), "1.0");
        assert_eq!(repr(0.1), "0.1");
        assert_eq!(repr(1e16), "1e+16");
        assert_eq!(repr(1.5e-5), "1.5e-05");
        assert_eq!(repr(0.0001), "0.0001");
        assert_eq!(repr(123456789012345.6), "123456789012345.6");
        assert_eq!(repr(-2.5e100), "-2.5e+100");
        assert_eq!(repr(-0.0), "-0.0");
    }

    #[test]
    fn json_matches_python_defaults() {
        let v = Value::from(minijinja::value::Serde(
            serde_json::json!({"a": [1, 2.0, null, true], "é": "x\"\n\u{1}"}),
        ));
        let out = json_dumps(&v, &JsonOptions::default()).unwrap();
        assert_eq!(
            out,
            "{\"a\": [1, 2.0, null, true], \"é\": \"x\\\"\\n\\u0001\"}"
        );
        let opts = JsonOptions {
            indent: Some("  ".into()),
            ensure_ascii: true,
            ..Default::default()
        };
        let out = json_dumps(&v, &opts).unwrap();
        assert_eq!(out, "{\n  \"a\": [\n    1,\n    2.0,\n    null,\n    true\n  ],\n  \"\\u00e9\": \"x\\\"\\n\\u0001\"\n}");
    }

    #[test]
    fn repr_quotes_like_python() {
        let mut s = String::new();
        str_repr("it's", &mut s);
        assert_eq!(s, "\"it's\"");
        s.clear();
        str_repr("a'b\"c", &mut s);
        assert_eq!(s, "'a\\'b\"c'");
    }
}
