//! What every request body shares: the JSON writer and the rules for the caller's arguments.
//! Each wire's own body sits beside its parser (`wire::vllm_generate` and the others).
//!
//! Each writer takes the prompt ids as `&[u32]`, the caller's sampling arguments as a
//! `serde_json::Map` and typed [`RequestOptions`], and writes the body into one pre-sized
//! `Vec<u8>`: ids go through `itoa` straight into the buffer (no `Vec<Value>` of ids), the
//! caller's values through serde_json. The bytes are what the HTTP client sends, unchanged.
//!
//! Rules every writer keeps:
//! * **Caller arguments are normalized first** (verifiers `normalize_sampling_args`,
//!   docs/wire.md A.2): a nested `extra_body` object is merged over the top level
//!   (`{**sampling, **extra_body}`), and keys whose value is `null` are dropped.
//! * **Typed options win** over the same caller keys, and no key is ever written twice.
//! * **Empty salts are absent**: an empty `cache_salt` is never sent (Dynamo treats `""` as
//!   absent, docs/wire.md C.1; vLLM rejects it).
//! * **Every wire gets only keys it accepts**: vLLM's generate route takes sampling inside
//!   `sampling_params` and `cache_salt`/`priority` at the root (B.2); Dynamo 400s on unknown root
//!   keys, so the vLLM-only ones are scrubbed and `cache_salt`/`priority` move into `nvext`
//!   (C.1, D1, D2).
//!
//! A caller argument that cannot be placed (an `nvext` that is not an object, a `priority` that
//! is not an integer) is an [`ErrorKind::Message`](crate::ErrorKind::Message) error naming the key.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Typed options a writer applies on top of the caller's sampling arguments.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestOptions<'a> {
    /// The most new tokens to sample. Overrides the caller's `max_tokens` and
    /// `max_completion_tokens`; with neither, the server default applies (vLLM's
    /// `SamplingParams.max_tokens` defaults to 16 on the generate route, docs/wire.md B.2).
    pub max_tokens: Option<u32>,
    /// The tokenizer's stop ids. Where a writer sends them they replace the caller's
    /// `stop_token_ids` (renderers, docs/wire.md B.2, C.1); `None` keeps the caller's.
    pub stop_token_ids: Option<&'a [u32]>,
    /// The KV-cache salt (change it per policy version, docs/wire.md E.5 item 16). Overrides the
    /// caller's `cache_salt` (and, on Dynamo, `nvext.cache_salt`) unless empty.
    pub cache_salt: Option<&'a str>,
    /// The scheduling priority. vLLM: lower runs earlier, root `priority`. Dynamo:
    /// `nvext.agent_hints.priority` (an `i32`; Dynamo maps it onto the vLLM worker's scale, C.1).
    pub priority: Option<i64>,
    /// Chat-template variables; override the caller's `chat_template_kwargs`. Not sent on the
    /// generate route, which renders no template.
    pub chat_template_kwargs: Option<&'a Map<String, Value>>,
    /// How many top alternatives to return per sampled token (SGLang `top_logprobs_num`).
    /// Overrides the caller's `logprobs` / `top_logprobs` counts.
    pub top_logprobs: Option<u32>,
}

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

/// The caller's arguments, `extra_body` merged over the top level and `null` values dropped
/// (verifiers `normalize_sampling_args`, docs/wire.md A.2).
pub(super) fn caller_args(sampling: &Map<String, Value>) -> Result<Vec<(&str, &Value)>> {
    let extra = match sampling.get("extra_body") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(other) => return Err(arg_error("extra_body", "an object", other)),
    };
    let mut out = Vec::with_capacity(sampling.len() + extra.map_or(0, Map::len));
    for (k, v) in sampling {
        if k == "extra_body" {
            continue;
        }
        let v = extra.and_then(|e| e.get(k)).unwrap_or(v);
        if !v.is_null() {
            out.push((k.as_str(), v));
        }
    }
    for (k, v) in extra.into_iter().flatten() {
        if k != "extra_body" && !sampling.contains_key(k) && !v.is_null() {
            out.push((k.as_str(), v));
        }
    }
    Ok(out)
}

/// The caller's value for `key`.
pub(super) fn get<'v>(args: &[(&str, &'v Value)], key: &str) -> Option<&'v Value> {
    args.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
}

/// The max-new-tokens value: the option, else the caller's `max_completion_tokens`, else
/// `max_tokens` (vLLM reads `max_completion_tokens or max_tokens`, docs/wire.md A.1).
pub(super) fn max_tokens<'v>(
    args: &[(&str, &'v Value)],
    opts: &RequestOptions<'_>,
) -> Option<MaxTokens<'v>> {
    match opts.max_tokens {
        Some(n) => Some(MaxTokens::Option(n)),
        None => get(args, "max_completion_tokens")
            .or_else(|| get(args, "max_tokens"))
            .map(MaxTokens::Caller),
    }
}

/// A max-new-tokens value to write.
pub(super) enum MaxTokens<'v> {
    Option(u32),
    Caller(&'v Value),
}

/// The salt to send: the option, else the caller's `nvext.cache_salt` (Dynamo only), else the
/// caller's `cache_salt`; empty strings count as absent (docs/wire.md C.1 precedence).
pub(super) fn cache_salt<'v>(
    args: &[(&str, &'v Value)],
    opts: &RequestOptions<'v>,
    caller_nvext: Option<&'v Map<String, Value>>,
) -> Result<Option<&'v str>> {
    if let Some(salt) = opts.cache_salt.filter(|s| !s.is_empty()) {
        return Ok(Some(salt));
    }
    let candidates = [
        (
            "nvext.cache_salt",
            caller_nvext.and_then(|n| n.get("cache_salt")),
        ),
        ("cache_salt", get(args, "cache_salt")),
    ];
    for (key, value) in candidates {
        match value {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::String(s)) => return Ok(Some(s)),
            Some(other) => return Err(arg_error(key, "a string", other)),
        }
    }
    Ok(None)
}

/// The priority to send: the option, else the caller's integer `priority`.
pub(super) fn priority(args: &[(&str, &Value)], opts: &RequestOptions<'_>) -> Result<Option<i64>> {
    if let Some(p) = opts.priority {
        return Ok(Some(p));
    }
    match get(args, "priority") {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| arg_error("priority", "an integer", v)),
    }
}

/// A caller argument of the wrong type.
pub(super) fn arg_error(key: &str, expected: &str, found: &Value) -> Error {
    let found = match found {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    };
    Error::message(format!(
        "sampling argument `{key}` must be {expected}, found {found}; fix the sampling arguments \
         (or their `extra_body`) passed for this request"
    ))
}

/// A rough body size, so the buffer is allocated once in the common case: ids take at most 11
/// bytes each, typically 7.
pub(super) fn estimate(model: &str, ids: &[u32], args: &[(&str, &Value)], extra: usize) -> usize {
    256 + model.len() + ids.len() * 7 + args.len() * 48 + extra
}

/// A minimal JSON object writer over one `Vec<u8>`.
pub(super) struct Writer {
    pub(super) buf: Vec<u8>,
    /// Whether the next key needs a comma before it.
    pub(super) comma: bool,
}

impl Writer {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
            comma: false,
        }
    }

    pub(super) fn open(&mut self) {
        self.buf.push(b'{');
        self.comma = false;
    }

    pub(super) fn close(&mut self) {
        self.buf.push(b'}');
        self.comma = true;
    }

    pub(super) fn key(&mut self, key: &str) {
        if self.comma {
            self.buf.push(b',');
        }
        write_json_str(&mut self.buf, key);
        self.buf.push(b':');
        self.comma = false;
    }

    pub(super) fn str(&mut self, s: &str) {
        write_json_str(&mut self.buf, s);
        self.comma = true;
    }

    pub(super) fn raw(&mut self, json: &str) {
        self.buf.extend_from_slice(json.as_bytes());
        self.comma = true;
    }

    pub(super) fn int(&mut self, n: impl itoa::Integer) {
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self.comma = true;
    }

    /// `ids` as a JSON array. Ids are written 64 at a time into a stack buffer, each with its
    /// digit count known first and its digits placed two at a time, so the body grows by one
    /// copy per 64 ids rather than two per id (prompts of 16k-64k ids are written every turn).
    pub(super) fn ids(&mut self, ids: &[u32]) {
        const GROUP: usize = 64;
        let mut chunk = [0u8; GROUP * 11];
        self.buf.reserve(ids.len() * 7 + 2);
        self.buf.push(b'[');
        for (g, group) in ids.chunks(GROUP).enumerate() {
            let mut n = 0;
            for (i, &id) in group.iter().enumerate() {
                if g > 0 || i > 0 {
                    chunk[n] = b',';
                    n += 1;
                }
                n += write_u32(&mut chunk[n..n + 10], id);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        self.buf.push(b']');
        self.comma = true;
    }

    pub(super) fn value<'v>(&mut self, v: impl Into<ValueRef<'v>>) -> Result<()> {
        match v.into() {
            ValueRef::Json(v) => serde_json::to_writer(&mut self.buf, v).map_err(|e| {
                Error::message(format!(
                    "a sampling argument could not be written as JSON: {e}"
                ))
            })?,
            ValueRef::Int(n) => self
                .buf
                .extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        }
        self.comma = true;
        Ok(())
    }

    pub(super) fn map(&mut self, map: &Map<String, Value>) -> Result<()> {
        serde_json::to_writer(&mut self.buf, map).map_err(|e| {
            Error::message(format!(
                "chat_template_kwargs could not be written as JSON: {e}"
            ))
        })?;
        self.comma = true;
        Ok(())
    }
}

/// "00" to "99": the two digits of every number below 100.
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Writes `v` in decimal at the start of `out` (10 bytes, the most a `u32` takes); its length.
fn write_u32(out: &mut [u8], mut v: u32) -> usize {
    let len = match v {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1_000..=9_999 => 4,
        10_000..=99_999 => 5,
        100_000..=999_999 => 6,
        1_000_000..=9_999_999 => 7,
        10_000_000..=99_999_999 => 8,
        100_000_000..=999_999_999 => 9,
        _ => 10,
    };
    let mut end = len;
    while v >= 100 {
        let pair = (v % 100) as usize * 2;
        v /= 100;
        out[end - 2..end].copy_from_slice(&PAIRS[pair..pair + 2]);
        end -= 2;
    }
    if v >= 10 {
        let pair = v as usize * 2;
        out[end - 2..end].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        out[end - 1] = b'0' + v as u8;
    }
    len
}

/// A value [`Writer::value`] writes.
pub(super) enum ValueRef<'v> {
    Json(&'v Value),
    Int(u32),
}

impl<'v> From<&'v Value> for ValueRef<'v> {
    fn from(v: &'v Value) -> Self {
        ValueRef::Json(v)
    }
}

impl<'v> From<MaxTokens<'v>> for ValueRef<'v> {
    fn from(m: MaxTokens<'v>) -> Self {
        match m {
            MaxTokens::Option(n) => ValueRef::Int(n),
            MaxTokens::Caller(v) => ValueRef::Json(v),
        }
    }
}

/// Appends `s` as a JSON string: `"`, `\` and control characters escaped, everything else as is.
pub(super) fn write_json_str(buf: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    buf.reserve(bytes.len() + 2);
    buf.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ],
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        buf.extend_from_slice(escape);
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_like_serde_json() {
        for s in [
            "",
            "plain",
            "q\"b\\s",
            "\n\r\t\u{8}\u{c}\u{1}\u{1f}",
            "é😀\u{2028}",
        ] {
            let mut buf = Vec::new();
            write_json_str(&mut buf, s);
            let back: String = serde_json::from_slice(&buf).unwrap_or_default();
            assert_eq!(back, s);
            assert_eq!(buf, serde_json::to_vec(s).unwrap_or_default());
        }
    }

    #[test]
    fn ids_are_written_in_decimal() {
        let mut w = Writer::with_capacity(0);
        w.ids(&[0, 7, u32::MAX]);
        assert_eq!(w.buf, b"[0,7,4294967295]");
        let mut w = Writer::with_capacity(0);
        w.ids(&[]);
        assert_eq!(w.buf, b"[]");
        // every digit count, both sides of every power of ten, and runs across the 64-id groups
        let mut ids: Vec<u32> = vec![u32::MAX - 1];
        let mut p = 1u64;
        while p <= u64::from(u32::MAX) {
            for v in [p - 1, p, p + 1, p * 5] {
                if let Ok(v) = u32::try_from(v) {
                    ids.push(v);
                }
            }
            p *= 10;
        }
        let mut x = 12345u32;
        for _ in 0..1000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            ids.push(x >> (x % 32));
        }
        for len in [0, 1, 63, 64, 65, 128, 129, ids.len()] {
            let mut w = Writer::with_capacity(0);
            w.ids(&ids[..len]);
            let want = serde_json::to_vec(&ids[..len]).unwrap_or_default();
            assert_eq!(
                String::from_utf8_lossy(&w.buf),
                String::from_utf8_lossy(&want)
            );
        }
    }

    #[test]
    fn extra_body_merges_over_top_level_and_nulls_drop() {
        let sampling = serde_json::json!({
            "temperature": 1.0, "seed": null, "top_p": 0.5,
            "extra_body": {"top_p": 0.9, "min_p": null, "cache_salt": "s"}
        });
        let map = sampling.as_object().cloned().unwrap_or_default();
        let args = caller_args(&map).unwrap_or_default();
        let keys: Vec<_> = args.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["temperature", "top_p", "cache_salt"]);
        assert_eq!(get(&args, "top_p"), Some(&serde_json::json!(0.9)));
    }
}
