//! Message normalization and hashing (rust/tito/messages.rs): any JSON value. Hashing never panics and
//! keeps the normalization rules: a value hashes as its own re-serialization does, and adding a
//! `null` key or an empty `content` to an object never changes its hash.
#![no_main]

use fasttito::tito::messages::{fingerprint, message_hash, prefix_hashes};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
    let h = message_hash(&value);
    let again: Value = serde_json::from_str(&value.to_string()).expect("re-serialized JSON parses");
    assert_eq!(message_hash(&again), h, "hash changed across a JSON round trip");
    let _ = fingerprint(Some(&value));
    if let Value::Object(map) = &value {
        if map.contains_key("\u{1}fuzz_null") {
            return;
        }
        let mut with_null = map.clone();
        with_null.insert("\u{1}fuzz_null".to_owned(), Value::Null);
        assert_eq!(message_hash(&Value::Object(with_null)), h, "a null key changed the hash");
        if !map.contains_key("content") {
            let mut with_empty = map.clone();
            with_empty.insert("content".to_owned(), Value::String(String::new()));
            assert_eq!(message_hash(&Value::Object(with_empty)), h, "content \"\" changed the hash");
        }
    }
    if let Value::Array(items) = &value {
        let hashes: Vec<u128> = items.iter().map(message_hash).collect();
        assert_eq!(prefix_hashes(&hashes).len(), items.len());
    }
});
