//! Decoding byte-level BPE ids from a table of each id's bytes.
//!
//! For a tokenizer whose decoder is `ByteLevel` alone (Qwen, Llama 3, SmolLM2, GLM...), the
//! `tokenizers` crate decodes ids by looking up each id's token string (the added vocabulary
//! first, then the model), mapping every character of it back to the byte it stands for (GPT-2's
//! byte-to-unicode table; a token with a character outside the table keeps its UTF-8 bytes), then
//! reading the concatenated bytes as UTF-8 with U+FFFD for invalid sequences
//! (`tokenizers` 0.23 `Tokenizer::decode` and `ByteLevel::decode_chain`). That builds one `String`
//! per id: decoding an 8k-token completion costs about 1.7 ms.
//!
//! [`ByteTable`] does the lookup and the character mapping once per vocabulary: one flat buffer
//! of every id's bytes, and per id its span and whether it is special. Decoding is then a copy
//! per id and one UTF-8 check, with the same result (a test compares every id of every model
//! folder, and random sequences, with the `tokenizers` crate). Other decoders (SentencePiece's
//! `Metaspace`, `ByteFallback` sequences) go through `tokenizers` as before.

use tokenizers::{DecoderWrapper, Tokenizer as HfTokenizer};

/// GPT-2's byte-to-unicode table, reversed: the byte each of its 256 characters stands for.
/// Printable Latin-1 bytes (`!`..`~`, `¡`..`¬`, `®`..`ÿ`) stand for themselves; the other 68
/// bytes, in increasing order, are given the characters U+0100, U+0101, ...
fn char_bytes() -> rustc_hash::FxHashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut map = rustc_hash::FxHashMap::default();
    let mut next = 0x100u32;
    for b in 0..=255u8 {
        let c = if printable(b) {
            char::from(b)
        } else {
            let c = char::from_u32(next).unwrap_or(char::REPLACEMENT_CHARACTER);
            next += 1;
            c
        };
        map.insert(c, b);
    }
    map
}

const PRESENT: u8 = 1;
const SPECIAL: u8 = 2;

/// Every id's bytes, for a `ByteLevel` tokenizer.
pub struct ByteTable {
    bytes: Vec<u8>,
    /// Per id: where its bytes end in `bytes` (they start where the previous id's end).
    ends: Vec<u32>,
    /// Per id: [`PRESENT`] (the vocabulary has the id) and [`SPECIAL`] (an added special token).
    flags: Vec<u8>,
}

impl ByteTable {
    /// The table of `inner`'s ids `0..size`, or `None` when its decoder is not `ByteLevel`
    /// alone (or the table would not fit its 32-bit offsets).
    pub fn build(inner: &HfTokenizer, size: usize) -> Option<Self> {
        if !matches!(inner.get_decoder(), Some(DecoderWrapper::ByteLevel(_))) {
            return None;
        }
        let map = char_bytes();
        let added = inner.get_added_vocabulary();
        let mut bytes = Vec::with_capacity(size * 6);
        let mut ends = Vec::with_capacity(size);
        let mut flags = Vec::with_capacity(size);
        let mut mapped = Vec::new();
        for id in 0..size {
            let id = u32::try_from(id).ok()?;
            let mut flag = 0;
            if let Some(token) = inner.id_to_token(id) {
                flag = PRESENT;
                if added.is_special_token(&token) {
                    flag |= SPECIAL;
                }
                mapped.clear();
                let all_mapped = token.chars().all(|c| match map.get(&c) {
                    Some(b) => {
                        mapped.push(*b);
                        true
                    }
                    None => false,
                });
                if all_mapped {
                    bytes.extend_from_slice(&mapped);
                } else {
                    bytes.extend_from_slice(token.as_bytes());
                }
            }
            ends.push(u32::try_from(bytes.len()).ok()?);
            flags.push(flag);
        }
        bytes.shrink_to_fit();
        Some(Self { bytes, ends, flags })
    }

    /// The text of `ids` (every id below the table's size), as `tokenizers` decodes it.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> String {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let i = id as usize;
            let (Some(&flag), Some(&end)) = (self.flags.get(i), self.ends.get(i)) else {
                continue;
            };
            if flag & PRESENT == 0 || (skip_special_tokens && flag & SPECIAL != 0) {
                continue;
            }
            let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
            out.extend_from_slice(&self.bytes[start..end as usize]);
        }
        match String::from_utf8(out) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_map_is_a_bijection_on_256_characters() {
        let map = char_bytes();
        assert_eq!(map.len(), 256);
        let mut seen = [false; 256];
        for b in map.values() {
            seen[*b as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(map[&'Ġ'], b' ');
        assert_eq!(map[&'Ċ'], b'\n');
        assert_eq!(map[&'!'], b'!');
    }
}
