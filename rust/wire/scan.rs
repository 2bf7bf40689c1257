//! A JSON scanner for the hot fields of response bodies: integer arrays of ids straight into a
//! `Vec<u32>`, logprobs into a `Vec<f64>`, unescaped strings borrowed, every other value
//! skipped and validated at memory speed (memchr over strings), nesting depth tracked in the
//! same pass.
//!
//! It is a fast path, never the judge: it accepts a strict subset of what serde_json accepts
//! (and reads it to the same values), and gives up with [`Bail`] on anything else: a syntax
//! error, a value of an unexpected type, a duplicate key, an escaped key or tag, a body deeper
//! than the limit. The caller then runs the serde reference parser on the whole body, which
//! either parses what the scanner declined (the same result, only slower) or produces the error
//! with its JSON path and advice ([`Cx::read`](super::parse::Cx::read)). So every error a body
//! gets, and every value a body parses to, is the reference parser's by construction; the scanner
//! only has to be right about the bodies it accepts, and strict where in doubt.
//!
//! Strictness, relative to serde_json (`from_slice`): every string is checked for valid UTF-8,
//! control characters and valid escapes (with surrogate pairs), every number against the JSON
//! grammar (a float that overflows `f64` bails, as serde_json refuses it), only `' '`, `\t`,
//! `\n`, `\r` count as whitespace, and nothing but whitespace may follow the top-level value.

use std::borrow::Cow;

use serde::Deserialize;

use super::parse::{LogprobContent, Logprobs, LogprobsObject, TopLogprobs};

/// The scanner gave up: the reference parser decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bail;

/// A scanner result.
pub(crate) type S<T> = std::result::Result<T, Bail>;

/// A cursor over one body with the current nesting depth.
pub(crate) struct Scanner<'b> {
    b: &'b [u8],
    i: usize,
    depth: usize,
    limit: usize,
}

/// Exact powers of ten for the fast float path (10^22 is the largest exactly representable).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

impl<'b> Scanner<'b> {
    /// A scanner over `b` refusing arrays/objects nested deeper than `limit` (the top level is 1).
    pub(crate) fn new(b: &'b [u8], limit: usize) -> Self {
        Self {
            b,
            i: 0,
            depth: 0,
            limit,
        }
    }

    /// Runs `f` on the top-level value and checks that only whitespace follows it.
    pub(crate) fn document<T>(&mut self, f: impl FnOnce(&mut Self) -> S<T>) -> S<T> {
        let out = f(self)?;
        self.ws();
        if self.i == self.b.len() {
            Ok(out)
        } else {
            Err(Bail)
        }
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\n' | b'\t' | b'\r') {
                break;
            }
            self.i += 1;
        }
    }

    /// The next non-whitespace byte, not consumed.
    #[inline]
    pub(crate) fn peek(&mut self) -> S<u8> {
        self.ws();
        self.b.get(self.i).copied().ok_or(Bail)
    }

    #[inline]
    fn eat(&mut self, c: u8) -> S<()> {
        if self.peek()? == c {
            self.i += 1;
            Ok(())
        } else {
            Err(Bail)
        }
    }

    #[inline]
    fn enter(&mut self) -> S<()> {
        self.depth += 1;
        if self.depth > self.limit {
            Err(Bail)
        } else {
            Ok(())
        }
    }

    #[inline]
    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Consumes `null` if it is next; `Ok(false)` (nothing consumed) for any other value.
    #[inline]
    pub(crate) fn null(&mut self) -> S<bool> {
        if self.peek()? != b'n' {
            return Ok(false);
        }
        if self.b.get(self.i..self.i + 4) == Some(b"null") {
            self.i += 4;
            Ok(true)
        } else {
            Err(Bail)
        }
    }

    /// Reads an object, calling `f(self, key)` for each member with the cursor on its value;
    /// `f` must consume the value. A key with escapes bails (the reference parser unescapes it).
    pub(crate) fn object(&mut self, mut f: impl FnMut(&mut Self, &'b [u8]) -> S<()>) -> S<()> {
        self.eat(b'{')?;
        self.enter()?;
        if self.peek()? == b'}' {
            self.i += 1;
            self.leave();
            return Ok(());
        }
        loop {
            self.eat(b'"')?;
            let key = self.plain_str_body()?;
            self.eat(b':')?;
            f(self, key)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    self.leave();
                    return Ok(());
                }
                _ => return Err(Bail),
            }
        }
    }

    /// Reads an array, calling `f(self, index)` with the cursor on each element; `f` must
    /// consume it.
    pub(crate) fn array(&mut self, mut f: impl FnMut(&mut Self, usize) -> S<()>) -> S<()> {
        self.eat(b'[')?;
        self.enter()?;
        if self.peek()? == b']' {
            self.i += 1;
            self.leave();
            return Ok(());
        }
        let mut n = 0;
        loop {
            f(self, n)?;
            n += 1;
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    self.leave();
                    return Ok(());
                }
                _ => return Err(Bail),
            }
        }
    }

    /// Skips one value of any type, validating it.
    pub(crate) fn skip(&mut self) -> S<()> {
        match self.peek()? {
            b'"' => {
                self.i += 1;
                self.skip_str_body()
            }
            b'{' => self.object(|s, _| s.skip()),
            b'[' => self.skip_array(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number().map(|_| ()),
            _ => Err(Bail),
        }
    }

    /// Skips an array; runs of compact positive integers (`bytes` lists, ids) without a call
    /// per element.
    fn skip_array(&mut self) -> S<()> {
        self.eat(b'[')?;
        self.enter()?;
        if self.peek()? == b']' {
            self.i += 1;
            self.leave();
            return Ok(());
        }
        let b = self.b;
        loop {
            let mut i = self.i;
            if matches!(b.get(i), Some(b'1'..=b'9')) {
                i += 1;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            if i > self.i && matches!(b.get(i), Some(b',' | b']')) {
                self.i = i;
            } else {
                self.skip()?;
            }
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    self.leave();
                    return Ok(());
                }
                _ => return Err(Bail),
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> S<()> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Bail)
        }
    }

    /// Skips one value and returns its bytes (for a field the reference parser reads).
    pub(crate) fn raw(&mut self) -> S<&'b [u8]> {
        self.ws();
        let start = self.i;
        self.skip()?;
        Ok(&self.b[start..self.i])
    }

    /// Reads one value with serde (a field that is not hot: a message, `usage`, a raw value).
    /// The value was validated and depth-checked by the skip; serde reads only its bytes.
    pub(crate) fn de<T: Deserialize<'b>>(&mut self) -> S<T> {
        let raw = self.raw()?;
        serde_json::from_slice(raw).map_err(|_| Bail)
    }

    /// The rest of a string whose opening quote was consumed, borrowed; bails on escapes.
    fn plain_str_body(&mut self) -> S<&'b [u8]> {
        let start = self.i;
        let k = self.text_end(start)?;
        if self.b[k] == b'\\' {
            return Err(Bail);
        }
        self.i = k + 1;
        Ok(&self.b[start..k])
    }

    /// The index of the first `"` or `\\` at or after `from`, the text before it checked (valid
    /// UTF-8, no control character). Short texts (keys, tokens) are walked byte by byte, long
    /// ones (messages, base64 blobs) jumped through with memchr.
    #[inline]
    fn text_end(&self, from: usize) -> S<usize> {
        let b = self.b;
        // eight bytes at a time while they are plain ASCII text (SWAR: the lowest flagged byte
        // of each test below is exact; borrows only flag bytes above it)
        let mut j = from;
        while let Some(chunk) = b.get(j..j + 8) {
            let Ok(chunk) = <[u8; 8]>::try_from(chunk) else {
                break;
            };
            let x = u64::from_le_bytes(chunk);
            let flags = zero_byte(x ^ (LO * u64::from(b'"')))
                | zero_byte(x ^ (LO * u64::from(b'\\')))
                | (x.wrapping_sub(LO * 0x20) & !x & HI)
                | (x & HI);
            if flags == 0 {
                j += 8;
                if j - from >= 64 {
                    break;
                }
                continue;
            }
            let k = j + (flags.trailing_zeros() / 8) as usize;
            match b[k] {
                b'"' | b'\\' => return Ok(k),
                c if c < 0x20 => return Err(Bail),
                // non-ASCII text: checked as UTF-8 below
                _ => break,
            }
        }
        if j - from >= 64 {
            let k = j + memchr::memchr2(b'"', b'\\', &b[j..]).ok_or(Bail)?;
            check_text(&b[from..k])?;
            return Ok(k);
        }
        let short = b.len().min(from + 32);
        let mut ascii = true;
        let mut j = from;
        while j < short {
            let c = b[j];
            if c == b'"' || c == b'\\' {
                if !ascii {
                    std::str::from_utf8(&b[from..j]).map_err(|_| Bail)?;
                }
                return Ok(j);
            }
            if c < 0x20 {
                return Err(Bail);
            }
            ascii &= c < 0x80;
            j += 1;
        }
        let k = j + memchr::memchr2(b'"', b'\\', &b[j..]).ok_or(Bail)?;
        check_text(&b[from..k])?;
        Ok(k)
    }

    /// Skips the rest of a string whose opening quote was consumed, validating it.
    fn skip_str_body(&mut self) -> S<()> {
        loop {
            let k = self.text_end(self.i)?;
            self.i = k + 1;
            if self.b[k] == b'"' {
                return Ok(());
            }
            self.escape()?;
        }
    }

    /// Validates one escape after its backslash (consumed); a `\u` high surrogate must be
    /// followed by a low one, and a lone low surrogate bails.
    fn escape(&mut self) -> S<()> {
        let c = *self.b.get(self.i).ok_or(Bail)?;
        self.i += 1;
        match c {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(()),
            b'u' => {
                let u = self.hex4()?;
                if (0xDC00..0xE000).contains(&u) {
                    return Err(Bail);
                }
                if (0xD800..0xDC00).contains(&u) {
                    if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                        return Err(Bail);
                    }
                    self.i += 2;
                    let low = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(Bail);
                    }
                }
                Ok(())
            }
            _ => Err(Bail),
        }
    }

    fn hex4(&mut self) -> S<u32> {
        let digits = self.b.get(self.i..self.i + 4).ok_or(Bail)?;
        let mut v = 0u32;
        for &d in digits {
            let x = (d as char).to_digit(16).ok_or(Bail)?;
            v = v * 16 + x;
        }
        self.i += 4;
        Ok(v)
    }

    /// Scans one number against the JSON grammar; returns its bytes and whether it is a plain
    /// integer (no fraction, no exponent).
    fn number(&mut self) -> S<(&'b [u8], bool)> {
        self.ws();
        let b = self.b;
        let start = self.i;
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return Err(Bail),
        }
        let mut integer = true;
        if b.get(i) == Some(&b'.') {
            integer = false;
            i += 1;
            let d = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == d {
                return Err(Bail);
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            integer = false;
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let d = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == d {
                return Err(Bail);
            }
        }
        // serde_json reads `01` as an error, so a digit right after a leading zero bails here too
        if b.get(i).is_some_and(u8::is_ascii_digit) {
            return Err(Bail);
        }
        self.i = i;
        Ok((&b[start..i], integer))
    }

    /// One token id: a plain integer in `0..=u32::MAX` (anything else bails: the reference
    /// parser names the error).
    #[inline]
    pub(crate) fn u32(&mut self) -> S<u32> {
        self.ws();
        let b = self.b;
        let mut i = self.i;
        let first = *b.get(i).ok_or(Bail)?;
        if !first.is_ascii_digit() {
            return Err(Bail);
        }
        let mut v = u64::from(first - b'0');
        i += 1;
        if first != b'0' {
            while let Some(&d) = b.get(i) {
                if !d.is_ascii_digit() {
                    break;
                }
                v = v * 10 + u64::from(d - b'0');
                if v > u64::from(u32::MAX) {
                    return Err(Bail);
                }
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'.' | b'e' | b'E' | b'0'..=b'9')) {
            return Err(Bail);
        }
        self.i = i;
        u32::try_from(v).map_err(|_| Bail)
    }

    /// A token id or `null`.
    pub(crate) fn opt_u32(&mut self) -> S<Option<u32>> {
        if self.null()? {
            Ok(None)
        } else {
            self.u32().map(Some)
        }
    }

    /// A number as `f64`, rounded as serde_json (with `float_roundtrip`) and `str::parse` do:
    /// correctly. A value beyond `f64` bails (serde_json refuses it).
    ///
    /// One pass reads the grammar and the decimal; Clinger's fast path (a mantissa below 2^53,
    /// exact in `f64`, and a decimal exponent within +-22, an exact power of ten) is one
    /// correctly rounded multiplication or division; any other number is parsed by the
    /// standard library.
    #[inline]
    pub(crate) fn f64(&mut self) -> S<f64> {
        self.ws();
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let neg = b.get(i) == Some(&b'-');
        if neg {
            i += 1;
        }
        // Every digit goes into `mantissa` while it has room (19 digits); the value is exact
        // when nothing was dropped and the mantissa fits a double's 53 bits (below).
        let mut mantissa: u64 = 0;
        let mut digits = 0u32;
        let mut exp: i64 = 0;
        let mut exact = true;
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while let Some(&d) = b.get(i) {
                    if !d.is_ascii_digit() {
                        break;
                    }
                    if digits < 19 {
                        mantissa = mantissa * 10 + u64::from(d - b'0');
                        digits += 1;
                    } else {
                        exact = false;
                    }
                    i += 1;
                }
            }
            _ => return Err(Bail),
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            let first = i;
            while let Some(&d) = b.get(i) {
                if !d.is_ascii_digit() {
                    break;
                }
                if digits < 19 {
                    mantissa = mantissa * 10 + u64::from(d - b'0');
                    digits += 1;
                    exp -= 1;
                } else {
                    exact = false;
                }
                i += 1;
            }
            if i == first {
                return Err(Bail);
            }
        }
        exact &= mantissa < 1 << 53;
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            let negative_exp = match b.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let first = i;
            let mut e: i64 = 0;
            while let Some(&d) = b.get(i) {
                if !d.is_ascii_digit() {
                    break;
                }
                e = (e * 10 + i64::from(d - b'0')).min(1 << 20);
                i += 1;
            }
            if i == first {
                return Err(Bail);
            }
            exp += if negative_exp { -e } else { e };
        }
        // serde_json reads `01` as an error, so a digit right after a leading zero bails here too
        if b.get(i).is_some_and(u8::is_ascii_digit) {
            return Err(Bail);
        }
        self.i = i;
        let fast = usize::try_from(exp.unsigned_abs())
            .ok()
            .and_then(|e| POW10.get(e))
            .filter(|_| exact);
        let v = match fast {
            Some(&pow) => {
                let m = mantissa as f64;
                let v = if exp >= 0 { m * pow } else { m / pow };
                if neg {
                    -v
                } else {
                    v
                }
            }
            None => slow_f64(&b[start..i])?,
        };
        if v.is_finite() {
            Ok(v)
        } else {
            Err(Bail)
        }
    }

    /// A number or `null` (`None`).
    pub(crate) fn opt_f64(&mut self) -> S<Option<f64>> {
        if self.null()? {
            Ok(None)
        } else {
            self.f64().map(Some)
        }
    }

    /// An array of token ids. The loop reads compact JSON (`[1,2,3]`) without a call per id;
    /// whitespace anywhere takes the general path ([`Scanner::u32`], [`Scanner::peek`]).
    pub(crate) fn ids(&mut self) -> S<Vec<u32>> {
        self.eat(b'[')?;
        self.enter()?;
        let mut ids = Vec::new();
        if self.peek()? == b']' {
            self.i += 1;
            self.leave();
            return Ok(ids);
        }
        let b = self.b;
        loop {
            // one id: a run of digits right here, else the general reader
            let mut i = self.i;
            let id = match b.get(i) {
                Some(b'1'..=b'9') => {
                    let mut v = 0u64;
                    if let Some((head, n)) = eight_digits(b, i) {
                        v = head;
                        i += n;
                    }
                    while let Some(&d) = b.get(i) {
                        if !d.is_ascii_digit() {
                            break;
                        }
                        v = v * 10 + u64::from(d - b'0');
                        if v > u64::from(u32::MAX) {
                            return Err(Bail);
                        }
                        i += 1;
                    }
                    if matches!(b.get(i), Some(b'.' | b'e' | b'E')) {
                        return Err(Bail);
                    }
                    self.i = i;
                    u32::try_from(v).map_err(|_| Bail)?
                }
                _ => self.u32()?,
            };
            ids.push(id);
            match b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    self.leave();
                    return Ok(ids);
                }
                _ => match self.peek()? {
                    b',' => self.i += 1,
                    b']' => {
                        self.i += 1;
                        self.leave();
                        return Ok(ids);
                    }
                    _ => return Err(Bail),
                },
            }
        }
    }

    /// An array of token ids or `null`.
    pub(crate) fn opt_ids(&mut self) -> S<Option<Vec<u32>>> {
        if self.null()? {
            Ok(None)
        } else {
            self.ids().map(Some)
        }
    }

    /// A list of logprobs, numbers or `null` (Dynamo `engine_data.completion_logprobs`).
    pub(crate) fn float_list(&mut self) -> S<Logprobs> {
        let mut out = Logprobs::default();
        self.array(|s, _| {
            let v = s.opt_f64()?;
            out.push(v);
            Ok(())
        })?;
        Ok(out)
    }

    /// `choices[0].logprobs`: `null`, or an object whose `content` is `null` or a list of
    /// entries (see [`Scanner::logprob_content`]).
    pub(crate) fn logprobs_object<const TOKENS: bool>(
        &mut self,
    ) -> S<Option<LogprobsObject<TOKENS>>> {
        if self.null()? {
            return Ok(None);
        }
        let mut seen = 0u8;
        let mut content = None;
        self.object(|s, key| {
            if key != b"content" {
                return s.skip();
            }
            once(&mut seen, 1)?;
            if !s.null()? {
                content = Some(LogprobContent(s.logprob_content::<TOKENS>()?));
            }
            Ok(())
        })?;
        Ok(Some(LogprobsObject(content)))
    }

    /// `logprobs.content`: a list of entries `{logprob, token?, token_id?, top_logprobs?, ...}`
    /// or `null`s, read as the reference parser's `LogprobContent<TOKENS>` reads them.
    pub(crate) fn logprob_content<const TOKENS: bool>(&mut self) -> S<Logprobs> {
        let mut out = Logprobs::new();
        self.array(|s, index| s.logprob_entry::<TOKENS>(&mut out, index))?;
        Ok(out)
    }

    fn logprob_entry<const TOKENS: bool>(&mut self, out: &mut Logprobs, index: usize) -> S<()> {
        if self.null()? {
            out.push(None);
            out.end_top();
            if TOKENS {
                out.tokens.push(None);
                if out.first_bad_token.is_none() {
                    out.first_bad_token = Some((index, "null entry".to_owned()));
                }
            }
            return Ok(());
        }
        let mut seen = 0u8;
        let mut logprob: Option<Option<f64>> = None;
        let mut tagged: Option<Option<u32>> = None;
        let mut numbered: Option<u32> = None;
        let mut bad: Option<String> = None;
        self.object(|s, key| match key {
            b"logprob" => {
                once(&mut seen, 1)?;
                logprob = Some(s.opt_f64()?);
                Ok(())
            }
            b"token" if TOKENS => {
                once(&mut seen, 2)?;
                let (id, text) = s.token_tag()?;
                tagged = Some(id);
                bad = match (id, text) {
                    (Some(_), _) => None,
                    (None, Some(text)) => Some(format!("{:?}", super::parse::clip(&text, 80))),
                    (None, None) => Some("null".to_owned()),
                };
                Ok(())
            }
            b"token_id" if TOKENS => {
                once(&mut seen, 4)?;
                numbered = s.opt_u32()?;
                Ok(())
            }
            b"top_logprobs" => {
                once(&mut seen, 8)?;
                s.top_logprobs(out)
            }
            _ => s.skip(),
        })?;
        // the reference parser's error: "logprob entry has no \"logprob\" key"
        let logprob = logprob.ok_or(Bail)?;
        out.push(logprob);
        out.end_top();
        if TOKENS {
            let id = match (tagged, numbered) {
                (Some(Some(a)), Some(b)) if a != b => {
                    bad = Some(format!(
                        "\"token\": \"token_id:{a}\" with \"token_id\": {b}"
                    ));
                    None
                }
                (_, Some(b)) => Some(b),
                (Some(a), None) => a,
                (None, None) => {
                    bad = Some("neither a \"token_id\" nor a \"token\" key".to_owned());
                    None
                }
            };
            out.tokens.push(id);
            if id.is_none() && out.first_bad_token.is_none() {
                let found = bad.unwrap_or_else(|| "no \"token\" key".to_owned());
                out.first_bad_token = Some((index, found));
            }
        }
        Ok(())
    }

    /// A `token` value: `"token_id:<id>"` gives the id; another string gives itself (for the
    /// error message); `null` gives neither. Escapes are decoded.
    fn token_tag(&mut self) -> S<(Option<u32>, Option<Cow<'b, str>>)> {
        if self.null()? {
            return Ok((None, None));
        }
        let s = self.string()?;
        let id = s
            .strip_prefix("token_id:")
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u32>().ok());
        Ok((id, Some(s)))
    }

    /// A string, borrowed when it has no escapes, else unescaped into an owned one.
    pub(crate) fn string(&mut self) -> S<Cow<'b, str>> {
        self.eat(b'"')?;
        let start = self.i;
        let k = self.text_end(start)?;
        let text = std::str::from_utf8(&self.b[start..k]).map_err(|_| Bail)?;
        if self.b[k] == b'"' {
            self.i = k + 1;
            return Ok(Cow::Borrowed(text));
        }
        let mut out = String::from(text);
        self.i = k;
        loop {
            // at a backslash or the closing quote
            let c = *self.b.get(self.i).ok_or(Bail)?;
            self.i += 1;
            if c == b'"' {
                return Ok(Cow::Owned(out));
            }
            let e = *self.b.get(self.i).ok_or(Bail)?;
            self.i += 1;
            out.push(match e {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let u = self.hex4()?;
                    let code = if (0xD800..0xDC00).contains(&u) {
                        if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                            return Err(Bail);
                        }
                        self.i += 2;
                        let low = self.hex4()?;
                        if !(0xDC00..0xE000).contains(&low) {
                            return Err(Bail);
                        }
                        0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        u
                    };
                    // a lone low surrogate has no char: declined
                    char::from_u32(code).ok_or(Bail)?
                }
                _ => return Err(Bail),
            });
            let k = self.text_end(self.i)?;
            out.push_str(std::str::from_utf8(&self.b[self.i..k]).map_err(|_| Bail)?);
            self.i = k;
        }
    }

    /// One entry's `top_logprobs` (a list or `null`), appended to `out.top`.
    fn top_logprobs(&mut self, out: &mut Logprobs) -> S<()> {
        if self.null()? {
            return Ok(());
        }
        self.array(|s, _| {
            let mut seen = 0u8;
            let mut id: Option<u32> = None;
            let mut tagged: Option<u32> = None;
            let mut logprob: Option<f64> = None;
            s.object(|s, key| match key {
                b"logprob" => {
                    once(&mut seen, 1)?;
                    logprob = s.opt_f64()?;
                    Ok(())
                }
                b"token_id" => {
                    once(&mut seen, 2)?;
                    id = s.opt_u32()?;
                    Ok(())
                }
                b"token" => {
                    once(&mut seen, 4)?;
                    tagged = s.token_tag()?.0;
                    Ok(())
                }
                _ => s.skip(),
            })?;
            out.any_top = true;
            match (id.or(tagged), &mut out.top) {
                (Some(id), Some(top)) => {
                    top.ids.push(id);
                    top.logprobs.push(logprob.unwrap_or(f64::NAN));
                }
                (None, _) => out.top = None,
                (Some(_), None) => {}
            }
            Ok(())
        })
    }

    /// `choices`: `null` or a list whose first element is read by `first` (which must find an
    /// object) and the rest skipped. `Ok(None)` for `null`, `Ok(Some(None))` for `[]`.
    pub(crate) fn first_choice<T>(
        &mut self,
        first: impl FnOnce(&mut Self) -> S<T>,
    ) -> S<Option<Option<T>>> {
        if self.null()? {
            return Ok(None);
        }
        let mut first = Some(first);
        let mut got = None;
        self.array(|s, i| {
            if i == 0 {
                if s.peek()? != b'{' {
                    return Err(Bail);
                }
                let f = first.take().ok_or(Bail)?;
                got = Some(f(s)?);
                Ok(())
            } else {
                s.skip()
            }
        })?;
        Ok(Some(got))
    }

    /// SGLang `[logprob, token_id, ...]`: the logprob (a number or `null`) and the id.
    pub(crate) fn sglang_entry(&mut self) -> S<(Option<f64>, u32)> {
        let mut lp = None;
        let mut id = None;
        self.array(|s, i| {
            match i {
                0 => lp = Some(s.opt_f64()?),
                1 => id = Some(s.u32()?),
                _ => s.skip()?,
            }
            Ok(())
        })?;
        match (lp, id) {
            (Some(lp), Some(id)) => Ok((lp, id)),
            _ => Err(Bail),
        }
    }

    /// SGLang `output_top_logprobs`: per token `null` or a list of entries, flat.
    pub(crate) fn sglang_top(&mut self) -> S<TopLogprobs> {
        let mut out = TopLogprobs {
            offsets: vec![0],
            ..TopLogprobs::default()
        };
        self.array(|s, _| {
            if !s.null()? {
                s.array(|s, _| {
                    let (lp, id) = s.sglang_entry()?;
                    out.ids.push(id);
                    out.logprobs.push(lp.unwrap_or(f64::NAN));
                    Ok(())
                })?;
            }
            let end = u32::try_from(out.ids.len()).map_err(|_| Bail)?;
            out.offsets.push(end);
            Ok(())
        })?;
        Ok(out)
    }
}

/// Marks `bit` as seen in `seen`; a key seen twice bails (the reference parser decides what a
/// duplicate means: an error for struct fields, last-wins for some maps).
#[inline]
pub(crate) fn once<M>(seen: &mut M, bit: M) -> S<()>
where
    M: Copy + std::ops::BitAnd<Output = M> + std::ops::BitOrAssign + PartialEq + Default,
{
    if *seen & bit != M::default() {
        return Err(Bail);
    }
    *seen |= bit;
    Ok(())
}

/// The value and count of the decimal digits (at most 8) at `b[i..]`, read eight bytes at once
/// (SWAR); `None` when fewer than eight bytes are left. The first non-digit byte is found
/// exactly: bytes below it are digits, whose add and subtract never carry.
#[inline]
fn eight_digits(b: &[u8], i: usize) -> Option<(u64, usize)> {
    let chunk = <[u8; 8]>::try_from(b.get(i..i + 8)?).ok()?;
    let x = u64::from_le_bytes(chunk);
    let sub = x.wrapping_sub(LO * u64::from(b'0'));
    let non_digit = (x.wrapping_add(LO * 0x46) | sub) & HI;
    let n = (non_digit.trailing_zeros() / 8) as usize;
    if n == 0 {
        return Some((0, 0));
    }
    // the digits to the top bytes (leading zeros below), then pairs, quads, the eight combined
    let mut v = sub << (8 * (8 - n));
    v = (v & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(2561) >> 8;
    v = (v & 0x00FF_00FF_00FF_00FF).wrapping_mul(6_553_601) >> 16;
    v = (v & 0x0000_FFFF_0000_FFFF).wrapping_mul(42_949_672_960_001) >> 32;
    Some((v, n))
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The high bit of each zero byte of `x` is set (and possibly of bytes above the first one).
#[inline]
fn zero_byte(x: u64) -> u64 {
    x.wrapping_sub(LO) & !x & HI
}

/// Checks the text between escapes: valid UTF-8, no control characters.
#[inline]
fn check_text(s: &[u8]) -> S<()> {
    if s.iter().any(|&c| c < 0x20) {
        return Err(Bail);
    }
    if s.is_ascii() {
        return Ok(());
    }
    std::str::from_utf8(s).map(|_| ()).map_err(|_| Bail)
}

/// Any JSON number, correctly rounded by the standard library.
#[cold]
fn slow_f64(text: &[u8]) -> S<f64> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
        .ok_or(Bail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(text: &str) -> S<f64> {
        let mut s = Scanner::new(text.as_bytes(), 64);
        s.document(Scanner::f64)
    }

    #[test]
    fn floats_match_the_standard_library_bit_for_bit() {
        for t in [
            "0",
            "-0",
            "1",
            "-1.5",
            "0.1",
            "-0.123456",
            "1e2",
            "1E-2",
            "-1.1920928955078125e-07",
            "123456789012345",
            "1234567890123456789",
            "9007199254740993",
            "9007199254740991",
            "9007199254740992",
            "0.9007199254740991",
            "-900719925474099.1e-7",
            "12345678901234567890",
            "0.12345678901234567890123",
            "0.30000000000000004",
            "1e22",
            "1e23",
            "-9999.0",
            "2.2250738585072014e-308",
            "5e-324",
            "1.7976931348623157e308",
        ] {
            let want: f64 = t.parse().unwrap_or(f64::NAN);
            let got = f(t).unwrap_or(f64::NAN);
            assert_eq!(got.to_bits(), want.to_bits(), "{t}");
        }
        // shortest round-trip forms (what Python and serde_json write) and long forms
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if !v.is_finite() {
                continue;
            }
            for t in [
                format!("{v}"),
                format!("{v:e}"),
                format!("{:.3}", v / 1e300),
            ] {
                let want: f64 = t.parse().unwrap_or(f64::NAN);
                assert_eq!(f(&t).map(f64::to_bits), Ok(want.to_bits()), "{t}");
            }
            let lp = -((x >> 11) as f64) / (1u64 << 50) as f64;
            let t = format!("{lp}");
            assert_eq!(f(&t).map(f64::to_bits), Ok(lp.to_bits()), "{t}");
        }
        for t in [
            "0.000000000000000000001",
            "123456789012345678",
            "0e5000",
            "-0.0e-5",
        ] {
            let want: f64 = t.parse().unwrap_or(f64::NAN);
            assert_eq!(f(t).map(f64::to_bits), Ok(want.to_bits()), "{t}");
        }
        for bad in [
            "1e400", "-", "01", "1.", ".5", "1e", "+1", "NaN", "1.0e+", "--1",
        ] {
            assert_eq!(f(bad), Err(Bail), "{bad}");
        }
    }

    #[test]
    fn strings_are_borrowed_or_unescaped() {
        let st = |t: &str| {
            Scanner::new(t.as_bytes(), 64)
                .document(Scanner::string)
                .map(|s| (matches!(s, Cow::Borrowed(_)), s.into_owned()))
        };
        assert_eq!(st(r#""token_id:7""#), Ok((true, "token_id:7".into())));
        assert_eq!(
            st(r#""a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00z""#),
            Ok((false, "a\"\\/\u{8}\u{c}\n\r\t\u{e9}\u{1f600}z".into()))
        );
        let long = format!("\"{}\\n{}\"", "x".repeat(100), "é".repeat(50));
        assert_eq!(
            st(&long),
            Ok((false, format!("{}\n{}", "x".repeat(100), "é".repeat(50))))
        );
        for bad in [
            r#""\ud83d""#,
            r#""\ude00x""#,
            r#""\q""#,
            "\"a\u{1}\"",
            "\"abc",
        ] {
            assert_eq!(st(bad), Err(Bail), "{bad}");
        }
    }

    #[test]
    fn eight_digits_reads_runs_of_every_length() {
        for text in [
            "12345678",
            "1234567,",
            "1,",
            "7]xxxxxxx",
            "99999999",
            "10203040",
            "0x",
        ] {
            let padded = format!("{text}........");
            let want = text.bytes().take_while(u8::is_ascii_digit).count();
            let value: u64 = text[..want].parse().unwrap_or(0);
            assert_eq!(
                eight_digits(padded.as_bytes(), 0),
                Some((value, want)),
                "{text}"
            );
        }
        assert_eq!(eight_digits(b"1234567", 0), None);
        let mut x: u64 = 88_172_645_463_325_252;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = (x % u64::from(u32::MAX)) >> (x % 32);
            let body = format!("[{id},{id}]");
            let ids = Scanner::new(body.as_bytes(), 64).document(Scanner::ids);
            let id = u32::try_from(id).unwrap_or_default();
            assert_eq!(ids, Ok(vec![id, id]), "{body}");
        }
    }

    #[test]
    fn ids_take_plain_integers_in_u32_only() {
        let ids = |t: &str| Scanner::new(t.as_bytes(), 64).document(Scanner::ids);
        assert_eq!(ids(" [ 0 ,\n4294967295\t] "), Ok(vec![0, u32::MAX]));
        assert_eq!(ids("[]"), Ok(vec![]));
        for bad in [
            "[4294967296]",
            "[-1]",
            "[-0]",
            "[1.0]",
            "[1e2]",
            "[01]",
            "[\"1\"]",
            "[null]",
            "[1,]",
            "[1",
            "[1 2]",
            "[99999999999999999999]",
        ] {
            assert_eq!(ids(bad), Err(Bail), "{bad}");
        }
    }

    #[test]
    fn skip_validates_strings_and_tracks_depth() {
        let skip =
            |t: &str, limit: usize| Scanner::new(t.as_bytes(), limit).document(Scanner::skip);
        assert_eq!(
            skip(r#"{"a":"[[\"\\\u00e9\ud83d\ude00","b":[1,{"c":null}]}"#, 3),
            Ok(())
        );
        assert_eq!(skip("[[[]]]", 3), Ok(()));
        assert_eq!(skip("[[[[]]]]", 3), Err(Bail));
        for bad in [
            "\"a\u{1}\"",
            r#""\x""#,
            r#""\ud83d""#,
            r#""\ude00""#,
            r#""\u12""#,
            "\"abc",
            "{\"a\" 1}",
            "{\"a\":1,}",
            "[1,]",
            "tru",
            "nul",
            "{} x",
        ] {
            assert_eq!(skip(bad, 64), Err(Bail), "{bad}");
        }
        assert_eq!(
            Scanner::new(b"\"\xff\"", 64).document(Scanner::skip),
            Err(Bail)
        );
    }

    // -----------------------------------------------------------------------------------------
    // The scanner against the reference parser, on whole bodies
    // -----------------------------------------------------------------------------------------

    use crate::wire::parse::{parse_via, Via};
    use crate::wire::{ParseOptions, Wire};
    use crate::ErrorKind;

    const FIXTURES: [(&str, Wire); 14] = [
        ("wire_a3_vllm_chat.json", Wire::VllmChat),
        ("wire_b2_vllm_generate.json", Wire::VllmGenerate),
        ("wire_c2_dynamo.json", Wire::Dynamo),
        ("dynamo_1_6_1_observed.json", Wire::Dynamo),
        ("dynamo_1_6_1_mito_tools.json", Wire::Dynamo),
        ("dynamo_1_6_1_nvext_fields.json", Wire::Dynamo),
        ("dynamo_1_6_1_length.json", Wire::Dynamo),
        ("engine_vllm_chat_tool_call.json", Wire::VllmChat),
        ("engine_vllm_chat_tokens.json", Wire::VllmChat),
        ("engine_vllm_chat_text.json", Wire::VllmChat),
        ("engine_vllm_generate.json", Wire::VllmGenerate),
        ("engine_vllm_generate_length.json", Wire::VllmGenerate),
        ("sglang_0_5_23_stop.json", Wire::Sglang),
        (
            "sglang_0_5_23_length_skip_tokenizer_init.json",
            Wire::Sglang,
        ),
    ];

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/rust/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The outcome of `via` as text: the Debug form of the result (values bit-exact: `f64`'s
    /// Debug is its shortest round-trip form), or the error's kind and message.
    fn outcome(body: &[u8], wire: Wire, opts: &ParseOptions, via: Via) -> String {
        match parse_via(body, wire, opts, via) {
            Ok(p) => format!("{p:?}"),
            Err(e) => format!("{:?}: {}", e.kind(), e.text()),
        }
    }

    /// The scanner accepts `body` and reads it exactly as the reference parser does, and the
    /// public path agrees with both.
    fn same(body: &[u8], wire: Wire, opts: &ParseOptions) {
        let scanned = outcome(body, wire, opts, Via::Scanner);
        let reference = outcome(body, wire, opts, Via::Reference);
        assert!(
            !scanned.contains("declined"),
            "declined: {}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(scanned, reference, "{}", String::from_utf8_lossy(body));
        assert_eq!(outcome(body, wire, opts, Via::Both), reference);
    }

    /// Wherever the scanner accepts, it agrees with the reference parser; where it declines, the
    /// public path is the reference parser's.
    fn agree(body: &[u8], wire: Wire, opts: &ParseOptions) -> bool {
        let reference = outcome(body, wire, opts, Via::Reference);
        assert_eq!(outcome(body, wire, opts, Via::Both), reference);
        let scanned = outcome(body, wire, opts, Via::Scanner);
        let accepted = !scanned.contains("the scanner declined");
        if accepted {
            assert_eq!(scanned, reference, "{}", String::from_utf8_lossy(body));
        }
        accepted
    }

    #[test]
    fn every_fixture_is_scanned_as_the_reference_parser_reads_it() {
        let opts = ParseOptions::default();
        for (name, wire) in FIXTURES {
            same(&fixture(name), wire, &opts);
        }
    }

    #[test]
    fn every_truncation_of_every_fixture_agrees_and_never_panics() {
        let opts = ParseOptions::default();
        for (name, own) in FIXTURES {
            let body = fixture(name);
            let complete = body.trim_ascii_end().len();
            for len in 0..body.len() {
                let cut = &body[..len];
                agree(cut, own, &opts);
                if len < complete {
                    let e = parse_via(cut, own, &opts, Via::Both).err();
                    assert_eq!(
                        e.map(|e| e.kind()),
                        Some(ErrorKind::Parse),
                        "{name}[..{len}]"
                    );
                }
            }
        }
    }

    #[test]
    fn mutated_fixtures_agree_with_the_reference_parser() {
        // one-byte edits at every offset of a few fixtures, with bytes that matter to JSON
        let opts = ParseOptions::default();
        let mut accepted = 0;
        for (name, wire) in [FIXTURES[0], FIXTURES[1], FIXTURES[3], FIXTURES[12]] {
            let body = fixture(name);
            for at in 0..body.len() {
                for byte in [
                    b'"', b'\\', b'-', b'.', b'e', b'0', b'9', b'{', b']', b' ', b'n',
                ] {
                    let mut m = body.clone();
                    m[at] = byte;
                    accepted += usize::from(agree(&m, wire, &opts));
                }
                let mut m = body.clone();
                m.remove(at);
                accepted += usize::from(agree(&m, wire, &opts));
            }
        }
        assert!(accepted > 1000, "{accepted}");
    }

    #[test]
    fn whitespace_everywhere_and_escaped_keys() {
        let opts = ParseOptions::default();
        let pretty = " \n{ \"choices\" :\t[ { \"token_ids\" : [ 1 , 2 ] , \"logprobs\" : { \
                      \"content\" : [ { \"token_id\" : 1 , \"logprob\" : -0.5 } , null ] } } ] \
                      ,\r\n \"prompt_token_ids\" : [ 3 ] } \n";
        same(pretty.as_bytes(), Wire::VllmChat, &opts);
        same(pretty.as_bytes(), Wire::Dynamo, &opts);
        // an escaped key is declined by the scanner and unescaped by the reference parser
        let escaped = br#"{"choices":[{"token\u005fids":[1,2]}],"prompt_token_ids":[3]}"#;
        assert!(!agree(escaped, Wire::VllmChat, &opts));
        let p = parse_via(escaped, Wire::VllmChat, &opts, Via::Both);
        assert_eq!(p.map(|p| p.completion_ids).ok(), Some(vec![1, 2]));
        // escapes inside skipped values are validated, not unescaped
        same(
            br#"{"choices":[{"token_ids":[1],"x":"a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}]}"#,
            Wire::VllmChat,
            &opts,
        );
    }

    #[test]
    fn non_integer_ids_are_the_reference_errors() {
        let opts = ParseOptions::default();
        for id in [
            "1e2",
            "-0",
            "1.0",
            "-1",
            "4294967296",
            "01",
            "\"1\"",
            "true",
        ] {
            let body = format!(r#"{{"choices":[{{"token_ids":[5,{id}]}}]}}"#);
            assert!(!agree(body.as_bytes(), Wire::VllmChat, &opts), "{id}");
            let e = parse_via(body.as_bytes(), Wire::VllmChat, &opts, Via::Both).err();
            let text = e.map(|e| e.text().to_owned()).unwrap_or_default();
            assert!(text.contains("choices[0].token_ids[1]"), "{id}: {text}");
        }
    }

    #[test]
    fn duplicate_keys_are_the_reference_parser_s_call() {
        let opts = ParseOptions::default();
        // a struct field twice: serde's "duplicate field" error
        let body = br#"{"choices":[{"token_ids":[1],"token_ids":[2]}]}"#;
        assert!(!agree(body, Wire::VllmChat, &opts));
        assert!(parse_via(body, Wire::VllmChat, &opts, Via::Both).is_err());
        // a logprob entry's key twice: the last one wins, as before
        let body = br#"{"choices":[{"token_ids":[1],"logprobs":{"content":[{"logprob":-1,"logprob":-2}]}}]}"#;
        assert!(!agree(body, Wire::VllmChat, &opts));
        let p = parse_via(body, Wire::VllmChat, &opts, Via::Both);
        assert_eq!(p.ok().and_then(|p| p.completion_logprobs), Some(vec![-2.0]));
    }

    #[test]
    fn skipped_values_at_exactly_the_depth_limit() {
        for limit in [4, 10, 64, 127] {
            let opts = ParseOptions {
                max_body_bytes: 1 << 20,
                max_depth: limit,
            };
            // `{"choices":[{...,"x": <d arrays>}]}` nests d + 3 levels
            let body = |d: usize| {
                format!(
                    r#"{{"choices":[{{"token_ids":[1],"x":{}{}}}]}}"#,
                    "[".repeat(d),
                    "]".repeat(d)
                )
            };
            same(body(limit - 3).as_bytes(), Wire::VllmChat, &opts);
            let over = body(limit - 2);
            assert!(!agree(over.as_bytes(), Wire::VllmChat, &opts));
            let e = parse_via(over.as_bytes(), Wire::VllmChat, &opts, Via::Both).err();
            let text = e.map(|e| e.text().to_owned()).unwrap_or_default();
            assert!(
                text.contains(&format!("deeper than {limit} levels")),
                "{text}"
            );
        }
    }

    #[test]
    fn generated_bodies_of_every_wire_are_scanned_exactly() {
        // vLLM chat with labelled top logprobs, generate with tags, Dynamo engine_data, SGLang
        let opts = ParseOptions::default();
        let n = 300;
        let ids: Vec<u32> = (0..n).map(|i| (i * 7919 + 13) % 151_000).collect();
        let lps: Vec<f64> = (0..n).map(|i| -f64::from(i) / 7.0 - 1e-9).collect();
        let entries: Vec<serde_json::Value> = ids
            .iter()
            .zip(&lps)
            .map(|(id, lp)| {
                serde_json::json!({"token": format!("token_id:{id}"), "logprob": lp,
                    "bytes": [116, 49], "top_logprobs": [{"token_id": id, "logprob": lp},
                    {"token": "token_id:5", "logprob": lp * 2.0}]})
            })
            .collect();
        let choice = serde_json::json!({"index": 0, "token_ids": ids,
            "logprobs": {"content": entries}, "finish_reason": "stop", "stop_reason": 7,
            "message": {"content": "x\u{e9}\"", "tool_calls": [{"id": "c", "function":
            {"name": "f", "arguments": "{\"a\": 1}"}}]}, "routed_experts": "QUJD"});
        let chat = serde_json::json!({"id": "r", "choices": [choice, {"x": 1}],
            "prompt_token_ids": ids, "usage": {"prompt_tokens": 3,
            "prompt_tokens_details": {"cached_tokens": 2}}});
        same(chat.to_string().as_bytes(), Wire::VllmChat, &opts);
        same(chat.to_string().as_bytes(), Wire::VllmGenerate, &opts);
        let dynamo = serde_json::json!({"choices": [{"message": {"content": "a"}}],
            "nvext": {"engine_data": {"completion_token_ids": ids, "prompt_token_ids": ids,
            "completion_logprobs": lps, "routed_experts": [1, 2]}, "stop_reason": "x"}});
        same(dynamo.to_string().as_bytes(), Wire::Dynamo, &opts);
        let sglang = serde_json::json!({"text": "x", "output_ids": ids, "meta_info": {
            "id": "s", "finish_reason": {"type": "stop", "matched": 2},
            "prompt_tokens": 4, "completion_tokens": n, "cached_tokens": 1,
            "output_token_logprobs": ids.iter().zip(&lps).map(|(i, l)| serde_json::json!([l, i, null])).collect::<Vec<_>>(),
            "output_top_logprobs": ids.iter().zip(&lps).map(|(i, l)| serde_json::json!([[l, i, "t"], [l, 3, null]])).collect::<Vec<_>>(),
            "routed_experts": "QUJD"}});
        same(sglang.to_string().as_bytes(), Wire::Sglang, &opts);
    }
}
