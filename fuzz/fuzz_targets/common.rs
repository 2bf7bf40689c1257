//! Checks shared by the fuzz targets.
#![allow(dead_code)]

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// Panics when `body` holds an object with the same key twice, at any depth (serde_json keeps
/// the last one silently, so a duplicated key would hide which value the server reads).
pub fn assert_no_duplicate_keys(body: &[u8]) {
    let mut de = serde_json::Deserializer::from_slice(body);
    if let Err(e) = de.deserialize_any(Unique) {
        panic!("{e}: {}", String::from_utf8_lossy(body));
    }
}

struct Unique;

impl<'de> de::DeserializeSeed<'de> for Unique {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(Unique)
    }
}

impl<'de> Visitor<'de> for Unique {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> { Ok(()) }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> { Ok(()) }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> { Ok(()) }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> { Ok(()) }
    fn visit_str<E>(self, _: &str) -> Result<(), E> { Ok(()) }
    fn visit_unit<E>(self) -> Result<(), E> { Ok(()) }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Unique)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("key {key:?} written twice")));
            }
            map.next_value_seed(Unique)?;
        }
        Ok(())
    }
}

/// The repository's own model folder (Qwen2.5's tokenizer and template), loaded once per process.
pub fn qwen() -> &'static fasttito::Tokenizer {
    static TOK: std::sync::OnceLock<fasttito::Tokenizer> = std::sync::OnceLock::new();
    TOK.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/qwen2.5");
        let options = fasttito::LoadOptions {
            limits: fasttito::template::RenderLimits { fuel: 2_000_000, recursion: 64 },
            ..Default::default()
        };
        fasttito::Tokenizer::from_dir(&dir, &options).expect("models/qwen2.5 loads")
    })
}
