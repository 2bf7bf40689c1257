//! A model folder: its `tokenizers` tokenizer, chat templates, special tokens and stop ids.
//!
//! Loading follows transformers 5.x (`tokenization_utils_base.py::_from_pretrained`):
//! * `tokenizer.json` is the tokenizer;
//! * chat templates: `chat_template.jinja` plus `additional_chat_templates/*.jinja` take priority
//!   over `tokenizer_config.json`'s `chat_template` (a string, or a list of `{name, template}`);
//!   a legacy `chat_template.json` (`{"chat_template": ...}`) is read last;
//! * named special tokens (`bos_token`, `eos_token`, `unk_token`, `sep_token`, `pad_token`,
//!   `cls_token`, `mask_token`) come from `tokenizer_config.json`, as strings or `AddedToken`
//!   objects; `special_tokens_map.json` overrides them when the config has no
//!   `added_tokens_decoder` (transformers' legacy path);
//! * stop ids: the eos token's id, then `generation_config.json`'s `eos_token_id` (int or list).
//!
//! Files are read with a size bound, so a hostile folder cannot exhaust memory before parsing.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde_json::Value as Json;
use tokenizers::Tokenizer as HfTokenizer;

use crate::error::{Error, Result};
use crate::template::bytes::ByteTable;
use crate::template::segments::{encode_whole, CacheStats, EncodeCache, Segmenter};
use crate::template::{ChatTemplate, RenderLimits};
use crate::tito::render_cache::RenderCache;

/// The named special tokens transformers exposes to templates, in its order
/// (`SPECIAL_TOKENS_ATTRIBUTES`).
pub const SPECIAL_TOKEN_NAMES: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// Largest `tokenizer.json` accepted (the largest real ones are ~30 MB).
const MAX_TOKENIZER_BYTES: u64 = 512 << 20;
/// Largest config or template file accepted.
const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// Options for [`Tokenizer::from_dir`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Bounds on each template render.
    pub limits: RenderLimits,
    /// Bytes of chunk ids kept for reuse between renders (0 turns reuse off).
    pub cache_bytes: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            limits: RenderLimits::default(),
            cache_bytes: 256 << 20,
        }
    }
}

/// A chat template with its source text (transformers checks `continue_final_message` fields
/// against the source).
#[derive(Debug)]
pub struct NamedTemplate {
    /// The template's name (`default` for the main one).
    pub name: String,
    /// The Jinja source.
    pub source: String,
    /// The compiled template.
    pub compiled: ChatTemplate,
}

/// A loaded model folder.
pub struct Tokenizer {
    path: PathBuf,
    inner: HfTokenizer,
    /// `None`: the folder has no chat template. One entry named `default` is the single-template
    /// case; several entries are named templates.
    templates: Vec<NamedTemplate>,
    templates_are_named: bool,
    special_tokens: Vec<(String, String)>,
    stop_token_ids: Vec<u32>,
    clean_up_tokenization_spaces: bool,
    is_bpe: bool,
    segmenter: Option<Segmenter>,
    cache: Option<EncodeCache>,
    model_max_length: Option<u64>,
    /// Base renders of the bridge; `None` when a template reads the clock.
    base_renders: Option<RenderCache>,
    /// Every id's bytes, built on the first decode; `None` inside when the decoder is not
    /// `ByteLevel` alone (`bytes.rs`).
    byte_table: OnceLock<Option<ByteTable>>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn read_bounded(path: &Path, max: u64) -> Result<String> {
    let meta = fs::metadata(path)
        .map_err(|e| Error::load(format!("cannot read {}: {e}", path.display())))?;
    if meta.len() > max {
        return Err(Error::load(format!(
            "{} is {} bytes, more than the {max} accepted for this file",
            path.display(),
            meta.len()
        )));
    }
    fs::read_to_string(path)
        .map_err(|e| Error::load(format!("cannot read {}: {e}", path.display())))
}

fn read_json(path: &Path) -> Result<Option<Json>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = read_bounded(path, MAX_CONFIG_BYTES)?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::load(format!("{} is not valid JSON: {e}", path.display())))
}

/// The text of a special-token entry: a string, or an `AddedToken` object's `content`.
fn token_text(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Object(map) => map.get("content").and_then(Json::as_str).map(str::to_owned),
        _ => None,
    }
}

/// A folder's chat templates as `(name, source)` pairs, and whether they are named (more than
/// the one `default`).
type TemplateSources = (Vec<(String, String)>, bool);

/// Reads the chat templates of a folder, in transformers' priority order.
fn load_template_sources(dir: &Path, config: Option<&Json>) -> Result<TemplateSources> {
    let mut files = Vec::new();
    let main = dir.join("chat_template.jinja");
    if main.is_file() {
        files.push(("default".to_owned(), read_bounded(&main, MAX_CONFIG_BYTES)?));
    }
    let extra_dir = dir.join("additional_chat_templates");
    if extra_dir.is_dir() {
        let mut extra: Vec<PathBuf> = fs::read_dir(&extra_dir)
            .map_err(|e| Error::load(format!("cannot list {}: {e}", extra_dir.display())))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "jinja"))
            .collect();
        extra.sort();
        for path in extra {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.push((name, read_bounded(&path, MAX_CONFIG_BYTES)?));
        }
    }
    if !files.is_empty() {
        let named = !(files.len() == 1 && files[0].0 == "default");
        return Ok((files, named));
    }
    let from_value = |value: &Json, origin: &Path| -> Result<Option<TemplateSources>> {
        match value {
            Json::String(s) => Ok(Some((vec![("default".to_owned(), s.clone())], false))),
            Json::Array(items) => {
                let mut named = Vec::new();
                for item in items {
                    let name = item.get("name").and_then(Json::as_str);
                    let template = item.get("template").and_then(Json::as_str);
                    match (name, template) {
                        (Some(n), Some(t)) => named.push((n.to_owned(), t.to_owned())),
                        _ => {
                            return Err(Error::load(format!(
                                "{}: each entry of the chat_template list must be \
                                 {{\"name\": str, \"template\": str}}, found {item}",
                                origin.display()
                            )))
                        }
                    }
                }
                Ok(Some((named, true)))
            }
            Json::Null => Ok(None),
            other => Err(Error::load(format!(
                "{}: chat_template must be a string or a list of named templates, found {other}",
                origin.display()
            ))),
        }
    };
    if let Some(value) = config.and_then(|c| c.get("chat_template")) {
        if let Some(found) = from_value(value, &dir.join("tokenizer_config.json"))? {
            return Ok(found);
        }
    }
    let legacy = dir.join("chat_template.json");
    if let Some(json) = read_json(&legacy)? {
        if let Some(value) = json.get("chat_template") {
            if let Some(found) = from_value(value, &legacy)? {
                return Ok(found);
            }
        }
    }
    Ok((Vec::new(), false))
}

impl Tokenizer {
    /// Loads a model folder.
    pub fn from_dir(dir: &Path, options: &LoadOptions) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::load(format!(
                "{} is not a directory; pass the folder that holds tokenizer.json and \
                 tokenizer_config.json",
                dir.display()
            )));
        }
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            return Err(Error::load(format!(
                "{} has no tokenizer.json; fasttito needs the `tokenizers` serialization \
                 (save the tokenizer with transformers' save_pretrained to create it)",
                dir.display()
            )));
        }
        let text = read_bounded(&tokenizer_path, MAX_TOKENIZER_BYTES)?;
        // The tokenizers crate panics (an `expect`) on some malformed files, e.g. a syntax
        // error inside `decoder` (found by fuzz/ tokenizer_load): a bad file must be a load
        // error, never a panic (a PyO3 PanicException is not an Exception).
        let parsed = std::panic::catch_unwind(|| HfTokenizer::from_bytes(text.as_bytes()));
        let inner = match parsed {
            Ok(result) => result.map_err(|e| {
                Error::load(format!(
                    "{} is not a valid tokenizer.json: {e}",
                    tokenizer_path.display()
                ))
            })?,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("no message");
                return Err(Error::load(format!(
                    "{} is not a valid tokenizer.json: the tokenizers library failed on it \
                     ({why}); re-save the tokenizer with transformers' save_pretrained",
                    tokenizer_path.display()
                )));
            }
        };
        drop(text);

        let config = read_json(&dir.join("tokenizer_config.json"))?;
        let mut special: BTreeMap<&str, String> = BTreeMap::new();
        if let Some(cfg) = &config {
            for name in SPECIAL_TOKEN_NAMES {
                if let Some(text) = cfg.get(name).and_then(token_text) {
                    special.insert(name, text);
                }
            }
        }
        let has_decoder = config
            .as_ref()
            .is_some_and(|c| c.get("added_tokens_decoder").is_some());
        if !has_decoder {
            if let Some(map) = read_json(&dir.join("special_tokens_map.json"))? {
                for name in SPECIAL_TOKEN_NAMES {
                    if let Some(text) = map.get(name).and_then(token_text) {
                        special.insert(name, text);
                    }
                }
            }
        }
        let special_tokens: Vec<(String, String)> = SPECIAL_TOKEN_NAMES
            .iter()
            .filter_map(|name| special.get(name).map(|t| ((*name).to_owned(), t.clone())))
            .collect();

        let mut stop_token_ids = Vec::new();
        if let Some(eos) = special.get("eos_token") {
            if let Some(id) = inner.token_to_id(eos) {
                stop_token_ids.push(id);
            }
        }
        if let Some(gen) = read_json(&dir.join("generation_config.json"))? {
            let ids: Vec<u64> = match gen.get("eos_token_id") {
                Some(Json::Number(n)) => n.as_u64().into_iter().collect(),
                Some(Json::Array(items)) => items.iter().filter_map(Json::as_u64).collect(),
                _ => Vec::new(),
            };
            for id in ids {
                let id = u32::try_from(id).map_err(|_| {
                    Error::load(format!(
                        "generation_config.json: eos_token_id {id} is out of range"
                    ))
                })?;
                if !stop_token_ids.contains(&id) {
                    stop_token_ids.push(id);
                }
            }
        }

        let (sources, templates_are_named) = load_template_sources(dir, config.as_ref())?;
        let mut templates = Vec::with_capacity(sources.len());
        for (name, source) in sources {
            let compiled = ChatTemplate::new(&source, options.limits).map_err(|e| {
                Error::template(format!("chat template {name:?} of {}: {e}", dir.display()))
            })?;
            templates.push(NamedTemplate {
                name,
                source,
                compiled,
            });
        }

        let clean_up_tokenization_spaces = config
            .as_ref()
            .and_then(|c| c.get("clean_up_tokenization_spaces"))
            .and_then(Json::as_bool)
            .unwrap_or(false);
        let model_max_length = config
            .as_ref()
            .and_then(|c| c.get("model_max_length"))
            .and_then(Json::as_u64)
            .filter(|n| *n < (1 << 40));
        let is_bpe = matches!(inner.get_model(), tokenizers::ModelWrapper::BPE(_));
        // a template reading the clock renders differently from one day to the next
        let base_renders = (!templates.iter().any(|t| t.source.contains("strftime_now")))
            .then(RenderCache::default);
        let segmenter = Segmenter::for_tokenizer(&inner);
        let cache = (options.cache_bytes > 0 && segmenter.is_some())
            .then(|| EncodeCache::new(options.cache_bytes));
        Ok(Self {
            path: dir.to_path_buf(),
            inner,
            templates,
            templates_are_named,
            special_tokens,
            stop_token_ids,
            clean_up_tokenization_spaces,
            is_bpe,
            segmenter,
            cache,
            model_max_length,
            base_renders,
            byte_table: OnceLock::new(),
        })
    }

    /// The bridge's base-render cache (`None` when a template reads the clock).
    pub fn base_renders(&self) -> Option<&RenderCache> {
        self.base_renders.as_ref()
    }

    /// The folder this tokenizer was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn hf(&self) -> &HfTokenizer {
        &self.inner
    }

    /// Named special tokens (`bos_token` ...) present in the folder, in transformers' order.
    pub fn special_tokens(&self) -> &[(String, String)] {
        &self.special_tokens
    }

    /// The ids an engine should stop on.
    pub fn stop_token_ids(&self) -> &[u32] {
        &self.stop_token_ids
    }

    /// `model_max_length` from the config, when it is a real bound.
    pub fn model_max_length(&self) -> Option<u64> {
        self.model_max_length
    }

    /// Number of ids, added tokens included (transformers' `len(tokenizer)`).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of `token`, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token of `id`, if it is in the vocabulary.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Names of the chat templates (`["default"]` for a single template, empty for none).
    pub fn template_names(&self) -> Vec<&str> {
        self.templates.iter().map(|t| t.name.as_str()).collect()
    }

    /// Picks the template as transformers' `get_chat_template` does: by name when given; else
    /// `tool_use` when tools are passed and such a template exists; else `default`.
    pub fn select_template(&self, name: Option<&str>, has_tools: bool) -> Result<&NamedTemplate> {
        if self.templates.is_empty() {
            return Err(Error::template(format!(
                "{} has no chat template (looked in chat_template.jinja, tokenizer_config.json \
                 and chat_template.json); add one to the folder",
                self.path.display()
            )));
        }
        let find = |n: &str| self.templates.iter().find(|t| t.name == n);
        if let Some(name) = name {
            return find(name).ok_or_else(|| {
                Error::template(format!(
                    "no chat template named {name:?}; available: {:?}",
                    self.template_names()
                ))
            });
        }
        if !self.templates_are_named {
            return Ok(&self.templates[0]);
        }
        if has_tools {
            if let Some(t) = find("tool_use") {
                return Ok(t);
            }
        }
        find("default").ok_or_else(|| {
            Error::template(format!(
                "this model has several chat templates and none is named \"default\"; pass the \
                 name of one: {:?}",
                self.template_names()
            ))
        })
    }

    /// Encodes `text` without adding special tokens, exactly as `tokenizers` encodes it whole;
    /// with reuse of previously seen chunks when `reuse` is set and the tokenizer allows it.
    pub fn encode(&self, text: &str, reuse: bool) -> Result<Vec<u32>> {
        match (&self.segmenter, &self.cache) {
            (Some(segmenter), Some(cache)) if reuse => cache.encode(&self.inner, segmenter, text),
            _ => encode_whole(&self.inner, text),
        }
    }

    /// Encodes `text`, adding the post-processor's special tokens when `add_special_tokens`.
    pub fn encode_with_special(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        if !add_special_tokens {
            return self.encode(text, false);
        }
        self.inner
            .encode_fast(text, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::tokenize(format!("encoding failed: {e}")))
    }

    /// Decodes `ids` as transformers' `decode` does.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let size = self.vocab_size();
        if let Some(bad) = ids.iter().find(|id| **id as usize >= size) {
            return Err(Error::tokenize(format!(
                "cannot decode id {bad}: the vocabulary has {size} ids (0..{size})"
            )));
        }
        let text = match self.byte_table() {
            Some(table) => table.decode(ids, skip_special_tokens),
            None => self.decode_reference(ids, skip_special_tokens)?,
        };
        // transformers 5.x skips this clean-up for BPE models (it corrupts their output).
        if self.clean_up_tokenization_spaces && !self.is_bpe {
            return Ok(clean_up_tokenization(&text));
        }
        Ok(text)
    }

    /// Decodes `ids` through the `tokenizers` crate, without the byte table and without
    /// transformers' clean-up: what [`Tokenizer::decode`] is tested against.
    pub fn decode_reference(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::tokenize(format!("decoding failed: {e}")))
    }

    /// Whether [`Tokenizer::decode`] reads a byte table (a `ByteLevel` decoder) rather than
    /// going through the `tokenizers` crate.
    pub fn decodes_from_table(&self) -> bool {
        self.byte_table().is_some()
    }

    /// The byte table, built on first use (`None` for decoders other than `ByteLevel`).
    fn byte_table(&self) -> Option<&ByteTable> {
        self.byte_table
            .get_or_init(|| ByteTable::build(&self.inner, self.vocab_size()))
            .as_ref()
    }

    /// Counters of the chunk cache, when there is one.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(EncodeCache::stats)
    }
}

/// transformers' `clean_up_tokenization`.
fn clean_up_tokenization(text: &str) -> String {
    text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

/// A shared, immutable tokenizer.
pub type SharedTokenizer = Arc<Tokenizer>;
