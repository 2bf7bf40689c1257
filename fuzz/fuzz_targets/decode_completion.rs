//! Completion decoding (rust/decode/): any id sequence, in every model family's grammar, with
//! the repository's Qwen2.5 tokenizer. Ids are decoded or refused with a typed error (an id
//! outside the vocabulary); a decoded turn is an assistant message whose tool calls carry ids,
//! names and object arguments, and the hint says tool_calls exactly when there are some.
#![no_main]

mod common;

use fasttito::decode::{decode_completion, Family};
use fasttito::ErrorKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tok = common::qwen();
    let Some((&selector, rest)) = data.split_first() else { return };
    let family = Family::ALL[usize::from(selector) % Family::ALL.len()];
    // Two bytes per id over the special-token range, plus a few ids just past the vocabulary.
    let vocab = tok.vocab_size() as u32;
    let ids: Vec<u32> = rest
        .chunks_exact(2)
        .map(|c| {
            let x = u32::from(u16::from_le_bytes([c[0], c[1]]));
            match x >> 13 {
                0 => vocab - 1 - (x & 0x3F),           // added/special tokens (the end of the vocab)
                1 if x & 0x1FFF == 0x1FFF => vocab + (x & 3), // out of vocabulary
                _ => x % vocab.min(60_000),
            }
        })
        .collect();
    match decode_completion(tok, family, &ids) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Tokenize, "{family:?}: {e}"),
        Ok(turn) => {
            assert_eq!(turn.message.get("role").and_then(|r| r.as_str()), Some("assistant"), "{family:?}");
            assert_eq!(turn.finish_reason_hint.is_some(), !turn.tool_calls.is_empty());
            for call in &turn.tool_calls {
                assert!(!call.id.is_empty(), "{family:?}: a tool call without an id");
                assert!(call.arguments.is_object(), "{family:?}: arguments {:?}", call.arguments);
            }
            if let Some(stop) = turn.stop_token_id {
                assert_eq!(ids.last(), Some(&stop));
            }
        }
    }
});
