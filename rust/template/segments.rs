//! Exact reuse of tokenized text between renders of a growing conversation.
//!
//! The `tokenizers` pipeline first cuts the input at added tokens (an Aho-Corasick automaton over
//! the non-normalized added tokens, leftmost-longest), then normalizes, pre-tokenizes and encodes
//! each piece on its own (`tokenizers` `AddedVocabulary::find_matches`). So the ids of a text are
//! the concatenation of the ids of its chunks, if every chunk ends right after an added-token
//! match of the whole text. [`Segmenter`] finds those cut points with the same automaton;
//! [`EncodeCache`] keeps each chunk's ids, keyed by the chunk's full text (compared, not just
//! hashed), so a conversation that grew by one turn only encodes the new text.
//!
//! Where a cut could change the result, chunking is off and the text is encoded whole: added
//! tokens that strip neighbouring spaces or must stand alone as words (`lstrip`, `rstrip`,
//! `single_word`) look outside their match, and a `Metaspace` pre-tokenizer with
//! `prepend_scheme: "first"` treats the first piece differently. The parity suite checks the
//! cached ids against transformers on every model folder.

use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use tokenizers::Tokenizer as HfTokenizer;

use crate::error::{Error, Result};

/// Finds the cut points of a text: the ends of added-token matches.
#[derive(Debug)]
pub struct Segmenter {
    automaton: AhoCorasick,
}

impl Segmenter {
    /// The segmenter of `tokenizer`, or `None` when cutting could change its ids (see the module
    /// documentation).
    pub fn for_tokenizer(tokenizer: &HfTokenizer) -> Option<Self> {
        let added = tokenizer.get_added_tokens_decoder();
        let mut patterns = Vec::new();
        for token in added.values() {
            if token.lstrip || token.rstrip || token.single_word {
                return None;
            }
            if !token.normalized && !token.content.is_empty() {
                patterns.push(token.content.clone());
            }
        }
        if patterns.is_empty() {
            return None;
        }
        let pre_tokenizer = serde_json::to_string(&tokenizer.get_pre_tokenizer()).ok()?;
        if pre_tokenizer.contains("\"prepend_scheme\":\"first\"") {
            return None;
        }
        let automaton = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok()?;
        Some(Self { automaton })
    }

    /// Splits `text` into chunks that each end right after an added token (the last chunk ends
    /// where the text ends). The chunks concatenate to `text`.
    pub fn chunks<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut chunks = Vec::new();
        let mut start = 0;
        for m in self.automaton.find_iter(text) {
            chunks.push(&text[start..m.end()]);
            start = m.end();
        }
        if start < text.len() {
            chunks.push(&text[start..]);
        }
        chunks
    }
}

struct Entry {
    ids: Arc<[u32]>,
    last_used: u64,
}

struct CacheState {
    entries: FxHashMap<Box<str>, Entry>,
    bytes: usize,
    clock: u64,
    hits: u64,
    misses: u64,
}

/// A bounded map from chunk text to its ids, shared by every thread using one tokenizer.
pub struct EncodeCache {
    state: Mutex<CacheState>,
    capacity: usize,
}

/// Counters of an [`EncodeCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Chunks found in the cache.
    pub hits: u64,
    /// Chunks encoded.
    pub misses: u64,
    /// Chunks held now.
    pub entries: usize,
    /// Bytes held now (text plus ids).
    pub bytes: usize,
}

impl EncodeCache {
    /// A cache holding at most about `capacity` bytes (chunk text plus 4 bytes per id).
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(CacheState {
                entries: FxHashMap::default(),
                bytes: 0,
                clock: 0,
                hits: 0,
                misses: 0,
            }),
            capacity,
        }
    }

    /// The cache's counters.
    pub fn stats(&self) -> CacheStats {
        let state = self.state.lock();
        CacheStats {
            hits: state.hits,
            misses: state.misses,
            entries: state.entries.len(),
            bytes: state.bytes,
        }
    }

    /// Encodes `text` (no special tokens added) as `tokenizer` would encode it whole, reusing
    /// the ids of chunks seen before.
    pub fn encode(
        &self,
        tokenizer: &HfTokenizer,
        segmenter: &Segmenter,
        text: &str,
    ) -> Result<Vec<u32>> {
        let chunks = segmenter.chunks(text);
        let mut found: Vec<Option<Arc<[u32]>>> = Vec::with_capacity(chunks.len());
        {
            let mut state = self.state.lock();
            state.clock += 1;
            let now = state.clock;
            let mut hits = 0;
            for chunk in &chunks {
                let hit = state.entries.get_mut(*chunk).map(|entry| {
                    entry.last_used = now;
                    entry.ids.clone()
                });
                hits += u64::from(hit.is_some());
                found.push(hit);
            }
            state.hits += hits;
            state.misses += chunks.len() as u64 - hits;
        }
        // Encode the misses without holding the lock.
        let mut fresh: Vec<(usize, Arc<[u32]>)> = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            if found[i].is_none() {
                let ids: Arc<[u32]> = encode_whole(tokenizer, chunk)?.into();
                fresh.push((i, ids));
            }
        }
        let total: usize = found.iter().flatten().map(|ids| ids.len()).sum::<usize>()
            + fresh.iter().map(|(_, ids)| ids.len()).sum::<usize>();
        if !fresh.is_empty() {
            let mut state = self.state.lock();
            let now = state.clock;
            for (i, ids) in &fresh {
                let size = chunks[*i].len() + ids.len() * 4;
                if size > self.capacity / 4 {
                    continue; // a chunk this large would flush everything else
                }
                if state.entries.contains_key(chunks[*i]) {
                    continue;
                }
                state.bytes += size;
                state.entries.insert(
                    chunks[*i].into(),
                    Entry {
                        ids: ids.clone(),
                        last_used: now,
                    },
                );
            }
            if state.bytes > self.capacity {
                evict(&mut state, self.capacity * 3 / 4);
            }
        }
        let mut out = Vec::with_capacity(total);
        let mut fresh_iter = fresh.into_iter().peekable();
        for (i, hit) in found.into_iter().enumerate() {
            match hit {
                Some(ids) => out.extend_from_slice(&ids),
                None => {
                    let (j, ids) = fresh_iter
                        .next()
                        .ok_or_else(|| Error::tokenize("internal: chunk bookkeeping"))?;
                    debug_assert_eq!(i, j);
                    out.extend_from_slice(&ids);
                }
            }
        }
        Ok(out)
    }
}

/// Drops the least recently used entries until at most `target` bytes remain.
fn evict(state: &mut CacheState, target: usize) {
    let mut ages: Vec<(u64, Box<str>)> = state
        .entries
        .iter()
        .map(|(k, e)| (e.last_used, k.clone()))
        .collect();
    ages.sort_unstable_by_key(|(age, _)| *age);
    for (_, key) in ages {
        if state.bytes <= target {
            break;
        }
        if let Some(entry) = state.entries.remove(&key) {
            state.bytes -= key.len() + entry.ids.len() * 4;
        }
    }
}

/// Encodes `text` in one call, without adding special tokens.
pub fn encode_whole(tokenizer: &HfTokenizer, text: &str) -> Result<Vec<u32>> {
    tokenizer
        .encode_fast(text, false)
        .map(|encoding| encoding.get_ids().to_vec())
        .map_err(|e| Error::tokenize(format!("encoding failed: {e}")))
}
